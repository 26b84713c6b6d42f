//! Sessions, subscriptions, delivery and notifications: the SMP relay itself.
//!
//! [`Server`] owns the shared state; [`Server::serve`] runs accept loops on bound listeners
//! until cancelled, so tests start the whole server on port 0 and the CLI on configured ports.

pub mod connector;
pub mod core;
pub mod counting;
pub mod credentials;
pub mod expire;
pub mod inactive;
pub mod names;
pub mod onion;
pub mod outbox;
pub mod persist;
pub mod proxy;
pub mod proxy_jobs;
pub mod relays;
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
use crate::transport::smp::{server_handshake, HandshakeCredentials, HANDSHAKE_TIMEOUT};
use crate::transport::tls;
pub use state::{ServerState, Settings};

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
    /// The control port, statistics or metrics could not start.
    #[error("{0}")]
    Ops(#[from] crate::control::OpsError),
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
        let creds = credentials::SmpCredentials::new(identity)?;
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

    /// The web service, when one runs (SIGHUP reloads its certificate).
    pub fn web(&self) -> Option<&Arc<crate::web::WebService>> {
        self.web.as_ref()
    }

    /// Accept connections on all listeners until `shutdown` is cancelled.
    pub async fn serve(self: Arc<Self>, listeners: Vec<TcpListener>, shutdown: CancellationToken) {
        let mut tasks = Vec::new();
        for l in listeners {
            let me = self.clone();
            let sd = shutdown.clone();
            tasks.push(tokio::spawn(async move { me.accept_loop(l, sd).await }));
        }
        shutdown.cancelled().await;
        self.state
            .active
            .store(false, std::sync::atomic::Ordering::Release);
        for t in tasks {
            let _ = t.await;
        }
        // Let sessions finish the block they are processing, so every answered command is in
        // the state saved after this returns; bounded so a stuck peer can't hold shutdown.
        self.sessions.close();
        if tokio::time::timeout(Duration::from_secs(10), self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
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
        let timeout = tls::DEFAULT_HANDSHAKE_TIMEOUT;
        // one load: the TLS and SMP handshakes of a connection present the same chain
        let creds = self.creds.current();
        let accepted = match &web {
            Some(w) => tls::accept_routed(sock, creds.tls.clone(), w.as_ref(), timeout).await,
            None => tls::accept(sock, creds.tls.clone(), timeout)
                .await
                .map(tls::RoutedConn::Smp),
        };
        let conn = match accepted {
            Ok(tls::RoutedConn::Smp(c)) => c,
            Ok(tls::RoutedConn::Other { stream, alpn, .. }) => {
                if let Some(w) = web {
                    w.serve_tls(stream, alpn, shutdown).await;
                }
                return;
            }
            Err(e) => {
                if self.state.settings.log_tls_errors {
                    tracing::warn!("TLS handshake failed: {e}");
                } else {
                    tracing::debug!("TLS handshake failed: {e}");
                }
                return;
            }
        };
        let alpn_smp = conn.alpn.as_deref() == Some(tls::SMP_ALPN);
        let (r, w) = tokio::io::split(conn.stream);
        let creds = HandshakeCredentials {
            chain: &creds.identity.chain,
            sign_key: &creds.identity.server_key,
            key_hash: &creds.identity.fingerprint.0,
        };
        let hs = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            server_handshake(r, w, conn.session_id, alpn_smp, &creds, self.versions),
        )
        .await;
        let sess = match hs {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!("SMP handshake failed: {e}");
                return;
            }
            Err(_) => return,
        };
        session::run_session(self.state.clone(), sess, shutdown).await;
    }
}

/// Run the SMP service from a loaded configuration on already-bound listeners until
/// `shutdown` is cancelled. Taking bound listeners lets tests bind port 0 and lets `start`
/// report bind errors itself.
pub async fn run(
    config: Arc<crate::config::Config>,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let identity = crate::crypto::identity::load_identity(&config.paths.cfg_dir)?;
    let settings = Settings::from_config(&config);
    let store = persist::Persistence::open(&config)?;
    let fingerprint = identity.fingerprint.to_base64url();
    let mut server = Server::with_store(settings, identity, store.serving_store())?;
    let caps = config.limits.smp_caps(crate::net::descriptor_limit());
    tracing::info!(
        "SMP: at most {} connections, {} per address",
        caps.total,
        caps.per_ip
    );
    server.set_conn_limits(crate::net::ConnLimits::new(caps));
    server.set_versions(VersionRange {
        min: crate::protocol::version::MIN_SERVER_VERSION,
        max: config.transport.max_smp_version,
    });
    names::start(&server.state, config.names.as_ref());
    let mut tor = if config.tor.enable && !config.start.maintenance {
        Some(onion::launch(&config, &fingerprint).await?)
    } else {
        None
    };
    if !config.start.maintenance {
        let web_config = onion::web_config(&config);
        server.set_web(crate::web::start(
            &web_config,
            &fingerprint,
            tor.as_ref().map(|t| t.address.clone()),
            shutdown.clone(),
        ));
    }
    let server = Arc::new(server);
    server.state.proxy.set_route(proxy::Route {
        egress: onion::egress(&config, tor.as_ref().map(|t| t.tor.clone())),
        host_mode: config.proxy.host_mode,
        required_host_mode: config.proxy.required_host_mode,
        limits: config.limits.egress,
    });
    if let Some(t) = &mut tor {
        let _ = server.state.onion_address.set(t.address.clone());
        let _ = server.state.tor_status.set(t.status());
        let other = server.web.clone().map(|w| {
            let http = config.web.http;
            let sd = shutdown.clone();
            let tracker = server.sessions.clone();
            Arc::new(move |port: u16, stream: connector::BoxedStream| {
                let (w, sd) = (w.clone(), sd.clone());
                if Some(port) == http {
                    tracker.spawn(async move { w.serve_onion_http(stream, sd).await });
                } else {
                    tracker.spawn(w.serve_https_stream(stream, sd));
                }
            }) as onion::StreamHandler
        });
        t.serve(server.clone(), other, shutdown.clone());
    }
    let result = serve_persisted(server, &store, listeners, shutdown, config).await;
    drop(tor);
    result
}

/// Restore saved state, serve until `shutdown` (unless in maintenance mode), then save state.
/// Saving happens after the listeners stopped, so nothing changes while it runs. The
/// operations services (statistics, control port, metrics, SIGHUP) run around the serving.
pub async fn serve_persisted(
    server: Arc<Server>,
    store: &persist::Persistence,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
    config: Arc<crate::config::Config>,
) -> Result<(), ServerError> {
    let now = crate::clock::now_secs();
    store.restore(&server.state, now)?;
    // after the restore, so the statistics count the restored queues and messages
    let ops =
        crate::control::Ops::start(config.clone(), server.state.clone(), shutdown.clone()).await?;
    ops.add_reload_hooks(crate::control::reload::server_hooks(&server, &config));
    let s = &server.state.settings;
    if s.expire_messages_on_start {
        if let Some(ttl) = s.message_ttl {
            let n = expire::expire_messages(&server.state, now - ttl);
            tracing::info!("expired messages at start: {n}");
        }
    }
    let ops = if config.start.maintenance {
        println!("Server started in 'maintenance' mode, exiting");
        tracing::info!("server started in maintenance mode, exiting");
        ops
    } else {
        let exp = tokio::spawn(expire::run(server.state.clone(), shutdown.clone()));
        let serving = server.clone().serve(listeners, shutdown.clone());
        let ops = crate::control::while_serving(ops, shutdown, serving).await;
        let _ = exp.await;
        ops
    };
    tracing::info!("saving server state...");
    let saved = store.save_until_done(&server.state).await;
    ops.stop().await;
    saved?;
    tracing::info!("server stopped");
    Ok(())
}
