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
        let last = client
            .rcv_active_at
            .load(Ordering::Relaxed)
            .max(client.snd_active_at.load(Ordering::Relaxed));
        if is_inactive(has_no_subscriptions(client), last, now_secs(), ttl) {
            return;
        }
    }
}

/// The rule, apart from the clock and the timer so it can be tested at any time: a
/// connection is inactive when it holds no subscription and its last activity (sent or
/// received, Unix seconds) is more than `ttl` seconds before `now`.
pub fn is_inactive(no_subscriptions: bool, last_active: i64, now: i64, ttl: u64) -> bool {
    no_subscriptions && last_active < now.saturating_sub(ttl as i64)
}

#[cfg(test)]
mod tests {
    use super::is_inactive;

    /// The TTL boundary with an injected time: idle for exactly the TTL is still active, one
    /// second more is not; a subscription keeps a connection however long it is idle.
    #[test]
    fn inactive_after_the_ttl_without_subscriptions() {
        let last = 1_700_000_000;
        let ttl = 21_600;
        assert!(!is_inactive(true, last, last, ttl));
        assert!(!is_inactive(true, last, last + 21_600, ttl));
        assert!(is_inactive(true, last, last + 21_601, ttl));
        assert!(!is_inactive(false, last, last + 10 * 21_600, ttl));
        // a clock that went back never closes a connection
        assert!(!is_inactive(true, last, last - 100, ttl));
    }
}
