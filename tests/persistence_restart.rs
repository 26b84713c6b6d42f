//! Restarts of the real binary: queues (secured, with notifier, suspended, deleted) and
//! undelivered messages survive SIGINT; a reference-format store log and messages file load.
//! These run the memory message store (`init --store-messages memory`, the reference's mode);
//! the journal (the default for new `init`s) is restarted in `tests/journal_crash.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::{Command as Cmd, SubscriptionMode};
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

struct Setup {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    fp: Fingerprint,
}

fn bin(s: &Setup) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
    c.env("SMP_SERVER_CFG_PATH", &s.cfg)
        .env("SMP_SERVER_LOG_PATH", &s.log);
    c
}

fn init() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("etc");
    let log = dir.path().join("var");
    let port = free_port();
    let mut s = Setup {
        _dir: dir,
        cfg,
        log,
        port,
        fp: Fingerprint([0; 32]),
    };
    let out = bin(&s)
        .args([
            "init",
            "-y",
            "-l",
            "--store-messages",
            "memory",
            "--ip",
            "127.0.0.1",
            "--password",
            "test",
        ])
        .output()
        .expect("run init");
    assert!(out.status.success(), "init failed: {out:?}");
    let fp = std::fs::read_to_string(s.cfg.join("fingerprint")).expect("fingerprint");
    s.fp = Fingerprint::from_base64url(fp.trim()).expect("fingerprint");
    let ini_path = s.cfg.join("smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    let ini: String = ini
        .lines()
        .map(|l| {
            if l.starts_with("port") {
                format!("port: {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ini_path, ini).expect("write ini");
    s
}

async fn start(s: &Setup) -> (Running, SmpClient) {
    start_with(s, &[]).await
}

async fn start_with(s: &Setup, env: &[(&str, &str)]) -> (Running, SmpClient) {
    let child = bin(s)
        .envs(env.iter().copied())
        .arg("start")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut r = Running(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", s.port).parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = r.0.try_wait().expect("wait") {
            let out = r.0.stderr.take().map(|mut e| {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut e, &mut s);
                s
            });
            panic!("server exited {st:?}: {out:?}");
        }
        match SmpClient::connect(addr, s.fp.0, ClientOptions::default()).await {
            Ok(c) => return (r, c),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("server did not come up: {e}"),
        }
    }
}

/// Stop with SIGINT; what the server printed.
async fn stop(mut r: Running) -> String {
    let ok = Command::new("kill")
        .args(["-INT", &r.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let t = Instant::now();
    loop {
        if let Some(st) = r.0.try_wait().expect("wait") {
            assert!(st.success(), "clean exit: {st:?}");
            return r.output();
        }
        assert!(t.elapsed() < Duration::from_secs(20), "did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn new_queue(c: &SmpClient) -> Recipient {
    common::binary::new_queue_with_password(c, SubscriptionMode::OnlyCreate).await
}

/// SUB, then the first message: as the reply, or as the event after `SOK`.
async fn sub_first_msg(c: &SmpClient, q: &Recipient) -> BrokerMsg {
    let (_, r) = c
        .request(q.rid(), Cmd::Sub, Some(&q.key))
        .await
        .expect("SUB");
    match r {
        BrokerMsg::Sok(_) => event(c).await.1,
        m => m,
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn queues_and_messages_survive_sigint_restart() {
    let s = init();
    let (srv, c) = start(&s).await;
    let a = new_queue(&c).await; // secured by the sender, two undelivered messages
    let b = new_queue(&c).await; // deleted
    let d = new_queue(&c).await; // suspended
    let e = new_queue(&c).await; // with a notifier
    let sender_key = key_for(18);
    let (_, ok) = c
        .request(a.rid(), Cmd::Key(pk(&sender_key)), Some(&a.key))
        .await
        .expect("SKEY");
    assert_eq!(ok, BrokerMsg::Ok);
    let bodies: [&[u8]; 2] = [b"first \x00\xff binary", b"second"];
    for body in bodies {
        let (_, ok) = c
            .request(a.sid(), send_cmd(body), Some(&sender_key))
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    let (_, ok) = c
        .request(b.rid(), Cmd::Del, Some(&b.key))
        .await
        .expect("DEL");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, ok) = c
        .request(d.rid(), Cmd::Off, Some(&d.key))
        .await
        .expect("OFF");
    assert_eq!(ok, BrokerMsg::Ok);
    let nk = key_for(18);
    let ndh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
    let (_, nid) = c
        .request(e.rid(), Cmd::Nkey(pk(&nk), ndh.public()), Some(&e.key))
        .await
        .expect("NKEY");
    let BrokerMsg::Nid(nid, _) = nid else {
        panic!("expected NID, got {nid:?}")
    };
    drop(c);
    stop(srv).await;
    let names = files(&s.log);
    assert!(
        names.contains(&"smp-server-messages.log".to_string()),
        "{names:?}"
    );
    let log = std::fs::read_to_string(s.log.join("smp-server-store.log")).expect("store log");
    assert!(log.contains("\nSECURE ") && log.contains("\nSUSPEND ") && log.contains("\nDELETE "));

    let (srv, c) = start(&s).await;
    let names = files(&s.log);
    assert!(
        names.contains(&"smp-server-messages.log.bak".to_string()),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("smp-server-store.log.20")),
        "timed backup: {names:?}"
    );
    // the compacted log holds the three live queues only
    let log = std::fs::read_to_string(s.log.join("smp-server-store.log")).expect("store log");
    assert_eq!(
        log.lines().filter(|l| l.starts_with("CREATE ")).count(),
        3,
        "{log}"
    );
    assert_eq!(log.lines().count(), 3, "{log}");
    // messages come back byte-identical, in order
    let m = sub_first_msg(&c, &a).await;
    let got = decrypt_msg(&a, &m);
    assert_eq!(got.body.as_deref(), Some(bodies[0]));
    let (_, r) = c
        .request(a.rid(), Cmd::Ack(got.msg_id.clone()), Some(&a.key))
        .await
        .expect("ACK");
    let m = match r {
        BrokerMsg::Ok => event(&c).await.1,
        m => m,
    };
    assert_eq!(decrypt_msg(&a, &m).body.as_deref(), Some(bodies[1]));
    // still secured: the same sender key sends, an unsigned SEND is refused
    let (_, r) = c
        .request(a.sid(), send_cmd(b"x"), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    // deleted stays deleted, suspended stays suspended
    let (_, r) = c
        .request(b.rid(), Cmd::Sub, Some(&b.key))
        .await
        .expect("SUB");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    let (_, r) = c
        .request(d.sid(), send_cmd(b"x"), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    // the notifier is still there
    let (_, r) = c.request(&nid, Cmd::Nsub, Some(&nk)).await.expect("NSUB");
    assert!(matches!(r, BrokerMsg::Sok(_) | BrokerMsg::Ok), "{r:?}");
    drop(c);
    stop(srv).await;
}

#[tokio::test]
async fn reference_store_log_and_messages_load_and_corrupt_log_is_refused() {
    let s = init();
    std::fs::create_dir_all(&s.log).expect("log dir");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(
        fx.join("reference-store.log"),
        s.log.join("smp-server-store.log"),
    )
    .expect("copy");
    std::fs::copy(
        fx.join("reference-messages.log"),
        s.log.join("smp-server-messages.log"),
    )
    .expect("copy");
    // the fixture's messages are from 2023: keep them from expiring
    let ini_path = s.cfg.join("smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    std::fs::write(
        &ini_path,
        ini.replace("[STORE_LOG]", "[STORE_LOG]\nexpire_messages_days: 100000"),
    )
    .expect("ini");
    let (srv, c) = start(&s).await;
    drop(c);
    stop(srv).await;
    // restored, then saved again at shutdown in the same syntax
    let saved = std::fs::read_to_string(s.log.join("smp-server-messages.log")).expect("saved");
    let orig = std::fs::read_to_string(fx.join("reference-messages.log")).expect("orig");
    assert_eq!(saved, orig);

    // a corrupt line in the middle stops the start with the file and line named
    let p = s.log.join("smp-server-store.log");
    let good = std::fs::read_to_string(&p).expect("log");
    let corrupt = format!("{good}SECURE !!!\n{good}");
    std::fs::write(&p, &corrupt).expect("corrupt");
    let before = files(&s.log);
    let out = bin(&s).arg("start").output().expect("start");
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let line = good.lines().count() + 1;
    assert!(
        err.contains(&format!("smp-server-store.log, line {line}"))
            && err.contains("Fix or delete"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // nothing was overwritten, renamed or added
    assert_eq!(std::fs::read_to_string(&p).expect("log"), corrupt);
    assert_eq!(files(&s.log), before);
}

#[tokio::test]
async fn crash_during_compaction_is_recovered_from_the_start_file() {
    let s = init();
    std::fs::create_dir_all(&s.log).expect("log dir");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // the state before compaction is in .start; the new log was cut short by the crash
    std::fs::copy(
        fx.join("reference-store.log"),
        s.log.join("smp-server-store.log.start"),
    )
    .expect("copy");
    std::fs::write(s.log.join("smp-server-store.log"), "CREATE rid=AQEB").expect("partial");
    let (srv, c) = start(&s).await;
    drop(c);
    stop(srv).await;
    let names = files(&s.log);
    assert!(
        !names.contains(&"smp-server-store.log.start".to_string()),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read_to_string(s.log.join("smp-server-store.log.bak")).expect("bak"),
        "CREATE rid=AQEB"
    );
    let log = std::fs::read_to_string(s.log.join("smp-server-store.log")).expect("log");
    assert_eq!(
        log.lines().filter(|l| l.starts_with("CREATE ")).count(),
        3,
        "{log}"
    );
}

/// A store log above the size threshold (lowered here through
/// `SMP_SERVER_DEFER_COMPACTION_BYTES`) is served from at once and compacted afterwards:
/// the dated backup appears, no `.compacting` file stays, and every change made before,
/// during and after the compaction survives the next restart.
#[tokio::test]
async fn large_store_log_is_compacted_while_serving() {
    let s = init();
    let (srv, c) = start(&s).await;
    let a = new_queue(&c).await; // secured, one message
    let b = new_queue(&c).await; // deleted
    let sender_key = key_for(18);
    let (_, ok) = c
        .request(a.rid(), Cmd::Key(pk(&sender_key)), Some(&a.key))
        .await
        .expect("SKEY");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, ok) = c
        .request(b.rid(), Cmd::Del, Some(&b.key))
        .await
        .expect("DEL");
    assert_eq!(ok, BrokerMsg::Ok);
    drop(c);
    stop(srv).await;
    let log_path = s.log.join("smp-server-store.log");
    let before = std::fs::read_to_string(&log_path).expect("store log");
    assert!(before.contains("\nDELETE "), "{before}");
    let backups = |names: &[String]| {
        names
            .iter()
            .filter(|n| n.starts_with("smp-server-store.log.20"))
            .count()
    };
    let backups_before = backups(&files(&s.log));

    let (srv, c) = start_with(&s, &[("SMP_SERVER_DEFER_COMPACTION_BYTES", "1")]).await;
    // a queue made while the compaction may be running
    let d = new_queue(&c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = files(&s.log);
        let log = std::fs::read_to_string(&log_path).expect("store log");
        let compacting = names.iter().any(|n| n.ends_with(".compacting"));
        if !compacting && backups(&names) > backups_before && !log.contains("DELETE ") {
            break;
        }
        assert!(Instant::now() < deadline, "not compacted: {names:?}\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a queue made after the swap, and a message
    let e = new_queue(&c).await;
    let (_, ok) = c
        .request(a.sid(), send_cmd(b"after compaction"), Some(&sender_key))
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    drop(c);
    let out = stop(srv).await;
    // compacted after the listeners opened, not before
    assert!(out.contains("compacted while serving"), "{out}");

    let (srv, c) = start(&s).await;
    let m = sub_first_msg(&c, &a).await;
    assert_eq!(
        decrypt_msg(&a, &m).body.as_deref(),
        Some(&b"after compaction"[..])
    );
    // still secured
    let (_, r) = c
        .request(a.sid(), send_cmd(b"x"), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    let (_, r) = c
        .request(b.rid(), Cmd::Sub, Some(&b.key))
        .await
        .expect("SUB");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    for q in [&d, &e] {
        let (_, r) = c
            .request(q.rid(), Cmd::Sub, Some(&q.key))
            .await
            .expect("SUB");
        assert!(matches!(r, BrokerMsg::Sok(_) | BrokerMsg::Ok), "{r:?}");
    }
    drop(c);
    stop(srv).await;
}
