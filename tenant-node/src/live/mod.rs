//! Live events: the in-process hub that fans stored events out to open
//! streams, and a member's stream that resumes from cursors.
//!
//! **Invariant:** an event is published only after its transaction commits,
//! and a stream never shows a room's event twice or skips one: what the hub
//! drops or reorders is read back from storage.

pub mod hub;
pub mod watch;
