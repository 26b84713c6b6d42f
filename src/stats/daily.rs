//! The daily statistics CSV (`smp-server-stats.daily.log`): one line per day written at
//! 00:00 UTC with exactly the reference's columns, and the clock that schedules it (injectable,
//! so tests drive the day boundary).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::counters::{Counter, ServerStats};
use super::period::iso_date;
use super::EntityCounts;

/// Column names of the CSV. The first 75 are the header the operators' guide documents; the
/// rest are the columns the reference appends after them (store counts, service stats and, in
/// 7.0, name resolution: 101 in all).
pub const DAILY_CSV_COLUMNS: &[&str] = &[
    "fromTime",
    "qCreated",
    "qSecured",
    "qDeleted",
    "msgSent",
    "msgRecv",
    "dayMsgQueues",
    "weekMsgQueues",
    "monthMsgQueues",
    "msgSentNtf",
    "msgRecvNtf",
    "dayCountNtf",
    "weekCountNtf",
    "monthCountNtf",
    "qCount",
    "msgCount",
    "msgExpired",
    "qDeletedNew",
    "qDeletedSecured",
    "pRelays_pRequests",
    "pRelays_pSuccesses",
    "pRelays_pErrorsConnect",
    "pRelays_pErrorsCompat",
    "pRelays_pErrorsOther",
    "pRelaysOwn_pRequests",
    "pRelaysOwn_pSuccesses",
    "pRelaysOwn_pErrorsConnect",
    "pRelaysOwn_pErrorsCompat",
    "pRelaysOwn_pErrorsOther",
    "pMsgFwds_pRequests",
    "pMsgFwds_pSuccesses",
    "pMsgFwds_pErrorsConnect",
    "pMsgFwds_pErrorsCompat",
    "pMsgFwds_pErrorsOther",
    "pMsgFwdsOwn_pRequests",
    "pMsgFwdsOwn_pSuccesses",
    "pMsgFwdsOwn_pErrorsConnect",
    "pMsgFwdsOwn_pErrorsCompat",
    "pMsgFwdsOwn_pErrorsOther",
    "pMsgFwdsRecv",
    "qSub",
    "qSubAuth",
    "qSubDuplicate",
    "qSubProhibited",
    "msgSentAuth",
    "msgSentQuota",
    "msgSentLarge",
    "msgNtfs",
    "msgNtfNoSub",
    "msgNtfLost",
    "qSubNoMsg",
    "msgRecvGet",
    "msgGet",
    "msgGetNoMsg",
    "msgGetAuth",
    "msgGetDuplicate",
    "msgGetProhibited",
    "psSubDaily",
    "psSubWeekly",
    "psSubMonthly",
    "qCount2",
    "ntfCreated",
    "ntfDeleted",
    "ntfSub",
    "ntfSubAuth",
    "ntfSubDuplicate",
    "ntfCount",
    "qDeletedAllB",
    "qSubAllB",
    "qSubEnd",
    "qSubEndB",
    "ntfDeletedB",
    "ntfSubB",
    "msgNtfsB",
    "msgNtfExpired",
    // appended by newer reference versions
    "ntfCountStored",
    "rcvServiceCount",
    "ntfServiceCount",
    "rcvServiceQueuesCount",
    "ntfServiceQueuesCount",
    "rcvServices_assocNew",
    "rcvServices_assocDuplicate",
    "rcvServices_assocUpdated",
    "rcvServices_assocRemoved",
    "rcvServices_subCount",
    "rcvServices_subDuplicate",
    "rcvServices_subQueues",
    "rcvServices_subEnd",
    "ntfServices_assocNew",
    "ntfServices_assocDuplicate",
    "ntfServices_assocUpdated",
    "ntfServices_assocRemoved",
    "ntfServices_subCount",
    "ntfServices_subDuplicate",
    "ntfServices_subQueues",
    "ntfServices_subEnd",
    "rslvReqs",
    "rslvSucc",
    "rslvNotFound",
    "rslvResolverErrs",
    "rslvDisabled",
];

/// Take the per-day counters (resetting them) and build the CSV line for the day that ends
/// at `now`, as the reference's `logServerStats`.
pub fn take_daily_line(s: &ServerStats, counts: &EntityCounts, now: i64) -> String {
    let from = s.from_time.swap(now, Ordering::Relaxed);
    let t = |c: &Counter| c.swap(0).to_string();
    let mut cols: Vec<String> = vec![iso_date(from)];
    // the order of the swaps does not matter; the order of the columns does
    let q_created = t(&s.q_created);
    let q_secured = t(&s.q_secured);
    let q_deleted_all = t(&s.q_deleted_all);
    let q_deleted_all_b = t(&s.q_deleted_all_b);
    let q_deleted_new = t(&s.q_deleted_new);
    let q_deleted_secured = t(&s.q_deleted_secured);
    let q_sub = t(&s.q_sub);
    let q_sub_all_b = t(&s.q_sub_all_b);
    let q_sub_auth = t(&s.q_sub_auth);
    let q_sub_duplicate = t(&s.q_sub_duplicate);
    let q_sub_prohibited = t(&s.q_sub_prohibited);
    let q_sub_end = t(&s.q_sub_end);
    let q_sub_end_b = t(&s.q_sub_end_b);
    let ntf_created = t(&s.ntf_created);
    let ntf_deleted = t(&s.ntf_deleted);
    let ntf_deleted_b = t(&s.ntf_deleted_b);
    let ntf_sub = t(&s.ntf_sub);
    let ntf_sub_b = t(&s.ntf_sub_b);
    let ntf_sub_auth = t(&s.ntf_sub_auth);
    let ntf_sub_duplicate = t(&s.ntf_sub_duplicate);
    let msg_sent = t(&s.msg_sent);
    let msg_sent_auth = t(&s.msg_sent_auth);
    let msg_sent_quota = t(&s.msg_sent_quota);
    let msg_sent_large = t(&s.msg_sent_large);
    let msg_recv = t(&s.msg_recv);
    let msg_recv_get = t(&s.msg_recv_get);
    let msg_get = t(&s.msg_get);
    let msg_get_no_msg = t(&s.msg_get_no_msg);
    let msg_get_auth = t(&s.msg_get_auth);
    let msg_get_duplicate = t(&s.msg_get_duplicate);
    let msg_get_prohibited = t(&s.msg_get_prohibited);
    let msg_expired = t(&s.msg_expired);
    let ps = s.active_queues.report(now);
    let msg_sent_ntf = t(&s.msg_sent_ntf);
    let msg_recv_ntf = t(&s.msg_recv_ntf);
    let ps_ntf = s.active_queues_ntf.report(now);
    let msg_ntfs = t(&s.msg_ntfs);
    let msg_ntfs_b = t(&s.msg_ntfs_b);
    let msg_ntf_no_sub = t(&s.msg_ntf_no_sub);
    let msg_ntf_lost = t(&s.msg_ntf_lost);
    let msg_ntf_expired = t(&s.msg_ntf_expired);
    // not logged, only reset: it limits blocking per day
    s.q_blocked.swap(0);
    let proxy = |p: &super::counters::ProxyStats| -> Vec<String> {
        p.named()
            .iter()
            .map(|(_, c)| c.swap(0).to_string())
            .collect()
    };
    let p_relays = proxy(&s.p_relays);
    let p_relays_own = proxy(&s.p_relays_own);
    let p_msg_fwds = proxy(&s.p_msg_fwds);
    let p_msg_fwds_own = proxy(&s.p_msg_fwds_own);
    let p_msg_fwds_recv = t(&s.p_msg_fwds_recv);
    let service = |p: &super::counters::ServiceStats| -> Vec<String> {
        p.named().iter().map(|(_, c)| c.get().to_string()).collect()
    };
    cols.extend([
        q_created,
        q_secured,
        q_deleted_all,
        msg_sent,
        msg_recv,
        ps.day,
        ps.week,
        ps.month,
        msg_sent_ntf,
        msg_recv_ntf,
        ps_ntf.day,
        ps_ntf.week,
        ps_ntf.month,
        s.q_count.get().to_string(),
        s.msg_count.get().to_string(),
        msg_expired,
        q_deleted_new,
        q_deleted_secured,
    ]);
    cols.extend(p_relays);
    cols.extend(p_relays_own);
    cols.extend(p_msg_fwds);
    cols.extend(p_msg_fwds_own);
    cols.extend([
        p_msg_fwds_recv,
        q_sub,
        q_sub_auth,
        q_sub_duplicate,
        q_sub_prohibited,
        msg_sent_auth,
        msg_sent_quota,
        msg_sent_large,
        msg_ntfs,
        msg_ntf_no_sub,
        msg_ntf_lost,
        "0".into(),
        msg_recv_get,
        msg_get,
        msg_get_no_msg,
        msg_get_auth,
        msg_get_duplicate,
        msg_get_prohibited,
        "0".into(),
        "0".into(),
        "0".into(),
        counts.queues.to_string(),
        ntf_created,
        ntf_deleted,
        ntf_sub,
        ntf_sub_auth,
        ntf_sub_duplicate,
        counts.notifiers.to_string(),
        q_deleted_all_b,
        q_sub_all_b,
        q_sub_end,
        q_sub_end_b,
        ntf_deleted_b,
        ntf_sub_b,
        msg_ntfs_b,
        msg_ntf_expired,
        s.ntf_count.get().to_string(),
    ]);
    cols.extend(counts.services.iter().map(|n| n.to_string()));
    cols.extend(service(&s.rcv_services));
    cols.extend(service(&s.ntf_services));
    // 7.0: name resolution, reset daily
    cols.extend(s.rslv.named().iter().map(|(_, c)| c.swap(0).to_string()));
    cols.join(",")
}

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// Append one line to the CSV file.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = crate::fsmode::options()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

/// Write a line at every 00:00 UTC until `shutdown`. `counts` gives the store's entity counts.
pub async fn run_daily_log(
    stats: Arc<ServerStats>,
    counts: Arc<dyn Fn() -> EntityCounts + Send + Sync>,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    let mut next = (clock.now().div_euclid(86400) + 1) * 86400;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = clock.sleep_until(next) => {}
        }
        let line = take_daily_line(&stats, &counts(), clock.now());
        if let Err(e) = append_line(&path, &line) {
            tracing::error!("writing daily statistics to {}: {e}", path.display());
        }
        next += 86400;
    }
}
