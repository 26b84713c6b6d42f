//! Failures with the PostgreSQL stores and the real binary: PostgreSQL stopped while serving
//! (commands get `ERR STORE`, nothing is answered `OK` that was not committed, service resumes
//! when it is back), and `kill -9` under load (nothing `OK`'d is lost, nothing ACKed comes
//! back). A throwaway cluster of this test process alone (it is stopped and restarted).

mod common;

use std::time::{Duration, Instant};

use common::binary::{stop, Setup};
use common::pg::Cluster;
use common::*;
use smp_server::client::SmpClient;
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

/// The tests stop the cluster they share, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn db_server() -> Setup {
    let opts = pg::fresh_db_options();
    drop(smp_server::store::postgres::setup::open_db(&opts, true).expect("schema"));
    let s = Setup::init(&["--store-messages", "memory"]);
    let conn = opts.connection.clone();
    s.edit_ini(move |k, _| match k {
        "store_queues" => Some("store_queues = database".into()),
        "store_messages" => Some("store_messages = database".into()),
        "db_connection" => Some(format!("db_connection = {conn}")),
        "enable" => Some("enable = off".into()),
        _ => None,
    });
    s
}

async fn secured_queue(c: &SmpClient) -> (Recipient, smp_server::client::AuthKey) {
    common::binary::secured_queue_with_password(c).await
}

/// Subscribe and receive, acknowledging each, until nothing more comes; the bodies in order.
async fn drain(c: &SmpClient, r: &Recipient) -> Vec<Vec<u8>> {
    let (_, sub) = c
        .request(r.rid(), Cmd::Sub, Some(&r.key))
        .await
        .expect("SUB");
    let mut next = match sub {
        BrokerMsg::Msg(..) => Some(sub),
        _ => c.next_event(Duration::from_secs(3)).await.map(|(_, m)| m),
    };
    let mut got = Vec::new();
    while let Some(m) = next.take() {
        let rcv = decrypt_msg(r, &m);
        got.push(rcv.body.clone().unwrap_or_default());
        let (_, after) = c
            .request(r.rid(), Cmd::Ack(rcv.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        next = match after {
            BrokerMsg::Msg(..) => Some(after),
            BrokerMsg::Ok => None,
            other => panic!("ACK: {other:?}"),
        };
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_while_serving() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::get();
    let s = db_server();
    let (srv, c) = s.start().await;
    let (r, sk) = secured_queue(&c).await;
    let send = |body: &'static [u8]| {
        let c = &c;
        let sid = r.sid().to_vec();
        let sk = &sk;
        async move {
            c.request(&sid, send_cmd(body), Some(sk))
                .await
                .expect("SEND")
                .1
        }
    };
    assert_eq!(send(b"before").await, BrokerMsg::Ok);

    cluster.stop();
    let t = Instant::now();
    let during = send(b"during").await;
    assert!(
        matches!(during, BrokerMsg::Err(ErrorType::Store(_))),
        "expected ERR STORE, got {during:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "answered in time");

    cluster.restart();
    cluster.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match send(b"after").await {
            BrokerMsg::Ok => break,
            BrokerMsg::Err(ErrorType::Store(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("service did not resume: {other:?}"),
        }
    }
    let got = drain(&c, &r).await;
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
    drop(c);
    stop(srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let _serial = SERIAL.lock().await;
    let s = db_server();
    let (mut srv, c) = s.start().await;
    let (r, sk) = secured_queue(&c).await;
    // Ten messages, received and acknowledged before the crash: they must not come back.
    for i in 0..10u32 {
        let (_, ok) = c
            .request(
                r.sid(),
                send_cmd(format!("acked {i}").as_bytes()),
                Some(&sk),
            )
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    let acked = drain(&c, &r).await;
    assert_eq!(acked.len(), 10);
    drop(c);
    // A second client sends as fast as it can; the server is killed while it does, once a few
    // dozen SENDs were answered: well before the queue's quota (128), whatever the machine's
    // speed, so every OK'd message is a real one (a full queue would end in a quota marker).
    let sender = s.client().await;
    let sid = r.sid().to_vec();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let load = tokio::spawn(async move {
        let mut ok = Vec::new();
        for i in 0..100_000u32 {
            let body = format!("load {i}");
            match sender
                .request(&sid, send_cmd(body.as_bytes()), Some(&sk))
                .await
            {
                Ok((_, BrokerMsg::Ok)) => {
                    ok.push(body.into_bytes());
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok((_, other @ BrokerMsg::Err(_))) => panic!("SEND under load: {other:?}"),
                _ => return (ok, i),
            }
        }
        (ok, 100_000)
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load did not get going"
        );
        assert!(!load.is_finished(), "the load ended before the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    srv.0.kill().expect("kill -9");
    let _ = srv.0.wait();
    let (oked, attempted) = load.await.expect("load task");
    assert!(oked.len() >= 40, "the load ran before the kill");

    let (srv, c) = s.start().await;
    let got = drain(&c, &r).await;
    for a in &acked {
        assert!(!got.contains(a), "an acknowledged message came back");
    }
    // Every OK'd message, in order; at most the one in flight besides.
    assert!(got.starts_with(&oked), "OK'd messages lost or reordered");
    assert!(got.len() <= oked.len() + 1, "unexpected extra messages");
    if let Some(extra) = got.get(oked.len()) {
        assert_eq!(extra, format!("load {attempted}").as_bytes());
    }
    drop(c);
    stop(srv).await;
}
