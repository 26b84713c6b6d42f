//! packaging/docker-entrypoint.sh with the real binary outside a container (the image itself is
//! built and run in tests/dist_container_image.rs): the first start initialises from ADDR/PASS/TOR exactly once,
//! a missing ADDR is a clear error, later starts run the server, which answers SMP.

mod common;

use common::{connect_when_up, free_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::{Command as SmpCommand, QueueReqData, SubscriptionMode};
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

fn entrypoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/docker-entrypoint.sh")
}

/// A PATH directory whose `smp-server` runs the real binary, except that `start` only
/// records that it was reached (the first container start is checked up to there).
fn stub_start_path(dir: &Path) -> PathBuf {
    let bin = dir.join("stub-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = start ]; then echo 'start reached'; exit 0; fi\nexec {} \"$@\"\n",
        env!("CARGO_BIN_EXE_smp-server")
    );
    // Written here under another name and copied into place by `install`, so this process
    // never holds a write descriptor of the file that gets executed: a child forked by another
    // test thread meanwhile would inherit it and make the exec fail with ETXTBSY.
    let draft = dir.join("stub-smp-server.draft");
    std::fs::write(&draft, script).expect("write stub");
    let ok = std::process::Command::new("install")
        .arg("-m")
        .arg("755")
        .arg(&draft)
        .arg(bin.join("smp-server"))
        .status()
        .expect("run install");
    assert!(ok.success(), "install the stub");
    bin
}

fn run(path_dir: &Path, cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Output {
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.arg(entrypoint())
        .env("PATH", path)
        .env("SMP_SERVER_CFG_PATH", cfg)
        .env("SMP_SERVER_LOG_PATH", log)
        .env_remove("ADDR")
        .env_remove("PASS")
        .env_remove("TOR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run entrypoint")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn container_entrypoint_initialises_once_and_runs_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("etc");
    let log = dir.path().join("var");
    let stub = stub_start_path(dir.path());

    // No ADDR on the first start: a clear error, nothing created.
    let out = run(&stub, &cfg, &log, &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Set ADDR"), "{}", text(&out));
    assert!(!cfg.join("smp-server.ini").exists());

    // First start: init from the environment, then start.
    let out = run(
        &stub,
        &cfg,
        &log,
        &[("ADDR", "192.0.2.7"), ("PASS", "secret"), ("TOR", "1")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("start reached"), "{}", text(&out));
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    assert!(ini.contains("host = 192.0.2.7"), "{ini}");
    assert!(ini.contains("create_password = secret"), "{ini}");
    let tor = ini.split("[TOR]").nth(1).expect("[TOR]");
    assert!(tor.lines().any(|l| l.trim() == "enable = on"), "{tor}");
    let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");

    // A domain name turns on ACME, but only for a fresh volume: this one keeps its identity.
    let out = run(&stub, &cfg, &log, &[("ADDR", "smp.example.com")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint"),
        fp_text
    );
    assert_eq!(
        std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini"),
        ini
    );

    // Later starts run the real server (Tor off and a free port, to run here).
    let port = free_port();
    let ini: String = ini
        .lines()
        .map(|l| {
            if l.starts_with("port =") {
                format!("port = {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (head, tor) = ini.split_once("[TOR]").expect("[TOR]");
    let ini = format!(
        "{head}[TOR]{}",
        tor.replacen("\nenable = on", "\nenable = off", 1)
    );
    std::fs::write(cfg.join("smp-server.ini"), &ini).expect("ini");
    let real = Path::new(env!("CARGO_BIN_EXE_smp-server"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        real.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("sh")
        .arg(entrypoint())
        .env("PATH", path)
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("entrypoint");
    let fp = Fingerprint::from_base64url(fp_text.trim()).expect("fingerprint");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let client = connect_when_up(addr, fp.0, Duration::from_secs(30)).await;
    assert_eq!(client.version(), 20);
    // PASS was applied: creating a queue without the password is refused, with it allowed.
    let key = common::key_for(client.version());
    let dh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
    let mut req = common::new_req(
        &key,
        &dh,
        SubscriptionMode::Subscribe,
        Some(QueueReqData::Messaging(None)),
    );
    let (_, r) = client
        .request(b"", req.clone(), Some(&key))
        .await
        .expect("NEW");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Auth));
    if let SmpCommand::New(n) = &mut req {
        n.auth = Some(b"secret".to_vec());
    }
    let (_, r) = client.request(b"", req, Some(&key)).await.expect("NEW");
    assert!(matches!(r, BrokerMsg::Ids(_)), "{r:?}");
    drop(client);
    // `exec`: the entrypoint's process is the server, so the container's stop signal reaches it.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "clean exit on SIGINT: {status:?}");
}

/// The reference's other variables on a first start: a domain sets --own-domains to its base
/// domain; WEB_MANUAL leaves SMP on 5223 without the web server and without ACME; ACME_EMAIL
/// reaches [ACME]; Caddy's certificate mounted at /certificates is used and keeps our ACME off;
/// a name without a dot is refused.
#[test]
fn container_entrypoint_takes_every_variable_of_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stub = stub_start_path(dir.path());
    let first = |name: &str, env: &[(&str, &str)]| {
        let cfg = dir.path().join(name).join("etc");
        let log = dir.path().join(name).join("var");
        let out = run(&stub, &cfg, &log, env);
        (out, cfg)
    };
    let section = |ini: &str, name: &str| -> String {
        let s = ini.split(&format!("[{name}]")).nth(1).expect("section");
        s.split("\n[").next().unwrap_or_default().to_string()
    };

    let (out, cfg) = first(
        "manual",
        &[("ADDR", "smp1.example.org"), ("WEB_MANUAL", "1")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    assert!(ini.contains("\nport = 5223\n"), "{ini}");
    assert!(!ini.lines().any(|l| l.starts_with("https")), "{ini}");
    assert!(!ini.lines().any(|l| l.starts_with("cert =")), "{ini}");
    assert!(section(&ini, "ACME").contains("\nenable = off"), "{ini}");
    assert!(ini.contains("own_server_domains = example.org"), "{ini}");
    // --daily-stats and --source-code, as the reference's entrypoint; the source is this
    // project's repository as the build names it, and a build that names none publishes none
    assert!(ini.contains("log_stats = on"), "{ini}");
    let info = section(&ini, "INFORMATION");
    match smp_server::config::defaults::source_code() {
        Some(url) => assert!(info.contains(&format!("\nsource_code = {url}")), "{ini}"),
        None => assert!(!info.lines().any(|l| l.starts_with("source_code")), "{ini}"),
    }

    let (out, cfg) = first(
        "acme",
        &[
            ("ADDR", "smp2.example.org"),
            ("ACME_EMAIL", "ops@example.org"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    let acme = section(&ini, "ACME");
    assert!(acme.contains("\nenable = on"), "{acme}");
    assert!(acme.contains("\nemail = ops@example.org"), "{acme}");

    let certs = dir.path().join("certificates");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::write(certs.join("smp3.example.org.crt"), b"caddy's").expect("crt");
    let cfg = dir.path().join("caddy/etc");
    let mut c = Command::new("sh");
    c.arg(entrypoint())
        .env(
            "PATH",
            format!(
                "{}:{}",
                stub.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", dir.path().join("caddy/var"))
        .env("SMP_CERT_PATH", &certs)
        .env("ADDR", "smp3.example.org");
    let out = c.output().expect("entrypoint");
    assert!(out.status.success(), "{}", text(&out));
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    assert!(
        ini.contains(&format!("cert = {}/smp3.example.org.crt", certs.display())),
        "{ini}"
    );
    assert!(section(&ini, "ACME").contains("\nenable = off"), "{ini}");

    let (out, cfg) = first("bad", &[("ADDR", "localhost")]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is not a domain name"),
        "{}",
        text(&out)
    );
    assert!(!cfg.join("smp-server.ini").exists());
}
