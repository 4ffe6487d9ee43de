//! Invitation links: a member's signed, expiring, one-time link (shown as a
//! QR code, or emailed) that pre-authorises a friend request from a member of
//! another company. The link names its issuer; only the issuer's node can
//! check its signature, and does so when the request arrives.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::model::Caller;
use crate::store::{now_ms, policy};
use crate::tenant::Tenant;

const LINK_PREFIX: &str = "works://invite/";
const KEY_SETTING: &str = "invitation.key";
pub const DEFAULT_TTL_MS: i64 = 7 * 24 * 3_600_000;
const MAX_TTL_MS: i64 = 30 * 24 * 3_600_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkClaims {
    /// The member who invites.
    pub issuer: String,
    pub nonce: String,
    pub expires_at_ms: i64,
}

/// A link as its holder can read it (the signature is checked by the issuer).
#[derive(Debug, Clone)]
pub struct ParsedLink {
    pub claims: LinkClaims,
    pub issuer: MemberId,
    payload: String,
    signature: Vec<u8>,
}

pub fn parse_link(link: &str) -> Result<ParsedLink> {
    let bad = |why: &str| Error::invalid("link", format!("not an invitation link: {why}"));
    let body = link
        .trim()
        .strip_prefix(LINK_PREFIX)
        .ok_or_else(|| bad("it must start with works://invite/"))?;
    let (payload, signature) = body
        .split_once('.')
        .ok_or_else(|| bad("it has no signature"))?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad("it is not base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| bad("its signature is not base64url"))?;
    let claims: LinkClaims =
        serde_json::from_slice(&json).map_err(|_| bad("its fields are malformed"))?;
    let issuer = MemberId::parse(&claims.issuer).map_err(|e| bad(&e.to_string()))?;
    Ok(ParsedLink {
        claims,
        issuer,
        payload: payload.to_string(),
        signature,
    })
}

impl ParsedLink {
    /// Whether the link was signed with `key`, the issuer node's invitation
    /// key. Only the issuer's node can tell; it checks before honouring one.
    pub fn signed_with(&self, key: &[u8]) -> Result<bool> {
        Ok(mac(key, &self.payload)?
            .verify_slice(&self.signature)
            .is_ok())
    }
}

fn mac(key: &[u8], payload: &str) -> Result<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::Internal(format!("invitation key: {e}")))?;
    mac.update(payload.as_bytes());
    Ok(mac)
}

/// The link text for `claims`, signed with `key`.
pub fn sign_link(key: &[u8], claims: &LinkClaims) -> Result<String> {
    let payload = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(claims).map_err(|e| Error::Internal(e.to_string()))?);
    let signature = mac(key, &payload)?.finalize().into_bytes();
    Ok(format!(
        "{LINK_PREFIX}{payload}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The link's QR code as SVG, PNG and text for a terminal.
pub struct QrCodes {
    pub svg: String,
    pub png: Vec<u8>,
    pub terminal: String,
}

pub fn qr_codes(link: &str) -> Result<QrCodes> {
    let code = qrcode::QrCode::new(link.as_bytes())
        .map_err(|e| Error::Internal(format!("qr code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .build();
    let terminal = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build();
    Ok(QrCodes {
        svg,
        png: qr_png(&code)?,
        terminal,
    })
}

/// Grey-scale PNG: 6 pixels a module, a 4-module quiet zone.
fn qr_png(code: &qrcode::QrCode) -> Result<Vec<u8>> {
    const SCALE: usize = 6;
    const QUIET: usize = 4;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % width + QUIET, i / width + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Internal(format!("png: {e}")))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| Error::Internal(format!("png: {e}")))?;
    }
    Ok(out)
}

pub struct Invitation {
    pub link: String,
    pub expires_at_ms: i64,
    pub qr: QrCodes,
    pub emailed: bool,
}

impl Tenant {
    /// This node's signing key for invitation links, made on first use.
    async fn invitation_key(&self) -> Result<Vec<u8>> {
        if let Some(hex) = self.store.setting(KEY_SETTING).await? {
            return hex_decode(&hex);
        }
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut w = self.store.begin_write().await?;
        // First writer wins; everyone then reads the same key.
        crate::store::invitations::insert_key_once(&mut w.tx, KEY_SETTING, &hex::encode(key))
            .await?;
        w.commit().await?;
        let hex = self
            .store
            .setting(KEY_SETTING)
            .await?
            .ok_or_else(|| Error::Internal("invitation key vanished".into()))?;
        hex_decode(&hex)
    }

    /// A new invitation link for the caller, with its QR code.
    pub async fn create_invitation(
        &self,
        caller: &Caller,
        ttl_ms: Option<i64>,
        email: Option<&str>,
    ) -> Result<Invitation> {
        let ttl = ttl_ms.unwrap_or(DEFAULT_TTL_MS);
        if ttl <= 0 || ttl > MAX_TTL_MS {
            return Err(Error::invalid(
                "ttl",
                "must be between 1 second and 30 days",
            ));
        }
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        if let Some(address) = email {
            if self.smtp.is_none() {
                return Err(Error::FailedPrecondition(
                    "this node has no mail server configured ([smtp] in node.toml)".into(),
                ));
            }
            crate::contacts::mail::parse_address(address)?;
        }
        {
            let mut conn = self.store.pool().acquire().await?;
            if !policy::external_enabled(&mut conn).await? {
                return Err(Error::FailedPrecondition(
                    "your company has not enabled messaging with other companies".into(),
                ));
            }
            if !policy::is_connected(&mut conn, &caller.member).await? {
                return Err(Error::PermissionDenied(
                    "you are not on your company's connected-members list for other companies"
                        .into(),
                ));
            }
        }
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let claims = LinkClaims {
            issuer: caller.member.to_string(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            expires_at_ms: now_ms() + ttl,
        };
        let link = sign_link(&self.invitation_key().await?, &claims)?;
        let mut w = self.store.begin_write().await?;
        crate::store::invitations::insert_link(
            &mut w.tx,
            &claims.nonce,
            &caller.member,
            now_ms(),
            claims.expires_at_ms,
        )
        .await?;
        crate::store::audit::append(
            &mut w.tx,
            &crate::store::audit::NewEntry::new("invitation.created", &caller.member)
                .member(&caller.member)
                .detail(format!("expires at {}", claims.expires_at_ms)),
            now_ms(),
        )
        .await?;
        w.commit().await?;
        let qr = qr_codes(&link)?;
        let mut emailed = false;
        if let (Some(address), Some(smtp)) = (email, &self.smtp) {
            let inviter = self.profile(caller, None).await?;
            crate::contacts::mail::send_invitation(
                smtp,
                crate::contacts::mail::InvitationMail {
                    to: address,
                    inviter: &inviter.display_name,
                    company: &inviter.company,
                    link: &link,
                    qr_png: &qr.png,
                },
            )
            .await?;
            self.record(
                crate::store::audit::NewEntry::new("invitation.emailed", &caller.member)
                    .member(&caller.member)
                    .detail(format!("to {address}")),
            )
            .await?;
            emailed = true;
        }
        Ok(Invitation {
            qr,
            link,
            expires_at_ms: claims.expires_at_ms,
            emailed,
        })
    }

    /// Checks a link presented with a request to `issuer` and uses it up,
    /// inside the caller's transaction. The reason is for the other node.
    pub(crate) async fn use_invitation(
        &self,
        conn: &mut sqlx::AnyConnection,
        link: &str,
        issuer: &MemberId,
        by: &MemberId,
    ) -> Result<()> {
        let refused =
            |why: &str| Error::PermissionDenied(format!("invitation link refused: {why}"));
        let parsed = parse_link(link).map_err(|_| refused("malformed"))?;
        let key = match policy::setting(&mut *conn, KEY_SETTING).await? {
            Some(hex) => hex_decode(&hex)?,
            None => return Err(refused("this node never issued it")),
        };
        if !parsed.signed_with(&key)? {
            return Err(refused("its signature does not match (tampered)"));
        }
        if &parsed.issuer != issuer {
            return Err(refused("it was issued by someone else"));
        }
        if parsed.claims.expires_at_ms <= now_ms() {
            return Err(refused("it has expired"));
        }
        let used =
            crate::store::invitations::use_link(conn, &parsed.claims.nonce, issuer, by, now_ms())
                .await?;
        if !used {
            return Err(refused("it was already used"));
        }
        Ok(())
    }
}

fn hex_decode(hex: &str) -> Result<Vec<u8>> {
    hex::decode(hex).map_err(|_| Error::Internal("stored invitation key is not hex".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_and_tampering_is_visible() {
        let claims = LinkClaims {
            issuer: "bob@b.example".into(),
            nonce: "n".into(),
            expires_at_ms: 5,
        };
        let link = sign_link(b"key", &claims).unwrap();
        let parsed = parse_link(&link).unwrap();
        assert_eq!(parsed.claims, claims);
        assert!(parsed.signed_with(b"key").unwrap());
        assert!(!parsed.signed_with(b"other").unwrap());
        for bad in [
            "",
            "works://invite/",
            "works://invite/abc",
            "https://x/y",
            "works://invite/e30.AA",
        ] {
            assert!(parse_link(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn qr_codes_render() {
        let qr = qr_codes("works://invite/abc.def").unwrap();
        assert!(qr.svg.starts_with("<?xml") && qr.svg.contains("<svg"));
        assert!(qr.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(qr.terminal.lines().count() > 10);
    }
}
