//! RSLV (v20), direct and forwarded inside RFWD, as the reference's `processCommand` /
//! `processForwardedCommand` handle it: count the request, refuse with `ERR NAME NO_RESOLVER`
//! when `[NAMES]` is off, otherwise resolve off the read loop and send `RNAME` or
//! `ERR NAME ...` (inside an RRES when forwarded) when the resolver answers.
//!
//! Concurrency is per connection (`resolver_concurrency`, default 1000, as the reference's
//! `forkCmd`): a proxy's connection carries the RSLVs of many clients. The reference blocks the
//! connection's command loop while all slots are busy; here the read loop never blocks, so
//! resolutions wait for a slot in their own task, and waiting ones are capped at the same
//! number: beyond it the answer is `ERR NAME RESOLVER busy` (ours), so a client cannot make the
//! server hold an unbounded number of pending requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::commands::Conn;
use super::forward::FwdSeal;
use super::state::{ClientHandle, Outgoing, ServerState};
use crate::names::Resolver;
use crate::protocol::errors::{ErrorType, NameError};
use crate::protocol::names::SimplexDomain;
use crate::protocol::response::BrokerMsg;
use crate::stats::counters::NameResolverStats;

/// One connection's resolution slots.
#[derive(Debug)]
pub struct ResolverSlots {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    limit: usize,
}

impl ResolverSlots {
    fn new(limit: usize) -> Self {
        ResolverSlots {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            waiting: AtomicUsize::new(0),
            limit: limit.max(1),
        }
    }
}

/// Start the names role: keep the resolver in the state and probe its `/health` once in the
/// background (a failure is only logged, as the reference: the resolver may come up later).
pub fn start(state: &ServerState, cfg: Option<&crate::config::names::Names>) {
    let Some(cfg) = cfg else { return };
    match Resolver::new(cfg) {
        Ok(r) => {
            let r = Arc::new(r);
            tracing::info!("[NAMES] resolver enabled, endpoint={}", r.endpoint());
            let probe = r.clone();
            tokio::spawn(async move {
                match probe.health().await {
                    Ok(()) => tracing::info!("[NAMES] endpoint probe ok"),
                    Err(e) => tracing::warn!(
                        "[NAMES] endpoint probe failed (server will still start, RSLV will return ERR (NAME ...) until reachable): {e}"
                    ),
                }
            });
            let _ = state.names.set(r);
        }
        // Only a broken TLS root store gets here; RSLV then answers NO_RESOLVER.
        Err(e) => tracing::error!("[NAMES] resolver not started: {e}"),
    }
}

/// The resolver, counting the request; `Err` is the immediate `ERR NAME NO_RESOLVER`.
fn resolver(state: &ServerState) -> Result<Arc<Resolver>, NameError> {
    let st = &state.stats.rslv;
    st.reqs.inc();
    match state.names.get() {
        Some(r) => Ok(r.clone()),
        None => {
            st.disabled.inc();
            Err(NameError::NoResolver)
        }
    }
}

/// Resolve and count the outcome.
async fn resolve(r: &Resolver, stats: &NameResolverStats, d: &SimplexDomain) -> BrokerMsg {
    match r.resolve(d).await {
        Ok(rec) => {
            stats.succ.inc();
            BrokerMsg::Rname(rec)
        }
        Err(e) => {
            if e == NameError::NotFound {
                stats.not_found.inc();
            } else {
                stats.resolver_errs.inc();
            }
            BrokerMsg::Err(ErrorType::Name(e))
        }
    }
}

/// Run `make` in a task once the connection has a free slot; the task sends what it returns.
/// `Err` is the immediate answer when too many are waiting already.
fn spawn<F>(
    client: &Arc<ClientHandle>,
    limit: usize,
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<(), NameError>
where
    F: std::future::Future<Output = Vec<Outgoing>> + Send + 'static,
{
    let slots = client
        .resolver_slots
        .get_or_init(|| Arc::new(ResolverSlots::new(limit)))
        .clone();
    let permit = match slots.permits.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) if slots.waiting.load(Ordering::Relaxed) >= slots.limit => {
            return Err(NameError::Resolver("busy".into()));
        }
        Err(_) => {
            slots.waiting.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    let client = client.clone();
    tokio::spawn(async move {
        let _permit = match permit {
            Some(p) => p,
            None => {
                let p = slots.permits.clone().acquire_owned().await;
                slots.waiting.fetch_sub(1, Ordering::Relaxed);
                match p {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        let out = make().await;
        client.send(out);
    });
    Ok(())
}

/// A direct RSLV: the immediate answer, or `None` when it is sent later.
pub fn direct(conn: &Conn<'_>, corr: &[u8], d: SimplexDomain) -> Option<Outgoing> {
    let now = |e| {
        Some((
            corr.to_vec(),
            Vec::new(),
            BrokerMsg::Err(ErrorType::Name(e)),
        ))
    };
    let r = match resolver(conn.state) {
        Ok(r) => r,
        Err(m) => return now(m),
    };
    let stats = conn.state.stats.clone();
    let corr2 = corr.to_vec();
    let limit = r.concurrency;
    match spawn(conn.client, limit, move || async move {
        let msg = resolve(&r, &stats.rslv, &d).await;
        vec![(corr2, Vec::new(), msg)]
    }) {
        Ok(()) => None,
        Err(m) => now(m),
    }
}

/// An RSLV inside RFWD: `Ok` when the RRES (or error) will be sent later for the RFWD's
/// `corr`; `Err` is the inner `ERR NAME` to seal now.
pub fn forwarded(
    conn: &Conn<'_>,
    corr: &[u8],
    inner_corr: &[u8],
    d: SimplexDomain,
    seal: FwdSeal,
) -> Result<(), NameError> {
    let r = resolver(conn.state)?;
    let stats = conn.state.stats.clone();
    let (corr, inner_corr) = (corr.to_vec(), inner_corr.to_vec());
    let limit = r.concurrency;
    spawn(conn.client, limit, move || async move {
        let msg = resolve(&r, &stats.rslv, &d).await;
        let outer = match seal.seal(&inner_corr, &[], &msg) {
            Ok(b) => BrokerMsg::Rres(b),
            Err(e) => BrokerMsg::Err(e),
        };
        vec![(corr, Vec::new(), outer)]
    })
}
