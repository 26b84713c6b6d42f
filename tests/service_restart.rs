//! Services across restarts of the real binary: the service records and queue associations
//! are written to the store log, survive SIGINT, the compaction at every start (as the
//! reference writes them: `NEW_SERVICE` first, `rsrv=`/`nsrv=` in `CREATE`), and a second
//! restart; SUBS/NSUBS after the restart find every queue, with the same service ID.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use md5::{Digest, Md5};
use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::identity::{self_signed_certificate, Fingerprint};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::command::{Command as Cmd, MsgFlags, QueueReqData, SubscriptionMode};
use smp_server::protocol::handshake::ServiceRole;
use smp_server::protocol::response::BrokerMsg;
use smp_server::transport::service::ServiceCredentials;

struct Setup {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    fp: Fingerprint,
}

fn bin(s: &Setup) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
    c.env("SMP_SERVER_CFG_PATH", &s.cfg)
        .env("SMP_SERVER_LOG_PATH", &s.log);
    c
}

fn init() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, log) = (dir.path().join("etc"), dir.path().join("var"));
    let port = free_port();
    let mut s = Setup {
        _dir: dir,
        cfg,
        log,
        port,
        fp: Fingerprint([0; 32]),
    };
    let out = bin(&s)
        .args([
            "init",
            "-y",
            "-l",
            "--store-messages",
            "memory",
            "--ip",
            "127.0.0.1",
            "--no-password",
        ])
        .output()
        .expect("run init");
    assert!(out.status.success(), "init failed: {out:?}");
    let fp = std::fs::read_to_string(s.cfg.join("fingerprint")).expect("fingerprint");
    s.fp = Fingerprint::from_base64url(fp.trim()).expect("fingerprint");
    let ini_path = s.cfg.join("smp-server.ini");
    let ini: String = std::fs::read_to_string(&ini_path)
        .expect("ini")
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
    let child = bin(s)
        .arg("start")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut r = Running(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", s.port).parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = r.0.try_wait().expect("wait") {
            panic!("server exited {st:?}");
        }
        match SmpClient::connect(addr, s.fp.0, ClientOptions::default()).await {
            Ok(_) => return r,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("server did not come up: {e}"),
        }
    }
}

async fn stop(mut r: Running) {
    let ok = Command::new("kill")
        .args(["-INT", &r.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let t = Instant::now();
    loop {
        if let Some(st) = r.0.try_wait().expect("wait") {
            assert!(st.success(), "clean exit: {st:?}");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
