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
use works_bridge::Outcome;
use works_bridge::client::RelayStream;

use crate::error::{Error, Result};
use crate::federation::wire;
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{Caller, EventBody, RoomEvent, RoomKind};
use crate::rooms::{Applied, Change};
use crate::store::outbox::{self as outbox, OutboxRow, OutboxState};
use crate::store::{events, now_ms};
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

/// An envelope on the relay, as this node reads and writes it; its wire
/// form is `federation::wire`'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: EventId,
    /// The node that hosts the room.
    pub host: TenantId,
    pub room: RoomId,
    /// The host's seq; 0 for a change proposed to the host.
    pub host_seq: u64,
    pub at_ms: i64,
    pub payload: Payload,
}

/// What an envelope carries: a room event, or a host's delivery receipt for
/// a message whose sender is on the receiving node. Outbox rows hold it as
/// JSON. Held one per envelope in hand, so a receipt's small size is no
/// saving worth a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Payload {
    Receipt { receipt: Vec<ReceiptEntry> },
    Event(Relayed),
}

/// One participating node's answer, as a host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEntry {
    #[serde(with = "crate::model::tenant_id")]
    pub tenant: TenantId,
    pub state: OutboxState,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The event inside an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    #[serde(with = "crate::model::member_id")]
    pub sender: MemberId,
    pub body: EventBody,
    /// The room after the change, on every event that changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Snapshot>,
}

/// A room as its host has it after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub kind: RoomKind,
    pub name: String,
    #[serde(default, with = "crate::model::optional_member_id")]
    pub master: Option<MemberId>,
    #[serde(with = "crate::model::member_ids")]
    pub members: Vec<MemberId>,
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
                .open_relay(tenant.limits.relay_ack_timeout())
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?,
        );
    }
    let Some(open) = stream.as_mut() else {
        return Err(Error::Internal("relay stream missing".into()));
    };
    let host = |row: &OutboxRow| {
        if row.host_seq == 0 {
            peer.clone()
        } else {
            tenant.id.clone()
        }
    };
    // A row that cannot be encoded is this node's fault: the queue waits
    // on it, the reason shown in `peer list`, rather than drop it.
    let envelopes = rows
        .iter()
        .map(|row| wire::outgoing(row, &host(row)))
        .collect::<Result<Vec<_>>>()?;
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
            sender: event.sender.clone(),
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
            sender: change.actor.clone(),
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
        let sender = relayed.sender;
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
                tenant: d.peer,
                state: d.state,
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

    /// A peer refused an event for good. When it refused a room's change
    /// that brings its own members in, they cannot be in the room: the
    /// host removes them (every one of the peer's members for a refused
    /// creation, the ones it was asked to add for a refused invitation),
    /// and everyone sees them become unknown.
    async fn refused_by_peer(&self, peer: &TenantId, row: &OutboxRow) {
        let Ok(Payload::Event(relayed)) = serde_json::from_str::<Payload>(&row.payload) else {
            return;
        };
        let Ok(room) = RoomId::parse(&row.room_id) else {
            return;
        };
        if row.host_seq == 0 {
            return;
        }
        let removed = match &relayed.body {
            EventBody::Created { .. } => self.remove_unreachable(&room, Some(peer), None).await,
            EventBody::Joined { members } => {
                let mut done = Ok(());
                for m in members {
                    if m.belongs_to(peer) && done.is_ok() {
                        done = self.remove_unreachable(&room, None, Some(m)).await;
                    }
                }
                done
            }
            _ => Ok(()),
        };
        if let Err(e) = removed {
            tracing::warn!(room = %room, peer = %peer, error = %e, "cannot remove a peer's members from a room");
        }
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

    /// Outbox rows and events written before the ids were typed read, and
    /// are written again byte for byte.
    #[test]
    fn stored_json_reads_and_writes_as_before() {
        let rows = [
            r#"{"sender":"bob@b.example","body":{"kind":"text","text":"hi"}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"created","room_kind":"group","name":"Launch","members":["bob@b.example","alice@a.example"]},"room":{"kind":"group","name":"Launch","master":"bob@b.example","members":["bob@b.example","alice@a.example"]}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"left"},"room":{"kind":"direct","name":"","master":null,"members":["alice@a.example"]}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"left","new_master":"alice@a.example"}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"removed","member":"alice@a.example"}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"joined","members":["carol@a.example"]}}"#,
            r#"{"receipt":[{"tenant":"a.example","state":"delivered","reason":null},{"tenant":"c.example","state":"refused","reason":"no"}]}"#,
            r#"{"receipt":[]}"#,
        ];
        for row in rows {
            let payload: Payload = serde_json::from_str(row).expect(row);
            assert_eq!(serde_json::to_string(&payload).unwrap(), row);
        }
        let event: EventBody =
            serde_json::from_str(r#"{"kind":"joined","members":["carol@a.example"]}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"kind":"joined","members":["carol@a.example"]}"#
        );
        // What no longer parses is refused, never defaulted.
        for bad in [
            r#"{"sender":"bob","body":{"kind":"text","text":"hi"}}"#,
            r#"{"receipt":[{"tenant":"a.example","state":"lost","reason":null}]}"#,
        ] {
            assert!(serde_json::from_str::<Payload>(bad).is_err(), "{bad}");
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
