//! A gRPC client for the client API, shared by the CLI, `demo` and tests.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use works_proto::client::v1 as pb;

pub use works_proto::client::v1 as proto;

/// Adds `authorization: Bearer TOKEN` to every call when a token is set.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Svc = InterceptedService<Channel, BearerToken>;

#[derive(Clone)]
pub struct Client {
    pub auth: pb::auth_client::AuthClient<Svc>,
    pub admin: pb::admin_client::AdminClient<Svc>,
    pub profiles: pb::profiles_client::ProfilesClient<Svc>,
    pub rooms: pb::rooms_client::RoomsClient<Svc>,
    pub peering: pb::peering_client::PeeringClient<Svc>,
    pub external: pb::external_policy_client::ExternalPolicyClient<Svc>,
    pub audit: pb::audit_client::AuditClient<Svc>,
    pub contacts: pb::contacts_client::ContactsClient<Svc>,
    pub line: pb::line_client::LineClient<Svc>,
    channel: Channel,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid node url {0:?}: {1}")]
    Url(String, String),
    #[error("cannot reach the node at {0}: {1}")]
    Unreachable(String, String),
    #[error("the token is not valid ASCII")]
    Token,
}

impl Client {
    pub async fn connect(url: &str, token: Option<&str>) -> Result<Client, ConnectError> {
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ConnectError::Url(url.clone(), e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ConnectError::Unreachable(url.clone(), source_chain(&e)))?;
        Client::with_channel(channel, token)
    }

    pub fn with_channel(channel: Channel, token: Option<&str>) -> Result<Client, ConnectError> {
        let header = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ConnectError::Token)
            })
            .transpose()?;
        let auth = BearerToken(header);
        Ok(Client {
            auth: pb::auth_client::AuthClient::with_interceptor(channel.clone(), auth.clone()),
            admin: pb::admin_client::AdminClient::with_interceptor(channel.clone(), auth.clone()),
            profiles: pb::profiles_client::ProfilesClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            rooms: pb::rooms_client::RoomsClient::with_interceptor(channel.clone(), auth.clone()),
            peering: pb::peering_client::PeeringClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            external: pb::external_policy_client::ExternalPolicyClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            audit: pb::audit_client::AuditClient::with_interceptor(channel.clone(), auth.clone()),
            contacts: pb::contacts_client::ContactsClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            line: pb::line_client::LineClient::with_interceptor(channel.clone(), auth),
            channel,
        })
    }

    /// The same connection, calling with another token.
    pub fn with_token(&self, token: &str) -> Result<Client, ConnectError> {
        Client::with_channel(self.channel.clone(), Some(token))
    }

    /// Logs in on this connection and returns a client that uses the token.
    pub async fn login(&self, member: &str, password: &str) -> Result<Client, Status> {
        let token = self
            .auth
            .clone()
            .login(pb::LoginRequest {
                member_id: member.into(),
                password: password.into(),
            })
            .await?
            .into_inner()
            .token;
        self.with_token(&token)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
