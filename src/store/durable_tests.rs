//! DurableStore: logs are called after each change, and a failing log leaves memory unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;
use crate::crypto::keys::KeyAlgorithm;
use crate::protocol::command::MsgFlags;
use crate::store::QueueBody;

#[derive(Default)]
struct Recorder {
    fail: AtomicBool,
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn check(&self, what: String) -> Result<(), ErrorType> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(ErrorType::Store("log write failed".into()));
        }
        self.calls.lock().expect("lock").push(what);
        Ok(())
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

impl QueueLog for Recorder {
    fn created(&self, rec: &QueueRec) -> Result<(), ErrorType> {
        self.check(format!("created {}", rec.recipient_id[0]))
    }
    fn updated(&self, _old: &QueueRec, new: &QueueRec) -> Result<(), ErrorType> {
        self.check(format!("updated {}", new.recipient_id[0]))
    }
    fn deleted(&self, rid: &[u8]) -> Result<(), ErrorType> {
        self.check(format!("deleted {}", rid[0]))
    }
}

impl MessageLog for Recorder {
    fn written(&self, rid: &[u8], msg: &Message) -> Result<(), ErrorType> {
        self.check(format!("written {} {}", rid[0], msg.msg_id()[0]))
    }
    fn removed(&self, rid: &[u8], msg_id: &[u8]) -> Result<(), ErrorType> {
        self.check(format!("removed {} {}", rid[0], msg_id[0]))
    }
    fn cleared(&self, rid: &[u8]) -> Result<(), ErrorType> {
        self.check(format!("cleared {}", rid[0]))
    }
}

fn key(b: u8) -> PublicKey {
    PublicKey::from_raw(KeyAlgorithm::Ed25519, &[b; 32]).expect("key")
}

fn rec(rid: u8) -> QueueRec {
    QueueRec {
        recipient_id: vec![rid; 24].into(),
        sender_id: vec![rid + 100; 24].into(),
        body: QueueBody::new(key(1), [0; 32], None),
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

fn setup() -> (Arc<Recorder>, Arc<Recorder>, DurableStore) {
    let ql = Arc::new(Recorder::default());
    let ml = Arc::new(Recorder::default());
    let qd: Arc<dyn QueueLog> = ql.clone();
    let md: Arc<dyn MessageLog> = ml.clone();
    (
        ql,
        ml,
        DurableStore::new(MemoryStore::new(), Some(qd), Some(md)),
    )
}

#[test]
fn every_mutation_is_logged_in_order() {
    let (ql, ml, st) = setup();
    let q = st.add_queue(rec(1)).expect("add");
    st.secure_queue(&q, key(2)).expect("secure");
    // same key again: nothing changes, nothing is logged
    st.secure_queue(&q, key(2)).expect("secure again");
    st.update_time(&q, 86400).expect("time");
    st.write_msg(&q, msg(7), 10).expect("write");
    st.del_msg(&q, &[7; 24]).expect("del");
    st.delete_queue(&q).expect("delete");
    assert_eq!(
        ql.calls(),
        vec!["created 1", "updated 1", "updated 1", "deleted 1"]
    );
    assert_eq!(ml.calls(), vec!["written 1 7", "removed 1 7", "cleared 1"]);
}

#[test]
fn failed_create_is_rolled_back() {
    let (ql, _ml, st) = setup();
    ql.fail.store(true, Ordering::SeqCst);
    assert!(matches!(st.add_queue(rec(1)), Err(ErrorType::Store(_))));
    assert!(st.get_queue(Party::Recipient, &[1; 24]).is_none());
    assert!(st.get_queue(Party::Sender, &[101; 24]).is_none());
    ql.fail.store(false, Ordering::SeqCst);
    st.add_queue(rec(1)).expect("the IDs are free again");
}

#[test]
fn failed_updates_restore_the_record_and_indexes() {
    let (ql, _ml, st) = setup();
    let q = st.add_queue(rec(1)).expect("add");
    let before = q.rec().expect("rec");
    ql.fail.store(true, Ordering::SeqCst);
    assert!(st.secure_queue(&q, key(2)).is_err());
    assert!(st.update_keys(&q, vec![key(3)]).is_err());
    assert!(st.set_status(&q, QueueStatus::Off).is_err());
    let creds = NtfCreds {
        notifier_id: vec![9; 24],
        notifier_key: key(4),
        rcv_ntf_dh_secret: [5; 32],
    };
    assert!(st.add_notifier(&q, creds).is_err());
    assert!(st
        .add_link(&q, vec![8; 24], (b"fixed".to_vec(), b"user".to_vec()))
        .is_err());
    assert_eq!(q.rec().expect("rec"), before);
    assert!(st.get_queue(Party::Notifier, &[9; 24]).is_none());
    assert!(st.get_queue(Party::LinkClient, &[8; 24]).is_none());
}

#[test]
fn failed_delete_keeps_the_queue() {
    let (ql, _ml, st) = setup();
    let q = st.add_queue(rec(1)).expect("add");
    st.write_msg(&q, msg(1), 10).expect("write");
    ql.fail.store(true, Ordering::SeqCst);
    assert!(st.delete_queue(&q).is_err());
    assert!(st.get_queue(Party::Recipient, &[1; 24]).is_some());
    assert_eq!(st.queue_size(&q).expect("size"), 1);
}

#[test]
fn a_logged_delete_whose_journal_clear_fails_still_deletes() {
    let (ql, ml, st) = setup();
    let q = st.add_queue(rec(1)).expect("add");
    st.write_msg(&q, msg(1), 10).expect("write");
    ml.fail.store(true, Ordering::SeqCst);
    // The store log has the DELETE: after a restart the queue is gone, so it is gone now.
    st.delete_queue(&q)
        .expect("deleted although the journal Clear failed");
    assert!(st.get_queue(Party::Recipient, &[1; 24]).is_none());
    assert!(
        ql.calls().iter().any(|c| c.starts_with("deleted")),
        "{:?}",
        ql.calls()
    );
}

#[test]
fn failed_message_writes_and_removals_are_undone() {
    let (_ql, ml, st) = setup();
    let q = st.add_queue(rec(1)).expect("add");
    st.write_msg(&q, msg(1), 1).expect("write");
    ml.fail.store(true, Ordering::SeqCst);
    // the quota marker is not kept when it can't be logged; writing stays possible
    assert!(st.write_msg(&q, msg(2), 1).is_err());
    assert_eq!(st.queue_size(&q).expect("size"), 1);
    assert!(q.lock().can_write());
    // an unlogged ACK puts the message back
    assert!(st.del_msg(&q, &[1; 24]).is_err());
    assert_eq!(st.peek_msg(&q).expect("peek"), Some(msg(1)));
    assert!(st.delete_expired(&q, 100).is_err());
    assert_eq!(st.queue_size(&q).expect("size"), 1);
    ml.fail.store(false, Ordering::SeqCst);
    assert_eq!(st.delete_expired(&q, 100).expect("expire"), 1);
    assert_eq!(ml.calls(), vec!["written 1 1", "removed 1 1"]);
}

#[test]
fn without_logs_it_is_the_memory_store() {
    let st = DurableStore::new(MemoryStore::new(), None, None);
    let q = st.add_queue(rec(1)).expect("add");
    st.write_msg(&q, msg(1), 10).expect("write");
    assert_eq!(st.peek_msg(&q).expect("peek"), Some(msg(1)));
}

#[test]
fn expiry_pass_removes_only_old_messages_and_logs_each_queue_once() {
    let (_ql, ml, st) = setup();
    let qs: Vec<_> = (1..=3)
        .map(|i| st.add_queue(rec(i)).expect("add"))
        .collect();
    // queue 1: two old; queue 2: one old, one new; queue 3: new only
    for (q, ids) in qs.iter().zip([&[1u8, 2][..], &[3, 50], &[60]]) {
        for &i in ids {
            st.write_msg(q, msg(i), 10).expect("write");
        }
    }
    assert_eq!(st.count_messages(), 5);
    assert_eq!(st.expire_messages(10), 3);
    assert_eq!(st.count_messages(), 2);
    // one record per queue, naming its last expired message
    let mut removed: Vec<_> = ml
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("written"))
        .collect();
    removed.sort(); // the pass goes in the index's order
    assert_eq!(removed, vec!["removed 1 2", "removed 2 3"]);
    assert_eq!(st.expire_messages(10), 0);
}
