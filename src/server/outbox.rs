//! A connection's output queue, bounded by bytes rather than by entries.
//!
//! Replies to the connection's own commands wait for room ([`Outbox::push_replies`]: at most
//! [`REPLY_ROOM`] queued or being written), so a client that does not read is simply not read
//! either; transmissions from other connections
//! (MSG, END, NMSG) never wait ([`Outbox::push`]) and overflow the limit only for a client that
//! stopped reading, which is then disconnected. The writer takes everything queued at once
//! ([`Outbox::take`]) and packs it into as few 16 KB blocks as it fits.
//!
//! Nothing is allocated while the queue is empty, so an idle connection costs only this struct.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::core::Outgoing;
use crate::protocol::response::BrokerMsg;
use crate::sync::lock;

/// Default bound of a connection's queued output (`Settings::client_output_bytes`).
pub const DEFAULT_OUTPUT_BYTES: usize = 4 << 20;

/// A connection's own replies wait while more than this of its output is queued or being
/// written (or a quarter of the limit, if smaller). A client that reads has far less pending;
/// one that does not holds no more than this plus one part of a block's replies.
pub const REPLY_ROOM: usize = 128 << 10;

/// What happened to pushed transmissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Over the limit: not queued; the connection is not reading.
    Overflow,
    /// The connection is closed.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Outgoing>,
    bytes: usize,
    /// Taken by the writer and not yet written.
    writing: usize,
    closed: bool,
}

/// The queue between a connection's command handling (and other connections) and its writer.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    /// Signalled when items arrive or the box closes (the writer waits on it).
    ready: Notify,
    /// Signalled when the writer took items (replies wait on it).
    room: Notify,
    limit: usize,
}

/// Bytes a transmission takes in a block, near enough to bound memory (payloads dominate).
pub fn cost(o: &Outgoing) -> usize {
    let payload = match &o.msg {
        BrokerMsg::Msg(id, body) => id.len() + body.len(),
        BrokerMsg::Nmsg(_, m) | BrokerMsg::Rres(m) | BrokerMsg::Pres(m) | BrokerMsg::Info(m) => {
            24 + m.len()
        }
        BrokerMsg::Lnk(id, (a, b)) => id.len() + a.len() + b.len(),
        BrokerMsg::Pkey(s, _, _) => s.len() + 1024,
        BrokerMsg::Ids(_) => 256,
        // a name record is bounded by the resolver's response limit (16000 bytes)
        BrokerMsg::Rname(_) => 16 * 1024,
        BrokerMsg::Sok(_)
        | BrokerMsg::Soks(..)
        | BrokerMsg::Nid(..)
        | BrokerMsg::End
        | BrokerMsg::Ends(..)
        | BrokerMsg::Deld
        | BrokerMsg::Alls
        | BrokerMsg::Ok
        | BrokerMsg::Err(_)
        | BrokerMsg::Pong => 64,
    };
    16 + o.corr_id.len() + o.entity_id.len() + payload
}

impl Outbox {
    /// An empty outbox holding at most about `limit` bytes of unsolicited transmissions.
    pub fn new(limit: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            room: Notify::new(),
            limit: limit.max(64 << 10),
        }
    }

    /// Queue transmissions without waiting; refused whole if the queue is already over the
    /// limit (see the module comment).
    pub fn push(&self, items: Vec<Outgoing>) -> Pushed {
        if items.is_empty() {
            return Pushed::Queued;
        }
        {
            let mut i = lock(&self.inner);
            if i.closed {
                return Pushed::Closed;
            }
            if i.bytes > self.limit {
                return Pushed::Overflow;
            }
            i.bytes += items.iter().map(cost).sum::<usize>();
            i.items.extend(items);
        }
        self.ready.notify_one();
        Pushed::Queued
    }

    /// Queue the replies to a block of this connection's commands, first waiting until what
    /// is queued or being written is at most [`REPLY_ROOM`] (back-pressure on the reader).
    /// False if closed.
    pub async fn push_replies(&self, items: Vec<Outgoing>) -> bool {
        let room_for_replies = (self.limit / 4).min(REPLY_ROOM);
        loop {
            let room = self.room.notified();
            {
                let mut i = lock(&self.inner);
                if i.closed {
                    return false;
                }
                if i.bytes + i.writing <= room_for_replies {
                    if !items.is_empty() {
                        i.bytes += items.iter().map(cost).sum::<usize>();
                        i.items.extend(items);
                        drop(i);
                        self.ready.notify_one();
                    }
                    return true;
                }
            }
            room.await;
        }
    }

    /// Whether the queue is above a quarter of its limit: notifications are then kept in the
    /// store instead, as they can wait for the notification server to catch up.
    pub fn is_busy(&self) -> bool {
        lock(&self.inner).bytes > self.limit / 4
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.inner).bytes
    }

    /// Everything queued, waiting for at least one transmission; `None` once closed and
    /// drained.
    pub async fn take(&self) -> Option<Vec<Outgoing>> {
        loop {
            let ready = self.ready.notified();
            {
                let mut i = lock(&self.inner);
                if !i.items.is_empty() {
                    i.writing += i.bytes;
                    i.bytes = 0;
                    let v: Vec<Outgoing> = std::mem::take(&mut i.items).into();
                    return Some(v);
                }
                if i.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// The writer wrote transmissions of `bytes` (their [`cost`]) that it took.
    pub fn written(&self, bytes: usize) {
        {
            let mut i = lock(&self.inner);
            i.writing = i.writing.saturating_sub(bytes);
        }
        self.room.notify_waiters();
    }

    /// Stop taking transmissions but let the writer take what is queued, then end: the
    /// replies to a connection's last block go out when the server stops or the session ends
    /// between blocks (a SEND stored but never answered would be sent again by the client).
    pub fn finish(&self) {
        lock(&self.inner).closed = true;
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// Close the queue: pending and later transmissions are dropped, waiters wake.
    pub fn close(&self) {
        {
            let mut i = lock(&self.inner);
            i.closed = true;
            i.items = VecDeque::new();
            i.bytes = 0;
            i.writing = 0;
        }
        self.ready.notify_one();
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Outgoing {
        Outgoing::event(b"q", BrokerMsg::Msg(vec![0; 24], vec![0; n]))
    }

    #[tokio::test]
    async fn finish_lets_the_writer_take_what_is_queued_and_refuses_more() {
        let b = Outbox::new(64 << 10);
        assert!(
            b.push_replies(vec![Outgoing::event(b"q", BrokerMsg::Ok)])
                .await
        );
        b.finish();
        assert_eq!(b.push(vec![msg(10)]), Pushed::Closed);
        assert!(
            !b.push_replies(vec![Outgoing::event(b"q", BrokerMsg::Pong)])
                .await
        );
        let taken = b.take().await.expect("the reply queued before finish");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].msg, BrokerMsg::Ok);
        assert!(b.take().await.is_none());
        // close drops what is queued
        let c = Outbox::new(64 << 10);
        assert!(
            c.push_replies(vec![Outgoing::event(b"q", BrokerMsg::Ok)])
                .await
        );
        c.close();
        assert!(c.take().await.is_none());
    }

    #[tokio::test]
    async fn deliveries_overflow_and_replies_wait_for_room() {
        let b = Outbox::new(64 << 10);
        assert_eq!(b.push(vec![msg(40 << 10)]), Pushed::Queued);
        assert_eq!(b.push(vec![msg(40 << 10)]), Pushed::Queued);
        // now above the limit: further deliveries are refused
        assert_eq!(b.push(vec![msg(10)]), Pushed::Overflow);
        assert!(b.is_busy());
        // replies wait until the writer has taken and written what is queued
        let reply = b.push_replies(vec![Outgoing::new(b"c", b"q", BrokerMsg::Ok)]);
        tokio::pin!(reply);
        assert!(futures_poll_once(reply.as_mut()).await.is_none());
        let taken = b.take().await.expect("items");
        assert_eq!(taken.len(), 2);
        assert!(!b.is_busy(), "taken: no longer queued");
        assert!(futures_poll_once(reply.as_mut()).await.is_none());
        b.written(cost(&taken[0]));
        assert!(futures_poll_once(reply.as_mut()).await.is_none());
        b.written(cost(&taken[1]));
        assert!(reply.await);
        assert_eq!(b.take().await.expect("reply").len(), 1);
        b.close();
        assert!(b.take().await.is_none());
        assert_eq!(b.push(vec![msg(1)]), Pushed::Closed);
    }

    #[tokio::test]
    async fn replies_wait_while_much_is_queued_or_being_written() {
        let b = Outbox::new(DEFAULT_OUTPUT_BYTES);
        // a reader's first large batch is queued at once, whatever its size
        assert!(b.push_replies(vec![msg(100 << 10), msg(100 << 10)]).await);
        let taken = b.take().await.expect("items");
        // the writer holds 200 KiB: the next replies wait for it
        let reply = b.push_replies(vec![msg(16 << 10)]);
        tokio::pin!(reply);
        assert!(futures_poll_once(reply.as_mut()).await.is_none());
        // one of the two written: 100 KiB left in the writer, under REPLY_ROOM
        b.written(cost(&taken[0]));
        assert!(reply.await);
        // small replies of a client that reads never wait
        b.written(cost(&taken[1]));
        let _ = b.take().await.expect("the 16 KiB");
        for _ in 0..100 {
            let ok = b.push_replies(vec![Outgoing::new(b"c", b"q", BrokerMsg::Ok)]);
            assert_eq!(futures_poll_once(Box::pin(ok)).await, Some(true));
        }
    }

    /// Poll a future once: `Some(output)` if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            o = f => Some(o),
            _ = std::future::ready(()) => None,
        }
    }
}
