//! The client API's gRPC edge: services, auth metadata, conversions and the
//! status mapping. Handlers parse requests, call `Tenant`, convert replies.

mod convert;
mod services;
mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use works_proto::client::v1 as pb;

use crate::error::{Error, Result};
use crate::model::Caller;
use crate::tenant::Tenant;

/// Largest request the API accepts; photos are the biggest legitimate ones.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

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

/// Serves the client API (with health and reflection) on `listener` until
/// `shutdown` resolves, then lets in-flight calls finish.
pub async fn serve_api(
    tenant: Arc<Tenant>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::rooms_server::RoomsServer<services::RoomsApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(works_proto::CLIENT_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let tenant_id = tenant.id.to_string();
    Server::builder()
        .trace_fn(move |req| {
            tracing::info_span!(
                "rpc",
                tenant = %tenant_id,
                rpc = %req.uri().path(),
                request_id = %ulid::Ulid::new(),
            )
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            pb::auth_server::AuthServer::new(services::AuthApi(tenant.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::admin_server::AdminServer::new(services::AdminApi(tenant.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::profiles_server::ProfilesServer::new(services::ProfilesApi(tenant.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::peering_server::PeeringServer::new(services::PeeringApi(tenant.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(pb::external_policy_server::ExternalPolicyServer::new(
            services::ExternalPolicyApi(tenant.clone()),
        ))
        .add_service(pb::audit_server::AuditServer::new(services::AuditApi(
            tenant.clone(),
        )))
        .add_service(pb::contacts_server::ContactsServer::new(
            services::ContactsApi(tenant.clone()),
        ))
        .add_service(
            pb::rooms_server::RoomsServer::new(services::RoomsApi(tenant))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
