//! The tenant id: the DNS-style name that identifies a company, and the name a
//! node certificate must carry as its DNS subject alternative name.

use std::fmt;
use std::str::FromStr;

/// Why a tenant id was refused; the message is safe to show a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TenantIdError(String);

/// A company's tenant id: a lowercase DNS-style name such as `acme.example`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(input: &str) -> Result<Self, TenantIdError> {
        let name = input.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(TenantIdError("tenant id is empty".into()));
        }
        if name.len() > 253 {
            return Err(TenantIdError(
                "tenant id is longer than 253 characters".into(),
            ));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(TenantIdError(format!(
                "tenant id {name:?} must be a domain name with at least two labels, like acme.example"
            )));
        }
        for label in labels {
            let valid_chars = label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if label.is_empty()
                || label.len() > 63
                || !valid_chars
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(TenantIdError(format!(
                    "tenant id {name:?} has an invalid label {label:?}: use 1 to 63 letters, digits or inner hyphens"
                )));
            }
        }
        Ok(TenantId(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_lowercase_domain_names() {
        assert_eq!(
            TenantId::parse(" ACME.example ").unwrap().as_str(),
            "acme.example"
        );
        for bad in [
            "",
            "localhost",
            "acme..example",
            "-acme.example",
            "acme-.example",
            "ac me.example",
            "acme.example/x",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TenantId::parse(&format!("{}.example", "a".repeat(64))).is_err());
    }
}
