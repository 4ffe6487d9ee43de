//! Members and their profiles.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, now_ms};
use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::model::{Member, MemberState, Photo, Role};

/// A member row with what authentication needs.
pub struct Credentials {
    pub member: Member,
    pub password_hash: String,
}

const MEMBER_COLUMNS: &str =
    "id, display_name, photo IS NOT NULL AS has_photo, role, state, created_at";

fn role_str(role: Role) -> &'static str {
    match role {
        Role::Member => "member",
        Role::Admin => "admin",
    }
}

fn state_str(state: MemberState) -> &'static str {
    match state {
        MemberState::Active => "active",
        MemberState::Suspended => "suspended",
    }
}

/// A stored role; anything but "admin" reads as a plain member.
pub(super) fn role_from(stored: &str) -> Role {
    if stored == "admin" {
        Role::Admin
    } else {
        Role::Member
    }
}

/// A stored state; anything but "suspended" reads as active.
pub(super) fn state_from(stored: &str) -> MemberState {
    if stored == "suspended" {
        MemberState::Suspended
    } else {
        MemberState::Active
    }
}

fn member_from_row(row: &AnyRow) -> Result<Member> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let state: String = row.try_get("state")?;
    // SQLite returns the boolean expression as an integer, PostgreSQL as bool.
    let has_photo = row
        .try_get::<bool, _>("has_photo")
        .or_else(|_| row.try_get::<i64, _>("has_photo").map(|v| v != 0))?;
    Ok(Member {
        id: MemberId::parse(&id).map_err(|e| Error::Internal(format!("stored member id: {e}")))?,
        display_name: row.try_get("display_name")?,
        has_photo,
        role: role_from(&role),
        state: state_from(&state),
        created_at_ms: row.try_get("created_at")?,
    })
}

impl Store {
    /// Inserts a member; `AlreadyExists` when the id is taken.
    pub async fn insert_member(
        &self,
        id: &MemberId,
        display_name: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<Member> {
        let mut w = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO members (id, display_name, password_hash, role, state, created_at) \
             VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(display_name)
        .bind(password_hash)
        .bind(role_str(role))
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::AlreadyExists(format!("member {id} already exists")));
        }
        w.commit().await?;
        self.member(id)
            .await?
            .ok_or_else(|| Error::Internal(format!("member {id} vanished after insert")))
    }

    pub async fn member(&self, id: &MemberId) -> Result<Option<Member>> {
        member(&mut *self.pool().acquire().await?, id).await
    }

    pub async fn credentials(&self, id: &MemberId) -> Result<Option<Credentials>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS}, password_hash FROM members WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(Credentials {
                member: member_from_row(&row)?,
                password_hash: row.try_get("password_hash")?,
            })),
        }
    }

    pub async fn list_members(&self) -> Result<Vec<Member>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM members ORDER BY id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(member_from_row).collect()
    }

    /// Sets a member's state. Sessions are kept through a suspension, so the
    /// member is told precisely why calls fail, and revoked when it ends, so
    /// nothing issued before it works again.
    pub async fn set_member_state(&self, id: &MemberId, state: MemberState) -> Result<Member> {
        let mut w = self.begin_write().await?;
        let updated = sqlx::query("UPDATE members SET state = $1 WHERE id = $2")
            .bind(state_str(state))
            .bind(id.as_str())
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound(format!("member {id}")));
        }
        if state == MemberState::Active {
            sqlx::query("DELETE FROM sessions WHERE member_id = $1")
                .bind(id.as_str())
                .execute(&mut *w.tx)
                .await?;
        }
        let committed = w.commit().await;
        // The next call with one of their tokens reads the new state.
        self.forget_member_sessions(id);
        committed?;
        self.member(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("member {id}")))
    }

    /// Changes what is given: a new display name, a new photo, or no photo.
    pub async fn update_profile(
        &self,
        id: &MemberId,
        display_name: Option<&str>,
        photo: Option<Option<&Photo>>,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        if let Some(name) = display_name {
            sqlx::query("UPDATE members SET display_name = $1 WHERE id = $2")
                .bind(name)
                .bind(id.as_str())
                .execute(&mut *w.tx)
                .await?;
        }
        if let Some(photo) = photo {
            sqlx::query("UPDATE members SET photo = $1, photo_type = $2 WHERE id = $3")
                .bind(photo.map(|p| p.bytes.clone()))
                .bind(photo.map(|p| p.content_type.clone()))
                .bind(id.as_str())
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await
    }

    pub async fn member_photo(&self, id: &MemberId) -> Result<Option<Photo>> {
        let row = sqlx::query("SELECT photo, photo_type FROM members WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let bytes: Option<Vec<u8>> = row.try_get("photo")?;
        let content_type: Option<String> = row.try_get("photo_type")?;
        Ok(bytes.zip(content_type).map(|(bytes, content_type)| Photo {
            bytes,
            content_type,
        }))
    }
}

pub async fn member(conn: &mut sqlx::AnyConnection, id: &MemberId) -> Result<Option<Member>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {MEMBER_COLUMNS} FROM members WHERE id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(member_from_row).transpose()
}
