//! The control port's reports: `clients`, `stats`, `stats-rts` and the server information,
//! in the reference's formats (operators' scripts parse them).

use std::fmt::Write as _;

use super::port::{time_text, ControlContext};
use crate::sync::lock;

impl ControlContext {
    /// The reference's CSV: client number, session ID in base64 (standard alphabet, padded),
    /// `True`/`False`, then times as Unix seconds, the age in seconds and the subscription count.
    pub(super) fn clients(&self, o: &mut String) {
        use base64::Engine;
        use std::sync::atomic::Ordering::Relaxed;
        o.push_str(
            "clientId,sessionId,connected,createdAt,rcvActiveAt,sndActiveAt,age,subscriptions\n",
        );
        let mut cs: Vec<_> = lock(&self.state.clients).values().cloned().collect();
        cs.sort_by_key(|c| c.id);
        let now = crate::clock::now_secs();
        for c in cs {
            let connected = if c.is_connected() { "True" } else { "False" };
            let sid = c
                .session_id
                .get()
                .map(|s| base64::engine::general_purpose::STANDARD.encode(s))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "{},{sid},{connected},{},{},{},{},{}",
                c.id,
                c.created_at,
                c.rcv_active_at.load(Relaxed),
                c.snd_active_at.load(Relaxed),
                now - c.created_at,
                lock(&c.core.subs).len()
            );
        }
    }

    pub(super) fn stats(&self, o: &mut String, admin: bool) {
        let s = &self.state.stats;
        let counts = crate::stats::ServerView::entity_counts(self.state.as_ref());
        let from = s.from_time.load(std::sync::atomic::Ordering::Relaxed);
        // as the reference shows a UTCTime
        let t = time_text(from);
        let _ = writeln!(
            o,
            "fromTime: {} UTC",
            t.trim_end_matches('Z').replace('T', " ")
        );
        let mut put = |name: &str| {
            let v = s.counters.by_name(name).map(|c| c.get()).unwrap_or(0);
            let _ = writeln!(o, "{name}: {v}");
        };
        for n in [
            "qCreated",
            "qSecured",
            "qDeletedAll",
            "qDeletedAllB",
            "qDeletedNew",
            "qDeletedSecured",
        ] {
            put(n);
        }
        let _ = writeln!(o, "daily active queues: {}", s.active_queues.sizes().0);
        for n in ["qSub", "qSubAllB", "qSubEnd", "qSubEndB"] {
            put_line(o, s, n);
        }
        let _ = writeln!(
            o,
            "other SUB events (auth, duplicate, prohibited): ({},{},{})",
            s.q_sub_auth.get(),
            s.q_sub_duplicate.get(),
            s.q_sub_prohibited.get()
        );
        for n in ["msgSent", "msgRecv", "msgRecvGet", "msgGet", "msgGetNoMsg"] {
            put_line(o, s, n);
        }
        let _ = writeln!(
            o,
            "other GET events (auth, duplicate, prohibited): ({},{},{})",
            s.msg_get_auth.get(),
            s.msg_get_duplicate.get(),
            s.msg_get_prohibited.get()
        );
        for n in [
            "msgSentNtf",
            "msgRecvNtf",
            "msgNtfs",
            "msgNtfsB",
            "msgNtfExpired",
            "qCount",
        ] {
            put_line(o, s, n);
        }
        let _ = writeln!(o, "qCount 2: {}", counts.queues);
        let _ = writeln!(o, "notifiers: {}", counts.notifiers);
        put_line(o, s, "msgCount");
        put_line(o, s, "ntfCount");
        if admin {
            let n: usize = lock(&self.state.core.pending_ntfs)
                .values()
                .map(Vec::len)
                .sum();
            let _ = writeln!(o, "ntfCount 2: {n}");
        }
        for (name, p) in [
            ("pRelays", &s.p_relays),
            ("pRelaysOwn", &s.p_relays_own),
            ("pMsgFwds", &s.p_msg_fwds),
            ("pMsgFwdsOwn", &s.p_msg_fwds_own),
        ] {
            let _ = writeln!(
                o,
                "{name}: requests={}, successes={}, errorsConnect={}, errorsCompat={}, errorsOther={}",
                p.requests.get(),
                p.successes.get(),
                p.errors_connect.get(),
                p.errors_compat.get(),
                p.errors_other.get()
            );
        }
        put_line(o, s, "pMsgFwdsRecv");
        for (n, v) in [
            "rcvServiceCount",
            "ntfServiceCount",
            "rcvServiceQueuesCount",
            "ntfServiceQueuesCount",
        ]
        .into_iter()
        .zip(counts.services)
        {
            let _ = writeln!(o, "{n}: {v}");
        }
    }

    pub(super) fn runtime(&self, o: &mut String) {
        let (tasks, workers) = runtime_counts();
        let _ = writeln!(o, "memory_rss_bytes: {}", rss_bytes().unwrap_or(0));
        let _ = writeln!(o, "tasks: {tasks}");
        let _ = writeln!(o, "worker_threads: {workers}");
        let _ = writeln!(o, "connections: {}", self.state.client_count());
        match self.state.tor_status.get() {
            Some(status) => {
                let _ = writeln!(o, "tor: {}", status());
            }
            None => o.push_str("tor: off\n"),
        }
    }

    pub(super) fn server_info(&self, o: &mut String, admin: bool) {
        let (tasks, _) = runtime_counts();
        let _ = writeln!(o, "Threads: {tasks}");
        let clients: Vec<_> = lock(&self.state.clients).values().cloned().collect();
        let _ = writeln!(o, "Clients: {}", clients.len());
        if admin {
            let mut subs = 0;
            let mut groups = (0usize, 0usize, 0usize, 0usize);
            let mut subscribed = 0;
            for c in &clients {
                let s = lock(&c.core.subs);
                subs += s.len();
                if !s.is_empty() {
                    subscribed += 1;
                }
                for sub in s.values() {
                    if sub.prohibit {
                        groups.3 += 1;
                    } else {
                        groups.0 += 1;
                    }
                }
            }
            let _ = writeln!(o, "SMP subscriptions (via clients): {subs}");
            let _ = writeln!(
                o,
                "SMP subscriptions (by group: NoSub, SubPending, SubThread, ProhibitSub): ({},{},{},{})",
                groups.0, groups.1, groups.2, groups.3
            );
            let _ = writeln!(o, "SMP subscribed clients (via clients): {subscribed}");
            let ntf: usize = clients.iter().map(|c| lock(&c.core.ntf_subs).len()).sum();
            let ntf_cl = clients
                .iter()
                .filter(|c| !lock(&c.core.ntf_subs).is_empty())
                .count();
            let _ = writeln!(o, "Ntf subscriptions (via clients): {ntf}");
            let _ = writeln!(o, "Ntf subscribed clients (via clients): {ntf_cl}");
        }
        let rt = crate::stats::ServerView::realtime(self.state.as_ref(), crate::clock::now_secs());
        let _ = writeln!(o, "SMP subscriptions: {}", rt.smp.subs);
        let _ = writeln!(o, "SMP subscribed clients: {}", rt.smp.clients);
        let _ = writeln!(o, "Ntf subscriptions: {}", rt.ntf.subs);
        let _ = writeln!(o, "Ntf subscribed clients: {}", rt.ntf.clients);
        // ours: the [INFORMATION] the server currently publishes (reloaded on SIGHUP)
        let info = self
            .auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .information
            .clone();
        let _ = writeln!(o, "Server information: {info}");
    }
}

fn put_line(o: &mut String, s: &crate::stats::ServerStats, name: &str) {
    let v = s.counters.by_name(name).map(|c| c.get()).unwrap_or(0);
    let _ = writeln!(o, "{name}: {v}");
}

/// (live tasks, worker threads) of the current runtime.
pub(super) fn runtime_counts() -> (usize, usize) {
    tokio::runtime::Handle::try_current()
        .map(|h| {
            let m = h.metrics();
            (m.num_alive_tasks(), m.num_workers())
        })
        .unwrap_or((0, 0))
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
