//! The bridge server: a TLS accept loop feeding a tonic service that
//! identifies the calling peer on every call.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status, Streaming};
use works_certs::TenantId;
use works_proto::federation::v1 as pb;

use crate::error::{BridgeError, HandlerError, clip};
use crate::identity::{IdentityError, PeerCerts, TrustStore, names, verify_chain};
use crate::ids::MemberId;
use crate::limits::{ConnectionCap, Guarded, ServerLimits};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more wait their turn in the TCP backlog.
const MAX_HANDSHAKES: usize = 256;
/// Largest header block a peer may send; bridge calls carry no large
/// metadata.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// A peer that proved, with a valid invitation secret, who it is.
#[derive(Debug, Clone)]
pub struct NewPeer {
    pub tenant: TenantId,
    pub endpoint: String,
    /// The CA its certificate chains to; pin it.
    pub ca: CertificateDer<'static>,
    pub secret: Vec<u8>,
}

/// A member's public profile, as their company publishes it to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicProfile {
    pub user: MemberId,
    pub display_name: String,
    pub photo: Vec<u8>,
    pub photo_content_type: String,
    /// The company name: the fixed status shown to other companies.
    pub company: String,
}

impl PublicProfile {
    /// A profile that names its member and nothing else (a declined
    /// request carries no profile).
    pub fn bare(user: MemberId) -> Self {
        PublicProfile {
            user,
            display_name: String::new(),
            photo: Vec::new(),
            photo_content_type: String::new(),
            company: String::new(),
        }
    }
}

/// Bytes per attachment chunk on the bridge.
pub const ATTACHMENT_CHUNK: usize = 64 * 1024;

/// Most envelopes one batch may carry.
pub const MAX_BATCH: usize = 1000;

/// How often an open relay stream re-checks the certificate that opened it.
const RECHECK_IDENTITY: Duration = Duration::from_secs(1);

/// The receiver's answer for one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (now or before): the sender is done with it.
    Stored,
    /// Refused for good, with a reason fit for the sender.
    Refused(String),
    /// Not stored for now; the sender retries it, after everything before it.
    Retry(String),
}

/// What a node decides; the bridge has established who is asking, and
/// parsed every member id the request names: a member said to be the
/// caller's is checked to belong to `peer`, one said to be ours may still
/// be of any tenant.
#[tonic::async_trait]
pub trait BridgeHandler: Send + Sync + 'static {
    /// This node's tenant.
    fn tenant(&self) -> &TenantId;
    /// Checks the invitation secret and, when valid, pins the new peer.
    async fn redeem(&self, peer: NewPeer) -> Result<(), HandlerError>;
    /// Records a successful contact from a verified peer.
    async fn contact(&self, peer: &TenantId) -> Result<(), HandlerError>;
    /// The peer ended the peering.
    async fn unpeer(&self, peer: &TenantId) -> Result<(), HandlerError>;
    /// A member of the peer (`from`, checked to belong to `peer`, with their
    /// profile) asks `to`, one of ours, to be a contact.
    /// With an `invitation` issued by `to` the request is accepted at once:
    /// the answer is `to`'s profile.
    async fn friend_request(
        &self,
        peer: &TenantId,
        request_id: &str,
        from: PublicProfile,
        to: &MemberId,
        invitation: Option<&str>,
    ) -> Result<Option<PublicProfile>, HandlerError>;
    /// A member of the peer (`from`, checked) answered a request from `to`.
    async fn friend_answer(
        &self,
        peer: &TenantId,
        request_id: &str,
        from: PublicProfile,
        to: &MemberId,
        accepted: bool,
    ) -> Result<(), HandlerError>;
    /// A member of the peer asks for one of this node's members. `requester`
    /// is checked to belong to `peer` before this is called.
    async fn lookup_user(
        &self,
        peer: &TenantId,
        requester: &MemberId,
        user: &MemberId,
    ) -> Result<PublicProfile, HandlerError>;
    /// Envelopes from the peer's outbox, in order, as they came off the
    /// wire (the node reads what they carry): one outcome each, in the
    /// same order. An envelope is answered `Stored` only once it is durable.
    /// `chain` is the certificate the peer presents on this stream (a CA
    /// announcement is checked against it).
    async fn relay(
        &self,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        envelopes: Vec<pb::Envelope>,
    ) -> Vec<Outcome>;
    /// The bytes of an attachment for `requester` (checked to belong to
    /// `peer`), who must be in the room it was posted to.
    async fn attachment(
        &self,
        peer: &TenantId,
        requester: &MemberId,
        id: &str,
    ) -> Result<Vec<u8>, HandlerError>;
}

/// Serves the bridge on `listener` until `shutdown` resolves, within
/// `limits` (connections, preface deadline, keepalive, message size).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: TrustStore,
    handler: Arc<dyn BridgeHandler>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BridgeError> {
    let (conns, incoming) = mpsc::channel::<io::Result<BridgeConn>>(64);
    let acceptor = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        limits.clone(),
        conns,
    ));
    let service = BridgeService { trust, handler };
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .trace_fn(|req| {
            tracing::info_span!("bridge", rpc = %req.uri().path(), request_id = %ulid::Ulid::new())
        })
        .add_service(
            pb::bridge_server::BridgeServer::new(service)
                .max_decoding_message_size(limits.max_message_bytes),
        )
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown)
        .await;
    acceptor.abort();
    served.map_err(|e| BridgeError::Tls(format!("bridge server: {e}")))
}

/// Accepts TCP connections within the cap, then completes each TLS
/// handshake in its own task (bounded in number and in time) and hands the
/// connection, which must deliver the HTTP/2 preface in time, to tonic.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ServerLimits,
    conns: mpsc::Sender<io::Result<BridgeConn>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut cap = ConnectionCap::new("bridge", limits.max_connections);
    loop {
        let Ok(handshake) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match cap.accept(&listener).await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "bridge accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(connection) = cap.admit(addr) else {
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        let preface_timeout = limits.preface_timeout;
        tokio::spawn(async move {
            let handshaking = handshake;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    drop(handshaking);
                    let chain: Arc<[CertificateDer<'static>]> = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default();
                    let _ = conns
                        .send(Ok(BridgeConn {
                            tls: Guarded::new(tls, connection, addr, "bridge", preface_timeout),
                            certs: PeerCerts { chain },
                        }))
                        .await;
                }
                Ok(Err(e)) => {
                    tracing::info!(peer_addr = %addr, error = %e, "bridge handshake refused")
                }
                Err(_) => tracing::info!(peer_addr = %addr, "bridge handshake timed out"),
            }
        });
    }
}

/// A verified TLS connection with the client's certificate chain.
pub struct BridgeConn {
    tls: Guarded<TlsStream<TcpStream>>,
    certs: PeerCerts,
}

impl Connected for BridgeConn {
    type ConnectInfo = PeerCerts;
    fn connect_info(&self) -> PeerCerts {
        self.certs.clone()
    }
}

impl AsyncRead for BridgeConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for BridgeConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

struct BridgeService {
    trust: TrustStore,
    handler: Arc<dyn BridgeHandler>,
}

fn certs_of<T>(request: &Request<T>) -> Result<&PeerCerts, Status> {
    request
        .extensions()
        .get::<PeerCerts>()
        .filter(|c| !c.chain.is_empty())
        .ok_or_else(|| Status::unauthenticated("no client certificate"))
}

/// The tenant a certificate chain proves, checked against the pins (and the
/// clock) as they are now.
fn identify(trust: &TrustStore, certs: &PeerCerts) -> Result<TenantId, Status> {
    trust.identify(certs).map_err(|e| {
        tracing::warn!(error = %e, "bridge call refused: peer not identified");
        match e {
            IdentityError::Spoofing { .. } => Status::permission_denied(e.to_string()),
            IdentityError::Unknown(_) | IdentityError::Invalid(_) => {
                Status::unauthenticated(e.to_string())
            }
        }
    })
}

impl BridgeService {
    /// The calling peer's tenant, from its verified certificate only.
    fn peer<T>(&self, request: &Request<T>) -> Result<TenantId, Status> {
        identify(&self.trust, certs_of(request)?)
    }

    /// Checks that a tenant named in the request is the caller's own.
    fn claim(peer: &TenantId, field: &str, claimed: &str) -> Result<(), Status> {
        let claimed = TenantId::parse(claimed).map_err(|e| malformed(peer, field, e))?;
        Self::claim_tenant(peer, field, &claimed)
    }

    fn claim_tenant(peer: &TenantId, field: &str, claimed: &TenantId) -> Result<(), Status> {
        if claimed != peer {
            tracing::warn!(peer = %peer, claimed = %claimed, field, "bridge call refused: spoofed tenant");
            return Err(Status::permission_denied(format!(
                "{field} names {claimed}, but the caller's certificate is {peer}'s"
            )));
        }
        Ok(())
    }

    /// Parses a member id the request names as the caller's member, and
    /// checks that it belongs to the caller.
    fn claim_member(peer: &TenantId, field: &str, member: &str) -> Result<MemberId, Status> {
        let member = MemberId::parse(member).map_err(|e| malformed(peer, field, e))?;
        Self::claim_tenant(peer, field, member.tenant())?;
        Ok(member)
    }
}

/// A malformed id in `field` of a request.
fn malformed(peer: &TenantId, field: &str, error: impl std::fmt::Display) -> Status {
    tracing::info!(peer = %peer, field, error = %error, "bridge request refused: malformed id");
    Status::invalid_argument(format!("invalid {field}: {error}"))
}

/// Parses a member id the request names as one of this node's members. An
/// id that cannot be anyone's answers "not found" (`not_found` says what),
/// as a member this node does not show the caller does: the other company
/// learns nothing more of ours than that.
fn ours(
    peer: &TenantId,
    field: &str,
    member: &str,
    not_found: impl FnOnce() -> String,
) -> Result<MemberId, Status> {
    MemberId::parse(member).map_err(|e| {
        tracing::info!(peer = %peer, field, error = %e, "bridge request refused: malformed id of ours");
        Status::not_found(not_found())
    })
}

#[tonic::async_trait]
impl pb::bridge_server::Bridge for BridgeService {
    async fn redeem(
        &self,
        request: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        let chain = certs_of(&request)?.chain.clone();
        let r = request.into_inner();
        let tenant = TenantId::parse(&r.tenant)
            .map_err(|e| Status::invalid_argument(format!("invalid tenant: {e}")))?;
        if &tenant == self.handler.tenant() {
            return Err(Status::invalid_argument(
                "a node cannot peer with its own tenant",
            ));
        }
        if r.ca_certificate.is_empty() {
            return Err(Status::invalid_argument("ca_certificate is missing"));
        }
        let ca = CertificateDer::from(r.ca_certificate);
        verify_chain(&chain, std::slice::from_ref(&ca)).map_err(|reason| {
            tracing::warn!(tenant = %tenant, reason = %reason, "redeem refused: certificate does not chain to the presented CA");
            Status::unauthenticated(format!("the client certificate does not chain to the presented CA: {reason}"))
        })?;
        if !names(&chain[0], &tenant) {
            tracing::warn!(tenant = %tenant, "redeem refused: certificate names another tenant");
            return Err(Status::permission_denied(format!(
                "the client certificate does not name {tenant}"
            )));
        }
        if r.endpoint.trim().is_empty() {
            return Err(Status::invalid_argument("endpoint is missing"));
        }
        self.handler
            .redeem(NewPeer {
                tenant,
                endpoint: r.endpoint.trim().to_string(),
                ca,
                secret: r.secret,
            })
            .await?;
        Ok(Response::new(pb::RedeemResponse {
            tenant: self.handler.tenant().to_string(),
        }))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let peer = self.peer(&request)?;
        Self::claim(&peer, "from_tenant", &request.get_ref().from_tenant)?;
        self.handler.contact(&peer).await?;
        Ok(Response::new(pb::PingResponse {
            tenant: self.handler.tenant().to_string(),
            now_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn unpeer(
        &self,
        request: Request<pb::UnpeerRequest>,
    ) -> Result<Response<pb::UnpeerResponse>, Status> {
        let peer = self.peer(&request)?;
        Self::claim(&peer, "from_tenant", &request.get_ref().from_tenant)?;
        self.handler.unpeer(&peer).await?;
        Ok(Response::new(pb::UnpeerResponse {}))
    }

    async fn send_friend_request(
        &self,
        request: Request<pb::FriendRequest>,
    ) -> Result<Response<pb::FriendRequestAck>, Status> {
        let peer = self.peer(&request)?;
        let r = request.into_inner();
        let from = sender(&peer, &r.from, r.from_profile)?;
        check_request_id(&r.request_id)?;
        let to = ours(&peer, "to", &r.to, || format!("user {}", clip(&r.to)))?;
        let invitation = (!r.invitation.is_empty()).then_some(r.invitation.as_str());
        let accepted = self
            .handler
            .friend_request(&peer, &r.request_id, from, &to, invitation)
            .await?;
        Ok(Response::new(pb::FriendRequestAck {
            accepted: accepted.is_some(),
            profile: accepted.map(|p| pb::PublicProfile {
                user: p.user.to_string(),
                display_name: p.display_name,
                photo: p.photo,
                photo_content_type: p.photo_content_type,
                company: p.company,
            }),
        }))
    }

    async fn answer_friend_request(
        &self,
        request: Request<pb::FriendAnswer>,
    ) -> Result<Response<pb::FriendAnswerAck>, Status> {
        let peer = self.peer(&request)?;
        let r = request.into_inner();
        let from = if r.accepted {
            sender(&peer, &r.from, r.from_profile)?
        } else {
            PublicProfile::bare(Self::claim_member(&peer, "from", &r.from)?)
        };
        check_request_id(&r.request_id)?;
        let to = ours(&peer, "to", &r.to, || {
            format!("friend request {}", clip(&r.request_id))
        })?;
        self.handler
            .friend_answer(&peer, &r.request_id, from, &to, r.accepted)
            .await?;
        Ok(Response::new(pb::FriendAnswerAck {}))
    }

    async fn lookup_user(
        &self,
        request: Request<pb::LookupUserRequest>,
    ) -> Result<Response<pb::LookupUserResponse>, Status> {
        let peer = self.peer(&request)?;
        let r = request.into_inner();
        let requester = Self::claim_member(&peer, "requester", &r.requester)?;
        let user = ours(&peer, "user", &r.user, || format!("user {}", clip(&r.user)))?;
        let profile = self.handler.lookup_user(&peer, &requester, &user).await?;
        Ok(Response::new(pb::LookupUserResponse {
            user: profile.user.to_string(),
            display_name: profile.display_name,
            photo: profile.photo,
            photo_content_type: profile.photo_content_type,
            company: profile.company,
        }))
    }

    type RelayStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Ack, Status>> + Send>>;

    async fn relay(
        &self,
        request: Request<Streaming<pb::EnvelopeBatch>>,
    ) -> Result<Response<Self::RelayStream>, Status> {
        let peer = self.peer(&request)?;
        let certs = certs_of(&request)?.clone();
        let trust = self.trust.clone();
        let mut inbound = request.into_inner();
        let handler = self.handler.clone();
        let (acks, out) = mpsc::channel::<Result<pb::Ack, Status>>(4);
        tokio::spawn(async move {
            let mut checked = std::time::Instant::now();
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(status) => {
                        // A batch too large or malformed to decode: the peer
                        // gets the precise status; a peer that went away
                        // gets nothing, as it listens no more.
                        match status.code() {
                            tonic::Code::OutOfRange
                            | tonic::Code::ResourceExhausted
                            | tonic::Code::Internal
                            | tonic::Code::InvalidArgument => tracing::warn!(
                                peer = %peer,
                                error = %status,
                                "relay batch refused: it cannot be decoded"
                            ),
                            _ => {
                                tracing::debug!(peer = %peer, error = %status, "relay stream ended")
                            }
                        }
                        let _ = acks.send(Err(status)).await;
                        return;
                    }
                };
                // A stream lives for hours: the certificate that opened it
                // must still hold (not expired, its CA still pinned) while
                // it carries batches, checked at most once a second.
                if checked.elapsed() >= RECHECK_IDENTITY {
                    if let Err(status) = identify(&trust, &certs) {
                        tracing::warn!(peer = %peer, error = %status.message(), "relay stream closed: the peer's certificate no longer holds");
                        let _ = acks.send(Err(status)).await;
                        return;
                    }
                    checked = std::time::Instant::now();
                }
                if batch.envelopes.len() > MAX_BATCH {
                    let _ = acks
                        .send(Err(Status::invalid_argument(format!(
                            "a batch carries at most {MAX_BATCH} envelopes"
                        ))))
                        .await;
                    return;
                }
                let envelopes = batch.envelopes;
                let ids: Vec<String> = envelopes.iter().map(|e| e.event_id.clone()).collect();
                let outcomes = handler.relay(&peer, &certs.chain, envelopes).await;
                for (event_id, outcome) in ids.into_iter().zip(outcomes) {
                    let ack = match outcome {
                        Outcome::Stored => pb::Ack {
                            event_id,
                            refused: String::new(),
                            retry: false,
                        },
                        Outcome::Refused(reason) => pb::Ack {
                            event_id,
                            refused: reason,
                            retry: false,
                        },
                        Outcome::Retry(reason) => pb::Ack {
                            event_id,
                            refused: reason,
                            retry: true,
                        },
                    };
                    if acks.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    type FetchAttachmentStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AttachmentChunk, Status>> + Send>>;

    async fn fetch_attachment(
        &self,
        request: Request<pb::FetchAttachmentRequest>,
    ) -> Result<Response<Self::FetchAttachmentStream>, Status> {
        let peer = self.peer(&request)?;
        let r = request.into_inner();
        let requester = Self::claim_member(&peer, "requester", &r.requester)?;
        let data = self
            .handler
            .attachment(&peer, &requester, &r.attachment_id)
            .await?;
        let total = data.len() as u64;
        let chunks: Vec<Result<pb::AttachmentChunk, Status>> = if data.is_empty() {
            vec![Ok(pb::AttachmentChunk {
                offset: 0,
                data: Vec::new(),
                total_size: 0,
            })]
        } else {
            data.chunks(ATTACHMENT_CHUNK)
                .enumerate()
                .map(|(i, chunk)| {
                    Ok(pb::AttachmentChunk {
                        offset: (i * ATTACHMENT_CHUNK) as u64,
                        data: chunk.to_vec(),
                        total_size: total,
                    })
                })
                .collect()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

fn check_request_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Status::invalid_argument(
            "request_id must be 1 to 64 letters or digits",
        ));
    }
    Ok(())
}

/// The sender of a request (`from`, the caller's member) with the profile
/// sent along, which must be the sender's own. The profile is compared
/// first, as sent, so a sender whose id is not even valid is told whose
/// profile it sent.
fn sender(
    peer: &TenantId,
    from: &str,
    profile: Option<pb::PublicProfile>,
) -> Result<PublicProfile, Status> {
    let p = profile.ok_or_else(|| Status::invalid_argument("from_profile is missing"))?;
    if !p.user.eq_ignore_ascii_case(from) {
        tracing::warn!(peer = %peer, "bridge call refused: a profile of someone else sent along");
        return Err(Status::permission_denied(format!(
            "from_profile is {}'s, not {}'s",
            clip(&p.user),
            clip(from)
        )));
    }
    Ok(PublicProfile {
        user: BridgeService::claim_member(peer, "from", from)?,
        display_name: p.display_name,
        photo: p.photo,
        photo_content_type: p.photo_content_type,
        company: p.company,
    })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> TenantId {
        TenantId::parse("b.example").unwrap()
    }

    #[track_caller]
    fn check<T: std::fmt::Debug>(got: Result<T, Status>, code: tonic::Code, fragment: &str) {
        let status = got.expect_err("a refusal");
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(fragment),
            "{:?} lacks {fragment:?}",
            status.message()
        );
    }

    #[test]
    fn a_member_of_the_caller_is_parsed_once_at_the_edge() {
        let member = BridgeService::claim_member(&peer(), "from", " Mallory@B.example ").unwrap();
        assert_eq!(member.as_str(), "mallory@b.example");
        check(
            BridgeService::claim_member(&peer(), "from", "mallory"),
            tonic::Code::InvalidArgument,
            "invalid from: member id \"mallory\" must have the form name@tenant",
        );
        check(
            BridgeService::claim_member(&peer(), "requester", "x y@b.example"),
            tonic::Code::InvalidArgument,
            "invalid requester: member name",
        );
        check(
            BridgeService::claim_member(&peer(), "members", "mallory@c.example"),
            tonic::Code::PermissionDenied,
            "members names c.example, but the caller's certificate is b.example's",
        );
    }

    #[test]
    fn a_malformed_member_of_ours_is_not_found() {
        let ok = ours(&peer(), "user", "Alice@a.example", || "unused".into()).unwrap();
        assert_eq!(ok.as_str(), "alice@a.example");
        check(
            ours(&peer(), "user", "nobody", || "user nobody".into()),
            tonic::Code::NotFound,
            "user nobody",
        );
    }

    #[test]
    fn the_profile_sent_along_must_be_the_senders() {
        let profile = |user: &str| {
            Some(pb::PublicProfile {
                user: user.into(),
                ..Default::default()
            })
        };
        let from = sender(&peer(), "mallory@b.example", profile("MALLORY@b.example")).unwrap();
        assert_eq!(from.user.as_str(), "mallory@b.example");
        check(
            sender(&peer(), "mallory@b.example", None),
            tonic::Code::InvalidArgument,
            "from_profile is missing",
        );
        check(
            sender(&peer(), "mallory@b.example", profile("eve@b.example")),
            tonic::Code::PermissionDenied,
            "from_profile is eve@b.example's, not mallory@b.example's",
        );
        check(
            sender(&peer(), "mallory@c.example", profile("mallory@c.example")),
            tonic::Code::PermissionDenied,
            "from names c.example",
        );
    }
}
