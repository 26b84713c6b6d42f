//! The sections of `smp-server.ini` as types, and their reading from a parsed INI: one file per
//! section (each with its keys' reading), the key list and the assembly of [`Config`] here.

use super::ini::Ini;
use super::paths::Paths;
use super::read::Reader;
use super::{Config, ConfigError};

mod auth;
mod inactive;
mod information;
mod proxy;
mod store_log;
mod transport;
mod web;

pub use auth::*;
pub use inactive::*;
pub use information::*;
pub use proxy::*;
pub use store_log::*;
pub use transport::*;
pub use web::*;

use auth::auth;
use inactive::inactive_clients;
use information::information;
use proxy::proxy;
use store_log::store_log;
use transport::transport;
use web::web;

/// `--confirm-migrations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmMigrations {
    /// `up`: apply up-migrations without asking.
    Up,
    /// `down`: apply up- and down-migrations without asking.
    Down,
}

/// Options of `smp-server start` that the server core needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// `-m/--maintenance`: perform start and stop tasks only, do not serve.
    pub maintenance: bool,
    /// `--compact-log`: compact the store log at start.
    pub compact_log: bool,
    /// `--skip-warnings`: start despite non-critical warnings.
    pub skip_warnings: bool,
    /// `--allow-orphaned-messages` (ours): start even when many journaled messages have no
    /// queue in the store log, moving them aside instead of refusing.
    pub allow_orphaned_messages: bool,
    /// `--confirm-migrations`; `None` = ask on the console.
    pub confirm_migrations: Option<ConfirmMigrations>,
}

/// Keys known per section (anything else is reported as unknown).
const KNOWN: &[(&str, &[&str])] = &[
    (
        "INFORMATION",
        &[
            "source_code",
            "usage_conditions",
            "condition_amendments",
            "server_country",
            "operator",
            "operator_country",
            "website",
            "admin_simplex",
            "admin_email",
            "admin_pgp",
            "admin_pgp_fingerprint",
            "complaints_simplex",
            "complaints_email",
            "complaints_pgp",
            "complaints_pgp_fingerprint",
            "hosting",
            "hosting_country",
            "hosting_type",
        ],
    ),
    (
        "STORE_LOG",
        &[
            "enable",
            "store_queues",
            "store_messages",
            "db_connection",
            "db_schema",
            "db_pool_size",
            "db_store_log",
            "db_deleted_ttl",
            "restore_messages",
            "expire_messages_days",
            "expire_messages_on_start",
            "expire_messages_on_send",
            "expire_ntfs_hours",
            "log_stats",
            "prometheus_interval",
            "prometheus_address",
            "journal_fsync",
            "prometheus_max_connections",
        ],
    ),
    (
        "AUTH",
        &[
            "new_queues",
            "create_password",
            "control_port_admin_password",
            "control_port_user_password",
            "daily_block_queue_quota",
        ],
    ),
    (
        "TRANSPORT",
        &[
            "host",
            "port",
            "log_tls_errors",
            "websockets",
            "control_port",
            "accept_service_credentials",
            "max_connections",
            "max_connections_per_ip",
            "control_port_max_connections",
            "max_smp_version",
        ],
    ),
    (
        "PROXY",
        &[
            "socks_proxy",
            "socks_mode",
            "host_mode",
            "required_host_mode",
            "own_server_domains",
            "client_concurrency",
            "allow_private_destinations",
            "max_relay_connections",
            "relay_idle_timeout",
        ],
    ),
    ("INACTIVE_CLIENTS", &["disconnect", "ttl", "check_interval"]),
    (
        "WEB",
        &[
            "static_path",
            "http",
            "https",
            "cert",
            "key",
            "max_connections",
            "max_connections_per_ip",
            "first_byte_timeout",
            "idle_timeout",
        ],
    ),
    ("TOR", super::tor::TOR_KEYS),
    ("UPDATE", super::update::KEYS),
    ("ACME", super::acme::KEYS),
    ("NAMES", super::names::KEYS),
];

fn unknown_keys(ini: &Ini) -> Vec<String> {
    let mut out = Vec::new();
    for (section, entries) in ini.sections() {
        let known = KNOWN.iter().find(|(s, _)| *s == section).map(|(_, k)| *k);
        match known {
            None => out.push(format!("[{section}]")),
            Some(keys) => {
                for (k, _) in entries {
                    if !keys.contains(&k.as_str()) {
                        out.push(format!("[{section}] {k}"));
                    }
                }
            }
        }
    }
    out
}

/// Build a [`Config`] from a parsed INI (cross-key rules are left to `Config::validate`).
pub(crate) fn from_ini(ini: &Ini, paths: Paths) -> Result<Config, ConfigError> {
    let r = Reader { ini };
    Ok(Config {
        paths,
        information: information(&r)?,
        store_log: store_log(&r)?,
        auth: auth(&r)?,
        transport: transport(&r)?,
        proxy: proxy(&r)?,
        inactive_clients: inactive_clients(&r)?,
        web: web(&r)?,
        tor: super::tor::tor(&r)?,
        update: super::update::read(&r)?,
        acme: super::acme::acme(&r)?,
        limits: super::limits::read(&r)?,
        names: super::names::read(&r)?,
        start: StartOptions::default(),
        unknown_keys: unknown_keys(ini),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_proxy_forms() {
        let p = |s| parse_socks_proxy(s).map(|a| a.to_string());
        assert_eq!(p("127.0.0.1:9050").as_deref(), Some("127.0.0.1:9050"));
        assert_eq!(p("localhost:9050").as_deref(), Some("127.0.0.1:9050"));
        assert_eq!(p("").as_deref(), Some("127.0.0.1:9050"));
        assert_eq!(p(":9150").as_deref(), Some("127.0.0.1:9150"));
        assert_eq!(p("10.0.0.1").as_deref(), Some("10.0.0.1:9050"));
        assert_eq!(p("[::1]:9051").as_deref(), Some("[::1]:9051"));
        assert_eq!(p("::1").as_deref(), Some("[::1]:9050"));
        assert_eq!(p("tor.example.com:9050"), None);
        assert_eq!(p("1.2.3.4:x"), None);
    }

    #[test]
    fn redacts_connection_password() {
        assert_eq!(
            redact_connection("postgresql://smp:secret@db/smp"),
            "postgresql://smp:<redacted>@db/smp"
        );
        assert_eq!(
            redact_connection("postgresql://smp@/smp_server_store"),
            "postgresql://smp@/smp_server_store"
        );
    }

    #[test]
    fn countries() {
        assert_eq!(country_code("de").as_deref(), Some("DE"));
        assert_eq!(country_code("DEU"), None);
        assert_eq!(country_code("D1"), None);
    }
}
