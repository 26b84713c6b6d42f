//! Applying verified commands to the store and subscriptions, as the reference's
//! `processCommand` does, producing responses and messages for this and other connections.

use std::sync::Arc;

use rand::RngCore;
use sha3::{Digest, Sha3_384};

use super::state::{lock, ClientHandle, Outgoing, PendingNtf, ServerState, Sub};
use super::verify::Verified;
use crate::crypto::cbox;
use crate::crypto::keys::{DhKeyPair, PublicKey};
use crate::protocol::command::{
    Command, MsgFlags, NewQueueReq, QueueMode, QueueReqData, SubscriptionMode,
};
use crate::protocol::encoding::Encoder;
use crate::protocol::errors::{CommandError, ErrorType, ProxyError};
use crate::protocol::response::{BrokerMsg, QueueIdsKeys};
use crate::protocol::version::{max_message_length, MAX_RCV_MESSAGE_PADDED};
use crate::store::{Message, NtfCreds, Queue, QueueRec, QueueStatus, WriteResult};

/// Current Unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Random bytes for IDs and nonces.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

/// The per-connection context commands run in.
pub struct Conn<'a> {
    /// Shared server state.
    pub state: &'a ServerState,
    /// This connection.
    pub client: &'a Arc<ClientHandle>,
    /// The connection's negotiated version.
    pub version: u16,
    /// Session material for the relay role (absent inside a forwarded command).
    pub relay: Option<&'a super::forward::RelaySession<'a>>,
}

/// Responses to this connection, then messages that follow them.
#[derive(Default, Debug)]
pub struct Output {
    /// Command responses, in order.
    pub responses: Vec<Outgoing>,
    /// Messages delivered as a result (MSG after SUB/ACK).
    pub msgs: Vec<Outgoing>,
}

fn err(corr: &[u8], ent: &[u8], e: ErrorType) -> Outgoing {
    (corr.to_vec(), ent.to_vec(), BrokerMsg::Err(e))
}

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

impl Conn<'_> {
    /// Process one verified transmission.
    pub fn process(
        &self,
        corr: &[u8],
        ent: &[u8],
        cmd: Command,
        verified: Verified,
        out: &mut Output,
    ) {
        let resp = match cmd {
            Command::Ping => (corr.to_vec(), Vec::new(), BrokerMsg::Pong),
            Command::New(req) => (corr.to_vec(), ent.to_vec(), self.new_queue(corr, req)),
            Command::Prxy(srv, auth) => {
                let s = &self.state.settings;
                let allowed = s.allow_proxy
                    && s.create_password
                        .as_ref()
                        .is_none_or(|p| auth.as_ref() == Some(p));
                if !allowed {
                    err(corr, ent, ErrorType::Proxy(ProxyError::BasicAuth))
                } else {
                    let agent = self.state.proxy.clone();
                    let stats = self.state.stats.clone();
                    let own = srv
                        .hosts
                        .first()
                        .is_some_and(|h| super::counting::is_own_server(&s.own_server_domains, h));
                    return self.spawn_proxied(corr, ent, async move {
                        let (r, connected) = agent.session_key_connected(&srv).await;
                        let (all, mine) = (&stats.p_relays, &stats.p_relays_own);
                        super::counting::relay_session_result(all, mine, own, &r, connected);
                        r
                    });
                }
            }
            Command::Pfwd(v, k, enc) => match self.state.proxy.by_session(ent) {
                None => {
                    let e = ErrorType::Proxy(ProxyError::NoSession);
                    let stats = &self.state.stats;
                    super::counting::proxy_result(&stats.p_msg_fwds, &BrokerMsg::Err(e.clone()));
                    err(corr, ent, e)
                }
                Some(r) if r.version() < crate::protocol::version::SENDING_PROXY => {
                    let stats = &self.state.stats;
                    for p in [&stats.p_msg_fwds]
                        .into_iter()
                        .chain(self.own_session(ent).then_some(&stats.p_msg_fwds_own))
                    {
                        p.requests.inc();
                        p.errors_compat.inc();
                    }
                    err(
                        corr,
                        ent,
                        ErrorType::Proxy(crate::protocol::errors::ProxyError::Broker(
                            crate::protocol::errors::BrokerError::Transport(
                                crate::protocol::errors::TransportError::Version,
                            ),
                        )),
                    )
                }
                Some(r) => {
                    let corr2 = corr.to_vec();
                    let stats = self.state.stats.clone();
                    let own = self.own_session(ent);
                    return self.spawn_proxied(corr, ent, async move {
                        let res = super::proxy::ProxyAgent::forward(&r, &corr2, v, &k, &enc).await;
                        let (all, mine) = (&stats.p_msg_fwds, &stats.p_msg_fwds_own);
                        super::counting::proxy_result_own(all, mine, own, &res);
                        res
                    });
                }
            },
            Command::Rfwd(enc) => match self.relay {
                Some(r) => {
                    self.state.stats.p_msg_fwds_recv.inc();
                    match self.forwarded(r, corr, &enc) {
                        Some(m) => (corr.to_vec(), Vec::new(), m),
                        None => return,
                    }
                }
                None => err(corr, ent, ErrorType::Cmd(CommandError::Prohibited)),
            },
            Command::Subs(..) | Command::Nsubs(..) => err(corr, ent, ErrorType::Service),
            Command::Rslv(d) => match super::names::direct(self, corr, d) {
                Some(r) => r,
                None => return,
            },
            cmd => match verified {
                None => err(corr, ent, ErrorType::Internal),
                Some((q, rec)) => return self.queue_command(corr, ent, cmd, q, rec, out),
            },
        };
        out.responses.push(resp);
    }

    /// Whether a proxy session's relay is one of the operator's own servers.
    fn own_session(&self, session_id: &[u8]) -> bool {
        self.state.proxy.session_host(session_id).is_some_and(|h| {
            super::counting::is_own_server(&self.state.settings.own_server_domains, &h)
        })
    }

    /// Run a proxied command off the connection's read loop; its answer is sent when ready,
    /// as the reference forks proxied commands.
    fn spawn_proxied(
        &self,
        corr: &[u8],
        ent: &[u8],
        fut: impl std::future::Future<Output = BrokerMsg> + Send + 'static,
    ) {
        let client = self.client.clone();
        let (corr, ent) = (corr.to_vec(), ent.to_vec());
        tokio::spawn(async move {
            let Ok(_permit) = client.proxy_permits.clone().acquire_owned().await else {
                return;
            };
            let msg = fut.await;
            client.send(vec![(corr, ent, msg)]);
        });
    }

    fn queue_command(
        &self,
        corr: &[u8],
        ent: &[u8],
        cmd: Command,
        q: Arc<Queue>,
        rec: QueueRec,
        out: &mut Output,
    ) {
        let st = self.state.store.as_ref();
        let reply = |m: BrokerMsg| (corr.to_vec(), ent.to_vec(), m);
        let ok_or = |r: Result<(), ErrorType>| match r {
            Ok(()) => reply(BrokerMsg::Ok),
            Err(e) => reply(BrokerMsg::Err(e)),
        };
        // OFF, DEL and SEND work on blocked queues (SEND reports BLOCKED itself).
        let blocked_ok = matches!(cmd, Command::Off | Command::Del | Command::Send(..));
        if let (QueueStatus::Blocked(info), false) = (&rec.status, blocked_ok) {
            out.responses
                .push(reply(BrokerMsg::Err(ErrorType::Blocked(info.clone()))));
            return;
        }
        if !matches!(cmd, Command::Off | Command::Del) {
            let today = now_secs() / 86400 * 86400;
            if rec.updated_at != Some(today) {
                if let Err(e) = st.update_time(&q, today) {
                    out.responses.push(reply(BrokerMsg::Err(e)));
                    return;
                }
            }
        }
        let r = match cmd {
            Command::Sub => return self.subscribe(corr, ent, &q, &rec, out),
            Command::Get => self.get_message(corr, ent, &q, &rec),
            Command::Ack(msg_id) => self.ack(corr, ent, &msg_id, &q, &rec),
            Command::Key(k) => ok_or(self.secure(&q, k)),
            Command::Rkey(ks) => {
                if rec.queue_mode == Some(QueueMode::Contact) {
                    ok_or(st.update_keys(&q, ks))
                } else {
                    reply(BrokerMsg::Err(ErrorType::Auth))
                }
            }
            Command::Lset(lid, data) => {
                if rec.is_secured_msg_queue()
                    || rec.queue_data.as_ref().is_some_and(|(l, _)| *l != lid)
                {
                    reply(BrokerMsg::Err(ErrorType::Auth))
                } else {
                    ok_or(st.add_link(&q, lid, data))
                }
            }
            Command::Ldel => {
                if rec.queue_data.is_some() {
                    ok_or(st.delete_link(&q))
                } else {
                    reply(BrokerMsg::Ok)
                }
            }
            Command::Nkey(nkey, dh) => reply(self.add_notifier(&q, nkey, dh)),
            Command::Ndel => match st.delete_notifier(&q) {
                Ok(Some(n)) => {
                    self.drop_pending_ntfs(&n.notifier_id);
                    self.state.stats.ntf_deleted.inc();
                    self.end_ntf_subscriber(&n.notifier_id);
                    reply(BrokerMsg::Ok)
                }
                Ok(None) => reply(BrokerMsg::Ok),
                Err(e) => reply(BrokerMsg::Err(e)),
            },
            Command::Off => ok_or(st.set_status(&q, QueueStatus::Off)),
            Command::Del => self.delete_queue(corr, ent, &q),
            Command::Que => reply(self.queue_info(ent, &q, &rec)),
            Command::Skey(k) => {
                if rec.queue_mode == Some(QueueMode::Messaging) {
                    ok_or(self.secure(&q, k))
                } else {
                    reply(BrokerMsg::Err(ErrorType::Auth))
                }
            }
            Command::Lkey(k) => {
                if rec.queue_mode == Some(QueueMode::Messaging) {
                    match self.secure(&q, k).and_then(|_| st.get_link(&q, ent)) {
                        Ok(d) => reply(BrokerMsg::Lnk(rec.sender_id.clone(), d)),
                        Err(e) => reply(BrokerMsg::Err(e)),
                    }
                } else {
                    reply(BrokerMsg::Err(ErrorType::Auth))
                }
            }
            Command::Lget => {
                if rec.is_contact() {
                    match st.get_link(&q, ent) {
                        Ok(d) => reply(BrokerMsg::Lnk(rec.sender_id.clone(), d)),
                        Err(e) => reply(BrokerMsg::Err(e)),
                    }
                } else {
                    reply(BrokerMsg::Err(ErrorType::Auth))
                }
            }
            Command::Send(flags, body) => reply(self.send_message(&q, &rec, flags, body)),
            Command::Nsub => reply(self.subscribe_notifications(ent, &mut out.msgs)),
            _ => reply(BrokerMsg::Err(ErrorType::Internal)),
        };
        out.responses.push(r);
    }

    fn new_queue(&self, corr: &[u8], req: NewQueueReq) -> BrokerMsg {
        let s = &self.state.settings;
        let allowed = s.allow_new_queues
            && s.create_password
                .as_ref()
                .is_none_or(|p| req.auth.as_ref() == Some(p));
        if !allowed {
            return BrokerMsg::Err(ErrorType::Auth);
        }
        let Ok(srv_dh) = DhKeyPair::generate() else {
            return BrokerMsg::Err(ErrorType::Internal);
        };
        let Ok(rcv_dh_secret) = srv_dh.dh(&req.rcv_dh_key) else {
            return BrokerMsg::Err(ErrorType::Internal);
        };
        let ntf = match &req.ntf_creds {
            Some((nkey, ndh)) => {
                let Ok(kp) = DhKeyPair::generate() else {
                    return BrokerMsg::Err(ErrorType::Internal);
                };
                let Ok(secret) = kp.dh(ndh) else {
                    return BrokerMsg::Err(ErrorType::Internal);
                };
                Some((nkey.clone(), secret, kp.public()))
            }
            None => None,
        };
        let id_len = s.queue_id_bytes;
        // A client-chosen sender ID must be the hash of the correlation ID, so creating a queue
        // can't be used to probe whether some ID exists.
        let expected_sid = Sha3_384::digest(corr)[..24].to_vec();
        let queue_mode = req.queue_req_data.as_ref().map(|d| d.mode());
        for _ in 0..3 {
            let (sender_id, client_ids, queue_data) = match &req.queue_req_data {
                Some(QueueReqData::Messaging(Some((sid, d)))) => {
                    (sid.clone(), true, Some((random_bytes(id_len), d.clone())))
                }
                Some(QueueReqData::Contact(Some((lid, sid, d)))) => {
                    (sid.clone(), true, Some((lid.clone(), d.clone())))
                }
                _ => (random_bytes(id_len), false, None),
            };
            if client_ids && sender_id != expected_sid {
                return BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited));
            }
            let rid = random_bytes(id_len);
            let notifier = ntf.as_ref().map(|(k, secret, _)| NtfCreds {
                notifier_id: random_bytes(id_len),
                notifier_key: k.clone(),
                rcv_ntf_dh_secret: *secret,
            });
            let rec = QueueRec {
                recipient_id: rid.clone(),
                recipient_keys: vec![req.rcv_auth_key.clone()],
                rcv_dh_secret,
                sender_id: sender_id.clone(),
                sender_key: None,
                queue_mode,
                queue_data: queue_data.clone(),
                notifier: notifier.clone(),
                status: QueueStatus::Active,
                updated_at: Some(now_secs() / 86400 * 86400),
            };
            match self.state.store.add_queue(rec) {
                Err(ErrorType::Duplicate) if client_ids => return BrokerMsg::Err(ErrorType::Auth),
                Err(ErrorType::Duplicate) => continue,
                Err(e) => return BrokerMsg::Err(e),
                Ok(_) => {
                    self.state.stats.q_created.inc();
                    self.state.stats.q_count.inc();
                    if notifier.is_some() {
                        self.state.stats.ntf_new_created.inc();
                    }
                    if req.sub_mode == SubscriptionMode::Subscribe {
                        lock(&self.client.subs).insert(
                            rid.clone(),
                            Sub {
                                prohibit: false,
                                delivered: None,
                            },
                        );
                        self.state.set_subscriber(&rid, self.client);
                    }
                    return BrokerMsg::Ids(QueueIdsKeys {
                        rcv_id: rid,
                        snd_id: sender_id,
                        rcv_public_dh_key: srv_dh.public(),
                        queue_mode,
                        link_id: queue_data.map(|(l, _)| l),
                        service_id: None,
                        ntf_creds: notifier
                            .zip(ntf.as_ref())
                            .map(|(n, (_, _, pk))| (n.notifier_id, pk.clone())),
                    });
                }
            }
        }
        BrokerMsg::Err(ErrorType::Internal)
    }

    fn subscribe(&self, corr: &[u8], ent: &[u8], q: &Arc<Queue>, rec: &QueueRec, out: &mut Output) {
        let st = self.state.store.as_ref();
        // Never hold this connection's subscriptions while touching another connection's:
        // two connections taking over each other's queues would deadlock.
        let new_sub = {
            let mut subs = lock(&self.client.subs);
            match subs.get_mut(ent) {
                Some(s) if s.prohibit => {
                    drop(subs);
                    self.state.stats.q_sub_prohibited.inc();
                    out.responses
                        .push(err(corr, ent, ErrorType::Cmd(CommandError::Prohibited)));
                    return;
                }
                Some(s) => {
                    // Repeated SUB: deliver the first message again.
                    s.delivered = None;
                    self.state.stats.q_sub_duplicate.inc();
                    false
                }
                None => {
                    subs.insert(
                        ent.to_vec(),
                        Sub {
                            prohibit: false,
                            delivered: None,
                        },
                    );
                    true
                }
            }
        };
        if new_sub {
            if let Some(prev) = self.state.set_subscriber(ent, self.client) {
                end_subscription(&prev, ent, BrokerMsg::End);
                self.state.stats.q_sub_end.inc();
                self.state.stats.q_sub_end_b.inc();
            }
        }
        let mut subs = lock(&self.client.subs);
        match st.peek_msg(q) {
            Ok(m) => {
                out.responses
                    .push((corr.to_vec(), ent.to_vec(), BrokerMsg::Sok(None)));
                if let (Some(m), Some(s)) = (m, subs.get_mut(ent)) {
                    // A SEND racing with this SUB may have delivered it already.
                    if s.delivered.is_none() {
                        if new_sub {
                            self.state.stats.q_sub.inc();
                        }
                        self.state.stats.message_delivered(m.ts());
                        s.delivered = Some((m.msg_id().to_vec(), now_secs()));
                        out.msgs
                            .push((Vec::new(), ent.to_vec(), encrypt_msg(rec, &m)));
                    }
                }
            }
            Err(e) => out.responses.push(err(corr, ent, e)),
        }
    }

    fn get_message(&self, corr: &[u8], ent: &[u8], q: &Arc<Queue>, rec: &QueueRec) -> Outgoing {
        let mut subs = lock(&self.client.subs);
        let sub = subs.entry(ent.to_vec()).or_insert(Sub {
            prohibit: true,
            delivered: None,
        });
        if !sub.prohibit {
            self.state.stats.msg_get_prohibited.inc();
            return err(corr, ent, ErrorType::Cmd(CommandError::Prohibited));
        }
        let was_delivered = sub.delivered.take().is_some();
        match self.state.store.peek_msg(q) {
            Ok(Some(m)) => {
                if was_delivered {
                    self.state.stats.msg_get_duplicate.inc();
                } else {
                    self.state.stats.msg_get.inc();
                }
                self.state.stats.message_delivered(m.ts());
                sub.delivered = Some((m.msg_id().to_vec(), now_secs()));
                (corr.to_vec(), ent.to_vec(), encrypt_msg(rec, &m))
            }
            Ok(None) => {
                self.state.stats.msg_get_no_msg.inc();
                (corr.to_vec(), ent.to_vec(), BrokerMsg::Ok)
            }
            Err(e) => err(corr, ent, e),
        }
    }

    fn ack(
        &self,
        corr: &[u8],
        ent: &[u8],
        msg_id: &[u8],
        q: &Arc<Queue>,
        rec: &QueueRec,
    ) -> Outgoing {
        let st = self.state.store.as_ref();
        let mut subs = lock(&self.client.subs);
        let Some(sub) = subs.get_mut(ent) else {
            return err(corr, ent, ErrorType::NoMsg);
        };
        let delivered_at = match &sub.delivered {
            Some((d, t)) if d == msg_id || msg_id.is_empty() => *t,
            _ => return err(corr, ent, ErrorType::NoMsg),
        };
        sub.delivered = None;
        let stats = &self.state.stats;
        let received = |m: &Option<Message>, get: bool| {
            if let Some(Message::Msg { flags, .. }) = m {
                stats.message_received(ent, flags.notification, get, delivered_at);
            }
        };
        if sub.prohibit {
            match st.del_msg(q, msg_id) {
                Ok(m) => {
                    received(&m, true);
                    (corr.to_vec(), ent.to_vec(), BrokerMsg::Ok)
                }
                Err(e) => err(corr, ent, e),
            }
        } else {
            match st.del_peek_msg(q, msg_id) {
                Ok((m, Some(next))) => {
                    received(&m, false);
                    stats.message_delivered(next.ts());
                    sub.delivered = Some((next.msg_id().to_vec(), now_secs()));
                    (corr.to_vec(), ent.to_vec(), encrypt_msg(rec, &next))
                }
                Ok((m, None)) => {
                    received(&m, false);
                    (corr.to_vec(), ent.to_vec(), BrokerMsg::Ok)
                }
                Err(e) => err(corr, ent, e),
            }
        }
    }

    fn add_notifier(&self, q: &Arc<Queue>, nkey: PublicKey, ndh: PublicKey) -> BrokerMsg {
        let Ok(kp) = DhKeyPair::generate() else {
            return BrokerMsg::Err(ErrorType::Internal);
        };
        let Ok(secret) = kp.dh(&ndh) else {
            return BrokerMsg::Err(ErrorType::Internal);
        };
        for _ in 0..3 {
            let nid = random_bytes(self.state.settings.queue_id_bytes);
            let creds = NtfCreds {
                notifier_id: nid.clone(),
                notifier_key: nkey.clone(),
                rcv_ntf_dh_secret: secret,
            };
            match self.state.store.add_notifier(q, creds) {
                Err(ErrorType::Duplicate) => continue,
                Err(e) => return BrokerMsg::Err(e),
                Ok(old) => {
                    self.state.stats.ntf_created.inc();
                    if let Some(o) = old {
                        self.drop_pending_ntfs(&o.notifier_id);
                        self.end_ntf_subscriber(&o.notifier_id);
                    }
                    return BrokerMsg::Nid(nid, kp.public());
                }
            }
        }
        BrokerMsg::Err(ErrorType::Internal)
    }

    /// Secure a queue (KEY, SKEY, LKEY), counting first-time securing.
    fn secure(&self, q: &Arc<Queue>, k: PublicKey) -> Result<(), ErrorType> {
        let was = q.rec().map(|r| r.sender_key.is_some()).unwrap_or(true);
        let r = self.state.store.secure_queue(q, k);
        if r.is_ok() && !was {
            self.state.stats.q_secured.inc();
        }
        r
    }

    /// Drop the notifications waiting for a removed notifier.
    fn drop_pending_ntfs(&self, nid: &[u8]) {
        if let Some(v) = lock(&self.state.pending_ntfs).remove(nid) {
            self.state.stats.ntf_count.add(-(v.len() as i64));
        }
    }

    /// Tell the notification subscriber of a removed notifier that it is gone.
    fn end_ntf_subscriber(&self, nid: &[u8]) {
        let prev = lock(&self.state.ntf_subscribers).remove(nid);
        if let Some(c) = prev {
            lock(&c.ntf_subs).remove(nid);
            if c.id != self.client.id {
                c.send(vec![(Vec::new(), nid.to_vec(), BrokerMsg::Deld)]);
            }
        }
    }

    fn delete_queue(&self, corr: &[u8], ent: &[u8], q: &Arc<Queue>) -> Outgoing {
        match self.state.store.delete_queue(q) {
            Ok((rec, _)) => {
                self.state.stats.queue_deleted(rec.sender_key.is_some());
                lock(&self.client.subs).remove(ent);
                if let Some(c) = self.state.take_subscriber(ent) {
                    if c.id != self.client.id {
                        end_subscription(&c, ent, BrokerMsg::Deld);
                    }
                }
                if let Some(n) = rec.notifier {
                    self.drop_pending_ntfs(&n.notifier_id);
                    self.end_ntf_subscriber(&n.notifier_id);
                }
                (corr.to_vec(), ent.to_vec(), BrokerMsg::Ok)
            }
            Err(e) => err(corr, ent, e),
        }
    }

    fn queue_info(&self, ent: &[u8], q: &Arc<Queue>, rec: &QueueRec) -> BrokerMsg {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let sub = lock(&self.client.subs).get(ent).cloned();
        let size = self.state.store.queue_size(q).unwrap_or(0);
        let msg = self.state.store.peek_msg(q).ok().flatten();
        let mut info = serde_json::json!({
            "qiSnd": rec.sender_key.is_some(),
            "qiNtf": rec.notifier.is_some(),
            "qiSize": size,
        });
        if let Some(s) = sub {
            let mut qs = serde_json::json!({
                "qSubThread": if s.prohibit { "prohibitSub" } else { "noSub" },
            });
            if let Some((d, _)) = &s.delivered {
                qs["qDelivered"] = b64(d).into();
            }
            info["qiSub"] = qs;
        }
        if let Some(m) = msg {
            let ts = time_iso(m.ts());
            info["qiMsg"] = serde_json::json!({
                "msgId": b64(m.msg_id()),
                "msgTs": ts,
                "msgType": if matches!(m, Message::Quota { .. }) { "quota" } else { "message" },
            });
        }
        BrokerMsg::Info(info.to_string().into_bytes())
    }

    fn send_message(
        &self,
        q: &Arc<Queue>,
        rec: &QueueRec,
        flags: MsgFlags,
        body: Vec<u8>,
    ) -> BrokerMsg {
        let st = self.state.store.as_ref();
        let s = &self.state.settings;
        let stats = &self.state.stats;
        if body.len() > max_message_length(self.version) {
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
                return BrokerMsg::Err(ErrorType::Blocked(i.clone()));
            }
            QueueStatus::Active => {}
        }
        if rec.queue_data.is_some() && rec.is_secured_msg_queue() {
            // Link data of a secured messaging queue is no longer needed: remove it.
            let _ = st.delete_link(q);
        }
        let now = now_secs();
        if s.expire_messages_on_send {
            if let Some(ttl) = s.message_ttl {
                if let Ok(n) = st.delete_expired(q, now - ttl) {
                    stats.msg_expired.add(n as i64);
                    stats.msg_count.add(-(n as i64));
                }
            }
        }
        let msg_id = random_bytes(s.msg_id_bytes);
        let msg = Message::Msg {
            msg_id,
            ts: now,
            flags,
            body,
        };
        match st.write_msg(q, msg.clone(), s.msg_queue_quota) {
            Err(e) => BrokerMsg::Err(e),
            Ok(WriteResult::Quota) => {
                stats.msg_sent_quota.inc();
                BrokerMsg::Err(ErrorType::Quota)
            }
            Ok(WriteResult::Stored { was_empty }) => {
                if was_empty {
                    self.try_deliver(rec, &msg);
                }
                if flags.notification {
                    if let Some(n) = &rec.notifier {
                        self.enqueue_notification(n, &msg);
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
    fn try_deliver(&self, rec: &QueueRec, msg: &Message) {
        let rid = &rec.recipient_id;
        let Some(c) = self.state.subscriber(rid) else {
            return;
        };
        let mut subs = lock(&c.subs);
        let Some(sub) = subs.get_mut(rid) else {
            return;
        };
        if sub.prohibit || sub.delivered.is_some() {
            return;
        }
        sub.delivered = Some((msg.msg_id().to_vec(), now_secs()));
        drop(subs);
        self.state.stats.message_delivered(msg.ts());
        c.send(vec![(Vec::new(), rid.clone(), encrypt_msg(rec, msg))]);
    }

    fn enqueue_notification(&self, n: &NtfCreds, msg: &Message) {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut e = Encoder::new();
        e.short_bytes(msg.msg_id()).i64(msg.ts());
        let Ok(enc_meta) = cbox::cb_encrypt(&n.rcv_ntf_dh_secret, &nonce, &e.finish(), 128) else {
            return;
        };
        let nid = &n.notifier_id;
        let sub = lock(&self.state.ntf_subscribers).get(nid).cloned();
        match sub {
            Some(c) if c.connected.load(std::sync::atomic::Ordering::Acquire) => {
                self.state.stats.msg_ntfs.inc();
                self.state.stats.msg_ntfs_b.inc();
                c.send(vec![(
                    Vec::new(),
                    nid.clone(),
                    BrokerMsg::Nmsg(nonce, enc_meta),
                )]);
            }
            _ => {
                self.state.stats.msg_ntf_no_sub.inc();
                self.state.stats.ntf_count.inc();
                lock(&self.state.pending_ntfs)
                    .entry(nid.clone())
                    .or_default()
                    .push(PendingNtf {
                        nonce,
                        enc_meta,
                        ts: now_secs(),
                        msg_id: msg.msg_id().to_vec(),
                    });
            }
        }
    }

    fn subscribe_notifications(&self, nid: &[u8], msgs_out: &mut Vec<Outgoing>) -> BrokerMsg {
        let prev = lock(&self.state.ntf_subscribers).insert(nid.to_vec(), self.client.clone());
        if lock(&self.client.ntf_subs).insert(nid.to_vec()) {
            self.state.stats.ntf_sub.inc();
        } else {
            self.state.stats.ntf_sub_duplicate.inc();
        }
        if let Some(p) = prev.filter(|p| p.id != self.client.id) {
            lock(&p.ntf_subs).remove(nid);
            p.send(vec![(Vec::new(), nid.to_vec(), BrokerMsg::End)]);
        }
        let pending = lock(&self.state.pending_ntfs).remove(nid);
        if let Some(ntfs) = pending {
            let stats = &self.state.stats;
            let cutoff = now_secs() - self.state.settings.ntf_ttl;
            let n = ntfs.len() as i64;
            let live = ntfs.iter().filter(|x| x.ts >= cutoff).count() as i64;
            stats.ntf_count.add(-n);
            stats.msg_ntf_expired.add(n - live);
            if live > 0 {
                stats.msg_ntfs.add(live);
                stats.msg_ntfs_b.add(live / 80 + 1);
            }
            let msgs: Vec<Outgoing> = ntfs
                .into_iter()
                .filter(|n| n.ts >= cutoff)
                .map(|n| {
                    (
                        Vec::new(),
                        nid.to_vec(),
                        BrokerMsg::Nmsg(n.nonce, n.enc_meta),
                    )
                })
                .collect();
            msgs_out.extend(msgs);
        }
        BrokerMsg::Sok(None)
    }
}

/// End another client's subscription to `rid` with END or DELD.
fn end_subscription(c: &Arc<ClientHandle>, rid: &[u8], msg: BrokerMsg) {
    lock(&c.subs).remove(rid);
    c.send(vec![(Vec::new(), rid.to_vec(), msg)]);
}

/// ISO 8601 UTC time for JSON, as aeson prints `UTCTime`.
fn time_iso(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        y,
        m,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_time() {
        assert_eq!(super::time_iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time_iso(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
