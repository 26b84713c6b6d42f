//! The embedded Tor client: start, bootstrap in the background with progress in the log,
//! outbound streams, shutdown.

use std::sync::Arc;

use arti_client::{StreamPrefs, TorClient};
use futures::StreamExt;
use tor_rtcompat::PreferredRuntime;

use crate::config::TorSettings;
use crate::perms;
use crate::OnionError;

/// A stream through Tor: `tokio::io::AsyncRead + AsyncWrite + Unpin + Send`.
pub type TorStream = arti_client::DataStream;

/// A running embedded Tor client. Dropping it (or [`Tor::shutdown`]) stops Tor.
pub struct Tor {
    pub(crate) client: Arc<TorClient<PreferredRuntime>>,
    pub(crate) settings: TorSettings,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tor")
            .field("state_dir", &self.settings.state_dir)
            .finish_non_exhaustive()
    }
}

impl Tor {
    /// Prepare the state directory and start Tor. Returns at once: bootstrapping goes on in
    /// the background (its progress is logged), and connections or an onion service wait for
    /// it as needed. Must be called inside a tokio runtime.
    pub async fn start(settings: TorSettings) -> Result<Tor, OnionError> {
        // Arti's TLS uses the process-wide rustls provider; the binary uses ring throughout.
        // An already installed provider is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        perms::private_dir(&settings.state_dir)?;
        perms::tighten(&settings.state_dir)?;
        let config = settings.client_config()?;
        let client = TorClient::builder()
            .config(config)
            .create_unbootstrapped_async()
            .await?;
        let mut tasks = Vec::new();
        let events = client.bootstrap_events();
        tasks.push(tokio::spawn(log_bootstrap(events)));
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            match c.bootstrap().await {
                Ok(()) => tracing::info!("Tor: bootstrapped, ready for traffic"),
                Err(e) => tracing::warn!("Tor: bootstrap failed (will retry on use): {e}"),
            }
        }));
        Ok(Tor {
            client,
            settings,
            tasks,
        })
    }

    /// Wait until Tor has enough directory information to build circuits.
    pub async fn wait_bootstrapped(&self) -> Result<(), OnionError> {
        Ok(self.client.bootstrap().await?)
    }

    /// Open a stream to `host:port` through Tor; `.onion` hosts are allowed. Other hosts are
    /// reached through an exit relay (and resolved there).
    pub async fn connect(&self, host: &str, port: u16) -> Result<TorStream, OnionError> {
        if host.is_empty() {
            return Err(OnionError::Address("empty host".into()));
        }
        let mut prefs = StreamPrefs::new();
        prefs.connect_to_onion_services(arti_client::config::BoolOrAuto::Explicit(true));
        Ok(self.client.connect_with_prefs((host, port), &prefs).await?)
    }

    /// Tor's bootstrap progress in words (e.g. "100%: connecting successfully; ..."), for
    /// the operator's status views.
    pub fn bootstrap_summary(&self) -> String {
        self.client.bootstrap_status().to_string()
    }

    /// The settings Tor was started with.
    pub fn settings(&self) -> &TorSettings {
        &self.settings
    }

    /// Stop Tor: background tasks end, circuits close when the last handle is dropped.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = perms::tighten(&self.settings.state_dir);
        tracing::info!("Tor: stopped");
    }
}

/// Log bootstrap progress in steps of 10% and blockages once each.
async fn log_bootstrap(mut events: arti_client::status::BootstrapEvents) {
    let mut last_step = -1i32;
    let mut last_blocked = String::new();
    while let Some(status) = events.next().await {
        let step = (status.as_frac() * 10.0) as i32;
        if step > last_step {
            last_step = step;
            tracing::info!("Tor: bootstrap {}%", step * 10);
        }
        match status.blocked() {
            Some(b) => {
                let msg = b.to_string();
                if msg != last_blocked {
                    tracing::warn!("Tor: bootstrap blocked: {msg}");
                    last_blocked = msg;
                }
            }
            None => last_blocked.clear(),
        }
        if status.ready_for_traffic() && step >= 10 {
            break;
        }
    }
}
