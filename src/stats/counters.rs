//! The server's event counters, one per event the reference counts (its `ServerStats`), so the
//! daily CSV, the stats backup file and the Prometheus metrics carry the same numbers.

use std::ops::Deref;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use super::period::{PeriodStats, TimeBuckets};
use crate::sync::lock;

/// One monotonic (or gauge) counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicI64);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n` (negative to subtract, for gauges such as `msgCount`).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Replace the value (restore at start).
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    /// Replace the value, returning the old one (the daily log resets per-day counters).
    pub fn swap(&self, n: i64) -> i64 {
        self.0.swap(n, Ordering::Relaxed)
    }
}

macro_rules! counters {
    ($($field:ident => $name:literal),* $(,)?) => {
        /// The plain counters, named as the reference names them (the names are used in the
        /// stats backup file and the control port's `stats` output).
        #[derive(Debug, Default)]
        pub struct Counters {
            $(#[doc = $name] pub $field: Counter,)*
        }

        impl Counters {
            /// Every counter with its reference name.
            pub fn named(&self) -> Vec<(&'static str, &Counter)> {
                vec![$(($name, &self.$field)),*]
            }
            /// A counter by its reference name.
            pub fn by_name(&self, name: &str) -> Option<&Counter> {
                match name {
                    $($name => Some(&self.$field),)*
                    _ => None,
                }
            }
        }
    };
}

counters! {
    q_created => "qCreated",
    q_secured => "qSecured",
    q_deleted_all => "qDeletedAll",
    q_deleted_new => "qDeletedNew",
    q_deleted_secured => "qDeletedSecured",
    q_deleted_all_b => "qDeletedAllB",
    q_blocked => "qBlocked",
    q_count => "qCount",
    q_sub => "qSub",
    q_sub_all_b => "qSubAllB",
    q_sub_auth => "qSubAuth",
    q_sub_duplicate => "qSubDuplicate",
    q_sub_prohibited => "qSubProhibited",
    q_sub_end => "qSubEnd",
    q_sub_end_b => "qSubEndB",
    ntf_created => "ntfCreated",
    ntf_new_created => "ntfNewCreated",
    ntf_deleted => "ntfDeleted",
    ntf_deleted_b => "ntfDeletedB",
    ntf_sub => "ntfSub",
    ntf_sub_b => "ntfSubB",
    ntf_sub_auth => "ntfSubAuth",
    ntf_sub_duplicate => "ntfSubDuplicate",
    msg_sent => "msgSent",
    msg_sent_auth => "msgSentAuth",
    msg_sent_quota => "msgSentQuota",
    msg_sent_large => "msgSentLarge",
    msg_sent_block => "msgSentBlock",
    msg_recv => "msgRecv",
    msg_recv_get => "msgRecvGet",
    msg_get => "msgGet",
    msg_get_no_msg => "msgGetNoMsg",
    msg_get_auth => "msgGetAuth",
    msg_get_duplicate => "msgGetDuplicate",
    msg_get_prohibited => "msgGetProhibited",
    msg_expired => "msgExpired",
    msg_sent_ntf => "msgSentNtf",
    msg_recv_ntf => "msgRecvNtf",
    msg_ntfs => "msgNtfs",
    msg_ntfs_b => "msgNtfsB",
    msg_ntf_no_sub => "msgNtfNoSub",
    msg_ntf_lost => "msgNtfLost",
    msg_ntf_expired => "msgNtfExpired",
    p_msg_fwds_recv => "pMsgFwdsRecv",
    msg_count => "msgCount",
    ntf_count => "ntfCount",
}

/// Counters of proxied requests (the reference's `ProxyStats`).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// `requests`.
    pub requests: Counter,
    /// `successes` (destination errors forwarded to the client count as successes).
    pub successes: Counter,
    /// `errorsConnect`.
    pub errors_connect: Counter,
    /// `errorsCompat`.
    pub errors_compat: Counter,
    /// `errorsOther`.
    pub errors_other: Counter,
}

impl ProxyStats {
    /// The counters with the names the backup file uses, in its order.
    pub fn named(&self) -> [(&'static str, &Counter); 5] {
        [
            ("requests", &self.requests),
            ("successes", &self.successes),
            ("errorsConnect", &self.errors_connect),
            ("errorsCompat", &self.errors_compat),
            ("errorsOther", &self.errors_other),
        ]
    }
}

/// Counters of service (bulk subscriber) events (the reference's `ServiceStats`).
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// `assocNew`.
    pub assoc_new: Counter,
    /// `assocDuplicate`.
    pub assoc_duplicate: Counter,
    /// `assocUpdatedt` (sic: the reference's spelling in its file).
    pub assoc_updated: Counter,
    /// `assocRemoved`.
    pub assoc_removed: Counter,
    /// `subCount`.
    pub sub_count: Counter,
    /// `subDuplicate`.
    pub sub_duplicate: Counter,
    /// `subQueues`.
    pub sub_queues: Counter,
    /// `subEnd`.
    pub sub_end: Counter,
    /// 7.0 drift counters (Prometheus only, not in the backup file or CSV): subscriptions
    /// where the server had the queues the service expected.
    pub sub_ok: Counter,
    /// ... more queues than expected.
    pub sub_more: Counter,
    /// ... fewer queues than expected.
    pub sub_fewer: Counter,
    /// ... the same count but a different IdsHash.
    pub sub_diff: Counter,
    /// Sum of the differences when there were more.
    pub sub_more_total: Counter,
    /// Sum of the differences when there were fewer.
    pub sub_fewer_total: Counter,
}

impl ServiceStats {
    /// The counters with the names the backup file uses, in its order.
    pub fn named(&self) -> [(&'static str, &Counter); 8] {
        [
            ("assocNew", &self.assoc_new),
            ("assocDuplicate", &self.assoc_duplicate),
            ("assocUpdatedt", &self.assoc_updated),
            ("assocRemoved", &self.assoc_removed),
            ("subCount", &self.sub_count),
            ("subDuplicate", &self.sub_duplicate),
            ("subQueues", &self.sub_queues),
            ("subEnd", &self.sub_end),
        ]
    }
}

/// Counters of name resolution (RSLV, v20; the reference's `NameResolverStats`).
#[derive(Debug, Default)]
pub struct NameResolverStats {
    /// `reqs`: RSLV requests, direct and forwarded.
    pub reqs: Counter,
    /// `succ`: answered with RNAME.
    pub succ: Counter,
    /// `notFound`.
    pub not_found: Counter,
    /// `resolverErrs`: resolver failures (HTTP 5xx, transport, decoding, timeout).
    pub resolver_errs: Counter,
    /// `disabled`: refused because `[NAMES]` is off.
    pub disabled: Counter,
}

impl NameResolverStats {
    /// The counters with the names the backup file uses, in its order.
    pub fn named(&self) -> [(&'static str, &Counter); 5] {
        [
            ("reqs", &self.reqs),
            ("succ", &self.succ),
            ("notFound", &self.not_found),
            ("resolverErrs", &self.resolver_errs),
            ("disabled", &self.disabled),
        ]
    }
}

/// All statistics of a running server. Derefs to [`Counters`], so `stats.msg_sent.inc()`.
#[derive(Debug)]
pub struct ServerStats {
    /// Start of the current period (Unix seconds): the day the next CSV line describes.
    pub from_time: AtomicI64,
    /// The plain counters.
    pub counters: Counters,
    /// Queues with sent or received messages, by day/week/month (hashes of IDs only).
    pub active_queues: PeriodStats,
    /// The same for messages with the notification flag.
    pub active_queues_ntf: PeriodStats,
    /// Proxy sessions requested by any client.
    pub p_relays: ProxyStats,
    /// Proxy sessions to this operator's own servers.
    pub p_relays_own: ProxyStats,
    /// Messages forwarded through this proxy.
    pub p_msg_fwds: ProxyStats,
    /// Messages forwarded to this operator's own servers.
    pub p_msg_fwds_own: ProxyStats,
    /// Receiving services.
    pub rcv_services: ServiceStats,
    /// Notification services.
    pub ntf_services: ServiceStats,
    /// Name resolution (`rslvStats`).
    pub rslv: NameResolverStats,
    /// Subscribed service queues with messages (7.0 `rcvServicesSubMsg`, Prometheus only).
    pub rcv_services_sub_msg: Counter,
    /// Duplicate subscribed service queues (7.0 `rcvServicesSubDuplicate`, Prometheus only).
    pub rcv_services_sub_duplicate: Counter,
    /// Seconds from delivery to acknowledgement (the reference's `msgRecvAckTimes`).
    pub msg_recv_ack_times: Mutex<TimeBuckets>,
    /// Seconds from send to delivery to the recipient (ours: a send->deliver latency histogram).
    pub msg_deliver_times: Mutex<TimeBuckets>,
    /// Accepted/closed connections per listening port.
    pub sockets: Mutex<Vec<(u16, std::sync::Arc<SocketStats>)>>,
}

/// Connection counters of one listening port (the reference's `SocketStats`).
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections closed.
    pub closed: Counter,
}

impl Deref for ServerStats {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.counters
    }
}

impl ServerStats {
    /// Fresh statistics starting at `now` (Unix seconds).
    pub fn new(now: i64) -> Self {
        ServerStats {
            from_time: AtomicI64::new(now),
            counters: Counters::default(),
            active_queues: PeriodStats::default(),
            active_queues_ntf: PeriodStats::default(),
            p_relays: ProxyStats::default(),
            p_relays_own: ProxyStats::default(),
            p_msg_fwds: ProxyStats::default(),
            p_msg_fwds_own: ProxyStats::default(),
            rcv_services: ServiceStats::default(),
            ntf_services: ServiceStats::default(),
            rslv: NameResolverStats::default(),
            rcv_services_sub_msg: Counter::default(),
            rcv_services_sub_duplicate: Counter::default(),
            msg_recv_ack_times: Mutex::new(TimeBuckets::default()),
            msg_deliver_times: Mutex::new(TimeBuckets::default()),
            sockets: Mutex::new(Vec::new()),
        }
    }

    /// The counters of a listening port, registering it on first use.
    pub fn socket_stats(&self, port: u16) -> std::sync::Arc<SocketStats> {
        let mut s = lock(&self.sockets);
        if let Some((_, st)) = s.iter().find(|(p, _)| *p == port) {
            return st.clone();
        }
        let st = std::sync::Arc::new(SocketStats::default());
        s.push((port, st.clone()));
        st
    }

    /// A message was acknowledged `delivered_at` (Unix seconds); record it as the reference.
    pub fn message_received(&self, rid: &[u8], notification: bool, get: bool, delivered_at: i64) {
        self.msg_recv.inc();
        if get {
            self.msg_recv_get.inc();
        }
        self.msg_count.add(-1);
        self.active_queues.update(rid);
        if notification {
            self.msg_recv_ntf.inc();
            self.active_queues_ntf.update(rid);
        }
        let now = crate::clock::now_secs();
        lock(&self.msg_recv_ack_times).update(delivered_at, now);
    }

    /// A message was delivered to its recipient; `sent_at` is its timestamp.
    pub fn message_delivered(&self, sent_at: i64) {
        let now = crate::clock::now_secs();
        lock(&self.msg_deliver_times).update(sent_at, now);
    }

    /// A queue was deleted (by its recipient or the operator).
    pub fn queue_deleted(&self, was_secured: bool) {
        if was_secured {
            self.q_deleted_secured.inc();
        } else {
            self.q_deleted_new.inc();
        }
        self.q_deleted_all.inc();
        self.q_count.add(-1);
    }
}
