//! Queue commands: NEW, KEY, RKEY, SKEY, OFF (in the dispatch), DEL and QUE.

use sha3::{Digest, Sha3_384};

use super::{Core, Effects, Env, Outgoing, Session, Sub};
use crate::crypto::keys::{DhKeyPair, PublicKey};
use crate::crypto::random::bytes_from;
use crate::protocol::command::{NewQueueReq, QueueMode, QueueReqData, SubscriptionMode};
use crate::protocol::errors::{CommandError, ErrorType};
use crate::protocol::response::{BrokerMsg, QueueIdsKeys};
use crate::store::{IdKey, Message, NtfCreds, QueueBody, QueueRec, QueueRef, QueueStatus};
use crate::sync::lock;

/// Recipient keys a contact queue may hold (RKEY). The reference's clients use one key per
/// group member with access to the queue; beyond this, RKEY is refused, which also bounds the
/// signature checks one recipient command can cost (every key is tried, for constant time).
pub const MAX_RECIPIENT_KEYS: usize = 16;

impl Core {
    /// NEW: create a queue with fresh IDs (retried on the rare collision) and, in
    /// `Subscribe` mode, subscribe this connection to it.
    pub(super) fn new_queue(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        req: NewQueueReq,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) -> BrokerMsg {
        let set = &self.settings;
        let service = s.client.service.get();
        if service.is_some() && req.sub_mode == SubscriptionMode::OnlyCreate {
            return BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited));
        }
        let allowed = set.allow_new_queues
            && set
                .create_password
                .as_ref()
                .is_none_or(|p| req.auth.as_ref() == Some(p));
        if !allowed {
            return BrokerMsg::Err(ErrorType::Auth);
        }
        let srv_dh = DhKeyPair::generate_from(env.rng);
        let Ok(rcv_dh_secret) = srv_dh.dh(&req.rcv_dh_key) else {
            return BrokerMsg::Err(ErrorType::Internal);
        };
        let ntf = match &req.ntf_creds {
            Some((nkey, ndh)) => {
                let kp = DhKeyPair::generate_from(env.rng);
                let Ok(secret) = kp.dh(ndh) else {
                    return BrokerMsg::Err(ErrorType::Internal);
                };
                Some((nkey.clone(), secret, kp.public()))
            }
            None => None,
        };
        let id_len = set.queue_id_bytes;
        // A client-chosen sender ID must be the hash of the correlation ID, so creating a queue
        // can't be used to probe whether some ID exists.
        let expected_sid = Sha3_384::digest(corr)[..24].to_vec();
        let queue_mode = req.queue_req_data.as_ref().map(|d| d.mode());
        for _ in 0..3 {
            let (sender_id, client_ids, queue_data) = match &req.queue_req_data {
                Some(QueueReqData::Messaging(Some((sid, d)))) => (
                    sid.clone(),
                    true,
                    Some((bytes_from(env.rng, id_len), d.clone())),
                ),
                Some(QueueReqData::Contact(Some((lid, sid, d)))) => {
                    (sid.clone(), true, Some((lid.clone(), d.clone())))
                }
                Some(QueueReqData::Messaging(None) | QueueReqData::Contact(None)) | None => {
                    (bytes_from(env.rng, id_len), false, None)
                }
            };
            if client_ids && sender_id != expected_sid {
                return BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited));
            }
            let rid = bytes_from(env.rng, id_len);
            let notifier = ntf.as_ref().map(|(k, secret, _)| NtfCreds {
                notifier_id: bytes_from(env.rng, id_len),
                notifier_key: k.clone(),
                rcv_ntf_dh_secret: *secret,
            });
            let rec = QueueRec {
                recipient_id: IdKey::new(&rid),
                sender_id: IdKey::new(&sender_id),
                body: QueueBody {
                    recipient_keys: req.rcv_auth_key.clone().into(),
                    rcv_dh_secret,
                    sender_key: None,
                    queue_mode,
                    queue_data: queue_data.clone().map(Box::new),
                    notifier: notifier.clone().map(Box::new),
                    status: QueueStatus::Active,
                    updated_at: Some(env.now.div_euclid(86400) * 86400).into(),
                },
            };
            match self.store.add_queue(rec) {
                Err(ErrorType::Duplicate) if client_ids => return BrokerMsg::Err(ErrorType::Auth),
                Err(ErrorType::Duplicate) => continue,
                Err(e) => return BrokerMsg::Err(e),
                Ok(_) => {
                    self.stats.q_created.inc();
                    self.stats.q_count.inc();
                    if notifier.is_some() {
                        self.stats.ntf_new_created.inc();
                    }
                    let subscribe = req.sub_mode == SubscriptionMode::Subscribe;
                    if let Some(svc) = service {
                        if let Err(e) = self.new_queue_service(s, svc, &rid, subscribe, fx) {
                            return BrokerMsg::Err(e);
                        }
                    } else if subscribe {
                        lock(&s.client.subs).insert(rid.clone(), Sub::subscribed());
                        // a fresh ID has no other subscriber to end
                        let _ = self.subs.set_queue(&rid, s.client);
                    }
                    return BrokerMsg::Ids(QueueIdsKeys {
                        rcv_id: rid,
                        snd_id: sender_id,
                        rcv_public_dh_key: srv_dh.public(),
                        queue_mode,
                        link_id: queue_data.map(|(l, _)| l),
                        service_id: service.map(|x| x.id.clone()),
                        ntf_creds: notifier
                            .zip(ntf.as_ref())
                            .map(|(n, (_, _, pk))| (n.notifier_id, pk.clone())),
                    });
                }
            }
        }
        BrokerMsg::Err(ErrorType::Internal)
    }

    /// Secure a queue (KEY, SKEY, LKEY), counting first-time securing.
    pub(super) fn secure(&self, q: &QueueRef, k: PublicKey) -> Result<(), ErrorType> {
        let was = q.rec().map(|r| r.sender_key.is_some()).unwrap_or(true);
        let r = self.store.secure_queue(q, k);
        if r.is_ok() && !was {
            self.stats.q_secured.inc();
        }
        r
    }

    /// RKEY: replace the recipient keys of a contact queue (bounded, see
    /// [`MAX_RECIPIENT_KEYS`]).
    pub(super) fn rkey(&self, q: &QueueRef, rec: &QueueRec, ks: Vec<PublicKey>) -> BrokerMsg {
        if rec.queue_mode != Some(QueueMode::Contact) {
            return BrokerMsg::Err(ErrorType::Auth);
        }
        if ks.len() > MAX_RECIPIENT_KEYS {
            return BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited));
        }
        match self.store.update_keys(q, ks) {
            Ok(()) => BrokerMsg::Ok,
            Err(e) => BrokerMsg::Err(e),
        }
    }

    /// SKEY: the sender secures a messaging queue itself (v9+).
    pub(super) fn skey(&self, q: &QueueRef, rec: &QueueRec, k: PublicKey) -> BrokerMsg {
        if rec.queue_mode != Some(QueueMode::Messaging) {
            return BrokerMsg::Err(ErrorType::Auth);
        }
        match self.secure(q, k) {
            Ok(()) => BrokerMsg::Ok,
            Err(e) => BrokerMsg::Err(e),
        }
    }

    /// DEL: delete the queue, end its subscriptions elsewhere (DELD) and its notifier.
    pub(super) fn delete_queue(
        &self,
        s: &Session<'_>,
        ent: &[u8],
        q: &QueueRef,
        fx: &mut Effects,
    ) -> BrokerMsg {
        let was = self.queue_services(ent);
        match self.store.delete_queue(q) {
            Ok((rec, _)) => {
                self.stats.queue_deleted(rec.sender_key.is_some());
                let nid = rec.notifier.as_ref().map(|n| n.notifier_id.as_slice());
                self.service_queue_deleted(s, ent, nid, was, fx);
                lock(&s.client.subs).remove(ent);
                if let Some(c) = self.subs.take_queue(ent) {
                    if c.id != s.client.id {
                        lock(&c.subs).remove(ent);
                        fx.deliveries.push(super::Delivery {
                            to: c.id,
                            item: Outgoing::event(ent, BrokerMsg::Deld),
                            ntf: None,
                        });
                    }
                }
                if let Some(n) = rec.body.notifier {
                    self.drop_pending_ntfs(&n.notifier_id);
                    self.end_ntf_subscriber(s, &n.notifier_id, fx);
                }
                BrokerMsg::Ok
            }
            Err(e) => BrokerMsg::Err(e),
        }
    }

    /// QUE: the queue's state as JSON, as the reference's `QueueInfo` (debugging aid).
    pub(super) fn queue_info(
        &self,
        s: &Session<'_>,
        ent: &[u8],
        q: &QueueRef,
        rec: &QueueRec,
    ) -> BrokerMsg {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let sub = lock(&s.client.subs).get(ent).cloned();
        let size = self.store.queue_size(q).unwrap_or(0);
        let msg = self.store.peek_msg(q).ok().flatten();
        let mut info = serde_json::json!({
            "qiSnd": rec.sender_key.is_some(),
            "qiNtf": rec.notifier.is_some(),
            "qiSize": size,
        });
        if let Some(sub) = sub {
            let mut qs = serde_json::json!({
                "qSubThread": if sub.prohibit { "prohibitSub" } else { "noSub" },
            });
            if let Some((d, _)) = &sub.delivered {
                qs["qDelivered"] = b64(d).into();
            }
            info["qiSub"] = qs;
        }
        if let Some(m) = msg {
            info["qiMsg"] = serde_json::json!({
                "msgId": b64(m.msg_id()),
                "msgTs": time_iso(m.ts()),
                "msgType": if matches!(m, Message::Quota { .. }) { "quota" } else { "message" },
            });
        }
        BrokerMsg::Info(info.to_string().into_bytes())
    }
}

/// ISO 8601 UTC time for JSON, as aeson prints `UTCTime`.
fn time_iso(secs: i64) -> String {
    format!("{}Z", crate::clock::iso_datetime(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_time() {
        assert_eq!(super::time_iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time_iso(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
