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
