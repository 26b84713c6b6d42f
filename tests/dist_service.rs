//! The update checker inside a running server (`[UPDATE] mode = check | auto`), against the
//! local mock of GitHub's releases API (GitHub cannot be reached here) serving releases built by
//! packaging/build-release.sh with a TEST key. The server's first check comes 60 s after start,
//! so each test takes a little over a minute; they run in parallel.

mod common;
mod dist_support;

use common::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dist_support::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;

struct Server {
    _dir: tempfile::TempDir,
    _mock: Mock,
    bin: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
    output: PathBuf,
    port: u16,
    fp: Fingerprint,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A window of UTC minutes around now.
fn window_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let now = (secs % 86400) / 60;
    let (a, b) = ((now + 1440 - 5) % 1440, (now + 60) % 1440);
    format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
}

/// The old release installed, initialised and started with `[UPDATE] mode = <mode>`.
fn start(mode: &str, env: &[(&str, &str)]) -> Server {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mock");
    publish(&root, &f.release_dir(NEW), &format!("v{NEW}"));
    let mock = Mock::start(&root);
    let bin = f.extract(OLD, &dir.path().join("bin"));
    let cfg = dir.path().join("etc");
    let log = dir.path().join("var");
    run(Command::new(&bin)
        .args(["init", "-y", "--ip", "192.0.2.7", "--no-password"])
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log));
    let port = free_port();
    let ini_path = cfg.join("smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    let update = format!(
        "[UPDATE]\nmode = {mode}\ncheck_interval = 60\nwindow = {}\nrepository = {REPO}\napi_url = {}\n",
        window_now(),
        mock.api_url()
    );
    let ini = ini
        .replace("port = 5223,443", &format!("port = {port}"))
        .replacen("[UPDATE]\n", &update, 1);
    std::fs::write(&ini_path, ini).expect("ini");
    let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
    let fp = Fingerprint::from_base64url(fp_text.trim()).expect("fingerprint");
    let output = dir.path().join("server.out");
    let out = std::fs::File::create(&output).expect("output file");
    let err = out.try_clone().expect("clone");
    let mut cmd = Command::new(&bin);
    cmd.arg("start")
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .env_remove("INVOCATION_ID")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start");
    Server {
        _dir: dir,
        _mock: mock,
        bin,
        cfg,
        log,
        output,
        port,
        fp,
        child,
    }
}

impl Server {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.output().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no '{what}' within {secs} s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    async fn handshake(&self) {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match SmpClient::connect(addr, self.fp.0, ClientOptions::default()).await {
                Ok(c) => {
                    assert_eq!(c.version(), 20);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("server does not answer: {e}\n{}", self.output()),
            }
        }
    }

    fn version(&self) -> String {
        let out = run(Command::new(&self.bin).arg("--version"));
        out.lines().next().unwrap_or_default().trim().to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_mode_reports_a_newer_signed_release_and_changes_nothing() {
    if !tools("dist_service", &[]) {
        return;
    }
    let s = start("check", &[]);
    s.handshake().await;
    let before = std::fs::read(&s.bin).expect("bin");
    s.wait_for("a newer signed release is available: 0.2.0", 120);
    assert_eq!(std::fs::read(&s.bin).expect("bin"), before);
    assert_eq!(s.version(), format!("SMP server v{OLD}"));
    s.handshake().await;
    let _ = (&s.cfg, &s.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_mode_installs_drains_and_reexecutes_standalone() {
    if !tools("dist_service", &[]) {
        return;
    }
    let mut s = start("auto", &[]);
    s.handshake().await;
    let pid = s.child.id();
    s.wait_for("Update installed; restarting", 150);
    assert_eq!(s.version(), format!("SMP server v{NEW}"));
    // The same process (re-executed) serves again, now as the new version.
    s.wait_for(&format!("SMP server v{NEW}"), 30);
    s.handshake().await;
    assert!(s.child.try_wait().expect("wait").is_none(), "server exited");
    assert_eq!(s.child.id(), pid);
    assert!(smp_updater::previous_path(&s.bin).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_mode_under_systemd_exits_with_the_restart_status() {
    if !tools("dist_service", &[]) {
        return;
    }
    let mut s = start("auto", &[("INVOCATION_ID", "0123456789abcdef")]);
    s.handshake().await;
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit:\n{}",
            s.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        status.code(),
        Some(i32::from(smp_updater::RESTART_EXIT_STATUS)),
        "{}",
        s.output()
    );
    assert_eq!(s.version(), format!("SMP server v{NEW}"));
}
