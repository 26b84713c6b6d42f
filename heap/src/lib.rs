//! The process heap: three calls into glibc's malloc that safe Rust cannot make.
//!
//! Why the server needs them (measured, docs/benchmarks.md): glibc keeps memory that clients
//! freed, so after a load the server's RSS stayed at its peak (1.8x a fresh server's).
//! [`trim`] hands free pages back to the kernel; [`stats`] says when that is worth it;
//! [`keep_trim_threshold`] stops glibc from raising the threshold that [`trim`] cannot reach.
//!
//! On other C libraries (musl, other systems) every function does nothing and says so.

#![cfg_attr(not(all(target_os = "linux", target_env = "gnu")), forbid(unsafe_code))]

/// What the heap holds, in bytes (glibc's `mallinfo2`, summed over all arenas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in chunks the program is using (`uordblks` + `hblkhd`).
    pub in_use: usize,
    /// Bytes of free chunks the allocator keeps (`fordblks`): what a trim can give back, at
    /// most (only whole free pages are returned).
    pub free: usize,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use super::HeapStats;

    pub fn stats() -> Option<HeapStats> {
        // SAFETY: mallinfo2 takes no arguments, returns a plain struct by value and locks each
        // arena while it reads it (glibc >= 2.33).
        let m = unsafe { libc::mallinfo2() };
        Some(HeapStats {
            in_use: m.uordblks.saturating_add(m.hblkhd),
            free: m.fordblks,
        })
    }

    pub fn fix_trim_threshold(bytes: usize) -> bool {
        let Ok(v) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt takes two integers, has no preconditions and locks the main arena
        // while it changes the parameter, so it is safe while other threads allocate.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, v) == 1 }
    }

    pub fn trim() -> bool {
        // SAFETY: malloc_trim takes an integer, has no preconditions and locks each arena while
        // it returns that arena's free pages (madvise), so it is safe while other threads
        // allocate.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    use super::HeapStats;

    pub fn stats() -> Option<HeapStats> {
        None
    }

    pub fn trim() -> bool {
        false
    }

    pub fn fix_trim_threshold(_bytes: usize) -> bool {
        false
    }
}

/// The heap's figures, or `None` where the C library does not tell them.
pub fn stats() -> Option<HeapStats> {
    glibc::stats()
}

/// Give the heap's free pages back to the kernel. Returns whether any memory was released.
/// It takes each arena's lock in turn, briefly; call it when the heap holds much free memory
/// (see [`stats`]), not on every request.
pub fn trim() -> bool {
    glibc::trim()
}

/// The trim threshold [`keep_trim_threshold`] sets: glibc's own starting value.
pub const TRIM_THRESHOLD: usize = 128 * 1024;

/// Keep glibc's trim threshold at [`TRIM_THRESHOLD`] for the life of the process, unless the
/// operator tunes malloc through `GLIBC_TUNABLES` (then theirs wins). Returns whether it was
/// set.
///
/// Why: glibc raises the threshold (up to 64 MiB) each time it frees a large mapped block,
/// and the free memory at the top of each thread's arena is returned only when it exceeds the
/// threshold; [`trim`] never returns it. Measured after a load (docs/benchmarks.md): 4 arenas
/// kept 3.1 MB resident for 0.6 MB in use. With the threshold fixed, each arena's top is
/// returned as it is freed; it also fixes the mmap threshold at 128 KiB, which no hot path of
/// the server reaches. Call it once, before the runtime starts.
pub fn keep_trim_threshold() -> bool {
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    !tuned && glibc::fix_trim_threshold(TRIM_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heap's figures are the whole process's: one test at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_shows_as_free_and_trim_returns_it() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = stats().expect("glibc tells heap figures");
        // 32 MiB in blocks below the mmap threshold, so they come from an arena (one heap of
        // a thread's arena holds 64 MiB), then freed except for the last one, which keeps the
        // free space off the heap's top, where free() itself would give it back.
        let blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 16 * 1024]).collect();
        let during = stats().expect("stats");
        assert!(
            during.in_use >= before.in_use + 30 * 1024 * 1024,
            "{before:?} {during:?}"
        );
        let keep = blocks.into_iter().last();
        let after = stats().expect("stats");
        assert!(after.free >= 28 * 1024 * 1024, "{after:?}");
        assert!(trim(), "32 MiB of free pages, nothing returned");
        drop(keep);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn with_the_threshold_kept_a_freed_arena_top_is_returned() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            assert!(!keep_trim_threshold(), "the operator's tuning wins");
            return;
        }
        assert!(keep_trim_threshold());
        // Freeing a mapped 4 MiB block would have raised glibc's trim threshold to 8 MiB.
        drop(std::hint::black_box(vec![1u8; 4 << 20]));
        let (before, after) = std::thread::spawn(|| {
            let before = stats().expect("stats");
            // 4 MiB in blocks taken from this thread's arena, freed from the last, so they
            // end as the arena's top chunk: what malloc_trim cannot return.
            let mut blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 16 * 1024]).collect();
            while blocks.pop().is_some() {}
            (before, stats().expect("stats"))
        })
        .join()
        .expect("allocating thread");
        assert!(
            after.free < before.free + (1 << 20),
            "the freed top stayed: {before:?} {after:?}"
        );
    }
}
