//! Replay, compaction and crash recovery of the store log file.

use super::*;
use crate::store::QueueStatus;

const FIXTURE: &str = include_str!("../../tests/fixtures/reference-store.log");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smp-storelog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn check_fixture_state(st: &MemoryStore) {
    assert_eq!(st.queue_count(), 3);
    let q1 = st
        .get_queue(Party::Recipient, &[1; 24])
        .expect("q1")
        .rec()
        .expect("rec");
    assert!(q1.sender_key.is_some());
    assert_eq!(
        q1.notifier.as_ref().map(|n| n.notifier_id.clone()),
        Some(vec![6; 24])
    );
    assert_eq!(q1.updated_at.get(), Some(1699920000));
    assert!(st.get_queue(Party::Notifier, &[6; 24]).is_some());
    let q2 = st
        .get_queue(Party::Recipient, &[9; 24])
        .expect("q2")
        .rec()
        .expect("rec");
    assert_eq!(q2.status, QueueStatus::Off);
    assert_eq!(q2.recipient_keys.len(), 2);
    assert!(st.get_queue(Party::LinkClient, &[8; 24]).is_some());
    let q3 = st
        .get_queue(Party::Recipient, &[11; 24])
        .expect("q3")
        .rec()
        .expect("rec");
    assert!(matches!(q3.status, QueueStatus::Blocked(_)));
    assert!(
        st.get_queue(Party::Recipient, &[14; 24]).is_none(),
        "deleted queue"
    );
}

#[test]
fn reference_log_replays_and_compacts() {
    let d = tmp("compact");
    let log = d.join("smp-server-store.log");
    std::fs::write(&log, FIXTURE).expect("write");
    let st = MemoryStore::new();
    let (_w, stats) = open_store_log(&log, &st).expect("open");
    assert_eq!(stats.not_applied, 0);
    assert!(!stats.torn_last_line);
    check_fixture_state(&st);
    let compacted = std::fs::read_to_string(&log).expect("read");
    assert_eq!(compacted.lines().count(), 4, "{compacted}");
    assert!(compacted.starts_with("NEW_SERVICE "));
    // The QUEUE_SERVICE association of the first queue is kept, as the reference writes it.
    assert_eq!(
        stats.services.ntf.get(&vec![1u8; 24]),
        Some(&vec![13u8; 24])
    );
    assert!(
        compacted.lines().any(|l| l.starts_with("CREATE rid=AQEB")
            && l.contains(" nsrv=DQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0N")),
        "{compacted}"
    );
    assert!(!d.join("smp-server-store.log.start").exists());
    let backups: Vec<_> = std::fs::read_dir(&d)
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("smp-server-store.log.20")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).expect("bak"),
        FIXTURE
    );
    // and the compacted log replays to the same state, services included
    let st2 = MemoryStore::new();
    let stats2 = replay(&log, &st2).expect("replay");
    check_fixture_state(&st2);
    assert_eq!(stats2.services, stats.services, "kept through compaction");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn leftover_start_file_is_recovered() {
    let d = tmp("start");
    let log = d.join("smp-server-store.log");
    // crashed while writing the compacted log: .start is whole, the log is half-written
    std::fs::write(with_suffix(&log, ".start"), FIXTURE).expect("start");
    std::fs::write(&log, &FIXTURE[..100]).expect("partial");
    let st = MemoryStore::new();
    open_store_log(&log, &st).expect("open");
    check_fixture_state(&st);
    assert_eq!(
        std::fs::read_to_string(with_suffix(&log, ".bak")).expect("bak"),
        &FIXTURE[..100]
    );
    assert!(!with_suffix(&log, ".start").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn torn_last_line_is_skipped_and_bad_middle_line_is_fatal() {
    let d = tmp("torn");
    let log = d.join("smp-server-store.log");
    let torn = format!("{FIXTURE}SECURE AQEBAQEBAQEBAQEB");
    std::fs::write(&log, &torn).expect("w");
    let st = MemoryStore::new();
    let stats = replay(&log, &st).expect("replay");
    assert!(stats.torn_last_line);
    check_fixture_state(&st);

    let mut lines: Vec<&str> = FIXTURE.lines().collect();
    lines.insert(3, "SECURE garbage!");
    std::fs::write(&log, lines.join("\n") + "\n").expect("w");
    let err = open_store_log(&log, &MemoryStore::new()).expect_err("corrupt");
    let msg = err.to_string();
    assert!(msg.contains("line 4"), "{msg}");
    assert!(msg.contains("smp-server-store.log"), "{msg}");
    assert!(msg.contains("Fix or delete that line"), "{msg}");
    // nothing was renamed or rewritten
    assert!(log.exists() && !with_suffix(&log, ".start").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn writer_appends_reference_records() {
    let d = tmp("writer");
    let log = d.join("smp-server-store.log");
    let st = MemoryStore::new();
    let (w, _) = open_store_log(&log, &st).expect("open new");
    let first = FIXTURE.lines().next().expect("line");
    let StoreLogRecord::Create(rec) = StoreLogRecord::parse(first.as_bytes()).expect("p") else {
        panic!("create")
    };
    w.created(&rec).expect("created");
    let mut new = rec.clone();
    new.status = QueueStatus::Off;
    w.updated(&rec, &new).expect("updated");
    w.deleted(&rec.recipient_id).expect("deleted");
    assert_eq!(
        std::fs::read_to_string(&log).expect("read"),
        format!(
            "{first}\nSUSPEND AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n\
             DELETE AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n"
        )
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn disk_full_refuses_the_change_and_keeps_memory_unchanged() {
    use crate::store::durable::DurableStore;
    use std::sync::Arc;
    // /dev/full fails every write with ENOSPC, like a full disk.
    let w = StoreLogWriter::open(Path::new("/dev/full")).expect("open /dev/full");
    let st = DurableStore::new(MemoryStore::new(), Some(Arc::new(w)), None);
    let first = FIXTURE.lines().next().expect("line");
    let StoreLogRecord::Create(rec) = StoreLogRecord::parse(first.as_bytes()).expect("p") else {
        panic!("create")
    };
    let e = st.add_queue(*rec.clone()).expect_err("disk full");
    assert!(
        matches!(&e, ErrorType::Store(s) if s.contains("addStoreQueue")),
        "{e:?}"
    );
    assert!(st.get_queue(Party::Recipient, &rec.recipient_id).is_none());
    // /dev/full can't be cut back either: the log now refuses all changes
    let e = st.add_queue(*rec).expect_err("closed");
    assert!(
        matches!(&e, ErrorType::Store(s) if s.contains("closed")),
        "{e:?}"
    );
}

#[test]
fn unwritable_directory_names_the_file_and_the_fix() {
    let d = tmp("ro");
    let log = d.join("sub").join("smp-server-store.log");
    // a missing parent stands in for a directory we may not write (root ignores modes)
    let err = open_store_log(&log, &MemoryStore::new()).expect_err("no dir");
    let msg = err.to_string();
    assert!(
        msg.contains("smp-server-store.log") && msg.contains("creating"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn create_count_finds_every_create_line_across_chunk_edges() {
    let d = tmp("count-creates");
    let p = d.join("log");
    let mut text = Vec::new();
    let mut want = 0;
    for i in 0..300 {
        // lines of varying length, so tags fall on every offset of the small chunks below
        let line = match i % 4 {
            0 | 3 => {
                want += 1;
                format!("CREATE rid={} x={}\n", i, "y".repeat(i % 23))
            }
            1 => format!("SECURE {i} CREATE not-a-tag\n"),
            _ => format!("DELETE {i}\n"),
        };
        text.extend_from_slice(line.as_bytes());
    }
    std::fs::write(&p, &text).expect("write");
    for chunk in [16, 17, 31, 64, 1 << 20] {
        assert_eq!(
            count_creates_in_chunks(&p, chunk).expect("count"),
            want,
            "chunk {chunk}"
        );
    }
    std::fs::write(&p, b"").expect("write");
    assert_eq!(count_creates(&p).expect("count"), 0);
    let _ = std::fs::remove_dir_all(&d);
}

mod live {
    use super::*;
    use crate::crypto::keys::{KeyAlgorithm, PublicKey};
    use crate::store::durable::DurableStore;
    use crate::store::{QueueBody, QueueLog};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn id(tag: u8, i: u32) -> Vec<u8> {
        let mut v = vec![tag; 24];
        v[..4].copy_from_slice(&i.to_be_bytes());
        v
    }

    fn key(i: u32) -> PublicKey {
        let mut b = [7u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        PublicKey::from_raw(KeyAlgorithm::Ed25519, &b).expect("key")
    }

    fn rec(i: u32) -> QueueRec {
        QueueRec {
            recipient_id: id(1, i).into(),
            sender_id: id(2, i).into(),
            body: QueueBody::new(key(i), [3; 32], None),
        }
    }

    /// A durable store appending to a new log at `log`.
    fn open(log: &Path) -> (Arc<StoreLogWriter>, DurableStore) {
        let (w, _) = open_store_log(log, &MemoryStore::new()).expect("open");
        let w = Arc::new(w);
        let qlog: Arc<dyn QueueLog> = w.clone();
        (w, DurableStore::new(MemoryStore::new(), Some(qlog), None))
    }

    fn records(st: &dyn Store) -> Vec<QueueRec> {
        let mut v: Vec<QueueRec> = st
            .all_queues()
            .iter()
            .filter_map(|q| q.rec().ok())
            .collect();
        v.sort_by(|a, b| a.recipient_id.as_slice().cmp(b.recipient_id.as_slice()));
        v
    }

    fn replayed(log: &Path) -> Vec<QueueRec> {
        let m = MemoryStore::new();
        let stats = replay(log, &m).expect("replay");
        assert!(!stats.torn_last_line);
        records(&m)
    }

    /// One change of the mix the mutator applies: new queues, SECURE, new recipient keys,
    /// status, DELETE, of old queues and of queues made during the compaction.
    fn change(st: &DurableStore, i: u32, made: u32) {
        match i % 5 {
            0 | 1 => {
                st.add_queue(rec(made)).expect("add");
            }
            2 => {
                if let Some(q) = st.get_queue(Party::Recipient, &id(1, i % made)) {
                    let _ = st.secure_queue(&q, key(i));
                }
            }
            3 => {
                if let Some(q) = st.get_queue(Party::Recipient, &id(1, (i * 7) % made)) {
                    let _ = st.update_keys(&q, vec![key(i), key(i + 1)]);
                    let _ = st.set_status(&q, QueueStatus::Off);
                }
            }
            _ => {
                if let Some(q) = st.get_queue(Party::Recipient, &id(1, (i * 13) % made)) {
                    st.delete_queue(&q).expect("delete");
                }
            }
        }
    }

    #[test]
    fn compaction_while_changing_replays_to_the_live_state() {
        let d = tmp("live-compact");
        let log = d.join("store.log");
        let (w, st) = open(&log);
        for i in 0..20_000 {
            st.add_queue(rec(i)).expect("add");
        }
        let mut made = 20_000;
        for i in 0..5_000 {
            change(&st, i, made);
            if i % 5 < 2 {
                made += 1;
            }
        }
        let before = std::fs::read(&log).expect("read").len();
        let done = AtomicBool::new(false);
        let never = AtomicBool::new(false);
        let changes_during = std::thread::scope(|s| {
            let t = s.spawn(|| {
                let r = compact_live(&w, &st, ServiceData::default, &never);
                done.store(true, Ordering::SeqCst);
                r
            });
            let mut n = 0u32;
            while !done.load(Ordering::SeqCst) {
                change(&st, 5_000 + n, made);
                if n % 5 < 2 {
                    made += 1;
                }
                n += 1;
            }
            let queues = t.join().expect("join").expect("compacted");
            assert!(queues > 15_000, "{queues}");
            n
        });
        assert!(
            changes_during > 0,
            "the mutator never ran during the compaction"
        );
        assert!(!with_suffix(&log, COMPACTING_SUFFIX).exists());
        let backups: Vec<_> = std::fs::read_dir(&d)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("store.log.2"))
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        let backup = std::fs::read(d.join(&backups[0])).expect("backup");
        assert!(backup.len() >= before, "the backup is the whole old log");
        assert_eq!(replayed(&log), records(&st), "replay of the compacted log");
        // later changes go to the new file
        for i in 0..500 {
            change(&st, 90_000 + i, made);
            if i % 5 < 2 {
                made += 1;
            }
        }
        assert_eq!(replayed(&log), records(&st), "replay after further changes");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cancelled_compaction_leaves_the_log_as_it_was() {
        let d = tmp("live-compact-cancel");
        let log = d.join("store.log");
        let (w, st) = open(&log);
        for i in 0..1_000 {
            st.add_queue(rec(i)).expect("add");
            if i % 3 == 0 {
                let q = st.get_queue(Party::Recipient, &id(1, i)).expect("q");
                st.delete_queue(&q).expect("delete");
            }
        }
        let before = std::fs::read(&log).expect("read");
        let cancel = AtomicBool::new(true);
        let err = compact_live(&w, &st, ServiceData::default, &cancel).expect_err("cancelled");
        assert!(matches!(err, StoreLogError::CompactionCancelled), "{err}");
        assert_eq!(std::fs::read(&log).expect("read"), before);
        assert!(!with_suffix(&log, COMPACTING_SUFFIX).exists());
        // the writer keeps appending to the same log, and stops keeping a tail
        st.add_queue(rec(5_000)).expect("add");
        assert!(std::fs::read(&log).expect("read").len() > before.len());
        assert!(w
            .file
            .lock()
            .expect("lock")
            .as_ref()
            .expect("open")
            .tail
            .is_none());
        assert_eq!(replayed(&log), records(&st));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn large_clean_log_is_left_for_the_live_compaction_and_a_stray_file_is_removed() {
        let d = tmp("live-compact-defer");
        let log = d.join("store.log");
        let (_, st) = open(&log);
        for i in 0..100 {
            st.add_queue(rec(i)).expect("add");
        }
        let text = std::fs::read(&log).expect("read");
        std::fs::write(with_suffix(&log, COMPACTING_SUFFIX), b"half").expect("stray");
        let m = MemoryStore::new();
        let (_, stats) =
            open_store_log_checked(&log, &m, |_, _| Ok(()), Some(1)).expect("open deferred");
        assert!(stats.compaction_deferred);
        assert_eq!(std::fs::read(&log).expect("read"), text, "not rewritten");
        assert!(!with_suffix(&log, COMPACTING_SUFFIX).exists());
        assert_eq!(records(&m), records(&st));
        // below the size, or without a size: compacted at once as before
        let m = MemoryStore::new();
        let (_, stats) =
            open_store_log_checked(&log, &m, |_, _| Ok(()), Some(1 << 40)).expect("open small");
        assert!(!stats.compaction_deferred);
        assert_eq!(records(&m), records(&st));
        let _ = std::fs::remove_dir_all(&d);
    }
}
