//! What the core knows of a connection: its number, its version and its subscriptions.
//! The socket, the output queue and the activity times belong to the session layer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::transport::service::PeerService;

use crate::protocol::version::Version;

/// A connection's number, unique for the life of the process.
pub type ClientId = u64;

/// A recipient subscription (or the marker that GET was used, which forbids SUB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// True when created by GET: SUB on this queue is then prohibited in this connection.
    pub prohibit: bool,
    /// The message delivered and not yet acknowledged (ID, delivery time). At most one per
    /// queue: the next is delivered only after ACK, which bounds what a subscription can queue.
    pub delivered: Option<(Vec<u8>, i64)>,
}

impl Sub {
    /// A SUB subscription with nothing delivered yet.
    pub fn subscribed() -> Self {
        Sub {
            prohibit: false,
            delivered: None,
        }
    }
}

/// One connection's subscriptions.
#[derive(Debug)]
pub struct ClientState {
    /// Connection number.
    pub id: ClientId,
    /// Negotiated version (messages for it are encoded with it).
    pub version: Version,
    /// Recipient subscriptions by recipient ID.
    pub subs: Mutex<HashMap<Vec<u8>, Sub>>,
    /// Notifier subscriptions by notifier ID.
    pub ntf_subs: Mutex<HashSet<Vec<u8>>>,
    /// Cleared when the connection ends: late deliveries to it are dropped.
    connected: AtomicBool,
    /// The service, in a session that did the service handshake.
    pub service: OnceLock<PeerService>,
    /// What this session's service subscription holds: (queues, IdsHash) and whether
    /// SUBS/NSUBS was sent (see `core::services`).
    pub service_subs: Mutex<ServiceSubState>,
}

/// A service session's subscription: the reference's `serviceSubscribed` and
/// `serviceSubsCount`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSubState {
    /// SUBS/NSUBS was answered.
    pub subscribed: bool,
    /// Queues the session receives for.
    pub count: i64,
    /// Their IdsHash.
    pub hash: [u8; 16],
}

impl ClientState {
    /// A new connection's (empty) state.
    pub fn new(id: ClientId, version: Version) -> Self {
        ClientState {
            id,
            version,
            subs: Mutex::new(HashMap::new()),
            ntf_subs: Mutex::new(HashSet::new()),
            connected: AtomicBool::new(true),
            service: OnceLock::new(),
            service_subs: Mutex::new(ServiceSubState::default()),
        }
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Mark the connection closed.
    pub fn set_disconnected(&self) {
        self.connected.store(false, Ordering::Release);
    }
}
