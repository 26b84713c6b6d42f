//! Locking shared state.
//!
//! Shared maps and records are changed in single steps under their lock, never left half-written,
//! so a lock poisoned by a panic elsewhere still holds consistent data: recover it instead of
//! spreading the panic to every connection.

use std::sync::{Mutex, MutexGuard};

/// Lock a mutex, recovering from poisoning (see the module comment for why that is sound).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
