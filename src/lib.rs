//! A self-managing SMP relay: wire-compatible with the reference `smp-server`.
//!
//! Crate map (one line per module: what it holds, and what it must not do):
//! - [`protocol`]: SMP encodings, commands, responses, errors, transmissions and blocks; no I/O
//!   (the `smp-proto` crate, re-exported, so the compiler keeps it free of I/O).
//! - [`clock`]: the one wall clock, the [`clock::Clock`] trait for timers, the calendar.
//! - [`sync`]: the lock helper shared state uses.
//! - [`crypto`]: keys, signatures, crypto_box/secret_box, chain keys, certificates (pure parts in
//!   `smp-proto`); the identity files.
//! - [`net`]: the shared accept loop with connection caps and the HTTP runner; no SMP.
//! - [`transport`]: TLS (rustls), tls-unique, the SMP handshake and block I/O; knows nothing of queues.
//! - [`store`]: queue and message stores; knows nothing of connections.
//! - [`server`]: sessions, subscriptions, delivery, notifications; wires store and transport.
//! - [`client`]: an SMP client used by tests, the benchmark and (later) the proxy role.
//! - [`config`]: `smp-server.ini` to a typed, validated `Config`.
//! - [`stats`]: event counters, the daily CSV, the stats backup file, Prometheus; counts only.
//! - [`control`]: the operator's control port, SIGHUP reload, systemd notifications; no SMP I/O.
//! - [`web`]: the information page over HTTP/HTTPS and automatic certificates; no SMP logic.
//! - [`names`]: the REST resolver client of the names role (`[NAMES]`, RSLV); no SMP.
//! - [`service`]: the [`service::Service`] lifecycle (readiness latch, ordered start, one bounded
//!   drain); no SMP.
//! - [`app`]: the composition root: builds every service from `Config`, `READY=1`, drain, persist.
//! - [`cli`]: the `init`/`start`/`cert`/`delete` commands with the reference's flags.
//! - [`updates`]: the version, `[UPDATE]` wiring and the periodic update checker; no HTTP itself.
//! - [`fsmode`]: modes of the state files and directories the server writes (0600 / 0700).

pub mod app;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod control;
pub mod crypto;
pub mod fsmode;
pub mod names;
pub mod net;
pub mod server;
pub mod service;
pub mod stats;
pub mod store;
pub mod sync;
pub mod transport;
pub mod updates;
pub mod web;

pub use smp_proto::protocol;
