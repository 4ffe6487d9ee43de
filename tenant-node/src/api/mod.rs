//! The client API's gRPC edge: services, auth metadata, conversions and the
//! status mapping. Handlers parse requests, call `Tenant`, convert replies.

mod app;
mod convert;
mod services;
mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tower::Layer;
use works_bridge::limits::{ServerLimits, accept_plain};
use works_proto::client::v1 as pb;

use crate::error::{Error, Result};
use crate::model::Caller;
use crate::tenant::Tenant;

/// Largest request the API accepts; photos are the biggest legitimate ones.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest header block a request may carry; a bearer token is well under
/// 1 KiB.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// The bearer token of a request, if it carries a well-formed header.
fn bearer<T>(request: &tonic::Request<T>) -> Result<&str> {
    let value = request.metadata().get("authorization").ok_or_else(|| {
        Error::Unauthenticated(
            "missing authorization: log in and send `authorization: Bearer TOKEN`".into(),
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("malformed authorization header".into()))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(|| Error::Unauthenticated("authorization must be `Bearer TOKEN`".into()))
}

async fn caller<T>(tenant: &Tenant, request: &tonic::Request<T>) -> Result<Caller> {
    tenant.authenticate(bearer(request)?).await
}

/// The client API's connection limits, from the node's `[limits]`.
fn server_limits(tenant: &Tenant) -> ServerLimits {
    ServerLimits {
        max_connections: tenant.limits.max_api_connections,
        preface_timeout: tenant.limits.preface_timeout(),
        keepalive_interval: tenant.limits.keepalive_interval(),
        keepalive_timeout: tenant.limits.keepalive_timeout(),
        max_message_bytes: MAX_MESSAGE_BYTES,
    }
}

/// Serves the client API (with health and reflection) on `listener` until
/// `shutdown` resolves, then lets in-flight calls finish. Our own accept
/// loop caps open connections and closes those that do not send the HTTP/2
/// preface in time; keepalive pings close dead idle ones.
pub async fn serve_api(
    tenant: Arc<Tenant>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::rooms_server::RoomsServer<services::RoomsApi>>()
        .await;
    // Both versions of reflection: `v1`, and `v1alpha`, which many clients
    // still speak only (Python's grpcio-reflection, older grpcurl, Postman).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(works_proto::CLIENT_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let tenant_id = tenant.id.to_string();
    let limits = server_limits(&tenant);
    let (conns, incoming) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio::spawn(accept_plain(listener, "api", limits.clone(), conns));
    let served = Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .trace_fn(move |req| {
            tracing::info_span!(
                "rpc",
                tenant = %tenant_id,
                rpc = %req.uri().path(),
                request_id = %ulid::Ulid::new(),
            )
        })
        .layer(crate::ops::MetricsLayer::new(tenant.metrics.clone()))
        .add_routes(client_services(
            Routes::new(health_service)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha),
            &tenant,
            Protocol::Grpc,
        ))
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown)
        .await;
    acceptor.abort();
    served?;
    Ok(())
}

/// How a port carries the client API's services.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Native gRPC (the API port).
    Grpc,
    /// Each service wrapped in grpc-web (the web port).
    GrpcWeb,
}

/// `routes` with every client API service added, the same on both ports.
fn client_services(mut routes: Routes, tenant: &Arc<Tenant>, protocol: Protocol) -> Routes {
    let web = tonic_web::GrpcWebLayer::new();
    macro_rules! add {
        ($service:expr) => {{
            let service = $service.max_decoding_message_size(MAX_MESSAGE_BYTES);
            routes = match protocol {
                Protocol::Grpc => routes.add_service(service),
                Protocol::GrpcWeb => routes.add_service(web.layer(service)),
            };
        }};
    }
    add!(pb::auth_server::AuthServer::new(services::AuthApi(
        tenant.clone()
    )));
    add!(pb::admin_server::AdminServer::new(services::AdminApi(
        tenant.clone()
    )));
    add!(pb::profiles_server::ProfilesServer::new(
        services::ProfilesApi(tenant.clone())
    ));
    add!(pb::peering_server::PeeringServer::new(
        services::PeeringApi(tenant.clone())
    ));
    add!(pb::external_policy_server::ExternalPolicyServer::new(
        services::ExternalPolicyApi(tenant.clone())
    ));
    add!(pb::audit_server::AuditServer::new(services::AuditApi(
        tenant.clone()
    )));
    add!(pb::contacts_server::ContactsServer::new(
        services::ContactsApi(tenant.clone())
    ));
    add!(pb::rooms_server::RoomsServer::new(services::RoomsApi(
        tenant.clone()
    )));
    add!(pb::line_server::LineServer::new(services::LineApi(
        tenant.clone()
    )));
    routes
}

/// Serves the web port on `listener` until `shutdown` resolves: the
/// browser app's files and the client API through grpc-web, on one origin
/// (so no CORS, and no cookies: the app keeps its bearer token). Each
/// service is wrapped in grpc-web on its own, since a server-wide layer
/// would answer every plain HTTP/1.1 request (the files) 400; the files
/// are the router's fallback. Native gRPC over HTTP/2 works here too, but
/// reflection is only on the API port (browsers cannot stream requests).
pub async fn serve_web(
    tenant: Arc<Tenant>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::rooms_server::RoomsServer<services::RoomsApi>>()
        .await;
    let routes = client_services(
        Routes::new(tonic_web::GrpcWebLayer::new().layer(health_service)),
        &tenant,
        Protocol::GrpcWeb,
    );
    let metrics = tenant.metrics.clone();
    let router = routes
        .into_axum_router()
        .merge(crate::line::webhook::routes(tenant.clone()))
        .fallback(app::fallback);
    let tenant_id = tenant.id.to_string();
    let limits = server_limits(&tenant);
    let (conns, incoming) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio::spawn(accept_plain(listener, "web", limits.clone(), conns));
    let served = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .trace_fn(move |req| {
            tracing::info_span!(
                "web",
                tenant = %tenant_id,
                path = %req.uri().path(),
                request_id = %ulid::Ulid::new(),
            )
        })
        .layer(crate::ops::MetricsLayer::new(metrics))
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown)
        .await;
    acceptor.abort();
    served?;
    Ok(())
}
