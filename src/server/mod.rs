//! Sessions, subscriptions, delivery and notifications (being written on main).

use std::sync::Arc;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Not written yet.
    #[error("server not yet available: {0}")]
    NotReady(&'static str),
}

/// Run the SMP service on already-bound listeners until `shutdown` is cancelled.
///
/// Taking bound listeners lets tests bind port 0 and lets `start` report bind errors itself.
pub async fn run(
    _config: Arc<crate::config::Config>,
    _listeners: Vec<tokio::net::TcpListener>,
    _shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ServerError> {
    Err(ServerError::NotReady("run"))
}
