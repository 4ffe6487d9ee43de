//! The wake-ups of the deliverers, and the refusals they hand back.

use std::sync::Mutex;

use tokio::sync::{Notify, mpsc};

use crate::ids::{MemberId, RoomId, TenantId};

/// Wakes the deliverer of each peer when something is queued for it, and
/// cuts its retry wait short when the peer says it is back.
pub struct Relay {
    wake: mpsc::UnboundedSender<(TenantId, Signal)>,
    pub(super) woken: Mutex<Option<mpsc::UnboundedReceiver<(TenantId, Signal)>>>,
    refused: mpsc::UnboundedSender<Refused>,
    refusals: Mutex<Option<mpsc::UnboundedReceiver<Refused>>>,
    /// The other replicas' doorbell (`live::doorbell`, PostgreSQL only).
    doorbell: std::sync::OnceLock<mpsc::UnboundedSender<TenantId>>,
}

/// A peer refused for good a hosted room's change that brings its own
/// members in: they cannot be in the room. Rooms take them out
/// (`rooms::leave`); the outbox only reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub room: RoomId,
    pub peer: TenantId,
    /// The peer's members to take out; `None`: all of them (a refused
    /// creation).
    pub members: Option<Vec<MemberId>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// Something was queued for the peer.
    Queued,
    /// The peer contacted us (it pings its peers when it starts): a
    /// deliverer waiting to retry tries again now.
    Back,
}

/// What a deliverer waits on.
#[derive(Default)]
pub(super) struct Signals {
    pub(super) queued: Notify,
    pub(super) back: Notify,
}

impl Default for Relay {
    fn default() -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        let (refused, refusals) = mpsc::unbounded_channel();
        Relay {
            wake,
            woken: Mutex::new(Some(woken)),
            refused,
            refusals: Mutex::new(Some(refusals)),
            doorbell: std::sync::OnceLock::new(),
        }
    }
}

impl Relay {
    /// Something was committed for `peer`: its deliverer here wakes, and
    /// the other replicas' too (their doorbell), since whichever holds the
    /// peer's lease delivers.
    pub fn wake(&self, peer: &TenantId) {
        if let Some(bell) = self.doorbell.get() {
            let _ = bell.send(peer.clone());
        }
        self.wake_here(peer);
    }

    /// Wakes this replica's deliverer of `peer` only (another replica rang).
    pub fn wake_here(&self, peer: &TenantId) {
        let _ = self.wake.send((peer.clone(), Signal::Queued));
    }

    /// Rings the other replicas for every wake-up here.
    pub fn ring_others(&self, bell: mpsc::UnboundedSender<TenantId>) {
        let _ = self.doorbell.set(bell);
    }

    /// The peer is reachable again: retry what waits for it now rather
    /// than after the backoff (up to `MAX_BACKOFF`).
    pub fn peer_back(&self, peer: &TenantId) {
        let _ = self.wake.send((peer.clone(), Signal::Back));
    }

    pub(super) fn refused(&self, refused: Refused) {
        let _ = self.refused.send(refused);
    }

    /// The refusals the deliverers report, for the one task that acts on
    /// them; `None` once taken.
    pub fn take_refusals(&self) -> Option<mpsc::UnboundedReceiver<Refused>> {
        self.refusals.lock().ok().and_then(|mut r| r.take())
    }
}
