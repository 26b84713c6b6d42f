//! Prometheus metrics in the reference's text (metric names, labels and their typos are an
//! interface: dashboards use them), written to `smp-server-metrics.txt` every
//! `prometheus_interval` and served over HTTP on `prometheus_address`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::counters::{Counter, NameResolverStats, ProxyStats, ServerStats, ServiceStats};
use super::period::{iso_time, TimeBuckets};
use super::ServerView;
use super::{EntityCounts, RealTime};
use crate::sync::lock;

/// Everything one rendering needs.
pub struct Snapshot<'a> {
    /// The counters.
    pub stats: &'a ServerStats,
    /// Store counts.
    pub counts: EntityCounts,
    /// Real-time metrics.
    pub rt: RealTime,
    /// Time of the snapshot, Unix milliseconds.
    pub now_ms: i64,
}

struct W {
    out: String,
    ts: String,
}

impl W {
    fn section(&mut self, title: &str, blank: bool) {
        let _ = write!(self.out, "# {title}\n# {}\n", "-".repeat(title.len()));
        if blank {
            self.out.push('\n');
        }
    }
    fn head(&mut self, name: &str, help: &str, typ: &str) {
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {typ}\n");
    }
    fn sample(&mut self, name: &str, labels: &str, v: impl std::fmt::Display, comment: &str) {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(self.out, "{name}{labels} {v} {}", self.ts);
        if !comment.is_empty() {
            let _ = writeln!(self.out, "# {comment}");
        }
    }
    /// A metric with one unlabelled sample and the reference's trailing comment.
    fn one(&mut self, name: &str, help: &str, typ: &str, v: impl std::fmt::Display, c: &str) {
        self.head(name, help, typ);
        self.sample(name, "", v, c);
        self.out.push('\n');
    }
}

/// Render the metrics text.
pub fn render(s: &Snapshot<'_>) -> String {
    let st = s.stats;
    let mut w = W {
        out: String::with_capacity(24 * 1024),
        ts: s.now_ms.to_string(),
    };
    let from = st.from_time.load(std::sync::atomic::Ordering::Relaxed);
    let _ = write!(
        w.out,
        "# Recorded at: {}\n# Stats from: {}\n\n",
        iso_time(s.now_ms.div_euclid(1000)),
        iso_time(from)
    );
    let (d, wk, m) = st.active_queues.sizes();
    let (dn, wn, mn) = st.active_queues_ntf.sizes();
    w.section("Queues", true);
    w.one(
        "simplex_smp_queues_created",
        "Created queues",
        "counter",
        st.q_created.get(),
        "qCreated",
    );
    w.one(
        "simplex_smp_queues_secured",
        "Secured queues",
        "counter",
        st.q_secured.get(),
        "qSecured",
    );
    w.head("simplex_smp_queues_deleted", "Deleted queues", "counter");
    w.sample(
        "simplex_smp_queues_deleted",
        "type=\"all\"",
        st.q_deleted_all.get(),
        "qDeleted",
    );
    w.sample(
        "simplex_smp_queues_deleted",
        "type=\"new\"",
        st.q_deleted_new.get(),
        "qDeletedNew",
    );
    w.sample(
        "simplex_smp_queues_deleted",
        "type=\"secured\"",
        st.q_deleted_secured.get(),
        "qDeletedSecured",
    );
    w.out.push('\n');
    w.one(
        "simplex_smp_queues_blocked",
        "Deleted queues",
        "counter",
        st.q_blocked.get(),
        "qBlocked",
    );
    w.one(
        "simplex_smp_queues_deleted_batch",
        "Batched requests to delete queues",
        "counter",
        st.q_deleted_all_b.get(),
        "qDeletedAllB",
    );
    w.one(
        "simplex_smp_queues_total1",
        "Total number of stored queues (first type of count).",
        "gauge",
        st.q_count.get(),
        "qCount",
    );
    w.one(
        "simplex_smp_queues_total2",
        "Total number of stored queues (second type of count).",
        "gauge",
        s.counts.queues,
        "qCount2",
    );
    w.one(
        "simplex_smp_queues_daily",
        "Daily active queues.",
        "gauge",
        d,
        "dayMsgQueues",
    );
    w.one(
        "simplex_smp_queues_weekly",
        "Weekly active queues.",
        "gauge",
        wk,
        "weekMsgQueues",
    );
    w.one(
        "simplex_smp_queues_monthly",
        "Monthly active queues.",
        "gauge",
        m,
        "monthMsgQueues",
    );
    w.one(
        "simplex_smp_queues_notify_daily",
        "Daily active queues with notifications.",
        "gauge",
        dn,
        "dayCountNtf",
    );
    w.one(
        "simplex_smp_queues_notify_weekly",
        "Weekly active queues with notifications.",
        "gauge",
        wn,
        "weekCountNtf",
    );
    w.one(
        "simplex_smp_queues_notify_monthly",
        "Monthly active queues with notifications.",
        "gauge",
        mn,
        "monthCountNtf",
    );

    w.section("Subscriptions", true);
    w.one(
        "simplex_smp_subscribtion_successes",
        "Successful subscriptions.",
        "counter",
        st.q_sub.get(),
        "qSub",
    );
    w.one(
        "simplex_smp_subscribtion_successes_batch",
        "Batched successful subscriptions.",
        "counter",
        st.q_sub_all_b.get(),
        "qSubAllB",
    );
    w.one(
        "simplex_smp_subscribtion_end",
        "Ended subscriptions.",
        "counter",
        st.q_sub_end.get(),
        "qSubEnd",
    );
    w.one(
        "simplex_smp_subscribtion_end_batch",
        "Batched ended subscriptions.",
        "counter",
        st.q_sub_end_b.get(),
        "qSubEndB",
    );
    w.head(
        "simplex_smp_subscribtion_errors",
        "Subscription errors.",
        "counter",
    );
    w.sample(
        "simplex_smp_subscribtion_errors",
        "type=\"auth\"",
        st.q_sub_auth.get(),
        "qSubAuth",
    );
    w.sample(
        "simplex_smp_subscribtion_errors",
        "type=\"duplicate\"",
        st.q_sub_duplicate.get(),
        "qSubDuplicate",
    );
    w.sample(
        "simplex_smp_subscribtion_errors",
        "type=\"prohibited\"",
        st.q_sub_prohibited.get(),
        "qSubProhibited",
    );
    w.out.push('\n');

    w.section("Messages", true);
    w.one(
        "simplex_smp_messages_sent",
        "Sent messages.",
        "counter",
        st.msg_sent.get(),
        "msgSent",
    );
    w.head(
        "simplex_smp_messages_sent_errors",
        "Total number of messages errors by type.",
        "counter",
    );
    w.sample(
        "simplex_smp_messages_sent_errors",
        "type=\"auth\"",
        st.msg_sent_auth.get(),
        "msgSentAuth",
    );
    w.sample(
        "simplex_smp_messages_sent_errors",
        "type=\"quota\"",
        st.msg_sent_quota.get(),
        "msgSentQuota",
    );
    w.sample(
        "simplex_smp_messages_sent_errors",
        "type=\"large\"",
        st.msg_sent_large.get(),
        "msgSentLarge",
    );
    w.sample(
        "simplex_smp_messages_sent_errors",
        "type=\"block\"",
        st.msg_sent_block.get(),
        "msgSentBlock",
    );
    w.out.push('\n');
    w.one(
        "simplex_smp_messages_received",
        "Received messages.",
        "counter",
        st.msg_recv.get(),
        "msgRecv",
    );
    w.one(
        "simplex_smp_messages_expired",
        "Expired messages.",
        "counter",
        st.msg_expired.get(),
        "msgExpired",
    );
    w.one(
        "simplex_smp_messages_total",
        "Total number of messages stored.",
        "gauge",
        st.msg_count.get(),
        "msgCount",
    );

    w.section("Notification messages (client)", true);
    w.one(
        "simplex_smp_messages_notify_sent",
        "Sent messages with notification flag (cleint).",
        "counter",
        st.msg_sent_ntf.get(),
        "msgSentNtf",
    );
    w.one(
        "simplex_smp_messages_notify_received",
        "Received messages with notification flag (client).",
        "counter",
        st.msg_recv_ntf.get(),
        "msgRecvNtf",
    );
    w.one(
        "simplex_smp_messages_notify_get_sent",
        "Requests to get messages with notification flag (client).",
        "counter",
        st.msg_get.get(),
        "msgGet",
    );
    w.one(
        "simplex_smp_messages_notify_get_received",
        "Succesfully received get requests messages with notification flag (client).",
        "counter",
        st.msg_recv_get.get(),
        "msgRecvGet",
    );
    w.head(
        "simplex_smp_messages_notify_get_errors",
        "Error events with messages with notification flag (client). ",
        "counter",
    );
    w.sample(
        "simplex_smp_messages_notify_get_errors",
        "type=\"nomsg\"",
        st.msg_get_no_msg.get(),
        "msgGetNoMsg",
    );
    w.sample(
        "simplex_smp_messages_notify_get_errors",
        "type=\"auth\"",
        st.msg_get_auth.get(),
        "msgGetAuth",
    );
    w.sample(
        "simplex_smp_messages_notify_get_errors",
        "type=\"duplicate\"",
        st.msg_get_duplicate.get(),
        "msgGetDuplicate",
    );
    w.sample(
        "simplex_smp_messages_notify_get_errors",
        "type=\"prohibited\"",
        st.msg_get_prohibited.get(),
        "msgGetProhibited",
    );
    w.out.push('\n');
    w.one(
        "simplex_smp_queues_notify_created",
        "Created queue notification credentials.",
        "counter",
        st.ntf_created.get(),
        "ntfCreated",
    );
    w.one(
        "simplex_smp_queues_notify_new_created",
        "Created new queues with notification credentials.",
        "counter",
        st.ntf_new_created.get(),
        "ntfNewCreated",
    );
    w.one(
        "simplex_smp_queues_notify_deleted",
        "Deleted queue notification credentials.",
        "counter",
        st.ntf_deleted.get(),
        "ntfDeleted",
    );
    w.one(
        "simplex_smp_queues_notify_deleted_batch",
        "Deleted batched queue notification credentials.",
        "counter",
        st.ntf_deleted_b.get(),
        "ntfDeletedB",
    );
    w.one(
        "simplex_smp_queues_notify_total1",
        "Total number of stored queues with notification flag (first type of count).",
        "gauge",
        st.ntf_count.get(),
        "ntfCount1",
    );
    w.one(
        "simplex_smp_queues_notify_total2",
        "Total number of stored queues with notification flag (second type of count).",
        "gauge",
        s.counts.notifiers,
        "ntfCount2",
    );

    w.section("Notifications (server)", true);
    w.one(
        "simplex_smp_messages_ntf_successes",
        "Successful events with notification messages (to ntf server). ",
        "counter",
        st.msg_ntfs.get(),
        "msgNtfs",
    );
    w.one(
        "simplex_smp_messages_ntf_successes_batch",
        "Successful batched events with notification messages (to ntf server). ",
        "counter",
        st.msg_ntfs_b.get(),
        "msgNtfsB",
    );
    w.head(
        "simplex_smp_messages_ntf_errors",
        "Error events with notification messages (to ntf server). ",
        "counter",
    );
    w.sample(
        "simplex_smp_messages_ntf_errors",
        "type=\"nosub\"",
        st.msg_ntf_no_sub.get(),
        "msgNtfNoSub",
    );
    w.sample(
        "simplex_smp_messages_ntf_errors",
        "type=\"lost\"",
        st.msg_ntf_lost.get(),
        "msgNtfLost",
    );
    w.sample(
        "simplex_smp_messages_ntf_errors",
        "type=\"expired\"",
        st.msg_ntf_expired.get(),
        "msgNtfExpired",
    );
    w.out.push('\n');
    w.one(
        "simplex_smp_subscription_ntf_requests",
        "Subscription requests with notification flag (from ntf server). ",
        "counter",
        st.ntf_sub.get(),
        "ntfSub",
    );
    w.one(
        "simplex_smp_subscription_ntf_requests_batch",
        "Batched subscription requests with notification flag (from ntf server). ",
        "counter",
        st.ntf_sub_b.get(),
        "ntfSubB",
    );
    w.head(
        "simplex_smp_subscribtion_ntf_errors",
        "Subscription errors with notification flag (from ntf server). ",
        "counter",
    );
    w.sample(
        "simplex_smp_subscribtion_ntf_errors",
        "type=\"auth\"",
        st.ntf_sub_auth.get(),
        "ntfSubAuth",
    );
    w.sample(
        "simplex_smp_subscribtion_ntf_errors",
        "type=\"duplicate\"",
        st.ntf_sub_duplicate.get(),
        "ntfSubDuplicate",
    );
    w.out.push('\n');

    w.section("Relays", true);
    relays(
        &mut w,
        "sessions",
        &st.p_relays,
        &st.p_relays_own,
        "pRelays",
    );
    relays(
        &mut w,
        "messages",
        &st.p_msg_fwds,
        &st.p_msg_fwds_own,
        "pMsgFwds",
    );
    w.one(
        "simplex_smp_relay_messages_received",
        "Relay messages statistics.",
        "counter",
        st.p_msg_fwds_recv.get(),
        "pMsgFwdsRecv",
    );

    w.section("Services", false);
    w.one(
        "simplex_smp_rcv_services_count",
        "The count of receiving services.",
        "gauge",
        0,
        "rcvServiceCount",
    );
    w.one(
        "simplex_smp_rcv_services_queues_count",
        "The count of queues associated with receiving services.",
        "gauge",
        0,
        "rcv.rcvServiceQueuesCount",
    );
    w.one(
        "simplex_smp_ntf_services_count",
        "The count of notification services.",
        "gauge",
        0,
        "ntfServiceCount",
    );
    w.one(
        "simplex_smp_ntf_services_queues_count",
        "The count of queues associated with notification services.",
        "gauge",
        0,
        "ntfServiceQueuesCount",
    );
    w.one(
        "simplex_smp_rcv_services_sub_msg_count",
        "The count of subscribed service queues with messages.",
        "counter",
        st.rcv_services_sub_msg.get(),
        "rcvServicesSubMsg",
    );
    w.one(
        "simplex_smp_rcv_services_sub_duplicate_count",
        "The count of duplicate subscribed service queues.",
        "counter",
        st.rcv_services_sub_duplicate.get(),
        "rcvServicesSubDuplicate",
    );
    services(&mut w, &st.rcv_services, "rcv", "receiving");
    services(&mut w, &st.ntf_services, "ntf", "notification");
    names(&mut w, &st.rslv);

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
    time_buckets(&mut w, h, &ack);
    w.sample(&format!("{h}_bucket"), "le=\"+Inf\"", confirmed, "");
    w.out.push('\n');
    w.head(
        "simplex_smp_delivery_ack_confirmed_count",
        "Counts for confirmed deliveries",
        "counter",
    );
    bucket_sums(&mut w, "simplex_smp_delivery_ack_confirmed_count", &ack);
    w.out.push('\n');
    w.head(
        "simplex_smp_delivery_ack_pending_count",
        "Counts for pending delivery",
        "gauge",
    );
    bucket_sums(
        &mut w,
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
    w.out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn relays(w: &mut W, kind: &str, all: &ProxyStats, own: &ProxyStats, key: &str) {
    let sessions = kind == "sessions";
    let pick = |a: &'static str, b: &'static str| if sessions { a } else { b };
    let base = format!("simplex_smp_relay_{kind}");
    let req = format!("{base}_requests");
    w.head(
        &req,
        pick(
            "Session requests through relay.",
            "Message requests sent through relay.",
        ),
        "counter",
    );
    w.sample(
        &req,
        "source=\"all\"",
        all.requests.get(),
        &format!("{key}_pRequests"),
    );
    w.sample(
        &req,
        "source=\"own\"",
        own.requests.get(),
        &format!("{key}Own_pRequests"),
    );
    w.out.push('\n');
    let ok = format!("{base}_successes");
    w.head(
        &ok,
        pick(
            "Successful session events through relay.",
            "Successful messages sent through relay.",
        ),
        "counter",
    );
    w.sample(
        &ok,
        "source=\"all\"",
        all.successes.get(),
        &format!("{key}_pSuccesses"),
    );
    w.sample(
        &ok,
        "source=\"own\"",
        own.successes.get(),
        &format!("{key}Own_pSuccesses"),
    );
    w.out.push('\n');
    let e = format!("{base}_errors");
    w.head(
        &e,
        pick(
            "Error session events through relay.",
            "Error events with messages sent through relay.",
        ),
        "counter",
    );
    for (src, p, k) in [
        ("all", all, key.to_string()),
        ("own", own, format!("{key}Own")),
    ] {
        w.sample(
            &e,
            &format!("source=\"{src}\",type=\"connect\""),
            p.errors_connect.get(),
            &format!("{k}_pErrorsConnect"),
        );
        w.sample(
            &e,
            &format!("source=\"{src}\",type=\"compat\""),
            p.errors_compat.get(),
            &format!("{k}_pErrorsCompat"),
        );
        w.sample(
            &e,
            &format!("source=\"{src}\",type=\"other\""),
            p.errors_other.get(),
            &format!("{k}_pErrorsOther"),
        );
    }
    w.out.push('\n');
}

fn services(w: &mut W, s: &ServiceStats, pfx: &str, name: &str) {
    let rows: [(&str, &str, &str, i64, &str); 8] = [
        (
            "assoc_new",
            "New queue associations with",
            "counter",
            s.assoc_new.get(),
            "srvAssocNew",
        ),
        (
            "assoc_duplicate",
            "Duplicate queue associations with",
            "counter",
            s.assoc_duplicate.get(),
            "srvAssocDuplicate",
        ),
        (
            "assoc_updated",
            "Updated queue associations with",
            "counter",
            s.assoc_updated.get(),
            "srvAssocUpdated",
        ),
        (
            "assoc_removed",
            "Removed queue associations with",
            "counter",
            s.assoc_removed.get(),
            "srvAssocRemoved",
        ),
        (
            "sub_count",
            "Service subscriptions by",
            "counter",
            s.sub_count.get(),
            "srvSubCount",
        ),
        (
            "sub_duplicate",
            "Duplicate service subscriptions by",
            "counter",
            s.sub_duplicate.get(),
            "srvSubDuplicate",
        ),
        (
            "sub_queues",
            "Queues subscribed by",
            "gauge",
            s.sub_queues.get(),
            "srvSubQueues",
        ),
        (
            "sub_end",
            "Ended subscriptions with",
            "gauge",
            s.sub_end.get(),
            "srvSubEnd",
        ),
    ];
    for (suffix, help, typ, v, c) in rows {
        let n = format!("simplex_smp_{pfx}_services_{suffix}");
        w.one(
            &n,
            &format!("{help} {name} services."),
            typ,
            v,
            &format!("{pfx}.{c}"),
        );
    }
    // 7.0: drift between what services expect and what the server has
    let drift: [(&str, &str, &Counter, &str); 6] = [
        ("sub_ok", "", &s.sub_ok, "srvSubOk"),
        (
            "sub_more",
            " with more queues than in the client",
            &s.sub_more,
            "srvSubMore",
        ),
        (
            "sub_fewer",
            " with fewer queues than in the client",
            &s.sub_fewer,
            "srvSubFewer",
        ),
        (
            "sub_diff",
            " with different hash than in the client",
            &s.sub_diff,
            "srvSubDiff",
        ),
        (
            "sub_more_total",
            " with more queues than in the client total",
            &s.sub_more_total,
            "srvSubMoreTotal",
        ),
        (
            "sub_fewer_total",
            " with fewer queues than in the client total",
            &s.sub_fewer_total,
            "srvSubFewerTotal",
        ),
    ];
    for (suffix, help, c, key) in drift {
        w.one(
            &format!("simplex_smp_{pfx}_services_{suffix}"),
            &format!("Service subscriptions for {name} services{help}."),
            "gauge",
            c.get(),
            &format!("{pfx}.{key}"),
        );
    }
}

/// 7.0's `Names` section.
fn names(w: &mut W, r: &NameResolverStats) {
    w.section("Names", true);
    let rows: [(&str, &str, &Counter, &str); 5] = [
        (
            "reqs",
            "Total RSLV requests forwarded to this server.",
            &r.reqs,
            "rslvReqs",
        ),
        (
            "success",
            "NameRecord successfully resolved and returned.",
            &r.succ,
            "rslvSucc",
        ),
        (
            "not_found",
            "Name not registered (resolver returned 404 / 400).",
            &r.not_found,
            "rslvNotFound",
        ),
        (
            "resolver_errs",
            "Resolver backend errors (HTTP 5xx, transport, decode, or timeout).",
            &r.resolver_errs,
            "rslvResolverErrs",
        ),
        (
            "disabled",
            "RSLV requests rejected because no resolver is configured (names role off).",
            &r.disabled,
            "rslvDisabled",
        ),
    ];
    for (suffix, help, c, key) in rows {
        w.one(
            &format!("simplex_smp_names_{suffix}"),
            help,
            "counter",
            c.get(),
            key,
        );
    }
}

/// Cumulative buckets as the reference prints them: an extra bucket 60 s below a bucket that
/// follows a gap, so graphs show the step.
fn time_buckets(w: &mut W, metric: &str, b: &TimeBuckets) {
    let (mut prev, mut total) = (0i64, 0i64);
    let name = format!("{metric}_bucket");
    for (sec, cnt) in &b.buckets {
        if sec - 60 > prev {
            w.sample(&name, &format!("le=\"{}\"", sec - 60), total, "");
        }
        total += cnt;
        w.sample(&name, &format!("le=\"{sec}\""), total, "");
        prev = *sec;
    }
}

/// Counts of times in the periods 0-60, 60-300, 300-1200, 1200-3600 and 3600+ seconds.
fn bucket_sums(w: &mut W, metric: &str, b: &TimeBuckets) {
    for (lo, hi) in [
        (0, 60),
        (60, 300),
        (300, 1200),
        (1200, 3600),
        (3600, i64::MAX),
    ] {
        let sum: i64 = b.buckets.range(lo..hi).map(|(_, c)| c).sum();
        let label = if hi <= 3600 {
            format!("period=\"{lo}-{hi}\"")
        } else {
            format!("period=\"{lo}+\"")
        };
        w.sample(metric, &label, sum, "");
    }
}

/// Render the current metrics of a running server.
pub fn render_state(state: &dyn ServerView) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let snap = Snapshot {
        stats: state.stats(),
        counts: state.entity_counts(),
        rt: state.realtime(now_ms / 1000),
        now_ms,
    };
    render(&snap)
}

/// Write the metrics file every `interval` until `shutdown`.
pub async fn run_file_writer(
    state: Arc<dyn ServerView>,
    path: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let text = render_state(state.as_ref());
        let tmp = path.with_extension("txt.tmp");
        if let Err(e) = crate::fsmode::write_private(&tmp, text.as_bytes())
            .and_then(|_| std::fs::rename(&tmp, &path))
        {
            tracing::error!("writing Prometheus metrics to {}: {e}", path.display());
        }
    }
}

/// Serve `GET /metrics` (and `/`) over HTTP until `shutdown`, through the same HTTP stack,
/// connection caps and timeouts as the web page.
pub async fn run_http(
    state: Arc<dyn ServerView>,
    listener: TcpListener,
    limits: Arc<crate::net::ConnLimits>,
    timeouts: crate::net::http::HttpTimeouts,
    shutdown: CancellationToken,
) {
    let sd = shutdown.clone();
    crate::net::serve_accepts(
        "Prometheus",
        listener,
        limits,
        shutdown,
        move |sock, _, permit| {
            let st = state.clone();
            let handler = move |req: hyper::Request<hyper::body::Incoming>| {
                let st = st.clone();
                async move { metrics_response(st.as_ref(), req.method(), req.uri().path()) }
            };
            let sd = sd.clone();
            tokio::spawn(async move {
                crate::net::http::serve_http(sock, handler, timeouts, sd).await;
                drop(permit);
            });
        },
    )
    .await;
}

fn metrics_response(
    state: &dyn ServerView,
    method: &hyper::Method,
    path: &str,
) -> hyper::Response<crate::net::http::Body> {
    use hyper::{header, Method, StatusCode};
    let (status, ctype, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics" | "/") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_state(state),
        ),
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: use /metrics\n".into(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET /metrics\n".into(),
        ),
    };
    let mut r = hyper::Response::new(crate::net::http::Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    // One scrape per connection, as before hyper: simple scrapers read until the server closes.
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}
