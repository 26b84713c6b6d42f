//! `[WEB]`: the information page's ports, files and certificate.

use std::path::PathBuf;

use crate::config::read::Reader;
use crate::config::ConfigError;

/// `[WEB]`: the server information page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Web {
    /// `static_path`: where the site is generated; no site when absent.
    pub static_path: Option<PathBuf>,
    /// `http`: port of a plain HTTP server for the site.
    pub http: Option<u16>,
    /// `https`: port of the HTTPS server (shared with SMP if it is an SMP port).
    pub https: Option<u16>,
    /// `cert`: HTTPS certificate chain file.
    pub cert: Option<PathBuf>,
    /// `key`: HTTPS private key file.
    pub key: Option<PathBuf>,
}

impl Web {
    /// Port, certificate and key, when all three are set (the reference needs all three).
    pub fn https_params(&self) -> Option<(u16, &std::path::Path, &std::path::Path)> {
        Some((self.https?, self.cert.as_deref()?, self.key.as_deref()?))
    }
}

const WEB: &str = "WEB";

pub(super) fn web(r: &Reader<'_>) -> Result<Web, ConfigError> {
    Ok(Web {
        static_path: r.text(WEB, "static_path").map(PathBuf::from),
        http: r.port(WEB, "http", "8000")?,
        https: r.port(WEB, "https", "443")?,
        cert: r.text(WEB, "cert").map(PathBuf::from),
        key: r.text(WEB, "key").map(PathBuf::from),
    })
}
