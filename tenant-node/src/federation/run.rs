//! A run of relayed messages, judged one by one and written together.
//!
//! Most of what a room's host relays is other companies' members'
//! messages. The receiving gate judges each of them as any event from a
//! host (`inbound::store_from_host`: in order, once, by the room's rules and
//! this node's half of admission) but with what the run read before (each
//! room's row and members, each sender's admission in each room, which
//! event ids are stored), and keeps what to write. The run is written with
//! one multi-row statement per kind of row when the batch ends or before
//! any other envelope, which reads the database itself. A message the gate
//! refuses wrote nothing, so no savepoint undoes it.
//!
//! Everything else (proposals to rooms hosted here, receipts, control
//! messages, changes of a room, our own members' messages coming back) is
//! received as before, in a savepoint of its own.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::inbound::Read;
use crate::error::Result;
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::RoomEvent;
use crate::store::{audit, events, now_ms, rooms};
use crate::tenant::Tenant;
use crate::wire::{Message, Payload};

/// A room event from its host, judged, to store.
pub(crate) struct HostEvent {
    pub event: RoomEvent,
    /// Our own member's idempotency key, for a message of ours.
    pub key: Option<String>,
    /// Our members who must not see it.
    pub unseen_by: Vec<MemberId>,
    /// Everyone it concerns, for its audit entry.
    pub members: Vec<MemberId>,
}

/// What a run read and what it will write.
#[derive(Default)]
pub(crate) struct Run {
    /// Event ids stored here (before the batch, or in this run).
    stored: HashMap<EventId, RoomEvent>,
    /// A room's row (its `last_seq` moved on by the run) and members.
    rooms: HashMap<RoomId, Option<(rooms::RoomRow, Vec<MemberId>)>>,
    /// Our members who must not see a sender's messages in a room
    /// (admission let the sender through).
    admitted: HashMap<(MemberId, RoomId), Vec<MemberId>>,
    to_write: Vec<HostEvent>,
}

/// Whether an envelope goes into a run: another company's member's
/// message to a room, from its host.
pub(crate) fn joins_run(us: &TenantId, read: &Result<Read>) -> bool {
    match read {
        Ok(Read::Known(Message::Room(envelope))) => match &envelope.payload {
            Payload::Event(relayed) => {
                envelope.host_seq > 0 && relayed.body.is_message() && !relayed.sender.belongs_to(us)
            }
            Payload::Receipt { .. } => false,
        },
        _ => false,
    }
}

impl Run {
    /// A run for a batch: reads which of the envelopes that may join it
    /// are stored here already, in one statement.
    pub(crate) async fn for_batch(
        conn: &mut AnyConnection,
        us: &TenantId,
        batch: &[(String, Result<Read>)],
    ) -> Result<Run> {
        let ids: Vec<EventId> = batch
            .iter()
            .filter(|(_, read)| joins_run(us, read))
            .filter_map(|(_, read)| match read {
                Ok(Read::Known(Message::Room(envelope))) => Some(envelope.event_id),
                _ => None,
            })
            .collect();
        let stored = events::by_ids(conn, &ids)
            .await?
            .into_iter()
            .map(|event| (event.id, event))
            .collect();
        Ok(Run {
            stored,
            ..Run::default()
        })
    }

    /// The event stored here under this id, if the run knows of one.
    pub(crate) fn stored(&self, id: &EventId) -> Option<&RoomEvent> {
        self.stored.get(id)
    }

    /// A room's row and members as the run left them.
    pub(crate) async fn room(
        &mut self,
        conn: &mut AnyConnection,
        room: &RoomId,
    ) -> Result<Option<(rooms::RoomRow, Vec<MemberId>)>> {
        if let Some(known) = self.rooms.get(room) {
            return Ok(known.clone());
        }
        let read = rooms::room_with_members(conn, room).await?;
        self.rooms.insert(*room, read.clone());
        Ok(read)
    }

    /// What admission said of a sender's messages to a room, in this run.
    pub(crate) fn admitted(&self, sender: &MemberId, room: &RoomId) -> Option<&Vec<MemberId>> {
        self.admitted.get(&(sender.clone(), *room))
    }

    pub(crate) fn admit(&mut self, sender: &MemberId, room: &RoomId, unseen_by: Vec<MemberId>) {
        self.admitted.insert((sender.clone(), *room), unseen_by);
    }

    /// Keeps an event to write with the run; the room moves on to its seq.
    pub(crate) fn keep(&mut self, judged: HostEvent) {
        let event = &judged.event;
        if let Some(Some((row, _))) = self.rooms.get_mut(&event.room) {
            row.last_seq = event.seq;
            row.last_event_at_ms = event.at_ms;
        }
        self.stored.insert(event.id, event.clone());
        self.to_write.push(judged);
    }

    /// Forgets what it read: the next envelope read the database after
    /// another envelope changed it.
    pub(crate) fn forget(&mut self) {
        self.rooms.clear();
        self.admitted.clear();
    }
}

impl Tenant {
    /// Writes what the run kept, and empties it.
    pub(crate) async fn write_run(&self, conn: &mut AnyConnection, run: &mut Run) -> Result<()> {
        let kept = std::mem::take(&mut run.to_write);
        self.write_host_events(conn, &kept).await
    }

    /// Stores judged events from their host: one multi-row statement per
    /// kind of row (files and their metadata one by one).
    pub(crate) async fn write_host_events(
        &self,
        conn: &mut AnyConnection,
        judged: &[HostEvent],
    ) -> Result<()> {
        if judged.is_empty() {
            return Ok(());
        }
        let stored: Vec<(&RoomEvent, Option<&str>)> = judged
            .iter()
            .map(|j| (&j.event, j.key.as_deref()))
            .collect();
        events::insert_all(conn, &stored).await?;
        let unseen: Vec<(RoomId, u64, &MemberId)> = judged
            .iter()
            .flat_map(|j| j.unseen_by.iter().map(|m| (j.event.room, j.event.seq, m)))
            .collect();
        events::hide_all(conn, &unseen).await?;
        for j in judged {
            self.record_attachment(conn, &j.event).await?;
        }
        let entries: Vec<audit::NewEntry> = judged
            .iter()
            .filter_map(|j| self.room_event_entry(&j.event, &j.members))
            .collect();
        if !entries.is_empty() {
            audit::append_all(conn, &entries, now_ms()).await?;
        }
        Ok(())
    }
}
