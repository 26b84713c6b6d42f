//! One shard file: replay, append and group commit (compaction is in `compact.rs`).
//!
//! Appends write at an explicit offset under the shard lock, so a failed write is cut off again
//! and never leaves a damaged record in the middle. Durability waits use group commit: the first
//! waiter becomes the leader and fsyncs everything appended so far; waiters that arrive during
//! that fsync are covered by the next one, so concurrent commands share fsyncs.
//!
//! A failed fsync poisons the shard until a restart: after one, Linux marks the dirty pages
//! clean and reports the error once, so a later fsync "succeeds" without the data on disk.
//! Nothing more is accepted for the file rather than answer `OK` for what may be gone.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::index::ShardIndex;
use super::record::{self, Frame, Framing, Record, MAGIC};
use super::JournalError;
use crate::store::Message;

/// A torn tail that replay cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The shard file.
    pub path: PathBuf,
    /// Where the file now ends.
    pub offset: u64,
    /// Bytes dropped.
    pub dropped: u64,
    /// Where the dropped bytes were copied.
    pub copy: PathBuf,
}

/// Result of reading a shard file at start.
pub struct Replayed {
    /// The shard, ready for appends.
    pub shard: Shard,
    /// Live messages per queue, oldest first.
    pub msgs: HashMap<Vec<u8>, VecDeque<Message>>,
    /// Set if an interrupted append was cut off.
    pub torn: Option<TornTail>,
}

pub(super) struct Inner {
    pub(super) file: Arc<File>,
    pub(super) len: u64,
    pub(super) index: ShardIndex,
    pub(super) seq: u64,
    pub(super) framing: Framing,
}

pub(super) struct SyncState {
    pub(super) synced: u64,
    syncing: bool,
}

/// A shard file and what it holds.
pub struct Shard {
    pub(super) path: PathBuf,
    pub(super) inner: Mutex<Inner>,
    pub(super) sync: Mutex<SyncState>,
    pub(super) synced_cv: Condvar,
    written: AtomicU64,
    poisoned: AtomicBool,
    /// Held for a whole compaction: one at a time per shard.
    pub(super) compacting: Mutex<()>,
}

pub(super) fn io_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn open_rw(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// fsync a directory so a created or renamed file's name is durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "syncing the directory"))
}

/// Where the bytes cut off a shard at `offset` are kept: `<shard>.torn.<unix time>`.
fn torn_copy_path(path: &Path) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut n = 0;
    loop {
        let name = match n {
            0 => format!("{}.torn.{now}", path.display()),
            n => format!("{}.torn.{now}-{n}", path.display()),
        };
        let p = PathBuf::from(name);
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// Copy `tail` to a new file next to `path` (0600, fsynced) before it is cut off.
fn keep_copy(path: &Path, tail: &[u8]) -> Result<PathBuf, JournalError> {
    let copy = torn_copy_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&copy)
        .map_err(io_err(&copy, "creating"))?;
    f.write_all(tail)
        .and_then(|_| f.sync_all())
        .map_err(io_err(&copy, "writing"))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(copy)
}

/// Replay `bytes` (after the magic): the index, and where an interrupted append starts.
fn replay(
    path: &Path,
    bytes: &[u8],
    framing: Framing,
) -> Result<(ShardIndex, Option<usize>), JournalError> {
    let corrupt = |offset: usize, reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut index = ShardIndex::default();
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let reason = match record::read_frame(&bytes[pos..], framing) {
            Frame::Ok { payload, len } => {
                let rec = record::decode_payload(payload)
                    .map_err(|e| corrupt(pos, format!("a record with a good checksum: {e}")))?;
                index.apply(&rec, pos as u64, len as u32);
                pos += len;
                continue;
            }
            Frame::Truncated => "the file ends inside this record",
            Frame::Bad { reason } => reason,
        };
        // Only bytes after the last whole record can be an interrupted append.
        if let Some(next) = record::find_valid_frame(bytes, pos + 1, framing) {
            return Err(corrupt(
                pos,
                format!("{reason}; a valid record follows at byte offset {next}"),
            ));
        }
        return Ok((index, Some(pos)));
    }
    Ok((index, None))
}

impl Shard {
    /// Open (or create) a shard file and replay it. A damaged record followed by a valid one
    /// is an error that changes nothing; damage at the end is cut off after its bytes were
    /// copied to `<file>.torn.<time>`.
    pub fn open(path: PathBuf) -> Result<Replayed, JournalError> {
        if !path.exists() {
            let mut f = open_rw(&path, true).map_err(io_err(&path, "creating"))?;
            f.write_all(MAGIC)
                .and_then(|_| f.sync_all())
                .map_err(io_err(&path, "writing the header of"))?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        let bytes = std::fs::read(&path).map_err(io_err(&path, "reading"))?;
        let Some(framing) = bytes.get(..MAGIC.len()).and_then(Framing::from_magic) else {
            // A crash right after creation can leave a short header and nothing else.
            if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
                let f = open_rw(&path, false).map_err(io_err(&path, "opening"))?;
                f.write_all_at(MAGIC, 0)
                    .and_then(|_| f.sync_all())
                    .map_err(io_err(&path, "repairing the header of"))?;
                return Self::open(path);
            }
            return Err(JournalError::Corrupt {
                path,
                offset: 0,
                reason: "not a message journal file".into(),
            });
        };
        let (index, torn_at) = replay(&path, &bytes, framing)?;
        let mut msgs: HashMap<Vec<u8>, VecDeque<Message>> = HashMap::new();
        for (rid, q) in &index.queues {
            let mut list = VecDeque::with_capacity(q.live.len());
            for e in &q.live {
                let start = e.offset as usize + framing.header_len();
                let end = e.offset as usize + e.len as usize;
                if let Ok(Record::Write { msg, .. }) = record::decode_payload(&bytes[start..end]) {
                    list.push_back(msg);
                }
            }
            if !list.is_empty() {
                msgs.insert(rid.clone(), list);
            }
        }
        let file = open_rw(&path, false).map_err(io_err(&path, "opening"))?;
        let len = torn_at.unwrap_or(bytes.len());
        let torn = match torn_at {
            Some(at) => {
                let copy = keep_copy(&path, &bytes[at..])?;
                file.set_len(at as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(io_err(&path, "cutting off the torn tail of"))?;
                Some(TornTail {
                    path: path.clone(),
                    offset: at as u64,
                    dropped: (bytes.len() - at) as u64,
                    copy,
                })
            }
            None => None,
        };
        Ok(Replayed {
            shard: Shard {
                path,
                inner: Mutex::new(Inner {
                    file: Arc::new(file),
                    len: len as u64,
                    index,
                    seq: 0,
                    framing,
                }),
                sync: Mutex::new(SyncState {
                    synced: 0,
                    syncing: false,
                }),
                synced_cv: Condvar::new(),
                written: AtomicU64::new(0),
                poisoned: AtomicBool::new(false),
                compacting: Mutex::new(()),
            },
            msgs,
            torn,
        })
    }

    /// The shard file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an fsync of this file failed since start (no more writes until a restart).
    pub fn poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(super) fn poison(&self) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(
                "message journal {}: an fsync failed, so the kernel may have dropped data \
                 written to it. No more changes are accepted for the queues in this file \
                 (clients get ERR STORE) until smp-server is restarted. Check the disk \
                 (dmesg) and free space, then restart",
                self.path.display()
            );
        }
    }

    fn refuse_if_poisoned(&self) -> Result<(), JournalError> {
        if self.poisoned() {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Append a record; returns its sequence number for [`Shard::wait_durable`] and whether
    /// the shard now wants compaction. The record is in the operating system's cache when this
    /// returns (it survives the process dying).
    pub fn append(&self, rec: &Record, compact_min: u64) -> Result<(u64, bool), JournalError> {
        self.refuse_if_poisoned()?;
        let mut g = lock(&self.inner);
        let frame = record::encode_frame_as(rec, g.framing)
            .map_err(|e| JournalError::Encode(e.to_string()))?;
        let offset = g.len;
        if let Err(e) = g.file.write_all_at(&frame, offset) {
            // Cut off whatever part was written so the file stays a clean sequence of records;
            // if even that fails a partial record may be in the file: write nothing after it.
            if g.file.set_len(offset).is_err() {
                self.poison();
            }
            return Err(io_err(&self.path, "appending to")(e));
        }
        g.len += frame.len() as u64;
        g.index.apply(rec, offset, frame.len() as u32);
        g.seq += 1;
        let seq = g.seq;
        self.written.store(seq, Ordering::Release);
        Ok((seq, wants_compaction(&g, compact_min)))
    }

    /// Block until the record with sequence number `seq` is fsynced (group commit).
    pub fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let mut s = lock(&self.sync);
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            // Checked before every fsync: a second fsync after a failed one reports success.
            self.refuse_if_poisoned()?;
            if s.syncing {
                s = self.synced_cv.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.syncing = true;
            drop(s);
            let (file, target) = {
                let g = lock(&self.inner);
                (g.file.clone(), g.seq)
            };
            let r = file.sync_data();
            if r.is_err() {
                self.poison();
            }
            s = lock(&self.sync);
            s.syncing = false;
            if r.is_ok() {
                s.synced = s.synced.max(target);
            }
            self.synced_cv.notify_all();
            r.map_err(io_err(&self.path, "syncing"))?;
        }
    }

    /// fsync everything appended so far, if anything is pending.
    pub fn sync_now(&self) -> Result<(), JournalError> {
        let w = self.written.load(Ordering::Acquire);
        if lock(&self.sync).synced >= w {
            return Ok(());
        }
        self.wait_durable(w)
    }

    /// Current file size and live bytes.
    pub fn sizes(&self) -> (u64, u64) {
        let g = lock(&self.inner);
        (g.len, g.index.live_bytes)
    }
}

/// Compact when the file passed the minimum and is more than half dead, or when it is still
/// in the first format (compaction rewrites it in the current one).
pub(super) fn wants_compaction(g: &Inner, compact_min: u64) -> bool {
    g.framing != Framing::V2
        || (g.len > compact_min && g.len > 2 * g.index.live_bytes + MAGIC.len() as u64)
}
