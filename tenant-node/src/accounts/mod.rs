//! Accounts: members, passwords, login tokens, profiles and the company name.

pub mod photo;

use std::net::IpAddr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::model::{Caller, Member, MemberState, Profile, Role};
use crate::quota;
use crate::store::{now_ms, settings};
use crate::tenant::{Tenant, clean_name};

const TOKEN_PREFIX: &str = "wt_";
const TOKEN_BYTES: usize = 32;
pub const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_DISPLAY_NAME_CHARS: usize = 100;
const MAX_COMPANY_CHARS: usize = 100;

/// A fresh login token for a member.
pub struct Login {
    pub token: String,
    pub member: MemberId,
    pub expires_at_ms: i64,
}

pub fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Argon2id with the crate's recommended parameters, off the async runtime.
async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| Error::Internal(format!("password salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password hash: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("password hash task: {e}")))?
}

async fn verify_password(password: &str, stored: &str) -> Result<bool> {
    let password = password.to_string();
    let stored = stored.to_string();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| Error::Internal(format!("stored password hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| Error::Internal(format!("password check task: {e}")))?
}

fn token_hash(token: &str) -> String {
    works_certs::sha256_hex(token.as_bytes())
}

/// Checks a token's shape before any lookup, so garbage never reaches storage.
fn parse_token(token: &str) -> Result<&str> {
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or_else(|| Error::Unauthenticated("malformed token".into()))?;
    match URL_SAFE_NO_PAD.decode(body) {
        Ok(bytes) if bytes.len() == TOKEN_BYTES => Ok(token),
        _ => Err(Error::Unauthenticated("malformed token".into())),
    }
}

/// Generates a random password for the first admin: 24 letters and digits
/// (about 143 bits), nothing a shell or an option parser treats specially.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Caller {
    pub fn require_admin(&self) -> Result<()> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Member => Err(Error::PermissionDenied(
                "this operation needs the admin role".into(),
            )),
        }
    }
}

impl Tenant {
    /// Creates a member; used by `init` for the first admin and by admins.
    pub async fn create_member(
        &self,
        name: &str,
        display_name: &str,
        password: &str,
        role: Role,
    ) -> Result<Member> {
        let id = if name.contains('@') {
            self.local_member_id("name", name)?
        } else {
            MemberId::with_name(name, &self.id).map_err(Error::bad_id("name"))?
        };
        let display_name = clean_name("display_name", display_name, MAX_DISPLAY_NAME_CHARS)?;
        check_password_rules(password)?;
        let hash = hash_password(password).await?;
        let member = self
            .store
            .insert_member(&id, &display_name, &hash, role)
            .await?;
        tracing::info!(member = %member.id, ?role, "member added");
        Ok(member)
    }

    pub async fn add_member(
        &self,
        caller: &Caller,
        name: &str,
        display_name: &str,
        password: &str,
        role: Role,
    ) -> Result<Member> {
        caller.require_admin()?;
        let member = self
            .create_member(name, display_name, password, role)
            .await?;
        self.auto_grant(&member.id, caller.member.as_str()).await?;
        self.line_auto_grant(&member.id, caller.member.as_str())
            .await?;
        Ok(member)
    }

    pub async fn list_members(&self, caller: &Caller) -> Result<Vec<Member>> {
        caller.require_admin()?;
        self.store.list_members().await
    }

    /// Suspends or reinstates a member here: the state, and a suspended
    /// member's streams end. What it means across companies is
    /// `policy::set_member_state`, the entry point.
    pub(crate) async fn change_member_state(
        &self,
        caller: &Caller,
        id: &MemberId,
        state: MemberState,
    ) -> Result<Member> {
        caller.require_admin()?;
        if *id == caller.member && state == MemberState::Suspended {
            return Err(Error::FailedPrecondition(
                "an admin cannot suspend their own account".into(),
            ));
        }
        let member = self.store.set_member_state(id, state).await?;
        if state == MemberState::Suspended {
            self.hub.suspended(id.clone());
        }
        tracing::info!(member = %id, ?state, by = %caller.member, "member state changed");
        Ok(member)
    }

    /// Logs a member in. `source` is the address the attempt came from;
    /// failed attempts are limited per member id and per address, checked
    /// before any password is hashed.
    pub async fn login(
        &self,
        id: &MemberId,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Login> {
        let wrong = || Error::Unauthenticated("wrong member id or password".into());
        let address = source.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let failed_before = self.check_login_attempts(id, &address).await?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(self.login_failed(id, &address, wrong()).await);
        }
        let Some(creds) = self.store.credentials(id).await? else {
            // Spend the same time as a real check so timing tells nothing.
            let _ = hash_password(password).await;
            return Err(self.login_failed(id, &address, wrong()).await);
        };
        if !verify_password(password, &creds.password_hash).await? {
            tracing::info!(member = %id, %address, "login refused: wrong password");
            return Err(self.login_failed(id, &address, wrong()).await);
        }
        if failed_before {
            self.store.clear_login_failures(id).await?;
        }
        if creds.member.state == MemberState::Suspended {
            return Err(Error::PermissionDenied(format!("member {id} is suspended")));
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let ttl_ms =
            i64::try_from(self.limits.token_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let expires_at_ms = now_ms().saturating_add(ttl_ms);
        self.store
            .insert_session(&token_hash(&token), id, expires_at_ms)
            .await?;
        tracing::info!(member = %id, "login");
        Ok(Login {
            token,
            member: id.clone(),
            expires_at_ms,
        })
    }

    fn login_window_ms(&self) -> i64 {
        i64::try_from(self.limits.login_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Refuses an attempt, before any hashing, once the member id or the
    /// address has used up its failed attempts in the window; otherwise
    /// tells whether the member id has failed attempts to forget.
    async fn check_login_attempts(&self, id: &MemberId, address: &str) -> Result<bool> {
        let now = now_ms();
        let window = self.login_window_ms();
        let (by_member, by_address) = self
            .store
            .login_failures(id, address, now.saturating_sub(window))
            .await?;
        let l = &self.limits;
        if let Some(wait) = quota::wait_ms(l.login_failures_per_member, by_member, window, now) {
            return Err(quota::exceeded(
                format!("too many failed logins for {id}"),
                wait,
            ));
        }
        if let Some(wait) = quota::wait_ms(l.login_failures_per_address, by_address, window, now) {
            return Err(quota::exceeded(
                format!("too many failed logins from {address}"),
                wait,
            ));
        }
        Ok(by_member.count > 0)
    }

    /// Counts a failed attempt and gives back the caller's error (or the
    /// storage error, should counting fail).
    async fn login_failed(&self, id: &MemberId, address: &str, error: Error) -> Error {
        let now = now_ms();
        match self
            .store
            .record_login_failure(id, address, now, now.saturating_sub(self.login_window_ms()))
            .await
        {
            Ok(()) => error,
            Err(e) => e,
        }
    }

    /// Resolves a bearer token to its caller.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let token = parse_token(token)?;
        let hash = token_hash(token);
        let found = self
            .store
            .session_caller(&hash)
            .await?
            .ok_or_else(|| Error::Unauthenticated("invalid or revoked token".into()))?;
        if found.session.expires_at_ms <= now_ms() {
            self.store.delete_session(&hash).await?;
            return Err(Error::Unauthenticated("token expired; log in again".into()));
        }
        let id = MemberId::parse(&found.session.member_id)
            .map_err(|e| Error::Internal(format!("stored session member: {e}")))?;
        let (role, state) = found
            .member
            .ok_or_else(|| Error::Unauthenticated("invalid or revoked token".into()))?;
        if state == MemberState::Suspended {
            return Err(Error::PermissionDenied(format!("member {id} is suspended")));
        }
        Ok(Caller { member: id, role })
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        let token = parse_token(token)?;
        self.store.delete_session(&token_hash(token)).await?;
        Ok(())
    }

    pub async fn whoami(&self, caller: &Caller) -> Result<Member> {
        self.store
            .member(&caller.member)
            .await?
            .ok_or_else(|| Error::NotFound(format!("member {}", caller.member)))
    }

    /// The company name as the admin console shows it; members read it in
    /// their own profile (`GetProfile`).
    pub async fn company_setting(&self, caller: &Caller) -> Result<String> {
        caller.require_admin()?;
        self.company_name().await
    }

    pub async fn set_company_name(&self, caller: &Caller, name: &str) -> Result<String> {
        caller.require_admin()?;
        let name = clean_name("name", name, MAX_COMPANY_CHARS)?;
        self.store
            .set_setting(settings::COMPANY_NAME, &name)
            .await?;
        tracing::info!(company = %name, by = %caller.member, "company name set");
        self.push_all_profiles().await?;
        Ok(name)
    }

    /// Sets the company name at `init`, before any admin exists.
    pub async fn init_company_name(&self, name: &str) -> Result<()> {
        let name = clean_name("company", name, MAX_COMPANY_CHARS)?;
        self.store.set_setting(settings::COMPANY_NAME, &name).await
    }

    pub async fn profile(&self, caller: &Caller, member: Option<&MemberId>) -> Result<Profile> {
        let id = member.unwrap_or(&caller.member);
        let member = self
            .store
            .member(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("member {id}")))?;
        let photo = if member.has_photo {
            self.store.member_photo(id).await?
        } else {
            None
        };
        Ok(Profile {
            member_id: id.clone(),
            display_name: member.display_name,
            photo,
            company: self.company_name().await?,
        })
    }

    /// Changes the caller's own display name and/or photo.
    pub async fn set_profile(
        &self,
        caller: &Caller,
        display_name: Option<&str>,
        photo: Option<Vec<u8>>,
        clear_photo: bool,
    ) -> Result<Profile> {
        let display_name = display_name
            .map(|n| clean_name("display_name", n, MAX_DISPLAY_NAME_CHARS))
            .transpose()?;
        let photo = match (photo, clear_photo) {
            (Some(_), true) => {
                return Err(Error::invalid(
                    "photo",
                    "give a photo or clear_photo, not both",
                ));
            }
            (Some(bytes), false) => Some(Some(
                crate::accounts::photo::normalize(bytes, self.limits.max_photo_bytes).await?,
            )),
            (None, true) => Some(None),
            (None, false) => None,
        };
        self.store
            .update_profile(
                &caller.member,
                display_name.as_deref(),
                photo.as_ref().map(|p| p.as_ref()),
            )
            .await?;
        self.push_profile(&caller.member).await?;
        self.profile(caller, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_shape() {
        assert!(parse_token("nope").is_err());
        assert!(parse_token("wt_short").is_err());
        assert!(parse_token(&format!("wt_{}", URL_SAFE_NO_PAD.encode([7u8; 32]))).is_ok());
        assert!(parse_token(&format!("wt_{}", URL_SAFE_NO_PAD.encode([7u8; 31]))).is_err());
    }

    #[test]
    fn generated_passwords_are_plain_and_long() {
        for _ in 0..200 {
            let p = generate_password();
            assert_eq!(p.len(), 24);
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
        }
    }

    #[test]
    fn password_rules() {
        assert!(check_password_rules("short").is_err());
        assert!(check_password_rules("long enough").is_ok());
        assert!(check_password_rules(&"x".repeat(2000)).is_err());
    }
}
