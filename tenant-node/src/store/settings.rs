//! Tenant-wide settings as key/value rows.

use sqlx::Row;

use super::Store;
use crate::error::Result;

pub const COMPANY_NAME: &str = "company_name";

impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }
}
