//! Message commands: SEND, SUB, GET and ACK, and delivery to a queue's subscriber.
//!
//! A subscription has at most one message delivered and not yet acknowledged; ACK of it
//! delivers the next. SEND to an empty queue delivers at once to the subscriber, if any.

use std::collections::HashMap;

use super::{Core, Delivery, Effects, Env, Outgoing, Session, Sub};
use crate::crypto::cbox;
use crate::crypto::random::bytes_from;
use crate::protocol::command::MsgFlags;
use crate::protocol::encoding::Encoder;
use crate::protocol::errors::{CommandError, ErrorType};
use crate::protocol::response::BrokerMsg;
use crate::protocol::version::{max_message_length, MAX_RCV_MESSAGE_PADDED};
use crate::store::services::SubParty;
use crate::store::{Message, QueueRec, QueueRef, QueueStatus, WriteResult};
use crate::sync::lock;

/// Body of MSG: server-encrypted to the recipient with the message ID as nonce.
pub fn encrypt_msg(rec: &QueueRec, m: &Message) -> BrokerMsg {
    let mut e = Encoder::with_capacity(64);
    match m {
        Message::Msg {
            ts, flags, body, ..
        } => {
            e.i64(*ts).bool(flags.notification).space().raw(body);
        }
        Message::Quota { ts, .. } => {
            e.raw(b"QUOTA ").i64(*ts);
        }
    }
    let plain = e.finish();
    let nonce = cbox::cb_nonce(m.msg_id());
    // The body is limited on SEND, so it always fits the padded size.
    let enc = cbox::cb_encrypt(&rec.rcv_dh_secret, &nonce, &plain, MAX_RCV_MESSAGE_PADDED)
        .unwrap_or_default();
    BrokerMsg::Msg(m.msg_id().to_vec(), enc)
}

/// What SUB's first half leaves for its second.
#[derive(Debug)]
pub(super) struct SubStarted {
    /// The queue was not subscribed by this connection before.
    new_sub: bool,
    /// The service the queue now belongs to (answered in SOK).
    service_id: Option<Vec<u8>>,
}

impl Core {
    /// SUB: subscribe this connection (taking the queue over from another with END) and
    /// deliver the first message, if any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        ent: &[u8],
        q: &QueueRef,
        rec: &QueueRec,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        let Some(started) = self.subscribe_start(s, corr, ent, fx) else {
            return;
        };
        let mut subs = lock(&s.client.subs);
        let head = self.store.peek_msg(q);
        self.subscribe_finish(&mut subs, corr, ent, rec, started, head, env, fx);
    }

    /// SUB's first half: take the queue (and its service association) for this connection.
    /// `None` when it was answered with an error.
    pub(super) fn subscribe_start(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        ent: &[u8],
        fx: &mut Effects,
    ) -> Option<SubStarted> {
        // A service session takes the queue into its service; a plain one takes it out.
        let service_id = match self.sub_association(s, SubParty::Recipient, ent, ent, fx) {
            Ok(id) => id,
            Err(e) => {
                fx.err(corr, ent, e);
                return None;
            }
        };
        // Never hold this connection's subscriptions while touching another connection's:
        // two connections taking over each other's queues would deadlock.
        let new_sub = {
            let mut subs = lock(&s.client.subs);
            match subs.get_mut(ent) {
                Some(sub) if sub.prohibit => {
                    drop(subs);
                    self.stats.q_sub_prohibited.inc();
                    fx.err(corr, ent, ErrorType::Cmd(CommandError::Prohibited));
                    return None;
                }
                Some(sub) => {
                    // Repeated SUB: deliver the first message again.
                    sub.delivered = None;
                    self.stats.q_sub_duplicate.inc();
                    false
                }
                None => {
                    subs.insert(ent.to_vec(), Sub::subscribed());
                    true
                }
            }
        };
        if new_sub && service_id.is_none() {
            if let Some(prev) = self.subs.set_queue(ent, s.client) {
                lock(&prev.subs).remove(ent);
                fx.deliveries.push(Delivery {
                    to: prev.id,
                    item: Outgoing::event(ent, BrokerMsg::End),
                    ntf: None,
                });
                self.stats.q_sub_end.inc();
                self.stats.q_sub_end_b.inc();
            }
        }
        Some(SubStarted {
            new_sub,
            service_id,
        })
    }

    /// SUB's second half: answer it and deliver `head`, the queue's first message peeked
    /// after the subscription was taken, while holding this connection's subscriptions
    /// (`subs`), so a SEND racing with it delivers the message once, not twice or never.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe_finish(
        &self,
        subs: &mut HashMap<Vec<u8>, Sub>,
        corr: &[u8],
        ent: &[u8],
        rec: &QueueRec,
        started: SubStarted,
        head: Result<Option<Message>, ErrorType>,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        match head {
            Ok(m) => {
                fx.reply(corr, ent, BrokerMsg::Sok(started.service_id));
                if let (Some(m), Some(sub)) = (m, subs.get_mut(ent)) {
                    // A SEND racing with this SUB may have delivered it already.
                    if sub.delivered.is_none() {
                        if started.new_sub {
                            self.stats.q_sub.inc();
                        }
                        self.stats.message_delivered(m.ts());
                        sub.delivered = Some((m.msg_id().to_vec(), env.now));
                        fx.follow.push(Outgoing::event(ent, encrypt_msg(rec, &m)));
                    }
                }
            }
            Err(e) => fx.err(corr, ent, e),
        }
    }

    /// GET: one message without subscribing (and SUB is then prohibited on this connection).
    pub(super) fn get_message(
        &self,
        s: &Session<'_>,
        ent: &[u8],
        q: &QueueRef,
        rec: &QueueRec,
        env: &mut Env<'_>,
    ) -> BrokerMsg {
        let mut subs = lock(&s.client.subs);
        let sub = subs.entry(ent.to_vec()).or_insert(Sub {
            prohibit: true,
            delivered: None,
        });
        if !sub.prohibit {
            self.stats.msg_get_prohibited.inc();
            return BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited));
        }
        let was_delivered = sub.delivered.take().is_some();
        match self.store.peek_msg(q) {
            Ok(Some(m)) => {
                if was_delivered {
                    self.stats.msg_get_duplicate.inc();
                } else {
                    self.stats.msg_get.inc();
                }
                self.stats.message_delivered(m.ts());
                sub.delivered = Some((m.msg_id().to_vec(), env.now));
                encrypt_msg(rec, &m)
            }
            Ok(None) => {
                self.stats.msg_get_no_msg.inc();
                BrokerMsg::Ok
            }
            Err(e) => BrokerMsg::Err(e),
        }
    }

    /// ACK: remove the delivered message and (for SUB) deliver the next one in the reply.
    pub(super) fn ack(
        &self,
        s: &Session<'_>,
        ent: &[u8],
        msg_id: &[u8],
        q: &QueueRef,
        rec: &QueueRec,
        env: &mut Env<'_>,
    ) -> BrokerMsg {
        let st = self.store.as_ref();
        let mut subs = lock(&s.client.subs);
        let Some(sub) = subs.get_mut(ent) else {
            return BrokerMsg::Err(ErrorType::NoMsg);
        };
        let delivered_at = match &sub.delivered {
            Some((d, t)) if d == msg_id || msg_id.is_empty() => *t,
            _ => return BrokerMsg::Err(ErrorType::NoMsg),
        };
        sub.delivered = None;
        let stats = &self.stats;
        let received = |m: &Option<Message>, get: bool| {
            if let Some(Message::Msg { flags, .. }) = m {
                stats.message_received(ent, flags.notification, get, delivered_at);
            }
        };
        if sub.prohibit {
            match st.del_msg(q, msg_id) {
                Ok(m) => {
                    received(&m, true);
                    BrokerMsg::Ok
                }
                Err(e) => BrokerMsg::Err(e),
            }
        } else {
            match st.del_peek_msg(q, msg_id) {
                Ok((m, Some(next))) => {
                    received(&m, false);
                    stats.message_delivered(next.ts());
                    sub.delivered = Some((next.msg_id().to_vec(), env.now));
                    encrypt_msg(rec, &next)
                }
                Ok((m, None)) => {
                    received(&m, false);
                    BrokerMsg::Ok
                }
                Err(e) => BrokerMsg::Err(e),
            }
        }
    }

    /// SEND: store the message (quota and expiry rules of the reference), deliver it if the
    /// queue was empty, and notify the notifier if asked.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_message(
        &self,
        s: &Session<'_>,
        q: &QueueRef,
        rec: &QueueRec,
        flags: MsgFlags,
        body: Vec<u8>,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) -> BrokerMsg {
        let st = self.store.as_ref();
        let set = &self.settings;
        let stats = &self.stats;
        if body.len() > max_message_length(s.version) {
            stats.msg_sent_large.inc();
            return BrokerMsg::Err(ErrorType::LargeMsg);
        }
        match &rec.status {
            QueueStatus::Off => {
                stats.msg_sent_auth.inc();
                return BrokerMsg::Err(ErrorType::Auth);
            }
            QueueStatus::Blocked(i) => {
                stats.msg_sent_block.inc();
                return BrokerMsg::Err(ErrorType::Blocked((**i).clone()));
            }
            QueueStatus::Active => {}
        }
        if rec.queue_data.is_some() && rec.is_secured_msg_queue() {
            // Link data of a secured messaging queue is no longer needed: remove it.
            let _ = st.delete_link(q);
        }
        if set.expire_messages_on_send {
            if let Some(ttl) = set.message_ttl {
                if let Ok(n) = st.delete_expired(q, env.now - ttl) {
                    stats.msg_expired.add(n as i64);
                    stats.msg_count.add(-(n as i64));
                }
            }
        }
        let msg = Message::Msg {
            msg_id: bytes_from(env.rng, set.msg_id_bytes),
            ts: env.now,
            flags,
            body,
        };
        match st.write_msg(q, msg.clone(), set.msg_queue_quota) {
            Err(e) => BrokerMsg::Err(e),
            Ok(WriteResult::Quota) => {
                stats.msg_sent_quota.inc();
                BrokerMsg::Err(ErrorType::Quota)
            }
            Ok(WriteResult::Stored { was_empty }) => {
                if was_empty {
                    self.try_deliver(rec, &msg, env, fx);
                }
                if flags.notification {
                    if let Some(n) = &rec.notifier {
                        self.enqueue_notification(&rec.recipient_id, n, &msg, env, fx);
                    }
                    stats.msg_sent_ntf.inc();
                    stats.active_queues_ntf.update(&rec.recipient_id);
                }
                stats.msg_sent.inc();
                stats.msg_count.inc();
                stats.active_queues.update(&rec.recipient_id);
                BrokerMsg::Ok
            }
        }
    }

    /// Deliver a message just written to an empty queue, if the recipient is subscribed and
    /// has nothing unacknowledged.
    fn try_deliver(&self, rec: &QueueRec, msg: &Message, env: &mut Env<'_>, fx: &mut Effects) {
        let rid: &[u8] = &rec.recipient_id;
        let Some(c) = self.queue_receiver(rid) else {
            return;
        };
        let mut subs = lock(&c.subs);
        let Some(sub) = subs.get_mut(rid) else {
            return;
        };
        if sub.prohibit || sub.delivered.is_some() {
            return;
        }
        sub.delivered = Some((msg.msg_id().to_vec(), env.now));
        drop(subs);
        self.stats.message_delivered(msg.ts());
        fx.deliveries.push(Delivery {
            to: c.id,
            item: Outgoing::event(rid, encrypt_msg(rec, msg)),
            ntf: None,
        });
    }
}
