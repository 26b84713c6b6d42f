//! Service certificates (v16) and service subscriptions (v19), with the real server on
//! loopback over TLS (the reference's `testServiceDeliverSubscribe`, `testServiceNotifications`
//! and related behaviour): a client with a TLS certificate does the service handshake and gets
//! a service ID tied to its certificate; queues it creates or subscribes belong to the service;
//! one SUBS/NSUBS subscribes them all (count and IdsHash checked against our own MD5 here),
//! pending messages follow and then ALLS; another session of the service takes over with ENDS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use md5::{Digest, Md5};
use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::identity::{create_identity, load_identity, self_signed_certificate};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::command::{Command, MsgFlags, QueueReqData, SubscriptionMode};
use smp_server::protocol::errors::{CommandError, ErrorType, HandshakeError, TransportError};
use smp_server::protocol::handshake::ServiceRole;
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::version::VersionRange;
use smp_server::server::Settings;
use smp_server::transport::service::ServiceCredentials;
use smp_server::transport::smp::{client_handshake_service, SmpTransportError};

/// Credentials as the reference's agent makes them: one self-signed Ed25519 certificate.
fn agent_creds(role: ServiceRole) -> Arc<ServiceCredentials> {
    let leaf = PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key");
    let cert = self_signed_certificate(&leaf).expect("cert");
    with_chain(role, vec![cert], leaf)
}

/// Credentials as a notification server uses them: its own TLS chain `[online cert, CA]`.
fn server_style_creds(role: ServiceRole) -> Arc<ServiceCredentials> {
    let dir = tempfile::tempdir().expect("tmp");
    create_identity(dir.path(), KeyAlgorithm::Ed448, "ntf.example").expect("identity");
    let id = load_identity(dir.path()).expect("load");
    with_chain(role, id.chain, id.server_key)
}

fn with_chain(
    role: ServiceRole,
    chain: Vec<Vec<u8>>,
    leaf: PrivateSignKey,
) -> Arc<ServiceCredentials> {
    Arc::new(ServiceCredentials {
        role,
        chain,
        leaf_key: Arc::new(leaf),
        session_key: PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("session key"),
    })
}

/// A fresh session key for the same certificate (each connection signs a new one).
fn again(c: &ServiceCredentials) -> Arc<ServiceCredentials> {
    Arc::new(ServiceCredentials {
        role: c.role,
        chain: c.chain.clone(),
        leaf_key: c.leaf_key.clone(),
        session_key: PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("session key"),
    })
}

async fn service_client(
    srv: &TestServer,
    creds: &Arc<ServiceCredentials>,
    versions: VersionRange,
) -> SmpClient {
    SmpClient::connect(
        srv.addr,
        srv.fingerprint,
        ClientOptions {
            versions,
            timeout: Duration::from_secs(10),
            service: Some(again(creds)),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("service connect")
}

/// The service's session key, which signs SUBS/NSUBS.
fn service_key(c: &SmpClient, creds: &ServiceCredentials) -> (Vec<u8>, AuthKey) {
    let _ = creds;
    let sid = c.service_id.clone().expect("service session");
    (sid, AuthKey::Sign(c.service_session_key().expect("key")))
}

/// IdsHash computed here: XOR of MD5 of each queue ID.
fn ids_hash(ids: &[&[u8]]) -> Vec<u8> {
    let mut acc = [0u8; 16];
    for id in ids {
        let h = Md5::digest(id);
        for i in 0..16 {
            acc[i] ^= h[i];
        }
    }
    acc.to_vec()
}

async fn send(srv: &TestServer, r: &Recipient, body: &[u8], ntf: bool) {
    let s = srv.client().await;
    let (_, resp) = s
        .request(
            r.sid(),
            Command::Send(MsgFlags { notification: ntf }, body.to_vec()),
            None,
        )
        .await
        .expect("SEND");
    assert_eq!(resp, BrokerMsg::Ok);
}

#[tokio::test]
async fn service_handshake_gives_a_service_id_per_certificate_and_role() {
    let srv = start_server(Settings::default()).await;
    let creds = agent_creds(ServiceRole::Messaging);
    let a = service_client(&srv, &creds, VersionRange::SERVER).await;
    assert!(a.version() >= 19);
    let id = a.service_id.clone().expect("service ID");
    assert_eq!(id.len(), 24);
    let b = service_client(&srv, &creds, VersionRange::SERVER).await;
    assert_eq!(
        b.service_id,
        Some(id.clone()),
        "same certificate, same service"
    );
    let other = service_client(
        &srv,
        &agent_creds(ServiceRole::Messaging),
        VersionRange::SERVER,
    )
    .await;
    assert!(other.service_id.is_some());
    assert_ne!(other.service_id, Some(id.clone()));
    // The same certificate in another role is refused (the reference's `SERVICE`).
    let as_notifier = Arc::new(ServiceCredentials {
        role: ServiceRole::Notifier,
        chain: creds.chain.clone(),
        leaf_key: creds.leaf_key.clone(),
        session_key: PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("session key"),
    });
    let r = SmpClient::connect(
        srv.addr,
        srv.fingerprint,
        ClientOptions {
            timeout: Duration::from_secs(10),
            service: Some(as_notifier),
            ..ClientOptions::default()
        },
    )
    .await;
    assert!(r.is_err(), "one certificate, one role");
    let ntf = service_client(
        &srv,
        &server_style_creds(ServiceRole::Notifier),
        VersionRange::SERVER,
    )
    .await;
    assert!(
        ntf.service_id.is_some(),
        "[leaf, CA] chains with Ed448 keys work too"
    );
    // A messaging service below v19 does not declare itself (as the reference's client).
    let old = service_client(&srv, &creds, VersionRange::new(6, 18).expect("range")).await;
    assert_eq!(old.version(), 18);
    assert_eq!(old.service_id, None);
    // An ordinary client is not affected by the certificate request.
    let plain = srv.client().await;
    let r = create_queue(&plain).await;
    assert_eq!(r.ids.service_id, None);
}

#[tokio::test]
async fn service_hello_without_a_tls_certificate_is_bad_auth() {
    let srv = start_server(Settings::default()).await;
    let creds = agent_creds(ServiceRole::Notifier);
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.expect("tcp");
    let tls = smp_server::transport::connect(
        tcp,
        srv.fingerprint,
        "localhost",
        Some(smp_server::transport::SMP_ALPN),
        Duration::from_secs(10),
    )
    .await
    .expect("tls");
    let (r, w) = tokio::io::split(tls.stream);
    let res = client_handshake_service(
        r,
        w,
        tls.session_id,
        &srv.fingerprint,
        VersionRange::SERVER,
        &tls.peer_chain,
        false,
        Some(&creds),
    )
    .await;
    match res {
        Err(SmpTransportError::Transport(TransportError::Handshake(HandshakeError::BadAuth))) => {}
        Err(e) => panic!("expected HANDSHAKE BAD_AUTH, got {e}"),
        Ok(_) => panic!("expected HANDSHAKE BAD_AUTH, got a session"),
    }
}

#[tokio::test]
async fn service_commands_outside_a_service_session_are_service_errors() {
    let srv = start_server(Settings::default()).await;
    let c = srv.client().await;
    let k = sign_key();
    let (_, r) = c
        .request(&[1; 24], Command::Subs(0, vec![0; 16]), Some(&k))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Service));
}

#[tokio::test]
async fn subs_subscribes_all_service_queues_delivers_pending_messages_then_alls() {
    let srv = start_server(Settings::default()).await;
    let creds = agent_creds(ServiceRole::Messaging);
    let first = service_client(&srv, &creds, VersionRange::SERVER).await;
    let sid = first.service_id.clone().expect("sid");
    let mut qs = Vec::new();
    for _ in 0..3 {
        let q = create_queue(&first).await;
        assert_eq!(q.ids.service_id, Some(sid.clone()), "IDS names the service");
        qs.push(q);
    }
    // only-create NEW is not allowed in a service session
    let key = key_for(first.version());
    let dh = DhKeyPair::generate().expect("dh");
    let (_, r) = first
        .request(
            b"",
            new_req(
                &key,
                &dh,
                SubscriptionMode::OnlyCreate,
                Some(QueueReqData::Messaging(None)),
            ),
            Some(&key),
        )
        .await
        .expect("NEW");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)));
    drop(first);
    send(&srv, &qs[0], b"one", false).await;
    send(&srv, &qs[1], b"two", false).await;

    let svc = service_client(&srv, &creds, VersionRange::SERVER).await;
    assert_eq!(svc.service_id, Some(sid.clone()));
    let (sid2, skey) = service_key(&svc, &creds);
    let ids: Vec<&[u8]> = qs.iter().map(|q| q.rid()).collect();
    let expected = ids_hash(&ids);
    let (ent, resp) = svc
        .request(&sid2, Command::Subs(3, expected.clone()), Some(&skey))
        .await
        .expect("SUBS");
    assert_eq!(ent, sid);
    assert_eq!(resp, BrokerMsg::Soks(3, expected));
    let mut got = Vec::new();
    loop {
        let (ent, m) = event(&svc).await;
        if m == BrokerMsg::Alls {
            assert!(ent.is_empty());
            break;
        }
        let q = qs
            .iter()
            .find(|q| q.rid() == ent.as_slice())
            .expect("one of ours");
        got.push((ent.clone(), decrypt_msg(q, &m)));
    }
    got.sort_by(|a, b| a.1.body.cmp(&b.1.body));
    let bodies: Vec<_> = got
        .iter()
        .map(|g| g.1.body.clone().expect("body"))
        .collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"two".to_vec()]);
    // ACK works in the service session; a new message to the third queue is delivered.
    let (_, r) = svc
        .request(
            &got[0].0,
            Command::Ack(got[0].1.msg_id.clone()),
            Some(&qs[0].key),
        )
        .await
        .expect("ACK");
    assert_eq!(r, BrokerMsg::Ok);
    send(&srv, &qs[2], b"three", false).await;
    let (ent, m) = event(&svc).await;
    assert_eq!(ent, qs[2].rid());
    assert_eq!(decrypt_msg(&qs[2], &m).body.as_deref(), Some(&b"three"[..]));
    // SUBS again: the same answer, nothing delivered twice.
    let (_, resp) = svc
        .request(&sid2, Command::Subs(3, vec![0; 16]), Some(&skey))
        .await
        .expect("SUBS");
    assert!(matches!(resp, BrokerMsg::Soks(3, _)), "{resp:?}");
    no_event(&svc).await;
    let stats = &srv.server.state.stats;
    assert_eq!(stats.rcv_services.sub_count.get(), 1);
    assert_eq!(stats.rcv_services.sub_ok.get(), 1);
    assert_eq!(stats.rcv_services_sub_msg.get(), 2);
}

#[tokio::test]
async fn a_second_service_session_takes_over_with_ends() {
    let srv = start_server(Settings::default()).await;
    let creds = agent_creds(ServiceRole::Messaging);
    let a = service_client(&srv, &creds, VersionRange::SERVER).await;
    let q1 = create_queue(&a).await;
    let q2 = create_queue(&a).await;
    let (sid, ka) = service_key(&a, &creds);
    let hash = ids_hash(&[q1.rid(), q2.rid()]);
    let (_, r) = a
        .request(&sid, Command::Subs(5, hash.clone()), Some(&ka))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Soks(2, hash.clone()));
    assert_eq!(event(&a).await.1, BrokerMsg::Alls);
    let b = service_client(&srv, &creds, VersionRange::SERVER).await;
    let (_, kb) = service_key(&b, &creds);
    let (_, r) = b
        .request(&sid, Command::Subs(2, hash.clone()), Some(&kb))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Soks(2, hash.clone()));
    let (ent, m) = event(&a).await;
    assert_eq!(ent, sid, "ENDS names the service");
    assert_eq!(m, BrokerMsg::Ends(2, hash));
    assert_eq!(event(&b).await.1, BrokerMsg::Alls);
    send(&srv, &q1, b"to b", false).await;
    let (ent, m) = event(&b).await;
    assert_eq!(ent, q1.rid());
    assert_eq!(decrypt_msg(&q1, &m).body.as_deref(), Some(&b"to b"[..]));
    no_event(&a).await;
    let st = &srv.server.state.stats.rcv_services;
    assert_eq!(st.sub_end.get(), 1);
    assert_eq!(st.sub_more.get(), 0);
    assert_eq!(st.sub_fewer.get(), 1, "the first SUBS expected 5 queues");
    assert_eq!(st.sub_fewer_total.get(), 3);
}

#[tokio::test]
async fn plain_sub_takes_a_queue_back_from_the_service() {
    let srv = start_server(Settings::default()).await;
    let creds = agent_creds(ServiceRole::Messaging);
    let a = service_client(&srv, &creds, VersionRange::SERVER).await;
    let q = create_queue(&a).await;
    let (sid, ka) = service_key(&a, &creds);
    let (_, r) = a
        .request(&sid, Command::Subs(1, ids_hash(&[q.rid()])), Some(&ka))
        .await
        .expect("SUBS");
    assert!(matches!(r, BrokerMsg::Soks(1, _)));
    assert_eq!(event(&a).await.1, BrokerMsg::Alls);
    let plain = srv.client().await;
    let (_, r) = plain
        .request(q.rid(), Command::Sub, Some(&q.key))
        .await
        .expect("SUB");
    assert_eq!(r, BrokerMsg::Sok(None));
    let (ent, m) = event(&a).await;
    assert_eq!((ent.as_slice(), m), (q.rid(), BrokerMsg::End));
    send(&srv, &q, b"plain", false).await;
    let (ent, _) = event(&plain).await;
    assert_eq!(ent, q.rid());
    no_event(&a).await;
    // and a SUB in the service session brings it back
    let (_, r) = a
        .request(q.rid(), Command::Sub, Some(&q.key))
        .await
        .expect("SUB");
    assert_eq!(r, BrokerMsg::Sok(Some(sid.clone())));
    let (ent, m) = event(&plain).await;
    assert_eq!((ent.as_slice(), m), (q.rid(), BrokerMsg::End));
    let b = service_client(&srv, &creds, VersionRange::SERVER).await;
    let (_, kb) = service_key(&b, &creds);
    let (_, r) = b
        .request(&sid, Command::Subs(1, ids_hash(&[q.rid()])), Some(&kb))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Soks(1, ids_hash(&[q.rid()])));
}

#[tokio::test]
async fn notifier_service_subscribes_all_with_nsubs_and_gets_nmsg() {
    let srv = start_server(Settings::default()).await;
    let creds = server_style_creds(ServiceRole::Notifier);
    let rc = srv.client().await;
    let mut queues = Vec::new();
    for _ in 0..2 {
        let r = create_queue(&rc).await;
        let nkey = sign_key();
        let dh = DhKeyPair::generate().expect("dh");
        let (_, resp) = rc
            .request(
                r.rid(),
                Command::Nkey(nkey.public(), dh.public()),
                Some(&r.key),
            )
            .await
            .expect("NKEY");
        let BrokerMsg::Nid(nid, _) = resp else {
            panic!("NID expected, got {resp:?}")
        };
        queues.push((r, nid, nkey));
    }
    // The notification server subscribes each notifier once in a service session...
    let ntf = service_client(&srv, &creds, VersionRange::SERVER).await;
    let sid = ntf.service_id.clone().expect("sid");
    for (_, nid, nkey) in &queues {
        let (_, r) = ntf
            .request(nid, Command::Nsub, Some(nkey))
            .await
            .expect("NSUB");
        assert_eq!(r, BrokerMsg::Sok(Some(sid.clone())));
    }
    drop(ntf);
    // ...and afterwards all of them with one NSUBS; a notification waiting is delivered.
    send(&srv, &queues[0].0, b"while away", true).await;
    let ntf = service_client(&srv, &creds, VersionRange::SERVER).await;
    let (_, k) = service_key(&ntf, &creds);
    // the hash of a notifier service is over notifier IDs (as the reference's)
    let nids: Vec<&[u8]> = queues.iter().map(|q| q.1.as_slice()).collect();
    let hash = ids_hash(&nids);
    let (ent, r) = ntf
        .request(&sid, Command::Nsubs(2, hash.clone()), Some(&k))
        .await
        .expect("NSUBS");
    assert_eq!(ent, sid);
    assert_eq!(r, BrokerMsg::Soks(2, hash));
    let (ent, m) = event(&ntf).await;
    assert_eq!(ent, queues[0].1);
    assert!(matches!(m, BrokerMsg::Nmsg(..)), "{m:?}");
    send(&srv, &queues[1].0, b"now", true).await;
    let (ent, m) = event(&ntf).await;
    assert_eq!(ent, queues[1].1);
    assert!(matches!(m, BrokerMsg::Nmsg(..)), "{m:?}");
    assert_eq!(srv.server.state.stats.ntf_services.sub_ok.get(), 1);
    // A messaging command is not for a notifier service.
    let (_, r) = ntf
        .request(&sid, Command::Subs(0, vec![0; 16]), Some(&k))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)));
}
