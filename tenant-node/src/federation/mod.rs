//! The federation edge: everything a peered node's calls reach here.
//!
//! - `handler`: this node's answers on the bridge (`works-bridge` has
//!   established which peer is calling, from its certificate).
//! - `inbound`: the receiving gate for relayed envelopes, which treats every
//!   peer as hostile; `control`: the control messages among them
//!   (reachability, profiles, CAs); `run`: other companies' messages
//!   judged one by one and written together.
//! - reading what is relayed goes through `crate::wire`, shared with the
//!   outbox that sends it.
//!
//! **Invariant:** a peer's tenant is the one the bridge verified; nothing a
//! peer sends is stored unless this node would accept the same change from
//! its own members.

mod control;
pub mod handler;
pub mod inbound;
mod run;

pub use handler::NodeBridge;

#[cfg(test)]
mod inbound_tests;
