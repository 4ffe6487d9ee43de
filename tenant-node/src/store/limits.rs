//! What the receiver's limits count: arrivals from peers, failed logins;
//! and the company name each peer tenant last sent.

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

/// Counts arrivals in the caller's transaction. On PostgreSQL, where
/// replicas count at once, it first takes a lock on the kind that is held
/// until the transaction ends, so that counting and recording arrivals of
/// one kind go one at a time across replicas and no limit is overrun
/// (SQLite has one writer anyway). Arrivals are rare: friend requests,
/// lookups, notices, profile syncs.
pub async fn count_arrivals(conn: &mut AnyConnection, f: ArrivalFilter<'_>) -> Result<Counted> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("peer_arrivals:{}", f.kind))
            .fetch_one(&mut *conn)
            .await?;
    }
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

/// Failed logins since a time for one member id and for one address.
pub async fn login_failures(
    conn: &mut AnyConnection,
    member: &str,
    address: &str,
    since_ms: i64,
) -> Result<(Counted, Counted)> {
    let by_member = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures WHERE member_id = $1 AND at >= $2",
    )
    .bind(member)
    .bind(since_ms)
    .fetch_one(&mut *conn)
    .await?;
    let by_address = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures WHERE address = $1 AND at >= $2",
    )
    .bind(address)
    .bind(since_ms)
    .fetch_one(conn)
    .await?;
    Ok((counted(&by_member)?, counted(&by_address)?))
}

pub async fn record_login_failure(
    conn: &mut AnyConnection,
    member: &str,
    address: &str,
    at_ms: i64,
    prune_before_ms: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE at < $1")
        .bind(prune_before_ms)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO login_failures (member_id, address, at) VALUES ($1, $2, $3)")
        .bind(member)
        .bind(address)
        .bind(at_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// A successful login forgets the member's failures (not the address's).
pub async fn clear_login_failures(conn: &mut AnyConnection, member: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE member_id = $1")
        .bind(member)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_peer_company(
    conn: &mut AnyConnection,
    tenant: &str,
    name: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO peer_companies (tenant, name, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(name)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn peer_company(conn: &mut AnyConnection, tenant: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT name FROM peer_companies WHERE tenant = $1")
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("name")).transpose()?)
}
