//! The service lifecycle with the real binary: systemd's `READY=1` comes only when every
//! listener accepts (SMP, control port, web page, Prometheus), and a stop drains all services
//! under one grace period, persists, and exits.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

/// Set `key = value`, replacing the key's line or its commented example (first match).
fn set_key(ini: &str, key: &str, value: &str) -> String {
    let mut done = false;
    let out: Vec<String> = ini
        .lines()
        .map(|l| {
            let t = l.trim_start_matches("# ");
            if !done && (t.starts_with(&format!("{key} ")) || t.starts_with(&format!("{key}:"))) {
                done = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "key {key} not in the INI");
    out.join("\n") + "\n"
}

#[tokio::test]
async fn ready_only_when_every_listener_accepts_then_one_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, log) = (dir.path().join("etc"), dir.path().join("var"));
    let out = bin()
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .args([
            "init",
            "-y",
            "-l",
            "--ip",
            "127.0.0.1",
            "--no-password",
            "--control-port",
            "--disable-web",
        ])
        .output()
        .expect("init");
    assert!(out.status.success(), "init: {out:?}");
    let ini_path = cfg.join("smp-server.ini");
    let (smp, control, http, metrics) = (free_port(), free_port(), free_port(), free_port());
    let mut ini = std::fs::read_to_string(&ini_path).expect("ini");
    ini = set_key(&ini, "port", &smp.to_string());
    ini = set_key(&ini, "control_port", &control.to_string());
    ini = set_key(&ini, "http", &http.to_string());
    ini = set_key(&ini, "prometheus_address", &format!("127.0.0.1:{metrics}"));
    std::fs::write(&ini_path, ini).expect("write ini");
    let fp = Fingerprint::from_base64url(
        std::fs::read_to_string(cfg.join("fingerprint"))
            .expect("fingerprint")
            .trim(),
    )
    .expect("fingerprint")
    .0;

    let sock_path = dir.path().join("notify");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    rx.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let stderr = dir.path().join("stderr.txt");
    let mut child = bin()
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("RUST_LOG")
        .arg("start")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr"))
        .spawn()
        .expect("start");
    // Nothing is polled before READY=1: the notification itself must mean "accepting".
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY notification");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    for (what, port) in [
        ("SMP", smp),
        ("control port", control),
        ("web HTTP", http),
        ("Prometheus", metrics),
    ] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{what} on {addr} not accepting at READY=1: {e}"));
    }
    let client = SmpClient::connect(
        SocketAddr::from(([127, 0, 0, 1], smp)),
        fp,
        ClientOptions::default(),
    )
    .await
    .expect("SMP handshake right after READY=1");

    // SIGTERM with a client still connected: STOPPING=1, then one bounded drain and the save.
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let n = rx.recv(&mut buf).expect("STOPPING notification");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(client);
    assert!(status.success(), "exit status {status:?}");
    let logs = std::fs::read_to_string(&stderr).expect("stderr");
    let saving = logs.find("saving server state...").expect("saved");
    let stopped = logs.find("server stopped").expect("stopped");
    assert!(saving < stopped, "{logs}");
    assert!(
        !logs.contains("did not stop within the grace period"),
        "every service drained in time: {logs}"
    );
    assert!(log.join("smp-server-store.log").exists(), "state persisted");
}
