//! `[TRANSPORT]`: the SMP ports and protocol versions.

use crate::config::address::PLACEHOLDER_HOST;
use crate::config::defaults;
use crate::config::read::Reader;
use crate::config::ConfigError;

/// `websockets`: deprecated extra WebSocket listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Websockets {
    /// `off`.
    #[default]
    Off,
    /// `on` (port 80) or a port list; SMP ports are removed from it, as in the reference.
    Ports(Vec<u16>),
}

/// `[TRANSPORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// `host`: only used to print the server address (default `<hostnames>`).
    pub host: String,
    /// `port`: comma-separated SMP ports (default `5223,443`).
    pub ports: Vec<u16>,
    /// `log_tls_errors` (default off).
    pub log_tls_errors: bool,
    /// `websockets` (default off).
    pub websockets: Websockets,
    /// `control_port`: the control port, if enabled.
    pub control_port: Option<u16>,
    /// `accept_service_credentials` (default on).
    pub accept_service_credentials: bool,
    /// `max_smp_version` (ours; the reference has no key): the highest SMP version offered,
    /// 6..=20 (default 20), for an operator who must hold clients at an older version.
    pub max_smp_version: u16,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            host: PLACEHOLDER_HOST.into(),
            ports: defaults::PORTS.to_vec(),
            log_tls_errors: false,
            websockets: Websockets::Off,
            control_port: None,
            accept_service_credentials: true,
            max_smp_version: crate::protocol::version::CURRENT_SERVER_VERSION,
        }
    }
}

const TRANSPORT: &str = "TRANSPORT";

pub(super) fn transport(r: &Reader<'_>) -> Result<Transport, ConfigError> {
    let ports = match r.raw(TRANSPORT, "port") {
        None => defaults::PORTS.to_vec(),
        Some(v) => r.port_list(TRANSPORT, "port", v)?,
    };
    let websockets = match r.raw(TRANSPORT, "websockets") {
        None | Some("off") => Websockets::Off,
        Some("on") => Websockets::Ports(vec![80]),
        Some(v) => {
            let ws = r.port_list(TRANSPORT, "websockets", v).map_err(|_| {
                r.invalid(
                    TRANSPORT,
                    "websockets",
                    v,
                    "is neither on, off nor a port list",
                    "use websockets = off",
                )
            })?;
            Websockets::Ports(ws.into_iter().filter(|p| !ports.contains(p)).collect())
        }
    };
    Ok(Transport {
        host: r
            .text(TRANSPORT, "host")
            .unwrap_or_else(|| PLACEHOLDER_HOST.to_string()),
        ports,
        log_tls_errors: r.on_off_or(TRANSPORT, "log_tls_errors", false)?,
        websockets,
        control_port: r.port(TRANSPORT, "control_port", "5224")?,
        accept_service_credentials: r.on_off_or(TRANSPORT, "accept_service_credentials", true)?,
        max_smp_version: max_smp_version(r)?,
    })
}

/// `[TRANSPORT] max_smp_version`: 6..=20.
fn max_smp_version(r: &Reader<'_>) -> Result<u16, ConfigError> {
    use crate::protocol::version::{CURRENT_SERVER_VERSION as MAX, MIN_SERVER_VERSION as MIN};
    let v = r
        .number::<u16>(TRANSPORT, "max_smp_version", "20")?
        .unwrap_or(MAX);
    if !(MIN..=MAX).contains(&v) {
        return Err(r.invalid(
            TRANSPORT,
            "max_smp_version",
            &v.to_string(),
            format!("is outside the versions this server speaks ({MIN}..{MAX})"),
            format!("use a version from {MIN} to {MAX}, or remove the key"),
        ));
    }
    Ok(v)
}
