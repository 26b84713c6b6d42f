//! Damaged or missing state with the real binary: a bit flip in the length of a journal record
//! in the middle of a shard, a torn tail, a disabled, emptied or missing store log next to a
//! journal, a journal `Clear` that fails after the store log's `DELETE` (an immutable file on
//! ext4), an fsync that fails (ext4 on a loop device whose backing tmpfs is full), and the
//! modes of every file the server writes. In each: nothing answered `OK` is lost, nothing
//! ACKed comes back, and a refused start changes no file and says what to do.
//!
//! These need root (mount, loop devices, chattr); CI runs as root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::site::*;
use common::*;
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

/// Shard files holding at least one record.
fn shards_with_data(log: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(&log.join("messages"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .filter(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 8)
        .collect();
    v.sort();
    v
}

/// Offsets of the records of a shard file in the current format (12-byte headers).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    assert_eq!(&bytes[..8], b"SMPJRN2\n");
    let mut v = Vec::new();
    let mut p = 8;
    while p + 12 <= bytes.len() {
        v.push(p);
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().expect("4")) as usize;
        p += 12 + len;
    }
    assert_eq!(p, bytes.len(), "whole records only");
    v
}

/// SEND `n` messages from a separate connection, each answered OK; returns the bodies.
async fn send_ok(site: &Site, q: &Recipient, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    let sender = site.connect().await;
    let mut sent = Vec::new();
    for i in range {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        assert_eq!(r, BrokerMsg::Ok);
        sent.push(body(i));
    }
    sent
}

/// Receive the pushed messages on the subscribed connection `c` and ACK `n` of them.
async fn ack_first(c: &smp_server::client::SmpClient, q: &Recipient, n: usize) {
    let mut next = Some(event(c).await.1);
    for _ in 0..n {
        let m = next.take().expect("a message to ACK");
        let rcv = decrypt_msg(q, &m);
        let (_, r) = c
            .request(q.rid(), Cmd::Ack(rcv.msg_id), Some(&q.key))
            .await
            .expect("ACK");
        next = match r {
            BrokerMsg::Ok => c.next_event(Duration::from_secs(2)).await.map(|(_, m)| m),
            m @ BrokerMsg::Msg(..) => Some(m),
            other => panic!("ACK: {other:?}"),
        };
    }
}

#[tokio::test]
async fn bit_flip_in_a_middle_record_length_stops_start_and_changes_nothing() {
    if !require_root("persistence_damage") {
        return;
    }
    let mut site = Site::new();
    site.init(&[]);
    let (srv, c) = site.start().await;
    let q = create_queue(&c).await;
    let sent = send_ok(&site, &q, 0..6).await;
    ack_first(&c, &q, 2).await;
    drop(c);
    site.stop(srv).await;

    let shards = shards_with_data(&site.log);
    assert_eq!(shards.len(), 1, "one queue writes one shard");
    let shard = &shards[0];
    let good = std::fs::read(shard).expect("read");
    let offsets = record_offsets(&good);
    assert!(offsets.len() >= 7, "6 writes and the removals: {offsets:?}");
    // One bit of the length of the third record (a message not yet ACKed): the record now
    // claims to run 64 KiB further, past the end of the file, like an interrupted write.
    let at = offsets[2];
    let mut damaged = good.clone();
    damaged[at + 2] ^= 0x01;
    std::fs::write(shard, &damaged).expect("write");
    let before = listing(&site.log);

    let text = site.start_refused(&[]);
    eprintln!("start with a bit flip in a middle record:\n{text}");
    assert!(
        text.contains(&shard.display().to_string()) && text.contains(&format!("offset {at}")),
        "names the file and the offset:\n{text}"
    );
    assert!(
        text.contains(&format!("truncate -s {at}")) && text.contains("backup"),
        "says what to do:\n{text}"
    );
    assert_same_files(
        &before,
        &listing(&site.log),
        "byte-identical after the refusal",
    );

    // Repaired (restored from "backup"): everything OK'd and not ACKed, nothing ACKed.
    std::fs::write(shard, &good).expect("restore");
    let (srv, c) = site.start().await;
    assert_eq!(drain(&c, &q).await, sent[2..].to_vec());
    drop(c);
    site.stop(srv).await;
}

#[tokio::test]
async fn torn_tail_is_cut_with_a_copy_kept_and_every_ok_message_delivered() {
    if !require_root("persistence_damage") {
        return;
    }
    let mut site = Site::new();
    site.init(&[]);
    let (srv, c) = site.start().await;
    let q = create_queue(&c).await;
    let sent = send_ok(&site, &q, 0..4).await;
    ack_first(&c, &q, 1).await;
    drop(c);
    site.stop(srv).await;

    let shard = shards_with_data(&site.log).remove(0);
    let good = std::fs::read(&shard).expect("read");
    let last = *record_offsets(&good).last().expect("records");
    // Half of a copy of the last record appended: what a crash inside write(2) leaves.
    let torn = good[last..last + (good.len() - last) / 2].to_vec();
    let mut bytes = good.clone();
    bytes.extend_from_slice(&torn);
    std::fs::write(&shard, &bytes).expect("write");

    let (srv, c) = site.start().await;
    let out = srv
        .wait_output("interrupted write", Duration::from_secs(10))
        .await;
    assert!(out.contains(&shard.display().to_string()), "{out}");
    assert_eq!(std::fs::read(&shard).expect("read")[..good.len()], good[..]);
    let copies: Vec<PathBuf> = walk(&site.log.join("messages"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".journal.torn."))
        .collect();
    assert_eq!(copies.len(), 1, "one copy of the cut bytes");
    assert_eq!(std::fs::read(&copies[0]).expect("copy"), torn);
    let mode = std::fs::metadata(&copies[0])
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(drain(&c, &q).await, sent[1..].to_vec());
    drop(c);
    site.stop(srv).await;
    // The copy is the server's own file: the next start accepts it.
    let (srv, c) = site.start().await;
    drop(c);
    site.stop(srv).await;
}

#[tokio::test]
async fn disabled_emptied_or_missing_store_log_with_a_journal_is_refused_unchanged() {
    if !require_root("persistence_damage") {
        return;
    }
    let mut site = Site::new();
    site.init(&[]);
    let q = site.with_one_message().await;
    let store_log = site.log.join("smp-server-store.log");
    let saved = std::fs::read(&store_log).expect("store log");

    // [STORE_LOG] enable = off with store_messages = journal.
    site.set_ini("STORE_LOG", "enable", "off");
    let before = listing(&site.log);
    let text = site.start_refused(&[]);
    eprintln!("journal without the store log:\n{text}");
    assert!(
        text.contains("enable = on") && text.contains("journal export"),
        "says what to do:\n{text}"
    );
    assert_same_files(&before, &listing(&site.log), "nothing changed");
    site.set_ini("STORE_LOG", "enable", "on");

    // An emptied store log: every journaled message would lose its queue.
    std::fs::write(&store_log, b"").expect("empty");
    let before = listing(&site.log);
    let text = site.start_refused(&[]);
    eprintln!("emptied store log:\n{text}");
    assert!(
        text.contains("1 of 1 journaled messages") && text.contains("--allow-orphaned-messages"),
        "says what to do:\n{text}"
    );
    assert_same_files(&before, &listing(&site.log), "nothing changed");

    // A missing store log.
    std::fs::remove_file(&store_log).expect("remove");
    let before = listing(&site.log);
    let text = site.start_refused(&[]);
    eprintln!("missing store log:\n{text}");
    assert!(
        text.contains("missing")
            && text.contains(&store_log.display().to_string())
            && text.contains("--allow-orphaned-messages"),
        "names the file and says what to do:\n{text}"
    );
    assert_same_files(&before, &listing(&site.log), "nothing changed");

    // Put back: the message is delivered.
    std::fs::write(&store_log, &saved).expect("restore");
    let (srv, c) = site.start().await;
    assert_eq!(drain(&c, &q).await, vec![b"kept".to_vec()]);
    // A message OK'd now, then the store log lost again: told to, the server starts and keeps
    // the message aside in a file instead of deleting it.
    let (_, r) = c
        .request(q.sid(), send_cmd(b"set aside"), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Ok);
    drop(c);
    site.stop(srv).await;
    std::fs::remove_file(&store_log).expect("remove");
    let (srv, c) = site.start_with(&["--allow-orphaned-messages"]).await;
    drop(c);
    site.stop(srv).await;
    let orphans: Vec<PathBuf> = walk(&site.log)
        .into_iter()
        .filter(|p| {
            p.to_string_lossy()
                .contains("smp-server-messages.orphaned.")
        })
        .collect();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    let text = std::fs::read_to_string(&orphans[0]).expect("orphans");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("v3 "),
        "the messages-log line format: {text}"
    );
}

/// `chattr +i` / `-i`.
fn chattr(flag: &str, p: &Path) {
    let st = Command::new("chattr")
        .arg(flag)
        .arg(p)
        .status()
        .expect("run chattr (e2fsprogs)");
    assert!(st.success(), "chattr {flag} {}", p.display());
}

#[tokio::test]
async fn failed_journal_clear_after_a_logged_delete_deletes_now_and_after_restart() {
    if !require_root("persistence_damage") {
        return;
    }
    let mut site = Site::new();
    let _fs = Ext4Loop::mount(&site.log, &site.dir.path().join("img"), 64);
    site.init(&[]);
    let (srv, c) = site.start().await;
    let a = create_queue(&c).await;
    send_ok(&site, &a, 0..2).await;
    let a_shard = shards_with_data(&site.log);
    assert_eq!(a_shard.len(), 1);
    // A second queue in another shard, with a message.
    let (b, b_sent) = loop {
        let b = create_queue(&c).await;
        let sent = send_ok(&site, &b, 10..11).await;
        if shards_with_data(&site.log).len() == 2 {
            break (b, sent);
        }
    };
    // The journal file of queue A cannot be written (EPERM), the store log can.
    chattr("+i", &a_shard[0]);
    let (_, r) = c
        .request(a.rid(), Cmd::Del, Some(&a.key))
        .await
        .expect("DEL");
    chattr("-i", &a_shard[0]);
    assert_eq!(r, BrokerMsg::Ok, "the DELETE is in the store log");
    let (_, r) = c
        .request(a.rid(), Cmd::Sub, Some(&a.key))
        .await
        .expect("SUB");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth), "gone now");
    drop(c);
    let out = srv.output();
    assert!(out.contains(&a_shard[0].display().to_string()), "{out}");
    site.stop(srv).await;

    let (srv, c) = site.start().await;
    let (_, r) = c
        .request(a.rid(), Cmd::Sub, Some(&a.key))
        .await
        .expect("SUB");
    assert_eq!(
        r,
        BrokerMsg::Err(ErrorType::Auth),
        "and gone after a restart"
    );
    assert_eq!(drain(&c, &b).await, b_sent, "the other queue is intact");
    let out = srv
        .wait_output(
            "cleared 2 messages of queues the store log deleted",
            Duration::from_secs(5),
        )
        .await;
    assert!(!out.contains("orphaned"), "{out}");
    drop(c);
    site.stop(srv).await;
}

#[tokio::test]
async fn failed_fsync_refuses_writes_to_that_file_until_a_restart() {
    if !require_root("persistence_damage") {
        return;
    }
    let mut site = Site::new();
    // The log directory's device sits on another ext4, whose file (the device's image) can be
    // made immutable: every write of the device then fails with EIO.
    let outer = Ext4Loop::mount(&site.dir.path().join("outer"), site.dir.path(), 160);
    let fs = Ext4Loop::mount(&site.log, &outer.mnt, 64);
    site.init(&[]);
    site.set_ini("STORE_LOG", "journal_fsync", "always");
    let (srv, c) = site.start().await;
    let q = create_queue(&c).await;
    let mut accepted = send_ok(&site, &q, 0..3).await;
    // Everything so far is on the loop device's backing file.
    let st = Command::new("sync")
        .arg("-f")
        .arg(&site.log)
        .status()
        .expect("sync");
    assert!(st.success());

    // The device fails: writes go to the page cache, writeback (fsync) fails.
    fs.fail_writes(true);
    let sender = site.connect().await;
    let mut refused = Vec::new();
    for i in 3..60 {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        match r {
            BrokerMsg::Ok => accepted.push(body(i)),
            BrokerMsg::Err(ErrorType::Store(e)) => {
                assert!(e.starts_with("writeMsg"), "{e}");
                refused.push(body(i));
                break;
            }
            other => panic!("SEND: {other:?}"),
        }
    }
    assert!(!refused.is_empty(), "a failed fsync must refuse the SEND");
    let out = srv
        .wait_output("an fsync failed", Duration::from_secs(5))
        .await;
    eprintln!("server output after the failed fsync:\n{out}");

    // The disk works again, but the kernel may have dropped what it could not write: that
    // file takes no more changes until a restart (a second fsync would falsely succeed).
    fs.fail_writes(false);
    for i in 100..105 {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        match r {
            BrokerMsg::Err(ErrorType::Store(e)) => assert!(e.starts_with("writeMsg"), "{e}"),
            other => panic!("a SEND after a failed fsync must be refused: {other:?}"),
        }
        refused.push(body(i));
    }
    drop(sender);
    drop(c);
    site.stop(srv).await;

    // What the disk holds (the page cache is dropped): every OK'd message, in order; a
    // refused one may be there too (its record may have reached the disk), never lost OKs.
    fs.remount();
    let (srv, c) = site.start().await;
    let got = drain(&c, &q).await;
    let name = |b: &Vec<u8>| String::from_utf8_lossy(&b[..12]).into_owned();
    let names = |v: &[Vec<u8>]| v.iter().map(name).collect::<Vec<_>>();
    let mut it = got.iter();
    for a in &accepted {
        assert!(
            it.any(|g| g == a),
            "OK'd {} is missing after the restart: accepted {:?}, refused {:?}, got {:?}\n{}",
            name(a),
            names(&accepted),
            names(&refused),
            names(&got),
            srv.output()
        );
    }
    assert!(
        got.iter()
            .all(|g| accepted.contains(g) || refused.contains(g)),
        "only sent messages"
    );
    eprintln!(
        "failed fsync: {} accepted, {} refused, {} delivered after the restart",
        accepted.len(),
        refused.len(),
        got.len()
    );
    // After the restart the file takes changes again.
    let (_, r) = c
        .request(q.sid(), send_cmd(b"after"), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Ok);
    drop(c);
    site.stop(srv).await;
}

/// Every file and directory under `dir`, with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut v: Vec<(PathBuf, u32)> = walk(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p)
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            (p, m)
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_state_file_is_0600_in_0700_directories_and_wider_ones_are_narrowed() {
    if !require_root("persistence_damage") {
        return;
    }
    let mut site = Site::new();
    site.init(&["--store-messages", "memory"]);
    // Statistics, the daily CSV and Prometheus metrics on, so they are written too.
    site.set_ini("STORE_LOG", "log_stats", "on");
    let ini = site.cfg.join("smp-server.ini");
    let text = std::fs::read_to_string(&ini).expect("ini");
    std::fs::write(
        &ini,
        text.replace("[STORE_LOG]", "[STORE_LOG]\nprometheus_interval = 1"),
    )
    .expect("ini");
    let (srv, c) = site.start().await;
    let q = create_queue(&c).await;
    send_ok(&site, &q, 0..2).await;
    drop(c);
    wait_for_file(
        &site.log.join("smp-server-metrics.txt"),
        Duration::from_secs(10),
    )
    .await;
    site.stop(srv).await;
    // Again with the journal, and the saved files restored (renamed to .bak).
    let (srv, c) = site.start().await;
    drop(c);
    site.stop(srv).await;

    let check = |what: &str| {
        let mut seen = Vec::new();
        for (p, m) in modes(&site.log) {
            if p.starts_with(site.log.join("www")) {
                continue; // the public web site
            }
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(m, want, "{what}: {} is {m:o}", p.display());
            seen.push(p.file_name().expect("name").to_string_lossy().into_owned());
        }
        seen
    };
    let seen = check("memory store");
    eprintln!("state files: {seen:?}");
    for name in [
        "smp-server-store.log",
        "smp-server-messages.log.bak",
        "smp-server-ntfs.log.bak",
        "smp-server-stats.log.bak",
        "smp-server-metrics.txt",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} written: {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|s| s.starts_with("smp-server-store.log.20")),
        "a store log backup: {seen:?}"
    );
    let log_mode = std::fs::metadata(&site.log)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        log_mode, 0o700,
        "init creates it for the server's user only"
    );

    // Widen everything, switch to the journal: start narrows them again and says so.
    for (p, _) in modes(&site.log) {
        let m = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
    }
    // (The memory store's messages file would be refused next to a journal.)
    std::fs::remove_file(site.log.join("smp-server-messages.log")).expect("rm");
    site.set_ini("STORE_LOG", "store_messages", "journal");
    let (srv, c) = site.start().await;
    let q2 = create_queue(&c).await;
    send_ok(&site, &q2, 0..2).await;
    drop(c);
    let out = srv.output();
    assert!(out.contains("narrowed the mode of"), "{out}");
    site.stop(srv).await;
    let seen = check("journal");
    let log_mode = std::fs::metadata(&site.log)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert!(
        log_mode == 0o700 || log_mode == 0o711,
        "narrowed from 755 to 700 (711 when the web site is inside): {log_mode:o}"
    );
    assert!(seen.iter().any(|s| s.ends_with(".journal")), "{seen:?}");
    assert!(seen.iter().any(|s| s == "messages"), "{seen:?}");
}
