//! The server information page over HTTP and HTTPS, sharing the HTTPS port with SMP, and the
//! wiring of automatic certificates (the `smp-acme` crate).
//!
//! - [`page`]: the generated site (index, link pages, `.well-known`).
//! - [`http`]: request handling (static files, gzip, ACME HTTP-01, redirect to HTTPS).
//! - [`certs`]: the hot-swappable web certificate and the TLS configuration of web clients.
//!
//! On a shared port, [`WebService`] is the transport's [`TlsRouter`]: a client offering
//! `acme-tls/1` gets the TLS-ALPN-01 certificate, a client sending SNI (a browser) gets the
//! web certificate and the page, and everything else (SMP clients send no SNI) stays SMP.

pub mod cert_owner;
pub mod certs;
pub mod http;
pub mod page;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use smp_acme::{AcmeSettings, ChallengeMode, Challenges, Renewer, RenewerHandle, ACME_TLS_ALPN};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::net::http::HttpTimeouts;
use crate::net::ConnLimits;
use crate::service::{Service, ServiceList};
use crate::transport::tls::{HelloWork, TlsRouter, DEFAULT_HANDSHAKE_TIMEOUT, SMP_ALPN};
pub use certs::{WebCertError, WebCertReload, WebCerts};
pub use http::Site;
pub use page::PageInfo;

/// The ACME account file in the configuration directory (0600).
pub const ACME_ACCOUNT_FILE: &str = "acme-account.json";

/// The running web service.
#[derive(Debug)]
pub struct WebService {
    site: Arc<Site>,
    /// The same site without the redirect to HTTPS, for plain HTTP through the onion service.
    onion_site: Arc<Site>,
    certs: Arc<WebCerts>,
    tls: Arc<ServerConfig>,
    renewer: Option<RenewerHandle>,
    /// `[WEB] cert` and `key` as the service started with (re-read on SIGHUP).
    cert_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// `[WEB] first_byte_timeout` and `idle_timeout`.
    timeouts: HttpTimeouts,
    /// `[WEB] max_connections` and `max_connections_per_ip`, shared by the HTTP and the
    /// separate HTTPS listener.
    limits: Arc<ConnLimits>,
    /// Where the separate HTTPS port answers ClientHellos (the SMP server's pool).
    hello_work: Option<Arc<dyn HelloWork>>,
}

impl TlsRouter for WebService {
    fn route(&self, sni: Option<&str>, alpn: &[Vec<u8>]) -> Option<Arc<ServerConfig>> {
        if alpn.iter().any(|p| p == ACME_TLS_ALPN) {
            return Some(self.tls.clone());
        }
        let smp = alpn.iter().any(|p| p == SMP_ALPN);
        (sni.is_some() && !smp && self.certs.has_cert()).then(|| self.tls.clone())
    }
}

impl WebService {
    /// A service serving `site`, with TLS from `site.certs`.
    pub fn new(site: Site) -> Result<Self, rustls::Error> {
        let certs = site.certs.clone();
        let tls = certs::web_server_config(certs.clone())?;
        let onion_site = Arc::new(Site {
            root: site.root.clone(),
            certs: site.certs.clone(),
            https_port: None,
        });
        Ok(WebService {
            onion_site,
            site: Arc::new(site),
            certs,
            tls,
            renewer: None,
            cert_files: None,
            timeouts: HttpTimeouts::default(),
            limits: ConnLimits::new(crate::config::limits::Limits::default().web),
            hello_work: None,
        })
    }

    /// Re-read the certificate files (SIGHUP), including a certificate ACME wrote; `None`
    /// when this service serves no HTTPS.
    pub fn reload_certificate(&self) -> Option<certs::WebCertReload> {
        let (cert, key) = self.cert_files.as_ref()?;
        Some(self.certs.reload_files(cert, key))
    }

    /// The port HTTPS is served on (shared with SMP when it is also an SMP port).
    pub fn https_port(&self) -> Option<u16> {
        self.site.https_port
    }

    /// The web certificate holder.
    pub fn certs(&self) -> &Arc<WebCerts> {
        &self.certs
    }

    /// Ask the ACME renewer for a new certificate now (no-op without `[ACME] enable`).
    pub fn renew_now(&self) -> bool {
        self.renewer
            .as_ref()
            .map(RenewerHandle::renew_now)
            .is_some()
    }

    /// Serve a TLS connection that the router handed to the web side.
    pub async fn serve_tls<IO>(
        &self,
        mut stream: IO,
        alpn: Option<Vec<u8>>,
        shutdown: CancellationToken,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if alpn.as_deref() == Some(ACME_TLS_ALPN) {
            // The validation is the handshake itself; nothing more is exchanged.
            tracing::debug!("web: answered a TLS-ALPN-01 validation");
            let _ = stream.shutdown().await;
            return;
        }
        http::serve_connection(stream, self.site.clone(), true, self.timeouts, shutdown).await;
    }

    /// Set the HTTP timeouts and connection caps (from `[WEB]`).
    pub fn set_limits(&mut self, timeouts: HttpTimeouts, limits: Arc<ConnLimits>) {
        self.timeouts = timeouts;
        self.limits = limits;
    }

    /// Accept plain HTTP connections until `shutdown`.
    pub async fn run_http(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let sd = shutdown.clone();
        let me = self.clone();
        let name = format!("web HTTP port {}", port_of(&listener));
        crate::net::serve_accepts(
            &name,
            listener,
            self.limits.clone(),
            shutdown,
            move |sock, _, permit| {
                let (site, sd, t) = (me.site.clone(), sd.clone(), me.timeouts);
                tokio::spawn(async move {
                    http::serve_connection(sock, site, false, t, sd).await;
                    drop(permit);
                });
            },
        )
        .await;
    }

    /// Accept HTTPS connections on a port that is not an SMP port, until `shutdown`.
    pub async fn run_https(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let sd = shutdown.clone();
        let me = self.clone();
        let name = format!("web HTTPS port {}", port_of(&listener));
        crate::net::serve_accepts(
            &name,
            listener,
            self.limits.clone(),
            shutdown,
            move |sock, _, permit| {
                let (me, sd) = (me.clone(), sd.clone());
                tokio::spawn(async move {
                    me.serve_https_stream(sock, sd).await;
                    drop(permit);
                });
            },
        )
        .await;
    }

    /// TLS-accept one stream for the web page (a separate HTTPS port, over TCP or the onion
    /// service) and serve it.
    pub async fn serve_https_stream<IO>(self: Arc<Self>, io: IO, shutdown: CancellationToken)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let work = self.hello_work.as_deref();
        let config = self.tls.clone();
        match crate::transport::tls::accept_other(io, config, DEFAULT_HANDSHAKE_TIMEOUT, work).await
        {
            Ok(stream) => {
                let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                self.serve_tls(stream, alpn, shutdown).await;
            }
            Err(e) => tracing::debug!("web: TLS handshake failed: {e}"),
        }
    }

    /// Serve plain HTTP arriving through the onion service. Tor already authenticates and
    /// encrypts it, and the public certificate does not name the onion host, so there is no
    /// redirect to HTTPS and no HSTS.
    pub async fn serve_onion_http<IO>(&self, io: IO, shutdown: CancellationToken)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        http::serve_connection(io, self.onion_site.clone(), false, self.timeouts, shutdown).await;
    }
}

/// The warning for a web certificate that cannot be used; SMP is not affected.
pub fn cert_warning(cert: &std::path::Path, key: &std::path::Path, err: &WebCertError) -> String {
    format!(
        "[WEB] certificate {} / key {} cannot be used: {err}. The HTTPS information page is off; SMP clients are served as usual. \
         Put a PEM certificate chain and its private key in those files and restart, or set [ACME] enable = on to obtain one automatically.",
        cert.display(),
        key.display()
    )
}

fn port_of(l: &TcpListener) -> u16 {
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// Which challenges can work with the listeners configured.
fn challenge_mode(wanted: ChallengeMode, http: bool, https: bool) -> Option<ChallengeMode> {
    match (wanted, http, https) {
        (ChallengeMode::Http01, true, _) => Some(ChallengeMode::Http01),
        (ChallengeMode::TlsAlpn01, _, true) => Some(ChallengeMode::TlsAlpn01),
        (ChallengeMode::Auto, true, true) => Some(ChallengeMode::Auto),
        (ChallengeMode::Auto, true, false) => Some(ChallengeMode::Http01),
        (ChallengeMode::Auto, false, true) => Some(ChallengeMode::TlsAlpn01),
        _ => None,
    }
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    let bind = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let s = if addr.is_ipv6() {
            tokio::net::TcpSocket::new_v6()?
        } else {
            tokio::net::TcpSocket::new_v4()?
        };
        s.set_reuseaddr(true)?;
        s.bind(addr)?;
        s.listen(1024)
    };
    bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
}

/// The web side of `config`, built but not running: generate the site, load the certificate,
/// bind `[WEB] http` (and `[WEB] https` when it is not an SMP port), prepare the ACME renewer.
/// Returns `None` when nothing web-related is configured, else the web service (the SMP
/// listener routes browsers to it) and the services to start (listeners, renewer, SIGUSR1).
/// Failures are logged warnings: SMP runs regardless.
pub fn build(
    config: &Config,
    fingerprint: &str,
    onion_host: Option<String>,
    hello_work: Option<Arc<dyn HelloWork>>,
) -> Option<(Arc<WebService>, ServiceList)> {
    let w = &config.web;
    let mut acme_cfg = config.acme.clone();
    if acme_cfg.enable {
        let cert = w
            .cert
            .clone()
            .unwrap_or_else(|| config.paths.web_cert_file());
        if let Some(why) = cert_owner::managed_elsewhere(&cert, config.paths.cfg_dir()) {
            tracing::warn!("{}", cert_owner::acme_off_message(&why));
            acme_cfg.enable = false;
        }
    }
    let acme = &acme_cfg;
    if w.static_path.is_none() && w.http.is_none() && w.https.is_none() && !acme.enable {
        return None;
    }
    if let Some(root) = &w.static_path {
        let info = PageInfo::from_config(config, fingerprint, onion_host);
        match page::generate(root, &info) {
            Ok(()) => tracing::info!("web: information site written to {}", root.display()),
            Err(e) => tracing::warn!(
                "web: cannot write the information site to {}: {e}. Check [WEB] static_path and its permissions.",
                root.display()
            ),
        }
    }
    let challenges = Challenges::new();
    let certs = WebCerts::new(challenges.clone());
    let cert_file = w
        .cert
        .clone()
        .unwrap_or_else(|| config.paths.web_cert_file());
    let key_file = w.key.clone().unwrap_or_else(|| config.paths.web_key_file());
    if w.https.is_some() {
        match certs.load_files(&cert_file, &key_file) {
            Ok(()) => tracing::info!("web: HTTPS certificate loaded from {}", cert_file.display()),
            Err(e) if acme.enable => {
                tracing::info!("web: no usable certificate yet ({e}); ACME will obtain one")
            }
            Err(e) => tracing::warn!("{}", cert_warning(&cert_file, &key_file, &e)),
        }
    }
    let site = Site {
        root: w.static_path.clone(),
        certs: certs.clone(),
        https_port: w.https,
    };
    let mut service = match WebService::new(site) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("web: TLS configuration failed: {e}; the information page is off");
            return None;
        }
    };

    let (cert_file_used, key_file_used) = (cert_file.clone(), key_file.clone());
    let renewer = if acme.enable {
        start_acme(config, certs.clone(), challenges, cert_file, key_file)
    } else {
        None
    };
    service.renewer = renewer.as_ref().map(Renewer::handle);
    service.set_limits(config.limits.http, ConnLimits::new(config.limits.web));
    service.hello_work = hello_work;
    if w.https.is_some() {
        service.cert_files = Some((cert_file_used, key_file_used));
    }
    let service = Arc::new(service);
    let mut services = Vec::new();

    if let Some(port) = w.http {
        match listen(port) {
            Ok(l) => {
                tracing::info!("web: serving HTTP on port {port}");
                let me = service.clone();
                services.push(crate::service::from_fn(
                    format!("web HTTP port {port}"),
                    move |sd, mut ready| {
                        ready.ready();
                        me.run_http(l, sd)
                    },
                ));
            }
            Err(e) => tracing::warn!(
                "web: cannot listen on [WEB] http port {port}: {e}. The plain HTTP page{} is off; SMP runs as usual.",
                if acme.enable { " and ACME http-01" } else { "" }
            ),
        }
    }
    if let Some(port) = w.https.filter(|p| !config.transport.ports.contains(p)) {
        match listen(port) {
            Ok(l) => {
                tracing::info!("web: serving HTTPS on port {port}");
                let me = service.clone();
                services.push(crate::service::from_fn(
                    format!("web HTTPS port {port}"),
                    move |sd, mut ready| {
                        ready.ready();
                        me.run_https(l, sd)
                    },
                ));
            }
            Err(e) => tracing::warn!("web: cannot listen on [WEB] https port {port}: {e}"),
        }
    }
    if let Some(renewer) = renewer {
        services.push(signal_renewal(service.clone()));
        services.push(crate::service::from_fn("ACME renewal", |sd, mut ready| {
            ready.ready();
            renewer.run(sd)
        }));
    }
    Some((service, services))
}

fn start_acme(
    config: &Config,
    certs: Arc<WebCerts>,
    challenges: Arc<Challenges>,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
) -> Option<Renewer> {
    let acme = &config.acme;
    let domains = acme.effective_domains(&config.transport.host);
    if domains.is_empty() {
        tracing::warn!(
            "ACME: no domain to certify. Set [ACME] domains = your.server.name (or a DNS name in [TRANSPORT] host); the HTTPS page is off until then."
        );
        return None;
    }
    let Some(mode) = challenge_mode(
        acme.challenge,
        config.web.http.is_some(),
        config.web.https.is_some(),
    ) else {
        tracing::warn!(
            "ACME: challenge {} needs [WEB] {} to be set; automatic certificates are off.",
            acme.challenge.as_str(),
            if acme.challenge == ChallengeMode::Http01 {
                "http (port 80 as seen from the internet)"
            } else {
                "https (port 443 as seen from the internet)"
            }
        );
        return None;
    };
    let mut s = AcmeSettings::new(
        domains,
        config.paths.cfg_dir().join(ACME_ACCOUNT_FILE),
        cert_file,
        key_file,
    );
    s.email = acme.email.clone();
    s.directory_url = acme.directory.clone();
    s.challenge = mode;
    s.key_type = acme.key_type;
    s.ca_root = acme.ca_root.clone();
    s.check_interval = Duration::from_secs(acme.check_interval_secs);
    tracing::info!(
        "ACME: automatic certificates for {} from {} ({})",
        s.domains.join(", "),
        s.directory_url,
        mode.as_str()
    );
    let on_issued: smp_acme::renew::OnIssued = Arc::new(move |issued| {
        match certs.load_pem(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes()) {
            Ok(()) => tracing::info!("web: new certificate in use (no restart needed)"),
            Err(e) => tracing::error!("web: the issued certificate cannot be used: {e}"),
        }
    });
    Some(Renewer::new(s, challenges, on_issued))
}

/// SIGUSR1 asks for a certificate renewal now (operators, and tests of the hot swap). Ready
/// once the handler is installed, so a signal after `READY=1` is never fatal.
fn signal_renewal(service: Arc<WebService>) -> Box<dyn Service> {
    crate::service::from_fn("SIGUSR1 renewal", move |shutdown, mut ready| async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
                tracing::warn!("web: cannot install the SIGUSR1 handler");
                ready.ready();
                return;
            };
            ready.ready();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    s = usr1.recv() => {
                        if s.is_none() { return; }
                        tracing::info!("web: SIGUSR1 received: renewing the certificate");
                        service.renew_now();
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            ready.ready();
            let _ = service;
            shutdown.cancelled().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_modes_follow_listeners() {
        use ChallengeMode::*;
        assert_eq!(challenge_mode(Auto, true, true), Some(Auto));
        assert_eq!(challenge_mode(Auto, false, true), Some(TlsAlpn01));
        assert_eq!(challenge_mode(Auto, true, false), Some(Http01));
        assert_eq!(challenge_mode(Http01, false, true), None);
        assert_eq!(challenge_mode(TlsAlpn01, true, false), None);
    }
}
