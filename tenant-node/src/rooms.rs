//! Rooms and messages: the rules of who may do what in a room.
//!
//! Every change runs in one write transaction that checks the rules, appends
//! the event with the room's next sequence number and updates membership; the
//! event is published to live streams only after the commit.

use std::collections::BTreeSet;

use sqlx::AnyConnection;

use crate::error::{Error, Result};
use crate::ids::{MemberId, RoomId};
use crate::model::{Caller, EventBody, MemberState, Room, RoomEvent, RoomKind};
use crate::store::{WriteTx, events, now_ms, rooms};
use crate::tenant::{Tenant, clean_name};

const MAX_ROOM_NAME_CHARS: usize = 100;
const MAX_IDEMPOTENCY_KEY: usize = 128;
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

/// The outcome of a send: the stored event, and whether it was stored before.
pub struct Sent {
    pub event: RoomEvent,
    pub duplicate: bool,
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

impl Tenant {
    pub fn parse_room_id(&self, input: &str) -> Result<RoomId> {
        RoomId::parse(input).map_err(Error::bad_id("room_id"))
    }

    /// Parses invitees, drops duplicates and the caller, and checks each is an
    /// active member of this company.
    async fn resolve_invitees(&self, caller: &Caller, inputs: &[String]) -> Result<Vec<MemberId>> {
        let mut ids = BTreeSet::new();
        for input in inputs {
            let id = self.local_member_id("members", input)?;
            if id != caller.member {
                ids.insert(id);
            }
        }
        for id in &ids {
            match self.store.member(id).await? {
                None => return Err(Error::NotFound(format!("member {id}"))),
                Some(m) if m.state == MemberState::Suspended => {
                    return Err(Error::FailedPrecondition(format!(
                        "member {id} is suspended"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(ids.into_iter().collect())
    }

    pub async fn create_room(
        &self,
        caller: &Caller,
        kind: RoomKind,
        name: &str,
        members: &[String],
    ) -> Result<Room> {
        let invitees = self.resolve_invitees(caller, members).await?;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let (room_id, published) = match kind {
            RoomKind::Direct => {
                let [other] = invitees.as_slice() else {
                    return Err(Error::invalid(
                        "members",
                        "a direct room takes exactly one other member",
                    ));
                };
                let key = rooms::direct_key(&caller.member, other);
                match rooms::direct_room(&mut w.tx, &key).await? {
                    Some(existing) => {
                        // Creating it again brings back whichever of the two had left.
                        let current = rooms::member_ids(&mut w.tx, &existing).await?;
                        let missing: Vec<MemberId> = [&caller.member, other]
                            .into_iter()
                            .filter(|m| !current.contains(m))
                            .cloned()
                            .collect();
                        if missing.is_empty() {
                            (existing, None)
                        } else {
                            let event =
                                add_members(&mut w, &existing, &caller.member, &missing, at)
                                    .await?;
                            (existing, Some(event))
                        }
                    }
                    None => {
                        let id = RoomId::generate();
                        let all = vec![caller.member.clone(), other.clone()];
                        rooms::insert_room(&mut w.tx, &id, kind, "", None, Some(&key), at).await?;
                        let event = created(&mut w, &id, caller, kind, "", &all, at).await?;
                        (id, Some(event))
                    }
                }
            }
            RoomKind::Group => {
                let name = if name.trim().is_empty() {
                    default_group_name(&caller.member, &invitees)
                } else {
                    clean_name("name", name, MAX_ROOM_NAME_CHARS)?
                };
                if invitees.len() + 1 > self.limits.max_room_members {
                    return Err(Error::ResourceExhausted(format!(
                        "a room holds at most {} members",
                        self.limits.max_room_members
                    )));
                }
                let id = RoomId::generate();
                let mut all = vec![caller.member.clone()];
                all.extend(invitees.iter().cloned());
                rooms::insert_room(&mut w.tx, &id, kind, &name, Some(&caller.member), None, at)
                    .await?;
                let event = created(&mut w, &id, caller, kind, &name, &all, at).await?;
                (id, Some(event))
            }
        };
        let recipients = rooms::member_ids(&mut w.tx, &room_id).await?;
        w.commit().await?;
        if let Some(event) = published {
            tracing::info!(room = %room_id, by = %caller.member, ?kind, "room changed");
            self.hub.publish(event, recipients);
        }
        self.room(caller, &room_id.to_string()).await
    }

    /// A room as the caller sees it; only members may look.
    pub async fn room(&self, caller: &Caller, room: &str) -> Result<Room> {
        let id = self.parse_room_id(room)?;
        let mut conn = self.store.pool().acquire().await?;
        let row = rooms::room(&mut conn, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        let membership = require_member(&mut conn, &id, &caller.member).await?;
        let members = rooms::member_ids(&mut conn, &id).await?;
        let unread = rooms::unread_counts(&mut conn, &caller.member)
            .await?
            .get(&id)
            .copied()
            .unwrap_or(0);
        Ok(Room {
            id,
            kind: row.kind,
            name: row.name,
            members,
            master: row.master,
            last_seq: row.last_seq,
            last_read_seq: membership.last_read_seq,
            unread,
            created_at_ms: row.created_at_ms,
            last_event_at_ms: row.last_event_at_ms,
        })
    }

    pub async fn list_rooms(&self, caller: &Caller) -> Result<Vec<Room>> {
        let mut conn = self.store.pool().acquire().await?;
        let listed = rooms::rooms_of(&mut conn, &caller.member).await?;
        let unread = rooms::unread_counts(&mut conn, &caller.member).await?;
        let mut out = Vec::with_capacity(listed.len());
        for (row, membership) in listed {
            let members = rooms::member_ids(&mut conn, &row.id).await?;
            out.push(Room {
                unread: unread.get(&row.id).copied().unwrap_or(0),
                id: row.id,
                kind: row.kind,
                name: row.name,
                members,
                master: row.master,
                last_seq: row.last_seq,
                last_read_seq: membership.last_read_seq,
                created_at_ms: row.created_at_ms,
                last_event_at_ms: row.last_event_at_ms,
            });
        }
        Ok(out)
    }

    pub async fn invite_members(
        &self,
        caller: &Caller,
        room: &str,
        members: &[String],
    ) -> Result<Room> {
        let id = self.parse_room_id(room)?;
        let invitees = self.resolve_invitees(caller, members).await?;
        if invitees.is_empty() {
            return Err(Error::invalid(
                "members",
                "name at least one member to invite",
            ));
        }
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let row = load_group_as_master(&mut w.tx, &id, caller, "add members").await?;
        let _ = row;
        let current = rooms::member_ids(&mut w.tx, &id).await?;
        let new: Vec<MemberId> = invitees
            .into_iter()
            .filter(|m| !current.contains(m))
            .collect();
        if new.is_empty() {
            return Err(Error::AlreadyExists(
                "every invited member is already in the room".into(),
            ));
        }
        if current.len() + new.len() > self.limits.max_room_members {
            return Err(Error::ResourceExhausted(format!(
                "a room holds at most {} members",
                self.limits.max_room_members
            )));
        }
        let event = add_members(&mut w, &id, &caller.member, &new, at).await?;
        let recipients = rooms::member_ids(&mut w.tx, &id).await?;
        w.commit().await?;
        tracing::info!(room = %id, by = %caller.member, added = new.len(), "members added");
        self.hub.publish(event, recipients);
        self.room(caller, room).await
    }

    pub async fn remove_member(&self, caller: &Caller, room: &str, member: &str) -> Result<Room> {
        let id = self.parse_room_id(room)?;
        let target = MemberId::parse(member).map_err(Error::bad_id("member_id"))?;
        if target == caller.member {
            return Err(Error::invalid(
                "member_id",
                "to remove yourself, leave the room",
            ));
        }
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        load_group_as_master(&mut w.tx, &id, caller, "remove members").await?;
        if rooms::membership(&mut w.tx, &id, &target).await?.is_none() {
            return Err(Error::NotFound(format!("member {target} in room {id}")));
        }
        let event = events::append(
            &mut w.tx,
            &id,
            &caller.member,
            EventBody::Removed {
                member: target.to_string(),
            },
            None,
            at,
        )
        .await?;
        rooms::delete_membership(&mut w.tx, &id, &target).await?;
        let mut recipients = rooms::member_ids(&mut w.tx, &id).await?;
        recipients.push(target.clone());
        w.commit().await?;
        tracing::info!(room = %id, by = %caller.member, removed = %target, "member removed");
        self.hub.publish(event, recipients);
        self.room(caller, room).await
    }

    pub async fn leave_room(&self, caller: &Caller, room: &str) -> Result<RoomEvent> {
        let id = self.parse_room_id(room)?;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let row = rooms::room(&mut w.tx, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        require_member(&mut w.tx, &id, &caller.member).await?;
        rooms::delete_membership(&mut w.tx, &id, &caller.member).await?;
        let remaining = rooms::member_ids(&mut w.tx, &id).await?;
        // The longest-standing member takes over from a departing master.
        let new_master = match (&row.master, row.kind) {
            (Some(master), RoomKind::Group) if master == &caller.member => {
                let next = remaining.first().cloned();
                rooms::set_master(&mut w.tx, &id, next.as_ref()).await?;
                next
            }
            _ => None,
        };
        let event = events::append(
            &mut w.tx,
            &id,
            &caller.member,
            EventBody::Left {
                new_master: new_master.map(|m| m.to_string()),
            },
            None,
            at,
        )
        .await?;
        let mut recipients = remaining;
        recipients.push(caller.member.clone());
        w.commit().await?;
        tracing::info!(room = %id, member = %caller.member, "member left");
        self.hub.publish(event.clone(), recipients);
        Ok(event)
    }

    pub async fn rename_room(&self, caller: &Caller, room: &str, name: &str) -> Result<Room> {
        let id = self.parse_room_id(room)?;
        let name = clean_name("name", name, MAX_ROOM_NAME_CHARS)?;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let row = rooms::room(&mut w.tx, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        require_member(&mut w.tx, &id, &caller.member).await?;
        if row.kind == RoomKind::Direct {
            return Err(Error::FailedPrecondition(
                "a direct room has no name; create a group room instead".into(),
            ));
        }
        if row.name == name {
            w.commit().await?;
            return self.room(caller, room).await;
        }
        rooms::set_name(&mut w.tx, &id, &name).await?;
        let event = events::append(
            &mut w.tx,
            &id,
            &caller.member,
            EventBody::Renamed { name },
            None,
            at,
        )
        .await?;
        let recipients = rooms::member_ids(&mut w.tx, &id).await?;
        w.commit().await?;
        self.hub.publish(event, recipients);
        self.room(caller, room).await
    }

    /// Stores a text message durably, then acknowledges it. A retry with the
    /// same idempotency key returns the stored event and stores nothing.
    pub async fn send_text(
        &self,
        caller: &Caller,
        room: &str,
        idempotency_key: &str,
        text: &str,
    ) -> Result<Sent> {
        let id = self.parse_room_id(room)?;
        let key = idempotency_key.trim();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            ));
        }
        if text.trim().is_empty() {
            return Err(Error::invalid("text", "message is empty"));
        }
        if text.len() > self.limits.max_text_bytes {
            return Err(Error::ResourceExhausted(format!(
                "message is {} bytes; the limit is {}",
                text.len(),
                self.limits.max_text_bytes
            )));
        }
        match self.store_text(caller, &id, key, text).await {
            // A concurrent retry with the same key committed first (PostgreSQL
            // runs writers in parallel): answer with the event it stored.
            Err(Error::Storage(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                let mut conn = self.store.pool().acquire().await?;
                match events::by_idempotency_key(&mut conn, &id, &caller.member, key).await? {
                    Some(earlier) => same_text(earlier, key, text),
                    None => Err(Error::Internal(format!(
                        "unique violation without a stored event: {e}"
                    ))),
                }
            }
            other => other,
        }
    }

    async fn store_text(
        &self,
        caller: &Caller,
        id: &RoomId,
        key: &str,
        text: &str,
    ) -> Result<Sent> {
        let id = *id;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        if rooms::room(&mut w.tx, &id).await?.is_none() {
            return Err(Error::NotFound(format!("room {id}")));
        }
        require_member(&mut w.tx, &id, &caller.member).await?;
        if let Some(earlier) =
            events::by_idempotency_key(&mut w.tx, &id, &caller.member, key).await?
        {
            return same_text(earlier, key, text);
        }
        let event = events::append(
            &mut w.tx,
            &id,
            &caller.member,
            EventBody::Text {
                text: text.to_string(),
            },
            Some(key),
            at,
        )
        .await?;
        rooms::advance_read(&mut w.tx, &id, &caller.member, event.seq).await?;
        let recipients = rooms::member_ids(&mut w.tx, &id).await?;
        w.commit().await?;
        tracing::debug!(room = %id, seq = event.seq, sender = %caller.member, "message stored");
        self.hub.publish(event.clone(), recipients);
        Ok(Sent {
            event,
            duplicate: false,
        })
    }

    pub async fn history(
        &self,
        caller: &Caller,
        room: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage> {
        let id = self.parse_room_id(room)?;
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
        if rooms::room(&mut conn, &id).await?.is_none() {
            return Err(Error::NotFound(format!("room {id}")));
        }
        require_member(&mut conn, &id, &caller.member).await?;
        match (query.after_seq, query.before_seq) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "after_seq",
                "give after_seq or before_seq, not both",
            )),
            (Some(after), None) => {
                let mut events = events::range(&mut conn, &id, after, u64::MAX, limit + 1).await?;
                let has_more = events.len() > limit as usize;
                events.truncate(limit as usize);
                Ok(HistoryPage { events, has_more })
            }
            (None, before) => {
                let mut events = events::page_before(&mut conn, &id, before, limit + 1).await?;
                let has_more = events.len() > limit as usize;
                if has_more {
                    events.remove(0);
                }
                Ok(HistoryPage { events, has_more })
            }
        }
    }

    /// Moves the caller's read marker to `seq` (clamped to the room's last).
    pub async fn mark_read(&self, caller: &Caller, room: &str, seq: u64) -> Result<(u64, u64)> {
        let id = self.parse_room_id(room)?;
        let mut w = self.store.begin_write().await?;
        let row = rooms::room(&mut w.tx, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
        require_member(&mut w.tx, &id, &caller.member).await?;
        let marker =
            rooms::advance_read(&mut w.tx, &id, &caller.member, seq.min(row.last_seq)).await?;
        w.commit().await?;
        let mut conn = self.store.pool().acquire().await?;
        let unread = rooms::unread_counts(&mut conn, &caller.member)
            .await?
            .get(&id)
            .copied()
            .unwrap_or(0);
        Ok((marker, unread))
    }
}

/// The answer to a retried send: the stored event, if it is the same message.
fn same_text(earlier: RoomEvent, key: &str, text: &str) -> Result<Sent> {
    match &earlier.body {
        EventBody::Text { text: stored } if stored == text => Ok(Sent {
            event: earlier,
            duplicate: true,
        }),
        _ => Err(Error::AlreadyExists(format!(
            "idempotency key {key:?} was already used for a different message"
        ))),
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

pub(crate) async fn require_member(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
) -> Result<rooms::Membership> {
    rooms::membership(conn, room, member)
        .await?
        .ok_or_else(|| Error::PermissionDenied(format!("{member} is not a member of room {room}")))
}

/// Loads a group room and checks the caller is its master.
async fn load_group_as_master(
    conn: &mut AnyConnection,
    id: &RoomId,
    caller: &Caller,
    action: &str,
) -> Result<rooms::RoomRow> {
    let row = rooms::room(conn, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("room {id}")))?;
    require_member(conn, id, &caller.member).await?;
    if row.kind == RoomKind::Direct {
        return Err(Error::FailedPrecondition(
            "a direct room's members cannot change; create a group room instead".into(),
        ));
    }
    if row.master.as_ref() != Some(&caller.member) {
        return Err(Error::PermissionDenied(format!(
            "only the group master can {action} in room {id}"
        )));
    }
    Ok(row)
}

async fn created(
    w: &mut WriteTx,
    id: &RoomId,
    caller: &Caller,
    kind: RoomKind,
    name: &str,
    members: &[MemberId],
    at: i64,
) -> Result<RoomEvent> {
    let event = events::append(
        &mut w.tx,
        id,
        &caller.member,
        EventBody::Created {
            room_kind: kind,
            name: name.to_string(),
            members: members.iter().map(ToString::to_string).collect(),
        },
        None,
        at,
    )
    .await?;
    for member in members {
        rooms::insert_membership(&mut w.tx, id, member, event.seq, at).await?;
    }
    Ok(event)
}

async fn add_members(
    w: &mut WriteTx,
    id: &RoomId,
    by: &MemberId,
    new: &[MemberId],
    at: i64,
) -> Result<RoomEvent> {
    let event = events::append(
        &mut w.tx,
        id,
        by,
        EventBody::Joined {
            members: new.iter().map(ToString::to_string).collect(),
        },
        None,
        at,
    )
    .await?;
    for member in new {
        rooms::insert_membership(&mut w.tx, id, member, event.seq, at).await?;
    }
    Ok(event)
}
