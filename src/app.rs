//! The composition root: the one place that builds every long-running part of the server from
//! [`Config`], starts them in order under one [`Services`] set, tells systemd `READY=1` once all
//! are ready, drains them under one grace period and then persists.
//!
//! Order of start-up, and why:
//! 1. identity, store (restored from disk), embedded Tor and the web side are *built* (ports
//!    bound) before anything runs, so a bad file or a taken port stops the start with a clear
//!    error and nothing half-served;
//! 2. the timers (expiry, statistics), the control port and the Prometheus endpoint, SIGHUP;
//! 3. the web listeners and the ACME renewer, the onion service;
//! 4. the SMP listeners, last among the listeners, so that every SMP client that connects finds
//!    the other services up;
//! 5. the updater and the post-update confirmation (which connects to our own SMP port);
//! 6. `READY=1`.
//!
//! On shutdown (the token cancelled by a signal, or by the updater): `STOPPING=1`, all services
//! drain together under the one grace period [`SHUTDOWN_GRACE`], then the queue state is saved, then the
//! statistics and the dated backups. Persisting after the drain means nothing changes the
//! state while it is written.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::{notify, Ops, OpsError};
use crate::server::{expire, names, onion, persist, proxy, Server, ServerError, Settings};
use crate::service::{Service, ServiceError, Services};
use crate::stats::daily::SystemClock;

/// How long the services may take to drain after shutdown (sessions finishing their
/// in-flight block, listeners closing), before the state is saved regardless: the longer of
/// the two timers the SMP sessions and the operations services had before they shared one.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Errors that stop the server process.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The SMP side could not be built or its state saved.
    #[error("{0}")]
    Server(#[from] ServerError),
    /// The control port, statistics or metrics could not start.
    #[error("{0}")]
    Ops(#[from] OpsError),
    /// A service stopped during start-up.
    #[error("{0}")]
    Start(#[from] ServiceError),
}

/// Run the server from a loaded configuration on already-bound SMP listeners until
/// `shutdown` is cancelled. Taking bound listeners lets tests bind port 0 and lets `start`
/// report bind errors itself.
pub async fn run(
    config: Arc<Config>,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let identity =
        crate::crypto::identity::load_identity(&config.paths.cfg_dir).map_err(ServerError::from)?;
    let settings = Settings::from_config(&config);
    let store = persist::Persistence::open(&config).map_err(ServerError::from)?;
    let fingerprint = identity.fingerprint.to_base64url();
    let fingerprint_bytes = identity.fingerprint.0;
    let mut server = Server::with_store(settings, identity, store.serving_store())?;
    server.state.core.set_services(store.services.clone());
    let caps = config.limits.smp_caps(crate::net::descriptor_limit());
    tracing::info!(
        "SMP: at most {} connections, {} per address",
        caps.total,
        caps.per_ip
    );
    server.set_conn_limits(crate::net::ConnLimits::new(caps));
    server.set_versions(crate::protocol::version::VersionRange {
        min: crate::protocol::version::MIN_SERVER_VERSION,
        max: config.transport.max_smp_version,
    });
    names::start(&server.state, config.names.as_ref());
    let maintenance = config.start.maintenance;
    let tor = if config.tor.enable && !maintenance {
        Some(onion::launch(&config, &fingerprint).await?)
    } else {
        None
    };
    let mut web_services = Vec::new();
    if !maintenance {
        let web_config = onion::web_config(&config);
        let built = crate::web::build(
            &web_config,
            &fingerprint,
            tor.as_ref().map(|t| t.address.clone()),
            Some(server.state.hello_pool.clone()),
        );
        if let Some((web, svcs)) = built {
            server.set_web(Some(web));
            web_services = svcs;
        }
    }
    let server = Arc::new(server);
    server.state.proxy.set_route(proxy::Route {
        egress: onion::egress(&config, tor.as_ref().map(|t| t.tor.clone())),
        host_mode: config.proxy.host_mode,
        required_host_mode: config.proxy.required_host_mode,
        limits: config.limits.egress,
    });
    let onion_service = tor.map(|t| onion_service(&server, &config, t));

    let now = crate::clock::now_secs();
    store
        .restore(&server.state, now)
        .map_err(ServerError::from)?;
    // after the restore, so the statistics count the restored queues and messages
    let (ops, ops_services) = Ops::prepare(
        config.clone(),
        server.state.clone(),
        Arc::new(SystemClock),
        None,
        None,
    )
    .await?;
    ops.add_reload_hooks(crate::control::reload::server_hooks(&server, &config));
    let s = &server.state.settings;
    if s.expire_messages_on_start {
        if let Some(ttl) = s.message_ttl {
            let n = expire::expire_messages(&server.state, now - ttl);
            tracing::info!("expired messages at start: {n}");
        }
    }

    let mut services = Services::new(shutdown.clone());
    if maintenance {
        println!("Server started in 'maintenance' mode, exiting");
        tracing::info!("server started in maintenance mode, exiting");
    } else {
        let first_port = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        let mut order: Vec<Box<dyn Service>> = vec![
            crate::service::task(
                "message expiry",
                expire::run(server.state.clone(), shutdown.clone()),
            ),
            crate::service::task("heap trim", crate::server::heap::run(shutdown.clone())),
        ];
        order.extend(store.compaction_service());
        order.extend(ops_services);
        order.push(ops.reload_service());
        order.extend(web_services);
        order.extend(onion_service);
        order.push(server.clone().smp_service(listeners));
        order.extend(crate::updates::checker(&config.update));
        order.extend(crate::updates::confirm::service(
            first_port,
            fingerprint_bytes,
        ));
        let started = services.start_all(order).await;
        if let Err(e) = started {
            // stop what did start before reporting
            services
                .drain(tokio::time::Instant::now() + SHUTDOWN_GRACE)
                .await;
            return Err(e.into());
        }
        notify::sd_notify("READY=1\nSTATUS=serving");
        shutdown.cancelled().await;
        tracing::info!("stopping: saving server state");
    }
    notify::sd_notify("STOPPING=1\nSTATUS=saving state");
    services
        .drain(tokio::time::Instant::now() + SHUTDOWN_GRACE)
        .await;
    tracing::info!("saving server state...");
    let saved = store.save_until_done(&server.state).await;
    ops.persist();
    saved.map_err(ServerError::from)?;
    tracing::info!("server stopped");
    Ok(())
}

/// The onion service as a service: onion streams to SMP ports go to the SMP connection handler,
/// streams to the web ports to the web page. Tor stops when it ends.
fn onion_service(
    server: &Arc<Server>,
    config: &Config,
    mut t: onion::OnionHandle,
) -> Box<dyn Service> {
    let _ = server.state.onion_address.set(t.address.clone());
    let _ = server.state.tor_status.set(t.status());
    let server = server.clone();
    let http = config.web.http;
    crate::service::from_fn("onion service", move |shutdown, mut ready| async move {
        let other = server.web().cloned().map(|w| {
            let sd = shutdown.clone();
            let tracker = server.sessions().clone();
            Arc::new(
                move |port: u16, stream: crate::server::connector::BoxedStream| {
                    let (w, sd) = (w.clone(), sd.clone());
                    if Some(port) == http {
                        tracker.spawn(async move { w.serve_onion_http(stream, sd).await });
                    } else {
                        tracker.spawn(w.serve_https_stream(stream, sd));
                    }
                },
            ) as onion::StreamHandler
        });
        t.serve(server, other, shutdown.clone());
        ready.ready();
        shutdown.cancelled().await;
        drop(t);
    })
}
