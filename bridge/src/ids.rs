//! Identities: tenants, members, rooms and events, for both sides of the
//! bridge.
//!
//! Ids arriving from clients or peers are parsed here, once, at the edge that
//! receives them, into typed values; everything past the edge works with
//! these types only.

use std::fmt;
use std::str::FromStr;

use ulid::Ulid;

use crate::error::clip;
pub use works_certs::TenantId;

/// Why an id was refused; the message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(String);

/// A member id (the "WORKS ID"): `name@tenant`, case-insensitive, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    full: String,
    at: usize,
    tenant: TenantId,
}

impl MemberId {
    pub const MAX_NAME_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Self, IdError> {
        let trimmed = input.trim();
        let Some((name, tenant)) = trimmed.rsplit_once('@') else {
            return Err(IdError(format!(
                "member id {:?} must have the form name@tenant",
                clip(trimmed)
            )));
        };
        let name = Self::parse_name(name)?;
        let tenant = TenantId::parse(tenant).map_err(|e| IdError(e.to_string()))?;
        Ok(Self::new(&name, &tenant))
    }

    /// Builds `name@tenant` from a local name that is validated here.
    pub fn with_name(name: &str, tenant: &TenantId) -> Result<Self, IdError> {
        Ok(Self::new(&Self::parse_name(name)?, tenant))
    }

    fn new(name: &str, tenant: &TenantId) -> Self {
        MemberId {
            full: format!("{name}@{tenant}"),
            at: name.len(),
            tenant: tenant.clone(),
        }
    }

    fn parse_name(input: &str) -> Result<String, IdError> {
        let name = input.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(IdError("member name is empty".into()));
        }
        if name.len() > Self::MAX_NAME_LEN {
            return Err(IdError(format!(
                "member name is longer than {} characters",
                Self::MAX_NAME_LEN
            )));
        }
        let first_ok = name.as_bytes()[0].is_ascii_alphanumeric();
        let rest_ok = name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if !first_ok || !rest_ok {
            return Err(IdError(format!(
                "member name {name:?} may hold only letters, digits, '.', '_' and '-', starting with a letter or digit"
            )));
        }
        Ok(name)
    }

    pub fn name(&self) -> &str {
        &self.full[..self.at]
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn belongs_to(&self, tenant: &TenantId) -> bool {
        &self.tenant == tenant
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for MemberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

macro_rules! ulid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id: a ULID, unique across every node.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub fn generate() -> Self {
                $name(Ulid::new())
            }

            /// The id's 128 bits.
            pub fn as_u128(&self) -> u128 {
                self.0.0
            }

            pub fn parse(input: &str) -> Result<Self, IdError> {
                let trimmed = input.trim();
                if trimmed.is_empty() {
                    return Err(IdError(concat!($what, " id is empty").into()));
                }
                // 26 base-32 characters carry 130 bits and the ulid crate
                // drops the top two, so "8…" would be a second spelling of
                // "0…". A ULID has 128 bits: its first character is 0 to 7.
                let fits = trimmed.as_bytes()[0] <= b'7';
                match Ulid::from_string(trimmed) {
                    Ok(ulid) if fits => Ok($name(ulid)),
                    _ => Err(IdError(format!(
                        concat!($what, " id {:?} is not a valid ULID"),
                        clip(trimmed)
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

ulid_id!(RoomId, "room");
ulid_id!(EventId, "event");

#[cfg(test)]
mod tests {
    use super::*;

    fn check_member(input: &str, expected: Result<&str, &str>) {
        let got = MemberId::parse(input)
            .map(|m| m.to_string())
            .map_err(|e| e.to_string());
        match expected {
            Ok(id) => assert_eq!(got, Ok(id.to_string()), "input {input:?}"),
            Err(fragment) => {
                let err = got.expect_err(input);
                assert!(
                    err.contains(fragment),
                    "input {input:?}: {err:?} lacks {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn member_ids_are_canonical_lowercase() {
        check_member("Alice@ACME.example", Ok("alice@acme.example"));
        check_member("  bob.smith_2@corp.co.jp ", Ok("bob.smith_2@corp.co.jp"));
        check_member("a-b@x.y", Ok("a-b@x.y"));
    }

    #[test]
    fn malformed_member_ids_say_what_is_wrong() {
        check_member("", Err("name@tenant"));
        check_member("alice", Err("name@tenant"));
        check_member("@acme.example", Err("member name is empty"));
        check_member("alice@", Err("tenant id is empty"));
        check_member("alice@localhost", Err("at least two labels"));
        check_member("al ice@acme.example", Err("may hold only"));
        check_member(".alice@acme.example", Err("starting with a letter"));
        check_member("alice@acme..example", Err("invalid label"));
        check_member("alice@-acme.example", Err("invalid label"));
        check_member("al@ice@acme.example", Err("may hold only"));
        check_member(
            &format!("{}@acme.example", "a".repeat(65)),
            Err("longer than 64"),
        );
        check_member("ålice@acme.example", Err("may hold only"));
    }

    #[test]
    fn member_parts() {
        let id = MemberId::parse("alice@acme.example").unwrap();
        assert_eq!(id.name(), "alice");
        assert_eq!(id.tenant().as_str(), "acme.example");
        assert!(id.belongs_to(&TenantId::parse("ACME.example").unwrap()));
        assert!(!id.belongs_to(&TenantId::parse("other.example").unwrap()));
    }

    #[test]
    fn room_ids_are_ulids() {
        let id = RoomId::generate();
        assert_eq!(RoomId::parse(&id.to_string()), Ok(id));
        assert!(RoomId::parse("").unwrap_err().to_string().contains("empty"));
        assert!(
            RoomId::parse("not-a-room")
                .unwrap_err()
                .to_string()
                .contains("not a valid ULID")
        );
    }

    #[test]
    fn a_huge_id_is_quoted_clipped() {
        let huge = "Z".repeat(20_000);
        for err in [
            RoomId::parse(&huge).unwrap_err().to_string(),
            MemberId::parse(&huge).unwrap_err().to_string(),
        ] {
            assert!(err.len() < 200, "{} bytes", err.len());
            assert!(err.contains("… (20000 characters)"), "{err}");
        }
    }

    #[test]
    fn a_ulid_has_one_spelling() {
        let max = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ";
        assert_eq!(RoomId::parse(max).unwrap().to_string(), max);
        let lower = EventId::parse("01arz3ndektsv4rrffq69g5fav").unwrap();
        assert_eq!(lower.to_string(), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
        // Above 128 bits: once read as the id with the top bits dropped.
        for overflow in ["80000000000000000000000000", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ"] {
            assert!(RoomId::parse(overflow).is_err(), "{overflow}");
            assert!(EventId::parse(overflow).is_err(), "{overflow}");
        }
    }
}
