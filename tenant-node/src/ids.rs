//! Identities: tenants, members, rooms and events.
//!
//! Defined once in `works_bridge::ids`, so the bridge and the node parse and
//! hold the same types; re-exported here for the node's own paths.

pub use works_bridge::ids::*;
