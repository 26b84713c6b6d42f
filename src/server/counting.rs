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

/// Count a proxy answer (PRXY -> `pRelays`, PFWD -> `pMsgFwds`) as the reference classifies
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
