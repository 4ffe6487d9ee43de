//! The operations port (`[ops] listen`): what a platform team's probes and
//! Prometheus read. Plain HTTP/1.1 without authentication, so it belongs on
//! a private interface.
//!
//! - `GET /healthz`: 200 `ok` while the process serves;
//! - `GET /readyz`: 200 when the database answers, every migration is
//!   applied and the servers listen (`ready`), 503 with a line per failed
//!   check otherwise;
//! - `GET /metrics`: the Prometheus text format (`metrics`), counted by the
//!   API layer (`layer`) and the deliverers.
//!
//! Architecture invariant: the ops port reads, never writes: no handler
//! changes storage or the node's state.

pub mod layer;
pub mod metrics;
pub mod ready;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

pub use layer::MetricsLayer;
pub use metrics::Metrics;
pub use ready::Servers;

use crate::store::{Backend, now_ms};
use crate::tenant::Tenant;

/// What the ops port's handlers read.
#[derive(Clone)]
struct Ops {
    tenant: Arc<Tenant>,
    servers: Arc<Servers>,
    replica: Arc<str>,
}

/// This replica's name in the metrics: the configured one, or the host
/// name and process id.
pub fn replica_id(configured: Option<&str>) -> String {
    if let Some(id) = configured {
        return id.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// Serves the ops port on `listener` until `shutdown` resolves.
pub async fn serve_ops(
    tenant: Arc<Tenant>,
    servers: Arc<Servers>,
    replica: String,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Ops {
            tenant,
            servers,
            replica: replica.into(),
        });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let (ready, text) = ready::verdict(&ready::checks(&ops.tenant.store, &ops.servers).await);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let tenant = &ops.tenant;
    let now = now_ms();
    let read = async {
        let mut conn = tenant.store.pool().acquire().await?;
        crate::store::outbox::queues(&mut conn).await
    };
    // Without the outbox, no queue gauges rather than made-up zeros.
    let mut queues = std::collections::BTreeMap::new();
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(depths)) => {
            for peer in tenant.metrics.known_peers() {
                queues.insert(peer, (0, 0.0));
            }
            for (peer, depth) in depths {
                let age = depth
                    .oldest_at_ms
                    .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
                queues.insert(peer.to_string(), (depth.queued, age));
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the outbox for metrics"),
        Err(_) => tracing::warn!("the outbox was not read in time for metrics"),
    }
    let (open, idle) = tenant.store.connections();
    let snapshot = metrics::Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        tenant: tenant.id.to_string(),
        backend: match tenant.store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
        replica: ops.replica.to_string(),
        queues: queues
            .into_iter()
            .map(|(peer, (queued, age))| (peer, queued, age))
            .collect(),
        connections_open: open,
        connections_idle: idle,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        tenant.metrics.render(&snapshot),
    )
}
