//! Rate limits kept in the database: what a peer may send our members in
//! an hour (the receiver's half; the sender's own limits are in
//! `contacts`), and failed logins. Counting and storing are `store::limits`;
//! the rules, pure, are here.

use crate::error::Error;
use crate::store::limits::Counted;

pub const HOUR_MS: i64 = 3_600_000;

/// How long until the window frees a slot, or `None` when one is free:
/// at most `limit` arrivals in any `window_ms`.
pub fn wait_ms(limit: u32, counted: Counted, window_ms: i64, now_ms: i64) -> Option<i64> {
    if counted.count < i64::from(limit) {
        return None;
    }
    let oldest = counted.oldest_ms.unwrap_or(now_ms);
    Some((oldest + window_ms - now_ms).max(1))
}

/// "try again in 37 minutes", or in seconds under two minutes.
pub fn retry_hint(wait_ms: i64) -> String {
    let secs = (wait_ms + 999) / 1000;
    if secs < 120 {
        format!(
            "try again in {} second{}",
            secs,
            if secs == 1 { "" } else { "s" }
        )
    } else {
        format!("try again in {} minutes", (secs + 59) / 60)
    }
}

/// The refusal for an arrival over a limit: what was exceeded, and when to
/// try again.
pub fn exceeded(what: String, wait_ms: i64) -> Error {
    Error::ResourceExhausted(format!("{what}; {}", retry_hint(wait_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(count: i64, oldest_ms: i64) -> Counted {
        Counted {
            count,
            oldest_ms: Some(oldest_ms),
        }
    }

    #[test]
    fn a_slot_frees_when_the_oldest_arrival_leaves_the_window() {
        let now = 10 * HOUR_MS;
        assert_eq!(wait_ms(3, counted(2, now - 10), HOUR_MS, now), None);
        assert_eq!(wait_ms(3, Counted::default(), HOUR_MS, now), None);
        assert_eq!(
            wait_ms(3, counted(3, now - 23 * 60_000), HOUR_MS, now),
            Some(37 * 60_000)
        );
        assert_eq!(wait_ms(3, counted(5, now - HOUR_MS), HOUR_MS, now), Some(1));
        assert_eq!(wait_ms(0, Counted::default(), HOUR_MS, now), Some(HOUR_MS));
    }

    #[test]
    fn hints_say_minutes_or_seconds() {
        assert_eq!(retry_hint(37 * 60_000), "try again in 37 minutes");
        assert_eq!(retry_hint(36 * 60_000 + 1), "try again in 37 minutes");
        assert_eq!(retry_hint(45_000), "try again in 45 seconds");
        assert_eq!(retry_hint(1), "try again in 1 second");
        assert_eq!(retry_hint(119_000), "try again in 119 seconds");
        assert_eq!(retry_hint(120_000), "try again in 2 minutes");
    }
}
