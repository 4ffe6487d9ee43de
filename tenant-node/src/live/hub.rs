//! In-process fan-out of stored events to live streams.
//!
//! Events are published only after their transaction commits. Each member
//! with a live stream has a channel of their own, and an event goes only to
//! the channels of its recipients, so its cost grows with the recipients,
//! not with every stream open on the node. A watcher that falls behind (its
//! channel lagged) or sees a gap in a room's sequence reads the missing
//! events back from storage, so the hub may drop or reorder without anyone
//! losing or doubling an event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::ids::MemberId;
use crate::model::{Notice, RoomEvent};

#[derive(Debug, Clone)]
pub enum Live {
    /// A stored event and the members whose streams show it.
    Event {
        event: Arc<RoomEvent>,
        recipients: Arc<[MemberId]>,
    },
    /// The member was suspended: their streams end.
    Suspended(MemberId),
    /// A notice for one member (already stored).
    Notice(Arc<Notice>),
    /// Events may have been missed (another replica's doorbell was out of
    /// reach): read what is new from storage.
    Resync,
}

pub struct Hub {
    /// Events a member's streams have not taken yet, at most.
    capacity: usize,
    members: Mutex<Members>,
    /// Tells the node's other replicas of each event published here
    /// (`live::doorbell`, PostgreSQL only).
    doorbell: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Ring>>,
}

/// What a replica rings the others about: where to look, never the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ring {
    /// A room's event at a seq was committed.
    Event(crate::ids::RoomId, u64),
    /// A notice (by id) was stored for a member.
    Notice(String),
    /// A member was suspended: their streams end.
    Suspended(MemberId),
    /// The peers or their CAs changed: the trust store follows the table.
    Peers,
}

#[derive(Default)]
struct Members {
    /// Keyed by member id.
    channels: HashMap<String, broadcast::Sender<Live>>,
    /// Channels at the last sweep of those without streams.
    swept_at: usize,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        Hub {
            capacity,
            members: Mutex::default(),
            doorbell: std::sync::OnceLock::new(),
        }
    }

    fn members(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `member`'s streams are to show from now on.
    pub fn subscribe(&self, member: &MemberId) -> broadcast::Receiver<Live> {
        let mut members = self.members();
        // Forget members whose streams all closed, once their number has
        // doubled since the last sweep: a constant cost per subscription.
        if members.channels.len() >= 2 * members.swept_at.max(64) {
            members.channels.retain(|_, tx| tx.receiver_count() > 0);
            members.swept_at = members.channels.len();
        }
        members
            .channels
            .entry(member.as_str().to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Whether `member` has a stream open on this replica now.
    pub fn watching(&self, member: &MemberId) -> bool {
        self.members()
            .channels
            .get(member.as_str())
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Whether any member has a stream open on this replica now.
    pub fn any_watching(&self) -> bool {
        self.members()
            .channels
            .values()
            .any(|tx| tx.receiver_count() > 0)
    }

    fn send(&self, member: &str, live: Live) {
        if let Some(tx) = self.members().channels.get(member) {
            // No receiver is not an error: the member's streams just closed.
            let _ = tx.send(live);
        }
    }

    /// Rings the other replicas' doorbell for every event published here.
    pub fn ring_others(&self, bell: tokio::sync::mpsc::UnboundedSender<Ring>) {
        let _ = self.doorbell.set(bell);
    }

    fn ring(&self, ring: Ring) {
        if let Some(bell) = self.doorbell.get() {
            let _ = bell.send(ring);
        }
    }

    /// An event this replica committed: shown here, and rung to the others.
    pub fn publish(&self, event: RoomEvent, recipients: Vec<MemberId>) {
        self.ring(Ring::Event(event.room, event.seq));
        self.publish_here(event, recipients);
    }

    /// An event shown on this replica's streams only (another replica
    /// committed it and rang).
    pub fn publish_here(&self, event: RoomEvent, recipients: Vec<MemberId>) {
        let event = Arc::new(event);
        let recipients: Arc<[MemberId]> = recipients.into();
        let members = self.members();
        for member in recipients.iter() {
            if let Some(tx) = members.channels.get(member.as_str()) {
                let _ = tx.send(Live::Event {
                    event: Arc::clone(&event),
                    recipients: Arc::clone(&recipients),
                });
            }
        }
    }

    /// A notice stored here: shown on the member's streams, on every replica.
    pub fn notice(&self, notice: Notice) {
        self.ring(Ring::Notice(notice.id.clone()));
        self.notice_here(notice);
    }

    pub fn notice_here(&self, notice: Notice) {
        let member = notice.member.clone();
        self.send(member.as_str(), Live::Notice(Arc::new(notice)));
    }

    /// The other replicas reload their trust store from the `peers` table.
    pub fn ring_peers_changed(&self) {
        self.ring(Ring::Peers);
    }

    /// Every stream reads back what it may have missed.
    pub fn resync_all(&self) {
        let members = self.members();
        for tx in members.channels.values() {
            let _ = tx.send(Live::Resync);
        }
    }

    /// A member suspended: their streams end, on every replica.
    pub fn suspended(&self, member: MemberId) {
        self.ring(Ring::Suspended(member.clone()));
        self.suspended_here(member);
    }

    pub fn suspended_here(&self, member: MemberId) {
        self.send(member.as_str(), Live::Suspended(member.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> MemberId {
        MemberId::parse(&format!("{name}@a.example")).unwrap()
    }

    #[test]
    fn a_notice_reaches_only_its_members_streams() {
        let hub = Hub::new(8);
        let mut alice = hub.subscribe(&member("alice"));
        let mut bob = hub.subscribe(&member("bob"));
        hub.suspended(member("bob"));
        assert!(alice.try_recv().is_err());
        assert!(matches!(bob.try_recv(), Ok(Live::Suspended(m)) if m == member("bob")));
    }

    #[test]
    fn members_whose_streams_closed_are_forgotten() {
        let hub = Hub::new(8);
        for i in 0..200 {
            drop(hub.subscribe(&member(&format!("m{i}"))));
        }
        let kept = hub.subscribe(&member("kept"));
        assert!(hub.members().channels.len() < 200);
        assert!(hub.members().channels.contains_key("kept@a.example"));
        drop(kept);
    }
}
