//! Which connection is subscribed to each queue (SUB) and each notifier (NSUB).
//!
//! A queue has at most one subscriber: a new SUB from another connection takes it over and the
//! old one is told END. Both directions are kept: the maps here, and each connection's own
//! `subs`/`ntf_subs` (what it holds), so closing a connection removes only what is still its.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::ClientState;
use crate::sync::lock;

/// The subscriber maps.
#[derive(Default)]
pub struct Subscriptions {
    /// Subscriber of each recipient ID.
    pub queues: Mutex<HashMap<Vec<u8>, Arc<ClientState>>>,
    /// Subscriber of each notifier ID.
    pub notifiers: Mutex<HashMap<Vec<u8>, Arc<ClientState>>>,
}

impl Subscriptions {
    /// Make `c` the subscriber of `rid`; returns the previous subscriber if it is another client.
    pub fn set_queue(&self, rid: &[u8], c: &Arc<ClientState>) -> Option<Arc<ClientState>> {
        let prev = lock(&self.queues).insert(rid.to_vec(), c.clone());
        prev.filter(|p| p.id != c.id)
    }

    /// The current subscriber of `rid`.
    pub fn queue(&self, rid: &[u8]) -> Option<Arc<ClientState>> {
        lock(&self.queues).get(rid).cloned()
    }

    /// Remove `rid`'s subscriber; returns it.
    pub fn take_queue(&self, rid: &[u8]) -> Option<Arc<ClientState>> {
        lock(&self.queues).remove(rid)
    }

    /// Make `c` the subscriber of notifier `nid`; returns the previous one if another client.
    pub fn set_notifier(&self, nid: &[u8], c: &Arc<ClientState>) -> Option<Arc<ClientState>> {
        let prev = lock(&self.notifiers).insert(nid.to_vec(), c.clone());
        prev.filter(|p| p.id != c.id)
    }

    /// The current subscriber of notifier `nid`.
    pub fn notifier(&self, nid: &[u8]) -> Option<Arc<ClientState>> {
        lock(&self.notifiers).get(nid).cloned()
    }

    /// Remove notifier `nid`'s subscriber; returns it.
    pub fn take_notifier(&self, nid: &[u8]) -> Option<Arc<ClientState>> {
        lock(&self.notifiers).remove(nid)
    }

    /// Forget a closed connection: mark it disconnected and drop every subscription that is
    /// still its (a takeover may already have moved some to another connection).
    pub fn remove_client(&self, c: &Arc<ClientState>) {
        c.set_disconnected();
        let rids: Vec<Vec<u8>> = lock(&c.subs).drain().map(|(k, _)| k).collect();
        {
            let mut m = lock(&self.queues);
            for rid in rids {
                if m.get(&rid).is_some_and(|x| x.id == c.id) {
                    m.remove(&rid);
                }
            }
        }
        let nids: Vec<Vec<u8>> = lock(&c.ntf_subs).drain().collect();
        let mut m = lock(&self.notifiers);
        for nid in nids {
            if m.get(&nid).is_some_and(|x| x.id == c.id) {
                m.remove(&nid);
            }
        }
    }

    /// (subscriptions, distinct connections) for recipient and notifier subscriptions.
    pub fn counts(&self) -> ((usize, usize), (usize, usize)) {
        let distinct = |m: &HashMap<Vec<u8>, Arc<ClientState>>| {
            let ids: std::collections::HashSet<u64> = m.values().map(|c| c.id).collect();
            (m.len(), ids.len())
        };
        (
            distinct(&lock(&self.queues)),
            distinct(&lock(&self.notifiers)),
        )
    }
}
