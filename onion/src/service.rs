//! The onion service: launch, hand accepted streams to the server, log its state, stop.

use std::sync::Arc;

use futures::StreamExt;
use safelog::DisplayRedacted;
use tokio::sync::mpsc;
use tor_cell::relaycell::msg::{Connected, End, EndReason};
use tor_hsservice::config::{OnionServiceConfigBuilder, TokenBucketConfig};
use tor_hsservice::{HsNickname, RunningOnionService, StreamRequest};
use tor_proto::stream::IncomingStreamRequest;

use crate::tor::{Tor, TorStream};
use crate::{perms, OnionError};

/// How the onion service is published and protected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Names the service's keys in Arti's keystore: changing it changes the onion address.
    pub nickname: String,
    /// Virtual ports served; streams to other ports are refused.
    pub ports: Vec<u16>,
    /// Introduction points published (Arti allows 1..=20).
    pub num_intro_points: u8,
    /// Introductions per second each introduction point lets through (DoS defence).
    pub intro_rate: u32,
    /// Burst of introductions each introduction point lets through.
    pub intro_burst: u32,
    /// Streams one client circuit may open at once before the circuit is closed.
    pub max_streams_per_circuit: u32,
    /// Accepted streams queued for the server before new ones wait.
    pub queue: usize,
}

impl ServiceSettings {
    /// Defaults for a public relay on the given virtual ports: C-tor's introduction DoS
    /// defaults (25/s, burst 200) and a small per-circuit stream limit (an SMP client opens
    /// one stream per connection).
    pub fn new(ports: Vec<u16>) -> Self {
        ServiceSettings {
            nickname: "smp-server".into(),
            ports,
            num_intro_points: 3,
            intro_rate: 25,
            intro_burst: 200,
            max_streams_per_circuit: 16,
            queue: 64,
        }
    }
}

/// A stream a client opened to the onion service.
pub struct IncomingStream {
    /// The virtual port the client connected to.
    pub port: u16,
    /// The stream, already accepted (the client has its CONNECTED).
    pub stream: TorStream,
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A launched onion service. Dropping it (or [`OnionService::shutdown`]) takes it down.
pub struct OnionService {
    running: Arc<RunningOnionService>,
    address: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for OnionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address is public by design, but keep it out of debug logs anyway.
        f.debug_struct("OnionService").finish_non_exhaustive()
    }
}

impl OnionService {
    /// The service's address, `<56 base32 chars>.onion`. Stable while the state directory and
    /// nickname are kept.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the service currently has its descriptor published and intro points up.
    pub fn is_reachable(&self) -> bool {
        self.running.status().state().is_fully_reachable()
    }

    /// The service's state in words (e.g. `Running`, `Bootstrapping`, `DegradedReachable`),
    /// for the operator's status views.
    pub fn state_summary(&self) -> String {
        let st = self.running.status();
        match st.current_problem() {
            Some(p) => format!("{:?} (problem: {p:?})", st.state()),
            None => format!("{:?}", st.state()),
        }
    }

    /// Take the service down.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for OnionService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        tracing::info!("Tor: onion service stopped");
    }
}

impl Tor {
    /// Launch the onion service. Its identity key is created on first launch and kept under
    /// the state directory. Accepted streams arrive on the returned channel.
    pub fn launch_service(
        &self,
        s: &ServiceSettings,
    ) -> Result<(OnionService, mpsc::Receiver<IncomingStream>), OnionError> {
        let svc_err = |e: &dyn std::fmt::Display| OnionError::Service(e.to_string());
        let nickname: HsNickname = s.nickname.parse().map_err(|e| svc_err(&e))?;
        let mut b = OnionServiceConfigBuilder::default();
        b.nickname(nickname)
            .num_intro_points(s.num_intro_points)
            .rate_limit_at_intro(Some(TokenBucketConfig::new(s.intro_rate, s.intro_burst)))
            .max_concurrent_streams_per_circuit(s.max_streams_per_circuit);
        let config = b.build().map_err(|e| svc_err(&e))?;
        let (running, requests) = self
            .client
            .launch_onion_service(config)?
            .ok_or_else(|| OnionError::Service("the service is disabled".into()))?;
        let address = running
            .onion_address()
            .ok_or_else(|| OnionError::Service("no identity key in the keystore".into()))?
            .display_unredacted()
            .to_string();
        perms::tighten(&self.settings.state_dir)?;
        tracing::info!("Tor: onion service launched (address in the onion-address file)");

        let (tx, rx) = mpsc::channel(s.queue.max(1));
        let ports = s.ports.clone();
        let accept = tokio::spawn(async move {
            let mut streams = tor_hsservice::handle_rend_requests(requests);
            while let Some(req) = streams.next().await {
                if tx.is_closed() {
                    break;
                }
                let tx = tx.clone();
                let ports = ports.clone();
                tokio::spawn(async move { accept_one(req, &ports, tx).await });
            }
        });
        let status = tokio::spawn(log_status(running.status_events()));
        Ok((
            OnionService {
                running,
                address,
                tasks: vec![accept, status],
            },
            rx,
        ))
    }
}

/// Accept a BEGIN to a served port and pass the stream on; refuse everything else the way
/// other onion services do (END with reason DONE), so the refusal reveals nothing.
async fn accept_one(req: StreamRequest, ports: &[u16], tx: mpsc::Sender<IncomingStream>) {
    let port = match req.request() {
        IncomingStreamRequest::Begin(b) if ports.contains(&b.port()) => b.port(),
        _ => {
            let _ = req.reject(End::new_with_reason(EndReason::DONE)).await;
            return;
        }
    };
    match req.accept(Connected::new_empty()).await {
        Ok(stream) => {
            let _ = tx.send(IncomingStream { port, stream }).await;
        }
        Err(e) => tracing::debug!("Tor: accepting an onion stream failed: {e}"),
    }
}

/// Log each change of the service's state, and problems as warnings.
async fn log_status(mut events: tor_hsservice::status::OnionServiceStatusStream) {
    let mut last = String::new();
    while let Some(st) = events.next().await {
        let state = format!("{:?}", st.state());
        if state != last {
            tracing::info!("Tor: onion service state {state}");
            last = state;
        }
        if let Some(p) = st.current_problem() {
            tracing::warn!("Tor: onion service problem: {p:?}");
        }
    }
}
