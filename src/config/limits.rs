//! Connection limits, HTTP timeouts and proxy egress rules: our own keys beside the reference's
//! in `[TRANSPORT]`, `[WEB]`, `[STORE_LOG]` and `[PROXY]` (the reference has none of these).
//!
//! Every listener has a total and a per-IP cap so that idle or hostile sockets cannot use up
//! the process's file descriptors; the SMP cap defaults to what the descriptor limit leaves
//! after the other listeners and a reserve for files and relay connections.

use std::time::Duration;

use super::read::Reader;
use super::ConfigError;

/// Defaults of the keys of this module.
pub mod defaults {
    /// `[TRANSPORT] max_connections_per_ip`: generous, because Tor exits and carrier NATs put
    /// many honest clients behind one address.
    pub const SMP_PER_IP: usize = 1024;
    /// `[WEB] max_connections`.
    pub const WEB_TOTAL: usize = 512;
    /// `[WEB] max_connections_per_ip` (a browser opens about 6).
    pub const WEB_PER_IP: usize = 32;
    /// `[TRANSPORT] control_port_max_connections`.
    pub const CONTROL_TOTAL: usize = 16;
    /// `[STORE_LOG] prometheus_max_connections`.
    pub const PROMETHEUS_TOTAL: usize = 16;
    /// `[WEB] first_byte_timeout` (seconds).
    pub const FIRST_BYTE_SECS: u64 = 10;
    /// `[WEB] idle_timeout` (seconds).
    pub const IDLE_SECS: u64 = 60;
    /// `[PROXY] max_relay_connections`.
    pub const RELAY_CONNECTIONS: usize = 256;
    /// `[PROXY] relay_idle_timeout` (seconds).
    pub const RELAY_IDLE_SECS: u64 = 900;
    /// Descriptors kept back from the SMP cap for files, relay connections and the runtime.
    pub const RESERVE_MIN: usize = 64;
    /// The descriptor limit assumed when it cannot be read.
    pub const FALLBACK_NOFILE: usize = 1024;
}

/// A total and a per-IP cap on the open connections of one listener (or group of listeners).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnCaps {
    /// Open connections at most.
    pub total: usize,
    /// Open connections from one IPv4 address or one IPv6 /64 at most.
    pub per_ip: usize,
}

/// The limits of all listeners and of the proxy's egress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `[TRANSPORT] max_connections`; `None` = derived from the descriptor limit
    /// ([`Limits::smp_caps`]).
    pub smp_total: Option<usize>,
    /// `[TRANSPORT] max_connections_per_ip`.
    pub smp_per_ip: usize,
    /// `[WEB] max_connections` and `max_connections_per_ip` (plain HTTP and a separate HTTPS
    /// port; web clients on a shared SMP port count as SMP connections).
    pub web: ConnCaps,
    /// `[TRANSPORT] control_port_max_connections`.
    pub control: usize,
    /// `[STORE_LOG] prometheus_max_connections`.
    pub prometheus: usize,
    /// `[WEB] first_byte_timeout` and `idle_timeout`, for every HTTP connection.
    pub http: HttpTimeouts,
    /// `[PROXY]` egress rules.
    pub egress: EgressLimits,
}

/// How long an HTTP connection may stay silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Until the first byte of the first request (TLS already done).
    pub first_byte: Duration,
    /// Without any byte read or written, after the first byte; also bounds how long the
    /// headers of one HTTP/1 request may take.
    pub idle: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            first_byte: Duration::from_secs(defaults::FIRST_BYTE_SECS),
            idle: Duration::from_secs(defaults::IDLE_SECS),
        }
    }
}

/// What the proxy role may connect to, and how many relay connections it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressLimits {
    /// `allow_private_destinations`: loopback, private, link-local and other non-public
    /// addresses are refused unless on (default off), so clients cannot use the proxy to
    /// reach the server's own network.
    pub allow_private: bool,
    /// `max_relay_connections`: open relay connections at most.
    pub max_relays: usize,
    /// `relay_idle_timeout`: a relay connection unused this long is closed.
    pub relay_idle: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            allow_private: false,
            max_relays: defaults::RELAY_CONNECTIONS,
            relay_idle: Duration::from_secs(defaults::RELAY_IDLE_SECS),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            smp_total: None,
            smp_per_ip: defaults::SMP_PER_IP,
            web: ConnCaps {
                total: defaults::WEB_TOTAL,
                per_ip: defaults::WEB_PER_IP,
            },
            control: defaults::CONTROL_TOTAL,
            prometheus: defaults::PROMETHEUS_TOTAL,
            http: HttpTimeouts::default(),
            egress: EgressLimits::default(),
        }
    }
}

impl Limits {
    /// The SMP caps, given the process's descriptor limit `nofile`: an explicit
    /// `max_connections`, or what is left after the other listeners, the relay connections
    /// and a reserve of 1/8 (at least 64) for files and the runtime.
    pub fn smp_caps(&self, nofile: usize) -> ConnCaps {
        let total = self.smp_total.unwrap_or_else(|| {
            let reserve = (nofile / 8).max(defaults::RESERVE_MIN);
            let others = self.web.total + self.control + self.prometheus + self.egress.max_relays;
            nofile.saturating_sub(reserve + others).max(16)
        });
        ConnCaps {
            total,
            per_ip: self.smp_per_ip.min(total),
        }
    }
}

fn count(
    r: &Reader<'_>,
    s: &'static str,
    k: &'static str,
    ex: &str,
) -> Result<Option<usize>, ConfigError> {
    match r.number::<usize>(s, k, ex)? {
        Some(0) => Err(r.invalid(
            s,
            k,
            "0",
            "would refuse every connection",
            format!("use a positive number, e.g. {k} = {ex}"),
        )),
        v => Ok(v),
    }
}

fn secs(
    r: &Reader<'_>,
    s: &'static str,
    k: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    let v = count(r, s, k, &default.to_string())?;
    Ok(Duration::from_secs(v.map_or(default, |v| v as u64)))
}

/// Read the keys of this module (absent keys take the defaults above).
pub(crate) fn read(r: &Reader<'_>) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let smp_total = match r.raw("TRANSPORT", "max_connections") {
        None | Some("auto") => None,
        Some(_) => count(r, "TRANSPORT", "max_connections", "10000")?,
    };
    Ok(Limits {
        smp_total,
        smp_per_ip: count(r, "TRANSPORT", "max_connections_per_ip", "1024")?
            .unwrap_or(d.smp_per_ip),
        web: ConnCaps {
            total: count(r, "WEB", "max_connections", "512")?.unwrap_or(d.web.total),
            per_ip: count(r, "WEB", "max_connections_per_ip", "32")?.unwrap_or(d.web.per_ip),
        },
        control: count(r, "TRANSPORT", "control_port_max_connections", "16")?.unwrap_or(d.control),
        prometheus: count(r, "STORE_LOG", "prometheus_max_connections", "16")?
            .unwrap_or(d.prometheus),
        http: HttpTimeouts {
            first_byte: secs(r, "WEB", "first_byte_timeout", defaults::FIRST_BYTE_SECS)?,
            idle: secs(r, "WEB", "idle_timeout", defaults::IDLE_SECS)?,
        },
        egress: EgressLimits {
            allow_private: r.on_off_or("PROXY", "allow_private_destinations", false)?,
            max_relays: count(r, "PROXY", "max_relay_connections", "256")?
                .unwrap_or(d.egress.max_relays),
            relay_idle: secs(r, "PROXY", "relay_idle_timeout", defaults::RELAY_IDLE_SECS)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smp_cap_leaves_descriptors_for_the_rest() {
        let l = Limits::default();
        let c = l.smp_caps(65535);
        // 65535 - 8191 reserve - 512 web - 16 - 16 - 256 relays
        assert_eq!(c.total, 56544);
        assert_eq!(c.per_ip, 1024);
        let small = l.smp_caps(1024);
        assert_eq!(small.total, 1024 - 128 - 800);
        let explicit = Limits {
            smp_total: Some(100),
            ..Limits::default()
        };
        assert_eq!(
            explicit.smp_caps(65535),
            ConnCaps {
                total: 100,
                per_ip: 100
            }
        );
    }
}
