//! Shared server state: the command core, the connected clients and their output queues, and
//! the parts around them (proxy agent, Tor status).
//!
//! The core ([`super::core::Core`]) holds what commands change; this module holds what only
//! the I/O side needs (each connection's outbox, activity times, proxy permits) and carries out
//! the core's deliveries to other connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::core::{ClientId, ClientState, Core, Delivery, Outgoing};
use super::outbox::{Outbox, Pushed};
use crate::protocol::version::Version;
use crate::store::Store;
use crate::sync::lock;

/// Server behaviour that the INI file controls.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[AUTH] new_queues`.
    pub allow_new_queues: bool,
    /// `[AUTH] create_password`.
    pub create_password: Option<Vec<u8>>,
    /// Messages per queue before the quota marker.
    pub msg_queue_quota: usize,
    /// Message lifetime in seconds (`[STORE_LOG] expire_messages_days`).
    pub message_ttl: Option<i64>,
    /// Expire old messages of a queue when a message is sent to it.
    pub expire_messages_on_send: bool,
    /// Length of generated queue IDs.
    pub queue_id_bytes: usize,
    /// Length of message IDs (also the message nonce: at least 24).
    pub msg_id_bytes: usize,
    /// Bytes of output a connection may have queued before it counts as not reading
    /// (see `server::outbox`); the reference bounds its queue by entries (`tbqSize`).
    pub client_output_bytes: usize,
    /// Notification lifetime in seconds.
    pub ntf_ttl: i64,
    /// `[INACTIVE_CLIENTS]`: (ttl, check interval) in seconds; `None` keeps idle clients.
    pub inactive_clients: Option<(u64, u64)>,
    /// `[TRANSPORT] log_tls_errors`: failed TLS handshakes at warning level, else debug.
    pub log_tls_errors: bool,
    /// `[TRANSPORT] accept_service_credentials` (stable; 7.0 always on): ask clients for a TLS
    /// certificate so services can do the service handshake.
    pub accept_service_credentials: bool,
    /// Serve as a proxy for private message routing (PRXY/PFWD); the reference always does.
    pub allow_proxy: bool,
    /// Proxied commands in flight per connection (`[PROXY] client_concurrency`).
    pub proxy_concurrency: usize,
    /// How often old messages are expired (the reference: 2 hours).
    pub expire_messages_interval: std::time::Duration,
    /// How often old notifications are expired (the reference: 1 hour).
    pub expire_ntfs_interval: std::time::Duration,
    /// Expire old messages once at start (`[STORE_LOG] expire_messages_on_start`).
    pub expire_messages_on_start: bool,
    /// `[PROXY] own_server_domains`: relays on these domains (or their subdomains) are counted
    /// in the `*Own` proxy statistics too.
    pub own_server_domains: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_new_queues: true,
            create_password: None,
            msg_queue_quota: 128,
            message_ttl: Some(21 * 86400),
            expire_messages_on_send: true,
            queue_id_bytes: 24,
            msg_id_bytes: 24,
            client_output_bytes: super::outbox::DEFAULT_OUTPUT_BYTES,
            ntf_ttl: 24 * 3600,
            inactive_clients: None,
            log_tls_errors: false,
            accept_service_credentials: true,
            allow_proxy: true,
            proxy_concurrency: 32,
            expire_messages_interval: std::time::Duration::from_secs(7200),
            expire_ntfs_interval: std::time::Duration::from_secs(3600),
            expire_messages_on_start: true,
            own_server_domains: Vec::new(),
        }
    }
}

/// A connected client as the I/O side sees it.
#[derive(Debug)]
pub struct ClientHandle {
    /// Connection number.
    pub id: ClientId,
    /// What the core knows of it (version, subscriptions).
    pub core: Arc<ClientState>,
    /// Transmissions waiting for the connection's writer, bounded by bytes.
    pub outbox: Outbox,
    /// When the connection was made (Unix seconds).
    pub created_at: i64,
    /// Last time a block was received (Unix seconds).
    pub rcv_active_at: AtomicI64,
    /// Last time a block was sent (Unix seconds).
    pub snd_active_at: AtomicI64,
    /// Limits proxied commands in flight for this connection; the read loop takes a permit
    /// before it spawns one, so a client at the limit is simply not read further.
    pub proxy_permits: Arc<tokio::sync::Semaphore>,
    /// The session ID (tls-unique), set once the handshake is done (control port `clients`).
    pub session_id: std::sync::OnceLock<Vec<u8>>,
    /// Cancelled when the connection ends (by either side): its tasks stop with it.
    pub closed: tokio_util::sync::CancellationToken,
    /// Name resolutions in flight for this connection, made on its first RSLV.
    pub resolver_slots: std::sync::OnceLock<Arc<super::names::ResolverSlots>>,
}

impl ClientHandle {
    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.core.is_connected() && !self.closed.is_cancelled()
    }

    /// Queue unsolicited transmissions (deliveries, proxied answers) without waiting. A client
    /// that lets its outbox overflow is disconnected: it is not reading, and its messages stay
    /// in the store for its next subscription.
    pub fn push(&self, items: Vec<Outgoing>) -> Pushed {
        if !self.is_connected() {
            return Pushed::Closed;
        }
        let r = self.outbox.push(items);
        if r == Pushed::Overflow {
            tracing::debug!("disconnecting a client that does not read its deliveries");
            self.closed.cancel();
        }
        r
    }
}

/// Everything connections share.
pub struct ServerState {
    /// The command core: queues, subscriptions, notifications.
    pub core: Core,
    /// Settings (the same as the core's, for the services around it).
    pub settings: Settings,
    /// The queue and message store (the core's).
    pub store: Arc<dyn Store>,
    /// Event counters (daily CSV, control port, Prometheus; the core's).
    pub stats: Arc<crate::stats::ServerStats>,
    /// Connected clients.
    pub clients: Mutex<HashMap<ClientId, Arc<ClientHandle>>>,
    next_client_id: AtomicU64,
    /// Cleared when the server stops accepting commands.
    pub active: AtomicBool,
    /// The onion address once embedded Tor has launched the onion service (`[TOR]`).
    pub onion_address: std::sync::OnceLock<String>,
    /// Embedded Tor's state for the operator, when `[TOR] enable = on`.
    pub tor_status: std::sync::OnceLock<super::onion::TorStatus>,
    /// Connections to destination relays (proxy role).
    pub proxy: Arc<super::proxy::ProxyAgent>,
    /// The names role's resolver, when `[NAMES] enable = on`.
    pub names: std::sync::OnceLock<Arc<crate::names::Resolver>>,
    /// Threads that verify blocks off the runtime workers (`server::blocks`).
    pub verify_pool: super::blocks::VerifyPool,
    /// Threads that answer ClientHellos when the runtime is busy (`transport::tls::HelloWork`).
    pub hello_pool: Arc<super::blocks::VerifyPool>,
}

impl ServerState {
    /// New state around a store.
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> Self {
        let stats = Arc::new(crate::stats::ServerStats::new(crate::clock::now_secs()));
        let io_waits = store.io_waits();
        ServerState {
            core: Core::new(settings.clone(), store.clone(), stats.clone()),
            settings,
            store,
            stats,
            clients: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            active: AtomicBool::new(true),
            onion_address: std::sync::OnceLock::new(),
            tor_status: std::sync::OnceLock::new(),
            proxy: Arc::new(super::proxy::ProxyAgent::new(
                std::time::Duration::from_secs(20),
            )),
            names: std::sync::OnceLock::new(),
            verify_pool: super::blocks::VerifyPool::with_waiting(io_waits),
            hello_pool: Arc::new(super::blocks::VerifyPool::for_handshakes()),
        }
    }

    /// Register a new connection at time `now`.
    pub fn add_client(&self, version: Version, now: i64) -> Arc<ClientHandle> {
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(ClientHandle {
            id,
            core: Arc::new(ClientState::new(id, version)),
            outbox: Outbox::new(self.settings.client_output_bytes),
            created_at: now,
            rcv_active_at: AtomicI64::new(now),
            snd_active_at: AtomicI64::new(now),
            proxy_permits: Arc::new(tokio::sync::Semaphore::new(
                self.settings.proxy_concurrency.max(1),
            )),
            session_id: std::sync::OnceLock::new(),
            closed: tokio_util::sync::CancellationToken::new(),
            resolver_slots: std::sync::OnceLock::new(),
        });
        lock(&self.clients).insert(id, c.clone());
        c
    }

    /// Forget a connection and the subscriptions it held.
    pub fn remove_client(&self, c: &Arc<ClientHandle>) {
        c.closed.cancel();
        // What is queued (the last block's replies) still goes out; the writer then ends.
        c.outbox.finish();
        self.core.disconnect(&c.core);
        lock(&self.clients).remove(&c.id);
    }

    /// A connected client by number.
    pub fn client(&self, id: ClientId) -> Option<Arc<ClientHandle>> {
        lock(&self.clients).get(&id).cloned()
    }

    /// Carry out the core's transmissions for other connections. A notification its
    /// subscriber cannot take now is kept for the next NSUB instead of being dropped.
    pub fn deliver(&self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let pushed = match self.client(d.to) {
                Some(c) if d.ntf.is_some() && c.outbox.is_busy() => Pushed::Overflow,
                Some(c) => c.push(vec![d.item]),
                None => Pushed::Closed,
            };
            if pushed != Pushed::Queued {
                if let Some((nid, ntf)) = d.ntf {
                    self.core.requeue_ntf(&nid, ntf);
                }
            }
        }
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }
}
impl Settings {
    /// Settings from the INI model (`[AUTH]`, `[STORE_LOG]` expiry keys).
    pub fn from_config(c: &crate::config::Config) -> Self {
        let d = Settings::default();
        Settings {
            allow_new_queues: c.auth.new_queues,
            create_password: c
                .auth
                .create_password
                .as_ref()
                .map(|p| p.as_bytes().to_vec()),
            message_ttl: match c.store_log.expire_messages_days {
                Some(0) => None,
                Some(days) => Some(days as i64 * 86400),
                None => d.message_ttl,
            },
            expire_messages_on_send: c.store_log.expire_messages_on_send,
            ntf_ttl: c.store_log.expire_ntfs_hours as i64 * 3600,
            inactive_clients: c
                .inactive_clients
                .as_ref()
                .map(|i| (i.ttl_secs, i.check_interval_secs)),
            log_tls_errors: c.transport.log_tls_errors,
            accept_service_credentials: c.transport.accept_service_credentials,
            proxy_concurrency: c.proxy.client_concurrency as usize,
            expire_messages_on_start: c.store_log.expire_messages_on_start,
            own_server_domains: c.proxy.own_server_domains.clone(),
            ..d
        }
    }
}
