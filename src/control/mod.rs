//! Operations: the control port, statistics services, reload on SIGHUP, systemd
//! notifications and the orderly stop that saves statistics.
//!
//! [`Ops::prepare`] restores the statistics and binds the ports, handing its services to the
//! composition root ([`crate::app`]), which runs them beside the SMP listeners and calls
//! [`Ops::persist`] after the drain. [`Ops::start`] runs them by itself (tests).

pub mod notify;
pub mod port;
pub mod protocol;
pub mod reload;
mod reports;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::server::state::ServerState;
use crate::service::{Ready, Service, Services};
use crate::stats::daily::{Clock, SystemClock};
use port::{ControlAuth, ControlContext};
use reload::{ReloadHook, Reloader};

/// How long a stop waits for connections to finish their in-flight commands and for the
/// services to end: the one grace period of the drain.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Errors starting the operations services.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A port could not be bound.
    #[error("{what}: {source}")]
    Bind {
        /// Which service.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A service stopped before it was ready.
    #[error("{0}")]
    Start(String),
    /// The statistics backup file is unreadable.
    #[error("restoring statistics from {path}: {source}; fix or move the file away")]
    Restore {
        /// The file.
        path: String,
        /// Why.
        source: crate::stats::backup::BackupError,
    },
}

/// The running operations services of one server.
pub struct Ops {
    state: Arc<ServerState>,
    config: Arc<Config>,
    /// The services when this `Ops` runs them itself ([`Ops::start_with`]).
    services: Option<Services>,
    /// The control port's context (when `control_port` is set).
    pub control: Option<Arc<ControlContext>>,
    /// Where the control port listens.
    pub control_addr: Option<SocketAddr>,
    /// Where the Prometheus endpoint listens.
    pub metrics_addr: Option<SocketAddr>,
    /// `[INFORMATION]` as currently published (updated on SIGHUP); the web page may read it.
    pub information: Arc<RwLock<crate::config::Information>>,
    /// What SIGHUP applies besides the INI settings held here (certificates, web page).
    hooks: Arc<std::sync::Mutex<Vec<ReloadHook>>>,
}

pub(crate) fn control_auth(c: &Config) -> ControlAuth {
    ControlAuth {
        admin: c.auth.control_port_admin_password.clone(),
        user: c.auth.control_port_user_password.clone(),
        daily_block_quota: c.auth.daily_block_queue_quota,
        information: format!("{:?}", c.information),
    }
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, OpsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError::Bind {
            what: format!("{what} on {addr}"),
            source,
        })
}

impl Ops {
    /// Restore statistics and start the services the configuration enables, with the system
    /// clock. `shutdown` stops them.
    pub async fn start(
        config: Arc<Config>,
        state: Arc<ServerState>,
        shutdown: CancellationToken,
    ) -> Result<Ops, OpsError> {
        Self::start_with(config, state, shutdown, Arc::new(SystemClock), None, None).await
    }

    /// As [`Ops::start`], with a clock for the daily log and optional addresses overriding the
    /// configured control and metrics ports (tests bind port 0). The services run under
    /// this `Ops` and [`Ops::stop`] drains them; the server's composition root uses
    /// [`Ops::prepare`] instead and runs them beside its other services.
    pub async fn start_with(
        config: Arc<Config>,
        state: Arc<ServerState>,
        shutdown: CancellationToken,
        clock: Arc<dyn Clock>,
        control_addr: Option<SocketAddr>,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Ops, OpsError> {
        let (mut ops, svcs) =
            Self::prepare(config, state, clock, control_addr, metrics_addr).await?;
        let mut services = Services::new(shutdown.child_token());
        services
            .start_all(svcs)
            .await
            .map_err(|e| OpsError::Start(e.to_string()))?;
        ops.services = Some(services);
        Ok(ops)
    }

    /// Restore statistics and bind the ports the configuration enables (control port,
    /// Prometheus), returning the operations state and the services to start: the daily
    /// statistics log, the Prometheus file writer and endpoint, the control port. Nothing runs
    /// yet; in maintenance mode the list is empty.
    pub async fn prepare(
        config: Arc<Config>,
        state: Arc<ServerState>,
        clock: Arc<dyn Clock>,
        control_addr: Option<SocketAddr>,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<(Ops, Vec<Box<dyn Service>>), OpsError> {
        let stats = state.stats.clone();
        let store = state.store.clone();
        // counts from the store are the truth; restored counters add the history
        let mut restored = false;
        if config.store_log.log_stats {
            let path = config.paths.stats_file();
            match crate::stats::backup::restore(&path, &stats) {
                Ok(true) => {
                    restored = true;
                    tracing::info!("restored server stats from {}", path.display());
                }
                Ok(false) => {}
                Err(source) => {
                    return Err(OpsError::Restore {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        }
        if !restored {
            stats
                .from_time
                .store(clock.now(), std::sync::atomic::Ordering::Relaxed);
        }
        let counts = crate::stats::entity_counts(store.as_ref());
        stats.q_count.set(counts.queues as i64);
        stats
            .msg_count
            .set(crate::stats::stored_messages(store.as_ref()) as i64);
        let mut tasks: Vec<Box<dyn Service>> = Vec::new();
        // maintenance mode runs the start and stop tasks only: no services, no ports
        let serving = !config.start.maintenance;
        if serving && config.store_log.log_stats {
            let st = state.clone();
            let counts_fn: Arc<dyn Fn() -> crate::stats::EntityCounts + Send + Sync> =
                Arc::new(move || crate::stats::ServerView::entity_counts(st.as_ref()));
            let path = config.paths.stats_daily_file();
            println!("server stats log enabled: {}", path.display());
            let (stats, clock) = (stats.clone(), clock.clone());
            tasks.push(crate::service::from_fn(
                "daily statistics",
                move |sd, mut ready| {
                    ready.ready();
                    crate::stats::daily::run_daily_log(stats, counts_fn, clock, path, sd)
                },
            ));
        }
        if let Some(secs) = config
            .store_log
            .prometheus_interval
            .filter(|s| serving && *s > 0)
        {
            let path = config.paths.metrics_file();
            println!(
                "Prometheus metrics saved every {secs} seconds to {}",
                path.display()
            );
            let st = state.clone();
            tasks.push(crate::service::from_fn(
                "Prometheus file",
                move |sd, mut ready| {
                    ready.ready();
                    crate::stats::prometheus::run_file_writer(
                        st,
                        path,
                        Duration::from_secs(secs as u64),
                        sd,
                    )
                },
            ));
        }
        let mut bound_metrics = None;
        if let Some(addr) = metrics_addr
            .or(config.store_log.prometheus_address)
            .filter(|_| serving)
        {
            let l = bind("Prometheus metrics", addr).await?;
            bound_metrics = l.local_addr().ok();
            if let Some(a) = bound_metrics {
                println!("Serving Prometheus metrics on http://{a}/metrics");
            }
            let cap = config.limits.prometheus;
            let (st, http) = (state.clone(), config.limits.http);
            tasks.push(crate::service::from_fn(
                "Prometheus endpoint",
                move |sd, mut ready| {
                    ready.ready();
                    crate::stats::prometheus::run_http(
                        st,
                        l,
                        crate::net::ConnLimits::new(crate::config::limits::ConnCaps {
                            total: cap,
                            per_ip: cap,
                        }),
                        http,
                        sd,
                    )
                },
            ));
        }
        let mut control = None;
        let mut bound_control = None;
        let cp_addr = control_addr.or(config
            .transport
            .control_port
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))));
        if let Some(addr) = cp_addr.filter(|_| serving) {
            let l = bind("control port", addr).await?;
            bound_control = l.local_addr().ok();
            let save_stats = stats.clone();
            let save_path = config.paths.stats_file();
            let log_stats = config.store_log.log_stats;
            let (save_cfg, save_state) = (config.clone(), state.clone());
            let backup_paths = config.paths.clone();
            let ctx = Arc::new(ControlContext {
                state: state.clone(),
                auth: RwLock::new(control_auth(&config)),
                save: Box::new(move || {
                    crate::server::persist::save_now(&save_cfg, &save_state)
                        .map_err(|e| e.to_string())?;
                    if log_stats {
                        crate::stats::backup::save(&save_path, &save_stats)
                            .map_err(|e| e.to_string())?;
                    }
                    // dated copies, as at a clean stop
                    crate::store::stop_backups::backup_and_log(
                        &backup_paths,
                        std::time::SystemTime::now(),
                    )
                    .map(drop)
                }),
            });
            if let Some(a) = bound_control {
                println!("Control port listening on {a}");
            }
            let cap = config.limits.control;
            let limits = crate::net::ConnLimits::new(crate::config::limits::ConnCaps {
                total: cap,
                per_ip: cap,
            });
            let c = ctx.clone();
            tasks.push(crate::service::from_fn(
                "control port",
                move |sd, mut ready| {
                    ready.ready();
                    port::serve(c, l, limits, sd)
                },
            ));
            control = Some(ctx);
        }
        let information = Arc::new(RwLock::new(config.information.clone()));
        let ops = Ops {
            state,
            config,
            services: None,
            control,
            control_addr: bound_control,
            metrics_addr: bound_metrics,
            information,
            hooks: Arc::default(),
        };
        Ok((ops, tasks))
    }

    /// The service reloading the configuration on SIGHUP (Unix), started by the composition
    /// root once the other services run.
    pub fn reload_service(&self) -> Box<dyn Service> {
        let r = self.reloader();
        crate::service::from_fn("SIGHUP reload", move |sd, ready| {
            reload_on_sighup(r, sd, ready)
        })
    }

    /// Apply a reloaded configuration: what can change live changes, the rest is logged.
    pub fn reload(&self, new: &Config) {
        self.reloader().reload(new)
    }

    /// Add things a reload applies (the server's certificates and web page).
    pub fn add_reload_hooks(&self, hooks: Vec<ReloadHook>) {
        crate::sync::lock(&self.hooks).extend(hooks);
    }

    fn reloader(&self) -> Reloader {
        Reloader {
            control: self.control.clone(),
            information: self.information.clone(),
            config: self.config.clone(),
            hooks: self.hooks.clone(),
        }
    }

    /// Stop (when started by [`Ops::start_with`]): wait up to [`DRAIN_GRACE`] for connections
    /// to close, stop the services within the same deadline and persist.
    pub async fn stop(mut self) {
        notify::sd_notify("STOPPING=1\nSTATUS=saving state");
        let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
        while self.state.client_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // a closed session's writer may still be flushing its last answers
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(services) = self.services.take() {
            services
                .drain(deadline.max(tokio::time::Instant::now()))
                .await;
        }
        self.persist();
    }

    /// Save the statistics (when `log_stats` is on) and make the dated copies of the state
    /// files, as the reference's stop script. Call after the queue state is saved.
    pub fn persist(&self) {
        if self.config.store_log.log_stats {
            let path = self.config.paths.stats_file();
            match crate::stats::backup::save(&path, &self.state.stats) {
                Ok(()) => tracing::info!("server stats saved to {}", path.display()),
                Err(e) => tracing::error!("saving server stats to {}: {e}", path.display()),
            }
        }
        // Everything is saved: dated copies into <log dir>/backups, as the reference's stop script.
        let _ = crate::store::stop_backups::backup_and_log(
            &self.config.paths,
            std::time::SystemTime::now(),
        );
    }
}

/// Reload on SIGHUP until `shutdown` (Unix only); ready once the handler is installed.
async fn reload_on_sighup(ops: Reloader, shutdown: CancellationToken, mut ready: Ready) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot install the SIGHUP handler: reload by restarting");
            ready.ready();
            return;
        };
        ready.ready();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = hup.recv() => {
                    if r.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the configuration");
                    ops.reload_from_disk();
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        ready.ready();
        let _ = ops;
        shutdown.cancelled().await;
    }
}
