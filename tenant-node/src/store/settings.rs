//! Tenant-wide settings as key/value rows. The SQL lives in `policy`; these
//! are the same operations on a connection of their own.

use super::{Store, policy};
use crate::error::Result;

pub const COMPANY_NAME: &str = "company_name";

impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let mut conn = self.pool().acquire().await?;
        policy::setting(&mut conn, key).await
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut w = self.begin_write().await?;
        policy::set_setting(&mut w.tx, key, value).await?;
        w.commit().await
    }
}
