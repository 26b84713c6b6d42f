//! Property tests of the sans-IO core: random command sequences from several connections, with
//! a seeded generator and a stepped clock, go through the real encode → parse → verify →
//! apply path and are checked against a simple model of each queue (a list of messages and
//! quota markers with their times, and the quota's "can write" flag). They check that handling
//! is repeatable (same inputs, same effects and state), that every command is answered exactly
//! once, that SEND is answered OK or QUOTA as the model says, that every MSG carries the
//! model's oldest message (so none is lost, repeated or out of order), that expiry (on SEND and
//! periodic, driven by the injected clock) removes exactly the messages older than the TTL, and
//! that messages and END only go to the connection subscribed at the time.

// A test may ignore responses it does not look at.
#![allow(clippy::wildcard_enum_match_arm)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{ClientState, Core, Effects, Env, Outgoing, Session, SessionKeys};
use crate::crypto::cbox;
use crate::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey, PublicKey};
use crate::crypto::random::bytes_from;
use crate::protocol::command::{Command, MsgFlags, NewQueueReq, QueueReqData, SubscriptionMode};
use crate::protocol::errors::ErrorType;
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    decode_server, encode_client, parse_transmission, with_auth, THParams,
};
use crate::server::state::Settings;
use crate::stats::ServerStats;
use crate::store::memory::MemoryStore;

const VERSION: u16 = 20;
const CLIENTS: usize = 3;
const QUEUES: usize = 3;
/// Small, so that random sequences reach the quota and recover from it.
const QUOTA: usize = 4;
/// Message lifetime in seconds; each command advances the clock by 7 s, `Wait` by more.
const TTL: i64 = 300;

/// What the test can ask of the core; queue and client numbers are taken modulo the ones that
/// exist.
#[derive(Debug, Clone)]
enum Op {
    New {
        client: usize,
    },
    Secure {
        q: usize,
    },
    Send {
        q: usize,
        len: usize,
    },
    Sub {
        q: usize,
        client: usize,
    },
    Get {
        q: usize,
        client: usize,
    },
    Ack {
        q: usize,
        client: usize,
    },
    Del {
        q: usize,
    },
    Ping {
        client: usize,
    },
    /// Let time pass (seconds).
    Wait {
        secs: i64,
    },
    /// The periodic expiry (the server's `expire_messages` loop) at the current time.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    let q = 0..QUEUES;
    prop_oneof![
        1 => c.clone().prop_map(|client| Op::New { client }),
        1 => q.clone().prop_map(|q| Op::Secure { q }),
        6 => (q.clone(), 0usize..300).prop_map(|(q, len)| Op::Send { q, len }),
        2 => (q.clone(), c.clone()).prop_map(|(q, client)| Op::Sub { q, client }),
        1 => (q.clone(), c.clone()).prop_map(|(q, client)| Op::Get { q, client }),
        5 => (q.clone(), c.clone()).prop_map(|(q, client)| Op::Ack { q, client }),
        1 => q.prop_map(|q| Op::Del { q }),
        1 => c.prop_map(|client| Op::Ping { client }),
        1 => (1..2 * TTL).prop_map(|secs| Op::Wait { secs }),
        1 => Just(Op::Expire),
    ]
}

/// The client side of one queue, as the test knows it.
struct TestQueue {
    rcv_id: Vec<u8>,
    snd_id: Vec<u8>,
    rcv_key: Arc<PrivateSignKey>,
    snd_key: Option<Arc<PrivateSignKey>>,
    /// DH secret with the server's key from IDS: opens MSG bodies.
    secret: [u8; 32],
    deleted: bool,
    /// What the store should hold, oldest first.
    model: VecDeque<Stored>,
    /// The quota rule: a write is accepted while this is set or the queue is empty.
    can_write: bool,
}

/// One entry of the model of a queue.
#[derive(Debug)]
struct Stored {
    /// `None` for the quota marker.
    body: Option<Vec<u8>>,
    ts: i64,
    /// Learnt from the first MSG that carries it.
    id: Option<Vec<u8>>,
}

impl TestQueue {
    /// Drop what is older than `before`, as the store's expiry does.
    fn expire(&mut self, before: i64) {
        while self.model.front().is_some_and(|m| m.ts < before) {
            self.model.pop_front();
        }
    }
}

/// A response, cut short for failure messages (MSG bodies are long).
fn short(m: &BrokerMsg) -> String {
    format!("{m:?}").chars().take(80).collect()
}

/// A received message: (message ID, body).
type Delivered = (Vec<u8>, Vec<u8>);

struct Harness {
    core: Core,
    clients: Vec<(Arc<ClientState>, SessionKeys)>,
    rng: StdRng,
    now: i64,
    queues: Vec<TestQueue>,
    /// The last message (ID, body) each connection received for each recipient ID.
    delivered: HashMap<(usize, Vec<u8>), Delivered>,
    /// Which connection the test saw subscribe to each recipient ID last.
    subscriber: HashMap<Vec<u8>, usize>,
    corr: u64,
    /// Every effect, for the repeatability check.
    trace: Vec<String>,
}

impl Harness {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let settings = Settings {
            msg_queue_quota: QUOTA,
            message_ttl: Some(TTL),
            expire_messages_on_send: seed % 2 == 0,
            ..Settings::default()
        };
        let core = Core::new(
            settings,
            Arc::new(MemoryStore::new()),
            Arc::new(ServerStats::new(0)),
        );
        // one more connection than the commands use: the one that drains the queues at the end
        let clients = (0..=CLIENTS)
            .map(|i| {
                let keys = SessionKeys {
                    session_id: bytes_from(&mut rng, 32),
                    dh: DhKeyPair::generate_from(&mut rng),
                    session_secret: None,
                };
                (Arc::new(ClientState::new(i as u64 + 1, VERSION)), keys)
            })
            .collect();
        Harness {
            core,
            clients,
            rng,
            now: 1_700_000_000,
            queues: Vec::new(),
            delivered: HashMap::new(),
            subscriber: HashMap::new(),
            corr: 0,
            trace: Vec::new(),
        }
    }

    fn sign_key(&mut self) -> Arc<PrivateSignKey> {
        let seed = bytes_from(&mut self.rng, 32);
        Arc::new(PrivateSignKey::from_seed(KeyAlgorithm::Ed25519, &seed).expect("seed"))
    }

    /// Send one command from connection `c` through the real wire path and check what it
    /// delivered against the model: see [`Harness::call`].
    fn run(
        &mut self,
        c: usize,
        entity: &[u8],
        cmd: Command,
        key: Option<&PrivateSignKey>,
    ) -> (BrokerMsg, Effects) {
        let (r, fx) = self.call(c, entity, cmd, key);
        self.observe(c, &fx);
        (r, fx)
    }

    /// Send one command from connection `c` through the real wire path; returns its effects
    /// after checking it was answered exactly once with its correlation ID. The caller brings
    /// the model up to date and then calls [`Harness::observe`].
    fn call(
        &mut self,
        c: usize,
        entity: &[u8],
        cmd: Command,
        key: Option<&PrivateSignKey>,
    ) -> (BrokerMsg, Effects) {
        self.now += 7;
        let (corr, st) = self.transmission(c, entity, &cmd, key);
        let (client, keys) = &self.clients[c];
        let session = Session {
            client,
            version: VERSION,
            keys,
            forwarded: false,
        };
        let mut fx = Effects::default();
        let mut env = Env {
            now: self.now,
            rng: &mut self.rng,
        };
        self.core.receive(&session, st, false, &mut env, &mut fx);
        self.trace.push(format!("{c} {fx:?}"));
        assert_eq!(fx.replies.len(), 1, "one reply per command: {fx:?}");
        assert_eq!(fx.replies[0].corr_id, corr, "the reply echoes the corrId");
        assert!(fx.jobs.is_empty(), "no network jobs for queue commands");
        let reply = fx.replies[0].msg.clone();
        (reply, fx)
    }

    /// A command from connection `c` as the server decodes it off the wire, with its corrId.
    fn transmission(
        &mut self,
        c: usize,
        entity: &[u8],
        cmd: &Command,
        key: Option<&PrivateSignKey>,
    ) -> (Vec<u8>, crate::protocol::transmission::SignedTransmission) {
        self.corr += 1;
        let corr = format!("{:024}", self.corr).into_bytes();
        let params = THParams {
            session_id: self.clients[c].1.session_id.clone(),
            version: VERSION,
        };
        let t = encode_client(&params, &corr, entity, cmd);
        let auth = key.map(|k| k.sign(&t.for_auth));
        let bytes = with_auth(&params, auth.as_deref(), &t.to_send);
        let st = decode_server(&params, parse_transmission(&params, &bytes)).expect("decodes");
        (corr, st)
    }

    /// Record what each connection received (MSG, END), checking deliveries go only to the
    /// connection subscribed to that queue.
    fn observe(&mut self, c: usize, fx: &Effects) {
        let mine = fx.replies.iter().chain(fx.follow.iter()).map(|o| (c, o));
        let others = fx.deliveries.iter().map(|d| {
            let to = self
                .clients
                .iter()
                .position(|(cl, _)| cl.id == d.to)
                .expect("a delivery to a known connection");
            (to, &d.item)
        });
        let all: Vec<(usize, Outgoing)> =
            mine.chain(others).map(|(to, o)| (to, o.clone())).collect();
        for (to, o) in all {
            match &o.msg {
                BrokerMsg::Msg(id, enc) => {
                    if o.corr_id.is_empty() {
                        // a pushed message goes to the subscribed connection only
                        assert_eq!(
                            self.subscriber.get(&o.entity_id),
                            Some(&to),
                            "MSG pushed to a connection that is not the subscriber"
                        );
                    }
                    let q = self
                        .queues
                        .iter_mut()
                        .find(|q| q.rcv_id == o.entity_id)
                        .expect("MSG for a known queue");
                    let plain = cbox::cb_decrypt(&q.secret, &cbox::cb_nonce(id), enc)
                        .expect("the recipient opens the message");
                    // a queue always delivers its oldest message: the model's head
                    let head = q
                        .model
                        .front_mut()
                        .expect("MSG from a queue the model says is empty");
                    match &head.id {
                        Some(known) => assert_eq!(known, id, "MSG is not the oldest message"),
                        None => head.id = Some(id.clone()),
                    }
                    let body = match &head.body {
                        // timestamp (8), flag (1), space (1), body
                        Some(b) => {
                            assert!(plain.len() >= 10 && plain[9] == b' ', "message layout");
                            assert_eq!(&plain[10..], &b[..], "MSG body is not the oldest message");
                            b.clone()
                        }
                        None => {
                            assert!(
                                plain.len() >= 14 && plain.starts_with(b"QUOTA "),
                                "the quota marker was expected"
                            );
                            plain[6..14].to_vec()
                        }
                    };
                    let ts_at = if head.body.is_some() { 0 } else { 6 };
                    let ts = i64::from_be_bytes(plain[ts_at..ts_at + 8].try_into().expect("8"));
                    assert_eq!(ts, head.ts, "the message's time");
                    self.delivered
                        .insert((to, o.entity_id.clone()), (id.clone(), body));
                }
                BrokerMsg::End => {
                    // END goes to a connection that lost the queue, never to the new subscriber
                    assert_ne!(self.subscriber.get(&o.entity_id), Some(&to));
                }
                _ => {}
            }
        }
    }

    /// NEW from connection `client`, subscribed there.
    fn create(&mut self, client: usize, data: QueueReqData) {
        let rcv_key = self.sign_key();
        let dh = DhKeyPair::generate_from(&mut self.rng);
        let req = NewQueueReq {
            rcv_auth_key: rcv_key.public(),
            rcv_dh_key: dh.public(),
            auth: None,
            sub_mode: SubscriptionMode::Subscribe,
            queue_req_data: Some(data),
            ntf_creds: None,
        };
        let (r, _) = self.run(client, &[], Command::New(req), Some(&*rcv_key));
        let BrokerMsg::Ids(ids) = r else {
            panic!("NEW answered {r:?}")
        };
        let secret = dh.dh(&ids.rcv_public_dh_key).expect("dh");
        self.subscriber.insert(ids.rcv_id.clone(), client);
        self.queues.push(TestQueue {
            rcv_id: ids.rcv_id,
            snd_id: ids.snd_id,
            rcv_key,
            snd_key: None,
            secret,
            deleted: false,
            model: VecDeque::new(),
            can_write: true,
        });
    }

    fn apply(&mut self, op: &Op) {
        let live: Vec<usize> = (0..self.queues.len())
            .filter(|&i| !self.queues[i].deleted)
            .collect();
        let pick = |q: usize| (!live.is_empty()).then(|| live[q % live.len()]);
        match *op {
            Op::New { client } => self.create(client, QueueReqData::Messaging(None)),
            Op::Secure { q } => {
                let Some(i) = pick(q) else { return };
                if self.queues[i].snd_key.is_some() {
                    return;
                }
                let k = self.sign_key();
                let (rcv, rk) = (
                    self.queues[i].rcv_id.clone(),
                    self.queues[i].rcv_key.clone(),
                );
                let owner = self.subscriber.get(&rcv).copied().unwrap_or(0);
                let (r, _) = self.run(owner, &rcv, Command::Key(k.public()), Some(&*rk));
                assert_eq!(r, BrokerMsg::Ok, "KEY");
                self.queues[i].snd_key = Some(k);
            }
            Op::Send { q, len } => {
                let Some(i) = pick(q) else { return };
                let body: Vec<u8> = bytes_from(&mut self.rng, len);
                let (sid, sk) = (
                    self.queues[i].snd_id.clone(),
                    self.queues[i].snd_key.clone(),
                );
                // the sender has its own connection (the last one)
                let cmd = Command::Send(MsgFlags::default(), body.clone());
                // the model first: the subscriber may get the message at once
                let ts = self.now + 7;
                let expire_on_send = self.core.settings.expire_messages_on_send;
                let tq = &mut self.queues[i];
                if expire_on_send {
                    tq.expire(ts - TTL);
                }
                let expected = if tq.can_write || tq.model.is_empty() {
                    tq.can_write = tq.model.len() < QUOTA;
                    let body = tq.can_write.then_some(body);
                    let ok = body.is_some();
                    tq.model.push_back(Stored { body, ts, id: None });
                    if ok {
                        BrokerMsg::Ok
                    } else {
                        BrokerMsg::Err(ErrorType::Quota)
                    }
                } else {
                    BrokerMsg::Err(ErrorType::Quota)
                };
                let (r, fx) = self.call(CLIENTS - 1, &sid, cmd, sk.as_deref());
                assert_eq!(r, expected, "SEND to a live queue");
                self.observe(CLIENTS - 1, &fx);
            }
            Op::Sub { q, client } => {
                let Some(i) = pick(q) else { return };
                let (rcv, rk) = (
                    self.queues[i].rcv_id.clone(),
                    self.queues[i].rcv_key.clone(),
                );
                // the test's view changes before the effects are observed: MSG after SUB goes to
                // the new subscriber and END to the old one
                let before = self.subscriber.insert(rcv.clone(), client);
                let (r, fx) = self.run(client, &rcv, Command::Sub, Some(&*rk));
                match r {
                    BrokerMsg::Ok | BrokerMsg::Sok(_) | BrokerMsg::Msg(..) => {}
                    // GET in this connection forbids SUB on the queue
                    BrokerMsg::Err(ErrorType::Cmd(_)) => {
                        match before {
                            Some(b) => self.subscriber.insert(rcv, b),
                            None => self.subscriber.remove(&rcv),
                        };
                        return;
                    }
                    other => panic!("SUB answered {}", short(&other)),
                }
                if let Some(b) = before.filter(|&b| b != client) {
                    let ended = fx
                        .deliveries
                        .iter()
                        .any(|d| d.to == self.clients[b].0.id && d.item.msg == BrokerMsg::End);
                    // the previous connection learns it lost the queue, if it still held it
                    let held = crate::sync::lock(&self.clients[b].0.subs).contains_key(&rcv);
                    assert!(ended || !held, "takeover without END");
                }
            }
            Op::Get { q, client } => {
                let Some(i) = pick(q) else { return };
                let (rcv, rk) = (
                    self.queues[i].rcv_id.clone(),
                    self.queues[i].rcv_key.clone(),
                );
                let (r, _) = self.run(client, &rcv, Command::Get, Some(&*rk));
                assert!(
                    matches!(
                        r,
                        BrokerMsg::Ok | BrokerMsg::Msg(..) | BrokerMsg::Err(ErrorType::Cmd(_))
                    ),
                    "GET answered {}",
                    short(&r)
                );
            }
            Op::Ack { q, client } => {
                let Some(i) = pick(q) else { return };
                let rcv = self.queues[i].rcv_id.clone();
                let Some((id, _)) = self.delivered.get(&(client, rcv.clone())).cloned() else {
                    return;
                };
                let rk = self.queues[i].rcv_key.clone();
                let (r, fx) = self.call(client, &rcv, Command::Ack(id.clone()), Some(&*rk));
                // an accepted ACK removes the message if it is still the oldest (it may have
                // expired since it was delivered)
                let tq = &mut self.queues[i];
                if r != BrokerMsg::Err(ErrorType::NoMsg)
                    && tq.model.front().is_some_and(|m| m.id.as_ref() == Some(&id))
                {
                    tq.model.pop_front();
                }
                self.observe(client, &fx);
                // ACK is answered with the next message, OK, or NO_MSG when this connection was
                // not given that message
                match &r {
                    BrokerMsg::Msg(next, _) => {
                        assert_ne!(next, &id, "the ACKed message delivered again")
                    }
                    BrokerMsg::Ok | BrokerMsg::Err(ErrorType::NoMsg) => {
                        self.delivered.remove(&(client, rcv));
                    }
                    other => panic!("ACK answered {}", short(other)),
                }
            }
            Op::Del { q } => {
                let Some(i) = pick(q) else { return };
                let (rcv, rk) = (
                    self.queues[i].rcv_id.clone(),
                    self.queues[i].rcv_key.clone(),
                );
                let owner = self.subscriber.get(&rcv).copied().unwrap_or(0);
                let (r, _) = self.run(owner, &rcv, Command::Del, Some(&*rk));
                assert_eq!(r, BrokerMsg::Ok, "DEL");
                self.queues[i].deleted = true;
                // the deleted queue no longer exists for anyone
                let sid = self.queues[i].snd_id.clone();
                let sk = self.queues[i].snd_key.clone();
                let cmd = Command::Send(MsgFlags::default(), b"late".to_vec());
                let (r, _) = self.run(CLIENTS - 1, &sid, cmd, sk.as_deref());
                assert_eq!(
                    r,
                    BrokerMsg::Err(ErrorType::Auth),
                    "SEND to a deleted queue"
                );
            }
            Op::Ping { client } => {
                let (r, _) = self.run(client, &[], Command::Ping, None);
                assert_eq!(r, BrokerMsg::Pong);
            }
            Op::Wait { secs } => self.now += secs,
            Op::Expire => {
                let before = self.now - TTL;
                let expected: usize = self
                    .queues
                    .iter_mut()
                    .filter(|q| !q.deleted)
                    .map(|q| {
                        let n = q.model.len();
                        q.expire(before);
                        n - q.model.len()
                    })
                    .sum();
                assert_eq!(
                    self.core.store.expire_messages(before),
                    expected,
                    "messages expired"
                );
            }
        }
    }

    /// Take every remaining message of every live queue with GET and ACK on a connection that
    /// took no part before: the store holds exactly what the model holds, in order (each MSG
    /// is checked against the model's head as it is received).
    fn drain(&mut self) {
        let c = CLIENTS;
        for i in 0..self.queues.len() {
            if self.queues[i].deleted {
                continue;
            }
            let (rcv, rk) = (
                self.queues[i].rcv_id.clone(),
                self.queues[i].rcv_key.clone(),
            );
            let stored = self.core.store.queue_size(&self.queue(&rcv)).expect("size");
            assert_eq!(stored, self.queues[i].model.len(), "messages stored");
            for _ in 0..=stored {
                let (r, _) = self.run(c, &rcv, Command::Get, Some(&*rk));
                let BrokerMsg::Msg(id, _) = r else {
                    assert_eq!(r, BrokerMsg::Ok, "GET of an empty queue");
                    break;
                };
                let (r, fx) = self.call(c, &rcv, Command::Ack(id), Some(&*rk));
                assert_eq!(r, BrokerMsg::Ok, "ACK after GET");
                self.queues[i].model.pop_front();
                self.observe(c, &fx);
            }
            assert!(self.queues[i].model.is_empty(), "a message the store lost");
        }
    }

    /// The store's queue for a recipient ID.
    fn queue(&self, rcv: &[u8]) -> crate::store::QueueRef {
        self.core
            .store
            .get_queue(crate::protocol::command::Party::Recipient, rcv)
            .expect("a live queue")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Messages are acknowledged in the order they were accepted, none lost or repeated, and
    /// pushed only to the current subscriber, whatever the interleaving of commands.
    #[test]
    fn queues_keep_every_accepted_message_in_order(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut h = Harness::new(seed);
        h.apply(&Op::New { client: 0 });
        for op in &ops {
            h.apply(op);
        }
        h.drain();
    }

    /// The same inputs (commands, time, generator seed) give the same effects, byte for byte:
    /// the core reads no clock and no OS randomness.
    #[test]
    fn handling_is_repeatable(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let run = || {
            let mut h = Harness::new(seed);
            h.apply(&Op::New { client: 0 });
            for op in &ops {
                h.apply(op);
            }
            h.trace
        };
        let (a, b) = (run(), run());
        prop_assert_eq!(a, b);
    }
}

/// A different seed gives different queue IDs (the generator is really used).
#[test]
fn the_seed_decides_the_ids() {
    let ids = |seed| {
        let mut h = Harness::new(seed);
        h.apply(&Op::New { client: 0 });
        h.queues[0].rcv_id.clone()
    };
    assert_eq!(ids(1), ids(1));
    assert_ne!(ids(1), ids(2));
}

/// RKEY is capped: a contact queue cannot be given so many recipient keys that verifying a
/// block of commands against them stalls the server.
#[test]
fn rkey_is_capped() {
    let mut h = Harness::new(3);
    h.create(0, QueueReqData::Contact(None));
    let (rcv, rk) = (h.queues[0].rcv_id.clone(), h.queues[0].rcv_key.clone());
    // the recipient keeps its own key among the new ones, so it can still sign
    let keys = |h: &mut Harness, n: usize| -> Vec<PublicKey> {
        std::iter::once(rk.public())
            .chain((1..n).map(|_| h.sign_key().public()))
            .collect()
    };
    let most = keys(&mut h, 16);
    let (r, _) = h.run(0, &rcv, Command::Rkey(most), Some(&*rk));
    assert_eq!(r, BrokerMsg::Ok);
    let many = keys(&mut h, 17);
    let (r, _) = h.run(0, &rcv, Command::Rkey(many), Some(&*rk));
    assert_eq!(
        r,
        BrokerMsg::Err(ErrorType::Cmd(
            crate::protocol::errors::CommandError::Prohibited
        ))
    );
}

/// A block of SUBs run together (the database's path: one queue lookup and one peek for the
/// block) answers and delivers exactly as the same SUBs one by one: the same replies in the
/// same order (OK, PROHIBITED after GET, AUTH for a wrong key and a missing queue), the same
/// MSGs after them and the same END to the connection that had the queues.
#[test]
fn a_block_of_subs_answers_as_one_by_one() {
    let run = |batched: bool| {
        let mut h = Harness::new(11);
        for _ in 0..3 {
            h.apply(&Op::New { client: 0 });
        }
        h.apply(&Op::Secure { q: 0 });
        h.apply(&Op::Secure { q: 2 });
        h.apply(&Op::Send { q: 0, len: 10 });
        h.apply(&Op::Send { q: 2, len: 20 });
        // GET on queue 1 from connection 1 prohibits SUB on it there
        h.apply(&Op::Get { q: 1, client: 1 });
        let q = |h: &Harness, i: usize| (h.queues[i].rcv_id.clone(), h.queues[i].rcv_key.clone());
        let (r0, k0) = q(&h, 0);
        let (r1, k1) = q(&h, 1);
        let (r2, k2) = q(&h, 2);
        let subs: Vec<(Vec<u8>, Arc<PrivateSignKey>)> = vec![
            (r0, k0),
            (r1, k1.clone()),
            (r2.clone(), k1),
            (b"no such queue id......".to_vec(), k2.clone()),
            (r2, k2),
        ];
        // a new day: the SUBs record it (one store call for the block on the batched path)
        h.now += 86_400;
        let ts: Vec<_> = subs
            .iter()
            .map(|(id, k)| h.transmission(1, id, &Command::Sub, Some(k)).1)
            .collect();
        let (client, keys) = &h.clients[1];
        let session = Session {
            client,
            version: VERSION,
            keys,
            forwarded: false,
        };
        let mut fx = Effects::default();
        let mut env = Env {
            now: h.now,
            rng: &mut h.rng,
        };
        if batched {
            h.core.receive_subs(&session, ts, &mut env, &mut fx);
        } else {
            for (i, t) in ts.into_iter().enumerate() {
                h.core.receive(&session, t, i == 0, &mut env, &mut fx);
            }
        }
        let deliveries: Vec<_> = fx
            .deliveries
            .iter()
            .map(|d| (d.to, d.item.clone()))
            .collect();
        let today = h.now.div_euclid(86_400) * 86_400;
        let days: Vec<Option<i64>> = (0..3)
            .map(|i| {
                h.queue(&h.queues[i].rcv_id)
                    .rec()
                    .expect("rec")
                    .updated_at
                    .get()
            })
            .collect();
        // as one by one: the day is recorded before the subscription rules (PROHIBITED) apply
        assert!(
            days.iter().all(|d| *d == Some(today)),
            "verified SUBs record the day of use: {days:?}"
        );
        (fx.replies, fx.follow, deliveries, days)
    };
    let (one_by_one, block) = (run(false), run(true));
    let kinds: Vec<String> = block.0.iter().map(|o| short(&o.msg)).collect();
    assert_eq!(kinds.len(), 5, "one reply per SUB: {kinds:?}");
    assert!(
        kinds[0].starts_with("Sok") && kinds[4].starts_with("Sok"),
        "{kinds:?}"
    );
    assert!(kinds[1].contains("Prohibited"), "{kinds:?}");
    assert!(
        kinds[2].contains("Auth") && kinds[3].contains("Auth"),
        "{kinds:?}"
    );
    assert_eq!(block.1.len(), 2, "the two queues with a message deliver it");
    assert_eq!(
        block.2.len(),
        2,
        "END to the connection that had queues 0 and 2"
    );
    assert_eq!(block, one_by_one);
}
