//! The message journal with the real binary: SIGKILL under load loses no message that was
//! answered `OK`, and never redelivers an acknowledged one; a damaged journal stops `start`
//! with the file and offset.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

/// An initialised server directory with the journal enabled.
struct Site {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    fp: [u8; 32],
}

impl Site {
    fn new(fsync: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("etc");
        let log = dir.path().join("var");
        let out = bin()
            .env("SMP_SERVER_CFG_PATH", &cfg)
            .env("SMP_SERVER_LOG_PATH", &log)
            .args(["init", "-y", "-l", "--ip", "127.0.0.1", "--no-password"])
            .output()
            .expect("run init");
        assert!(out.status.success(), "init failed: {out:?}");
        let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
        let fp = Fingerprint::from_base64url(fp_text.trim())
            .expect("fingerprint")
            .0;
        let port = free_port();
        let ini_path = cfg.join("smp-server.ini");
        let ini = std::fs::read_to_string(&ini_path).expect("ini");
        let mut lines: Vec<String> = ini
            .lines()
            .map(|l| {
                if l.starts_with("port") {
                    format!("port: {port}")
                } else if l.starts_with("store_messages") {
                    format!("store_messages = journal\njournal_fsync = {fsync}")
                } else if l.starts_with("journal_fsync") {
                    String::new() // the generated value (batch) is replaced above
                } else {
                    l.to_string()
                }
            })
            .collect();
        lines.push(String::new());
        std::fs::write(&ini_path, lines.join("\n")).expect("write ini");
        assert!(
            std::fs::read_to_string(&ini_path)
                .expect("ini")
                .contains("store_messages = journal"),
            "the generated INI has a store_messages line"
        );
        Site {
            _dir: dir,
            cfg,
            log,
            port,
            fp,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = bin();
        c.env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log);
        c
    }

    fn journal_dir(&self) -> PathBuf {
        self.log.join("messages")
    }

    async fn start(&self) -> (Running, SmpClient) {
        let child = self
            .cmd()
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        let server = Running(child);
        let c = self.connect().await;
        (server, c)
    }

    async fn connect(&self) -> SmpClient {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match SmpClient::connect(addr, self.fp, ClientOptions::default()).await {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("server did not come up: {e}"),
            }
        }
    }
}

/// What the clients saw, across all server lives.
#[derive(Default)]
struct Ledger {
    /// Bodies whose SEND was answered OK.
    sent_ok: HashSet<Vec<u8>>,
    /// Every delivery: (msg_id, body), in order.
    delivered: Vec<(Vec<u8>, Vec<u8>)>,
    /// Message IDs whose ACK was answered.
    acked: HashSet<Vec<u8>>,
}

type Shared = Arc<Mutex<Ledger>>;

fn ledger(l: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Record a delivery; a delivery of an acknowledged message fails the test at once.
fn got(l: &Shared, r: &Recipient, m: &BrokerMsg) -> Vec<u8> {
    let rcv = decrypt_msg(r, m);
    let mut g = ledger(l);
    assert!(
        !g.acked.contains(&rcv.msg_id),
        "an acknowledged message was delivered again"
    );
    // A quota marker (senders outran the recipient on a fast machine) is acknowledged like a
    // message but is not one of the sent bodies.
    if let Some(body) = rcv.body {
        g.delivered.push((rcv.msg_id.clone(), body));
    }
    rcv.msg_id
}

/// Receive and acknowledge until the connection fails or `idle` passes without a message.
async fn receive(
    c: Arc<SmpClient>,
    r: Arc<Recipient>,
    l: Shared,
    first: Option<BrokerMsg>,
    idle: Duration,
) {
    let mut next = first;
    loop {
        let m = match next.take() {
            Some(m) => m,
            None => match c.next_event(idle).await {
                Some((_, m)) => m,
                None => return,
            },
        };
        if !matches!(m, BrokerMsg::Msg(..)) {
            continue;
        }
        let id = got(&l, &r, &m);
        match c.request(r.rid(), Cmd::Ack(id.clone()), Some(&r.key)).await {
            Ok((_, resp)) => {
                ledger(&l).acked.insert(id);
                match resp {
                    m @ BrokerMsg::Msg(..) => next = Some(m),
                    BrokerMsg::Ok => {}
                    other => panic!("ACK answered {other:?}"),
                }
            }
            Err(_) => return,
        }
    }
}

/// Send numbered messages until the connection fails.
async fn send(c: SmpClient, sid: Vec<u8>, tag: String, l: Shared) {
    for i in 0.. {
        let body = format!("{tag}-{i}").into_bytes();
        match c.request(&sid, send_cmd(&body), None).await {
            Ok((_, BrokerMsg::Ok)) => {
                ledger(&l).sent_ok.insert(body);
            }
            // The queue is full: this body was refused (not counted as sent); let the
            // recipient catch up.
            Ok((_, BrokerMsg::Err(ErrorType::Quota))) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok((_, other)) => panic!("SEND answered {other:?}"),
            Err(_) => return,
        }
    }
}

/// Subscribe again after a restart; the answer may be the first waiting message.
async fn resubscribe(c: &SmpClient, r: &Recipient) -> Option<BrokerMsg> {
    let (_, resp) = c
        .request(r.rid(), Cmd::Sub, Some(&r.key))
        .await
        .expect("SUB");
    match resp {
        BrokerMsg::Ok | BrokerMsg::Sok(_) => None,
        m @ BrokerMsg::Msg(..) => Some(m),
        other => panic!("SUB answered {other:?}"),
    }
}

fn kill9(s: &mut Running) {
    let st = Command::new("kill")
        .args(["-KILL", &s.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = s.0.wait();
}

async fn crash_under_load(fsync: &str) {
    const QUEUES: usize = 4;
    const ROUNDS: usize = 4;
    let site = Site::new(fsync);
    let l: Shared = Arc::default();
    let mut recipients: Vec<Arc<Recipient>> = Vec::new();
    let mut rng = rand::thread_rng();
    for round in 0..ROUNDS {
        let (mut server, first) = site.start().await;
        if round == 0 {
            for _ in 0..QUEUES {
                recipients.push(Arc::new(create_queue(&first).await));
            }
        }
        let mut tasks = Vec::new();
        for (qi, r) in recipients.iter().enumerate() {
            let rc = Arc::new(site.connect().await);
            let pending = resubscribe(&rc, r).await;
            tasks.push(tokio::spawn(receive(
                rc,
                r.clone(),
                l.clone(),
                pending,
                Duration::from_secs(3),
            )));
            let sc = site.connect().await;
            tasks.push(tokio::spawn(send(
                sc,
                r.sid().to_vec(),
                format!("r{round}q{qi}"),
                l.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1200))).await;
        kill9(&mut server);
        for t in tasks {
            t.await.expect("client task");
        }
    }
    // Last life: drain everything.
    let (_server, _) = site.start().await;
    let mut tasks = Vec::new();
    for r in &recipients {
        let rc = Arc::new(site.connect().await);
        let pending = resubscribe(&rc, r).await;
        tasks.push(tokio::spawn(receive(
            rc,
            r.clone(),
            l.clone(),
            pending,
            Duration::from_secs(2),
        )));
    }
    for t in tasks {
        t.await.expect("drain");
    }

    let g = ledger(&l);
    assert!(
        g.sent_ok.len() >= 20,
        "the load was real: {} messages answered OK",
        g.sent_ok.len()
    );
    let mut by_body: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for (id, body) in &g.delivered {
        by_body.entry(body).or_default().push(id);
    }
    for body in &g.sent_ok {
        let ids = by_body.get(body.as_slice()).unwrap_or_else(|| {
            panic!(
                "{} was answered OK but never delivered",
                String::from_utf8_lossy(body)
            )
        });
        // Redelivery only of the message in flight at a crash, always with its own ID.
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "a message was delivered with two IDs"
        );
    }
    // (`got` already failed the test if an acknowledged message came back.)
    let redelivered = by_body.values().filter(|v| v.len() > 1).count();
    assert!(
        redelivered <= QUEUES * ROUNDS,
        "only messages in flight at a crash are redelivered: {redelivered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_repeats_nothing_fsync_always() {
    crash_under_load("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_repeats_nothing_fsync_off() {
    // Without fsync the page cache still holds every record when the process dies.
    crash_under_load("off").await;
}

fn data_shards(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 8).unwrap_or(false))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_repaired_and_corrupt_middle_stops_start() {
    let site = Site::new("always");
    let (mut server, c) = site.start().await;
    let r = create_queue(&c).await;
    let sc = site.connect().await;
    for i in 0..3 {
        let (_, ok) = sc
            .request(r.sid(), send_cmd(format!("m{i}").as_bytes()), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    kill9(&mut server);
    let shards = data_shards(&site.journal_dir());
    assert_eq!(shards.len(), 1, "one queue's messages are in one shard");
    let shard = &shards[0];
    // An interrupted append: half a record at the end.
    let mut bytes = std::fs::read(shard).expect("read");
    let good = bytes.clone();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, b'W', 24]);
    std::fs::write(shard, &bytes).expect("write");
    let (mut server, c) = site.start().await;
    let first = match resubscribe(&c, &r).await {
        Some(m) => m,
        None => event(&c).await.1,
    };
    assert_eq!(decrypt_msg(&r, &first).body.as_deref(), Some(&b"m0"[..]));
    kill9(&mut server);
    assert_eq!(
        std::fs::read(shard).expect("read"),
        good,
        "the torn tail was cut off"
    );

    // Damage the first record: start must refuse, naming the file and the offset.
    let mut bad = good.clone();
    bad[8 + 12] ^= 0xff;
    std::fs::write(shard, &bad).expect("write");
    let out = site.cmd().arg("start").output().expect("start");
    assert!(
        !out.status.success(),
        "start must fail on a corrupt journal"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&shard.display().to_string()), "{text}");
    assert!(text.contains("offset 8"), "{text}");
    assert!(text.contains("truncate -s 8"), "{text}");
    assert_eq!(
        std::fs::read(shard).expect("read"),
        bad,
        "nothing was changed"
    );
}

/// Run `smp-server journal <sub>` answering `Y` to its confirmation; returns stdout.
fn journal_cmd(site: &Site, sub: &str) -> String {
    use std::io::Write;
    let mut child = site
        .cmd()
        .args(["journal", sub])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("journal");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"Y\n")
        .expect("answer");
    let out = child.wait_with_output().expect("journal output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "journal {sub} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn set_store_messages(site: &Site, v: &str) {
    let ini_path = site.cfg.join("smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    let ini: Vec<String> = ini
        .lines()
        .map(|l| {
            if l.starts_with("store_messages") {
                format!("store_messages = {v}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&ini_path, ini.join("\n") + "\n").expect("write ini");
}

fn sigint_and_wait(s: &mut Running) {
    let st = Command::new("kill")
        .args(["-INT", &s.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = s.0.wait().expect("wait");
    assert!(status.success(), "clean exit: {status:?}");
}

async fn next_body(
    site_c: &SmpClient,
    r: &Recipient,
    pending: Option<BrokerMsg>,
) -> (Vec<u8>, Vec<u8>) {
    let m = match pending {
        Some(m) => m,
        None => event(site_c).await.1,
    };
    let rcv = decrypt_msg(r, &m);
    (rcv.msg_id, rcv.body.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_export_round_trip_through_the_messages_log() {
    let site = Site::new("always");
    set_store_messages(&site, "memory");
    // Memory store: messages saved to smp-server-messages.log at a clean stop.
    let (mut server, c) = site.start().await;
    let r = create_queue(&c).await;
    let sc = site.connect().await;
    for i in 0..3 {
        let (_, ok) = sc
            .request(r.sid(), send_cmd(format!("m{i}").as_bytes()), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    drop((c, sc));
    sigint_and_wait(&mut server);
    let messages_log = site.log.join("smp-server-messages.log");
    assert!(messages_log.exists(), "messages saved at stop");

    let out = journal_cmd(&site, "import");
    assert!(out.contains("Import completed"), "{out}");
    assert!(site.journal_dir().is_dir());
    assert!(!messages_log.exists(), "the imported file is moved aside");
    set_store_messages(&site, "journal");
    let (mut server, c) = site.start().await;
    let pending = resubscribe(&c, &r).await;
    let (id, body) = next_body(&c, &r, pending).await;
    assert_eq!(body, b"m0");
    let (_, resp) = c
        .request(r.rid(), Cmd::Ack(id), Some(&r.key))
        .await
        .expect("ACK");
    assert!(matches!(resp, BrokerMsg::Msg(..)), "m1 follows: {resp:?}");
    // A crash: the journal keeps m1 and m2 (m1 was delivered, not acknowledged).
    kill9(&mut server);

    let out = journal_cmd(&site, "export");
    assert!(out.contains("Export completed"), "{out}");
    assert!(messages_log.exists());
    let out = journal_cmd(&site, "delete");
    assert!(out.contains("Deleted all messages in journal"), "{out}");
    set_store_messages(&site, "memory");
    let (_server, c) = site.start().await;
    let pending = resubscribe(&c, &r).await;
    let (id, body) = next_body(&c, &r, pending).await;
    assert_eq!(body, b"m1");
    let (_, resp) = c
        .request(r.rid(), Cmd::Ack(id), Some(&r.key))
        .await
        .expect("ACK");
    let BrokerMsg::Msg(..) = &resp else {
        panic!("m2 follows: {resp:?}")
    };
    assert_eq!(decrypt_msg(&r, &resp).body.as_deref(), Some(&b"m2"[..]));
}
