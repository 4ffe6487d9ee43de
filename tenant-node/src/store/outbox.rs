//! The durable per-peer outbox and the events our members sent to rooms
//! hosted elsewhere that are waiting for the host's sequence number.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::rooms::stored;
use super::{MAX_ROWS, Params, list, values, values_with};
use crate::error::Result;
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::EventBody;

/// One envelope waiting for (or done with) one peer.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub peer: TenantId,
    pub event_id: EventId,
    /// `None` for a control message.
    pub room_id: Option<RoomId>,
    pub host_seq: u64,
    pub payload: String,
    pub attempts: u32,
    pub created_at_ms: i64,
}

/// Also how a delivery receipt in an outbox row names a state (the same
/// words as `as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Queued,
    Delivered,
    Refused,
}

impl OutboxState {
    /// `None` for a word that names no state.
    pub fn parse(s: &str) -> Option<OutboxState> {
        match s {
            "queued" => Some(OutboxState::Queued),
            "delivered" => Some(OutboxState::Delivered),
            "refused" => Some(OutboxState::Refused),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Delivered => "delivered",
            OutboxState::Refused => "refused",
        }
    }
}

/// Where one event stands with one peer.
#[derive(Debug, Clone)]
pub struct PeerDelivery {
    pub peer: TenantId,
    pub state: OutboxState,
    pub reason: Option<String>,
    pub attempts: u32,
}

/// What is waiting for one peer.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    pub queued: u64,
    pub oldest_at_ms: Option<i64>,
}

#[allow(clippy::too_many_arguments)]
pub async fn enqueue(
    conn: &mut AnyConnection,
    peer: &TenantId,
    event_id: &EventId,
    room: &RoomId,
    host_seq: u64,
    payload: &str,
    at_ms: i64,
) -> Result<()> {
    let row = Queued {
        peer: peer.clone(),
        event_id: *event_id,
        room: *room,
        host_seq,
        payload: payload.to_string(),
        at_ms,
    };
    enqueue_all(conn, &[row]).await
}

/// A room event queued for a peer (`host_seq` 0: a change for the
/// room's host to sequence).
#[derive(Debug, Clone)]
pub struct Queued {
    pub peer: TenantId,
    pub event_id: EventId,
    pub room: RoomId,
    pub host_seq: u64,
    pub payload: String,
    pub at_ms: i64,
}

/// Queues room events, in one statement per `MAX_ROWS`.
pub async fn enqueue_all(conn: &mut AnyConnection, rows: &[Queued]) -> Result<()> {
    for chunk in rows.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO outbox (peer, event_id, room_id, host_seq, payload, created_at, state, attempts) \
             VALUES {}",
            values_with(Params::of(conn), chunk.len(), 6, "'queued', 0")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.peer.as_str())
                .bind(row.event_id.to_string())
                .bind(row.room.to_string())
                .bind(row.host_seq as i64)
                .bind(row.payload.as_str())
                .bind(row.at_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Queues a control message (no room) for `peer`. One with a `topic`
/// replaces what is still queued of the same topic for that peer: the
/// older one says nothing the newer one does not. Returns the row's id.
pub async fn enqueue_control(
    conn: &mut AnyConnection,
    peer: &TenantId,
    id: &EventId,
    topic: Option<&str>,
    payload: &str,
    at_ms: i64,
) -> Result<i64> {
    if let Some(topic) = topic {
        // A deliverer may have the older one in flight: its answer then
        // finds no queued row, and the newer one still goes.
        sqlx::query("DELETE FROM outbox WHERE peer = $1 AND topic = $2 AND state = 'queued'")
            .bind(peer.as_str())
            .bind(topic)
            .execute(&mut *conn)
            .await?;
    }
    let row = sqlx::query(
        "INSERT INTO outbox (peer, event_id, room_id, host_seq, payload, state, attempts, created_at, topic) \
         VALUES ($1, $2, NULL, 0, $3, 'queued', 0, $4, $5) RETURNING id",
    )
    .bind(peer.as_str())
    .bind(id.to_string())
    .bind(payload)
    .bind(at_ms)
    .bind(topic)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("id")?)
}

/// Whether something of `topic` is still queued for `peer`.
pub async fn topic_queued(conn: &mut AnyConnection, peer: &TenantId, topic: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM outbox WHERE peer = $1 AND topic = $2 AND state = 'queued'",
    )
    .bind(peer.as_str())
    .bind(topic)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Where one outbox row stands: its state and last reason (`None` once
/// the row is gone, replaced by a newer one of its topic).
pub async fn row_state(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<(OutboxState, Option<String>)>> {
    let row = sqlx::query("SELECT state, reason FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        let state: String = r.try_get("state")?;
        Ok((
            stored(
                "outbox state",
                OutboxState::parse(&state).ok_or_else(|| format!("{state:?}")),
            )?,
            r.try_get("reason")?,
        ))
    })
    .transpose()
}

/// Records that a control message from `peer` was applied; `false` when it
/// was before (sent again after its acknowledgement was lost).
pub async fn control_applied(
    conn: &mut AnyConnection,
    peer: &TenantId,
    id: &EventId,
    at_ms: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO peer_controls (peer, event_id, at) VALUES ($1, $2, $3) \
         ON CONFLICT (peer, event_id) DO NOTHING",
    )
    .bind(peer.as_str())
    .bind(id.to_string())
    .bind(at_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxRow> {
    let peer: String = row.try_get("peer")?;
    Ok(OutboxRow {
        id: row.try_get("id")?,
        peer: stored("outbox peer", TenantId::parse(&peer))?,
        event_id: stored(
            "outbox event id",
            EventId::parse(&row.try_get::<String, _>("event_id")?),
        )?,
        room_id: row
            .try_get::<Option<String>, _>("room_id")?
            .map(|room| stored("outbox room id", RoomId::parse(&room)))
            .transpose()?,
        host_seq: row.try_get::<i64, _>("host_seq")? as u64,
        payload: row.try_get("payload")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        created_at_ms: row.try_get("created_at")?,
    })
}

/// The oldest queued envelopes for `peer`, in the order they must arrive.
pub async fn queued(
    conn: &mut AnyConnection,
    peer: &TenantId,
    limit: u32,
) -> Result<Vec<OutboxRow>> {
    let rows = sqlx::query(
        "SELECT id, peer, event_id, room_id, host_seq, payload, attempts, created_at FROM outbox \
         WHERE peer = $1 AND state = 'queued' ORDER BY id LIMIT $2",
    )
    .bind(peer.as_str())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(outbox_from_row).collect()
}

/// Records the peer's answer for one envelope.
pub async fn finish(
    conn: &mut AnyConnection,
    id: i64,
    state: OutboxState,
    reason: Option<&str>,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET state = $1, reason = $2, done_at = $3, attempts = attempts + 1 \
         WHERE id = $4 AND state = 'queued'",
    )
    .bind(state.as_str())
    .bind(reason)
    .bind(at_ms)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts a failed attempt for envelopes that stay queued.
pub async fn attempted(conn: &mut AnyConnection, ids: &[i64], reason: &str) -> Result<()> {
    for id in ids {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, reason = $1 WHERE id = $2")
            .bind(reason)
            .bind(*id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The queues a replica works or stands by for, to start their deliverers
/// at start: peers with something queued, and every queue (a peer's or
/// LINE's) whose lease the node's replicas have ever taken, so that this
/// replica can take its share of them.
pub async fn queues_to_deliver(conn: &mut AnyConnection) -> Result<Vec<TenantId>> {
    let rows = sqlx::query(
        "SELECT peer FROM outbox WHERE state = 'queued' \
         UNION SELECT queue FROM deliverer_leases \
         WHERE queue = $1 OR queue IN (SELECT tenant FROM peers)",
    )
    .bind(crate::ids::LINE_TENANT)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            stored(
                "outbox peer",
                TenantId::parse(&r.try_get::<String, _>("peer")?),
            )
        })
        .collect()
}

pub async fn depth(conn: &mut AnyConnection, peer: &TenantId) -> Result<QueueDepth> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
         WHERE peer = $1 AND state = 'queued'",
    )
    .bind(peer.as_str())
    .fetch_one(conn)
    .await?;
    Ok(QueueDepth {
        queued: row.try_get::<i64, _>("n")? as u64,
        oldest_at_ms: row.try_get("oldest")?,
    })
}

/// What is queued for every peer, and for every peered company with
/// nothing queued (zero), in peer order.
pub async fn queues(conn: &mut AnyConnection) -> Result<Vec<(TenantId, QueueDepth)>> {
    let rows = sqlx::query(
        "SELECT peer, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
         WHERE state = 'queued' GROUP BY peer",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut queues = std::collections::BTreeMap::new();
    for r in &rows {
        let peer = stored(
            "outbox peer",
            TenantId::parse(&r.try_get::<String, _>("peer")?),
        )?;
        queues.insert(
            peer,
            QueueDepth {
                queued: r.try_get::<i64, _>("n")? as u64,
                oldest_at_ms: r.try_get("oldest")?,
            },
        );
    }
    let peered = sqlx::query("SELECT tenant FROM peers")
        .fetch_all(&mut *conn)
        .await?;
    for r in &peered {
        let peer = stored(
            "peer tenant",
            TenantId::parse(&r.try_get::<String, _>("tenant")?),
        )?;
        queues.entry(peer).or_default();
    }
    Ok(queues.into_iter().collect())
}

/// Where an event stands with every peer it was queued for.
pub async fn deliveries(conn: &mut AnyConnection, event: &EventId) -> Result<Vec<PeerDelivery>> {
    let rows = sqlx::query(
        "SELECT peer, state, reason, attempts FROM outbox WHERE event_id = $1 ORDER BY id",
    )
    .bind(event.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery_from_row).collect()
}

fn delivery_from_row(r: &AnyRow) -> Result<PeerDelivery> {
    let state: String = r.try_get("state")?;
    Ok(PeerDelivery {
        peer: stored("peer", TenantId::parse(&r.try_get::<String, _>("peer")?))?,
        state: stored(
            "outbox state",
            OutboxState::parse(&state).ok_or_else(|| format!("{state:?}")),
        )?,
        reason: r.try_get("reason")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
    })
}

/// A message one of our members sent to a room hosted elsewhere.
#[derive(Debug, Clone)]
pub struct Pending {
    pub event_id: EventId,
    pub room: RoomId,
    pub sender: MemberId,
    pub idempotency_key: Option<String>,
    pub body: EventBody,
    pub at_ms: i64,
}

pub async fn insert_pending(conn: &mut AnyConnection, p: &Pending) -> Result<()> {
    insert_pending_all(conn, std::slice::from_ref(p)).await
}

/// Stores pending events, in one statement per `MAX_ROWS`.
pub async fn insert_pending_all(conn: &mut AnyConnection, pending: &[Pending]) -> Result<()> {
    for chunk in pending.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO pending_events (event_id, room_id, sender, idempotency_key, body, at) VALUES {}",
            values(conn, chunk.len(), 6)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for p in chunk {
            let body = serde_json::to_string(&p.body).map_err(|e| {
                crate::error::Error::Internal(format!("cannot encode event body: {e}"))
            })?;
            query = query
                .bind(p.event_id.to_string())
                .bind(p.room.to_string())
                .bind(p.sender.as_str())
                .bind(p.idempotency_key.as_deref())
                .bind(body)
                .bind(p.at_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn pending_from_row(row: &AnyRow) -> Result<Pending> {
    let body: String = row.try_get("body")?;
    Ok(Pending {
        event_id: stored(
            "event id",
            EventId::parse(&row.try_get::<String, _>("event_id")?),
        )?,
        room: stored(
            "room id",
            RoomId::parse(&row.try_get::<String, _>("room_id")?),
        )?,
        sender: stored(
            "sender",
            MemberId::parse(&row.try_get::<String, _>("sender")?),
        )?,
        idempotency_key: row.try_get("idempotency_key")?,
        body: stored("event body", serde_json::from_str::<EventBody>(&body))?,
        at_ms: row.try_get("at")?,
    })
}

pub async fn pending_by_key(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    key: &str,
) -> Result<Option<Pending>> {
    Ok(pending_by_keys(conn, room, sender, &[key]).await?.pop())
}

/// The pending events of a sender in a room under any of these
/// idempotency keys, in one statement per `MAX_ROWS` keys.
pub async fn pending_by_keys(
    conn: &mut AnyConnection,
    room: &RoomId,
    sender: &MemberId,
    keys: &[&str],
) -> Result<Vec<Pending>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(MAX_ROWS) {
        let sql = format!(
            "SELECT event_id, room_id, sender, idempotency_key, body, at FROM pending_events \
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
            found.push(pending_from_row(&row)?);
        }
    }
    Ok(found)
}

/// Removes a pending event of `sender` in `room` once its sequenced copy
/// is stored; returns it.
pub async fn take_pending(
    conn: &mut AnyConnection,
    id: &EventId,
    room: &RoomId,
    sender: &MemberId,
) -> Result<Option<Pending>> {
    let row = sqlx::query(
        "DELETE FROM pending_events WHERE event_id = $1 AND room_id = $2 AND sender = $3 \
         RETURNING event_id, room_id, sender, idempotency_key, body, at",
    )
    .bind(id.to_string())
    .bind(room.to_string())
    .bind(sender.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(pending_from_row).transpose()
}

/// A change this node proposed to `host` as `event_id`: the room id and
/// the payload it sent (kept in the outbox whatever became of it).
pub async fn proposal(
    conn: &mut AnyConnection,
    event_id: &EventId,
    host: &TenantId,
) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT room_id, payload FROM outbox WHERE event_id = $1 AND peer = $2 AND host_seq = 0",
    )
    .bind(event_id.to_string())
    .bind(host.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((r.try_get("room_id")?, r.try_get("payload")?)))
        .transpose()
}

pub async fn pending_by_id(conn: &mut AnyConnection, id: &EventId) -> Result<Option<Pending>> {
    let row = sqlx::query(
        "SELECT event_id, room_id, sender, idempotency_key, body, at FROM pending_events \
         WHERE event_id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(pending_from_row).transpose()
}

/// Whether every envelope queued for `event` has its answer.
pub async fn all_done(conn: &mut AnyConnection, event: &EventId) -> Result<bool> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE event_id = $1 AND state = 'queued'")
            .bind(event.to_string())
            .fetch_one(conn)
            .await?;
    Ok(row.try_get::<i64, _>("n")? == 0)
}

/// Records what the host reported for one of our messages at one peer.
pub async fn put_receipt(
    conn: &mut AnyConnection,
    event: &EventId,
    d: &PeerDelivery,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO receipts (event_id, peer, state, reason) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (event_id, peer) DO UPDATE SET state = excluded.state, reason = excluded.reason",
    )
    .bind(event.to_string())
    .bind(d.peer.as_str())
    .bind(d.state.as_str())
    .bind(d.reason.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// What hosts reported for one of our messages.
pub async fn receipts(conn: &mut AnyConnection, event: &EventId) -> Result<Vec<PeerDelivery>> {
    let rows = sqlx::query(
        "SELECT peer, state, reason, CAST(0 AS BIGINT) AS attempts FROM receipts \
         WHERE event_id = $1 ORDER BY peer",
    )
    .bind(event.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// Whether `event` is one our member sent to a room hosted elsewhere (still
/// pending, or come back sequenced into a replica).
pub async fn pending_or_replica(conn: &mut AnyConnection, event: &EventId) -> Result<bool> {
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM pending_events WHERE event_id = $1) \
              + (SELECT COUNT(*) FROM events e JOIN rooms r ON r.id = e.room_id \
                 WHERE e.event_id = $1 AND r.host IS NOT NULL) AS n",
    )
    .bind(event.to_string())
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Refuses everything still queued for `peer`; returns how many.
pub async fn refuse_queued(
    conn: &mut AnyConnection,
    peer: &TenantId,
    reason: &str,
    at_ms: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE outbox SET state = 'refused', reason = $1, done_at = $2 \
         WHERE peer = $3 AND state = 'queued'",
    )
    .bind(reason)
    .bind(at_ms)
    .bind(peer.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done)
}

/// Marks envelopes delivered, in one statement.
pub async fn delivered(conn: &mut AnyConnection, ids: &[i64], at_ms: i64) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // Only integers go into the list.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE outbox SET state = 'delivered', reason = NULL, done_at = $1, attempts = attempts + 1 \
         WHERE id IN ({list}) AND state = 'queued'"
    )))
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}
