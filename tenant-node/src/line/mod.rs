//! The LINE edge: what LINE's platform sends the company's Official
//! Account. `webhook.rs` checks LINE's signature and writes each event to
//! the durable inbox before answering; `inbox.rs` processes the inbox in
//! order (follows, bindings by a member's code, messages, groups, unsends)
//! through the rooms and contacts areas, like `federation` does for peers.
//!
//! **Invariant:** nothing from LINE is acted on unless its body carried the
//! channel secret's signature, and each webhook event is acted on once
//! (`webhookEventId`).

pub mod inbox;
pub mod webhook;
