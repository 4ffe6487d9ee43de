//! Rooms and memberships. Functions take a connection so the domain layer can
//! check its rules and write in one transaction.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::{Error, Result};
use crate::ids::{MemberId, RoomId, TenantId};
use crate::model::RoomKind;

#[derive(Clone)]
pub struct RoomRow {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub master: Option<MemberId>,
    pub last_seq: u64,
    pub created_at_ms: i64,
    pub last_event_at_ms: i64,
    /// The tenant whose node hosts the room; `None` when this node does.
    pub host: Option<TenantId>,
    /// The LINE chat (a user id or a group id) of a room with LINE users.
    pub line_chat: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Membership {
    pub joined_seq: u64,
    pub last_read_seq: u64,
}

const ROOM_COLUMNS: &str = "r.id, r.kind, r.name, r.master, r.last_seq, r.created_at, r.last_event_at, r.host, r.line_chat";

pub(crate) fn stored<T, E: std::fmt::Display>(what: &str, parsed: Result<T, E>) -> Result<T> {
    parsed.map_err(|e| Error::Internal(format!("stored {what} is invalid: {e}")))
}

fn room_from_row(row: &AnyRow) -> Result<RoomRow> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let master: Option<String> = row.try_get("master")?;
    let host: Option<String> = row.try_get("host")?;
    Ok(RoomRow {
        id: stored("room id", RoomId::parse(&id))?,
        kind: if kind == "direct" {
            RoomKind::Direct
        } else {
            RoomKind::Group
        },
        name: row.try_get("name")?,
        master: master
            .map(|m| stored("room master", MemberId::parse(&m)))
            .transpose()?,
        last_seq: row.try_get::<i64, _>("last_seq")? as u64,
        created_at_ms: row.try_get("created_at")?,
        last_event_at_ms: row.try_get("last_event_at")?,
        host: host
            .map(|h| stored("room host", TenantId::parse(&h)))
            .transpose()?,
        line_chat: row.try_get("line_chat")?,
    })
}

/// Marks a room hosted here as the room of a LINE chat.
pub async fn set_line_chat(conn: &mut AnyConnection, id: &RoomId, chat: &str) -> Result<()> {
    sqlx::query("UPDATE rooms SET line_chat = $1 WHERE id = $2")
        .bind(chat)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The `member_id` column of a row.
fn member_id_of(row: &AnyRow) -> Result<MemberId> {
    stored(
        "member id",
        MemberId::parse(&row.try_get::<String, _>("member_id")?),
    )
}

fn kind_str(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Direct => "direct",
        RoomKind::Group => "group",
    }
}

/// The key that makes a direct room unique per pair of members.
pub fn direct_key(a: &MemberId, b: &MemberId) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{first} {second}")
}

/// A new room. A replica (`host` set) starts at `last_seq`, the sequence
/// number just before the first event it receives; a hosted room at 0.
#[allow(clippy::too_many_arguments)]
pub async fn insert_room(
    conn: &mut AnyConnection,
    id: &RoomId,
    kind: RoomKind,
    name: &str,
    master: Option<&MemberId>,
    direct_key: Option<&str>,
    host: Option<&TenantId>,
    last_seq: u64,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rooms (id, kind, name, master, direct_key, host, last_seq, created_at, last_event_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(id.to_string())
    .bind(kind_str(kind))
    .bind(name)
    .bind(master.map(|m| m.to_string()))
    .bind(direct_key)
    .bind(host.map(|h| h.to_string()))
    .bind(last_seq as i64)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rooms with at least one member of another tenant that `member` is in
/// (rooms with LINE users are LINE's business, not another company's).
pub async fn external_rooms_of(
    conn: &mut AnyConnection,
    member: &MemberId,
    own: &TenantId,
) -> Result<Vec<RoomId>> {
    let rows = sqlx::query(
        "SELECT DISTINCT m.room_id FROM room_members m \
         JOIN room_members o ON o.room_id = m.room_id \
         JOIN rooms r ON r.id = m.room_id \
         WHERE m.member_id = $1 AND o.member_id NOT LIKE $2 AND r.line_chat IS NULL \
         ORDER BY m.room_id",
    )
    .bind(member.as_str())
    .bind(format!("%@{own}"))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            stored(
                "room id",
                RoomId::parse(&r.try_get::<String, _>("room_id")?),
            )
        })
        .collect()
}

/// A room `user` shares with a member of `own` other than `except`, and that
/// member.
pub async fn shared_with_colleague(
    conn: &mut AnyConnection,
    user: &MemberId,
    except: &MemberId,
    own: &TenantId,
) -> Result<Option<(RoomId, MemberId)>> {
    let row = sqlx::query(
        "SELECT x.room_id, o.member_id FROM room_members x \
         JOIN room_members o ON o.room_id = x.room_id \
         WHERE x.member_id = $1 AND o.member_id <> $2 AND o.member_id LIKE $3 \
         ORDER BY x.room_id, o.member_id LIMIT 1",
    )
    .bind(user.as_str())
    .bind(except.as_str())
    .bind(format!("%@{own}"))
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok((
            stored(
                "room id",
                RoomId::parse(&r.try_get::<String, _>("room_id")?),
            )?,
            member_id_of(&r)?,
        ))
    })
    .transpose()
}

/// Members of `own` who are in a room with a member of another tenant.
pub async fn members_in_external_rooms(
    conn: &mut AnyConnection,
    own: &TenantId,
) -> Result<Vec<MemberId>> {
    let rows = sqlx::query(
        "SELECT DISTINCT m.member_id FROM room_members m \
         JOIN room_members o ON o.room_id = m.room_id \
         WHERE m.member_id LIKE $1 AND o.member_id NOT LIKE $1 ORDER BY m.member_id",
    )
    .bind(format!("%@{own}"))
    .fetch_all(conn)
    .await?;
    rows.iter().map(member_id_of).collect()
}

/// Rooms this node hosts that members of `tenant` are in, with those members.
pub async fn hosted_rooms_with(
    conn: &mut AnyConnection,
    tenant: &TenantId,
) -> Result<Vec<(RoomId, MemberId)>> {
    let rows = sqlx::query(
        "SELECT m.room_id, m.member_id FROM room_members m JOIN rooms r ON r.id = m.room_id \
         WHERE r.host IS NULL AND m.member_id LIKE $1 ORDER BY m.room_id, m.member_id",
    )
    .bind(format!("%@{tenant}"))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                stored(
                    "room id",
                    RoomId::parse(&r.try_get::<String, _>("room_id")?),
                )?,
                member_id_of(r)?,
            ))
        })
        .collect()
}

/// A replica takes the room's state from its host: name, master and members
/// (members who stay keep their read markers; new ones join at `seq`).
pub async fn apply_snapshot(
    conn: &mut AnyConnection,
    room: &RoomId,
    name: &str,
    master: Option<&MemberId>,
    members: &[MemberId],
    seq: u64,
    at_ms: i64,
) -> Result<()> {
    sqlx::query("UPDATE rooms SET name = $1, master = $2 WHERE id = $3")
        .bind(name)
        .bind(master.map(|m| m.to_string()))
        .bind(room.to_string())
        .execute(&mut *conn)
        .await?;
    let current = member_ids(conn, room).await?;
    for gone in current.iter().filter(|m| !members.contains(m)) {
        delete_membership(conn, room, gone).await?;
    }
    for new in members.iter().filter(|m| !current.contains(m)) {
        insert_membership(conn, room, new, seq, at_ms).await?;
    }
    Ok(())
}

pub async fn direct_room(conn: &mut AnyConnection, key: &str) -> Result<Option<RoomId>> {
    let row = sqlx::query("SELECT id FROM rooms WHERE direct_key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?;
    row.map(|r| stored("room id", RoomId::parse(&r.try_get::<String, _>("id")?)))
        .transpose()
}

/// A direct room's key ("a b"); empty for a group room.
pub async fn direct_room_key_of(conn: &mut AnyConnection, id: &RoomId) -> Result<String> {
    let row = sqlx::query("SELECT direct_key FROM rooms WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => r
            .try_get::<Option<String>, _>("direct_key")?
            .unwrap_or_default(),
        None => String::new(),
    })
}

pub async fn room(conn: &mut AnyConnection, id: &RoomId) -> Result<Option<RoomRow>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(room_from_row).transpose()
}

/// A room and its current members (in the order they joined), in one
/// statement.
pub async fn room_with_members(
    conn: &mut AnyConnection,
    id: &RoomId,
) -> Result<Option<(RoomRow, Vec<MemberId>)>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ROOM_COLUMNS}, m.member_id FROM rooms r \
         LEFT JOIN room_members m ON m.room_id = r.id WHERE r.id = $1 \
         ORDER BY m.joined_seq, m.member_id"
    )))
    .bind(id.to_string())
    .fetch_all(conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let room = room_from_row(first)?;
    let mut members = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(id) = row.try_get::<Option<String>, _>("member_id")? {
            members.push(stored("member id", MemberId::parse(&id))?);
        }
    }
    Ok(Some((room, members)))
}

/// Current members, in the order they joined.
pub async fn member_ids(conn: &mut AnyConnection, room: &RoomId) -> Result<Vec<MemberId>> {
    let rows = sqlx::query(
        "SELECT member_id FROM room_members WHERE room_id = $1 ORDER BY joined_seq, member_id",
    )
    .bind(room.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(member_id_of).collect()
}

pub async fn membership(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
) -> Result<Option<Membership>> {
    let row = sqlx::query(
        "SELECT joined_seq, last_read_seq FROM room_members WHERE room_id = $1 AND member_id = $2",
    )
    .bind(room.to_string())
    .bind(member.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Membership {
            joined_seq: r.try_get::<i64, _>("joined_seq")? as u64,
            last_read_seq: r.try_get::<i64, _>("last_read_seq")? as u64,
        })
    })
    .transpose()
}

/// Adds a member who joins at `joined_seq`; the joining event itself is the
/// first thing their stream shows, and nothing before it counts as unread.
pub async fn insert_membership(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
    joined_seq: u64,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO room_members (room_id, member_id, joined_seq, joined_at, last_read_seq) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(room.to_string())
    .bind(member.as_str())
    .bind(joined_seq as i64)
    .bind(at_ms)
    .bind(joined_seq.saturating_sub(1) as i64)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_membership(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
) -> Result<()> {
    sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND member_id = $2")
        .bind(room.to_string())
        .bind(member.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_name(conn: &mut AnyConnection, room: &RoomId, name: &str) -> Result<()> {
    sqlx::query("UPDATE rooms SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(room.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_master(
    conn: &mut AnyConnection,
    room: &RoomId,
    master: Option<&MemberId>,
) -> Result<()> {
    sqlx::query("UPDATE rooms SET master = $1 WHERE id = $2")
        .bind(master.map(|m| m.to_string()))
        .bind(room.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves a read marker forward, never back; returns the marker now stored.
pub async fn advance_read(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
    seq: u64,
) -> Result<u64> {
    let row = sqlx::query(
        "UPDATE room_members SET last_read_seq = CASE WHEN last_read_seq < $1 THEN $1 ELSE last_read_seq END \
         WHERE room_id = $2 AND member_id = $3 RETURNING last_read_seq",
    )
    .bind(seq as i64)
    .bind(room.to_string())
    .bind(member.as_str())
    .fetch_optional(conn)
    .await?;
    match row {
        Some(row) => Ok(row.try_get::<i64, _>("last_read_seq")? as u64),
        None => Err(Error::PermissionDenied(format!(
            "{member} is not a member of room {room}"
        ))),
    }
}

/// The rooms a member is in with their membership, most recently active first.
pub async fn rooms_of(
    conn: &mut AnyConnection,
    member: &MemberId,
) -> Result<Vec<(RoomRow, Membership)>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ROOM_COLUMNS}, m.joined_seq, m.last_read_seq FROM rooms r \
         JOIN room_members m ON m.room_id = r.id WHERE m.member_id = $1 \
         ORDER BY r.last_event_at DESC, r.id"
    )))
    .bind(member.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                room_from_row(row)?,
                Membership {
                    joined_seq: row.try_get::<i64, _>("joined_seq")? as u64,
                    last_read_seq: row.try_get::<i64, _>("last_read_seq")? as u64,
                },
            ))
        })
        .collect()
}

/// Unread messages from others, per room the member is in (not counting
/// those kept out of the member's sight).
pub async fn unread_counts(
    conn: &mut AnyConnection,
    member: &MemberId,
) -> Result<HashMap<RoomId, u64>> {
    let rows = sqlx::query(
        "SELECT m.room_id, COUNT(e.seq) AS unread FROM room_members m \
         LEFT JOIN events e ON e.room_id = m.room_id AND e.seq > m.last_read_seq \
              AND e.kind IN ('text', 'sticker', 'attachment') AND e.sender <> m.member_id \
              AND NOT EXISTS (SELECT 1 FROM unseen_events u WHERE u.room_id = e.room_id \
                  AND u.member_id = m.member_id AND u.seq = e.seq) \
         WHERE m.member_id = $1 GROUP BY m.room_id",
    )
    .bind(member.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("room_id")?;
            Ok((
                stored("room id", RoomId::parse(&id))?,
                row.try_get::<i64, _>("unread")? as u64,
            ))
        })
        .collect()
}
