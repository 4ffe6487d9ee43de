//! What the PostgreSQL server's processes cost while they serve the first
//! company's database (`--storage postgres`, a [`Database`] of the bench's
//! own, shared by all of that node's replicas).

use std::collections::HashMap;

use anyhow::Context;
use sqlx::Connection;

use super::node::proc_cpu_ticks;
use crate::postgres::{Database, connect_server};

/// CPU ticks so far of each server process (backend) connected to `db`
/// now, by process id: the server does on the nodes' behalf what SQLite
/// does inside them. (The server runs on this machine.)
pub(super) async fn backend_ticks(db: &Database) -> anyhow::Result<HashMap<u32, u64>> {
    let mut conn = connect_server().await?;
    let pids: Vec<(i32,)> = sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind(db.name())
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
