//! The domain layer's context: one company's members, rooms and rules.
//!
//! `Tenant` methods are split by area (`accounts`, `rooms`, `outbox`, …);
//! each checks its rules and calls `store`. The edges (`api`, `federation`)
//! call these methods and nothing below them. The fields are the node's
//! and no one else's (`pub(crate)`); an area's own state sits behind its
//! own type (`outbox::Relay`, `rooms::send::Sends`) with private fields.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use works_bridge::tls::ServerCert;
use works_bridge::{BridgeError, NodeIdentity, PeerClient, TrustStore, tls};
use works_certs::NodeTlsFiles;

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::ids::TenantId;
use crate::live::hub::Hub;
use crate::store::audit::{self, NewEntry};
use crate::store::peers::PeerRow;
use crate::store::{Store, now_ms, settings};
use crate::wire::CAS_TOPIC;

pub struct Tenant {
    pub(crate) id: TenantId,
    pub(crate) store: Store,
    pub(crate) hub: Hub,
    pub(crate) limits: Limits,
    /// This node's certificate chain and key on the bridge, as a client.
    identity: RwLock<NodeIdentity>,
    /// During a CA change-over, the certificate of the CA being retired:
    /// presented, as a client, to a peer that has not yet acknowledged the
    /// new CA (it trusts only the old one until then).
    previous_identity: RwLock<Option<NodeIdentity>>,
    /// Counts changes of what this node presents; a relay stream opened
    /// under an older count is opened again.
    identity_epoch: AtomicU64,
    /// The same, as the bridge server presents it.
    pub(crate) server_cert: Arc<ServerCert>,
    /// Where the CA and node certificate live.
    pub(crate) tls_files: NodeTlsFiles,
    /// The CAs pinned for each peer; kept in step with the `peers` table.
    pub(crate) trust: TrustStore,
    /// Where invitation emails go out, if anywhere.
    pub(crate) smtp: Option<crate::config::SmtpConfig>,
    /// host:port peers dial; known once the bridge is bound.
    bridge_endpoint: RwLock<String>,
    /// Wakes the per-peer outbox deliverers; takes their refusals.
    pub(crate) outbox: crate::outbox::Relay,
    /// Sends waiting for the group commit (SQLite).
    pub(crate) sends: crate::rooms::send::Sends,
    /// Uploads in parts in progress.
    pub(crate) uploads: crate::rooms::uploads::Uploads,
    /// The company's LINE Official Account, when `[line]` is configured.
    pub(crate) line: Option<Arc<crate::messaging_api::Channel>>,
    /// Where the outside world reaches the web port (`[web] public_url`).
    pub(crate) public_url: Option<String>,
    /// Wakes the processor of the LINE webhook inbox.
    pub(crate) line_inbox: tokio::sync::Notify,
    /// This replica, among the node's replicas sharing one database: its
    /// name and this process's start, as the holder of queue leases.
    pub(crate) replica: String,
    /// The database's URL, for the replicas' doorbell (PostgreSQL).
    pub(crate) database_url: String,
    /// What the ops port's `/metrics` shows: API calls, deliveries, streams.
    pub(crate) metrics: Arc<crate::ops::Metrics>,
}

impl Tenant {
    pub fn new(
        id: TenantId,
        store: Store,
        limits: Limits,
        tls_files: NodeTlsFiles,
        identity: NodeIdentity,
        server_cert: Arc<ServerCert>,
    ) -> Self {
        Tenant {
            id,
            store,
            // Per member with a live stream (a slot is about 64 bytes); a
            // stream further behind catches up from storage.
            hub: Hub::new(64),
            limits,
            identity: RwLock::new(identity),
            previous_identity: RwLock::new(None),
            identity_epoch: AtomicU64::new(0),
            server_cert,
            tls_files,
            smtp: None,
            trust: TrustStore::new(),
            bridge_endpoint: RwLock::new(String::new()),
            outbox: crate::outbox::Relay::default(),
            sends: crate::rooms::send::Sends::default(),
            uploads: crate::rooms::uploads::Uploads::default(),
            line: None,
            public_url: None,
            line_inbox: tokio::sync::Notify::new(),
            replica: format!("{}-{}", std::process::id(), ulid::Ulid::new()),
            database_url: String::new(),
            metrics: Arc::default(),
        }
    }

    pub fn identity(&self) -> NodeIdentity {
        match self.identity.read() {
            Ok(identity) => identity.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches the bridge, both ends, to a new certificate.
    pub fn set_identity(&self, identity: NodeIdentity) -> Result<(), works_bridge::BridgeError> {
        self.server_cert.replace(&identity)?;
        if let Ok(mut slot) = self.identity.write() {
            *slot = identity;
        }
        self.identity_epoch.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Keeps (or forgets) the certificate of the CA being retired.
    pub fn set_previous_identity(&self, identity: Option<NodeIdentity>) {
        if let Ok(mut slot) = self.previous_identity.write() {
            *slot = identity;
        }
        self.identity_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Changes whenever what this node presents to peers may change.
    pub fn identity_epoch(&self) -> u64 {
        self.identity_epoch.load(Ordering::SeqCst)
    }

    /// What this node presents to `peer`: during a change-over, the
    /// previous certificate until the peer has acknowledged the new CA.
    async fn identity_for(&self, peer: &TenantId) -> NodeIdentity {
        let previous = self.previous_identity.read().ok().and_then(|p| p.clone());
        if let Some(previous) = previous {
            let unacknowledged = match self.store.pool().acquire().await {
                Ok(mut conn) => crate::store::outbox::topic_queued(&mut conn, peer, CAS_TOPIC)
                    .await
                    .unwrap_or(false),
                Err(_) => false,
            };
            if unacknowledged {
                return previous;
            }
        }
        self.identity()
    }

    /// Parses a member id the client API was given in `field` and checks it
    /// belongs to this company.
    pub fn local_member_id(&self, field: &'static str, input: &str) -> Result<MemberId> {
        let id = MemberId::parse(input).map_err(Error::bad_id(field))?;
        if !id.belongs_to(&self.id) {
            return Err(Error::invalid(
                field,
                format!("{id} is not a member of {}", self.id),
            ));
        }
        Ok(id)
    }

    pub async fn company_name(&self) -> Result<String> {
        Ok(self
            .store
            .setting(settings::COMPANY_NAME)
            .await?
            .unwrap_or_else(|| self.id.to_string()))
    }

    /// A client to a pinned peer.
    pub async fn dial(&self, peer: &PeerRow) -> std::result::Result<PeerClient, BridgeError> {
        let anchors =
            works_certs::certificates(&peer.ca_pem).map_err(|e| BridgeError::Tls(e.to_string()))?;
        let identity = self.identity_for(&peer.tenant).await;
        let config = tls::client_config_pinned(&identity, &anchors)?;
        PeerClient::connect(&peer.endpoint, &peer.tenant, config).await
    }

    /// Appends one entry in a transaction of its own, for events that change
    /// nothing else here (a lookup, a peer told of something).
    pub async fn record(&self, entry: NewEntry) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        audit::append(&mut w.tx, &entry, now_ms()).await?;
        w.commit().await
    }

    pub fn bridge_endpoint(&self) -> String {
        self.bridge_endpoint
            .read()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    pub fn set_bridge_endpoint(&self, endpoint: String) {
        if let Ok(mut slot) = self.bridge_endpoint.write() {
            *slot = endpoint;
        }
    }
}

/// Trims a human-entered name and checks it is 1..=`max` characters with no
/// control characters.
pub fn clean_name(field: &'static str, input: &str, max: usize) -> crate::error::Result<String> {
    let name = input.trim();
    if name.is_empty() {
        return Err(crate::error::Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > max {
        return Err(crate::error::Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::error::Error::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}
