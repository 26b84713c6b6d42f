//! Services across restarts of the real binary: the service records and queue associations
//! are written to the store log, survive SIGINT, the compaction at every start (as the
//! reference writes them: `NEW_SERVICE` first, `rsrv=`/`nsrv=` in `CREATE`), and a second
//! restart; SUBS/NSUBS after the restart find every queue, with the same service ID; deleting
//! a queue and a notifier takes them out of the services' counts and hashes.
//!
//! With `SMP_TEST_STORE=database` the same scenario runs on the PostgreSQL stores (a throwaway
//! cluster, `common::pg`), and the rows are checked against the reference's schema: the
//! `services` row (role, encoded certificate chain, certificate hash, creation time), the
//! queues' `rcv_service_id` / `ntf_service_id`, and `queue_count` / `queue_ids_hash` equal to
//! a count and an MD5 XOR computed here; with `db_store_log = on` the service records also go
//! to the store log after each commit, as the reference writes them.

mod common;

use std::sync::Arc;

use common::binary::{stop, Setup};
use common::pg::Cluster;
use common::*;
use md5::{Digest, Md5};
use sha2::Sha256;
use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::identity::{self_signed_certificate, Fingerprint};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::command::{Command as Cmd, MsgFlags, QueueReqData, SubscriptionMode};
use smp_server::protocol::handshake::ServiceRole;
use smp_server::protocol::response::BrokerMsg;
use smp_server::transport::service::ServiceCredentials;

/// Whether the scenario runs on the PostgreSQL stores.
fn on_database() -> bool {
    matches!(std::env::var("SMP_TEST_STORE").as_deref(), Ok("database"))
}

/// `init -l` with the memory store and no password (NEW needs none), on a free port; with
/// [`on_database`], switched to a fresh database (its name is returned) and no store log.
fn init() -> (Setup, Option<String>) {
    let s = init_memory();
    if !on_database() {
        return (s, None);
    }
    let cluster = Cluster::get();
    let name = cluster.new_db();
    let conn = cluster.conn(&name);
    let opts = smp_server::store::postgres::db::DbOptions {
        connection: conn.clone(),
        schema: "smp_server".into(),
        pool_size: 2,
    };
    drop(smp_server::store::postgres::setup::open_db(&opts, true).expect("schema"));
    use_database(&s, &conn);
    // no store log of the memory store; the database's copy of changes (`db_store_log`) on
    s.edit_ini(|k, _| match k {
        "enable" => Some("enable = off".into()),
        "db_store_log" => Some("db_store_log = on".into()),
        _ => None,
    });
    std::fs::create_dir_all(&s.log).expect("log dir");
    std::fs::write(s.log.join("smp-server-store.log"), b"").expect("empty store log");
    (s, Some(name))
}

/// Serve from database `conn` (both stores).
fn use_database(s: &Setup, conn: &str) {
    let conn = conn.to_string();
    s.edit_ini(move |k, _| match k {
        "store_queues" => Some("store_queues = database".into()),
        "store_messages" => Some("store_messages = database".into()),
        "db_connection" => Some(format!("db_connection = {conn}")),
        _ => None,
    });
}

/// `init -l` with the memory store and no password.
fn init_memory() -> Setup {
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One row of SQL in the test database (psql's unaligned output).
fn sql(db: &str, q: &str) -> String {
    Cluster::get().psql(db, q).trim().to_string()
}

/// The `services` row of `sid`: role, chain, certificate hash, count, IdsHash, created recently.
fn service_row(db: &str, sid: &[u8]) -> String {
    sql(
        db,
        &format!(
            "SELECT service_role, encode(service_cert, 'hex'), encode(service_cert_hash, 'hex'), \
             queue_count, encode(queue_ids_hash, 'hex'), \
             created_at > extract(epoch FROM now())::bigint - 600 \
             FROM smp_server.services WHERE service_id = '\\x{}'",
            hex(sid)
        ),
    )
}

/// What [`service_row`] should read: the chain as the reference encodes it (a count byte,
/// then each certificate with a 2-byte length), the SHA-256 of the (only) certificate.
fn expected_row(role: char, cert: &[u8], count: usize, hash: &[u8]) -> String {
    let mut chain = vec![1u8];
    chain.extend_from_slice(&(cert.len() as u16).to_be_bytes());
    chain.extend_from_slice(cert);
    format!(
        "{role}|{}|{}|{count}|{}|t",
        hex(&chain),
        hex(&<Sha256 as sha2::Digest>::digest(cert)),
        hex(hash)
    )
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

/// What [`populate`] made.
struct World {
    cert: (Vec<Vec<u8>>, Arc<PrivateSignKey>),
    ntf_cert: (Vec<Vec<u8>>, Arc<PrivateSignKey>),
    /// The messaging service, with `qs` (created in its session, one message waiting in the
    /// first).
    sid: Vec<u8>,
    qs: Vec<Recipient>,
    /// The notifier service, with the notifier `nid` of the plain queue `nq`.
    nsid: Vec<u8>,
    nq: Recipient,
    nid: Vec<u8>,
}

/// Start the server, make a messaging service with two queues and a notifier service with
/// one notifier, stop.
async fn populate(s: &Setup) -> World {
    let leaf = Arc::new(PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key"));
    let cert = (vec![self_signed_certificate(&leaf).expect("cert")], leaf);
    let ntf_leaf = Arc::new(PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key"));
    let ntf_cert = (
        vec![self_signed_certificate(&ntf_leaf).expect("cert")],
        ntf_leaf,
    );

    let srv = start(s).await;
    let svc = connect(s, Some(creds(&cert, ServiceRole::Messaging))).await;
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
    let plain = connect(s, None).await;
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
    let ntf = connect(s, Some(creds(&ntf_cert, ServiceRole::Notifier))).await;
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
    World {
        cert,
        ntf_cert,
        sid,
        nsid,
        qs,
        nq,
        nid,
    }
}

#[tokio::test]
async fn service_associations_survive_restart_and_compaction() {
    let (s, db) = init();
    let World {
        cert,
        ntf_cert,
        sid,
        nsid,
        qs,
        nq,
        nid,
    } = populate(&s).await;

    if let Some(db) = &db {
        // db_store_log: the service records follow the commits, as the reference writes them
        let log = std::fs::read_to_string(s.log.join("smp-server-store.log")).expect("log");
        assert_eq!(log.matches("NEW_SERVICE ").count(), 2, "{log}");
        assert_eq!(log.matches("QUEUE_SERVICE ").count(), 3, "{log}");
        let rids = ids_hash(&[qs[0].rid(), qs[1].rid()]);
        assert_eq!(
            service_row(db, &sid),
            expected_row('M', &cert.0[0], 2, &rids)
        );
        let nh = ids_hash(&[&nid]);
        assert_eq!(
            service_row(db, &nsid),
            expected_row('N', &ntf_cert.0[0], 1, &nh),
            "a notifier service's hash is over notifier IDs"
        );
        let mut rcv = [hex(qs[0].rid()), hex(qs[1].rid())];
        rcv.sort();
        let q = format!(
            "SELECT encode(recipient_id, 'hex') FROM smp_server.msg_queues \
             WHERE rcv_service_id = '\\x{}' ORDER BY 1",
            hex(&sid)
        );
        assert_eq!(sql(db, &q), rcv.join("\n"));
        let q = format!(
            "SELECT encode(ntf_service_id, 'hex') FROM smp_server.msg_queues \
             WHERE recipient_id = '\\x{}'",
            hex(nq.rid())
        );
        assert_eq!(sql(db, &q), hex(&nsid));
        let q = "SELECT COUNT(*) FROM smp_server.msg_queues \
                 WHERE rcv_service_id IS NULL AND ntf_service_id IS NULL";
        assert_eq!(
            sql(db, q),
            "0",
            "the plain queue has a notifier service only"
        );
    }

    for round in 0..2 {
        let srv = start(&s).await;
        if db.is_none() {
            let log = std::fs::read_to_string(s.log.join("smp-server-store.log")).expect("log");
            assert!(log.starts_with("NEW_SERVICE "), "round {round}: {log}");
            assert_eq!(log.matches("NEW_SERVICE ").count(), 2, "{log}");
            assert_eq!(log.matches(" rsrv=").count(), 2, "{log}");
            assert_eq!(log.matches(" nsrv=").count(), 1, "{log}");
        }
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
        let nhash = ids_hash(&[&nid]);
        let (_, r) = ntf
            .request(&nsid, Cmd::Nsubs(1, nhash.clone()), Some(&skey(&ntf)))
            .await
            .expect("NSUBS");
        assert_eq!(r, BrokerMsg::Soks(1, nhash));
        drop((svc, ntf));
        stop(srv).await;
    }

    // Deleting a queue and a notifier takes them out of their services.
    let srv = start(&s).await;
    let plain = connect(&s, None).await;
    let (_, r) = plain
        .request(qs[1].rid(), Cmd::Del, Some(&qs[1].key))
        .await
        .expect("DEL");
    assert_eq!(r, BrokerMsg::Ok);
    let (_, r) = plain
        .request(nq.rid(), Cmd::Ndel, Some(&nq.key))
        .await
        .expect("NDEL");
    assert_eq!(r, BrokerMsg::Ok);
    let one = ids_hash(&[qs[0].rid()]);
    if let Some(db) = &db {
        assert_eq!(
            service_row(db, &sid),
            expected_row('M', &cert.0[0], 1, &one)
        );
        assert_eq!(
            service_row(db, &nsid),
            expected_row('N', &ntf_cert.0[0], 0, &[0; 16])
        );
    }
    let svc = connect(&s, Some(creds(&cert, ServiceRole::Messaging))).await;
    let (_, r) = svc
        .request(&sid, Cmd::Subs(1, one.clone()), Some(&skey(&svc)))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Soks(1, one));
    let ntf = connect(&s, Some(creds(&ntf_cert, ServiceRole::Notifier))).await;
    let (_, r) = ntf
        .request(&nsid, Cmd::Nsubs(0, vec![0; 16]), Some(&skey(&ntf)))
        .await
        .expect("NSUBS");
    assert_eq!(r, BrokerMsg::Soks(0, vec![0; 16]));
    drop((svc, ntf, plain));
    stop(srv).await;
}

/// The store log's services, in ID order (the database has no creation order within a second).
fn logged_services(path: &std::path::Path) -> smp_server::store::services::ServiceData {
    let st = smp_server::store::memory::MemoryStore::new();
    let mut d = smp_server::store::storelog_file::replay(path, &st)
        .expect("replay")
        .services;
    d.services.sort_by(|a, b| a.id.cmp(&b.id));
    d
}

/// `database import` carries services and associations from the store log into the tables,
/// the server on the database finds them, and `database export` writes the same back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_survive_database_import_and_export() {
    let s = init_memory();
    let w = populate(&s).await;
    let log = s.log.join("smp-server-store.log");
    let before = logged_services(&log);
    assert_eq!(
        (before.services.len(), before.rcv.len(), before.ntf.len()),
        (2, 2, 1)
    );

    let cluster = Cluster::get();
    let db = cluster.new_db();
    let conn = cluster.conn(&db);
    let out = s.run_with_input(&["database", "import", "-d", &conn], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import failed: {text}");
    assert!(text.contains("Imported: 2 services, 3 queues"), "{text}");
    let hash = ids_hash(&[w.qs[0].rid(), w.qs[1].rid()]);
    let nhash = ids_hash(&[&w.nid]);
    assert_eq!(
        service_row(&db, &w.sid),
        expected_row('M', &w.cert.0[0], 2, &hash)
    );
    assert_eq!(
        service_row(&db, &w.nsid),
        expected_row('N', &w.ntf_cert.0[0], 1, &nhash)
    );

    use_database(&s, &conn);
    let srv = start(&s).await;
    let svc = connect(&s, Some(creds(&w.cert, ServiceRole::Messaging))).await;
    assert_eq!(svc.service_id, Some(w.sid.clone()));
    let (_, r) = svc
        .request(&w.sid, Cmd::Subs(2, hash.clone()), Some(&skey(&svc)))
        .await
        .expect("SUBS");
    assert_eq!(r, BrokerMsg::Soks(2, hash));
    let (ent, m) = event(&svc).await;
    assert_eq!(ent, w.qs[0].rid());
    assert_eq!(
        decrypt_msg(&w.qs[0], &m).body.as_deref(),
        Some(&b"kept"[..])
    );
    let ntf = connect(&s, Some(creds(&w.ntf_cert, ServiceRole::Notifier))).await;
    let (_, r) = ntf
        .request(&w.nsid, Cmd::Nsubs(1, nhash.clone()), Some(&skey(&ntf)))
        .await
        .expect("NSUBS");
    assert_eq!(r, BrokerMsg::Soks(1, nhash));
    drop((svc, ntf));
    stop(srv).await;

    let out = s.run_with_input(&["database", "export", "-d", &conn], "Y\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "export failed: {text}");
    assert!(text.contains("Exported: 2 services, 3 queues"), "{text}");
    assert_eq!(
        logged_services(&log),
        before,
        "the round trip keeps services and associations"
    );
}
