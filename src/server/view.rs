//! The server as the statistics see it ([`crate::stats::ServerView`]).

use super::state::ServerState;
use crate::stats::{EntityCounts, ServerStats, ServerView};
use crate::sync::lock;

impl ServerView for ServerState {
    fn stats(&self) -> &ServerStats {
        &self.stats
    }

    fn entity_counts(&self) -> EntityCounts {
        let (r, n, rq, nq) = self.core.services().counts();
        EntityCounts {
            services: [r, n, rq, nq],
            ..crate::stats::entity_counts(self.store.as_ref())
        }
    }

    fn realtime(&self, now: i64) -> crate::stats::RealTime {
        realtime(self, now)
    }
}

/// Collect the real-time metrics of a running server.
fn realtime(state: &ServerState, now: i64) -> crate::stats::RealTime {
    let mut rt = crate::stats::RealTime {
        sockets: lock(&state.stats.sockets)
            .iter()
            .map(|(p, s)| (*p, s.accepted.get(), s.closed.get()))
            .collect(),
        tasks: tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_alive_tasks())
            .unwrap_or(0),
        ..crate::stats::RealTime::default()
    };
    let clients: Vec<_> = lock(&state.clients).values().cloned().collect();
    rt.clients = clients.len();
    for c in &clients {
        let subs = lock(&c.core.subs);
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
    let ((subs, subscribed), (ntf_subs, ntf_subscribed)) = state.core.subs.counts();
    rt.smp = crate::stats::SubCounts {
        subs,
        clients: subscribed,
    };
    rt.ntf = crate::stats::SubCounts {
        subs: ntf_subs,
        clients: ntf_subscribed,
    };
    rt
}
