//! The real binary started from `init --no-password` with a memory store and a control port,
//! for tests that measure the server process (RSS, CPU, tasks).

use std::net::SocketAddr;
use std::time::Duration;

use smp_server::client::SmpClient;
use smp_server::crypto::identity::Fingerprint;

use super::{connect_when_up, free_port, Running};

/// The started binary.
pub struct Srv {
    pub proc: Running,
    pub port: u16,
    pub control: u16,
    pub fp: [u8; 32],
    _dir: tempfile::TempDir,
}

impl Srv {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub async fn client(&self) -> SmpClient {
        connect_when_up(self.addr(), self.fp, Duration::from_secs(20)).await
    }

    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time (user + system, ns) of all the server's threads so far (schedstat).
    pub fn cpu_ns(&self) -> u64 {
        let dir = format!("/proc/{}/task", self.proc.0.id());
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|t| {
                        std::fs::read_to_string(t.path().join("schedstat"))
                            .ok()?
                            .split_whitespace()
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// `init` (no queue password, memory store), set `keys`, start, wait until it answers.
pub async fn start(keys: &[(&str, &str, String)]) -> Srv {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, log) = (dir.path().join("etc"), dir.path().join("var"));
    let bin = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_smp-server"));
        c.env("SMP_SERVER_CFG_PATH", &cfg)
            .env("SMP_SERVER_LOG_PATH", &log);
        c
    };
    let out = bin()
        .args(["init", "-y", "--ip", "127.0.0.1", "--no-password"])
        .output()
        .expect("init");
    assert!(out.status.success(), "init: {out:?}");
    let fp = Fingerprint::from_base64url(
        std::fs::read_to_string(cfg.join("fingerprint"))
            .expect("fingerprint")
            .trim(),
    )
    .expect("fingerprint");
    let (port, control) = (free_port(), free_port());
    let ini_path = cfg.join("smp-server.ini");
    let mut ini = std::fs::read_to_string(&ini_path).expect("ini");
    let base = [
        ("TRANSPORT", "port", port.to_string()),
        ("TRANSPORT", "control_port", control.to_string()),
        ("STORE_LOG", "enable", "off".to_string()),
        ("STORE_LOG", "store_messages", "memory".to_string()),
    ];
    for (s, k, v) in base.iter().chain(keys.iter()) {
        ini = set_key(&ini, s, k, v);
    }
    std::fs::write(&ini_path, ini).expect("write ini");
    let child = bin()
        .arg("start")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("stderr"))
        .spawn()
        .expect("start");
    let s = Srv {
        proc: Running(child),
        port,
        control,
        fp: fp.0,
        _dir: dir,
    };
    drop(s.client().await);
    s
}

/// Set `key = value` in `section` (replacing an active line, else right under the header).
pub fn set_key(ini: &str, section: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let (mut current, mut done) = (String::new(), false);
    for line in ini.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(['[', ']']).to_string();
            out.push(line.to_string());
            if current == section && !done {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            continue;
        }
        let k = t.split(['=', ':']).next().unwrap_or("").trim();
        if !(current == section && k == key && !t.starts_with('#')) {
            out.push(line.to_string());
        }
    }
    if !done {
        out.push(format!("[{section}]\n{key} = {value}"));
    }
    out.join("\n") + "\n"
}
