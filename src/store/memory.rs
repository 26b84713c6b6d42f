//! The in-memory store: hash maps from each ID to the queue handle.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::RwLock;

use super::{
    IdKey, Message, NtfCreds, Queue, QueueRec, QueueRef, QueueState, QueueStatus, Store,
    WriteResult,
};
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{Party, QueueLinkData};
use crate::protocol::errors::ErrorType;

/// The indexes' hasher: foldhash seeded per process. IDs may be chosen by clients (sender and
/// link IDs), so the hash must be keyed, but SipHash cost a tenth of a million-queue restore.
type Hasher = foldhash::fast::RandomState;

type Index = RwLock<HashMap<IdKey, QueueRef, Hasher>>;

/// A queue handle as a set member keyed by one of its own (immutable) IDs: an index then costs
/// one pointer per queue instead of a copy of the ID and a pointer.
macro_rules! handle_key {
    ($name:ident, $field:ident) => {
        #[derive(Debug)]
        struct $name(QueueRef);

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.$field().hash(state)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.$field() == other.0.$field()
            }
        }

        impl Eq for $name {}

        impl std::borrow::Borrow<[u8]> for $name {
            fn borrow(&self) -> &[u8] {
                self.0.$field()
            }
        }
    };
}

handle_key!(ByRecipient, recipient_id);
handle_key!(BySender, sender_id);

/// Queues and messages in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    recipients: RwLock<HashSet<ByRecipient, Hasher>>,
    senders: RwLock<HashSet<BySender, Hasher>>,
    notifiers: Index,
    links: Index,
}

fn read<T>(i: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    i.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(i: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    i.write().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` on a live queue's state, `AUTH` if it was deleted.
fn live<T>(
    q: &Queue,
    f: impl FnOnce(&mut QueueState) -> Result<T, ErrorType>,
) -> Result<T, ErrorType> {
    let mut s = q.lock();
    if s.deleted() {
        return Err(ErrorType::Auth);
    }
    f(&mut s)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make room for `n` more queues in the recipient and sender indexes, so a restore of a
    /// known number of queues does not rehash them as the tables grow.
    pub fn reserve(&self, n: usize) {
        write(&self.recipients).reserve(n);
        write(&self.senders).reserve(n);
    }

    /// Call `f` with every queue and its state, in one pass under the recipient index's read
    /// lock (a pass over a million queues without taking a handle of each costs a third as
    /// much). A queue whose lock is held elsewhere is not waited for but returned, for the
    /// caller to visit after.
    pub fn scan(&self, mut f: impl FnMut(&QueueRef, &QueueState)) -> Vec<QueueRef> {
        let mut busy = Vec::new();
        for h in read(&self.recipients).iter() {
            match h.0.try_lock() {
                Some(s) => f(&h.0, &s),
                None => busy.push(h.0.clone()),
            }
        }
        busy
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        read(&self.recipients).len()
    }
}

impl Store for MemoryStore {
    fn add_queue(&self, rec: QueueRec) -> Result<QueueRef, ErrorType> {
        // Lock order for the indexes: recipients, senders, notifiers, links.
        let mut r = write(&self.recipients);
        let mut s = write(&self.senders);
        let mut n = write(&self.notifiers);
        let mut l = write(&self.links);
        let taken = r.contains(&rec.recipient_id[..])
            || s.contains(&rec.sender_id[..])
            || rec
                .notifier
                .as_ref()
                .is_some_and(|c| n.contains_key(&c.notifier_id[..]))
            || rec
                .queue_data
                .as_deref()
                .is_some_and(|(lid, _)| l.contains_key(&lid[..]));
        if taken {
            return Err(ErrorType::Duplicate);
        }
        let nid = rec.notifier.as_ref().map(|c| IdKey::new(&c.notifier_id));
        let lid = rec.queue_data.as_deref().map(|(lid, _)| IdKey::new(lid));
        let q = QueueRef::new(Queue::new(rec));
        r.insert(ByRecipient(q.clone()));
        s.insert(BySender(q.clone()));
        if let Some(nid) = nid {
            n.insert(nid, q.clone());
        }
        if let Some(lid) = lid {
            l.insert(lid, q.clone());
        }
        Ok(q)
    }

    fn get_queue(&self, party: Party, id: &[u8]) -> Option<QueueRef> {
        let idx = match party {
            Party::Recipient => return read(&self.recipients).get(id).map(|q| q.0.clone()),
            Party::Sender => return read(&self.senders).get(id).map(|q| q.0.clone()),
            Party::Notifier => &self.notifiers,
            Party::LinkClient => &self.links,
            _ => return None,
        };
        read(idx).get(id).cloned()
    }

    fn secure_queue(&self, q: &Queue, key: PublicKey) -> Result<(), ErrorType> {
        live(q, |s| match &s.rec.sender_key {
            Some(k) if *k == key => Ok(()),
            Some(_) => Err(ErrorType::Auth),
            None => {
                s.rec.sender_key = Some(key);
                Ok(())
            }
        })
    }

    fn update_keys(&self, q: &Queue, keys: Vec<PublicKey>) -> Result<(), ErrorType> {
        live(q, |s| {
            s.rec.recipient_keys = keys.into();
            Ok(())
        })
    }

    fn add_link(&self, q: &Queue, link_id: Vec<u8>, data: QueueLinkData) -> Result<(), ErrorType> {
        let mut l = write(&self.links);
        live(q, |s| {
            match s.rec.queue_data.as_deref() {
                None => {
                    if l.contains_key(&link_id[..]) {
                        return Err(ErrorType::Auth);
                    }
                }
                Some((lid, d)) if *lid == link_id && d.0 == data.0 => {}
                Some(_) => return Err(ErrorType::Auth),
            }
            s.rec.queue_data = Some(Box::new((link_id.clone(), data)));
            Ok(())
        })?;
        if let Some(h) = read(&self.recipients).get(q.recipient_id()) {
            l.insert(IdKey::new(&link_id), h.0.clone());
        }
        Ok(())
    }

    fn delete_link(&self, q: &Queue) -> Result<(), ErrorType> {
        let old = live(q, |s| Ok(s.rec.queue_data.take()))?;
        if let Some((lid, _)) = old.as_deref() {
            write(&self.links).remove(&lid[..]);
        }
        Ok(())
    }

    fn get_link(&self, q: &Queue, link_id: &[u8]) -> Result<QueueLinkData, ErrorType> {
        live(q, |s| match s.rec.queue_data.as_deref() {
            Some((lid, d)) if lid == link_id => Ok(d.clone()),
            _ => Err(ErrorType::Auth),
        })
    }

    fn add_notifier(&self, q: &Queue, creds: NtfCreds) -> Result<Option<NtfCreds>, ErrorType> {
        let mut n = write(&self.notifiers);
        if n.contains_key(&creds.notifier_id[..]) {
            return Err(ErrorType::Duplicate);
        }
        let new_id = IdKey::new(&creds.notifier_id);
        let old = live(q, |s| Ok(s.rec.notifier.replace(Box::new(creds))))?;
        if let Some(o) = &old {
            n.remove(&o.notifier_id[..]);
        }
        if let Some(h) = read(&self.recipients).get(q.recipient_id()) {
            n.insert(new_id, h.0.clone());
        }
        Ok(old.map(|o| *o))
    }

    fn delete_notifier(&self, q: &Queue) -> Result<Option<NtfCreds>, ErrorType> {
        let old = live(q, |s| Ok(s.rec.notifier.take()))?;
        if let Some(o) = &old {
            write(&self.notifiers).remove(&o.notifier_id[..]);
        }
        Ok(old.map(|o| *o))
    }

    fn set_status(&self, q: &Queue, status: QueueStatus) -> Result<(), ErrorType> {
        live(q, |s| {
            s.rec.status = status;
            Ok(())
        })
    }

    fn update_time(&self, q: &Queue, day: i64) -> Result<(), ErrorType> {
        live(q, |s| {
            s.rec.updated_at = Some(day).into();
            Ok(())
        })
    }

    fn delete_queue(&self, q: &Queue) -> Result<(QueueRec, usize), ErrorType> {
        let mut r = write(&self.recipients);
        let mut sn = write(&self.senders);
        let mut n = write(&self.notifiers);
        let mut l = write(&self.links);
        let (rec, count) = live(q, |s| {
            s.set_deleted();
            let count = s.msgs.take().len();
            Ok((q.record(&s.rec), count))
        })?;
        r.remove(&rec.recipient_id[..]);
        sn.remove(&rec.sender_id[..]);
        if let Some(c) = &rec.notifier {
            n.remove(&c.notifier_id[..]);
        }
        if let Some((lid, _)) = rec.queue_data.as_deref() {
            l.remove(&lid[..]);
        }
        Ok((rec, count))
    }

    fn write_msg(&self, q: &Queue, msg: Message, quota: usize) -> Result<WriteResult, ErrorType> {
        live(q, |s| {
            let mut can_write = s.can_write();
            let (r, _) = s.msgs.with_mut(|m| push_msg(m, &mut can_write, msg, quota));
            s.set_can_write(can_write);
            Ok(r)
        })
    }

    fn peek_msg(&self, q: &Queue) -> Result<Option<Message>, ErrorType> {
        live(q, |s| Ok(s.msgs.front().cloned()))
    }

    fn del_msg(&self, q: &Queue, msg_id: &[u8]) -> Result<Option<Message>, ErrorType> {
        live(q, |s| Ok(s.msgs.with_mut(|m| pop_msg(m, msg_id))))
    }

    fn del_peek_msg(
        &self,
        q: &Queue,
        msg_id: &[u8],
    ) -> Result<(Option<Message>, Option<Message>), ErrorType> {
        live(q, |s| Ok(s.msgs.with_mut(|m| pop_peek_msg(m, msg_id))))
    }

    fn queue_size(&self, q: &Queue) -> Result<usize, ErrorType> {
        live(q, |s| Ok(s.msgs.len()))
    }

    fn delete_expired(&self, q: &Queue, before: i64) -> Result<usize, ErrorType> {
        live(q, |s| Ok(s.msgs.with_mut(|m| pop_expired(m, before).len())))
    }

    fn all_queues(&self) -> Vec<QueueRef> {
        read(&self.recipients).iter().map(|q| q.0.clone()).collect()
    }

    fn count_messages(&self) -> usize {
        let msgs = |s: &QueueState| {
            s.msgs
                .iter()
                .filter(|m| matches!(m, Message::Msg { .. }))
                .count()
        };
        let mut n = 0;
        for q in self.scan(|_, s| n += msgs(s)) {
            n += msgs(&q.lock());
        }
        n
    }

    fn count_queues(&self) -> (usize, usize) {
        // A deleted queue leaves every index, and the notifier index holds exactly the queues
        // with a notifier: the sizes are the counts, without a pass over a million queues.
        (read(&self.recipients).len(), read(&self.notifiers).len())
    }
}

/// Append a message with the reference's quota rules (shared by every store that keeps
/// messages in memory). Returns the result and whether anything (the message or a quota
/// marker) was appended; `can_write` is false after the marker, until the queue empties.
pub(crate) fn push_msg(
    msgs: &mut VecDeque<Message>,
    can_write: &mut bool,
    msg: Message,
    quota: usize,
) -> (WriteResult, bool) {
    let empty = msgs.is_empty();
    if !(*can_write || empty) {
        return (WriteResult::Quota, false);
    }
    // The marker takes the place of the message that would exceed the quota, so a full
    // queue holds `quota` messages and one marker.
    *can_write = msgs.len() < quota;
    if *can_write {
        msgs.push_back(msg);
        (WriteResult::Stored { was_empty: empty }, true)
    } else {
        let marker = Message::Quota {
            msg_id: msg.msg_id().to_vec(),
            ts: msg.ts(),
        };
        msgs.push_back(marker);
        (WriteResult::Quota, true)
    }
}

/// Remove the oldest message if it has this ID (ACK).
pub(crate) fn pop_msg(msgs: &mut VecDeque<Message>, msg_id: &[u8]) -> Option<Message> {
    if msgs.front().is_some_and(|m| m.msg_id() == msg_id) {
        msgs.pop_front()
    } else {
        None
    }
}

/// Remove the oldest message if it has this ID and peek the next: (removed, next). When the
/// oldest has another ID, nothing is removed and it is returned as the next.
pub(crate) fn pop_peek_msg(
    msgs: &mut VecDeque<Message>,
    msg_id: &[u8],
) -> (Option<Message>, Option<Message>) {
    match msgs.front() {
        None => (None, None),
        Some(m) if m.msg_id() == msg_id => {
            let d = msgs.pop_front();
            (d, msgs.front().cloned())
        }
        Some(m) => (None, Some(m.clone())),
    }
}

/// Remove the messages older than `before` (Unix seconds) from the head; returns them.
pub(crate) fn pop_expired(msgs: &mut VecDeque<Message>, before: i64) -> Vec<Message> {
    let mut gone = Vec::new();
    while msgs.front().is_some_and(|m| m.ts() < before) {
        gone.extend(msgs.pop_front());
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::KeyAlgorithm;
    use crate::protocol::command::MsgFlags;
    use crate::store::QueueBody;

    fn rec(rid: u8) -> QueueRec {
        QueueRec {
            recipient_id: vec![rid; 24].into(),
            sender_id: vec![rid + 100; 24].into(),
            body: QueueBody::new(
                PublicKey::from_raw(KeyAlgorithm::Ed25519, &[1; 32]).expect("k"),
                [0; 32],
                None,
            ),
        }
    }

    fn msg(i: u8) -> Message {
        Message::Msg {
            msg_id: vec![i; 24],
            ts: i as i64,
            flags: MsgFlags::default(),
            body: vec![i],
        }
    }

    #[test]
    fn quota_marker_and_reopening() {
        let st = MemoryStore::new();
        let q = st.add_queue(rec(1)).expect("add");
        assert_eq!(
            st.write_msg(&q, msg(1), 2).expect("w"),
            WriteResult::Stored { was_empty: true }
        );
        assert_eq!(
            st.write_msg(&q, msg(2), 2).expect("w"),
            WriteResult::Stored { was_empty: false }
        );
        assert_eq!(st.write_msg(&q, msg(3), 2).expect("w"), WriteResult::Quota);
        assert_eq!(st.write_msg(&q, msg(4), 2).expect("w"), WriteResult::Quota);
        assert_eq!(st.queue_size(&q).expect("s"), 3);
        for i in [1u8, 2, 3] {
            let (d, _) = st.del_peek_msg(&q, &[i; 24]).expect("d");
            assert!(d.is_some());
        }
        // empty again: writing resumes
        assert_eq!(
            st.write_msg(&q, msg(5), 2).expect("w"),
            WriteResult::Stored { was_empty: true }
        );
    }

    #[test]
    fn queue_counts_follow_notifiers_and_deletions() {
        let st = MemoryStore::new();
        let qs: Vec<_> = (1..=5)
            .map(|i| st.add_queue(rec(i)).expect("add"))
            .collect();
        let ntf = |i: u8| NtfCreds {
            notifier_id: vec![i + 50; 24],
            notifier_key: PublicKey::from_raw(KeyAlgorithm::Ed25519, &[2; 32]).expect("k"),
            rcv_ntf_dh_secret: [3; 32],
        };
        for (i, q) in qs.iter().enumerate().take(3) {
            st.add_notifier(q, ntf(i as u8)).expect("ntf");
        }
        // replacing a notifier keeps one per queue
        st.add_notifier(&qs[0], ntf(40)).expect("replace");
        st.delete_notifier(&qs[1]).expect("delete ntf");
        st.delete_queue(&qs[2]).expect("delete with ntf");
        st.delete_queue(&qs[3]).expect("delete");
        let slow = st
            .all_queues()
            .iter()
            .map(|q| q.lock())
            .filter(|s| !s.deleted())
            .fold((0, 0), |(a, b), s| {
                (a + 1, b + usize::from(s.rec.notifier.is_some()))
            });
        assert_eq!(slow, (3, 1));
        assert_eq!(st.count_queues(), slow);
    }

    #[test]
    fn scan_passes_over_a_locked_queue_and_hands_it_back() {
        let st = MemoryStore::new();
        let qs: Vec<_> = (1..=4)
            .map(|i| st.add_queue(rec(i)).expect("add"))
            .collect();
        for (i, q) in qs.iter().enumerate() {
            for m in 0..=i as u8 {
                st.write_msg(q, msg(m + 10 * i as u8), 10).expect("w");
            }
        }
        let held = qs[2].lock();
        let mut seen = Vec::new();
        let busy = st.scan(|q, s| seen.push((q.recipient_id().to_vec(), s.msgs.len())));
        drop(held);
        seen.sort();
        assert_eq!(
            seen,
            vec![(vec![1; 24], 1), (vec![2; 24], 2), (vec![4; 24], 4)]
        );
        assert_eq!(busy.len(), 1);
        assert!(QueueRef::ptr_eq(&busy[0], &qs[2]));
        // the fast count agrees with a pass that locks every queue
        let slow: usize = st.all_queues().iter().map(|q| q.lock().msgs.len()).sum();
        assert_eq!((st.count_messages(), slow), (10, 10));
    }

    /// IDs of any length come back as given (the inline and the boxed layout), and the
    /// indexes find the queue by them.
    #[test]
    fn short_and_long_ids_are_kept_exactly() {
        let st = MemoryStore::new();
        for (rid, sid) in [
            (vec![7u8; 24], vec![8u8; 24]),
            (vec![9u8; 3], vec![10u8; 0]),
            (vec![11u8; 40], vec![12u8; 24]),
            (vec![13u8; 24], vec![14u8; 25]),
        ] {
            let mut r = rec(1);
            r.recipient_id = rid.clone().into();
            r.sender_id = sid.clone().into();
            let q = st.add_queue(r.clone()).expect("add");
            assert_eq!((q.recipient_id(), q.sender_id()), (&rid[..], &sid[..]));
            assert_eq!(q.rec().expect("rec"), r);
            let found = st.get_queue(Party::Sender, &sid).expect("by sender ID");
            assert!(QueueRef::ptr_eq(&found, &q));
            st.delete_queue(&q).expect("delete");
        }
    }

    /// The quota and deleted flags live in the message buffer: an idle queue has none, a
    /// full one keeps its flag until it empties, and a deleted one stays deleted.
    #[test]
    fn queue_flags_follow_the_messages() {
        let st = MemoryStore::new();
        let q = st.add_queue(rec(1)).expect("add");
        let idle = |q: &Queue| q.lock().msgs.0.is_none();
        assert!(idle(&q) && q.lock().can_write() && !q.lock().deleted());
        st.write_msg(&q, msg(1), 1).expect("w");
        assert_eq!(st.write_msg(&q, msg(2), 1).expect("w"), WriteResult::Quota);
        assert!(!q.lock().can_write());
        // the marker is acknowledged after the message: the queue is writable and idle again
        st.del_msg(&q, &[1; 24]).expect("ack");
        assert!(!q.lock().can_write(), "the marker is still there");
        st.del_msg(&q, &[2; 24]).expect("ack marker");
        assert!(q.lock().can_write() && idle(&q));
        q.lock().set_can_write(true);
        assert!(idle(&q), "nothing allocated for the default");
        st.write_msg(&q, msg(3), 1).expect("w");
        st.delete_queue(&q).expect("delete");
        let s = q.lock();
        assert!(s.deleted() && s.msgs.is_empty() && s.can_write());
    }

    #[test]
    fn duplicate_ids_and_delete() {
        let st = MemoryStore::new();
        let q = st.add_queue(rec(1)).expect("add");
        assert_eq!(st.add_queue(rec(1)).err(), Some(ErrorType::Duplicate));
        assert!(st.get_queue(Party::Sender, &[101; 24]).is_some());
        st.delete_queue(&q).expect("del");
        assert!(st.get_queue(Party::Recipient, &[1; 24]).is_none());
        assert!(st.get_queue(Party::Sender, &[101; 24]).is_none());
        assert_eq!(st.peek_msg(&q).err(), Some(ErrorType::Auth));
    }

    #[test]
    fn ids_of_any_length_are_indexed_and_found_by_slice() {
        let st = MemoryStore::new();
        // 24-byte IDs are kept inline, longer ones (foreign store logs) boxed.
        let mut long = rec(2);
        long.recipient_id = vec![9; 33].into();
        long.sender_id = vec![8; 7].into();
        st.add_queue(rec(1)).expect("add");
        st.add_queue(long).expect("add long");
        assert!(st.get_queue(Party::Recipient, &[9; 33]).is_some());
        assert!(st.get_queue(Party::Sender, &[8; 7]).is_some());
        assert!(st.get_queue(Party::Recipient, &[9; 24]).is_none());
        assert!(st.get_queue(Party::Sender, &[8; 8]).is_none());
        assert!(st.get_queue(Party::Recipient, &[1; 24]).is_some());
        assert_eq!(IdKey::new(&[3; 24]), IdKey::new(&[3; 24]));
        assert_ne!(IdKey::new(&[3; 24]), IdKey::new(&[3; 25]));
        assert!(std::mem::size_of::<IdKey>() <= 32);
    }

    #[test]
    fn secure_is_idempotent_with_same_key_only() {
        let st = MemoryStore::new();
        let q = st.add_queue(rec(1)).expect("add");
        let k1 = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[2; 32]).expect("k");
        let k2 = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[3; 32]).expect("k");
        st.secure_queue(&q, k1.clone()).expect("secure");
        st.secure_queue(&q, k1).expect("same key again");
        assert_eq!(st.secure_queue(&q, k2).err(), Some(ErrorType::Auth));
    }
}
