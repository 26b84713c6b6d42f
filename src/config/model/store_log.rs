//! `[STORE_LOG]`: where queues and messages are kept and what is logged.

use std::fmt;

use crate::config::defaults;
use crate::config::read::Reader;
use crate::config::ConfigError;

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
    pub journal_fsync: crate::config::JournalFsync,
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
            journal_fsync: crate::config::JournalFsync::default(),
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

const STORE: &str = "STORE_LOG";

pub(super) fn store_log(r: &Reader<'_>) -> Result<StoreLog, ConfigError> {
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
        journal_fsync: crate::config::JournalFsync::read(r)?,
    })
}
