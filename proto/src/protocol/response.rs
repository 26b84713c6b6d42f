//! Server messages (responses and events): encoding (server side) and parsing (client side).
//!
//! ```text
//! IDS <rcvId><sndId><srvDhKey>[v9-14: <sndSecure Bool>][v15+: <Maybe mode><Maybe linkId>]
//!     [v16+: <Maybe serviceId>][v17+: <Maybe (ntfId, ntfDhKey)>]
//! MSG <msgId><encrypted body to the end>     NID <ntfId><dhKey>
//! NMSG <24-byte nonce><short encrypted meta>  LNK <sndId><Large><Large>
//! SOK <Maybe serviceId> (v16+; older: OK)
//! SOKS <Int64>[v19+: <ShortBytes IdsHash>]   ENDS <Int64>[v19+: <ShortBytes IdsHash>]   ALLS
//! DELD (v10+; older: END)  END  OK  PONG  INFO <json>  ERR <error text>
//! RNAME <name record JSON to the end>
//! ```

use super::command::{dh_key, empty_ids_hash, key, IdsHash, QueueLinkData, QueueMode};
use super::encoding::{DResult, DecodeError, Decoder, Encoder};
use super::errors::{BlockingInfo, ErrorType};
use super::handshake::CertChainPubKey;
use super::names::NameRecord;
use super::version::{self, Version, VersionRange};
use crate::crypto::keys::PublicKey;

/// What IDS returns for a new queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueIdsKeys {
    /// Recipient ID.
    pub rcv_id: Vec<u8>,
    /// Sender ID.
    pub snd_id: Vec<u8>,
    /// Server's X25519 key for message encryption to the recipient.
    pub rcv_public_dh_key: PublicKey,
    /// Queue mode, if any.
    pub queue_mode: Option<QueueMode>,
    /// Link ID, if link data was set.
    pub link_id: Option<Vec<u8>>,
    /// Service ID the queue is associated with.
    pub service_id: Option<Vec<u8>>,
    /// Notifier credentials created with the queue (notifier ID, server's DH key).
    pub ntf_creds: Option<(Vec<u8>, PublicKey)>,
}

/// A server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMsg {
    /// Queue created.
    Ids(QueueIdsKeys),
    /// Link data.
    Lnk(Vec<u8>, QueueLinkData),
    /// Subscription OK, with the associated service.
    Sok(Option<Vec<u8>>),
    /// Service subscription: queue count and (v19+) IdsHash.
    Soks(i64, IdsHash),
    /// All messages for SUBS delivered (v19).
    Alls,
    /// A message (ID, encrypted body).
    Msg(Vec<u8>, Vec<u8>),
    /// Notifier created (ID, server DH key).
    Nid(Vec<u8>, PublicKey),
    /// Notification (nonce, encrypted metadata).
    Nmsg([u8; 24], Vec<u8>),
    /// Proxy session key (session ID, relay version range, relay's signed key).
    Pkey(Vec<u8>, VersionRange, CertChainPubKey),
    /// Relay response to proxy.
    Rres(Vec<u8>),
    /// Proxy response to client.
    Pres(Vec<u8>),
    /// Subscription ended (another connection subscribed).
    End,
    /// Service subscriptions ended: count and (v19+) IdsHash.
    Ends(i64, IdsHash),
    /// Queue deleted.
    Deld,
    /// Queue information (JSON).
    Info(Vec<u8>),
    /// Success.
    Ok,
    /// Error.
    Err(ErrorType),
    /// Keep-alive answer.
    Pong,
    /// A resolved name (v20).
    Rname(NameRecord),
}

impl BrokerMsg {
    /// Encode for a client of version `v` (older clients get the older forms).
    pub fn encode(&self, v: Version, e: &mut Encoder) {
        use BrokerMsg::*;
        match self {
            Ids(q) => {
                e.raw(b"IDS ").short_bytes(&q.rcv_id).short_bytes(&q.snd_id);
                key(e, &q.rcv_public_dh_key);
                if v >= version::SHORT_LINKS {
                    e.maybe(q.queue_mode, |e, m| m.encode(e));
                    e.maybe(q.link_id.as_deref(), |e, l| {
                        e.short_bytes(l);
                    });
                    if v >= version::SERVICE_CERTS {
                        e.maybe(q.service_id.as_deref(), |e, s| {
                            e.short_bytes(s);
                        });
                    }
                    if v >= version::NEW_NTF_CREDS {
                        e.maybe(q.ntf_creds.as_ref(), |e, (n, k)| {
                            e.short_bytes(n);
                            key(e, k);
                        });
                    }
                } else if v >= version::SND_AUTH_KEY {
                    e.bool(q.queue_mode == Some(QueueMode::Messaging));
                }
            }
            Lnk(sid, d) => {
                e.raw(b"LNK ")
                    .short_bytes(sid)
                    .large_bytes(&d.0)
                    .large_bytes(&d.1);
            }
            Sok(s) => {
                if v >= version::SERVICE_CERTS {
                    e.raw(b"SOK ").maybe(s.as_deref(), |e, s| {
                        e.short_bytes(s);
                    });
                } else {
                    e.raw(b"OK");
                }
            }
            Soks(n, h) => {
                e.raw(b"SOKS ").i64(*n);
                if v >= version::RCV_SERVICE {
                    e.short_bytes(h);
                }
            }
            Alls => {
                e.raw(b"ALLS");
            }
            Msg(id, body) => {
                e.raw(b"MSG ").short_bytes(id).raw(body);
            }
            Nid(id, k) => {
                e.raw(b"NID ").short_bytes(id);
                key(e, k);
            }
            Nmsg(nonce, meta) => {
                e.raw(b"NMSG ").raw(nonce).short_bytes(meta);
            }
            Pkey(sid, vr, ck) => {
                e.raw(b"PKEY ").short_bytes(sid);
                vr.encode(e);
                ck.encode(e);
            }
            Rres(b) => {
                e.raw(b"RRES ").raw(b);
            }
            Pres(b) => {
                e.raw(b"PRES ").raw(b);
            }
            End => {
                e.raw(b"END");
            }
            Ends(n, h) => {
                e.raw(b"ENDS ").i64(*n);
                if v >= version::RCV_SERVICE {
                    e.short_bytes(h);
                }
            }
            Deld => {
                e.raw(if v >= version::DELETED_EVENT {
                    b"DELD"
                } else {
                    b"END"
                });
            }
            Info(j) => {
                e.raw(b"INFO ").raw(j);
            }
            Ok => {
                e.raw(b"OK");
            }
            Err(err) => {
                e.raw(b"ERR ");
                match err {
                    ErrorType::Blocked(_) if v < version::BLOCKED_ENTITY => {
                        ErrorType::Auth.encode(e)
                    }
                    ErrorType::Blocked(info) if v < version::CLIENT_NOTICES => {
                        ErrorType::Blocked(BlockingInfo {
                            reason: info.reason,
                            notice: None,
                        })
                        .encode(e)
                    }
                    _ => err.encode(e),
                }
            }
            Pong => {
                e.raw(b"PONG");
            }
            Rname(r) => {
                e.raw(b"RNAME ").raw(&r.to_json());
            }
        }
    }

    /// Parse a server message at version `v` (client side).
    pub fn parse(v: Version, s: &[u8]) -> DResult<BrokerMsg> {
        let n = s.iter().position(|&c| c == b' ').unwrap_or(s.len());
        let (tag, params) = s.split_at(n);
        let mut d = Decoder::new(params);
        let m = match tag {
            b"IDS" => {
                d.space()?;
                let rcv_id = d.short_bytes()?.to_vec();
                let snd_id = d.short_bytes()?.to_vec();
                let rcv_public_dh_key = dh_key(&mut d)?;
                let (mut queue_mode, mut link_id, mut service_id, mut ntf_creds) =
                    (None, None, None, None);
                if v >= version::SHORT_LINKS {
                    queue_mode = d.maybe(QueueMode::decode)?;
                    link_id = d.maybe(|d| d.short_bytes().map(|b| b.to_vec()))?;
                    if v >= version::SERVICE_CERTS {
                        service_id = d.maybe(|d| d.short_bytes().map(|b| b.to_vec()))?;
                    }
                    if v >= version::NEW_NTF_CREDS {
                        ntf_creds = d.maybe(|d| {
                            let n = d.short_bytes()?.to_vec();
                            Ok((n, dh_key(d)?))
                        })?;
                    }
                } else if v >= version::SND_AUTH_KEY {
                    queue_mode = Some(if d.bool()? {
                        QueueMode::Messaging
                    } else {
                        QueueMode::Contact
                    });
                }
                BrokerMsg::Ids(QueueIdsKeys {
                    rcv_id,
                    snd_id,
                    rcv_public_dh_key,
                    queue_mode,
                    link_id,
                    service_id,
                    ntf_creds,
                })
            }
            b"LNK" => {
                d.space()?;
                let sid = d.short_bytes()?.to_vec();
                let f = d.large_bytes()?.to_vec();
                let u = d.large_bytes()?.to_vec();
                BrokerMsg::Lnk(sid, (f, u))
            }
            b"SOK" => {
                d.space()?;
                BrokerMsg::Sok(d.maybe(|d| d.short_bytes().map(|b| b.to_vec()))?)
            }
            b"SOKS" => {
                d.space()?;
                let (n, h) = service_count(v, &mut d)?;
                BrokerMsg::Soks(n, h)
            }
            b"ALLS" => BrokerMsg::Alls,
            b"MSG" => {
                d.space()?;
                let id = d.short_bytes()?.to_vec();
                BrokerMsg::Msg(id, d.tail().to_vec())
            }
            b"NID" => {
                d.space()?;
                let id = d.short_bytes()?.to_vec();
                BrokerMsg::Nid(id, dh_key(&mut d)?)
            }
            b"NMSG" => {
                d.space()?;
                let mut nonce = [0u8; 24];
                nonce.copy_from_slice(d.take(24)?);
                BrokerMsg::Nmsg(nonce, d.short_bytes()?.to_vec())
            }
            b"PKEY" => {
                d.space()?;
                let sid = d.short_bytes()?.to_vec();
                let vr = VersionRange::decode(&mut d)?;
                BrokerMsg::Pkey(sid, vr, CertChainPubKey::decode(&mut d)?)
            }
            b"RRES" => {
                d.space()?;
                BrokerMsg::Rres(d.tail().to_vec())
            }
            b"PRES" => {
                d.space()?;
                BrokerMsg::Pres(d.tail().to_vec())
            }
            b"END" => BrokerMsg::End,
            b"ENDS" => {
                d.space()?;
                let (n, h) = service_count(v, &mut d)?;
                BrokerMsg::Ends(n, h)
            }
            b"DELD" => BrokerMsg::Deld,
            b"INFO" => {
                d.space()?;
                BrokerMsg::Info(d.tail().to_vec())
            }
            b"OK" => BrokerMsg::Ok,
            b"ERR" => {
                d.space()?;
                BrokerMsg::Err(ErrorType::decode(&mut d)?)
            }
            b"PONG" => BrokerMsg::Pong,
            b"RNAME" => {
                d.space()?;
                BrokerMsg::Rname(
                    NameRecord::from_json(d.tail()).map_err(|_| DecodeError("bad RNAME"))?,
                )
            }
            _ => return Err(DecodeError("bad message")),
        };
        d.finish()?;
        Ok(m)
    }
}

/// The count and (v19+) IdsHash of SOKS/ENDS; before v19 the hash is empty (the reference's
/// `mempty`).
fn service_count(v: Version, d: &mut Decoder) -> DResult<(i64, IdsHash)> {
    let n = d.i64()?;
    if v >= version::RCV_SERVICE {
        Ok((n, d.short_bytes()?.to_vec()))
    } else {
        Ok((n, empty_ids_hash()))
    }
}
