//! Byte streams and the one egress path.
//!
//! Every connection the server makes or takes runs over an [`AsyncReadWrite`] (TCP, TLS, a Tor
//! stream), and every outbound connection goes through a [`Connector`], which hides the route
//! (direct, SOCKS, embedded Tor). Living here rather than in `server` lets the client use them
//! without depending on the server.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// Any bidirectional byte stream a connection can run over (TCP, TLS, Tor).
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

/// An owned stream of any kind.
pub type BoxedStream = Box<dyn AsyncReadWrite>;

/// What [`Connector::connect`] returns.
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxedStream>> + Send + 'a>>;

/// Opens streams to `host:port`; the proxy role uses it without knowing the route.
pub trait Connector: Send + Sync {
    /// Connect to `host` (a name, an IP address or a `.onion` address) and `port`.
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a>;
}

/// Whether `host` is an onion service address.
pub fn is_onion(host: &str) -> bool {
    host.len() > ".onion".len() && host.to_ascii_lowercase().ends_with(".onion")
}
