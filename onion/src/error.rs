//! Errors of the onion crate.

use std::path::PathBuf;

/// Everything that can go wrong starting or using embedded Tor.
#[derive(Debug, thiserror::Error)]
pub enum OnionError {
    /// A directory or file under the state directory could not be prepared.
    #[error("Tor state directory {}: {source}", path.display())]
    StateDir {
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Arti configuration (ours plus the operator's `arti_config`) is invalid.
    #[error("Tor configuration: {0}")]
    Config(String),
    /// Arti refused to start or to do what was asked.
    #[error("Tor: {0}")]
    Arti(#[from] arti_client::Error),
    /// The onion service could not be configured or launched.
    #[error("onion service: {0}")]
    Service(String),
    /// The destination is not a valid host and port for Tor.
    #[error("invalid Tor destination: {0}")]
    Address(String),
}
