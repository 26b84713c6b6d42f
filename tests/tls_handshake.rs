//! Real TLS over 127.0.0.1 between our server and our client (and plain rustls clients).

mod tls_support;

use std::sync::Arc;
use std::time::Duration;

use rustls::NamedGroup;
use smp_server::transport::{
    self, accept, connect, connect_with, server_config, ConnectOptions, TlsError, SMP_ALPN,
};
use tls_support::{identity, Identity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(10);

/// Start a one-connection server; it sends its session ID.
async fn one_shot_server(
    config: Arc<rustls::ServerConfig>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<transport::tls::TlsServerConn<TcpStream>, TlsError>>,
) {
    one_shot_server_with(config, None).await
}

/// [`one_shot_server`] with `work` answering the ClientHello.
async fn one_shot_server_with(
    config: Arc<rustls::ServerConfig>,
    work: Option<Arc<OtherThread>>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<transport::tls::TlsServerConn<TcpStream>, TlsError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        let work = work.as_deref().map(|w| w as &dyn transport::tls::HelloWork);
        let mut conn = transport::tls::accept_with(tcp, config, T, work).await?;
        conn.stream.write_all(&conn.session_id.clone()).await?;
        conn.stream.flush().await?;
        Ok(conn)
    });
    (addr, task)
}

/// A handshake with a one-shot server: both ends, and the session ID the server sent.
async fn shake(
    id: &Identity,
    alpn: Option<&[u8]>,
    work: Option<Arc<OtherThread>>,
) -> (
    transport::tls::TlsClientConn<TcpStream>,
    transport::tls::TlsServerConn<TcpStream>,
    [u8; 32],
) {
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let (addr, server) = one_shot_server_with(config, work).await;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut client = connect(tcp, id.fingerprint, "localhost", alpn, T)
        .await
        .expect("client handshake");
    let mut from_server = [0u8; 32];
    client
        .stream
        .read_exact(&mut from_server)
        .await
        .expect("read");
    let server = server.await.expect("join").expect("server handshake");
    (client, server, from_server)
}

async fn handshake(id: &Identity, alpn: Option<&[u8]>) {
    let (client, server, from_server) = shake(id, alpn, None).await;

    assert_eq!(client.session_id.len(), 32);
    assert_eq!(client.session_id, server.session_id);
    assert_eq!(from_server.to_vec(), client.session_id);
    assert_eq!(client.peer_chain, id.chain, "chain sent is [server, CA]");
    assert_eq!(client.alpn.as_deref(), alpn);
    assert_eq!(server.alpn.as_deref(), alpn);
    assert_eq!(server.sni, None, "SMP clients send no SNI");
    assert_eq!(server.negotiated_group(), Some(NamedGroup::X448));
    assert_eq!(client.negotiated_group(), Some(NamedGroup::X448));
    assert!(!server.facts.hello_retry, "X448 first must not need HRR");
    assert!(!client.facts.hello_retry);
}

#[tokio::test]
async fn ed25519_chain_with_alpn() {
    handshake(&identity("ed25519"), Some(SMP_ALPN)).await;
}

#[tokio::test]
async fn ed448_reference_chain_with_alpn() {
    handshake(&identity(""), Some(SMP_ALPN)).await;
}

#[tokio::test]
async fn no_alpn_offered_means_none() {
    handshake(&identity(""), None).await;
    handshake(&identity("ed25519"), None).await;
}

#[tokio::test]
async fn session_ids_differ_between_connections() {
    let id = identity("ed25519");
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (addr, server) = one_shot_server(config.clone()).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let client = connect(tcp, id.fingerprint, "localhost", Some(SMP_ALPN), T)
            .await
            .expect("client");
        let server = server.await.expect("join").expect("server");
        assert_eq!(client.session_id, server.session_id);
        ids.push(client.session_id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn wrong_fingerprint_is_an_identity_error() {
    let id = identity("");
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let (addr, server) = one_shot_server(config).await;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut wrong = id.fingerprint;
    wrong[0] ^= 1;
    let err = connect(tcp, wrong, "localhost", Some(SMP_ALPN), T)
        .await
        .expect_err("must fail");
    assert!(matches!(err, TlsError::Identity), "{err:?}");
    assert!(server.await.expect("join").is_err());

    // The other identity's fingerprint is just as wrong.
    let (addr, _server) =
        one_shot_server(server_config(id.chain.clone(), id.signer.clone(), &[]).expect("c")).await;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let err = connect(tcp, identity("ed25519").fingerprint, "localhost", None, T)
        .await
        .expect_err("must fail");
    assert!(matches!(err, TlsError::Identity), "{err:?}");
}

#[tokio::test]
async fn unknown_alpn_continues_without_alpn_and_extra_alpn_is_served() {
    let id = identity("ed25519");
    let config =
        server_config(id.chain.clone(), id.signer.clone(), &[b"http/1.1"]).expect("config");
    assert_eq!(
        config.alpn_protocols,
        vec![b"smp/1".to_vec(), b"http/1.1".to_vec()]
    );
    for (offer, expect) in [
        (&b"smp/9"[..], None),
        (&b"http/1.1"[..], Some(&b"http/1.1"[..])),
    ] {
        let (addr, server) = one_shot_server(config.clone()).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let client = connect(tcp, id.fingerprint, "localhost", Some(offer), T)
            .await
            .expect("client");
        let server = server.await.expect("join").expect("server");
        assert_eq!(server.alpn.as_deref(), expect);
        assert_eq!(client.alpn.as_deref(), expect);
        assert_eq!(client.session_id, server.session_id);
    }
}

#[tokio::test]
async fn sni_only_when_asked() {
    let id = identity("ed25519");
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let (addr, server) = one_shot_server(config).await;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let client = connect_with(
        tcp,
        ConnectOptions {
            fingerprint: id.fingerprint,
            server_name: "smp.example.com",
            alpn: Some(SMP_ALPN),
            sni: true,
            timeout: T,
            client_cert: None,
        },
    )
    .await
    .expect("client");
    let server = server.await.expect("join").expect("server");
    assert_eq!(server.sni.as_deref(), Some("smp.example.com"));
    assert_eq!(client.session_id, server.session_id);
}

/// A plain rustls client with our verifier but chosen key-exchange groups.
async fn rustls_client_with_groups(
    id: &Identity,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> transport::tls::TlsServerConn<TcpStream> {
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let (addr, server) = one_shot_server(config).await;
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: groups,
        ..transport::smp_provider()
    };
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(transport::verify::ServerIdentityVerifier::new(
            id.fingerprint,
        )))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client_config))
        .connect(name, tcp)
        .await
        .expect("rustls client");
    let mut sid = [0u8; 32];
    stream.read_exact(&mut sid).await.expect("read");
    let server = server.await.expect("join").expect("server");
    assert_eq!(server.session_id, sid.to_vec());
    server
}

#[tokio::test]
async fn x25519_only_client_works_without_retry() {
    let server =
        rustls_client_with_groups(&identity(""), vec![rustls::crypto::ring::kx_group::X25519])
            .await;
    assert_eq!(server.negotiated_group(), Some(NamedGroup::X25519));
    assert!(!server.facts.hello_retry);
    assert_eq!(server.session_id.len(), 32);
}

#[tokio::test]
async fn unsupported_first_share_forces_retry_and_still_yields_session_id() {
    // P-256 first: the server does not speak it, asks again for X448 (the client's next choice).
    let server = rustls_client_with_groups(
        &identity("ed25519"),
        vec![
            rustls::crypto::ring::kx_group::SECP256R1,
            transport::x448::X448,
        ],
    )
    .await;
    assert_eq!(server.negotiated_group(), Some(NamedGroup::X448));
    assert!(server.facts.hello_retry);
    assert_eq!(server.session_id.len(), 32);
}

#[tokio::test]
async fn handshake_times_out_on_a_silent_client() {
    let id = identity("ed25519");
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _silent = TcpStream::connect(addr).await.expect("connect");
    let (tcp, _) = listener.accept().await.expect("accept");
    let start = std::time::Instant::now();
    let err = accept(tcp, config, Duration::from_millis(300))
        .await
        .expect_err("timeout");
    assert!(matches!(err, TlsError::Timeout), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn mismatched_key_is_refused_at_config_time() {
    let ed448 = identity("");
    let ed25519 = identity("ed25519");
    let err = server_config(ed448.chain.clone(), ed25519.signer.clone(), &[]).expect_err("bad");
    assert!(matches!(err, TlsError::Config(_)), "{err:?}");
    assert!(server_config(vec![], ed448.signer.clone(), &[]).is_err());
}

#[tokio::test]
async fn data_flows_both_ways_after_handshake() {
    let id = identity("");
    let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut conn = accept(tcp, config, T).await.expect("server");
        let mut block = vec![0u8; 16384];
        conn.stream
            .read_exact(&mut block)
            .await
            .expect("read block");
        block.reverse();
        conn.stream.write_all(&block).await.expect("write block");
        conn.stream.flush().await.expect("flush");
        conn.session_id
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut client = connect(tcp, id.fingerprint, "127.0.0.1", Some(SMP_ALPN), T)
        .await
        .expect("client");
    let block: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
    client.stream.write_all(&block).await.expect("write");
    client.stream.flush().await.expect("flush");
    let mut back = vec![0u8; 16384];
    client.stream.read_exact(&mut back).await.expect("read");
    back.reverse();
    assert_eq!(back, block);
    assert_eq!(server.await.expect("join"), client.session_id);
}

/// Prints handshake cost per identity (run with `--nocapture`, ideally `--release`).
#[tokio::test]
async fn handshake_timing() {
    const N: u32 = 5;
    let start = std::time::Instant::now();
    for _ in 0..N {
        let a = transport::x448::X448.start().expect("a");
        let b = transport::x448::X448.start().expect("b");
        let b_pub = b.pub_key().to_vec();
        a.complete(&b_pub).expect("dh");
    }
    eprintln!("X448: {:?} per keygen+keygen+DH", start.elapsed() / N);
    for sub in ["", "ed25519"] {
        let id = identity(sub);
        let config = server_config(id.chain.clone(), id.signer.clone(), &[]).expect("config");
        let start = std::time::Instant::now();
        for _ in 0..N {
            let (addr, server) = one_shot_server(config.clone()).await;
            let tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let client = connect(tcp, id.fingerprint, "localhost", Some(SMP_ALPN), T)
                .await
                .expect("client");
            let server = server.await.expect("join").expect("server");
            assert_eq!(client.session_id, server.session_id);
        }
        let label = if sub.is_empty() { "ed448" } else { sub };
        eprintln!(
            "{label} chain, X448: {:?} per handshake (client+server, one process)",
            start.elapsed() / N
        );
    }
}

/// Answers ClientHellos on a thread of its own, as the server's hello pool does under load.
#[derive(Debug, Default)]
struct OtherThread {
    ran_on: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl transport::tls::HelloWork for OtherThread {
    fn answer(
        &self,
        job: Box<dyn FnOnce() + Send + 'static>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                job();
                let _ = tx.send(std::thread::current().id());
            });
            if let Ok(id) = rx.await {
                self.ran_on.lock().expect("lock").push(id);
            }
        })
    }
}

/// The answer to the ClientHello computed on another thread gives the same handshake: both
/// sides agree on the session ID (tls-unique), X448 without HelloRetryRequest, ALPN. With an
/// Ed25519 identity and the reference's Ed448 one (`""`).
#[tokio::test]
async fn hello_answered_on_another_thread() {
    for alg in ["ed25519", ""] {
        let id = identity(alg);
        let work = Arc::new(OtherThread::default());
        let (client, server, from_server) = shake(&id, Some(SMP_ALPN), Some(work.clone())).await;
        let ran_on = work.ran_on.lock().expect("lock").clone();
        assert_eq!(ran_on.len(), 1, "{alg}: one answer, on the other thread");
        assert_ne!(ran_on[0], std::thread::current().id());
        assert_eq!(client.session_id, server.session_id, "{alg}");
        assert_eq!(from_server.to_vec(), client.session_id, "{alg}");
        assert_eq!(server.alpn.as_deref(), Some(SMP_ALPN), "{alg}");
        assert_eq!(server.negotiated_group(), Some(NamedGroup::X448), "{alg}");
        assert!(!server.facts.hello_retry, "{alg}");
    }
}
