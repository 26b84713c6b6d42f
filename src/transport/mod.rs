//! Transport: TLS (rustls) with tls-unique, and (later) the SMP handshake and block I/O.
//!
//! - [`stream`]: byte streams and the [`stream::Connector`] trait, the single egress path.
//! - [`smp`]: SMP handshake and 16 KB block I/O (encrypted with chain keys from v11).
//! - [`tls`]: SMP's TLS parameters, server `accept` and client `connect`, session IDs.
//! - [`tls_unique`]: pure recovery of the client's Finished from recorded bytes.
//! - [`verify`]: how a client checks the server identity (fingerprint + Ed25519/Ed448 chain).
//! - [`x448`]: the X448 key-exchange group rustls lacks.
//!
//! Nothing here knows about queues.

pub mod client_cert;
mod recording;
pub mod service;
mod sign;
pub mod smp;
pub mod stream;
pub mod tls;
pub mod tls_unique;
pub mod verify;
pub mod x448;

pub use recording::Recording;
pub use sign::HandshakeSigner;
pub use tls::{
    accept, connect, connect_with, server_config, server_config_with, smp_provider, ConnectOptions,
    HandshakeFacts, TlsClientConn, TlsServerConn, DEFAULT_CLIENT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, SMP_ALPN,
};

/// Errors of TLS connection set-up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out")]
    Timeout,
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// rustls refused the peer or the configuration.
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    /// The server's identity certificate does not have the fingerprint in its address.
    #[error("IDENTITY: server certificate does not match the fingerprint in the server address")]
    Identity,
    /// The server's certificate chain is malformed or invalid.
    #[error("server certificate rejected: {0}")]
    Certificate(verify::ChainError),
    /// The host name cannot be used as a TLS server name.
    #[error("invalid server name")]
    ServerName,
    /// Our own configuration is unusable (key/certificate mismatch and the like).
    #[error("TLS configuration: {0}")]
    Config(&'static str),
    /// The session ID (tls-unique) could not be recovered.
    #[error("tls-unique: {0}")]
    TlsUnique(#[from] tls_unique::UniqueError),
}
