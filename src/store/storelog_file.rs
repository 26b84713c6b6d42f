//! The store log file: append records, replay at start, compact with the reference's
//! crash-safe steps.
//!
//! Appending: each change is one `write(2)` of its whole line(s) on an `O_APPEND` file, like
//! the reference's single `hPut` + `hFlush`; there is no fsync per record (a process crash loses
//! nothing, a power loss may lose the last records, as with the reference). Compaction fsyncs
//! the new file. If a write fails (disk full, I/O error) the file is cut back to its previous
//! length so no torn line is left, and the change is refused with `STORE`; if even that fails
//! the log refuses all further changes rather than write after a torn line.
//!
//! Start-up (the reference's `readWriteStoreLog`): a leftover `<log>.start` means a compaction
//! was interrupted: the current `<log>` is kept as `<log>.bak` and `<log>.start` becomes the
//! log. Then: replay `<log>`; rename it to `<log>.start`; write the compacted log; rename
//! `<log>.start` to `<log>.<ISO 8601 time>`; delete old timed backups (keep those newer than
//! 24 hours, keep 3 older ones, delete the rest older than 21 days).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::memory::MemoryStore;
use super::services::{line_service_ids, parse_queue_service, ServiceData, ServiceRec, SubParty};
use super::storelog::{encode_queue_rec_with, update_records, StoreLogRecord};
use super::{QueueLog, QueueRec, Store};
use crate::protocol::command::Party;
use crate::protocol::errors::ErrorType;

mod backups;
mod live_compact;
pub use backups::{iso8601, remove_old_backups};
pub use live_compact::{compact_live, COMPACTING_SUFFIX, DEFER_COMPACTION_BYTES};

/// Store log failures that stop the server; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreLogError {
    /// A file operation failed.
    #[error("store log {path}: {op} failed: {source}. {hint}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
        /// What the operator can do.
        hint: &'static str,
    },
    /// A check of the replayed queues refused start-up (the text says why and what to do).
    #[error("{0}")]
    Refused(String),
    /// A live compaction stopped because the server is stopping (the log is unchanged).
    #[error(
        "store log compaction stopped: the server is stopping; it runs again at the next start"
    )]
    CompactionCancelled,
    /// More changes arrived during a live compaction than it keeps in memory.
    #[error(
        "store log compaction gave up: more than {0} MB of changes arrived while it ran; the \
         log is unchanged and is compacted at the next start"
    )]
    CompactionOverrun(usize),
    /// The log refuses changes after an earlier write error.
    #[error(
        "store log {0}: closed after a write error; restart the server once the disk is fixed"
    )]
    Closed(PathBuf),
    /// A line in the middle of the log does not parse.
    #[error(
        "store log {path}, line {line}: {what}. The file is corrupt; nothing was changed. \
         Fix or delete that line (a copy of the file is a good idea first), then start again."
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the parser expected.
        what: String,
    },
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "Make the log directory and its files owned and writable by the user running \
             smp-server (chown/chmod)"
        }
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            "The disk is full: free space on it (changes are refused until then, nothing \
             already written is lost)"
        }
        std::io::ErrorKind::ReadOnlyFilesystem => "Mount the log directory read-write",
        _ => "Check the disk and the log directory",
    }
}

fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> StoreLogError + 'a {
    move |source| StoreLogError::Io {
        path: path.to_path_buf(),
        op,
        hint: hint(&source),
        source,
    }
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Lines read.
    pub lines: usize,
    /// Records that could not be applied (e.g. SECURE of an unknown queue), as the reference
    /// logs and skips them.
    pub not_applied: usize,
    /// A torn last line was skipped.
    pub torn_last_line: bool,
    /// Services and queue associations, written back on compaction.
    pub services: ServiceData,
    /// Recipient IDs of queues deleted by a `DELETE` line, so the message journal can tell
    /// messages of a deleted queue (whose journal `Clear` was lost) from messages whose queue
    /// is unknown.
    pub deleted: std::collections::HashSet<Vec<u8>>,
    /// The log was left uncompacted for [`compact_live`] (see [`open_store_log_checked`]).
    pub compaction_deferred: bool,
}

/// Apply one record to the store (the reference's `readQueueStore`).
fn apply(st: &MemoryStore, r: StoreLogRecord, line: &[u8], stats: &mut ReplayStats) {
    use StoreLogRecord::*;
    let q = |rid: &[u8]| st.get_queue(Party::Recipient, rid);
    let svc = &mut stats.services;
    let res: Result<(), ErrorType> = match r {
        Create(rec) => {
            let rid = rec.recipient_id.clone();
            let has_ntf = rec.notifier.is_some();
            st.add_queue(*rec).map(|_| {
                let (rsrv, nsrv) = line_service_ids(line);
                svc.set(rid.as_slice(), SubParty::Recipient, rsrv);
                svc.set(rid.as_slice(), SubParty::Notifier, nsrv.filter(|_| has_ntf));
            })
        }
        NewService(line) => ServiceRec::parse(&line)
            .map(|s| svc.add_service(s))
            .map_err(|_| ErrorType::Internal),
        QueueService(line) => match parse_queue_service(&line) {
            Ok((rid, p, sid)) if q(&rid).is_some() => {
                svc.set(&rid, p, sid);
                Ok(())
            }
            _ => Err(ErrorType::Auth),
        },
        other => {
            let rid = match &other {
                Link(r, ..)
                | DeleteLink(r)
                | Secure(r, _)
                | Keys(r, _)
                | Notifier(r, _)
                | Suspend(r)
                | Block(r, _)
                | Unblock(r)
                | Delete(r)
                | DeleteNotifier(r)
                | Time(r, _) => r.clone(),
                _ => Vec::new(),
            };
            match q(&rid) {
                None => Err(ErrorType::Auth),
                Some(h) => match other {
                    Link(_, l, d) => st.add_link(&h, l, d),
                    DeleteLink(_) => st.delete_link(&h),
                    Secure(_, k) => st.secure_queue(&h, k),
                    Keys(_, ks) => st.update_keys(&h, ks),
                    Notifier(r, n) => st.add_notifier(&h, n).map(|_| {
                        let nsrv = line_service_ids(line).1;
                        svc.set(&r, SubParty::Notifier, nsrv);
                    }),
                    Suspend(_) => st.set_status(&h, super::QueueStatus::Off),
                    Block(_, i) => st.set_status(&h, super::QueueStatus::Blocked(Box::new(i))),
                    Unblock(_) => st.set_status(&h, super::QueueStatus::Active),
                    Delete(r) => st.delete_queue(&h).map(|_| {
                        svc.queue_deleted(&r);
                        stats.deleted.insert(r);
                    }),
                    DeleteNotifier(r) => st.delete_notifier(&h).map(|_| {
                        svc.set(&r, SubParty::Notifier, None);
                    }),
                    Time(_, t) => st.update_time(&h, t),
                    _ => Ok(()),
                },
            }
        }
    };
    if let Err(e) = res {
        stats.not_applied += 1;
        tracing::debug!("store log record not applied: {e:?}");
    }
}

/// The number of `CREATE` lines in a store log: at most the number of queues it restores, so
/// the indexes can be sized once (a pass over the file costs a few percent of the replay, the
/// rehashing it saves about a fifth).
fn count_creates(path: &Path) -> std::io::Result<usize> {
    count_creates_in_chunks(path, 1 << 20)
}

fn count_creates_in_chunks(path: &Path, chunk: usize) -> std::io::Result<usize> {
    const TAG: &[u8] = b"\nCREATE ";
    let finder = memchr::memmem::Finder::new(TAG);
    let mut f = File::open(path)?;
    // A leading newline stands for the start of the file; the last TAG.len() - 1 bytes of a
    // chunk are kept so a tag across two reads is still found once.
    let mut buf = vec![0u8; chunk.max(2 * TAG.len())];
    buf[0] = b'\n';
    let mut have = 1;
    let mut n = 0;
    loop {
        let got = f.read(&mut buf[have..])?;
        if got == 0 {
            break;
        }
        have += got;
        n += finder.find_iter(&buf[..have]).count();
        let keep = (TAG.len() - 1).min(have);
        buf.copy_within(have - keep..have, 0);
        have = keep;
    }
    Ok(n)
}

/// Read a store log into `st`. A torn last line is reported and skipped; a bad line before
/// the last is [`StoreLogError::Corrupt`].
pub fn replay(path: &Path, st: &MemoryStore) -> Result<ReplayStats, StoreLogError> {
    st.reserve(count_creates(path).map_err(io_err(path, "reading"))?);
    let f = File::open(path).map_err(io_err(path, "opening for reading"))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut stats = ReplayStats::default();
    let mut line = Vec::new();
    let mut pending: Option<(usize, Vec<u8>, String)> = None;
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(io_err(path, "reading"))?;
        if n == 0 {
            break;
        }
        if let Some((no, _, what)) = pending.take() {
            return Err(StoreLogError::Corrupt {
                path: path.to_path_buf(),
                line: no,
                what,
            });
        }
        stats.lines += 1;
        let complete = line.last() == Some(&b'\n');
        let text = if complete {
            &line[..line.len() - 1]
        } else {
            &line[..]
        };
        if text.is_empty() {
            continue;
        }
        match StoreLogRecord::parse(text) {
            Ok(rec) if complete => apply(st, rec, text, &mut stats),
            // A last line without its newline may be cut short even if it parses: skip it.
            Ok(_) => pending = Some((stats.lines, text.to_vec(), "no newline".into())),
            Err(e) => pending = Some((stats.lines, text.to_vec(), e.to_string())),
        }
    }
    if let Some((no, _, what)) = pending {
        tracing::warn!(
            "store log {}: last line {no} is incomplete ({what}) and was skipped; \
             the server probably stopped while writing it",
            path.display()
        );
        stats.torn_last_line = true;
    }
    Ok(stats)
}

/// Write the whole store as `CREATE` records (services first, associations of existing
/// queues in `rsrv=`/`nsrv=` as the reference writes them), fsynced.
pub fn write_compacted(
    path: &Path,
    st: &MemoryStore,
    services: &ServiceData,
) -> Result<usize, StoreLogError> {
    write_snapshot(path, services, |emit| {
        for q in st.all_queues() {
            if let Ok(rec) = q.rec() {
                emit(&rec)?;
            }
        }
        Ok(())
    })
}

/// A queue record's sink in [`write_snapshot`].
type Emit<'a> = dyn FnMut(&QueueRec) -> Result<(), StoreLogError> + 'a;

/// Write `services`, then every record `each` gives, as a compacted log at `path`, fsynced.
fn write_snapshot(
    path: &Path,
    services: &ServiceData,
    each: impl FnOnce(&mut Emit<'_>) -> Result<(), StoreLogError>,
) -> Result<usize, StoreLogError> {
    let f = crate::fsmode::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err(path, "creating"))?;
    crate::fsmode::restrict_file(&f).map_err(io_err(path, "setting the mode of"))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut n = 0;
    for s in &services.services {
        w.write_all(&s.encode())
            .and_then(|_| w.write_all(b"\n"))
            .map_err(io_err(path, "writing"))?;
    }
    each(&mut |rec: &QueueRec| {
        let rid: &[u8] = &rec.recipient_id;
        let rsrv = services.rcv.get(rid).map(Vec::as_slice);
        let nsrv = services.ntf.get(rid).map(Vec::as_slice);
        // the form StoreLogRecord::Create encodes, with the associations when there are any
        let line = format!(
            "CREATE rid={} {}\n",
            super::strenc::b64(rid),
            encode_queue_rec_with(rec, rsrv, nsrv)
        );
        w.write_all(line.as_bytes())
            .map_err(io_err(path, "writing"))?;
        n += 1;
        Ok(())
    })?;
    let f = w
        .into_inner()
        .map_err(|e| io_err(path, "writing")(e.into_error()))?;
    f.sync_all().map_err(io_err(path, "syncing"))?;
    Ok(n)
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent() {
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreLogError> {
    std::fs::rename(from, to).map_err(io_err(from, "renaming"))?;
    sync_dir(to);
    Ok(())
}

/// The path with a suffix appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Restore, compact and open the store log at `path` (the reference's `readWriteStoreLog`).
/// `st` receives the replayed queues; the returned writer appends further changes.
pub fn open_store_log(
    path: &Path,
    st: &MemoryStore,
) -> Result<(StoreLogWriter, ReplayStats), StoreLogError> {
    open_store_log_checked(path, st, |_, _| Ok(()), None)
}

/// [`open_store_log`], with `check` run on the replayed queues before anything is written
/// (compaction renames and rewrites the log): an `Err` text stops start-up with nothing
/// changed (e.g. journaled messages whose queues this log lacks). A log of at least
/// `defer_above` bytes that replayed cleanly is not compacted here: it is appended to as it is,
/// [`ReplayStats::compaction_deferred`] is set, and [`compact_live`] is to run once the server
/// serves.
pub fn open_store_log_checked(
    path: &Path,
    st: &MemoryStore,
    check: impl FnOnce(&MemoryStore, &ReplayStats) -> Result<(), String>,
    defer_above: Option<u64>,
) -> Result<(StoreLogWriter, ReplayStats), StoreLogError> {
    let start = with_suffix(path, ".start");
    let mut stats = ReplayStats::default();
    let stray = with_suffix(path, COMPACTING_SUFFIX);
    if stray.exists() {
        // An interrupted live compaction: the log itself is complete.
        tracing::warn!(
            "deleting {}, left by a compaction that did not finish",
            stray.display()
        );
        std::fs::remove_file(&stray).map_err(io_err(&stray, "deleting"))?;
    }
    let recovering = start.exists();
    if recovering {
        tracing::warn!(
            "server terminated abnormally on last start, restoring state from {}",
            start.display()
        );
        if path.exists() {
            let bak = with_suffix(path, ".bak");
            rename(path, &bak)?;
            tracing::info!("preserved incomplete state as {}", bak.display());
        }
        rename(&start, path)?;
    }
    if path.exists() {
        stats = replay(path, st)?;
        check(st, &stats).map_err(StoreLogError::Refused)?;
        let size = std::fs::metadata(path)
            .map_err(io_err(path, "reading the size of"))?
            .len();
        if !recovering && !stats.torn_last_line && defer_above.is_some_and(|b| size >= b) {
            tracing::info!(
                "store log of {} MB: compacting it after start-up, while serving",
                size >> 20
            );
            stats.compaction_deferred = true;
            return Ok((StoreLogWriter::open(path)?, stats));
        }
        rename(path, &start)?;
        tracing::info!("compacting store log (do not terminate)...");
        let n = match write_compacted(path, st, &stats.services) {
            Ok(n) => n,
            Err(e) => {
                // Put the replayed log back as it was (e.g. the disk is full): nothing lost.
                let _ = std::fs::remove_file(path);
                rename(&start, path)?;
                return Err(e);
            }
        };
        let timed = with_suffix(path, &format!(".{}", iso8601(std::time::SystemTime::now())));
        rename(&start, &timed)?;
        tracing::info!(
            "store log compacted: {n} queues; original preserved as {}",
            timed.display()
        );
        remove_old_backups(path, std::time::SystemTime::now());
    } else {
        check(st, &stats).map_err(StoreLogError::Refused)?;
        tracing::info!("creating store log {}", path.display());
        if let Err(e) = write_compacted(path, st, &ServiceData::default()) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    }
    Ok((StoreLogWriter::open(path)?, stats))
}

/// Appends records to the store log; the [`QueueLog`] of a `DurableStore`.
#[derive(Debug)]
pub struct StoreLogWriter {
    path: PathBuf,
    file: Mutex<Option<Appending>>,
}

/// The open log: `None` in the writer once an error made it refuse changes.
#[derive(Debug)]
struct Appending {
    file: File,
    len: u64,
    /// While a live compaction runs: every record appended since it began (see
    /// [`live_compact`]).
    tail: Option<live_compact::Tail>,
}

impl StoreLogWriter {
    /// Open `path` for appending.
    pub fn open(path: &Path) -> Result<Self, StoreLogError> {
        let file = crate::fsmode::options()
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path, "opening for appending"))?;
        let len = file
            .metadata()
            .map_err(io_err(path, "reading the size of"))?
            .len();
        Ok(StoreLogWriter {
            path: path.to_path_buf(),
            file: Mutex::new(Some(Appending {
                file,
                len,
                tail: None,
            })),
        })
    }

    /// Write records as one `write(2)`; on failure cut the file back so no torn line stays.
    pub fn write_records(&self, op: &str, recs: &[StoreLogRecord]) -> Result<(), ErrorType> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in recs {
            buf.extend_from_slice(&r.encode());
            buf.push(b'\n');
        }
        let mut g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Appending { file: f, len, tail }) = g.as_mut() else {
            return Err(ErrorType::Store(format!(
                "{op}, store log closed after an error"
            )));
        };
        match f.write_all(&buf) {
            Ok(()) => {
                *len += buf.len() as u64;
                if let Some(t) = tail {
                    t.push(&buf);
                }
                Ok(())
            }
            Err(e) => {
                static LIMIT: super::ratelog::RateLog = super::ratelog::RateLog::new();
                if let Some(n) = LIMIT.allow() {
                    tracing::error!(
                        "STORE: {op}: writing {} failed: {e}. {}{}",
                        self.path.display(),
                        hint(&e),
                        super::ratelog::suppressed_note(n)
                    );
                }
                if let Err(e2) = f.set_len(*len) {
                    tracing::error!(
                        "STORE: could not cut {} back after a failed write ({e2}); refusing \
                         further changes. Fix the disk and restart the server.",
                        self.path.display()
                    );
                    *g = None;
                }
                Err(ErrorType::Store(format!("{op}, withLog, {}", e.kind())))
            }
        }
    }

    /// Flush to disk (at shutdown).
    pub fn sync(&self) -> std::io::Result<()> {
        let g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(a) => a.file.sync_all(),
            None => Ok(()),
        }
    }
}

impl QueueLog for StoreLogWriter {
    fn created(&self, rec: &QueueRec) -> Result<(), ErrorType> {
        self.write_records(
            "addStoreQueue",
            &[StoreLogRecord::Create(Box::new(rec.clone()))],
        )
    }

    fn updated(&self, old: &QueueRec, new: &QueueRec) -> Result<(), ErrorType> {
        self.write_records("updateQueue", &update_records(old, new))
    }

    fn deleted(&self, recipient_id: &[u8]) -> Result<(), ErrorType> {
        self.write_records(
            "deleteStoreQueue",
            &[StoreLogRecord::Delete(recipient_id.to_vec())],
        )
    }
}

#[cfg(test)]
#[path = "storelog_file_tests.rs"]
mod tests;
