//! The web certificate: loaded from `[WEB] cert`/`key` or handed over by the ACME renewer,
//! kept in an `ArcSwap` so a renewal takes effect on the next handshake without a restart.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use smp_acme::{Challenges, ACME_TLS_ALPN};

/// Why a web certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WebCertError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The PEM data holds no certificate, no key, or something unreadable.
    #[error("{0}")]
    Invalid(String),
}

/// What a reload of the web certificate files did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebCertReload {
    /// The files hold the certificate already in use.
    Unchanged,
    /// New connections get the certificate from the files.
    Replaced,
    /// The files could not be used; the current certificate (if any) stays. The text says why.
    Kept(String),
}

/// The current web certificate and the ACME challenges in progress.
#[derive(Debug)]
pub struct WebCerts {
    current: ArcSwapOption<CertifiedKey>,
    challenges: Arc<Challenges>,
}

impl WebCerts {
    /// No certificate yet; answers TLS-ALPN-01 from `challenges`.
    pub fn new(challenges: Arc<Challenges>) -> Arc<Self> {
        Arc::new(WebCerts {
            current: ArcSwapOption::empty(),
            challenges,
        })
    }

    /// The certificate served to browsers, if there is one.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }

    /// Whether HTTPS can be served.
    pub fn has_cert(&self) -> bool {
        self.current.load().is_some()
    }

    /// The ACME challenges this service answers.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Load and swap in the chain and key files.
    pub fn load_files(&self, cert: &Path, key: &Path) -> Result<(), WebCertError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| WebCertError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        self.load_pem(&read(cert)?, &read(key)?)
    }

    /// Re-read the chain and key files (SIGHUP): swap them in if they hold another valid
    /// certificate, else keep the current one. Connections already open are not affected.
    pub fn reload_files(&self, cert: &Path, key: &Path) -> WebCertReload {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| WebCertError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let new = match read(cert)
            .and_then(|c| read(key).map(|k| (c, k)))
            .and_then(|(c, k)| certified_key(&c, &k))
        {
            Ok(n) => n,
            Err(e) => return WebCertReload::Kept(e.to_string()),
        };
        // the key was checked against the leaf, so the same chain means the same key
        let same = self.current().is_some_and(|cur| cur.cert == new.cert);
        if same {
            return WebCertReload::Unchanged;
        }
        self.current.store(Some(Arc::new(new)));
        WebCertReload::Replaced
    }

    /// Parse a PEM chain and key and swap them in.
    pub fn load_pem(&self, chain: &[u8], key: &[u8]) -> Result<(), WebCertError> {
        let certified = certified_key(chain, key)?;
        self.current.store(Some(Arc::new(certified)));
        Ok(())
    }
}

/// A rustls certified key from PEM, with the key checked against the leaf.
pub fn certified_key(chain: &[u8], key: &[u8]) -> Result<CertifiedKey, WebCertError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| WebCertError::Invalid(format!("certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(WebCertError::Invalid(
            "the certificate file holds no PEM certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| WebCertError::Invalid(format!("key file: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| WebCertError::Invalid(format!("key file: {e}")))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        WebCertError::Invalid(format!("the key does not match the certificate ({e})"))
    })?;
    Ok(certified)
}

/// Picks the certificate per handshake: the TLS-ALPN-01 one for `acme-tls/1`, else the current.
#[derive(Debug)]
struct WebResolver(Arc<WebCerts>);

impl ResolvesServerCert for WebResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut it| it.any(|p| p == ACME_TLS_ALPN));
        if acme {
            return self.0.challenges.tls_alpn01(hello.server_name()?);
        }
        self.0.current()
    }
}

/// The TLS configuration of web connections: rustls' safe defaults (TLS 1.2 and 1.3), ALPN
/// h2, http/1.1 and acme-tls/1, certificates from `certs`.
pub fn web_server_config(certs: Arc<WebCerts>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(WebResolver(certs)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}
