//! The process heap: two calls into glibc's malloc that safe Rust cannot make.
//!
//! Why the server needs them (measured, docs/benchmarks.md): glibc keeps memory that clients
//! freed, so after a load the server's RSS stayed at its peak (1.8x a fresh server's).
//! [`trim`] hands free pages back to the kernel; [`stats`] says when that is worth it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_shows_as_free_and_trim_returns_it() {
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
}
