//! `[ACME]`: automatic certificates for the information page (our own section; the reference
//! leaves this to Caddy and cron).

use std::path::PathBuf;

use smp_acme::{ChallengeMode, KeyType, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING};

use super::read::Reader;
use super::ConfigError;

const ACME: &str = "ACME";

/// Keys of `[ACME]`.
pub(crate) const KEYS: &[&str] = &[
    "enable",
    "domains",
    "email",
    "directory",
    "challenge",
    "key_type",
    "ca_root",
    "check_interval",
];

/// Default seconds between renewal checks.
pub const DEFAULT_CHECK_INTERVAL_SECS: u64 = 12 * 3600;

/// `[ACME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acme {
    /// `enable` (default off).
    pub enable: bool,
    /// `domains`: comma-separated names; empty = the DNS names of `[TRANSPORT] host`.
    pub domains: Vec<String>,
    /// `email`: account contact for expiry notices.
    pub email: Option<String>,
    /// `directory`: ACME directory URL (`staging` = Let's Encrypt staging).
    pub directory: String,
    /// `challenge`: `http-01`, `tls-alpn-01` or `auto`.
    pub challenge: ChallengeMode,
    /// `key_type`: `ecdsa` (P-256, default) or `rsa` (2048).
    pub key_type: KeyType,
    /// `ca_root`: PEM root certificate to trust for the ACME server's HTTPS.
    pub ca_root: Option<PathBuf>,
    /// `check_interval`: seconds between renewal checks.
    pub check_interval_secs: u64,
}

impl Default for Acme {
    fn default() -> Self {
        Acme {
            enable: false,
            domains: Vec::new(),
            email: None,
            directory: LETS_ENCRYPT_PRODUCTION.into(),
            challenge: ChallengeMode::Auto,
            key_type: KeyType::EcdsaP256,
            ca_root: None,
            check_interval_secs: DEFAULT_CHECK_INTERVAL_SECS,
        }
    }
}

impl Acme {
    /// The names to certify: `domains`, else the DNS names in `[TRANSPORT] host`
    /// (IP addresses, onion names and the placeholder are left out).
    pub fn effective_domains(&self, transport_host: &str) -> Vec<String> {
        if !self.domains.is_empty() {
            return self.domains.clone();
        }
        transport_host
            .split(',')
            .map(str::trim)
            .filter(|h| is_dns_name(h) && !h.ends_with(".onion"))
            .map(str::to_ascii_lowercase)
            .collect()
    }
}

/// A plausible public DNS name (not an IP address, at least one dot).
pub fn is_dns_name(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_err()
        && h.contains('.')
        && !h.starts_with('.')
        && !h.ends_with('.')
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
        })
}

pub(crate) fn acme(r: &Reader<'_>) -> Result<Acme, ConfigError> {
    let d = Acme::default();
    let domains = match r.text(ACME, "domains") {
        None => Vec::new(),
        Some(v) => {
            let names: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            if let Some(bad) = names.iter().find(|n| !is_dns_name(n)) {
                return Err(r.invalid(
                    ACME,
                    "domains",
                    &v,
                    format!(
                        "'{bad}' is not a DNS name (IP addresses cannot get certificates here)"
                    ),
                    "use e.g. domains = smp.example.com,www.example.com",
                ));
            }
            names
        }
    };
    let directory = match r.text(ACME, "directory").as_deref() {
        None | Some("production") | Some("letsencrypt") => d.directory.clone(),
        Some("staging") => LETS_ENCRYPT_STAGING.into(),
        Some(url) if url.starts_with("https://") => url.to_string(),
        Some(v) => {
            return Err(r.invalid(
                ACME,
                "directory",
                v,
                "is not an ACME directory",
                "use directory = staging, or the https:// URL of the CA's directory",
            ))
        }
    };
    let challenge = match r.text(ACME, "challenge").as_deref() {
        None | Some("auto") => ChallengeMode::Auto,
        Some("http-01") => ChallengeMode::Http01,
        Some("tls-alpn-01") => ChallengeMode::TlsAlpn01,
        Some(v) => {
            return Err(r.invalid(
                ACME,
                "challenge",
                v,
                "is not a challenge type",
                "use challenge = http-01, tls-alpn-01 or auto",
            ))
        }
    };
    let key_type = match r.text(ACME, "key_type").as_deref() {
        None | Some("ecdsa") | Some("ecdsa-p256") => KeyType::EcdsaP256,
        Some("rsa") | Some("rsa-2048") => KeyType::Rsa2048,
        Some(v) => {
            return Err(r.invalid(
                ACME,
                "key_type",
                v,
                "is not a key type",
                "use key_type = ecdsa or key_type = rsa",
            ))
        }
    };
    let check_interval_secs = r
        .number(ACME, "check_interval", "43200")?
        .unwrap_or(DEFAULT_CHECK_INTERVAL_SECS);
    if check_interval_secs == 0 {
        return Err(r.invalid(
            ACME,
            "check_interval",
            "0",
            "must be at least 1 second",
            "use e.g. check_interval = 43200",
        ));
    }
    Ok(Acme {
        enable: r.on_off_or(ACME, "enable", false)?,
        domains,
        email: r.text(ACME, "email"),
        directory,
        challenge,
        key_type,
        ca_root: r.text(ACME, "ca_root").map(PathBuf::from),
        check_interval_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Paths};

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Paths::new("/c", "/l"))
    }

    #[test]
    fn defaults_and_keywords() {
        let c = parse("").expect("valid");
        assert!(!c.acme.enable);
        assert_eq!(c.acme.directory, LETS_ENCRYPT_PRODUCTION);
        let c = parse("[TRANSPORT]\nhost = smp.example.com,1.2.3.4,xyz.onion\n[ACME]\nenable = on\ndirectory = staging\nchallenge = tls-alpn-01\nkey_type = rsa\n")
            .expect("valid");
        assert!(c.acme.enable);
        assert_eq!(c.acme.directory, LETS_ENCRYPT_STAGING);
        assert_eq!(c.acme.challenge, ChallengeMode::TlsAlpn01);
        assert_eq!(c.acme.key_type, KeyType::Rsa2048);
        assert_eq!(
            c.acme.effective_domains(&c.transport.host),
            vec!["smp.example.com"]
        );
        let c = parse("[ACME]\ndomains = A.example.com, b.example.com\n").expect("valid");
        assert_eq!(
            c.acme.effective_domains("x.example"),
            vec!["a.example.com", "b.example.com"]
        );
    }

    #[test]
    fn bad_values_name_the_fix() {
        for (ini, fix) in [
            ("[ACME]\nchallenge = dns-01\n", "http-01"),
            ("[ACME]\ndomains = 1.2.3.4\n", "domains = smp.example.com"),
            ("[ACME]\ndirectory = http://x\n", "https://"),
            ("[ACME]\nkey_type = ed25519\n", "ecdsa"),
        ] {
            let Err(e) = parse(ini) else {
                panic!("{ini} must fail")
            };
            let e = e.to_string();
            assert!(e.contains(fix), "{e}");
        }
    }
}
