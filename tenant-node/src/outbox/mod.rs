//! The durable per-peer outbox: what this node owes each peer, in order.
//!
//! - here: queueing a room event for the peers (or a change for a room's
//!   host), in the transaction that stores it, only with the
//!   `admission::RoomPermit` admission gave for that event; and queueing a
//!   control message (reachability, a profile, our CAs) with its
//!   `admission::ControlPermit`, in the transaction of the change it tells;
//! - `signal`: the deliverers' wake-ups, and the refusals they report
//!   back (rooms act on them: the outbox never changes a room);
//! - `deliver`: one deliverer per peer, batches on one relay stream;
//! - `receipts`: delivery receipts between nodes and each message's
//!   delivery state.
//!
//! The outbox lives in the node, not in `works-bridge` (as DESIGN §2 drew
//! it), because its row must be written in the event's own transaction:
//! only the node's store can do that. The bridge stays a transport.
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

mod deliver;
pub(crate) mod lease;
pub(crate) mod line;
pub mod receipts;
mod signal;

use crate::admission::{ControlPermit, RoomPermit};
use crate::error::{Error, Result};
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{EventBody, RoomEvent};
use crate::store::outbox;
use crate::tenant::Tenant;
use crate::wire::{Control, Relayed, Snapshot};

pub use deliver::run;
pub(crate) use receipts::just_queued;
pub use receipts::{Delivery, DeliveryState};
pub use signal::{Refused, Relay};

impl Tenant {
    /// Queues a hosted room's event for every participating peer, in the
    /// transaction that stores it, with the permit admission gave for it.
    pub(crate) async fn queue_for_peers(
        &self,
        conn: &mut sqlx::AnyConnection,
        permit: &RoomPermit,
        event: &RoomEvent,
        snapshot: Option<Snapshot>,
        peers: &[TenantId],
    ) -> Result<()> {
        let rows = relay_rows(permit, event, snapshot, peers)?;
        outbox::enqueue_all(conn, &rows).await?;
        if peers.iter().any(|p| p.as_str() == crate::ids::LINE_TENANT) {
            self.queue_for_line(conn, permit, event).await?;
        }
        Ok(())
    }

    /// Queues our member's change to a room hosted elsewhere for its host
    /// to sequence, with the permit admission gave for it; the sender is
    /// the permit's.
    pub(crate) async fn queue_for_host(
        &self,
        conn: &mut sqlx::AnyConnection,
        permit: &RoomPermit,
        host: &TenantId,
        event: &EventId,
        body: &EventBody,
        at_ms: i64,
    ) -> Result<()> {
        let row = host_row(permit, host, event, body, at_ms)?;
        outbox::enqueue_all(conn, &[row]).await
    }
}

/// The outbox rows of a hosted room's event for the participating peers
/// (LINE's, which `queue_for_line` queues, aside), checked against the
/// permit admission gave for it.
pub(crate) fn relay_rows(
    permit: &RoomPermit,
    event: &RoomEvent,
    snapshot: Option<Snapshot>,
    peers: &[TenantId],
) -> Result<Vec<outbox::Queued>> {
    let peers: Vec<&TenantId> = peers
        .iter()
        .filter(|p| p.as_str() != crate::ids::LINE_TENANT)
        .collect();
    if peers.is_empty() {
        return Ok(Vec::new());
    }
    permitted(permit, &event.room, &event.sender)?;
    let payload = encode(&Relayed {
        sender: event.sender.clone(),
        body: event.body.clone(),
        room: snapshot,
    })?;
    Ok(peers
        .into_iter()
        .map(|peer| outbox::Queued {
            peer: peer.clone(),
            event_id: event.id,
            room: event.room,
            host_seq: event.seq,
            payload: payload.clone(),
            at_ms: event.at_ms,
        })
        .collect())
}

/// The outbox row of our member's change for the room's host; the sender
/// is the permit's.
pub(crate) fn host_row(
    permit: &RoomPermit,
    host: &TenantId,
    event: &EventId,
    body: &EventBody,
    at_ms: i64,
) -> Result<outbox::Queued> {
    Ok(outbox::Queued {
        peer: host.clone(),
        event_id: *event,
        room: *permit.room(),
        host_seq: 0,
        payload: encode(&Relayed {
            sender: permit.sender().clone(),
            body: body.clone(),
            room: None,
        })?,
        at_ms,
    })
}

impl Tenant {
    /// Queues a control message for the permit's peer in the caller's
    /// transaction (wake the peer's deliverer after the commit), replacing
    /// an older one of its topic still queued. Returns the outbox row.
    pub(crate) async fn queue_control(
        &self,
        conn: &mut sqlx::AnyConnection,
        permit: &ControlPermit,
        control: &Control,
        at_ms: i64,
    ) -> Result<i64> {
        let covered = match control {
            Control::Profile { profile, holders } => permit.covers_profile(&profile.user, holders),
            Control::Reachability { .. } | Control::Cas { .. } => permit.is_announcement(),
        };
        if !covered {
            return Err(Error::Internal(format!(
                "a control message for {} came with a permit that does not cover it",
                permit.peer()
            )));
        }
        let payload = serde_json::to_string(control)
            .map_err(|e| Error::Internal(format!("cannot encode a control message: {e}")))?;
        outbox::enqueue_control(
            conn,
            permit.peer(),
            &EventId::generate(),
            control.topic().as_deref(),
            &payload,
            at_ms,
        )
        .await
    }
}

/// A permit covers the events of its sender in its room, no other.
fn permitted(permit: &RoomPermit, room: &RoomId, sender: &MemberId) -> Result<()> {
    if permit.covers(room, sender) {
        return Ok(());
    }
    Err(Error::Internal(format!(
        "an event of {sender} in room {room} came with a permit for {} in room {}",
        permit.sender(),
        permit.room()
    )))
}

fn encode(relayed: &Relayed) -> Result<String> {
    serde_json::to_string(relayed).map_err(|e| Error::Internal(format!("cannot encode event: {e}")))
}
