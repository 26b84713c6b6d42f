//! Running the core's proxy [`Job`]s (PRXY, PFWD) for a connection.
//!
//! The read loop takes one of the connection's proxy permits before it spawns a job, so a
//! client with `[PROXY] client_concurrency` jobs in flight is not read until one finishes, and
//! every job stops when its connection closes: a client cannot leave work behind.

use std::sync::Arc;

use super::core::{Outgoing, ProxyJob};
use super::counting;
use super::state::{ClientHandle, ServerState};
use crate::protocol::errors::{BrokerError, ErrorType, ProxyError, TransportError};
use crate::protocol::response::BrokerMsg;

/// Wait for a permit, then run `job` in its own task; its answer goes to the client's outbox.
/// Returns false if the connection closed while waiting.
pub async fn spawn(state: &Arc<ServerState>, client: &Arc<ClientHandle>, job: ProxyJob) -> bool {
    let permit = tokio::select! {
        p = client.proxy_permits.clone().acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return false,
        },
        _ = client.closed.cancelled() => return false,
    };
    let (state, client) = (state.clone(), client.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let closed = client.closed.clone();
        tokio::select! {
            out = run(&state, job) => {
                client.push(vec![out]);
            }
            _ = closed.cancelled() => {}
        }
    });
    true
}

/// Run one job to its answer.
async fn run(state: &ServerState, job: ProxyJob) -> Outgoing {
    let stats = &state.stats;
    match job {
        ProxyJob::RelaySession {
            corr_id,
            entity_id,
            server,
            own,
        } => {
            let (r, connected) = state.proxy.session_key_connected(&server).await;
            let (all, mine) = (&stats.p_relays, &stats.p_relays_own);
            counting::relay_session_result(all, mine, own, &r, connected);
            Outgoing::new(&corr_id, &entity_id, r)
        }
        ProxyJob::Forward {
            corr_id,
            session_id,
            version,
            key,
            body,
        } => {
            let own = state
                .proxy
                .session_host(&session_id)
                .is_some_and(|h| counting::is_own_server(&state.settings.own_server_domains, &h));
            let (all, mine) = (&stats.p_msg_fwds, &stats.p_msg_fwds_own);
            let msg = match state.proxy.by_session(&session_id) {
                None => {
                    let m = BrokerMsg::Err(ErrorType::Proxy(ProxyError::NoSession));
                    counting::proxy_result(all, &m);
                    m
                }
                Some(r) if r.version() < crate::protocol::version::SENDING_PROXY => {
                    for p in std::iter::once(all).chain(own.then_some(mine)) {
                        p.requests.inc();
                        p.errors_compat.inc();
                    }
                    BrokerMsg::Err(ErrorType::Proxy(ProxyError::Broker(
                        BrokerError::Transport(TransportError::Version),
                    )))
                }
                Some(r) => {
                    let m =
                        super::proxy::ProxyAgent::forward(&r, &corr_id, version, &key, &body).await;
                    counting::proxy_result_own(all, mine, own, &m);
                    m
                }
            };
            Outgoing::new(&corr_id, &session_id, msg)
        }
    }
}
