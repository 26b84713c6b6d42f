//! The sans-IO command core: queues, subscriptions and notifications, and what each command
//! does to them, as the reference's `processCommand`.
//!
//! [`Core::receive`] takes one decoded transmission, the time and a random generator, and
//! returns [`Effects`]: the replies for this connection, transmissions for other connections
//! and network jobs (proxying). It never reads the clock, never draws OS randomness, never
//! spawns tasks and never writes to a socket or channel, so the same inputs give the same
//! state and effects; the session (`server::session`) owns the socket and carries them out.
//!
//! One file per command family holds each command's effect and counters:
//! [`queue`] (NEW KEY RKEY SKEY OFF DEL QUE), [`messages`] (SEND SUB GET ACK),
//! [`links`] (LSET LDEL LKEY LGET), [`notifications`] (NKEY NDEL NSUB),
//! [`proxy`] (PRXY PFWD), [`relay`] (RFWD), [`names`] (RSLV); authorization by party is in [`auth`].
//!
//! Lock order (never take an earlier one while holding a later one): a connection's `subs` →
//! the `subscribers` map → another connection's `subs`; a queue's own lock is taken and released
//! inside each store call and never held across these.

#![deny(clippy::wildcard_enum_match_arm)]

pub mod auth;
pub mod client;
mod links;
mod messages;
mod names;
mod notifications;
mod proxy;
mod queue;
pub mod relay;
pub mod services;
mod sub_batch;
pub mod subscriptions;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crypto::keys::DhKeyPair;
use crate::crypto::random::SecureRng;
use crate::protocol::command::{Command, SmpServerRef};
use crate::protocol::errors::{CommandError, ErrorType};
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::SignedTransmission;
use crate::protocol::version::Version;
use crate::stats::ServerStats;
use crate::store::services::SubParty;
use crate::store::{Queue, QueueRec, QueueRef, QueueStatus, Store};

pub use auth::Verified;
pub use client::{ClientId, ClientState, Sub};
pub use messages::encrypt_msg;
pub use names::ResolveAnswer;
pub use notifications::PendingNtf;
pub use subscriptions::Subscriptions;

use super::state::Settings;

/// One transmission to send: the correlation ID it answers (empty for unsolicited ones), the
/// entity (queue) ID and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Correlation ID of the command answered; empty for MSG/NMSG/END/DELD.
    pub corr_id: Vec<u8>,
    /// The queue (or session) the transmission is about.
    pub entity_id: Vec<u8>,
    /// The response or message.
    pub msg: BrokerMsg,
}

impl Outgoing {
    /// A transmission from its parts.
    pub fn new(corr_id: &[u8], entity_id: &[u8], msg: BrokerMsg) -> Self {
        Outgoing {
            corr_id: corr_id.to_vec(),
            entity_id: entity_id.to_vec(),
            msg,
        }
    }

    /// An unsolicited transmission (no correlation ID).
    pub fn event(entity_id: &[u8], msg: BrokerMsg) -> Self {
        Outgoing::new(&[], entity_id, msg)
    }
}

/// A transmission for another connection.
#[derive(Debug)]
pub struct Delivery {
    /// The connection it is for.
    pub to: ClientId,
    /// What to send.
    pub item: Outgoing,
    /// For NMSG: the notification to keep (see [`Core::requeue_ntf`]) if that connection cannot
    /// take it now, so a slow notification server loses nothing.
    pub ntf: Option<(Vec<u8>, PendingNtf)>,
}

/// Work that needs the network: run off the read loop, answered when it finishes.
#[derive(Debug)]
pub enum Job {
    /// PRXY or PFWD: bounded by the connection's proxy permits (`[PROXY] client_concurrency`).
    Proxy(ProxyJob),
    /// After SOKS to SUBS: the first pending message of each of the service's queues, then
    /// ALLS, written as the connection's output drains (see [`Core::service_messages`]), so
    /// a service with many queues never has them all in memory at once.
    ServiceMessages {
        /// Recipient IDs of the service's queues.
        queues: Vec<Vec<u8>>,
    },
    /// RSLV: ask the names resolver and answer RNAME or `ERR NAME`; bounded by the
    /// connection's resolver slots (`[NAMES] resolver_concurrency`).
    Resolve {
        /// The name to resolve.
        domain: crate::protocol::names::SimplexDomain,
        /// Where the answer goes.
        answer: ResolveAnswer,
    },
}

/// A proxy role job (the client's side of private routing).
#[derive(Debug)]
pub enum ProxyJob {
    /// PRXY: open or reuse a session with a destination relay and answer PKEY.
    RelaySession {
        /// The PRXY's correlation ID.
        corr_id: Vec<u8>,
        /// The PRXY's entity ID (echoed in the answer).
        entity_id: Vec<u8>,
        /// The relay.
        server: SmpServerRef,
        /// The relay is one of the operator's own (`[PROXY] own_server_domains`).
        own: bool,
    },
    /// PFWD: forward an encrypted command through a relay session and answer PRES.
    Forward {
        /// The PFWD's correlation ID.
        corr_id: Vec<u8>,
        /// The relay session (the PFWD's entity).
        session_id: Vec<u8>,
        /// The client's version with the relay.
        version: Version,
        /// The client's ephemeral key for the relay.
        key: crate::crypto::keys::PublicKey,
        /// The encrypted transmission.
        body: Vec<u8>,
    },
}

/// Everything one block of commands asks the session to do.
///
/// `server::session::carry_out` carries it out after the whole block was applied, in this
/// order, and each part guarantees:
/// 1. `deliveries` never wait, so one slow recipient cannot stall a sender: each is queued, or
///    its connection is closed as not reading. An MSG that was not queued stays in the store
///    until acknowledged (the recipient gets it again on its next SUB); an NMSG that was not
///    queued is put back with [`Core::requeue_ntf`].
/// 2. `replies`, then `follow`, go to this connection and wait for room in its outbox, so the
///    next block is not read before they are queued (back-pressure), answers keep command
///    order, and a MSG that follows SUB arrives after its `OK`.
/// 3. `jobs` start after the replies are queued, each bounded by the connection's permits.
#[derive(Debug, Default)]
pub struct Effects {
    /// Replies to this block's commands, in order.
    pub replies: Vec<Outgoing>,
    /// Transmissions for this connection that follow the replies (MSG after SUB, NMSG after
    /// NSUB), so a client always sees the reply first.
    pub follow: Vec<Outgoing>,
    /// Transmissions for other connections (MSG to a subscriber, END, DELD, NMSG).
    pub deliveries: Vec<Delivery>,
    /// Network work for this connection's commands.
    pub jobs: Vec<Job>,
}

impl Effects {
    fn reply(&mut self, corr: &[u8], ent: &[u8], msg: BrokerMsg) {
        self.replies.push(Outgoing::new(corr, ent, msg));
    }

    fn err(&mut self, corr: &[u8], ent: &[u8], e: ErrorType) {
        self.reply(corr, ent, BrokerMsg::Err(e));
    }
}

/// A blocked queue takes only OFF, DEL and SEND (SEND reports BLOCKED itself).
fn status_rule(cmd: &Command, rec: &QueueRec) -> Result<(), ErrorType> {
    let blocked_ok = matches!(cmd, Command::Off | Command::Del | Command::Send(..));
    match (&rec.status, blocked_ok) {
        (QueueStatus::Blocked(info), false) => Err(ErrorType::Blocked((**info).clone())),
        _ => Ok(()),
    }
}

/// The day (Unix seconds at midnight UTC) to record as the queue's last use, if it changes:
/// every command but OFF and DEL uses the queue.
fn day_to_record(cmd: &Command, rec: &QueueRec, now: i64) -> Option<i64> {
    let today = now.div_euclid(86400) * 86400;
    (!matches!(cmd, Command::Off | Command::Del) && rec.updated_at.get() != Some(today))
        .then_some(today)
}

/// Per-connection material commands need: who the client is, its version, and the keys of the
/// session (for authenticators and the relay role).
pub struct Session<'a> {
    /// The connection's subscriptions.
    pub client: &'a Arc<ClientState>,
    /// The version transmissions are encoded with (the forwarded one inside RFWD).
    pub version: Version,
    /// The connection's session keys.
    pub keys: &'a SessionKeys,
    /// True inside a forwarded command (RFWD): only sender commands run there, no nesting.
    pub forwarded: bool,
}

/// The keys of one SMP session.
pub struct SessionKeys {
    /// The session ID (tls-unique).
    pub session_id: Vec<u8>,
    /// The server's per-connection DH key (authenticators, forwarded commands).
    pub dh: DhKeyPair,
    /// DH secret with a proxy's session key (the relay role), if the client sent one.
    pub session_secret: Option<[u8; 32]>,
}

/// A transmission whose authorization was checked, with the queue it addresses.
#[derive(Debug)]
pub struct VerifiedTransmission {
    /// Correlation ID.
    pub corr_id: Vec<u8>,
    /// Entity (queue) ID.
    pub entity_id: Vec<u8>,
    /// The command.
    pub command: Command,
    /// The queue and a snapshot of its record, for queue commands.
    pub queue: Verified,
}

/// The inputs that are not the transmission: time and randomness, passed in so that handling
/// is repeatable.
pub struct Env<'a> {
    /// Unix seconds, read once per block by the session.
    pub now: i64,
    /// Queue IDs, message IDs, nonces and DH keys come from here.
    pub rng: &'a mut dyn SecureRng,
}

/// The relay's command state: settings, the store, subscriptions, pending notifications and the
/// counters. Shared by all connections; every part has its own lock (see the lock order above).
pub struct Core {
    /// Behaviour the INI file controls.
    pub settings: Settings,
    /// Queues and messages.
    pub store: Arc<dyn Store>,
    /// Event counters.
    pub stats: Arc<ServerStats>,
    /// Which connection is subscribed to each queue and notifier.
    pub subs: Subscriptions,
    /// Notifications not yet delivered, by notifier ID.
    pub pending_ntfs: Mutex<HashMap<Vec<u8>, Vec<PendingNtf>>>,
    /// The names role is on (`[NAMES] enable` and a working resolver): RSLV becomes a job.
    pub names_enabled: std::sync::atomic::AtomicBool,
    /// Services and their queues (set once at start; see [`Core::services`]).
    services: std::sync::OnceLock<Arc<crate::store::services::ServiceStore>>,
    /// Which session receives for each service.
    pub service_subs: services::ServiceSubs,
}

impl Core {
    /// A core over a store.
    pub fn new(settings: Settings, store: Arc<dyn Store>, stats: Arc<ServerStats>) -> Self {
        Core {
            settings,
            store,
            stats,
            subs: Subscriptions::default(),
            pending_ntfs: Mutex::new(HashMap::new()),
            names_enabled: std::sync::atomic::AtomicBool::new(false),
            services: std::sync::OnceLock::new(),
            service_subs: services::ServiceSubs::default(),
        }
    }

    /// Verify and apply one decoded transmission. `batch_first` marks the first transmission of
    /// a block with several (batch statistics).
    pub fn receive(
        &self,
        s: &Session<'_>,
        t: SignedTransmission,
        batch_first: bool,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        let verified = auth::verify_transmission_as(
            self.store.as_ref(),
            &s.keys.dh,
            s.client.service.get(),
            &t,
        );
        if let Some(queue) = self.count_verified(&t, verified, batch_first, fx) {
            self.apply(
                s,
                VerifiedTransmission {
                    corr_id: t.corr_id,
                    entity_id: t.entity_id,
                    command: t.command,
                    queue,
                },
                env,
                fx,
            )
        }
    }

    /// Count a verification's outcome; a failure is answered here, `Some` goes on to apply.
    fn count_verified(
        &self,
        t: &SignedTransmission,
        verified: Result<auth::Verified, ErrorType>,
        batch_first: bool,
        fx: &mut Effects,
    ) -> Option<auth::Verified> {
        if batch_first {
            super::counting::batch(&self.stats, &t.command);
        }
        match verified {
            Err(e) => {
                if e == ErrorType::Auth {
                    super::counting::auth_failure(&self.stats, &t.command);
                }
                fx.err(&t.corr_id, &t.entity_id, e);
                None
            }
            Ok(queue) => Some(queue),
        }
    }

    /// Apply one verified transmission: the one dispatch over every command.
    pub fn apply(
        &self,
        s: &Session<'_>,
        t: VerifiedTransmission,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        let (corr, ent) = (t.corr_id.as_slice(), t.entity_id.as_slice());
        match t.command {
            Command::Ping => fx.reply(corr, &[], BrokerMsg::Pong),
            Command::New(req) => {
                let r = self.new_queue(s, corr, req, env, fx);
                fx.reply(corr, ent, r)
            }
            Command::Prxy(srv, auth) => self.prxy(corr, ent, srv, auth, fx),
            Command::Pfwd(v, k, body) => self.pfwd(corr, ent, v, k, body, fx),
            Command::Rfwd(enc) => self.rfwd(s, corr, ent, &enc, env, fx),
            Command::Rslv(domain) => self.rslv(corr, domain, fx),
            Command::Subs(n, h) => {
                self.subscribe_service(s, corr, ent, SubParty::Recipient, n, &h, env, fx)
            }
            Command::Nsubs(n, h) => {
                self.subscribe_service(s, corr, ent, SubParty::Notifier, n, &h, env, fx)
            }
            cmd @ (Command::Sub
            | Command::Key(_)
            | Command::Rkey(_)
            | Command::Lset(..)
            | Command::Ldel
            | Command::Nkey(..)
            | Command::Ndel
            | Command::Get
            | Command::Ack(_)
            | Command::Off
            | Command::Del
            | Command::Que
            | Command::Skey(_)
            | Command::Send(..)
            | Command::Lkey(_)
            | Command::Lget
            | Command::Nsub) => match t.queue {
                Some((q, rec)) => self.queue_command(s, corr, ent, cmd, &q, &rec, env, fx),
                // verification returns a queue for every queue command
                None => fx.err(corr, ent, ErrorType::Internal),
            },
        }
    }

    /// A command on an existing queue: the status and activity rules shared by all of them,
    /// then the command's own family.
    #[allow(clippy::too_many_arguments)]
    fn queue_command(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        ent: &[u8],
        cmd: Command,
        q: &QueueRef,
        rec: &QueueRec,
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        let st = self.store.as_ref();
        if let Err(e) = self.queue_rules(&cmd, q, rec, env.now) {
            return fx.err(corr, ent, e);
        }
        let ok_or = |r: Result<(), ErrorType>| match r {
            Ok(()) => BrokerMsg::Ok,
            Err(e) => BrokerMsg::Err(e),
        };
        let r = match cmd {
            Command::Sub => return self.subscribe(s, corr, ent, q, rec, env, fx),
            Command::Get => self.get_message(s, ent, q, rec, env),
            Command::Ack(msg_id) => self.ack(s, ent, &msg_id, q, rec, env),
            Command::Send(flags, body) => self.send_message(s, q, rec, flags, body, env, fx),
            Command::Key(k) => ok_or(self.secure(q, k)),
            Command::Rkey(ks) => self.rkey(q, rec, ks),
            Command::Skey(k) => self.skey(q, rec, k),
            Command::Off => ok_or(st.set_status(q, QueueStatus::Off)),
            Command::Del => self.delete_queue(s, ent, q, fx),
            Command::Que => self.queue_info(s, ent, q, rec),
            Command::Lset(lid, data) => self.lset(q, rec, lid, data),
            Command::Ldel => self.ldel(q, rec),
            Command::Lkey(k) => self.lkey(q, rec, ent, k),
            Command::Lget => self.lget(q, rec, ent),
            Command::Nkey(nkey, dh) => self.add_notifier(s, q, nkey, dh, env, fx),
            Command::Ndel => self.delete_notifier(s, q, fx),
            Command::Nsub => self.subscribe_notifications(s, q.recipient_id(), ent, env, fx),
            // not queue commands: `apply` never sends them here
            Command::New(_)
            | Command::Subs(..)
            | Command::Nsubs(..)
            | Command::Rslv(_)
            | Command::Ping
            | Command::Prxy(..)
            | Command::Pfwd(..)
            | Command::Rfwd(_) => BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)),
        };
        fx.reply(corr, ent, r)
    }

    /// The status and activity rules every queue command passes first: a blocked queue takes
    /// only OFF, DEL and SEND (SEND reports BLOCKED itself); the day of use is recorded.
    fn queue_rules(
        &self,
        cmd: &Command,
        q: &Queue,
        rec: &QueueRec,
        now: i64,
    ) -> Result<(), ErrorType> {
        status_rule(cmd, rec)?;
        if let Some(today) = day_to_record(cmd, rec, now) {
            self.store.update_time(q, today)?;
        }
        Ok(())
    }

    /// Forget a connection's subscriptions when it closes.
    pub fn disconnect(&self, c: &Arc<ClientState>) {
        self.subs.remove_client(c);
        self.service_disconnect(c);
    }
}
