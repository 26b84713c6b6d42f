//! A synchronous door to PostgreSQL for the synchronous [`crate::store::Store`] trait.
//!
//! The store trait is called from connection tasks and must answer before the command is
//! answered, so each call waits for its query. The queries themselves run on a small runtime of
//! their own (tokio-postgres connections in a deadpool pool), and the caller waits on a channel:
//! inside the server's multi-thread runtime the wait is wrapped in `block_in_place`, so other
//! connections keep running on the remaining workers; on a current-thread runtime (tests) or
//! outside any runtime (CLI tools) the thread simply waits. The DB work never needs the caller's
//! runtime, so the wait cannot deadlock.
//!
//! Every call has a deadline: with the database gone, the caller gets an error within
//! [`CALL_TIMEOUT`] (answered as `ERR STORE`), and broken connections are dropped by the pool
//! and replaced when the database is back.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long one store call may take (waiting for a connection included) before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection string could not be parsed.
    #[error("invalid db_connection: {0}")]
    Config(String),
    /// No connection could be had from the pool (database down, pool exhausted).
    #[error("{op}: no database connection: {what}")]
    Connect {
        /// The operation.
        op: &'static str,
        /// Why.
        what: String,
    },
    /// A query failed.
    #[error("{op}: {source}")]
    Query {
        /// The operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The call did not finish within [`CALL_TIMEOUT`].
    #[error("{op}: timed out after {} s", CALL_TIMEOUT.as_secs())]
    Timeout {
        /// The operation.
        op: &'static str,
    },
    /// Anything else (a bad row, the runtime gone).
    #[error("{op}: {what}")]
    Other {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        what: String,
    },
}

impl DbError {
    /// A query error for `op`.
    pub fn query(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |source| DbError::Query { op, source }
    }

    /// Whether it was a unique-constraint violation (a duplicate ID).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Query { source, .. }
            if source.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }
}

/// Where and how to connect: the reference's `db_connection`, `db_schema`, `db_pool_size`.
#[derive(Clone)]
pub struct DbOptions {
    /// A libpq connection string (URL or `key=value` form).
    pub connection: String,
    /// The schema holding the tables; the search path of every connection.
    pub schema: String,
    /// Number of pooled connections.
    pub pool_size: u32,
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbOptions")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl DbOptions {
    /// Options from the configuration's `[STORE_LOG]` keys.
    pub fn from_config(c: &crate::config::Config) -> Self {
        DbOptions {
            connection: c.store_log.db_connection.clone(),
            schema: c.store_log.db_schema.clone(),
            pool_size: c.store_log.db_pool_size,
        }
    }

    /// The driver's configuration, with libpq's defaults (environment variables `PGHOST`,
    /// `PGPORT`, `PGUSER`, `PGPASSWORD`; the Unix socket directory; the OS user name) where the
    /// string leaves them out, as the reference (which uses libpq) connects.
    ///
    /// libpq's TLS parameters are taken off the string first (see [`super::tls`]); the
    /// connector that carries them out comes back with the configuration.
    pub fn pg_config(&self) -> Result<(tokio_postgres::Config, MakeRustlsConnect), DbError> {
        let (rest, tls) = super::tls::split(&self.connection)?;
        let mut c: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Config(e.to_string()))?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if c.get_hosts().is_empty() && c.get_hostaddrs().is_empty() {
            match env("PGHOST") {
                Some(h) if h.starts_with('/') => c.host_path(h),
                Some(h) => c.host(&h),
                None => c.host_path("/var/run/postgresql"),
            };
        }
        if c.get_ports().is_empty() {
            if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
                c.port(p);
            }
        }
        if c.get_user().is_none() {
            if let Some(u) = env("PGUSER")
                .or_else(|| env("USER"))
                .or_else(|| env("LOGNAME"))
            {
                c.user(u);
            }
        }
        if c.get_password().is_none() {
            if let Some(p) = env("PGPASSWORD") {
                c.password(p);
            }
        }
        if c.get_dbname().is_none() {
            if let Some(d) = env("PGDATABASE") {
                c.dbname(d);
            }
        }
        if !valid_schema(&self.schema) {
            return Err(DbError::Config(format!(
                "db_schema `{}`: use letters, digits and `_` only",
                self.schema
            )));
        }
        let opts = match c.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c search_path={}", self.schema),
            _ => format!("-c search_path={}", self.schema),
        };
        c.options(opts);
        c.connect_timeout(CONNECT_TIMEOUT);
        c.application_name("smp-server");
        let tcp = !c.get_hostaddrs().is_empty()
            || c.get_hosts()
                .iter()
                .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(_)));
        c.ssl_mode(tls.driver_mode(tcp));
        let connector = tls.connector()?;
        Ok((c, connector))
    }

    /// The connection string with any password hidden (for messages).
    pub fn display_connection(&self) -> String {
        crate::config::redact_connection(&self.connection)
    }
}

/// An error with its causes: the pool's "error performing TLS handshake" says why only in
/// its sources (an unknown issuer, a name mismatch), which is what the operator must fix.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
        next = cause.source();
    }
    out
}

/// Schema names are put into SQL unquoted (as the reference does), so only plain names.
pub fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// The pool and the runtime its connections live on.
pub struct Db {
    /// Always `Some` until dropped (taken out to shut it down without blocking).
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The schema (for queries on the catalog).
    pub schema: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("schema", &self.schema).finish()
    }
}

impl Db {
    /// Build the pool (no connection is made yet).
    pub fn new(opts: &DbOptions) -> Result<Self, DbError> {
        let (cfg, tls) = opts.pg_config()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("smp-db")
            .enable_all()
            .build()
            .map_err(|e| DbError::Other {
                op: "starting the database runtime",
                what: e.to_string(),
            })?;
        let mgr = Manager::from_config(
            cfg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _g = rt.enter();
            Pool::builder(mgr)
                .max_size(opts.pool_size.max(1) as usize)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(CALL_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| DbError::Other {
                    op: "building the database pool",
                    what: e.to_string(),
                })?
        };
        Ok(Db {
            rt: Some(rt),
            pool,
            schema: opts.schema.clone(),
        })
    }

    /// The most connections the pool opens (`db_pool_size`).
    pub fn pool_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// Run `f` with a pooled connection and wait for its result (see the module doc).
    pub fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DbError>> + Send + 'static,
    {
        self.run_within(op, Some(CALL_TIMEOUT), f)
    }

    /// [`Db::run`] without the [`CALL_TIMEOUT`] on the query (waiting for a connection is
    /// still bounded by the pool): for the `database` tools, whose bulk `COPY` of a million
    /// queues takes longer than any store call may; the operator sees the progress and can
    /// stop them.
    pub fn run_unbounded<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DbError>> + Send + 'static,
    {
        self.run_within(op, None, f)
    }

    fn run_within<T, F, Fut>(
        &self,
        op: &'static str,
        limit: Option<Duration>,
        f: F,
    ) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DbError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let task = async move {
            let work = async move {
                let conn = pool.get().await.map_err(|e| DbError::Connect {
                    op,
                    what: with_causes(&e),
                })?;
                f(conn).await
            };
            match limit {
                Some(limit) => match tokio::time::timeout(limit, work).await {
                    Ok(r) => r,
                    Err(_) => Err(DbError::Timeout { op }),
                },
                None => work.await,
            }
        };
        self.wait(op, task)
    }

    /// Run a future on the database runtime and wait for it.
    pub fn wait<T, Fut>(&self, op: &'static str, fut: Fut) -> Result<T, DbError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, DbError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(rt) = &self.rt {
            rt.spawn(async move {
                let _ = tx.send(fut.await);
            });
        }
        let recv = move || rx.recv();
        let got = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(recv)
            }
            _ => recv(),
        };
        got.unwrap_or_else(|_| {
            Err(DbError::Other {
                op,
                what: "the database task was dropped".into(),
            })
        })
    }

    /// Whether a connection can be had now (start-up check).
    pub fn ping(&self) -> Result<(), DbError> {
        self.run("connecting", |c| async move {
            c.simple_query("SELECT 1")
                .await
                .map_err(DbError::query("connecting"))?;
            Ok(())
        })
    }
}

impl Drop for Db {
    /// The store may be dropped inside the server's runtime, where a blocking shutdown of
    /// another runtime panics: shut it down in the background instead.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
