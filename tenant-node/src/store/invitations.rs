//! Invitation links: the signing key (a setting made once) and each link's
//! one-time nonce. Every function runs on the caller's connection, inside
//! the caller's transaction.

use sqlx::AnyConnection;

use crate::error::Result;
use crate::ids::MemberId;

/// Stores the signing key under `key` unless one is there already: the
/// first writer wins, and everyone then reads the same key.
pub async fn insert_key_once(conn: &mut AnyConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_link(
    conn: &mut AnyConnection,
    nonce: &str,
    issuer: &MemberId,
    created_at_ms: i64,
    expires_at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO invitation_links (nonce, issuer, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(nonce)
    .bind(issuer.as_str())
    .bind(created_at_ms)
    .bind(expires_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks `issuer`'s link with `nonce` used by `by`; false when it was used
/// already (or never issued).
pub async fn use_link(
    conn: &mut AnyConnection,
    nonce: &str,
    issuer: &MemberId,
    by: &MemberId,
    at_ms: i64,
) -> Result<bool> {
    let used = sqlx::query(
        "UPDATE invitation_links SET used_at = $1, used_by = $2 WHERE nonce = $3 AND issuer = $4 AND used_at IS NULL",
    )
    .bind(at_ms)
    .bind(by.as_str())
    .bind(nonce)
    .bind(issuer.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(used == 1)
}
