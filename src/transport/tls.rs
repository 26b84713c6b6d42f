//! TLS for SMP: the rustls configuration, server accept and client connect, with tls-unique.
//!
//! Parameters follow the reference's `defaultSupportedParams` restricted to TLS 1.3: only
//! TLS_CHACHA20_POLY1305_SHA256, groups X448 then X25519, signatures Ed448 and Ed25519, no
//! session resumption. Every connection yields its session ID (the client's Finished
//! verify_data), computed as described in `tls_unique`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{Acceptor, NoServerSessionStorage};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, CommonState, HandshakeKind, NamedGroup, ServerConfig,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use super::recording::{Recording, SecretCapture, Tap};
use super::sign::{HandshakeSigner, SmpSigningKey};
use super::tls_unique::{self, ClientFlight, Suite};
use super::verify::{self, ChainError, ServerIdentityVerifier};
use super::x448::X448;
use super::TlsError;

/// The ALPN protocol of the current SMP handshake; without it clients use the legacy handshake.
pub const SMP_ALPN: &[u8] = b"smp/1";

/// Server-side limit on the TLS handshake (the reference's `tlsSetupTimeout`, 60 s).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Client-side limit on connect + TLS (the reference client's `tcpConnectTimeout`, 25 s).
pub const DEFAULT_CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(25);

/// The crypto provider of SMP connections: TLS 1.3 with ChaCha20-Poly1305/SHA-256 only, key
/// exchange X448 (preferred, as the reference) and X25519, ring for everything but X448.
pub fn smp_provider() -> CryptoProvider {
    let ring = rustls::crypto::ring::default_provider();
    CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
        kx_groups: vec![X448, rustls::crypto::ring::kx_group::X25519],
        ..ring
    }
}

fn shared_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(smp_provider())).clone()
}

/// Build the server's TLS configuration for an identity chain `[server cert, CA cert]`.
///
/// `signer` is the server certificate's private key (Ed25519 or Ed448); it is checked against
/// the certificate here so that a mismatched key fails at start-up, not on every handshake.
/// The server offers ALPN `smp/1` followed by `alpn`.
pub fn server_config(
    chain_der: Vec<Vec<u8>>,
    signer: Arc<dyn HandshakeSigner>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(chain_der, signer, alpn, false)
}

/// [`server_config`], optionally asking clients for a certificate as the reference server does
/// (`[TRANSPORT] accept_service_credentials`): services present one, other clients none.
pub fn server_config_with(
    chain_der: Vec<Vec<u8>>,
    signer: Arc<dyn HandshakeSigner>,
    alpn: &[&[u8]],
    ask_client_cert: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let leaf = chain_der
        .first()
        .ok_or(TlsError::Config("empty certificate chain"))?;
    let key = SmpSigningKey::new(signer.clone())
        .ok_or(TlsError::Config("TLS key must be Ed25519 or Ed448"))?;
    verify::leaf_matches_signer(leaf, &|m| signer.sign(m)).map_err(|e| match e {
        ChainError::BadSignature | ChainError::Algorithm => {
            TlsError::Config("private key does not match the server certificate")
        }
        other => TlsError::Certificate(other),
    })?;
    let chain: Vec<CertificateDer<'static>> =
        chain_der.into_iter().map(CertificateDer::from).collect();
    let certified = CertifiedKey::new(chain, Arc::new(key));
    let builder = ServerConfig::builder_with_provider(shared_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = if ask_client_cert {
        builder.with_client_cert_verifier(Arc::new(super::client_cert::ServiceCertVerifier))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![SMP_ALPN.to_vec()];
    for p in alpn {
        if !config.alpn_protocols.iter().any(|q| q == p) {
            config.alpn_protocols.push(p.to_vec());
        }
    }
    Ok(Arc::new(config))
}

/// Facts about a finished handshake that tests and metrics care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeFacts {
    /// The key-exchange group used (X448 for reference clients).
    pub kx_group: Option<NamedGroup>,
    /// Whether a HelloRetryRequest (an extra round trip) was needed.
    pub hello_retry: bool,
}

impl HandshakeFacts {
    fn new(state: &CommonState, flight: &ClientFlight) -> Self {
        HandshakeFacts {
            kx_group: state.negotiated_key_exchange_group().map(|g| g.name()),
            hello_retry: flight.client_hellos > 1
                || state.handshake_kind() == Some(HandshakeKind::FullWithHelloRetryRequest),
        }
    }
}

/// An accepted server-side TLS connection.
#[derive(Debug)]
pub struct TlsServerConn<IO> {
    /// The TLS stream; its socket wrapper no longer records anything.
    pub stream: tokio_rustls::server::TlsStream<Recording<IO>>,
    /// tls-unique: the client's Finished verify_data (32 bytes for SMP).
    pub session_id: Vec<u8>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The server name the client sent (browsers do; SMP clients do not).
    pub sni: Option<String>,
    /// The client's certificate chain, leaf first (services only; empty otherwise).
    pub peer_chain: Vec<Vec<u8>>,
    /// Key exchange and round trips.
    pub facts: HandshakeFacts,
}

impl<IO> TlsServerConn<IO> {
    /// The key-exchange group the handshake used.
    pub fn negotiated_group(&self) -> Option<NamedGroup> {
        self.facts.kx_group
    }
}

/// Where the costly step of accepting a TLS connection runs: rustls' answer to a ClientHello
/// (key pair, key exchange, CertificateVerify), a few hundred µs of CPU that anyone can ask
/// for by replaying one packet. The server runs it on the reading task while it has time to
/// spare and otherwise on threads of lower priority, so a flood of ClientHellos cannot take
/// the runtime from clients already connected.
pub trait HelloWork: Send + Sync + std::fmt::Debug {
    /// Run `job`; resolves once it has run, or has been dropped without running.
    fn answer(
        &self,
        job: Box<dyn FnOnce() + Send + 'static>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Read a client's ClientHello through the recording wrapper (tls-unique, and at most
/// [`super::recording::HANDSHAKE_READ_LIMIT`] of the client's bytes until the handshake ends).
async fn read_hello<IO>(io: IO) -> Result<tokio_rustls::StartHandshake<Recording<IO>>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let recording = Recording::new(io, Tap::Reads);
    let mut start = LazyConfigAcceptor::new(Acceptor::default(), recording)
        .await
        .map_err(handshake_error)?;
    start.io.hello_read();
    Ok(start)
}

/// The rest of the handshake from a read ClientHello, rustls' answer to it computed by `work`
/// (here without it).
async fn answer_hello<IO>(
    start: tokio_rustls::StartHandshake<IO>,
    config: Arc<ServerConfig>,
    work: Option<&dyn HelloWork>,
) -> Result<tokio_rustls::server::TlsStream<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accept = match work {
        None => start.into_stream(config),
        Some(work) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            work.answer(Box::new(move || {
                let _ = tx.send(start.into_stream(config));
            }))
            .await;
            rx.await
                .map_err(|_| TlsError::Config("the TLS handshake thread is gone"))?
        }
    };
    accept.await.map_err(handshake_error)
}

/// Accept a TLS connection on `io`, finishing the handshake within `timeout`.
///
/// Set TCP_NODELAY on TCP sockets: with Nagle on, a handshake stalls ~40 ms on delayed ACKs.
///
/// `config` is used as a template: each connection gets a clone carrying its own key log, and
/// when the client offers ALPN protocols none of which we speak, we continue without ALPN (as
/// the reference server does) instead of failing the handshake.
pub async fn accept<IO>(
    io: IO,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<TlsServerConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(io, config, timeout, None).await
}

/// [`accept`], with rustls' answer to the ClientHello run by `work` (see [`HelloWork`]);
/// `None` runs it here.
pub async fn accept_with<IO>(
    io: IO,
    config: Arc<ServerConfig>,
    timeout: Duration,
    work: Option<&dyn HelloWork>,
) -> Result<TlsServerConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::time::timeout(timeout, accept_inner(io, config, work))
        .await
        .map_err(|_| TlsError::Timeout)?
}

async fn accept_inner<IO>(
    io: IO,
    config: Arc<ServerConfig>,
    work: Option<&dyn HelloWork>,
) -> Result<TlsServerConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = read_hello(io).await?;
    finish_smp(start, config, work).await
}

/// Finish an SMP handshake from a read ClientHello, computing tls-unique.
async fn finish_smp<IO>(
    start: tokio_rustls::StartHandshake<Recording<IO>>,
    config: Arc<ServerConfig>,
    work: Option<&dyn HelloWork>,
) -> Result<TlsServerConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_owned);
    let offered: Option<Vec<Vec<u8>>> = hello.alpn().map(|it| it.map(<[u8]>::to_vec).collect());

    let capture = Arc::new(SecretCapture::default());
    let mut conn_config = (*config).clone();
    conn_config.key_log = capture.clone();
    if let Some(offered) = &offered {
        if !conn_config
            .alpn_protocols
            .iter()
            .any(|p| offered.contains(p))
        {
            conn_config.alpn_protocols.clear();
        }
    }
    let mut stream = answer_hello(start, Arc::new(conn_config), work).await?;

    let (recording, conn) = stream.get_mut();
    let flight = session_flight(recording.finish(), &capture, conn)?;
    let facts = HandshakeFacts::new(conn, &flight);
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let peer_chain = conn
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
        .unwrap_or_default();
    Ok(TlsServerConn {
        stream,
        session_id: flight.verify_data,
        alpn,
        sni,
        peer_chain,
        facts,
    })
}

/// Chooses, from a ClientHello on a shared port, between SMP and another TLS service (the web
/// page, an ACME TLS-ALPN-01 validation).
pub trait TlsRouter: Send + Sync {
    /// `Some(config)` hands the connection to the other service, handshaking with `config`;
    /// `None` keeps it SMP. `alpn` is what the client offered (empty when it offered nothing).
    fn route(&self, sni: Option<&str>, alpn: &[Vec<u8>]) -> Option<Arc<ServerConfig>>;
}

/// A connection accepted on a shared port.
#[derive(Debug)]
pub enum RoutedConn<IO> {
    /// An SMP client, with its session ID.
    Smp(TlsServerConn<IO>),
    /// Another service's client (no tls-unique is computed).
    Other {
        /// The TLS stream.
        stream: tokio_rustls::server::TlsStream<Recording<IO>>,
        /// The ALPN protocol agreed, if any.
        alpn: Option<Vec<u8>>,
        /// The server name the client sent.
        sni: Option<String>,
    },
}

/// Accept a TLS connection on a port shared by SMP and other services: the `router` looks at
/// the ClientHello (SNI, ALPN) and either returns another service's configuration or leaves
/// the connection to SMP, which uses `config` exactly as [`accept`] does. Both answers to the
/// ClientHello run on `work`.
pub async fn accept_routed<IO>(
    io: IO,
    config: Arc<ServerConfig>,
    router: &dyn TlsRouter,
    timeout: Duration,
    work: Option<&dyn HelloWork>,
) -> Result<RoutedConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let routed = async {
        let start = read_hello(io).await?;
        let hello = start.client_hello();
        let sni = hello.server_name().map(str::to_owned);
        let offered: Vec<Vec<u8>> = hello
            .alpn()
            .map(|it| it.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        match router.route(sni.as_deref(), &offered) {
            None => finish_smp(start, config, work).await.map(RoutedConn::Smp),
            Some(other) => {
                let mut stream = answer_hello(start, other, work).await?;
                let (recording, conn) = stream.get_mut();
                let _ = recording.finish();
                let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
                Ok(RoutedConn::Other { stream, alpn, sni })
            }
        }
    };
    tokio::time::timeout(timeout, routed)
        .await
        .map_err(|_| TlsError::Timeout)?
}

/// Accept a TLS connection for a service other than SMP (the web page on a port of its own),
/// answering the ClientHello on `work` and bounding what the client may send before the
/// handshake is over as [`accept`] does.
pub async fn accept_other<IO>(
    io: IO,
    config: Arc<ServerConfig>,
    timeout: Duration,
    work: Option<&dyn HelloWork>,
) -> Result<tokio_rustls::server::TlsStream<Recording<IO>>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = async {
        let mut stream = answer_hello(read_hello(io).await?, config, work).await?;
        let _ = stream.get_mut().0.finish();
        Ok(stream)
    };
    tokio::time::timeout(timeout, accepted)
        .await
        .map_err(|_| TlsError::Timeout)?
}

/// How an SMP client connects; [`connect`] covers the usual case.
#[derive(Clone, Debug)]
pub struct ConnectOptions<'a> {
    /// SHA-256 of the server's identity (CA) certificate DER, from the server address.
    pub fingerprint: [u8; 32],
    /// Host name or address; sent as SNI only when `sni` is set.
    pub server_name: &'a str,
    /// ALPN protocol to offer (`smp/1` for the current handshake).
    pub alpn: Option<&'a [u8]>,
    /// Send SNI: SMP clients do not; web clients do.
    pub sni: bool,
    /// Limit on the whole handshake.
    pub timeout: Duration,
    /// A service's certificate, presented when the server asks for one.
    pub client_cert: Option<super::client_cert::ClientCert>,
}

/// A client-side TLS connection to an SMP server.
#[derive(Debug)]
pub struct TlsClientConn<IO> {
    /// The TLS stream; its socket wrapper no longer records anything.
    pub stream: tokio_rustls::client::TlsStream<Recording<IO>>,
    /// tls-unique: our own Finished verify_data, equal to the server's session ID.
    pub session_id: Vec<u8>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The server's certificate chain, leaf first (for the SMP handshake's key check).
    pub peer_chain: Vec<Vec<u8>>,
    /// Key exchange and round trips.
    pub facts: HandshakeFacts,
}

impl<IO> TlsClientConn<IO> {
    /// The key-exchange group the handshake used.
    pub fn negotiated_group(&self) -> Option<NamedGroup> {
        self.facts.kx_group
    }
}

/// Connect as an SMP client does: no SNI, identity checked against `fingerprint`.
///
/// Set TCP_NODELAY on TCP sockets first: with Nagle on, the handshake stalls ~40 ms (measured:
/// 46 ms vs 3.8 ms for an Ed25519 identity on loopback).
pub async fn connect<IO>(
    io: IO,
    fingerprint: [u8; 32],
    server_name: &str,
    alpn: Option<&[u8]>,
    timeout: Duration,
) -> Result<TlsClientConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    connect_with(
        io,
        ConnectOptions {
            fingerprint,
            server_name,
            alpn,
            sni: false,
            timeout,
            client_cert: None,
        },
    )
    .await
}

/// Connect with explicit [`ConnectOptions`].
pub async fn connect_with<IO>(
    io: IO,
    opts: ConnectOptions<'_>,
) -> Result<TlsClientConn<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let name =
        ServerName::try_from(opts.server_name.to_owned()).map_err(|_| TlsError::ServerName)?;
    let capture = Arc::new(SecretCapture::default());
    let builder = ClientConfig::builder_with_provider(shared_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerIdentityVerifier::new(opts.fingerprint)));
    let mut config = match &opts.client_cert {
        Some(c) => builder.with_client_cert_resolver(Arc::new(
            super::client_cert::AlwaysClientCert::new(c)
                .ok_or(TlsError::Config("client key must be Ed25519 or Ed448"))?,
        )),
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = opts.sni;
    config.resumption = Resumption::disabled();
    config.alpn_protocols = opts.alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
    config.key_log = capture.clone();

    let connector = TlsConnector::from(Arc::new(config));
    let recording = Recording::new(io, Tap::Writes);
    let mut stream = tokio::time::timeout(opts.timeout, connector.connect(name, recording))
        .await
        .map_err(|_| TlsError::Timeout)?
        .map_err(handshake_error)?;

    let (recording, conn) = stream.get_mut();
    let flight = session_flight(recording.finish(), &capture, conn)?;
    let facts = HandshakeFacts::new(conn, &flight);
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let peer_chain = conn
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
        .unwrap_or_default();
    Ok(TlsClientConn {
        stream,
        session_id: flight.verify_data,
        alpn,
        peer_chain,
        facts,
    })
}

/// Recover the client's Finished from the recorded client bytes and the captured secret.
fn session_flight(
    recorded: Option<Vec<u8>>,
    capture: &SecretCapture,
    state: &CommonState,
) -> Result<ClientFlight, TlsError> {
    let recorded = recorded.ok_or(TlsError::TlsUnique(tls_unique::UniqueError::Malformed(
        "client handshake too large",
    )))?;
    let suite = state
        .negotiated_cipher_suite()
        .and_then(|s| Suite::from_rustls(s.suite()))
        .ok_or(TlsError::Config(
            "negotiated cipher suite has no tls-unique support",
        ))?;
    let (client_random, secret) =
        capture
            .take()
            .ok_or(TlsError::TlsUnique(tls_unique::UniqueError::Malformed(
                "no client handshake secret",
            )))?;
    let flight = tls_unique::client_finished(suite, &recorded, &secret)?;
    if flight.client_random[..] != client_random[..] {
        return Err(TlsError::TlsUnique(tls_unique::UniqueError::Malformed(
            "client random does not match the key log",
        )));
    }
    Ok(flight)
}

/// Turn tokio-rustls' `io::Error` back into what went wrong.
fn handshake_error(e: std::io::Error) -> TlsError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match tls {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            TlsError::Identity
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            match other.0.downcast_ref::<ChainError>() {
                Some(ce) => TlsError::Certificate(ce.clone()),
                None => TlsError::Tls(rustls::Error::InvalidCertificate(CertificateError::Other(
                    other,
                ))),
            }
        }
        Some(err) => TlsError::Tls(err),
        None => TlsError::Io(e),
    }
}
