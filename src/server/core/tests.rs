//! Property tests of the sans-IO core: random command sequences from several connections, with
//! a seeded generator and a stepped clock, go through the real encode → parse → verify →
//! apply path. They check that handling is repeatable (same inputs, same effects and state),
//! that every command is answered exactly once, that a queue's messages are acknowledged in the
//! order they were accepted with none lost or repeated, and that messages and END only go to
//! the connection subscribed at the time.

// A test may ignore responses it does not look at.
#![allow(clippy::wildcard_enum_match_arm)]

use std::collections::HashMap;
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

/// What the test can ask of the core; queue and client numbers are taken modulo the ones that
/// exist.
#[derive(Debug, Clone)]
enum Op {
    New { client: usize },
    Secure { q: usize },
    Send { q: usize, len: usize },
    Sub { q: usize, client: usize },
    Get { q: usize, client: usize },
    Ack { q: usize, client: usize },
    Del { q: usize },
    Ping { client: usize },
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
    /// Bodies answered OK, in order.
    accepted: Vec<Vec<u8>>,
    /// Messages (ID, body) in the order they were first received by any connection.
    seen: Vec<(Vec<u8>, Vec<u8>)>,
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
            msg_queue_quota: 1000,
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

    /// Send one command from connection `c` through the real wire path; returns its effects
    /// after checking it was answered exactly once with its correlation ID.
    fn run(
        &mut self,
        c: usize,
        entity: &[u8],
        cmd: Command,
        key: Option<&PrivateSignKey>,
    ) -> (BrokerMsg, Effects) {
        self.corr += 1;
        self.now += 7;
        let corr = format!("{:024}", self.corr).into_bytes();
        let (client, keys) = &self.clients[c];
        let params = THParams {
            session_id: keys.session_id.clone(),
            version: VERSION,
        };
        let t = encode_client(&params, &corr, entity, &cmd);
        let auth = key.map(|k| k.sign(&t.for_auth));
        let bytes = with_auth(&params, auth.as_deref(), &t.to_send);
        let st = decode_server(&params, parse_transmission(&params, &bytes)).expect("decodes");
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
        self.observe(c, &fx);
        (reply, fx)
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
                    // timestamp (8), flag (1), space (1), body
                    assert!(plain.len() >= 10 && plain[9] == b' ', "message layout");
                    let body = plain[10..].to_vec();
                    match q.seen.iter().find(|(i, _)| i == id) {
                        // a message delivered again is the same message
                        Some((_, b)) => assert_eq!(b, &body, "one ID, two bodies"),
                        // a new message is the next one accepted: none skipped, none invented,
                        // none out of order
                        None => {
                            let n = q.seen.len();
                            assert!(n < q.accepted.len(), "a message that was never sent");
                            assert_eq!(body, q.accepted[n], "message {n} out of order");
                            q.seen.push((id.clone(), body.clone()));
                        }
                    }
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
            accepted: Vec::new(),
            seen: Vec::new(),
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
                // accepted before the effects are observed: the subscriber may get it at once
                self.queues[i].accepted.push(body);
                let (r, _) = self.run(CLIENTS - 1, &sid, cmd, sk.as_deref());
                assert_eq!(r, BrokerMsg::Ok, "SEND to a live queue");
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
                let (r, _) = self.run(client, &rcv, Command::Ack(id.clone()), Some(&*rk));
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
        }
    }

    /// Take every remaining message of every live queue with GET and ACK on a connection that
    /// took no part before, and check that every accepted message was received,
    /// in order, once.
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
            for _ in 0..=self.queues[i].accepted.len() {
                let (r, _) = self.run(c, &rcv, Command::Get, Some(&*rk));
                let BrokerMsg::Msg(id, _) = r else {
                    assert_eq!(r, BrokerMsg::Ok, "GET of an empty queue");
                    break;
                };
                let (r, _) = self.run(c, &rcv, Command::Ack(id), Some(&*rk));
                assert_eq!(r, BrokerMsg::Ok, "ACK after GET");
            }
            let tq = &self.queues[i];
            let bodies: Vec<&Vec<u8>> = tq.seen.iter().map(|(_, b)| b).collect();
            let accepted: Vec<&Vec<u8>> = tq.accepted.iter().collect();
            assert_eq!(bodies, accepted, "every accepted message, in order, once");
        }
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
