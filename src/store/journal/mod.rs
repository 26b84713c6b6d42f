//! The message journal (`store_messages = journal`): every message change is appended to a
//! journal file before the command is answered, so undelivered messages survive `kill -9` and,
//! with `journal_fsync = always` (the default), power loss.
//!
//! Our own design, not the reference's journal format: the reference's `messages/` directory
//! is read by [`reference`] and converted into ours at the first start (ours cannot be read
//! by the reference; go back through `smp-server journal export` and
//! `smp-server-messages.log`). The directory holds
//! [`SHARDS`] files `shard-NN.journal`; a queue's records all go to the shard its recipient ID
//! hashes to. Each shard is compacted on its own when it is more than half dead, so the journal
//! stays proportional to the undelivered messages. See [`record`] for the byte layout.

mod compact;
pub mod index;
pub mod migrate;
pub mod orphans;
pub mod record;
pub mod reference;
pub mod shard;

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::JournalFsync;
use crate::protocol::errors::ErrorType;
use crate::store::{Message, MessageLog, Store};
pub use orphans::{OrphanPolicy, QueueSource, RestoreStats};
use record::Record;
use shard::{Shard, TornTail};

/// Number of shard files.
pub const SHARDS: usize = 8;
/// Default size below which a shard is never compacted.
pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 4 << 20;

/// What can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("message journal: error {what} {}: {source}. {}", path.display(), io_hint(.source))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A record in the middle of a file is damaged (not an interrupted append).
    #[error("message journal file {} is corrupt at byte offset {offset} ({reason}).\nThe records before that offset are intact. Restore the file from a backup, or keep the intact part and lose the messages after it with `truncate -s {offset} {}` (keep a copy first), then start again.", path.display(), path.display())]
    Corrupt {
        /// The shard file.
        path: PathBuf,
        /// Offset of the damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record could not be encoded (an ID longer than 255 bytes).
    #[error("message journal: cannot encode record: {0}")]
    Encode(String),
    /// An fsync of the file failed earlier: the kernel may have dropped data written to it,
    /// and a later fsync would falsely succeed, so nothing more is written until a restart.
    #[error("message journal file {}: an earlier fsync failed; no changes are accepted for its queues until smp-server is restarted (check the disk and free space first)", path.display())]
    Poisoned {
        /// The shard file.
        path: PathBuf,
    },
    /// Start-up refused because journaled messages would lose their queues (see [`orphans`]
    /// and [`migrate`]); the text says what to do.
    #[error("{0}")]
    Refused(String),
    /// The directory holds files this server did not write, and is not laid out as the
    /// reference's journal either (that one is converted at start): reading on could lose
    /// whatever it holds.
    #[error("message journal directory {} contains {entry:?}, which is neither part of this server's journal nor laid out as the reference smp-server's journal (queue directories with queue_state and messages logs, converted at start). Nothing was changed. Move {} away (or the unknown entry out of it), then start again.", dir.display(), dir.display())]
    Foreign {
        /// The journal directory.
        dir: PathBuf,
        /// The first unknown entry.
        entry: String,
    },
    /// Reading or converting the reference's journal failed (see [`reference`]).
    #[error(transparent)]
    Reference(Box<reference::RefJournalError>),
}

impl From<reference::RefJournalError> for JournalError {
    fn from(e: reference::RefJournalError) -> Self {
        match e {
            reference::RefJournalError::Journal(j) => j,
            other => JournalError::Reference(Box::new(other)),
        }
    }
}

/// Whether `name` is one of this server's journal files (a shard, a compaction's leftover
/// temporary file, or the copy of a torn tail cut off at start, `shard-NN.journal.torn.T`).
fn is_own_entry(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("shard-") else {
        return false;
    };
    let rest = rest.strip_suffix(".tmp").unwrap_or(rest);
    let rest = match rest.split_once(".torn.") {
        Some((shard, t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            shard
        }
        _ => rest,
    };
    rest.strip_suffix(".journal")
        .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuse a directory with entries this server did not write, before touching anything.
fn check_own_entries(dir: &Path) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: dir.to_path_buf(),
        what: "reading",
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    names.sort();
    match names.into_iter().find(|n| !is_own_entry(n)) {
        Some(entry) => Err(JournalError::Foreign {
            dir: dir.to_path_buf(),
            entry,
        }),
        None => Ok(()),
    }
}

/// What the operator can do about a failed file operation.
pub fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "Make the journal directory and its files owned and writable by the user running \
             smp-server (chown/chmod), then start again"
        }
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            "The disk is full: free space on it; until then changes to messages are refused \
             with an error (nothing already written is lost)"
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            "The file system is read-only: mount it read-write, then start again"
        }
        _ => "Check the disk and the journal directory",
    }
}

/// How the journal is run.
#[derive(Debug, Clone, Copy)]
pub struct JournalOptions {
    /// When records are fsynced.
    pub fsync: JournalFsync,
    /// Shards smaller than this are not compacted.
    pub compact_min_bytes: u64,
}

impl JournalOptions {
    /// Options with a policy and the default compaction threshold.
    pub fn new(fsync: JournalFsync) -> Self {
        JournalOptions {
            fsync,
            compact_min_bytes: DEFAULT_COMPACT_MIN_BYTES,
        }
    }
}

/// Messages read from the journal at start, not yet put into a store.
#[derive(Debug, Default)]
pub struct Replay {
    /// Live messages per recipient ID, oldest first.
    pub msgs: HashMap<Vec<u8>, VecDeque<Message>>,
    /// Interrupted appends that were cut off.
    pub torn: Vec<TornTail>,
}

/// The open journal; implements [`MessageLog`].
pub struct Journal {
    dir: PathBuf,
    shards: Arc<[Shard]>,
    opts: JournalOptions,
    stop_flusher: Option<mpsc::Sender<()>>,
    compactor: Option<Compactor>,
}

/// The thread that compacts shards, so no command (and no runtime worker) waits for it.
struct Compactor {
    wake: mpsc::Sender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

/// Which shard a queue's records go to (FNV-1a over the recipient ID).
fn shard_of(rid: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in rid {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

/// Path of shard `i` in `dir`.
pub fn shard_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i:02}.journal"))
}

impl Journal {
    /// Open the journal in `dir` (created, mode 0700, if missing) and read it. Torn tails are
    /// cut off (their bytes kept in `<shard>.torn.<time>`) and logged as warnings; damage
    /// elsewhere is an error naming file and offset that changes nothing.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<(Journal, Replay), JournalError> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| JournalError::Io {
                    path: dir.to_path_buf(),
                    what: "creating",
                    source,
                })?;
        }
        check_own_entries(dir)?;
        let mut shards = Vec::with_capacity(SHARDS);
        let mut replay = Replay::default();
        for i in 0..SHARDS {
            let r = Shard::open(shard_path(dir, i))?;
            if let Some(t) = &r.torn {
                tracing::warn!(
                    "message journal {}: cut off {} bytes of an interrupted write at offset {} \
                     (a copy is kept in {})",
                    t.path.display(),
                    t.dropped,
                    t.offset,
                    t.copy.display()
                );
            }
            replay.torn.extend(r.torn);
            replay.msgs.extend(r.msgs);
            shards.push(r.shard);
        }
        let shards: Arc<[Shard]> = shards.into();
        let stop_flusher =
            (opts.fsync == JournalFsync::Batch).then(|| spawn_flusher(shards.clone()));
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                shards,
                opts,
                stop_flusher,
                compactor: None,
            },
            replay,
        ))
    }

    /// Start the compaction thread. Not done by [`Journal::open`], so that a start refused
    /// after the journal was read (e.g. orphaned messages) has changed nothing; it first
    /// compacts (or migrates from the first format) what replay found.
    pub fn start_compactor(&mut self) {
        if self.compactor.is_none() {
            self.compactor = Some(spawn_compactor(
                self.shards.clone(),
                self.opts.compact_min_bytes,
            ));
        }
    }

    /// Compact every shard that wants it on the calling thread (tools and tests; the server
    /// leaves this to the journal's thread). Returns how many were compacted.
    pub fn compact_now(&self) -> Result<usize, JournalError> {
        let never = AtomicBool::new(false);
        let mut n = 0;
        for s in self.shards.iter() {
            n += usize::from(s.compact_if_needed(self.opts.compact_min_bytes, &never)?);
        }
        Ok(n)
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write all messages of `store` into this (empty) journal and fsync it (`journal import`).
    pub fn write_all_from(&self, store: &dyn Store) -> Result<usize, JournalError> {
        let mut n = 0;
        for q in store.all_queues() {
            let msgs: Vec<Message> = q.lock().msgs.iter().cloned().collect();
            for msg in msgs {
                self.append(&Record::Write {
                    rid: q.recipient_id().to_vec(),
                    msg,
                })?;
                n += 1;
            }
        }
        self.sync_all()?;
        Ok(n)
    }

    fn append(&self, rec: &Record) -> Result<(usize, u64), JournalError> {
        let i = shard_of(rec.rid());
        let (seq, compact) = self.shards[i].append(rec, self.opts.compact_min_bytes)?;
        if compact {
            if let Some(c) = &self.compactor {
                let _ = c.wake.send(());
            }
        }
        Ok((i, seq))
    }

    /// Append and, with `journal_fsync = always`, wait for the fsync. `op` names the operation
    /// in the `STORE` error the client gets, as the reference does.
    fn log(&self, op: &str, rec: Record) -> Result<(), ErrorType> {
        let (i, seq) = self.append(&rec).map_err(|e| store_err(op, e))?;
        if self.opts.fsync == JournalFsync::Always {
            let shard = &self.shards[i];
            blocking(|| shard.wait_durable(seq)).map_err(|e| store_err(op, e))?;
        }
        Ok(())
    }

    /// fsync every shard (shutdown, after import). A shard whose fsync failed before is
    /// skipped: its failure was reported then, its refused changes were answered `ERR STORE`,
    /// and retrying (e.g. a save at shutdown every few seconds) cannot make it durable.
    pub fn sync_all(&self) -> Result<(), JournalError> {
        for s in self.shards.iter().filter(|s| !s.poisoned()) {
            s.sync_now()?;
        }
        Ok(())
    }

    /// Total file bytes and live bytes over all shards.
    pub fn sizes(&self) -> (u64, u64) {
        self.shards
            .iter()
            .map(Shard::sizes)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop_flusher.take();
        if let Some(mut c) = self.compactor.take() {
            // A compaction in progress gives up (its .tmp is removed); the old file is whole.
            c.stop.store(true, Ordering::Relaxed);
            drop(c.wake);
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
        if let Err(e) = self.sync_all() {
            tracing::error!("{e}");
        }
    }
}

/// Log the failure (file and fix, no queue IDs) and answer `ERR STORE`, as the reference does
/// when its journal cannot be written.
fn store_err(op: &str, e: JournalError) -> ErrorType {
    static LIMIT: crate::store::ratelog::RateLog = crate::store::ratelog::RateLog::new();
    if let Some(n) = LIMIT.allow() {
        tracing::error!(
            "STORE: {op}: {e}{}",
            crate::store::ratelog::suppressed_note(n)
        );
    }
    let kind = match &e {
        JournalError::Io { source, .. } => source.kind().to_string(),
        JournalError::Poisoned { .. } => "an earlier fsync failed".to_string(),
        other => other.to_string(),
    };
    ErrorType::Store(format!("{op}, {kind}"))
}

/// Run a blocking wait without starving a multi-threaded tokio runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The `batch` policy's background flush.
fn spawn_flusher(shards: Arc<[Shard]>) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let every = Duration::from_millis(JournalFsync::BATCH_INTERVAL_MS);
    let spawned = std::thread::Builder::new()
        .name("journal-flush".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                // A poisoned shard was reported once; it accepts nothing until a restart.
                for s in shards.iter().filter(|s| !s.poisoned()) {
                    if let Err(e) = s.sync_now() {
                        tracing::error!("{e}");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("message journal: cannot start the flush thread: {e}");
    }
    tx
}

/// The compaction thread: compacts shards that want it when woken by an append, and every
/// [`COMPACT_CHECK`] anyway (e.g. a compaction that failed on a full disk is retried).
fn spawn_compactor(shards: Arc<[Shard]>, compact_min: u64) -> Compactor {
    let (wake, rx) = mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("journal-compact".into())
        .spawn(move || loop {
            for s in shards.iter() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = s.compact_if_needed(compact_min, &stop2) {
                    tracing::warn!("{e}; the journal is compacted again later");
                }
            }
            match rx.recv_timeout(COMPACT_CHECK) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => while rx.try_recv().is_ok() {},
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!("message journal: cannot start the compaction thread: {e}");
            None
        }
    };
    Compactor { wake, stop, thread }
}

/// How often the compaction thread looks at the shards without being woken.
const COMPACT_CHECK: Duration = Duration::from_secs(30);

impl MessageLog for Journal {
    fn written(&self, recipient_id: &[u8], msg: &Message) -> Result<(), ErrorType> {
        self.log(
            "writeMsg",
            Record::Write {
                rid: recipient_id.to_vec(),
                msg: msg.clone(),
            },
        )
    }

    fn removed(&self, recipient_id: &[u8], msg_id: &[u8]) -> Result<(), ErrorType> {
        self.log(
            "tryDelMsg",
            Record::Remove {
                rid: recipient_id.to_vec(),
                msg_id: msg_id.to_vec(),
            },
        )
    }

    fn cleared(&self, recipient_id: &[u8]) -> Result<(), ErrorType> {
        self.log(
            "deleteQueue",
            Record::Clear {
                rid: recipient_id.to_vec(),
            },
        )
    }
}

#[cfg(test)]
mod tests;
