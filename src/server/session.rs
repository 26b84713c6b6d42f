//! One client connection: read blocks, hand each transmission to the core, carry out its
//! effects, and write replies and deliveries through one writer task so every block leaves
//! whole and in order.
//!
//! What a connection can hold is bounded: its output by bytes (`server::outbox`; replies wait
//! for room, so a client that does not read is not read either), its proxied commands by
//! permits (taken before they are spawned), and a write that makes no progress for
//! [`WRITE_TIMEOUT`] closes the connection. Everything the connection started stops with it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::core::{Effects, Env, Job, Outgoing, Session, SessionKeys};
use super::state::{ClientHandle, ServerState};
use crate::clock::now_secs;
use crate::protocol::errors::ErrorType;
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    batch, decode_server, encode_server, parse_transmission, split_batch, THParams,
};
use crate::protocol::version::SMP_BLOCK_SIZE;
use crate::transport::smp::{BlockWriter, ServerSession};

/// A block write that takes longer than this closes the connection: the client is not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve an SMP session until the peer leaves, an I/O error happens or `shutdown` fires.
pub async fn run_session<R, W>(
    state: Arc<ServerState>,
    sess: ServerSession<R, W>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let ServerSession {
        mut reader,
        writer,
        params,
        dh_key,
        session_secret,
        ..
    } = sess;
    let keys = SessionKeys {
        session_id: params.session_id.clone(),
        dh: dh_key,
        session_secret,
    };
    let client = state.add_client(params.version, now_secs());
    let _ = client.session_id.set(params.session_id.clone());
    let writer_task = tokio::spawn(write_loop(writer, params.clone(), client.clone()));
    let session = Session {
        client: &client.core,
        version: params.version,
        keys: &keys,
        forwarded: false,
    };
    let mut inactive = Box::pin(super::inactive::expired(&state, &client));
    loop {
        let block = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = client.closed.cancelled() => break,
            _ = inactive.as_mut() => {
                tracing::debug!("disconnecting an inactive client");
                break;
            }
            b = reader.read_block() => b,
        };
        let Ok(block) = block else { break };
        let now = now_secs();
        client.rcv_active_at.store(now, Ordering::Relaxed);
        if !state.active.load(Ordering::Acquire) {
            break;
        }
        let fx = handle_block(&state, &session, &params, block, now);
        if !carry_out(&state, &client, fx).await {
            break;
        }
    }
    drop(inactive);
    state.remove_client(&client);
    // The writer ends when the outbox closes or the socket fails; bounded, so a peer that
    // stopped reading cannot hold the task (or shutdown) open.
    let abort = writer_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer_task)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// Decode a block and run each transmission through the core, in order.
fn handle_block(
    state: &ServerState,
    session: &Session<'_>,
    params: &THParams,
    block: Result<Vec<u8>, crate::protocol::errors::TransportError>,
    now: i64,
) -> Effects {
    let mut fx = Effects::default();
    let content = match block {
        Ok(c) => c,
        Err(_) => {
            fx.replies
                .push(Outgoing::new(&[], &[], BrokerMsg::Err(ErrorType::Block)));
            return fx;
        }
    };
    let ts = match split_batch(&content) {
        Ok(ts) => ts,
        Err(_) => {
            fx.replies
                .push(Outgoing::new(&[], &[], BrokerMsg::Err(ErrorType::Block)));
            return fx;
        }
    };
    let batched = ts.len() > 1;
    let mut rng = rand::thread_rng();
    let mut env = Env { now, rng: &mut rng };
    for (i, t) in ts.into_iter().enumerate() {
        match decode_server(params, parse_transmission(params, t)) {
            Err((corr, ent, e)) => fx
                .replies
                .push(Outgoing::new(&corr, &ent, BrokerMsg::Err(e))),
            Ok(st) => state
                .core
                .receive(session, st, batched && i == 0, &mut env, &mut fx),
        }
    }
    fx
}

/// Carry out a block's effects: deliveries to other connections, this connection's replies
/// (waiting for room), then its proxy jobs (waiting for permits). False when the connection
/// closed meanwhile.
async fn carry_out(state: &Arc<ServerState>, client: &Arc<ClientHandle>, fx: Effects) -> bool {
    let Effects {
        mut replies,
        follow,
        deliveries,
        jobs,
    } = fx;
    state.deliver(deliveries);
    replies.extend(follow);
    if !replies.is_empty() && !client.outbox.push_replies(replies).await {
        return false;
    }
    for job in jobs {
        match job {
            Job::Resolve { domain, answer } => super::names::spawn(state, client, domain, answer),
            Job::Proxy(job) => {
                if !super::proxy_jobs::spawn(state, client, job).await {
                    return false;
                }
            }
        }
    }
    true
}

/// Take everything queued for the connection, pack it into as few blocks as fits and write
/// them; a write that stalls for [`WRITE_TIMEOUT`] closes the connection.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: BlockWriter<W>,
    params: THParams,
    client: Arc<ClientHandle>,
) {
    while let Some(items) = client.outbox.take().await {
        client.snd_active_at.store(now_secs(), Ordering::Relaxed);
        let encoded: Vec<Vec<u8>> = items
            .iter()
            .map(|o| encode_server(&params, &o.corr_id, &o.entity_id, &o.msg))
            .collect();
        drop(items);
        // A response too large for a block is dropped, as the reference logs and skips it.
        for content in batch(&encoded, SMP_BLOCK_SIZE).into_iter().flatten() {
            let w = tokio::time::timeout(WRITE_TIMEOUT, writer.write_block(&content)).await;
            if !matches!(w, Ok(Ok(()))) {
                client.closed.cancel();
                return;
            }
        }
    }
    writer.shutdown().await;
}
