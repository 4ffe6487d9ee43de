//! Live events: the in-process hub that fans stored events out to open
//! streams, a member's stream that resumes from cursors, and the doorbell
//! between replicas sharing a database.
//!
//! **Invariant:** an event is published only after its transaction commits,
//! and a stream never shows a room's event twice or skips one: what the hub
//! drops or reorders is read back from storage.

pub mod doorbell;
pub mod hub;
pub mod watch;
