//! A block of SUBs against a store that pays a round trip per lookup (the database).
//!
//! Clients resubscribe their queues in blocks of up to ~110 SUBs. One by one, each SUB costs
//! two store round trips (find the queue, peek its first message); here the block costs two
//! in all: [`Store::find_queues`] before verifying, [`Store::peek_msgs`] after every SUB of
//! the block took its subscription. Each SUB is verified, counted and answered as it would be
//! alone, and the answers keep the block's order. Peeking only after the subscriptions are
//! taken keeps the race rule of a single SUB: a SEND that lands in between delivers to this
//! connection (and SUB then skips it), one that lands before is seen by the peek.
//!
//! [`Store::find_queues`]: crate::store::Store::find_queues
//! [`Store::peek_msgs`]: crate::store::Store::peek_msgs

use std::sync::Arc;

use super::messages::SubStarted;
use super::{auth, Core, Effects, Env, Outgoing, Session};
use crate::protocol::command::Party;
use crate::protocol::errors::ErrorType;
use crate::protocol::transmission::SignedTransmission;
use crate::store::{Queue, QueueRec};
use crate::sync::lock;

/// A SUB whose subscription is taken, waiting for its queue's first message.
struct Waiting {
    slot: usize,
    corr: Vec<u8>,
    ent: Vec<u8>,
    queue: Arc<Queue>,
    rec: QueueRec,
    started: SubStarted,
}

impl Core {
    /// Verify and apply a block of SUBs with one queue lookup and one peek for the block.
    pub fn receive_subs(
        &self,
        s: &Session<'_>,
        ts: Vec<SignedTransmission>,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        let found = {
            let ids: Vec<&[u8]> = ts.iter().map(|t| t.entity_id.as_slice()).collect();
            self.store.find_queues(Party::Recipient, &ids)
        };
        let mut slots: Vec<Vec<Outgoing>> = Vec::with_capacity(ts.len());
        let mut waiting = Vec::new();
        for (i, t) in ts.into_iter().enumerate() {
            let mut part = Effects::default();
            let lookup = match &found {
                Ok(qs) => Ok(qs.get(i).cloned().flatten()),
                Err(e) => Err(e.clone()),
            };
            let verified =
                auth::verify_found(&s.keys.dh, s.client.service.get(), &t, |_, _| lookup);
            match self.count_verified(&t, verified, i == 0, &mut part) {
                Some(Some((queue, rec))) => {
                    if let Err(e) = self.queue_rules(&t.command, &queue, &rec, env.now) {
                        part.err(&t.corr_id, &t.entity_id, e);
                    } else if let Some(started) =
                        self.subscribe_start(s, &t.corr_id, &t.entity_id, &mut part)
                    {
                        waiting.push(Waiting {
                            slot: i,
                            corr: t.corr_id,
                            ent: t.entity_id,
                            queue,
                            rec,
                            started,
                        });
                    }
                }
                // verification returns a queue for every queue command
                Some(None) => part.err(&t.corr_id, &t.entity_id, ErrorType::Internal),
                None => {}
            }
            slots.push(part.replies);
            fx.deliveries.append(&mut part.deliveries);
            fx.follow.append(&mut part.follow);
            fx.jobs.append(&mut part.jobs);
        }
        if !waiting.is_empty() {
            let mut subs = lock(&s.client.subs);
            let heads = {
                let qs: Vec<&Queue> = waiting.iter().map(|w| w.queue.as_ref()).collect();
                self.store.peek_msgs(&qs)
            };
            for (w, head) in waiting.into_iter().zip(heads) {
                let mut part = Effects::default();
                self.subscribe_finish(
                    &mut subs, &w.corr, &w.ent, &w.rec, w.started, head, env, &mut part,
                );
                if let Some(slot) = slots.get_mut(w.slot) {
                    slot.append(&mut part.replies);
                }
                fx.follow.append(&mut part.follow);
            }
        }
        fx.replies.extend(slots.into_iter().flatten());
    }
}
