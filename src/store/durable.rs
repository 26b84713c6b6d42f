//! A [`Store`] that makes every change durable: [`MemoryStore`] plus a queue log (the store
//! log) and a message log (the journal).
//!
//! Each mutation runs under a per-queue stripe lock: apply in memory, then write the log, and
//! if the log write fails undo the memory change and answer the log's error (`STORE ...`).
//! So memory never holds an acknowledged change the log lacks, and the log's order of records
//! for one queue is the order of the changes in memory. Two cases log first instead, because
//! they cannot be undone in memory: deleting a queue (`DELETE` is written before the queue
//! goes) and acknowledging a message (an unlogged removal is put back at the queue's head).
//! A deletion whose store log `DELETE` is written but whose journal `Clear` fails still
//! deletes: the store log decides whether a queue exists after a restart.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use super::memory::MemoryStore;
use super::{
    Message, MessageLog, NtfCreds, Queue, QueueLog, QueueRec, QueueRef, QueueStatus, Store,
    WriteResult,
};
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{Party, QueueLinkData};
use crate::protocol::errors::ErrorType;

/// Number of stripe locks serializing mutations of queues (by recipient ID hash).
const STRIPES: usize = 256;

/// The in-memory store with optional durability logs.
pub struct DurableStore {
    inner: MemoryStore,
    qlog: Option<Arc<dyn QueueLog>>,
    mlog: Option<Arc<dyn MessageLog>>,
    stripes: Vec<Mutex<()>>,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("queue_log", &self.qlog.is_some())
            .field("message_log", &self.mlog.is_some())
            .finish()
    }
}

impl DurableStore {
    /// Wrap a (possibly already restored) memory store; `None` logs make it purely in-memory.
    pub fn new(
        inner: MemoryStore,
        qlog: Option<Arc<dyn QueueLog>>,
        mlog: Option<Arc<dyn MessageLog>>,
    ) -> Self {
        DurableStore {
            inner,
            qlog,
            mlog,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The wrapped memory store (replay and restore write to it directly, without logging).
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    fn stripe(&self, rid: &[u8]) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        rid.hash(&mut h);
        let i = (h.finish() as usize) % STRIPES;
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call `f` with the record of every live queue, each read under its stripe lock: so it
    /// reflects every change to that queue whose log record was written before, and none of a
    /// change still in progress (a live compaction relies on this). Stops at `f`'s first error.
    pub fn for_each_record<E>(
        &self,
        mut f: impl FnMut(&QueueRec) -> Result<(), E>,
    ) -> Result<(), E> {
        for q in self.inner.all_queues() {
            let rec = {
                let _g = self.stripe(q.recipient_id());
                q.rec()
            };
            if let Ok(rec) = rec {
                f(&rec)?;
            }
        }
        Ok(())
    }

    /// Log a record change; on failure put the fields back with `undo`.
    fn log_update(
        &self,
        q: &Queue,
        old: &QueueRec,
        undo: impl FnOnce(&MemoryStore, &Queue, &QueueRec),
    ) -> Result<(), ErrorType> {
        let Some(log) = &self.qlog else {
            return Ok(());
        };
        let new = q.rec()?;
        if new == *old {
            return Ok(());
        }
        if let Err(e) = log.updated(old, &new) {
            undo(&self.inner, q, old);
            return Err(e);
        }
        Ok(())
    }
}

/// Restore the record fields that have no index (keys, status, time).
fn restore_plain(_: &MemoryStore, q: &Queue, old: &QueueRec) {
    let mut s = q.lock();
    if !s.deleted() {
        s.rec.sender_key = old.sender_key.clone();
        s.rec.recipient_keys = old.recipient_keys.clone();
        s.rec.status = old.status.clone();
        s.rec.updated_at = old.updated_at;
    }
}

/// Restore link data (and its index).
fn restore_link(st: &MemoryStore, q: &Queue, old: &QueueRec) {
    let _ = st.delete_link(q);
    if let Some((lid, d)) = old.queue_data.as_deref() {
        let _ = st.add_link(q, lid.clone(), d.clone());
    }
}

/// Restore notifier credentials (and their index).
fn restore_notifier(st: &MemoryStore, q: &Queue, old: &QueueRec) {
    let _ = st.delete_notifier(q);
    if let Some(c) = &old.notifier {
        let _ = st.add_notifier(q, (**c).clone());
    }
}

impl Store for DurableStore {
    fn add_queue(&self, rec: QueueRec) -> Result<QueueRef, ErrorType> {
        let _g = self.stripe(&rec.recipient_id);
        let q = self.inner.add_queue(rec.clone())?;
        if let Some(log) = &self.qlog {
            if let Err(e) = log.created(&rec) {
                let _ = self.inner.delete_queue(&q);
                return Err(e);
            }
        }
        Ok(q)
    }

    fn get_queue(&self, party: Party, id: &[u8]) -> Option<QueueRef> {
        self.inner.get_queue(party, id)
    }

    fn secure_queue(&self, q: &Queue, key: PublicKey) -> Result<(), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        self.inner.secure_queue(q, key)?;
        self.log_update(q, &old, restore_plain)
    }

    fn update_keys(&self, q: &Queue, keys: Vec<PublicKey>) -> Result<(), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        self.inner.update_keys(q, keys)?;
        self.log_update(q, &old, restore_plain)
    }

    fn add_link(&self, q: &Queue, link_id: Vec<u8>, data: QueueLinkData) -> Result<(), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        self.inner.add_link(q, link_id, data)?;
        self.log_update(q, &old, restore_link)
    }

    fn delete_link(&self, q: &Queue) -> Result<(), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        self.inner.delete_link(q)?;
        self.log_update(q, &old, restore_link)
    }

    fn get_link(&self, q: &Queue, link_id: &[u8]) -> Result<QueueLinkData, ErrorType> {
        self.inner.get_link(q, link_id)
    }

    fn add_notifier(&self, q: &Queue, creds: NtfCreds) -> Result<Option<NtfCreds>, ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        let r = self.inner.add_notifier(q, creds)?;
        self.log_update(q, &old, restore_notifier)?;
        Ok(r)
    }

    fn delete_notifier(&self, q: &Queue) -> Result<Option<NtfCreds>, ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        let r = self.inner.delete_notifier(q)?;
        self.log_update(q, &old, restore_notifier)?;
        Ok(r)
    }

    fn set_status(&self, q: &Queue, status: QueueStatus) -> Result<(), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        self.inner.set_status(q, status)?;
        self.log_update(q, &old, restore_plain)
    }

    fn update_time(&self, q: &Queue, day: i64) -> Result<(), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let old = q.rec()?;
        self.inner.update_time(q, day)?;
        self.log_update(q, &old, restore_plain)
    }

    fn delete_queue(&self, q: &Queue) -> Result<(QueueRec, usize), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        // Write-ahead: a logged DELETE of a queue that then stays is impossible here (the stripe
        // is held and the queue is live), and an unlogged delete would resurrect the queue.
        q.rec()?;
        if let Some(log) = &self.qlog {
            log.deleted(q.recipient_id())?;
        }
        if let Some(log) = &self.mlog {
            if let Err(e) = log.cleared(q.recipient_id()) {
                if self.qlog.is_none() {
                    return Err(e);
                }
                // The DELETE is logged, so the queue is gone after a restart: it goes now too
                // (live state = state after restart). Its messages stay in the journal until
                // the next start, which clears them because the store log deleted the queue.
                tracing::warn!(
                    "a deleted queue's messages stay in the message journal until the next \
                     start (the journal could not be written: see the error above)"
                );
            }
        }
        self.inner.delete_queue(q)
    }

    fn write_msg(&self, q: &Queue, msg: Message, quota: usize) -> Result<WriteResult, ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let Some(log) = &self.mlog else {
            return self.inner.write_msg(q, msg, quota);
        };
        let prev_can_write = q.lock().can_write();
        let id = msg.msg_id().to_vec();
        let r = self.inner.write_msg(q, msg, quota)?;
        // What was appended: the message, a quota marker, or nothing (already full).
        let appended = {
            let s = q.lock();
            s.msgs.back().filter(|m| m.msg_id() == id).cloned()
        };
        if let Some(m) = appended {
            if let Err(e) = log.written(q.recipient_id(), &m) {
                let mut s = q.lock();
                if s.msgs.back().is_some_and(|b| b.msg_id() == id) {
                    s.msgs.with_mut(|d| d.pop_back());
                }
                s.set_can_write(prev_can_write);
                return Err(e);
            }
        }
        Ok(r)
    }

    fn peek_msg(&self, q: &Queue) -> Result<Option<Message>, ErrorType> {
        self.inner.peek_msg(q)
    }

    fn del_msg(&self, q: &Queue, msg_id: &[u8]) -> Result<Option<Message>, ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let d = self.inner.del_msg(q, msg_id)?;
        if let (Some(m), Some(log)) = (&d, &self.mlog) {
            if let Err(e) = log.removed(q.recipient_id(), msg_id) {
                q.lock().msgs.with_mut(|d| d.push_front(m.clone()));
                return Err(e);
            }
        }
        Ok(d)
    }

    fn del_peek_msg(
        &self,
        q: &Queue,
        msg_id: &[u8],
    ) -> Result<(Option<Message>, Option<Message>), ErrorType> {
        let _g = self.stripe(q.recipient_id());
        let (d, next) = self.inner.del_peek_msg(q, msg_id)?;
        if let (Some(m), Some(log)) = (&d, &self.mlog) {
            if let Err(e) = log.removed(q.recipient_id(), msg_id) {
                q.lock().msgs.with_mut(|d| d.push_front(m.clone()));
                return Err(e);
            }
        }
        Ok((d, next))
    }

    fn queue_size(&self, q: &Queue) -> Result<usize, ErrorType> {
        self.inner.queue_size(q)
    }

    fn delete_expired(&self, q: &Queue, before: i64) -> Result<usize, ErrorType> {
        // Most queues have nothing old: a look at the oldest message spares them the stripe
        // lock (a pass at start over a million queues took half a second without it). New
        // messages are never older than `before`, so nothing can become due meanwhile.
        if q.lock().msgs.iter().next().is_none_or(|m| m.ts() >= before) {
            return Ok(0);
        }
        let _g = self.stripe(q.recipient_id());
        let Some(log) = &self.mlog else {
            return self.inner.delete_expired(q, before);
        };
        let removed: Vec<Message> = {
            let s = q.lock();
            s.msgs
                .iter()
                .take_while(|m| m.ts() < before)
                .cloned()
                .collect()
        };
        let n = self.inner.delete_expired(q, before)?;
        if let Some(last) = removed.get(n.wrapping_sub(1)) {
            if let Err(e) = log.removed(q.recipient_id(), last.msg_id()) {
                let mut s = q.lock();
                s.msgs.with_mut(|d| {
                    for m in removed.into_iter().take(n).rev() {
                        d.push_front(m);
                    }
                });
                return Err(e);
            }
        }
        Ok(n)
    }

    fn all_queues(&self) -> Vec<QueueRef> {
        self.inner.all_queues()
    }

    fn count_queues(&self) -> (usize, usize) {
        self.inner.count_queues()
    }

    fn count_messages(&self) -> usize {
        self.inner.count_messages()
    }

    fn expire_messages(&self, before: i64) -> usize {
        // One pass picks the queues with something old; only those are then locked in turn.
        let old = |s: &super::QueueState| s.msgs.iter().next().is_some_and(|m| m.ts() < before);
        let mut due = Vec::new();
        let busy = self.inner.scan(|q, s| {
            if old(s) {
                due.push(q.clone());
            }
        });
        due.iter()
            .chain(&busy)
            .map(|q| self.delete_expired(q, before).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
#[path = "durable_tests.rs"]
mod tests;
