//! The Info group: version, sockets, real-time counts and the delivery-time histograms.

use std::fmt::Write as _;

use super::writer::{bucket_sums, escape, time_buckets, W};
use super::Snapshot;
use crate::sync::lock;

/// Server information, real-time metrics and times from SEND to acknowledgement.
pub(super) fn info(w: &mut W, s: &Snapshot<'_>) {
    let st = s.stats;
    w.section("Info", true);
    let rts = std::env::var("SMP_RTS_OPTIONS").unwrap_or_else(|_| "set SMP_RTS_OPTIONS".into());
    w.head(
        "simplex_smp_info",
        "Server information. RTS options have to be passed via SMP_RTS_OPTIONS env var",
        "gauge",
    );
    let _ = write!(
        w.out,
        "simplex_smp_info{{version=\"{}\",rts_options=\"{}\"}} 1\n\n",
        env!("CARGO_PKG_VERSION"),
        escape(&rts)
    );
    let rt = &s.rt;
    for (name, help, f) in [
        ("simplex_smp_sockets_accepted", "Accepted sockets", 0),
        ("simplex_smp_sockets_closed", "Closed sockets", 1),
        ("simplex_smp_sockets_active", "Active sockets", 2),
        ("simplex_smp_sockets_leaked", "Leaked sockets", 3),
    ] {
        w.head(name, help, "gauge");
        for (port, acc, closed) in &rt.sockets {
            let v = match f {
                0 => *acc,
                1 => *closed,
                2 => acc - closed,
                _ => 0,
            };
            w.sample(name, &format!("port=\"{port}\""), v, "");
        }
        w.out.push('\n');
    }
    w.one(
        "simplex_smp_threads_total",
        "Threads",
        "gauge",
        rt.tasks,
        "",
    );
    w.one(
        "simplex_smp_clients_total",
        "Clients",
        "gauge",
        rt.clients,
        "",
    );
    w.one(
        "simplex_smp_delivered_total",
        "Total SMP subscriptions with delivered messages",
        "gauge",
        rt.delivered.subs,
        "delivered.subsCount",
    );
    w.one(
        "simplex_smp_delivered_clients_total",
        "Subscribed clients",
        "gauge",
        rt.delivered.clients,
        "delivered.subClientsCount",
    );
    let ack = lock(&st.msg_recv_ack_times).clone();
    let confirmed = st.msg_recv.get() + st.msg_recv_get.get();
    let h = "simplex_smp_delivery_ack_confirmed_time";
    w.head(
        h,
        "Times to confirm message delivery, only confirmed deliveries",
        "histogram",
    );
    w.sample(&format!("{h}_sum"), "", ack.sum_time, "");
    w.sample(&format!("{h}_count"), "", confirmed, "");
    time_buckets(w, h, &ack);
    w.sample(&format!("{h}_bucket"), "le=\"+Inf\"", confirmed, "");
    w.out.push('\n');
    w.head(
        "simplex_smp_delivery_ack_confirmed_count",
        "Counts for confirmed deliveries",
        "counter",
    );
    bucket_sums(w, "simplex_smp_delivery_ack_confirmed_count", &ack);
    w.out.push('\n');
    w.head(
        "simplex_smp_delivery_ack_pending_count",
        "Counts for pending delivery",
        "gauge",
    );
    bucket_sums(
        w,
        "simplex_smp_delivery_ack_pending_count",
        &rt.delivered_times,
    );
    w.out.push('\n');
    w.one(
        "simplex_smp_delivery_ack_time_max",
        "Max time to confirm message delivery",
        "gauge",
        rt.delivered_times.max_time,
        "delivered.maxTime",
    );
    w.one(
        "simplex_smp_subscribtion_total",
        "Total SMP subscriptions",
        "gauge",
        rt.smp.subs,
        "smp.subsCount",
    );
    w.one(
        "simplex_smp_subscribtion_clients_total",
        "Subscribed clients",
        "gauge",
        rt.smp.clients,
        "smp.subClientsCount",
    );
    w.one(
        "simplex_smp_subscribtion_services_total",
        "Subscribed services, first counting method",
        "gauge",
        0,
        "smp.subServicesCount",
    );
    w.one(
        "simplex_smp_subscribtion_service_subs_total",
        "Total queues subscribed via services",
        "gauge",
        0,
        "smp.subServiceSubsCount",
    );
    w.one(
        "simplex_smp_subscription_ntf_total",
        "Total notification subscripbtions (from ntf server)",
        "gauge",
        rt.ntf.subs,
        "ntf.subsCount",
    );
    w.one(
        "simplex_smp_subscription_ntf_clients_total",
        "Total subscribed NTF servers",
        "gauge",
        rt.ntf.clients,
        "ntf.subClientsCount",
    );
    w.one(
        "simplex_smp_subscribtion_nts_services_total",
        "Subscribed NTF services, first counting method",
        "gauge",
        0,
        "ntf.subServicesCount",
    );
    w.one(
        "simplex_smp_subscription_ntf_service_subs_total",
        "Total queues subscribed via NTF services",
        "gauge",
        0,
        "ntf.subServiceSubsCount",
    );
    w.one(
        "simplex_smp_loaded_queues_queue_count",
        "Total loaded queues count (all queues for memory/journal storage)",
        "gauge",
        s.counts.queues,
        "loadedCounts.loadedQueueCount",
    );
    w.one(
        "simplex_smp_loaded_queues_ntf_count",
        "Total loaded ntf credential references (all ntf credentials for memory/journal storage)",
        "gauge",
        s.counts.notifiers,
        "loadedCounts.loadedNotifierCount",
    );
    w.one(
        "simplex_smp_loaded_queues_open_journal_count",
        "Total opened queue journals (0 for memory storage)",
        "gauge",
        0,
        "loadedCounts.openJournalCount",
    );
    w.one(
        "simplex_smp_loaded_queues_queue_lock_count",
        "Total queue locks (0 for memory storage)",
        "gauge",
        0,
        "loadedCounts.queueLockCount",
    );
    w.head(
        "simplex_smp_loaded_queues_ntf_lock_count",
        "Total notifier locks (0 for memory/journal storage)",
        "gauge",
    );
    w.sample(
        "simplex_smp_loaded_queues_ntf_lock_count",
        "",
        0,
        "loadedCounts.notifierLockCount",
    );
    // ours, beside the reference's: time from SEND to delivery to the subscribed recipient
    w.out.push('\n');
    let lat = lock(&st.msg_deliver_times).clone();
    let h = "simplex_smp_send_deliver_time";
    w.head(
        h,
        "Seconds from accepting a message to delivering it to the recipient",
        "histogram",
    );
    for le in [0i64, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400] {
        let cum: i64 = lat.buckets.range(..=le).map(|(_, c)| c).sum();
        w.sample(&format!("{h}_bucket"), &format!("le=\"{le}\""), cum, "");
    }
    w.sample(&format!("{h}_bucket"), "le=\"+Inf\"", lat.count(), "");
    w.sample(&format!("{h}_sum"), "", lat.sum_time, "");
    w.sample(&format!("{h}_count"), "", lat.count(), "");
}
