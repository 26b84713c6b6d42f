//! Embedded Tor against a private Tor network on loopback built from Debian's `tor`
//! (`.ci/setup-tor.sh`). Slow (about a minute or two), so it runs only with
//! `SMP_TEST_TOR_NETWORK=1`; CI sets it.
//!
//! (a) a C-tor client reaches the real binary's onion address through its SOCKS port and
//!     runs an SMP handshake, queue creation, send and receive;
//! (b) our Arti connector reaches a C-tor onion service (a TCP echo);
//! (c) with `onion_only = on` the binary opens no public port;
//! (d) a second binary as the proxy of private routing reaches the onion-only relay through
//!     its embedded Tor (PRXY/PFWD) and the message is delivered;
//! (e) that binary's web page is served over plain HTTP through its onion service.

mod common;
mod ops_support;
mod tor_net;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ops_support::Control;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::{Command as SmpCommand, SmpServerRef};
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::connector::{ArtiConnector, Connector, SocksConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tor_net::{free_port, retry, TorNetwork};

/// The switch that enables this suite.
const SWITCH: &str = "SMP_TEST_TOR_NETWORK";

async fn echo_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// `init --tor` a real binary in `dir` and rewrite its INI: SMP on `port`, our Arti on the
/// private network, `onion_only` as given, the web page on plain HTTP `web_http`.
fn init_tor_binary(
    dir: &std::path::Path,
    port: u16,
    arti_toml: &std::path::Path,
    onion_only: bool,
    web_http: Option<u16>,
    extra_init: &[&str],
) {
    let out = binary(dir)
        .args(["init", "-y", "--tor", "--no-password", "--disable-web"])
        .args(extra_init)
        .output()
        .expect("init");
    assert!(out.status.success(), "init: {out:?}");
    let ini_path = dir.join("etc/smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    assert!(ini.contains("[TOR]\n"), "init --tor writes [TOR]");
    let ini: String = ini
        .lines()
        .map(|l| {
            if l.starts_with("port =") {
                format!("port = {port}")
            } else if l.starts_with("# onion_only") && onion_only {
                "onion_only = on".into()
            } else if l.starts_with("# http =") && web_http.is_some() {
                format!("http = {}", web_http.unwrap_or_default())
            } else if l.starts_with("# arti_config") {
                format!("arti_config = {}", arti_toml.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        ini.contains("enable = on\n\n# Virtual"),
        "init --tor enables Tor"
    );
    std::fs::write(&ini_path, ini).expect("write ini");
}

/// The real binary with its config in `dir/etc` and logs in `dir/var`.
fn binary(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
    c.env("SMP_SERVER_CFG_PATH", dir.join("etc"))
        .env("SMP_SERVER_LOG_PATH", dir.join("var"));
    c
}

fn fingerprint_of(dir: &std::path::Path) -> Fingerprint {
    let fp_text = std::fs::read_to_string(dir.join("etc/fingerprint")).expect("fingerprint");
    Fingerprint::from_base64url(fp_text.trim()).expect("fingerprint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onion_service_and_onion_egress_on_a_private_tor_network() {
    if !common::require::switch("tor_network", SWITCH)
        || !common::require::tools("tor_network", &["tor", "tor-gencert"])
    {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = TorNetwork::start(&dir.path().join("net")).await;
    let arti_toml = dir.path().join("arti.toml");
    std::fs::write(&arti_toml, net.arti_toml()).expect("arti.toml");

    // A C-tor client that also publishes an onion service in front of a TCP echo.
    let echo = echo_server().await;
    let (socks, hs_dir) = net.start_client("client", Some((7000, echo)));

    // The real binary: init --tor, onion_only, our Arti configured for the private network.
    let relay_dir = dir.path().join("relay");
    let port = free_port();
    let control_port = free_port();
    init_tor_binary(
        &relay_dir,
        port,
        &arti_toml,
        true,
        None,
        &["--control-port", &control_port.to_string()],
    );
    let fp = fingerprint_of(&relay_dir);
    let log = relay_dir.join("var");
    let child = binary(&relay_dir)
        .args(["start", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    // A second binary with public port as the proxy of private routing; Tor for egress.
    let proxy_dir = dir.path().join("proxy");
    let proxy_port = free_port();
    let proxy_web = free_port();
    init_tor_binary(
        &proxy_dir,
        proxy_port,
        &arti_toml,
        false,
        Some(proxy_web),
        &[],
    );
    let proxy_fp = fingerprint_of(&proxy_dir);
    let _proxy = Running(
        binary(&proxy_dir)
            .args(["start", "--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start proxy"),
    );
    let mut server = Running(child);
    let t_launch = Instant::now();
    let onion = wait_for_file(&log.join("onion-address"), Duration::from_secs(60)).await;
    assert!(onion.ends_with(".onion") && onion.len() == 62, "{onion}");

    // (c) no public port.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "onion_only = on must open no public port"
    );

    // (a) C-tor client -> our onion service -> SMP.
    let via_socks = SocksConnector {
        proxy: ([127, 0, 0, 1], socks).into(),
        credentials: None,
        timeout: Duration::from_secs(60),
    };
    let opts = || ClientOptions {
        timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    };
    let onion2 = onion.clone();
    let a = async {
        let connect = || async {
            let s = via_socks.connect(&onion2, port).await?;
            SmpClient::connect_stream(s, fp.0, opts())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        let recipient_client = retry(
            "C-tor client to our onion",
            Duration::from_secs(150),
            connect,
        )
        .await;
        eprintln!(
            "(a) first SMP session over onion {:?} after launch",
            t_launch.elapsed()
        );
        let r = create_queue(&recipient_client).await;
        let sender = retry("second onion session", Duration::from_secs(60), connect).await;
        let (_, ok) = sender
            .request(r.sid(), send_cmd(b"hello onion"), None)
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m) = event(&recipient_client).await;
        let got = decrypt_msg(&r, &m);
        assert_eq!(got.body.as_deref(), Some(&b"hello onion"[..]));
        // Tor's state on the control port (`stats-rts`).
        let ini = std::fs::read_to_string(relay_dir.join("etc/smp-server.ini")).expect("ini");
        let admin = ini
            .lines()
            .find_map(|l| l.strip_prefix("control_port_admin_password = "))
            .expect("init --control-port writes an admin password")
            .to_string();
        let mut control = Control::connect(([127, 0, 0, 1], control_port).into()).await;
        let auth = control.cmd(&format!("auth {admin}")).await;
        assert_eq!(auth, vec!["Current role is CPRAdmin"], "{auth:?}");
        let rts = control.cmd("stats-rts").await;
        let tor = rts
            .iter()
            .find_map(|l| l.strip_prefix("tor: "))
            .unwrap_or_else(|| panic!("stats-rts shows Tor: {rts:?}"));
        assert!(
            tor.starts_with("bootstrap ") && tor.contains("; onion service "),
            "{tor}"
        );
        eprintln!("(a) control port: tor: {tor}");
        let (_, ok) = recipient_client
            .request(r.rid(), SmpCommand::Ack(got.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(ok, BrokerMsg::Ok);
        eprintln!(
            "(a) SMP send/receive over onion done {:?} after launch",
            t_launch.elapsed()
        );

        // (d) private routing: a client of the public proxy sends to the onion-only relay;
        // the proxy reaches the relay's .onion through its embedded Tor.
        let pc = retry("client to the proxy", Duration::from_secs(30), || async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await?;
            SmpClient::connect_stream(Box::new(tcp), proxy_fp.0, opts())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await;
        let relay_ref = SmpServerRef {
            hosts: vec![onion2.clone().into_bytes()],
            port: port.to_string().into_bytes(),
            key_hash: fp.0.to_vec(),
        };
        let t_d = Instant::now();
        let (sid, relay_key) = retry(
            "PRXY to the onion relay",
            Duration::from_secs(200),
            || async {
                try_proxy_session(&pc, relay_ref.clone())
                    .await
                    .map_err(|other| std::io::Error::other(format!("{other:?}")))
            },
        )
        .await;
        let m = proxied_request(
            &pc,
            &sid,
            &relay_key,
            r.sid(),
            &send_cmd(b"routed to an onion"),
            None,
        )
        .await;
        assert_eq!(m, BrokerMsg::Ok, "proxied SEND");
        let (_, m) = event(&recipient_client).await;
        assert_eq!(
            decrypt_msg(&r, &m).body.as_deref(),
            Some(&b"routed to an onion"[..])
        );
        eprintln!(
            "(d) private routing to the onion relay in {:?}",
            t_d.elapsed()
        );

        // (e) the proxy's web page over plain HTTP through its onion service, showing the
        // onion address and not redirecting to HTTPS.
        let proxy_onion = wait_for_file(
            &proxy_dir.join("var/onion-address"),
            Duration::from_secs(60),
        )
        .await;
        let t_e = Instant::now();
        let page = retry("web page over onion", Duration::from_secs(150), || async {
            let mut s = via_socks.connect(&proxy_onion, proxy_web).await?;
            let req = format!("GET / HTTP/1.1\r\nHost: {proxy_onion}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await?;
            s.flush().await?;
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
                .await
                .map_err(|_| std::io::Error::other("no page in 30 s"))??;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
        })
        .await;
        assert!(
            page.starts_with("HTTP/1.1 200"),
            "{}",
            &page[..page.len().min(300)]
        );
        assert!(
            page.contains(&proxy_onion),
            "the page shows the onion address"
        );
        assert!(!page
            .to_ascii_lowercase()
            .contains("strict-transport-security"));
        eprintln!("(e) web page over onion in {:?}", t_e.elapsed());
    };

    // (b) our Arti -> C-tor onion service.
    let b = async {
        let hs_onion = wait_for_file(&hs_dir.join("hostname"), Duration::from_secs(60)).await;
        let mut settings = smp_onion::TorSettings::new(dir.path().join("arti-client"));
        settings.arti_config = Some(arti_toml.clone());
        let tor = Arc::new(smp_onion::Tor::start(settings).await.expect("Arti"));
        let conn = ArtiConnector {
            tor,
            timeout: Duration::from_secs(60),
        };
        let t_b = Instant::now();
        let mut s = retry(
            "our Arti to a C-tor onion",
            Duration::from_secs(150),
            || async {
                let mut s = conn.connect(&hs_onion, 7000).await?;
                // Tor streams send only on flush.
                s.write_all(b"ping over tor").await?;
                s.flush().await?;
                let mut buf = [0u8; 13];
                tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut buf))
                    .await
                    .map_err(|_| std::io::Error::other("no echo in 30 s"))??;
                Ok::<_, std::io::Error>((s, buf))
            },
        )
        .await;
        assert_eq!(&s.1, b"ping over tor");
        s.0.shutdown().await.ok();
        eprintln!("(b) done in {:?}", t_b.elapsed());
    };
    tokio::time::timeout(Duration::from_secs(400), async { tokio::join!(a, b) })
        .await
        .expect("(a) and (b) finish within 400 s");

    // Clean stop on SIGTERM.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(st) = server.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no clean stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");
    let mut stdout = String::new();
    use std::io::Read;
    if let Some(mut o) = server.0.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    assert!(
        stdout.contains(&onion),
        "start prints the onion address: {stdout}"
    );
    assert!(stdout.contains("no public port"), "{stdout}");
    eprintln!("private Tor network suite: {:?} in total", t0.elapsed());
}
