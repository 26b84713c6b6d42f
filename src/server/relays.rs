//! The proxy role's connections to destination relays: one per relay (however its host is
//! spelled), at most `[PROXY] max_relay_connections` of them, each closed after
//! `relay_idle_timeout` without use.
//!
//! Invariants: a connection holds one of the pool's permits for as long as it is in the pool;
//! a slot stays in the map only while it holds a connection or a task is connecting through
//! it, so relay names that fail to connect leave nothing behind.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::SmpClient;
use crate::config::limits::EgressLimits;
use crate::protocol::errors::{BrokerError, ErrorType, ProxyError};
use crate::sync::lock;

/// A relay as the pool tells relays apart: the chosen host in canonical form, the port and
/// the identity fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelayKey {
    /// [`super::connector::policy::normalize_host`] of the host connected to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// SHA-256 of the relay's CA certificate.
    pub key_hash: Vec<u8>,
}

/// One open relay connection.
pub struct Relay {
    /// The SMP client connected to the relay.
    pub client: Arc<SmpClient>,
    /// The first host of the address the session was opened for (`*Own` statistics).
    pub first_host: Vec<u8>,
    key: RelayKey,
    /// Milliseconds after the pool's epoch of the last use.
    last_used: AtomicU64,
    _permit: OwnedSemaphorePermit,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Relay>>>>;

/// The open relay connections.
pub struct RelayPool {
    epoch: Instant,
    limits: EgressLimits,
    slots: Mutex<HashMap<RelayKey, Slot>>,
    sessions: Mutex<HashMap<Vec<u8>, Arc<Relay>>>,
    permits: Arc<Semaphore>,
}

fn full() -> ErrorType {
    // Temporary for the client, which retries later.
    ErrorType::Proxy(ProxyError::Broker(BrokerError::Network))
}

impl RelayPool {
    /// An empty pool, and its reaper of idle connections (ends when the pool is dropped).
    pub fn start(limits: EgressLimits) -> Arc<Self> {
        let pool = Arc::new(RelayPool {
            epoch: Instant::now(),
            limits,
            slots: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(limits.max_relays)),
        });
        let weak = Arc::downgrade(&pool);
        let every =
            (limits.relay_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reap_loop(weak, every));
        }
        pool
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self, r: &Relay) {
        r.last_used.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The connection to `key`, connecting with `connect` when there is none; concurrent
    /// callers for one relay share one connection attempt.
    pub async fn get_or_connect<F, Fut>(
        &self,
        key: RelayKey,
        first_host: Vec<u8>,
        connect: F,
    ) -> Result<Arc<Relay>, ErrorType>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SmpClient, ErrorType>>,
    {
        let slot = lock(&self.slots).entry(key.clone()).or_default().clone();
        let mut guard = slot.lock().await;
        if let Some(r) = guard.as_ref() {
            if !r.client.is_closed() {
                self.touch(r);
                return Ok(r.clone());
            }
            lock(&self.sessions).remove(&r.client.params.session_id);
            *guard = None;
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => {
                self.reap();
                self.permits.clone().try_acquire_owned().map_err(|_| full())
            }
        };
        let result = match permit {
            Ok(permit) => connect().await.map(|c| {
                let r = Arc::new(Relay {
                    client: Arc::new(c),
                    first_host,
                    key: key.clone(),
                    last_used: AtomicU64::new(self.now_ms()),
                    _permit: permit,
                });
                lock(&self.sessions).insert(r.client.params.session_id.clone(), r.clone());
                *guard = Some(r.clone());
                r
            }),
            Err(e) => Err(e),
        };
        let empty = guard.is_none();
        drop(guard);
        if empty {
            self.drop_slot_if_unused(&key, &slot);
        }
        result
    }

    /// Remove `slot` from the map when it holds nothing and nobody else waits on it.
    fn drop_slot_if_unused(&self, key: &RelayKey, slot: &Slot) {
        let mut m = lock(&self.slots);
        let ours = m.get(key).is_some_and(|s| Arc::ptr_eq(s, slot));
        // 2 = the map's reference and ours.
        if ours && Arc::strong_count(slot) == 2 && slot.try_lock().is_ok_and(|g| g.is_none()) {
            m.remove(key);
        }
    }

    /// The open relay connection of a session ID from PKEY, marked as used.
    pub fn by_session(&self, session_id: &[u8]) -> Option<Arc<Relay>> {
        let mut s = lock(&self.sessions);
        match s.get(session_id) {
            Some(r) if r.client.is_closed() => {
                s.remove(session_id);
                None
            }
            Some(r) => {
                self.touch(r);
                Some(r.clone())
            }
            None => None,
        }
    }

    /// Close connections that ended or stayed unused past the idle timeout; returns how many.
    pub fn reap(&self) -> usize {
        let idle_ms = self.limits.relay_idle.as_millis() as u64;
        let now = self.now_ms();
        let gone: Vec<Arc<Relay>> = {
            let mut s = lock(&self.sessions);
            let ids: Vec<Vec<u8>> = s
                .iter()
                .filter(|(_, r)| {
                    r.client.is_closed()
                        || now.saturating_sub(r.last_used.load(Ordering::Relaxed)) >= idle_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| s.remove(id)).collect()
        };
        for r in &gone {
            r.client.close();
            let slot = lock(&self.slots).get(&r.key).cloned();
            if let Some(slot) = slot {
                if let Ok(mut g) = slot.try_lock() {
                    if g.as_ref().is_some_and(|x| Arc::ptr_eq(x, r)) {
                        *g = None;
                    }
                }
                self.drop_slot_if_unused(&r.key, &slot);
            }
        }
        gone.len()
    }

    /// Open relay connections.
    pub fn open(&self) -> usize {
        self.limits.max_relays - self.permits.available_permits()
    }

    /// Relay slots in the map (open or connecting).
    pub fn slots(&self) -> usize {
        lock(&self.slots).len()
    }
}

async fn reap_loop(pool: Weak<RelayPool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        let n = p.reap();
        if n > 0 {
            tracing::debug!("proxy: closed {n} idle or ended relay connection(s)");
        }
    }
}
