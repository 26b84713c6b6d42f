//! Blocks and transmissions.
//!
//! ```text
//! block (16384 bytes)  = <u16 len><content><'#' padding>        (v11+: secret_box of that,
//!                                                                padded to 16368, + 16-byte tag)
//! content              = <count: 1 byte, >= 1> (<u16 len><transmission>){count}
//! transmission         = <ShortBytes authenticator>[v16+, if authenticator: <Maybe Ed25519 sig>]
//!                        <authorized>
//! authorized           = [v6 only: <ShortBytes sessionId>]<ShortBytes corrId><ShortBytes entityId>
//!                        <command to the end>
//! ```
//!
//! From v7 the session ID is not sent but is prepended to `authorized` before verifying it.
//! An authenticator of 80 bytes is a crypto_box authenticator; 64 or 114 bytes is an
//! Ed25519/Ed448 signature; empty means none.

use super::command::Command;
use super::encoding::{DResult, DecodeError, Decoder, Encoder};
use super::errors::ErrorType;
use super::response::BrokerMsg;
use super::version::{self, Version};
use crate::crypto::keys::KeyAlgorithm;

/// Size of a crypto_box authenticator (SHA-512 digest + Poly1305 tag).
pub const CB_AUTHENTICATOR_SIZE: usize = 80;

/// Per-connection parameters that change how transmissions are framed.
#[derive(Debug, Clone)]
pub struct THParams {
    /// tls-unique of the connection.
    pub session_id: Vec<u8>,
    /// Negotiated version.
    pub version: Version,
}

impl THParams {
    /// Session ID is implied (v7+).
    pub fn imply_sess_id(&self) -> bool {
        self.version >= version::AUTH_CMDS
    }

    /// Service signature slot present (v16+).
    pub fn service_auth(&self) -> bool {
        self.version >= version::SERVICE_CERTS
    }
}

/// Split block content into its batched transmissions.
pub fn split_batch(content: &[u8]) -> DResult<Vec<&[u8]>> {
    let mut d = Decoder::new(content);
    let v = d.non_empty(|d| d.large_bytes())?;
    d.finish()?;
    Ok(v)
}

/// Transmissions a block holds at most (its count is one byte).
pub const MAX_BATCH: usize = 255;

/// Bytes of a block's content available to length-prefixed transmissions (each takes its
/// length + 2), after the padding length, count and the block encryption tag.
pub fn block_room(block_size: usize) -> usize {
    block_size - 19
}

/// Pack encoded transmissions into block contents (before padding), as many per block as fit
/// (at most [`MAX_BATCH`] and [`block_room`]).
/// Each item is `Ok(content)` or `Err(index)` for a transmission too large for any block.
pub fn batch(transmissions: &[Vec<u8>], block_size: usize) -> Vec<Result<Vec<u8>, usize>> {
    let limit = block_room(block_size);
    let mut out = Vec::new();
    let mut cur: Vec<&[u8]> = Vec::new();
    let mut len = 0usize;
    let flush = |cur: &mut Vec<&[u8]>, len: &mut usize, out: &mut Vec<Result<Vec<u8>, usize>>| {
        if !cur.is_empty() {
            let mut e = Encoder::with_capacity(*len + 1);
            e.byte(cur.len() as u8);
            for t in cur.iter() {
                e.large_bytes(t);
            }
            out.push(Ok(e.finish()));
            cur.clear();
            *len = 0;
        }
    };
    for (i, t) in transmissions.iter().enumerate() {
        let l = t.len() + 2;
        if l > limit {
            flush(&mut cur, &mut len, &mut out);
            out.push(Err(i));
            continue;
        }
        if len + l > limit || cur.len() == MAX_BATCH {
            flush(&mut cur, &mut len, &mut out);
        }
        cur.push(t);
        len += l;
    }
    flush(&mut cur, &mut len, &mut out);
    out
}

/// A transmission split into its parts, not yet verified.
#[derive(Debug, Clone)]
pub struct RawTransmission<'a> {
    /// Signature, authenticator or empty.
    pub authenticator: &'a [u8],
    /// Optional service signature (v16+).
    pub service_sig: Option<&'a [u8]>,
    /// The bytes the authenticator covers (session ID prepended from v7).
    pub authorized: Vec<u8>,
    /// Session ID sent in the transmission (v6 only).
    pub sess_id: &'a [u8],
    /// Correlation ID.
    pub corr_id: &'a [u8],
    /// Entity (queue) ID.
    pub entity_id: &'a [u8],
    /// Command bytes.
    pub command: &'a [u8],
}

/// Split one transmission.
pub fn parse_transmission<'a>(p: &THParams, t: &'a [u8]) -> DResult<RawTransmission<'a>> {
    let mut d = Decoder::new(t);
    let authenticator = d.short_bytes()?;
    let service_sig = if p.service_auth() && !authenticator.is_empty() {
        d.maybe(|d| {
            let s = d.short_bytes()?;
            if s.len() == 64 {
                Ok(s)
            } else {
                Err(DecodeError("bad service signature"))
            }
        })?
    } else {
        None
    };
    let signed = d.remaining();
    let sess_id = if p.imply_sess_id() {
        &[][..]
    } else {
        d.short_bytes()?
    };
    let corr_id = d.short_bytes()?;
    let entity_id = d.short_bytes()?;
    let command = d.tail();
    let authorized = if p.imply_sess_id() {
        let mut a = Vec::with_capacity(1 + p.session_id.len() + signed.len());
        a.push(p.session_id.len() as u8);
        a.extend_from_slice(&p.session_id);
        a.extend_from_slice(signed);
        a
    } else {
        signed.to_vec()
    };
    Ok(RawTransmission {
        authenticator,
        service_sig,
        authorized,
        sess_id,
        corr_id,
        entity_id,
        command,
    })
}

/// How a transmission is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransmissionAuth {
    /// A signature; the algorithm is inferred from its length.
    Signature(KeyAlgorithm, Vec<u8>),
    /// A crypto_box authenticator (80 bytes).
    Authenticator(Vec<u8>),
}

/// A transmission whose command parsed and whose credentials have the right shape.
#[derive(Debug, Clone)]
pub struct SignedTransmission {
    /// The authorization, if any.
    pub auth: Option<TransmissionAuth>,
    /// Service signature, if any.
    pub service_sig: Option<Vec<u8>>,
    /// Signed bytes.
    pub authorized: Vec<u8>,
    /// Correlation ID.
    pub corr_id: Vec<u8>,
    /// Entity ID.
    pub entity_id: Vec<u8>,
    /// The command.
    pub command: Command,
}

/// A rejected transmission: (corrId, entityId, error) to answer with.
pub type Rejected = (Vec<u8>, Vec<u8>, ErrorType);

/// The reference's `tDecodeServer`: session check, authorization shape, command parse and
/// credential check, mapping each failure to the error the reference answers with.
pub fn decode_server(
    p: &THParams,
    raw: Result<RawTransmission<'_>, DecodeError>,
) -> Result<SignedTransmission, Rejected> {
    let raw = raw.map_err(|_| (Vec::new(), Vec::new(), ErrorType::Block))?;
    let corr_id = raw.corr_id.to_vec();
    if !p.imply_sess_id() && raw.sess_id != p.session_id.as_slice() {
        return Err((corr_id, Vec::new(), ErrorType::Session));
    }
    let auth = match raw.authenticator.len() {
        0 => None,
        CB_AUTHENTICATOR_SIZE => Some(TransmissionAuth::Authenticator(raw.authenticator.to_vec())),
        64 => Some(TransmissionAuth::Signature(
            KeyAlgorithm::Ed25519,
            raw.authenticator.to_vec(),
        )),
        114 => Some(TransmissionAuth::Signature(
            KeyAlgorithm::Ed448,
            raw.authenticator.to_vec(),
        )),
        _ => return Err((corr_id, Vec::new(), ErrorType::Block)),
    };
    let entity_id = raw.entity_id.to_vec();
    let command = match Command::parse(p.version, raw.command)
        .and_then(|c| c.check_credentials(auth.is_some(), &entity_id).map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return Err((corr_id, entity_id, e)),
    };
    Ok(SignedTransmission {
        auth,
        service_sig: raw.service_sig.map(|s| s.to_vec()),
        authorized: raw.authorized,
        corr_id,
        entity_id,
        command,
    })
}

/// Encode a server message as a transmission for this connection (no authenticator).
pub fn encode_server(p: &THParams, corr_id: &[u8], entity_id: &[u8], msg: &BrokerMsg) -> Vec<u8> {
    let mut e = Encoder::with_capacity(64);
    e.short_bytes(&[]);
    if !p.imply_sess_id() {
        e.short_bytes(&p.session_id);
    }
    e.short_bytes(corr_id).short_bytes(entity_id);
    msg.encode(p.version, &mut e);
    e.finish()
}

/// The client side of framing: the bytes to authorize and a function to finish the transmission.
#[derive(Debug, Clone)]
pub struct ClientTransmission {
    /// What the authenticator must cover (always includes the session ID).
    pub for_auth: Vec<u8>,
    /// What is sent after the authenticator.
    pub to_send: Vec<u8>,
}

/// Encode a client command (corrId, entityId, command) for this connection.
pub fn encode_client(
    p: &THParams,
    corr_id: &[u8],
    entity_id: &[u8],
    cmd: &Command,
) -> ClientTransmission {
    let mut e = Encoder::with_capacity(64);
    e.short_bytes(corr_id).short_bytes(entity_id);
    cmd.encode(p.version, &mut e);
    let t = e.finish();
    let mut for_auth = Vec::with_capacity(t.len() + 1 + p.session_id.len());
    for_auth.push(p.session_id.len() as u8);
    for_auth.extend_from_slice(&p.session_id);
    for_auth.extend_from_slice(&t);
    let to_send = if p.imply_sess_id() {
        t
    } else {
        for_auth.clone()
    };
    ClientTransmission { for_auth, to_send }
}

/// Prefix the authenticator (and, v16+, the absent service signature) to a client transmission.
pub fn with_auth(p: &THParams, auth: Option<&[u8]>, to_send: &[u8]) -> Vec<u8> {
    with_service_auth(p, auth, None, to_send)
}

/// [`with_auth`] with the service signature of a service session (v16+, NEW/SUB/NSUB).
pub fn with_service_auth(
    p: &THParams,
    auth: Option<&[u8]>,
    service_sig: Option<&[u8]>,
    to_send: &[u8],
) -> Vec<u8> {
    let mut e = Encoder::with_capacity(to_send.len() + 190);
    match auth {
        None => {
            e.short_bytes(&[]);
        }
        Some(a) => {
            e.short_bytes(a);
            if p.service_auth() {
                e.maybe(service_sig, |e, s| {
                    e.short_bytes(s);
                });
            }
        }
    }
    e.raw(to_send);
    e.finish()
}

/// Split a server transmission (client side): (corrId, entityId, message).
pub fn decode_client(p: &THParams, t: &[u8]) -> DResult<(Vec<u8>, Vec<u8>, BrokerMsg)> {
    let raw = parse_transmission(p, t)?;
    if !p.imply_sess_id() && raw.sess_id != p.session_id.as_slice() {
        return Err(DecodeError("bad session"));
    }
    let m = BrokerMsg::parse(p.version, raw.command)?;
    Ok((raw.corr_id.to_vec(), raw.entity_id.to_vec(), m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_limits() {
        let ts: Vec<Vec<u8>> = (0..300).map(|i| vec![i as u8; 10]).collect();
        let blocks = batch(&ts, 16384);
        assert_eq!(blocks.len(), 2, "255 per block at most");
        let first = blocks[0].as_ref().expect("ok");
        assert_eq!(first[0], 255);
        assert_eq!(split_batch(first).expect("split").len(), 255);
        let big = vec![vec![0u8; 16384]];
        assert_eq!(batch(&big, 16384), vec![Err(0)]);
    }

    #[test]
    fn v6_transmission_carries_session_and_v7_implies_it() {
        let p6 = THParams {
            session_id: b"sess".to_vec(),
            version: 6,
        };
        let ct = encode_client(&p6, b"c1", b"q1", &Command::Ping);
        assert_eq!(ct.to_send, b"\x04sess\x02c1\x02q1PING");
        let t = with_auth(&p6, None, &ct.to_send);
        let raw = parse_transmission(&p6, &t).expect("parse");
        assert_eq!(raw.sess_id, b"sess");
        let p7 = THParams {
            session_id: b"sess".to_vec(),
            version: 7,
        };
        let ct7 = encode_client(&p7, b"c1", b"", &Command::Ping);
        assert_eq!(ct7.to_send, b"\x02c1\x00PING");
        assert_eq!(ct7.for_auth, b"\x04sess\x02c1\x00PING");
        let t7 = with_auth(&p7, None, &ct7.to_send);
        let raw7 = parse_transmission(&p7, &t7).expect("p");
        assert_eq!(raw7.authorized, ct7.for_auth);
        let st = decode_server(&p7, Ok(raw7)).expect("decoded");
        assert_eq!(st.command, Command::Ping);
    }

    #[test]
    fn server_rejections_follow_reference() {
        let p = THParams {
            session_id: b"s".to_vec(),
            version: 18,
        };
        let dec = |cmd: &[u8], auth: Option<&[u8]>, ent: &[u8]| {
            let mut e = Encoder::new();
            e.short_bytes(b"1").short_bytes(ent).raw(cmd);
            let t = with_auth(&p, auth, &e.finish());
            decode_server(&p, parse_transmission(&p, &t)).map(|s| s.command)
        };
        use super::super::errors::CommandError as C;
        let err = |c| Err((b"1".to_vec(), b"q".to_vec(), ErrorType::Cmd(c)));
        assert_eq!(dec(b"HELLO", None, b"q"), err(C::Unknown));
        assert_eq!(dec(b"SUB", None, b"q"), err(C::NoAuth));
        assert_eq!(dec(b"PING", None, b"q"), err(C::HasAuth));
        assert_eq!(dec(b"SUB extra", Some(&[1; 64]), b"q"), err(C::Syntax));
        assert_eq!(dec(b"SEND T", None, b"q"), err(C::Syntax));
        let flags = crate::protocol::command::MsgFlags { notification: true };
        assert_eq!(
            dec(b"SEND T hi", None, b"q"),
            Ok(Command::Send(flags, b"hi".to_vec()))
        );
        assert_eq!(
            dec(b"SEND T x", None, b""),
            Err((b"1".to_vec(), vec![], ErrorType::Cmd(C::NoEntity)))
        );
        assert_eq!(
            dec(b"SUB", Some(&[1; 10]), b"q"),
            Err((b"1".to_vec(), vec![], ErrorType::Block))
        );
    }
}
