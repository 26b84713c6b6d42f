//! SEND -> MSG throughput and latency of the in-process server on loopback TLS, with the memory
//! message store and with the message journal under each fsync policy.
//!
//! `cargo bench --bench message_store -- [--queues N] [--messages M] [--body BYTES] [--dir D]`
//! Each queue has its own sender and recipient connection; senders await `OK` before the next
//! SEND, recipients ACK every MSG. Prints messages/s and SEND->OK and SEND->MSG latency
//! percentiles per store. `--dir` chooses where journals are written (default: a temporary
//! directory under /var/tmp, i.e. a real disk rather than tmpfs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::config::JournalFsync;
use smp_server::crypto::identity::{create_identity, load_identity};
use smp_server::crypto::keys::DhKeyPair;
use smp_server::protocol::command::{
    Command, MsgFlags, NewQueueReq, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::{Server, Settings};
use smp_server::store::durable::DurableStore;
use smp_server::store::journal::{Journal, JournalOptions};
use smp_server::store::memory::MemoryStore;
use smp_server::store::{MessageLog, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Args {
    queues: usize,
    messages: usize,
    body: usize,
    dir: std::path::PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        queues: 16,
        messages: 500,
        body: 1024,
        dir: std::path::PathBuf::from("/var/tmp"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--bench" {
            continue; // added by `cargo bench`
        }
        let v = it.next().ok_or_else(|| anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--queues" => a.queues = v.parse().context("--queues")?,
            "--messages" => a.messages = v.parse().context("--messages")?,
            "--body" => a.body = v.parse().context("--body")?,
            "--dir" => a.dir = v.into(),
            _ => bail!("unknown option {k}; use --queues, --messages, --body, --dir"),
        }
    }
    Ok(a)
}

struct Results {
    ok_lat: Vec<Duration>,
    msg_lat: Vec<Duration>,
    elapsed: Duration,
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

async fn run_one(a: &Args, fsync: Option<JournalFsync>) -> Result<Results> {
    let id_dir = tempfile::tempdir()?;
    create_identity(
        id_dir.path(),
        smp_server::crypto::keys::KeyAlgorithm::Ed25519,
        "localhost",
    )?;
    let identity = load_identity(id_dir.path())?;
    let fp = identity.fingerprint.0;
    let data_dir = tempfile::tempdir_in(&a.dir)?;
    let memory = MemoryStore::new();
    let mlog: Option<Arc<dyn MessageLog>> = match fsync {
        Some(f) => {
            let (j, _) = Journal::open(&data_dir.path().join("messages"), JournalOptions::new(f))?;
            Some(Arc::new(j))
        }
        None => None,
    };
    let store: Arc<dyn Store> = Arc::new(DurableStore::new(memory, None, mlog));
    let settings = Settings {
        msg_queue_quota: a.messages + 10,
        ..Settings::default()
    };
    let server = Arc::new(Server::with_store(settings, identity, store)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve(vec![listener], shutdown.clone()));
    let opts = ClientOptions {
        timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };

    let mut pairs = Vec::new();
    for _ in 0..a.queues {
        let rcv = SmpClient::connect(addr, fp, opts.clone()).await?;
        let snd = SmpClient::connect(addr, fp, opts.clone()).await?;
        let key = AuthKey::Dh(DhKeyPair::generate()?);
        let dh = DhKeyPair::generate()?;
        let new = Command::New(NewQueueReq {
            rcv_auth_key: key.public(),
            rcv_dh_key: dh.public(),
            auth: None,
            sub_mode: SubscriptionMode::Subscribe,
            queue_req_data: Some(QueueReqData::Messaging(None)),
            ntf_creds: None,
        });
        let (_, r) = rcv.request(b"", new, Some(&key)).await?;
        let BrokerMsg::Ids(ids) = r else {
            bail!("NEW answered {r:?}");
        };
        pairs.push((rcv, snd, key, ids));
    }

    let sent_at: Arc<Vec<Mutex<Vec<Instant>>>> =
        Arc::new((0..a.queues).map(|_| Mutex::new(Vec::new())).collect());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (qi, (rcv, snd, key, ids)) in pairs.into_iter().enumerate() {
        let n = a.messages;
        let body = vec![b'x'; a.body];
        let times = sent_at.clone();
        let sid = ids.snd_id.clone();
        let sender = tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                times[qi].lock().unwrap_or_else(|e| e.into_inner()).push(t);
                let cmd = Command::Send(
                    MsgFlags {
                        notification: false,
                    },
                    body.clone(),
                );
                let (_, r) = snd.request(&sid, cmd, None).await?;
                if r != BrokerMsg::Ok {
                    bail!("SEND answered {r:?}");
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
        let times = sent_at.clone();
        let rid = ids.rcv_id.clone();
        let receiver = tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            let mut next: Option<BrokerMsg> = None;
            while lat.len() < n {
                let m = match next.take() {
                    Some(m) => m,
                    None => {
                        rcv.next_event(Duration::from_secs(30))
                            .await
                            .ok_or_else(|| anyhow!("no MSG within 30 s"))?
                            .1
                    }
                };
                let BrokerMsg::Msg(id, _) = m else {
                    bail!("expected MSG, got {m:?}");
                };
                let t = times[qi].lock().unwrap_or_else(|e| e.into_inner())[lat.len()];
                lat.push(t.elapsed());
                let (_, r) = rcv.request(&rid, Command::Ack(id), Some(&key)).await?;
                match r {
                    BrokerMsg::Ok => {}
                    m @ BrokerMsg::Msg(..) => next = Some(m),
                    other => bail!("ACK answered {other:?}"),
                }
            }
            Ok::<_, anyhow::Error>(lat)
        });
        tasks.push((sender, receiver));
    }
    let mut ok_lat = Vec::new();
    let mut msg_lat = Vec::new();
    for (s, r) in tasks {
        ok_lat.extend(s.await??);
        msg_lat.extend(r.await??);
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    Ok(Results {
        ok_lat,
        msg_lat,
        elapsed,
    })
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{} queues x {} messages of {} bytes; journal under {}",
        a.queues,
        a.messages,
        a.body,
        a.dir.display()
    );
    println!("| store | messages/s | SEND->OK p50 / p99 (ms) | SEND->MSG p50 / p99 (ms) |");
    println!("|---|---|---|---|");
    let modes = [
        ("memory", None),
        ("journal, fsync off", Some(JournalFsync::Off)),
        ("journal, fsync batch", Some(JournalFsync::Batch)),
        ("journal, fsync always", Some(JournalFsync::Always)),
    ];
    for (name, f) in modes {
        let mut r = rt.block_on(run_one(&a, f))?;
        let total = r.msg_lat.len() as f64;
        println!(
            "| {name} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} |",
            total / r.elapsed.as_secs_f64(),
            pct(&mut r.ok_lat, 0.5),
            pct(&mut r.ok_lat, 0.99),
            pct(&mut r.msg_lat, 0.5),
            pct(&mut r.msg_lat, 0.99),
        );
    }
    Ok(())
}
