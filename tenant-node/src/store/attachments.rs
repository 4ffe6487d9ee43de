//! Files posted to rooms: metadata everywhere, bytes where uploaded or fetched.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::rooms::stored;
use crate::error::Result;
use crate::ids::{EventId, MemberId, RoomId};
use crate::model::AttachmentMeta;

#[derive(Debug, Clone)]
pub struct AttachmentRow {
    pub meta: AttachmentMeta,
    pub room: RoomId,
    pub uploader: MemberId,
    pub event_id: Option<String>,
    pub has_data: bool,
}

const COLUMNS: &str = "id, room_id, uploader, event_id, name, content_type, size, sha256, \
                       CAST(CASE WHEN data IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_data";

fn from_row(row: &AnyRow) -> Result<AttachmentRow> {
    Ok(AttachmentRow {
        meta: AttachmentMeta {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            content_type: row.try_get("content_type")?,
            size: row.try_get::<i64, _>("size")? as u64,
            sha256: row.try_get("sha256")?,
        },
        room: stored(
            "room id",
            RoomId::parse(&row.try_get::<String, _>("room_id")?),
        )?,
        uploader: stored(
            "uploader",
            MemberId::parse(&row.try_get::<String, _>("uploader")?),
        )?,
        event_id: row.try_get("event_id")?,
        has_data: row.try_get::<i64, _>("has_data")? != 0,
    })
}

/// Records an attachment: with its bytes at the uploader's node, without
/// them (`data` `None`) where a relayed event announces it.
pub async fn insert(
    conn: &mut AnyConnection,
    meta: &AttachmentMeta,
    room: &RoomId,
    uploader: &MemberId,
    event: Option<&EventId>,
    data: Option<&[u8]>,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO attachments (id, room_id, uploader, event_id, name, content_type, size, sha256, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&meta.id)
    .bind(room.to_string())
    .bind(uploader.as_str())
    .bind(event.map(ToString::to_string))
    .bind(&meta.name)
    .bind(&meta.content_type)
    .bind(meta.size as i64)
    .bind(&meta.sha256)
    .bind(data.map(<[u8]>::to_vec))
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<AttachmentRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM attachments WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn data(conn: &mut AnyConnection, id: &str) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT data FROM attachments WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<Option<Vec<u8>>, _>("data")?,
        None => None,
    })
}

/// Marks an uploaded attachment as posted by `event`; false when it was
/// posted already.
pub async fn mark_posted(conn: &mut AnyConnection, id: &str, event: &EventId) -> Result<bool> {
    let done =
        sqlx::query("UPDATE attachments SET event_id = $1 WHERE id = $2 AND event_id IS NULL")
            .bind(event.to_string())
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(done == 1)
}

pub async fn set_data(conn: &mut AnyConnection, id: &str, data: &[u8]) -> Result<()> {
    sqlx::query("UPDATE attachments SET data = $1 WHERE id = $2 AND data IS NULL")
        .bind(data.to_vec())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
