//! Listening and serving that every service shares: the accept loop with connection caps
//! ([`accept`], [`limits`]) and the HTTP connection runner with its timeouts ([`http`]).
//!
//! Imports nothing from `server`, `web` or `stats`, so each of them can use it.

pub mod accept;
pub mod http;
pub mod limits;

pub use accept::serve_accepts;
pub use limits::{ConnLimits, ConnPermit, IpKey, Refused};

/// The process's limit on open file descriptors (the soft `RLIMIT_NOFILE`), which every
/// connection cap must leave room within.
pub fn descriptor_limit() -> usize {
    let fallback = crate::config::limits::defaults::FALLBACK_NOFILE;
    // /proc/self/limits: "Max open files            65535                65535                files"
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            let soft = line.split_whitespace().nth(3)?;
            match soft {
                "unlimited" => Some(1 << 20),
                n => n.parse().ok(),
            }
        })
        .unwrap_or(fallback)
}
