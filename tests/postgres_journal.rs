//! The real binary with queues in PostgreSQL and messages in the journal
//! (`store_queues = database`, `store_messages = journal`), over TLS: messages survive a clean
//! stop and `kill -9` after `OK`, acknowledged ones never come back, the quota holds across a
//! restart, a deleted queue's messages go (after a restart too), journaled messages whose
//! queues the database lacks stop start-up until allowed, and `journal export` / `import`
//! round-trip with this pair. A throwaway PostgreSQL cluster (`common::pg`).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::binary::{stop, Setup};
use common::pg::{self, Cluster};
use common::*;
use smp_server::client::{AuthKey, SmpClient};
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;
use smp_server::store::postgres::db::DbOptions;
use smp_server::store::MessageLog;

/// An initialised server on the pair, with its database.
struct Pair {
    s: Setup,
    db: String,
}

fn pair() -> Pair {
    let cluster = Cluster::get();
    let db = cluster.new_db();
    let conn = cluster.conn(&db);
    let s = Setup::init(&["-l", "--store-messages", "journal"]);
    let c = conn.clone();
    s.edit_ini(move |k, _| match k {
        "store_queues" => Some("store_queues = database".into()),
        "store_messages" => Some("store_messages = journal".into()),
        "db_connection" => Some(format!("db_connection = {c}")),
        _ => None,
    });
    // The schema, as `database import` creates it.
    let opts = DbOptions {
        connection: conn,
        schema: "smp_server".into(),
        pool_size: 2,
    };
    smp_server::store::postgres::setup::open_db(&opts, true).expect("schema");
    Pair { s, db }
}

impl Pair {
    fn sql(&self, q: &str) -> String {
        Cluster::get().psql(&self.db, q).trim().to_string()
    }

    fn journal_dir(&self) -> std::path::PathBuf {
        self.s.log.join("messages")
    }
}

/// A queue (created unsubscribed, with the server's password) secured with a sender key.
async fn new_queue(c: &SmpClient) -> (Recipient, AuthKey) {
    common::binary::secured_queue_with_password(c).await
}

async fn send(c: &SmpClient, r: &Recipient, sk: &AuthKey, body: &[u8]) -> BrokerMsg {
    c.request(r.sid(), send_cmd(body), Some(sk))
        .await
        .expect("SEND")
        .1
}

/// Subscribe; the first message's (id, body), or `None` when the queue is empty.
async fn subscribe(c: &SmpClient, r: &Recipient) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let (_, resp) = c
        .request(r.rid(), Cmd::Sub, Some(&r.key))
        .await
        .expect("SUB");
    let m = match resp {
        BrokerMsg::Msg(..) => resp,
        BrokerMsg::Ok | BrokerMsg::Sok(_) => match c.next_event(Duration::from_millis(500)).await {
            Some((_, m)) => m,
            None => return None,
        },
        other => panic!("SUB: {other:?}"),
    };
    let got = decrypt_msg(r, &m);
    Some((got.msg_id, got.body))
}

/// Acknowledge; the next message's (id, body), or `None` when the queue is now empty.
async fn ack(c: &SmpClient, r: &Recipient, id: Vec<u8>) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let (_, resp) = c
        .request(r.rid(), Cmd::Ack(id), Some(&r.key))
        .await
        .expect("ACK");
    match resp {
        BrokerMsg::Ok => None,
        m @ BrokerMsg::Msg(..) => {
            let got = decrypt_msg(r, &m);
            Some((got.msg_id, got.body))
        }
        other => panic!("ACK: {other:?}"),
    }
}

fn kill9(r: &mut Running) {
    let st = Command::new("kill")
        .args(["-9", &r.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = r.0.wait();
}

fn body(m: &Option<(Vec<u8>, Option<Vec<u8>>)>) -> &[u8] {
    m.as_ref()
        .and_then(|(_, b)| b.as_deref())
        .expect("a message with a body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_restart_and_kill_9_and_acks_stick() {
    let p = pair();
    let (mut srv, c) = p.s.start().await;
    let (r, sk) = new_queue(&c).await;
    for b in [&b"m1"[..], b"m2", b"m3"] {
        assert_eq!(send(&c, &r, &sk, b).await, BrokerMsg::Ok);
    }
    let m1 = subscribe(&c, &r).await;
    assert_eq!(body(&m1), b"m1");
    let m2 = ack(&c, &r, m1.expect("m1").0).await;
    assert_eq!(body(&m2), b"m2", "delivered after the ACK");
    // The database keeps the queue only; the messages are in the journal.
    assert_eq!(p.sql("SELECT count(*) FROM smp_server.msg_queues"), "1");
    assert_eq!(p.sql("SELECT count(*) FROM smp_server.messages"), "0");
    assert!(p.journal_dir().join("shard-00.journal").exists());
    drop(c);
    // kill -9 after the OKs: m2 (delivered, unacknowledged) and m3 are kept, m1 is not back.
    kill9(&mut srv);
    let (srv, c) = p.s.start().await;
    let got = subscribe(&c, &r).await;
    assert_eq!(body(&got), b"m2");
    let m3 = ack(&c, &r, got.expect("m2").0).await;
    assert_eq!(body(&m3), b"m3");
    assert_eq!(send(&c, &r, &sk, b"m4").await, BrokerMsg::Ok);
    drop(c);
    stop(srv).await;
    // A clean stop: m3 (unacknowledged) and m4.
    let (srv, c) = p.s.start().await;
    let got = subscribe(&c, &r).await;
    assert_eq!(body(&got), b"m3");
    let m4 = ack(&c, &r, got.expect("m3").0).await;
    assert_eq!(body(&m4), b"m4");
    assert_eq!(ack(&c, &r, m4.expect("m4").0).await, None);
    drop(c);
    stop(srv).await;
    // Everything was acknowledged: nothing comes back.
    let (srv, c) = p.s.start().await;
    assert_eq!(subscribe(&c, &r).await, None);
    drop(c);
    stop(srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_holds_across_restart_and_deleted_queue_messages_go() {
    let p = pair();
    let (srv, c) = p.s.start().await;
    let (full, fsk) = new_queue(&c).await;
    let (kept, ksk) = new_queue(&c).await;
    // The binary's quota is 128 messages; then one quota marker, then QUOTA.
    for i in 0..128 {
        let r = send(&c, &full, &fsk, format!("f{i}").as_bytes()).await;
        assert_eq!(r, BrokerMsg::Ok, "message {i}");
    }
    for _ in 0..2 {
        let r = send(&c, &full, &fsk, b"over").await;
        assert_eq!(r, BrokerMsg::Err(ErrorType::Quota));
    }
    assert_eq!(send(&c, &kept, &ksk, b"k1").await, BrokerMsg::Ok);
    drop(c);
    stop(srv).await;

    // After a restart the queue is still full (its marker was journaled).
    let (srv, c) = p.s.start().await;
    let r = send(&c, &full, &fsk, b"over").await;
    assert_eq!(r, BrokerMsg::Err(ErrorType::Quota));
    let first = subscribe(&c, &full).await;
    assert_eq!(body(&first), b"f0");
    // Deleting the full queue removes its messages.
    let (_, ok) = c
        .request(full.rid(), Cmd::Del, Some(&full.key))
        .await
        .expect("DEL");
    assert_eq!(ok, BrokerMsg::Ok);
    let r = send(&c, &full, &fsk, b"after delete").await;
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    drop(c);
    stop(srv).await;

    // The journal holds the other queue's message only.
    let opts =
        smp_server::store::journal::JournalOptions::new(smp_server::config::JournalFsync::Always);
    let (j, replay) =
        smp_server::store::journal::Journal::open(&p.journal_dir(), opts).expect("journal");
    drop(j);
    assert!(
        !replay.msgs.contains_key(full.rid()),
        "deleted queue's messages"
    );
    assert_eq!(replay.msgs.get(kept.rid()).map(|m| m.len()), Some(1));

    let (srv, c) = p.s.start().await;
    let (_, resp) = c
        .request(full.rid(), Cmd::Sub, Some(&full.key))
        .await
        .expect("SUB");
    assert_eq!(resp, BrokerMsg::Err(ErrorType::Auth));
    let k1 = subscribe(&c, &kept).await;
    assert_eq!(body(&k1), b"k1");
    drop(c);
    stop(srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_export_and_import_round_trip() {
    let p = pair();
    let (srv, c) = p.s.start().await;
    let (r, sk) = new_queue(&c).await;
    for b in [&b"one"[..], b"two"] {
        assert_eq!(send(&c, &r, &sk, b).await, BrokerMsg::Ok);
    }
    drop(c);
    stop(srv).await;

    let out = p.s.run_with_input(&["journal", "export"], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "export failed: {text}");
    assert!(text.contains("Export completed"), "{text}");
    assert!(
        text.contains("store_messages set to `journal`, store_queues is set to `database`."),
        "{text}"
    );
    let file = p.s.log.join("smp-server-messages.log");
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("messages log")
            .lines()
            .count(),
        2
    );
    // The journal stays; with the messages log beside it start refuses, as the reference.
    let out = p.s.bin().arg("start").output().expect("start");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("are present"), "{text}");

    let out = p.s.run_with_input(&["journal", "delete"], "Y\n");
    assert!(out.status.success(), "{out:?}");
    let out = p.s.run_with_input(&["journal", "import"], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import failed: {text}");
    assert!(text.contains("Messages: 2 imported"), "{text}");
    assert!(text.contains("store_messages set to `journal`"), "{text}");
    assert!(!file.exists());

    let (srv, c) = p.s.start().await;
    let one = subscribe(&c, &r).await;
    assert_eq!(body(&one), b"one");
    let two = ack(&c, &r, one.expect("one").0).await;
    assert_eq!(body(&two), b"two");
    drop(c);
    stop(srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_queues_missing_from_the_database_stop_start_until_allowed() {
    let p = pair();
    let (srv, c) = p.s.start().await;
    let (r, sk) = new_queue(&c).await;
    assert_eq!(send(&c, &r, &sk, b"lost queue").await, BrokerMsg::Ok);
    drop(c);
    stop(srv).await;
    // The queue disappears from the database (e.g. an old backup restored).
    p.sql("DELETE FROM smp_server.msg_queues");

    let out = p.s.bin().arg("start").output().expect("start");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("the database does not have"), "{text}");
    assert!(text.contains("--allow-orphaned-messages"), "{text}");
    // Nothing was changed: the message is still in the journal.
    let opts =
        smp_server::store::journal::JournalOptions::new(smp_server::config::JournalFsync::Always);
    let (j, replay) =
        smp_server::store::journal::Journal::open(&p.journal_dir(), opts).expect("journal");
    drop(j);
    assert_eq!(replay.msgs.get(r.rid()).map(|m| m.len()), Some(1));

    // Allowed: the message is moved aside into a file, not dropped.
    let child =
        p.s.bin()
            .args(["start", "--allow-orphaned-messages"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
    let srv = Running(child);
    let addr = format!("127.0.0.1:{}", p.s.port).parse().expect("addr");
    let c = connect_when_up(addr, p.s.fp.0, Duration::from_secs(60)).await;
    let orphans: Vec<_> = std::fs::read_dir(&p.s.log)
        .expect("log dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("smp-server-messages.orphaned.")
        })
        .collect();
    assert_eq!(orphans.len(), 1, "one orphans file");
    let lines = std::fs::read_to_string(orphans[0].path()).expect("orphans");
    assert_eq!(lines.lines().count(), 1);
    drop(c);
    stop(srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_journal_server_moves_its_queues_to_the_database() {
    // The upgrade path: memory + journal, `database import --table queues`, then the pair.
    let cluster = Cluster::get();
    let db = cluster.new_db();
    let conn = cluster.conn(&db);
    let s = Setup::init(&["-l", "--store-messages", "journal"]);
    let (srv, c) = s.start().await;
    let (r, sk) = new_queue(&c).await;
    assert_eq!(
        send(&c, &r, &sk, b"kept in the journal").await,
        BrokerMsg::Ok
    );
    drop(c);
    stop(srv).await;

    let out = s.run_with_input(
        &["database", "import", "--table", "queues", "-d", &conn],
        "Y\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import failed: {text}");
    assert!(
        text.contains("store_queues set to `memory`, update it to `database` in INI file"),
        "{text}"
    );
    s.edit_ini(move |k, _| match k {
        "store_queues" => Some("store_queues = database".into()),
        "db_connection" => Some(format!("db_connection = {conn}")),
        _ => None,
    });
    let (srv, c) = s.start().await;
    let got = subscribe(&c, &r).await;
    assert_eq!(body(&got), b"kept in the journal");
    assert_eq!(ack(&c, &r, got.expect("message").0).await, None);
    drop(c);
    stop(srv).await;
    assert_eq!(
        Cluster::get()
            .psql(&db, "SELECT count(*) FROM smp_server.msg_queues")
            .trim(),
        "1"
    );
}

/// The journal, failing on demand.
struct Flaky {
    inner: Arc<smp_server::store::journal::Journal>,
    fail: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), ErrorType> {
        if self.fail.load(Ordering::SeqCst) {
            Err(ErrorType::Store("test: journal write failed".into()))
        } else {
            Ok(())
        }
    }
}

impl MessageLog for Flaky {
    fn written(&self, rid: &[u8], msg: &smp_server::store::Message) -> Result<(), ErrorType> {
        self.check()?;
        self.inner.written(rid, msg)
    }
    fn removed(&self, rid: &[u8], msg_id: &[u8]) -> Result<(), ErrorType> {
        self.check()?;
        self.inner.removed(rid, msg_id)
    }
    fn cleared(&self, rid: &[u8]) -> Result<(), ErrorType> {
        self.check()?;
        self.inner.cleared(rid)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_object_answers_ok_only_after_the_journal_and_keeps_quota_rules() {
    use smp_server::protocol::command::Party;
    use smp_server::store::Store;
    let opts = pg::fresh_db_options();
    let db = smp_server::store::postgres::setup::open_db(&opts, true).expect("open db");
    let pg = Arc::new(smp_server::store::postgres::PgStore::new(db, None, 86400));
    let dir = tempfile::tempdir().expect("tempdir");
    let jopts =
        smp_server::store::journal::JournalOptions::new(smp_server::config::JournalFsync::Always);
    let jdir = dir.path().join("messages");
    let (journal, _) = smp_server::store::journal::Journal::open(&jdir, jopts).expect("journal");
    let flaky = Arc::new(Flaky {
        inner: Arc::new(journal),
        fail: AtomicBool::new(false),
    });
    let store = Arc::new(smp_server::store::pg_journal::PgJournalStore::new(
        pg,
        flaky.clone(),
    ));
    let settings = smp_server::server::Settings {
        msg_queue_quota: 2,
        ..Default::default()
    };
    let s = start_server_on(settings, store.clone()).await;
    let c = s.client().await;
    let r = create_queue(&c).await;
    let q = || store.get_queue(Party::Recipient, r.rid()).expect("queue");
    let sendr = |b: &'static [u8]| {
        let c = &c;
        let sid = r.sid().to_vec();
        async move { c.request(&sid, send_cmd(b), None).await.expect("SEND").1 }
    };

    assert_eq!(sendr(b"a").await, BrokerMsg::Ok);
    let a = decrypt_msg(&r, &event(&c).await.1);
    assert_eq!(a.body.as_deref(), Some(&b"a"[..]));
    // A failed journal write: ERR STORE, and nothing kept.
    flaky.fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        sendr(b"b").await,
        BrokerMsg::Err(ErrorType::Store(_))
    ));
    assert_eq!(store.queue_size(&q()).expect("size"), 1);
    // A failed ACK keeps the message.
    let (_, resp) = c
        .request(r.rid(), Cmd::Ack(a.msg_id.clone()), Some(&r.key))
        .await
        .expect("ACK");
    assert!(
        matches!(resp, BrokerMsg::Err(ErrorType::Store(_))),
        "{resp:?}"
    );
    assert_eq!(store.queue_size(&q()).expect("size"), 1);
    flaky.fail.store(false, Ordering::SeqCst);
    // Subscribing again delivers it again; now the ACK is journaled.
    let again = subscribe(&c, &r).await.expect("delivered again");
    assert_eq!(again.0, a.msg_id);
    assert_eq!(ack(&c, &r, again.0).await, None);
    assert_eq!(store.queue_size(&q()).expect("size"), 0);

    // Quota 2: two messages, then the marker, then nothing more.
    for b in [&b"x1"[..], b"x2"] {
        assert_eq!(sendr(b).await, BrokerMsg::Ok);
    }
    for _ in 0..2 {
        assert_eq!(sendr(b"x3").await, BrokerMsg::Err(ErrorType::Quota));
    }
    assert_eq!(
        store.queue_size(&q()).expect("size"),
        3,
        "2 messages + marker"
    );
    assert_eq!(store.count_messages(), 2, "the marker is not counted");
    // Expiry removes them (and journals it).
    assert_eq!(store.expire_messages(i64::MAX), 3);
    assert_eq!(store.queue_size(&q()).expect("size"), 0);
    assert_eq!(sendr(b"y").await, BrokerMsg::Ok);
    // Deleting the queue drops its messages.
    let (_, ok) = c
        .request(r.rid(), Cmd::Del, Some(&r.key))
        .await
        .expect("DEL");
    assert_eq!(ok, BrokerMsg::Ok);
    assert_eq!(store.count_messages(), 0);
    drop(c);
    drop(s);
    drop(store);
    drop(flaky);
    let (_, replay) = smp_server::store::journal::Journal::open(&jdir, jopts).expect("reopen");
    assert!(replay.msgs.is_empty(), "{:?}", replay.msgs.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_journal_is_converted_with_queues_in_the_database() {
    use common::refjournal::{msg, RefMsg, RefQueue};
    let p = pair();
    let (srv, c) = p.s.start().await;
    let (r, _) = new_queue(&c).await;
    drop(c);
    stop(srv).await;
    // The reference's `messages/` layout: 4 messages, the first acknowledged.
    let dir = p.journal_dir();
    std::fs::remove_dir_all(&dir).expect("remove our journal");
    let mut q = RefQueue::new(&dir, r.rid(), 256);
    (0..4).for_each(|i| q.write_msg(&msg(0, i)));
    q.ack();

    let (srv, c) = p.s.start().await;
    let aside: Vec<_> = std::fs::read_dir(&p.s.log)
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("messages.reference-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the original is kept aside");
    let mut got = Vec::new();
    let mut next = subscribe(&c, &r).await;
    while let Some((id, b)) = next {
        got.push(b.expect("body"));
        next = ack(&c, &r, id).await;
    }
    let want: Vec<Vec<u8>> = (1..4)
        .map(|i| match msg(0, i) {
            RefMsg::Msg(_, _, _, body) => body,
            RefMsg::Quota(..) => unreachable!(),
        })
        .collect();
    assert_eq!(got, want);
    drop(c);
    stop(srv).await;
}
