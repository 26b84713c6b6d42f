//! Connection caps and timeouts with the real binary: silent HTTP, HTTP/2 and TLS sockets are
//! closed, the SMP port keeps accepting while hundreds of idle sockets are held, accept
//! errors back off without flooding the log, and the proxy refuses private destinations unless
//! `[PROXY] allow_private_destinations` is on.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::{Command as SmpCommand, SmpServerRef};
use smp_server::protocol::errors::{BrokerError, ErrorType, ProxyError};
use smp_server::protocol::response::BrokerMsg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

/// A started binary and what the tests need of it.
struct Server {
    proc: Running,
    smp: u16,
    http: u16,
    metrics: u16,
    fp: [u8; 32],
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn smp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.smp))
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.0.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Set `key = value` in `section` (replacing an active line, else right under the header).
fn set_key(ini: &str, section: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut done = false;
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
        if current == section && k == key && !t.starts_with('#') {
            continue;
        }
        out.push(line.to_string());
    }
    if !done {
        out.push(format!("[{section}]\n{key} = {value}"));
    }
    out.join("\n") + "\n"
}

fn web_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("web.crt"), dir.join("web.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl: {out:?}");
    (crt, key)
}

/// `init` a binary, apply `keys`, serve SMP and the web page on one port, plain HTTP and
/// Prometheus beside it; `wrap` runs the start command through `sh -c` (e.g. `ulimit -n`).
async fn start(keys: &[(&str, &str, &str)], wrap: Option<&str>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, log) = (dir.path().join("etc"), dir.path().join("var"));
    let out = bin()
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .args(["init", "-y", "-l", "--ip", "127.0.0.1", "--no-password"])
        .output()
        .expect("init");
    assert!(out.status.success(), "init: {out:?}");
    let fp = Fingerprint::from_base64url(
        std::fs::read_to_string(cfg.join("fingerprint"))
            .expect("fingerprint")
            .trim(),
    )
    .expect("fingerprint");
    let (crt, key) = web_cert(dir.path());
    let (smp, http, metrics) = (free_port(), free_port(), free_port());
    let ini_path = cfg.join("smp-server.ini");
    let mut ini = std::fs::read_to_string(&ini_path).expect("ini");
    let www = log.join("www");
    let base = [
        ("TRANSPORT", "port", smp.to_string()),
        ("WEB", "https", smp.to_string()),
        ("WEB", "http", http.to_string()),
        ("WEB", "cert", crt.display().to_string()),
        ("WEB", "key", key.display().to_string()),
        ("WEB", "static_path", www.display().to_string()),
        (
            "STORE_LOG",
            "prometheus_address",
            format!("127.0.0.1:{metrics}"),
        ),
        ("STORE_LOG", "store_messages", "memory".into()),
    ];
    for (s, k, v) in &base {
        ini = set_key(&ini, s, k, v);
    }
    for (s, k, v) in keys {
        ini = set_key(&ini, s, k, v);
    }
    std::fs::write(&ini_path, ini).expect("write ini");
    let stderr = dir.path().join("stderr.log");
    let mut cmd = match wrap {
        None => {
            let mut c = bin();
            c.arg("start");
            c
        }
        Some(w) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{w}; exec \"$0\" start"))
                .arg(env!("CARGO_BIN_EXE_smp-server"));
            c
        }
    };
    let child = cmd
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start");
    let s = Server {
        proc: Running(child),
        smp,
        http,
        metrics,
        fp: fp.0,
        stderr,
        _dir: dir,
    };
    let c = connect_when_up(s.smp_addr(), s.fp, Duration::from_secs(30)).await;
    drop(c);
    s
}

/// How long until the server closes `s` (EOF or reset), reading and discarding what it sends.
async fn closed_after<S: AsyncRead + Unpin>(mut s: S, start: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    let limit = Duration::from_secs(90);
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => return start.elapsed(),
        }
    }
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A browser-like TLS connection to the shared port (SNI, ALPN `alpn`): the web side.
async fn web_tls(port: u16, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS to the web side");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "web side chosen"
    );
    tls
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Read HTTP/2 frames until a HEADERS frame on stream 1; its status byte is the HPACK index.
async fn h2_response<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.expect("frame header");
        let n = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; n];
        s.read_exact(&mut payload).await.expect("frame payload");
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if head[3] == 1 && stream == 1 {
            return payload;
        }
    }
}

/// One complete HTTP/2 request (GET / on stream 1), answered, then silence.
async fn idle_h2_after_a_request(port: u16) -> Duration {
    let mut s = web_tls(port, b"h2").await;
    s.write_all(H2_PREFACE).await.expect("preface");
    s.write_all(&h2_frame(4, 0, 0, &[]))
        .await
        .expect("settings");
    // :method GET, :scheme https, :path /, :authority localhost (HPACK, static table)
    let mut block = vec![0x82, 0x87, 0x84, 0x41, 9];
    block.extend_from_slice(b"localhost");
    s.write_all(&h2_frame(1, 0x5, 1, &block))
        .await
        .expect("headers");
    let resp = h2_response(&mut s).await;
    // 0x88 = ":status 200" in the static table
    assert_eq!(resp.first(), Some(&0x88), "HTTP/2 200 for /");
    closed_after(s, Instant::now()).await
}

/// One HTTP/1.1 request with keep-alive, answered, then silence.
async fn idle_http1_after_a_request(port: u16) -> Duration {
    let mut s = web_tls(port, b"http/1.1").await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.expect("response");
    assert_eq!(&buf, b"HTTP/1.1 200");
    closed_after(s, Instant::now()).await
}

async fn silent_tcp(port: u16, send: &[u8]) -> Duration {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(send).await.expect("write");
    closed_after(s, Instant::now()).await
}

async fn silent_tls(port: u16) -> Duration {
    let s = web_tls(port, b"h2").await;
    closed_after(s, Instant::now()).await
}

#[tokio::test]
async fn silent_http_connections_are_closed() {
    let s = start(
        &[
            ("WEB", "first_byte_timeout", "2"),
            ("WEB", "idle_timeout", "3"),
        ],
        None,
    )
    .await;
    let (plain, preface, tls, h2, h1, metrics) = tokio::join!(
        silent_tcp(s.http, b""),
        silent_tcp(s.http, &H2_PREFACE[..10]),
        silent_tls(s.smp),
        idle_h2_after_a_request(s.smp),
        idle_http1_after_a_request(s.smp),
        silent_tcp(s.metrics, b"GET /metr"),
    );
    println!(
        "closed after (first_byte_timeout = 2, idle_timeout = 3): plain HTTP silent {plain:?}, \
         partial HTTP/2 preface {preface:?}, TLS then silence on the shared port {tls:?}, \
         idle HTTP/2 {h2:?}, idle HTTP/1.1 {h1:?}, partial Prometheus request {metrics:?}"
    );
    for (what, t) in [
        ("plain HTTP", plain),
        ("partial HTTP/2 preface", preface),
        ("TLS then silence", tls),
        ("idle HTTP/2", h2),
        ("idle HTTP/1.1", h1),
        ("Prometheus", metrics),
    ] {
        assert!(t < Duration::from_secs(60), "{what} stayed open {t:?}");
    }
}

/// The same at the defaults: 10 s before the first byte, 60 s idle, 60 s for the TLS
/// handshake (the reference's `tlsSetupTimeout`).
#[tokio::test]
async fn silent_connections_are_closed_at_the_defaults() {
    let s = start(&[], None).await;
    let (plain, tls, h2, handshake) = tokio::join!(
        silent_tcp(s.http, b""),
        silent_tls(s.smp),
        idle_h2_after_a_request(s.smp),
        silent_tcp(s.smp, b""),
    );
    println!(
        "closed after (defaults): plain HTTP silent {plain:?}, TLS then silence {tls:?}, \
         idle HTTP/2 {h2:?}, TCP without a TLS handshake on the shared port {handshake:?}"
    );
    assert!(plain < Duration::from_secs(60), "plain HTTP {plain:?}");
    assert!(tls < Duration::from_secs(60), "TLS then silence {tls:?}");
    // idle_timeout = 60 and the TLS handshake timeout of 60 s, plus scheduling slack
    assert!(h2 < Duration::from_secs(75), "idle HTTP/2 {h2:?}");
    assert!(
        handshake < Duration::from_secs(75),
        "no TLS handshake {handshake:?}"
    );
}

/// Open `n` silent TCP connections from `source` to `port`; returns those the server kept
/// (the others it closed at once).
async fn hold(source: [u8; 4], port: u16, n: usize) -> Vec<TcpStream> {
    let mut kept = Vec::new();
    let mut socks = Vec::new();
    for _ in 0..n {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::from((source, 0)))
            .expect("bind source");
        // a socket the server refused may already be reset when connect returns
        if let Ok(c) = sock.connect(SocketAddr::from(([127, 0, 0, 1], port))).await {
            socks.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for mut s in socks {
        let mut b = [0u8; 1];
        // still open = nothing to read yet
        if tokio::time::timeout(Duration::from_millis(20), s.read(&mut b))
            .await
            .is_err()
        {
            kept.push(s);
        }
    }
    kept
}

async fn ping_works(s: &Server) {
    let c = smp_server::client::SmpClient::connect(
        s.smp_addr(),
        s.fp,
        smp_server::client::ClientOptions::default(),
    )
    .await
    .expect("a client still connects");
    let (_, pong) = c.request(b"", SmpCommand::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
}

#[tokio::test]
async fn smp_port_keeps_accepting_while_idle_sockets_are_held() {
    let s = start(
        &[
            ("TRANSPORT", "max_connections", "450"),
            ("TRANSPORT", "max_connections_per_ip", "100"),
        ],
        None,
    )
    .await;
    let (base_fds, base_rss) = (s.open_fds(), s.rss_kib());
    // one address, 300 silent sockets: 100 kept, the rest closed at once
    let a = hold([127, 0, 0, 2], s.smp, 300).await;
    assert_eq!(a.len(), 100, "per-address cap");
    ping_works(&s).await;
    // six more addresses: the total cap holds, the process's descriptors stay bounded
    let mut more = Vec::new();
    for i in 3..6 {
        more.extend(hold([127, 0, 0, i], s.smp, 100).await);
    }
    assert_eq!(a.len() + more.len(), 400);
    // 400 silent sockets from four addresses held: an honest client is still served
    ping_works(&s).await;
    for i in 6..9 {
        more.extend(hold([127, 0, 0, i], s.smp, 100).await);
    }
    let (fds, rss) = (s.open_fds(), s.rss_kib());
    println!("server RSS {base_rss} KiB -> {rss} KiB");
    println!(
        "held {} + {} silent sockets (per-IP 100, total 450): server descriptors {base_fds} -> {fds}",
        a.len(),
        more.len()
    );
    assert_eq!(a.len() + more.len(), 450, "total cap");
    assert!(fds <= base_fds + 450 + 16, "descriptors bounded: {fds}");
    drop(a);
    drop(more);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ping_works(&s).await;
    let log = s.log();
    let refusals = log.lines().filter(|l| l.contains("refused")).count();
    println!("refusal log lines: {refusals}");
    assert!(
        (1..=4).contains(&refusals),
        "refusals are logged once per 10 s:\n{log}"
    );
    assert!(!log.contains("127.0.0."), "no addresses in the log:\n{log}");
}

/// Out of descriptors: the accept loop waits instead of spinning, logs once per 10 s, and
/// serves again as soon as descriptors free up.
#[tokio::test]
async fn accept_backs_off_when_out_of_descriptors() {
    let s = start(
        &[("TRANSPORT", "max_connections", "5000")],
        Some("ulimit -n 128"),
    )
    .await;
    let held = hold([127, 0, 0, 2], s.smp, 300).await;
    let cpu = |pid: u32| -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let f: Vec<&str> = st
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
    };
    let t0 = cpu(s.proc.0.id());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks = cpu(s.proc.0.id()) - t0;
    let log = s.log();
    let failures = log.lines().filter(|l| l.contains("accept failed")).count();
    println!(
        "out of descriptors for 5 s with {} sockets held: {failures} log line(s), {ticks} CPU ticks (1/100 s)",
        held.len()
    );
    assert!(failures >= 1, "EMFILE reported:\n{log}");
    assert!(failures <= 2, "accept errors are rate-limited:\n{log}");
    drop(held);
    let c = connect_when_up(s.smp_addr(), s.fp, Duration::from_secs(30)).await;
    let (_, pong) = c.request(b"", SmpCommand::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
}

fn self_ref(s: &Server) -> SmpServerRef {
    SmpServerRef {
        hosts: vec![b"127.0.0.1".to_vec()],
        port: s.smp.to_string().into_bytes(),
        key_hash: s.fp.to_vec(),
    }
}

#[tokio::test]
async fn proxy_refuses_private_destinations_unless_allowed() {
    let strict = start(&[], None).await;
    let c = connect_when_up(strict.smp_addr(), strict.fp, Duration::from_secs(10)).await;
    let (_, r) = c
        .request(b"", SmpCommand::Prxy(self_ref(&strict), None), None)
        .await
        .expect("PRXY");
    assert_eq!(
        r,
        BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(BrokerError::Host)))
    );
    let open = start(&[("PROXY", "allow_private_destinations", "on")], None).await;
    let c = connect_when_up(open.smp_addr(), open.fp, Duration::from_secs(10)).await;
    proxy_session(&c, self_ref(&open)).await;
}
