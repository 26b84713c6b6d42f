//! Queues in bulk: NEW and KEY in batches, RSS per idle queue, batched SUB, restart time, and a
//! generated store log for the 1,000,000-queue figures.
//!
//! All queues share one recipient key, one DH key and one sender key: the server still verifies
//! every command and derives every queue's secret, and the client stays cheap enough for a
//! million queues.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use smp_server::client::{new_corr_id, AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::command::{
    Command, NewQueueReq, QueueMode, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::response::BrokerMsg;
use smp_server::store::storelog::StoreLogRecord;
use smp_server::store::{QueueBody, QueueRec};

use crate::server::Server;

/// NEW transmissions sent together (they fit one 16 KB block).
pub const NEW_PER_BATCH: usize = 40;
/// KEY/SUB transmissions sent together (they fit one 16 KB block).
pub const SMALL_PER_BATCH: usize = 100;

/// The keys all benchmark queues share.
pub struct Keys {
    rcv: AuthKey,
    dh: DhKeyPair,
    snd: AuthKey,
}

impl Keys {
    /// Fresh keys.
    pub fn new() -> Result<Keys> {
        Ok(Keys {
            rcv: AuthKey::Sign(PrivateSignKey::generate(KeyAlgorithm::Ed25519)?),
            dh: DhKeyPair::generate()?,
            snd: AuthKey::Sign(PrivateSignKey::generate(KeyAlgorithm::Ed25519)?),
        })
    }
}

/// A client connection with a generous timeout (a million SUBs take a while).
pub async fn connect(server: &Server) -> Result<SmpClient> {
    let opts = ClientOptions {
        timeout: Duration::from_secs(300),
        ..ClientOptions::default()
    };
    Ok(SmpClient::connect(server.addr, server.fingerprint, opts).await?)
}

/// Send `cmds` (entity, command) in batches of `per_batch`, `lanes` batches in flight on
/// separate connections; every answer must satisfy `ok`. Returns the answers in order.
async fn batched(
    clients: &[Arc<SmpClient>],
    keys: &Arc<Keys>,
    cmds: Vec<(Vec<u8>, Command)>,
    per_batch: usize,
    use_snd_key: bool,
) -> Result<Vec<BrokerMsg>> {
    let lanes = clients.len();
    let chunks: Vec<Vec<(Vec<u8>, Command)>> = {
        let mut v = Vec::new();
        let mut it = cmds.into_iter().peekable();
        while it.peek().is_some() {
            v.push(it.by_ref().take(per_batch).collect());
        }
        v
    };
    let n_chunks = chunks.len();
    let chunks = Arc::new(std::sync::Mutex::new(
        chunks.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let mut tasks = Vec::new();
    for c in clients.iter().take(lanes) {
        let c = c.clone();
        let keys = keys.clone();
        let chunks = chunks.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = chunks.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((i, chunk)) = next else { break };
                let key = if use_snd_key { &keys.snd } else { &keys.rcv };
                let mut items = Vec::with_capacity(chunk.len());
                for (ent, cmd) in &chunk {
                    let corr = new_corr_id();
                    let t = c.transmission(&corr, ent, cmd, Some(key))?;
                    items.push((corr, t));
                }
                let rs = c.send_batch(items).await?;
                out.push((i, rs.into_iter().map(|(_, m)| m).collect::<Vec<_>>()));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all: Vec<(usize, Vec<BrokerMsg>)> = Vec::with_capacity(n_chunks);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().flat_map(|(_, v)| v).collect())
}

/// Queues created by [`create`]: recipient IDs (the entities of KEY and SUB).
pub struct Created {
    /// Recipient IDs.
    pub rcv_ids: Vec<Vec<u8>>,
    /// Server CPU µs per NEW.
    pub new_cpu_us: f64,
    /// Server CPU µs per KEY.
    pub key_cpu_us: f64,
    /// RSS bytes per queue (after NEW + KEY, not subscribed).
    pub rss_per_queue: f64,
    /// PostgreSQL CPU µs per NEW and per KEY (zero without the database stores).
    pub new_db_cpu_us: f64,
    /// See `new_db_cpu_us`.
    pub key_db_cpu_us: f64,
    /// NEW and KEY per second of wall time (2 connections, one batch in flight on each).
    pub new_per_s: f64,
    /// See `new_per_s`.
    pub key_per_s: f64,
}

/// Create `n` queues (NEW without subscribing, then KEY), measuring CPU and RSS.
pub async fn create(server: &Server, keys: &Arc<Keys>, n: usize) -> Result<Created> {
    let clients = vec![
        Arc::new(connect(server).await?),
        Arc::new(connect(server).await?),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = server.rss()?;
    let new = || {
        Command::New(NewQueueReq {
            rcv_auth_key: keys.rcv.public(),
            rcv_dh_key: keys.dh.public(),
            auth: None,
            sub_mode: SubscriptionMode::OnlyCreate,
            queue_req_data: Some(QueueReqData::Messaging(None)),
            ntf_creds: None,
        })
    };
    let cpu0 = server.cpu()?;
    let db0 = server.db_cpu()?;
    let t0 = std::time::Instant::now();
    let cmds = (0..n).map(|_| (Vec::new(), new())).collect();
    let answers = batched(&clients, keys, cmds, NEW_PER_BATCH, false).await?;
    let new_s = t0.elapsed().as_secs_f64();
    let cpu1 = server.cpu()?;
    let db1 = server.db_cpu()?;
    let mut rcv_ids = Vec::with_capacity(n);
    for a in answers {
        match a {
            BrokerMsg::Ids(ids) => rcv_ids.push(ids.rcv_id),
            other => bail!("NEW answered {other:?}"),
        }
    }
    let cmds = rcv_ids
        .iter()
        .map(|id| (id.clone(), Command::Key(keys.snd.public())))
        .collect();
    let t1 = std::time::Instant::now();
    let answers = batched(&clients, keys, cmds, SMALL_PER_BATCH, false).await?;
    let key_s = t1.elapsed().as_secs_f64();
    let cpu2 = server.cpu()?;
    let db2 = server.db_cpu()?;
    if let Some(bad) = answers.iter().find(|a| **a != BrokerMsg::Ok) {
        bail!("KEY answered {bad:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss1 = server.rss()?;
    Ok(Created {
        rcv_ids,
        new_cpu_us: cpu1.saturating_sub(cpu0).as_secs_f64() * 1e6 / n as f64,
        key_cpu_us: cpu2.saturating_sub(cpu1).as_secs_f64() * 1e6 / n as f64,
        rss_per_queue: rss1.saturating_sub(rss0) as f64 / n as f64,
        new_db_cpu_us: db1.saturating_sub(db0).as_secs_f64() * 1e6 / n as f64,
        key_db_cpu_us: db2.saturating_sub(db1).as_secs_f64() * 1e6 / n as f64,
        new_per_s: n as f64 / new_s,
        key_per_s: n as f64 / key_s,
    })
}

/// What a batched SUB of many queues measured.
pub struct Subscribed {
    /// Server CPU µs per SUB.
    pub cpu_us: f64,
    /// PostgreSQL CPU µs per SUB (zero without the database stores).
    pub db_cpu_us: f64,
    /// SUBs answered per second of wall time.
    pub per_s: f64,
    /// Wall time of the whole SUB.
    pub secs: f64,
}

/// SUB every queue in batches from `lanes` fresh connections (one batch in flight on each);
/// the connections are returned so that the subscriptions can be held (e.g. to measure RSS).
pub async fn subscribe_all(
    server: &Server,
    keys: &Arc<Keys>,
    rcv_ids: &[Vec<u8>],
    lanes: usize,
) -> Result<(Subscribed, Vec<Arc<SmpClient>>)> {
    let mut clients = Vec::with_capacity(lanes);
    for _ in 0..lanes.max(1) {
        clients.push(Arc::new(connect(server).await?));
    }
    let cmds = rcv_ids
        .iter()
        .map(|id| (id.clone(), Command::Sub))
        .collect();
    let cpu0 = server.cpu()?;
    let db0 = server.db_cpu()?;
    let t = std::time::Instant::now();
    let answers = batched(&clients, keys, cmds, SMALL_PER_BATCH, false).await?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = server.cpu()?.saturating_sub(cpu0);
    let db = server.db_cpu()?.saturating_sub(db0);
    // v18 answers SUB with SOK (service ID, none here); older versions with OK.
    let ok = |a: &BrokerMsg| matches!(a, BrokerMsg::Ok | BrokerMsg::Sok(_));
    if let Some(bad) = answers.iter().find(|a| !ok(a)) {
        bail!("SUB answered {bad:?}");
    }
    let n = rcv_ids.len().max(1) as f64;
    Ok((
        Subscribed {
            cpu_us: cpu.as_secs_f64() * 1e6 / n,
            db_cpu_us: db.as_secs_f64() * 1e6 / n,
            per_s: n / secs,
            secs,
        },
        clients,
    ))
}

fn id(i: u64, tag: u8) -> Vec<u8> {
    let mut v = vec![tag; 24];
    v[..8].copy_from_slice(&i.to_be_bytes());
    v
}

/// Write a store log of `n` secured messaging queues with `keys` (the server must be
/// stopped); returns their recipient IDs.
pub fn write_store_log(path: &Path, keys: &Keys, n: u64) -> Result<Vec<Vec<u8>>> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut ids = Vec::with_capacity(n as usize);
    let secret = [9u8; 32];
    for i in 0..n {
        let rec = QueueRec {
            recipient_id: id(i, 1).into(),
            sender_id: id(i, 2).into(),
            body: QueueBody::new(keys.rcv.public(), secret, Some(QueueMode::Messaging)),
        };
        for r in [
            StoreLogRecord::Create(Box::new(rec)),
            StoreLogRecord::Secure(id(i, 1), keys.snd.public()),
        ] {
            w.write_all(&r.encode())?;
            w.write_all(b"\n")?;
        }
        ids.push(id(i, 1));
    }
    w.flush()?;
    Ok(ids)
}
