//! Helpers for the operations tests: a control port client, a server with the operations
//! services, and the Prometheus parser in Python.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use smp_server::config::{Config, Paths};
use smp_server::control::Ops;
use smp_server::server::ServerState;
use smp_server::stats::daily::Clock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A control port session.
pub struct Control {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    /// The greeting received on connect.
    pub greeting: String,
}

impl Control {
    pub async fn connect(addr: SocketAddr) -> Control {
        let s = TcpStream::connect(addr)
            .await
            .expect("connect control port");
        let (r, w) = s.into_split();
        let mut c = Control {
            r: BufReader::new(r),
            w,
            greeting: String::new(),
        };
        for _ in 0..2 {
            let l = c.line().await.expect("greeting");
            c.greeting.push_str(&l);
            c.greeting.push('\n');
        }
        c
    }

    /// One line (without the newline), or `None` at end of stream.
    pub async fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut s))
            .await
            .expect("control port answered in time")
            .expect("read");
        (n > 0).then(|| s.trim_end_matches(['\n', '\r']).to_string())
    }

    /// Send a command and return its answer lines. `help` is sent after it as a marker of
    /// the answer's end (its answer is not returned).
    pub async fn cmd(&mut self, line: &str) -> Vec<String> {
        self.w
            .write_all(format!("{line}\nhelp\n").as_bytes())
            .await
            .expect("write");
        let mut out = Vec::new();
        loop {
            let l = self.line().await.expect("answer");
            if l.starts_with("commands: ") {
                return out;
            }
            out.push(l);
        }
    }

    /// Send raw bytes.
    pub async fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.expect("write");
    }
}

pub fn b64(id: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// A configuration in `dir` from INI text.
pub fn config(dir: &Path, ini: &str) -> Arc<Config> {
    Arc::new(Config::parse(ini, Paths::new(dir, dir)).expect("valid test INI"))
}

/// Start the operations services for a server's state with control and metrics on port 0.
pub async fn start_ops(
    cfg: Arc<Config>,
    state: Arc<ServerState>,
    clock: Arc<dyn Clock>,
) -> (Ops, CancellationToken) {
    let sd = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let ops = Ops::start_with(cfg, state, sd.clone(), clock, Some(any), Some(any))
        .await
        .expect("ops start");
    (ops, sd)
}

/// The Python interpreter for the interop scripts.
pub fn python() -> String {
    std::env::var("SMP_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Parse exposition text with prometheus_client; panics with the parser's error if invalid.
/// `None` (with a `skipped:` line) when prometheus_client is not installed.
pub fn parse_metrics(text: &str) -> Option<serde_json::Value> {
    crate::common::require::python(
        "ops (Prometheus exposition parsed by prometheus_client)",
        &["prometheus_client"],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("metrics.txt");
    std::fs::write(&p, text).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/parse_metrics.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&p)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (set SMP_TEST_PYTHON): {e}", python()));
    assert!(
        out.status.success(),
        "prometheus_client rejected the metrics (is `pip install prometheus-client` done? see tests/py/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("parser output"))
}

/// The value of a sample by name and labels (`[]` for none). The parser names counter
/// samples `<family>_total`; both spellings are accepted.
pub fn sample(parsed: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parsed["samples"].as_array()?.iter().find_map(|s| {
        let l = s[1].as_object()?;
        let matches = (s[0] == name || s[0] == format!("{name}_total"))
            && l.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v));
        matches.then(|| s[2].as_f64()).flatten()
    })
}

/// Plain HTTP GET on loopback: (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(addr).await.expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("metrics answered in time")
        .expect("read");
    let text = String::from_utf8(buf).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}
