//! The names role's resolver client (`[NAMES]`, SMP v20): asks the operator's REST resolver
//! `GET <endpoint>/resolve/<name>` for a name record, as the reference's `Server.Names`.
//!
//! Outcomes, mapped exactly as the reference maps them to `ERR NAME ...`:
//! 200 with a valid record -> the record; 404 or 400 -> `NOT_FOUND`; other status >= 400 ->
//! `RESOLVER HTTP <code>`; connection failure -> `RESOLVER transport failure`; body over the cap
//! -> `RESOLVER response too large`; bad JSON -> `RESOLVER invalid response`; over
//! `resolver_timeout_ms` -> `RESOLVER timeout`.
//!
//! No SMP here: the command handling (concurrency, statistics) is `crate::server::names`.

pub mod http;

use std::time::Duration;

use crate::config::names::Names;
use crate::protocol::names::{NameError, NameRecord, SimplexDomain};
use http::{HttpError, HttpGet};

/// A configured resolver, shared by all connections.
pub struct Resolver {
    http: HttpGet,
    timeout: Duration,
    /// Resolutions in flight per connection (`resolver_concurrency`).
    pub concurrency: usize,
    endpoint: String,
}

impl Resolver {
    /// A resolver for the `[NAMES]` settings.
    pub fn new(cfg: &Names) -> Result<Self, HttpError> {
        Ok(Resolver {
            http: HttpGet::new(&cfg.endpoint, cfg.auth.as_ref(), cfg.max_response_bytes)?,
            timeout: Duration::from_millis(cfg.timeout_ms),
            concurrency: cfg.concurrency,
            endpoint: cfg.endpoint.clone(),
        })
    }

    /// The endpoint (for the start-up log line; holds no credentials).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Resolve a name within the timeout.
    pub async fn resolve(&self, d: &SimplexDomain) -> Result<NameRecord, NameError> {
        let path = format!("/resolve/{}", http::percent_encode(d.as_str()));
        match tokio::time::timeout(self.timeout, self.http.get(&path)).await {
            Err(_) => Err(NameError::Resolver("timeout".into())),
            Ok(Err(e)) => Err(map_error(&e)),
            Ok(Ok(body)) => NameRecord::from_json(&body)
                .map_err(|_| NameError::Resolver("invalid response".into())),
        }
    }

    /// `GET /health` within the timeout: whether the resolver is reachable (status < 400).
    /// Checked once at start; a failure is only logged, as the reference does.
    pub async fn health(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.http.get("/health")).await {
            Err(_) => Err("timeout".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// The reference's `mapResolverError`.
fn map_error(e: &HttpError) -> NameError {
    match e {
        HttpError::Status(404 | 400) => NameError::NotFound,
        HttpError::Status(code) => NameError::Resolver(format!("HTTP {code}")),
        HttpError::Transport(_) => NameError::Resolver("transport failure".into()),
        // the reference: an exception outside the HTTP call
        HttpError::Url(_) => NameError::Resolver("resolver error".into()),
        HttpError::TooLarge => NameError::Resolver("response too large".into()),
    }
}
