//! LINE: the admin's LINE settings and connected members, LINE users and
//! their bindings to members, LINE groups, the webhook inbox and LINE's
//! message ids of what LINE users sent.

use sqlx::{AnyConnection, Row};

use super::rooms::stored;
use crate::error::Result;
use crate::ids::{EventId, MemberId, RoomId};
use crate::model::Photo;

pub const LINE_ENABLED: &str = "line.enabled";
pub const LINE_AUTO_GRANT: &str = "line.auto_grant";
pub const LINE_RESTRICT_FILES: &str = "line.restrict_files";
pub const LINE_GREETING: &str = "line.greeting";

/// What admission needs of our member and a LINE user, in one statement:
/// LINE is switched on, the member is on the LINE list (and active), and
/// the member blocked the LINE user.
pub struct LineFacts {
    pub enabled: bool,
    pub connected: bool,
    pub blocked: bool,
}

pub async fn facts(
    conn: &mut AnyConnection,
    local: &MemberId,
    line_user: &MemberId,
) -> Result<LineFacts> {
    let row = sqlx::query(
        "SELECT (SELECT value FROM settings WHERE key = $1) AS enabled, \
         (SELECT COUNT(*) FROM line_connected_members c JOIN members m ON m.id = c.member_id \
          WHERE c.member_id = $2 AND m.state = 'active') AS connected, \
         (SELECT COUNT(*) FROM blocks WHERE member_id = $2 AND blocked = $3) AS blocked",
    )
    .bind(LINE_ENABLED)
    .bind(local.as_str())
    .bind(line_user.as_str())
    .fetch_one(conn)
    .await?;
    Ok(LineFacts {
        enabled: row.try_get::<Option<String>, _>("enabled")?.as_deref() == Some("on"),
        connected: row.try_get::<i64, _>("connected")? > 0,
        blocked: row.try_get::<i64, _>("blocked")? > 0,
    })
}

/// A LINE user who followed the account.
#[derive(Debug, Clone)]
pub struct LineUserRow {
    pub user_id: String,
    pub member: MemberId,
    pub display_name: String,
    pub has_photo: bool,
    pub following: bool,
    pub writes_to: Option<MemberId>,
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<LineUserRow> {
    let writes_to: Option<String> = r.try_get("writes_to")?;
    Ok(LineUserRow {
        user_id: r.try_get("user_id")?,
        member: stored(
            "LINE member id",
            MemberId::parse(&r.try_get::<String, _>("member_id")?),
        )?,
        display_name: r.try_get("display_name")?,
        has_photo: r.try_get::<Option<String>, _>("photo_type")?.is_some(),
        following: r.try_get::<i64, _>("following")? != 0,
        writes_to: writes_to
            .map(|m| stored("member id", MemberId::parse(&m)))
            .transpose()?,
    })
}

const USER_COLUMNS: &str = "user_id, member_id, display_name, photo_type, following, writes_to";

pub async fn user(conn: &mut AnyConnection, user_id: &str) -> Result<Option<LineUserRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM line_users WHERE user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn user_by_member(
    conn: &mut AnyConnection,
    member: &MemberId,
) -> Result<Option<LineUserRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM line_users WHERE member_id = $1"
    )))
    .bind(member.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Records a LINE user (a follow, or their first message in a group) with
/// the profile LINE gave; the name and photo are LINE's and replace ours.
pub async fn upsert_user(
    conn: &mut AnyConnection,
    user_id: &str,
    member: &MemberId,
    display_name: &str,
    photo: Option<&Photo>,
    following: Option<bool>,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO line_users (user_id, member_id, display_name, photo, photo_type, following, \
         followed_at, synced_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, \
         photo = excluded.photo, photo_type = excluded.photo_type, synced_at = excluded.synced_at",
    )
    .bind(user_id)
    .bind(member.as_str())
    .bind(display_name)
    .bind(photo.map(|p| p.bytes.clone()))
    .bind(photo.map(|p| p.content_type.clone()))
    .bind(i64::from(following.unwrap_or(false)))
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    if let Some(following) = following {
        set_following(conn, user_id, following).await?;
    }
    Ok(())
}

pub async fn set_following(conn: &mut AnyConnection, user_id: &str, following: bool) -> Result<()> {
    sqlx::query("UPDATE line_users SET following = $1 WHERE user_id = $2")
        .bind(i64::from(following))
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_writes_to(
    conn: &mut AnyConnection,
    user_id: &str,
    member: &MemberId,
) -> Result<()> {
    sqlx::query("UPDATE line_users SET writes_to = $1 WHERE user_id = $2")
        .bind(member.as_str())
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn photo(conn: &mut AnyConnection, member: &MemberId) -> Result<Option<Photo>> {
    let row = sqlx::query("SELECT photo, photo_type FROM line_users WHERE member_id = $1")
        .bind(member.as_str())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let bytes: Option<Vec<u8>> = row.try_get("photo")?;
    let content_type: Option<String> = row.try_get("photo_type")?;
    Ok(bytes.zip(content_type).map(|(bytes, content_type)| Photo {
        bytes,
        content_type,
    }))
}

/// A LINE user's 1:1 rooms: one per member they are bound to, oldest first.
pub async fn bindings(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<(MemberId, RoomId)>> {
    let rows = sqlx::query(
        "SELECT member_id, room_id FROM line_bindings WHERE line_user = $1 ORDER BY bound_at, member_id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                stored(
                    "member id",
                    MemberId::parse(&r.try_get::<String, _>("member_id")?),
                )?,
                stored(
                    "room id",
                    RoomId::parse(&r.try_get::<String, _>("room_id")?),
                )?,
            ))
        })
        .collect()
}

pub async fn bind(
    conn: &mut AnyConnection,
    user_id: &str,
    member: &MemberId,
    room: &RoomId,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO line_bindings (line_user, member_id, room_id, bound_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(member.as_str())
    .bind(room.to_string())
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// A LINE group the account is in, and the room it is linked to.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub group_id: String,
    pub room: Option<RoomId>,
    pub name: String,
    pub left: bool,
}

pub async fn group(conn: &mut AnyConnection, group_id: &str) -> Result<Option<GroupRow>> {
    let row =
        sqlx::query("SELECT group_id, room_id, name, left_at FROM line_groups WHERE group_id = $1")
            .bind(group_id)
            .fetch_optional(conn)
            .await?;
    row.map(|r| {
        let room: Option<String> = r.try_get("room_id")?;
        Ok(GroupRow {
            group_id: r.try_get("group_id")?,
            room: room
                .map(|id| stored("room id", RoomId::parse(&id)))
                .transpose()?,
            name: r.try_get("name")?,
            left: r.try_get::<Option<i64>, _>("left_at")?.is_some(),
        })
    })
    .transpose()
}

/// The account joined a group (again).
pub async fn joined_group(
    conn: &mut AnyConnection,
    group_id: &str,
    name: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO line_groups (group_id, name, joined_at) VALUES ($1, $2, $3) \
         ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, left_at = NULL",
    )
    .bind(group_id)
    .bind(name)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn left_group(conn: &mut AnyConnection, group_id: &str, at_ms: i64) -> Result<()> {
    sqlx::query("UPDATE line_groups SET left_at = $1 WHERE group_id = $2")
        .bind(at_ms)
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn link_group(conn: &mut AnyConnection, group_id: &str, room: &RoomId) -> Result<()> {
    sqlx::query("UPDATE line_groups SET room_id = $1 WHERE group_id = $2")
        .bind(room.to_string())
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a webhook event unless one with its `webhookEventId` was stored
/// before (LINE's redelivery); true when stored now.
pub async fn inbox_put(
    conn: &mut AnyConnection,
    webhook_event_id: &str,
    event: &str,
    at_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO line_inbox (webhook_event_id, event, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (webhook_event_id) DO NOTHING",
    )
    .bind(webhook_event_id)
    .bind(event)
    .bind(at_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The oldest events not processed yet, in the order they arrived.
pub async fn inbox_next(conn: &mut AnyConnection, limit: u32) -> Result<Vec<(i64, String)>> {
    let rows = sqlx::query(
        "SELECT id, event FROM line_inbox WHERE processed_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("event")?)))
        .collect()
}

pub async fn inbox_done(
    conn: &mut AnyConnection,
    id: i64,
    outcome: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query("UPDATE line_inbox SET processed_at = $1, outcome = $2 WHERE id = $3")
        .bind(at_ms)
        .bind(outcome)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Remembers which event holds a LINE message, for its unsend.
pub async fn remember_message(
    conn: &mut AnyConnection,
    line_message_id: &str,
    room: &RoomId,
    event: &EventId,
    seq: u64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO line_messages (line_message_id, room_id, event_id, seq) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (line_message_id) DO NOTHING",
    )
    .bind(line_message_id)
    .bind(room.to_string())
    .bind(event.to_string())
    .bind(seq as i64)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn message(
    conn: &mut AnyConnection,
    line_message_id: &str,
) -> Result<Option<(RoomId, u64)>> {
    let row = sqlx::query("SELECT room_id, seq FROM line_messages WHERE line_message_id = $1")
        .bind(line_message_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok((
            stored(
                "room id",
                RoomId::parse(&r.try_get::<String, _>("room_id")?),
            )?,
            r.try_get::<i64, _>("seq")? as u64,
        ))
    })
    .transpose()
}

/// Whether `member` may chat with LINE users now: LINE is switched on and
/// they are on its connected list, and active.
pub async fn usable_by(conn: &mut AnyConnection, member: &MemberId) -> Result<bool> {
    let row = sqlx::query(
        "SELECT (SELECT value FROM settings WHERE key = $1) AS enabled, \
         (SELECT COUNT(*) FROM line_connected_members c JOIN members m ON m.id = c.member_id \
          WHERE c.member_id = $2 AND m.state = 'active') AS connected",
    )
    .bind(LINE_ENABLED)
    .bind(member.as_str())
    .fetch_one(conn)
    .await?;
    Ok(
        row.try_get::<Option<String>, _>("enabled")?.as_deref() == Some("on")
            && row.try_get::<i64, _>("connected")? > 0,
    )
}
