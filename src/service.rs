//! The one lifecycle every long-running part follows: a [`Service`] runs until its shutdown
//! token is cancelled and says when it is ready; [`Services`] starts them one after another,
//! each only once the one before is ready, and drains them all under one deadline.
//!
//! Why a latch and not "spawned = ready": systemd's `READY=1` promises that clients can
//! connect. A listener is ready once its accept loop runs; a service that fails before that
//! (a port taken, a file unreadable) must stop the start-up instead of leaving a half-started
//! server that said it was ready. Why one deadline: a drain with one timer per part adds the
//! timers up; the operator's stop timeout is one number, so the drain is too.
//!
//! Knows nothing of SMP, HTTP or configuration (the composition root in [`crate::app`] does).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The future a service runs as.
pub type ServiceFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A long-running part of the server (a listener, a timer, a renewer).
pub trait Service: Send + 'static {
    /// The name used in log lines (e.g. `"control port"`).
    fn name(&self) -> String;

    /// Run until `shutdown` is cancelled, calling [`Ready::ready`] once the service does what
    /// it is for (a listener: its accept loop runs). Returning before that is a start-up
    /// failure; returning after `shutdown` means the service has drained.
    fn run(self: Box<Self>, shutdown: CancellationToken, ready: Ready) -> ServiceFuture;
}

/// The readiness latch handed to [`Service::run`]; dropping it unsignalled means "failed to
/// start".
#[derive(Debug)]
pub struct Ready(Option<oneshot::Sender<()>>);

impl Ready {
    /// A latch and the receiver that learns of it (for callers driving a service by hand).
    pub fn new() -> (Ready, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Ready(Some(tx)), rx)
    }

    /// Signal readiness (later calls are no-ops).
    pub fn ready(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

struct FnService<F> {
    name: String,
    f: F,
}

impl<F, Fut> Service for FnService<F>
where
    F: FnOnce(CancellationToken, Ready) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, shutdown: CancellationToken, ready: Ready) -> ServiceFuture {
        Box::pin((self.f)(shutdown, ready))
    }
}

/// Services to start, in order.
pub type ServiceList = Vec<Box<dyn Service>>;

/// A service from a closure `(shutdown, ready) -> future`.
pub fn from_fn<F, Fut>(name: impl Into<String>, f: F) -> Box<dyn Service>
where
    F: FnOnce(CancellationToken, Ready) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(FnService {
        name: name.into(),
        f,
    })
}

/// A service that is ready at once and runs `fut` until it ends or shutdown (a timer, a
/// signal handler: nothing to bind first).
pub fn task<Fut>(name: impl Into<String>, fut: Fut) -> Box<dyn Service>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    from_fn(name, move |_shutdown, mut ready| {
        ready.ready();
        fut
    })
}

/// Why start-up stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service ended (or panicked) before it signalled readiness.
    #[error("{0} stopped before it was ready")]
    NotReady(String),
}

/// The running services of one process, in start order.
pub struct Services {
    shutdown: CancellationToken,
    running: Vec<(String, JoinHandle<()>)>,
}

impl Services {
    /// An empty set; every service gets `shutdown` (cancel it to stop them all).
    pub fn new(shutdown: CancellationToken) -> Self {
        Services {
            shutdown,
            running: Vec::new(),
        }
    }

    /// Spawn `svc` and wait until it is ready, so the next one starts after it. A service
    /// that ends before it is ready fails the start.
    pub async fn start(&mut self, svc: Box<dyn Service>) -> Result<(), ServiceError> {
        let name = svc.name();
        let (ready, rx) = Ready::new();
        let handle = tokio::spawn(svc.run(self.shutdown.clone(), ready));
        let ok = rx.await.is_ok();
        self.running.push((name.clone(), handle));
        if ok {
            tracing::debug!("{name}: ready");
            Ok(())
        } else {
            Err(ServiceError::NotReady(name))
        }
    }

    /// Start each of `svcs` in order (see [`Services::start`]).
    pub async fn start_all(&mut self, svcs: Vec<Box<dyn Service>>) -> Result<(), ServiceError> {
        for s in svcs {
            self.start(s).await?;
        }
        Ok(())
    }

    /// How many services run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Cancel shutdown (if not yet) and wait for every service to end, until `deadline`;
    /// those still running then are aborted and named in a warning. Returns their names.
    pub async fn drain(self, deadline: Instant) -> Vec<String> {
        self.shutdown.cancel();
        let mut late = Vec::new();
        // All see the same token, so they stop together; waiting in reverse start order only
        // decides whose lateness is reported first.
        for (name, mut handle) in self.running.into_iter().rev() {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.is_panic() => tracing::error!("{name}: panicked: {e}"),
                Ok(Err(_)) => {}
                Err(_) => {
                    handle.abort();
                    late.push(name);
                }
            }
        }
        if !late.is_empty() {
            tracing::warn!(
                "did not stop within the grace period, stopped anyway: {}",
                late.join(", ")
            );
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[tokio::test]
    async fn starts_in_order_each_after_the_previous_is_ready() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sd = CancellationToken::new();
        let mut s = Services::new(sd.clone());
        for i in 0..3 {
            let l = log.clone();
            s.start(from_fn(format!("s{i}"), move |sd, mut ready| async move {
                let log = l;
                // yield first, so a start that did not wait would interleave the log
                tokio::task::yield_now().await;
                crate::sync::lock(&log).push(format!("ready {i}"));
                ready.ready();
                sd.cancelled().await;
                crate::sync::lock(&log).push(format!("stopped {i}"));
            }))
            .await
            .expect("ready");
            crate::sync::lock(&log).push(format!("started {i}"));
        }
        let late = s.drain(Instant::now() + Duration::from_secs(30)).await;
        assert!(late.is_empty());
        let mut log = crate::sync::lock(&log).clone();
        let mut stopped = log.split_off(6);
        assert_eq!(
            log,
            [
                "ready 0",
                "started 0",
                "ready 1",
                "started 1",
                "ready 2",
                "started 2"
            ]
        );
        stopped.sort();
        assert_eq!(
            stopped,
            ["stopped 0", "stopped 1", "stopped 2"],
            "all drained"
        );
    }

    #[tokio::test]
    async fn a_service_ending_before_ready_fails_the_start() {
        let mut s = Services::new(CancellationToken::new());
        let e = s
            .start(from_fn("broken", |_sd, _ready| async {}))
            .await
            .expect_err("not ready");
        assert_eq!(e.to_string(), "broken stopped before it was ready");
    }

    #[tokio::test]
    async fn drain_is_bounded_by_one_deadline() {
        let sd = CancellationToken::new();
        let mut s = Services::new(sd.clone());
        s.start(task("stuck", std::future::pending()))
            .await
            .expect("ready");
        s.start(task("polite", async move { sd.cancelled().await }))
            .await
            .expect("ready");
        // "stuck" never ends, so it is late whatever the deadline; "polite" ends at once
        let late = s.drain(Instant::now() + Duration::from_millis(200)).await;
        assert_eq!(late, ["stuck"]);
    }
}
