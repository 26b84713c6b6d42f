//! Version negotiation as the reference 7.0 does it: the server offers 6..20 (6..6 without
//! ALPN), the client picks; a proxy offers relays' sessions at 8..20. Each version then speaks
//! its own encodings (checked byte by byte in `protocol_vectors.rs`; here end to end).

mod common;

use common::*;
use smp_server::protocol::command::{Command, SmpServerRef};
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::version::VersionRange;
use smp_server::server::Settings;

/// A queue's whole life at version `v`: create, secure, send, receive, acknowledge.
async fn messaging_at(srv: &TestServer, v: u16) {
    let c = srv.client_at(v).await;
    let r = create_queue(&c).await;
    let sk = key_for(v);
    if v >= 9 {
        let (_, m) = c
            .request(r.sid(), Command::Skey(sk.public()), Some(&sk))
            .await
            .expect("SKEY");
        assert_eq!(m, BrokerMsg::Ok, "v{v}");
    }
    let auth = (v >= 9).then_some(&sk);
    let (_, m) = c
        .request(r.sid(), send_cmd(b"hello"), auth)
        .await
        .expect("SEND");
    assert_eq!(m, BrokerMsg::Ok, "v{v}");
    let (_, msg) = event(&c).await;
    assert_eq!(
        decrypt_msg(&r, &msg).body.as_deref(),
        Some(&b"hello"[..]),
        "v{v}"
    );
    // service commands from a client without a service certificate
    let (_, m) = c
        .request(r.rid(), Command::Subs(1, vec![0; 16]), Some(&r.key))
        .await
        .expect("SUBS");
    assert_eq!(m, BrokerMsg::Err(ErrorType::Service), "v{v}");
}

#[tokio::test]
async fn negotiates_v6_v18_v19_v20() {
    let srv = start_server(Settings::default()).await;
    // the newest client gets 20
    assert_eq!(srv.client().await.version(), 20);
    // without ALPN only the legacy range is offered
    let legacy = srv
        .client_v(VersionRange::new(6, 20).expect("r"), false)
        .await;
    assert_eq!(legacy.version(), 6);
    for v in [6, 18, 19, 20] {
        messaging_at(&srv, v).await;
    }
}

#[tokio::test]
async fn operator_cap_limits_the_range() {
    // a server told to stop at 18 (INI `[TRANSPORT] max_smp_version = 18`)
    let dir = tempfile::tempdir().expect("tempdir");
    smp_server::crypto::identity::create_identity(
        dir.path(),
        smp_server::crypto::keys::KeyAlgorithm::Ed25519,
        "localhost",
    )
    .expect("identity");
    let identity = smp_server::crypto::identity::load_identity(dir.path()).expect("identity");
    let fp = identity.fingerprint.0;
    let mut s = smp_server::server::Server::new(Settings::default(), identity).expect("server");
    s.set_versions(VersionRange::new(6, 18).expect("r"));
    let s = std::sync::Arc::new(s);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let sd = tokio_util::sync::CancellationToken::new();
    tokio::spawn(s.serve(vec![l], sd.clone()));
    let c = smp_server::client::SmpClient::connect(
        addr,
        fp,
        smp_server::client::ClientOptions {
            versions: VersionRange::SERVER,
            alpn: true,
            timeout: std::time::Duration::from_secs(10),
            proxy: false,
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    assert_eq!(c.version(), 18);
    sd.cancel();
}

/// A proxied session at v20: PKEY offers 8..20 and the client sends end to end at v20.
#[tokio::test]
async fn proxied_session_at_v20() {
    let relay = start_server(Settings::default()).await;
    let proxy = start_server(Settings::default()).await;
    let rc = relay.client().await;
    let r = create_queue(&rc).await;
    let sc = proxy.client().await;
    let (sid, relay_key) = proxy_session(
        &sc,
        SmpServerRef {
            hosts: vec![b"127.0.0.1".to_vec()],
            port: relay.addr.port().to_string().into_bytes(),
            key_hash: relay.fingerprint.to_vec(),
        },
    )
    .await;
    let skey = dh_auth_key();
    for (cmd, key) in [
        (Command::Skey(skey.public()), Some(&skey)),
        (send_cmd(b"v20 routing"), Some(&skey)),
    ] {
        let m = proxied_request_at(&sc, &sid, &relay_key, r.sid(), &cmd, key, 20).await;
        assert_eq!(m, BrokerMsg::Ok);
    }
    let (_, m) = event(&rc).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"v20 routing"[..])
    );
}
