//! What an issued certificate says: its validity, its names, and its ARI identifier.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::CertificateIdentifier;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::AcmeError;

/// The facts about a leaf certificate that renewal decisions need.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// DNS names in the subjectAltName extension, lower case.
    pub dns_names: Vec<String>,
    /// The ARI identifier, when the certificate has an authority key identifier.
    pub ari_id: Option<CertificateIdentifier<'static>>,
}

impl CertInfo {
    /// Parse the first certificate of a PEM chain.
    pub fn from_pem_chain(pem: &[u8]) -> Result<Self, AcmeError> {
        let der = first_pem_der(pem)?;
        Self::from_der(&der)
    }

    /// Parse a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, AcmeError> {
        let bad = |e: String| AcmeError::Certificate(e);
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        let validity = cert.validity();
        let time = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(d) = name {
                    dns_names.push(d.to_ascii_lowercase());
                }
            }
        }
        let ari_id = CertificateIdentifier::try_from(&CertificateDer::from(der))
            .ok()
            .map(CertificateIdentifier::into_owned);
        Ok(CertInfo {
            not_before: time(validity.not_before.timestamp()),
            not_after: time(validity.not_after.timestamp()),
            dns_names,
            ari_id,
        })
    }

    /// Whether the certificate names every one of `domains`.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains
            .iter()
            .all(|d| self.dns_names.contains(&d.to_ascii_lowercase()))
    }

    /// When to renew without ARI: after two thirds of the lifetime.
    pub fn two_thirds(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life * 2 / 3
    }
}

/// The DER of the first `CERTIFICATE` block in a PEM text.
pub fn first_pem_der(pem: &[u8]) -> Result<Vec<u8>, AcmeError> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| AcmeError::Certificate(e.to_string()))?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err(AcmeError::Certificate(
        "no certificate in the PEM file".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_lifetime() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".into(), "B.example".into()])
                .expect("params");
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 4, 1);
        let cert = params.self_signed(&key).expect("cert");
        let info = CertInfo::from_pem_chain(cert.pem().as_bytes()).expect("parse");
        assert!(info.covers(&["a.example".into(), "b.example".into()]));
        assert!(!info.covers(&["c.example".into()]));
        let life = info
            .not_after
            .duration_since(info.not_before)
            .expect("order");
        assert_eq!(life, Duration::from_secs(90 * 86400));
        let at = info
            .two_thirds()
            .duration_since(info.not_before)
            .expect("after");
        assert_eq!(at, Duration::from_secs(60 * 86400));
        assert!(CertInfo::from_pem_chain(b"not pem").is_err());
    }
}
