//! `smp-server.ini` to a typed, validated `Config` (being written).

/// The whole server configuration (being written).
#[derive(Debug, Clone, Default)]
pub struct Config {}
