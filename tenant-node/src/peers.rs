//! Peering with other companies' nodes: invitations, accepting them, listing,
//! testing and removing peers. Admins only.
//!
//! An invitation token carries this node's tenant id, bridge endpoint, CA
//! fingerprint and a one-time secret; only the secret's hash is stored here.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use works_bridge::{BridgeError, PeerClient, tls};

use crate::admission::{self, Announcement};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::model::Caller;
use crate::store::audit::{self, NewEntry};
use crate::store::now_ms;
use crate::store::outbox::OutboxState;
use crate::store::peers::{self as peer_store, PeerRow, PeerSource};
use crate::tenant::Tenant;
use crate::wire::status::from_peer;
use crate::wire::{CAS_TOPIC, Control};

/// How long a CA change waits for peers to acknowledge it before it
/// answers; the others are told when they are back.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(5);

const TOKEN_PREFIX: &str = "wpi1.";
pub const DEFAULT_INVITATION_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_INVITATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// A certificate closer than this to its end is reported by `peer test`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
/// Clocks further apart than this are reported by `peer test`.
pub const SKEW_WARNING_MS: i64 = 30_000;

/// What an invitation token carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvitationToken {
    pub tenant: String,
    pub endpoint: String,
    pub ca_sha256: String,
    pub secret: String,
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_tenant: Option<String>,
}

impl InvitationToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(token: &str) -> Result<InvitationToken> {
        let bad = |why: &str| Error::invalid("token", format!("not a peering invitation: {why}"));
        let body = token
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| bad("it must start with wpi1."))?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not base64url"))?;
        let token: InvitationToken =
            serde_json::from_slice(&json).map_err(|_| bad("its fields are malformed"))?;
        TenantId::parse(&token.tenant).map_err(|e| bad(&e.to_string()))?;
        if token.ca_sha256.len() != 64 || !token.ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the CA fingerprint is not a SHA-256 hex digest"));
        }
        // One `host:port`, or several separated by commas (replicas).
        if works_bridge::client::endpoint_list(&token.endpoint)
            .next()
            .is_none()
        {
            return Err(bad("the endpoint is empty"));
        }
        if works_bridge::client::endpoint_list(&token.endpoint).count() > 16 {
            return Err(bad("it names more than 16 endpoints"));
        }
        Ok(token)
    }

    fn secret_bytes(&self) -> Result<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(&self.secret).map_err(|_| {
            Error::invalid("token", "not a peering invitation: the secret is malformed")
        })
    }
}

pub fn secret_hash(secret: &[u8]) -> String {
    works_certs::sha256_hex(secret)
}

pub struct Invitation {
    pub token: String,
    pub expires_at_ms: i64,
}

/// A peer as an admin sees it.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub tenant: TenantId,
    pub endpoint: String,
    pub source: PeerSource,
    /// `active`, or `failing` when the last attempt failed after the last contact.
    pub state: &'static str,
    pub created_at_ms: i64,
    pub last_contact_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Events waiting in the outbox for this peer, and the age of the oldest.
    pub queue_depth: u64,
    pub lag_ms: u64,
    pub ca_fingerprints: Vec<String>,
}

/// This node's CA, as admins see it.
#[derive(Debug, Clone)]
pub struct CaStatus {
    pub fingerprint: String,
    pub not_after_ms: i64,
    pub node_cert_not_after_ms: i64,
    /// The CA being retired, while a change-over is under way.
    pub previous_fingerprint: Option<String>,
}

/// What each peer said to a CA announcement.
#[derive(Debug, Clone)]
pub struct PeerNotice {
    pub tenant: TenantId,
    pub told: bool,
    pub detail: String,
}

/// One line of `peer test`.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

pub struct PeerTest {
    pub tenant: TenantId,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Tenant {
    pub async fn invite_peer(
        &self,
        caller: &Caller,
        for_tenant: Option<&TenantId>,
        ttl: Option<Duration>,
    ) -> Result<Invitation> {
        caller.require_admin()?;
        if for_tenant == Some(&self.id) {
            return Err(Error::invalid(
                "for_tenant",
                "a node cannot peer with its own tenant",
            ));
        }
        let ttl = ttl.unwrap_or(DEFAULT_INVITATION_TTL);
        if ttl.is_zero() || ttl > MAX_INVITATION_TTL {
            return Err(Error::invalid(
                "ttl",
                "must be between 1 second and 30 days",
            ));
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let expires_at_ms = now_ms() + ttl.as_millis() as i64;
        self.store
            .insert_invitation(
                &secret_hash(&secret),
                for_tenant,
                caller.member.as_str(),
                expires_at_ms,
            )
            .await?;
        let token = InvitationToken {
            tenant: self.id.to_string(),
            endpoint: self.bridge_endpoint(),
            ca_sha256: works_certs::fingerprint(self.identity().ca()),
            secret: URL_SAFE_NO_PAD.encode(secret),
            expires_at_ms,
            for_tenant: for_tenant.map(|t| t.to_string()),
        };
        self.record(NewEntry::new("peer.invited", &caller.member).detail(
            match &token.for_tenant {
                Some(t) => format!("invitation for {t}, expires at {expires_at_ms}"),
                None => format!("invitation for any tenant, expires at {expires_at_ms}"),
            },
        ))
        .await?;
        tracing::info!(by = %caller.member, expires_at_ms, "peering invitation issued");
        Ok(Invitation {
            token: token.encode(),
            expires_at_ms,
        })
    }

    /// Dials the inviting node, checks its CA against the token's
    /// fingerprint, redeems the secret and pins the peer on both sides.
    pub async fn accept_peer(&self, caller: &Caller, token: &str) -> Result<PeerStatus> {
        caller.require_admin()?;
        let token = InvitationToken::decode(token)?;
        let peer =
            TenantId::parse(&token.tenant).map_err(|e| Error::invalid("token", e.to_string()))?;
        if peer == self.id {
            return Err(Error::invalid(
                "token",
                "this invitation is from this node's own tenant",
            ));
        }
        if peer.as_str() == crate::ids::LINE_TENANT {
            return Err(Error::invalid(
                "token",
                "no company can be line.invalid, where LINE users live in rooms",
            ));
        }
        if self.store.peer(&peer).await?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "already peered with {peer}; remove that peering first"
            )));
        }
        if token.expires_at_ms <= now_ms() {
            return Err(Error::FailedPrecondition(format!(
                "the invitation from {peer} has expired; ask for a new one"
            )));
        }
        let seen_ca = std::sync::Arc::new(std::sync::Mutex::new(None::<CertificateDer<'static>>));
        let config =
            tls::client_config_fingerprint(&self.identity(), &token.ca_sha256, seen_ca.clone())
                .map_err(|e| Error::Internal(e.to_string()))?;
        let mut client = PeerClient::connect(&token.endpoint, &peer, config)
            .await
            .map_err(|e| from_peer(&peer, e))?;
        client
            .redeem(
                token.secret_bytes()?,
                &self.id,
                &self.bridge_endpoint(),
                self.identity().ca(),
            )
            .await
            .map_err(|e| from_peer(&peer, e))?;
        let ca = seen_ca
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .ok_or_else(|| {
                Error::Internal("the peer's CA was not captured during the handshake".into())
            })?;
        self.pinnable(&peer, std::slice::from_ref(&ca))?;
        let ca_pem = works_certs::to_pem(&ca);
        let mut w = self.store.begin_write().await?;
        peer_store::insert_peer(
            &mut w.tx,
            &peer,
            &token.endpoint,
            &ca_pem,
            PeerSource::Invitation,
        )
        .await?;
        let detail = format!("endpoint {}, CA sha256 {}", token.endpoint, token.ca_sha256);
        let entry = NewEntry::new("peer.accepted", &caller.member)
            .peer(&peer)
            .detail(detail);
        audit::append(&mut w.tx, &entry, now_ms()).await?;
        w.commit().await?;
        self.pin(&peer, vec![ca]);
        tracing::info!(peer = %peer, by = %caller.member, "peering accepted");
        self.peer_status(&peer).await
    }

    /// Redeems an invitation this node issued (called through the bridge).
    pub async fn redeem_invitation(
        &self,
        peer: &TenantId,
        endpoint: &str,
        ca: CertificateDer<'static>,
        secret: &[u8],
    ) -> Result<()> {
        self.pinnable(peer, std::slice::from_ref(&ca))?;
        let hash = secret_hash(secret);
        let mut w = self.store.begin_write().await?;
        let Some(invitation) = peer_store::invitation(&mut w.tx, &hash).await? else {
            return Err(Error::PermissionDenied("unknown invitation secret".into()));
        };
        if invitation.used_at_ms.is_some() {
            return Err(Error::PermissionDenied(
                "this invitation was already used".into(),
            ));
        }
        if invitation.expires_at_ms <= now_ms() {
            return Err(Error::PermissionDenied(
                "this invitation has expired".into(),
            ));
        }
        if let Some(intended) = &invitation.for_tenant
            && intended != peer.as_str()
        {
            return Err(Error::PermissionDenied(format!(
                "this invitation is for {intended}, not {peer}"
            )));
        }
        if !peer_store::use_invitation(&mut w.tx, &hash, peer).await? {
            return Err(Error::PermissionDenied(
                "this invitation was already used".into(),
            ));
        }
        peer_store::insert_peer(
            &mut w.tx,
            peer,
            endpoint,
            &works_certs::to_pem(&ca),
            PeerSource::Invitation,
        )
        .await?;
        let detail = format!(
            "endpoint {endpoint}, CA sha256 {}",
            works_certs::fingerprint(&ca)
        );
        let entry = NewEntry::new("peer.redeemed", format!("peer:{peer}"))
            .peer(peer)
            .detail(detail);
        audit::append(&mut w.tx, &entry, now_ms()).await?;
        w.commit().await?;
        self.pin(peer, vec![ca]);
        tracing::info!(peer = %peer, "peering invitation redeemed");
        Ok(())
    }

    pub async fn list_peers(&self, caller: &Caller) -> Result<Vec<PeerStatus>> {
        caller.require_admin()?;
        let mut out = Vec::new();
        for row in self.store.peers().await? {
            out.push(self.status_of(row).await?);
        }
        Ok(out)
    }

    /// A peer row with its relay queue: how many envelopes wait and how
    /// long the oldest has waited.
    async fn status_of(&self, row: PeerRow) -> Result<PeerStatus> {
        let depth = self.queue_depth(&row.tenant).await?;
        let mut status = status_of(row);
        status.queue_depth = depth.queued;
        status.lag_ms = depth
            .oldest_at_ms
            .map(|oldest| (now_ms() - oldest).max(0) as u64)
            .unwrap_or(0);
        Ok(status)
    }

    async fn peer_status(&self, peer: &TenantId) -> Result<PeerStatus> {
        let row = self
            .store
            .peer(peer)
            .await?
            .ok_or_else(|| Error::NotFound(format!("peer {peer}")))?;
        self.status_of(row).await
    }

    /// Tells every peer that this node is up (a `Ping` each, one after
    /// another), so that what they queued for us while we were away goes
    /// out now instead of at their next retry. Best effort: a peer that
    /// cannot be reached now hears from us when we next relay to it.
    pub async fn greet_peers(&self) {
        let peers = match self.store.peers().await {
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the peers to greet");
                return;
            }
        };
        for row in peers {
            let greeted = match self.dial(&row).await {
                Ok(mut client) => client.ping(&self.id).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match greeted {
                Ok(()) => {
                    let _ = self.store.peer_contacted(&row.tenant).await;
                }
                Err(e) => {
                    tracing::info!(peer = %row.tenant, error = %e, "peer not reachable at start-up")
                }
            }
        }
    }

    /// Checks a peering end to end and says precisely what is wrong.
    pub async fn test_peer(&self, caller: &Caller, tenant: &TenantId) -> Result<PeerTest> {
        caller.require_admin()?;
        let row = self
            .store
            .peer(tenant)
            .await?
            .ok_or_else(|| Error::NotFound(format!("peer {tenant}")))?;
        let mut checks = Vec::new();
        let own_expiry = self
            .identity()
            .chain
            .first()
            .and_then(|c| works_certs::inspect(c).ok())
            .map(|i| i.not_after);
        if let Some(not_after) = own_expiry {
            checks.push(expiry_check("own certificate", not_after));
        }
        match self.dial(&row).await {
            Err(e) => {
                let name = match &e {
                    BridgeError::Unreachable { .. } | BridgeError::Endpoint(..) => "reachable",
                    _ => "handshake",
                };
                checks.push(Check {
                    name,
                    ok: false,
                    detail: e.to_string(),
                });
                self.store.peer_failed(tenant, &e.to_string()).await?;
            }
            Ok(mut client) => {
                checks.push(Check {
                    name: "reachable",
                    ok: true,
                    detail: row.endpoint.clone(),
                });
                checks.push(Check {
                    name: "handshake",
                    ok: true,
                    detail: format!(
                        "TLS 1.3, certificate of {tenant} verified against the pinned CA"
                    ),
                });
                match client.ping(&self.id).await {
                    Err(e) => {
                        checks.push(Check {
                            name: "accepted",
                            ok: false,
                            detail: e.to_string(),
                        });
                        self.store.peer_failed(tenant, &e.to_string()).await?;
                    }
                    Ok(report) => {
                        checks.push(Check {
                            name: "accepted",
                            ok: true,
                            detail: format!(
                                "{} answers as a peer (version {})",
                                report.tenant, report.version
                            ),
                        });
                        checks.push(Check {
                            name: "round trip",
                            ok: true,
                            detail: format!("{:.1} ms", report.round_trip.as_secs_f64() * 1000.0),
                        });
                        checks.push(Check {
                            name: "clock skew",
                            ok: report.clock_skew_ms.abs() <= SKEW_WARNING_MS,
                            detail: format!(
                                "{:+} ms (tolerated: ±{} ms)",
                                report.clock_skew_ms, SKEW_WARNING_MS
                            ),
                        });
                        if let Some(not_after) = report.peer_cert_not_after {
                            checks.push(expiry_check("peer certificate", not_after));
                        }
                        self.store.peer_contacted(tenant).await?;
                    }
                }
            }
        }
        Ok(PeerTest {
            ok: checks.iter().all(|c| c.ok),
            tenant: tenant.clone(),
            checks,
        })
    }

    /// Ends a peering on both sides; returns whether the peer was told.
    pub async fn remove_peer(&self, caller: &Caller, tenant: &TenantId) -> Result<(bool, String)> {
        caller.require_admin()?;
        let row = self
            .store
            .peer(tenant)
            .await?
            .ok_or_else(|| Error::NotFound(format!("peer {tenant}")))?;
        if row.source == PeerSource::Config {
            return Err(Error::FailedPrecondition(format!(
                "{tenant} is declared in node.toml; remove it there and restart"
            )));
        }
        let told = match self.dial(&row).await {
            Ok(mut client) => client.unpeer(&self.id).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.store.delete_peer(tenant).await?;
        self.trust.unpin(tenant);
        self.hub.ring_peers_changed();
        // Its deliverer closes the queue: nothing more can reach it.
        self.outbox.wake(tenant);
        let detail = match &told {
            Ok(()) => "the peer was told".to_string(),
            Err(e) => format!("the peer could not be told: {e}"),
        };
        self.record(
            NewEntry::new("peer.removed", &caller.member)
                .peer(tenant)
                .detail(detail),
        )
        .await?;
        tracing::info!(peer = %tenant, by = %caller.member, told = told.is_ok(), "peering removed");
        Ok(match told {
            Ok(()) => (true, format!("{tenant} removed this node too")),
            Err(e) => (
                false,
                format!("removed here, but {tenant} could not be told: {e}"),
            ),
        })
    }

    /// The peer ended the peering (called through the bridge).
    pub async fn peer_ended(&self, peer: &TenantId) -> Result<()> {
        self.store.delete_peer(peer).await?;
        self.trust.unpin(peer);
        self.hub.ring_peers_changed();
        self.outbox.wake(peer);
        self.record(NewEntry::new("peer.ended", format!("peer:{peer}")).peer(peer))
            .await?;
        tracing::info!(peer = %peer, "peer ended the peering");
        Ok(())
    }

    /// The trust store as the `peers` table has it now: another replica of
    /// this node peered, unpeered or took a CA change-over (it rang).
    pub(crate) async fn reload_trust(&self) -> Result<()> {
        let stored = self.store.peers().await?;
        for pinned in self.trust.tenants() {
            if !stored.iter().any(|p| p.tenant == pinned) {
                self.trust.unpin(&pinned);
            }
        }
        for peer in stored {
            match works_certs::certificates(&peer.ca_pem) {
                Ok(cas) if self.trust.anchors(&peer.tenant).as_ref() != Some(&cas) => {
                    if let Err(e) = self.trust.pin(peer.tenant.clone(), cas) {
                        tracing::error!(peer = %peer.tenant, error = %e, "peer CA not trusted");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(peer = %peer.tenant, error = %e, "stored peer CA is unreadable; peer not trusted")
                }
            }
        }
        Ok(())
    }

    /// Pins every stored peer and applies the peers declared in the config.
    pub async fn load_peers(&self, declared: &[(TenantId, String, String)]) -> Result<()> {
        for (tenant, endpoint, ca_pem) in declared {
            self.store
                .upsert_declared_peer(tenant, endpoint, ca_pem)
                .await?;
        }
        for peer in self.store.peers().await? {
            match works_certs::certificates(&peer.ca_pem) {
                Ok(cas) => self.pin(&peer.tenant, cas),
                Err(e) => {
                    tracing::error!(peer = %peer.tenant, error = %e, "stored peer CA is unreadable; peer not trusted")
                }
            }
        }
        Ok(())
    }
}

impl Tenant {
    pub fn ca_status(&self, caller: &Caller) -> Result<CaStatus> {
        caller.require_admin()?;
        let ca = self
            .tls_files
            .load_ca()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let previous = self
            .tls_files
            .load_previous_ca()
            .map_err(|e| Error::Internal(e.to_string()))?
            .and_then(|pem| works_certs::first_certificate(&pem).ok())
            .map(|der| works_certs::fingerprint(&der));
        let ms = |der: &[u8]| {
            works_certs::inspect(der)
                .ok()
                .and_then(|i| i.not_after.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        };
        let identity = self.identity();
        Ok(CaStatus {
            fingerprint: ca.fingerprint(),
            not_after_ms: ms(ca.der()),
            node_cert_not_after_ms: identity.chain.first().map(|c| ms(c)).unwrap_or(0),
            previous_fingerprint: previous,
        })
    }

    fn in_change_over(&self) -> Result<bool> {
        Ok(self.tls_files.load_previous_ca()?.is_some())
    }

    /// Presents `node` on the bridge from now on, as server and as client.
    fn switch_to(&self, node: &works_certs::NodeCert) -> Result<()> {
        let identity = works_bridge::NodeIdentity::from_node_cert(node)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.set_identity(identity)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Starts a CA change-over: a new CA and node certificate; every peer is
    /// told, through the outbox, to trust both CAs, and this node presents
    /// the new certificate from now on, except to a peer that has not
    /// acknowledged the announcement yet (it gets the previous one, which
    /// it trusts). The answer says which peers acknowledged within a few
    /// seconds; the others hear it when they are back.
    pub async fn rotate_ca(&self, caller: &Caller) -> Result<(CaStatus, Vec<PeerNotice>)> {
        caller.require_admin()?;
        if self.in_change_over()? {
            return Err(Error::FailedPrecondition(
                "a CA change-over is already under way; retire the previous CA first".into(),
            ));
        }
        let old_ca = self.identity().ca().clone();
        let previous = self.identity();
        let (new_ca, node) = self
            .tls_files
            .rotate(&self.id, &[])
            .map_err(|e| Error::Internal(format!("cannot rotate the CA: {e}")))?;
        let both = vec![old_ca, new_ca.der().clone()];
        self.set_previous_identity(Some(previous));
        let queued = self
            .announce_cas(
                &both,
                NewEntry::new("ca.rotated", &caller.member)
                    .detail(format!("new CA sha256 {}", new_ca.fingerprint())),
            )
            .await?;
        self.switch_to(&node)?;
        tracing::info!(by = %caller.member, ca = %new_ca.fingerprint(), "CA change-over started");
        let notices = self.await_told(queued, both.len()).await?;
        Ok((self.ca_status(caller)?, notices))
    }

    /// Ends a change-over once every peer has acknowledged trusting both
    /// CAs: peers are told, through the outbox, to trust the new CA alone,
    /// and the previous CA and certificate are forgotten.
    pub async fn retire_previous_ca(&self, caller: &Caller) -> Result<(CaStatus, Vec<PeerNotice>)> {
        caller.require_admin()?;
        if !self.in_change_over()? {
            return Err(Error::FailedPrecondition(
                "no CA change-over is under way".into(),
            ));
        }
        {
            let mut conn = self.store.pool().acquire().await?;
            for peer in peer_store::all(&mut conn).await? {
                if crate::store::outbox::topic_queued(&mut conn, &peer, CAS_TOPIC).await? {
                    return Err(Error::FailedPrecondition(format!(
                        "{peer} has not yet acknowledged the new CA (see `peer list`); retire once it has, or remove the peer"
                    )));
                }
            }
        }
        let current = self.identity().ca().clone();
        self.tls_files
            .retire_previous()
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.set_previous_identity(None);
        let queued = self
            .announce_cas(
                std::slice::from_ref(&current),
                NewEntry::new("ca.retired", &caller.member),
            )
            .await?;
        tracing::info!(by = %caller.member, "previous CA retired");
        let notices = self.await_told(queued, 1).await?;
        Ok((self.ca_status(caller)?, notices))
    }

    /// Re-issues this node's certificate from the current CA.
    pub fn renew_node_certificate(&self, caller: &Caller) -> Result<CaStatus> {
        caller.require_admin()?;
        let node = self
            .tls_files
            .renew_node(&self.id, &[])
            .map_err(|e| Error::Internal(format!("cannot renew the node certificate: {e}")))?;
        self.switch_to(&node)?;
        tracing::info!(by = %caller.member, "node certificate renewed");
        self.ca_status(caller)
    }

    /// Queues `cas` for every peer, with `entry` for the audit, in one
    /// transaction; wakes the deliverers. Returns each peer's outbox row.
    async fn announce_cas(
        &self,
        cas: &[CertificateDer<'static>],
        entry: NewEntry,
    ) -> Result<Vec<(TenantId, i64)>> {
        let control = Control::Cas {
            cas: cas.iter().map(|c| c.to_vec()).collect(),
        };
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let mut queued = Vec::new();
        for peer in peer_store::all(&mut w.tx).await? {
            let permit = admission::announcement(&peer, Announcement::Cas);
            let row = self.queue_control(&mut w.tx, &permit, &control, at).await?;
            queued.push((peer, row));
        }
        audit::append(&mut w.tx, &entry, at).await?;
        w.commit().await?;
        queued.iter().for_each(|(peer, _)| self.outbox.wake(peer));
        Ok(queued)
    }

    /// Waits a few seconds for the peers to acknowledge an announcement of
    /// `count` CAs, and says how each stands.
    async fn await_told(
        &self,
        queued: Vec<(TenantId, i64)>,
        count: usize,
    ) -> Result<Vec<PeerNotice>> {
        let deadline = tokio::time::Instant::now() + ANNOUNCE_WAIT;
        let mut notices = Vec::new();
        for (peer, row) in queued {
            let state = loop {
                let state = {
                    let mut conn = self.store.pool().acquire().await?;
                    crate::store::outbox::row_state(&mut conn, row).await?
                };
                match state {
                    Some((OutboxState::Queued, _)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => break other,
                }
            };
            let (told, detail) = match state {
                Some((OutboxState::Delivered, _)) => (
                    true,
                    format!("{peer} now trusts {count} CA(s) for {}", self.id),
                ),
                Some((OutboxState::Refused, reason)) => (
                    false,
                    format!("{peer} refused: {}", reason.unwrap_or_default()),
                ),
                Some((OutboxState::Queued, reason)) => (
                    false,
                    format!(
                        "queued for {peer}, which has not answered yet{}; it is told when it is back",
                        reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                ),
                None => (false, format!("replaced by a newer announcement to {peer}")),
            };
            notices.push(PeerNotice {
                tenant: peer,
                told,
                detail,
            });
        }
        Ok(notices)
    }

    /// A peer's CA announcement (already checked against the certificate
    /// it presents), stored in the caller's transaction (the relay
    /// batch's); pin the CAs with `pin_peer_cas` after the commit.
    pub(crate) async fn replace_peer_cas(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        cas: &[CertificateDer<'static>],
    ) -> Result<()> {
        let row = peer_store::peer(&mut *conn, peer)
            .await?
            .ok_or_else(|| Error::NotFound(format!("peer {peer}")))?;
        if row.source == PeerSource::Config {
            return Err(Error::FailedPrecondition(format!(
                "{} declares {peer} in its config file; its admin must update ca_files there",
                self.id
            )));
        }
        self.pinnable(peer, cas)?;
        let pem: String = cas.iter().map(|c| works_certs::to_pem(c)).collect();
        peer_store::set_cas(&mut *conn, peer, &pem).await?;
        let fingerprints: Vec<String> = cas.iter().map(|c| works_certs::fingerprint(c)).collect();
        audit::append(
            &mut *conn,
            &NewEntry::new("peer.ca_changed", format!("peer:{peer}"))
                .peer(peer)
                .detail(format!(
                    "trusted CAs now sha256 {}",
                    fingerprints.join(", ")
                )),
            now_ms(),
        )
        .await?;
        Ok(())
    }

    /// After a peer's CA announcement committed: trust exactly its CAs.
    pub(crate) fn pin_peer_cas(&self, peer: &TenantId, cas: Vec<CertificateDer<'static>>) {
        self.pin(peer, cas);
        tracing::info!(peer = %peer, "peer CAs replaced");
    }

    fn pinnable(&self, peer: &TenantId, cas: &[CertificateDer<'static>]) -> Result<()> {
        if peer.as_str() == crate::ids::LINE_TENANT {
            return Err(Error::PermissionDenied(format!(
                "{peer} is where LINE users live in rooms; no company can peer as it"
            )));
        }
        let own = [self.tls_files.load_ca().ok().map(|ca| ca.der().clone())];
        if cas.iter().any(|ca| own.iter().flatten().any(|o| o == ca)) {
            return Err(Error::PermissionDenied(format!(
                "{peer} names {}'s own CA as its own",
                self.id
            )));
        }
        self.trust.can_pin(peer, cas).map_err(|e| {
            tracing::warn!(peer = %peer, error = %e, "refused to trust a CA");
            Error::PermissionDenied(format!("cannot trust these CAs for {peer}: {e}"))
        })
    }

    /// Trusts `cas` for `peer` in the trust store; a refusal (a race with
    /// another pin of the same CA) leaves the peer untrusted and is logged.
    fn pin(&self, peer: &TenantId, cas: Vec<CertificateDer<'static>>) {
        self.hub.ring_peers_changed();
        if let Err(e) = self.trust.pin(peer.clone(), cas) {
            tracing::error!(peer = %peer, error = %e, "peer CA not trusted");
        }
    }
}

fn status_of(row: PeerRow) -> PeerStatus {
    let failing = match (row.last_error_at_ms, row.last_contact_at_ms) {
        (Some(err), Some(ok)) => err > ok,
        (Some(_), None) => true,
        _ => false,
    };
    PeerStatus {
        ca_fingerprints: works_certs::certificates(&row.ca_pem)
            .map(|cas| cas.iter().map(|c| works_certs::fingerprint(c)).collect())
            .unwrap_or_default(),
        tenant: row.tenant,
        endpoint: row.endpoint,
        source: row.source,
        state: if failing { "failing" } else { "active" },
        created_at_ms: row.created_at_ms,
        last_contact_at_ms: row.last_contact_at_ms,
        last_error: if failing { row.last_error } else { None },
        // Filled in from the outbox by `Tenant::status_of`.
        queue_depth: 0,
        lag_ms: 0,
    }
}

fn expiry_check(name: &'static str, not_after: SystemTime) -> Check {
    let now = SystemTime::now();
    match not_after.duration_since(now) {
        Err(_) => Check {
            name,
            ok: false,
            detail: "expired".into(),
        },
        Ok(left) => Check {
            name,
            ok: left > EXPIRY_WARNING,
            detail: format!("valid for {} more days", left.as_secs() / 86_400),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> InvitationToken {
        InvitationToken {
            tenant: "globex.example".into(),
            endpoint: "127.0.0.1:4781".into(),
            ca_sha256: "ab".repeat(32),
            secret: URL_SAFE_NO_PAD.encode([1u8; 32]),
            expires_at_ms: 1,
            for_tenant: None,
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let t = token();
        assert_eq!(InvitationToken::decode(&t.encode()).unwrap(), t);
        for bad in [
            "",
            "wpi1.",
            "wpi1.!!!",
            "xyz.abc",
            &format!("wpi1.{}", URL_SAFE_NO_PAD.encode(b"{}")),
        ] {
            let err = InvitationToken::decode(bad).unwrap_err().to_string();
            assert!(err.contains("not a peering invitation"), "{bad:?}: {err}");
        }
        let mut short = token();
        short.ca_sha256 = "abc".into();
        assert!(InvitationToken::decode(&short.encode()).is_err());
    }
}
