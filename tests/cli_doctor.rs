//! `smp-server doctor` with the real binary: a healthy running server, a broken INI, a missing
//! certificate, and an SMP port taken by another program.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

struct Setup {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
}

fn bin(s: &Setup) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
    c.env("SMP_SERVER_CFG_PATH", &s.cfg)
        .env("SMP_SERVER_LOG_PATH", &s.log);
    c
}

/// `init` for 127.0.0.1 on a free port, without the HTTPS port (443 needs root).
fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Setup {
        cfg: dir.path().join("etc"),
        log: dir.path().join("var"),
        port: free_port(),
        _dir: dir,
    };
    let out = bin(&s)
        .args(["init", "-y", "--ip", "127.0.0.1", "--no-password"])
        .output()
        .expect("init");
    assert!(out.status.success(), "{out:?}");
    let ini = ini_path(&s);
    let text: String = std::fs::read_to_string(&ini)
        .expect("ini")
        .lines()
        .map(|l| match l {
            l if l.starts_with("port") => format!("port = {}\n", s.port),
            l if l.starts_with("https") => format!("# {l}\n"),
            l => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&ini, text).expect("ini");
    s
}

fn ini_path(s: &Setup) -> PathBuf {
    s.cfg.join("smp-server.ini")
}

fn doctor(s: &Setup) -> (bool, String) {
    let out: Output = bin(s).arg("doctor").output().expect("doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn fingerprint(cfg: &Path) -> [u8; 32] {
    let fp = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
    smp_server::crypto::identity::Fingerprint::from_base64url(fp.trim())
        .expect("fp")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_running_server() {
    let s = setup();
    let server = Running(
        bin(&s)
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start"),
    );
    let addr = format!("127.0.0.1:{}", s.port).parse().expect("addr");
    drop(connect_when_up(addr, fingerprint(&s.cfg), Duration::from_secs(30)).await);
    let (ok, text) = tokio::task::spawn_blocking(move || (doctor(&s), s))
        .await
        .expect("doctor")
        .0;
    assert!(ok, "{text}");
    assert!(text.contains("smp-server.ini is valid"), "{text}");
    assert!(
        text.contains("answers an SMP handshake with its identity"),
        "{text}"
    );
    assert!(text.contains("server certificate valid"), "{text}");
    assert!(text.contains("disk:"), "{text}");
    assert!(text.contains("0 error(s)"), "{text}");
    // init leaves ca.key in place: the doctor says to move it offline
    assert!(text.contains("move ca.key offline"), "{text}");
    drop(server);
}

#[test]
fn broken_ini_is_an_error_with_the_fix() {
    let s = setup();
    let mut text = std::fs::read_to_string(ini_path(&s)).expect("ini");
    text.push_str("\n[TRANSPORT\nport = x\n");
    std::fs::write(ini_path(&s), text).expect("ini");
    let (ok, out) = doctor(&s);
    assert!(!ok, "{out}");
    assert!(
        out.contains("error:") && out.contains("cannot be used"),
        "{out}"
    );
    assert!(out.contains("fix:"), "{out}");
}

#[test]
fn missing_certificate_is_an_error() {
    let s = setup();
    std::fs::remove_file(s.cfg.join("server.crt")).expect("rm");
    let (ok, out) = doctor(&s);
    assert!(!ok, "{out}");
    assert!(out.contains("server.crt is missing"), "{out}");
    assert!(out.contains("smp-server cert"), "{out}");
}

#[test]
fn port_in_use_by_another_program() {
    let s = setup();
    let _other = std::net::TcpListener::bind(("0.0.0.0", s.port)).expect("bind");
    let (ok, out) = doctor(&s);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("port {} is in use by another program", s.port)),
        "{out}"
    );
    // and with nothing listening: a warning that the server is not running
    drop(_other);
    let (ok, out) = doctor(&s);
    assert!(ok, "{out}");
    assert!(out.contains("nothing listens"), "{out}");
}
