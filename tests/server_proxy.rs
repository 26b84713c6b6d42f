//! Private message routing through this server as the proxy: PRXY connects to another server
//! (the relay) and returns its signed session key (PKEY); PFWD carries an end-to-end encrypted
//! SEND through the proxy to the relay (PRES), which delivers it to the recipient.

mod common;

use common::*;
use smp_server::crypto::cbox;
use smp_server::crypto::keys::DhKeyPair;
use smp_server::crypto::x509;
use smp_server::protocol::command::{Command, SmpServerRef};
use smp_server::protocol::errors::{ErrorType, ProxyError};
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::{
    batch, decode_client, encode_client, split_batch, with_auth, THParams,
};
use smp_server::protocol::version::{PADDED_PROXIED_T_LENGTH, SMP_BLOCK_SIZE};
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
    let (_, pkey) = sc
        .request(b"", Command::Prxy(relay_ref(&relay), None), None)
        .await
        .expect("PRXY");
    let BrokerMsg::Pkey(sid, vr, auth) = pkey else {
        panic!("expected PKEY, got {pkey:?}")
    };
    assert_eq!((vr.min, vr.max), (8, 17), "proxied range is capped at 17");
    // the client verifies the relay's key against the identity it expects
    assert_eq!(auth.chain.len(), 2);
    assert_eq!(cbox_fingerprint(&auth.chain[1]), relay.fingerprint);
    let leaf = x509::cert_public_key(&auth.chain[0]).expect("leaf key");
    let relay_key = x509::verify_signed_pubkey(&leaf, &auth.signed_key).expect("signed key");

    let skey = dh_auth_key();
    for (cmd, key, expect) in [
        (Command::Skey(skey.public()), Some(&skey), BrokerMsg::Ok),
        (send_cmd(b"private routing"), Some(&skey), BrokerMsg::Ok),
        (send_cmd(b"unsigned"), None, BrokerMsg::Err(ErrorType::Auth)),
    ] {
        // end-to-end: a fresh key per transmission, agreed with the relay's session key
        let fwd_key = DhKeyPair::generate().expect("dh");
        let secret = fwd_key.dh(&relay_key).expect("dh");
        let corr = smp_server::client::new_corr_id();
        let params = THParams {
            session_id: sid.clone(),
            version: 17,
        };
        let ct = encode_client(&params, &corr, r.sid(), &cmd);
        let a = key.map(|k| match k {
            smp_server::client::AuthKey::Dh(d) => {
                cbox::cb_authenticate(&relay_key, d, &cbox::cb_nonce(&corr), &ct.for_auth)
                    .expect("auth")
            }
            smp_server::client::AuthKey::Sign(s) => s.sign(&ct.for_auth),
        });
        let t = with_auth(&params, a.as_deref(), &ct.to_send);
        let content = batch(&[t], SMP_BLOCK_SIZE).remove(0).expect("fits");
        let enc = cbox::cb_encrypt(
            &secret,
            &cbox::cb_nonce(&corr),
            &content,
            PADDED_PROXIED_T_LENGTH,
        )
        .expect("enc");
        let pfwd = Command::Pfwd(17, fwd_key.public(), enc);
        let t = sc.transmission(&corr, &sid, &pfwd, None).expect("t");
        let mut resp = sc.send_batch(vec![(corr.clone(), t)]).await.expect("PFWD");
        let (ent, pres) = resp.remove(0);
        assert_eq!(ent, sid);
        let BrokerMsg::Pres(body) = pres else {
            panic!("expected PRES, got {pres:?}")
        };
        let plain = cbox::cb_decrypt(&secret, &cbox::reverse_nonce(&cbox::cb_nonce(&corr)), &body)
            .expect("decrypt PRES");
        let ts = split_batch(&plain).expect("batch");
        let (_, _, m) = decode_client(&params, ts[0]).expect("decode");
        assert_eq!(m, expect);
    }
    let (_, m) = event(&rc).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"private routing"[..])
    );
}

fn cbox_fingerprint(cert: &[u8]) -> [u8; 32] {
    smp_server::crypto::identity::Fingerprint::of_cert(cert).0
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
