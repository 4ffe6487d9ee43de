//! LINE users as members' contacts: a member's LINE entry points (message
//! ID, "add me" link, QR code) and the contact a binding makes. The LINE
//! profile's name and photo are LINE's and read-only; the member's own
//! fields are edited as for any contact, and deleting one keeps the
//! conversation (`store::policy::pair_facts` never counts a deleted LINE
//! contact against a room).

use super::invitations::qr_codes;
use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::model::{Caller, Photo};
use crate::store::contacts::{self as store, ContactRow};
use crate::store::line;
use crate::tenant::Tenant;

/// How a LINE user adds a member: the member's message ID (their member
/// id, as the guide says), a link that opens the company's account in LINE
/// with the ID typed in, and its QR code.
#[derive(Debug, Clone)]
pub struct LineInvite {
    pub message_id: String,
    pub basic_id: String,
    pub link: String,
    pub qr_svg: String,
    pub qr_png: Vec<u8>,
    pub qr_terminal: String,
}

/// The text an invitation link types into LINE: it carries the member's
/// code, which binds the LINE user to the member.
pub fn invite_text(member: &MemberId) -> String {
    format!("Hello {member}")
}

impl Tenant {
    pub async fn line_invite(&self, caller: &Caller) -> Result<LineInvite> {
        let channel = self.line.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("your company has no LINE account on this node".into())
        })?;
        let mut conn = self.store.pool().acquire().await?;
        if !line::usable_by(&mut conn, &caller.member).await? {
            return Err(Error::PermissionDenied(
                "your admin has not allowed you to chat with LINE users".into(),
            ));
        }
        let link = format!(
            "https://line.me/R/oaMessage/{}/?{}",
            percent_encode(&channel.basic_id),
            percent_encode(&invite_text(&caller.member))
        );
        let qr = qr_codes(&link)?;
        Ok(LineInvite {
            message_id: caller.member.to_string(),
            basic_id: channel.basic_id.clone(),
            link,
            qr_svg: qr.svg,
            qr_png: qr.png,
            qr_terminal: qr.terminal,
        })
    }

    /// A member's photo as the icon LINE shows beside their messages: only
    /// for members permitted to chat with LINE users.
    pub async fn line_icon(&self, member: &str) -> Result<Option<Photo>> {
        let Ok(id) = MemberId::parse(member) else {
            return Ok(None);
        };
        if !id.belongs_to(&self.id) {
            return Ok(None);
        }
        let mut conn = self.store.pool().acquire().await?;
        if !line::usable_by(&mut conn, &id).await? {
            return Ok(None);
        }
        drop(conn);
        self.store.member_photo(&id).await
    }

    /// The LINE user as `owner`'s contact, with LINE's name and photo; a
    /// contact in the trash comes back.
    // The webhook inbox, which binds LINE users to members, is its caller;
    // until it lands nothing else is.
    #[allow(dead_code)]
    pub(crate) async fn line_contact(
        &self,
        conn: &mut sqlx::AnyConnection,
        owner: &MemberId,
        user: &MemberId,
        display_name: &str,
        photo: Option<&Photo>,
        at_ms: i64,
    ) -> Result<()> {
        let fields = match store::contact(conn, owner.as_str(), user.as_str()).await? {
            Some(existing) => existing.fields,
            None => {
                serde_json::json!({ "name": display_name, "nickname": display_name }).to_string()
            }
        };
        store::upsert_contact(
            conn,
            &ContactRow {
                owner: owner.to_string(),
                user_id: user.to_string(),
                display_name: display_name.to_string(),
                photo: photo.map(|p| p.bytes.clone()),
                photo_type: photo.map(|p| p.content_type.clone()),
                company: "LINE".into(),
                fields,
                created_at_ms: at_ms,
                synced_at_ms: at_ms,
                trashed_at_ms: None,
            },
        )
        .await
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_carries_the_basic_id_and_the_code() {
        assert_eq!(percent_encode("@123abcde"), "%40123abcde");
        let m = MemberId::parse("alice@a.example").unwrap();
        assert_eq!(
            percent_encode(&invite_text(&m)),
            "Hello%20alice%40a.example"
        );
    }
}
