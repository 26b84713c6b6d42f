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
