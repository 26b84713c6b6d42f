//! `smp-server start`: load and check everything, print what will run, bind, serve.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use super::args::{ConfirmMigrationsArg, LogLevel, StartArgs};
use super::console::{print_service_info, print_source_code};
use super::{require_initialized, CliError};
use crate::config::{Config, ConfirmMigrations, Paths, QueueStoreType, StartOptions, Websockets};

/// Run `start` until SIGINT/SIGTERM.
pub fn run(args: StartArgs, paths: &Paths) -> Result<(), CliError> {
    init_tracing(args.log_level);
    let check_only = args.check_config;
    require_initialized(paths)?;
    let mut config = Config::load_from(paths.clone())?;
    config.start = StartOptions {
        maintenance: args.maintenance,
        compact_log: args.compact_log,
        skip_warnings: args.skip_warnings,
        allow_orphaned_messages: args.allow_orphaned_messages,
        confirm_migrations: args.confirm_migrations.map(|c| match c {
            ConfirmMigrationsArg::Up => ConfirmMigrations::Up,
            ConfirmMigrationsArg::Down => ConfirmMigrations::Down,
        }),
    };
    check_supported(&config)?;
    if check_only {
        return super::check_config::run(&config);
    }
    let identity = crate::crypto::identity::load_identity(&paths.cfg_dir)?;
    print_start_info(&config, &identity.fingerprint.to_base64url());

    // Before any thread allocates: see smp_heap::keep_trim_threshold.
    smp_heap::keep_trim_threshold();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    let result = runtime.block_on(serve(config));
    drop(runtime);
    crate::updates::restart_if_updated();
    result
}

fn init_tracing(level: LogLevel) {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let level = match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info | LogLevel::Note => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    // RUST_LOG, when set, refines the level given by --log-level.
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Refuse storage modes this server cannot provide rather than silently lose data.
fn check_supported(c: &Config) -> Result<(), CliError> {
    if c.store_log.store_queues == QueueStoreType::Database {
        return crate::cli::database::check_db_storage(c);
    }
    check_websockets(c)?;
    crate::cli::journal::check_msg_store_mode(c)
}

/// `[TRANSPORT] websockets`: the reference serves SMP over WebSocket (inside TLS, one binary
/// message per 16 KB block) on these ports. This server does not, so it refuses to start
/// rather than leave clients that use them without a listener.
fn check_websockets(c: &Config) -> Result<(), CliError> {
    match &c.transport.websockets {
        crate::config::Websockets::Ports(p) if !p.is_empty() => {
            let ports: Vec<String> = p.iter().map(u16::to_string).collect();
            Err(CliError::Message(format!(
                "Error: [TRANSPORT] websockets = {} is not supported by this server (SMP over WebSocket is not implemented).\nSet websockets = off; clients connect with TLS on the `port` ports.",
                ports.join(",")
            )))
        }
        _ => Ok(()),
    }
}

/// A TTL as the reference prints it: the largest whole unit.
fn show_ttl(secs: u64) -> String {
    let (mins, s) = (secs / 60, secs % 60);
    let (hours, m) = (mins / 60, mins % 60);
    let (days, h) = (hours / 24, hours % 24);
    if s != 0 {
        format!("{secs} seconds")
    } else if m != 0 {
        format!("{mins} minutes")
    } else if h != 0 {
        format!("{hours} hours")
    } else {
        format!("{days} days")
    }
}

/// The lines `start` prints before serving.
fn start_info(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if c.store_log.store_queues == QueueStoreType::Database {
        out.push(format!(
            "PostgreSQL database: {}, schema: {}",
            crate::config::redact_connection(&c.store_log.db_connection),
            c.store_log.db_schema
        ));
    } else if c.store_log.enable {
        out.push(format!("Store log: {}", c.paths.store_log_file().display()));
    } else {
        out.push("Store log disabled.".into());
    }
    if c.tor.enable {
        let ports: Vec<String> = c
            .tor
            .onion_ports(&c.transport, &c.web)
            .iter()
            .map(u16::to_string)
            .collect();
        out.push(format!(
            "Serving the onion service (embedded Tor) on virtual ports {}...",
            ports.join(",")
        ));
    }
    for p in &c.transport.ports {
        if c.tor.onion_only_active() {
            out.push("onion_only = on: no public port is opened.".into());
            break;
        }
        out.push(format!("Serving SMP protocol on port {p} (TLS)..."));
        if c.web.https == Some(*p) {
            out.push(format!("Serving static site on port {p} (TLS)..."));
        }
    }
    if !c.transport.ports.contains(&443) {
        out.push(
            "\nWARNING: clients will soon connect to port 443 by default.\nSet `port = 5223,443` in section [TRANSPORT] of smp-server.ini.\n".into(),
        );
    }
    out.push(match c.store_log.message_ttl_secs() {
        Some(ttl) => format!("expiring messages after {}", show_ttl(ttl)),
        None => "not expiring messages".into(),
    });
    out.push(match &c.inactive_clients {
        Some(ic) => format!(
            "expiring clients inactive for {} seconds every {} seconds",
            ic.ttl_secs, ic.check_interval_secs
        ),
        None => "not expiring inactive clients".into(),
    });
    let queues = if !c.auth.new_queues {
        "NOT allowed"
    } else if c.auth.create_password.is_some() {
        "requires password"
    } else {
        "allowed"
    };
    out.push(format!("creating new queues {queues}"));
    if let Websockets::Ports(ports) = &c.transport.websockets {
        if !ports.is_empty() {
            out.push(
                "Warning: [TRANSPORT] websockets is not supported by this server and is ignored."
                    .into(),
            );
        }
    }
    if let Some((_, cert, key)) = c.web.https_params() {
        for f in [cert, key] {
            if !f.exists() && c.acme.enable {
                out.push(format!(
                    "[WEB] {} does not exist yet: [ACME] will obtain it.",
                    f.display()
                ));
            } else if !f.exists() {
                out.push(format!(
                    "Warning: [WEB] {} does not exist: the HTTPS information page cannot start.",
                    f.display()
                ));
            }
        }
    }
    for w in c.warnings() {
        out.push(format!("Warning: {w}"));
    }
    out
}

fn print_start_info(c: &Config, fingerprint: &str) {
    let onion = c
        .tor
        .enable
        .then(|| crate::server::onion::known_onion_address(c))
        .flatten();
    print_service_info(
        fingerprint,
        &c.server_address_with_onion(fingerprint, onion.as_deref()),
    );
    print_source_code(c.information.source_code.as_deref());
    for line in start_info(c) {
        println!("{line}");
    }
}

fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Listen on all addresses: IPv6 (dual-stack) when available, else IPv4, as the reference.
fn bind_port(port: u16) -> Result<TcpListener, CliError> {
    let err = |e| CliError::io(format!("listening on port {port}"), e);
    match listen_on(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(err(e)),
        Err(_) => listen_on(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).map_err(err),
    }
}

/// Install SIGINT/SIGTERM handlers now (before binding, so an early signal is never fatal)
/// and return a future that resolves on the first signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn serve(config: Config) -> Result<(), CliError> {
    let signal = shutdown_signal()
        .map_err(|e| CliError::Message(format!("Error: cannot install signal handlers: {e}")))?;
    let listeners = if config.start.maintenance || config.tor.onion_only_active() {
        Vec::new()
    } else {
        config
            .transport
            .ports
            .iter()
            .map(|p| bind_port(*p))
            .collect::<Result<Vec<_>, _>>()?
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    crate::app::run(Arc::new(config), listeners, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(show_ttl(21 * 86400), "21 days");
        assert_eq!(show_ttl(7200), "2 hours");
        assert_eq!(show_ttl(90 * 60), "90 minutes");
        assert_eq!(show_ttl(61), "61 seconds");
    }

    #[test]
    fn info_lines() {
        let c = Config::parse(
            "[STORE_LOG]\nenable = on\n[AUTH]\ncreate_password = x\n[TRANSPORT]\nport = 5223\n[WEB]\nhttps = 5223\n",
            Paths::new("/c", "/l"),
        )
        .expect("valid");
        let lines = start_info(&c).join("\n");
        assert!(lines.contains("Store log: /l/smp-server-store.log"));
        assert!(lines.contains("Serving SMP protocol on port 5223 (TLS)..."));
        assert!(lines.contains("Serving static site on port 5223 (TLS)..."));
        assert!(lines.contains("WARNING"));
        assert!(lines.contains("expiring messages after 21 days"));
        assert!(lines.contains("not expiring inactive clients"));
        assert!(lines.contains("creating new queues requires password"));
    }

    #[test]
    fn unsupported_storage_is_refused() {
        // database + journal is served, but not with a messages log file beside it (the
        // reference's rule); this check comes before any database connection.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("smp-server-messages.log"), b"").expect("write");
        let c = Config::parse(
            "[STORE_LOG]\nstore_queues = database\nstore_messages = journal\n",
            Paths::new(dir.path(), dir.path()),
        )
        .expect("valid");
        let e = check_supported(&c).expect_err("refused").to_string();
        assert!(
            e.contains("store_messages is `journal` with") && e.contains("file present"),
            "{e}"
        );
        let c = Config::parse(
            "[STORE_LOG]\nstore_messages = journal\n",
            Paths::new("/nonexistent-c", "/nonexistent-l"),
        )
        .expect("valid");
        assert!(check_supported(&c).is_ok(), "the journal is supported");
        let c = Config::parse("", Paths::new("/c", "/l")).expect("valid");
        assert!(check_supported(&c).is_ok());
    }
}
