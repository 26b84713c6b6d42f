//! Shared helpers for integration tests: a real server on 127.0.0.1:0 with a fresh identity,
//! and SMP clients that talk TLS to it.
#![allow(dead_code)]

pub mod binary;
pub mod pg;
pub mod process;
pub mod refjournal;
pub mod require;
pub mod served;
pub mod site;
#[allow(unused_imports)]
pub use process::{connect_when_up, free_port, wait_for_file, Running};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smp_server::client::{AuthKey, ClientOptions, SmpClient};
use smp_server::crypto::cbox;
use smp_server::crypto::identity::{create_identity, load_identity};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey, PublicKey};
use smp_server::protocol::command::{
    Command, MsgFlags, NewQueueReq, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::encoding::Decoder;
use smp_server::protocol::response::{BrokerMsg, QueueIdsKeys};
use smp_server::protocol::version::VersionRange;
use smp_server::server::{Server, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub fingerprint: [u8; 32],
    pub server: Arc<Server>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// The store the scenario servers run on: in memory, or with `SMP_TEST_STORE=database` the
/// PostgreSQL stores on a fresh database of a throwaway cluster (`common::pg`), or with
/// `SMP_TEST_STORE=database-journal` queues there and messages in a journal.
pub fn scenario_store() -> Arc<dyn smp_server::store::Store> {
    match std::env::var("SMP_TEST_STORE").as_deref() {
        Ok("database") => {
            let opts = pg::fresh_db_options();
            let db = smp_server::store::postgres::setup::open_db(&opts, true).expect("open db");
            Arc::new(smp_server::store::postgres::PgStore::new(db, None, 86400))
        }
        Ok("database-journal") => {
            // Queues in PostgreSQL, messages in a journal in a directory kept for the process.
            let opts = pg::fresh_db_options();
            let db = smp_server::store::postgres::setup::open_db(&opts, true).expect("open db");
            let pg = Arc::new(smp_server::store::postgres::PgStore::new(db, None, 86400));
            let dir = tempfile::Builder::new()
                .prefix("smp-journal-")
                .tempdir()
                .expect("tempdir")
                .keep();
            let opts = smp_server::store::journal::JournalOptions::new(
                smp_server::config::JournalFsync::Always,
            );
            let (journal, _) =
                smp_server::store::journal::Journal::open(&dir.join("messages"), opts)
                    .expect("journal");
            Arc::new(smp_server::store::pg_journal::PgJournalStore::new(
                pg,
                Arc::new(journal),
            ))
        }
        Ok("memory") | Err(_) => Arc::new(smp_server::store::memory::MemoryStore::new()),
        Ok(other) => panic!("SMP_TEST_STORE={other}: use memory, database or database-journal"),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_server(settings: Settings) -> TestServer {
    start_server_with(settings, KeyAlgorithm::Ed25519).await
}

pub async fn start_server_with(settings: Settings, alg: KeyAlgorithm) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    create_identity(dir.path(), alg, "localhost").expect("identity");
    start_server_in(settings, dir).await
}

/// The reference's test identities, in `shared/` beside the project's checkout.
pub fn reference_fixtures() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        std::env::var_os("SMP_REFERENCE_FIXTURES").map(std::path::PathBuf::from),
        Some(manifest.join("../shared/reference-fixtures")),
        Some(std::path::PathBuf::from("/work/shared/reference-fixtures")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("ca.crt").exists())
    .expect("reference fixtures not found: set SMP_REFERENCE_FIXTURES")
}

/// Start a server with the identity files already in `dir`.
pub async fn start_server_in(settings: Settings, dir: tempfile::TempDir) -> TestServer {
    start_server_routed(settings, dir, loopback_route()).await
}

/// The proxy route of test servers: every relay a test names is on loopback, so
/// `[PROXY] allow_private_destinations = on`.
pub fn loopback_route() -> smp_server::server::proxy::Route {
    let mut route = smp_server::server::proxy::Route::default();
    route.egress.allow_private = true;
    route.limits.allow_private = true;
    route
}

/// Start a server with a fresh identity and the given proxy route (egress rules and limits).
pub async fn start_server_with_route(
    settings: Settings,
    route: smp_server::server::proxy::Route,
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    create_identity(dir.path(), KeyAlgorithm::Ed25519, "localhost").expect("identity");
    start_server_routed(settings, dir, route).await
}

async fn start_server_routed(
    settings: Settings,
    dir: tempfile::TempDir,
    route: smp_server::server::proxy::Route,
) -> TestServer {
    start_with_store(settings, dir, route, scenario_store()).await
}

/// Start a server with a fresh identity on the given store.
pub async fn start_server_on(
    settings: Settings,
    store: Arc<dyn smp_server::store::Store>,
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    create_identity(dir.path(), KeyAlgorithm::Ed25519, "localhost").expect("identity");
    start_with_store(settings, dir, loopback_route(), store).await
}

async fn start_with_store(
    settings: Settings,
    dir: tempfile::TempDir,
    route: smp_server::server::proxy::Route,
    store: Arc<dyn smp_server::store::Store>,
) -> TestServer {
    let identity = load_identity(dir.path()).expect("load identity");
    let fp = identity.fingerprint;
    let server = Arc::new(Server::with_store(settings, identity, store).expect("server"));
    server.state.proxy.set_route(route);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(server.clone().serve(vec![listener], shutdown.clone()));
    TestServer {
        addr,
        fingerprint: fp.0,
        server,
        shutdown,
        _dir: dir,
    }
}

impl TestServer {
    /// A client at the newest version.
    pub async fn client(&self) -> SmpClient {
        self.client_v(VersionRange::SERVER, true).await
    }

    /// A client limited to a version range, with or without ALPN.
    pub async fn client_v(&self, versions: VersionRange, alpn: bool) -> SmpClient {
        SmpClient::connect(
            self.addr,
            self.fingerprint,
            ClientOptions {
                versions,
                alpn,
                timeout: Duration::from_secs(10),
                proxy: false,
                event_capacity: 4096,
                service: None,
            },
        )
        .await
        .expect("connect")
    }

    /// A client at exactly version `v` (ALPN as needed for v > 6).
    pub async fn client_at(&self, v: u16) -> SmpClient {
        let c = self
            .client_v(VersionRange::new(6, v).expect("range"), v > 6)
            .await;
        assert_eq!(c.version(), v);
        c
    }
}

/// A recipient's keys for one queue.
pub struct Recipient {
    pub key: AuthKey,
    pub dh: DhKeyPair,
    pub ids: QueueIdsKeys,
}

impl Recipient {
    pub fn rid(&self) -> &[u8] {
        &self.ids.rcv_id
    }
    pub fn sid(&self) -> &[u8] {
        &self.ids.snd_id
    }
    /// The shared secret the server encrypts message bodies with.
    pub fn secret(&self) -> [u8; 32] {
        self.dh.dh(&self.ids.rcv_public_dh_key).expect("dh")
    }
}

pub fn sign_key() -> AuthKey {
    AuthKey::Sign(PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key"))
}

pub fn ed448_key() -> AuthKey {
    AuthKey::Sign(PrivateSignKey::generate(KeyAlgorithm::Ed448).expect("key"))
}

pub fn dh_auth_key() -> AuthKey {
    AuthKey::Dh(DhKeyPair::generate().expect("key"))
}

/// The right kind of recipient key for the version: X25519 authenticators need v7+.
pub fn key_for(v: u16) -> AuthKey {
    if v >= 7 {
        dh_auth_key()
    } else {
        sign_key()
    }
}

pub fn new_req(
    key: &AuthKey,
    dh: &DhKeyPair,
    sub: SubscriptionMode,
    data: Option<QueueReqData>,
) -> Command {
    Command::New(NewQueueReq {
        rcv_auth_key: key.public(),
        rcv_dh_key: dh.public(),
        auth: None,
        sub_mode: sub,
        queue_req_data: data,
        ntf_creds: None,
    })
}

/// Create a messaging queue (subscribed).
pub async fn create_queue(c: &SmpClient) -> Recipient {
    create_queue_with(
        c,
        key_for(c.version()),
        SubscriptionMode::Subscribe,
        Some(QueueReqData::Messaging(None)),
    )
    .await
}

pub async fn create_queue_with(
    c: &SmpClient,
    key: AuthKey,
    sub: SubscriptionMode,
    data: Option<QueueReqData>,
) -> Recipient {
    let dh = DhKeyPair::generate().expect("dh");
    let (_, r) = c
        .request(b"", new_req(&key, &dh, sub, data), Some(&key))
        .await
        .expect("NEW");
    match r {
        BrokerMsg::Ids(ids) => Recipient { key, dh, ids },
        other => panic!("expected IDS, got {other:?}"),
    }
}

pub fn send_cmd(body: &[u8]) -> Command {
    Command::Send(
        MsgFlags {
            notification: false,
        },
        body.to_vec(),
    )
}

/// A decrypted MSG: (msg_id, ts, flags, body), or `None` body for the quota marker.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub msg_id: Vec<u8>,
    pub ts: i64,
    pub notification: bool,
    pub body: Option<Vec<u8>>,
}

pub fn decrypt_msg(r: &Recipient, msg: &BrokerMsg) -> Received {
    let BrokerMsg::Msg(id, enc) = msg else {
        panic!("expected MSG, got {msg:?}")
    };
    let plain = cbox::cb_decrypt(&r.secret(), &cbox::cb_nonce(id), enc).expect("decrypt MSG");
    if let Some(rest) = plain.strip_prefix(b"QUOTA ") {
        let mut d = Decoder::new(rest);
        return Received {
            msg_id: id.clone(),
            ts: d.i64().expect("ts"),
            notification: false,
            body: None,
        };
    }
    let mut d = Decoder::new(&plain);
    let ts = d.i64().expect("ts");
    let notification = d.bool().expect("flags");
    d.till_space();
    d.space().expect("space");
    Received {
        msg_id: id.clone(),
        ts,
        notification,
        body: Some(d.tail().to_vec()),
    }
}

/// Wait for the next pushed message.
pub async fn event(c: &SmpClient) -> (Vec<u8>, BrokerMsg) {
    c.next_event(Duration::from_secs(5))
        .await
        .expect("expected a message from the server")
}

/// Assert nothing is pushed for a short while.
pub async fn no_event(c: &SmpClient) {
    if let Some(e) = c.next_event(Duration::from_millis(300)).await {
        panic!("unexpected message: {e:?}");
    }
}

pub fn pk(k: &AuthKey) -> PublicKey {
    k.public()
}

/// Private routing from the client side: open a proxy session to `relay` through the
/// server `sc` is connected to (PRXY -> PKEY), checking the relay's identity.
pub async fn proxy_session(
    sc: &SmpClient,
    relay: smp_server::protocol::command::SmpServerRef,
) -> (Vec<u8>, PublicKey) {
    match try_proxy_session(sc, relay).await {
        Ok(s) => s,
        Err(other) => panic!("expected PKEY, got {other:?}"),
    }
}

/// [`proxy_session`], returning the proxy's answer when it is not PKEY (e.g. to retry).
pub async fn try_proxy_session(
    sc: &SmpClient,
    relay: smp_server::protocol::command::SmpServerRef,
) -> Result<(Vec<u8>, PublicKey), BrokerMsg> {
    let fingerprint = relay.key_hash.clone();
    let (_, pkey) = sc
        .request(b"", Command::Prxy(relay, None), None)
        .await
        .expect("PRXY");
    let BrokerMsg::Pkey(sid, vr, auth) = pkey else {
        return Err(pkey);
    };
    assert_eq!(
        (vr.min, vr.max),
        (8, 20),
        "proxied range is 8..20 (the reference 7.0 pins it to its current version)"
    );
    assert_eq!(auth.chain.len(), 2);
    assert_eq!(
        smp_server::crypto::identity::Fingerprint::of_cert(&auth.chain[1])
            .0
            .to_vec(),
        fingerprint,
        "PKEY carries the relay's identity"
    );
    let leaf = smp_server::crypto::x509::cert_public_key(&auth.chain[0]).expect("leaf key");
    let relay_key =
        smp_server::crypto::x509::verify_signed_pubkey(&leaf, &auth.signed_key).expect("signed");
    Ok((sid, relay_key))
}

/// PFWD one command for queue `entity` through the proxy session `sid` (from
/// [`proxy_session`]), end-to-end encrypted for the relay, and return the relay's answer.
pub async fn proxied_request(
    sc: &SmpClient,
    sid: &[u8],
    relay_key: &PublicKey,
    entity: &[u8],
    cmd: &Command,
    key: Option<&AuthKey>,
) -> BrokerMsg {
    proxied_request_at(sc, sid, relay_key, entity, cmd, key, 17).await
}

/// [`proxied_request`] with the end-to-end version `v` chosen by the client.
pub async fn proxied_request_at(
    sc: &SmpClient,
    sid: &[u8],
    relay_key: &PublicKey,
    entity: &[u8],
    cmd: &Command,
    key: Option<&AuthKey>,
    v: u16,
) -> BrokerMsg {
    use smp_server::protocol::transmission::{
        batch, decode_client, encode_client, split_batch, with_auth, THParams,
    };
    use smp_server::protocol::version::{PADDED_PROXIED_T_LENGTH, SMP_BLOCK_SIZE};
    let fwd_key = DhKeyPair::generate().expect("dh");
    let secret = fwd_key.dh(relay_key).expect("dh");
    let corr = smp_server::client::new_corr_id();
    let params = THParams {
        session_id: sid.to_vec(),
        version: v,
    };
    let ct = encode_client(&params, &corr, entity, cmd);
    let a = key.map(|k| match k {
        AuthKey::Dh(d) => {
            cbox::cb_authenticate(relay_key, d, &cbox::cb_nonce(&corr), &ct.for_auth).expect("auth")
        }
        AuthKey::Sign(s) => s.sign(&ct.for_auth),
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
    let pfwd = Command::Pfwd(v, fwd_key.public(), enc);
    let t = sc.transmission(&corr, sid, &pfwd, None).expect("t");
    let mut resp = sc.send_batch(vec![(corr.clone(), t)]).await.expect("PFWD");
    let (ent, pres) = resp.remove(0);
    assert_eq!(ent, sid, "PRES answers the proxy session");
    let BrokerMsg::Pres(body) = pres else {
        return pres;
    };
    let plain = cbox::cb_decrypt(&secret, &cbox::reverse_nonce(&cbox::cb_nonce(&corr)), &body)
        .expect("decrypt PRES");
    let ts = split_batch(&plain).expect("batch");
    let (_, _, m) = decode_client(&params, ts[0]).expect("decode");
    m
}
