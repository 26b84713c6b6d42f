//! The real `smp-server` binary in a temporary directory: `init`, edit the INI, `start`,
//! stop with a signal, run sub-commands with an answer on stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;

use super::Running;

/// An initialised server's directories and address.
pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    pub fp: Fingerprint,
}

impl Setup {
    /// `smp-server` with this server's directories.
    pub fn bin(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
        c.env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log);
        c
    }

    /// `init -y` with `extra` arguments, on a free port, password `test`.
    pub fn init(extra: &[&str]) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Setup {
            cfg: dir.path().join("etc"),
            log: dir.path().join("var"),
            _dir: dir,
            port: super::free_port(),
            fp: Fingerprint([0; 32]),
        };
        let out = s
            .bin()
            .args(["init", "-y", "--ip", "127.0.0.1", "--password", "test"])
            .args(extra)
            .output()
            .expect("run init");
        assert!(out.status.success(), "init failed: {out:?}");
        let fp = std::fs::read_to_string(s.cfg.join("fingerprint")).expect("fingerprint");
        s.fp = Fingerprint::from_base64url(fp.trim()).expect("fingerprint");
        let port = s.port;
        s.edit_ini(|k, l| (k == "port" && l.starts_with("port")).then(|| format!("port: {port}")));
        s
    }

    /// Replace lines of the INI that `f(key, line)` maps to a new line (commented-out keys
    /// included, so a default can be switched on).
    pub fn edit_ini(&self, f: impl Fn(&str, &str) -> Option<String>) {
        let path = self.cfg.join("smp-server.ini");
        let ini = std::fs::read_to_string(&path).expect("ini");
        let out: Vec<String> = ini
            .lines()
            .map(|l| {
                let key = l
                    .trim_start_matches('#')
                    .trim()
                    .split(['=', ':'])
                    .next()
                    .unwrap_or("")
                    .trim();
                f(key, l).unwrap_or_else(|| l.to_string())
            })
            .collect();
        std::fs::write(&path, out.join("\n") + "\n").expect("write ini");
    }

    /// Run a command answering `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut c = self
            .bin()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        c.wait_with_output().expect("wait")
    }

    /// Another client of the running server.
    pub async fn client(&self) -> SmpClient {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        SmpClient::connect(addr, self.fp.0, ClientOptions::default())
            .await
            .expect("connect")
    }

    /// `start`, and a client once it answers.
    pub async fn start(&self) -> (Running, SmpClient) {
        let child = self
            .bin()
            .arg("start")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let mut r = Running(child);
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = r.0.try_wait().expect("wait") {
                panic!("server exited {st:?}: {}", r.output());
            }
            match SmpClient::connect(addr, self.fp.0, ClientOptions::default()).await {
                Ok(c) => return (r, c),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("server did not come up: {e}"),
            }
        }
    }
}

/// Stop with SIGINT and expect a clean exit.
pub async fn stop(mut r: Running) {
    let ok = Command::new("kill")
        .args(["-INT", &r.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let t = Instant::now();
    loop {
        if let Some(st) = r.0.try_wait().expect("wait") {
            assert!(st.success(), "clean exit: {st:?}");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NEW with the password [`Setup::init`] sets (`test`), subscribed or not as `mode` says.
pub async fn new_queue_with_password(
    c: &SmpClient,
    mode: smp_server::protocol::command::SubscriptionMode,
) -> super::Recipient {
    use smp_server::protocol::command::Command;
    use smp_server::protocol::response::BrokerMsg;
    let k = super::key_for(18);
    let dh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
    let Command::New(mut req) = super::new_req(&k, &dh, mode, None) else {
        unreachable!()
    };
    req.auth = Some(b"test".to_vec());
    let (_, ids) = c
        .request(b"", Command::New(req), Some(&k))
        .await
        .expect("NEW");
    let BrokerMsg::Ids(ids) = ids else {
        panic!("expected IDS, got {ids:?}")
    };
    super::Recipient { key: k, dh, ids }
}

/// [`new_queue_with_password`], unsubscribed, then secured with a new sender key.
pub async fn secured_queue_with_password(
    c: &SmpClient,
) -> (super::Recipient, smp_server::client::AuthKey) {
    use smp_server::protocol::command::{Command, SubscriptionMode};
    use smp_server::protocol::response::BrokerMsg;
    let r = new_queue_with_password(c, SubscriptionMode::OnlyCreate).await;
    let sk = super::key_for(18);
    let (_, ok) = c
        .request(r.rid(), Command::Key(super::pk(&sk)), Some(&r.key))
        .await
        .expect("KEY");
    assert_eq!(ok, BrokerMsg::Ok);
    (r, sk)
}
