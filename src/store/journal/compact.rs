//! Shard compaction: rewrite a shard with only its live records, without holding the shard
//! lock while copying and without reading the shard into memory.
//!
//! 1. Under the lock: note the file, its length `end` and the live records (offsets only).
//! 2. Without the lock: stream those records into `shard-NN.journal.tmp` (a 64 KiB buffer),
//!    then the tombstones, and fsync. Appends go on into the old file meanwhile.
//! 3. Under the lock again: copy what was appended since `end` (records written during step
//!    2, replayed in order they keep their meaning), fsync, rename over the old file, fsync the
//!    directory, and move the index's offsets to the new file.
//!
//! Every record is re-framed in the current format, so this is also how a file of the first
//! format is migrated. It runs on the journal's own thread (never a runtime worker); a failure
//! leaves the old file as it was and removes the `.tmp`.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::record::{self, Frame, Framing, Record, MAGIC};
use super::shard::{io_err, lock, open_rw, sync_dir, wants_compaction, Shard};
use super::JournalError;

/// What step 1 noted.
struct Snapshot {
    file: Arc<std::fs::File>,
    end: u64,
    framing: Framing,
    /// Live records as (offset, frame length), in file order.
    live: Vec<(u64, u32)>,
    /// Tombstones, as Remove records.
    tombstones: Vec<Record>,
}

impl Shard {
    /// Compact the shard if it wants it; `Ok(false)` if it did not (or `stop` was set).
    pub fn compact_if_needed(
        &self,
        compact_min: u64,
        stop: &AtomicBool,
    ) -> Result<bool, JournalError> {
        let _one = lock(&self.compacting);
        let snap = {
            let g = lock(&self.inner);
            if self.poisoned() || !wants_compaction(&g, compact_min) {
                return Ok(false);
            }
            let mut live: Vec<(u64, u32)> = g
                .index
                .queues
                .values()
                .flat_map(|q| q.live.iter().map(|e| (e.offset, e.len)))
                .collect();
            // File order keeps each queue's order (its offsets grow) and reads sequentially.
            live.sort_unstable();
            let tombstones = g
                .index
                .queues
                .iter()
                .flat_map(|(rid, q)| {
                    q.tombstones.iter().map(|t| Record::Remove {
                        rid: rid.clone(),
                        msg_id: t.clone(),
                    })
                })
                .collect();
            Snapshot {
                file: g.file.clone(),
                end: g.len,
                framing: g.framing,
                live,
                tombstones,
            }
        };
        let tmp = self.path.with_extension("journal.tmp");
        let r = self.compact_from(snap, &tmp, stop);
        if !matches!(r, Ok(true)) {
            // Leave nothing half-written behind (it would only take space).
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    fn compact_from(
        &self,
        snap: Snapshot,
        tmp: &Path,
        stop: &AtomicBool,
    ) -> Result<bool, JournalError> {
        let err = |what| io_err(tmp, what);
        let new = open_rw(tmp, true).map_err(err("creating"))?;
        new.set_len(0).map_err(err("truncating"))?;
        let mut w = BufWriter::with_capacity(64 << 10, &new);
        w.write_all(MAGIC).map_err(err("writing"))?;
        let mut pos = MAGIC.len() as u64;
        let mut moved: HashMap<u64, (u64, u32)> = HashMap::with_capacity(snap.live.len());
        let hl = snap.framing.header_len();
        let mut buf = Vec::new();
        for &(off, len) in &snap.live {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            buf.resize(len as usize, 0);
            snap.file
                .read_exact_at(&mut buf, off)
                .map_err(io_err(&self.path, "reading for compaction"))?;
            let frame = record::frame_payload(&buf[hl..], Framing::V2);
            w.write_all(&frame).map_err(err("writing"))?;
            moved.insert(off, (pos, frame.len() as u32));
            pos += frame.len() as u64;
        }
        for t in &snap.tombstones {
            let frame = record::encode_frame(t).map_err(|e| JournalError::Encode(e.to_string()))?;
            w.write_all(&frame).map_err(err("writing"))?;
            pos += frame.len() as u64;
        }
        w.flush().map_err(err("writing"))?;
        drop(w);
        new.sync_data().map_err(err("syncing"))?;

        let mut g = lock(&self.inner);
        if self.poisoned() || !Arc::ptr_eq(&g.file, &snap.file) || g.len < snap.end {
            return Ok(false);
        }
        // Records appended while the copy ran, re-framed in order.
        let mut tail = vec![0u8; (g.len - snap.end) as usize];
        g.file
            .read_exact_at(&mut tail, snap.end)
            .map_err(io_err(&self.path, "reading for compaction"))?;
        let mut p = 0;
        while p < tail.len() {
            let Frame::Ok { payload, len } = record::read_frame(&tail[p..], snap.framing) else {
                return Err(JournalError::Corrupt {
                    path: self.path.clone(),
                    offset: snap.end + p as u64,
                    reason: "a record appended while compacting does not read back".into(),
                });
            };
            let frame = record::frame_payload(payload, Framing::V2);
            new.write_all_at(&frame, pos).map_err(err("writing"))?;
            moved.insert(snap.end + p as u64, (pos, frame.len() as u32));
            pos += frame.len() as u64;
            p += len;
        }
        // Every live record must have moved before the old file is replaced.
        let mut updates = Vec::new();
        for (qi, q) in g.index.queues.values().enumerate() {
            for (ei, e) in q.live.iter().enumerate() {
                let Some(&to) = moved.get(&e.offset) else {
                    return Err(JournalError::Corrupt {
                        path: self.path.clone(),
                        offset: e.offset,
                        reason: "a live record was not copied by compaction".into(),
                    });
                };
                updates.push((qi, ei, to));
            }
        }
        new.sync_all().map_err(err("syncing"))?;
        std::fs::rename(tmp, &self.path).map_err(err("renaming"))?;
        // From here the path names the new file: appends must go there whatever happens.
        let mut live_bytes = 0;
        let mut next = updates.into_iter();
        for q in g.index.queues.values_mut() {
            for e in q.live.iter_mut() {
                if let Some((_, _, (o, l))) = next.next() {
                    e.offset = o;
                    e.len = l;
                    live_bytes += u64::from(l);
                }
            }
        }
        g.index.live_bytes = live_bytes;
        g.file = Arc::new(new);
        g.len = pos;
        g.framing = Framing::V2;
        let seq = g.seq;
        if let Some(dir) = self.path.parent() {
            if let Err(e) = sync_dir(dir) {
                // The rename may not survive a power loss, and the appends after it with it.
                self.poison();
                return Err(e);
            }
        }
        let mut s = lock(&self.sync);
        s.synced = s.synced.max(seq);
        self.synced_cv.notify_all();
        Ok(true)
    }
}
