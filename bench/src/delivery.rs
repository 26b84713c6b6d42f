//! Delivery at a fixed offered load: senders SEND at a fixed rate (open loop, a bounded number
//! in flight), recipients decrypt and check every MSG body and ACK it.
//!
//! Each queue is created by its recipient (NEW, subscribed) and secured with KEY, so every SEND
//! and every ACK carries an Ed25519 signature, as the floor assumes. A body holds its queue,
//! sequence number and send time, then filler derived from both, so a corrupted, swapped,
//! duplicated or lost body is caught; the run fails rather than report figures of a broken
//! delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::cbox;
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::command::{
    Command, MsgFlags, NewQueueReq, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::response::BrokerMsg;
use tokio::sync::{mpsc, Semaphore};

use crate::server::Server;

/// One delivery run.
#[derive(Debug, Clone)]
pub struct Load {
    /// Queues (each with its own sender key and recipient key).
    pub queues: usize,
    /// Connections on each side (queues are spread over them).
    pub conns: usize,
    /// Body size in bytes.
    pub body: usize,
    /// Offered messages per second (open loop); ignored with `window`.
    pub rate: f64,
    /// Closed loop instead: send as fast as the client can while each queue has fewer than
    /// this many messages sent and not yet received. The client, not the
    /// offered rate, then sets the pace: the server at the bench client's capacity.
    pub window: Option<usize>,
    /// Messages to send.
    pub messages: usize,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Messages delivered (all of them, or the run fails).
    pub delivered: usize,
    /// From the first SEND to the last MSG.
    pub elapsed: Duration,
    /// Server CPU time over the run.
    pub server_cpu: Duration,
    /// The kernel's part of `server_cpu` (system calls, loopback TCP).
    pub server_kernel: Duration,
    /// PostgreSQL's CPU time over the run (zero without the database stores).
    pub db_cpu: Duration,
    /// SEND -> OK latencies, ms: p50, p99.
    pub ok_ms: (f64, f64),
    /// SEND -> MSG latencies, ms: p50, p99.
    pub msg_ms: (f64, f64),
    /// ACKs the server answered with its own `OK` (the others with the queue's next MSG): each
    /// such `OK` is a block the floor of 4 blocks per message does not count.
    pub ack_ok: usize,
    /// Context switches of the server's threads over the run.
    pub ctx_switches: u64,
}

impl Outcome {
    /// Server CPU microseconds per delivered message.
    pub fn cpu_per_msg_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// Kernel-side server CPU microseconds per delivered message.
    pub fn kernel_per_msg_us(&self) -> f64 {
        self.server_kernel.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// PostgreSQL CPU microseconds per delivered message.
    pub fn db_cpu_per_msg_us(&self) -> f64 {
        self.db_cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// Server context switches per delivered message.
    pub fn ctx_per_msg(&self) -> f64 {
        self.ctx_switches as f64 / self.delivered.max(1) as f64
    }

    /// Share of the delivered messages whose ACK got its own `OK` block.
    pub fn ack_ok_share(&self) -> f64 {
        self.ack_ok as f64 / self.delivered.max(1) as f64
    }

    /// Delivered messages per second.
    pub fn throughput(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

/// The body of message `seq` of queue `q` sent at `sent_ns` after the run's epoch.
fn body(q: u32, seq: u64, sent_ns: u64, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&q.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&sent_ns.to_be_bytes());
    fill(&mut b, q, seq, len);
    b
}

fn fill(b: &mut Vec<u8>, q: u32, seq: u64, len: usize) {
    let mut x = (u64::from(q) << 40) ^ seq ^ 0x9e37_79b9_7f4a_7c15;
    while b.len() < len {
        // xorshift64: cheap, and any swapped or altered byte shows.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (len - b.len()).min(8);
        b.extend_from_slice(&x.to_le_bytes()[..n]);
    }
}

/// Check a received body; returns (queue, seq, sent_ns).
fn check(plain: &[u8], len: usize) -> Result<(u32, u64, u64)> {
    if plain.len() != len || len < 20 {
        bail!("body of {} bytes, expected {len}", plain.len());
    }
    let q = u32::from_be_bytes(plain[..4].try_into()?);
    let seq = u64::from_be_bytes(plain[4..12].try_into()?);
    let sent = u64::from_be_bytes(plain[12..20].try_into()?);
    let mut expect = plain[..20].to_vec();
    fill(&mut expect, q, seq, len);
    if expect != plain {
        bail!("body of queue {q} message {seq} differs from what was sent");
    }
    Ok((q, seq, sent))
}

/// Open a MSG: decrypt with the queue's secret and strip the timestamp and flags.
fn open_msg(secret: &[u8; 32], id: &[u8], enc: &[u8]) -> Result<Vec<u8>> {
    let plain = cbox::cb_decrypt(secret, &cbox::cb_nonce(id), enc)
        .map_err(|e| anyhow!("MSG does not decrypt: {e:?}"))?;
    // i64 timestamp, flags ("T"/"F"), space, body
    let rest = plain.get(8..).ok_or_else(|| anyhow!("short MSG"))?;
    let sp = rest
        .iter()
        .position(|&c| c == b' ')
        .ok_or_else(|| anyhow!("MSG without flags"))?;
    Ok(rest[sp + 1..].to_vec())
}

struct Queue {
    rcv_id: Vec<u8>,
    snd_id: Vec<u8>,
    rcv_key: AuthKey,
    snd_key: AuthKey,
    secret: [u8; 32],
}

fn ed25519() -> Result<AuthKey> {
    Ok(AuthKey::Sign(PrivateSignKey::generate(
        KeyAlgorithm::Ed25519,
    )?))
}

/// Create `n` secured queues on `rcv` (subscribed there).
async fn make_queue(rcv: &SmpClient) -> Result<Queue> {
    let rcv_key = ed25519()?;
    let snd_key = ed25519()?;
    let dh = DhKeyPair::generate()?;
    let new = Command::New(NewQueueReq {
        rcv_auth_key: rcv_key.public(),
        rcv_dh_key: dh.public(),
        auth: None,
        sub_mode: SubscriptionMode::Subscribe,
        queue_req_data: Some(QueueReqData::Messaging(None)),
        ntf_creds: None,
    });
    let (_, r) = rcv.request(b"", new, Some(&rcv_key)).await?;
    let BrokerMsg::Ids(ids) = r else {
        bail!("NEW answered {r:?}");
    };
    let (_, r) = rcv
        .request(&ids.rcv_id, Command::Key(snd_key.public()), Some(&rcv_key))
        .await?;
    if r != BrokerMsg::Ok {
        bail!("KEY answered {r:?}");
    }
    let secret = dh.dh(&ids.rcv_public_dh_key)?;
    Ok(Queue {
        rcv_id: ids.rcv_id,
        snd_id: ids.snd_id,
        rcv_key,
        snd_key,
        secret,
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Run one load against a started server.
pub async fn run(server: &Server, load: &Load) -> Result<Outcome> {
    let opts = ClientOptions {
        timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    };
    let mut rcvs = Vec::new();
    let mut snds = Vec::new();
    for _ in 0..load.conns {
        rcvs.push(Arc::new(
            SmpClient::connect(server.addr, server.fingerprint, opts.clone()).await?,
        ));
        snds.push(Arc::new(
            SmpClient::connect(server.addr, server.fingerprint, opts.clone()).await?,
        ));
    }
    let mut queues = Vec::new();
    for i in 0..load.queues {
        queues.push(Arc::new(make_queue(&rcvs[i % load.conns]).await?));
    }
    let epoch = Instant::now();
    let msg_lat = Arc::new(Mutex::new(Vec::with_capacity(load.messages)));
    let ack_ok = Arc::new(AtomicUsize::new(0));
    // Per queue, so that no queue's backlog can reach the quota.
    let windows: Option<Vec<Arc<Semaphore>>> = load.window.map(|w| {
        (0..load.queues)
            .map(|_| Arc::new(Semaphore::new(w)))
            .collect()
    });
    // Per queue: the messages still expected, so every message must arrive exactly once.
    let per_queue = load.messages.div_ceil(load.queues);
    let mut receivers = Vec::new();
    let mut routes: Vec<HashMap<Vec<u8>, mpsc::UnboundedSender<BrokerMsg>>> =
        (0..load.conns).map(|_| HashMap::new()).collect();
    for (qi, q) in queues.iter().enumerate() {
        let expected = (0..load.messages).filter(|i| i % load.queues == qi).count();
        let (tx, mut rx) = mpsc::unbounded_channel::<BrokerMsg>();
        routes[qi % load.conns].insert(q.rcv_id.clone(), tx);
        let rcv = rcvs[qi % load.conns].clone();
        let q = q.clone();
        let lat = msg_lat.clone();
        let acks_ok = ack_ok.clone();
        let len = load.body;
        let window = windows.as_ref().map(|w| w[qi].clone());
        receivers.push(tokio::spawn(async move {
            let mut seen = vec![false; per_queue];
            let mut next: Option<BrokerMsg> = None;
            for _ in 0..expected {
                let m = match next.take() {
                    Some(m) => m,
                    None => tokio::time::timeout(Duration::from_secs(60), rx.recv())
                        .await
                        .map_err(|_| anyhow!("queue {qi}: no MSG within 60 s"))?
                        .ok_or_else(|| anyhow!("connection closed"))?,
                };
                let BrokerMsg::Msg(id, enc) = m else {
                    bail!("expected MSG, got {m:?}");
                };
                let plain = open_msg(&q.secret, &id, &enc)?;
                let (bq, seq, sent) = check(&plain, len)?;
                let slot = seen.get_mut(seq as usize).filter(|_| bq as usize == qi);
                match slot {
                    Some(s) if !*s => *s = true,
                    _ => bail!("queue {qi} got message {seq} of queue {bq} twice or misrouted"),
                }
                let now = epoch.elapsed().as_nanos() as u64;
                lat.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(now.saturating_sub(sent) as f64 / 1e6);
                if let Some(w) = &window {
                    w.add_permits(1);
                }
                let (_, r) = rcv
                    .request(&q.rcv_id, Command::Ack(id), Some(&q.rcv_key))
                    .await?;
                match r {
                    BrokerMsg::Ok => {
                        acks_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    m @ BrokerMsg::Msg(..) => next = Some(m),
                    other => bail!("ACK answered {other:?}"),
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    // One router per recipient connection: pushed MSGs go to their queue's task.
    let mut routers = Vec::new();
    for (c, table) in routes.into_iter().enumerate() {
        let rcv = rcvs[c].clone();
        routers.push(tokio::spawn(async move {
            while let Some((ent, m)) = rcv.next_event(Duration::from_secs(3600)).await {
                if let Some(tx) = table.get(&ent) {
                    let _ = tx.send(m);
                }
            }
        }));
    }

    let (user0, kernel0) = server.cpu_split()?;
    let ctx0 = server.ctx_switches()?;
    let db0 = server.db_cpu()?;
    let start = Instant::now();
    let in_flight = Arc::new(Semaphore::new(load.queues * 4));
    let ok_lat = Arc::new(Mutex::new(Vec::with_capacity(load.messages)));
    let mut sends = Vec::with_capacity(load.messages);
    let mut seqs = vec![0u64; load.queues];
    for i in 0..load.messages {
        let qi = i % load.queues;
        match &windows {
            Some(w) => w[qi].acquire().await?.forget(),
            None => {
                let due = start + Duration::from_secs_f64(i as f64 / load.rate);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let permit = in_flight.clone().acquire_owned().await?;
        let seq = seqs[qi];
        seqs[qi] += 1;
        let q = queues[qi].clone();
        let snd = snds[qi % load.conns].clone();
        let len = load.body;
        let lat = ok_lat.clone();
        sends.push(tokio::spawn(async move {
            let t = epoch.elapsed();
            let b = body(qi as u32, seq, t.as_nanos() as u64, len);
            let cmd = Command::Send(
                MsgFlags {
                    notification: false,
                },
                b,
            );
            let (_, r) = snd.request(&q.snd_id, cmd, Some(&q.snd_key)).await?;
            drop(permit);
            if r != BrokerMsg::Ok {
                bail!("SEND answered {r:?}");
            }
            let ms = (epoch.elapsed() - t).as_secs_f64() * 1e3;
            lat.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in sends {
        s.await??;
    }
    for r in receivers {
        r.await??;
    }
    let elapsed = start.elapsed();
    let (user1, kernel1) = server.cpu_split()?;
    let ctx_switches = server.ctx_switches()?.saturating_sub(ctx0);
    let server_kernel = kernel1.saturating_sub(kernel0);
    let server_cpu = user1.saturating_sub(user0) + server_kernel;
    let db_cpu = server.db_cpu()?.saturating_sub(db0);
    for r in routers {
        r.abort();
    }
    let mut ok = std::mem::take(&mut *ok_lat.lock().unwrap_or_else(|e| e.into_inner()));
    let mut msg = std::mem::take(&mut *msg_lat.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Outcome {
        delivered: msg.len(),
        elapsed,
        server_cpu,
        server_kernel,
        db_cpu,
        ok_ms: (pct(&mut ok, 0.5), pct(&mut ok, 0.99)),
        msg_ms: (pct(&mut msg, 0.5), pct(&mut msg, 0.99)),
        ack_ok: ack_ok.load(Ordering::Relaxed),
        ctx_switches,
    })
}
