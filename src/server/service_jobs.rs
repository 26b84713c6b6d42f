//! Running a SUBS delivery ([`Job::ServiceMessages`](super::core::Job)) for a service session:
//! the first pending message of each of its queues, a part at a time as the connection's
//! output drains, then ALLS. One per session (SUBS delivers only once per session); it stops
//! when the connection closes.

use std::sync::Arc;

use super::core::Outgoing;
use super::state::{ClientHandle, ServerState};
use crate::clock::now_secs;
use crate::protocol::response::BrokerMsg;

/// Queues looked at per part: bounds what one part holds (each MSG is at most a block).
const PART: usize = 64;

/// Start the delivery in its own task; the SOKS reply is already queued before it.
pub fn spawn(state: &Arc<ServerState>, client: &Arc<ClientHandle>, queues: Vec<Vec<u8>>) {
    let (state, client) = (state.clone(), client.clone());
    tokio::spawn(async move {
        let closed = client.closed.clone();
        tokio::select! {
            _ = run(&state, &client, queues) => {}
            _ = closed.cancelled() => {}
        }
    });
}

async fn run(state: &ServerState, client: &ClientHandle, queues: Vec<Vec<u8>>) {
    for part in queues.chunks(PART) {
        let out = state.core.service_messages(&client.core, part, now_secs());
        if !client.outbox.push_replies(out).await {
            return;
        }
    }
    let _ = client
        .outbox
        .push_replies(vec![Outgoing::event(&[], BrokerMsg::Alls)])
        .await;
}
