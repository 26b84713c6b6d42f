use std::io::Write;

use super::*;
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::protocol::command::MsgFlags;
use crate::store::memory::MemoryStore;
use crate::store::{QueueRec, QueueStatus};

fn rec(rid: u8) -> QueueRec {
    QueueRec {
        recipient_id: vec![rid; 24],
        recipient_keys: vec![PublicKey::from_raw(KeyAlgorithm::Ed25519, &[1; 32]).expect("k")],
        rcv_dh_secret: [0; 32],
        sender_id: vec![rid.wrapping_add(100); 24],
        sender_key: None,
        queue_mode: None,
        queue_data: None,
        notifier: None,
        status: QueueStatus::Active,
        updated_at: None,
    }
}

fn msg(q: u8, i: u16) -> Message {
    let mut id = vec![q; 24];
    id[..2].copy_from_slice(&i.to_le_bytes());
    Message::Msg {
        msg_id: id,
        ts: 1_700_000_000 + i64::from(i),
        flags: MsgFlags {
            notification: i % 2 == 0,
        },
        body: vec![q; 200],
    }
}

fn opts() -> JournalOptions {
    JournalOptions::new(JournalFsync::Always)
}

fn open(dir: &Path) -> (Journal, Replay) {
    Journal::open(dir, opts()).expect("open")
}

#[test]
fn messages_survive_reopen_and_acks_stick() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("messages");
    {
        let (j, r) = open(&dir);
        assert!(r.msgs.is_empty());
        for i in 0..10 {
            j.written(&[1; 24], &msg(1, i)).expect("w");
            j.written(&[2; 24], &msg(2, i)).expect("w");
        }
        j.removed(&[1; 24], msg(1, 4).msg_id()).expect("r");
        j.cleared(&[2; 24]).expect("c");
        j.written(
            &[1; 24],
            &Message::Quota {
                msg_id: vec![9; 24],
                ts: 5,
            },
        )
        .expect("quota");
    }
    let (j, r) = open(&dir);
    let q1 = &r.msgs[&vec![1u8; 24]];
    assert_eq!(q1.len(), 6);
    assert_eq!(q1[0], msg(1, 5));
    assert!(!r.msgs.contains_key(&vec![2u8; 24]));
    let store = MemoryStore::new();
    let q = store.add_queue(rec(1)).expect("add");
    let stats = j.restore_into(&store, r).expect("restore");
    assert_eq!(
        stats,
        RestoreStats {
            queues: 1,
            messages: 6,
            orphaned: 0
        }
    );
    let s = q.lock();
    assert_eq!(s.msgs.len(), 6);
    assert!(
        !s.can_write,
        "a queue ending in the quota marker stays closed"
    );
}

#[test]
fn orphaned_messages_are_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    {
        let (j, _) = open(&dir);
        j.written(&[3; 24], &msg(3, 1)).expect("w");
    }
    let (j, r) = open(&dir);
    let stats = j.restore_into(&MemoryStore::new(), r).expect("restore");
    assert_eq!(stats.orphaned, 1);
    drop(j);
    let (_, r) = open(&dir);
    assert!(r.msgs.is_empty());
}

fn only_shard_with_data(dir: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = (0..SHARDS)
        .map(|i| shard_path(dir, i))
        .filter(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > record::MAGIC.len() as u64)
        .collect();
    assert_eq!(found.len(), 1, "one queue writes one shard");
    found.remove(0)
}

#[test]
fn torn_tail_is_cut_off_with_the_messages_before_it_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    {
        let (j, _) = open(&dir);
        for i in 0..3 {
            j.written(&[1; 24], &msg(1, i)).expect("w");
        }
    }
    let path = only_shard_with_data(&dir);
    let good_len = std::fs::metadata(&path).expect("meta").len();
    // Half of a fourth record, as a crash in the middle of write(2) leaves it.
    let frame = record::encode_frame(&Record::Write {
        rid: vec![1; 24],
        msg: msg(1, 3),
    })
    .expect("frame");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(&frame[..frame.len() / 2]).expect("write");
    drop(f);
    let (j, r) = open(&dir);
    assert_eq!(r.msgs[&vec![1u8; 24]].len(), 3);
    assert_eq!(r.torn.len(), 1);
    assert_eq!(r.torn[0].offset, good_len);
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), good_len);
    // Appends continue after the cut.
    j.written(&[1; 24], &msg(1, 4)).expect("w");
    drop(j);
    let (_, r) = open(&dir);
    assert_eq!(r.msgs[&vec![1u8; 24]].len(), 4);
    assert!(r.torn.is_empty());
}

#[test]
fn zero_filled_tail_is_torn_not_corrupt() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    {
        let (j, _) = open(&dir);
        j.written(&[1; 24], &msg(1, 0)).expect("w");
    }
    let path = only_shard_with_data(&dir);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(&[0u8; 4096]).expect("write");
    drop(f);
    let (_, r) = open(&dir);
    assert_eq!(r.msgs[&vec![1u8; 24]].len(), 1);
    assert_eq!(r.torn[0].dropped, 4096);
}

#[test]
fn corrupt_middle_record_is_an_error_naming_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    {
        let (j, _) = open(&dir);
        for i in 0..3 {
            j.written(&[1; 24], &msg(1, i)).expect("w");
        }
    }
    let path = only_shard_with_data(&dir);
    let mut bytes = std::fs::read(&path).expect("read");
    let second = record::MAGIC.len()
        + record::encode_frame(&Record::Write {
            rid: vec![1; 24],
            msg: msg(1, 0),
        })
        .expect("f")
        .len();
    bytes[second + 20] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let err = Journal::open(&dir, opts()).expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("offset {second}")), "{text}");
    assert!(text.contains("truncate -s"), "{text}");
    // Nothing was changed by the failed open.
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn compaction_keeps_the_journal_proportional_to_live_messages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    let o = JournalOptions {
        fsync: JournalFsync::Off,
        compact_min_bytes: 64 << 10,
    };
    let (j, _) = Journal::open(&dir, o).expect("open");
    for i in 0..5000u16 {
        j.written(&[1; 24], &msg(1, i)).expect("w");
        if i >= 3 {
            j.removed(&[1; 24], msg(1, i - 3).msg_id()).expect("r");
        }
    }
    let (total, live) = j.sizes();
    assert!(live > 0);
    // 5000 messages of ~260 bytes each were written: over 1 MB without compaction.
    assert!(
        total <= (64 << 10) * SHARDS as u64 + 2 * live,
        "{total} bytes for {live} live"
    );
    drop(j);
    let (_, r) = Journal::open(&dir, o).expect("reopen");
    let q: Vec<Message> = r.msgs[&vec![1u8; 24]].iter().cloned().collect();
    assert_eq!(q, (4997..5000).map(|i| msg(1, i)).collect::<Vec<_>>());
}

#[test]
fn concurrent_writers_share_fsyncs_and_all_survive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    let (j, _) = open(&dir);
    let j = Arc::new(j);
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    j.written(&[t; 24], &msg(t, i)).expect("w");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    drop(j);
    let (_, r) = open(&dir);
    for t in 0..8u8 {
        assert_eq!(r.msgs[&vec![t; 24]].len(), 50);
    }
}

#[test]
fn import_writes_every_message_of_a_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    let store = MemoryStore::new();
    let q = store.add_queue(rec(5)).expect("add");
    for i in 0..4 {
        store.write_msg(&q, msg(5, i), 100).expect("w");
    }
    {
        let (j, _) = open(&dir);
        assert_eq!(j.write_all_from(&store).expect("import"), 4);
    }
    let (_, r) = open(&dir);
    assert_eq!(r.msgs[&vec![5u8; 24]].len(), 4);
}

#[test]
fn failed_compaction_keeps_appending_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    let o = JournalOptions {
        fsync: JournalFsync::Off,
        compact_min_bytes: 16 << 10,
    };
    let (j, _) = Journal::open(&dir, o).expect("open");
    let shard = shard_path(&dir, shard_of(&[1; 24]));
    // A directory where the compacted copy would be written makes every compaction fail.
    let blocker = shard.with_extension("journal.tmp");
    std::fs::create_dir(&blocker).expect("blocker");
    for i in 0..400u16 {
        j.written(&[1; 24], &msg(1, i))
            .expect("append works without compaction");
        if i >= 3 {
            j.removed(&[1; 24], msg(1, i - 3).msg_id()).expect("r");
        }
    }
    let (total, live) = j.sizes();
    assert!(
        total > 2 * live + (16 << 10),
        "not compacted: {total}/{live}"
    );
    // Compaction works again once the obstacle is gone; the live records are intact.
    std::fs::remove_dir(&blocker).expect("rm");
    for i in 400..450u16 {
        j.written(&[1; 24], &msg(1, i)).expect("w");
        j.removed(&[1; 24], msg(1, i - 3).msg_id()).expect("r");
    }
    let (total, live) = j.sizes();
    assert!(
        total <= (16 << 10) * SHARDS as u64 + 2 * live,
        "{total}/{live}"
    );
    assert!(!blocker.exists());
    drop(j);
    let (_, r) = Journal::open(&dir, o).expect("reopen");
    let q: Vec<Message> = r.msgs[&vec![1u8; 24]].iter().cloned().collect();
    assert_eq!(q, (447..450).map(|i| msg(1, i)).collect::<Vec<_>>());
}

#[test]
fn a_reference_journal_directory_is_refused_untouched() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("messages");
    // The reference's layout: queue directories with queue_state and messages logs.
    let q = dir.join("AbCd").join("EfGh");
    std::fs::create_dir_all(&q).expect("mkdir");
    std::fs::write(q.join("queue_state.log"), b"{}\n").expect("state");
    std::fs::write(q.join("messages.abc.log"), b"msg\n").expect("msgs");
    let before = std::fs::read_dir(&dir).expect("ls").count();
    let Err(e) = Journal::open(&dir, opts()) else {
        panic!("a foreign journal directory must be refused")
    };
    assert!(matches!(e, JournalError::Foreign { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("AbCd") && text.contains("journal export"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), before);
    assert!(!shard_path(&dir, 0).exists(), "nothing written");
    // Our own files (and a compaction's leftover) are accepted.
    let own = t.path().join("own");
    drop(open(&own));
    std::fs::write(own.join("shard-03.journal.tmp"), b"").expect("tmp");
    drop(open(&own));
}
