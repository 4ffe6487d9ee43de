//! Identities: tenants, members, rooms and events.
//!
//! Defined once in `works_bridge::ids`, so the bridge and the node parse and
//! hold the same types; re-exported here for the node's own paths.
//!
//! LINE users take part in rooms as members of the reserved tenant
//! [`LINE_TENANT`] (`u<LINE id>@line.invalid`): `.invalid` is reserved for
//! names that never exist (RFC 2606), so no company can be that tenant, and
//! peering with it is refused.

pub use works_bridge::ids::*;

/// The tenant of LINE users in rooms.
pub const LINE_TENANT: &str = "line.invalid";

pub fn line_tenant() -> TenantId {
    TenantId::parse(LINE_TENANT).expect("the LINE tenant is a valid tenant id")
}

/// Whether `member` is a LINE user.
pub fn is_line(member: &MemberId) -> bool {
    member.tenant().as_str() == LINE_TENANT
}

/// A LINE user id (`U` and 32 hex digits) as a room member; `None` when
/// it is not one.
pub fn line_member(user_id: &str) -> Option<MemberId> {
    let valid = user_id.len() == 33
        && user_id.starts_with('U')
        && user_id[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return None;
    }
    MemberId::with_name(user_id, &line_tenant()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_user_is_a_member_of_the_line_tenant() {
        let m = line_member("U4af4980629a1b2c3d4e5f60718293a4b").unwrap();
        assert_eq!(m.as_str(), "u4af4980629a1b2c3d4e5f60718293a4b@line.invalid");
        assert!(is_line(&m));
        assert!(!is_line(&MemberId::parse("alice@a.example").unwrap()));
        for bad in [
            "",
            "U123",
            "C4af4980629a1b2c3d4e5f60718293a4b",
            "U4af4980629a1b2c3d4e5f60718293a4g",
        ] {
            assert!(line_member(bad).is_none(), "{bad}");
        }
    }
}
