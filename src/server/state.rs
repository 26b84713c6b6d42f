//! Shared server state: settings, connected clients, subscribers and pending notifications.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::protocol::response::BrokerMsg;
use crate::protocol::version::Version;
use crate::store::Store;

/// One outgoing transmission: (corrId, entityId, message).
pub type Outgoing = (Vec<u8>, Vec<u8>, BrokerMsg);

/// Lock a mutex, recovering from poisoning (state is updated in single steps).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
    /// Capacity of each client's outgoing queue (the reference's `tbqSize`).
    pub client_queue_size: usize,
    /// Notification lifetime in seconds.
    pub ntf_ttl: i64,
    /// `[INACTIVE_CLIENTS]`: (ttl, check interval) in seconds; `None` keeps idle clients.
    pub inactive_clients: Option<(u64, u64)>,
    /// `[TRANSPORT] log_tls_errors`: failed TLS handshakes at warning level, else debug.
    pub log_tls_errors: bool,
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
            client_queue_size: 128,
            ntf_ttl: 24 * 3600,
            inactive_clients: None,
            log_tls_errors: false,
            allow_proxy: true,
            proxy_concurrency: 32,
            expire_messages_interval: std::time::Duration::from_secs(7200),
            expire_ntfs_interval: std::time::Duration::from_secs(3600),
            expire_messages_on_start: true,
            own_server_domains: Vec::new(),
        }
    }
}

/// A recipient subscription (or the marker that GET was used, which forbids SUB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// True when created by GET: SUB on this queue is then prohibited in this connection.
    pub prohibit: bool,
    /// The message delivered and not yet acknowledged (ID, delivery time).
    pub delivered: Option<(Vec<u8>, i64)>,
}

/// A connected client as other connections see it.
#[derive(Debug)]
pub struct ClientHandle {
    /// Connection number.
    pub id: u64,
    /// Negotiated version (messages are encoded for it).
    pub version: Version,
    /// Outgoing messages to the connection's writer.
    pub tx: mpsc::Sender<Vec<Outgoing>>,
    /// Recipient subscriptions by recipient ID.
    pub subs: Mutex<HashMap<Vec<u8>, Sub>>,
    /// Notifier subscriptions by notifier ID.
    pub ntf_subs: Mutex<HashSet<Vec<u8>>>,
    /// Cleared when the connection ends.
    pub connected: AtomicBool,
    /// When the connection was made (Unix seconds).
    pub created_at: i64,
    /// Last time a block was received (Unix seconds).
    pub rcv_active_at: AtomicI64,
    /// Last time a block was sent (Unix seconds).
    pub snd_active_at: AtomicI64,
    /// Limits proxied commands in flight for this connection.
    pub proxy_permits: Arc<tokio::sync::Semaphore>,
    /// The session ID (tls-unique), set once the handshake is done (control port `clients`).
    pub session_id: std::sync::OnceLock<Vec<u8>>,
    /// Name resolutions in flight for this connection, made on its first RSLV.
    pub resolver_slots: std::sync::OnceLock<Arc<super::names::ResolverSlots>>,
}

impl ClientHandle {
    /// Queue messages for this client without waiting; if its queue is full, a task waits
    /// (the reference forks a delivery thread in that case).
    pub fn send(self: &Arc<Self>, msgs: Vec<Outgoing>) {
        if !self.connected.load(Ordering::Acquire) {
            return;
        }
        self.snd_active_at
            .store(super::commands::now_secs(), Ordering::Relaxed);
        match self.tx.try_send(msgs) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(m)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(m).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// A notification waiting for the notification server.
#[derive(Debug, Clone)]
pub struct PendingNtf {
    /// Nonce of the encrypted metadata.
    pub nonce: [u8; 24],
    /// Encrypted (message ID, timestamp).
    pub enc_meta: Vec<u8>,
    /// When it was created (for expiry).
    pub ts: i64,
    /// The message it announces (saved with it at shutdown).
    pub msg_id: Vec<u8>,
}

/// Everything connections share.
pub struct ServerState {
    /// Settings.
    pub settings: Settings,
    /// The queue and message store.
    pub store: Arc<dyn Store>,
    /// Which client is subscribed to each recipient ID.
    pub subscribers: Mutex<HashMap<Vec<u8>, Arc<ClientHandle>>>,
    /// Which client is subscribed to each notifier ID.
    pub ntf_subscribers: Mutex<HashMap<Vec<u8>, Arc<ClientHandle>>>,
    /// Notifications not yet delivered, by notifier ID.
    pub pending_ntfs: Mutex<HashMap<Vec<u8>, Vec<PendingNtf>>>,
    /// Connected clients.
    pub clients: Mutex<HashMap<u64, Arc<ClientHandle>>>,
    next_client_id: AtomicU64,
    /// Cleared when the server stops accepting commands.
    pub active: AtomicBool,
    /// Event counters (daily CSV, control port, Prometheus).
    pub stats: Arc<crate::stats::ServerStats>,
    /// The onion address once embedded Tor has launched the onion service (`[TOR]`); read it
    /// with [`ServerState::onion_address`] (e.g. for the web page).
    pub onion_address: std::sync::OnceLock<String>,
    /// Embedded Tor's state for the operator, when `[TOR] enable = on`.
    pub tor_status: std::sync::OnceLock<super::onion::TorStatus>,
    /// Connections to destination relays (proxy role).
    pub proxy: Arc<super::proxy::ProxyAgent>,
    /// The names role's resolver, when `[NAMES] enable = on`.
    pub names: std::sync::OnceLock<Arc<crate::names::Resolver>>,
}

impl ServerState {
    /// New state around a store.
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> Self {
        ServerState {
            settings,
            store,
            subscribers: Mutex::new(HashMap::new()),
            ntf_subscribers: Mutex::new(HashMap::new()),
            pending_ntfs: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            active: AtomicBool::new(true),
            stats: Arc::new(crate::stats::ServerStats::new(super::commands::now_secs())),
            onion_address: std::sync::OnceLock::new(),
            tor_status: std::sync::OnceLock::new(),
            proxy: Arc::new(super::proxy::ProxyAgent::new(
                std::time::Duration::from_secs(20),
            )),
            names: std::sync::OnceLock::new(),
        }
    }

    /// Register a new connection.
    pub fn add_client(
        &self,
        version: Version,
        tx: mpsc::Sender<Vec<Outgoing>>,
    ) -> Arc<ClientHandle> {
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(ClientHandle {
            id,
            version,
            tx,
            subs: Mutex::new(HashMap::new()),
            ntf_subs: Mutex::new(HashSet::new()),
            connected: AtomicBool::new(true),
            created_at: super::commands::now_secs(),
            rcv_active_at: AtomicI64::new(super::commands::now_secs()),
            snd_active_at: AtomicI64::new(super::commands::now_secs()),
            proxy_permits: Arc::new(tokio::sync::Semaphore::new(
                self.settings.proxy_concurrency.max(1),
            )),
            session_id: std::sync::OnceLock::new(),
            resolver_slots: std::sync::OnceLock::new(),
        });
        lock(&self.clients).insert(id, c.clone());
        c
    }

    /// Forget a connection and the subscriptions it held.
    pub fn remove_client(&self, c: &Arc<ClientHandle>) {
        c.connected.store(false, Ordering::Release);
        lock(&self.clients).remove(&c.id);
        let subs: Vec<Vec<u8>> = lock(&c.subs).drain().map(|(k, _)| k).collect();
        {
            let mut m = lock(&self.subscribers);
            for rid in subs {
                if m.get(&rid).is_some_and(|x| x.id == c.id) {
                    m.remove(&rid);
                }
            }
        }
        let nsubs: Vec<Vec<u8>> = lock(&c.ntf_subs).drain().collect();
        let mut m = lock(&self.ntf_subscribers);
        for nid in nsubs {
            if m.get(&nid).is_some_and(|x| x.id == c.id) {
                m.remove(&nid);
            }
        }
    }

    /// Make `c` the subscriber of `rid`; returns the previous subscriber if it is another client.
    pub fn set_subscriber(&self, rid: &[u8], c: &Arc<ClientHandle>) -> Option<Arc<ClientHandle>> {
        let prev = lock(&self.subscribers).insert(rid.to_vec(), c.clone());
        prev.filter(|p| p.id != c.id)
    }

    /// The current subscriber of `rid`.
    pub fn subscriber(&self, rid: &[u8]) -> Option<Arc<ClientHandle>> {
        lock(&self.subscribers).get(rid).cloned()
    }

    /// Remove `rid`'s subscriber; returns it.
    pub fn take_subscriber(&self, rid: &[u8]) -> Option<Arc<ClientHandle>> {
        lock(&self.subscribers).remove(rid)
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
            proxy_concurrency: c.proxy.client_concurrency as usize,
            expire_messages_on_start: c.store_log.expire_messages_on_start,
            own_server_domains: c.proxy.own_server_domains.clone(),
            ..d
        }
    }
}
