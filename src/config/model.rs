//! The sections of `smp-server.ini` as types, and their reading from a parsed INI.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use super::address::{is_valid_password, PLACEHOLDER_HOST};
use super::defaults;
use super::ini::Ini;
use super::paths::Paths;
use super::read::{parse_port, Reader};
use super::{Config, ConfigError};

/// An operator or hosting provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    /// Organisation or person name.
    pub name: String,
    /// ISO 3166 alpha-2 country code, upper case.
    pub country: Option<String>,
}

/// A PGP key published for contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgpKey {
    /// Where the key can be downloaded.
    pub key_uri: String,
    /// The key's fingerprint.
    pub fingerprint: String,
}

/// Administrative or complaints contacts; present when at least one contact is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contacts {
    /// A SimpleX contact address.
    pub simplex: Option<String>,
    /// An email address.
    pub email: Option<String>,
    /// A PGP key (both URI and fingerprint must be set).
    pub pgp: Option<PgpKey>,
}

/// `hosting_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostingType {
    /// A virtual machine.
    Virtual,
    /// A dedicated server.
    Dedicated,
    /// An owned machine in a colocation facility.
    Colocation,
    /// Owned premises.
    Owned,
}

impl HostingType {
    /// The INI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HostingType::Virtual => "virtual",
            HostingType::Dedicated => "dedicated",
            HostingType::Colocation => "colocation",
            HostingType::Owned => "owned",
        }
    }
}

impl FromStr for HostingType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtual" => Ok(HostingType::Virtual),
            "dedicated" => Ok(HostingType::Dedicated),
            "colocation" => Ok(HostingType::Colocation),
            "owned" => Ok(HostingType::Owned),
            _ => Err(format!(
                "'{s}' is not a hosting type; use virtual, dedicated, colocation or owned"
            )),
        }
    }
}

/// `[INFORMATION]`: published on the information page and to clients.
///
/// The reference publishes nothing unless `source_code` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Information {
    /// `source_code`: URI of the (possibly modified) source, required by the AGPLv3.
    pub source_code: Option<String>,
    /// `usage_conditions`.
    pub usage_conditions: Option<String>,
    /// `condition_amendments` (only meaningful with `usage_conditions`).
    pub condition_amendments: Option<String>,
    /// `server_country`.
    pub server_country: Option<String>,
    /// `operator` and `operator_country`.
    pub operator: Option<Entity>,
    /// `website`.
    pub website: Option<String>,
    /// `admin_simplex`, `admin_email`, `admin_pgp`, `admin_pgp_fingerprint`.
    pub admin_contacts: Option<Contacts>,
    /// `complaints_simplex`, `complaints_email`, `complaints_pgp`, `complaints_pgp_fingerprint`.
    pub complaints_contacts: Option<Contacts>,
    /// `hosting` and `hosting_country`.
    pub hosting: Option<Entity>,
    /// `hosting_type`.
    pub hosting_type: Option<HostingType>,
}

impl Information {
    /// Whether any field other than `source_code` is set.
    pub fn has_details(&self) -> bool {
        self.usage_conditions.is_some()
            || self.server_country.is_some()
            || self.operator.is_some()
            || self.website.is_some()
            || self.admin_contacts.is_some()
            || self.complaints_contacts.is_some()
            || self.hosting.is_some()
            || self.hosting_type.is_some()
    }
}

/// `store_queues`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueStoreType {
    /// In memory, optionally persisted by the store log.
    #[default]
    Memory,
    /// PostgreSQL.
    Database,
}

impl fmt::Display for QueueStoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueueStoreType::Memory => "memory",
            QueueStoreType::Database => "database",
        })
    }
}

/// `store_messages`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageStoreType {
    /// In memory, saved to `smp-server-messages.log` at shutdown.
    #[default]
    Memory,
    /// Journal files under `messages/`.
    Journal,
    /// PostgreSQL.
    Database,
}

impl fmt::Display for MessageStoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageStoreType::Memory => "memory",
            MessageStoreType::Journal => "journal",
            MessageStoreType::Database => "database",
        })
    }
}

/// `[STORE_LOG]`.
#[derive(Clone)]
pub struct StoreLog {
    /// `enable`: append queue records to `smp-server-store.log` and restore them at start.
    pub enable: bool,
    /// `store_queues` (default `memory`).
    pub store_queues: QueueStoreType,
    /// `store_messages` (default `memory`).
    pub store_messages: MessageStoreType,
    /// `db_connection` (PostgreSQL; may contain a password, never printed).
    pub db_connection: String,
    /// `db_schema`.
    pub db_schema: String,
    /// `db_pool_size`.
    pub db_pool_size: u32,
    /// `db_store_log`: also write database changes to the store log.
    pub db_store_log: bool,
    /// `db_deleted_ttl`, read as seconds exactly as the reference does.
    pub db_deleted_ttl: i64,
    /// `restore_messages`; `None` (absent) means "same as `enable`".
    pub restore_messages: Option<bool>,
    /// `expire_messages_days`; absent means 21. `None` only if set programmatically
    /// (the reference always expires messages).
    pub expire_messages_days: Option<u32>,
    /// `expire_messages_on_start` (default on).
    pub expire_messages_on_start: bool,
    /// `expire_messages_on_send` (default on when absent; `init` writes off).
    pub expire_messages_on_send: bool,
    /// `expire_ntfs_hours` (default 24).
    pub expire_ntfs_hours: u32,
    /// `log_stats`: daily statistics CSV.
    pub log_stats: bool,
    /// `prometheus_interval` in seconds; metrics are written only when set.
    pub prometheus_interval: Option<u32>,
    /// `prometheus_address` (ours): serve the metrics over HTTP on this address, e.g.
    /// `127.0.0.1:9090`; off when absent.
    pub prometheus_address: Option<std::net::SocketAddr>,
    /// `journal_fsync` (our own key): fsync policy of the message journal.
    pub journal_fsync: super::JournalFsync,
}

impl StoreLog {
    /// Whether undelivered messages are saved at shutdown and restored at start.
    pub fn restore_messages_enabled(&self) -> bool {
        self.restore_messages.unwrap_or(self.enable)
    }

    /// Message time-to-live in seconds, if messages expire.
    pub fn message_ttl_secs(&self) -> Option<u64> {
        self.expire_messages_days.map(|d| u64::from(d) * 86400)
    }
}

impl Default for StoreLog {
    fn default() -> Self {
        StoreLog {
            enable: false,
            store_queues: QueueStoreType::Memory,
            store_messages: MessageStoreType::Memory,
            db_connection: defaults::DB_CONNECTION.into(),
            db_schema: defaults::DB_SCHEMA.into(),
            db_pool_size: defaults::DB_POOL_SIZE,
            db_store_log: false,
            db_deleted_ttl: defaults::DB_DELETED_TTL,
            restore_messages: None,
            expire_messages_days: Some(defaults::EXPIRE_MESSAGES_DAYS),
            expire_messages_on_start: true,
            expire_messages_on_send: true,
            expire_ntfs_hours: defaults::EXPIRE_NTFS_HOURS,
            log_stats: false,
            prometheus_interval: None,
            prometheus_address: None,
            journal_fsync: super::JournalFsync::default(),
        }
    }
}

/// Hide the password of a `scheme://user:password@host` connection string.
pub fn redact_connection(s: &str) -> String {
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!(
                    "{}{}:<redacted>{}",
                    &s[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                );
            }
        }
    }
    s.to_string()
}

impl fmt::Debug for StoreLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLog")
            .field("enable", &self.enable)
            .field("store_queues", &self.store_queues)
            .field("store_messages", &self.store_messages)
            .field("db_connection", &redact_connection(&self.db_connection))
            .field("db_schema", &self.db_schema)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_store_log", &self.db_store_log)
            .field("db_deleted_ttl", &self.db_deleted_ttl)
            .field("restore_messages", &self.restore_messages)
            .field("expire_messages_days", &self.expire_messages_days)
            .field("expire_messages_on_start", &self.expire_messages_on_start)
            .field("expire_messages_on_send", &self.expire_messages_on_send)
            .field("expire_ntfs_hours", &self.expire_ntfs_hours)
            .field("log_stats", &self.log_stats)
            .field("prometheus_interval", &self.prometheus_interval)
            .field("prometheus_address", &self.prometheus_address)
            .finish()
    }
}

/// `[AUTH]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// `new_queues`: allow creating queues at all (default on).
    pub new_queues: bool,
    /// `create_password`: required to create queues (and to use the server as a proxy).
    pub create_password: Option<String>,
    /// `control_port_admin_password`.
    pub control_port_admin_password: Option<String>,
    /// `control_port_user_password`.
    pub control_port_user_password: Option<String>,
    /// `daily_block_queue_quota`: 0 = no limit, -1 = blocking prohibited (default 20).
    pub daily_block_queue_quota: i32,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            new_queues: true,
            create_password: None,
            control_port_admin_password: None,
            control_port_user_password: None,
            daily_block_queue_quota: defaults::DAILY_BLOCK_QUEUE_QUOTA,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("Auth")
            .field("new_queues", &self.new_queues)
            .field("create_password", &hide(&self.create_password))
            .field(
                "control_port_admin_password",
                &hide(&self.control_port_admin_password),
            )
            .field(
                "control_port_user_password",
                &hide(&self.control_port_user_password),
            )
            .field("daily_block_queue_quota", &self.daily_block_queue_quota)
            .finish()
    }
}

/// `websockets`: deprecated extra WebSocket listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Websockets {
    /// `off`.
    #[default]
    Off,
    /// `on` (port 80) or a port list; SMP ports are removed from it, as in the reference.
    Ports(Vec<u16>),
}

/// `[TRANSPORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// `host`: only used to print the server address (default `<hostnames>`).
    pub host: String,
    /// `port`: comma-separated SMP ports (default `5223,443`).
    pub ports: Vec<u16>,
    /// `log_tls_errors` (default off).
    pub log_tls_errors: bool,
    /// `websockets` (default off).
    pub websockets: Websockets,
    /// `control_port`: the control port, if enabled.
    pub control_port: Option<u16>,
    /// `accept_service_credentials` (default on).
    pub accept_service_credentials: bool,
    /// `max_smp_version` (ours; the reference has no key): the highest SMP version offered,
    /// 6..=20 (default 20), for an operator who must hold clients at an older version.
    pub max_smp_version: u16,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            host: PLACEHOLDER_HOST.into(),
            ports: defaults::PORTS.to_vec(),
            log_tls_errors: false,
            websockets: Websockets::Off,
            control_port: None,
            accept_service_credentials: true,
            max_smp_version: crate::protocol::version::CURRENT_SERVER_VERSION,
        }
    }
}

/// `socks_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocksMode {
    /// Use the SOCKS proxy only for `.onion` destinations (default).
    #[default]
    Onion,
    /// Use the SOCKS proxy for every destination.
    Always,
}

/// `host_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostMode {
    /// Prefer public host names (default).
    #[default]
    Public,
    /// Prefer onion host names.
    Onion,
}

/// `[PROXY]`: how this server connects to other servers when it forwards messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// `socks_proxy`: `host:port`, host an IP address (`localhost` is accepted too).
    pub socks_proxy: Option<SocketAddr>,
    /// `socks_mode` (default onion).
    pub socks_mode: SocksMode,
    /// `host_mode` (default public).
    pub host_mode: HostMode,
    /// `required_host_mode` (default off).
    pub required_host_mode: bool,
    /// `own_server_domains`: domain suffixes counted as own relays in statistics.
    pub own_server_domains: Vec<String>,
    /// `client_concurrency` (default 32).
    pub client_concurrency: u32,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            socks_proxy: None,
            socks_mode: SocksMode::Onion,
            host_mode: HostMode::Public,
            required_host_mode: false,
            own_server_domains: Vec::new(),
            client_concurrency: defaults::CLIENT_CONCURRENCY,
        }
    }
}

/// `[INACTIVE_CLIENTS]` when `disconnect = on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InactiveClients {
    /// `ttl`: seconds without activity before disconnecting.
    pub ttl_secs: u64,
    /// `check_interval`: seconds between checks.
    pub check_interval_secs: u64,
}

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

/// Validate an ISO 3166 alpha-2 code as the reference does; returns it upper-cased.
pub fn country_code(s: &str) -> Option<String> {
    (s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic())).then(|| s.to_ascii_uppercase())
}

const INFO: &str = "INFORMATION";

fn country(r: &Reader<'_>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match r.text(INFO, key) {
        None => Ok(None),
        Some(v) => country_code(&v).map(Some).ok_or_else(|| {
            r.invalid(
                INFO,
                key,
                &v,
                "is not an ISO 3166 2-letter country code",
                format!("use e.g. {key} = DE"),
            )
        }),
    }
}

fn entity(
    r: &Reader<'_>,
    name_key: &'static str,
    country_key: &'static str,
) -> Result<Option<Entity>, ConfigError> {
    let country = country(r, country_key)?;
    Ok(r.text(INFO, name_key).map(|name| Entity { name, country }))
}

fn contacts(
    r: &Reader<'_>,
    simplex_key: &'static str,
    email_key: &'static str,
    pgp_key: &'static str,
    pgp_fp_key: &'static str,
) -> Result<Option<Contacts>, ConfigError> {
    let simplex = r.text(INFO, simplex_key);
    if let Some(link) = &simplex {
        let ok = ["simplex:", "https://", "http://"]
            .iter()
            .any(|p| link.starts_with(p));
        if !ok {
            return Err(r.invalid(
                INFO,
                simplex_key,
                link,
                "is not a SimpleX address",
                "paste the address as shown by the app (it starts with https:// or simplex:)",
            ));
        }
    }
    let email = r.text(INFO, email_key);
    let key_uri = r.text(INFO, pgp_key);
    let fingerprint = r.text(INFO, pgp_fp_key);
    let pgp = match (key_uri, fingerprint) {
        (Some(key_uri), Some(fingerprint)) => Some(PgpKey {
            key_uri,
            fingerprint,
        }),
        _ => None,
    };
    if simplex.is_none() && email.is_none() && pgp.is_none() {
        return Ok(None);
    }
    Ok(Some(Contacts {
        simplex,
        email,
        pgp,
    }))
}

fn information(r: &Reader<'_>) -> Result<Information, ConfigError> {
    let hosting_type = match r.text(INFO, "hosting_type") {
        None => None,
        Some(v) => Some(v.parse::<HostingType>().map_err(|_| {
            r.invalid(
                INFO,
                "hosting_type",
                &v,
                "is not a hosting type",
                "use virtual, dedicated, colocation or owned",
            )
        })?),
    };
    Ok(Information {
        source_code: r.text(INFO, "source_code"),
        usage_conditions: r.text(INFO, "usage_conditions"),
        condition_amendments: r.text(INFO, "condition_amendments"),
        server_country: country(r, "server_country")?,
        operator: entity(r, "operator", "operator_country")?,
        website: r.text(INFO, "website"),
        admin_contacts: contacts(
            r,
            "admin_simplex",
            "admin_email",
            "admin_pgp",
            "admin_pgp_fingerprint",
        )?,
        complaints_contacts: contacts(
            r,
            "complaints_simplex",
            "complaints_email",
            "complaints_pgp",
            "complaints_pgp_fingerprint",
        )?,
        hosting: entity(r, "hosting", "hosting_country")?,
        hosting_type,
    })
}

const STORE: &str = "STORE_LOG";

fn store_log(r: &Reader<'_>) -> Result<StoreLog, ConfigError> {
    let d = StoreLog::default();
    let store_queues = match r.raw(STORE, "store_queues") {
        None => QueueStoreType::Memory,
        Some("memory") => QueueStoreType::Memory,
        Some("database") => QueueStoreType::Database,
        Some(v) => {
            return Err(r.invalid(
                STORE,
                "store_queues",
                v,
                "is not a queue store",
                "use store_queues = memory or store_queues = database",
            ))
        }
    };
    let store_messages = match r.raw(STORE, "store_messages") {
        None => MessageStoreType::Memory,
        Some("memory") => MessageStoreType::Memory,
        Some("journal") => MessageStoreType::Journal,
        Some("database") => MessageStoreType::Database,
        Some(v) => {
            return Err(r.invalid(
                STORE,
                "store_messages",
                v,
                "is not a message store",
                "use store_messages = memory, journal or database",
            ))
        }
    };
    Ok(StoreLog {
        enable: r.on_off_or(STORE, "enable", false)?,
        store_queues,
        store_messages,
        db_connection: r
            .raw(STORE, "db_connection")
            .map(str::to_string)
            .unwrap_or(d.db_connection),
        db_schema: r
            .raw(STORE, "db_schema")
            .map(str::to_string)
            .unwrap_or(d.db_schema),
        db_pool_size: r
            .number(STORE, "db_pool_size", "10")?
            .unwrap_or(d.db_pool_size),
        db_store_log: r.on_off_or(STORE, "db_store_log", false)?,
        db_deleted_ttl: r
            .number(STORE, "db_deleted_ttl", "1814400")?
            .unwrap_or(d.db_deleted_ttl),
        restore_messages: r.on_off(STORE, "restore_messages")?,
        expire_messages_days: Some(
            r.number(STORE, "expire_messages_days", "21")?
                .unwrap_or(defaults::EXPIRE_MESSAGES_DAYS),
        ),
        expire_messages_on_start: r.on_off_or(STORE, "expire_messages_on_start", true)?,
        expire_messages_on_send: r.on_off_or(STORE, "expire_messages_on_send", true)?,
        expire_ntfs_hours: r
            .number(STORE, "expire_ntfs_hours", "24")?
            .unwrap_or(d.expire_ntfs_hours),
        log_stats: r.on_off_or(STORE, "log_stats", false)?,
        prometheus_interval: r.number(STORE, "prometheus_interval", "60")?,
        prometheus_address: r.number(STORE, "prometheus_address", "127.0.0.1:9090")?,
        journal_fsync: super::JournalFsync::read(r)?,
    })
}

const AUTH: &str = "AUTH";

fn password(r: &Reader<'_>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match r.raw(AUTH, key) {
        None => Ok(None),
        Some(v) if is_valid_password(v) => Ok(Some(v.to_string())),
        Some(v) => Err(r.invalid(
            AUTH,
            key,
            v,
            if v.is_empty() {
                "is empty"
            } else {
                "contains whitespace, control characters, '@', ':' or '/'"
            },
            format!("use printable characters other than '@', ':' and '/', or comment out {key} to disable it"),
        )),
    }
}

fn auth(r: &Reader<'_>) -> Result<Auth, ConfigError> {
    Ok(Auth {
        new_queues: r.on_off_or(AUTH, "new_queues", true)?,
        create_password: password(r, "create_password")?,
        control_port_admin_password: password(r, "control_port_admin_password")?,
        control_port_user_password: password(r, "control_port_user_password")?,
        daily_block_queue_quota: r
            .number(AUTH, "daily_block_queue_quota", "20")?
            .unwrap_or(defaults::DAILY_BLOCK_QUEUE_QUOTA),
    })
}

const TRANSPORT: &str = "TRANSPORT";

fn transport(r: &Reader<'_>) -> Result<Transport, ConfigError> {
    let ports = match r.raw(TRANSPORT, "port") {
        None => defaults::PORTS.to_vec(),
        Some(v) => r.port_list(TRANSPORT, "port", v)?,
    };
    let websockets = match r.raw(TRANSPORT, "websockets") {
        None | Some("off") => Websockets::Off,
        Some("on") => Websockets::Ports(vec![80]),
        Some(v) => {
            let ws = r.port_list(TRANSPORT, "websockets", v).map_err(|_| {
                r.invalid(
                    TRANSPORT,
                    "websockets",
                    v,
                    "is neither on, off nor a port list",
                    "use websockets = off",
                )
            })?;
            Websockets::Ports(ws.into_iter().filter(|p| !ports.contains(p)).collect())
        }
    };
    Ok(Transport {
        host: r
            .text(TRANSPORT, "host")
            .unwrap_or_else(|| PLACEHOLDER_HOST.to_string()),
        ports,
        log_tls_errors: r.on_off_or(TRANSPORT, "log_tls_errors", false)?,
        websockets,
        control_port: r.port(TRANSPORT, "control_port", "5224")?,
        accept_service_credentials: r.on_off_or(TRANSPORT, "accept_service_credentials", true)?,
        max_smp_version: max_smp_version(r)?,
    })
}

/// `[TRANSPORT] max_smp_version`: 6..=20.
fn max_smp_version(r: &Reader<'_>) -> Result<u16, ConfigError> {
    use crate::protocol::version::{CURRENT_SERVER_VERSION as MAX, MIN_SERVER_VERSION as MIN};
    let v = r
        .number::<u16>(TRANSPORT, "max_smp_version", "20")?
        .unwrap_or(MAX);
    if !(MIN..=MAX).contains(&v) {
        return Err(r.invalid(
            TRANSPORT,
            "max_smp_version",
            &v.to_string(),
            format!("is outside the versions this server speaks ({MIN}..{MAX})"),
            format!("use a version from {MIN} to {MAX}, or remove the key"),
        ));
    }
    Ok(v)
}

const PROXY: &str = "PROXY";

/// Parse a SOCKS proxy as the reference does: `[host][:port]`, host an IP address
/// (default 127.0.0.1, and `localhost` accepted), port default 9050.
pub fn parse_socks_proxy(s: &str) -> Option<SocketAddr> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host: IpAddr = rest[..end].parse().ok()?;
        let after = &rest[end + 1..];
        (Some(host), after)
    } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
        (Some(IpAddr::V6(s.parse().ok()?)), "")
    } else {
        let (h, p) = match s.find(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let host = match h {
            "" => None,
            "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            h => Some(h.parse::<Ipv4Addr>().ok().map(IpAddr::V4)?),
        };
        (host, p)
    };
    let port = match port {
        "" => 9050,
        p => p.strip_prefix(':').and_then(parse_port)?,
    };
    Some(SocketAddr::new(
        host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port,
    ))
}

fn proxy(r: &Reader<'_>) -> Result<Proxy, ConfigError> {
    let socks_proxy = match r.raw(PROXY, "socks_proxy") {
        None => None,
        Some(v) => Some(parse_socks_proxy(v).ok_or_else(|| {
            r.invalid(
                PROXY,
                "socks_proxy",
                v,
                "is not an IP address with an optional port",
                "use e.g. socks_proxy = 127.0.0.1:9050",
            )
        })?),
    };
    let socks_mode = match r.raw(PROXY, "socks_mode") {
        None | Some("onion") => SocksMode::Onion,
        Some("always") => SocksMode::Always,
        Some(v) => {
            return Err(r.invalid(
                PROXY,
                "socks_mode",
                v,
                "is not a SOCKS mode",
                "use socks_mode = onion or socks_mode = always",
            ))
        }
    };
    let host_mode = match r.raw(PROXY, "host_mode") {
        None | Some("public") => HostMode::Public,
        Some("onion") => HostMode::Onion,
        Some(v) => {
            return Err(r.invalid(
                PROXY,
                "host_mode",
                v,
                "is not a host mode",
                "use host_mode = public or host_mode = onion",
            ))
        }
    };
    // Space-separated in the reference; `init --own-domains` writes commas, so accept both.
    let own_server_domains = r
        .raw(PROXY, "own_server_domains")
        .map(|v| {
            v.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Proxy {
        socks_proxy,
        socks_mode,
        host_mode,
        required_host_mode: r.on_off_or(PROXY, "required_host_mode", false)?,
        own_server_domains,
        client_concurrency: r
            .number(PROXY, "client_concurrency", "32")?
            .unwrap_or(defaults::CLIENT_CONCURRENCY),
    })
}

const INACTIVE: &str = "INACTIVE_CLIENTS";

fn inactive_clients(r: &Reader<'_>) -> Result<Option<InactiveClients>, ConfigError> {
    if !r.on_off_or(INACTIVE, "disconnect", false)? {
        return Ok(None);
    }
    Ok(Some(InactiveClients {
        ttl_secs: r
            .number(INACTIVE, "ttl", "21600")?
            .unwrap_or(defaults::INACTIVE_TTL_SECS),
        check_interval_secs: r
            .number(INACTIVE, "check_interval", "3600")?
            .unwrap_or(defaults::INACTIVE_CHECK_INTERVAL_SECS),
    }))
}

const WEB: &str = "WEB";

fn web(r: &Reader<'_>) -> Result<Web, ConfigError> {
    Ok(Web {
        static_path: r.text(WEB, "static_path").map(PathBuf::from),
        http: r.port(WEB, "http", "8000")?,
        https: r.port(WEB, "https", "443")?,
        cert: r.text(WEB, "cert").map(PathBuf::from),
        key: r.text(WEB, "key").map(PathBuf::from),
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
