//! Notification commands: NKEY, NDEL and NSUB, and the notifications SEND creates.
//!
//! A notification (NMSG) goes to the notifier's subscriber at once; without one, or when that
//! connection cannot take more, it waits in `pending_ntfs` until the next NSUB or its expiry.

use super::{Core, Delivery, Effects, Env, Outgoing, Session};
use crate::crypto::cbox;
use crate::crypto::keys::{DhKeyPair, PublicKey};
use crate::crypto::random::{bytes_from, nonce_from};
use crate::protocol::encoding::Encoder;
use crate::protocol::errors::ErrorType;
use crate::protocol::response::BrokerMsg;
use crate::store::services::SubParty;
use crate::store::{Message, NtfCreds, QueueRef};
use crate::sync::lock;

/// A notification waiting for the notification server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNtf {
    /// Nonce of the encrypted metadata.
    pub nonce: [u8; 24],
    /// Encrypted (message ID, timestamp).
    pub enc_meta: Vec<u8>,
    /// When it was created (for expiry).
    pub ts: i64,
    /// The message it announces (saved with it at shutdown).
    pub msg_id: Vec<u8>,
}

impl Core {
    /// NKEY: add or replace the queue's notifier; a replaced one loses its pending
    /// notifications and its subscriber is told DELD.
    pub(super) fn add_notifier(
        &self,
        s: &Session<'_>,
        q: &QueueRef,
        nkey: PublicKey,
        ndh: PublicKey,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) -> BrokerMsg {
        let kp = DhKeyPair::generate_from(env.rng);
        let Ok(secret) = kp.dh(&ndh) else {
            return BrokerMsg::Err(ErrorType::Internal);
        };
        let was = self.queue_services(q.recipient_id()).ntf;
        for _ in 0..3 {
            let nid = bytes_from(env.rng, self.settings.queue_id_bytes);
            let creds = NtfCreds {
                notifier_id: nid.clone(),
                notifier_key: nkey.clone(),
                rcv_ntf_dh_secret: secret,
            };
            match self.store.add_notifier(q, creds) {
                Err(ErrorType::Duplicate) => continue,
                Err(e) => return BrokerMsg::Err(e),
                Ok(old) => {
                    self.stats.ntf_created.inc();
                    if let Some(o) = old {
                        self.service_notifier_gone(s, q.recipient_id(), &o.notifier_id, was, fx);
                        self.drop_pending_ntfs(&o.notifier_id);
                        self.end_ntf_subscriber(s, &o.notifier_id, fx);
                    }
                    return BrokerMsg::Nid(nid, kp.public());
                }
            }
        }
        BrokerMsg::Err(ErrorType::Internal)
    }

    /// NDEL: remove the notifier.
    pub(super) fn delete_notifier(
        &self,
        s: &Session<'_>,
        q: &QueueRef,
        fx: &mut Effects,
    ) -> BrokerMsg {
        let was = self.queue_services(q.recipient_id()).ntf;
        match self.store.delete_notifier(q) {
            Ok(Some(n)) => {
                self.service_notifier_gone(s, q.recipient_id(), &n.notifier_id, was, fx);
                self.drop_pending_ntfs(&n.notifier_id);
                self.stats.ntf_deleted.inc();
                self.end_ntf_subscriber(s, &n.notifier_id, fx);
                BrokerMsg::Ok
            }
            Ok(None) => BrokerMsg::Ok,
            Err(e) => BrokerMsg::Err(e),
        }
    }

    /// NSUB: subscribe this connection to the notifier (END to a previous subscriber) and
    /// hand it the notifications that waited.
    pub(super) fn subscribe_notifications(
        &self,
        s: &Session<'_>,
        rid: &[u8],
        nid: &[u8],
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) -> BrokerMsg {
        // A service session takes the queue's notifications into its service.
        let service_id = match self.sub_association(s, SubParty::Notifier, rid, nid, fx) {
            Ok(id) => id,
            Err(e) => return BrokerMsg::Err(e),
        };
        if service_id.is_none() {
            let prev = self.subs.set_notifier(nid, s.client);
            if lock(&s.client.ntf_subs).insert(nid.to_vec()) {
                self.stats.ntf_sub.inc();
            } else {
                self.stats.ntf_sub_duplicate.inc();
            }
            if let Some(p) = prev {
                lock(&p.ntf_subs).remove(nid);
                fx.deliveries.push(Delivery {
                    to: p.id,
                    item: Outgoing::event(nid, BrokerMsg::End),
                    ntf: None,
                });
            }
        }
        let pending = self.take_pending_ntfs(nid, env);
        fx.follow.extend(pending);
        BrokerMsg::Sok(service_id)
    }

    /// The live notifications waiting for notifier `nid`, as NMSGs (expired ones are counted
    /// and dropped).
    pub(super) fn take_pending_ntfs(&self, nid: &[u8], env: &mut Env<'_>) -> Vec<Outgoing> {
        let Some(ntfs) = lock(&self.pending_ntfs).remove(nid) else {
            return Vec::new();
        };
        let stats = &self.stats;
        let cutoff = env.now - self.settings.ntf_ttl;
        let n = ntfs.len() as i64;
        let live = ntfs.iter().filter(|x| x.ts >= cutoff).count() as i64;
        stats.ntf_count.add(-n);
        stats.msg_ntf_expired.add(n - live);
        if live > 0 {
            stats.msg_ntfs.add(live);
            stats.msg_ntfs_b.add(live / 80 + 1);
        }
        ntfs.into_iter()
            .filter(|n| n.ts >= cutoff)
            .map(|n| Outgoing::event(nid, BrokerMsg::Nmsg(n.nonce, n.enc_meta)))
            .collect()
    }

    /// The NMSG for a message just stored: to the notifier's subscriber, else kept pending.
    pub(super) fn enqueue_notification(
        &self,
        rid: &[u8],
        n: &NtfCreds,
        msg: &Message,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        let nonce = nonce_from(env.rng);
        let mut e = Encoder::new();
        e.short_bytes(msg.msg_id()).i64(msg.ts());
        let Ok(enc_meta) = cbox::cb_encrypt(&n.rcv_ntf_dh_secret, &nonce, &e.finish(), 128) else {
            return;
        };
        let nid = &n.notifier_id;
        let pending = PendingNtf {
            nonce,
            enc_meta,
            ts: env.now,
            msg_id: msg.msg_id().to_vec(),
        };
        match self.ntf_receiver(rid, nid) {
            Some(c) if c.is_connected() => {
                self.stats.msg_ntfs.inc();
                self.stats.msg_ntfs_b.inc();
                fx.deliveries.push(Delivery {
                    to: c.id,
                    item: Outgoing::event(
                        nid,
                        BrokerMsg::Nmsg(pending.nonce, pending.enc_meta.clone()),
                    ),
                    ntf: Some((nid.clone(), pending)),
                });
            }
            _ => {
                self.stats.msg_ntf_no_sub.inc();
                self.keep_pending(nid, pending);
            }
        }
    }

    /// Keep a notification that its subscriber could not take (slow or gone), so the next
    /// NSUB delivers it: nothing is lost to a notification server that falls behind.
    pub fn requeue_ntf(&self, nid: &[u8], ntf: PendingNtf) {
        self.stats.msg_ntfs.add(-1);
        self.stats.msg_ntf_no_sub.inc();
        self.keep_pending(nid, ntf);
    }

    fn keep_pending(&self, nid: &[u8], ntf: PendingNtf) {
        self.stats.ntf_count.inc();
        lock(&self.pending_ntfs)
            .entry(nid.to_vec())
            .or_default()
            .push(ntf);
    }

    /// Drop the notifications waiting for a removed notifier.
    pub(super) fn drop_pending_ntfs(&self, nid: &[u8]) {
        if let Some(v) = lock(&self.pending_ntfs).remove(nid) {
            self.stats.ntf_count.add(-(v.len() as i64));
        }
    }

    /// Tell the notification subscriber of a removed notifier that it is gone (DELD).
    pub(super) fn end_ntf_subscriber(&self, s: &Session<'_>, nid: &[u8], fx: &mut Effects) {
        if let Some(c) = self.subs.take_notifier(nid) {
            lock(&c.ntf_subs).remove(nid);
            if c.id != s.client.id {
                fx.deliveries.push(Delivery {
                    to: c.id,
                    item: Outgoing::event(nid, BrokerMsg::Deld),
                    ntf: None,
                });
            }
        }
    }
}
