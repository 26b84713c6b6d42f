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

use super::core::ResolveAnswer;
use super::state::{ClientHandle, ServerState};
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

/// Start the names role: keep the resolver in the state, turn RSLV on in the core, and probe
/// the resolver's `/health` once in the background (a failure is only logged, as the
/// reference: the resolver may come up later).
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
            state.core.names_enabled.store(true, Ordering::Relaxed);
        }
        // Only a broken TLS root store gets here; RSLV then answers NO_RESOLVER.
        Err(e) => tracing::error!("[NAMES] resolver not started: {e}"),
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

/// Run one resolution for `client` once it has a free slot, without blocking the read loop;
/// when too many are waiting already the answer is `ERR NAME RESOLVER busy` at once.
pub fn spawn(
    state: &Arc<ServerState>,
    client: &Arc<ClientHandle>,
    domain: SimplexDomain,
    answer: ResolveAnswer,
) {
    let Some(r) = state.names.get().cloned() else {
        // the core only makes resolve jobs when the role is on
        let e = BrokerMsg::Err(ErrorType::Name(NameError::NoResolver));
        client.push(vec![answer.answer(e)]);
        return;
    };
    let slots = client
        .resolver_slots
        .get_or_init(|| Arc::new(ResolverSlots::new(r.concurrency)))
        .clone();
    let permit = match slots.permits.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) if slots.waiting.load(Ordering::Relaxed) >= slots.limit => {
            let e = BrokerMsg::Err(ErrorType::Name(NameError::Resolver("busy".into())));
            client.push(vec![answer.answer(e)]);
            return;
        }
        Err(_) => {
            slots.waiting.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    let (stats, client) = (state.stats.clone(), client.clone());
    tokio::spawn(async move {
        let closed = client.closed.clone();
        let work = async {
            let _permit = match permit {
                Some(p) => p,
                None => {
                    let p = slots.permits.clone().acquire_owned().await;
                    slots.waiting.fetch_sub(1, Ordering::Relaxed);
                    p.ok()?
                }
            };
            Some(resolve(&r, &stats.rslv, &domain).await)
        };
        tokio::select! {
            msg = work => if let Some(msg) = msg {
                client.push(vec![answer.answer(msg)]);
            },
            _ = closed.cancelled() => {}
        }
    });
}
