//! Leases on work queues shared by the replicas of one node: a peer's
//! outbox, LINE's, the LINE inbox. One replica holds each; the epoch fences
//! a holder that lost it. The replicas' heartbeats tell how many share the
//! queues, so that each holds its share.

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

/// Gives the lease up at once (a replica stopping, or holding more than
/// its share): it is free from `now_ms`.
pub async fn release(
    conn: &mut AnyConnection,
    queue: &str,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE deliverer_leases SET expires_at = $3 \
         WHERE queue = $1 AND holder = $2 AND expires_at > $3",
    )
    .bind(queue)
    .bind(holder)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a replica weighs before it takes, keeps or gives up `queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// Other queues' leases the replica holds now.
    pub held_elsewhere: i64,
    /// Queues worked lately (held, or free for less than `forgotten_ms`),
    /// this one included.
    pub queues: i64,
    /// Replicas whose heartbeat is fresh, the asking one included.
    pub replicas: i64,
    /// This queue's lease as it stands: its holder and expiry, if it was
    /// ever taken.
    pub lease: Option<(String, i64)>,
}

/// `queue`'s standing for `replica`: leases expired before `forgotten_ms`
/// count as queues nobody works any more (a removed peer), heartbeats
/// older than `alive_after_ms` as replicas gone.
pub async fn standing(
    conn: &mut AnyConnection,
    queue: &str,
    replica: &str,
    now_ms: i64,
    alive_after_ms: i64,
    forgotten_ms: i64,
) -> Result<Standing> {
    let row = sqlx::query(
        "SELECT \
           (SELECT count(*) FROM deliverer_leases \
             WHERE holder = $2 AND expires_at > $3 AND queue <> $1) AS held_elsewhere, \
           (SELECT count(*) FROM deliverer_leases \
             WHERE expires_at > $5 AND queue <> $1) AS other_queues, \
           (SELECT count(*) FROM replica_presence \
             WHERE seen_at > $4 AND replica <> $2) AS other_replicas, \
           (SELECT holder FROM deliverer_leases WHERE queue = $1) AS holder, \
           (SELECT expires_at FROM deliverer_leases WHERE queue = $1) AS expires_at",
    )
    .bind(queue)
    .bind(replica)
    .bind(now_ms)
    .bind(alive_after_ms)
    .bind(forgotten_ms)
    .fetch_one(conn)
    .await?;
    let holder: Option<String> = row.try_get("holder")?;
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    Ok(Standing {
        held_elsewhere: row.try_get("held_elsewhere")?,
        queues: row.try_get::<i64, _>("other_queues")? + 1,
        replicas: row.try_get::<i64, _>("other_replicas")? + 1,
        lease: holder.zip(expires_at),
    })
}

/// The replica's heartbeat, seen at `now_ms`; heartbeats older than
/// `gone_before_ms` are forgotten.
pub async fn attend(
    conn: &mut AnyConnection,
    replica: &str,
    now_ms: i64,
    gone_before_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO replica_presence (replica, seen_at) VALUES ($1, $2) \
         ON CONFLICT (replica) DO UPDATE SET seen_at = excluded.seen_at",
    )
    .bind(replica)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM replica_presence WHERE seen_at < $1")
        .bind(gone_before_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// The replica leaves: the others' shares grow at once.
pub async fn depart(conn: &mut AnyConnection, replica: &str) -> Result<()> {
    sqlx::query("DELETE FROM replica_presence WHERE replica = $1")
        .bind(replica)
        .execute(conn)
        .await?;
    Ok(())
}
