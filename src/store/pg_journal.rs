//! Queues in PostgreSQL, messages in the journal (`store_queues = database`,
//! `store_messages = journal`, the reference's `SQSPostgres` + `SMSJournal` pair).
//!
//! Every queue-record call goes to [`PgStore`]. Its handles are fresh snapshots per lookup, so
//! messages cannot live in them: they live here, in a map from recipient ID to the queue's
//! undelivered messages, made durable by the journal exactly as with the memory store:
//! a message is answered `OK` only after [`MessageLog::written`] returned (per the fsync
//! policy), an ACK or expiry is `removed`, a deleted queue is `cleared`. A failed journal write
//! undoes the change in memory and answers the journal's `STORE` error.
//!
//! Only queues with messages have an entry, so memory follows the undelivered messages, not
//! the queue count. An entry is created by the first message of an empty queue, after the
//! database confirmed the queue is live; creation, every message change and the queue's
//! deletion hold the queue's stripe lock, so a message can never be stored for a queue whose
//! deletion already passed (it would come back at start as an orphan).
//!
//! The database decides whether a queue exists: a deletion is committed there first, then its
//! messages are cleared from the journal. If that clear fails, the next start finds the queue
//! marked deleted in the database and clears its messages then.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use super::journal::{migrate, Journal, JournalError, OrphanPolicy, QueueSource};
use super::memory::{pop_expired, pop_msg, pop_peek_msg, push_msg, MemoryStore};
use super::postgres::db::DbError;
use super::postgres::PgStore;
use super::{
    Message, MessageLog, NtfCreds, Queue, QueueRec, QueueRef, QueueStatus, Store, WriteResult,
};
use crate::config::Config;
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{Party, QueueLinkData};
use crate::protocol::errors::ErrorType;

/// Stripes: locks serializing a queue's message changes, and shards of the message map.
const STRIPES: usize = 256;

/// A queue's undelivered messages.
#[derive(Debug)]
struct Held {
    msgs: VecDeque<Message>,
    /// False after the quota marker was written, until the queue empties.
    can_write: bool,
}

type Shard = Mutex<HashMap<Vec<u8>, Held>>;

/// Why the store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The journal could not be read, or its messages would lose their queues.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The database could not be read.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The database's own messages table is not empty: they would not be delivered.
    #[error("{0}")]
    Refused(String),
}

/// The database+journal store.
pub struct PgJournalStore {
    pg: Arc<PgStore>,
    log: Arc<dyn MessageLog>,
    stripes: Vec<Mutex<()>>,
    shards: Vec<Shard>,
}

impl std::fmt::Debug for PgJournalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournalStore")
            .field("pg", &self.pg)
            .finish()
    }
}

fn index(rid: &[u8]) -> usize {
    let mut h = DefaultHasher::new();
    rid.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `AUTH` for a handle whose queue this server already deleted.
fn check_live(q: &Queue) -> Result<(), ErrorType> {
    if q.lock().deleted() {
        Err(ErrorType::Auth)
    } else {
        Ok(())
    }
}

impl PgJournalStore {
    /// A store over `pg` whose messages are logged to `log`, starting with no messages.
    pub fn new(pg: Arc<PgStore>, log: Arc<dyn MessageLog>) -> Self {
        PgJournalStore {
            pg,
            log,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            shards: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Open at start: read the journal, look its queues up in the database, set orphans aside
    /// (or refuse, as with the store log: see `journal::orphans`), and restore the messages.
    pub fn open(config: &Config, pg: Arc<PgStore>) -> Result<(Self, Arc<Journal>), OpenError> {
        let in_db = super::postgres::transfer::count_messages(pg.db())?;
        if in_db > 0 {
            return Err(OpenError::Refused(format!(
                "store_messages = journal, but the database's messages table holds {in_db} \
                 messages, which this setting would never deliver. Nothing was changed. Move them \
                 to the journal: `smp-server database export --table messages`, then \
                 `smp-server journal import` (or set store_messages = database)."
            )));
        }
        let (mut journal, replay) = migrate::open_for_database(config)?;
        let found =
            super::postgres::journal_queues(pg.db(), replay.msgs.keys().cloned().collect())?;
        let mem = MemoryStore::new();
        for rec in found.live {
            // Distinct rows of the database: their IDs cannot collide.
            let _ = mem.add_queue(rec);
        }
        let policy = OrphanPolicy {
            deleted: &found.deleted,
            allow: config.start.allow_orphaned_messages,
            dir: config.paths.log_dir(),
            queues: QueueSource::Database,
        };
        let stats = journal.restore_into(&mem, replay, policy)?;
        migrate::log_restored(&journal, &stats);
        journal.start_compactor();
        let journal = Arc::new(journal);
        let st = PgJournalStore::new(pg, journal.clone());
        for q in mem.all_queues() {
            let mut s = q.lock();
            if !s.msgs.is_empty() {
                guard(st.shard(q.recipient_id())).insert(
                    q.recipient_id().to_vec(),
                    Held {
                        msgs: s.msgs.take(),
                        can_write: s.can_write(),
                    },
                );
            }
        }
        Ok((st, journal))
    }

    fn stripe(&self, rid: &[u8]) -> MutexGuard<'_, ()> {
        guard(&self.stripes[index(rid)])
    }

    fn shard(&self, rid: &[u8]) -> &Shard {
        &self.shards[index(rid)]
    }

    /// Run `f` on the queue's messages (an empty list if it has none); the entry goes when
    /// it is left empty. Callers that change messages hold the queue's stripe.
    fn with_msgs<T>(&self, rid: &[u8], f: impl FnOnce(&mut Held) -> T) -> T {
        let mut m = guard(self.shard(rid));
        if let Some(h) = m.get_mut(rid) {
            let r = f(h);
            if h.msgs.is_empty() {
                m.remove(rid);
            }
            return r;
        }
        let mut h = Held {
            msgs: VecDeque::new(),
            can_write: true,
        };
        let r = f(&mut h);
        if !h.msgs.is_empty() {
            m.insert(rid.to_vec(), h);
        }
        r
    }

    fn has_msgs(&self, rid: &[u8]) -> bool {
        guard(self.shard(rid)).contains_key(rid)
    }

    /// Put removed messages back at the head after a failed journal write.
    fn put_back(&self, rid: &[u8], removed: Vec<Message>) {
        self.with_msgs(rid, |h| {
            for m in removed.into_iter().rev() {
                h.msgs.push_front(m);
            }
        });
    }

    /// Log the removal of `removed` (oldest first), or put them back and fail.
    fn log_removed(&self, rid: &[u8], removed: Vec<Message>) -> Result<(), ErrorType> {
        let Some(last) = removed.last() else {
            return Ok(());
        };
        if let Err(e) = self.log.removed(rid, last.msg_id()) {
            self.put_back(rid, removed);
            return Err(e);
        }
        Ok(())
    }

    fn expire_queue(&self, rid: &[u8], before: i64) -> Result<usize, ErrorType> {
        let _g = self.stripe(rid);
        let gone = self.with_msgs(rid, |h| pop_expired(&mut h.msgs, before));
        let n = gone.len();
        self.log_removed(rid, gone)?;
        Ok(n)
    }
}

impl Store for PgJournalStore {
    fn add_queue(&self, rec: QueueRec) -> Result<QueueRef, ErrorType> {
        self.pg.add_queue(rec)
    }

    fn get_queue(&self, party: Party, id: &[u8]) -> Option<QueueRef> {
        self.pg.get_queue(party, id)
    }

    fn find_queue(&self, party: Party, id: &[u8]) -> Result<Option<QueueRef>, ErrorType> {
        self.pg.find_queue(party, id)
    }

    /// Queue lookups are the database's round trips: a block of SUBs looks its queues up in
    /// one query (the first messages are peeked here, in memory).
    fn batches_lookups(&self) -> bool {
        true
    }

    fn io_waits(&self) -> usize {
        self.pg.io_waits()
    }

    fn find_queues(&self, party: Party, ids: &[&[u8]]) -> Result<Vec<Option<QueueRef>>, ErrorType> {
        self.pg.find_queues(party, ids)
    }

    fn secure_queue(&self, q: &Queue, key: PublicKey) -> Result<(), ErrorType> {
        self.pg.secure_queue(q, key)
    }

    fn update_keys(&self, q: &Queue, keys: Vec<PublicKey>) -> Result<(), ErrorType> {
        self.pg.update_keys(q, keys)
    }

    fn add_link(&self, q: &Queue, link_id: Vec<u8>, data: QueueLinkData) -> Result<(), ErrorType> {
        self.pg.add_link(q, link_id, data)
    }

    fn delete_link(&self, q: &Queue) -> Result<(), ErrorType> {
        self.pg.delete_link(q)
    }

    fn get_link(&self, q: &Queue, link_id: &[u8]) -> Result<QueueLinkData, ErrorType> {
        self.pg.get_link(q, link_id)
    }

    fn add_notifier(&self, q: &Queue, creds: NtfCreds) -> Result<Option<NtfCreds>, ErrorType> {
        self.pg.add_notifier(q, creds)
    }

    fn delete_notifier(&self, q: &Queue) -> Result<Option<NtfCreds>, ErrorType> {
        self.pg.delete_notifier(q)
    }

    fn set_status(&self, q: &Queue, status: QueueStatus) -> Result<(), ErrorType> {
        self.pg.set_status(q, status)
    }

    fn update_times(&self, qs: &[&Queue], day: i64) -> Vec<Result<(), ErrorType>> {
        self.pg.update_times(qs, day)
    }

    fn update_time(&self, q: &Queue, day: i64) -> Result<(), ErrorType> {
        self.pg.update_time(q, day)
    }

    fn delete_queue(&self, q: &Queue) -> Result<(QueueRec, usize), ErrorType> {
        let rid: &[u8] = q.recipient_id();
        let _g = self.stripe(rid);
        let (rec, _) = self.pg.delete_queue(q)?;
        let held = guard(self.shard(rid)).remove(rid);
        let count = held.as_ref().map_or(0, |h| h.msgs.len());
        if held.is_some() {
            if let Err(e) = self.log.cleared(rid) {
                // Committed in the database, so the queue is gone; the next start clears its
                // messages from the journal (the database still lists it as deleted).
                tracing::warn!(
                    "a deleted queue's messages stay in the message journal until the next \
                     start ({e:?})"
                );
            }
        }
        Ok((rec, count))
    }

    fn write_msg(&self, q: &Queue, msg: Message, quota: usize) -> Result<WriteResult, ErrorType> {
        check_live(q)?;
        let rid = &q.recipient_id();
        let _g = self.stripe(rid);
        if !self.has_msgs(rid) {
            // The first message of an empty queue: the queue must still exist.
            self.pg.live_size(rid.to_vec())?.ok_or(ErrorType::Auth)?;
        }
        let (r, appended, prev) = self.with_msgs(rid, |h| {
            let prev = h.can_write;
            let (r, appended) = push_msg(&mut h.msgs, &mut h.can_write, msg, quota);
            (r, appended.then(|| h.msgs.back().cloned()).flatten(), prev)
        });
        if let Some(m) = appended {
            if let Err(e) = self.log.written(rid, &m) {
                self.with_msgs(rid, |h| {
                    h.msgs.pop_back();
                    h.can_write = prev;
                });
                return Err(e);
            }
        }
        Ok(r)
    }

    fn peek_msg(&self, q: &Queue) -> Result<Option<Message>, ErrorType> {
        check_live(q)?;
        Ok(guard(self.shard(q.recipient_id()))
            .get(q.recipient_id())
            .and_then(|h| h.msgs.front().cloned()))
    }

    fn del_msg(&self, q: &Queue, msg_id: &[u8]) -> Result<Option<Message>, ErrorType> {
        check_live(q)?;
        let rid = &q.recipient_id();
        let _g = self.stripe(rid);
        let d = self.with_msgs(rid, |h| pop_msg(&mut h.msgs, msg_id));
        self.log_removed(rid, d.iter().cloned().collect())?;
        Ok(d)
    }

    fn del_peek_msg(
        &self,
        q: &Queue,
        msg_id: &[u8],
    ) -> Result<(Option<Message>, Option<Message>), ErrorType> {
        check_live(q)?;
        let rid = &q.recipient_id();
        let _g = self.stripe(rid);
        let (d, next) = self.with_msgs(rid, |h| pop_peek_msg(&mut h.msgs, msg_id));
        self.log_removed(rid, d.iter().cloned().collect())?;
        Ok((d, next))
    }

    fn queue_size(&self, q: &Queue) -> Result<usize, ErrorType> {
        check_live(q)?;
        if let Some(h) = guard(self.shard(q.recipient_id())).get(q.recipient_id()) {
            return Ok(h.msgs.len());
        }
        // No messages: answer `AUTH` for a queue deleted meanwhile, as the other stores do.
        self.pg
            .live_size(q.recipient_id().to_vec())?
            .ok_or(ErrorType::Auth)?;
        Ok(0)
    }

    fn delete_expired(&self, q: &Queue, before: i64) -> Result<usize, ErrorType> {
        check_live(q)?;
        self.expire_queue(q.recipient_id(), before)
    }

    /// Every live queue with a copy of its messages: for tools (`journal export`); the server
    /// uses the aggregate methods below.
    fn all_queues(&self) -> Vec<QueueRef> {
        let qs = self.pg.all_queues();
        for q in &qs {
            if let Some(h) = guard(self.shard(q.recipient_id())).get(q.recipient_id()) {
                let mut s = q.lock();
                s.msgs.replace(h.msgs.clone());
                s.set_can_write(h.can_write);
            }
        }
        qs
    }

    fn expire_messages(&self, before: i64) -> usize {
        match self.pg.compact() {
            Ok(n) if n > 0 => tracing::info!("removed {n} old deleted queues from the database"),
            _ => {}
        }
        let mut n = 0;
        for shard in &self.shards {
            let rids: Vec<Vec<u8>> = guard(shard).keys().cloned().collect();
            for rid in rids {
                n += self.expire_queue(&rid, before).unwrap_or(0);
            }
        }
        n
    }

    fn count_queues(&self) -> (usize, usize) {
        self.pg.count_queues()
    }

    fn count_messages(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                guard(s)
                    .values()
                    .map(|h| {
                        h.msgs
                            .iter()
                            .filter(|m| matches!(m, Message::Msg { .. }))
                            .count()
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    fn services(&self) -> Option<Arc<super::services::ServiceStore>> {
        self.pg.services()
    }
}
