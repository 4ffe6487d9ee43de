//! Leases on work queues shared by the replicas of one node: a peer's
//! outbox, LINE's, the LINE inbox. One replica holds each; the epoch fences
//! a holder that lost it.

use sqlx::{AnyConnection, Row};

use crate::error::Result;

/// Takes `queue`'s lease for `holder` until `until_ms`, or renews it: when
/// it is free, expired, or already `holder`'s. The epoch it is held under
/// (a new one when it changed hands), or `None` when another holds it.
pub async fn take(
    conn: &mut AnyConnection,
    queue: &str,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        "INSERT INTO deliverer_leases (queue, holder, epoch, expires_at) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (queue) DO UPDATE SET \
           epoch = CASE WHEN deliverer_leases.holder = excluded.holder \
                   THEN deliverer_leases.epoch ELSE deliverer_leases.epoch + 1 END, \
           holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE deliverer_leases.holder = excluded.holder OR deliverer_leases.expires_at <= $4 \
         RETURNING epoch",
    )
    .bind(queue)
    .bind(holder)
    .bind(until_ms)
    .bind(now_ms)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("epoch")).transpose()?)
}

/// Makes this transaction (PostgreSQL) give up within a second when a row
/// it needs is locked, rather than wait.
pub async fn short_lock_wait(conn: &mut AnyConnection) -> Result<()> {
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether `holder` still holds `queue` under `epoch`, checked inside the
/// caller's transaction: the row stays locked (PostgreSQL) until it ends,
/// so the lease cannot change hands before the caller's commit.
pub async fn fence(
    conn: &mut AnyConnection,
    queue: &str,
    holder: &str,
    epoch: i64,
    now_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE deliverer_leases SET expires_at = expires_at \
         WHERE queue = $1 AND holder = $2 AND epoch = $3 AND expires_at > $4",
    )
    .bind(queue)
    .bind(holder)
    .bind(epoch)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives the lease up at once (a replica stopping).
pub async fn release(conn: &mut AnyConnection, queue: &str, holder: &str) -> Result<()> {
    sqlx::query("UPDATE deliverer_leases SET expires_at = 0 WHERE queue = $1 AND holder = $2")
        .bind(queue)
        .bind(holder)
        .execute(conn)
        .await?;
    Ok(())
}
