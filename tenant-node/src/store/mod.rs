//! Storage: one repository module per area over a sqlx `AnyPool`, so the same
//! portable SQL serves SQLite (embedded default) and PostgreSQL (scale-out).
//!
//! Architecture invariant: nothing outside `store` writes SQL, and nothing in
//! `store` makes a policy decision.

pub mod attachments;
pub mod audit;
pub mod contacts;
pub mod events;
pub mod invitations;
pub mod leases;
pub mod limits;
pub mod line;
pub mod members;
pub mod outbox;
pub mod peers;
pub mod policy;
pub mod rooms;
pub mod session_cache;
pub mod sessions;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; queueing writers here instead of in
    /// SQLite's busy handler keeps write latency flat and avoids upgrade
    /// deadlocks between deferred transactions. PostgreSQL needs none.
    write_lock: Option<Arc<Mutex<()>>>,
    /// The sessions behind recent tokens (SQLite only: `session_cache`).
    sessions: Option<Arc<session_cache::SessionCache>>,
}

/// A write transaction; holds the SQLite writer slot until commit or drop.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Connects and brings the schema up to date. `max_connections`: the
    /// pool's size, or the backend's default.
    pub async fn open(
        url: &str,
        max_connections: Option<u32>,
        synchronous: crate::config::Synchronous,
    ) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::Internal(format!(
                "unsupported database url scheme in {:?}: use sqlite:// or postgres://",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let options: AnyConnectOptions = url.parse()?;
        let max_connections = max_connections.unwrap_or_else(|| default_connections(backend));
        // `temp_store = MEMORY`: a savepoint (one per send in a group
        // commit, one per envelope in a relayed batch) keeps copies of the
        // pages it changes in a statement journal, by default a temporary
        // file; in memory it costs no file I/O (BENCHMARKS.md, 2026-12-01).
        let pragmas = match synchronous {
            crate::config::Synchronous::Normal => {
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                 PRAGMA temp_store = MEMORY;"
            }
            crate::config::Synchronous::Full => {
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                 PRAGMA temp_store = MEMORY;"
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // An embedded database file does not drop connections; a ping
            // on every acquire costs a round trip to its thread.
            .test_before_acquire(backend != Backend::Sqlite)
            // A transaction whose COMMIT failed (a full disk, say) is rolled
            // back when dropped; SQLite may already have rolled it back itself,
            // or may leave it open after a failed RELEASE. Either way the
            // connection's transaction state is no longer known for sure, and
            // one left open would hold the write lock and hide uncommitted
            // rows behind later "commits". Such a connection is closed
            // instead of returning to the pool.
            .after_release(move |conn, _meta| {
                Box::pin(async move {
                    if backend != Backend::Sqlite || !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    // Runs the rollback a dropped transaction queued, then
                    // looks again.
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!("closing a database connection left inside a transaction");
                    }
                    Ok(clean)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(pragmas).await?;
                    } else {
                        // A replica that stalls inside a transaction (a
                        // SIGSTOP, a frozen VM) must not hold its locks, a
                        // queue's lease among them, for ever: the server
                        // ends such a transaction, and the stalled replica's
                        // commit then fails.
                        conn.execute("SET idle_in_transaction_session_timeout = 5000")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let filled = audit::fill_folded(&pool).await?;
        if filled > 0 {
            tracing::info!(entries = filled, "audit entries made searchable");
        }
        Ok(Store {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            sessions: (backend == Backend::Sqlite)
                .then(|| Arc::new(session_cache::SessionCache::new(session_cache::CAPACITY))),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn begin_write(&self) -> Result<WriteTx> {
        let writer = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx {
            tx,
            _writer: writer,
        })
    }

    /// Answers when the database answers a query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The migrations of this binary the database has not applied
    /// successfully (their versions); none when the schema is current.
    pub async fn unapplied_migrations(&self) -> Result<Vec<i64>> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await?;
        let applied = rows
            .iter()
            .map(|r| sqlx::Row::try_get::<i64, _>(r, "version"))
            .collect::<std::result::Result<std::collections::HashSet<i64>, _>>()?;
        Ok(migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| m.version)
            .collect())
    }

    /// The pool's open connections, and how many of them are idle.
    pub fn connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Closes every connection; pending writes have committed or rolled back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// How a statement names its bound parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Params {
    /// `$1, $2, …`: PostgreSQL's.
    Numbered,
    /// `?, ?, …`, bound in order: SQLite looks each named parameter up in
    /// a list when it prepares and binds a statement, so a statement of
    /// 1,000 named parameters costs a million steps; anonymous ones cost
    /// none (`sqlite3_bind_parameter_name` was 11–18% of both nodes' CPU
    /// under load before, BENCHMARKS.md).
    Anonymous,
}

impl Params {
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Params {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Params::Anonymous
        } else {
            Params::Numbered
        }
    }
}

/// The rows of a multi-row `VALUES` for `rows` rows of `columns` bound
/// parameters each, the statement's only parameters: `($1, $2), ($3, $4)`
/// on PostgreSQL, `(?, ?), (?, ?)` on SQLite.
pub(crate) fn values(conn: &sqlx::AnyConnection, rows: usize, columns: usize) -> String {
    values_with(Params::of(conn), rows, columns, "")
}

/// `values`, each row ending in the same constants: `tail` `"'queued', 0"`
/// gives `($1, $2, 'queued', 0), …`.
pub(crate) fn values_with(params: Params, rows: usize, columns: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match params {
                Params::Numbered => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
                Params::Anonymous => sql.push('?'),
            }
        }
        if !tail.is_empty() {
            sql.push_str(", ");
            sql.push_str(tail);
        }
        sql.push(')');
    }
    sql
}

/// `$first, $first+1, …`: `count` parameters for an `IN (…)` list.
pub(crate) fn list(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most rows a multi-row statement takes: 128 rows of 11 parameters stay
/// far below SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const MAX_ROWS: usize = 128;

/// Savepoints inside a write transaction, by plain statements rather than
/// sqlx's nested transactions, whose begin and commit wait for a rendezvous
/// with SQLite's connection thread (no measurable difference under load,
/// BENCHMARKS.md; the plain statements are one round trip each). The
/// caller keeps them balanced: every `begin` ends in `release` or
/// `rollback`, or the whole transaction is dropped.
pub mod savepoint {
    use sqlx::{AnyConnection, Executor};

    use crate::error::Result;

    pub async fn begin(conn: &mut AnyConnection) -> Result<()> {
        conn.execute("SAVEPOINT one").await?;
        Ok(())
    }

    pub async fn release(conn: &mut AnyConnection) -> Result<()> {
        conn.execute("RELEASE SAVEPOINT one").await?;
        Ok(())
    }

    /// Undoes everything since `begin` and ends the savepoint.
    pub async fn rollback(conn: &mut AnyConnection) -> Result<()> {
        conn.execute("ROLLBACK TO SAVEPOINT one").await?;
        release(conn).await
    }
}

/// The pool's size when the config sets none. SQLite: one connection per
/// core, at least 2. Each SQLite connection runs on a thread of its own with
/// a page cache of its own, which another connection's commit makes stale;
/// the pool hands idle connections out in turn, so spare ones only add cold
/// caches and thread wake-ups (8 instead of 2 on a 2-core machine: idle
/// latency 1.86 against 1.69 ms, BENCHMARKS.md). PostgreSQL: 8.
fn default_connections(backend: Backend) -> u32 {
    match backend {
        Backend::Sqlite => std::thread::available_parallelism()
            .map_or(2, |n| n.get() as u32)
            .max(2),
        Backend::Postgres => 8,
    }
}

/// Current time in unix milliseconds.
/// What a database driver's error means to the node. `classify` is the
/// one place that reads driver error codes and texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The database refused a write for want of space (SQLite's
    /// SQLITE_FULL, PostgreSQL's disk_full): the write was rolled back and
    /// may succeed once space returns.
    Full,
    /// A unique constraint refused a row.
    Duplicate,
    /// The database cannot be reached just now: the connection failed or
    /// was closed, the pool had none to give, or the server is shutting
    /// down or starting up (PostgreSQL's classes 08 and 57P). What was in
    /// flight was not committed; a later try may work.
    Unreachable,
    /// Anything else.
    Other,
}

pub fn classify(e: &sqlx::Error) -> Fault {
    let e = match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            return Fault::Unreachable;
        }
        sqlx::Error::Database(e) => e,
        _ => return Fault::Other,
    };
    let code = e.code();
    let code = code.as_deref().unwrap_or_default();
    if code.starts_with("08") || code.starts_with("57P") {
        return Fault::Unreachable;
    }
    if matches!(code, "13" | "53100") || e.message().contains("database or disk is full") {
        Fault::Full
    } else if e.is_unique_violation() {
        Fault::Duplicate
    } else {
        Fault::Other
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A store on a fresh SQLite file, for unit tests of the rules above it.
#[cfg(test)]
mod tests {
    #[test]
    fn multi_row_values_number_their_parameters_row_by_row() {
        use super::{Params, values_with};
        assert_eq!(values_with(Params::Numbered, 1, 1, ""), "($1)");
        assert_eq!(
            values_with(Params::Numbered, 2, 3, ""),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            values_with(Params::Numbered, 2, 2, "'queued', 0"),
            "($1, $2, 'queued', 0), ($3, $4, 'queued', 0)"
        );
        assert_eq!(
            values_with(Params::Anonymous, 2, 2, "'queued', 0"),
            "(?, ?, 'queued', 0), (?, ?, 'queued', 0)"
        );
        assert_eq!(super::list(3, 3), "$3, $4, $5");
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Store;
    use crate::ids::MemberId;
    use crate::model::Role;

    pub struct TempStore {
        pub store: Store,
        _dir: tempfile::TempDir,
    }

    impl TempStore {
        pub async fn conn(&self) -> sqlx::pool::PoolConnection<sqlx::Any> {
            self.store.pool().acquire().await.expect("connection")
        }

        /// Adds an active member.
        pub async fn member(&self, id: &str) -> MemberId {
            let id = MemberId::parse(id).expect("member id");
            self.store
                .insert_member(&id, id.name(), "-", Role::Member)
                .await
                .expect("insert member");
            id
        }
    }

    pub async fn temp_store() -> TempStore {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("node.db").display());
        let store = Store::open(&url, Some(2), crate::config::Synchronous::Normal)
            .await
            .expect("open store");
        TempStore { store, _dir: dir }
    }
}
