//! The PostgreSQL database the first company (hosting the rooms) keeps its
//! data in with `--storage postgres`: a fresh one on the local server for each run,
//! shared by all of that node's replicas, dropped at the end; and what the
//! server's processes serving it cost.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::node::proc_cpu_ticks;

/// The local PostgreSQL server (trust authentication), as the integration
/// tests use it.
const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of the bench's own on [`SERVER`].
pub(super) struct BenchDatabase {
    name: String,
}

impl BenchDatabase {
    /// Creates `works_bench_<ulid>`.
    pub(super) async fn create() -> anyhow::Result<Self> {
        let name = format!(
            "works_bench_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        Ok(BenchDatabase { name })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// What a node's `storage.url` says to keep its data here.
    pub(super) fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// CPU ticks so far of each server process (backend) connected to this
    /// database now, by process id: the server does on the nodes' behalf
    /// what SQLite does inside them. (The server runs on this machine.)
    pub(super) async fn backend_ticks(&self) -> anyhow::Result<HashMap<u32, u64>> {
        let mut conn = connect().await?;
        let pids: Vec<(i32,)> =
            sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(&self.name)
                .fetch_all(&mut conn)
                .await
                .context("cannot list the database's server processes")?;
        conn.close().await?;
        Ok(pids
            .into_iter()
            .filter_map(|(pid,)| u32::try_from(pid).ok())
            .map(|pid| (pid, proc_cpu_ticks(pid)))
            .collect())
    }

    /// Drops the database, closing whatever connections are still open.
    pub(super) async fn drop_it(self) -> anyhow::Result<()> {
        execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .with_context(|| format!("cannot drop the database {}", self.name))
    }
}

/// A connection to the server's `postgres` database.
async fn connect() -> anyhow::Result<PgConnection> {
    PgConnection::connect(&format!("{SERVER}/postgres"))
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {SERVER}"))
}

/// Runs one statement on the server's `postgres` database.
async fn execute(statement: &str) -> anyhow::Result<()> {
    let mut conn = connect().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
