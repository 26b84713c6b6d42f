//! What to obtain, from which CA, and where to keep it.

use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory (the default).
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Which challenges to answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChallengeMode {
    /// HTTP-01 on the plain HTTP port (the CA connects to port 80).
    Http01,
    /// TLS-ALPN-01 on the HTTPS port (the CA connects to port 443).
    TlsAlpn01,
    /// HTTP-01 first, TLS-ALPN-01 when that fails.
    #[default]
    Auto,
}

impl ChallengeMode {
    /// The challenge types to try, in order.
    pub fn attempts(self) -> &'static [ChallengeMode] {
        match self {
            ChallengeMode::Http01 => &[ChallengeMode::Http01],
            ChallengeMode::TlsAlpn01 => &[ChallengeMode::TlsAlpn01],
            ChallengeMode::Auto => &[ChallengeMode::Http01, ChallengeMode::TlsAlpn01],
        }
    }

    /// The name used in configuration files and by ACME.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeMode::Http01 => "http-01",
            ChallengeMode::TlsAlpn01 => "tls-alpn-01",
            ChallengeMode::Auto => "auto",
        }
    }
}

/// The key type of the issued certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256: small, fast, accepted by every CA and browser.
    #[default]
    EcdsaP256,
    /// RSA 2048: for old clients that lack ECDSA.
    Rsa2048,
}

/// Everything the renewer needs.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// DNS names on the certificate; the first is the subject.
    pub domains: Vec<String>,
    /// Contact email for the account (expiry notices), if any.
    pub email: Option<String>,
    /// ACME directory URL.
    pub directory_url: String,
    /// Challenges to answer.
    pub challenge: ChallengeMode,
    /// Certificate key type.
    pub key_type: KeyType,
    /// A PEM root certificate to trust for the ACME server's own HTTPS (test CAs).
    pub ca_root: Option<PathBuf>,
    /// Where the account credentials are kept (0600).
    pub account_file: PathBuf,
    /// Where the issued chain is written (PEM).
    pub cert_file: PathBuf,
    /// Where the issued key is written (PEM, 0600).
    pub key_file: PathBuf,
    /// How often to check whether renewal is due (jittered by ±10%).
    pub check_interval: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub retry_delay: Duration,
    /// Longest delay between retries.
    pub max_backoff: Duration,
    /// Longest wait for the CA to validate or issue.
    pub order_timeout: Duration,
}

impl AcmeSettings {
    /// Settings with the defaults for everything but names and files.
    pub fn new(
        domains: Vec<String>,
        account_file: PathBuf,
        cert_file: PathBuf,
        key_file: PathBuf,
    ) -> Self {
        AcmeSettings {
            domains,
            email: None,
            directory_url: LETS_ENCRYPT_PRODUCTION.to_string(),
            challenge: ChallengeMode::Auto,
            key_type: KeyType::EcdsaP256,
            ca_root: None,
            account_file,
            cert_file,
            key_file,
            check_interval: Duration::from_secs(12 * 3600),
            retry_delay: Duration::from_secs(60),
            max_backoff: Duration::from_secs(12 * 3600),
            order_timeout: Duration::from_secs(120),
        }
    }
}
