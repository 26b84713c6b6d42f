//! One shard file: replay, append, group commit and compaction.
//!
//! Appends write at an explicit offset under the shard lock, so a failed write is cut off again
//! and never leaves a damaged record in the middle. Durability waits use group commit: the first
//! waiter becomes the leader and fsyncs everything appended so far; waiters that arrive during
//! that fsync are covered by the next one, so concurrent commands share fsyncs.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::index::ShardIndex;
use super::record::{self, Frame, Record, MAGIC};
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

struct Inner {
    file: Arc<File>,
    len: u64,
    index: ShardIndex,
    seq: u64,
}

struct SyncState {
    synced: u64,
    syncing: bool,
}

/// A shard file and what it holds.
pub struct Shard {
    path: PathBuf,
    inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
    written: AtomicU64,
}

fn io_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_rw(path: &Path, create: bool) -> std::io::Result<File> {
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

impl Shard {
    /// Open (or create) a shard file and replay it.
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
        let corrupt = |offset: u64, reason: String| JournalError::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            // A crash right after creation can leave a short header and nothing else.
            if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
                let f = open_rw(&path, false).map_err(io_err(&path, "opening"))?;
                f.write_all_at(MAGIC, 0)
                    .and_then(|_| f.sync_all())
                    .map_err(io_err(&path, "repairing the header of"))?;
                return Self::open(path);
            }
            return Err(corrupt(0, "not a message journal file".into()));
        }
        let mut index = ShardIndex::default();
        let mut pos = MAGIC.len();
        let mut torn = None;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            match record::read_frame(rest) {
                Frame::Ok { payload, len } => {
                    let rec = record::decode_payload(payload)
                        .map_err(|e| corrupt(pos as u64, e.to_string()))?;
                    index.apply(&rec, pos as u64, len as u32);
                    pos += len;
                }
                Frame::Truncated => {
                    torn = Some(pos);
                    break;
                }
                Frame::Bad {
                    reaches_end,
                    reason,
                } => {
                    // Zeros or a damaged last frame are what an interrupted append leaves.
                    if reaches_end || rest.iter().all(|b| *b == 0) {
                        torn = Some(pos);
                        break;
                    }
                    return Err(corrupt(pos as u64, reason.into()));
                }
            }
        }
        let mut msgs: HashMap<Vec<u8>, VecDeque<Message>> = HashMap::new();
        for (rid, q) in &index.queues {
            let mut list = VecDeque::with_capacity(q.live.len());
            for e in &q.live {
                let start = e.offset as usize + record::FRAME_HEADER;
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
        let torn = match torn {
            Some(at) => {
                file.set_len(at as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(io_err(&path, "cutting off the torn tail of"))?;
                Some(TornTail {
                    path: path.clone(),
                    offset: at as u64,
                    dropped: (bytes.len() - at) as u64,
                })
            }
            None => None,
        };
        let len = pos as u64;
        Ok(Replayed {
            shard: Shard {
                path,
                inner: Mutex::new(Inner {
                    file: Arc::new(file),
                    len,
                    index,
                    seq: 0,
                }),
                sync: Mutex::new(SyncState {
                    synced: 0,
                    syncing: false,
                }),
                synced_cv: Condvar::new(),
                written: AtomicU64::new(0),
            },
            msgs,
            torn,
        })
    }

    /// Append a record; returns its sequence number for [`Shard::wait_durable`]. The record is
    /// in the operating system's cache when this returns (it survives the process dying).
    pub fn append(&self, rec: &Record, compact_min: u64) -> Result<u64, JournalError> {
        let frame = record::encode_frame(rec).map_err(|e| JournalError::Encode(e.to_string()))?;
        let mut g = lock(&self.inner);
        let offset = g.len;
        if let Err(e) = g.file.write_all_at(&frame, offset) {
            // Cut off whatever part was written so the file stays a clean sequence of records.
            let _ = g.file.set_len(offset);
            return Err(io_err(&self.path, "appending to")(e));
        }
        g.len += frame.len() as u64;
        g.index.apply(rec, offset, frame.len() as u32);
        g.seq += 1;
        let seq = g.seq;
        self.written.store(seq, Ordering::Release);
        if needs_compaction(g.len, g.index.live_bytes, compact_min) {
            // The record is written; a compaction that fails (e.g. on a full disk) leaves the
            // file as it was and is tried again at a later append.
            if let Err(e) = self.compact_locked(&mut g) {
                tracing::warn!("{e}; compaction is tried again later");
            }
        }
        Ok(seq)
    }

    /// Block until the record with sequence number `seq` is fsynced (group commit).
    pub fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let mut s = lock(&self.sync);
        loop {
            if s.synced >= seq {
                return Ok(());
            }
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

    /// Rewrite the file with only the live records if it is large enough and mostly dead.
    pub fn compact_if_needed(&self, compact_min: u64) -> Result<bool, JournalError> {
        let mut g = lock(&self.inner);
        if needs_compaction(g.len, g.index.live_bytes, compact_min) {
            self.compact_locked(&mut g)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Current file size and live bytes.
    pub fn sizes(&self) -> (u64, u64) {
        let g = lock(&self.inner);
        (g.len, g.index.live_bytes)
    }

    /// Copy the live records to a new file, fsync it and rename it over the old one.
    fn compact_locked(&self, g: &mut Inner) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("journal.tmp");
        let r = self.write_compacted(g, &tmp);
        if r.is_err() {
            // Leave nothing half-written behind (it would only take space).
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// The body of [`Shard::compact_locked`]: the index's offsets change only once the new
    /// file has replaced the old one.
    fn write_compacted(&self, g: &mut Inner, tmp: &Path) -> Result<(), JournalError> {
        let err = |what| io_err(tmp, what);
        let new = open_rw(tmp, true).map_err(err("creating"))?;
        new.set_len(0).map_err(err("truncating"))?;
        let mut out = Vec::with_capacity(g.index.live_bytes as usize + MAGIC.len());
        out.extend_from_slice(MAGIC);
        let mut extra = Vec::new();
        let mut offsets = Vec::new();
        for (rid, q) in g.index.queues.iter() {
            for e in q.live.iter() {
                let start = out.len();
                out.resize(start + e.len as usize, 0);
                g.file
                    .read_exact_at(&mut out[start..], e.offset)
                    .map_err(io_err(&self.path, "reading for compaction"))?;
                offsets.push(start as u64);
            }
            for t in &q.tombstones {
                let rec = Record::Remove {
                    rid: rid.clone(),
                    msg_id: t.clone(),
                };
                extra.push(
                    record::encode_frame(&rec).map_err(|e| JournalError::Encode(e.to_string()))?,
                );
            }
        }
        for f in extra {
            out.extend_from_slice(&f);
        }
        new.write_all_at(&out, 0)
            .and_then(|_| new.sync_all())
            .map_err(err("writing"))?;
        std::fs::rename(tmp, &self.path).map_err(err("renaming"))?;
        // The same iteration order as above: the map was not changed in between.
        let mut next = offsets.into_iter();
        for q in g.index.queues.values_mut() {
            for e in q.live.iter_mut() {
                if let Some(o) = next.next() {
                    e.offset = o;
                }
            }
        }
        g.file = Arc::new(new);
        g.len = out.len() as u64;
        {
            let mut s = lock(&self.sync);
            s.synced = s.synced.max(g.seq);
            self.synced_cv.notify_all();
        }
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Compact when the file passed the minimum and is more than half dead.
fn needs_compaction(len: u64, live: u64, compact_min: u64) -> bool {
    len > compact_min && len > 2 * live + MAGIC.len() as u64
}
