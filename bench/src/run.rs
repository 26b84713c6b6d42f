//! The phases of a run, in order: floor, memory store (delivery, handshakes, idle connections,
//! memory after load, queues, restart), journal store, Ed448 identity, and with `--full` the
//! 1,000,000-queue figures.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::delivery::{self, Load};
use crate::floor::{self, median, Floors};
use crate::queues::{self, Keys, NEW_PER_BATCH, SMALL_PER_BATCH};
use crate::report::Report;
use crate::server::{MsgStore, Server, ServerSpec};
use crate::{conns, Args};

/// Bytes a queue's IDs, keys and secret take at the least: recipient and sender IDs (24 each),
/// recipient and sender Ed25519 keys (32 each), the DH secret (32).
const QUEUE_FLOOR_BYTES: f64 = 144.0;
/// A "16 KB message": 15 KB of body, so that a signed SEND, its encodings and the block
/// encryption's tag and padding fit one 16 KB block with room to spare (16,048 bytes unsigned
/// is the protocol's limit).
const BODY_16K: usize = 15 * 1024;
/// Issue 15's goal for an idle client.
const CONN_GOAL_BYTES: f64 = 12.0 * 1024.0;

/// Sizes of one mode.
struct Sizes {
    reps: usize,
    /// Offered loads (msg/s) of 16 KB bodies; the first is the one the ratio is taken at.
    loads_16k: Vec<f64>,
    loads_1k: Vec<f64>,
    seconds_per_load: f64,
    handshakes: usize,
    handshakes_ed448: usize,
    idle_conns: usize,
    queues: usize,
    big_queues: Option<u64>,
}

fn sizes(a: &Args) -> Sizes {
    let reps = a.repeat.unwrap_or(3).max(1);
    if a.full {
        Sizes {
            reps: a.repeat.unwrap_or(5),
            loads_16k: vec![500.0, 250.0, 1000.0, 2000.0],
            loads_1k: vec![1000.0, 500.0, 2000.0, 4000.0],
            seconds_per_load: 5.0,
            handshakes: 3000,
            handshakes_ed448: 1200,
            idle_conns: 2000,
            queues: 100_000,
            big_queues: Some(1_000_000),
        }
    } else if a.ci {
        Sizes {
            reps,
            loads_16k: vec![500.0],
            loads_1k: vec![1000.0],
            seconds_per_load: 3.0,
            handshakes: 2000,
            handshakes_ed448: 800,
            idle_conns: 500,
            queues: 20_000,
            big_queues: None,
        }
    } else {
        Sizes {
            reps,
            loads_16k: vec![500.0, 250.0, 1000.0],
            loads_1k: vec![1000.0, 2000.0],
            seconds_per_load: 3.0,
            handshakes: 2000,
            handshakes_ed448: 800,
            idle_conns: 1000,
            queues: 50_000,
            big_queues: None,
        }
    }
}

fn spec(a: &Args, store: MsgStore, ed448: bool) -> ServerSpec {
    ServerSpec {
        store,
        ed448,
        pin: a.pin_server.clone(),
        env: a.server_env.clone(),
    }
}

/// The floor timed again right before a measurement: the machine's speed drifts between
/// phases (a shared vCPU), so a floor timed minutes earlier moved by up to 40 % against it.
fn fresh_floor() -> Result<Floors> {
    floor::measure(7, Duration::from_millis(30))
}

/// Delivery rows of one store and body size: the ratio is the median over `reps` runs at the
/// first load, each run divided by a floor timed just before it; the other loads add
/// throughput and latency notes.
async fn deliveries(
    rep: &mut Report,
    server: &Server,
    floors: &Floors,
    sz: &Sizes,
    store: &str,
    body: usize,
    loads: &[f64],
) -> Result<()> {
    let mut floor = floors.delivery(body);
    let label = if body > 8192 { "16k" } else { "1k" };
    let (mut cpu, mut ratios, mut floor_us) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &rate) in loads.iter().enumerate() {
        let runs = if i == 0 { sz.reps } else { 1 };
        for _ in 0..runs {
            if i == 0 {
                floor = fresh_floor()?.delivery(body);
                floor_us.push(floor);
            }
            let load = Load {
                queues: 32,
                conns: 4,
                body,
                rate,
                messages: (rate * sz.seconds_per_load) as usize,
            };
            let o = delivery::run(server, &load).await?;
            if i == 0 {
                cpu.push(o.cpu_per_msg_us());
                ratios.push(o.cpu_per_msg_us() / floor);
            }
            rep.note(format!(
                "{store}, {label} bodies, offered {rate:.0} msg/s: delivered {:.0} msg/s, \
                 server CPU {:.0} µs/msg ({:.2}× floor), SEND→OK p50 {:.1} / p99 {:.1} ms, \
                 SEND→MSG p50 {:.1} / p99 {:.1} ms",
                o.throughput(),
                o.cpu_per_msg_us(),
                o.cpu_per_msg_us() / floor,
                o.ok_ms.0,
                o.ok_ms.1,
                o.msg_ms.0,
                o.msg_ms.1
            ));
        }
    }
    let m = median(&mut cpu);
    let floor = median(&mut floor_us);
    rep.row(
        &format!("deliver_{label}_{store}"),
        &format!("server CPU per delivered {label} message ({store} store)"),
        format!("{m:.0} µs ({:.0} msg/s per core)", 1e6 / m),
        format!("{floor:.0} µs"),
        Some(median(&mut ratios)),
        if store == "memory" {
            "≤ 1.1×"
        } else {
            "≤ 1.15×"
        },
    );
    Ok(())
}

async fn handshakes(
    rep: &mut Report,
    server: &Server,
    n: usize,
    reps: usize,
    ed448: bool,
) -> Result<()> {
    let (mut cpu, mut ratios, mut floor_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let f = fresh_floor()?.handshake(ed448);
        let c = conns::handshake_cpu_us(server, n, 4).await?;
        cpu.push(c);
        ratios.push(c / f);
        floor_us.push(f);
    }
    let m = median(&mut cpu);
    let floor = median(&mut floor_us);
    let ratio = median(&mut ratios);
    let (key, alg, goal) = if ed448 {
        ("handshake_ed448", "Ed448", "≥ 2,000/s per core")
    } else {
        ("handshake_ed25519", "Ed25519", "≥ 5,000/s per core")
    };
    rep.row(
        key,
        &format!("server CPU per TLS + SMP handshake, {alg} identity"),
        format!("{m:.0} µs ({:.0}/s per core)", 1e6 / m),
        format!("{floor:.0} µs"),
        Some(ratio),
        goal,
    );
    Ok(())
}

/// Every phase; returns the report.
pub async fn all(a: &Args, bin: &Path) -> Result<Report> {
    let sz = sizes(a);
    let mut rep = Report::default();
    println!("floor: timing the crypto primitives");
    let floors = floor::measure(if a.full { 9 } else { 5 }, Duration::from_millis(20))?;
    println!("  {:?}", floors.primitives);

    println!("memory store, Ed25519 identity");
    let mut mem = Server::init(bin, &a.scratch, spec(a, MsgStore::Memory, false))?;
    mem.start().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = mem.rss()?;
    deliveries(
        &mut rep,
        &mem,
        &floors,
        &sz,
        "memory",
        BODY_16K,
        &sz.loads_16k,
    )
    .await?;
    deliveries(&mut rep, &mem, &floors, &sz, "memory", 1024, &sz.loads_1k).await?;
    handshakes(&mut rep, &mem, sz.handshakes, sz.reps, false).await?;
    let per_conn = conns::rss_per_connection(&mem, sz.idle_conns).await?;
    rep.row(
        "rss_per_connection",
        "RSS per idle connected client (after the SMP handshake)",
        format!("{:.1} KB ({} clients)", per_conn / 1024.0, sz.idle_conns),
        "— (ratio to the goal)".into(),
        Some(per_conn / CONN_GOAL_BYTES),
        "≤ 12 KB",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = mem.rss()?;
    let peak = peak_rss(mem.pid()?).unwrap_or(after);
    rep.row(
        "memory_after_load",
        "RSS after the load, clients gone (idle = fresh server)",
        format!(
            "{:.1} MB (idle {:.1} MB, peak {:.1} MB)",
            mb(after),
            mb(idle_rss),
            mb(peak)
        ),
        format!("{:.1} MB idle", mb(idle_rss)),
        Some(after as f64 / idle_rss as f64),
        "≤ 1.2× idle",
    );

    let keys = Arc::new(Keys::new()?);
    let near = fresh_floor()?;
    let created = queues::create(&mem, &keys, sz.queues).await?;
    rep.row(
        "rss_per_queue",
        &format!("RSS per idle queue (NEW + KEY, {} queues)", sz.queues),
        format!("{:.0} B", created.rss_per_queue),
        format!("{QUEUE_FLOOR_BYTES:.0} B (IDs, keys, secret)"),
        Some(created.rss_per_queue / QUEUE_FLOOR_BYTES),
        "≤ 300 B",
    );
    let new_floor = near.new_queue(NEW_PER_BATCH as f64);
    rep.row(
        "new",
        &format!("server CPU per NEW (batches of {NEW_PER_BATCH})"),
        format!(
            "{:.0} µs ({:.0}/s per core)",
            created.new_cpu_us,
            1e6 / created.new_cpu_us
        ),
        format!("{new_floor:.0} µs"),
        Some(created.new_cpu_us / new_floor),
        "—",
    );
    let small_floor = near.small_cmd(SMALL_PER_BATCH as f64);
    rep.row(
        "key",
        &format!("server CPU per KEY (batches of {SMALL_PER_BATCH})"),
        format!("{:.0} µs", created.key_cpu_us),
        format!("{small_floor:.0} µs"),
        Some(created.key_cpu_us / small_floor),
        "—",
    );
    let small_floor = fresh_floor()?.small_cmd(SMALL_PER_BATCH as f64);
    let sub = queues::subscribe_all(&mem, &keys, &created.rcv_ids).await?;
    rep.row(
        "sub",
        &format!(
            "server CPU per SUB ({} queues, batches of {SMALL_PER_BATCH})",
            created.rcv_ids.len()
        ),
        format!("{sub:.0} µs"),
        format!("{small_floor:.0} µs"),
        Some(sub / small_floor),
        "—",
    );
    mem.stop()?;
    let restart = mem.start().await?;
    rep.row(
        "restart",
        &format!("restart to first SMP handshake ({} queues)", sz.queues),
        format!(
            "{:.2} s ({:.1} µs per queue)",
            restart.as_secs_f64(),
            restart.as_secs_f64() * 1e6 / sz.queues as f64
        ),
        "—".into(),
        None,
        "1M queues < 2 s",
    );
    mem.stop()?;
    drop(mem);

    if a.memory_only {
        return Ok(rep);
    }
    if let Some(n) = sz.big_queues {
        big(&mut rep, a, bin, &floors, n, idle_rss).await?;
    }

    println!("journal store (journal_fsync = batch), Ed25519 identity");
    let mut jr = Server::init(bin, &a.scratch, spec(a, MsgStore::Journal, false))?;
    jr.start().await?;
    deliveries(
        &mut rep,
        &jr,
        &floors,
        &sz,
        "journal",
        BODY_16K,
        &sz.loads_16k,
    )
    .await?;
    if a.full {
        deliveries(&mut rep, &jr, &floors, &sz, "journal", 1024, &sz.loads_1k).await?;
    }
    jr.stop()?;
    drop(jr);
    rep.note(
        "database store: not measured yet (no database message store in this build); \
              add it as MsgStore::Database in bench/src/server.rs when it lands"
            .to_string(),
    );

    println!("memory store, Ed448 identity (init -a ED448)");
    let mut e448 = Server::init(bin, &a.scratch, spec(a, MsgStore::Memory, true))?;
    e448.start().await?;
    handshakes(&mut rep, &e448, sz.handshakes_ed448, sz.reps, true).await?;
    e448.stop()?;
    Ok(rep)
}

/// The figures at `n` queues from a generated store log: restart, RSS per queue, SUB.
async fn big(
    rep: &mut Report,
    a: &Args,
    bin: &Path,
    floors: &Floors,
    n: u64,
    idle_rss: u64,
) -> Result<()> {
    println!("{n} queues from a generated store log");
    let keys = Arc::new(Keys::new()?);
    let mut s = Server::init(bin, &a.scratch, spec(a, MsgStore::Memory, false))?;
    let ids = queues::write_store_log(&s.store_log_path(), &keys, n)?;
    let restart = s.start().await?;
    rep.row(
        "restart_1m",
        &format!("restart to first SMP handshake ({n} queues)"),
        format!("{:.2} s", restart.as_secs_f64()),
        "—".into(),
        Some(restart.as_secs_f64() / 2.0),
        "< 2 s (ratio to the goal)",
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_q = s.rss()?.saturating_sub(idle_rss) as f64 / n as f64;
    rep.row(
        "rss_per_queue_1m",
        &format!("RSS per idle queue ({n} queues restored)"),
        format!("{per_q:.0} B"),
        format!("{QUEUE_FLOOR_BYTES:.0} B"),
        Some(per_q / QUEUE_FLOOR_BYTES),
        "≤ 300 B",
    );
    let sub = queues::subscribe_all(&s, &keys, &ids).await?;
    let small_floor = floors.small_cmd(SMALL_PER_BATCH as f64);
    rep.row(
        "sub_1m",
        &format!("server CPU per SUB ({n} queues, batches of {SMALL_PER_BATCH})"),
        format!("{sub:.0} µs"),
        format!("{small_floor:.0} µs"),
        Some(sub / small_floor),
        "—",
    );
    s.stop()?;
    Ok(())
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// VmHWM: the process's peak RSS.
fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}
