//! The reference server's journal store (`messages/` with queue directories, `queue_state` and
//! `messages` logs) with the real binary over TLS: converted at the first start with every
//! undelivered message delivered exactly once (acknowledged ones never), nothing duplicated by
//! later starts, the original kept aside; and `journal export` reading it in place.
//!
//! The directories are written by `common::refjournal` from the reference's format.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use common::binary::{stop, Setup};
use common::refjournal::{msg, RefMsg, RefQueue};
use common::*;
use smp_server::client::SmpClient;
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::response::BrokerMsg;

/// A journal-mode server with three queues in its store log, stopped.
async fn setup() -> (Setup, Vec<Recipient>) {
    let s = Setup::init(&["-l", "--store-messages", "journal"]);
    // NEW without the queue-creation password.
    s.edit_ini(|k, _| (k == "create_password").then(|| "# create_password: off".to_string()));
    let (srv, c) = s.start().await;
    let mut qs = Vec::new();
    for _ in 0..3 {
        qs.push(create_queue(&c).await);
    }
    drop(c);
    stop(srv).await;
    (s, qs)
}

/// What the reference would deliver from the directory `reference_dir` writes, per queue.
type Expected = Vec<Vec<RefMsg>>;

/// Replace our (empty) journal with a reference-layout one for the queues: queue 0 has 8
/// messages of which 2 were acknowledged; queue 1 has 7 over two files (3 per file), 4
/// acknowledged, and an append its state never recorded; queue 2 is over quota (the marker
/// last) with a torn state line. Plus one message of a queue the store log does not have.
fn reference_dir(s: &Setup, qs: &[Recipient]) -> (PathBuf, Expected) {
    let dir = s.log.join("messages");
    std::fs::remove_dir_all(&dir).expect("remove our journal");
    let mut q0 = RefQueue::new(&dir, qs[0].rid(), 256);
    (0..8).for_each(|i| q0.write_msg(&msg(0, i)));
    q0.ack();
    q0.ack();
    let mut q1 = RefQueue::new(&dir, qs[1].rid(), 3);
    (0..7).for_each(|i| q1.write_msg(&msg(1, i)));
    (0..4).for_each(|_| q1.ack());
    q1.torn_write(b"AAAAAAAA 1700000000 flags=F aGk");
    let quota = RefMsg::Quota(vec![2; 24], common::refjournal::ts(200));
    let mut q2 = RefQueue::new(&dir, qs[2].rid(), 256);
    (0..2).for_each(|i| q2.write_msg(&msg(2, i)));
    q2.write_msg(&quota);
    q2.torn_state(b"write=");
    let mut orphan = RefQueue::new(&dir, &[9; 24], 256);
    orphan.write_msg(&msg(9, 0));
    let expected = vec![
        (2..8).map(|i| msg(0, i)).collect(),
        (4..7).map(|i| msg(1, i)).collect(),
        vec![msg(2, 0), msg(2, 1), quota],
    ];
    (dir, expected)
}

fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// A delivery as the fixture describes it.
fn as_ref(r: &Recipient, m: &BrokerMsg) -> RefMsg {
    let rcv = decrypt_msg(r, m);
    match rcv.body {
        Some(body) => RefMsg::Msg(rcv.msg_id, rcv.ts, rcv.notification, body),
        None => RefMsg::Quota(rcv.msg_id, rcv.ts),
    }
}

/// Subscribe and receive, acknowledging the first `ack` messages (`None`: all); returns the
/// deliveries. The last unacknowledged delivery stays with the server.
async fn receive(c: &SmpClient, r: &Recipient, ack: Option<usize>) -> Vec<RefMsg> {
    let (_, resp) = c
        .request(r.rid(), Cmd::Sub, Some(&r.key))
        .await
        .expect("SUB");
    let mut next = match resp {
        m @ BrokerMsg::Msg(..) => Some(m),
        BrokerMsg::Ok | BrokerMsg::Sok(_) => c
            .next_event(Duration::from_millis(500))
            .await
            .map(|(_, m)| m),
        other => panic!("SUB answered {other:?}"),
    };
    let mut got = Vec::new();
    while let Some(m) = next.take() {
        let BrokerMsg::Msg(id, _) = &m else {
            panic!("expected MSG, got {m:?}")
        };
        got.push(as_ref(r, &m));
        if ack.is_some_and(|n| got.len() > n) {
            break;
        }
        let (_, resp) = c
            .request(r.rid(), Cmd::Ack(id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        next = match resp {
            m @ BrokerMsg::Msg(..) => Some(m),
            BrokerMsg::Ok => c
                .next_event(Duration::from_millis(500))
                .await
                .map(|(_, m)| m),
            other => panic!("ACK answered {other:?}"),
        };
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_journal_is_converted_and_every_message_delivered_once() {
    let (s, qs) = setup().await;
    let (dir, expected) = reference_dir(&s, &qs);
    let original = std::fs::read_dir(&dir).expect("ls").count();

    // First start: converted; the original kept aside; the orphan set aside, not dropped.
    let (srv, c) = s.start().await;
    let aside = entries(&s.log, "messages.reference-");
    assert_eq!(aside.len(), 1, "the original is kept aside once");
    assert_eq!(std::fs::read_dir(&aside[0]).expect("ls").count(), original);
    assert!(
        entries(&s.log, "smp-server-messages.orphaned.").len() == 1,
        "the message of the unknown queue is kept in the orphans file"
    );
    // Queue 0: the first message delivered and acknowledged, the second delivered only.
    let first = receive(&c, &qs[0], Some(1)).await;
    assert_eq!(first, expected[0][..2].to_vec());
    drop(c);
    stop(srv).await;

    // Second start: nothing converted again, nothing duplicated.
    let (srv, c) = s.start().await;
    assert_eq!(entries(&s.log, "messages.reference-").len(), 1);
    let mut got: HashMap<usize, Vec<RefMsg>> = HashMap::new();
    for (i, r) in qs.iter().enumerate() {
        got.insert(i, receive(&c, r, None).await);
    }
    assert_eq!(
        got[&0],
        expected[0][1..].to_vec(),
        "unacknowledged redelivered"
    );
    assert_eq!(got[&1], expected[1]);
    assert_eq!(got[&2], expected[2]);
    drop(c);
    stop(srv).await;

    // Third start: everything was acknowledged.
    let (srv, c) = s.start().await;
    for r in &qs {
        assert!(receive(&c, r, None).await.is_empty());
    }
    drop(c);
    stop(srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_export_reads_a_reference_journal_in_place() {
    let (s, qs) = setup().await;
    let (dir, expected) = reference_dir(&s, &qs);
    let out = s.run_with_input(&["journal", "export"], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "export failed: {text} {out:?}");
    assert!(text.contains("Export completed"), "{text}");
    assert!(
        text.contains("not exported"),
        "the orphan is reported: {text}"
    );
    let log = std::fs::read_to_string(s.log.join("smp-server-messages.log")).expect("log");
    for (r, want) in qs.iter().zip(&expected) {
        let prefix = format!("v3 {} ", URL_SAFE.encode(r.rid()));
        let lines: Vec<&str> = log.lines().filter(|l| l.starts_with(&prefix)).collect();
        let want: Vec<String> = want
            .iter()
            .map(|m| {
                let l = String::from_utf8(m.line()).expect("utf8");
                format!("{prefix}{}", l.trim_end())
            })
            .collect();
        assert_eq!(lines, want);
    }
    assert_eq!(
        log.lines().count(),
        12,
        "only the store log's queues: {log}"
    );
    assert!(
        smp_server::store::journal::reference::is_reference_layout(&dir),
        "the reference directory is left in place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_mode_refuses_a_reference_journal_and_says_what_to_do() {
    let (s, qs) = setup().await;
    let (dir, _) = reference_dir(&s, &qs);
    s.edit_ini(|k, _| (k == "store_messages").then(|| "store_messages = memory".to_string()));
    let mut child = s
        .bin()
        .arg("start")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("start with a reference journal and store_messages = memory did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("reference smp-server's journal") && text.contains("journal export"),
        "{text}"
    );
    assert!(smp_server::store::journal::reference::is_reference_layout(
        &dir
    ));
}
