//! Rooms shared across companies: the durable per-peer outbox, its
//! deliverers, and what this node does with the envelopes peers relay to it.
//!
//! A room is hosted by one node, which orders its events. A member's node
//! sends an event to the host (`host_seq` 0); the host checks it with the
//! same rules as a local change, sequences it and queues it for every other
//! participating node (`host_seq` set). Each hop goes through the `outbox`
//! table, written in the same transaction as the event, and is removed from
//! the queue only when the peer acknowledges it, which it does only after it
//! stored it. Receivers drop duplicates by event id and store a room's events
//! only in sequence order, so nothing acknowledged is lost, doubled or
//! reordered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use works_bridge::client::RelayStream;
use works_bridge::{Envelope, Outcome};

use crate::error::{Error, Result};
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{Caller, EventBody, RoomEvent, RoomKind};
use crate::rooms::{Applied, Change};
use crate::store::relay::{self as outbox, OutboxRow, OutboxState};
use crate::store::{WriteTx, events, now_ms, rooms, savepoint};
use crate::tenant::Tenant;

/// Envelopes per batch on the relay stream.
const BATCH: u32 = 256;
/// Payload bytes per batch: 256 of the largest text messages would not fit
/// the bridge's message limit (16 MiB), so a batch also stops here. A
/// single larger envelope still goes, alone.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// First retry delay after a failed delivery; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A deliverer with nothing to do looks at its queue this often anyway.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// What an envelope carries: a room event, or a host's delivery receipt for
/// a message whose sender is on the receiving node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Payload {
    Receipt { receipt: Vec<ReceiptEntry> },
    Event(Relayed),
}

/// One participating node's answer, as a host reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReceiptEntry {
    pub tenant: String,
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The event inside an envelope's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Relayed {
    pub sender: String,
    pub body: EventBody,
    /// The room after the change, on every event that changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Snapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub kind: RoomKind,
    pub name: String,
    #[serde(default)]
    pub master: Option<String>,
    pub members: Vec<String>,
}

/// Where a message stands on its way to the other participating nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Stored,
    Queued,
    Delivered,
    Refused,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub state: DeliveryState,
    pub reason: Option<String>,
    pub peers: Vec<outbox::PeerDelivery>,
}

/// Wakes the deliverer of each peer when something is queued for it, and
/// cuts its retry wait short when the peer says it is back.
pub struct Relay {
    wake: mpsc::UnboundedSender<(TenantId, Signal)>,
    woken: Mutex<Option<mpsc::UnboundedReceiver<(TenantId, Signal)>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Something was queued for the peer.
    Queued,
    /// The peer contacted us (it pings its peers when it starts): a
    /// deliverer waiting to retry tries again now.
    Back,
}

/// What a deliverer waits on.
#[derive(Default)]
struct Signals {
    queued: Notify,
    back: Notify,
}

impl Default for Relay {
    fn default() -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        Relay {
            wake,
            woken: Mutex::new(Some(woken)),
        }
    }
}

impl Relay {
    pub fn wake(&self, peer: &TenantId) {
        let _ = self.wake.send((peer.clone(), Signal::Queued));
    }

    /// The peer is reachable again: retry what waits for it now rather
    /// than after the backoff (up to `MAX_BACKOFF`).
    pub fn peer_back(&self, peer: &TenantId) {
        let _ = self.wake.send((peer.clone(), Signal::Back));
    }
}

/// What the peer hears of an envelope that was not stored: retry later on
/// a storage or internal error, refused for good otherwise.
fn not_received(peer: &TenantId, e: Error) -> Outcome {
    match e {
        e @ Error::Storage(_) => {
            tracing::warn!(peer = %peer, error = %e, "cannot store a relayed event");
            Outcome::Retry(not_stored_yet(&e))
        }
        Error::Internal(e) => {
            tracing::error!(peer = %peer, error = %e, "relayed event failed");
            Outcome::Retry(not_stored_yet(&Error::Internal(e)))
        }
        e => Outcome::Refused(e.to_string()),
    }
}

/// Why the peer should send an event again later: the sender's admin sees
/// it as the peer's last error.
fn not_stored_yet(e: &Error) -> String {
    if e.is_storage_full() {
        "the receiving node's storage is full".into()
    } else {
        "the receiving node could not store it yet".into()
    }
}

/// Runs the deliverers: one task per peer with something queued.
pub async fn run(tenant: Arc<Tenant>) {
    let Some(mut woken) = tenant.relay.woken.lock().ok().and_then(|mut w| w.take()) else {
        return;
    };
    let mut deliverers: HashMap<TenantId, Arc<Signals>> = HashMap::new();
    // Dropped, with every deliverer in it, when this task is aborted.
    let mut tasks = tokio::task::JoinSet::new();
    match tenant.store.pool().acquire().await {
        Ok(mut conn) => match outbox::peers_with_queued(&mut conn).await {
            Ok(peers) => peers.iter().for_each(|p| tenant.relay.wake(p)),
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
    }
    while let Some((peer, signal)) = woken.recv().await {
        match signal {
            Signal::Queued => {
                let signals = deliverers.entry(peer.clone()).or_insert_with(|| {
                    let signals = Arc::new(Signals::default());
                    tasks.spawn(deliver(tenant.clone(), peer, signals.clone()));
                    signals
                });
                signals.queued.notify_one();
            }
            // Without a deliverer nothing waits for the peer.
            Signal::Back => {
                if let Some(signals) = deliverers.get(&peer) {
                    signals.back.notify_one();
                }
            }
        }
    }
}

/// Delivers one peer's queue, in order, for as long as the node runs.
async fn deliver(tenant: Arc<Tenant>, peer: TenantId, signals: Arc<Signals>) {
    let mut stream: Option<RelayStream> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let rows = match queued(&tenant, &peer).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot read the outbox");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if rows.is_empty() {
            let _ = tokio::time::timeout(IDLE_CHECK, signals.queued.notified()).await;
            continue;
        }
        // The peer's state in `peer list` follows the relay: failing (with
        // the reason) until a batch goes through again.
        match send(&tenant, &peer, &mut stream, &rows).await {
            Ok(None) => {
                backoff = MIN_BACKOFF;
                if std::mem::take(&mut failing) {
                    let _ = tenant.store.peer_contacted(&peer).await;
                }
            }
            Ok(Some(reason)) => {
                failing = true;
                let _ = tenant.store.peer_failed(&peer, &reason).await;
                backoff = retry_after(backoff, &signals.back).await;
            }
            Err(e) => {
                stream = None;
                failing = true;
                let _ = tenant.store.peer_failed(&peer, &e.to_string()).await;
                tracing::info!(peer = %peer, queued = rows.len(), error = %e, "relay to peer failed; will retry");
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                if let Ok(mut w) = tenant.store.begin_write().await {
                    let _ = outbox::attempted(&mut w.tx, &ids, &e.to_string()).await;
                    let _ = w.commit().await;
                }
                backoff = retry_after(backoff, &signals.back).await;
            }
        }
    }
}

/// Waits `backoff` before a retry, or less when the peer says it is back;
/// the next wait: doubled up to `MAX_BACKOFF`, or the shortest again.
async fn retry_after(backoff: Duration, back: &Notify) -> Duration {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => (backoff * 2).min(MAX_BACKOFF),
        _ = back.notified() => MIN_BACKOFF,
    }
}

async fn queued(tenant: &Tenant, peer: &TenantId) -> Result<Vec<OutboxRow>> {
    let mut conn = tenant.store.pool().acquire().await?;
    let mut rows = outbox::queued(&mut conn, peer, BATCH).await?;
    rows.truncate(within_batch_bytes(&rows));
    Ok(rows)
}

/// How many of `rows`, from the first, fit `BATCH_BYTES` (at least one).
fn within_batch_bytes(rows: &[OutboxRow]) -> usize {
    let mut total = 0;
    rows.iter()
        .position(|r| {
            total += r.payload.len();
            total > BATCH_BYTES
        })
        .map_or(rows.len(), |over| over.max(1))
}

/// Sends one batch and records the answers. `Ok(Some(reason))`: the peer
/// asked to retry part of it later.
async fn send(
    tenant: &Tenant,
    peer: &TenantId,
    stream: &mut Option<RelayStream>,
    rows: &[OutboxRow],
) -> Result<Option<String>> {
    let Some(row) = tenant.store.peer(peer).await? else {
        // Unpeered: nothing queued for it can ever be delivered.
        *stream = None;
        let reason = format!("{peer} is no longer a peer");
        let mut w = tenant.store.begin_write().await?;
        let n = outbox::refuse_queued(&mut w.tx, peer, &reason, now_ms()).await?;
        w.commit().await?;
        tracing::info!(peer = %peer, refused = n, "queue of a former peer closed");
        return Ok(None);
    };
    if stream.as_ref().is_some_and(RelayStream::outlived) {
        tracing::info!(peer = %peer, "the peer's certificate expired; reconnecting");
        *stream = None;
    }
    if stream.is_none() {
        let mut client = tenant
            .dial(&row)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        *stream = Some(
            client
                .open_relay()
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?,
        );
    }
    let Some(open) = stream.as_mut() else {
        return Err(Error::Internal("relay stream missing".into()));
    };
    let envelopes = rows
        .iter()
        .map(|r| Envelope {
            event_id: r.event_id.clone(),
            host: String::new(),
            room_id: r.room_id.clone(),
            host_seq: r.host_seq,
            at_ms: r.created_at_ms,
            payload: r.payload.clone().into_bytes(),
        })
        .map(|mut e| {
            e.host = if e.host_seq == 0 {
                peer.to_string()
            } else {
                tenant.id.to_string()
            };
            e
        })
        .collect();
    let outcomes = open
        .send(envelopes)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let at = now_ms();
    let mut retry = None;
    let mut w = tenant.store.begin_write().await?;
    let mut answered = Vec::new();
    let mut delivered = Vec::new();
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Outcome::Stored => {
                delivered.push(row.id);
                answered.push((row.clone(), false));
            }
            Outcome::Refused(reason) => {
                tracing::info!(peer = %peer, event = %row.event_id, %reason, "peer refused an event");
                outbox::finish(&mut w.tx, row.id, OutboxState::Refused, Some(&reason), at).await?;
                answered.push((row.clone(), true));
            }
            Outcome::Retry(reason) => {
                tracing::debug!(peer = %peer, event = %row.event_id, %reason, "peer asks to retry");
                outbox::attempted(&mut w.tx, &[row.id], &reason).await?;
                retry = Some(reason);
                break;
            }
        }
    }
    outbox::delivered(&mut w.tx, &delivered, at).await?;
    w.commit().await?;
    for (row, refused) in answered {
        if refused {
            tenant.refused_by_peer(peer, &row).await;
        }
        if let Err(e) = tenant.report_to_origin(&row).await {
            tracing::warn!(event = %row.event_id, error = %e, "cannot queue a delivery receipt");
        }
    }
    Ok(retry)
}

impl Tenant {
    /// Queues a hosted room's event for every participating peer, in the
    /// transaction that stores it.
    pub(crate) async fn queue_for_peers(
        &self,
        conn: &mut sqlx::AnyConnection,
        event: &RoomEvent,
        snapshot: Option<Snapshot>,
        peers: &[TenantId],
    ) -> Result<()> {
        if peers.is_empty() {
            return Ok(());
        }
        let payload = encode(&Relayed {
            sender: event.sender.to_string(),
            body: event.body.clone(),
            room: snapshot,
        })?;
        for peer in peers {
            outbox::enqueue(
                conn,
                peer,
                &event.id,
                &event.room,
                event.seq,
                &payload,
                event.at_ms,
            )
            .await?;
        }
        Ok(())
    }

    /// Queues a member's change for the room's host to sequence.
    pub(crate) async fn queue_for_host(
        &self,
        conn: &mut sqlx::AnyConnection,
        host: &TenantId,
        room: &RoomId,
        change: &Change,
    ) -> Result<()> {
        let payload = encode(&Relayed {
            sender: change.actor.to_string(),
            body: change.body.clone(),
            room: None,
        })?;
        outbox::enqueue(conn, host, &change.id, room, 0, &payload, change.at_ms).await
    }

    /// Once every node a relayed message went to has answered, the host
    /// tells the sender's node how it went.
    async fn report_to_origin(&self, row: &OutboxRow) -> Result<()> {
        if row.host_seq == 0 {
            return Ok(());
        }
        let Ok(Payload::Event(relayed)) = serde_json::from_str::<Payload>(&row.payload) else {
            return Ok(());
        };
        let sender = MemberId::parse(&relayed.sender).map_err(Error::bad_id("sender"))?;
        if sender.belongs_to(&self.id) || !relayed.body.is_message() {
            return Ok(());
        }
        let mut w = self.store.begin_write().await?;
        if !outbox::all_done(&mut w.tx, &row.event_id).await? {
            return Ok(());
        }
        let event_id = EventId::parse(&row.event_id).map_err(Error::bad_id("event_id"))?;
        let receipt: Vec<ReceiptEntry> = outbox::deliveries(&mut w.tx, &event_id)
            .await?
            .into_iter()
            .filter(|d| &d.peer != sender.tenant())
            .map(|d| ReceiptEntry {
                tenant: d.peer.to_string(),
                state: d.state.as_str().to_string(),
                reason: d.reason,
            })
            .collect();
        let room = RoomId::parse(&row.room_id).map_err(Error::bad_id("room_id"))?;
        let payload = serde_json::to_string(&Payload::Receipt { receipt })
            .map_err(|e| Error::Internal(format!("cannot encode a receipt: {e}")))?;
        outbox::enqueue(
            &mut w.tx,
            sender.tenant(),
            &event_id,
            &room,
            row.host_seq,
            &payload,
            now_ms(),
        )
        .await?;
        w.commit().await?;
        self.relay.wake(sender.tenant());
        Ok(())
    }

    /// The host of a room reports on one of our members' messages.
    async fn receive_receipt(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        id: &EventId,
        room: &RoomId,
        receipt: Vec<ReceiptEntry>,
    ) -> Result<Outcome> {
        let hosted_by_peer = rooms::room(&mut *conn, room)
            .await?
            .is_some_and(|r| r.host.as_ref() == Some(peer));
        let ours = match outbox::pending_by_id(&mut *conn, id).await? {
            Some(p) => &p.room == room,
            None => events::by_id(&mut *conn, id)
                .await?
                .is_some_and(|e| e.sender.belongs_to(&self.id) && &e.room == room),
        };
        if !hosted_by_peer || !ours {
            return Err(Error::PermissionDenied(format!(
                "{peer} cannot report on event {id}"
            )));
        }
        for entry in receipt {
            let tenant = TenantId::parse(&entry.tenant)
                .map_err(|e| Error::invalid("receipt", e.to_string()))?;
            outbox::put_receipt(
                &mut *conn,
                id,
                &outbox::PeerDelivery {
                    peer: tenant,
                    state: OutboxState::parse(&entry.state),
                    reason: entry.reason,
                    attempts: 0,
                },
            )
            .await?;
        }
        // An empty receipt still says: every node has answered.
        outbox::put_receipt(
            &mut *conn,
            id,
            &outbox::PeerDelivery {
                peer: self.id.clone(),
                state: OutboxState::Delivered,
                reason: None,
                attempts: 0,
            },
        )
        .await?;
        Ok(Outcome::Stored)
    }

    /// A peer refused an event for good. When it refused a room's change
    /// that concerns its own members, they cannot be in the room: the host
    /// removes them, and everyone sees them become unknown.
    async fn refused_by_peer(&self, peer: &TenantId, row: &OutboxRow) {
        let Ok(relayed) = serde_json::from_str::<Relayed>(&row.payload) else {
            return;
        };
        if row.host_seq == 0
            || !matches!(
                relayed.body,
                EventBody::Created { .. } | EventBody::Joined { .. }
            )
        {
            return;
        }
        let Ok(room) = RoomId::parse(&row.room_id) else {
            return;
        };
        if let Err(e) = self.remove_unreachable(&room, Some(peer), None).await {
            tracing::warn!(room = %room, peer = %peer, error = %e, "cannot remove a peer's members from a room");
        }
    }

    /// Stores what a peer relays, in order. The first envelope that cannot
    /// be stored yet makes every later one wait too.
    pub async fn receive_envelopes(
        &self,
        peer: &TenantId,
        envelopes: Vec<Envelope>,
    ) -> Vec<Outcome> {
        let count = envelopes.len();
        let retry_all = |reason: &str| {
            (0..count)
                .map(|_| Outcome::Retry(reason.to_string()))
                .collect::<Vec<_>>()
        };
        // A stream opened while peered outlives an unpeering: ask each time.
        match self.store.peer(peer).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let reason = format!("{} is not peered with {peer}", self.id);
                return envelopes
                    .iter()
                    .map(|_| Outcome::Refused(reason.clone()))
                    .collect();
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot check a relaying peer");
                return retry_all(&not_stored_yet(&e));
            }
        }
        // One transaction for the batch, a savepoint per envelope: a refusal
        // undoes only its own envelope, and nothing is acknowledged before
        // the batch commits.
        let mut w = match self.store.begin_write().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot store relayed events");
                return retry_all(&not_stored_yet(&e));
            }
        };
        if count == 1 {
            return self.receive_alone(w, peer, envelopes).await;
        }
        let mut outcomes = Vec::with_capacity(count);
        let mut announce = Vec::new();
        let mut waiting: Option<String> = None;
        for envelope in envelopes {
            if let Some(reason) = &waiting {
                outcomes.push(Outcome::Retry(reason.clone()));
                continue;
            }
            let received = match self.receive_in_savepoint(&mut w.tx, peer, envelope).await {
                Ok(received) => received,
                Err(e) => {
                    // The savepoint did not end as it should: what the
                    // envelope wrote may still be there, so nothing of the
                    // batch may commit.
                    tracing::warn!(peer = %peer, error = %e, "a batch of relayed events failed");
                    return retry_all(&not_stored_yet(&e));
                }
            };
            let outcome = match received {
                Ok((outcome, applied)) => {
                    announce.extend(applied);
                    outcome
                }
                Err(e) => not_received(peer, e),
            };
            if let Outcome::Retry(reason) = &outcome {
                waiting = Some(reason.clone());
            }
            outcomes.push(outcome);
        }
        if let Err(e) = w.commit().await {
            tracing::warn!(peer = %peer, error = %e, "cannot commit relayed events");
            return retry_all(&not_stored_yet(&e));
        }
        for applied in announce {
            self.announce(applied);
        }
        outcomes
    }

    /// A batch of one, as at a low rate, needs no savepoint: a refusal
    /// rolls the transaction back.
    async fn receive_alone(
        &self,
        mut w: WriteTx,
        peer: &TenantId,
        envelopes: Vec<Envelope>,
    ) -> Vec<Outcome> {
        let Some(envelope) = envelopes.into_iter().next() else {
            return Vec::new();
        };
        let outcome = match self.receive_one(&mut w.tx, peer, envelope).await {
            Ok((outcome, applied)) => match w.commit().await {
                Ok(()) => {
                    applied.into_iter().for_each(|a| self.announce(a));
                    outcome
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "cannot commit a relayed event");
                    Outcome::Retry(not_stored_yet(&e))
                }
            },
            // Dropping the transaction undoes whatever it wrote.
            Err(e) => not_received(peer, e),
        };
        vec![outcome]
    }

    /// `receive_one` in a savepoint of its own. `Ok(Err(_))`: refused (or
    /// not stored) and undone, the batch goes on; `Err(_)`: the savepoint
    /// could not end, the batch cannot.
    async fn receive_in_savepoint(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        envelope: Envelope,
    ) -> Result<Result<(Outcome, Option<Applied>)>> {
        savepoint::begin(conn).await?;
        match self.receive_one(conn, peer, envelope).await {
            Ok(done) => {
                savepoint::release(conn).await?;
                Ok(Ok(done))
            }
            Err(e) => {
                savepoint::rollback(conn).await?;
                Ok(Err(e))
            }
        }
    }

    /// Checks and stores one envelope in the batch's transaction; what to
    /// announce once that commits.
    async fn receive_one(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        envelope: Envelope,
    ) -> Result<(Outcome, Option<Applied>)> {
        let id = EventId::parse(&envelope.event_id).map_err(Error::bad_id("event_id"))?;
        let room = self.parse_room_id(&envelope.room_id)?;
        let payload: Payload = serde_json::from_slice(&envelope.payload)
            .map_err(|e| Error::invalid("payload", e.to_string()))?;
        let relayed = match payload {
            Payload::Event(relayed) => relayed,
            Payload::Receipt { receipt } => {
                let outcome = self
                    .receive_receipt(conn, peer, &id, &room, receipt)
                    .await?;
                return Ok((outcome, None));
            }
        };
        let sender = MemberId::parse(&relayed.sender).map_err(Error::bad_id("sender"))?;
        let host =
            TenantId::parse(&envelope.host).map_err(|e| Error::invalid("host", e.to_string()))?;
        if envelope.host_seq == 0 {
            if host != self.id {
                return Err(Error::PermissionDenied(format!(
                    "room {room} is not hosted by {}",
                    self.id
                )));
            }
            if !sender.belongs_to(peer) {
                return Err(Error::PermissionDenied(format!(
                    "{peer} cannot send on behalf of {sender}"
                )));
            }
            if matches!(
                relayed.body,
                EventBody::Created { .. } | EventBody::Withheld
            ) {
                return Err(Error::invalid(
                    "payload",
                    "this kind of event is not proposed to a host",
                ));
            }
            let change = Change {
                id,
                actor: sender,
                body: relayed.body,
                idempotency_key: None,
                at_ms: envelope.at_ms,
            };
            let applied = self.sequence_from_peer(conn, &room, change).await?;
            return Ok((Outcome::Stored, applied));
        }
        if &host != peer {
            return Err(Error::PermissionDenied(format!(
                "{peer} relayed an event of a room it says {host} hosts; only the host sequences"
            )));
        }
        let event = RoomEvent {
            id,
            room,
            seq: envelope.host_seq,
            sender,
            at_ms: envelope.at_ms,
            body: relayed.body,
        };
        self.store_replica(conn, peer, event, relayed.room).await
    }

    /// A change a peer's member asks of a room hosted here (`None`: stored
    /// before).
    async fn sequence_from_peer(
        &self,
        conn: &mut sqlx::AnyConnection,
        room: &RoomId,
        change: Change,
    ) -> Result<Option<Applied>> {
        if events::by_id(conn, &change.id).await?.is_some() {
            return Ok(None);
        }
        let (row, members) = rooms::room_with_members(conn, room)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {room}")))?;
        if let Some(host) = &row.host {
            return Err(Error::PermissionDenied(format!(
                "room {room} is hosted by {host}, not here"
            )));
        }
        Ok(Some(
            self.host_change_among(conn, &row, members, change).await?,
        ))
    }

    /// Stores an event its host sequenced: only the next in the room's
    /// order, once; our half of admission decides whether it is shown.
    async fn store_replica(
        &self,
        conn: &mut sqlx::AnyConnection,
        host: &TenantId,
        event: RoomEvent,
        snapshot: Option<Snapshot>,
    ) -> Result<(Outcome, Option<Applied>)> {
        let at = now_ms();
        if let Some(stored) = events::by_id(&mut *conn, &event.id).await? {
            return if stored.seq == event.seq && stored.room == event.room {
                Ok((Outcome::Stored, None))
            } else {
                Err(Error::AlreadyExists(format!(
                    "event {} is stored here at {} seq {}",
                    event.id, stored.room, stored.seq
                )))
            };
        }
        let snapshot = match snapshot {
            Some(s) => Some(self.parse_snapshot(s)?),
            None => None,
        };
        let (row, before) = match rooms::room_with_members(&mut *conn, &event.room).await? {
            Some((row, members)) => {
                if row.host.as_ref() != Some(host) {
                    return Err(Error::PermissionDenied(format!(
                        "room {} is not hosted by {host}",
                        event.room
                    )));
                }
                (row, members)
            }
            None => {
                let Some((kind, name, master, members)) = &snapshot else {
                    return Err(Error::NotFound(format!("room {}", event.room)));
                };
                if !members.iter().any(|m| m.belongs_to(&self.id)) {
                    return Err(Error::PermissionDenied(format!(
                        "room {} has no member of {}",
                        event.room, self.id
                    )));
                }
                // Two direct rooms for one pair can exist when both sides
                // opened one at once; only the first holds the key.
                let key = match (kind, members.as_slice()) {
                    (RoomKind::Direct, [a, b]) => Some(rooms::direct_key(a, b)),
                    _ => None,
                };
                let key = match key {
                    Some(k) if rooms::direct_room(&mut *conn, &k).await?.is_none() => Some(k),
                    _ => None,
                };
                rooms::insert_room(
                    &mut *conn,
                    &event.room,
                    *kind,
                    name,
                    master.as_ref(),
                    key.as_deref(),
                    Some(host),
                    event.seq - 1,
                    at,
                )
                .await?;
                rooms::room_with_members(&mut *conn, &event.room)
                    .await?
                    .ok_or_else(|| Error::Internal("replica room vanished".into()))?
            }
        };
        if event.seq <= row.last_seq {
            return Err(Error::AlreadyExists(format!(
                "room {} already has seq {} with another event",
                event.room, event.seq
            )));
        }
        if event.seq > row.last_seq + 1 {
            return Ok((
                Outcome::Retry(format!(
                    "room {} is at seq {}; waiting for {}",
                    event.room,
                    row.last_seq,
                    row.last_seq + 1
                )),
                None,
            ));
        }
        let mut event = event;
        let mut outcome = Outcome::Stored;
        let mut key = None;
        if event.sender.belongs_to(&self.id) {
            key = outbox::take_pending(&mut *conn, &event.id)
                .await?
                .and_then(|p| p.idempotency_key);
        } else if event.body.is_message()
            && let Err(refusal) = self.may_receive(&mut *conn, &row, &event, &before).await
        {
            let refusal = match refusal {
                e @ (Error::Storage(_) | Error::Internal(_)) => return Err(e),
                other => other,
            };
            tracing::info!(room = %event.room, sender = %event.sender, reason = %refusal, "relayed message withheld");
            event.body = EventBody::Withheld;
            outcome = Outcome::Refused(refusal.to_string());
        }
        events::store_sequenced(&mut *conn, &event, key.as_deref()).await?;
        self.record_attachment(&mut *conn, &event).await?;
        if let Some((_, name, master, members)) = &snapshot {
            rooms::apply_snapshot(
                &mut *conn,
                &event.room,
                name,
                master.as_ref(),
                members,
                event.seq,
                at,
            )
            .await?;
        }
        // Only a snapshot changes who is in the room.
        let after = match &snapshot {
            Some(_) => rooms::member_ids(&mut *conn, &event.room).await?,
            None => before.clone(),
        };
        self.audit_room_event(&mut *conn, &event, &after).await?;
        let mut local: Vec<MemberId> = after
            .iter()
            .chain(before.iter().filter(|m| !after.contains(m)))
            .filter(|m| m.belongs_to(&self.id))
            .cloned()
            .collect();
        local.dedup();
        Ok((
            outcome,
            Some(Applied {
                event,
                local,
                peers: Vec::new(),
            }),
        ))
    }

    /// This node's say on a message from another company's member that its
    /// host sequenced: admission (with blocks and trash), file transfer.
    async fn may_receive(
        &self,
        conn: &mut sqlx::AnyConnection,
        row: &rooms::RoomRow,
        event: &RoomEvent,
        members: &[MemberId],
    ) -> Result<()> {
        self.may_message(conn, row.kind, row.host.as_ref(), &event.sender, members)
            .await?;
        if matches!(event.body, EventBody::Attachment(_)) {
            self.files_allowed(conn, &event.sender, members).await?;
        }
        Ok(())
    }

    fn parse_snapshot(
        &self,
        s: Snapshot,
    ) -> Result<(RoomKind, String, Option<MemberId>, Vec<MemberId>)> {
        let members = s
            .members
            .iter()
            .map(|m| MemberId::parse(m).map_err(Error::bad_id("members")))
            .collect::<Result<Vec<_>>>()?;
        let master = s
            .master
            .as_deref()
            .map(|m| MemberId::parse(m).map_err(Error::bad_id("master")))
            .transpose()?;
        Ok((s.kind, s.name, master, members))
    }

    /// The delivery state of a message the caller sent.
    pub async fn delivery(&self, caller: &Caller, room: &str, event: &str) -> Result<Delivery> {
        let room = self.parse_room_id(room)?;
        let id = EventId::parse(event).map_err(Error::bad_id("event_id"))?;
        let mut conn = self.store.pool().acquire().await?;
        // Pending first: a message only ever moves from pending to stored,
        // so reading in this order cannot miss it in between.
        let sender = match outbox::pending_by_id(&mut conn, &id).await? {
            Some(p) => (p.room == room).then_some(p.sender),
            None => events::by_id(&mut conn, &id)
                .await?
                .filter(|e| e.room == room)
                .map(|e| e.sender),
        };
        match sender {
            Some(sender) if sender == caller.member => {}
            _ => {
                return Err(Error::NotFound(format!(
                    "message {id} of yours in room {room}"
                )));
            }
        }
        drop(conn);
        self.delivery_of_event(&id).await
    }

    /// An event's delivery: our own outbox rows and, for a message that
    /// went to another node's room, what its host reported.
    pub(crate) async fn delivery_of_event(&self, id: &EventId) -> Result<Delivery> {
        let mut conn = self.store.pool().acquire().await?;
        let mut peers = outbox::deliveries(&mut conn, id).await?;
        let to_host = peers.len() == 1 && outbox::pending_or_replica(&mut conn, id).await?;
        if to_host {
            let mut receipts = outbox::receipts(&mut conn, id).await?;
            let reported = receipts.iter().any(|r| r.peer == self.id);
            receipts.retain(|r| r.peer != self.id);
            peers.extend(receipts);
            let mut delivery = delivery_of(peers);
            if delivery.state == DeliveryState::Delivered && !reported {
                // The host has it and is still passing it on.
                delivery.state = DeliveryState::Queued;
            }
            return Ok(delivery);
        }
        Ok(delivery_of(peers))
    }

    /// What is queued for a peer, for `peer list`.
    pub async fn queue_depth(&self, peer: &TenantId) -> Result<outbox::QueueDepth> {
        let mut conn = self.store.pool().acquire().await?;
        outbox::depth(&mut conn, peer).await
    }

    /// Wakes the deliverers of the peers an applied change was queued for and
    /// shows it to local watchers.
    pub(crate) fn announce(&self, applied: Applied) {
        for peer in &applied.peers {
            self.relay.wake(peer);
        }
        self.hub.publish(applied.event, applied.local);
    }
}

/// The delivery of a message just queued for `peers`.
pub(crate) fn just_queued(peers: &[TenantId]) -> Delivery {
    delivery_of(
        peers
            .iter()
            .map(|peer| outbox::PeerDelivery {
                peer: peer.clone(),
                state: OutboxState::Queued,
                reason: None,
                attempts: 0,
            })
            .collect(),
    )
}

fn delivery_of(peers: Vec<outbox::PeerDelivery>) -> Delivery {
    let refused = peers.iter().find(|p| p.state == OutboxState::Refused);
    let (state, reason) = if peers.is_empty() {
        (DeliveryState::Stored, None)
    } else if let Some(r) = refused {
        (DeliveryState::Refused, r.reason.clone())
    } else if peers.iter().any(|p| p.state == OutboxState::Queued) {
        (DeliveryState::Queued, None)
    } else {
        (DeliveryState::Delivered, None)
    };
    Delivery {
        state,
        reason,
        peers,
    }
}

fn encode(relayed: &Relayed) -> Result<String> {
    serde_json::to_string(relayed).map_err(|e| Error::Internal(format!("cannot encode event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload_bytes: usize) -> OutboxRow {
        OutboxRow {
            id: 1,
            peer: TenantId::parse("globex.example").unwrap(),
            event_id: String::new(),
            room_id: String::new(),
            host_seq: 1,
            payload: "x".repeat(payload_bytes),
            attempts: 0,
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget_but_never_at_zero() {
        let small: Vec<OutboxRow> = (0..3).map(|_| row(10)).collect();
        assert_eq!(within_batch_bytes(&small), 3);
        let big: Vec<OutboxRow> = (0..300).map(|_| row(100 * 1024)).collect();
        assert_eq!(within_batch_bytes(&big), BATCH_BYTES / (100 * 1024));
        let huge = vec![row(BATCH_BYTES + 1), row(1)];
        assert_eq!(within_batch_bytes(&huge), 1);
        assert_eq!(within_batch_bytes(&[]), 0);
    }
}
