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
