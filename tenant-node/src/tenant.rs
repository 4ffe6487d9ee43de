//! The domain layer's context: one company's members, rooms and rules.
//!
//! `Tenant` methods are split by area (`accounts`, `rooms`, `watch`); each
//! checks its rules and calls `store`. gRPC handlers call these methods and
//! nothing below them.

use crate::config::Limits;
use crate::hub::Hub;
use crate::ids::TenantId;
use crate::store::Store;

pub struct Tenant {
    pub id: TenantId,
    pub store: Store,
    pub hub: Hub,
    pub limits: Limits,
}

impl Tenant {
    pub fn new(id: TenantId, store: Store, limits: Limits) -> Self {
        Tenant {
            id,
            store,
            hub: Hub::new(4096),
            limits,
        }
    }
}

/// Trims a human-entered name and checks it is 1..=`max` characters with no
/// control characters.
pub fn clean_name(field: &'static str, input: &str, max: usize) -> crate::error::Result<String> {
    let name = input.trim();
    if name.is_empty() {
        return Err(crate::error::Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > max {
        return Err(crate::error::Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::error::Error::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}
