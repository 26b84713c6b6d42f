//! Where the client's reader puts what the server sends: the reply a request waits for, or
//! a bounded queue of everything else. Both are bounded so a server (for the proxy role: any
//! relay a client names) cannot grow this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::protocol::response::BrokerMsg;

/// An entity ID and a message from the server.
pub type Received = (Vec<u8>, BrokerMsg);

/// Requests waiting for their reply, by correlation ID.
#[derive(Debug, Default)]
pub struct Pending {
    waiting: Mutex<HashMap<Vec<u8>, oneshot::Sender<Received>>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, oneshot::Sender<Received>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for the replies to `corr_ids`; the returned guard withdraws whatever is still
    /// waiting when it is dropped (on a timeout, an error, or a cancelled request), so no
    /// entry outlives its request.
    pub fn register(
        self: &Arc<Self>,
        corr_ids: impl IntoIterator<Item = Vec<u8>>,
    ) -> (PendingGuard, Vec<oneshot::Receiver<Received>>) {
        let mut ids = Vec::new();
        let mut rxs = Vec::new();
        let mut m = self.lock();
        for corr in corr_ids {
            let (tx, rx) = oneshot::channel();
            m.insert(corr.clone(), tx);
            ids.push(corr);
            rxs.push(rx);
        }
        (
            PendingGuard {
                pending: self.clone(),
                ids,
            },
            rxs,
        )
    }

    /// The waiter for `corr`, removed.
    fn take(&self, corr: &[u8]) -> Option<oneshot::Sender<Received>> {
        self.lock().remove(corr)
    }

    /// Fail every waiting request (the connection ended).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Withdraws a request's remaining waiters when dropped.
#[derive(Debug)]
pub struct PendingGuard {
    pending: Arc<Pending>,
    ids: Vec<Vec<u8>>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut m = self.pending.lock();
        for id in &self.ids {
            m.remove(id);
        }
    }
}

/// Routes what the reader decodes.
#[derive(Debug)]
pub struct Dispatch {
    /// Requests waiting for replies.
    pub pending: Arc<Pending>,
    events: mpsc::Sender<Received>,
    dropped: AtomicU64,
}

impl Dispatch {
    /// A dispatcher queueing at most `capacity` unsolicited messages (at least 1).
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Received>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Dispatch {
                pending: Arc::default(),
                events: tx,
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Hand a decoded transmission to its waiter, else queue it as an event; an event that
    /// finds the queue full is dropped and counted.
    pub fn deliver(&self, corr: &[u8], entity: Vec<u8>, msg: BrokerMsg) {
        let waiter = if corr.is_empty() {
            None
        } else {
            self.pending.take(corr)
        };
        match waiter {
            Some(w) => {
                let _ = w.send((entity, msg));
            }
            None => {
                if self.events.try_send((entity, msg)).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Events dropped because nobody read them in time.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsolicited_messages_are_bounded() {
        let (d, mut rx) = Dispatch::new(4);
        for _ in 0..1000 {
            d.deliver(b"", b"e".to_vec(), BrokerMsg::Pong);
        }
        assert_eq!(d.dropped(), 996);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 4);
        // A reply nobody waits for is an event too, and bounded the same way.
        d.deliver(b"unknown", Vec::new(), BrokerMsg::Ok);
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn pending_replies_go_away_with_their_request() {
        let (d, _rx) = Dispatch::new(1);
        let (guard, mut rxs) = d.pending.register([b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(d.pending.len(), 2);
        d.deliver(b"a", Vec::new(), BrokerMsg::Ok);
        assert_eq!(d.pending.len(), 1);
        assert!(rxs[0].try_recv().is_ok());
        // The request timed out or was cancelled: its guard goes, and so does "b".
        drop(guard);
        assert!(d.pending.is_empty());
        // A late reply is then an ordinary (bounded) event, not a leak.
        d.deliver(b"b", Vec::new(), BrokerMsg::Ok);
        assert!(d.pending.is_empty());
        assert!(rxs.pop().expect("rx").try_recv().is_err());
    }
}
