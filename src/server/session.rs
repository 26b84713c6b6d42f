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

use super::blocks::{run as run_block, Conn, Decoded};
use super::core::{Effects, Job, Outgoing, SessionKeys};
use super::state::{ClientHandle, ServerState};
use crate::clock::now_secs;
use crate::protocol::transmission::{batch, block_room, encode_server, THParams, MAX_BATCH};
use crate::protocol::version::SMP_BLOCK_SIZE;
use crate::transport::smp::{BlockWriter, ServerSession};

/// A block write that takes longer than this closes the connection: the client is not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve an SMP session until the peer leaves, an I/O error happens or `shutdown` fires.
///
/// One block at a time: its effects are carried out before the next block is read, so one
/// connection's commands take effect and are answered in order, and the clock is read once
/// per block (the core gets it in `Env`, as it gets the RNG). The client is removed from the
/// shared state before its writer stops, so deliveries stop targeting it first.
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
        service,
        ..
    } = sess;
    let keys = Arc::new(SessionKeys {
        session_id: params.session_id.clone(),
        dh: dh_key,
        session_secret,
    });
    let client = state.add_client(params.version, now_secs());
    let _ = client.session_id.set(params.session_id.clone());
    if let Some(svc) = service {
        let _ = client.core.service.set(svc);
    }
    let writer_task = tokio::spawn(write_loop(writer, params.clone(), client.clone()));
    let conn = Conn {
        state: state.clone(),
        client: client.clone(),
        keys,
        version: params.version,
        shutdown: shutdown.clone(),
        inline: std::sync::atomic::AtomicBool::new(true),
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
        // Verification may run off this worker (`server::blocks`); the next block is read only
        // after this one's effects are carried out, so they stay in order.
        // Boxed: a block's futures live only while it runs, not in the idle session's state.
        // A block whose replies grow large runs in parts, each part's replies queued (waiting
        // for room) before the next part runs (`blocks::REPLY_CHUNK_BYTES`).
        let mut part = Some(Decoded::new(&params, block));
        let mut open = true;
        while let Some(d) = part.take() {
            let Some((fx, rest)) = Box::pin(run_block(&conn, d, now)).await else {
                open = false;
                break;
            };
            if !Box::pin(carry_out(&state, &client, fx)).await {
                open = false;
                break;
            }
            part = rest;
        }
        if !open {
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
    // Whatever the writer could not send in time is dropped now, not with the last handle.
    client.outbox.close();
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
            Job::ServiceMessages { queues } => super::service_jobs::spawn(state, client, queues),
            Job::Proxy(job) => {
                if !super::proxy_jobs::spawn(state, client, job).await {
                    return false;
                }
            }
        }
    }
    true
}

/// Encoded transmissions waiting to fill a block, with the outbox cost they stand for.
#[derive(Default)]
struct Packer {
    pending: Vec<Vec<u8>>,
    len: usize,
    cost: usize,
}

/// Block contents ready to write (empty when every transmission was too large for a block),
/// and the outbox cost of their transmissions.
struct Packed {
    contents: Vec<Vec<u8>>,
    cost: usize,
}

impl Packer {
    /// Add a transmission; returns the full block it does not fit into, if any.
    fn push(&mut self, encoded: Vec<u8>, cost: usize) -> Option<Packed> {
        let room = block_room(SMP_BLOCK_SIZE);
        let l = encoded.len() + 2;
        let full =
            !self.pending.is_empty() && (self.len + l > room || self.pending.len() == MAX_BATCH);
        let out = if full { self.finish() } else { None };
        self.pending.push(encoded);
        self.len += l;
        self.cost += cost;
        out
    }

    /// The block being filled, if any.
    fn finish(&mut self) -> Option<Packed> {
        if self.pending.is_empty() {
            return None;
        }
        let contents = batch(&self.pending, SMP_BLOCK_SIZE)
            .into_iter()
            .flatten()
            .collect();
        let cost = self.cost;
        *self = Packer::default();
        Some(Packed { contents, cost })
    }
}

/// Write packed blocks and tell the outbox; false (the connection closed) if the client does
/// not take them within [`WRITE_TIMEOUT`].
async fn write_one<W: AsyncWrite + Unpin>(
    writer: &mut BlockWriter<W>,
    client: &ClientHandle,
    packed: Packed,
) -> bool {
    // A response too large for a block is dropped, as the reference logs and skips it.
    for content in packed.contents {
        let w = tokio::time::timeout(WRITE_TIMEOUT, writer.write_block(&content)).await;
        if !matches!(w, Ok(Ok(()))) {
            // Closing the outbox too wakes a read loop waiting there for room, which would
            // otherwise wait for this writer forever.
            client.outbox.close();
            client.closed.cancel();
            return false;
        }
    }
    client.outbox.written(packed.cost);
    true
}

/// Write what the writer took: one block at a time, encoded transmissions packed as they
/// come and each block written before the next is built, so the writer holds one block
/// besides what it took, and the outbox learns as each block goes out. False when the
/// connection closed.
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut BlockWriter<W>,
    params: &THParams,
    client: &ClientHandle,
    items: Vec<Outgoing>,
) -> bool {
    let mut packer = Packer::default();
    let mut items = items.into_iter();
    let mut drained = false;
    while !drained {
        let packed = match items.next() {
            Some(o) => {
                let cost = crate::server::outbox::cost(&o);
                let encoded = encode_server(params, &o.corr_id, &o.entity_id, &o.msg);
                drop(o);
                packer.push(encoded, cost)
            }
            None => {
                drained = true;
                packer.finish()
            }
        };
        if let Some(block) = packed {
            if !write_one(writer, client, block).await {
                return false;
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
        // Boxed: the batch's state lives only while it is written, not in the idle writer's.
        if !Box::pin(write_batch(&mut writer, &params, &client, items)).await {
            return;
        }
    }
    writer.shutdown().await;
}
