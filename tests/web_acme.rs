//! The web page and automatic certificates with the real binary and a real ACME CA (Debian's
//! pebble, with pebble-challtestsrv answering every DNS query with 127.0.0.1).
//!
//! Needs `pebble`, `pebble-challtestsrv`, `openssl`, `curl` and `chromium`: run
//! `.ci/setup-acme.sh` (as root) first. Without them the tests are skipped with a `skipped:`
//! line (a failure under `SMP_TEST_REQUIRE_ALL=1`, as in CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;

const DOMAIN: &str = "smp.test";

/// The tools of the suite are installed, or the test is skipped.
fn have(tools: &[&str]) -> bool {
    common::require::tools("web_acme", tools)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble + its DNS, validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
struct Pebble {
    _procs: Vec<Running>,
    port: u16,
    mgmt: u16,
    ca: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        let d = dir.join("pebble");
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = |f: &str| d.join(f).to_string_lossy().into_owned();
        // A throwaway CA and a certificate for pebble's own HTTPS listener.
        run(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=pebble test CA",
        ]));
        run(Command::new("openssl").args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("req.csr"),
            "-subj",
            "/CN=localhost",
        ]));
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        run(Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            &p("req.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("cert.pem"),
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
        ]));
        let (port, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": p("cert.pem"),
            "privateKey": p("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(d.join("pebble.json"), config.to_string()).expect("config");
        let log = |name: &str| Stdio::from(std::fs::File::create(d.join(name)).expect("log"));
        let dns_srv = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                "127.0.0.1",
            ])
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("start pebble-challtestsrv");
        let dns_srv = Running(dns_srv);
        wait_port(dns_mgmt, "pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .args([
                "-config",
                &p("pebble.json"),
                "-dnsserver",
                &format!("127.0.0.1:{dns}"),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("start pebble");
        let pebble = Running(pebble);
        wait_port(port, "pebble");
        wait_port(mgmt, "pebble management");
        Pebble {
            _procs: vec![pebble, dns_srv],
            port,
            mgmt,
            ca: d.join("ca.pem"),
        }
    }

    /// pebble's issuing root (new at every start).
    fn root(&self) -> CertificateDer<'static> {
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&self.ca)
            .arg(format!("https://localhost:{}/roots/0", self.mgmt))
            .output()
            .expect("curl");
        assert!(out.status.success(), "fetching pebble's root: {out:?}");
        let der = smp_acme::certinfo::first_pem_der(&out.stdout).expect("root PEM");
        CertificateDer::from(der)
    }
}

/// A real `smp-server` with its own configuration.
struct Server {
    proc: Running,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    fp: Fingerprint,
    smp_port: u16,
    shared_port: u16,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.err")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

const INFORMATION: &str = "[INFORMATION]\nsource_code = https://example.com/our-source\noperator = Test Operator Ltd\noperator_country = DE\nwebsite = https://operator.example\nserver_country = NL\nhosting = Example Hosting\nhosting_type = virtual\n";

/// Init an identity, then write our own INI; `extra` holds the [WEB]/[ACME] sections.
fn start_server(
    dir: tempfile::TempDir,
    shared_port: u16,
    extra: impl Fn(&Path) -> String,
) -> Server {
    let cfg = dir.path().join("etc");
    let logd = dir.path().join("var");
    let env = |c: &mut Command| {
        c.env("SMP_SERVER_CFG_PATH", &cfg)
            .env("SMP_SERVER_LOG_PATH", &logd);
    };
    let mut init = bin();
    env(&mut init);
    run(init.args(["init", "-y", "--ip", "127.0.0.1", "--no-password"]));
    let smp_port = free_port();
    let ini = format!(
        "{INFORMATION}[STORE_LOG]\nenable = off\n[AUTH]\nnew_queues = on\n[TRANSPORT]\nhost = {DOMAIN}\nport = {smp_port},{shared_port}\n{}",
        extra(&cfg)
    );
    std::fs::write(cfg.join("smp-server.ini"), ini).expect("ini");
    let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
    let fp = Fingerprint::from_base64url(fp_text.trim()).expect("fingerprint");
    let mut start = bin();
    env(&mut start);
    let file = |n: &str| Stdio::from(std::fs::File::create(dir.path().join(n)).expect("log"));
    let child = start
        .args(["start", "--log-level", "debug"])
        .env("RUST_LOG", "info,smp_server=debug,smp_acme=debug")
        .stdout(file("server.out"))
        .stderr(file("server.err"))
        .spawn()
        .expect("start");
    let mut s = Server {
        proc: Running(child),
        dir,
        cfg,
        fp,
        smp_port,
        shared_port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", shared_port)).is_err() {
        if let Ok(Some(status)) = s.proc.0.try_wait() {
            panic!(
                "smp-server exited ({status}) before listening:\n{}",
                s.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "smp-server did not listen on {shared_port}:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

fn acme_ini(
    pebble: &Pebble,
    http_port: u16,
    shared_port: u16,
    challenge: &str,
    www: &Path,
    cfg: &Path,
) -> String {
    format!(
        "[WEB]\nstatic_path = {}\nhttp = {http_port}\nhttps = {shared_port}\ncert = {}\nkey = {}\n[ACME]\nenable = on\ndomains = {DOMAIN}\ndirectory = https://localhost:{}/dir\nchallenge = {challenge}\nca_root = {}\ncheck_interval = 3600\n",
        www.display(),
        cfg.join("web.crt").display(),
        cfg.join("web.key").display(),
        pebble.port,
        pebble.ca.display()
    )
}

/// Handshake with SNI as a browser does, verifying against `root`; returns the leaf.
async fn web_leaf(port: u16, root: &CertificateDer<'static>) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::try_from(DOMAIN).map_err(|e| e.to_string())?,
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let leaf = conn
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or("no certificate")?;
    Ok(leaf)
}

async fn wait_web_leaf(s: &Server, root: &CertificateDer<'static>, not: Option<&[u8]>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match web_leaf(s.shared_port, root).await {
            Ok(leaf) if Some(leaf.as_slice()) != not => return leaf,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no pebble-issued certificate on the shared port ({other:?}).\nserver log:\n{}",
                    s.log()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

async fn smp_client(s: &Server, port: u16) -> SmpClient {
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    SmpClient::connect(addr, s.fp.0, ClientOptions::default())
        .await
        .unwrap_or_else(|e| panic!("SMP handshake on port {port}: {e}\n{}", s.log()))
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

async fn acme_round(challenge: &str) {
    if !have(&["pebble", "pebble-challtestsrv", "openssl", "curl"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, shared_port) = (free_port(), free_port());
    let pebble = Pebble::start(dir.path(), http_port, shared_port);
    let www = dir.path().join("www");
    let s = start_server(dir, shared_port, |cfg| {
        acme_ini(&pebble, http_port, shared_port, challenge, &www, cfg)
    });
    let root = pebble.root();

    // A browser (SNI) gets the pebble-issued chain, verified against pebble's root.
    let leaf = wait_web_leaf(&s, &root, None).await;
    assert!(s.cfg.join("web.crt").exists() && s.cfg.join("web.key").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["web.key", "acme-account.json"] {
            let mode = std::fs::metadata(s.cfg.join(f))
                .expect(f)
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f} must be private");
        }
    }
    // An SMP client on the same port gets the SMP chain and completes the SMP handshake.
    let smp = smp_client(&s, shared_port).await;
    let q = create_queue(&smp).await;
    assert!(!q.rid().is_empty());

    // The page over HTTPS with the INFORMATION fields, and gzip when asked.
    let resolve = format!("{DOMAIN}:{shared_port}:127.0.0.1");
    let root_pem = s.dir.path().join("pebble-root.pem");
    let b64 = base64_pem(&root);
    std::fs::write(&root_pem, b64).expect("root pem");
    let url = format!("https://{DOMAIN}:{shared_port}/");
    let root_arg = root_pem.to_string_lossy().into_owned();
    let (head, body) = curl(&["--resolve", &resolve, "--cacert", &root_arg, &url]);
    assert!(head.starts_with("http/"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        body.contains("Test Operator Ltd") && body.contains("https://example.com/our-source"),
        "{body}"
    );
    let (head, _) = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &root_arg,
        "-H",
        "Accept-Encoding: gzip",
        &url,
    ]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    // Plain HTTP now redirects to HTTPS.
    let (head, _) = curl(&[
        "-H",
        &format!("Host: {DOMAIN}"),
        &format!("http://127.0.0.1:{http_port}/contact"),
    ]);
    assert!(head.contains(" 301"), "{head}");
    assert!(
        head.contains(&format!("location: https://{DOMAIN}:{shared_port}/contact")),
        "{head}"
    );

    // Forced renewal (SIGUSR1): a new certificate with no restart and no dropped SMP session.
    let pid = s.proc.0.id().to_string();
    run(Command::new("kill").args(["-USR1", &pid]));
    let renewed = wait_web_leaf(&s, &root, Some(&leaf)).await;
    assert_ne!(renewed, leaf);
    let q2 = create_queue(&smp).await;
    assert_ne!(
        q2.rid(),
        q.rid(),
        "the SMP connection opened before the renewal still works"
    );
    let log = s.log();
    assert!(log.contains("new certificate in use"), "{log}");
    assert_eq!(
        log.matches("ACME: certificate for smp.test issued").count(),
        2,
        "{log}"
    );
}

fn base64_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_shared_port_and_hot_renewal() {
    acme_round("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_on_the_shared_port() {
    acme_round("tls-alpn-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_web_certificate_warns_and_smp_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, shared_port) = (free_port(), free_port());
    let s = start_server(dir, shared_port, |cfg| {
        std::fs::write(cfg.join("bad.crt"), "not a certificate").expect("write");
        format!(
            "[WEB]\nhttp = {http_port}\nhttps = {shared_port}\ncert = {}\nkey = {}\n",
            cfg.join("bad.crt").display(),
            cfg.join("missing.key").display()
        )
    });
    let smp = smp_client(&s, shared_port).await;
    create_queue(&smp).await;
    let smp2 = smp_client(&s, s.smp_port).await;
    create_queue(&smp2).await;
    let log = s.log();
    assert!(log.contains("cannot be used"), "{log}");
    assert!(
        log.contains("[ACME] enable = on"),
        "the warning says what to do: {log}"
    );
}

#[test]
fn init_with_fqdn_enables_acme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("etc");
    run(bin()
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", dir.path().join("var"))
        .args(["init", "-y", "--fqdn", "smp.example.com", "--no-password"]));
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    let acme = &ini[ini.find("[ACME]").expect("an [ACME] section")..];
    assert!(acme.contains("\nenable = on\n"), "{acme}");
    assert!(acme.contains("\ndomains = smp.example.com\n"), "{acme}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_over_http_renders_in_chromium() {
    if !have(&["chromium", "curl"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, shared_port) = (free_port(), free_port());
    let www = dir.path().join("www");
    let s = start_server(dir, shared_port, |_| {
        format!(
            "[WEB]\nstatic_path = {}\nhttp = {http_port}\n",
            www.display()
        )
    });
    let url = format!("http://127.0.0.1:{http_port}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (head, body) = curl(&[&url]);
        if head.contains(" 200") {
            assert!(head.contains("content-type: text/html"), "{head}");
            break body;
        }
        assert!(Instant::now() < deadline, "no page: {head}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    for field in [
        "Test Operator Ltd",
        "https://operator.example",
        "Example Hosting",
        "NL",
        "21 days",
        "Anyone may create queues",
    ] {
        assert!(body.contains(field), "page lacks {field}: {body}");
    }
    assert!(body.contains(&format!("smp://{}@{DOMAIN}", s.fp.to_base64url())));
    // Link pages, .well-known files with JSON types, no traversal.
    let (head, body) = curl(&[&format!("http://127.0.0.1:{http_port}/contact")]);
    assert!(head.contains(" 200") && body.contains("link.js"), "{head}");
    let (head, body) = curl(&[&format!(
        "http://127.0.0.1:{http_port}/.well-known/apple-app-site-association"
    )]);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(body.contains("chat.simplex.app"));
    let (head, _) = curl(&[
        "--path-as-is",
        &format!("http://127.0.0.1:{http_port}/../etc/smp-server.ini"),
    ]);
    assert!(head.contains(" 404"), "{head}");
    let (head, _) = curl(&[&format!(
        "http://127.0.0.1:{http_port}/%2e%2e/etc/smp-server.ini"
    )]);
    assert!(head.contains(" 404"), "{head}");

    // Headless Chromium renders it.
    let shot = s.dir.path().join("page.png");
    let profile = s.dir.path().join("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1000,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {out:?}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), (1000, 800));
    // A blank 1000x800 page compresses to a few KB; text, tables and colours do not.
    assert!(
        png.len() > 20_000,
        "screenshot looks blank ({} bytes)",
        png.len()
    );
    if let Some(keep) = std::env::var_os("SMP_TEST_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
}
