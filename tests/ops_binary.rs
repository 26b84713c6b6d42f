//! Lifecycle with the real binary: SIGTERM under load (bounded exit, every acknowledged
//! SEND accounted for), SIGHUP reloading [INFORMATION] and passwords without dropping
//! connections, maintenance mode, systemd readiness, and the privacy of info-level logs.

mod common;
mod ops_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use ops_support::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::Command as SmpCommand;
use smp_server::protocol::response::BrokerMsg;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

/// Set `key = value` in the INI text, replacing the key's line or its commented example.
fn set_key(ini: &str, key: &str, value: &str) -> String {
    let mut done = false;
    let mut out: Vec<String> = ini
        .lines()
        .map(|l| {
            let t = l.trim_start_matches("# ");
            let is_key = t.starts_with(&format!("{key} "))
                || t.starts_with(&format!("{key}:"))
                || t.starts_with(&format!("{key}="));
            if is_key && !done {
                done = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "key {key} not in the INI");
    out.push(String::new());
    out.join("\n")
}

fn ini_value(ini: &str, key: &str) -> String {
    ini.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} in INI"))
        .to_string()
}

struct Bin {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    control: SocketAddr,
    fp: [u8; 32],
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Drop for Bin {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Bin {
    /// `init` with a control port, then adjust the INI for loopback test ports.
    fn init(extra: &[(&str, &str)]) -> Bin {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("etc");
        let log = dir.path().join("var");
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
            .expect("run init");
        assert!(out.status.success(), "init failed: {out:?}");
        let ini_path = cfg.join("smp-server.ini");
        let mut ini = std::fs::read_to_string(&ini_path).expect("ini");
        let (port, cport) = (free_port(), free_port());
        ini = set_key(&ini, "port", &port.to_string());
        ini = set_key(&ini, "control_port", &cport.to_string());
        for (k, v) in extra {
            ini = set_key(&ini, k, v);
        }
        std::fs::write(&ini_path, ini).expect("write ini");
        let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
        let fp = Fingerprint::from_base64url(fp_text.trim())
            .expect("fingerprint")
            .0;
        let (o, e) = (dir.path().join("stdout.txt"), dir.path().join("stderr.txt"));
        Bin {
            _dir: dir,
            cfg,
            log,
            port,
            control: SocketAddr::from(([127, 0, 0, 1], cport)),
            fp,
            child: None,
            out: o,
            err: e,
        }
    }

    fn ini(&self) -> String {
        std::fs::read_to_string(self.cfg.join("smp-server.ini")).expect("ini")
    }

    fn start_cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log)
            .env_remove("RUST_LOG")
            .arg("start")
            .args(args);
        c
    }

    async fn start(&mut self, args: &[&str], env: &[(&str, &Path)]) {
        let mut c = self.start_cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::from(
                std::fs::File::create(&self.out).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&self.err).expect("stderr file"),
            ))
            .spawn()
            .expect("start");
        self.child = Some(child);
        let _ = self.client().await;
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn client(&self) -> SmpClient {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match SmpClient::connect(self.addr(), self.fp, ClientOptions::default()).await {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("server did not come up: {e}; stderr: {}", self.logs()),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Wait for exit; returns how long it took.
    async fn wait_exit(&mut self, limit: Duration) -> Duration {
        let t = Instant::now();
        let c = self.child.as_mut().expect("running");
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                assert!(st.success(), "clean exit: {st:?}; logs: {}", self.logs());
                self.child = None;
                return t.elapsed();
            }
            assert!(t.elapsed() < limit, "server did not stop within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    async fn control_as(&self, pw_key: &str) -> Control {
        let mut c = Control::connect(self.control).await;
        let pw = ini_value(&self.ini(), pw_key);
        let a = c.cmd(&format!("auth {pw}")).await;
        assert!(a[0].starts_with("Current role is CPR"), "{a:?}");
        assert_ne!(a[0], "Current role is CPRNone");
        c
    }
}

#[tokio::test]
async fn sigterm_under_load_exits_in_bounded_time_and_accounts_every_acknowledged_send() {
    let mut b = Bin::init(&[("log_stats", "on")]);
    b.start(&[], &[]).await;
    let rc = b.client().await;
    let r = create_queue(&rc).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let attempted = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let c = b.client().await;
        let sid = r.sid().to_vec();
        let (acked, attempted) = (acked.clone(), attempted.clone());
        senders.push(tokio::spawn(async move {
            // the quota stops acceptance at 128 messages; keep the load on with QUOTA answers
            loop {
                attempted.fetch_add(1, Ordering::SeqCst);
                let r = tokio::time::timeout(
                    Duration::from_secs(3),
                    c.request(&sid, send_cmd(b"load"), None),
                )
                .await;
                match r {
                    Ok(Ok((_, BrokerMsg::Ok))) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Ok(_)) => {}
                    // the connection ended (or went silent with the process gone)
                    Ok(Err(_)) | Err(_) => return,
                }
            }
        }));
    }
    while acked.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.signal("-TERM");
    let took = b.wait_exit(Duration::from_secs(15)).await;
    for s in senders {
        tokio::time::timeout(Duration::from_secs(10), s)
            .await
            .expect("clients see the connection end")
            .expect("sender task");
    }
    let acked = acked.load(Ordering::SeqCst) as i64;
    // statistics were saved on the way out and count every SEND the clients saw accepted
    let saved = std::fs::read_to_string(b.log.join("smp-server-stats.log"))
        .expect("stats saved on SIGTERM");
    let sent: i64 = saved
        .lines()
        .find_map(|l| l.strip_prefix("msgSent="))
        .expect("msgSent")
        .parse()
        .expect("number");
    assert!(sent >= acked, "msgSent {sent} < acknowledged {acked}");
    assert!(sent <= attempted.load(Ordering::SeqCst) as i64);
    assert!(b.logs().contains("server stopped"), "{}", b.logs());
    eprintln!("SIGTERM under load: exited in {took:?} after {acked} acknowledged SENDs");

    // after a restart every acknowledged message is still there, exactly once
    b.start(&[], &[]).await;
    let rc = b.client().await;
    let (_, sok) = rc
        .request(r.rid(), SmpCommand::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert!(matches!(sok, BrokerMsg::Sok(_)), "{sok:?}");
    let (_, mut m) = event(&rc).await;
    let mut bodies = 0i64;
    loop {
        let got = decrypt_msg(&r, &m);
        if got.body.is_some() {
            bodies += 1;
        }
        let (_, next) = rc
            .request(r.rid(), SmpCommand::Ack(got.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        match next {
            BrokerMsg::Ok => break,
            n => m = n,
        }
    }
    assert_eq!(
        bodies, acked,
        "messages after restart vs acknowledged SENDs"
    );
    b.signal("-TERM");
    b.wait_exit(Duration::from_secs(15)).await;
}

#[tokio::test]
async fn sighup_reloads_information_and_passwords_without_dropping_connections() {
    let mut b = Bin::init(&[]);
    b.start(&[], &[]).await;
    let rc = b.client().await;
    let r = create_queue(&rc).await;
    let mut admin = b.control_as("control_port_admin_password").await;
    let info = admin.cmd("server-info").await;
    assert!(
        info.iter().any(|l| l.contains("source_code: None")),
        "{info:?}"
    );
    // edit the INI: new source code URI, new user password, and a port change that needs a restart
    let mut ini = b.ini();
    ini = set_key(&ini, "source_code", "https://example.org/our-fork");
    ini = set_key(&ini, "control_port_user_password", "new-user-password");
    ini = set_key(&ini, "log_stats", "on");
    std::fs::write(b.cfg.join("smp-server.ini"), ini).expect("write ini");
    b.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = admin.cmd("server-info").await;
        if info
            .iter()
            .any(|l| l.contains("https://example.org/our-fork"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "INFORMATION not reloaded: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut user = Control::connect(b.control).await;
    assert_eq!(
        user.cmd("auth new-user-password").await,
        vec!["Current role is CPRUser"]
    );
    // the SMP connection made before the reload still works
    let sc = b.client().await;
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"after reload"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&rc).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"after reload"[..])
    );
    let (_, pong) = rc.request(b"", SmpCommand::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
    b.signal("-INT");
    b.wait_exit(Duration::from_secs(15)).await;
    let logs = b.logs();
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(
        logs.contains("[STORE_LOG]") && logs.contains("after a restart"),
        "{logs}"
    );
}

#[tokio::test]
async fn maintenance_mode_runs_start_and_stop_tasks_only() {
    let b = Bin::init(&[]);
    // a saved stats file is restored and saved again, and the server exits without serving
    std::fs::create_dir_all(&b.log).expect("log dir");
    std::fs::write(
        b.log.join("smp-server-stats.log"),
        "fromTime=2024-05-01T00:00:00Z\nqCreated=7\nqSecured=0\nqDeletedAll=0\nqDeletedNew=0\nqDeletedSecured=0\nmsgSent=3\nmsgRecv=1\n",
    )
    .expect("stats");
    let out = b
        .start_cmd(&["--maintenance"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("start -m");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Server started in 'maintenance' mode, exiting"),
        "{stdout}"
    );
    let saved = std::fs::read_to_string(b.log.join("smp-server-stats.log")).expect("saved");
    assert!(
        saved.contains("\nqCreated=7\n") && saved.contains("\nmsgSent=3\n"),
        "{saved}"
    );
    assert!(
        std::net::TcpStream::connect(b.addr()).is_err(),
        "nothing listens"
    );
}

#[tokio::test]
async fn systemd_readiness_notifications() {
    let mut b = Bin::init(&[]);
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let sock_path = sock_dir.path().join("notify");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    rx.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    b.start(&[], &[("NOTIFY_SOCKET", &sock_path)]).await;
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY notification");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    b.signal("-TERM");
    let n = rx.recv(&mut buf).expect("STOPPING notification");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    b.wait_exit(Duration::from_secs(15)).await;
}

fn forms(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut v = vec![
        URL_SAFE_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        hex.clone(),
        hex.to_uppercase(),
    ];
    // a prefix is enough to identify an ID
    v.push(URL_SAFE_NO_PAD.encode(bytes)[..16].to_string());
    v.push(hex[..16].to_string());
    v
}

#[tokio::test]
async fn info_logs_hold_no_queue_ids_keys_or_client_addresses() {
    let mut b = Bin::init(&[("log_tls_errors", "on")]);
    b.start(&["--log-level", "info"], &[]).await;
    let rc = b.client().await;
    let sc = b.client().await;
    let r = create_queue(&rc).await;
    let sender_key = sign_key();
    let (_, ok) = sc
        .request(
            r.sid(),
            SmpCommand::Skey(sender_key.public()),
            Some(&sender_key),
        )
        .await
        .expect("SKEY");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"secret body"), Some(&sender_key))
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&rc).await;
    let got = decrypt_msg(&r, &m);
    let (_, ok) = rc
        .request(r.rid(), SmpCommand::Ack(got.msg_id.clone()), Some(&r.key))
        .await
        .expect("ACK");
    assert_eq!(ok, BrokerMsg::Ok);
    // refused commands and operator commands naming the queue
    let (_, e) = sc
        .request(b"0123456789abcdef01234567", send_cmd(b"x"), None)
        .await
        .expect("SEND");
    assert!(matches!(e, BrokerMsg::Err(_)));
    let mut admin = b.control_as("control_port_admin_password").await;
    for c in ["status", "block", "unblock", "delete"] {
        let a = admin.cmd(&format!("{c} {}", b64(r.sid()))).await;
        assert!(!a.is_empty());
    }
    assert_eq!(admin.cmd("auth wrong").await.len(), 1);
    // a client that fails TLS, from a known source port
    let bad = std::net::TcpStream::connect(b.addr()).expect("connect");
    let bad_port = bad.local_addr().expect("addr").port();
    {
        use std::io::Write;
        let mut bad = bad;
        let _ = bad.write_all(b"GET / HTTP/1.0\r\n\r\nnot tls at all");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, ok) = rc
        .request(r.rid(), SmpCommand::Del, Some(&r.key))
        .await
        .expect("DEL");
    assert!(matches!(ok, BrokerMsg::Ok | BrokerMsg::Err(_)));
    drop((rc, sc));
    b.signal("-TERM");
    b.wait_exit(Duration::from_secs(15)).await;

    let logs = b.logs();
    assert!(
        logs.contains("server stopped"),
        "the log was captured: {logs}"
    );
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("recipient ID".into(), r.rid().to_vec()),
        ("sender ID".into(), r.sid().to_vec()),
        ("message ID".into(), got.msg_id.clone()),
        ("recipient key".into(), r.key.public().to_der()),
        ("recipient key (raw)".into(), r.key.public().raw().to_vec()),
        ("sender key".into(), sender_key.public().to_der()),
        (
            "sender key (raw)".into(),
            sender_key.public().raw().to_vec(),
        ),
        ("recipient DH key".into(), r.dh.public().raw().to_vec()),
        (
            "server DH key".into(),
            r.ids.rcv_public_dh_key.raw().to_vec(),
        ),
    ];
    if let Some(n) = &r.ids.ntf_creds {
        secrets.push(("notifier ID".into(), n.0.clone()));
    }
    for (what, bytes) in &secrets {
        for f in forms(bytes) {
            assert!(
                !logs.contains(&f),
                "the log shows the {what} ({f}):\n{logs}"
            );
        }
    }
    let addr_forms = [format!("127.0.0.1:{bad_port}"), format!(":{bad_port}")];
    for f in addr_forms {
        assert!(
            !logs.contains(&f),
            "the log shows a client address ({f}):\n{logs}"
        );
    }
    assert!(!logs.contains("secret body"));
}

/// An Ed25519 chain (leaf, CA) and key for the web page, made like a server identity.
/// Returns (chain PEM, key PEM, DER of the leaf, fingerprint of the CA).
fn web_identity() -> (String, String, Vec<u8>, [u8; 32]) {
    use smp_server::crypto::identity::{
        create_identity, CA_CRT_FILE, SERVER_CRT_FILE, SERVER_KEY_FILE,
    };
    let d = tempfile::tempdir().expect("tempdir");
    let fp = create_identity(
        d.path(),
        smp_server::crypto::keys::KeyAlgorithm::Ed25519,
        "localhost",
    )
    .expect("identity");
    let read = |f: &str| std::fs::read_to_string(d.path().join(f)).expect("read");
    let leaf_pem = read(SERVER_CRT_FILE);
    let leaf = smp_server::crypto::x509::certs_from_pem(&leaf_pem).expect("pem")[0].clone();
    (
        format!("{leaf_pem}{}", read(CA_CRT_FILE)),
        read(SERVER_KEY_FILE),
        leaf,
        fp.0,
    )
}

type WebTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A browser-like TLS connection (SNI, ALPN http/1.1) that accepts only the chain of the
/// CA with fingerprint `fp`; returns the stream and the leaf certificate served.
async fn https_connect(addr: SocketAddr, fp: [u8; 32]) -> Result<(WebTls, Vec<u8>), String> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(
        smp_server::transport::verify::ServerIdentityVerifier::new(fp),
    ))
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = s.get_ref().1.peer_certificates().expect("certificates")[0].to_vec();
    Ok((s, leaf))
}

async fn https_get(mut s: WebTls) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn sighup_reloads_web_and_smp_certificates_without_dropping_connections() {
    let mut b = Bin::init(&[]);
    let (chain1, key1, leaf1, fp1) = web_identity();
    let (web_crt, web_key) = (b.cfg.join("web.crt"), b.cfg.join("web.key"));
    std::fs::write(&web_crt, &chain1).expect("web cert");
    std::fs::write(&web_key, &key1).expect("web key");
    let mut ini = b.ini();
    ini = set_key(&ini, "https", &b.port.to_string());
    ini = set_key(&ini, "cert", &web_crt.display().to_string());
    ini = set_key(&ini, "key", &web_key.display().to_string());
    std::fs::write(b.cfg.join("smp-server.ini"), ini).expect("write ini");
    b.start(&[], &[]).await;

    // before: an SMP connection with a queue, and an HTTPS connection left open
    let rc = b.client().await;
    let r = create_queue(&rc).await;
    let smp_leaf1 = rc.server_auth.as_ref().expect("server auth").chain[0].clone();
    let (open_https, served) = https_connect(b.addr(), fp1).await.expect("HTTPS before");
    assert_eq!(served, leaf1, "the [WEB] certificate is served to browsers");

    // new web files, a new SMP online certificate under the same CA, an INI edit
    let (chain2, key2, leaf2, fp2) = web_identity();
    std::fs::write(&web_crt, &chain2).expect("web cert");
    std::fs::write(&web_key, &key2).expect("web key");
    let cert = bin()
        .env("SMP_SERVER_CFG_PATH", &b.cfg)
        .env("SMP_SERVER_LOG_PATH", &b.log)
        .arg("cert")
        .output()
        .expect("run cert");
    assert!(cert.status.success(), "smp-server cert: {cert:?}");
    let smp_leaf2 = smp_server::crypto::x509::certs_from_pem(
        &std::fs::read_to_string(b.cfg.join("server.crt")).expect("server.crt"),
    )
    .expect("pem")[0]
        .clone();
    assert_ne!(smp_leaf1, smp_leaf2);
    let mut ini = b.ini();
    ini = set_key(&ini, "source_code", "https://example.org/reloaded");
    ini = set_key(&ini, "log_tls_errors", "on");
    std::fs::write(b.cfg.join("smp-server.ini"), ini).expect("write ini");
    b.signal("-HUP");

    // after: new HTTPS connections get the new certificate
    let deadline = Instant::now() + Duration::from_secs(10);
    let served = loop {
        match https_connect(b.addr(), fp2).await {
            Ok((_, leaf)) => break leaf,
            Err(e) => assert!(
                Instant::now() < deadline,
                "new web certificate not served: {e}; logs: {}",
                b.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        Fingerprint::of_cert(&served),
        Fingerprint::of_cert(&leaf2),
        "the new [WEB] certificate"
    );
    assert!(
        https_connect(b.addr(), fp1).await.is_err(),
        "the old web certificate is no longer served"
    );
    // new SMP connections get the new online certificate, under the same CA fingerprint
    let sc = b.client().await;
    let auth = sc.server_auth.as_ref().expect("server auth");
    assert_eq!(auth.chain[0], smp_leaf2, "the new server.crt");
    assert_eq!(
        Fingerprint::of_cert(&auth.chain[1]).0,
        b.fp,
        "same identity"
    );
    // the connections opened before still work
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"after cert reload"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&rc).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"after cert reload"[..])
    );
    let (_, pong) = rc.request(b"", SmpCommand::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
    let page = https_get(open_https).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // the generated page shows the reloaded [INFORMATION]
    let index = std::fs::read_to_string(b.log.join("www").join("index.html")).expect("page");
    assert!(
        index.contains("https://example.org/reloaded"),
        "page not regenerated"
    );

    // a broken web file: the current certificate stays, with a warning
    std::fs::write(&web_key, "not a key").expect("web key");
    b.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.logs().contains("kept the current [WEB] certificate") {
        assert!(Instant::now() < deadline, "no warning: {}", b.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, leaf) = https_connect(b.addr(), fp2).await.expect("HTTPS still up");
    assert_eq!(leaf, leaf2);

    b.signal("-INT");
    b.wait_exit(Duration::from_secs(15)).await;
    let logs = b.logs();
    assert!(
        logs.contains("[WEB] certificate: new certificate in use"),
        "{logs}"
    );
    assert!(
        logs.contains("SMP certificate: new server.crt in use"),
        "{logs}"
    );
    assert!(logs.contains("[INFORMATION] updated"), "{logs}");
    assert!(
        logs.contains("SMP certificate unchanged"),
        "second reload: {logs}"
    );
    assert!(
        logs.contains("[TRANSPORT] log_tls_errors") && logs.contains("after a restart"),
        "{logs}"
    );
}
