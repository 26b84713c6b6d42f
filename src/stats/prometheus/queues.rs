//! The Queues and Subscriptions groups.

use super::writer::W;
use super::Snapshot;

/// Queues created, secured, deleted, active; subscriptions.
pub(super) fn queues(w: &mut W, s: &Snapshot<'_>) {
    let st = s.stats;
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
}
