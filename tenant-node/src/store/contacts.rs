//! Friend requests and external contacts.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct RequestRow {
    pub id: String,
    pub local_member: String,
    pub external_user: String,
    pub outgoing: bool,
    pub state: String,
    pub display_name: String,
    pub company: String,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ContactRow {
    pub owner: String,
    pub user_id: String,
    pub display_name: String,
    pub photo: Option<Vec<u8>>,
    pub photo_type: Option<String>,
    pub company: String,
    pub fields: String,
    pub created_at_ms: i64,
    pub synced_at_ms: i64,
    pub trashed_at_ms: Option<i64>,
}

const REQUEST_COLUMNS: &str = "id, local_member, external_user, direction, state, display_name, company, created_at, decided_at";
const CONTACT_COLUMNS: &str = "owner, user_id, display_name, photo, photo_type, company, fields, created_at, synced_at, trashed_at";

fn request_from_row(r: &AnyRow) -> Result<RequestRow> {
    Ok(RequestRow {
        id: r.try_get("id")?,
        local_member: r.try_get("local_member")?,
        external_user: r.try_get("external_user")?,
        outgoing: r.try_get::<String, _>("direction")? == "outgoing",
        state: r.try_get("state")?,
        display_name: r.try_get("display_name")?,
        company: r.try_get("company")?,
        created_at_ms: r.try_get("created_at")?,
        decided_at_ms: r.try_get("decided_at")?,
    })
}

fn contact_from_row(r: &AnyRow) -> Result<ContactRow> {
    Ok(ContactRow {
        owner: r.try_get("owner")?,
        user_id: r.try_get("user_id")?,
        display_name: r.try_get("display_name")?,
        photo: r.try_get("photo")?,
        photo_type: r.try_get("photo_type")?,
        company: r.try_get("company")?,
        fields: r.try_get("fields")?,
        created_at_ms: r.try_get("created_at")?,
        synced_at_ms: r.try_get("synced_at")?,
        trashed_at_ms: r.try_get("trashed_at")?,
    })
}

/// Keeps the photo sent with an incoming request (already normalized).
pub async fn set_request_photo(
    conn: &mut AnyConnection,
    id: &str,
    photo: &[u8],
    content_type: &str,
) -> Result<()> {
    sqlx::query("UPDATE friend_requests SET photo = $1, photo_type = $2 WHERE id = $3")
        .bind(photo.to_vec())
        .bind(content_type)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The photo sent with a request, if any: its bytes and content type.
pub async fn request_photo(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(Vec<u8>, String)>> {
    let row = sqlx::query("SELECT photo, photo_type FROM friend_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let photo: Option<Vec<u8>> = row.try_get("photo")?;
    let kind: Option<String> = row.try_get("photo_type")?;
    Ok(photo.zip(kind))
}

pub async fn insert_request(conn: &mut AnyConnection, r: &RequestRow) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO friend_requests (id, local_member, external_user, direction, state, display_name, company, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.local_member)
    .bind(&r.external_user)
    .bind(if r.outgoing { "outgoing" } else { "incoming" })
    .bind(&r.display_name)
    .bind(&r.company)
    .bind(r.created_at_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn request(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(request_from_row).transpose()
}

/// A pending request between the two, in either direction.
pub async fn pending_between(
    conn: &mut AnyConnection,
    local: &str,
    external: &str,
) -> Result<Option<RequestRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE local_member = $1 AND external_user = $2 AND state = 'pending'"
    )))
    .bind(local)
    .bind(external)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(request_from_row).transpose()
}

/// The pending request a peer's member sent one of ours, if any.
pub async fn pending_incoming(
    conn: &mut AnyConnection,
    local: &str,
    external: &str,
) -> Result<Option<RequestRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE local_member = $1 AND external_user = $2 \
         AND direction = 'incoming' AND state = 'pending'"
    )))
    .bind(local)
    .bind(external)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(request_from_row).transpose()
}

pub async fn requests_of(conn: &mut AnyConnection, member: &str) -> Result<Vec<RequestRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE local_member = $1 ORDER BY created_at DESC, id DESC LIMIT 200"
    )))
    .bind(member)
    .fetch_all(conn)
    .await?;
    rows.iter().map(request_from_row).collect()
}

/// Moves a pending request to `state`; false when it was not pending.
pub async fn decide_request(
    conn: &mut AnyConnection,
    id: &str,
    state: &str,
    at_ms: i64,
) -> Result<bool> {
    let n = sqlx::query("UPDATE friend_requests SET state = $1, decided_at = $2 WHERE id = $3 AND state = 'pending'")
        .bind(state)
        .bind(at_ms)
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Outgoing requests since a time: by one member, or to one tenant.
pub async fn outgoing_since(
    conn: &mut AnyConnection,
    member: Option<&str>,
    tenant_suffix: Option<&str>,
    since_ms: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM friend_requests WHERE direction = 'outgoing' AND created_at >= $1 \
         AND ($2 IS NULL OR local_member = $2) AND ($3 IS NULL OR external_user LIKE $3)",
    )
    .bind(since_ms)
    .bind(member)
    .bind(tenant_suffix.map(|t| format!("%@{t}")))
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("n")?)
}

/// Creates the contact, or refreshes its synced fields and takes it out of the trash.
pub async fn upsert_contact(conn: &mut AnyConnection, c: &ContactRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO external_contacts (owner, user_id, display_name, photo, photo_type, company, fields, created_at, synced_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         ON CONFLICT (owner, user_id) DO UPDATE SET display_name = excluded.display_name, photo = excluded.photo, \
         photo_type = excluded.photo_type, company = excluded.company, synced_at = excluded.synced_at, trashed_at = NULL",
    )
    .bind(&c.owner)
    .bind(&c.user_id)
    .bind(&c.display_name)
    .bind(c.photo.clone())
    .bind(c.photo_type.clone())
    .bind(&c.company)
    .bind(&c.fields)
    .bind(c.created_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn contact(
    conn: &mut AnyConnection,
    owner: &str,
    user: &str,
) -> Result<Option<ContactRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CONTACT_COLUMNS} FROM external_contacts WHERE owner = $1 AND user_id = $2"
    )))
    .bind(owner)
    .bind(user)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(contact_from_row).transpose()
}

pub async fn contacts(
    conn: &mut AnyConnection,
    owner: &str,
    trash: bool,
) -> Result<Vec<ContactRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CONTACT_COLUMNS} FROM external_contacts WHERE owner = $1 \
         AND ((trashed_at IS NULL) = $2) ORDER BY display_name, user_id"
    )))
    .bind(owner)
    .bind(!trash)
    .fetch_all(conn)
    .await?;
    rows.iter().map(contact_from_row).collect()
}

/// Moves a contact into (`Some`) or out of (`None`) the trash; false when absent.
pub async fn set_trashed(
    conn: &mut AnyConnection,
    owner: &str,
    user: &str,
    at_ms: Option<i64>,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE external_contacts SET trashed_at = $1 WHERE owner = $2 AND user_id = $3",
    )
    .bind(at_ms)
    .bind(owner)
    .bind(user)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn block(conn: &mut AnyConnection, member: &str, user: &str, at_ms: i64) -> Result<bool> {
    let n = sqlx::query("INSERT INTO blocks (member_id, blocked, at) VALUES ($1, $2, $3) ON CONFLICT (member_id, blocked) DO NOTHING")
        .bind(member)
        .bind(user)
        .bind(at_ms)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

pub async fn unblock(conn: &mut AnyConnection, member: &str, user: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM blocks WHERE member_id = $1 AND blocked = $2")
        .bind(member)
        .bind(user)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

pub async fn set_fields(
    conn: &mut AnyConnection,
    owner: &str,
    user: &str,
    fields: &str,
) -> Result<()> {
    sqlx::query("UPDATE external_contacts SET fields = $1 WHERE owner = $2 AND user_id = $3")
        .bind(fields)
        .bind(owner)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// The external users our members hold as contacts, at one tenant or all.
pub async fn holders_of(conn: &mut AnyConnection, owner: &str) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT user_id FROM external_contacts WHERE owner = $1")
        .bind(owner)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("user_id")?)).collect()
}

/// Our members who hold at least one external contact.
pub async fn owners_with_contacts(conn: &mut AnyConnection) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT owner FROM external_contacts ORDER BY owner")
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("owner")?)).collect()
}

/// Refreshes the synced fields of `owner`'s contact `user`; returns how
/// many rows (0 or 1).
pub async fn sync_profile(
    conn: &mut AnyConnection,
    owner: &str,
    user: &str,
    display_name: &str,
    photo: Option<(&[u8], &str)>,
    company: &str,
    at_ms: i64,
) -> Result<u64> {
    let n = sqlx::query(
        "UPDATE external_contacts SET display_name = $1, photo = $2, photo_type = $3, company = $4, synced_at = $5 \
         WHERE user_id = $6 AND owner = $7",
    )
    .bind(display_name)
    .bind(photo.map(|p| p.0.to_vec()))
    .bind(photo.map(|p| p.1.to_string()))
    .bind(company)
    .bind(at_ms)
    .bind(user)
    .bind(owner)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n)
}
