//! One client connection: read blocks, verify and apply commands, write responses and
//! deliveries through a single writer task so every block leaves whole and in order.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commands::{Conn, Output};
use super::forward::RelaySession;
use super::state::{Outgoing, ServerState};
use super::verify::verify_transmission;
use crate::protocol::errors::ErrorType;
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    batch, decode_server, encode_server, parse_transmission, split_batch, THParams,
};
use crate::protocol::version::SMP_BLOCK_SIZE;
use crate::transport::smp::{BlockWriter, ServerSession};

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
    let relay = RelaySession {
        params: &params,
        dh: &dh_key,
        session_secret,
    };
    let (tx, rx) = mpsc::channel::<Vec<Outgoing>>(state.settings.client_queue_size);
    let client = state.add_client(params.version, tx);
    let _ = client.session_id.set(params.session_id.clone());
    let writer_task = tokio::spawn(write_loop(writer, params.clone(), rx));
    let conn = Conn {
        state: &state,
        client: &client,
        version: params.version,
        relay: Some(&relay),
    };
    let mut inactive = Box::pin(super::inactive::expired(&state, &client));
    loop {
        let block = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = inactive.as_mut() => {
                tracing::debug!("disconnecting an inactive client");
                break;
            }
            b = reader.read_block() => b,
        };
        let Ok(block) = block else { break };
        client.rcv_active_at.store(
            super::commands::now_secs(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if !state.active.load(std::sync::atomic::Ordering::Acquire) {
            break;
        }
        let mut out = Output::default();
        match block.map_err(|_| ()).and_then(|c| {
            split_batch(&c)
                .map(|ts| ts.into_iter().map(|t| t.to_vec()).collect::<Vec<_>>())
                .map_err(|_| ())
        }) {
            Err(()) => {
                out.responses
                    .push((Vec::new(), Vec::new(), BrokerMsg::Err(ErrorType::Block)))
            }
            Ok(ts) => {
                let batched = ts.len() > 1;
                for (i, t) in ts.iter().enumerate() {
                    process_transmission(&conn, &params, &dh_key, t, batched && i == 0, &mut out);
                }
            }
        }
        let mut all = out.responses;
        all.extend(out.msgs);
        if !all.is_empty() {
            client.snd_active_at.store(
                super::commands::now_secs(),
                std::sync::atomic::Ordering::Relaxed,
            );
            if client.tx.send(all).await.is_err() {
                break;
            }
        }
    }
    drop(inactive);
    state.remove_client(&client);
    drop(client);
    // The writer ends when the channel closes (all senders dropped) or the socket fails; a
    // delivery task still holding a sender must not keep the connection open.
    let abort = writer_task.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(2), writer_task)
        .await
        .is_err()
    {
        abort.abort();
    }
}

fn process_transmission(
    conn: &Conn<'_>,
    params: &THParams,
    dh: &crate::crypto::keys::DhKeyPair,
    t: &[u8],
    batch_first: bool,
    out: &mut Output,
) {
    match decode_server(params, parse_transmission(params, t)) {
        Err((corr, ent, e)) => out.responses.push((corr, ent, BrokerMsg::Err(e))),
        Ok(st) => match verify_transmission(conn.state.store.as_ref(), dh, &st) {
            Err(e) => {
                if batch_first {
                    super::counting::batch(&conn.state.stats, &st.command);
                }
                if e == ErrorType::Auth {
                    super::counting::auth_failure(&conn.state.stats, &st.command);
                }
                out.responses
                    .push((st.corr_id, st.entity_id, BrokerMsg::Err(e)))
            }
            Ok(v) if batch_first => {
                super::counting::batch(&conn.state.stats, &st.command);
                conn.process(&st.corr_id, &st.entity_id, st.command, v, out)
            }
            Ok(v) => conn.process(&st.corr_id, &st.entity_id, st.command, v, out),
        },
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: BlockWriter<W>,
    params: THParams,
    mut rx: mpsc::Receiver<Vec<Outgoing>>,
) {
    while let Some(items) = rx.recv().await {
        let encoded: Vec<Vec<u8>> = items
            .iter()
            .map(|(c, e, m)| encode_server(&params, c, e, m))
            .collect();
        // A response too large for a block is dropped, as the reference logs and skips it.
        for content in batch(&encoded, SMP_BLOCK_SIZE).into_iter().flatten() {
            if writer.write_block(&content).await.is_err() {
                return;
            }
        }
    }
    writer.shutdown().await;
}
