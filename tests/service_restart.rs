//! Services across restarts of the real binary: the service records and queue associations
//! are written to the store log, survive SIGINT, the compaction at every start (as the
//! reference writes them: `NEW_SERVICE` first, `rsrv=`/`nsrv=` in `CREATE`), and a second
//! restart; SUBS/NSUBS after the restart find every queue, with the same service ID.

mod common;

use std::sync::Arc;

use common::binary::{stop, Setup};
use common::*;
use md5::{Digest, Md5};
use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::identity::{self_signed_certificate, Fingerprint};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::command::{Command as Cmd, MsgFlags, QueueReqData, SubscriptionMode};
use smp_server::protocol::handshake::ServiceRole;
use smp_server::protocol::response::BrokerMsg;
use smp_server::transport::service::ServiceCredentials;

/// `init -l` with the memory store and no password (NEW needs none), on a free port.
fn init() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Setup {
        cfg: dir.path().join("etc"),
        log: dir.path().join("var"),
        _dir: dir,
        port: free_port(),
        fp: Fingerprint([0; 32]),
    };
    let out = s
        .bin()
        .args(["init", "-y", "-l", "--store-messages", "memory"])
        .args(["--ip", "127.0.0.1", "--no-password"])
        .output()
        .expect("run init");
    assert!(out.status.success(), "init failed: {out:?}");
    let fp = std::fs::read_to_string(s.cfg.join("fingerprint")).expect("fingerprint");
    s.fp = Fingerprint::from_base64url(fp.trim()).expect("fingerprint");
    let port = s.port;
    s.edit_ini(|k, l| (k == "port" && l.starts_with("port")).then(|| format!("port: {port}")));
    s
}

async fn connect(s: &Setup, service: Option<Arc<ServiceCredentials>>) -> SmpClient {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", s.port).parse().expect("addr");
    let opts = ClientOptions {
        service,
        ..ClientOptions::default()
    };
    SmpClient::connect(addr, s.fp.0, opts)
        .await
        .expect("connect")
}

async fn start(s: &Setup) -> Running {
    s.start().await.0
}

fn creds(c: &(Vec<Vec<u8>>, Arc<PrivateSignKey>), role: ServiceRole) -> Arc<ServiceCredentials> {
    Arc::new(ServiceCredentials {
        role,
        chain: c.0.clone(),
        leaf_key: c.1.clone(),
        session_key: PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key"),
    })
}

fn ids_hash(ids: &[&[u8]]) -> Vec<u8> {
    let mut acc = [0u8; 16];
    for id in ids {
        for (a, b) in acc.iter_mut().zip(Md5::digest(id).iter()) {
            *a ^= b;
        }
    }
    acc.to_vec()
}

fn skey(c: &SmpClient) -> AuthKey {
    AuthKey::Sign(c.service_session_key().expect("service session"))
}

#[tokio::test]
async fn service_associations_survive_restart_and_compaction() {
    let s = init();
    let leaf = Arc::new(PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key"));
    let cert = (vec![self_signed_certificate(&leaf).expect("cert")], leaf);
    let ntf_leaf = Arc::new(PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key"));
    let ntf_cert = (
        vec![self_signed_certificate(&ntf_leaf).expect("cert")],
        ntf_leaf,
    );

    let srv = start(&s).await;
    let svc = connect(&s, Some(creds(&cert, ServiceRole::Messaging))).await;
    let sid = svc.service_id.clone().expect("service session");
    let mut qs = Vec::new();
    for _ in 0..2 {
        let k = key_for(svc.version());
        let dh = DhKeyPair::generate().expect("dh");
        let (_, r) = svc
            .request(
                b"",
                new_req(
                    &k,
                    &dh,
                    SubscriptionMode::Subscribe,
                    Some(QueueReqData::Messaging(None)),
                ),
                Some(&k),
            )
            .await
            .expect("NEW");
        let BrokerMsg::Ids(ids) = r else {
            panic!("IDS expected, got {r:?}")
        };
        assert_eq!(ids.service_id, Some(sid.clone()));
        qs.push(Recipient { key: k, dh, ids });
    }
    // a queue whose notifications go to a notifier service
    let plain = connect(&s, None).await;
    let nq = create_queue(&plain).await;
    let nkey = sign_key();
    let dh = DhKeyPair::generate().expect("dh");
    let (_, r) = plain
        .request(
            nq.rid(),
            Cmd::Nkey(nkey.public(), dh.public()),
            Some(&nq.key),
        )
        .await
        .expect("NKEY");
    let BrokerMsg::Nid(nid, _) = r else {
        panic!("NID expected, got {r:?}")
    };
    let ntf = connect(&s, Some(creds(&ntf_cert, ServiceRole::Notifier))).await;
    let nsid = ntf.service_id.clone().expect("ntf service");
    let (_, r) = ntf
        .request(&nid, Cmd::Nsub, Some(&nkey))
        .await
        .expect("NSUB");
    assert_eq!(r, BrokerMsg::Sok(Some(nsid.clone())));
    let (_, r) = plain
        .request(
            qs[0].sid(),
            Cmd::Send(
                MsgFlags {
                    notification: false,
                },
                b"kept".to_vec(),
            ),
            None,
        )
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Ok);
    drop((svc, ntf, plain));
    stop(srv).await;

    for round in 0..2 {
        let srv = start(&s).await;
        let log = std::fs::read_to_string(s.log.join("smp-server-store.log")).expect("log");
        assert!(log.starts_with("NEW_SERVICE "), "round {round}: {log}");
        assert_eq!(log.matches("NEW_SERVICE ").count(), 2, "{log}");
        assert_eq!(log.matches(" rsrv=").count(), 2, "{log}");
        assert_eq!(log.matches(" nsrv=").count(), 1, "{log}");
        let svc = connect(&s, Some(creds(&cert, ServiceRole::Messaging))).await;
        assert_eq!(
            svc.service_id,
            Some(sid.clone()),
            "same service after restart"
        );
        let hash = ids_hash(&[qs[0].rid(), qs[1].rid()]);
        let (_, r) = svc
            .request(&sid, Cmd::Subs(2, hash.clone()), Some(&skey(&svc)))
            .await
            .expect("SUBS");
        assert_eq!(r, BrokerMsg::Soks(2, hash));
        let (ent, m) = event(&svc).await;
        assert_eq!(ent, qs[0].rid());
        assert_eq!(decrypt_msg(&qs[0], &m).body.as_deref(), Some(&b"kept"[..]));
        assert_eq!(event(&svc).await.1, BrokerMsg::Alls);
        let ntf = connect(&s, Some(creds(&ntf_cert, ServiceRole::Notifier))).await;
        assert_eq!(ntf.service_id, Some(nsid.clone()));
        let nhash = ids_hash(&[nq.rid()]);
        let (_, r) = ntf
            .request(&nsid, Cmd::Nsubs(1, nhash.clone()), Some(&skey(&ntf)))
            .await
            .expect("NSUBS");
        assert_eq!(r, BrokerMsg::Soks(1, nhash));
        drop((svc, ntf));
        stop(srv).await;
    }
}
