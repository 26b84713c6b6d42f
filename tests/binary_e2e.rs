//! The real binary end to end: `init` as the operators' guide prints it, `start`, an SMP client
//! over TLS creating a queue and exchanging a message, then SIGINT.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::response::BrokerMsg;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

#[tokio::test]
async fn init_start_and_serve_with_the_real_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("etc");
    let log = dir.path().join("var");
    let env = |c: &mut Command| {
        c.env("SMP_SERVER_CFG_PATH", &cfg)
            .env("SMP_SERVER_LOG_PATH", &log);
    };
    let mut init = bin();
    env(&mut init);
    let out = init
        .args([
            "init",
            "-y",
            "-l",
            "--ip",
            "127.0.0.1",
            "--password",
            "test",
        ])
        .output()
        .expect("run init");
    assert!(out.status.success(), "init failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint file");
    let fp = Fingerprint::from_base64url(fp_text.trim()).expect("fingerprint");
    assert!(
        stdout.contains(&format!("smp://{}:test@", fp.to_base64url())),
        "init prints the server address: {stdout}"
    );
    // listen on a free loopback port
    let port = free_port();
    let ini_path = cfg.join("smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    let ini: String = ini
        .lines()
        .map(|l| {
            if l.starts_with("port") {
                format!("port: {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ini_path, ini).expect("write ini");

    let mut start = bin();
    env(&mut start);
    let child = start
        .arg("start")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut server = Running(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client = connect_when_up(addr, fp.0, Duration::from_secs(30)).await;
    assert_eq!(client.version(), 20);
    // queue creation needs the password
    let k = key_for(18);
    let dh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
    let (_, e) = client
        .request(
            b"",
            new_req(
                &k,
                &dh,
                smp_server::protocol::command::SubscriptionMode::Subscribe,
                None,
            ),
            Some(&k),
        )
        .await
        .expect("NEW");
    assert_eq!(
        e,
        BrokerMsg::Err(smp_server::protocol::errors::ErrorType::Auth)
    );
    let smp_server::protocol::command::Command::New(mut req) = new_req(
        &k,
        &dh,
        smp_server::protocol::command::SubscriptionMode::Subscribe,
        None,
    ) else {
        unreachable!()
    };
    req.auth = Some(b"test".to_vec());
    let (_, ids) = client
        .request(
            b"",
            smp_server::protocol::command::Command::New(req),
            Some(&k),
        )
        .await
        .expect("NEW");
    let BrokerMsg::Ids(ids) = ids else {
        panic!("expected IDS, got {ids:?}")
    };
    let r = Recipient { key: k, dh, ids };
    let sender = SmpClient::connect(addr, fp.0, ClientOptions::default())
        .await
        .expect("sender");
    let (_, ok) = sender
        .request(r.sid(), send_cmd(b"hello binary"), None)
        .await
        .expect("send");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&client).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"hello binary"[..])
    );

    // SIGINT stops it promptly and cleanly
    let pid = nix_pid(&server.0);
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let stopped = Instant::now();
    loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            assert!(status.success(), "clean exit on SIGINT: {status:?}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "server did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nix_pid(c: &Child) -> String {
    c.id().to_string()
}
