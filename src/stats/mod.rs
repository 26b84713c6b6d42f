//! Server statistics: the reference's event counters, the daily CSV, the backup file that
//! carries counters across restarts, and Prometheus metrics (file and HTTP).
//!
//! Privacy: counters only; active queues are counted through 64-bit hashes of their IDs that
//! are dropped when their period is reported.

pub mod backup;
pub mod counters;
pub mod daily;
pub mod period;
pub mod prometheus;

pub use counters::ServerStats;

use crate::server::state::{lock, ServerState};
use crate::store::Store;
use period::TimeBuckets;

/// Counts of stored entities (the reference's `EntityCounts`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EntityCounts {
    /// Stored queues.
    pub queues: usize,
    /// Queues with notifier credentials.
    pub notifiers: usize,
}

/// Count the store's queues and notifiers.
pub fn entity_counts(store: &dyn Store) -> EntityCounts {
    let (queues, notifiers) = store.count_queues();
    EntityCounts { queues, notifiers }
}

/// Counts of stored messages (the gauge `msgCount` after a restore).
pub fn stored_messages(store: &dyn Store) -> usize {
    store.count_messages()
}

/// Subscription counts of one kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct SubCounts {
    /// Subscriptions.
    pub subs: usize,
    /// Distinct subscribed clients.
    pub clients: usize,
}

/// What is true right now, beside the counters (the reference's `RealTimeMetrics`).
#[derive(Debug, Default, Clone)]
pub struct RealTime {
    /// (port, accepted, closed) per listening port.
    pub sockets: Vec<(u16, i64, i64)>,
    /// Live runtime tasks (the reference counts threads).
    pub tasks: usize,
    /// Connected clients.
    pub clients: usize,
    /// Subscriptions with a delivered, unacknowledged message.
    pub delivered: SubCounts,
    /// How long those deliveries have waited.
    pub delivered_times: TimeBuckets,
    /// Queue subscriptions.
    pub smp: SubCounts,
    /// Notifier subscriptions.
    pub ntf: SubCounts,
}

/// Collect the real-time metrics of a running server.
pub fn realtime(state: &ServerState, now: i64) -> RealTime {
    let mut rt = RealTime {
        sockets: lock(&state.stats.sockets)
            .iter()
            .map(|(p, s)| (*p, s.accepted.get(), s.closed.get()))
            .collect(),
        tasks: tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_alive_tasks())
            .unwrap_or(0),
        ..RealTime::default()
    };
    let clients: Vec<_> = lock(&state.clients).values().cloned().collect();
    rt.clients = clients.len();
    for c in &clients {
        let subs = lock(&c.subs);
        let mut n = 0;
        for s in subs.values() {
            if let Some((_, ts)) = &s.delivered {
                n += 1;
                rt.delivered_times.update(*ts, now);
            }
        }
        if n > 0 {
            rt.delivered.subs += n;
            rt.delivered.clients += 1;
        }
    }
    let distinct = |m: &std::collections::HashMap<
        Vec<u8>,
        std::sync::Arc<crate::server::state::ClientHandle>,
    >| {
        let ids: std::collections::HashSet<u64> = m.values().map(|c| c.id).collect();
        SubCounts {
            subs: m.len(),
            clients: ids.len(),
        }
    };
    rt.smp = distinct(&lock(&state.subscribers));
    rt.ntf = distinct(&lock(&state.ntf_subscribers));
    rt
}
