//! The phases of a run, in order: floor, memory store (delivery, handshakes, idle connections,
//! memory after load, queues, restart), journal store, Ed448 identity, and with `--full` the
//! 1,000,000-queue figures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::delivery::{self, Load};
use crate::floor::{self, median, Floors};
use crate::pg::Cluster;
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
    /// Queues created by NEW + KEY on the database stores (each NEW and KEY is a commit).
    db_queues: usize,
    big_queues: Vec<u64>,
}

fn sizes(a: &Args) -> Sizes {
    let mut s = base_sizes(a);
    if !a.big_queues.is_empty() {
        s.big_queues = a.big_queues.clone();
    }
    if !a.loads_16k.is_empty() {
        s.loads_16k = a.loads_16k.clone();
    }
    if !a.loads_1k.is_empty() {
        s.loads_1k = a.loads_1k.clone();
    }
    s
}

fn base_sizes(a: &Args) -> Sizes {
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
            db_queues: 100_000,
            big_queues: vec![1_000_000],
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
            db_queues: 20_000,
            big_queues: vec![],
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
            db_queues: 20_000,
            big_queues: vec![],
        }
    }
}

fn spec(a: &Args, store: MsgStore, ed448: bool) -> ServerSpec {
    ServerSpec {
        store,
        ed448,
        pin: a.pin_server.clone(),
        env: a.server_env.clone(),
        db: None,
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
    let mut ok_block = floors.own_ok_block();
    let label = if body > 8192 { "16k" } else { "1k" };
    let (mut cpu, mut ratios, mut floor_us) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wire_ratios, mut wire_floor_us, mut ok_shares) = (Vec::new(), Vec::new(), Vec::new());
    let (mut db_cpu, mut db_ratios) = (Vec::new(), Vec::new());
    for (i, &rate) in loads.iter().enumerate() {
        let runs = if i == 0 { sz.reps } else { 1 };
        for _ in 0..runs {
            if i == 0 {
                let f = fresh_floor()?;
                floor = f.delivery(body);
                ok_block = f.own_ok_block();
                floor_us.push(floor);
            }
            let load = Load {
                queues: 32,
                conns: 4,
                body,
                rate,
                window: None,
                messages: (rate * sz.seconds_per_load) as usize,
            };
            let o = delivery::run(server, &load).await?;
            let total = o.cpu_per_msg_us() + o.db_cpu_per_msg_us();
            let wire = floor + o.ack_ok_share() * ok_block;
            if i == 0 {
                cpu.push(o.cpu_per_msg_us());
                ratios.push(o.cpu_per_msg_us() / floor);
                wire_ratios.push(o.cpu_per_msg_us() / wire);
                wire_floor_us.push(wire);
                ok_shares.push(o.ack_ok_share());
                db_cpu.push(o.db_cpu_per_msg_us());
                db_ratios.push(total / floor);
            }
            let pg = if server.cluster.is_some() {
                format!(
                    " + PostgreSQL {:.0} µs/msg (together {:.2}× floor)",
                    o.db_cpu_per_msg_us(),
                    total / floor
                )
            } else {
                String::new()
            };
            rep.note(format!(
                "{store}, {label} bodies, offered {rate:.0} msg/s: delivered {:.0} msg/s, \
                 server CPU {:.0} µs/msg ({:.2}× floor; kernel ≈ {:.0} µs by tick samples, user ≈ {:.2}× floor){pg}, SEND→OK p50 {:.1} / p99 {:.1} ms, \
                 SEND→MSG p50 {:.1} / p99 {:.1} ms; ACKs answered by their own OK {:.0} %, \
                 {:.2}× the floor of the blocks on the wire; {:.1} context switches/msg",
                o.throughput(),
                o.cpu_per_msg_us(),
                o.cpu_per_msg_us() / floor,
                o.kernel_per_msg_us(),
                (o.cpu_per_msg_us() - o.kernel_per_msg_us()) / floor,
                o.ok_ms.0,
                o.ok_ms.1,
                o.msg_ms.0,
                o.msg_ms.1,
                o.ack_ok_share() * 100.0,
                o.cpu_per_msg_us() / wire,
                o.ctx_per_msg()
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
    let wire = median(&mut wire_floor_us);
    rep.row(
        &format!("deliver_{label}_{store}_wire"),
        &format!(
            "same, against a floor with the ACKs' own OK blocks ({:.0} % of ACKs; beside the issue's floor)",
            median(&mut ok_shares) * 100.0
        ),
        format!("{m:.0} µs"),
        format!("{wire:.0} µs"),
        Some(median(&mut wire_ratios)),
        "—",
    );
    capacity(rep, server, sz, store, body).await?;
    if server.cluster.is_some() {
        let d = median(&mut db_cpu);
        rep.row(
            &format!("deliver_{label}_{store}_with_pg"),
            &format!("server + PostgreSQL CPU per delivered {label} message ({store} store)"),
            format!("{:.0} µs ({m:.0} server + {d:.0} PostgreSQL)", m + d),
            format!("{floor:.0} µs"),
            Some(median(&mut db_ratios)),
            "—",
        );
    }
    Ok(())
}

/// Messages of a queue sent and not yet received in the closed-loop runs: enough to keep
/// the server busy, far below the queue quota.
const CAPACITY_WINDOW: usize = 8;
/// Messages per second the closed-loop runs are sized for (about what the one-thread client
/// reaches with 16 KB bodies).
const CAPACITY_SIZING_RATE: f64 = 3000.0;

/// The `_max` row: `reps` closed-loop runs, the client sending as fast as it can.
async fn capacity(
    rep: &mut Report,
    server: &Server,
    sz: &Sizes,
    store: &str,
    body: usize,
) -> Result<()> {
    let label = if body > 8192 { "16k" } else { "1k" };
    let (mut s, mut wire, mut shares, mut rates) =
        (Samples::default(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sz.reps {
        let f = fresh_floor()?;
        let floor = f.delivery(body);
        let load = Load {
            queues: 32,
            conns: 4,
            body,
            rate: f64::INFINITY,
            window: Some(CAPACITY_WINDOW),
            messages: (CAPACITY_SIZING_RATE * sz.seconds_per_load) as usize,
        };
        let o = delivery::run(server, &load).await?;
        let c = o.cpu_per_msg_us();
        let w = floor + o.ack_ok_share() * f.own_ok_block();
        rep.note(format!(
            "{store}, {label} bodies, closed loop ({CAPACITY_WINDOW} per queue in flight): delivered \
             {:.0} msg/s, server CPU {c:.0} µs/msg ({:.2}× floor; kernel ≈ {:.0} µs), SEND→MSG \
             p50 {:.1} / p99 {:.1} ms; ACKs answered by their own OK {:.0} %, {:.2}× the floor \
             of the blocks on the wire; {:.1} context switches/msg",
            o.throughput(),
            c / floor,
            o.kernel_per_msg_us(),
            o.msg_ms.0,
            o.msg_ms.1,
            o.ack_ok_share() * 100.0,
            c / w,
            o.ctx_per_msg()
        ));
        s.push(c, floor);
        wire.push(c / w);
        shares.push(o.ack_ok_share());
        rates.push(o.throughput());
    }
    let (m, floor, ratio) = s.medians();
    rep.row(
        &format!("deliver_{label}_{store}_max"),
        &format!(
            "same at the bench client's capacity ({:.0} msg/s; {:.2}× the wire floor, {:.0} % of ACKs with their own OK)",
            median(&mut rates),
            median(&mut wire),
            median(&mut shares) * 100.0
        ),
        format!("{m:.0} µs ({:.0} msg/s per core)", 1e6 / m),
        format!("{floor:.0} µs"),
        Some(ratio),
        "—",
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
    let alg = if ed448 { "Ed448" } else { "Ed25519" };
    let (mut client, mut capacity) = (Samples::default(), Samples::default());
    let mut x25519 = Samples::default();
    for _ in 0..reps {
        let floors = fresh_floor()?;
        let f = floors.handshake(ed448);
        let h = conns::handshake_cost(server, n, 4).await?;
        rep.note(handshake_note(alg, "the real client, 4 at a time", &h, f));
        client.push(h.cpu_us, f);
        let h = conns::handshake_cost_at_capacity(server, n, CAPACITY_PARALLEL, false).await?;
        rep.note(handshake_note(alg, "at capacity", &h, f));
        capacity.push(h.cpu_us, f);
        if !ed448 {
            let f = floors.handshake_x25519(ed448);
            let h = conns::handshake_cost_at_capacity(server, n, CAPACITY_PARALLEL, true).await?;
            rep.note(handshake_note(alg, "at capacity, X25519 key share", &h, f));
            x25519.push(h.cpu_us, f);
        }
    }
    let (key, goal) = if ed448 {
        ("handshake_ed448", "≥ 2,000/s per core")
    } else {
        ("handshake_ed25519", "≥ 5,000/s per core")
    };
    capacity.handshake_row(
        rep,
        key,
        &format!("server CPU per TLS + SMP handshake, {alg} identity, at capacity"),
        goal,
    );
    client.handshake_row(
        rep,
        &format!("{key}_client"),
        "same, the real client 4 at a time (the server waits for it at every flight)",
        "—",
    );
    if !x25519.cpu.is_empty() {
        x25519.handshake_row(
            rep,
            &format!("{key}_x25519"),
            "same at capacity, a client whose key share is X25519 (the reference's is X448)",
            "—",
        );
    }
    Ok(())
}

/// Handshakes in flight at once at capacity: enough that the server always has one to work on.
const CAPACITY_PARALLEL: usize = 16;

fn handshake_note(alg: &str, how: &str, h: &conns::HandshakeCost, floor: f64) -> String {
    let c = h.cpu_us;
    format!(
        "handshakes, {alg} identity, {how}: server CPU {c:.0} µs ({:.2}× floor; kernel ≈ {:.0} µs \
         by tick samples, user ≈ {:.2}× floor), {:.1} context switches per handshake",
        c / floor,
        h.kernel_us,
        (c - h.kernel_us) / floor,
        h.ctx_switches
    )
}

/// Per-repetition figures of one row: CPU and its floor.
#[derive(Default)]
struct Samples {
    cpu: Vec<f64>,
    floor: Vec<f64>,
    ratio: Vec<f64>,
}

impl Samples {
    fn push(&mut self, cpu: f64, floor: f64) {
        self.cpu.push(cpu);
        self.floor.push(floor);
        self.ratio.push(cpu / floor);
    }

    /// A handshake row of these samples' medians.
    fn handshake_row(&mut self, rep: &mut Report, key: &str, figure: &str, goal: &str) {
        let (m, floor, ratio) = self.medians();
        rep.row(
            key,
            figure,
            format!("{m:.0} µs ({:.0}/s per core)", 1e6 / m),
            format!("{floor:.0} µs"),
            Some(ratio),
            goal,
        );
    }

    /// Median CPU, floor and ratio (each its own median).
    fn medians(&mut self) -> (f64, f64, f64) {
        (
            median(&mut self.cpu),
            median(&mut self.floor),
            median(&mut self.ratio),
        )
    }
}

/// Every phase; returns the report.
pub async fn all(a: &Args, bin: &Path) -> Result<Report> {
    let sz = sizes(a);
    let mut rep = Report::default();
    let only = |s: &str| a.store == "all" || a.store == s;
    println!("floor: timing the crypto primitives");
    let floors = floor::measure(if a.full { 9 } else { 5 }, Duration::from_millis(20))?;
    println!("  {:?}", floors.primitives);

    if a.handshakes_only {
        for ed448 in [false, true] {
            let mut srv = Server::init(bin, &a.scratch, spec(a, MsgStore::Memory, ed448))?;
            srv.start().await?;
            let n = if ed448 {
                sz.handshakes_ed448
            } else {
                sz.handshakes
            };
            handshakes(&mut rep, &srv, n, sz.reps, ed448).await?;
            srv.stop()?;
        }
        return Ok(rep);
    }
    if only("memory") && !a.big_only {
        memory(&mut rep, a, bin, &floors, &sz).await?;
    }
    if a.memory_only {
        return Ok(rep);
    }
    for &n in &sz.big_queues {
        for store in [MsgStore::Memory, MsgStore::Journal, MsgStore::Database] {
            if only(store.name()) {
                big(&mut rep, a, bin, &floors, store, n).await?;
            }
        }
    }

    if a.big_only {
        return Ok(rep);
    }
    if only("journal") {
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
    }
    // Not in --ci: it needs PostgreSQL on the machine, adds minutes (every NEW, KEY, SEND and
    // ACK is an fsynced commit) and its figures follow the disk (docs/benchmarks.md).
    if only("database") && (!a.ci || a.store == "database") {
        database(&mut rep, a, bin, &floors, &sz).await?;
    }

    if only("memory") {
        println!("memory store, Ed448 identity (init -a ED448)");
        let mut e448 = Server::init(bin, &a.scratch, spec(a, MsgStore::Memory, true))?;
        e448.start().await?;
        handshakes(&mut rep, &e448, sz.handshakes_ed448, sz.reps, true).await?;
        e448.stop()?;
    }
    Ok(rep)
}

/// The memory store: delivery, handshakes, idle connections, memory after load, queues, SUB,
/// restart.
async fn memory(rep: &mut Report, a: &Args, bin: &Path, floors: &Floors, sz: &Sizes) -> Result<()> {
    println!("memory store, Ed25519 identity");
    let mut mem = Server::init(bin, &a.scratch, spec(a, MsgStore::Memory, false))?;
    mem.start().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = mem.rss()?;
    deliveries(rep, &mem, floors, sz, "memory", BODY_16K, &sz.loads_16k).await?;
    deliveries(rep, &mem, floors, sz, "memory", 1024, &sz.loads_1k).await?;
    handshakes(rep, &mem, sz.handshakes, sz.reps, false).await?;
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
    queue_rows(rep, &mut mem, "memory", sz.queues, 2).await?;
    mem.stop()?;
    Ok(())
}

/// NEW + KEY of `n` queues, RSS per queue, SUB of all of them, restart: the rows of one store
/// (memory keeps its historical keys `new`, `key`, `sub`, `rss_per_queue`, `restart`).
async fn queue_rows(
    rep: &mut Report,
    s: &mut Server,
    store: &str,
    n: usize,
    lanes: usize,
) -> Result<()> {
    let sfx = if store == "memory" {
        String::new()
    } else {
        format!("_{store}")
    };
    let (on, pg) = if store == "memory" {
        (String::new(), false)
    } else {
        (format!(", {store} store"), s.cluster.is_some())
    };
    let pg_note = |db_us: f64| {
        if pg {
            format!(" + PostgreSQL {db_us:.0} µs")
        } else {
            String::new()
        }
    };
    let keys = Arc::new(Keys::new()?);
    let near = fresh_floor()?;
    let created = queues::create(s, &keys, n).await?;
    rep.row(
        &format!("rss_per_queue{sfx}"),
        &format!("RSS per idle queue (NEW + KEY, {n} queues{on})"),
        format!("{:.0} B", created.rss_per_queue),
        format!("{QUEUE_FLOOR_BYTES:.0} B (IDs, keys, secret)"),
        Some(created.rss_per_queue / QUEUE_FLOOR_BYTES),
        "≤ 300 B",
    );
    let new_floor = near.new_queue(NEW_PER_BATCH as f64);
    rep.row(
        &format!("new{sfx}"),
        &format!("server CPU per NEW (batches of {NEW_PER_BATCH}{on})"),
        format!(
            "{:.0} µs ({:.0}/s per core){}; {:.0} NEW/s",
            created.new_cpu_us,
            1e6 / created.new_cpu_us,
            pg_note(created.new_db_cpu_us),
            created.new_per_s
        ),
        format!("{new_floor:.0} µs"),
        Some(created.new_cpu_us / new_floor),
        "—",
    );
    let small_floor = near.small_cmd(SMALL_PER_BATCH as f64);
    rep.row(
        &format!("key{sfx}"),
        &format!("server CPU per KEY (batches of {SMALL_PER_BATCH}{on})"),
        format!(
            "{:.0} µs{}; {:.0} KEY/s",
            created.key_cpu_us,
            pg_note(created.key_db_cpu_us),
            created.key_per_s
        ),
        format!("{small_floor:.0} µs"),
        Some(created.key_cpu_us / small_floor),
        "—",
    );
    let small_floor = fresh_floor()?.small_cmd(SMALL_PER_BATCH as f64);
    let (sub, held) = queues::subscribe_all(s, &keys, &created.rcv_ids, lanes).await?;
    drop(held);
    rep.row(
        &format!("sub{sfx}"),
        &format!(
            "server CPU per SUB ({} queues, batches of {SMALL_PER_BATCH}, {lanes} connections{on})",
            created.rcv_ids.len()
        ),
        format!(
            "{:.0} µs{}; {:.0} SUB/s",
            sub.cpu_us,
            pg_note(sub.db_cpu_us),
            sub.per_s
        ),
        format!("{small_floor:.0} µs"),
        Some(sub.cpu_us / small_floor),
        "—",
    );
    s.stop()?;
    let restart = s.start().await?;
    rep.row(
        &format!("restart{sfx}"),
        &format!("restart to first SMP handshake ({n} queues{on})"),
        format!(
            "{:.2} s ({:.1} µs per queue)",
            restart.as_secs_f64(),
            restart.as_secs_f64() * 1e6 / n as f64
        ),
        "—".into(),
        None,
        "1M queues < 2 s",
    );
    Ok(())
}

/// The database stores on a throwaway PostgreSQL cluster: delivery, NEW/KEY/SUB, RSS per
/// queue, restart.
async fn database(
    rep: &mut Report,
    a: &Args,
    bin: &Path,
    floors: &Floors,
    sz: &Sizes,
) -> Result<()> {
    println!("database stores (PostgreSQL, fsync on), Ed25519 identity");
    let cluster = Arc::new(Cluster::start(&a.scratch)?);
    let mut sp = spec(a, MsgStore::Database, false);
    sp.db = Some(cluster.new_db("bench", true)?);
    let mut s = Server::init(bin, &a.scratch, sp)?;
    s.cluster = Some(cluster.clone());
    s.start().await?;
    deliveries(rep, &s, floors, sz, "database", BODY_16K, &sz.loads_16k).await?;
    deliveries(rep, &s, floors, sz, "database", 1024, &sz.loads_1k).await?;
    let before = cluster.queues_size("bench")?;
    queue_rows(rep, &mut s, "database", sz.db_queues, 2).await?;
    let after = cluster.queues_size("bench")?;
    rep.note(format!(
        "database, {} queues by NEW + KEY: queue table {:.1} MB → {:.1} MB ({:.0} B per queue on disk, indexes included)",
        sz.db_queues,
        mb(before),
        mb(after),
        after.saturating_sub(before) as f64 / sz.db_queues as f64
    ));
    s.stop()?;
    Ok(())
}

/// The figures at `n` queues from a generated store log (imported into PostgreSQL for the
/// database stores): start-up to the first handshake, RSS after start-up, batched SUB of all of
/// them over `--sub-lanes` connections, RSS with all of them subscribed.
async fn big(
    rep: &mut Report,
    a: &Args,
    bin: &Path,
    floors: &Floors,
    store: MsgStore,
    n: u64,
) -> Result<()> {
    let name = store.name();
    let label = if n % 1_000_000 == 0 {
        format!("{}m", n / 1_000_000)
    } else if n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    };
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "{n} queues from a generated store log, {name} store (load {})",
        load()
    );
    let keys = Arc::new(Keys::new()?);
    let mut sp = spec(a, store, false);
    let cluster = if store == MsgStore::Database {
        let c = Arc::new(Cluster::start(&a.scratch)?);
        // An empty schema for the idle figure; the import makes its own in another database.
        sp.db = Some(c.new_db("idle", true)?);
        Some(c)
    } else {
        None
    };
    let mut s = Server::init(bin, &a.scratch, sp)?;
    s.cluster = cluster.clone();
    let empty = s.start().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = s.rss()?;
    s.stop()?;
    let t = Instant::now();
    let ids = queues::write_store_log(&s.store_log_path(), &keys, n)?;
    let mut prep = format!(
        "store log of {n} queues written in {:.1} s ({:.0} MB)",
        t.elapsed().as_secs_f64(),
        mb(std::fs::metadata(s.store_log_path())?.len())
    );
    if let Some(c) = &cluster {
        let conn = c.new_db("big", false)?;
        s.set_db(&conn)?;
        let t = Instant::now();
        let out = s.tool(
            &["database", "import", "--table", "queues", "-d", &conn],
            "Y\n",
        )?;
        let secs = t.elapsed().as_secs_f64();
        let size = c.queues_size("big")?;
        let said = out
            .split("Imported:")
            .nth(1)
            .and_then(|r| r.lines().next())
            .unwrap_or("?")
            .trim()
            .to_string();
        prep.push_str(&format!(
            "; `database import --table queues` (COPY, indexes) {secs:.1} s ({said}), queue table \
             {:.0} MB ({:.0} B per queue with indexes)",
            mb(size),
            size as f64 / n as f64,
        ));
    }
    rep.note(format!("{name}, {n} queues: {prep}"));
    let restart = s.start().await?;
    rep.row(
        &format!("restart_{label}_{name}"),
        &format!("start to first SMP handshake ({n} queues, {name} store)"),
        format!(
            "{:.2} s (empty store: {:.2} s; load {})",
            restart.as_secs_f64(),
            empty.as_secs_f64(),
            load()
        ),
        "—".into(),
        Some(restart.as_secs_f64() / 2.0),
        "< 2 s at 1M (ratio to 2 s)",
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = s.rss()?;
    let per_q = started.saturating_sub(idle) as f64 / n as f64;
    rep.row(
        &format!("rss_per_queue_{label}_{name}"),
        &format!("RSS after start-up per queue ({n} queues, {name} store)"),
        format!(
            "{per_q:.0} B ({:.1} MB, empty store {:.1} MB)",
            mb(started),
            mb(idle)
        ),
        format!("{QUEUE_FLOOR_BYTES:.0} B"),
        Some(per_q / QUEUE_FLOOR_BYTES),
        "≤ 300 B",
    );
    let small_floor = floors.small_cmd(SMALL_PER_BATCH as f64);
    let lanes = a.sub_lanes.max(1);
    let ids: Vec<Vec<u8>> = match a.big_sub {
        Some(k) if k < n => {
            let step = (n / k.max(1)) as usize;
            ids.into_iter().step_by(step).take(k as usize).collect()
        }
        _ => ids,
    };
    let subs = ids.len();
    let (sub, held) = queues::subscribe_all(&s, &keys, &ids, lanes).await?;
    let subscribed = s.rss()?;
    let pg = if cluster.is_some() {
        format!(" + PostgreSQL {:.0} µs", sub.db_cpu_us)
    } else {
        String::new()
    };
    rep.row(
        &format!("sub_{label}_{name}"),
        &format!(
            "server CPU per SUB ({subs} of {n} queues, batches of {SMALL_PER_BATCH}, {lanes} connections, {name} store)"
        ),
        format!(
            "{:.0} µs{pg}; {:.0} SUB/s, {:.1} s in all (load {})",
            sub.cpu_us,
            sub.per_s,
            sub.secs,
            load()
        ),
        format!("{small_floor:.0} µs"),
        Some(sub.cpu_us / small_floor),
        "—",
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gone = s.rss()?;
    rep.note(format!(
        "{name}, {n} queues: RSS {:.1} MB after start-up, {:.1} MB with {subs} subscribed \
         ({:.0} B per subscription), {:.1} MB after the subscribers disconnected",
        mb(started),
        mb(subscribed),
        subscribed.saturating_sub(started) as f64 / subs.max(1) as f64,
        mb(gone)
    ));
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
