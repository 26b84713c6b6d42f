//! What a shard file holds that still matters: per queue, the live messages and where their
//! records are. Applied to every record at replay and at every append, so the journal knows at
//! any time how many bytes compaction would keep.
//!
//! Hooks may reach the journal in a different order than the store applied the changes (a
//! removal logged before the write it removes, when two connections race). A removal of an
//! unknown message is therefore remembered as a tombstone, and a later write of that message is
//! dropped; a write of a message already live is a duplicate and dropped too. Message IDs are
//! random, so this never confuses two messages.

use std::collections::{HashMap, VecDeque};

use super::record::Record;

/// Tombstones kept per queue; more than a handful means hooks were not racing but wrong.
const MAX_TOMBSTONES: usize = 16;

/// Where a live message's record is in the shard file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Message ID.
    pub msg_id: Vec<u8>,
    /// Offset of the frame.
    pub offset: u64,
    /// Length of the frame.
    pub len: u32,
}

/// One queue's live messages and tombstones.
#[derive(Debug, Default)]
pub struct QueueIndex {
    /// Live messages, oldest first.
    pub live: VecDeque<Entry>,
    /// IDs removed before their write was seen.
    pub tombstones: VecDeque<Vec<u8>>,
}

/// What applying a record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// A message became live.
    Added,
    /// `n` messages stopped being live.
    Removed(usize),
    /// Nothing changed (duplicate write, tombstoned write, removal remembered as tombstone).
    Ignored,
}

/// All queues of one shard.
#[derive(Debug, Default)]
pub struct ShardIndex {
    /// Queues by recipient ID.
    pub queues: HashMap<Vec<u8>, QueueIndex>,
    /// Sum of the frame lengths of live messages.
    pub live_bytes: u64,
}

impl ShardIndex {
    /// Apply a record whose frame is at `offset` with `len` bytes.
    pub fn apply(&mut self, rec: &Record, offset: u64, len: u32) -> Applied {
        match rec {
            Record::Write { rid, msg } => {
                let q = self.queues.entry(rid.clone()).or_default();
                let id = msg.msg_id();
                if let Some(i) = q.tombstones.iter().position(|t| t == id) {
                    q.tombstones.remove(i);
                    return Applied::Ignored;
                }
                if q.live.iter().any(|e| e.msg_id == id) {
                    return Applied::Ignored;
                }
                q.live.push_back(Entry {
                    msg_id: id.to_vec(),
                    offset,
                    len,
                });
                self.live_bytes += u64::from(len);
                Applied::Added
            }
            Record::Remove { rid, msg_id } => {
                let q = self.queues.entry(rid.clone()).or_default();
                match q.live.iter().position(|e| e.msg_id == *msg_id) {
                    Some(i) => {
                        for e in q.live.drain(..=i) {
                            self.live_bytes -= u64::from(e.len);
                        }
                        let n = i + 1;
                        if q.live.is_empty() && q.tombstones.is_empty() {
                            self.queues.remove(rid);
                        }
                        Applied::Removed(n)
                    }
                    None => {
                        if q.tombstones.len() >= MAX_TOMBSTONES {
                            q.tombstones.pop_front();
                        }
                        q.tombstones.push_back(msg_id.clone());
                        Applied::Ignored
                    }
                }
            }
            Record::Clear { rid } => match self.queues.remove(rid) {
                Some(q) => {
                    for e in &q.live {
                        self.live_bytes -= u64::from(e.len);
                    }
                    Applied::Removed(q.live.len())
                }
                None => Applied::Ignored,
            },
        }
    }

    /// Number of live messages.
    pub fn live_count(&self) -> usize {
        self.queues.values().map(|q| q.live.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Message;

    fn w(id: u8) -> Record {
        Record::Write {
            rid: vec![1],
            msg: Message::Quota {
                msg_id: vec![id],
                ts: 0,
            },
        }
    }

    fn r(id: u8) -> Record {
        Record::Remove {
            rid: vec![1],
            msg_id: vec![id],
        }
    }

    #[test]
    fn remove_up_to_and_including() {
        let mut ix = ShardIndex::default();
        for i in 1..=3 {
            assert_eq!(ix.apply(&w(i), u64::from(i) * 10, 10), Applied::Added);
        }
        assert_eq!(ix.live_bytes, 30);
        assert_eq!(ix.apply(&r(2), 0, 5), Applied::Removed(2));
        assert_eq!(ix.live_count(), 1);
        assert_eq!(ix.live_bytes, 10);
        assert_eq!(
            ix.apply(&Record::Clear { rid: vec![1] }, 0, 5),
            Applied::Removed(1)
        );
        assert_eq!(ix.live_bytes, 0);
        assert!(ix.queues.is_empty());
    }

    #[test]
    fn reordered_hooks_never_resurrect_a_message() {
        let mut ix = ShardIndex::default();
        assert_eq!(ix.apply(&r(7), 0, 5), Applied::Ignored);
        assert_eq!(ix.apply(&w(7), 10, 10), Applied::Ignored);
        assert_eq!(ix.live_count(), 0);
        assert_eq!(ix.apply(&w(8), 20, 10), Applied::Added);
        assert_eq!(ix.apply(&w(8), 30, 10), Applied::Ignored);
        assert_eq!(ix.live_count(), 1);
    }
}
