//! Periodic expiry of old messages and pending notifications (the reference's
//! `expireMessagesThread` every 2 hours and `expireNtfsThread` every hour).

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::state::ServerState;
use crate::clock::now_secs;
use crate::sync::lock;

/// Delete messages older than `before` from every queue; returns how many.
pub fn expire_messages(state: &ServerState, before: i64) -> usize {
    let n = state.store.expire_messages(before);
    state.stats.msg_expired.add(n as i64);
    state.stats.msg_count.add(-(n as i64));
    n
}

/// Delete pending notifications older than `before`; returns how many.
pub fn expire_ntfs(state: &ServerState, before: i64) -> usize {
    let mut p = lock(&state.core.pending_ntfs);
    let mut n = 0;
    p.retain(|_, v| {
        let len = v.len();
        v.retain(|x| x.ts >= before);
        n += len - v.len();
        !v.is_empty()
    });
    drop(p);
    state.stats.msg_ntf_expired.add(n as i64);
    state.stats.ntf_count.add(-(n as i64));
    n
}

/// [`expire_messages`] on a blocking thread: a pass over a million queues with messages takes
/// a good part of a second, which must not hold a runtime worker.
async fn expire_messages_off_runtime(state: &Arc<ServerState>, before: i64) -> usize {
    let st = state.clone();
    tokio::task::spawn_blocking(move || expire_messages(&st, before))
        .await
        .unwrap_or(0)
}

/// Run both expiry loops until `shutdown`.
pub async fn run(state: Arc<ServerState>, shutdown: CancellationToken) {
    let s = state.settings.clone();
    let mut msg_tick = tokio::time::interval(s.expire_messages_interval);
    let mut ntf_tick = tokio::time::interval(s.expire_ntfs_interval);
    // The first tick of an interval is immediate; the reference waits a full interval first.
    msg_tick.tick().await;
    ntf_tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = msg_tick.tick() => {
                if let Some(ttl) = s.message_ttl {
                    let n = expire_messages_off_runtime(&state, now_secs() - ttl).await;
                    tracing::info!("expired messages: {n}");
                }
            }
            _ = ntf_tick.tick() => {
                let n = expire_ntfs(&state, now_secs() - s.ntf_ttl);
                if n > 0 {
                    tracing::info!("expired notifications: {n}");
                }
            }
        }
    }
}
