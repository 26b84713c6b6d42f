//! Embedded Tor wired into the server: the onion service feeds accepted streams to the same
//! connection handler as TCP, the onion address is published (server state, a file for
//! scripts, the printed server address), and `.onion` egress gets an Arti connector.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smp_onion::{OnionService, ServiceSettings, Tor, TorSettings};
use tokio_util::sync::CancellationToken;

use super::connector::{ArtiConnector, BoxedStream, DirectConnector, Egress, SocksConnector};
use super::{Server, ServerError, ServerState};
use crate::config::{onion_address_file, Config, TorEgress};

/// Handles onion streams to ports that are not SMP ports (the web page).
pub type StreamHandler = Arc<dyn Fn(u16, BoxedStream) + Send + Sync>;

impl ServerState {
    /// The onion address (`xxxx.onion`) once embedded Tor has launched the onion service.
    pub fn onion_address(&self) -> Option<String> {
        self.onion_address.get().cloned()
    }
}

/// The running embedded Tor; dropping it takes the onion service down, then Tor.
pub struct OnionHandle {
    service: Option<OnionService>,
    /// The Tor client (also used for `.onion` egress).
    pub tor: Arc<Tor>,
    /// The onion address.
    pub address: String,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for OnionHandle {
    fn drop(&mut self) {
        self.accept.abort();
        drop(self.service.take());
    }
}

/// Arti settings from `[TOR]`.
pub fn tor_settings(config: &Config) -> TorSettings {
    let mut s = TorSettings::new(config.tor.state_dir(&config.paths));
    s.arti_config = config.tor.arti_config.clone();
    s
}

/// The onion address a previous start wrote, if any (printed before Tor is up).
pub fn known_onion_address(config: &Config) -> Option<String> {
    let text = std::fs::read_to_string(onion_address_file(&config.paths)).ok()?;
    let a = text.trim();
    (a.ends_with(".onion") && !a.contains(char::is_whitespace)).then(|| a.to_string())
}

/// Write the address file atomically, readable by the owner only.
fn write_address_file(path: &Path, address: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(format!("{address}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Start Tor and the onion service. Streams to SMP ports go to the SMP connection handler,
/// streams to other served ports to `other` (if given; otherwise they are closed).
pub async fn start(
    server: Arc<Server>,
    config: &Config,
    fingerprint: &str,
    other: Option<StreamHandler>,
    shutdown: CancellationToken,
) -> Result<OnionHandle, ServerError> {
    let tor = Arc::new(Tor::start(tor_settings(config)).await?);
    let ports = config.tor.onion_ports(&config.transport, &config.web);
    let (service, mut rx) = tor.launch_service(&ServiceSettings::new(ports))?;
    let address = service.address().to_string();
    let file = onion_address_file(&config.paths);
    if let Err(e) = write_address_file(&file, &address) {
        tracing::warn!("cannot write {}: {e}", file.display());
    }
    if known_onion_address(config).as_deref() != Some(address.as_str())
        || server.state.onion_address.get().is_none()
    {
        println!("Onion address: {address}");
        println!(
            "Server address: {}",
            config.server_address_with_onion(fingerprint, Some(&address))
        );
    }
    let _ = server.state.onion_address.set(address.clone());
    let smp_ports = config.transport.ports.clone();
    let accept = tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            if smp_ports.contains(&inc.port) {
                let me = server.clone();
                let sd = shutdown.clone();
                tokio::spawn(async move { me.connection(inc.stream, sd).await });
            } else if let Some(h) = &other {
                h(inc.port, Box::new(inc.stream));
            }
        }
    });
    Ok(OnionHandle {
        service: Some(service),
        tor,
        address,
        accept,
    })
}

/// The egress for the proxy role from `[PROXY]` and `[TOR]`: `.onion` through Arti when
/// `egress = arti` and Tor runs, else through the SOCKS proxy.
pub fn egress(config: &Config, tor: Option<Arc<Tor>>) -> Egress {
    let timeout = Duration::from_secs(20);
    let arti = match (config.tor.egress, tor) {
        (TorEgress::Arti, Some(tor)) => Some(ArtiConnector {
            tor,
            timeout: Duration::from_secs(120),
        }),
        _ => None,
    };
    Egress {
        direct: DirectConnector { timeout },
        socks: config.proxy.socks_proxy.map(|proxy| SocksConnector {
            proxy,
            credentials: None,
            timeout,
        }),
        socks_mode: config.proxy.socks_mode,
        arti,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Paths;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn address_file_round_trip_is_private() {
        let t = tempfile::tempdir().expect("tempdir");
        let config = Config::parse(
            "[TOR]\nenable = on\n",
            Paths::new(t.path().join("etc"), t.path()),
        )
        .expect("valid");
        assert_eq!(known_onion_address(&config), None);
        let onion = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";
        let file = onion_address_file(&config.paths);
        write_address_file(&file, onion).expect("write");
        assert_eq!(known_onion_address(&config).as_deref(), Some(onion));
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&file, "garbage here\n").expect("write");
        assert_eq!(known_onion_address(&config), None, "junk is not an address");
    }

    #[test]
    fn settings_and_egress_follow_the_config() {
        let config = Config::parse(
            "[PROXY]\nsocks_proxy = 127.0.0.1:9050\nsocks_mode = always\n[TOR]\nenable = on\nstate_dir = /s\narti_config = /c/arti.toml\n",
            Paths::new("/c", "/l"),
        )
        .expect("valid");
        let s = tor_settings(&config);
        assert_eq!(s.state_dir, std::path::PathBuf::from("/s"));
        assert_eq!(s.arti_config, Some("/c/arti.toml".into()));
        let e = egress(&config, None);
        assert!(e.arti.is_none(), "no Tor running: no Arti route");
        assert!(e.reaches_onion(), "the SOCKS proxy reaches onions");
        assert_eq!(e.socks_mode, crate::config::SocksMode::Always);
    }
}
