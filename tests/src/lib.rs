//! What the integration tests and the load generator share.
//!
//! # Layout
//!
//! - `scenario`: start a node's `serve` as a child process, peer nodes,
//!   allow external messaging and members, befriend, wait for a room; used
//!   by `tests/support`.
#![forbid(unsafe_code)]

pub mod scenario;
