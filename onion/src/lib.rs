//! Embedded Tor for the SMP server, on Arti: no system `tor` daemon.
//!
//! Two jobs, both free of SMP details so the server can wire them as it likes:
//! - [`Tor::launch_service`] publishes an onion service and hands every accepted stream,
//!   tagged with the virtual port the client asked for, to a channel; the streams are plain
//!   `AsyncRead + AsyncWrite`, so the server treats them exactly like accepted TCP sockets.
//! - [`Tor::connect`] opens a stream to a `.onion` (or any) host through Tor.
//!
//! Arti keeps its state, cache and onion-service keys under one directory (see
//! [`TorSettings`]); keeping that directory keeps the onion address across restarts.
//!
//! Known limit: Arti runs only anonymous (3-hop) onion services, so the onion address is
//! slower than the reference's single-hop setup.

mod config;
mod error;
mod perms;
mod service;
mod tor;

pub use config::{TorSettings, DEFAULT_MEMORY_MAX};
pub use error::OnionError;
pub use service::{IncomingStream, OnionService, ServiceSettings};
pub use tor::{Tor, TorStream};
