//! Dialing a peer's bridge and calling it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};
use works_certs::TenantId;
use works_proto::federation::v1 as pb;

use crate::error::BridgeError;
use crate::ids::MemberId;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to one peer's bridge.
pub struct PeerClient {
    inner: pb::bridge_client::BridgeClient<Channel>,
    channel: Channel,
    endpoint: String,
    /// The certificate chain the peer's server presented.
    pub server_chain: Vec<CertificateDer<'static>>,
}

/// What `Ping` tells about a peering.
#[derive(Debug, Clone)]
pub struct PingReport {
    pub tenant: String,
    pub round_trip: Duration,
    /// The peer's clock minus ours, corrected for half the round trip.
    pub clock_skew_ms: i64,
    pub version: String,
    pub peer_cert_not_after: Option<SystemTime>,
}

#[derive(Default)]
struct Handshake {
    failure: Option<BridgeError>,
    server_chain: Vec<CertificateDer<'static>>,
}

/// The endpoints of a list `host:port, host:port` in order, empty ones
/// skipped.
pub fn endpoint_list(endpoints: &str) -> impl Iterator<Item = &str> {
    endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

impl PeerClient {
    /// Connects to `endpoint` (`host:port`) expecting a server certificate
    /// that `config` accepts for the name `server_tenant`.
    /// Dials a peer at `endpoints`: one `host:port`, or several separated
    /// by commas (a company on several replicas), tried in order until one
    /// answers; the last one's error when none does.
    pub async fn connect(
        endpoints: &str,
        server_tenant: &TenantId,
        config: Arc<ClientConfig>,
    ) -> Result<PeerClient, BridgeError> {
        let mut last = None;
        for endpoint in endpoint_list(endpoints) {
            match Self::connect_one(endpoint, server_tenant, config.clone()).await {
                Ok(client) => return Ok(client),
                Err(e) => {
                    tracing::debug!(%endpoint, error = %e, "peer endpoint failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            BridgeError::Endpoint(endpoints.to_string(), "no endpoint given".into())
        }))
    }

    async fn connect_one(
        endpoint: &str,
        server_tenant: &TenantId,
        config: Arc<ClientConfig>,
    ) -> Result<PeerClient, BridgeError> {
        let endpoint = endpoint.trim().to_string();
        let server_name = ServerName::try_from(server_tenant.to_string())
            .map_err(|e| BridgeError::Endpoint(endpoint.clone(), e.to_string()))?;
        let uri: Uri = format!("http://{endpoint}").parse().map_err(
            |e: tonic::codegen::http::uri::InvalidUri| {
                BridgeError::Endpoint(endpoint.clone(), e.to_string())
            },
        )?;
        let handshake = Arc::new(Mutex::new(Handshake::default()));
        let connector = {
            let handshake = handshake.clone();
            let endpoint = endpoint.clone();
            tower::service_fn(move |_: Uri| {
                let handshake = handshake.clone();
                let endpoint = endpoint.clone();
                let config = config.clone();
                let server_name = server_name.clone();
                async move {
                    let record = |e: BridgeError| {
                        let text = e.to_string();
                        if let Ok(mut h) = handshake.lock() {
                            h.failure = Some(e);
                        }
                        std::io::Error::other(text)
                    };
                    let tcp = TcpStream::connect(&endpoint).await.map_err(|e| {
                        record(BridgeError::Unreachable {
                            endpoint: endpoint.clone(),
                            reason: e.to_string(),
                        })
                    })?;
                    let _ = tcp.set_nodelay(true);
                    let tls = TlsConnector::from(config)
                        .connect(server_name, tcp)
                        .await
                        .map_err(|e| {
                            record(BridgeError::Handshake {
                                endpoint: endpoint.clone(),
                                reason: e.to_string(),
                            })
                        })?;
                    if let Ok(mut h) = handshake.lock() {
                        h.server_chain = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                            .unwrap_or_default();
                    }
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            })
        };
        let channel = Endpoint::from(uri)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_with_connector(connector)
            .await;
        let mut state = handshake
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        let channel = match channel {
            Ok(channel) => channel,
            Err(e) => {
                return Err(state
                    .failure
                    .take()
                    .unwrap_or_else(|| BridgeError::Unreachable {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    }));
            }
        };
        Ok(PeerClient {
            inner: pb::bridge_client::BridgeClient::new(channel.clone()),
            channel,
            endpoint,
            server_chain: state.server_chain,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn redeem(
        &mut self,
        secret: Vec<u8>,
        me: &TenantId,
        my_endpoint: &str,
        my_ca: &CertificateDer<'_>,
    ) -> Result<String, BridgeError> {
        let response = self
            .inner
            .redeem(pb::RedeemRequest {
                secret,
                tenant: me.to_string(),
                endpoint: my_endpoint.to_string(),
                ca_certificate: my_ca.to_vec(),
            })
            .await
            .map_err(BridgeError::Refused)?;
        Ok(response.into_inner().tenant)
    }

    pub async fn ping(&mut self, me: &TenantId) -> Result<PingReport, BridgeError> {
        let sent_at = SystemTime::now();
        let started = Instant::now();
        let response = self
            .inner
            .ping(pb::PingRequest {
                from_tenant: me.to_string(),
                sent_at_ms: crate::server::now_ms(),
            })
            .await
            .map_err(BridgeError::Refused)?
            .into_inner();
        let round_trip = started.elapsed();
        let midpoint = sent_at + round_trip / 2;
        let ours = midpoint
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ok(PingReport {
            tenant: response.tenant,
            round_trip,
            clock_skew_ms: response.now_ms - ours,
            version: response.version,
            peer_cert_not_after: self
                .server_chain
                .first()
                .and_then(|leaf| works_certs::inspect(leaf).ok())
                .map(|info| info.not_after),
        })
    }

    pub async fn unpeer(&mut self, me: &TenantId) -> Result<(), BridgeError> {
        self.inner
            .unpeer(pb::UnpeerRequest {
                from_tenant: me.to_string(),
            })
            .await
            .map_err(BridgeError::Refused)?;
        Ok(())
    }

    /// Sends a friend request; with an invitation link the answer may be an
    /// immediate acceptance, with the recipient's profile.
    pub async fn send_friend_request(
        &mut self,
        request_id: &str,
        from: &crate::PublicProfile,
        to: &MemberId,
        invitation: Option<&str>,
    ) -> Result<Option<crate::PublicProfile>, BridgeError> {
        let ack = self
            .inner
            .send_friend_request(pb::FriendRequest {
                request_id: request_id.to_string(),
                from: from.user.to_string(),
                to: to.to_string(),
                from_profile: Some(to_pb(from)),
                invitation: invitation.unwrap_or_default().to_string(),
            })
            .await
            .map_err(BridgeError::Refused)?
            .into_inner();
        if !ack.accepted {
            return Ok(None);
        }
        let p = ack.profile.ok_or_else(|| {
            BridgeError::Malformed("an accepted request without a profile".into())
        })?;
        let user = answered_member(&p.user)?;
        if &user != to {
            return Err(BridgeError::Malformed(format!(
                "accepted by {user} instead of {to}"
            )));
        }
        Ok(Some(crate::PublicProfile {
            user,
            display_name: p.display_name,
            photo: p.photo,
            photo_content_type: p.photo_content_type,
            company: p.company,
        }))
    }

    pub async fn answer_friend_request(
        &mut self,
        request_id: &str,
        from: &crate::PublicProfile,
        to: &MemberId,
        accepted: bool,
    ) -> Result<(), BridgeError> {
        self.inner
            .answer_friend_request(pb::FriendAnswer {
                request_id: request_id.to_string(),
                from: from.user.to_string(),
                to: to.to_string(),
                accepted,
                from_profile: accepted.then(|| to_pb(from)),
            })
            .await
            .map_err(BridgeError::Refused)?;
        Ok(())
    }

    /// Asks the peer for one of its members' public profile.
    pub async fn lookup_user(
        &mut self,
        requester: &MemberId,
        user: &MemberId,
    ) -> Result<crate::PublicProfile, BridgeError> {
        let r = self
            .inner
            .lookup_user(pb::LookupUserRequest {
                requester: requester.to_string(),
                user: user.to_string(),
            })
            .await
            .map_err(BridgeError::Refused)?
            .into_inner();
        Ok(crate::PublicProfile {
            user: answered_member(&r.user)?,
            display_name: r.display_name,
            photo: r.photo,
            photo_content_type: r.photo_content_type,
            company: r.company,
        })
    }

    /// An attachment's bytes, in chunks, for our member `requester`. Refuses
    /// chunks out of order and more than `max_size` bytes in all; a stream
    /// cut short is an error, never a shorter file.
    pub async fn fetch_attachment(
        &mut self,
        requester: &MemberId,
        id: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let mut chunks = self
            .inner
            .fetch_attachment(pb::FetchAttachmentRequest {
                requester: requester.to_string(),
                attachment_id: id.to_string(),
            })
            .await
            .map_err(BridgeError::Refused)?
            .into_inner();
        let mut data = Vec::new();
        let mut total = None;
        while let Some(chunk) = chunks.message().await.map_err(BridgeError::Refused)? {
            if chunk.offset != data.len() as u64 {
                return Err(BridgeError::Malformed(format!(
                    "attachment chunk at offset {} where {} was expected",
                    chunk.offset,
                    data.len()
                )));
            }
            if chunk.total_size > max_size || (data.len() + chunk.data.len()) as u64 > max_size {
                return Err(BridgeError::Malformed(format!(
                    "attachment larger than the expected {max_size} bytes"
                )));
            }
            total = Some(chunk.total_size);
            data.extend_from_slice(&chunk.data);
        }
        match total {
            Some(t) if t == data.len() as u64 => Ok(data),
            _ => Err(BridgeError::Malformed(format!(
                "attachment stream ended after {} bytes",
                data.len()
            ))),
        }
    }

    /// Opens the relay stream: batches of envelopes out, acknowledgements in.
    /// The peer may take up to `ack_timeout` for each acknowledgement before
    /// the stream is given up and the batch retried.
    pub async fn open_relay(&mut self, ack_timeout: Duration) -> Result<RelayStream, BridgeError> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let acks = self
            .inner
            .relay(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(BridgeError::Refused)?
            .into_inner();
        // The stream is only as good as the certificates it was opened
        // with: the earliest expiry in the server's chain ends it. X.509
        // times are whole seconds, valid through their last one.
        let valid_until = self
            .server_chain
            .iter()
            .filter_map(|cert| works_certs::inspect(cert).ok())
            .map(|info| info.not_after + Duration::from_secs(1))
            .min();
        Ok(RelayStream {
            tx,
            acks,
            valid_until,
            ack_timeout,
        })
    }

    /// The verified connection, for calls of any shape (tests, tools).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The raw generated client, for calls this wrapper does not cover yet.
    pub fn raw(&mut self) -> &mut pb::bridge_client::BridgeClient<Channel> {
        &mut self.inner
    }
}

/// A member id in a peer's answer, parsed like any input from a peer.
fn answered_member(user: &str) -> Result<MemberId, BridgeError> {
    MemberId::parse(user).map_err(|e| BridgeError::Malformed(format!("invalid user: {e}")))
}

fn to_pb(p: &crate::PublicProfile) -> pb::PublicProfile {
    pb::PublicProfile {
        user: p.user.to_string(),
        display_name: p.display_name.clone(),
        photo: p.photo.clone(),
        photo_content_type: p.photo_content_type.clone(),
        company: p.company.clone(),
    }
}

/// An open relay stream to one peer.
pub struct RelayStream {
    tx: tokio::sync::mpsc::Sender<pb::EnvelopeBatch>,
    acks: tonic::Streaming<pb::Ack>,
    valid_until: Option<SystemTime>,
    /// How long the peer may take for each acknowledgement.
    ack_timeout: Duration,
}

impl RelayStream {
    /// Whether a certificate of the peer's chain has expired since the
    /// stream was opened: open a new one (whose handshake checks it again).
    pub fn outlived(&self) -> bool {
        self.valid_until
            .is_some_and(|until| SystemTime::now() >= until)
    }

    /// Sends one batch and waits for the peer's answer to each envelope, in
    /// order. Any failure leaves the stream unusable: open a new one.
    pub async fn send(
        &mut self,
        envelopes: Vec<pb::Envelope>,
    ) -> Result<Vec<crate::Outcome>, BridgeError> {
        let ids: Vec<String> = envelopes.iter().map(|e| e.event_id.clone()).collect();
        let batch = pb::EnvelopeBatch { envelopes };
        self.tx
            .send(batch)
            .await
            .map_err(|_| BridgeError::NoAnswer("the relay stream was closed".into()))?;
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            let ack = match tokio::time::timeout(self.ack_timeout, self.acks.message()).await {
                Err(_) => {
                    return Err(BridgeError::NoAnswer(format!(
                        "no acknowledgement within {:?}",
                        self.ack_timeout
                    )));
                }
                Ok(Err(status)) => return Err(BridgeError::Refused(status)),
                Ok(Ok(None)) => {
                    return Err(BridgeError::NoAnswer(
                        "the peer closed the relay stream".into(),
                    ));
                }
                Ok(Ok(Some(ack))) => ack,
            };
            if ack.event_id != id {
                return Err(BridgeError::Malformed(format!(
                    "acknowledgement for {} where {id} was expected",
                    ack.event_id
                )));
            }
            outcomes.push(if ack.retry {
                crate::Outcome::Retry(ack.refused)
            } else if ack.refused.is_empty() {
                crate::Outcome::Stored
            } else {
                crate::Outcome::Refused(ack.refused)
            });
        }
        Ok(outcomes)
    }
}
