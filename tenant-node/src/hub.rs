//! In-process fan-out of stored events to live streams.
//!
//! Events are published only after their transaction commits. A watcher that
//! falls behind (the channel lagged) or sees a gap in a room's sequence reads
//! the missing events back from storage, so the hub may drop or reorder
//! without anyone losing or doubling an event.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::ids::MemberId;
use crate::model::RoomEvent;
use crate::store::policy::NoticeRow;

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
    Notice(Arc<NoticeRow>),
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Live>,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Hub { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.tx.subscribe()
    }

    pub fn publish(&self, event: RoomEvent, recipients: Vec<MemberId>) {
        // No receiver is not an error: nobody is watching right now.
        let _ = self.tx.send(Live::Event {
            event: Arc::new(event),
            recipients: recipients.into(),
        });
    }

    pub fn notice(&self, notice: NoticeRow) {
        let _ = self.tx.send(Live::Notice(Arc::new(notice)));
    }

    pub fn suspended(&self, member: MemberId) {
        let _ = self.tx.send(Live::Suspended(member));
    }
}
