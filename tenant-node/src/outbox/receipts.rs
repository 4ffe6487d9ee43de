//! Delivery receipts and each message's delivery state: a host tells the
//! sender's node how a relayed message went once every node it went to
//! has answered; a member sees stored, queued, delivered or refused.

use crate::error::{Error, Result};
use crate::ids::{EventId, RoomId, TenantId};
use crate::model::Caller;
use crate::store::outbox::{self as outbox, OutboxRow, OutboxState};
use crate::store::{events, now_ms};
use crate::tenant::Tenant;
use crate::wire::{Payload, ReceiptEntry};

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

impl Tenant {
    /// Once every node a relayed message went to has answered, the host
    /// tells the sender's node how it went.
    pub(super) async fn report_to_origin(&self, row: &OutboxRow) -> Result<()> {
        let Some(room) = row.room_id else {
            return Ok(());
        };
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
        let event_id = row.event_id;
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
        self.outbox.wake(sender.tenant());
        Ok(())
    }

    /// The delivery state of a message the caller sent.
    pub async fn delivery(&self, caller: &Caller, room: &RoomId, id: &EventId) -> Result<Delivery> {
        let mut conn = self.store.pool().acquire().await?;
        // Pending first: a message only ever moves from pending to stored,
        // so reading in this order cannot miss it in between.
        let sender = match outbox::pending_by_id(&mut conn, id).await? {
            Some(p) => (p.room == *room).then_some(p.sender),
            None => events::by_id(&mut conn, id)
                .await?
                .filter(|e| e.room == *room)
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
        self.delivery_of_event(id).await
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
