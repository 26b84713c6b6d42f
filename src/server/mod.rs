//! Sessions, subscriptions, delivery and notifications: the SMP relay itself.
//!
//! [`Server`] owns the shared state; [`Server::serve`] runs accept loops on bound listeners
//! until cancelled, so tests start the whole server on port 0; the process runs the same loops
//! as [`Server::smp_service`] under the composition root ([`crate::app`]).

pub mod blocks;
pub mod connector;
pub mod core;
pub mod counting;
pub mod credentials;
pub mod expire;
pub mod heap;
pub mod inactive;
pub mod names;
pub mod onion;
pub mod outbox;
pub mod persist;
pub mod proxy;
pub mod proxy_jobs;
pub mod relays;
pub mod service_jobs;
pub mod session;
pub mod state;
mod view;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::crypto::identity::Identity;
use crate::protocol::version::VersionRange;
use crate::store::memory::MemoryStore;
use crate::transport::smp::{
    server_handshake, HandshakeCredentials, ServiceLookup, HANDSHAKE_TIMEOUT,
};
use crate::transport::tls;
pub use state::{ServerState, Settings};

use crate::service::Service;

/// How long [`Server::serve`] lets sessions finish after shutdown.
pub const SESSION_GRACE: Duration = Duration::from_secs(10);

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The identity (keys, certificates) could not be loaded.
    #[error("server identity: {0}")]
    Identity(#[from] crate::crypto::CryptoError),
    /// TLS could not be configured.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Listening failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// Restoring or saving queues and messages failed.
    #[error("{0}")]
    Persist(#[from] persist::PersistError),
    /// The message journal could not be opened or read.
    #[error("{0}")]
    Journal(#[from] crate::store::journal::JournalError),
    /// Embedded Tor could not start.
    #[error("{0}")]
    Tor(#[from] smp_onion::OnionError),
}

/// A running SMP relay's shared parts.
pub struct Server {
    /// State shared by connections.
    pub state: Arc<ServerState>,
    /// The SMP port's certificate chain and key (replaced on SIGHUP, same CA).
    creds: Arc<credentials::LiveCredentials>,
    versions: VersionRange,
    web: Option<Arc<crate::web::WebService>>,
    /// Connection tasks, awaited at shutdown before state is saved.
    sessions: tokio_util::task::TaskTracker,
    /// Caps on open SMP connections, shared by all SMP listeners.
    conn_limits: Arc<crate::net::ConnLimits>,
}

impl Server {
    /// Build a server with an in-memory store.
    pub fn new(settings: Settings, identity: Identity) -> Result<Self, ServerError> {
        Self::with_store(settings, identity, Arc::new(MemoryStore::new()))
    }

    /// Build a server around a given store.
    pub fn with_store(
        settings: Settings,
        identity: Identity,
        store: Arc<dyn crate::store::Store>,
    ) -> Result<Self, ServerError> {
        let creds = credentials::SmpCredentials::with_client_certs(
            identity,
            settings.accept_service_credentials,
        )?;
        Ok(Server {
            state: Arc::new(ServerState::new(settings, store)),
            creds: Arc::new(credentials::LiveCredentials::new(creds)),
            versions: VersionRange::SERVER,
            web: None,
            sessions: tokio_util::task::TaskTracker::new(),
            conn_limits: crate::net::ConnLimits::new(
                crate::config::limits::Limits::default().smp_caps(crate::net::descriptor_limit()),
            ),
        })
    }

    /// Limit the versions offered (tests of older clients).
    pub fn set_versions(&mut self, v: VersionRange) {
        self.versions = v;
    }

    /// Serve the web page on the `[WEB] https` port when it is also an SMP port.
    pub fn set_web(&mut self, web: Option<Arc<crate::web::WebService>>) {
        self.web = web;
    }

    /// Cap the open SMP connections (`[TRANSPORT] max_connections`, `max_connections_per_ip`).
    pub fn set_conn_limits(&mut self, limits: Arc<crate::net::ConnLimits>) {
        self.conn_limits = limits;
    }

    /// The SMP certificate in use (SIGHUP reloads it).
    pub fn credentials(&self) -> &Arc<credentials::LiveCredentials> {
        &self.creds
    }

    /// The connection tasks, so streams from other listeners (the onion service) are drained
    /// with the SMP sessions.
    pub fn sessions(&self) -> &tokio_util::task::TaskTracker {
        &self.sessions
    }

    /// The web service, when one runs (SIGHUP reloads its certificate).
    pub fn web(&self) -> Option<&Arc<crate::web::WebService>> {
        self.web.as_ref()
    }

    /// Accept connections on all listeners until `shutdown` is cancelled, then let the
    /// sessions finish for up to [`SESSION_GRACE`] (tests and benchmarks; the server process
    /// runs [`Server::smp_service`] under the composition root's one grace period instead).
    pub async fn serve(self: Arc<Self>, listeners: Vec<TcpListener>, shutdown: CancellationToken) {
        let loops = self.clone().accepting(listeners, &shutdown);
        shutdown.cancelled().await;
        self.stop_accepting(loops).await;
        if tokio::time::timeout(SESSION_GRACE, self.sessions_done())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
    }

    /// The SMP listeners as one service: ready once every accept loop runs (the listeners are
    /// bound already, so the kernel queues connections from then on); after shutdown it waits
    /// for the sessions to finish their in-flight block, bounded by the caller's drain deadline.
    pub fn smp_service(self: Arc<Self>, listeners: Vec<TcpListener>) -> Box<dyn Service> {
        crate::service::from_fn("SMP listeners", move |shutdown, mut ready| async move {
            let loops = self.clone().accepting(listeners, &shutdown);
            ready.ready();
            shutdown.cancelled().await;
            self.stop_accepting(loops).await;
            self.sessions_done().await;
            // a closed session's writer may still be flushing its last answers
            while self.state.client_count() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        })
    }

    fn accepting(
        self: Arc<Self>,
        listeners: Vec<TcpListener>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        listeners
            .into_iter()
            .map(|l| {
                let me = self.clone();
                let sd = shutdown.clone();
                tokio::spawn(async move { me.accept_loop(l, sd).await })
            })
            .collect()
    }

    /// After shutdown: mark the server inactive and wait for the accept loops to end.
    async fn stop_accepting(&self, loops: Vec<tokio::task::JoinHandle<()>>) {
        self.state
            .active
            .store(false, std::sync::atomic::Ordering::Release);
        for t in loops {
            let _ = t.await;
        }
    }

    /// Let sessions finish the block they are processing, so every answered command is in
    /// the state saved afterwards. Unbounded: the caller bounds it, so a stuck peer can't
    /// hold shutdown.
    async fn sessions_done(&self) {
        self.sessions.close();
        self.sessions.wait().await;
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let port = listener.local_addr().ok().map(|a| a.port());
        let sockets = self.state.stats.socket_stats(port.unwrap_or(0));
        let web = self
            .web
            .clone()
            .filter(|w| port.is_some() && w.https_port() == port);
        let name = format!("SMP port {}", port.unwrap_or(0));
        let (limits, sd) = (self.conn_limits.clone(), shutdown.clone());
        crate::net::serve_accepts(&name, listener, limits, shutdown, move |sock, _, permit| {
            let (me, sd, web, ss) = (self.clone(), sd.clone(), web.clone(), sockets.clone());
            ss.accepted.inc();
            self.sessions.spawn(async move {
                me.connection(sock, web, sd).await;
                ss.closed.inc();
                drop(permit);
            });
        })
        .await;
    }

    /// Serve one accepted connection: TCP, or a stream from the onion service.
    pub async fn connection<S>(
        self: Arc<Self>,
        sock: S,
        web: Option<Arc<crate::web::WebService>>,
        shutdown: CancellationToken,
    ) where
        S: connector::AsyncReadWrite + 'static,
    {
        // The handshakes run in a future of their own, freed when they end: their state (the
        // TLS accept, the SMP handshake, the partly moved connection) is several KB that would
        // otherwise stay in this task for the connection's life (docs/benchmarks.md).
        let (me, web_shutdown) = (self.clone(), shutdown.clone());
        let handshakes = Box::pin(async move {
            let timeout = tls::DEFAULT_HANDSHAKE_TIMEOUT;
            // one load: the TLS and SMP handshakes of a connection present the same chain
            let creds = me.creds.current();
            let work: &dyn tls::HelloWork = me.state.hello_pool.as_ref();
            let accepted = match &web {
                Some(w) => {
                    let config = creds.tls.clone();
                    tls::accept_routed(sock, config, w.as_ref(), timeout, Some(work)).await
                }
                None => tls::accept_with(sock, creds.tls.clone(), timeout, Some(work))
                    .await
                    .map(tls::RoutedConn::Smp),
            };
            let conn = match accepted {
                Ok(tls::RoutedConn::Smp(c)) => c,
                Ok(tls::RoutedConn::Other { stream, alpn, .. }) => {
                    if let Some(w) = web {
                        w.serve_tls(stream, alpn, web_shutdown).await;
                    }
                    return None;
                }
                Err(e) => {
                    if me.state.settings.log_tls_errors {
                        tracing::warn!("TLS handshake failed: {e}");
                    } else {
                        tracing::debug!("TLS handshake failed: {e}");
                    }
                    return None;
                }
            };
            let alpn_smp = conn.alpn.as_deref() == Some(tls::SMP_ALPN);
            let ask_client_cert = creds.ask_client_cert;
            let (r, w) = tokio::io::split(conn.stream);
            let creds = HandshakeCredentials {
                chain: &creds.identity.chain,
                sign_key: &creds.identity.server_key,
                key_hash: &creds.identity.fingerprint.0,
            };
            let core = &me.state.core;
            let get_service = |role, chain: &[Vec<u8>], fp: &[u8; 32]| {
                let id_len = core.settings.queue_id_bytes;
                core.services()
                    .get_or_create(role, chain, fp, crate::clock::now_secs(), &mut || {
                        crate::crypto::random_bytes(id_len)
                    })
                    .map_err(|_| ())
            };
            let services = ask_client_cert.then_some(ServiceLookup {
                tls_chain: &conn.peer_chain,
                get_service: &get_service,
            });
            let hs = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                server_handshake(
                    r,
                    w,
                    conn.session_id,
                    alpn_smp,
                    &creds,
                    me.versions,
                    services,
                ),
            )
            .await;
            match hs {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    tracing::debug!("SMP handshake failed: {e}");
                    None
                }
                Err(_) => None,
            }
        });
        let Some(sess) = handshakes.await else {
            return;
        };
        Box::pin(session::run_session(self.state.clone(), sess, shutdown)).await;
    }
}
