//! Giving memory back after load: glibc keeps what clients freed, so without this the
//! server's RSS stays at its peak after a burst of clients or messages (issue 15, "memory
//! after load", docs/benchmarks.md).
//!
//! Once a second the heap's figures are read; when it holds a lot of free memory (at least
//! [`MIN_FREE`], and at least a quarter of what is in use) its free pages are returned to the
//! kernel. Under steady load the free share stays small and nothing is trimmed, so pages are
//! not given back only to be faulted in again.
//!
//! `malloc_trim` cannot return the free top of a thread's arena; glibc returns it on free once
//! it exceeds the trim threshold, which `start` keeps at 128 KiB
//! ([`smp_heap::keep_trim_threshold`]) rather than let glibc raise it.

use std::time::Duration;

use smp_heap::HeapStats;
use tokio_util::sync::CancellationToken;

/// How often the heap is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Free memory below this is left alone whatever the share.
pub const MIN_FREE: usize = 4 << 20;

/// Whether the heap holds enough free memory to be worth a trim.
pub fn worth_trimming(s: HeapStats) -> bool {
    s.free >= MIN_FREE && s.free >= s.in_use / 4
}

/// Check and trim until `shutdown`. Both calls lock the allocator's arenas briefly, so they run
/// on the blocking pool, never on an I/O worker.
pub async fn run(shutdown: CancellationToken) {
    if smp_heap::stats().is_none() {
        // Not glibc: nothing to read or trim.
        shutdown.cancelled().await;
        return;
    }
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let _ = tokio::task::spawn_blocking(|| {
                    if smp_heap::stats().is_some_and(worth_trimming) {
                        smp_heap::trim();
                    }
                })
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_when_much_is_free() {
        let mib = 1 << 20;
        let s = |in_use, free| HeapStats { in_use, free };
        assert!(!worth_trimming(s(100 * mib, 3 * mib)), "under MIN_FREE");
        assert!(!worth_trimming(s(100 * mib, 20 * mib)), "a fifth of in-use");
        assert!(worth_trimming(s(100 * mib, 25 * mib)));
        assert!(worth_trimming(s(10 * mib, 12 * mib)));
        assert!(!worth_trimming(s(0, 0)));
    }
}
