//! Where the server keeps its files: the reference's directories and file names.

use std::path::{Path, PathBuf};

/// Default configuration directory.
pub const DEFAULT_CFG_DIR: &str = "/etc/opt/simplex";
/// Default directory for logs, store logs and statistics.
pub const DEFAULT_LOG_DIR: &str = "/var/opt/simplex";
/// Environment variable overriding the configuration directory.
pub const CFG_PATH_ENV: &str = "SMP_SERVER_CFG_PATH";
/// Environment variable overriding the log directory.
pub const LOG_PATH_ENV: &str = "SMP_SERVER_LOG_PATH";

/// The two directories of a server; every file name is derived from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// Configuration, keys and certificates (`/etc/opt/simplex`).
    pub cfg_dir: PathBuf,
    /// Store logs, message store, statistics (`/var/opt/simplex`).
    pub log_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths::new(DEFAULT_CFG_DIR, DEFAULT_LOG_DIR)
    }
}

/// An environment value as a path; unset or empty means the default, as in the reference.
fn env_path(value: Option<std::ffi::OsString>, default: &str) -> PathBuf {
    match value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

impl Paths {
    /// Paths from explicit directories.
    pub fn new(cfg_dir: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> Paths {
        Paths {
            cfg_dir: cfg_dir.into(),
            log_dir: log_dir.into(),
        }
    }

    /// Defaults overridden by `SMP_SERVER_CFG_PATH` / `SMP_SERVER_LOG_PATH` (empty = unset).
    pub fn from_env() -> Paths {
        Paths {
            cfg_dir: env_path(std::env::var_os(CFG_PATH_ENV), DEFAULT_CFG_DIR),
            log_dir: env_path(std::env::var_os(LOG_PATH_ENV), DEFAULT_LOG_DIR),
        }
    }

    fn cfg(&self, name: &str) -> PathBuf {
        self.cfg_dir.join(name)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }

    /// `smp-server.ini`.
    pub fn ini_file(&self) -> PathBuf {
        self.cfg("smp-server.ini")
    }
    /// `ca.key`: the offline identity key (should be moved off the server).
    pub fn ca_key_file(&self) -> PathBuf {
        self.cfg("ca.key")
    }
    /// `ca.crt`: the identity certificate whose hash is the fingerprint.
    pub fn ca_cert_file(&self) -> PathBuf {
        self.cfg("ca.crt")
    }
    /// `server.key`: the online TLS key.
    pub fn server_key_file(&self) -> PathBuf {
        self.cfg("server.key")
    }
    /// `server.crt`: the online TLS certificate, signed by `ca.key`.
    pub fn server_cert_file(&self) -> PathBuf {
        self.cfg("server.crt")
    }
    /// `fingerprint`: the saved fingerprint, checked against `ca.crt` at start.
    pub fn fingerprint_file(&self) -> PathBuf {
        self.cfg("fingerprint")
    }
    /// `web.crt`: default certificate of the HTTPS information page.
    pub fn web_cert_file(&self) -> PathBuf {
        self.cfg("web.crt")
    }
    /// `web.key`: default key of the HTTPS information page.
    pub fn web_key_file(&self) -> PathBuf {
        self.cfg("web.key")
    }
    /// `smp-server-store.log`: the queue store log.
    pub fn store_log_file(&self) -> PathBuf {
        self.log("smp-server-store.log")
    }
    /// `smp-server-messages.log`: messages saved at shutdown (memory message store).
    pub fn messages_file(&self) -> PathBuf {
        self.log("smp-server-messages.log")
    }
    /// `messages/`: the journal message store directory.
    pub fn messages_journal_dir(&self) -> PathBuf {
        self.log("messages")
    }
    /// `smp-server-ntfs.log`: notifications saved at shutdown.
    pub fn ntfs_file(&self) -> PathBuf {
        self.log("smp-server-ntfs.log")
    }
    /// `smp-server-stats.log`: statistics saved at shutdown and restored at start.
    pub fn stats_file(&self) -> PathBuf {
        self.log("smp-server-stats.log")
    }
    /// `smp-server-stats.daily.log`: the daily statistics CSV.
    pub fn stats_daily_file(&self) -> PathBuf {
        self.log("smp-server-stats.daily.log")
    }
    /// `smp-server-metrics.txt`: Prometheus metrics.
    pub fn metrics_file(&self) -> PathBuf {
        self.log("smp-server-metrics.txt")
    }
    /// `www/`: default directory of the generated information site.
    pub fn default_web_static_dir(&self) -> PathBuf {
        self.log("www")
    }

    /// The configuration directory.
    pub fn cfg_dir(&self) -> &Path {
        &self.cfg_dir
    }
    /// The log directory.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_file_names() {
        let p = Paths::default();
        assert_eq!(p.ini_file(), Path::new("/etc/opt/simplex/smp-server.ini"));
        assert_eq!(p.ca_key_file(), Path::new("/etc/opt/simplex/ca.key"));
        assert_eq!(
            p.store_log_file(),
            Path::new("/var/opt/simplex/smp-server-store.log")
        );
        assert_eq!(
            p.stats_daily_file(),
            Path::new("/var/opt/simplex/smp-server-stats.daily.log")
        );
        assert_eq!(
            p.metrics_file(),
            Path::new("/var/opt/simplex/smp-server-metrics.txt")
        );
        assert_eq!(
            p.default_web_static_dir(),
            Path::new("/var/opt/simplex/www")
        );
    }

    #[test]
    fn empty_env_means_default() {
        assert_eq!(env_path(Some("".into()), "/d"), PathBuf::from("/d"));
        assert_eq!(env_path(None, "/d"), PathBuf::from("/d"));
        assert_eq!(env_path(Some("/x".into()), "/d"), PathBuf::from("/x"));
    }
}
