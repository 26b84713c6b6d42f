//! `[PROXY]`: how this server reaches other servers when it forwards messages.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::defaults;
use crate::config::read::{parse_port, Reader};
use crate::config::ConfigError;

/// `socks_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocksMode {
    /// Use the SOCKS proxy only for `.onion` destinations (default).
    #[default]
    Onion,
    /// Use the SOCKS proxy for every destination.
    Always,
}

/// `host_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostMode {
    /// Prefer public host names (default).
    #[default]
    Public,
    /// Prefer onion host names.
    Onion,
}

/// `[PROXY]`: how this server connects to other servers when it forwards messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// `socks_proxy`: `host:port`, host an IP address (`localhost` is accepted too).
    pub socks_proxy: Option<SocketAddr>,
    /// `socks_mode` (default onion).
    pub socks_mode: SocksMode,
    /// `host_mode` (default public).
    pub host_mode: HostMode,
    /// `required_host_mode` (default off).
    pub required_host_mode: bool,
    /// `own_server_domains`: domain suffixes counted as own relays in statistics.
    pub own_server_domains: Vec<String>,
    /// `client_concurrency` (default 32).
    pub client_concurrency: u32,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            socks_proxy: None,
            socks_mode: SocksMode::Onion,
            host_mode: HostMode::Public,
            required_host_mode: false,
            own_server_domains: Vec::new(),
            client_concurrency: defaults::CLIENT_CONCURRENCY,
        }
    }
}

const PROXY: &str = "PROXY";

/// Parse a SOCKS proxy as the reference does: `[host][:port]`, host an IP address
/// (default 127.0.0.1, and `localhost` accepted), port default 9050.
pub fn parse_socks_proxy(s: &str) -> Option<SocketAddr> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host: IpAddr = rest[..end].parse().ok()?;
        let after = &rest[end + 1..];
        (Some(host), after)
    } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
        (Some(IpAddr::V6(s.parse().ok()?)), "")
    } else {
        let (h, p) = match s.find(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let host = match h {
            "" => None,
            "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            h => Some(h.parse::<Ipv4Addr>().ok().map(IpAddr::V4)?),
        };
        (host, p)
    };
    let port = match port {
        "" => 9050,
        p => p.strip_prefix(':').and_then(parse_port)?,
    };
    Some(SocketAddr::new(
        host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port,
    ))
}

pub(super) fn proxy(r: &Reader<'_>) -> Result<Proxy, ConfigError> {
    let socks_proxy = match r.raw(PROXY, "socks_proxy") {
        None => None,
        Some(v) => Some(parse_socks_proxy(v).ok_or_else(|| {
            r.invalid(
                PROXY,
                "socks_proxy",
                v,
                "is not an IP address with an optional port",
                "use e.g. socks_proxy = 127.0.0.1:9050",
            )
        })?),
    };
    let socks_mode = match r.raw(PROXY, "socks_mode") {
        None | Some("onion") => SocksMode::Onion,
        Some("always") => SocksMode::Always,
        Some(v) => {
            return Err(r.invalid(
                PROXY,
                "socks_mode",
                v,
                "is not a SOCKS mode",
                "use socks_mode = onion or socks_mode = always",
            ))
        }
    };
    let host_mode = match r.raw(PROXY, "host_mode") {
        None | Some("public") => HostMode::Public,
        Some("onion") => HostMode::Onion,
        Some(v) => {
            return Err(r.invalid(
                PROXY,
                "host_mode",
                v,
                "is not a host mode",
                "use host_mode = public or host_mode = onion",
            ))
        }
    };
    // Space-separated in the reference; `init --own-domains` writes commas, so accept both.
    let own_server_domains = r
        .raw(PROXY, "own_server_domains")
        .map(|v| {
            v.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Proxy {
        socks_proxy,
        socks_mode,
        host_mode,
        required_host_mode: r.on_off_or(PROXY, "required_host_mode", false)?,
        own_server_domains,
        client_concurrency: r
            .number(PROXY, "client_concurrency", "32")?
            .unwrap_or(defaults::CLIENT_CONCURRENCY),
    })
}
