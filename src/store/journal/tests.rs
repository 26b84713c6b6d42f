use std::io::Write;

use super::*;
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::protocol::command::MsgFlags;
use crate::store::memory::MemoryStore;
use crate::store::{QueueBody, QueueRec};

fn rec(rid: u8) -> QueueRec {
    QueueRec {
        recipient_id: vec![rid; 24].into(),
        sender_id: vec![rid.wrapping_add(100); 24].into(),
        body: QueueBody::new(
            PublicKey::from_raw(KeyAlgorithm::Ed25519, &[1; 32]).expect("k"),
            [0; 32],
            None,
        ),
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

/// Orphans refused above the share, set aside into `dir`.
fn policy<'a>(deleted: &'a std::collections::HashSet<Vec<u8>>, dir: &'a Path) -> OrphanPolicy<'a> {
    OrphanPolicy {
        deleted,
        allow: false,
        dir,
        queues: super::QueueSource::StoreLog,
    }
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
    let none = Default::default();
    let stats = j
        .restore_into(&store, r, policy(&none, tmp.path()))
        .expect("restore");
    assert_eq!(
        stats,
        RestoreStats {
            queues: 1,
            messages: 6,
            ..Default::default()
        }
    );
    let s = q.lock();
    assert_eq!(s.msgs.len(), 6);
    assert!(
        !s.can_write(),
        "a queue ending in the quota marker stays closed"
    );
}

#[test]
fn messages_of_deleted_queues_are_cleared_unknown_ones_kept_aside_or_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    {
        let (j, _) = open(&dir);
        for i in 0..10 {
            j.written(&[1; 24], &msg(1, i)).expect("w");
        }
        j.written(&[2; 24], &msg(2, 0)).expect("w");
        j.written(&[3; 24], &msg(3, 0)).expect("w");
        j.written(&[4; 24], &msg(4, 0)).expect("w");
    }
    let store = MemoryStore::new();
    store.add_queue(rec(1)).expect("add");
    // Queue 2 was deleted by the store log; 3 and 4 are unknown: 2 of 13 messages (15 %).
    let deleted: std::collections::HashSet<Vec<u8>> = [vec![2u8; 24]].into_iter().collect();
    let before: Vec<Vec<u8>> = (0..SHARDS)
        .map(|i| std::fs::read(shard_path(&dir, i)).expect("read"))
        .collect();
    let (j, r) = open(&dir);
    let e = j
        .restore_into(&store, r, policy(&deleted, tmp.path()))
        .expect_err("more than 10 % orphaned");
    let text = e.to_string();
    assert!(
        text.contains("2 of 13") && text.contains("--allow-orphaned-messages"),
        "{text}"
    );
    drop(j);
    let after: Vec<Vec<u8>> = (0..SHARDS)
        .map(|i| std::fs::read(shard_path(&dir, i)).expect("read"))
        .collect();
    assert!(before == after, "a refused start changes nothing");
    // Told to: the unknown ones go to a file, the deleted queue's are cleared.
    let (j, r) = open(&dir);
    let mut p = policy(&deleted, tmp.path());
    p.allow = true;
    let stats = j.restore_into(&store, r, p).expect("restore");
    assert_eq!((stats.messages, stats.deleted, stats.orphaned), (10, 1, 2));
    let file = stats.orphans_file.expect("orphans file");
    let text = std::fs::read_to_string(&file).expect("read");
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.starts_with("v3 ")), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(j);
    let (_, r) = open(&dir);
    assert_eq!(
        r.msgs.len(),
        1,
        "only the known queue's messages stay journaled"
    );
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
    // The cut bytes are kept, next to the shard (and accepted there at the next start).
    assert_eq!(
        std::fs::read(&r.torn[0].copy).expect("copy"),
        &frame[..frame.len() / 2]
    );
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
fn a_bit_flip_in_a_middle_length_is_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("tmp");
    for framing in [record::Framing::V2, record::Framing::V1] {
        let dir = tmp.path().join(format!("{framing:?}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = shard_path(&dir, 0);
        let mut bytes = framing.magic().to_vec();
        let mut starts = Vec::new();
        for i in 0..4 {
            starts.push(bytes.len());
            let rec = Record::Write {
                rid: vec![1; 24],
                msg: msg(1, i),
            };
            bytes.extend(record::encode_frame_as(&rec, framing).expect("frame"));
        }
        // The high bit of the second record's length: it now claims to run past the end.
        bytes[starts[1] + 2] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let err = Journal::open(&dir, opts()).expect_err("a flipped length must stop start");
        let text = err.to_string();
        assert!(text.contains(&format!("offset {}", starts[1])), "{text}");
        assert!(
            text.contains(&format!("byte offset {}", starts[2])),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "{framing:?}");
        let torn: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".torn."))
            .collect();
        assert!(torn.is_empty(), "nothing cut, nothing copied");
    }
}

#[test]
fn a_first_format_journal_is_read_and_migrated() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).expect("dir");
    let rid = [1u8; 24];
    let path = shard_path(&dir, shard_of(&rid));
    let mut bytes = record::MAGIC_V1.to_vec();
    for i in 0..3 {
        let rec = Record::Write {
            rid: rid.to_vec(),
            msg: msg(1, i),
        };
        bytes.extend(record::encode_frame_as(&rec, record::Framing::V1).expect("frame"));
    }
    std::fs::write(&path, &bytes).expect("write");
    let (j, r) = open(&dir);
    assert_eq!(r.msgs[&rid.to_vec()].len(), 3);
    // Appends to the old file use its framing until compaction rewrites it.
    j.written(&rid, &msg(1, 3)).expect("w");
    j.compact_now().expect("compact");
    assert_eq!(&std::fs::read(&path).expect("read")[..8], record::MAGIC);
    j.written(&rid, &msg(1, 4)).expect("w");
    drop(j);
    let (_, r) = open(&dir);
    let q: Vec<Message> = r.msgs[&rid.to_vec()].iter().cloned().collect();
    assert_eq!(q, (0..5).map(|i| msg(1, i)).collect::<Vec<_>>());
}

#[test]
fn appends_during_a_compaction_are_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    let o = JournalOptions {
        fsync: JournalFsync::Off,
        compact_min_bytes: 32 << 10,
    };
    let (j, _) = Journal::open(&dir, o).expect("open");
    let j = Arc::new(j);
    let writer = {
        let j = j.clone();
        std::thread::spawn(move || {
            for i in 0..3000u16 {
                j.written(&[1; 24], &msg(1, i)).expect("w");
                if i >= 5 {
                    j.removed(&[1; 24], msg(1, i - 5).msg_id()).expect("r");
                }
            }
        })
    };
    let mut compactions = 0;
    while !writer.is_finished() {
        compactions += j.compact_now().expect("compact");
    }
    writer.join().expect("join");
    assert!(compactions > 0, "compaction ran while appending");
    drop(j);
    let (_, r) = Journal::open(&dir, o).expect("reopen");
    let q: Vec<Message> = r.msgs[&vec![1u8; 24]].iter().cloned().collect();
    assert_eq!(q, (2995..3000).map(|i| msg(1, i)).collect::<Vec<_>>());
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
    j.compact_now().expect("compact");
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
    j.compact_now().expect("compact");
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
fn a_foreign_directory_is_refused_untouched_by_open() {
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
        text.contains("AbCd") && text.contains("Nothing was changed"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), before);
    assert!(!shard_path(&dir, 0).exists(), "nothing written");
    // Our own files (and a compaction's leftover) are accepted.
    let own = t.path().join("own");
    drop(open(&own));
    std::fs::write(own.join("shard-03.journal.tmp"), b"").expect("tmp");
    std::fs::write(own.join("shard-03.journal.torn.1765000000"), b"x").expect("torn");
    drop(open(&own));
}
