//! Statistics of transmissions counted before a command runs: batches and failed
//! authorizations, as the reference's `receive` counts them.

use crate::protocol::command::Command;
use crate::stats::ServerStats;

/// The first transmission of a batch of several: count the batch by its command.
pub fn batch(stats: &ServerStats, cmd: &Command) {
    match cmd {
        Command::Sub => stats.q_sub_all_b.inc(),
        Command::Del => stats.q_deleted_all_b.inc(),
        Command::Ndel => stats.ntf_deleted_b.inc(),
        Command::Nsub => stats.ntf_sub_b.inc(),
        _ => {}
    }
}

/// A transmission failed authorization with `AUTH`.
pub fn auth_failure(stats: &ServerStats, cmd: &Command) {
    match cmd {
        Command::Send(..) => stats.msg_sent_auth.inc(),
        Command::Sub => stats.q_sub_auth.inc(),
        Command::Nsub => stats.ntf_sub_auth.inc(),
        Command::Get => stats.msg_get_auth.inc(),
        _ => {}
    }
}

/// Whether a relay's first host is one of the operator's own domains (`[PROXY]
/// own_server_domains`): the host itself or a subdomain of it, as the reference decides.
pub fn is_own_server(own_domains: &[String], first_host: &[u8]) -> bool {
    own_domains.iter().any(|d| {
        let d = d.as_bytes();
        first_host == d
            || (first_host.len() > d.len()
                && first_host.ends_with(d)
                && first_host[first_host.len() - d.len() - 1] == b'.')
    })
}

/// Count a proxy answer in `all`, and also in `own` when the relay is the operator's own.
pub fn proxy_result_own(
    all: &crate::stats::counters::ProxyStats,
    own: &crate::stats::counters::ProxyStats,
    is_own: bool,
    msg: &crate::protocol::response::BrokerMsg,
) {
    proxy_result(all, msg);
    if is_own {
        proxy_result(own, msg);
    }
}

/// Count a PRXY answer in `pRelays` (and `pRelaysOwn`) as the reference does: once the relay
/// is connected, PKEY is a success and anything else a compatibility error; a failed
/// connection is a connection error when temporary (network, timeout), else another error.
pub fn relay_session_result(
    all: &crate::stats::counters::ProxyStats,
    own: &crate::stats::counters::ProxyStats,
    is_own: bool,
    msg: &crate::protocol::response::BrokerMsg,
    connected: bool,
) {
    use crate::protocol::errors::{BrokerError, ErrorType, ProxyError};
    use crate::protocol::response::BrokerMsg;
    for p in std::iter::once(all).chain(is_own.then_some(own)) {
        p.requests.inc();
        match msg {
            BrokerMsg::Pkey(..) => p.successes.inc(),
            _ if connected => p.errors_compat.inc(),
            BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(
                BrokerError::Network | BrokerError::Timeout,
            ))) => p.errors_connect.inc(),
            _ => p.errors_other.inc(),
        }
    }
}

/// Count a PFWD answer in `pMsgFwds` (or any proxy answer) as the reference classifies
/// it: the expected answer or a destination's protocol error is a success; version problems
/// are compatibility errors; network problems connection errors; the rest other errors.
pub fn proxy_result(
    p: &crate::stats::counters::ProxyStats,
    msg: &crate::protocol::response::BrokerMsg,
) {
    use crate::protocol::errors::{BrokerError, ErrorType, ProxyError, TransportError};
    use crate::protocol::response::BrokerMsg;
    p.requests.inc();
    match msg {
        BrokerMsg::Pkey(..) | BrokerMsg::Pres(..) => p.successes.inc(),
        BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(b))) => match b {
            BrokerError::Transport(TransportError::Version) => p.errors_compat.inc(),
            BrokerError::Network | BrokerError::Timeout | BrokerError::Host => {
                p.errors_connect.inc()
            }
            _ => p.errors_other.inc(),
        },
        BrokerMsg::Err(ErrorType::Proxy(ProxyError::NoSession)) => p.errors_connect.inc(),
        BrokerMsg::Err(ErrorType::Proxy(_)) => p.errors_other.inc(),
        // an error from the destination relay, forwarded to the client
        BrokerMsg::Err(_) => p.successes.inc(),
        _ => p.errors_other.inc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_servers_are_the_domains_and_their_subdomains() {
        let own = vec!["example.com".to_string(), "127.0.0.1".to_string()];
        assert!(is_own_server(&own, b"example.com"));
        assert!(is_own_server(&own, b"smp1.example.com"));
        assert!(is_own_server(&own, b"127.0.0.1"));
        assert!(!is_own_server(&own, b"badexample.com"));
        assert!(!is_own_server(&own, b"example.com.evil"));
        assert!(!is_own_server(&own, b"example.org"));
        assert!(!is_own_server(&[], b"example.com"));
    }

    #[test]
    fn relay_sessions_are_classified_by_connection() {
        use crate::protocol::errors::{BrokerError, ErrorType, ProxyError, TransportError};
        use crate::protocol::response::BrokerMsg;
        let all = crate::stats::counters::ProxyStats::default();
        let own = crate::stats::counters::ProxyStats::default();
        let b = |e| BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(e)));
        let version = || b(BrokerError::Transport(TransportError::Version));
        relay_session_result(&all, &own, false, &b(BrokerError::Network), false);
        relay_session_result(&all, &own, false, &b(BrokerError::Host), false);
        relay_session_result(&all, &own, false, &version(), false);
        relay_session_result(&all, &own, true, &version(), true);
        let no_auth = b(BrokerError::Transport(TransportError::NoServerAuth));
        relay_session_result(&all, &own, true, &no_auth, true);
        let counts = |p: &crate::stats::counters::ProxyStats| p.named().map(|(_, c)| c.get());
        // requests, successes, connect, compat, other
        assert_eq!(counts(&all), [5, 0, 1, 2, 2]);
        assert_eq!(counts(&own), [2, 0, 0, 2, 0]);
    }

    #[test]
    fn own_answers_count_in_both() {
        use crate::protocol::errors::{BrokerError, ErrorType, ProxyError};
        use crate::protocol::response::BrokerMsg;
        let (all, own) = (Default::default(), Default::default());
        let refused = BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(BrokerError::Network)));
        proxy_result_own(&all, &own, true, &refused);
        proxy_result_own(&all, &own, false, &refused);
        let (all, own): (
            crate::stats::counters::ProxyStats,
            crate::stats::counters::ProxyStats,
        ) = (all, own);
        assert_eq!((all.requests.get(), all.errors_connect.get()), (2, 2));
        assert_eq!((own.requests.get(), own.errors_connect.get()), (1, 1));
    }
}
