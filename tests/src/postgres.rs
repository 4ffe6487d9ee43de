//! A database of its own on the local PostgreSQL server (trust
//! authentication), for a test or a benchmark run: made fresh, dropped at
//! the end. Each caller adds its own way of failing.

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The local PostgreSQL server.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

pub struct Database {
    name: String,
}

impl Database {
    /// Creates `<prefix>_<ulid>`.
    pub async fn create(prefix: &str) -> anyhow::Result<Database> {
        let name = format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase());
        execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        Ok(Database { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a node's `storage.url` says to keep its data here.
    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// Drops the database, closing whatever connections are still open.
    pub async fn drop_it(self) -> anyhow::Result<()> {
        execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .with_context(|| format!("cannot drop the database {}", self.name))
    }
}

/// A connection to the server's `postgres` database.
pub async fn connect_server() -> anyhow::Result<PgConnection> {
    PgConnection::connect(&format!("{SERVER}/postgres"))
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {SERVER}"))
}

/// Runs one statement on the server's `postgres` database.
async fn execute(statement: &str) -> anyhow::Result<()> {
    let mut conn = connect_server().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
