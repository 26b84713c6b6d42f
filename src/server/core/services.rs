//! Service subscriptions (SMP v16/v19), as the reference's `Server.hs`.
//!
//! A service session (one that did the certificate handshake) receives for every queue
//! associated with its service: NEW in the session associates the new queue, SUB/NSUB of an
//! existing queue moves it to the service (a plain SUB/NSUB moves it back), and one SUBS/NSUBS
//! subscribes them all, answered `SOKS` with the server's count and IdsHash, then (SUBS) the
//! first pending message of each queue and `ALLS`. One session receives for a service at a
//! time: another session of the same service takes over and the old one is told `ENDS` with
//! what it held. Messages and notifications for associated queues go to the service's session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::ServiceSubState;
use super::{ClientState, Core, Delivery, Effects, Env, Outgoing, Session, Sub};
use crate::protocol::command::Party;
use crate::protocol::errors::ErrorType;
use crate::protocol::handshake::ServiceRole;
use crate::protocol::response::BrokerMsg;
use crate::stats::counters::ServiceStats;
use crate::store::services::{ids_hash_add, AssocChange, ServiceStore, SubParty};
use crate::sync::lock;
use crate::transport::service::PeerService;

/// A queue's associations before a change (see [`Core::queue_services`]).
#[derive(Debug, Default)]
pub struct QueueServices {
    /// The service receiving its messages.
    pub rcv: Option<Vec<u8>>,
    /// The service receiving its notifications.
    pub ntf: Option<Vec<u8>>,
}

/// The session receiving for each service, by party.
#[derive(Default)]
pub struct ServiceSubs {
    rcv: Mutex<HashMap<Vec<u8>, Arc<ClientState>>>,
    ntf: Mutex<HashMap<Vec<u8>, Arc<ClientState>>>,
}

impl ServiceSubs {
    fn map(&self, p: SubParty) -> &Mutex<HashMap<Vec<u8>, Arc<ClientState>>> {
        match p {
            SubParty::Recipient => &self.rcv,
            SubParty::Notifier => &self.ntf,
        }
    }

    /// The session receiving for service `sid`.
    pub fn get(&self, p: SubParty, sid: &[u8]) -> Option<Arc<ClientState>> {
        lock(self.map(p)).get(sid).cloned()
    }

    /// (messaging services, notification services) with a session receiving now.
    pub fn counts(&self) -> (usize, usize) {
        (lock(&self.rcv).len(), lock(&self.ntf).len())
    }
}

/// The party a service role subscribes as.
pub fn role_party(r: ServiceRole) -> Option<SubParty> {
    match r {
        ServiceRole::Messaging => Some(SubParty::Recipient),
        ServiceRole::Notifier => Some(SubParty::Notifier),
        ServiceRole::Proxy => None,
    }
}

fn add_queue(st: &mut ServiceSubState, rid: &[u8], n: i64) {
    st.count += n;
    ids_hash_add(&mut st.hash, rid);
    if st.count <= 0 {
        st.count = 0;
        st.hash = [0; 16];
    }
}

impl Core {
    /// The services and their queues: the store's own (the database), else in memory.
    pub fn services(&self) -> &Arc<ServiceStore> {
        self.services
            .get_or_init(|| self.store.services().unwrap_or_default())
    }

    /// Use `s` (restored from the store log) as the services; false if already set.
    pub fn set_services(&self, s: Arc<ServiceStore>) -> bool {
        self.services.set(s).is_ok()
    }

    fn service_stats(&self, p: SubParty) -> &ServiceStats {
        match p {
            SubParty::Recipient => &self.stats.rcv_services,
            SubParty::Notifier => &self.stats.ntf_services,
        }
    }

    /// Make this session the one receiving for its service; a previous one gets `ENDS` with
    /// what it held (the reference's `cancelServiceSubs`).
    fn become_service_receiver(&self, s: &Session<'_>, p: SubParty, sid: &[u8], fx: &mut Effects) {
        let prev = lock(self.service_subs.map(p)).insert(sid.to_vec(), s.client.clone());
        if let Some(prev) = prev.filter(|c| c.id != s.client.id) {
            let old = std::mem::take(&mut *lock(&prev.service_subs));
            self.service_stats(p).sub_end.inc();
            fx.deliveries.push(Delivery {
                to: prev.id,
                item: Outgoing::event(sid, BrokerMsg::Ends(old.count, old.hash.to_vec())),
                ntf: None,
            });
        }
    }

    fn count_assoc(&self, p: SubParty, c: AssocChange) {
        let st = self.service_stats(p);
        match c {
            AssocChange::New => st.assoc_new.inc(),
            AssocChange::Duplicate => st.assoc_duplicate.inc(),
            AssocChange::Updated => st.assoc_updated.inc(),
            AssocChange::Removed => st.assoc_removed.inc(),
            AssocChange::Unchanged => {}
        }
    }

    /// A queue leaves service `sid`: the session receiving for it forgets the queue (`qid`:
    /// the ID its IdsHash has) and, if it is not this session, is told `msg` (END or DELD)
    /// about `entity`.
    #[allow(clippy::too_many_arguments)]
    fn leave_service(
        &self,
        s: &Session<'_>,
        p: SubParty,
        sid: &[u8],
        rid: &[u8],
        qid: &[u8],
        ended: Option<(&[u8], BrokerMsg)>,
        fx: &mut Effects,
    ) {
        let Some(c) = self.service_subs.get(p, sid) else {
            return;
        };
        add_queue(&mut lock(&c.service_subs), qid, -1);
        if p == SubParty::Recipient {
            lock(&c.subs).remove(rid);
        }
        if let (Some((entity, msg)), false) = (ended, c.id == s.client.id) {
            fx.deliveries.push(Delivery {
                to: c.id,
                item: Outgoing::event(entity, msg),
                ntf: None,
            });
        }
    }

    /// SUB/NSUB of queue `rid` (entity `ent`: the recipient or notifier ID, which is also
    /// what the service's IdsHash has): in a service session the queue joins the service;
    /// otherwise a queue associated with a service leaves it (its session gets END).
    pub(super) fn sub_association(
        &self,
        s: &Session<'_>,
        p: SubParty,
        rid: &[u8],
        ent: &[u8],
        fx: &mut Effects,
    ) -> Result<Option<Vec<u8>>, ErrorType> {
        let svcs = self.services();
        let prev = svcs.service_of(p, rid)?;
        let mine = s.client.service.get().map(|x| x.id.clone());
        if prev == mine {
            if let Some(sid) = &mine {
                self.count_assoc(p, AssocChange::Duplicate);
                self.become_service_receiver(s, p, sid, fx);
            }
            return Ok(mine);
        }
        let change = svcs.set(p, rid, ent, mine.as_deref())?;
        self.count_assoc(p, change);
        if let Some(old) = &prev {
            self.leave_service(s, p, old, rid, ent, Some((ent, BrokerMsg::End)), fx);
        }
        if let Some(sid) = &mine {
            self.become_service_receiver(s, p, sid, fx);
            add_queue(&mut lock(&s.client.service_subs), ent, 1);
            if p == SubParty::Recipient {
                // A plain subscriber of this queue ends: the service receives now.
                if let Some(c) = self.subs.take_queue(rid) {
                    if c.id != s.client.id {
                        lock(&c.subs).remove(rid);
                        self.stats.q_sub_end.inc();
                        fx.deliveries.push(Delivery {
                            to: c.id,
                            item: Outgoing::event(rid, BrokerMsg::End),
                            ntf: None,
                        });
                    }
                }
            } else if let Some(c) = self.subs.take_notifier(ent) {
                lock(&c.ntf_subs).remove(ent);
                if c.id != s.client.id {
                    fx.deliveries.push(Delivery {
                        to: c.id,
                        item: Outgoing::event(ent, BrokerMsg::End),
                        ntf: None,
                    });
                }
            }
        }
        Ok(mine)
    }

    /// NEW in a messaging service session: the queue belongs to the service (and, when
    /// subscribed, counts in the session's subscription).
    pub(super) fn new_queue_service(
        &self,
        s: &Session<'_>,
        svc: &PeerService,
        rid: &[u8],
        subscribe: bool,
        fx: &mut Effects,
    ) -> Result<(), ErrorType> {
        self.services()
            .set(SubParty::Recipient, rid, rid, Some(&svc.id))?;
        if subscribe {
            self.become_service_receiver(s, SubParty::Recipient, &svc.id, fx);
            add_queue(&mut lock(&s.client.service_subs), rid, 1);
        }
        Ok(())
    }

    /// The session that receives messages of queue `rid`: its service's, else its
    /// subscriber. A service session gets a delivery subscription for the queue on demand.
    pub(super) fn queue_receiver(&self, rid: &[u8]) -> Option<Arc<ClientState>> {
        // a failing database reads as "no service": the delivery falls back to the subscriber
        match self
            .services()
            .service_of(SubParty::Recipient, rid)
            .ok()
            .flatten()
        {
            Some(sid) => {
                let c = self.service_subs.get(SubParty::Recipient, &sid)?;
                lock(&c.subs)
                    .entry(rid.to_vec())
                    .or_insert_with(Sub::subscribed);
                Some(c)
            }
            None => self.subs.queue(rid),
        }
    }

    /// The session that receives notifications of queue `rid` (notifier `nid`).
    pub(super) fn ntf_receiver(&self, rid: &[u8], nid: &[u8]) -> Option<Arc<ClientState>> {
        match self
            .services()
            .service_of(SubParty::Notifier, rid)
            .ok()
            .flatten()
        {
            Some(sid) => self.service_subs.get(SubParty::Notifier, &sid),
            None => self.subs.notifier(nid),
        }
    }

    /// The services queue `rid` is associated with (messages, notifications), read before a
    /// change that ends them: in the database the change itself clears them.
    pub(super) fn queue_services(&self, rid: &[u8]) -> QueueServices {
        let svcs = self.services();
        let get = |p| svcs.service_of(p, rid).ok().flatten();
        QueueServices {
            rcv: get(SubParty::Recipient),
            ntf: get(SubParty::Notifier),
        }
    }

    /// A queue (notifier `nid`) was deleted: its associations `was` go, and the service
    /// sessions receiving for it are told DELD.
    pub(super) fn service_queue_deleted(
        &self,
        s: &Session<'_>,
        rid: &[u8],
        nid: Option<&[u8]>,
        was: QueueServices,
        fx: &mut Effects,
    ) {
        if let Some(sid) = was.rcv {
            self.services().forget(SubParty::Recipient, rid, rid);
            self.leave_service(
                s,
                SubParty::Recipient,
                &sid,
                rid,
                rid,
                Some((rid, BrokerMsg::Deld)),
                fx,
            );
        }
        if let Some(nid) = nid {
            self.service_notifier_gone(s, rid, nid, was.ntf, fx);
        }
    }

    /// A queue's notifier `nid` was removed or replaced: its notification association `was`
    /// goes.
    pub(super) fn service_notifier_gone(
        &self,
        s: &Session<'_>,
        rid: &[u8],
        nid: &[u8],
        was: Option<Vec<u8>>,
        fx: &mut Effects,
    ) {
        if let Some(sid) = was {
            self.services().forget(SubParty::Notifier, rid, nid);
            self.leave_service(s, SubParty::Notifier, &sid, rid, nid, None, fx);
        }
    }

    /// SUBS / NSUBS: subscribe every queue of the session's service.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe_service(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        ent: &[u8],
        p: SubParty,
        expected: i64,
        expected_hash: &[u8],
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        // verification admits SUBS/NSUBS only in a service session of the matching role
        let Some(svc) = s.client.service.get() else {
            return fx.err(corr, ent, ErrorType::Internal);
        };
        let already = *lock(&s.client.service_subs);
        if already.subscribed {
            return fx.reply(
                corr,
                ent,
                BrokerMsg::Soks(already.count, already.hash.to_vec()),
            );
        }
        let (count, hash) = match self.services().count_hash(p, &svc.id) {
            Ok(x) => x,
            Err(e) => return fx.err(corr, ent, e),
        };
        let queues = match self.services().queues_of(p, &svc.id) {
            Ok(q) => q,
            Err(e) => return fx.err(corr, ent, e),
        };
        *lock(&s.client.service_subs) = ServiceSubState {
            subscribed: true,
            count,
            hash,
        };
        let st = self.service_stats(p);
        let diff = count - expected;
        // `expected == -1`: a notification server from before v19 sends no count
        if expected == -1 || (diff == 0 && hash.as_slice() == expected_hash) {
            st.sub_ok.inc();
        } else if diff > 0 {
            st.sub_more.inc();
            st.sub_more_total.add(diff);
        } else if diff < 0 {
            st.sub_fewer.inc();
            st.sub_fewer_total.add(-diff);
        } else {
            st.sub_diff.inc();
        }
        st.sub_count.inc();
        st.sub_queues.add(count);
        self.become_service_receiver(s, p, &svc.id, fx);
        fx.reply(corr, ent, BrokerMsg::Soks(count, hash.to_vec()));
        match p {
            SubParty::Recipient => fx.jobs.push(super::Job::ServiceMessages { queues }),
            SubParty::Notifier => {
                for rid in queues {
                    let nid = self
                        .store
                        .get_queue(Party::Recipient, &rid)
                        .and_then(|q| q.rec().ok())
                        .and_then(|r| r.body.notifier.map(|n| n.notifier_id));
                    if let Some(nid) = nid {
                        let pending = self.take_pending_ntfs(&nid, env);
                        fx.follow.extend(pending);
                    }
                }
            }
        }
    }

    /// One part of a SUBS delivery: the first message of each of these queues that has one
    /// and no delivery in this session yet (the session appends ALLS after the last part).
    pub fn service_messages(
        &self,
        client: &Arc<ClientState>,
        queues: &[Vec<u8>],
        now: i64,
    ) -> Vec<Outgoing> {
        let (mut out, mut dups) = (Vec::new(), 0i64);
        for rid in queues {
            let Some(q) = self.store.get_queue(Party::Recipient, rid) else {
                continue;
            };
            let Ok(rec) = q.rec() else { continue };
            match self.store.peek_msg(&q) {
                Ok(Some(m)) => {
                    let mut subs = lock(&client.subs);
                    if subs.contains_key(rid) {
                        dups += 1;
                        continue;
                    }
                    subs.insert(
                        rid.clone(),
                        Sub {
                            prohibit: false,
                            delivered: Some((m.msg_id().to_vec(), now)),
                        },
                    );
                    drop(subs);
                    self.stats.message_delivered(m.ts());
                    out.push(Outgoing::event(rid, super::encrypt_msg(&rec, &m)));
                }
                Ok(None) => {}
                Err(e) => out.push(Outgoing::event(rid, BrokerMsg::Err(e))),
            }
        }
        let msgs = out
            .iter()
            .filter(|o| matches!(o.msg, BrokerMsg::Msg(..)))
            .count() as i64;
        self.stats.rcv_services_sub_msg.add(msgs);
        self.stats.rcv_services_sub_duplicate.add(dups);
        out
    }

    /// A closing service session stops receiving for its service (unless another took over).
    pub(super) fn service_disconnect(&self, c: &Arc<ClientState>) {
        let Some(p) = c
            .service
            .get()
            .and_then(|x| role_party(x.role).map(|p| (p, x)))
        else {
            return;
        };
        let (p, svc) = p;
        let mut m = lock(self.service_subs.map(p));
        if m.get(&svc.id).is_some_and(|x| x.id == c.id) {
            m.remove(&svc.id);
        }
    }
}
