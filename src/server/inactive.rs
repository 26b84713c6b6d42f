//! `[INACTIVE_CLIENTS]`: a connection with no subscriptions that has neither sent nor received
//! anything for the TTL is closed, checked every `check_interval`, as the reference does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::state::{ClientHandle, ServerState};
use crate::clock::now_secs;
use crate::sync::lock;

/// True when the client holds no queue or notifier subscription (GET markers do not count).
pub fn has_no_subscriptions(c: &ClientHandle) -> bool {
    !lock(&c.core.subs).values().any(|s| !s.prohibit) && lock(&c.core.ntf_subs).is_empty()
}

/// Resolve when `client` should be disconnected as inactive; never, when the feature is off.
pub async fn expired(state: &ServerState, client: &Arc<ClientHandle>) {
    let Some((ttl, interval)) = state.settings.inactive_clients else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
        if !has_no_subscriptions(client) {
            continue;
        }
        let last = client
            .rcv_active_at
            .load(Ordering::Relaxed)
            .max(client.snd_active_at.load(Ordering::Relaxed));
        if last < now_secs() - ttl as i64 {
            return;
        }
    }
}
