//! The sessions behind recent tokens, in memory: every call checks its token,
//! and reading the session and its member from SQLite is a round trip to a
//! connection's thread each time.
//!
//! Write-through: an entry is filled only after a read, and every writer of
//! `sessions` or of a member's role or state drops the entries it touches
//! after its commit (`Store::delete_session`, `purge_expired_sessions`,
//! `set_member_state`), so a call that logged a token out or suspended a
//! member has taken effect for every later call once it returns. A read that
//! began before an invalidation does not fill (the generation), so a session
//! read just before a logout cannot come back after it. An entry past its
//! expiry is never returned.
//!
//! Used on SQLite only, where this process is the database's one writer;
//! several nodes sharing a PostgreSQL database would not see each other's
//! invalidations.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::sessions::SessionCaller;

/// At most this many sessions are kept; past it an arbitrary one is dropped.
pub const CAPACITY: usize = 100_000;

pub struct SessionCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, SessionCaller>,
    /// Moved on by every invalidation.
    generation: u64,
}

/// Taken before a read; a fill with it is ignored if anything was
/// invalidated since.
#[derive(Clone, Copy)]
pub struct Ticket(u64);

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// A lock poisoned by a panic elsewhere still holds a consistent map:
    /// every change below is a single call on it.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session behind a token hash, unless it is unknown here or past
    /// its expiry at `now_ms` (then it is dropped and read again).
    pub fn get(&self, token_hash: &str, now_ms: i64) -> Option<SessionCaller> {
        let mut inner = self.lock();
        let found = inner.entries.get(token_hash)?;
        if found.session.expires_at_ms <= now_ms {
            inner.entries.remove(token_hash);
            return None;
        }
        Some(found.clone())
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// Keeps what a read that began at `ticket` found.
    pub fn fill(&self, ticket: Ticket, token_hash: &str, found: &SessionCaller) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.entries.len() >= self.capacity
            && !inner.entries.contains_key(token_hash)
            && let Some(any) = inner.entries.keys().next().cloned()
        {
            inner.entries.remove(&any);
        }
        inner.entries.insert(token_hash.to_string(), found.clone());
    }

    /// After a commit that deleted a session.
    pub fn forget_token(&self, token_hash: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(token_hash);
    }

    /// After a commit that changed a member's state or role, or deleted
    /// their sessions.
    pub fn forget_member(&self, member_id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner
            .entries
            .retain(|_, s| s.session.member_id != member_id);
    }

    /// After a commit that deleted the sessions expired at `now_ms`.
    pub fn forget_expired(&self, now_ms: i64) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner
            .entries
            .retain(|_, s| s.session.expires_at_ms > now_ms);
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MemberState, Role};
    use crate::store::now_ms;
    use crate::store::sessions::Session;
    use crate::store::testing::temp_store;

    fn session(member: &str, expires_at_ms: i64) -> SessionCaller {
        SessionCaller {
            session: Session {
                member_id: member.into(),
                expires_at_ms,
            },
            member: Some((Role::Member, MemberState::Active)),
        }
    }

    #[test]
    fn an_entry_past_its_expiry_is_never_returned() {
        let cache = SessionCache::new(10);
        cache.fill(cache.ticket(), "h", &session("a@a.example", 1_000));
        assert!(cache.get("h", 999).is_some());
        assert!(cache.get("h", 1_000).is_none());
        assert_eq!(cache.entries(), 0);
    }

    #[test]
    fn a_read_from_before_an_invalidation_does_not_fill() {
        let cache = SessionCache::new(10);
        let ticket = cache.ticket();
        cache.forget_token("h");
        cache.fill(ticket, "h", &session("a@a.example", i64::MAX));
        assert!(cache.get("h", 0).is_none());
        cache.fill(cache.ticket(), "h", &session("a@a.example", i64::MAX));
        assert!(cache.get("h", 0).is_some());
    }

    #[test]
    fn it_stays_within_its_capacity() {
        let cache = SessionCache::new(3);
        for i in 0..10 {
            cache.fill(
                cache.ticket(),
                &format!("h{i}"),
                &session("a@a.example", i64::MAX),
            );
        }
        assert_eq!(cache.entries(), 3);
        assert!(cache.get("h9", 0).is_some());
    }

    #[test]
    fn forgetting_a_member_drops_only_their_sessions() {
        let cache = SessionCache::new(10);
        cache.fill(cache.ticket(), "a1", &session("a@a.example", i64::MAX));
        cache.fill(cache.ticket(), "a2", &session("a@a.example", i64::MAX));
        cache.fill(cache.ticket(), "b1", &session("b@a.example", i64::MAX));
        cache.forget_member("a@a.example");
        assert!(cache.get("a1", 0).is_none());
        assert!(cache.get("a2", 0).is_none());
        assert!(cache.get("b1", 0).is_some());
    }

    /// Reads a session twice (the second from memory), then changes it.
    async fn cached(t: &crate::store::testing::TempStore, hash: &str) -> SessionCaller {
        t.store.session_caller(hash).await.unwrap().unwrap();
        t.store.session_caller(hash).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_logged_out_token_is_refused_at_once() {
        let t = temp_store().await;
        let a = t.member("a@a.example").await;
        let expires = now_ms() + 60_000;
        t.store.insert_session("h", &a, expires).await.unwrap();
        assert_eq!(cached(&t, "h").await.session.member_id, a.as_str());
        assert!(t.store.delete_session("h").await.unwrap());
        assert!(t.store.session_caller("h").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_suspended_members_token_is_refused_at_once() {
        let t = temp_store().await;
        let a = t.member("a@a.example").await;
        let expires = now_ms() + 60_000;
        t.store.insert_session("h", &a, expires).await.unwrap();
        assert_eq!(
            cached(&t, "h").await.member,
            Some((Role::Member, MemberState::Active))
        );
        t.store
            .set_member_state(&a, MemberState::Suspended)
            .await
            .unwrap();
        let found = t.store.session_caller("h").await.unwrap().unwrap();
        assert_eq!(found.member, Some((Role::Member, MemberState::Suspended)));
        // Reinstating ends every session issued before.
        t.store
            .set_member_state(&a, MemberState::Active)
            .await
            .unwrap();
        assert!(t.store.session_caller("h").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn purged_sessions_are_gone_from_memory_too() {
        let t = temp_store().await;
        let a = t.member("a@a.example").await;
        t.store
            .insert_session("old", &a, now_ms() - 1)
            .await
            .unwrap();
        t.store
            .insert_session("new", &a, now_ms() + 60_000)
            .await
            .unwrap();
        // An expired session is read from the database every time (and
        // `authenticate` refuses it), never from memory.
        cached(&t, "old").await;
        cached(&t, "new").await;
        assert_eq!(t.store.purge_expired_sessions().await.unwrap(), 1);
        assert!(t.store.session_caller("old").await.unwrap().is_none());
        assert!(t.store.session_caller("new").await.unwrap().is_some());
    }
}
