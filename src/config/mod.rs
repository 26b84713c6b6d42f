//! `smp-server.ini` to a typed, validated [`Config`].
//!
//! Every section and key the reference server reads is modelled here, with the reference's
//! defaults for absent keys. Unknown keys are kept as warnings, never errors, so that files
//! written by newer reference versions still load.

pub mod acme;
mod address;
mod ini;
mod journal_fsync;
pub mod limits;
mod model;
pub mod names;
mod paths;
mod read;
mod template;
mod tor;
mod update;

use std::path::{Path, PathBuf};

pub use address::{is_valid_password, ServerAddress, DEFAULT_SMP_PORT, PLACEHOLDER_HOST};
pub use ini::{Ini, SyntaxError};
pub use journal_fsync::JournalFsync;
pub use model::{
    country_code, parse_socks_proxy, redact_connection, Auth, ConfirmMigrations, Contacts, Entity,
    HostMode, HostingType, InactiveClients, Information, MessageStoreType, PgpKey, Proxy,
    QueueStoreType, SocksMode, StartOptions, StoreLog, Transport, Web, Websockets,
};
pub use paths::{Paths, CFG_PATH_ENV, DEFAULT_CFG_DIR, DEFAULT_LOG_DIR, LOG_PATH_ENV};
pub use template::{render_ini, IniTemplate};
pub use tor::{onion_address_file, Tor, TorEgress};
pub use update::{Update, UpdateMode, UpdateWindow, BUILD_REPOSITORY, DEFAULT_API_URL};

/// Defaults the reference uses, shared by the parser and the `init` template.
pub mod defaults {
    /// Ports written by `init` and assumed when `[TRANSPORT] port` is absent.
    pub const PORTS: [u16; 2] = [5223, 443];
    /// Days after which undelivered messages expire.
    pub const EXPIRE_MESSAGES_DAYS: u32 = 21;
    /// Hours after which undelivered notifications expire.
    pub const EXPIRE_NTFS_HOURS: u32 = 24;
    /// Seconds of inactivity after which a client is disconnected.
    pub const INACTIVE_TTL_SECS: u64 = 21600;
    /// Seconds between checks for inactive clients.
    pub const INACTIVE_CHECK_INTERVAL_SECS: u64 = 3600;
    /// Control port enabled by a bare `--control-port`.
    pub const CONTROL_PORT: u16 = 5224;
    /// Queues that may be blocked via the control port per day.
    pub const DAILY_BLOCK_QUEUE_QUOTA: i32 = 20;
    /// Parallel proxy commands per client.
    pub const CLIENT_CONCURRENCY: u32 = 32;
    /// SOCKS proxy used by a bare `--socks-proxy`.
    pub const SOCKS_PROXY: &str = "127.0.0.1:9050";
    /// PostgreSQL connection string.
    pub const DB_CONNECTION: &str = "postgresql://smp@/smp_server_store";
    /// PostgreSQL schema.
    pub const DB_SCHEMA: &str = "smp_server";
    /// PostgreSQL pool size.
    pub const DB_POOL_SIZE: u32 = 10;
    /// Retention of deleted queues in the database, as the reference reads it (seconds).
    pub const DB_DELETED_TTL: i64 = 86400 * 21;
    /// This project's repository, offered as `source_code` by `init`: the release repository
    /// the build names (`SMP_UPDATE_REPOSITORY`, the value the updater uses), else the
    /// package's `repository`; `None` in a plain source build that names neither (then the
    /// operator gives it). Never the reference's repository: that is not the code running.
    pub fn source_code() -> Option<String> {
        match super::update::BUILD_REPOSITORY {
            Some(r) if !r.is_empty() => Some(format!("https://github.com/{r}")),
            _ => {
                let r = env!("CARGO_PKG_REPOSITORY");
                (!r.is_empty()).then(|| r.to_string())
            }
        }
    }
}

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid INI.
    #[error("{}, line {line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value cannot be used.
    #[error("[{section}] {key}: '{value}' {problem}; {fix}")]
    InvalidValue {
        /// INI section.
        section: &'static str,
        /// INI key.
        key: &'static str,
        /// The offending value (`<hidden>` for secrets).
        value: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// Values that are valid alone but not together.
    #[error("{problem}; {fix}")]
    Inconsistent {
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

/// The whole server configuration: `smp-server.ini` plus the directories and start options.
///
/// `Debug` never prints passwords.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Directories and file names.
    pub paths: Paths,
    /// `[INFORMATION]`: public information about the server and its operator.
    pub information: Information,
    /// `[STORE_LOG]`: persistence, expiration, statistics.
    pub store_log: StoreLog,
    /// `[AUTH]`: who may create queues, control port passwords.
    pub auth: Auth,
    /// `[TRANSPORT]`: host, ports, TLS options, control port.
    pub transport: Transport,
    /// `[PROXY]`: the proxy role's outgoing connections.
    pub proxy: Proxy,
    /// `[INACTIVE_CLIENTS]`: `Some` when `disconnect = on`.
    pub inactive_clients: Option<InactiveClients>,
    /// `[WEB]`: the server information page.
    pub web: Web,
    /// `[TOR]`: embedded Tor, onion service and onion egress.
    pub tor: Tor,
    /// `[UPDATE]`: signed self-update (our own section).
    pub update: Update,
    /// `[ACME]`: automatic certificates for the information page.
    pub acme: acme::Acme,
    /// Connection limits, HTTP timeouts and proxy egress rules (our keys in `[TRANSPORT]`,
    /// `[WEB]`, `[STORE_LOG]` and `[PROXY]`).
    pub limits: limits::Limits,
    /// `[NAMES]`: the names role (v20 RSLV); `None` when `enable` is off.
    pub names: Option<names::Names>,
    /// Options of `smp-server start` (not from the INI file).
    pub start: StartOptions,
    /// `SECTION.key` of keys this server does not know; reported as warnings.
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Load and validate the INI file at `path`. The configuration directory is the file's
    /// directory; the log directory comes from `SMP_SERVER_LOG_PATH` (default
    /// `/var/opt/simplex`).
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let cfg_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let paths = Paths::new(cfg_dir, Paths::from_env().log_dir);
        Config::load_file(path, paths)
    }

    /// Load and validate `paths.ini_file()`.
    pub fn load_from(paths: Paths) -> Result<Config, ConfigError> {
        let path = paths.ini_file();
        Config::load_file(&path, paths)
    }

    fn load_file(path: &Path, paths: Paths) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let ini = Ini::parse(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            message: e.message,
        })?;
        let config = model::from_ini(&ini, paths)?;
        config.validate()?;
        Ok(config)
    }

    /// Parse and validate INI text (no file access).
    pub fn parse(text: &str, paths: Paths) -> Result<Config, ConfigError> {
        let ini = Ini::parse(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("smp-server.ini"),
            line: e.line,
            message: e.message,
        })?;
        let config = model::from_ini(&ini, paths)?;
        config.validate()?;
        Ok(config)
    }

    /// Check rules that involve several keys. `load` and `parse` call it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use MessageStoreType as M;
        use QueueStoreType as Q;
        match (self.store_log.store_queues, self.store_log.store_messages) {
            (Q::Memory, M::Database) | (Q::Database, M::Memory) => {
                return Err(ConfigError::Inconsistent {
                    problem: format!(
                        "[STORE_LOG] store_queues = {} and store_messages = {} cannot be combined (database and memory storage are not compatible)",
                        self.store_log.store_queues, self.store_log.store_messages
                    ),
                    fix: "use store_queues = memory with store_messages = memory or journal, or store_queues = database with store_messages = journal or database".into(),
                });
            }
            _ => {}
        }
        if self.transport.ports.is_empty() {
            return Err(ConfigError::Inconsistent {
                problem: "[TRANSPORT] port lists no ports".into(),
                fix: "use e.g. port = 5223,443".into(),
            });
        }
        if let Some(ic) = &self.inactive_clients {
            if ic.ttl_secs == 0 || ic.check_interval_secs == 0 {
                return Err(ConfigError::Inconsistent {
                    problem: "[INACTIVE_CLIENTS] ttl and check_interval must be positive when disconnect = on".into(),
                    fix: format!(
                        "use e.g. ttl = {} and check_interval = {}",
                        defaults::INACTIVE_TTL_SECS,
                        defaults::INACTIVE_CHECK_INTERVAL_SECS
                    ),
                });
            }
        }
        if let Some(cp) = self.transport.control_port {
            if self.transport.ports.contains(&cp) {
                return Err(ConfigError::Inconsistent {
                    problem: format!("[TRANSPORT] control_port {cp} is also an SMP port"),
                    fix: format!(
                        "use another port, e.g. control_port = {}",
                        defaults::CONTROL_PORT
                    ),
                });
            }
        }
        tor::validate(&self.tor, self.proxy.socks_proxy.is_some())?;
        Ok(())
    }

    /// Non-fatal problems worth printing at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .unknown_keys
            .iter()
            .map(|k| format!("unknown setting {k} is ignored"))
            .collect();
        if self.transport.control_port.is_some()
            && self.auth.control_port_admin_password.is_none()
            && self.auth.control_port_user_password.is_none()
        {
            w.push("[TRANSPORT] control_port is set but [AUTH] has no control_port_admin_password or control_port_user_password: nobody can authenticate".into());
        }
        if self.web.https.is_some() && (self.web.cert.is_none() || self.web.key.is_none()) {
            w.push(
                "[WEB] https is set without both cert and key: the HTTPS page is disabled".into(),
            );
        }
        // `init` always writes hosting_type, so it alone does not deserve a warning.
        let info = Information {
            hosting_type: None,
            ..self.information.clone()
        };
        if info.source_code.is_none() && info.has_details() {
            w.push(
                "[INFORMATION] has details but no source_code: no server information is published"
                    .into(),
            );
        }
        w
    }

    /// The server address as `start` prints it, given the identity fingerprint.
    pub fn server_address(&self, fingerprint: &str) -> ServerAddress {
        ServerAddress::for_start(
            fingerprint,
            self.auth.create_password.as_deref(),
            &self.transport.host,
            &self.transport.ports,
        )
    }

    /// The server address with the onion host appended after the public hosts
    /// (`smp://fp@public,xxxx.onion`), as `start` prints it when Tor is enabled.
    pub fn server_address_with_onion(
        &self,
        fingerprint: &str,
        onion: Option<&str>,
    ) -> ServerAddress {
        let mut a = self.server_address(fingerprint);
        a.add_onion_host(onion, self.tor.onion_only_active());
        a
    }
}

#[cfg(test)]
mod tests;
