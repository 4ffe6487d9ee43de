//! Room events: appended with the room's next sequence number, never changed.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::rooms::stored;
use super::{MAX_ROWS, list, values};
use crate::error::{Error, Result};
use crate::ids::{EventId, MemberId, RoomId};
use crate::model::{EventBody, RoomEvent};

const EVENT_COLUMNS: &str = "room_id, seq, event_id, sender, body, at";

fn event_from_row(row: &AnyRow) -> Result<RoomEvent> {
    let room: String = row.try_get("room_id")?;
    let id: String = row.try_get("event_id")?;
    let sender: String = row.try_get("sender")?;
    let body: String = row.try_get("body")?;
    Ok(RoomEvent {
        id: stored("event id", EventId::parse(&id))?,
        room: stored("room id", RoomId::parse(&room))?,
        seq: row.try_get::<i64, _>("seq")? as u64,
        sender: stored("sender", MemberId::parse(&sender))?,
        at_ms: row.try_get("at")?,
        body: stored("event body", serde_json::from_str::<EventBody>(&body))?,
    })
}

/// Appends an event, with a new id, as the room's next in sequence.
pub async fn append(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    body: EventBody,
    idempotency_key: Option<&str>,
    at_ms: i64,
) -> Result<RoomEvent> {
    append_as(
        conn,
        room,
        EventId::generate(),
        sender,
        body,
        idempotency_key,
        at_ms,
    )
    .await
}

/// Appends an event whose id was assigned where it originated.
pub async fn append_as(
    conn: &mut AnyConnection,
    room: &RoomId,
    id: EventId,
    sender: &MemberId,
    body: EventBody,
    idempotency_key: Option<&str>,
    at_ms: i64,
) -> Result<RoomEvent> {
    let seq = reserve(conn, room, 1, at_ms).await?;
    let event = RoomEvent {
        id,
        room: *room,
        seq,
        sender: sender.clone(),
        at_ms,
        body,
    };
    insert_all(conn, &[(&event, idempotency_key)]).await?;
    Ok(event)
}

/// Takes the room's next `count` sequence numbers (and its row lock, on
/// PostgreSQL, to the commit); returns the first. `at_ms`: when the last
/// of them happened.
pub async fn reserve(
    conn: &mut AnyConnection,
    room: &RoomId,
    count: u64,
    at_ms: i64,
) -> Result<u64> {
    let row = sqlx::query(
        "UPDATE rooms SET last_seq = last_seq + $1, last_event_at = $2 WHERE id = $3 RETURNING last_seq",
    )
    .bind(count as i64)
    .bind(at_ms)
    .bind(room.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("room {room}")))?;
    let last = row.try_get::<i64, _>("last_seq")? as u64;
    Ok(last + 1 - count)
}

/// Stores events, each with its idempotency key, in one statement per
/// `MAX_ROWS`. An event at a seq beyond the room's `last_seq` (a replica
/// storing what its host sequenced) moves it there in the insert's trigger
/// (`events_move_room`).
pub async fn insert_all(
    conn: &mut AnyConnection,
    events: &[(&RoomEvent, Option<&str>)],
) -> Result<()> {
    for chunk in events.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO events (room_id, seq, event_id, sender, kind, body, at, idempotency_key) VALUES {}",
            values(conn, chunk.len(), 8)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (event, key) in chunk {
            let json = serde_json::to_string(&event.body)
                .map_err(|e| Error::Internal(format!("cannot encode event body: {e}")))?;
            query = query
                .bind(event.room.to_string())
                .bind(event.seq as i64)
                .bind(event.id.to_string())
                .bind(event.sender.as_str())
                .bind(event.body.kind())
                .bind(json)
                .bind(event.at_ms)
                .bind(*key);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The event with this id, if stored.
pub async fn by_id(conn: &mut AnyConnection, id: &EventId) -> Result<Option<RoomEvent>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(event_from_row).transpose()
}

/// The events stored under any of these ids, in one statement per
/// `MAX_ROWS` ids.
pub async fn by_ids(conn: &mut AnyConnection, ids: &[EventId]) -> Result<Vec<RoomEvent>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(MAX_ROWS) {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({})",
            list(chunk.len(), 1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push(event_from_row(&row)?);
        }
    }
    Ok(found)
}

/// The event a sender stored earlier under this idempotency key, if any.
pub async fn by_idempotency_key(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    key: &str,
) -> Result<Option<RoomEvent>> {
    Ok(by_idempotency_keys(conn, room, sender, &[key])
        .await?
        .pop()
        .map(|(_, event)| event))
}

/// The events a sender stored earlier in a room under any of these
/// idempotency keys, each with its key, in one statement per `MAX_ROWS`
/// keys.
pub async fn by_idempotency_keys(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    keys: &[&str],
) -> Result<Vec<(String, RoomEvent)>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(MAX_ROWS) {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, idempotency_key FROM events \
             WHERE room_id = $1 AND sender = $2 AND idempotency_key IN ({})",
            list(chunk.len(), 3)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(room.to_string())
            .bind(sender.as_str());
        for key in chunk {
            query = query.bind(*key);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push((row.try_get("idempotency_key")?, event_from_row(&row)?));
        }
    }
    Ok(found)
}

/// Events with `after < seq <= upto`, oldest first, at most `limit`.
pub async fn range(
    conn: &mut AnyConnection,
    room: &RoomId,
    after: u64,
    upto: u64,
    limit: u32,
) -> Result<Vec<RoomEvent>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND seq > $2 AND seq <= $3 \
         ORDER BY seq LIMIT $4"
    )))
    .bind(room.to_string())
    .bind(after.min(i64::MAX as u64) as i64)
    .bind(upto.min(i64::MAX as u64) as i64)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(event_from_row).collect()
}

/// The `limit` events just before `before` (all the latest when `None`), oldest first.
pub async fn page_before(
    conn: &mut AnyConnection,
    room: &RoomId,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<RoomEvent>> {
    let before = before.unwrap_or(i64::MAX as u64).min(i64::MAX as u64) as i64;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND seq < $2 \
         ORDER BY seq DESC LIMIT $3"
    )))
    .bind(room.to_string())
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    let mut events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>>>()?;
    events.reverse();
    Ok(events)
}

/// Keeps the event at `seq` of `room` out of `members`' sight.
pub async fn hide_from(
    conn: &mut AnyConnection,
    room: &RoomId,
    seq: u64,
    members: &[MemberId],
) -> Result<()> {
    let hidden: Vec<(RoomId, u64, &MemberId)> = members.iter().map(|m| (*room, seq, m)).collect();
    hide_all(conn, &hidden).await
}

/// Keeps each `(room, seq)` out of its member's sight, in one statement
/// per `MAX_ROWS`.
pub async fn hide_all(conn: &mut AnyConnection, hidden: &[(RoomId, u64, &MemberId)]) -> Result<()> {
    for chunk in hidden.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO unseen_events (room_id, member_id, seq) VALUES {} \
             ON CONFLICT (room_id, member_id, seq) DO NOTHING",
            values(conn, chunk.len(), 3)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (room, seq, member) in chunk {
            query = query
                .bind(room.to_string())
                .bind(member.as_str())
                .bind(*seq as i64);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The seqs of `room` with `after < seq <= upto` kept out of `member`'s sight.
pub async fn unseen(
    conn: &mut AnyConnection,
    room: &RoomId,
    member: &MemberId,
    after: u64,
    upto: u64,
) -> Result<std::collections::HashSet<u64>> {
    let rows = sqlx::query(
        "SELECT seq FROM unseen_events WHERE room_id = $1 AND member_id = $2 \
         AND seq > $3 AND seq <= $4",
    )
    .bind(room.to_string())
    .bind(member.as_str())
    .bind(after.min(i64::MAX as u64) as i64)
    .bind(upto.min(i64::MAX as u64) as i64)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<i64, _>("seq")? as u64))
        .collect()
}

/// The members kept from seeing `room`'s event at `seq`.
pub async fn unseen_at(conn: &mut AnyConnection, room: &RoomId, seq: u64) -> Result<Vec<MemberId>> {
    let rows = sqlx::query("SELECT member_id FROM unseen_events WHERE room_id = $1 AND seq = $2")
        .bind(room.to_string())
        .bind(seq.min(i64::MAX as u64) as i64)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            super::rooms::stored(
                "member id",
                MemberId::parse(&row.try_get::<String, _>("member_id")?),
            )
        })
        .collect()
}

/// Drops from `events` (of one room) those kept out of `member`'s sight.
pub async fn retain_seen(
    conn: &mut AnyConnection,
    member: &MemberId,
    events: &mut Vec<RoomEvent>,
) -> Result<()> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    let hidden = unseen(
        conn,
        &first.room,
        member,
        first.seq.saturating_sub(1),
        last.seq,
    )
    .await?;
    events.retain(|e| !hidden.contains(&e.seq));
    Ok(())
}
