//! Compaction of a large store log while the server already serves.
//!
//! Writing a million queues back takes over a second, which start-up would otherwise spend
//! before the listeners open. A log of at least [`DEFER_COMPACTION_BYTES`] that replayed
//! cleanly is therefore kept as it is and appended to, and this compaction runs on a blocking
//! thread after start:
//!
//! 1. the writer starts keeping a copy of every record it appends (the *tail*);
//! 2. the services and then every queue are written to `<log>.compacting`, each queue read
//!    under its stripe lock, so it is seen either before or after each change (and its
//!    record write) as a whole;
//! 3. under the writer's lock: the tail is appended to `<log>.compacting`, which is fsynced;
//!    the current log is hard-linked as `<log>.<ISO 8601 time>` (the dated backup the
//!    start-up compaction leaves too) and `<log>.compacting` is renamed over `<log>`; later
//!    records go to the new file.
//!
//! Replaying the result gives the live state: each queue's snapshot is followed by every
//! record logged since step 1, and the records set values (a `CREATE` of a queue already
//! there, or a `SECURE` with the key it already has, changes nothing), so they lead each
//! queue to its state at the swap. Until the rename the old log is complete and a crash
//! leaves only a stray `<log>.compacting`, which the next start deletes. If more than
//! [`TAIL_LIMIT`] of records arrive meanwhile, or the server stops, the compaction is dropped
//! and the log stays as it was.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{io_err, iso8601, remove_old_backups, sync_dir, with_suffix, write_snapshot};
use super::{Appending, StoreLogError, StoreLogWriter};
use crate::store::durable::DurableStore;
use crate::store::services::ServiceData;
use crate::sync::lock;

/// Logs at least this large (about 100,000 queues) are compacted after start-up instead of
/// before it.
pub const DEFER_COMPACTION_BYTES: u64 = 32 << 20;

/// Suffix of the file a live compaction writes before it replaces the log.
pub const COMPACTING_SUFFIX: &str = ".compacting";

/// Most bytes of records kept while a live compaction runs (minutes of a busy server).
const TAIL_LIMIT: usize = 64 << 20;

/// Records appended while a live compaction runs.
#[derive(Debug, Default)]
pub(super) struct Tail {
    bytes: Vec<u8>,
    overrun: bool,
}

impl Tail {
    /// Keep a copy of appended bytes, or give up past [`TAIL_LIMIT`].
    pub(super) fn push(&mut self, b: &[u8]) {
        if self.overrun {
            return;
        }
        if self.bytes.len() + b.len() > TAIL_LIMIT {
            self.overrun = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(b);
        }
    }
}

/// Compact the log `w` appends to from the live `store` and `services` (a snapshot taken
/// after the writer starts its tail), as the module describes. Returns the number of queues
/// written. `cancel` stops it between two queues; the log is then left as it was.
pub fn compact_live(
    w: &StoreLogWriter,
    store: &DurableStore,
    services: impl FnOnce() -> ServiceData,
    cancel: &AtomicBool,
) -> Result<usize, StoreLogError> {
    let path = w.path.as_path();
    let tmp = with_suffix(path, COMPACTING_SUFFIX);
    {
        let mut g = lock(&w.file);
        let a = g
            .as_mut()
            .ok_or_else(|| StoreLogError::Closed(path.into()))?;
        a.tail = Some(Tail::default());
    }
    let res = write_and_swap(w, store, services(), cancel, &tmp);
    if res.is_err() {
        if let Some(a) = lock(&w.file).as_mut() {
            a.tail = None;
        }
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn write_and_swap(
    w: &StoreLogWriter,
    store: &DurableStore,
    services: ServiceData,
    cancel: &AtomicBool,
    tmp: &Path,
) -> Result<usize, StoreLogError> {
    let path = w.path.as_path();
    let n = write_snapshot(tmp, &services, |emit| {
        store.for_each_record(|rec| {
            if cancel.load(Ordering::Relaxed) {
                return Err(StoreLogError::CompactionCancelled);
            }
            emit(rec)
        })
    })?;
    let mut g = lock(&w.file);
    let a = g
        .as_mut()
        .ok_or_else(|| StoreLogError::Closed(path.into()))?;
    let tail = a.tail.take().unwrap_or_default();
    if tail.overrun {
        return Err(StoreLogError::CompactionOverrun(TAIL_LIMIT >> 20));
    }
    let mut f = crate::fsmode::options()
        .append(true)
        .open(tmp)
        .map_err(io_err(tmp, "opening for appending"))?;
    f.write_all(&tail.bytes).map_err(io_err(tmp, "writing"))?;
    f.sync_all().map_err(io_err(tmp, "syncing"))?;
    let len = f
        .metadata()
        .map_err(io_err(tmp, "reading the size of"))?
        .len();
    let now = std::time::SystemTime::now();
    let timed = with_suffix(path, &format!(".{}", iso8601(now)));
    std::fs::hard_link(path, &timed).map_err(io_err(&timed, "linking the backup"))?;
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(&timed);
        return Err(io_err(tmp, "renaming")(e));
    }
    sync_dir(path);
    *a = Appending {
        file: f,
        len,
        tail: None,
    };
    drop(g);
    tracing::info!(
        "store log compacted while serving: {n} queues; original preserved as {}",
        timed.display()
    );
    remove_old_backups(path, now);
    Ok(n)
}
