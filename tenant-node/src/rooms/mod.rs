//! Rooms and messages: the rules of who may do what in a room.
//!
//! A room is hosted by one node, which applies every change to it in one
//! write transaction: `host_change` checks the rules (membership, the group
//! master's rights, this node's admission half), appends the event with the
//! room's next sequence number, updates membership and queues the event for
//! every other participating node (`outbox`). Members of a room hosted
//! elsewhere propose their changes to its host through the outbox. Events
//! reach live streams only after their commit.

pub mod attachments;
pub mod content;
mod group;
pub mod leave;
pub mod send;
pub mod uploads;

use std::collections::BTreeSet;

use sqlx::AnyConnection;

use crate::admission::{self, Act, RoomPermit, Unchecked};
use crate::error::{Error, Result};
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{Caller, EventBody, MemberState, Room, RoomEvent, RoomKind};
use crate::outbox::Delivery;
use crate::store::{audit, contacts as contact_store, events, now_ms, rooms};
use crate::tenant::Tenant;
use crate::wire::Snapshot;
use content::MAX_ROOM_NAME_CHARS;
use send::Stored;

const MAX_IDEMPOTENCY_KEY: usize = 128;
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

/// The outcome of a send: the stored event, whether it was stored before,
/// and where it is on its way to the other nodes.
pub struct Sent {
    pub event: RoomEvent,
    pub duplicate: bool,
    pub delivery: Delivery,
}

pub struct HistoryPage {
    pub events: Vec<RoomEvent>,
    pub has_more: bool,
}

pub struct HistoryQuery {
    pub after_seq: Option<u64>,
    pub before_seq: Option<u64>,
    pub limit: u32,
}

/// What a member posts.
pub enum Content {
    Text(String),
    Sticker(String),
    /// An uploaded attachment's id.
    Attachment(String),
}

/// A change someone asks of a room; its host checks and sequences it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// Assigned where the change originated.
    pub id: EventId,
    pub actor: MemberId,
    pub body: EventBody,
    pub idempotency_key: Option<String>,
    pub at_ms: i64,
}

impl Change {
    pub(crate) fn new(actor: &MemberId, body: EventBody, idempotency_key: Option<&str>) -> Change {
        Change {
            id: EventId::generate(),
            actor: actor.clone(),
            body,
            idempotency_key: idempotency_key.map(str::to_string),
            at_ms: now_ms(),
        }
    }
}

/// A change the host applied, to announce after its commit.
pub(crate) struct Applied {
    pub event: RoomEvent,
    /// Local members whose streams show it.
    pub local: Vec<MemberId>,
    /// Peers it was queued for.
    pub peers: Vec<TenantId>,
}

impl Tenant {
    /// Drops duplicate invitees and the caller. A colleague must be an
    /// active member; someone of another company must be one of the
    /// caller's contacts (not in trash), not blocked by the caller.
    async fn resolve_invitees(
        &self,
        caller: &Caller,
        invitees: &[MemberId],
    ) -> Result<Vec<MemberId>> {
        let ids: BTreeSet<MemberId> = invitees
            .iter()
            .filter(|id| **id != caller.member)
            .cloned()
            .collect();
        let mut conn = self.store.pool().acquire().await?;
        for id in &ids {
            if crate::ids::is_line(id) {
                // LINE has no way for an account to start a chat or a
                // group: rooms with LINE users begin on LINE.
                return Err(Error::FailedPrecondition(format!(
                    "{id} is a LINE user: a room with LINE users starts on LINE, when they add you or add your company's account to a LINE group"
                )));
            }
            if id.belongs_to(&self.id) {
                require_active(&mut conn, id).await?;
            } else {
                match contact_store::contact(&mut conn, caller.member.as_str(), id.as_str()).await?
                {
                    Some(c) if c.trashed_at_ms.is_none() => {
                        if let Err((denied, _)) =
                            admission::bring_in(&mut conn, &self.id, &caller.member, id).await?
                        {
                            return Err(denied.to_member(id));
                        }
                    }
                    Some(_) => {
                        return Err(Error::FailedPrecondition(format!(
                            "{id} is in your trash; restore the contact first"
                        )));
                    }
                    None => {
                        return Err(Error::FailedPrecondition(format!(
                            "{id} is not one of your contacts; send a friend request first"
                        )));
                    }
                }
            }
        }
        Ok(ids.into_iter().collect())
    }

    pub async fn create_room(
        &self,
        caller: &Caller,
        kind: RoomKind,
        name: &str,
        members: &[MemberId],
    ) -> Result<Room> {
        let invitees = self.resolve_invitees(caller, members).await?;
        let room = match kind {
            RoomKind::Direct => {
                let [other] = invitees.as_slice() else {
                    return Err(Error::invalid(
                        "members",
                        "a direct room takes exactly one other member",
                    ));
                };
                self.open_direct(&caller.member, other).await?
            }
            RoomKind::Group => {
                let name = if name.trim().is_empty() {
                    default_group_name(&caller.member, &invitees)
                } else {
                    content::room_name(name)?
                };
                let mut all = vec![caller.member.clone()];
                all.extend(invitees.iter().cloned());
                self.host_new_room(&caller.member, RoomKind::Group, &name, all)
                    .await?
            }
        };
        self.room(caller, &room).await
    }

    /// The direct room of `local` and `other`, created (hosted here) if
    /// there is none; creating it again brings back whichever had left.
    pub(crate) async fn open_direct(&self, local: &MemberId, other: &MemberId) -> Result<RoomId> {
        let key = rooms::direct_key(local, other);
        let existing = {
            let mut conn = self.store.pool().acquire().await?;
            match rooms::direct_room(&mut conn, &key).await? {
                Some(id) => rooms::room(&mut conn, &id).await?,
                None => None,
            }
        };
        let Some(row) = existing else {
            return self
                .host_new_room(
                    local,
                    RoomKind::Direct,
                    "",
                    vec![local.clone(), other.clone()],
                )
                .await;
        };
        let missing: Vec<MemberId> = {
            let mut conn = self.store.pool().acquire().await?;
            let current = rooms::member_ids(&mut conn, &row.id).await?;
            [local, other]
                .into_iter()
                .filter(|m| !current.contains(m))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(row.id);
        }
        match &row.host {
            None => {
                // Either of the two may bring the room back, in their own
                // name: the other's node stores nothing in its member's
                // name that it did not propose.
                let change = Change::new(local, EventBody::Joined { members: missing }, None);
                let mut w = self.store.begin_write().await?;
                let applied = self.host_change(&mut w.tx, &row, change).await?;
                w.commit().await?;
                self.announce(applied);
                Ok(row.id)
            }
            Some(host) => Err(Error::FailedPrecondition(format!(
                "your direct room with {other} is hosted by {host}; ask {other} to message you"
            ))),
        }
    }

    /// Creates a room hosted here with `members` (the creator first).
    async fn host_new_room(
        &self,
        creator: &MemberId,
        kind: RoomKind,
        name: &str,
        members: Vec<MemberId>,
    ) -> Result<RoomId> {
        let id = RoomId::generate();
        let mut w = self.store.begin_write().await?;
        let applied = self
            .host_new_room_in(&mut w.tx, &id, creator, kind, name, members, None)
            .await?;
        w.commit().await?;
        tracing::info!(room = %id, by = %creator, ?kind, "room created");
        self.announce(applied);
        Ok(id)
    }

    /// `host_new_room` in the caller's transaction, as room `id`, for a
    /// LINE chat when `line_chat` names one; announce after the commit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn host_new_room_in(
        &self,
        conn: &mut AnyConnection,
        id: &RoomId,
        creator: &MemberId,
        kind: RoomKind,
        name: &str,
        members: Vec<MemberId>,
        line_chat: Option<&str>,
    ) -> Result<Applied> {
        if members.len() > self.limits.max_room_members {
            return Err(Error::ResourceExhausted(format!(
                "a room holds at most {} members",
                self.limits.max_room_members
            )));
        }
        let id = *id;
        let at = now_ms();
        let permit = self
            .may_enter(conn, &id, kind, None, creator, creator, &members)
            .await?;
        if kind == RoomKind::Group {
            // Everyone the creator brings in, as an invitation checks them:
            // a colleague not permitted to talk across cannot be put in a
            // room with another company.
            for m in members.iter().filter(|m| *m != creator) {
                self.may_enter(conn, &id, kind, None, creator, m, &members)
                    .await?;
            }
        }
        let (master, key) = match kind {
            RoomKind::Direct => (None, Some(rooms::direct_key(&members[0], &members[1]))),
            RoomKind::Group => (Some(creator), None),
        };
        rooms::insert_room(conn, &id, kind, name, master, key.as_deref(), None, 0, at).await?;
        let event = events::append(
            conn,
            &id,
            creator,
            EventBody::Created {
                room_kind: kind,
                name: name.to_string(),
                members: members.clone(),
            },
            None,
            at,
        )
        .await?;
        for member in &members {
            rooms::insert_membership(conn, &id, member, event.seq, at).await?;
        }
        if let Some(chat) = line_chat {
            rooms::set_line_chat(conn, &id, chat).await?;
        }
        self.after_change(conn, &permit, event, None, &[]).await
    }

    /// A room as the caller sees it; only members may look.
    pub async fn room(&self, caller: &Caller, id: &RoomId) -> Result<Room> {
        let mut conn = self.store.pool().acquire().await?;
        let row = rooms::room(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        let membership = require_member(&mut conn, id, &caller.member).await?;
        let members = rooms::member_ids(&mut conn, id).await?;
        let unread = rooms::unread_counts(&mut conn, &caller.member)
            .await?
            .get(id)
            .copied()
            .unwrap_or(0);
        Ok(self.room_view(row, membership, members, unread))
    }

    pub async fn list_rooms(&self, caller: &Caller) -> Result<Vec<Room>> {
        let mut conn = self.store.pool().acquire().await?;
        let listed = rooms::rooms_of(&mut conn, &caller.member).await?;
        let unread = rooms::unread_counts(&mut conn, &caller.member).await?;
        // Rooms with LINE users leave the list while the member may not
        // chat with LINE users (LINE switched off, or not on its list).
        let line_usable = crate::store::line::usable_by(&mut conn, &caller.member).await?;
        let mut out = Vec::with_capacity(listed.len());
        for (row, membership) in listed {
            if row.line_chat.is_some() && !line_usable {
                continue;
            }
            let members = rooms::member_ids(&mut conn, &row.id).await?;
            let unread = unread.get(&row.id).copied().unwrap_or(0);
            out.push(self.room_view(row, membership, members, unread));
        }
        Ok(out)
    }

    fn room_view(
        &self,
        row: rooms::RoomRow,
        membership: rooms::Membership,
        members: Vec<MemberId>,
        unread: u64,
    ) -> Room {
        Room {
            external: members
                .iter()
                .any(|m| !m.belongs_to(&self.id) && !crate::ids::is_line(m)),
            line: row.line_chat.is_some(),
            id: row.id,
            kind: row.kind,
            name: row.name,
            members,
            master: row.master,
            last_seq: row.last_seq,
            last_read_seq: membership.last_read_seq,
            unread,
            created_at_ms: row.created_at_ms,
            last_event_at_ms: row.last_event_at_ms,
            host: row.host,
        }
    }

    pub async fn invite_members(
        &self,
        caller: &Caller,
        room: &RoomId,
        members: &[MemberId],
    ) -> Result<Room> {
        let invitees = self.resolve_invitees(caller, members).await?;
        if invitees.is_empty() {
            return Err(Error::invalid(
                "members",
                "name at least one member to invite",
            ));
        }
        let body = EventBody::Joined { members: invitees };
        self.change_room(caller, room, body).await?;
        self.room(caller, room).await
    }

    pub async fn remove_member(
        &self,
        caller: &Caller,
        room: &RoomId,
        member: &MemberId,
    ) -> Result<Room> {
        let body = EventBody::Removed {
            member: member.clone(),
        };
        self.change_room(caller, room, body).await?;
        self.room(caller, room).await
    }

    pub async fn leave_room(&self, caller: &Caller, room: &RoomId) -> Result<RoomEvent> {
        let event = self
            .change_room(caller, room, EventBody::Left { new_master: None })
            .await?
            .ok_or_else(|| Error::Internal("leaving changed nothing".into()))?;
        tracing::info!(room = %event.room, member = %caller.member, "member left");
        Ok(event)
    }

    pub async fn rename_room(&self, caller: &Caller, room: &RoomId, name: &str) -> Result<Room> {
        let name = content::room_name(name)?;
        self.change_room(caller, room, EventBody::Renamed { name })
            .await?;
        self.room(caller, room).await
    }

    /// Applies a member's change to a room hosted here, or queues it for the
    /// room's host. A change queued for a host answers with seq 0.
    /// `None` when the change changes nothing (a rename to the same name).
    async fn change_room(
        &self,
        caller: &Caller,
        id: &RoomId,
        body: EventBody,
    ) -> Result<Option<RoomEvent>> {
        let change = Change::new(&caller.member, body, None);
        let mut w = self.store.begin_write().await?;
        let (row, members) = rooms::room_with_members(&mut w.tx, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        require_among(&members, id, &caller.member)?;
        match row.host.clone() {
            None => {
                if let EventBody::Renamed { name } = &change.body
                    && &row.name == name
                {
                    // Nothing to write, but refused all the same to whom
                    // the rules refuse.
                    check_rules(&mut w.tx, &row, &members, &caller.member, &change.body).await?;
                    return Ok(None);
                }
                let applied = self
                    .host_change_among(&mut w.tx, &row, members, change)
                    .await?;
                w.commit().await?;
                let event = applied.event.clone();
                self.announce(applied);
                Ok(Some(event))
            }
            Some(host) => {
                // Check here what can be checked here; the host decides.
                check_rules(&mut w.tx, &row, &members, &caller.member, &change.body).await?;
                if matches!(change.body, EventBody::Left { .. }) {
                    // The room leaves the member's list at once.
                    rooms::delete_membership(&mut w.tx, id, &caller.member).await?;
                }
                let why = if matches!(change.body, EventBody::Left { .. }) {
                    Unchecked::Departure
                } else {
                    Unchecked::Proposal
                };
                let permit = admission::unchecked(id, &caller.member, why);
                self.queue_for_host(
                    &mut w.tx,
                    &permit,
                    &host,
                    &change.id,
                    &change.body,
                    change.at_ms,
                )
                .await?;
                w.commit().await?;
                self.outbox.wake(&host);
                Ok(Some(pending_event(*id, change)))
            }
        }
    }

    /// Stores a message durably, then acknowledges it: in the room, when
    /// this node hosts it; otherwise in the outbox for the room's host. A
    /// retry with the same idempotency key returns the stored message and
    /// stores nothing.
    pub async fn send_message(
        &self,
        caller: &Caller,
        id: &RoomId,
        idempotency_key: &str,
        content: Content,
    ) -> Result<Sent> {
        let key = idempotency_key.trim();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            ));
        }
        let body = match content {
            Content::Text(text) => {
                content::text(&text, &self.limits)?;
                EventBody::Text { text }
            }
            Content::Sticker(name) => {
                content::sticker(&name)?;
                EventBody::Sticker { name }
            }
            Content::Attachment(attachment) => {
                self.attachment_body(caller, id, attachment.trim()).await?
            }
        };
        let sent = match self
            .store_message(&caller.member, id, key, body.clone())
            .await
        {
            // A concurrent retry with the same key committed first (PostgreSQL
            // runs writers in parallel): answer with the event it stored.
            Err(e) if e.is_duplicate() => {
                let mut conn = self.store.pool().acquire().await?;
                match earlier_send(&mut conn, id, &caller.member, key).await? {
                    Some(earlier) => same_message(earlier, key, &body).map(Stored::earlier),
                    None => Err(Error::Internal(format!(
                        "unique violation without a stored event: {e}"
                    ))),
                }
            }
            other => other,
        }?;
        // A message stored just now is queued for exactly the peers it was
        // queued for; only an earlier one needs its state read back.
        let delivery = match &sent.queued {
            Some(peers) => crate::outbox::just_queued(peers),
            None => self.delivery_of_event(&sent.event.id).await?,
        };
        Ok(Sent {
            event: sent.event,
            duplicate: sent.duplicate,
            delivery,
        })
    }

    /// Stores a message and commits it: with other messages in one group
    /// commit on SQLite (`sends`), or in a transaction of its own.
    async fn store_message(
        &self,
        sender: &MemberId,
        id: &RoomId,
        key: &str,
        body: EventBody,
    ) -> Result<Stored> {
        if let Some(grouped) = self.sends.submit(sender, id, key, &body).await {
            return grouped;
        }
        let mut w = self.store.begin_write().await?;
        let mut stored = self
            .store_message_in(&mut w.tx, sender, id, key, &body)
            .await?;
        w.commit().await?;
        self.committed(&mut stored);
        Ok(stored)
    }

    /// Stores a message in the caller's transaction (`store_messages_in`,
    /// with one message). Call `committed` once the transaction commits.
    pub(crate) async fn store_message_in(
        &self,
        conn: &mut AnyConnection,
        sender: &MemberId,
        room: &RoomId,
        key: &str,
        body: &EventBody,
    ) -> Result<Stored> {
        let message = group::Message {
            sender,
            room: *room,
            key,
            body,
        };
        self.store_messages_in(conn, &[message])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a message went unanswered".into())))
    }

    /// Wakes the deliverers of the peers an applied change was queued for and
    /// shows it to local watchers.
    pub(crate) fn announce(&self, applied: Applied) {
        for peer in &applied.peers {
            self.outbox.wake(peer);
        }
        self.hub.publish(applied.event, applied.local);
    }

    /// Checks a change against the room's rules and this node's half of
    /// admission, stores it as the room's next event, updates the room and
    /// queues it for the other participating nodes. Runs in the caller's
    /// write transaction; announce the result after the commit.
    pub(crate) async fn host_change(
        &self,
        conn: &mut AnyConnection,
        row: &rooms::RoomRow,
        change: Change,
    ) -> Result<Applied> {
        let before = rooms::member_ids(conn, &row.id).await?;
        self.host_change_among(conn, row, before, change).await
    }

    /// `host_change` for a caller that read the room's current members
    /// (`before`, in the order they joined) in this transaction.
    pub(crate) async fn host_change_among(
        &self,
        conn: &mut AnyConnection,
        row: &rooms::RoomRow,
        before: Vec<MemberId>,
        change: Change,
    ) -> Result<Applied> {
        let room = row.id;
        let actor = &change.actor;
        check_rules(conn, row, &before, actor, &change.body).await?;
        let mut body = change.body;
        let mut joined = Vec::new();
        let mut departed = None;
        let permit: Option<RoomPermit>;
        match &mut body {
            EventBody::Text { .. } | EventBody::Sticker { .. } | EventBody::Attachment(_) => {
                permit = Some(
                    self.may_message(conn, &room, row.kind, None, actor, &before)
                        .await?,
                );
                if matches!(body, EventBody::Attachment(_)) {
                    self.files_allowed(conn, actor, &before).await?;
                }
            }
            EventBody::Joined { members } => {
                let mut new = Vec::new();
                for m in members.iter() {
                    if !before.contains(m) && !new.contains(m) {
                        new.push(m.clone());
                    }
                }
                if new.is_empty() {
                    return Err(Error::AlreadyExists(
                        "every invited member is already in the room".into(),
                    ));
                }
                if before.len() + new.len() > self.limits.max_room_members {
                    return Err(Error::ResourceExhausted(format!(
                        "a room holds at most {} members",
                        self.limits.max_room_members
                    )));
                }
                let mut after = before.clone();
                after.extend(new.iter().cloned());
                let mut admitted = Vec::new();
                for m in &new {
                    if m.belongs_to(&self.id) {
                        require_active(conn, m).await?;
                    }
                    if let Err((denied, local)) =
                        admission::bring_in(conn, &self.id, actor, m).await?
                    {
                        return Err(if actor.belongs_to(&self.id) {
                            denied.to_member(m)
                        } else {
                            denied.to_peer(&local)
                        });
                    }
                    admitted.push(
                        self.may_enter(conn, &room, row.kind, None, actor, m, &after)
                            .await?,
                    );
                }
                permit = admission::invitation(&room, actor, &admitted);
                members.clone_from(&new);
                joined = new;
            }
            EventBody::Removed { member } => {
                departed = Some(member.clone());
                permit = Some(admission::unchecked(&room, actor, Unchecked::Departure));
            }
            EventBody::Left { new_master } => {
                departed = Some(actor.clone());
                permit = Some(admission::unchecked(&room, actor, Unchecked::Departure));
                if row.kind == RoomKind::Group && row.master.as_ref() == Some(actor) {
                    // The longest-standing member takes over from a departing master.
                    *new_master = before.iter().find(|m| *m != actor).cloned();
                }
            }
            EventBody::Unknown => {
                departed = Some(actor.clone());
                permit = Some(admission::unchecked(&room, actor, Unchecked::Departure));
            }
            EventBody::Renamed { .. } => {
                permit = Some(admission::unchecked(&room, actor, Unchecked::Rename));
            }
            EventBody::Unsent { seq } => {
                let target = events::range(conn, &room, seq.saturating_sub(1), *seq, 1).await?;
                match target.first() {
                    Some(e) if &e.sender == actor && e.body.is_message() => {}
                    _ => {
                        return Err(Error::NotFound(format!(
                            "a message of {actor} at {seq} in room {room}"
                        )));
                    }
                }
                permit = Some(admission::unchecked(&room, actor, Unchecked::Unsend));
            }
            EventBody::Created { .. } | EventBody::Withheld => {
                return Err(Error::invalid("body", "not a change to an existing room"));
            }
        }
        let event = events::append_as(
            conn,
            &room,
            change.id,
            actor,
            body,
            change.idempotency_key.as_deref(),
            change.at_ms,
        )
        .await?;
        self.record_attachment(conn, &event).await?;
        let unseen_by: Vec<MemberId> = permit
            .as_ref()
            .filter(|_| event.body.is_message())
            .map(|p| p.unseen_by().to_vec())
            .unwrap_or_default();
        events::hide_from(conn, &room, event.seq, &unseen_by).await?;
        if let EventBody::Unsent { seq } = &event.body {
            // Taken back: no one here sees it any more; the audit keeps it.
            let ours: Vec<MemberId> = before
                .iter()
                .filter(|m| m.belongs_to(&self.id))
                .cloned()
                .collect();
            events::hide_from(conn, &room, *seq, &ours).await?;
        }
        for m in &joined {
            rooms::insert_membership(conn, &room, m, event.seq, event.at_ms).await?;
        }
        if let Some(gone) = &departed {
            rooms::delete_membership(conn, &room, gone).await?;
            if row.kind == RoomKind::Group && row.master.as_ref() == Some(gone) {
                let next = rooms::member_ids(conn, &room).await?.into_iter().next();
                rooms::set_master(conn, &room, next.as_ref()).await?;
            }
        }
        match &event.body {
            EventBody::Renamed { name } => rooms::set_name(conn, &room, name).await?,
            b if b.is_message() && actor.belongs_to(&self.id) => {
                rooms::advance_read(conn, &room, actor, event.seq).await?;
            }
            _ => {}
        }
        // Without a change of membership the members are the ones read before.
        let after = (joined.is_empty() && departed.is_none()).then_some(before);
        let departed: Vec<MemberId> = departed.into_iter().collect();
        let permit = permit.ok_or_else(|| {
            Error::Internal(format!(
                "no admission permit for a {} event",
                event.body.kind()
            ))
        })?;
        let mut applied = self
            .after_change(conn, &permit, event, after, &departed)
            .await?;
        applied.local.retain(|m| !unseen_by.contains(m));
        Ok(applied)
    }

    /// Queues a hosted room's new event for the participating peers (with
    /// the room's state when it changed), audits it and says who sees it.
    /// `after`: the members now, when the caller knows them.
    async fn after_change(
        &self,
        conn: &mut AnyConnection,
        permit: &RoomPermit,
        event: RoomEvent,
        after: Option<Vec<MemberId>>,
        departed: &[MemberId],
    ) -> Result<Applied> {
        let room = &event.room;
        let after = match after {
            Some(after) => after,
            None => rooms::member_ids(conn, room).await?,
        };
        let everyone: Vec<MemberId> = after.iter().chain(departed).cloned().collect();
        let (local, peers) = self.reach(&everyone);
        let snapshot = if event.body.changes_room() {
            let row = rooms::room(conn, room)
                .await?
                .ok_or_else(|| Error::NotFound(format!("room {room}")))?;
            Some(Snapshot {
                kind: row.kind,
                name: row.name,
                master: row.master,
                members: after.clone(),
            })
        } else {
            None
        };
        self.queue_for_peers(conn, permit, &event, snapshot, &peers)
            .await?;
        self.audit_room_event(conn, &event, &everyone).await?;
        Ok(Applied {
            event,
            local,
            peers,
        })
    }

    /// Who a hosted room's event reaches among `members` (everyone it
    /// concerns): our members, whose streams show it, and the other
    /// companies' nodes it is queued for.
    pub(crate) fn reach(&self, members: &[MemberId]) -> (Vec<MemberId>, Vec<TenantId>) {
        let local = members
            .iter()
            .filter(|m| m.belongs_to(&self.id))
            .cloned()
            .collect();
        let mut peers: Vec<TenantId> = members
            .iter()
            .map(|m| m.tenant().clone())
            .filter(|t| t != &self.id)
            .collect();
        peers.sort();
        peers.dedup();
        (local, peers)
    }

    /// This node's say on whether `actor` may post a message to a room with
    /// `members` (`admission::room_event`: in a direct room a block or a
    /// deleted contact stops it; in a group they decide only who of ours
    /// sees another company's message, `RoomPermit::unseen_by`). The
    /// refusal is precise for our own member and a bare "not found" for
    /// another company's.
    pub(crate) async fn may_message(
        &self,
        conn: &mut AnyConnection,
        room: &RoomId,
        kind: RoomKind,
        host: Option<&TenantId>,
        actor: &MemberId,
        members: &[MemberId],
    ) -> Result<RoomPermit> {
        self.room_admission(conn, Act::Message, room, kind, host, actor, actor, members)
            .await
    }

    /// This node's say on whether `joiner` may come into a room whose
    /// members are then `members`: admitted with every member of the other
    /// side (`admission::room_event`, `Act::Join`). `asker` is who brings
    /// them in (or the joiner): the refusal is told to them, precisely when
    /// they are our member, naming whoever is not permitted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn may_enter(
        &self,
        conn: &mut AnyConnection,
        room: &RoomId,
        kind: RoomKind,
        host: Option<&TenantId>,
        asker: &MemberId,
        joiner: &MemberId,
        members: &[MemberId],
    ) -> Result<RoomPermit> {
        self.room_admission(conn, Act::Join, room, kind, host, asker, joiner, members)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn room_admission(
        &self,
        conn: &mut AnyConnection,
        act: Act,
        room: &RoomId,
        kind: RoomKind,
        host: Option<&TenantId>,
        asker: &MemberId,
        actor: &MemberId,
        members: &[MemberId],
    ) -> Result<RoomPermit> {
        let permit = match self
            .admit_room_event(conn, act, room, kind, host, actor, members)
            .await?
        {
            Ok(permit) => permit,
            Err((denied, local)) => {
                return Err(if asker.belongs_to(&self.id) {
                    let external = if actor.belongs_to(&self.id) {
                        members.iter().find(|m| !m.belongs_to(&self.id))
                    } else {
                        Some(actor)
                    };
                    denied.to_asker_about(asker, &local, external.unwrap_or(actor))
                } else {
                    denied.to_peer(&local)
                });
            }
        };
        Ok(permit)
    }

    /// Audits a room event that members of another company take part in.
    pub(crate) async fn audit_room_event(
        &self,
        conn: &mut AnyConnection,
        event: &RoomEvent,
        members: &[MemberId],
    ) -> Result<()> {
        if let Some(entry) = self.room_event_entry(event, members) {
            audit::append(conn, &entry, now_ms()).await?;
        }
        Ok(())
    }

    /// The audit entry of a room event, when members of another company
    /// take part in it (`members`: everyone it concerns).
    pub(crate) fn room_event_entry(
        &self,
        event: &RoomEvent,
        members: &[MemberId],
    ) -> Option<audit::NewEntry> {
        let external = if event.sender.belongs_to(&self.id) {
            members.iter().find(|m| !m.belongs_to(&self.id))
        } else {
            Some(&event.sender)
        }?;
        let summary = match &event.body {
            EventBody::Text { text } => format!("text: {text}"),
            EventBody::Sticker { name } => format!("sticker: {name}"),
            EventBody::Attachment(a) => format!(
                "file: {} ({} bytes, {}, sha256 {}, id {})",
                a.name, a.size, a.content_type, a.sha256, a.id
            ),
            other => other.kind().to_string(),
        };
        let mut entry = audit::NewEntry::new(&format!("room.{}", event.body.kind()), &event.sender)
            .external(external)
            .peer(external.tenant())
            .detail(format!(
                "room {} seq {} event {}: {summary}",
                event.room, event.seq, event.id
            ));
        if event.sender.belongs_to(&self.id) {
            entry = entry.member(&event.sender);
        } else if let Some(local) = members.iter().find(|m| m.belongs_to(&self.id)) {
            entry = entry.member(local);
        }
        Some(entry)
    }

    pub async fn history(
        &self,
        caller: &Caller,
        id: &RoomId,
        query: HistoryQuery,
    ) -> Result<HistoryPage> {
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be at most {MAX_PAGE}"),
                ));
            }
            n => n,
        };
        let mut conn = self.store.pool().acquire().await?;
        if rooms::room(&mut conn, id).await?.is_none() {
            return Err(Error::NotFound(format!("room {id}")));
        }
        require_member(&mut conn, id, &caller.member).await?;
        let mut page = match (query.after_seq, query.before_seq) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "after_seq",
                    "give after_seq or before_seq, not both",
                ));
            }
            (Some(after), None) => {
                let mut events = events::range(&mut conn, id, after, u64::MAX, limit + 1).await?;
                let has_more = events.len() > limit as usize;
                events.truncate(limit as usize);
                HistoryPage { events, has_more }
            }
            (None, before) => {
                let mut events = events::page_before(&mut conn, id, before, limit + 1).await?;
                let has_more = events.len() > limit as usize;
                if has_more {
                    events.remove(0);
                }
                HistoryPage { events, has_more }
            }
        };
        page.events.retain(|e| e.body != EventBody::Withheld);
        events::retain_seen(&mut conn, &caller.member, &mut page.events).await?;
        Ok(page)
    }

    /// Moves the caller's read marker to `seq` (clamped to the room's last).
    pub async fn mark_read(&self, caller: &Caller, id: &RoomId, seq: u64) -> Result<(u64, u64)> {
        let mut w = self.store.begin_write().await?;
        let row = rooms::room(&mut w.tx, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        require_member(&mut w.tx, id, &caller.member).await?;
        let marker =
            rooms::advance_read(&mut w.tx, id, &caller.member, seq.min(row.last_seq)).await?;
        w.commit().await?;
        let mut conn = self.store.pool().acquire().await?;
        let unread = rooms::unread_counts(&mut conn, &caller.member)
            .await?
            .get(id)
            .copied()
            .unwrap_or(0);
        Ok((marker, unread))
    }
}

/// The room's rules for a change, as far as this node's copy of the room
/// tells: the actor is a member; only the group master adds and removes,
/// and renames a group with members of other companies (in a group of one
/// company every member renames). `members` are the room's current
/// members. Every node applies them alike: the member's own node before it
/// proposes, the host before it sequences, each replica before it stores.
pub(crate) async fn check_rules(
    conn: &mut AnyConnection,
    row: &rooms::RoomRow,
    members: &[MemberId],
    actor: &MemberId,
    body: &EventBody,
) -> Result<()> {
    let room = row.id;
    if let (EventBody::Joined { members: joining }, RoomKind::Direct) = (body, row.kind) {
        // Only bringing back one or both of the two, which `open_direct` does.
        let key = rooms::direct_room_key_of(conn, &room).await?;
        if !key.split(' ').any(|k| k == actor.as_str()) {
            return Err(Error::PermissionDenied(format!(
                "{actor} is not one of the two members of room {room}"
            )));
        }
        for m in joining {
            if !key.split(' ').any(|k| k == m.as_str()) {
                return Err(Error::FailedPrecondition(
                    "a direct room's members cannot change; create a group room instead".into(),
                ));
            }
        }
        return Ok(());
    }
    require_among(members, &room, actor)?;
    if row.line_chat.is_some() {
        line_room_rules(actor, body)?;
    }
    match body {
        EventBody::Joined { .. } | EventBody::Removed { .. } => {
            let action = if matches!(body, EventBody::Joined { .. }) {
                "add members"
            } else {
                "remove members"
            };
            if row.kind == RoomKind::Direct {
                return Err(Error::FailedPrecondition(
                    "a direct room's members cannot change; create a group room instead".into(),
                ));
            }
            if row.master.as_ref() != Some(actor) {
                return Err(Error::PermissionDenied(format!(
                    "only the group master can {action} in room {room}"
                )));
            }
            if let EventBody::Removed { member: target } = body {
                if target == actor {
                    return Err(Error::invalid(
                        "member_id",
                        "to remove yourself, leave the room",
                    ));
                }
                if !members.contains(target) {
                    return Err(Error::NotFound(format!("member {target} in room {room}")));
                }
            }
        }
        EventBody::Renamed { .. } if row.kind == RoomKind::Direct => {
            return Err(Error::FailedPrecondition(
                "a direct room has no name; create a group room instead".into(),
            ));
        }
        EventBody::Renamed { .. }
            if spans_companies(members) && row.master.as_ref() != Some(actor) =>
        {
            let master = match &row.master {
                Some(master) => format!(", {master},"),
                None => String::new(),
            };
            return Err(Error::PermissionDenied(format!(
                "only the group master{master} can rename room {room}, which has members of other companies"
            )));
        }
        _ => {}
    }
    Ok(())
}

/// What a room with LINE users takes besides the rules of every room: our
/// members send LINE stickers only (LINE lets accounts send no others), and
/// only the company's members and LINE users are in it.
fn line_room_rules(actor: &MemberId, body: &EventBody) -> Result<()> {
    match body {
        EventBody::Sticker { name }
            if !crate::ids::is_line(actor) && crate::outbox::line::line_sticker(name).is_none() =>
        {
            Err(Error::invalid(
                "sticker",
                "a room with LINE users takes LINE stickers: line:PACKAGE_ID:STICKER_ID",
            ))
        }
        EventBody::Joined { members }
            if members
                .iter()
                .any(|m| !crate::ids::is_line(m) && m.tenant() != actor.tenant()) =>
        {
            Err(Error::FailedPrecondition(
                "a room with LINE users takes only your company's members and LINE users".into(),
            ))
        }
        _ => Ok(()),
    }
}

async fn require_active(conn: &mut AnyConnection, id: &MemberId) -> Result<()> {
    match crate::store::members::member(conn, id).await? {
        None => Err(Error::NotFound(format!("member {id}"))),
        Some(m) if m.state == MemberState::Suspended => Err(Error::FailedPrecondition(format!(
            "member {id} is suspended"
        ))),
        Some(_) => Ok(()),
    }
}

/// A message the caller sent earlier under this key: sequenced, or still
/// waiting for its host.
async fn earlier_send(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    key: &str,
) -> Result<Option<RoomEvent>> {
    Ok(group::earlier_sends(conn, room, sender, &[key], true)
        .await?
        .remove(key))
}

fn pending_event(room: RoomId, change: Change) -> RoomEvent {
    RoomEvent {
        id: change.id,
        room,
        seq: 0,
        sender: change.actor,
        at_ms: change.at_ms,
        body: change.body,
    }
}

/// The answer to a retried send: the stored event, if it is the same message.
fn same_message(earlier: RoomEvent, key: &str, body: &EventBody) -> Result<(RoomEvent, bool)> {
    if &earlier.body == body {
        Ok((earlier, true))
    } else {
        Err(Error::AlreadyExists(format!(
            "idempotency key {:?} was already used for a different message",
            works_bridge::error::clip(key)
        )))
    }
}

/// "alice, bob, carol": a group's name until someone renames it.
fn default_group_name(creator: &MemberId, others: &[MemberId]) -> String {
    let mut name = creator.name().to_string();
    for other in others {
        if name.chars().count() + other.name().len() + 2 > MAX_ROOM_NAME_CHARS {
            name.push_str(", …");
            break;
        }
        name.push_str(", ");
        name.push_str(other.name());
    }
    name
}

/// Whether `members` belong to more than one company: an external room.
/// Every node that holds the room reads the same answer from it.
/// LINE users do not count: a room's name is ours alone, LINE never sees it.
fn spans_companies(members: &[MemberId]) -> bool {
    let mut companies = members.iter().filter(|m| !crate::ids::is_line(m));
    companies
        .next()
        .is_some_and(|first| companies.any(|m| m.tenant() != first.tenant()))
}

/// `require_member` against members already read.
fn require_among(members: &[MemberId], room: &RoomId, member: &MemberId) -> Result<()> {
    if members.contains(member) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{member} is not a member of room {room}"
        )))
    }
}

pub(crate) async fn require_member(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
) -> Result<rooms::Membership> {
    rooms::membership(conn, room, member)
        .await?
        .ok_or_else(|| Error::PermissionDenied(format!("{member} is not a member of room {room}")))
}

#[cfg(test)]
mod rules_tests;
