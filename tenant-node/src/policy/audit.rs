//! The audit log as admins use it: search, export, verify.

use crate::error::{Error, Result};
use crate::model::Caller;
use crate::store::audit::{self, Entry, Filter};
use crate::tenant::Tenant;

pub const MAX_PAGE: i64 = 1000;

/// The longest text an audit search looks for, in characters: longer than
/// any name or phrase worth searching, and far below what a database's
/// `LIKE` takes (SQLite refuses patterns over 50,000 bytes).
pub const MAX_SEARCH_TEXT: usize = 256;

impl Tenant {
    pub async fn audit_search(&self, caller: &Caller, mut filter: Filter) -> Result<Vec<Entry>> {
        caller.require_admin()?;
        if filter.limit <= 0 {
            filter.limit = 100;
        }
        if filter.limit > MAX_PAGE {
            return Err(Error::invalid(
                "limit",
                format!("must be at most {MAX_PAGE}"),
            ));
        }
        if let Some(text) = &filter.text
            && text.chars().count() > MAX_SEARCH_TEXT
        {
            return Err(Error::invalid(
                "text",
                format!("must be at most {MAX_SEARCH_TEXT} characters"),
            ));
        }
        if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms)
            && since >= until
        {
            return Err(Error::invalid("since", "must be before until"));
        }
        let mut conn = self.store.pool().acquire().await?;
        audit::search(&mut conn, &filter).await
    }

    /// Checks the whole chain: the number of entries, or where it breaks.
    pub async fn audit_verify(
        &self,
        caller: &Caller,
    ) -> Result<std::result::Result<i64, (i64, String)>> {
        caller.require_admin()?;
        let mut conn = self.store.pool().acquire().await?;
        audit::verify(&mut conn).await
    }
}
