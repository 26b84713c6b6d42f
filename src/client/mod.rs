//! An SMP client: TLS, the SMP handshake, authorized commands and response correlation.
//!
//! Used by the integration tests and the benchmark now, and by the proxy role later. Responses
//! are matched to requests by correlation ID; messages the server pushes (MSG, END, DELD,
//! NMSG) arrive on [`SmpClient::next_event`].

pub mod dispatch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use dispatch::{Dispatch, Received};

use crate::crypto::cbox;
use crate::crypto::keys::{DhKeyPair, PrivateSignKey, PublicKey};
use crate::protocol::command::Command;
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    batch, decode_client, encode_client, split_batch, with_service_auth, THParams,
};
use crate::protocol::version::{VersionRange, SMP_BLOCK_SIZE};
use crate::transport::service::ServiceCredentials;
use crate::transport::smp::{client_handshake_service, BlockWriter, SmpTransportError};
use crate::transport::{self, Recording, TlsError};

type Stream = tokio_rustls::client::TlsStream<Recording<crate::transport::stream::BoxedStream>>;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS failed.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// SMP transport or handshake failed.
    #[error("SMP transport: {0}")]
    Transport(#[from] SmpTransportError),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No response in time.
    #[error("response timeout")]
    Timeout,
    /// The connection closed.
    #[error("connection closed")]
    Closed,
    /// The command could not be authorized (e.g. no server session key for an X25519 key).
    #[error("cannot authorize: {0}")]
    Auth(&'static str),
}

/// A queue key the client authorizes commands with.
#[derive(Debug)]
pub enum AuthKey {
    /// Ed25519/Ed448 signature key.
    Sign(PrivateSignKey),
    /// X25519 key: crypto_box authenticator with the server's session key (v7+).
    Dh(DhKeyPair),
}

impl AuthKey {
    /// The public key to register with the server.
    pub fn public(&self) -> PublicKey {
        match self {
            AuthKey::Sign(k) => k.public(),
            AuthKey::Dh(k) => k.public(),
        }
    }
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Versions the client supports.
    pub versions: VersionRange,
    /// Offer ALPN `smp/1` (without it servers offer only v6).
    pub alpn: bool,
    /// How long to wait for a response.
    pub timeout: Duration,
    /// Connect as an SMP proxy (to a relay).
    pub proxy: bool,
    /// Unsolicited messages kept until [`SmpClient::next_event`] reads them; more are dropped
    /// (and counted), so a server cannot grow this process's memory.
    pub event_capacity: usize,
    /// Connect as a service: present its TLS certificate and do the service handshake.
    pub service: Option<Arc<ServiceCredentials>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            versions: VersionRange::SERVER,
            alpn: true,
            timeout: Duration::from_secs(20),
            proxy: false,
            event_capacity: 4096,
            service: None,
        }
    }
}

/// A connected SMP client.
pub struct SmpClient {
    /// Framing parameters (version, session ID).
    pub params: THParams,
    /// The server's session key, verified against its certificate.
    pub server_dh_key: Option<PublicKey>,
    /// The range the server offered.
    pub server_range: VersionRange,
    /// DH secret of our and the server's session keys (what a proxy uses to talk to a relay).
    pub session_secret: Option<[u8; 32]>,
    /// The server's certificate chain and signed session key.
    pub server_auth: Option<crate::protocol::handshake::CertChainPubKey>,
    /// The service ID the server assigned, in a service session.
    pub service_id: Option<Vec<u8>>,
    service: Option<Arc<ServiceCredentials>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    writer: tokio::sync::Mutex<BlockWriter<WriteHalf<Stream>>>,
    dispatch: Arc<Dispatch>,
    events: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    timeout: Duration,
    reader_task: tokio::task::JoinHandle<()>,
}

impl Drop for SmpClient {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

/// A fresh random correlation ID (24 bytes: it doubles as the authenticator nonce).
pub fn new_corr_id() -> Vec<u8> {
    crate::crypto::random_bytes(24)
}

impl SmpClient {
    /// Connect over TCP+TLS and run the SMP handshake.
    pub async fn connect(
        addr: SocketAddr,
        fingerprint: [u8; 32],
        opts: ClientOptions,
    ) -> Result<SmpClient, ClientError> {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        Self::connect_stream(Box::new(tcp), fingerprint, opts).await
    }

    /// Run TLS and the SMP handshake over an already open stream (a SOCKS or Tor stream,
    /// for example).
    pub async fn connect_stream(
        stream: crate::transport::stream::BoxedStream,
        fingerprint: [u8; 32],
        opts: ClientOptions,
    ) -> Result<SmpClient, ClientError> {
        let tcp = stream;
        let alpn = if opts.alpn {
            Some(transport::SMP_ALPN)
        } else {
            None
        };
        let tls = transport::connect_with(
            tcp,
            transport::ConnectOptions {
                fingerprint,
                server_name: "localhost",
                alpn,
                sni: false,
                timeout: opts.timeout,
                client_cert: opts.service.as_ref().map(|c| c.tls_cert()),
            },
        )
        .await?;
        let (r, w) = tokio::io::split(tls.stream);
        let sess = tokio::time::timeout(
            opts.timeout,
            client_handshake_service(
                r,
                w,
                tls.session_id,
                &fingerprint,
                opts.versions,
                &tls.peer_chain,
                opts.proxy,
                opts.service.as_deref(),
            ),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;
        let session_secret = match &sess.server_dh_key {
            Some(k) => Some(
                sess.dh_key
                    .dh(k)
                    .map_err(|_| ClientError::Auth("bad server key"))?,
            ),
            None => None,
        };
        let (dispatch, erx) = Dispatch::new(opts.event_capacity);
        let dispatch = Arc::new(dispatch);
        let params = sess.params.clone();
        let mut reader = sess.reader;
        let d2 = dispatch.clone();
        let params2 = params.clone();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closed2 = closed.clone();
        let reader_task = tokio::spawn(async move {
            while let Ok(block) = reader.read_block().await {
                let Ok(content) = block else { continue };
                let Ok(ts) = split_batch(&content) else {
                    continue;
                };
                for t in ts {
                    let Ok((corr, ent, msg)) = decode_client(&params2, t) else {
                        continue;
                    };
                    d2.deliver(&corr, ent, msg);
                }
            }
            closed2.store(true, std::sync::atomic::Ordering::Release);
            // Fail the requests still waiting.
            d2.pending.clear();
        });
        Ok(SmpClient {
            params,
            server_dh_key: sess.server_dh_key,
            server_range: sess.server_range,
            session_secret,
            server_auth: sess.server_auth,
            service_id: sess.service_id,
            service: opts.service.clone(),
            closed,
            writer: tokio::sync::Mutex::new(sess.writer),
            dispatch,
            events: tokio::sync::Mutex::new(erx),
            timeout: opts.timeout,
            reader_task,
        })
    }

    /// A copy of the service session key (it signs SUBS/NSUBS), in a service session.
    pub fn service_session_key(&self) -> Option<PrivateSignKey> {
        let c = self
            .service
            .as_ref()
            .filter(|_| self.service_id.is_some())?;
        PrivateSignKey::from_pkcs8_der(&c.session_key.to_pkcs8_der()).ok()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Close the connection: stop reading and fail every waiting request.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.reader_task.abort();
        self.dispatch.pending.clear();
    }

    /// Unsolicited messages dropped because nobody read them (see
    /// [`ClientOptions::event_capacity`]).
    pub fn dropped_events(&self) -> u64 {
        self.dispatch.dropped()
    }

    /// Requests waiting for a reply now.
    pub fn pending_requests(&self) -> usize {
        self.dispatch.pending.len()
    }

    /// The negotiated version.
    pub fn version(&self) -> u16 {
        self.params.version
    }

    /// Encode and authorize one transmission.
    pub fn transmission(
        &self,
        corr: &[u8],
        entity: &[u8],
        cmd: &Command,
        key: Option<&AuthKey>,
    ) -> Result<Vec<u8>, ClientError> {
        let ct = encode_client(&self.params, corr, entity, cmd);
        // In a service session, NEW/SUB/NSUB are signed by the service key too, and the queue
        // key then signs the certificate hash with the transmission (as the reference client).
        let svc = self
            .service
            .as_ref()
            .filter(|_| self.service_id.is_some() && cmd.uses_service_auth() && key.is_some());
        let hashed;
        let for_auth: &[u8] = match svc {
            Some(c) => {
                hashed = [c.cert_hash().as_slice(), ct.for_auth.as_slice()].concat();
                &hashed
            }
            None => &ct.for_auth,
        };
        let auth = match key {
            None => None,
            Some(AuthKey::Sign(k)) => Some(k.sign(for_auth)),
            Some(AuthKey::Dh(k)) => {
                let srv = self
                    .server_dh_key
                    .as_ref()
                    .ok_or(ClientError::Auth("server sent no session key"))?;
                Some(
                    cbox::cb_authenticate(srv, k, &cbox::cb_nonce(corr), for_auth)
                        .map_err(|_| ClientError::Auth("bad key"))?,
                )
            }
        };
        let service_sig = svc.map(|c| c.session_key.sign(&ct.for_auth));
        Ok(with_service_auth(
            &self.params,
            auth.as_deref(),
            service_sig.as_deref(),
            &ct.to_send,
        ))
    }

    /// Send a command and wait for its response: (entity ID, message).
    pub async fn request(
        &self,
        entity: &[u8],
        cmd: Command,
        key: Option<&AuthKey>,
    ) -> Result<(Vec<u8>, BrokerMsg), ClientError> {
        let corr = new_corr_id();
        let t = self.transmission(&corr, entity, &cmd, key)?;
        let mut r = self.send_batch(vec![(corr, t)]).await?;
        r.pop().ok_or(ClientError::Closed)
    }

    /// Send several transmissions in as few blocks as possible and wait for all responses.
    ///
    /// Writing is bounded by the response timeout too: a server that stops reading gets the
    /// connection closed (and [`ClientError::Timeout`]) instead of parking every request
    /// behind the writer. Waiters are withdrawn however this returns or is cancelled.
    pub async fn send_batch(
        &self,
        items: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<(Vec<u8>, BrokerMsg)>, ClientError> {
        let (corrs, ts): (Vec<Vec<u8>>, Vec<Vec<u8>>) = items.into_iter().unzip();
        let (_guard, rxs) = self.dispatch.pending.register(corrs);
        let write = async {
            let mut w = self.writer.lock().await;
            for b in batch(&ts, SMP_BLOCK_SIZE) {
                let content = b.map_err(|_| {
                    ClientError::Transport(SmpTransportError::Transport(
                        crate::protocol::errors::TransportError::LargeMsg,
                    ))
                })?;
                w.write_block(&content).await?;
            }
            Ok::<_, ClientError>(())
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(r) => r?,
            Err(_) => {
                self.close();
                return Err(ClientError::Timeout);
            }
        }
        let mut out = Vec::new();
        for rx in rxs {
            match tokio::time::timeout(self.timeout, rx).await {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(_)) => return Err(ClientError::Closed),
                Err(_) => return Err(ClientError::Timeout),
            }
        }
        Ok(out)
    }

    /// Write block content as is (tests of malformed input).
    pub async fn send_raw_content(&self, content: &[u8]) -> Result<(), ClientError> {
        self.writer.lock().await.write_block(content).await?;
        Ok(())
    }

    /// The next message pushed by the server (or a response nobody waited for).
    pub async fn next_event(&self, wait: Duration) -> Option<(Vec<u8>, BrokerMsg)> {
        let mut rx = self.events.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }
}
