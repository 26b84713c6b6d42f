//! The real binary with the PostgreSQL stores: store log + messages log → `database import`
//! → serve → `database export` gives the same records; the start-up checks of the reference.
//! A throwaway PostgreSQL cluster (`common::pg`, `.ci/setup-postgres.sh`).

mod common;

use common::binary::{stop, Setup};
use common::pg::Cluster;
use common::*;
use smp_server::protocol::command::{Command as Cmd, SubscriptionMode};
use smp_server::protocol::response::BrokerMsg;
use smp_server::store::memory::MemoryStore;
use smp_server::store::Store;

async fn new_queue(c: &smp_server::client::SmpClient) -> Recipient {
    common::binary::new_queue_with_password(c, SubscriptionMode::OnlyCreate).await
}

fn records(path: &std::path::Path) -> Vec<smp_server::store::QueueRec> {
    let st = MemoryStore::new();
    smp_server::store::storelog_file::replay(path, &st).expect("replay");
    let mut v: Vec<_> = st
        .all_queues()
        .iter()
        .map(|q| q.rec().expect("rec"))
        .collect();
    v.sort_by(|a, b| a.recipient_id.cmp(&b.recipient_id));
    v
}

fn use_database(s: &Setup, conn: &str) {
    let conn = conn.to_string();
    s.edit_ini(move |k, _| match k {
        "store_queues" => Some("store_queues = database".into()),
        "store_messages" => Some("store_messages = database".into()),
        "db_connection" => Some(format!("db_connection = {conn}")),
        _ => None,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_serve_export_round_trip() {
    let cluster = Cluster::get();
    let dbname = cluster.new_db();
    let conn = cluster.conn(&dbname);
    let s = Setup::init(&["-l", "--store-messages", "memory"]);
    // Queues and undelivered messages in the reference's files.
    let (srv, c) = s.start().await;
    let a = new_queue(&c).await;
    let d = new_queue(&c).await;
    let sk = key_for(18);
    let (_, ok) = c
        .request(a.rid(), Cmd::Key(pk(&sk)), Some(&a.key))
        .await
        .expect("KEY");
    assert_eq!(ok, BrokerMsg::Ok);
    for body in [&b"first \x00\xff"[..], b"second"] {
        let (_, ok) = c
            .request(a.sid(), send_cmd(body), Some(&sk))
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    let (_, ok) = c
        .request(d.rid(), Cmd::Off, Some(&d.key))
        .await
        .expect("OFF");
    assert_eq!(ok, BrokerMsg::Ok);
    drop(c);
    stop(srv).await;
    let log = s.log.join("smp-server-store.log");
    let msgs = s.log.join("smp-server-messages.log");
    let recs_before = records(&log);
    let msgs_before = std::fs::read(&msgs).expect("messages file");
    assert_eq!(recs_before.len(), 2);

    // Import: the sources become .bak.
    let out = s.run_with_input(&["database", "import", "-d", &conn], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import failed: {text}");
    assert!(text.contains("Imported: 0 services, 2 queues"), "{text}");
    assert!(text.contains("Import completed: 2 messages"), "{text}");
    assert!(!log.exists() && !msgs.exists());
    assert!(s.log.join("smp-server-store.log.bak").exists());
    assert!(s.log.join("smp-server-messages.log.bak").exists());

    // Serve from the database: the imported queue delivers its first message.
    use_database(&s, &conn);
    let (srv, c) = s.start().await;
    let (_, sub) = c
        .request(a.rid(), Cmd::Sub, Some(&a.key))
        .await
        .expect("SUB");
    let first = match sub {
        BrokerMsg::Msg(..) => sub,
        _ => event(&c).await.1,
    };
    let got = decrypt_msg(&a, &first);
    assert_eq!(got.body.as_deref(), Some(&b"first \x00\xff"[..]));
    let (_, off) = c
        .request(d.sid(), send_cmd(b"x"), None)
        .await
        .expect("SEND to OFF queue");
    assert!(matches!(off, BrokerMsg::Err(_)), "{off:?}");
    drop(c);
    stop(srv).await;

    // Export: the same records and the same message lines.
    let out = s.run_with_input(&["database", "export", "-d", &conn], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "export failed: {text}");
    assert_eq!(records(&log), recs_before);
    assert_eq!(
        std::fs::read(&msgs).expect("exported messages"),
        msgs_before
    );
    // The exported files and the schema are both present now: start refuses, as the reference.
    let out = s.bin().arg("start").output().expect("start");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("are present"), "{text}");
}

#[test]
fn start_refuses_database_without_schema_or_with_a_store_log() {
    let cluster = Cluster::get();
    let dbname = cluster.new_db();
    let conn = cluster.conn(&dbname);
    let s = Setup::init(&["-l", "--store-messages", "memory"]);
    use_database(&s, &conn);
    let out = s.bin().arg("start").output().expect("start");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("Error: store_queues is `database`, create schema smp_server"),
        "{text}"
    );
    // memory + database is not a valid pair
    s.edit_ini(|k, _| (k == "store_queues").then(|| "store_queues = memory".into()));
    let out = s.bin().arg("start").output().expect("start");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not compatible"), "{text}");
}
