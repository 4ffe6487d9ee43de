//! Peer records and peering invitations.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::rooms::stored;
use super::{Store, now_ms};
use crate::error::{Error, Result};
use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSource {
    Invitation,
    Config,
}

impl PeerSource {
    fn as_str(self) -> &'static str {
        match self {
            PeerSource::Invitation => "invitation",
            PeerSource::Config => "config",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerRow {
    pub tenant: TenantId,
    pub endpoint: String,
    pub ca_pem: String,
    pub source: PeerSource,
    pub created_at_ms: i64,
    pub last_contact_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
}

pub struct InvitationRow {
    pub for_tenant: Option<String>,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
}

fn peer_from_row(row: &AnyRow) -> Result<PeerRow> {
    let tenant: String = row.try_get("tenant")?;
    let source: String = row.try_get("source")?;
    Ok(PeerRow {
        tenant: stored("peer tenant", TenantId::parse(&tenant))?,
        endpoint: row.try_get("endpoint")?,
        ca_pem: row.try_get("ca_pem")?,
        source: if source == "config" {
            PeerSource::Config
        } else {
            PeerSource::Invitation
        },
        created_at_ms: row.try_get("created_at")?,
        last_contact_at_ms: row.try_get("last_contact_at")?,
        last_error: row.try_get("last_error")?,
        last_error_at_ms: row.try_get("last_error_at")?,
    })
}

const PEER_COLUMNS: &str =
    "tenant, endpoint, ca_pem, source, created_at, last_contact_at, last_error, last_error_at";

impl Store {
    pub async fn peers(&self) -> Result<Vec<PeerRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PEER_COLUMNS} FROM peers ORDER BY tenant"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(peer_from_row).collect()
    }

    pub async fn peer(&self, tenant: &TenantId) -> Result<Option<PeerRow>> {
        let mut conn = self.pool().acquire().await?;
        peer(&mut conn, tenant).await
    }

    /// Adds or replaces a peer declared in the config file.
    pub async fn upsert_declared_peer(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        ca_pem: &str,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO peers (tenant, endpoint, ca_pem, source, created_at) VALUES ($1, $2, $3, 'config', $4) \
             ON CONFLICT (tenant) DO UPDATE SET endpoint = excluded.endpoint, ca_pem = excluded.ca_pem, source = 'config'",
        )
        .bind(tenant.as_str())
        .bind(endpoint)
        .bind(ca_pem)
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub async fn delete_peer(&self, tenant: &TenantId) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM peers WHERE tenant = $1")
            .bind(tenant.as_str())
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(n > 0)
    }

    pub async fn peer_contacted(&self, tenant: &TenantId) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("UPDATE peers SET last_contact_at = $1 WHERE tenant = $2")
            .bind(now_ms())
            .bind(tenant.as_str())
            .execute(&mut *w.tx)
            .await?;
        w.commit().await
    }

    pub async fn peer_failed(&self, tenant: &TenantId, error: &str) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("UPDATE peers SET last_error = $1, last_error_at = $2 WHERE tenant = $3")
            .bind(error)
            .bind(now_ms())
            .bind(tenant.as_str())
            .execute(&mut *w.tx)
            .await?;
        w.commit().await
    }

    pub async fn insert_invitation(
        &self,
        secret_hash: &str,
        for_tenant: Option<&TenantId>,
        created_by: &str,
        expires_at_ms: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO peer_invitations (secret_hash, for_tenant, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret_hash)
        .bind(for_tenant.map(|t| t.to_string()))
        .bind(created_by)
        .bind(now_ms())
        .bind(expires_at_ms)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }
}

/// Updates a peer's pinned CAs in the caller's transaction.
pub async fn set_cas(conn: &mut AnyConnection, tenant: &TenantId, ca_pem: &str) -> Result<()> {
    sqlx::query("UPDATE peers SET ca_pem = $1 WHERE tenant = $2")
        .bind(ca_pem)
        .bind(tenant.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Every peer, in the caller's transaction.
pub async fn all(conn: &mut AnyConnection) -> Result<Vec<TenantId>> {
    let rows = sqlx::query("SELECT tenant FROM peers ORDER BY tenant")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| stored("peer", TenantId::parse(&r.try_get::<String, _>("tenant")?)))
        .collect()
}

pub async fn peer(conn: &mut AnyConnection, tenant: &TenantId) -> Result<Option<PeerRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {PEER_COLUMNS} FROM peers WHERE tenant = $1"
    )))
    .bind(tenant.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(peer_from_row).transpose()
}

pub async fn invitation(
    conn: &mut AnyConnection,
    secret_hash: &str,
) -> Result<Option<InvitationRow>> {
    let row = sqlx::query(
        "SELECT for_tenant, expires_at, used_at FROM peer_invitations WHERE secret_hash = $1",
    )
    .bind(secret_hash)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(InvitationRow {
            for_tenant: r.try_get("for_tenant")?,
            expires_at_ms: r.try_get("expires_at")?,
            used_at_ms: r.try_get("used_at")?,
        })
    })
    .transpose()
}

/// Marks an invitation used; false when it was used already.
pub async fn use_invitation(
    conn: &mut AnyConnection,
    secret_hash: &str,
    by: &TenantId,
) -> Result<bool> {
    let n = sqlx::query("UPDATE peer_invitations SET used_at = $1, used_by = $2 WHERE secret_hash = $3 AND used_at IS NULL")
        .bind(now_ms())
        .bind(by.as_str())
        .bind(secret_hash)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

pub async fn insert_peer(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    endpoint: &str,
    ca_pem: &str,
    source: PeerSource,
) -> Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO peers (tenant, endpoint, ca_pem, source, created_at, last_contact_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(endpoint)
    .bind(ca_pem)
    .bind(source.as_str())
    .bind(now_ms())
    .execute(conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(Error::AlreadyExists(format!(
            "already peered with {tenant}; remove that peering first"
        )));
    }
    Ok(())
}
