//! The Messages and Notifications groups.

use super::writer::W;
use super::Snapshot;

/// Messages sent, received, expired; notification messages and subscriptions.
pub(super) fn messages(w: &mut W, s: &Snapshot<'_>) {
    let st = s.stats;
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
}
