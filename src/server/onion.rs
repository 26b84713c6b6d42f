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
    service: Option<Arc<OnionService>>,
    /// The Tor client (also used for `.onion` egress).
    pub tor: Arc<Tor>,
    /// The onion address.
    pub address: String,
    incoming: Option<tokio::sync::mpsc::Receiver<smp_onion::IncomingStream>>,
    accept: Option<tokio::task::JoinHandle<()>>,
    smp_ports: Vec<u16>,
}

impl Drop for OnionHandle {
    fn drop(&mut self) {
        if let Some(a) = &self.accept {
            a.abort();
        }
        drop(self.service.take());
    }
}

/// Describes embedded Tor's current state for the operator (control port, logs).
pub type TorStatus = Arc<dyn Fn() -> String + Send + Sync>;

impl OnionHandle {
    /// A live description of Tor's bootstrap and the onion service's state; it does not keep
    /// the service up.
    pub fn status(&self) -> TorStatus {
        let tor = Arc::downgrade(&self.tor);
        let service = self.service.as_ref().map(Arc::downgrade);
        Arc::new(move || {
            let Some(tor) = tor.upgrade() else {
                return "stopped".into();
            };
            let svc = match service.as_ref().and_then(std::sync::Weak::upgrade) {
                Some(s) => s.state_summary(),
                None => "stopped".into(),
            };
            format!("bootstrap {}; onion service {svc}", tor.bootstrap_summary())
        })
    }

    /// Hand accepted onion streams to `server`: streams to SMP ports go to the SMP connection
    /// handler (with the web page's TLS routing on the `[WEB] https` port), streams to other
    /// served ports to `other` (if given; otherwise they are closed). Call once.
    pub fn serve(
        &mut self,
        server: Arc<Server>,
        other: Option<StreamHandler>,
        shutdown: CancellationToken,
    ) {
        let Some(mut rx) = self.incoming.take() else {
            return;
        };
        let smp_ports = self.smp_ports.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Some(inc) = rx.recv().await {
                if smp_ports.contains(&inc.port) {
                    let web = server
                        .web
                        .clone()
                        .filter(|w| w.https_port() == Some(inc.port));
                    let me = server.clone();
                    let sd = shutdown.clone();
                    server
                        .sessions
                        .spawn(async move { me.connection(inc.stream, web, sd).await });
                } else if let Some(h) = &other {
                    h(inc.port, Box::new(inc.stream));
                }
            }
        }));
    }
}

/// Arti settings from `[TOR]`.
pub fn tor_settings(config: &Config) -> TorSettings {
    let mut s = TorSettings::new(config.tor.state_dir(&config.paths));
    s.arti_config = config.tor.arti_config.clone();
    s
}

/// The configuration the web page starts with: with `onion_only = on` it opens no public
/// listener of its own (no `[WEB] http`, no separate `https` port, no ACME, which needs
/// public reachability); the page stays reachable through the onion service on the shared
/// SMP/HTTPS port.
pub fn web_config(config: &Config) -> std::borrow::Cow<'_, Config> {
    if !config.tor.onion_only_active() {
        return std::borrow::Cow::Borrowed(config);
    }
    let mut c = config.clone();
    c.web.http = None;
    c.web.https = c.web.https.filter(|p| c.transport.ports.contains(p));
    c.acme.enable = false;
    std::borrow::Cow::Owned(c)
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

/// Start Tor and launch the onion service; print and publish its address (file for
/// scripts). Streams are queued until [`OnionHandle::serve`] is called.
pub async fn launch(config: &Config, fingerprint: &str) -> Result<OnionHandle, ServerError> {
    let tor = Arc::new(Tor::start(tor_settings(config)).await?);
    let ports = config.tor.onion_ports(&config.transport, &config.web);
    let (service, rx) = tor.launch_service(&ServiceSettings::new(ports))?;
    let address = service.address().to_string();
    if known_onion_address(config).as_deref() != Some(address.as_str()) {
        // The address printed at start did not include this onion host yet.
        println!("Onion address: {address}");
        println!(
            "Server address: {}",
            config.server_address_with_onion(fingerprint, Some(&address))
        );
    }
    let file = onion_address_file(&config.paths);
    if let Err(e) = write_address_file(&file, &address) {
        tracing::warn!("cannot write {}: {e}", file.display());
    }
    Ok(OnionHandle {
        service: Some(Arc::new(service)),
        tor,
        address,
        incoming: Some(rx),
        accept: None,
        smp_ports: config.transport.ports.clone(),
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
        allow_private: config.limits.egress.allow_private,
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
    fn onion_only_web_opens_no_public_port() {
        let text =
            "[TRANSPORT]\nport = 5223,443\n[WEB]\nhttp = 8000\nhttps = 443\n[TOR]\nenable = on\n";
        let c = Config::parse(text, Paths::new("/c", "/l")).expect("valid");
        assert_eq!(
            web_config(&c).web.http,
            Some(8000),
            "untouched without onion_only"
        );
        let c = Config::parse(&format!("{text}onion_only = on\n"), Paths::new("/c", "/l"))
            .expect("valid");
        let w = web_config(&c);
        assert_eq!(w.web.http, None);
        assert_eq!(
            w.web.https,
            Some(443),
            "shared with SMP: served through the onion only"
        );
        assert!(!w.acme.enable);
        let c = Config::parse(
            "[TRANSPORT]\nport = 5223\n[WEB]\nhttps = 8443\n[TOR]\nenable = on\nonion_only = on\n",
            Paths::new("/c", "/l"),
        )
        .expect("valid");
        assert_eq!(
            web_config(&c).web.https,
            None,
            "a separate HTTPS port would be public"
        );
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
