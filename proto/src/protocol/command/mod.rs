//! Client commands: parsing (server side) and encoding (client side), by version.
//!
//! A command is `TAG` followed by its fields; every field after the tag is preceded by one space
//! where the reference uses `_smpP`:
//!
//! ```text
//! NEW <rcvAuthKey><rcvDhKey>[v6-8: ['A' auth]][v9+: <Maybe auth>]<subMode>
//!     [v9-14: <sndSecure Bool>][v15+: <Maybe QueueReqData>][v17+: <Maybe NtfCreds>]
//! KEY <key>   RKEY <NonEmpty key>   SKEY <key>   LKEY <key>   ACK <msgId>
//! NKEY <ntfKey><ntfDhKey>           LSET <linkId><Large fixed><Large user>
//! SEND <flags>[ignored until space] <body to the end>
//! SUB GET OFF DEL QUE LDEL NDEL NSUB PING LGET    (no fields)
//! SUBS, NSUBS  [v19+: ' ' <Int64 expected queue count><ShortBytes IdsHash>]
//! PRXY <server><Maybe auth>   PFWD <version><dhKey><tail>   RFWD <tail>
//! RSLV <domain>[ignored to the end]                      (any version: not gated on parse)
//! ```
//!
//! Keys are length-prefixed SubjectPublicKeyInfo DER; IDs are length-prefixed bytes.

use super::encoding::{DResult, DecodeError, Decoder, Encoder};
use super::errors::{CommandError, ErrorType};
use super::names::SimplexDomain;
use super::version::{self, Version};
use crate::crypto::keys::PublicKey;

mod fields;

use fields::*;
pub use fields::{auth_key, dh_key, key};

/// Who may send a command; selects how it is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// Creates queues (NEW).
    Creator,
    /// Owns a queue by recipient ID.
    Recipient,
    /// A service subscribing all its queues (SUBS).
    RecipientService,
    /// Sends to a queue by sender ID.
    Sender,
    /// No entity (PING).
    IdleClient,
    /// Notification subscriber by notifier ID.
    Notifier,
    /// A notification service (NSUBS).
    NotifierService,
    /// Reads short link data by link ID.
    LinkClient,
    /// A client using this server as proxy.
    ProxiedClient,
    /// A proxy forwarding to this server as relay.
    ProxyService,
    /// A client resolving a SimpleX name (v20 RSLV).
    Resolver,
}

/// The XOR of MD5 hashes of queue IDs a service expects (v19); 16 zero bytes when a v16-18
/// client sends none (the reference's `mempty`).
pub type IdsHash = Vec<u8>;

/// The IdsHash of no queues.
pub fn empty_ids_hash() -> IdsHash {
    vec![0; 16]
}

/// Whether a new queue subscribes at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// Subscribe the creating connection.
    Subscribe,
    /// Only create.
    OnlyCreate,
}

/// Queue mode: a messaging queue the sender may secure, or a contact address queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    /// One-to-one messaging queue (sender can secure with SKEY).
    Messaging,
    /// Contact address queue.
    Contact,
}

impl QueueMode {
    /// `'M'` / `'C'`.
    pub fn encode(self, e: &mut Encoder) {
        e.byte(match self {
            QueueMode::Messaging => b'M',
            QueueMode::Contact => b'C',
        });
    }

    /// Decode `'M'` / `'C'`.
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        match d.byte()? {
            b'M' => Ok(QueueMode::Messaging),
            b'C' => Ok(QueueMode::Contact),
            _ => Err(DecodeError("bad QueueMode")),
        }
    }
}

/// Encrypted short-link data: (fixed data, user data).
pub type QueueLinkData = (Vec<u8>, Vec<u8>);

/// The optional queue data of NEW (v9+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueReqData {
    /// Messaging queue, optionally with client-chosen sender ID and link data.
    Messaging(Option<(Vec<u8>, QueueLinkData)>),
    /// Contact queue, optionally with link ID, sender ID and link data.
    Contact(Option<(Vec<u8>, Vec<u8>, QueueLinkData)>),
}

impl QueueReqData {
    /// The queue mode this request creates.
    pub fn mode(&self) -> QueueMode {
        match self {
            QueueReqData::Messaging(_) => QueueMode::Messaging,
            QueueReqData::Contact(_) => QueueMode::Contact,
        }
    }
}

/// Parameters of NEW.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueReq {
    /// Recipient's authorization key.
    pub rcv_auth_key: PublicKey,
    /// Recipient's X25519 key for server-to-recipient message encryption.
    pub rcv_dh_key: PublicKey,
    /// Basic auth (server password), if any.
    pub auth: Option<Vec<u8>>,
    /// Subscribe on creation or not.
    pub sub_mode: SubscriptionMode,
    /// Queue mode and link data.
    pub queue_req_data: Option<QueueReqData>,
    /// Notifier credentials (key, DH key), v17+.
    pub ntf_creds: Option<(PublicKey, PublicKey)>,
}

/// Message flags of SEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgFlags {
    /// Whether the recipient's notification server should be notified.
    pub notification: bool,
}

/// The SMP server address in PRXY, kept as received (hosts, port, key hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmpServerRef {
    /// Host names / addresses as text.
    pub hosts: Vec<Vec<u8>>,
    /// Port as text (may be empty).
    pub port: Vec<u8>,
    /// Server identity: SHA-256 of the CA certificate.
    pub key_hash: Vec<u8>,
}

/// A client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create a queue.
    New(NewQueueReq),
    /// Subscribe to a queue.
    Sub,
    /// Subscribe all queues of a service: expected count and IdsHash (v19+; -1 and zeros
    /// before).
    Subs(i64, IdsHash),
    /// Secure the queue with the sender's key (recipient).
    Key(PublicKey),
    /// Replace the recipient keys (contact queues).
    Rkey(Vec<PublicKey>),
    /// Set link data.
    Lset(Vec<u8>, QueueLinkData),
    /// Delete link data.
    Ldel,
    /// Add a notifier.
    Nkey(PublicKey, PublicKey),
    /// Delete the notifier.
    Ndel,
    /// Get one message without subscribing.
    Get,
    /// Acknowledge a message.
    Ack(Vec<u8>),
    /// Suspend the queue.
    Off,
    /// Delete the queue.
    Del,
    /// Queue information (debugging).
    Que,
    /// Secure the queue with the sender's key (sender, v9+).
    Skey(PublicKey),
    /// Send a message.
    Send(MsgFlags, Vec<u8>),
    /// Keep-alive.
    Ping,
    /// Secure a queue and get its link data.
    Lkey(PublicKey),
    /// Get link data.
    Lget,
    /// Subscribe to notifications.
    Nsub,
    /// Subscribe a notification service (count and hash as SUBS).
    Nsubs(i64, IdsHash),
    /// Ask the proxy for a relay session.
    Prxy(SmpServerRef, Option<Vec<u8>>),
    /// Forward an encrypted transmission via the proxy.
    Pfwd(Version, PublicKey, Vec<u8>),
    /// Proxy-to-relay forwarded transmission.
    Rfwd(Vec<u8>),
    /// Resolve a SimpleX name (v20).
    Rslv(SimplexDomain),
}

impl Command {
    /// The party of the command, which decides how it is authorized.
    pub fn party(&self) -> Party {
        use Command::*;
        match self {
            New(_) => Party::Creator,
            Sub | Key(_) | Rkey(_) | Lset(..) | Ldel | Nkey(..) | Ndel | Get | Ack(_) | Off
            | Del | Que => Party::Recipient,
            Subs(..) => Party::RecipientService,
            Skey(_) | Send(..) => Party::Sender,
            Ping => Party::IdleClient,
            Lkey(_) | Lget => Party::LinkClient,
            Nsub => Party::Notifier,
            Nsubs(..) => Party::NotifierService,
            Prxy(..) | Pfwd(..) => Party::ProxiedClient,
            Rfwd(_) => Party::ProxyService,
            Rslv(_) => Party::Resolver,
        }
    }

    /// Whether the command may carry a service signature (v16+).
    pub fn uses_service_auth(&self) -> bool {
        matches!(self, Command::New(_) | Command::Sub | Command::Nsub)
    }

    /// The reference's `checkCredentials`: which commands need/forbid auth and entity ID.
    pub fn check_credentials(&self, has_auth: bool, entity: &[u8]) -> Result<(), ErrorType> {
        use Command::*;
        let no_entity = entity.is_empty();
        let r = match self {
            New(_) if !has_auth => Err(CommandError::NoAuth),
            New(_) if !no_entity => Err(CommandError::HasAuth),
            New(_) => Ok(()),
            Send(..) if no_entity => Err(CommandError::NoEntity),
            Send(..) => Ok(()),
            Lget | Pfwd(..) if no_entity => Err(CommandError::NoEntity),
            Lget | Pfwd(..) if has_auth => Err(CommandError::HasAuth),
            Lget | Pfwd(..) => Ok(()),
            Ping | Prxy(..) | Rfwd(_) | Rslv(_) if has_auth || !no_entity => {
                Err(CommandError::HasAuth)
            }
            Ping | Prxy(..) | Rfwd(_) | Rslv(_) => Ok(()),
            _ if !has_auth || no_entity => Err(CommandError::NoAuth),
            _ => Ok(()),
        };
        r.map_err(ErrorType::Cmd)
    }

    /// Parse `TAG[ fields]` at version `v`; unknown tag is `CMD UNKNOWN`, bad fields `CMD SYNTAX`.
    pub fn parse(v: Version, s: &[u8]) -> Result<Command, ErrorType> {
        let n = s.iter().position(|&c| c == b' ').unwrap_or(s.len());
        let (tag, params) = s.split_at(n);
        let mut d = Decoder::new(params);
        let cmd = match tag {
            b"NEW" => parse_new(v, &mut d),
            b"SUB" => Ok(Command::Sub),
            b"SUBS" => service_subs(v, &mut d).map(|(n, h)| Command::Subs(n, h)),
            b"KEY" => field(&mut d, auth_key).map(Command::Key),
            b"RKEY" => d
                .space()
                .and_then(|_| d.non_empty(auth_key))
                .map(Command::Rkey),
            b"LSET" => (|| {
                d.space()?;
                let id = d.short_bytes()?.to_vec();
                Ok(Command::Lset(id, link_data(&mut d)?))
            })(),
            b"LDEL" => Ok(Command::Ldel),
            b"NKEY" => (|| {
                d.space()?;
                let k = auth_key(&mut d)?;
                Ok(Command::Nkey(k, dh_key(&mut d)?))
            })(),
            b"NDEL" => Ok(Command::Ndel),
            b"GET" => Ok(Command::Get),
            b"ACK" => field(&mut d, |d| d.short_bytes().map(|b| b.to_vec())).map(Command::Ack),
            b"OFF" => Ok(Command::Off),
            b"DEL" => Ok(Command::Del),
            b"QUE" => Ok(Command::Que),
            b"SKEY" => field(&mut d, auth_key).map(Command::Skey),
            b"SEND" => (|| {
                d.space()?;
                let notification = d.bool()?;
                d.till_space();
                d.space()?;
                Ok(Command::Send(MsgFlags { notification }, d.tail().to_vec()))
            })(),
            b"PING" => Ok(Command::Ping),
            b"LKEY" => field(&mut d, auth_key).map(Command::Lkey),
            b"LGET" => Ok(Command::Lget),
            b"NSUB" => Ok(Command::Nsub),
            b"NSUBS" => service_subs(v, &mut d).map(|(n, h)| Command::Nsubs(n, h)),
            b"PRXY" => (|| {
                d.space()?;
                let hosts = d.non_empty(|d| d.short_bytes().map(|b| b.to_vec()))?;
                let port = d.short_bytes()?.to_vec();
                let key_hash = d.short_bytes()?.to_vec();
                let auth = d.maybe(basic_auth)?;
                Ok(Command::Prxy(
                    SmpServerRef {
                        hosts,
                        port,
                        key_hash,
                    },
                    auth,
                ))
            })(),
            b"PFWD" => (|| {
                d.space()?;
                let fv = d.u16()?;
                let k = dh_key(&mut d)?;
                Ok(Command::Pfwd(fv, k, d.tail().to_vec()))
            })(),
            b"RFWD" => (|| {
                d.space()?;
                Ok(Command::Rfwd(d.tail().to_vec()))
            })(),
            b"RSLV" => (|| {
                d.space()?;
                let dom = SimplexDomain::decode(&mut d)?;
                d.tail();
                Ok(Command::Rslv(dom))
            })(),
            _ => return Err(ErrorType::Cmd(CommandError::Unknown)),
        };
        match cmd.and_then(|c| d.finish().map(|_| c)) {
            Ok(c) => Ok(c),
            Err(_) => Err(ErrorType::Cmd(CommandError::Syntax)),
        }
    }

    /// Encode at version `v` (used by our client).
    pub fn encode(&self, v: Version, e: &mut Encoder) {
        use Command::*;
        match self {
            New(r) => {
                e.raw(b"NEW ");
                key(e, &r.rcv_auth_key);
                key(e, &r.rcv_dh_key);
                if v >= version::SND_AUTH_KEY {
                    e.maybe(r.auth.as_deref(), |e, a| {
                        e.short_bytes(a);
                    });
                    sub_mode(e, r.sub_mode);
                    if v >= version::SHORT_LINKS {
                        e.maybe(r.queue_req_data.as_ref(), encode_req_data);
                        if v >= version::NEW_NTF_CREDS {
                            e.maybe(r.ntf_creds.as_ref(), |e, (k, dh)| {
                                key(e, k);
                                key(e, dh);
                            });
                        }
                    } else {
                        let snd_secure = matches!(
                            r.queue_req_data.as_ref().map(|q| q.mode()),
                            Some(QueueMode::Messaging)
                        );
                        e.bool(snd_secure);
                    }
                } else {
                    if let Some(a) = &r.auth {
                        e.byte(b'A').short_bytes(a);
                    }
                    sub_mode(e, r.sub_mode);
                }
            }
            Sub => {
                e.raw(b"SUB");
            }
            Subs(n, h) => {
                e.raw(b"SUBS");
                encode_service_subs(v, e, *n, h);
            }
            Key(k) => {
                e.raw(b"KEY ");
                key(e, k);
            }
            Rkey(ks) => {
                e.raw(b"RKEY ").list(ks, key);
            }
            Lset(id, d) => {
                e.raw(b"LSET ")
                    .short_bytes(id)
                    .large_bytes(&d.0)
                    .large_bytes(&d.1);
            }
            Ldel => {
                e.raw(b"LDEL");
            }
            Nkey(k, dh) => {
                e.raw(b"NKEY ");
                key(e, k);
                key(e, dh);
            }
            Ndel => {
                e.raw(b"NDEL");
            }
            Get => {
                e.raw(b"GET");
            }
            Ack(id) => {
                e.raw(b"ACK ").short_bytes(id);
            }
            Off => {
                e.raw(b"OFF");
            }
            Del => {
                e.raw(b"DEL");
            }
            Que => {
                e.raw(b"QUE");
            }
            Skey(k) => {
                e.raw(b"SKEY ");
                key(e, k);
            }
            Send(f, body) => {
                e.raw(b"SEND ").bool(f.notification).space().raw(body);
            }
            Ping => {
                e.raw(b"PING");
            }
            Lkey(k) => {
                e.raw(b"LKEY ");
                key(e, k);
            }
            Lget => {
                e.raw(b"LGET");
            }
            Nsub => {
                e.raw(b"NSUB");
            }
            Nsubs(n, h) => {
                e.raw(b"NSUBS");
                encode_service_subs(v, e, *n, h);
            }
            Prxy(s, auth) => {
                e.raw(b"PRXY ")
                    .list(&s.hosts, |e, h| {
                        e.short_bytes(h);
                    })
                    .short_bytes(&s.port)
                    .short_bytes(&s.key_hash)
                    .maybe(auth.as_deref(), |e, a| {
                        e.short_bytes(a);
                    });
            }
            Pfwd(fv, k, t) => {
                e.raw(b"PFWD ").u16(*fv);
                key(e, k);
                e.raw(t);
            }
            Rfwd(t) => {
                e.raw(b"RFWD ").raw(t);
            }
            Rslv(dom) => {
                e.raw(b"RSLV ").raw(dom.as_str().as_bytes());
            }
        }
    }
}
