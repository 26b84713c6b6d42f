//! At most one error line per interval for failures that repeat with every command (a full
//! disk refuses each SEND): the first is logged, the rest are counted and reported with the
//! next logged line, so the log cannot flood a disk that is already full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between two logged lines of the same limiter.
pub const INTERVAL_SECS: u64 = 10;

/// A rate limit for one kind of error line.
#[derive(Debug, Default)]
pub struct RateLog {
    /// When a line was last logged (Unix seconds; 0 = never).
    last: AtomicU64,
    /// Lines suppressed since then.
    suppressed: AtomicU64,
}

impl RateLog {
    /// A limiter that has logged nothing yet (usable in a `static`).
    pub const fn new() -> Self {
        RateLog {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log now at `now` (Unix seconds); when yes, how many lines were suppressed
    /// since the last one.
    pub fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last.saturating_add(INTERVAL_SECS) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread logs this interval's line.
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }

    /// [`RateLog::allow_at`] with the system clock.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        self.allow_at(now)
    }
}

/// The note appended to a logged line about the lines suppressed before it.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more such errors in the last interval were not logged)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_counts_the_rest() {
        let r = RateLog::new();
        assert_eq!(r.allow_at(100), Some(0));
        assert_eq!(r.allow_at(101), None);
        assert_eq!(r.allow_at(109), None);
        assert_eq!(r.allow_at(110), Some(2));
        assert_eq!(r.allow_at(111), None);
        assert_eq!(r.allow_at(200), Some(1));
        assert_eq!(suppressed_note(0), "");
        assert!(suppressed_note(3).contains("3 more"));
    }
}
