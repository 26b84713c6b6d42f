//! A block of SUBs against a store that pays a round trip per lookup (the database).
//!
//! Clients resubscribe their queues in blocks of up to ~110 SUBs. One by one, each SUB costs
//! two or three store round trips (find the queue; on the first use of the day record it, a
//! commit; peek its first message); here the block costs three in all: [`Store::find_queues`]
//! before verifying, [`Store::update_times`] for the queues not used yet today, and
//! [`Store::peek_msgs`] after every SUB of the block took its subscription. Each SUB is verified, counted and answered as it would be
//! alone, and the answers keep the block's order. Peeking only after the subscriptions are
//! taken keeps the race rule of a single SUB: a SEND that lands in between delivers to this
//! connection (and SUB then skips it), one that lands before is seen by the peek.
//!
//! [`Store::find_queues`]: crate::store::Store::find_queues
//! [`Store::update_times`]: crate::store::Store::update_times
//! [`Store::peek_msgs`]: crate::store::Store::peek_msgs

use super::messages::SubStarted;
use super::{auth, day_to_record, status_rule, Core, Effects, Env, Outgoing, Session};
use crate::protocol::command::Party;
use crate::protocol::errors::ErrorType;
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::SignedTransmission;
use crate::store::{Queue, QueueRec, QueueRef};
use crate::sync::lock;

/// A verified SUB on its way through the block's phases.
struct Waiting {
    /// Its place among the block's answers.
    slot: usize,
    /// The day of use to record, if not yet recorded today.
    today: Option<i64>,
    corr: Vec<u8>,
    ent: Vec<u8>,
    queue: QueueRef,
    rec: QueueRec,
    /// `Some(Ok)` once the subscription is taken; `Some(Err)` once answered with an error.
    started: Option<Result<SubStarted, ()>>,
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
        let mut checked = Vec::new();
        for (i, t) in ts.into_iter().enumerate() {
            let mut part = Effects::default();
            let lookup = match &found {
                Ok(qs) => Ok(qs.get(i).cloned().flatten()),
                Err(e) => Err(e.clone()),
            };
            let verified =
                auth::verify_found(&s.keys.dh, s.client.service.get(), &t, |_, _| lookup);
            match self.count_verified(&t, verified, i == 0, &mut part) {
                Some(Some((queue, rec))) => match status_rule(&t.command, &rec) {
                    Err(e) => part.err(&t.corr_id, &t.entity_id, e),
                    Ok(()) => checked.push(Waiting {
                        slot: i,
                        today: day_to_record(&t.command, &rec, env.now),
                        corr: t.corr_id,
                        ent: t.entity_id,
                        queue,
                        rec,
                        started: None,
                    }),
                },
                // verification returns a queue for every queue command
                Some(None) => part.err(&t.corr_id, &t.entity_id, ErrorType::Internal),
                None => {}
            }
            slots.push(part.replies);
            fx.deliveries.append(&mut part.deliveries);
            fx.follow.append(&mut part.follow);
            fx.jobs.append(&mut part.jobs);
        }
        // The day of use of the queues not used yet today: one store call for the block.
        let stale: Vec<usize> = (0..checked.len())
            .filter(|&i| checked[i].today.is_some())
            .collect();
        if let Some(today) = stale.first().and_then(|&i| checked[i].today) {
            let qs: Vec<&Queue> = stale.iter().map(|&i| checked[i].queue.as_ref()).collect();
            let done = self.store.update_times(&qs, today);
            for (&i, r) in stale.iter().zip(done) {
                if let Err(e) = r {
                    let w = &mut checked[i];
                    w.today = None;
                    w.started = Some(Err(()));
                    if let Some(slot) = slots.get_mut(w.slot) {
                        slot.push(Outgoing::new(&w.corr, &w.ent, BrokerMsg::Err(e)));
                    }
                }
            }
        }
        let mut waiting = Vec::with_capacity(checked.len());
        for mut w in checked {
            if w.started.is_some() {
                continue;
            }
            let mut part = Effects::default();
            w.started = self.subscribe_start(s, &w.corr, &w.ent, &mut part).map(Ok);
            if let Some(slot) = slots.get_mut(w.slot) {
                slot.append(&mut part.replies);
            }
            fx.deliveries.append(&mut part.deliveries);
            fx.follow.append(&mut part.follow);
            fx.jobs.append(&mut part.jobs);
            if w.started.is_some() {
                waiting.push(w);
            }
        }
        if !waiting.is_empty() {
            let mut subs = lock(&s.client.subs);
            let heads = {
                let qs: Vec<&Queue> = waiting.iter().map(|w| w.queue.as_ref()).collect();
                self.store.peek_msgs(&qs)
            };
            for (w, head) in waiting.into_iter().zip(heads) {
                let Some(Ok(started)) = w.started else {
                    continue;
                };
                let mut part = Effects::default();
                self.subscribe_finish(
                    &mut subs, &w.corr, &w.ent, &w.rec, started, head, env, &mut part,
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
