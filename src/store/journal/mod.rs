//! The message journal (`store_messages = journal`): every message change is appended to a
//! journal file before the command is answered, so undelivered messages survive `kill -9` and,
//! with `journal_fsync = always` (the default), power loss.
//!
//! Our own design, not the reference's journal format (the reference's `messages/` directory
//! cannot be read, and ours cannot be read by the reference; migrate between the two through
//! `smp-server journal export` / `import` and `smp-server-messages.log`). The directory holds
//! [`SHARDS`] files `shard-NN.journal`; a queue's records all go to the shard its recipient ID
//! hashes to. Each shard is compacted on its own when it is more than half dead, so the journal
//! stays proportional to the undelivered messages. See [`record`] for the byte layout.

pub mod index;
pub mod migrate;
pub mod record;
pub mod shard;

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::JournalFsync;
use crate::protocol::command::Party;
use crate::protocol::errors::ErrorType;
use crate::store::{Message, MessageLog, Store};
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
    /// The directory holds files this server did not write: most likely the journal of the
    /// reference server, whose format differs. Reading on would lose its messages.
    #[error("message journal directory {} contains {entry:?}, which is not part of this server's journal (the reference smp-server's journal has queue directories and queue_state/messages logs). Nothing was changed. To keep its messages: stop, run `smp-server journal export` with the reference binary (it writes smp-server-messages.log), move {} away, then run `smp-server journal import` with this binary and start again.", dir.display(), dir.display())]
    Foreign {
        /// The journal directory.
        dir: PathBuf,
        /// The first unknown entry.
        entry: String,
    },
}

/// Whether `name` is one of this server's journal files (a shard or a compaction's
/// leftover temporary file).
fn is_own_entry(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("shard-") else {
        return false;
    };
    let rest = rest.strip_suffix(".tmp").unwrap_or(rest);
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

/// What restoring into a store did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStats {
    /// Queues that got messages.
    pub queues: usize,
    /// Messages restored.
    pub messages: usize,
    /// Messages dropped because their queue no longer exists.
    pub orphaned: usize,
}

/// The open journal; implements [`MessageLog`].
pub struct Journal {
    dir: PathBuf,
    shards: Arc<[Shard]>,
    opts: JournalOptions,
    stop_flusher: Option<mpsc::Sender<()>>,
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
    /// cut off and logged as warnings; damage elsewhere is an error naming file and offset.
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
                    "message journal {}: cut off {} bytes of an interrupted write at offset {}",
                    t.path.display(),
                    t.dropped,
                    t.offset
                );
            }
            replay.torn.extend(r.torn);
            replay.msgs.extend(r.msgs);
            // A failed compaction (e.g. a full disk) leaves the shard as it was: not fatal.
            if let Err(e) = r.shard.compact_if_needed(opts.compact_min_bytes) {
                tracing::warn!("{e}; the journal is compacted again later");
            }
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
            },
            replay,
        ))
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Put replayed messages into the queues of `store` (which must already hold the queues,
    /// e.g. from the store log). Messages of queues that no longer exist are dropped from the
    /// journal.
    pub fn restore_into(
        &self,
        store: &dyn Store,
        replay: Replay,
    ) -> Result<RestoreStats, JournalError> {
        let mut stats = RestoreStats::default();
        for (rid, msgs) in replay.msgs {
            match store.get_queue(Party::Recipient, &rid) {
                Some(q) => {
                    let mut s = q.lock();
                    s.can_write = !matches!(msgs.back(), Some(Message::Quota { .. }));
                    stats.queues += 1;
                    stats.messages += msgs.len();
                    s.msgs = msgs;
                }
                None => {
                    stats.orphaned += msgs.len();
                    self.append(&Record::Clear { rid })?;
                }
            }
        }
        if stats.orphaned > 0 {
            self.sync_all()?;
        }
        Ok(stats)
    }

    /// Write all messages of `store` into this (empty) journal and fsync it (`journal import`).
    pub fn write_all_from(&self, store: &dyn Store) -> Result<usize, JournalError> {
        let mut n = 0;
        for q in store.all_queues() {
            let msgs: Vec<Message> = q.lock().msgs.iter().cloned().collect();
            for msg in msgs {
                self.append(&Record::Write {
                    rid: q.recipient_id.clone(),
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
        let seq = self.shards[i].append(rec, self.opts.compact_min_bytes)?;
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

    /// fsync every shard (shutdown, after import).
    pub fn sync_all(&self) -> Result<(), JournalError> {
        for s in self.shards.iter() {
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
                for s in shards.iter() {
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
