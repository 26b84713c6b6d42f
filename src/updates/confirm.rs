//! After a self-update: the new binary confirms that it started by answering an SMP handshake
//! on its own port, which removes `<binary>.update-pending`. Without that confirmation the
//! unit's start guard rolls the update back at the next start (a crash, a failed bind, a panic
//! at start-up: anything that keeps the server from serving).

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long the new binary may take to answer itself.
const CONFIRM_WITHIN: Duration = Duration::from_secs(120);

/// If this binary is an unconfirmed update, the service that confirms it once `port` on
/// loopback answers a handshake with our identity (`fingerprint`); with no port (onion only,
/// maintenance), it confirms once started. Start it after the SMP listeners.
pub fn service(
    port: Option<u16>,
    fingerprint: [u8; 32],
) -> Option<Box<dyn crate::service::Service>> {
    let exe = std::env::current_exe().ok()?;
    if !smp_updater::pending_path(&exe).exists() {
        return None;
    }
    Some(crate::service::from_fn(
        "update confirmation",
        move |shutdown: CancellationToken, mut ready| async move {
            ready.ready();
            if let Some(port) = port {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
                loop {
                    let opts = crate::client::ClientOptions::default();
                    if crate::client::SmpClient::connect(addr, fingerprint, opts)
                        .await
                        .is_ok()
                    {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
                        tracing::error!(
                        "the updated server did not answer on {addr}; the next start rolls it back"
                    );
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if smp_updater::confirm_started(&exe) {
                tracing::info!("update confirmed: this binary started and answers on its port");
            }
        },
    ))
}
