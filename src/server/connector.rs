//! Outbound connections for the proxy role: direct TCP, SOCKS5 (`[PROXY] socks_proxy`) and
//! embedded Tor (Arti), and the rules choosing between them (`socks_mode`, `host_mode`,
//! `required_host_mode`, `[TOR] egress`) as the reference's client applies them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{HostMode, SocksMode};

mod socks5;
pub use socks5::{socks5_connect, SocksCredentials};

pub use crate::transport::stream::{
    is_onion, AsyncReadWrite, BoxedStream, ConnectFuture, Connector,
};

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// Plain TCP.
#[derive(Clone, Debug)]
pub struct DirectConnector {
    /// Limit on name resolution plus the TCP handshake.
    pub timeout: Duration,
}

impl Connector for DirectConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        Box::pin(async move {
            if is_onion(host) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a .onion host cannot be reached without Tor",
                ));
            }
            let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((host, port)))
                .await
                .map_err(|_| timed_out("TCP connection"))??;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp) as BoxedStream)
        })
    }
}

/// Through a SOCKS5 proxy (e.g. a tor daemon's SocksPort); names are resolved by the proxy.
#[derive(Clone, Debug)]
pub struct SocksConnector {
    /// The proxy.
    pub proxy: SocketAddr,
    /// Username/password; Tor isolates circuits by them.
    pub credentials: Option<SocksCredentials>,
    /// Limit on the whole connection, proxy handshake included.
    pub timeout: Duration,
}

impl Connector for SocksConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        Box::pin(async move {
            let work = async {
                let tcp = TcpStream::connect(self.proxy).await?;
                let _ = tcp.set_nodelay(true);
                socks5_connect(tcp, host, port, self.credentials.as_ref()).await
            };
            let s = tokio::time::timeout(self.timeout, work)
                .await
                .map_err(|_| timed_out("SOCKS connection"))??;
            Ok(Box::new(s) as BoxedStream)
        })
    }
}

/// Through the embedded Tor client.
#[derive(Clone, Debug)]
pub struct ArtiConnector {
    /// The running client.
    pub tor: Arc<smp_onion::Tor>,
    /// Limit on the whole connection (onion services can take tens of seconds).
    pub timeout: Duration,
}

impl Connector for ArtiConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        Box::pin(async move {
            let s = tokio::time::timeout(self.timeout, self.tor.connect(host, port))
                .await
                .map_err(|_| timed_out("Tor connection"))?
                .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string()))?;
            Ok(Box::new(s) as BoxedStream)
        })
    }
}

/// The server's egress: picks a route per destination.
///
/// - `.onion` hosts go through Arti when it is given (`[TOR] egress = arti`), else through
///   the SOCKS proxy; with neither they fail.
/// - Other hosts go through the SOCKS proxy when `socks_mode = always`, else direct.
pub struct Egress {
    /// Direct TCP.
    pub direct: DirectConnector,
    /// `[PROXY] socks_proxy`, if set.
    pub socks: Option<SocksConnector>,
    /// `[PROXY] socks_mode`.
    pub socks_mode: SocksMode,
    /// Embedded Tor, when enabled with `egress = arti`.
    pub arti: Option<ArtiConnector>,
}

impl Egress {
    /// Whether `.onion` destinations can be reached at all (the reference's "SOCKS proxy
    /// configured" condition for `host_mode = onion`).
    pub fn reaches_onion(&self) -> bool {
        self.arti.is_some() || self.socks.is_some()
    }

    fn route(&self, host: &str) -> io::Result<&dyn Connector> {
        if is_onion(host) {
            if let Some(a) = &self.arti {
                return Ok(a);
            }
            if let Some(s) = &self.socks {
                return Ok(s);
            }
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no route to .onion hosts: enable [TOR] or set [PROXY] socks_proxy",
            ));
        }
        match (&self.socks, self.socks_mode) {
            (Some(s), SocksMode::Always) => Ok(s),
            _ => Ok(&self.direct),
        }
    }
}

impl Connector for Egress {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        match self.route(host) {
            Ok(c) => c.connect(host, port),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// A destination's hosts do not include one of the required kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server has no {0} host (required_host_mode = on)")]
pub struct IncompatibleHost(&'static str);

/// Choose which of a server's hosts to connect to, as the reference does:
/// `host_mode = onion` prefers an onion host when onion hosts can be reached, `public`
/// prefers a public one; without a preferred host the first host is used, unless
/// `required_host_mode` is on, which makes that an error.
pub fn choose_host(
    hosts: &[String],
    host_mode: HostMode,
    required: bool,
    reaches_onion: bool,
) -> Result<&str, IncompatibleHost> {
    let onion = || hosts.iter().find(|h| is_onion(h));
    let public = || hosts.iter().find(|h| !is_onion(h));
    let (preferred, kind) = match host_mode {
        HostMode::Onion if reaches_onion => (onion(), "onion"),
        _ => (public(), "public"),
    };
    match preferred {
        Some(h) => Ok(h),
        None if required => Err(IncompatibleHost(kind)),
        None => hosts
            .first()
            .map(String::as_str)
            .ok_or(IncompatibleHost(kind)),
    }
}

#[cfg(test)]
mod tests;
