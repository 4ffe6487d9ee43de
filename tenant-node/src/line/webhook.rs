//! What LINE's platform calls on the web port (or `[line] webhook_listen`):
//! `POST /line/webhook`, and the public files LINE users are linked to:
//! members' icons (`/line/icons/{member}`) and files members share in rooms
//! with LINE users (`/line/files/{id}/{tag}`, the tag signed by the node).
//!
//! A webhook is answered only after its events are committed to the inbox,
//! and before any of them is processed, well within LINE's 2 s: a bad or
//! missing signature is 401 and nothing is stored; LINE's redelivery of an
//! event stored before is dropped by its `webhookEventId`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::store::now_ms;
use crate::tenant::Tenant;

/// Largest webhook body taken: LINE sends a few events per request.
const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// The LINE routes, for the web port's router or a port of their own.
pub fn routes(tenant: Arc<Tenant>) -> axum::Router {
    axum::Router::new()
        .route("/line/webhook", post(webhook))
        .route("/line/icons/{member}", get(icon))
        .route("/line/files/{id}/{tag}", get(file))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
        .with_state(tenant)
}

/// Serves the LINE routes alone on `listener` until `shutdown` resolves.
pub async fn serve(
    tenant: Arc<Tenant>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving the LINE webhook");
    axum::serve(listener, routes(tenant))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn answer(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn webhook(State(tenant): State<Arc<Tenant>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(channel) = tenant.line.as_ref() else {
        return answer(StatusCode::NOT_FOUND, "no LINE account on this node\n");
    };
    let signature = headers
        .get("x-line-signature")
        .and_then(|v| v.to_str().ok());
    match signature {
        Some(signature) if channel.signed(&body, signature) => {}
        Some(_) => {
            tracing::warn!(bytes = body.len(), "LINE webhook refused: bad signature");
            return answer(StatusCode::UNAUTHORIZED, "bad signature\n");
        }
        None => {
            tracing::warn!(
                bytes = body.len(),
                "LINE webhook refused: no x-line-signature"
            );
            return answer(StatusCode::UNAUTHORIZED, "missing x-line-signature\n");
        }
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!(bytes = body.len(), "LINE webhook refused: not JSON");
        return answer(StatusCode::BAD_REQUEST, "the body is not JSON\n");
    };
    let events = parsed
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // The URL check LINE's console makes: no events.
    if events.is_empty() {
        tracing::info!("LINE webhook verified");
        return answer(StatusCode::OK, "ok\n");
    }
    match store_events(&tenant, &events).await {
        Ok((stored, repeated)) => {
            tracing::info!(stored, repeated, "LINE webhook received");
            tenant.line_inbox.notify_one();
            answer(StatusCode::OK, "ok\n")
        }
        Err(e) => {
            // LINE sends it again later.
            tracing::warn!(error = %e, "cannot store a LINE webhook");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the events now\n",
            )
        }
    }
}

/// Writes each event to the inbox in one transaction: (stored, dropped as
/// already stored). An event without a `webhookEventId` is not LINE's.
async fn store_events(tenant: &Tenant, events: &[Value]) -> crate::error::Result<(usize, usize)> {
    let at = now_ms();
    let mut w = tenant.store.begin_write().await?;
    let (mut stored, mut repeated) = (0, 0);
    for event in events {
        let Some(id) = event.get("webhookEventId").and_then(Value::as_str) else {
            tracing::warn!("a LINE webhook event without a webhookEventId; skipped");
            continue;
        };
        if id.is_empty() || id.len() > 64 {
            tracing::warn!("a LINE webhook event with a malformed webhookEventId; skipped");
            continue;
        }
        if crate::store::line::inbox_put(&mut w.tx, id, &event.to_string(), at).await? {
            stored += 1;
        } else {
            repeated += 1;
        }
    }
    w.commit().await?;
    Ok((stored, repeated))
}

/// A member's photo, as the icon LINE shows beside their messages.
async fn icon(State(tenant): State<Arc<Tenant>>, Path(member): Path<String>) -> Response {
    match tenant.line_icon(&member).await {
        Ok(Some(photo)) => binary(photo.bytes, &photo.content_type, None),
        Ok(None) => answer(StatusCode::NOT_FOUND, "no such icon\n"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve a LINE icon");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
        }
    }
}

/// A file a member shared in a room with LINE users.
async fn file(
    State(tenant): State<Arc<Tenant>>,
    Path((id, tag)): Path<(String, String)>,
) -> Response {
    match tenant.line_file(&id, &tag).await {
        Ok(Some((meta, bytes))) => binary(bytes, &meta.content_type, Some(&meta.name)),
        Ok(None) => {
            tracing::info!(attachment = %id.chars().take(40).collect::<String>(), "LINE file link refused");
            answer(StatusCode::NOT_FOUND, "no such file\n")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve a LINE file");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
        }
    }
}

fn binary(bytes: Vec<u8>, content_type: &str, name: Option<&str>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Some(name) = name {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}
