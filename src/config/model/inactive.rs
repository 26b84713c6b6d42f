//! `[INACTIVE_CLIENTS]`: disconnecting clients that stay silent.

use crate::config::defaults;
use crate::config::read::Reader;
use crate::config::ConfigError;

/// `[INACTIVE_CLIENTS]` when `disconnect = on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InactiveClients {
    /// `ttl`: seconds without activity before disconnecting.
    pub ttl_secs: u64,
    /// `check_interval`: seconds between checks.
    pub check_interval_secs: u64,
}

const INACTIVE: &str = "INACTIVE_CLIENTS";

pub(super) fn inactive_clients(r: &Reader<'_>) -> Result<Option<InactiveClients>, ConfigError> {
    if !r.on_off_or(INACTIVE, "disconnect", false)? {
        return Ok(None);
    }
    Ok(Some(InactiveClients {
        ttl_secs: r
            .number(INACTIVE, "ttl", "21600")?
            .unwrap_or(defaults::INACTIVE_TTL_SECS),
        check_interval_secs: r
            .number(INACTIVE, "check_interval", "3600")?
            .unwrap_or(defaults::INACTIVE_CHECK_INTERVAL_SECS),
    }))
}
