//! What the receiver's limits count: arrivals from peers.

use sqlx::{AnyConnection, Row};

use crate::error::Result;

/// Arrivals of one kind in a window: how many, and when the oldest came
/// (from which the window frees a slot again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub count: i64,
    pub oldest_ms: Option<i64>,
}

fn counted(row: &sqlx::any::AnyRow) -> Result<Counted> {
    Ok(Counted {
        count: row.try_get("n")?,
        oldest_ms: row.try_get("oldest")?,
    })
}

/// Which arrivals to count: of one kind since a time, narrowed by any of
/// the peer tenant, the peer's member and our member.
#[derive(Debug, Clone, Copy)]
pub struct ArrivalFilter<'a> {
    pub kind: &'a str,
    pub since_ms: i64,
    pub peer: Option<&'a str>,
    pub external_user: Option<&'a str>,
    pub local_member: Option<&'a str>,
}

pub async fn count_arrivals(conn: &mut AnyConnection, f: ArrivalFilter<'_>) -> Result<Counted> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM peer_arrivals WHERE kind = $1 AND at >= $2 \
         AND ($3 IS NULL OR peer = $3) AND ($4 IS NULL OR external_user = $4) \
         AND ($5 IS NULL OR local_member = $5)",
    )
    .bind(f.kind)
    .bind(f.since_ms)
    .bind(f.peer)
    .bind(f.external_user)
    .bind(f.local_member)
    .fetch_one(conn)
    .await?;
    counted(&row)
}

/// Counts one arrival, and forgets those older than `prune_before_ms`.
pub async fn record_arrival(
    conn: &mut AnyConnection,
    kind: &str,
    peer: &str,
    external_user: &str,
    local_member: &str,
    at_ms: i64,
    prune_before_ms: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM peer_arrivals WHERE kind = $1 AND peer = $2 AND at < $3")
        .bind(kind)
        .bind(peer)
        .bind(prune_before_ms)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO peer_arrivals (kind, peer, external_user, local_member, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(kind)
    .bind(peer)
    .bind(external_user)
    .bind(local_member)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}
