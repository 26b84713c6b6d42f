//! The fields of commands: keys, NEW's parameters, link data and the v19 service counts, in
//! the reference's encodings (see the parent module for the layout of each command).

use super::{
    empty_ids_hash, Command, IdsHash, NewQueueReq, QueueLinkData, QueueReqData, SubscriptionMode,
};
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::protocol::encoding::{DResult, DecodeError, Decoder, Encoder};
use crate::protocol::version::{self, Version};

/// The v19 fields of SUBS/NSUBS; older versions carry none (count -1, empty hash).
pub(super) fn service_subs(v: Version, d: &mut Decoder) -> DResult<(i64, IdsHash)> {
    if v >= version::RCV_SERVICE {
        d.space()?;
        let n = d.i64()?;
        Ok((n, d.short_bytes()?.to_vec()))
    } else {
        Ok((-1, empty_ids_hash()))
    }
}

pub(super) fn encode_service_subs(v: Version, e: &mut Encoder, n: i64, h: &[u8]) {
    if v >= version::RCV_SERVICE {
        e.space().i64(n).short_bytes(h);
    }
}

pub(super) fn field<T>(d: &mut Decoder, f: impl FnOnce(&mut Decoder) -> DResult<T>) -> DResult<T> {
    d.space()?;
    f(d)
}

/// Encode a key as length-prefixed SPKI DER.
pub fn key(e: &mut Encoder, k: &PublicKey) {
    e.short_bytes(&k.to_der());
}

/// An authorization key: Ed25519, Ed448 (signatures) or X25519 (authenticators).
pub fn auth_key(d: &mut Decoder) -> DResult<PublicKey> {
    let k = PublicKey::from_der(d.short_bytes()?).map_err(|_| DecodeError("bad key"))?;
    match k.algorithm() {
        KeyAlgorithm::Ed25519 | KeyAlgorithm::Ed448 | KeyAlgorithm::X25519 => Ok(k),
        KeyAlgorithm::X448 => Err(DecodeError("bad auth key type")),
    }
}

/// An X25519 DH key.
pub fn dh_key(d: &mut Decoder) -> DResult<PublicKey> {
    let k = PublicKey::from_der(d.short_bytes()?).map_err(|_| DecodeError("bad key"))?;
    if k.algorithm() == KeyAlgorithm::X25519 {
        Ok(k)
    } else {
        Err(DecodeError("bad DH key type"))
    }
}

pub(super) fn basic_auth(d: &mut Decoder) -> DResult<Vec<u8>> {
    let a = d.short_bytes()?;
    let ok = a
        .iter()
        .all(|&c| c.is_ascii_graphic() && c != b'@' && c != b':' && c != b'/');
    if ok {
        Ok(a.to_vec())
    } else {
        Err(DecodeError("invalid character in BasicAuth"))
    }
}

pub(super) fn link_data(d: &mut Decoder) -> DResult<QueueLinkData> {
    let f = d.large_bytes()?.to_vec();
    let u = d.large_bytes()?.to_vec();
    Ok((f, u))
}

pub(super) fn sub_mode(e: &mut Encoder, m: SubscriptionMode) {
    e.byte(match m {
        SubscriptionMode::Subscribe => b'S',
        SubscriptionMode::OnlyCreate => b'C',
    });
}

pub(super) fn encode_req_data(e: &mut Encoder, q: &QueueReqData) {
    match q {
        QueueReqData::Messaging(x) => {
            e.byte(b'M').maybe(x.as_ref(), |e, (sid, ld)| {
                e.short_bytes(sid).large_bytes(&ld.0).large_bytes(&ld.1);
            });
        }
        QueueReqData::Contact(x) => {
            e.byte(b'C').maybe(x.as_ref(), |e, (lid, sid, ld)| {
                e.short_bytes(lid)
                    .short_bytes(sid)
                    .large_bytes(&ld.0)
                    .large_bytes(&ld.1);
            });
        }
    }
}

pub(super) fn parse_new(v: Version, d: &mut Decoder) -> DResult<Command> {
    d.space()?;
    let rcv_auth_key = auth_key(d)?;
    let rcv_dh_key = dh_key(d)?;
    let (auth, sub_mode, queue_req_data, ntf_creds);
    if v >= version::SND_AUTH_KEY {
        auth = d.maybe(basic_auth)?;
        sub_mode = parse_sub_mode(d)?;
        if v >= version::SHORT_LINKS {
            queue_req_data = d.maybe(parse_req_data)?;
            ntf_creds = if v >= version::NEW_NTF_CREDS {
                d.maybe(|d| Ok((auth_key(d)?, dh_key(d)?)))?
            } else {
                None
            };
        } else {
            queue_req_data = Some(if d.bool()? {
                QueueReqData::Messaging(None)
            } else {
                QueueReqData::Contact(None)
            });
            ntf_creds = None;
        }
    } else {
        auth = if d.peek() == Some(b'A') {
            d.byte()?;
            Some(basic_auth(d)?)
        } else {
            None
        };
        sub_mode = parse_sub_mode(d)?;
        queue_req_data = None;
        ntf_creds = None;
    }
    Ok(Command::New(NewQueueReq {
        rcv_auth_key,
        rcv_dh_key,
        auth,
        sub_mode,
        queue_req_data,
        ntf_creds,
    }))
}

pub(super) fn parse_sub_mode(d: &mut Decoder) -> DResult<SubscriptionMode> {
    match d.byte()? {
        b'S' => Ok(SubscriptionMode::Subscribe),
        b'C' => Ok(SubscriptionMode::OnlyCreate),
        _ => Err(DecodeError("bad SubscriptionMode")),
    }
}

pub(super) fn parse_req_data(d: &mut Decoder) -> DResult<QueueReqData> {
    match d.byte()? {
        b'M' => Ok(QueueReqData::Messaging(d.maybe(|d| {
            let sid = d.short_bytes()?.to_vec();
            Ok((sid, link_data(d)?))
        })?)),
        b'C' => Ok(QueueReqData::Contact(d.maybe(|d| {
            let lid = d.short_bytes()?.to_vec();
            let sid = d.short_bytes()?.to_vec();
            Ok((lid, sid, link_data(d)?))
        })?)),
        _ => Err(DecodeError("bad QueueReqData")),
    }
}
