//! Pending challenge answers, shared between the issuer and the caller's listeners.
//!
//! The issuer registers an answer before telling the CA it is ready and removes it when the
//! order is over; the caller's HTTP listener looks up HTTP-01 tokens and its TLS listener asks
//! for a TLS-ALPN-01 certificate when a client offers ALPN `acme-tls/1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::AcmeError;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 validation requests (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Answers to challenges currently in progress.
#[derive(Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// An empty set, to share with the listeners.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The key authorization for an HTTP-01 `token`, if that challenge is in progress.
    pub fn http01(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// The answer to an HTTP request path, if it is a pending HTTP-01 challenge.
    pub fn http01_path(&self, path: &str) -> Option<String> {
        self.http01(path.strip_prefix(HTTP01_PREFIX)?)
    }

    /// The TLS-ALPN-01 certificate for `domain`, if that challenge is in progress.
    pub fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.alpn).get(&domain.to_ascii_lowercase()).cloned()
    }

    /// Whether any challenge is in progress (listeners may log this at debug level).
    pub fn is_empty(&self) -> bool {
        lock(&self.http).is_empty() && lock(&self.alpn).is_empty()
    }

    pub(crate) fn add_http01(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    pub(crate) fn add_tls_alpn01(&self, domain: &str, digest: &[u8]) -> Result<(), AcmeError> {
        let cert = alpn_certificate(domain, digest)?;
        lock(&self.alpn).insert(domain.to_ascii_lowercase(), Arc::new(cert));
        Ok(())
    }

    pub(crate) fn clear(&self) {
        lock(&self.http).clear();
        lock(&self.alpn).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A self-signed certificate for `domain` carrying the acmeIdentifier extension (RFC 8737 §3).
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let key_err = |e: rcgen::Error| AcmeError::Key(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(key_err)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(key_err)?;
    let cert = params.self_signed(&key).map_err(key_err)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_registered_challenges() {
        let c = Challenges::new();
        assert!(c.is_empty());
        c.add_http01("tok", "tok.thumb");
        assert_eq!(
            c.http01_path("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.http01_path("/.well-known/acme-challenge/other"), None);
        assert_eq!(c.http01_path("/tok"), None);
        c.add_tls_alpn01("Example.COM", &[7u8; 32]).expect("cert");
        let cert = c.tls_alpn01("example.com").expect("registered");
        assert_eq!(cert.cert.len(), 1);
        // The acmeIdentifier OID 1.3.6.1.5.5.7.1.31 and the digest are in the certificate.
        let der = cert.cert[0].as_ref();
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        assert!(der.windows(32).any(|w| w == [7u8; 32]));
        c.clear();
        assert!(c.is_empty());
    }
}
