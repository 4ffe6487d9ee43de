//! Login sessions: only the SHA-256 of each token is stored.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;
use crate::ids::MemberId;

pub struct Session {
    pub member_id: String,
    pub expires_at_ms: i64,
}

impl Store {
    pub async fn insert_session(
        &self,
        token_hash: &str,
        member: &MemberId,
        expires_at_ms: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, member_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(member.as_str())
        .bind(now_ms())
        .bind(expires_at_ms)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        let row = sqlx::query("SELECT member_id, expires_at FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            None => None,
            Some(row) => Some(Session {
                member_id: row.try_get("member_id")?,
                expires_at_ms: row.try_get("expires_at")?,
            }),
        })
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(deleted > 0)
    }

    /// Drops expired sessions; returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(n)
    }
}
