//! The Services and Names groups.

use super::writer::W;
use crate::stats::counters::{Counter, NameResolverStats, ServerStats, ServiceStats};

/// Service certificates and their subscriptions; the names resolver.
pub(super) fn services_group(w: &mut W, st: &ServerStats, counts: &crate::stats::EntityCounts) {
    w.section("Services", false);
    w.one(
        "simplex_smp_rcv_services_count",
        "The count of receiving services.",
        "gauge",
        counts.services[0],
        "rcvServiceCount",
    );
    w.one(
        "simplex_smp_rcv_services_queues_count",
        "The count of queues associated with receiving services.",
        "gauge",
        counts.services[2],
        "rcv.rcvServiceQueuesCount",
    );
    w.one(
        "simplex_smp_ntf_services_count",
        "The count of notification services.",
        "gauge",
        counts.services[1],
        "ntfServiceCount",
    );
    w.one(
        "simplex_smp_ntf_services_queues_count",
        "The count of queues associated with notification services.",
        "gauge",
        counts.services[3],
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
    services(w, &st.rcv_services, "rcv", "receiving");
    services(w, &st.ntf_services, "ntf", "notification");
    names(w, &st.rslv);
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
