//! External-messaging settings, connected members, blocks and notices.

use sqlx::{AnyConnection, Row};

use super::rooms::stored;
use crate::error::Result;
use crate::ids::{MemberId, TenantId};
use crate::model::Notice;

pub const EXTERNAL_ENABLED: &str = "external.enabled";
pub const EXTERNAL_AUTO_GRANT: &str = "external.auto_grant";
pub const EXTERNAL_RESTRICT_FILES: &str = "external.restrict_files";

pub async fn setting(conn: &mut AnyConnection, key: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("value")).transpose()?)
}

pub async fn flag(conn: &mut AnyConnection, key: &str) -> Result<bool> {
    Ok(setting(conn, key).await?.as_deref() == Some("on"))
}

pub async fn set_setting(conn: &mut AnyConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn external_enabled(conn: &mut AnyConnection) -> Result<bool> {
    flag(conn, EXTERNAL_ENABLED).await
}

/// Connected and active: a suspended member is not reachable from outside.
pub async fn is_connected(conn: &mut AnyConnection, member: &MemberId) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM connected_members c JOIN members m ON m.id = c.member_id \
         WHERE c.member_id = $1 AND m.state = 'active'",
    )
    .bind(member.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// On the connected-members list, whatever the member's state.
pub async fn is_on_connected_list(conn: &mut AnyConnection, member: &MemberId) -> Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM connected_members WHERE member_id = $1")
        .bind(member.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// This node's admission facts for `local` and `external`, in one
/// statement: whether external messaging is on, `local` is connected (and
/// active), `peer` is a peer, `local` blocked `external`, and `local`
/// moved `external` to the trash (deleted the contact).
pub struct PairFacts {
    pub enabled: bool,
    pub connected: bool,
    pub peered: bool,
    pub blocked: bool,
    pub trashed: bool,
}

pub async fn pair_facts(
    conn: &mut AnyConnection,
    local: &MemberId,
    external: &MemberId,
    peer: &TenantId,
) -> Result<PairFacts> {
    if crate::ids::is_line(external) {
        // A LINE user: LINE's own use status and connected list; the
        // company's LINE account stands where the peering would; a deleted
        // LINE contact keeps the conversation (the contacts guide).
        let facts = super::line::facts(conn, local, external).await?;
        return Ok(PairFacts {
            enabled: facts.enabled,
            connected: facts.connected,
            peered: true,
            blocked: facts.blocked,
            trashed: false,
        });
    }
    let row = sqlx::query(
        "SELECT (SELECT value FROM settings WHERE key = $1) AS enabled, \
         (SELECT COUNT(*) FROM connected_members c JOIN members m ON m.id = c.member_id \
          WHERE c.member_id = $2 AND m.state = 'active') AS connected, \
         (SELECT COUNT(*) FROM peers WHERE tenant = $3) AS peered, \
         (SELECT COUNT(*) FROM blocks WHERE member_id = $2 AND blocked = $4) AS blocked, \
         (SELECT COUNT(*) FROM external_contacts WHERE owner = $2 AND user_id = $4 \
          AND trashed_at IS NOT NULL) AS trashed",
    )
    .bind(EXTERNAL_ENABLED)
    .bind(local.as_str())
    .bind(peer.as_str())
    .bind(external.as_str())
    .fetch_one(conn)
    .await?;
    Ok(PairFacts {
        enabled: row.try_get::<Option<String>, _>("enabled")?.as_deref() == Some("on"),
        connected: row.try_get::<i64, _>("connected")? > 0,
        peered: row.try_get::<i64, _>("peered")? > 0,
        blocked: row.try_get::<i64, _>("blocked")? > 0,
        trashed: row.try_get::<i64, _>("trashed")? > 0,
    })
}

/// A connected-members list: for other companies, or for LINE users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    External,
    Line,
}

impl List {
    fn table(self) -> &'static str {
        match self {
            List::External => "connected_members",
            List::Line => "line_connected_members",
        }
    }
}

/// Adds a member to the connected list; false when already there.
pub async fn connect(
    conn: &mut AnyConnection,
    member: &MemberId,
    by: &str,
    at_ms: i64,
) -> Result<bool> {
    connect_to(conn, List::External, member, by, at_ms).await
}

/// Adds a member to `list`; false when already there.
pub async fn connect_to(
    conn: &mut AnyConnection,
    list: List,
    member: &MemberId,
    by: &str,
    at_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (member_id, granted_by, granted_at) VALUES ($1, $2, $3) \
         ON CONFLICT (member_id) DO NOTHING",
        list.table()
    )))
    .bind(member.as_str())
    .bind(by)
    .bind(at_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Removes a member from the connected list; false when not there.
pub async fn disconnect(conn: &mut AnyConnection, member: &MemberId) -> Result<bool> {
    disconnect_from(conn, List::External, member).await
}

/// Removes a member from `list`; false when not there.
pub async fn disconnect_from(
    conn: &mut AnyConnection,
    list: List,
    member: &MemberId,
) -> Result<bool> {
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE member_id = $1",
        list.table()
    )))
    .bind(member.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub struct ConnectedRow {
    pub member: MemberId,
    pub display_name: String,
    pub granted_by: String,
    pub granted_at_ms: i64,
}

pub async fn connected(conn: &mut AnyConnection) -> Result<Vec<ConnectedRow>> {
    connected_on(conn, List::External).await
}

/// Everyone on `list`, by member id.
pub async fn connected_on(conn: &mut AnyConnection, list: List) -> Result<Vec<ConnectedRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT c.member_id, m.display_name, c.granted_by, c.granted_at FROM {} c \
         JOIN members m ON m.id = c.member_id ORDER BY c.member_id",
        list.table()
    )))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConnectedRow {
                member: stored(
                    "member id",
                    MemberId::parse(&r.try_get::<String, _>("member_id")?),
                )?,
                display_name: r.try_get("display_name")?,
                granted_by: r.try_get("granted_by")?,
                granted_at_ms: r.try_get("granted_at")?,
            })
        })
        .collect()
}

pub async fn insert_notice(conn: &mut AnyConnection, notice: &Notice) -> Result<()> {
    sqlx::query("INSERT INTO notices (id, member_id, kind, text, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&notice.id)
        .bind(notice.member.as_str())
        .bind(&notice.kind)
        .bind(&notice.text)
        .bind(notice.at_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// One notice, by its id.
pub async fn notice(conn: &mut AnyConnection, id: &str) -> Result<Option<Notice>> {
    let row = sqlx::query("SELECT id, member_id, kind, text, at FROM notices WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(Notice {
            id: r.try_get("id")?,
            member: stored(
                "notice member",
                MemberId::parse(&r.try_get::<String, _>("member_id")?),
            )?,
            kind: r.try_get("kind")?,
            text: r.try_get("text")?,
            at_ms: r.try_get("at")?,
        })
    })
    .transpose()
}

/// A member's notices, newest last, at most `limit`.
pub async fn notices(
    conn: &mut AnyConnection,
    member: &MemberId,
    limit: i64,
) -> Result<Vec<Notice>> {
    let rows = sqlx::query(
        "SELECT id, member_id, kind, text, at FROM notices WHERE member_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(member.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(Notice {
                id: r.try_get("id")?,
                member: stored(
                    "notice member",
                    MemberId::parse(&r.try_get::<String, _>("member_id")?),
                )?,
                kind: r.try_get("kind")?,
                text: r.try_get("text")?,
                at_ms: r.try_get("at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// The reachability key for every member of a tenant.
pub fn all_members_key(tenant: &crate::ids::TenantId) -> String {
    format!("*@{tenant}")
}

pub async fn set_reachability(
    conn: &mut AnyConnection,
    key: &str,
    tenant: &str,
    reachable: bool,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO external_reachability (user_id, tenant, reachable, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET reachable = excluded.reachable, at = excluded.at",
    )
    .bind(key)
    .bind(tenant)
    .bind(i64::from(reachable))
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a peer said this user (or all of its members) is unreachable.
pub async fn is_unknown(conn: &mut AnyConnection, user: &MemberId) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM external_reachability WHERE user_id IN ($1, $2) AND reachable = 0",
    )
    .bind(user.as_str())
    .bind(all_members_key(user.tenant()))
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}
