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

use crate::store::Store;
use period::TimeBuckets;

/// Counts of stored entities (the reference's `EntityCounts`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EntityCounts {
    /// Stored queues.
    pub queues: usize,
    /// Queues with notifier credentials.
    pub notifiers: usize,
    /// Services and their queues: `rcvServiceCount`, `ntfServiceCount`,
    /// `rcvServiceQueuesCount`, `ntfServiceQueuesCount`.
    pub services: [usize; 4],
}

/// Count the store's queues and notifiers.
pub fn entity_counts(store: &dyn Store) -> EntityCounts {
    let (queues, notifiers) = store.count_queues();
    EntityCounts {
        queues,
        notifiers,
        services: [0; 4],
    }
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

/// What the statistics read from a running server. A narrow view, so `stats` does not depend on
/// the server's types (the server implements it; tests can implement it over plain values).
pub trait ServerView: Send + Sync {
    /// The event counters.
    fn stats(&self) -> &ServerStats;
    /// Stored queues and notifiers now.
    fn entity_counts(&self) -> EntityCounts;
    /// Connections, subscriptions and deliveries now (`now` in Unix seconds, for waiting times).
    fn realtime(&self, now: i64) -> RealTime;
}
