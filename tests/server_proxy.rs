//! Private message routing through this server as the proxy: PRXY connects to another server
//! (the relay) and returns its signed session key (PKEY); PFWD carries an end-to-end encrypted
//! SEND through the proxy to the relay (PRES), which delivers it to the recipient.

mod common;

use common::*;
use smp_server::crypto::keys::DhKeyPair;
use smp_server::protocol::command::{Command, SmpServerRef};
use smp_server::protocol::errors::{ErrorType, ProxyError};
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

fn relay_ref(s: &TestServer) -> SmpServerRef {
    SmpServerRef {
        hosts: vec![b"127.0.0.1".to_vec()],
        port: s.addr.port().to_string().into_bytes(),
        key_hash: s.fingerprint.to_vec(),
    }
}

#[tokio::test]
async fn send_through_proxy_to_relay() {
    let relay = start_server(Settings::default()).await;
    let proxy = start_server(Settings::default()).await;
    // the recipient's queue is on the relay
    let rc = relay.client().await;
    let r = create_queue(&rc).await;
    // the sender talks only to the proxy
    let sc = proxy.client().await;
    let (sid, relay_key) = proxy_session(&sc, relay_ref(&relay)).await;

    let skey = dh_auth_key();
    for (cmd, key, expect) in [
        (Command::Skey(skey.public()), Some(&skey), BrokerMsg::Ok),
        (send_cmd(b"private routing"), Some(&skey), BrokerMsg::Ok),
        (send_cmd(b"unsigned"), None, BrokerMsg::Err(ErrorType::Auth)),
    ] {
        // end-to-end: a fresh key per transmission, agreed with the relay's session key
        let m = proxied_request(&sc, &sid, &relay_key, r.sid(), &cmd, key).await;
        assert_eq!(m, expect);
    }
    let (_, m) = event(&rc).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"private routing"[..])
    );
}

#[tokio::test]
async fn proxy_errors() {
    let proxy = start_server(Settings {
        create_password: Some(b"pwd".to_vec()),
        ..Settings::default()
    })
    .await;
    let relay = start_server(Settings::default()).await;
    let c = proxy.client().await;
    // the server password also guards proxying, as in the reference
    let (_, e) = c
        .request(b"", Command::Prxy(relay_ref(&relay), None), None)
        .await
        .expect("PRXY");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Proxy(ProxyError::BasicAuth)));
    // wrong identity of the relay
    let mut bad = relay_ref(&relay);
    bad.key_hash = vec![0; 32];
    let (_, e) = c
        .request(b"", Command::Prxy(bad, Some(b"pwd".to_vec())), None)
        .await
        .expect("PRXY");
    assert!(
        matches!(e, BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(_)))),
        "{e:?}"
    );
    // nothing listening
    let mut closed = relay_ref(&relay);
    closed.port = b"1".to_vec();
    let (_, e) = c
        .request(b"", Command::Prxy(closed, Some(b"pwd".to_vec())), None)
        .await
        .expect("PRXY");
    assert!(
        matches!(e, BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(_)))),
        "{e:?}"
    );
    // PFWD without a session
    let k = DhKeyPair::generate().expect("dh");
    let corr = smp_server::client::new_corr_id();
    let t = c
        .transmission(
            &corr,
            b"nosuchsession",
            &Command::Pfwd(17, k.public(), vec![1; 100]),
            None,
        )
        .expect("t");
    let (_, e) = c.send_batch(vec![(corr, t)]).await.expect("PFWD").remove(0);
    assert_eq!(e, BrokerMsg::Err(ErrorType::Proxy(ProxyError::NoSession)));
}

fn relay_at(s: &TestServer, host: &str) -> SmpServerRef {
    SmpServerRef {
        hosts: vec![host.as_bytes().to_vec()],
        ..relay_ref(s)
    }
}

fn accepted(s: &TestServer) -> i64 {
    s.server
        .state
        .stats
        .socket_stats(s.addr.port())
        .accepted
        .get()
}

/// 300 spellings of one relay (case, trailing dot, IPv4-mapped IPv6) use one connection per
/// host, counted on the relay's side.
#[tokio::test]
async fn spellings_of_one_relay_share_one_connection() {
    let relay = start_server(Settings::default()).await;
    let proxy = start_server(Settings::default()).await;
    let sc = proxy.client().await;
    let before = accepted(&relay);
    let mut spellings: Vec<String> = (0..296u32)
        .map(|i| {
            let name: String = "localhost"
                .chars()
                .enumerate()
                .map(|(b, c)| {
                    if i >> b & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            if i & 0x100 != 0 || i % 3 == 0 {
                format!("{name}.")
            } else {
                name
            }
        })
        .collect();
    spellings.extend(
        [
            "127.0.0.1",
            "[::ffff:127.0.0.1]",
            "::FFFF:7F00:1",
            "127.0.0.1.",
        ]
        .map(String::from),
    );
    assert_eq!(spellings.len(), 300);
    let mut sessions = std::collections::HashSet::new();
    for h in &spellings {
        let (sid, _) = proxy_session(&sc, relay_at(&relay, h)).await;
        sessions.insert(sid);
    }
    let (open, slots) = proxy.server.state.proxy.relay_counts();
    let made = accepted(&relay) - before;
    println!(
        "300 spellings: {made} connection(s) at the relay, {open} open at the proxy, {} session(s)",
        sessions.len()
    );
    // "localhost" and "127.0.0.1" are two names: at most two connections.
    assert!(made <= 2, "{made} connections for one relay");
    assert_eq!((open, slots), (made as usize, made as usize));
    assert_eq!(sessions.len(), made as usize);
}

/// Without `[PROXY] allow_private_destinations`, loopback and private relays are refused with
/// the reference's "no usable host" error, and no connection is made.
#[tokio::test]
async fn private_destinations_refused_by_default() {
    let relay = start_server(Settings::default()).await;
    let proxy = start_server_with_route(
        Settings::default(),
        smp_server::server::proxy::Route::default(),
    )
    .await;
    let sc = proxy.client().await;
    let before = accepted(&relay);
    for host in [
        "127.0.0.1",
        "localhost",
        "LOCALHOST.",
        "[::ffff:127.0.0.1]",
        "10.0.0.1",
        "169.254.169.254",
    ] {
        let r = try_proxy_session(&sc, relay_at(&relay, host)).await;
        assert_eq!(
            r.err(),
            Some(BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(
                smp_server::protocol::errors::BrokerError::Host
            )))),
            "{host}"
        );
    }
    assert_eq!(
        accepted(&relay),
        before,
        "a refused relay is never connected to"
    );
    assert_eq!(proxy.server.state.proxy.relay_counts(), (0, 0));
}

/// Relay connections are capped, and closed when idle; a session that was closed answers
/// NO_SESSION, as the reference does for an unknown session.
#[tokio::test]
async fn relay_connections_are_capped_and_closed_when_idle() {
    let relays = [
        start_server(Settings::default()).await,
        start_server(Settings::default()).await,
        start_server(Settings::default()).await,
    ];
    let mut route = loopback_route();
    route.limits.max_relays = 2;
    route.limits.relay_idle = std::time::Duration::from_secs(2);
    let proxy = start_server_with_route(Settings::default(), route).await;
    let sc = proxy.client().await;
    let (sid, _) = proxy_session(&sc, relay_ref(&relays[0])).await;
    proxy_session(&sc, relay_ref(&relays[1])).await;
    let third = try_proxy_session(&sc, relay_ref(&relays[2])).await;
    assert_eq!(
        third.err(),
        Some(BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(
            smp_server::protocol::errors::BrokerError::Network
        )))),
        "over max_relay_connections"
    );
    assert_eq!(proxy.server.state.proxy.relay_counts(), (2, 2));
    let mut waited = 0;
    while proxy.server.state.proxy.relay_counts() != (0, 0) {
        assert!(waited < 100, "idle relay connections were not closed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let rc = relays[0].client().await;
    let r = create_queue(&rc).await;
    let gone = proxied_request(
        &sc,
        &sid,
        &DhKeyPair::generate().expect("dh").public(),
        r.sid(),
        &send_cmd(b"x"),
        None,
    )
    .await;
    assert_eq!(
        gone,
        BrokerMsg::Err(ErrorType::Proxy(ProxyError::NoSession))
    );
    proxy_session(&sc, relay_ref(&relays[2])).await;
}
