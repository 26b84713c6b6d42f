//! Giving memory back after load: glibc keeps what clients freed, so without this the
//! server's RSS stays at its peak after a burst of clients or messages (issue 15, "memory
//! after load", docs/benchmarks.md).
//!
//! Once a second the heap's figures and the process's resident memory are read; when much
//! resident memory is free (see [`Trimmer`]) its free pages are returned to the kernel. Under
//! steady load the free share stays small and nothing is trimmed, so pages are not given back
//! only to be faulted in again; at rest nothing is trimmed twice.
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

/// When a trim is due. A trim can only return whole free pages, so what it leaves (free
/// fragments between live blocks, thread stacks) stays resident; the heap's own "free" figure
/// also counts pages already returned. Judged by either alone, an idle server after a load
/// would trim every second for nothing (measured: 180 `madvise` calls a second). So a trim is
/// due when the resident memory beyond what is in use has grown by [`MIN_FREE`] since what the
/// last trim left.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trimmer {
    /// Resident bytes beyond the heap's in-use ones right after the last trim.
    left: usize,
}

impl Trimmer {
    /// Whether to trim now, given the heap's figures and the process's resident anonymous
    /// memory (`RssAnon`).
    pub fn due(&self, s: HeapStats, rss_anon: usize) -> bool {
        let resident_free = rss_anon.saturating_sub(s.in_use);
        s.free >= MIN_FREE
            && resident_free >= self.left.saturating_add(MIN_FREE)
            && resident_free >= s.in_use / 4
    }

    /// Note what a trim left resident.
    pub fn trimmed(&mut self, s: HeapStats, rss_anon: usize) {
        self.left = rss_anon.saturating_sub(s.in_use);
    }
}

/// The process's resident anonymous memory in bytes (`RssAnon` of `/proc/self/status`).
fn rss_anon() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Check and trim until `shutdown`. Both calls lock the allocator's arenas briefly, so they run
/// on the blocking pool, never on an I/O worker.
pub async fn run(shutdown: CancellationToken) {
    if smp_heap::stats().is_none() || rss_anon().is_none() {
        // Not glibc or not Linux: nothing to read or trim.
        shutdown.cancelled().await;
        return;
    }
    let mut trimmer = Trimmer::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Ok(t) = tokio::task::spawn_blocking(move || check(trimmer)).await {
                    trimmer = t;
                }
            }
        }
    }
}

/// One look at the heap, and a trim if one is due; returns the trimmer as it is after.
fn check(mut t: Trimmer) -> Trimmer {
    let (Some(s), Some(rss)) = (smp_heap::stats(), rss_anon()) else {
        return t;
    };
    if t.due(s, rss) {
        smp_heap::trim();
        if let (Some(s), Some(rss)) = (smp_heap::stats(), rss_anon()) {
            t.trimmed(s, rss);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn s(in_use: usize, free: usize) -> HeapStats {
        HeapStats { in_use, free }
    }

    #[test]
    fn trims_only_when_much_is_resident_and_free() {
        let t = Trimmer::default();
        assert!(
            !t.due(s(100 * MIB, 3 * MIB), 110 * MIB),
            "heap free under MIN_FREE"
        );
        assert!(
            !t.due(s(100 * MIB, 30 * MIB), 120 * MIB),
            "a fifth of in-use"
        );
        assert!(t.due(s(100 * MIB, 30 * MIB), 130 * MIB));
        assert!(t.due(s(10 * MIB, 12 * MIB), 22 * MIB));
        assert!(!t.due(s(0, 0), 0));
        assert!(!t.due(s(MIB, 12 * MIB), 3 * MIB), "free but not resident");
    }

    #[test]
    fn what_a_trim_left_is_not_trimmed_again() {
        let mut t = Trimmer::default();
        // After a load: 1 MiB in use, 20 MiB resident, 30 MiB free in the heap.
        assert!(t.due(s(MIB, 30 * MIB), 20 * MIB));
        // The trim left 3 MiB resident (fragments, stacks).
        t.trimmed(s(MIB, 30 * MIB), 3 * MIB);
        assert!(
            !t.due(s(MIB, 30 * MIB), 3 * MIB),
            "idle: nothing new to return"
        );
        assert!(
            !t.due(s(2 * MIB, 30 * MIB), 6 * MIB),
            "grew by less than MIN_FREE"
        );
        // A later burst freed again.
        assert!(t.due(s(MIB, 30 * MIB), 8 * MIB));
    }

    #[test]
    fn a_trim_under_load_does_not_hide_the_load_ending() {
        let mut t = Trimmer::default();
        // A trim while 18 MiB were in use left 20 MiB resident.
        t.trimmed(s(18 * MIB, 6 * MIB), 20 * MIB);
        // The load ends: RSS does not move on free, but what is in use does.
        assert!(t.due(s(MIB, 23 * MIB), 20 * MIB));
    }

    #[test]
    fn this_process_has_a_resident_figure() {
        let rss = rss_anon().expect("RssAnon on Linux");
        // Large enough that other tests of this binary freeing memory meanwhile cannot hide it.
        let block = vec![7u8; 64 * MIB];
        let with = rss_anon().expect("RssAnon");
        assert!(with >= rss + 48 * MIB, "{rss} then {with}");
        drop(std::hint::black_box(block));
    }
}
