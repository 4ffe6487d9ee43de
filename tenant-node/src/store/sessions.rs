//! Login sessions: only the SHA-256 of each token is stored.

use sqlx::Row;

use super::limits::{self, Counted};
use super::members::{role_from, state_from};
use super::{Store, now_ms};
use crate::error::Result;
use crate::ids::MemberId;
use crate::model::{MemberState, Role};

#[derive(Clone)]
pub struct Session {
    pub member_id: String,
    pub expires_at_ms: i64,
}

/// What checking a token needs: the session and its member's role and state.
#[derive(Clone)]
pub struct SessionCaller {
    pub session: Session,
    pub member: Option<(Role, MemberState)>,
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

    /// A session and its member's role and state, in one statement; the
    /// role and state are `None` when the member is gone.
    pub async fn session_caller(&self, token_hash: &str) -> Result<Option<SessionCaller>> {
        let Some(cache) = &self.sessions else {
            return self.read_session_caller(token_hash).await;
        };
        if let Some(found) = cache.get(token_hash, now_ms()) {
            return Ok(Some(found));
        }
        let ticket = cache.ticket();
        let found = self.read_session_caller(token_hash).await?;
        if let Some(found) = &found {
            cache.fill(ticket, token_hash, found);
        }
        Ok(found)
    }

    async fn read_session_caller(&self, token_hash: &str) -> Result<Option<SessionCaller>> {
        let row = sqlx::query(
            "SELECT s.member_id, s.expires_at, m.role, m.state FROM sessions s \
             LEFT JOIN members m ON m.id = s.member_id WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: Option<String> = row.try_get("role")?;
        let state: Option<String> = row.try_get("state")?;
        Ok(Some(SessionCaller {
            session: Session {
                member_id: row.try_get("member_id")?,
                expires_at_ms: row.try_get("expires_at")?,
            },
            member: role
                .zip(state)
                .map(|(role, state)| (role_from(&role), state_from(&state))),
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        let committed = w.commit().await;
        // Dropped even when the commit's outcome is in doubt: read again.
        if let Some(cache) = &self.sessions {
            cache.forget_token(token_hash);
        }
        committed?;
        Ok(deleted > 0)
    }

    /// The session cache forgets a member's sessions: call it after the
    /// commit of any change to their role or state or their sessions.
    pub(super) fn forget_member_sessions(&self, member: &MemberId) {
        if let Some(cache) = &self.sessions {
            cache.forget_member(member.as_str());
        }
    }

    /// Drops expired sessions; returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let now = now_ms();
        let n = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        let committed = w.commit().await;
        if let Some(cache) = &self.sessions {
            cache.forget_expired(now);
        }
        committed?;
        Ok(n)
    }

    /// Failed logins since a time, for a member id and for an address.
    pub async fn login_failures(
        &self,
        member: &MemberId,
        address: &str,
        since_ms: i64,
    ) -> Result<(Counted, Counted)> {
        let mut conn = self.pool().acquire().await?;
        limits::login_failures(&mut conn, member.as_str(), address, since_ms).await
    }

    pub async fn record_login_failure(
        &self,
        member: &MemberId,
        address: &str,
        at_ms: i64,
        prune_before_ms: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        limits::record_login_failure(&mut w.tx, member.as_str(), address, at_ms, prune_before_ms)
            .await?;
        w.commit().await
    }

    pub async fn clear_login_failures(&self, member: &MemberId) -> Result<()> {
        let mut w = self.begin_write().await?;
        limits::clear_login_failures(&mut w.tx, member.as_str()).await?;
        w.commit().await
    }
}
