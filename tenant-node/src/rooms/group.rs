//! Messages stored in a constant number of statements, however many.
//!
//! The send path stores the messages of one write transaction (a send of
//! its own, or a group commit's many) in three steps:
//!
//! 1. read what the decisions need, once for the whole group: each room's
//!    row and members, each sender's earlier sends under the group's
//!    idempotency keys (one statement per sender and room), and this
//!    node's half of admission for each sender in each room;
//! 2. decide every message in Rust, by the rules every change of a room
//!    takes (`check_rules`, `may_message`, `files_allowed`);
//! 3. write: the sequence numbers of each room in one statement, then one
//!    multi-row statement per kind of row (events, unseen marks, pending
//!    events, outbox rows, audit entries).
//!
//! A refused message wrote nothing, so no savepoint undoes it; it gets its
//! own answer and the others are stored. A storage error leaves the whole
//! transaction in doubt: the caller drops it.
//!
//! Rooms take their sequence numbers in room order, so two replicas'
//! groups on PostgreSQL, which lock the rooms' rows there, never wait on
//! each other in a cycle. Nothing decided in step 2 depends on a room's
//! `last_seq`, which step 3 reads under that lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::AnyConnection;

use super::send::Stored;
use super::{Applied, Change, check_rules, pending_event, require_among, same_message};
use crate::admission::RoomPermit;
use crate::error::{Error, Result};
use crate::ids::{LINE_TENANT, MemberId, RoomId, TenantId};
use crate::model::{EventBody, RoomEvent};
use crate::outbox::{host_row, relay_rows};
use crate::store::outbox::{self as outbox, Pending};
use crate::store::{attachments, audit, events, now_ms, rooms};
use crate::tenant::Tenant;

/// A member's message to a room, under its idempotency key.
pub(crate) struct Message<'a> {
    pub sender: &'a MemberId,
    pub room: RoomId,
    pub key: &'a str,
    pub body: &'a EventBody,
}

/// What step 1 read, shared by the group's messages.
#[derive(Default)]
struct Reads {
    /// A room; `None` for no such room.
    rooms: HashMap<RoomId, Option<Arc<RoomRead>>>,
    /// A sender's earlier sends in a room, by idempotency key.
    earlier: HashMap<(RoomId, MemberId), HashMap<String, RoomEvent>>,
    /// This node's half of admission for a sender's messages to a room.
    permits: HashMap<(MemberId, RoomId), RoomPermit>,
    /// The messages of this group by room, sender and key: their plan.
    planned: HashMap<(RoomId, MemberId, String), usize>,
}

/// A room's row and members, and who its messages reach.
struct RoomRead {
    row: rooms::RoomRow,
    members: Vec<MemberId>,
    /// Our members, whose streams show its messages.
    local: Vec<MemberId>,
    /// The other companies' nodes its messages are queued for.
    peers: Vec<TenantId>,
}

enum Decision {
    Refused(Error),
    /// Stored before under the same key.
    Earlier(RoomEvent),
    /// The same message as an earlier one of this group (its plan).
    Again(usize),
    New(usize),
}

/// A message to store.
struct Plan {
    change: Change,
    room: Arc<RoomRead>,
    permit: RoomPermit,
    /// Its event, once a hosted room gave it its seq.
    event: Option<RoomEvent>,
}

impl Plan {
    fn room_id(&self) -> RoomId {
        self.room.row.id
    }

    fn host(&self) -> Option<&TenantId> {
        self.room.row.host.as_ref()
    }

    /// What its sender is answered: the event, or the change waiting for
    /// its host (seq 0).
    fn answer(&self) -> RoomEvent {
        match &self.event {
            Some(event) => event.clone(),
            None => pending_event(self.room_id(), self.change.clone()),
        }
    }
}

impl Tenant {
    /// Stores messages in the caller's transaction: in the room, when this
    /// node hosts it; otherwise in the outbox for the room's host. A
    /// message retried with the same idempotency key (before, or earlier
    /// in the same group) is answered with the one stored and stores
    /// nothing. Each message gets its own outcome, in order; call
    /// `committed` on each stored one once the transaction commits. `Err`:
    /// a storage fault, and the transaction is in doubt.
    pub(crate) async fn store_messages_in(
        &self,
        conn: &mut AnyConnection,
        messages: &[Message<'_>],
    ) -> Result<Vec<Result<Stored>>> {
        let mut reads = Reads::default();
        let mut plans = Vec::new();
        let mut decisions = Vec::with_capacity(messages.len());
        for message in messages {
            let decision = if !message.body.is_message() {
                Decision::Refused(Error::Internal(format!(
                    "a {} event is not a message",
                    message.body.kind()
                )))
            } else {
                match self
                    .decide(conn, message, messages, &mut reads, &mut plans)
                    .await
                {
                    Ok(decision) => decision,
                    Err(e) if e.is_fault() => return Err(e),
                    Err(refused) => Decision::Refused(refused),
                }
            };
            decisions.push(decision);
        }
        self.write_plans(conn, &mut plans).await?;
        Ok(decisions
            .into_iter()
            .map(|decision| match decision {
                Decision::Refused(e) => Err(e),
                Decision::Earlier(event) => Ok(Stored::earlier((event, true))),
                Decision::Again(plan) => Ok(Stored::earlier((plans[plan].answer(), true))),
                Decision::New(plan) => stored(&plans[plan]),
            })
            .collect())
    }

    /// Step 2 for one message, reading what the group has not read yet.
    async fn decide(
        &self,
        conn: &mut AnyConnection,
        message: &Message<'_>,
        group: &[Message<'_>],
        reads: &mut Reads,
        plans: &mut Vec<Plan>,
    ) -> Result<Decision> {
        let (room_id, sender, key) = (message.room, message.sender, message.key);
        let room = match reads.rooms.get(&room_id) {
            Some(read) => read.clone(),
            None => {
                let read = rooms::room_with_members(conn, &room_id)
                    .await?
                    .map(|(row, members)| {
                        let (local, peers) = self.reach(&members);
                        Arc::new(RoomRead {
                            row,
                            members,
                            local,
                            peers,
                        })
                    });
                reads.rooms.insert(room_id, read.clone());
                read
            }
        }
        .ok_or_else(|| Error::NotFound(format!("room {room_id}")))?;
        let (row, members) = (&room.row, &room.members);
        require_among(members, &room_id, sender)?;

        let pair = (room_id, sender.clone());
        if !reads.earlier.contains_key(&pair) {
            let mut keys: Vec<&str> = group
                .iter()
                .filter(|m| m.room == room_id && m.sender == sender)
                .map(|m| m.key)
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let found = earlier_sends(conn, &room_id, sender, &keys, row.host.is_some()).await?;
            reads.earlier.insert(pair.clone(), found);
        }
        if let Some(earlier) = reads.earlier[&pair].get(key) {
            return same_message(earlier.clone(), key, message.body)
                .map(|(event, _)| Decision::Earlier(event));
        }
        let planned = (room_id, sender.clone(), key.to_string());
        if let Some(&plan) = reads.planned.get(&planned) {
            return same_message(plans[plan].answer(), key, message.body)
                .map(|_| Decision::Again(plan));
        }

        if row.host.is_none() {
            check_rules(conn, row, members, sender, message.body).await?;
        }
        let permit = match reads.permits.get(&(sender.clone(), room_id)) {
            Some(permit) => permit.clone(),
            None => {
                let permit = self
                    .may_message(conn, &room_id, row.kind, row.host.as_ref(), sender, members)
                    .await?;
                reads
                    .permits
                    .insert((sender.clone(), room_id), permit.clone());
                permit
            }
        };
        if matches!(message.body, EventBody::Attachment(_)) {
            self.files_allowed(conn, sender, members).await?;
        }
        plans.push(Plan {
            change: Change::new(sender, message.body.clone(), Some(key)),
            room: room.clone(),
            permit,
            event: None,
        });
        reads.planned.insert(planned, plans.len() - 1);
        Ok(Decision::New(plans.len() - 1))
    }

    /// Step 3: every plan's rows.
    async fn write_plans(&self, conn: &mut AnyConnection, plans: &mut [Plan]) -> Result<()> {
        // Sequence numbers, room by room in room order.
        let mut hosted: BTreeMap<RoomId, Vec<usize>> = BTreeMap::new();
        for (i, plan) in plans.iter().enumerate() {
            if plan.host().is_none() {
                hosted.entry(plan.room_id()).or_default().push(i);
            }
        }
        for (room, in_room) in &hosted {
            let last_at = plans[in_room[in_room.len() - 1]].change.at_ms;
            let first = events::reserve(conn, room, in_room.len() as u64, last_at).await?;
            for (n, &i) in in_room.iter().enumerate() {
                let change = &plans[i].change;
                plans[i].event = Some(RoomEvent {
                    id: change.id,
                    room: *room,
                    seq: first + n as u64,
                    sender: change.actor.clone(),
                    at_ms: change.at_ms,
                    body: change.body.clone(),
                });
            }
        }

        let mut stored = Vec::new();
        let mut unseen = Vec::new();
        let mut read_up_to: BTreeMap<(RoomId, &MemberId), u64> = BTreeMap::new();
        let mut queued = Vec::new();
        let mut pending = Vec::new();
        let mut audited = Vec::new();
        for plan in plans.iter() {
            let change = &plan.change;
            match (&plan.event, plan.host()) {
                (Some(event), _) => {
                    stored.push((event, change.idempotency_key.as_deref()));
                    for member in plan.permit.unseen_by() {
                        unseen.push((event.room, event.seq, member));
                    }
                    if event.sender.belongs_to(&self.id) {
                        read_up_to.insert((event.room, &event.sender), event.seq);
                    }
                    queued.extend(relay_rows(&plan.permit, event, None, &plan.room.peers)?);
                    audited.extend(self.room_event_entry(event, &plan.room.members));
                }
                (None, Some(host)) => {
                    pending.push(Pending {
                        event_id: change.id,
                        room: plan.room_id(),
                        sender: change.actor.clone(),
                        idempotency_key: change.idempotency_key.clone(),
                        body: change.body.clone(),
                        at_ms: change.at_ms,
                    });
                    queued.push(host_row(
                        &plan.permit,
                        host,
                        &change.id,
                        &change.body,
                        change.at_ms,
                    )?);
                }
                (None, None) => {
                    return Err(Error::Internal(format!(
                        "a message to room {} was given no seq",
                        plan.room_id()
                    )));
                }
            }
        }
        events::insert_all(conn, &stored).await?;
        events::hide_all(conn, &unseen).await?;
        for ((room, member), seq) in read_up_to {
            rooms::advance_read(conn, &room, member, seq).await?;
        }
        outbox::insert_pending_all(conn, &pending).await?;
        outbox::enqueue_all(conn, &queued).await?;
        if !audited.is_empty() {
            audit::append_all(conn, &audited, now_ms()).await?;
        }
        // Files and LINE are rare among messages: a statement or two each.
        for plan in plans.iter() {
            match (&plan.event, &plan.change.body) {
                (Some(event), _) => {
                    self.record_attachment(conn, event).await?;
                    if plan.room.peers.iter().any(|p| p.as_str() == LINE_TENANT) {
                        self.queue_for_line(conn, &plan.permit, event).await?;
                    }
                }
                (None, EventBody::Attachment(meta)) => {
                    attachments::mark_posted(conn, &meta.id, &plan.change.id).await?;
                }
                (None, _) => {}
            }
        }
        Ok(())
    }
}

/// A stored plan's answer, and what follows its commit.
fn stored(plan: &Plan) -> Result<Stored> {
    Ok(match (&plan.event, plan.host()) {
        (Some(event), _) => {
            let mut local = plan.room.local.clone();
            local.retain(|m| !plan.permit.unseen_by().contains(m));
            Stored::hosted(Applied {
                event: event.clone(),
                local,
                peers: plan.room.peers.clone(),
            })
        }
        (None, Some(host)) => Stored::proposed(plan.answer(), host.clone()),
        (None, None) => {
            return Err(Error::Internal(format!(
                "a message to room {} was given no seq",
                plan.room_id()
            )));
        }
    })
}

/// A sender's messages stored earlier in a room under any of `keys`:
/// sequenced, or (`elsewhere`: the room is hosted by another node) still
/// waiting for its host.
pub(super) async fn earlier_sends(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    keys: &[&str],
    elsewhere: bool,
) -> Result<HashMap<String, RoomEvent>> {
    let mut found = HashMap::new();
    if elsewhere {
        // Pending first: a message only ever moves from pending to stored,
        // so reading in this order cannot miss it in between.
        for p in outbox::pending_by_keys(conn, room, sender, keys).await? {
            if let Some(key) = p.idempotency_key.clone() {
                found.insert(
                    key,
                    RoomEvent {
                        id: p.event_id,
                        room: p.room,
                        seq: 0,
                        sender: p.sender,
                        at_ms: p.at_ms,
                        body: p.body,
                    },
                );
            }
        }
    }
    for (key, event) in events::by_idempotency_keys(conn, room, sender, keys).await? {
        found.entry(key).or_insert(event);
    }
    Ok(found)
}
