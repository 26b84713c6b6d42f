//! Queue and message stores.
//!
//! The server talks to a [`Store`]: queue records and their messages behind one trait, so a
//! persistent store (store log, message journal) can replace or wrap the in-memory one. Every
//! per-queue change happens under that queue's own lock, so concurrent connections see each
//! change whole; a deleted queue is marked so late holders of its handle get `AUTH`.

pub mod durable;
pub mod journal;
pub mod memory;
pub mod msgfile;
pub mod pg_journal;
pub mod postgres;
pub mod ratelog;
pub mod services;
pub mod services_mem;
pub mod stop_backups;
pub mod storelog;
pub mod storelog_file;
pub mod strenc;
pub mod types;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::keys::PublicKey;
use crate::protocol::command::{Party, QueueLinkData};
use crate::protocol::errors::{BlockingInfo, ErrorType};
pub use types::{
    IdKey, Message, NtfCreds, QueueBody, QueueRec, QueueStatus, RecipientKeys, UpdatedAt,
};

/// A shared handle to a live queue. `triomphe`'s `Arc` has no weak count (queues are never
/// held weakly): 8 bytes less per queue, which with the layout below puts each handle in a
/// 240-byte glibc chunk (288 with the standard `Arc` and the earlier layout).
pub type QueueRef = triomphe::Arc<Queue>;

/// A queue: its IDs, and its record's body and messages under one lock.
///
/// Every idle queue keeps one of these in memory, so its layout is what an operator pays per
/// queue: the IDs are kept once, outside the lock (they never change, and the memory store's
/// indexes hash the handles by them), and an idle queue holds no message buffer.
#[derive(Debug)]
pub struct Queue {
    ids: QueueIds,
    state: Mutex<QueueState>,
}

/// A queue's two immutable IDs. Both are kept inline in 50 bytes when they fit in 24 bytes
/// each (every ID the server makes or a client may choose); only a foreign store log can hold
/// longer ones, which are boxed. Together they take 56 bytes where two [`IdKey`]s take 64,
/// which with [`Msgs`] keeping the queue's flags brings the handle's allocation from a
/// 256-byte glibc chunk to a 240-byte one.
#[derive(Debug)]
enum QueueIds {
    Short { rlen: u8, slen: u8, bytes: [u8; 48] },
    Long(Box<(IdKey, IdKey)>),
}

impl QueueIds {
    fn new(rid: IdKey, sid: IdKey) -> Self {
        let (r, s) = (rid.as_slice(), sid.as_slice());
        if r.len() <= 24 && s.len() <= 24 {
            let mut bytes = [0u8; 48];
            bytes[..r.len()].copy_from_slice(r);
            bytes[24..24 + s.len()].copy_from_slice(s);
            QueueIds::Short {
                rlen: r.len() as u8,
                slen: s.len() as u8,
                bytes,
            }
        } else {
            QueueIds::Long(Box::new((rid, sid)))
        }
    }
}

/// The mutable part of a queue.
#[derive(Debug)]
pub struct QueueState {
    /// The queue record without its IDs (those are the handle's).
    pub rec: QueueBody,
    /// Undelivered messages, oldest first, with the queue's two flags.
    pub msgs: Msgs,
}

impl QueueState {
    /// False after the quota marker was written, until the queue empties.
    pub fn can_write(&self) -> bool {
        self.msgs.0.as_ref().is_none_or(|b| !b.quota_reached)
    }

    /// Set when the quota marker is written, cleared when the queue empties.
    pub fn set_can_write(&mut self, can_write: bool) {
        if !can_write || self.msgs.0.is_some() {
            self.msgs.with_buf(|b| b.quota_reached = !can_write);
        }
    }

    /// Set when the queue is deleted; the handle may outlive the store entry.
    pub fn deleted(&self) -> bool {
        self.msgs.0.as_ref().is_some_and(|b| b.deleted)
    }

    /// Mark the queue deleted (for good).
    pub fn set_deleted(&mut self) {
        self.msgs.with_buf(|b| b.deleted = true);
    }
}

/// A queue's undelivered messages, oldest first, and its two flags (quota reached, deleted).
/// An idle queue (nearly every one: empty, writable, live) holds no buffer: one pointer
/// instead of a `VecDeque`'s 32 bytes and two flags, and the buffer a burst of messages grew
/// is freed as soon as the queue drains, so memory returns after load. The flags can live in
/// the buffer because they are rare: the quota is reached only on a full queue, and a
/// deleted queue's handle is dropped soon after.
#[derive(Debug, Default)]
pub struct Msgs(Option<Box<MsgBuf>>);

#[derive(Debug, Default)]
struct MsgBuf {
    msgs: VecDeque<Message>,
    quota_reached: bool,
    deleted: bool,
}

impl MsgBuf {
    /// Nothing here that an absent buffer would not say.
    fn is_idle(&self) -> bool {
        self.msgs.is_empty() && !self.quota_reached && !self.deleted
    }
}

static NO_MSGS: VecDeque<Message> = VecDeque::new();

impl Msgs {
    /// Change the buffer, creating it if needed and dropping it again if it ends up idle.
    fn with_buf<T>(&mut self, f: impl FnOnce(&mut MsgBuf) -> T) -> T {
        let b = self.0.get_or_insert_with(Box::default);
        let r = f(b);
        if b.is_idle() {
            self.0 = None;
        }
        r
    }

    /// Change the messages; the buffer is dropped again if they end up empty. An empty queue
    /// is changed on the stack and boxed only if it gains messages, so an ACK or expiry pass
    /// on an idle queue allocates nothing.
    pub fn with_mut<T>(&mut self, f: impl FnOnce(&mut VecDeque<Message>) -> T) -> T {
        match &mut self.0 {
            Some(b) => {
                let r = f(&mut b.msgs);
                if b.msgs.is_empty() {
                    // an emptied queue takes messages again
                    b.quota_reached = false;
                }
                if b.is_idle() {
                    self.0 = None;
                }
                r
            }
            None => {
                let mut msgs = VecDeque::new();
                let r = f(&mut msgs);
                if !msgs.is_empty() {
                    self.0 = Some(Box::new(MsgBuf {
                        msgs,
                        ..MsgBuf::default()
                    }));
                }
                r
            }
        }
    }

    /// Take all messages out, leaving none (the flags stay).
    pub fn take(&mut self) -> VecDeque<Message> {
        self.with_mut(std::mem::take)
    }

    /// Replace the messages (the flags stay).
    pub fn replace(&mut self, msgs: VecDeque<Message>) {
        self.with_mut(|d| *d = msgs)
    }
}

impl std::ops::Deref for Msgs {
    type Target = VecDeque<Message>;
    fn deref(&self) -> &VecDeque<Message> {
        self.0.as_ref().map_or(&NO_MSGS, |b| &b.msgs)
    }
}

impl Queue {
    /// A queue handle around a record.
    pub fn new(rec: QueueRec) -> Self {
        let QueueRec {
            recipient_id,
            sender_id,
            body,
        } = rec;
        Queue {
            ids: QueueIds::new(recipient_id, sender_id),
            state: Mutex::new(QueueState {
                rec: body,
                msgs: Msgs::default(),
            }),
        }
    }

    /// The recipient ID (immutable, the queue's key everywhere).
    pub fn recipient_id(&self) -> &[u8] {
        match &self.ids {
            QueueIds::Short { rlen, bytes, .. } => &bytes[..usize::from(*rlen)],
            QueueIds::Long(b) => b.0.as_slice(),
        }
    }

    /// The sender ID (immutable).
    pub fn sender_id(&self) -> &[u8] {
        match &self.ids {
            QueueIds::Short { slen, bytes, .. } => &bytes[24..24 + usize::from(*slen)],
            QueueIds::Long(b) => b.1.as_slice(),
        }
    }

    /// The state if its lock is free now (a scan under an index lock must never wait for a
    /// queue: elsewhere queue locks are held while index locks are taken).
    pub fn try_lock(&self) -> Option<MutexGuard<'_, QueueState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Lock the queue. A poisoned lock (a panic while holding it) still yields the state: the
    /// state is updated in single assignments, so it is never half-written.
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole record: this handle's IDs with a copy of `body` (from its locked state).
    pub fn record(&self, body: &QueueBody) -> QueueRec {
        QueueRec {
            recipient_id: IdKey::new(self.recipient_id()),
            sender_id: IdKey::new(self.sender_id()),
            body: body.clone(),
        }
    }

    /// A copy of the record, or `AUTH` if deleted.
    pub fn rec(&self) -> Result<QueueRec, ErrorType> {
        let s = self.lock();
        if s.deleted() {
            Err(ErrorType::Auth)
        } else {
            Ok(self.record(&s.rec))
        }
    }
}

/// Outcome of writing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    /// Stored; `was_empty` tells whether it is now the first message (deliver it).
    Stored {
        /// The queue had no messages before.
        was_empty: bool,
    },
    /// The queue is full: a quota marker was stored, or one is already there.
    Quota,
}

/// The queue and message store used by the server.
///
/// What every implementation guarantees, and the command core relies on:
/// - Each call on a queue is atomic under that queue's own lock and takes no other server lock,
///   so the core may call it while holding a connection's subscription lock (the lock order in
///   `server::core`) without deadlock.
/// - A queue's messages leave in the order they were written, and only through
///   [`Store::del_msg`] / [`Store::del_peek_msg`] naming the oldest one (ACK), expiry or deletion
///   of the queue: a delivered message stays stored until acknowledged, so a connection lost
///   between MSG and ACK loses nothing.
/// - The store knows no connections: nothing here takes or returns a session; who is
///   subscribed, and delivery, are the core's (`tests/architecture_rules.rs` keeps the imports so).
/// - A deleted queue's handle may outlive it: calls on it then fail with `AUTH`, never touch a
///   new queue with the same IDs.
pub trait Store: Send + Sync + 'static {
    /// Add a new queue; `Duplicate` if any of its IDs is taken.
    fn add_queue(&self, rec: QueueRec) -> Result<QueueRef, ErrorType>;
    /// Find a queue by the ID a party uses (recipient, sender, notifier or link ID).
    fn get_queue(&self, party: Party, id: &[u8]) -> Option<QueueRef>;
    /// As [`Store::get_queue`], but a store that can fail (a database) says so, so the command
    /// is answered `STORE` rather than `AUTH`.
    fn find_queue(&self, party: Party, id: &[u8]) -> Result<Option<QueueRef>, ErrorType> {
        Ok(self.get_queue(party, id))
    }
    /// Whether a lookup costs a round trip (a database), so a block of SUBs is worth looking up
    /// with [`Store::find_queues`] and [`Store::peek_msgs`] in one go each. In-memory stores
    /// answer `false` and the core keeps its one-by-one path for them.
    fn batches_lookups(&self) -> bool {
        false
    }
    /// How many of its calls can usefully wait on I/O at once (a database: its connection
    /// pool); the server runs that many more blocks in parallel. In-memory stores: 0.
    fn io_waits(&self) -> usize {
        0
    }
    /// [`Store::find_queue`] for many IDs of one party, answers in the order asked. The whole
    /// batch fails together: one database failure answers every command of it `STORE`.
    fn find_queues(&self, party: Party, ids: &[&[u8]]) -> Result<Vec<Option<QueueRef>>, ErrorType> {
        ids.iter().map(|id| self.find_queue(party, id)).collect()
    }
    /// [`Store::update_time`] for many queues (a block of SUBs on the first day of use),
    /// answers in the order asked.
    fn update_times(&self, qs: &[&Queue], day: i64) -> Vec<Result<(), ErrorType>> {
        qs.iter().map(|q| self.update_time(q, day)).collect()
    }
    /// [`Store::peek_msg`] for many queues, answers in the order asked.
    fn peek_msgs(&self, qs: &[&Queue]) -> Vec<Result<Option<Message>, ErrorType>> {
        qs.iter().map(|q| self.peek_msg(q)).collect()
    }
    /// Set the sender key; OK again with the same key, `AUTH` with another.
    fn secure_queue(&self, q: &Queue, key: PublicKey) -> Result<(), ErrorType>;
    /// Replace the recipient keys.
    fn update_keys(&self, q: &Queue, keys: Vec<PublicKey>) -> Result<(), ErrorType>;
    /// Set link data; the link ID and fixed data can't change once set.
    fn add_link(&self, q: &Queue, link_id: Vec<u8>, data: QueueLinkData) -> Result<(), ErrorType>;
    /// Remove link data.
    fn delete_link(&self, q: &Queue) -> Result<(), ErrorType>;
    /// Link data for a link ID (`AUTH` if it does not match).
    fn get_link(&self, q: &Queue, link_id: &[u8]) -> Result<QueueLinkData, ErrorType>;
    /// Add or replace the notifier; returns the replaced one.
    fn add_notifier(&self, q: &Queue, creds: NtfCreds) -> Result<Option<NtfCreds>, ErrorType>;
    /// Remove the notifier; returns it.
    fn delete_notifier(&self, q: &Queue) -> Result<Option<NtfCreds>, ErrorType>;
    /// Set the status (OFF, blocked, active).
    fn set_status(&self, q: &Queue, status: QueueStatus) -> Result<(), ErrorType>;
    /// Record the day the queue was used.
    fn update_time(&self, q: &Queue, day: i64) -> Result<(), ErrorType>;
    /// Delete the queue and its messages; returns the record and the number of messages.
    fn delete_queue(&self, q: &Queue) -> Result<(QueueRec, usize), ErrorType>;
    /// Append a message, applying the quota rules of the reference. `was_empty` is the core's
    /// only signal to deliver: it delivers the message that made the queue non-empty, and the
    /// next one on ACK, so a subscriber has at most one unacknowledged message.
    fn write_msg(&self, q: &Queue, msg: Message, quota: usize) -> Result<WriteResult, ErrorType>;
    /// The oldest message.
    fn peek_msg(&self, q: &Queue) -> Result<Option<Message>, ErrorType>;
    /// Delete the oldest message if it has this ID; returns it.
    fn del_msg(&self, q: &Queue, msg_id: &[u8]) -> Result<Option<Message>, ErrorType>;
    /// Delete the oldest message if it has this ID and peek the next one, atomically.
    fn del_peek_msg(
        &self,
        q: &Queue,
        msg_id: &[u8],
    ) -> Result<(Option<Message>, Option<Message>), ErrorType>;
    /// Number of stored messages (quota marker included).
    fn queue_size(&self, q: &Queue) -> Result<usize, ErrorType>;
    /// Delete messages older than `before` (Unix seconds); returns how many.
    fn delete_expired(&self, q: &Queue, before: i64) -> Result<usize, ErrorType>;
    /// All queues (for expiration and statistics).
    fn all_queues(&self) -> Vec<QueueRef>;
    /// Delete messages older than `before` in every queue; returns how many. A store that
    /// keeps queues outside memory overrides it to do the work where the queues are.
    fn expire_messages(&self, before: i64) -> usize {
        self.all_queues()
            .iter()
            .map(|q| self.delete_expired(q, before).unwrap_or(0))
            .sum()
    }
    /// (queues, queues with a notifier), for statistics.
    fn count_queues(&self) -> (usize, usize) {
        let (mut queues, mut notifiers) = (0, 0);
        for q in self.all_queues() {
            let s = q.lock();
            if !s.deleted() {
                queues += 1;
                notifiers += usize::from(s.rec.notifier.is_some());
            }
        }
        (queues, notifiers)
    }
    /// Stored messages (quota markers not counted), for statistics.
    fn count_messages(&self) -> usize {
        self.all_queues()
            .iter()
            .map(|q| {
                q.lock()
                    .msgs
                    .iter()
                    .filter(|m| matches!(m, Message::Msg { .. }))
                    .count()
            })
            .sum()
    }
    /// The services kept with this store's queues, when the store keeps them itself (the
    /// database); `None`: the server keeps them beside the store (in memory, with the store log).
    fn services(&self) -> Option<Arc<services::ServiceStore>> {
        None
    }
    /// Block or unblock: convenience over [`Store::set_status`].
    fn block_queue(&self, q: &Queue, info: Option<BlockingInfo>) -> Result<(), ErrorType> {
        self.set_status(
            q,
            match info {
                Some(i) => QueueStatus::Blocked(Box::new(i)),
                None => QueueStatus::Active,
            },
        )
    }
}

/// Durability hooks for queue records (the store log). Called after the in-memory change
/// succeeded and before the command is answered; an error is answered as `STORE`/`INTERNAL`.
pub trait QueueLog: Send + Sync + 'static {
    /// A queue was created.
    fn created(&self, rec: &QueueRec) -> Result<(), ErrorType>;
    /// A queue record changed (secure, keys, link, notifier, status, time): the new record.
    fn updated(&self, old: &QueueRec, new: &QueueRec) -> Result<(), ErrorType>;
    /// A queue was deleted.
    fn deleted(&self, recipient_id: &[u8]) -> Result<(), ErrorType>;
}

/// Durability hooks for messages (the message journal). `written` must make the message durable
/// (per the configured fsync policy) before SEND is answered `OK`.
pub trait MessageLog: Send + Sync + 'static {
    /// A message was appended to a queue.
    fn written(&self, recipient_id: &[u8], msg: &Message) -> Result<(), ErrorType>;
    /// The oldest message(s) of a queue were removed, up to and including `msg_id`.
    fn removed(&self, recipient_id: &[u8], msg_id: &[u8]) -> Result<(), ErrorType>;
    /// All messages of a queue are gone (queue deleted).
    fn cleared(&self, recipient_id: &[u8]) -> Result<(), ErrorType>;
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every idle queue keeps one `Queue` in memory: these sizes are what an operator pays per
    /// queue (see docs/benchmarks.md), so growing them should be a decision, not an accident.
    #[test]
    fn queue_handles_stay_compact() {
        let sizes = [
            ("PublicKey", std::mem::size_of::<PublicKey>()),
            ("RecipientKeys", std::mem::size_of::<RecipientKeys>()),
            ("IdKey", std::mem::size_of::<IdKey>()),
            ("QueueBody", std::mem::size_of::<QueueBody>()),
            ("QueueRec", std::mem::size_of::<QueueRec>()),
            ("Queue", std::mem::size_of::<Queue>()),
            // a `QueueRef` allocation: the queue after triomphe's one reference count; glibc
            // adds 8 bytes and rounds to 16, so 232 is a 240-byte chunk (one byte more, 256)
            (
                "QueueRef allocation",
                std::mem::size_of::<Queue>() + std::mem::size_of::<usize>(),
            ),
        ];
        let limits = [40, 40, 32, 152, 216, 224, 232];
        for ((name, size), limit) in sizes.iter().zip(limits) {
            assert!(*size <= limit, "{name} is {size} bytes, more than {limit}");
        }
    }

    /// The 4-byte last-use day keeps every value a store log or database can hold until 2106,
    /// and reads anything else as unknown rather than as a wrong day.
    #[test]
    fn updated_at_keeps_days_until_2106() {
        for t in [86_400, 1_699_920_000, 4_294_944_000] {
            assert_eq!(UpdatedAt::from(Some(t)).get(), Some(t));
        }
        for t in [None, Some(0), Some(-86_400), Some(4_294_967_296)] {
            assert_eq!(UpdatedAt::from(t), UpdatedAt::NONE, "{t:?}");
            assert_eq!(UpdatedAt::from(t).get(), None);
        }
        assert_eq!(
            format!("{:?}", UpdatedAt::from(Some(86_400))),
            "Some(86400)"
        );
    }
}
