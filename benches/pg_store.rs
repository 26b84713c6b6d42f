//! The PostgreSQL store at the store interface the server calls: NEW/s (`add_queue`),
//! SEND→MSG→ACK per second (`write_msg`, `peek_msg`, `del_peek_msg` as SEND, delivery and ACK
//! do), start-up time (connect + migration check + counts, what `start` does) and this
//! process's RSS with `SMP_BENCH_QUEUES` queues (default 100,000) in the database.
//!
//! Needs a PostgreSQL server: `SMP_BENCH_PG='host=/tmp/x port=5432 user=postgres dbname=bench'`
//! (an empty database; schema `smp_server` is created). Run: `cargo bench --bench pg_store`.

use std::sync::Arc;
use std::time::Instant;

use smp_server::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_server::protocol::command::{MsgFlags, Party};
use smp_server::store::postgres::db::DbOptions;
use smp_server::store::postgres::{setup, PgStore};
use smp_server::store::{Message, QueueBody, QueueRec, QueueStatus, Store};

fn id(i: u64, tag: u8) -> Vec<u8> {
    let mut v = vec![tag; 24];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn rec(i: u64, k: &PublicKey) -> QueueRec {
    QueueRec {
        recipient_id: id(i, 1).into(),
        sender_id: id(i, 2).into(),
        body: QueueBody {
            recipient_keys: vec![k.clone()].into(),
            rcv_dh_secret: [9; 32],
            sender_key: Some(k.clone()),
            queue_mode: None,
            queue_data: None,
            notifier: None,
            status: QueueStatus::Active,
            updated_at: Some(1_700_006_400).into(),
        },
    }
}

/// Run `f(thread, i)` for `n` items over `threads` threads; items per second.
fn parallel(n: u64, threads: u64, f: impl Fn(u64) + Send + Sync + 'static) -> f64 {
    let f = Arc::new(f);
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|th| {
            let f = f.clone();
            std::thread::spawn(move || {
                let mut i = th;
                while i < n {
                    f(i);
                    i += threads;
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(conn) = std::env::var("SMP_BENCH_PG") else {
        eprintln!("set SMP_BENCH_PG to a libpq connection string of an empty database");
        return Ok(());
    };
    let n: u64 = std::env::var("SMP_BENCH_QUEUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let threads: u64 = 8;
    let opts = DbOptions {
        connection: conn,
        schema: "smp_server".into(),
        pool_size: 10,
    };
    let rss0 = rss_kb();
    let st = Arc::new(PgStore::new(setup::open_db(&opts, true)?, None, 86400));
    let k = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[7; 32])?;
    let s2 = st.clone();
    let new_per_s = parallel(n, threads, move |i| {
        s2.add_queue(rec(i, &k)).expect("add_queue");
    });
    println!("NEW/s ({threads} threads, {n} queues): {new_per_s:.0}");
    println!(
        "RSS after {n} queues: {} MB (at start {} MB)",
        rss_kb() / 1024,
        rss0 / 1024
    );

    let msgs: u64 = 20_000;
    let s3 = st.clone();
    let qn = n.min(1000);
    let send_per_s = parallel(msgs, threads, move |i| {
        let q = s3.get_queue(Party::Sender, &id(i % qn, 2)).expect("queue");
        let m = Message::Msg {
            msg_id: id(i, 3),
            ts: 1_700_000_000,
            flags: MsgFlags::default(),
            body: vec![0x55; 16_000],
        };
        s3.write_msg(&q, m, 128).expect("write");
        let r = s3
            .get_queue(Party::Recipient, &id(i % qn, 1))
            .expect("queue");
        if let Some(p) = s3.peek_msg(&r).expect("peek") {
            s3.del_peek_msg(&r, p.msg_id()).expect("ack");
        }
    });
    println!(
        "SEND->MSG->ACK/s ({threads} threads, 16 KB bodies over {qn} queues): {send_per_s:.0}"
    );
    println!("RSS after the messages: {} MB", rss_kb() / 1024);
    drop(st);

    let t = Instant::now();
    let db = setup::open_db(&opts, false)?;
    let st = PgStore::new(db, None, 86400);
    let removed = st.compact().map_err(|e| format!("{e:?}"))?;
    let (queues, _) = st.count_queues();
    println!(
        "start-up with {queues} queues: {:.3} s ({removed} deleted queues removed)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
