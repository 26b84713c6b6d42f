//! The relay role: commands a proxy forwards on a client's behalf (RFWD), as the reference's
//! `processForwardedCommand`.
//!
//! ```text
//! RFWD body  = secret_box(session secret, nonce = corrId)          (no padding)
//!              of <ShortBytes fwdCorrId><u16 version><X25519 key><encrypted transmission>
//! transmission = crypto_box(dh(key, server session key), nonce = fwdCorrId), padded,
//!              of one batched transmission (count 1)
//! RRES body  = secret_box(session secret, reversed corrId nonce)
//!              of <ShortBytes fwdCorrId><response, crypto_box'd with the reversed
//!              fwdCorrId nonce, padded to 16226>
//! ```
//! Only sender commands may be forwarded (SEND, SKEY, LKEY, LGET).

use super::commands::{Conn, Output};
use super::verify::verify_transmission;
use crate::crypto::cbox;
use crate::crypto::keys::DhKeyPair;
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{dh_key, Command};
use crate::protocol::encoding::{Decoder, Encoder};
use crate::protocol::errors::{BrokerError, CommandError, ErrorType, ProxyError, TransportError};
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    batch, decode_server, encode_server, parse_transmission, split_batch, Rejected,
    SignedTransmission, THParams,
};
use crate::protocol::version::{PADDED_PROXIED_T_LENGTH, SMP_BLOCK_SIZE};

/// Session material the relay role needs from the connection.
pub struct RelaySession<'a> {
    /// The connection's framing parameters (session ID).
    pub params: &'a THParams,
    /// The server's per-connection DH key.
    pub dh: &'a DhKeyPair,
    /// DH secret with the proxy's session key.
    pub session_secret: Option<[u8; 32]>,
}

/// A decrypted RFWD body, split.
pub struct Forwarded<'a> {
    /// The client's correlation ID: the nonce of the inner encryption.
    pub corr_id: Vec<u8>,
    /// The version the client speaks to this relay.
    pub version: u16,
    /// The client's per-message DH key.
    pub key: PublicKey,
    /// The client's encrypted transmission.
    pub transmission: &'a [u8],
}

/// Split a decrypted RFWD body. Public so the fuzz targets reach it without the session
/// encryption.
pub fn parse_forwarded(plain: &[u8]) -> Result<Forwarded<'_>, ErrorType> {
    let syntax = ErrorType::Cmd(CommandError::Syntax);
    let mut d = Decoder::new(plain);
    let corr_id = d.short_bytes().map_err(|_| syntax.clone())?.to_vec();
    let version = d.u16().map_err(|_| syntax.clone())?;
    let key = dh_key(&mut d).map_err(|_| syntax.clone())?;
    Ok(Forwarded {
        corr_id,
        version,
        key,
        transmission: d.tail(),
    })
}

/// Decode the decrypted forwarded block content: exactly one transmission, at the version the
/// client chose (`params.version`). Public so the fuzz targets reach it without the encryption.
pub fn decode_forwarded(
    params: &THParams,
    content: &[u8],
) -> Result<Result<SignedTransmission, Rejected>, ErrorType> {
    let ts = split_batch(content).map_err(|_| ErrorType::Block)?;
    if ts.len() != 1 {
        return Err(ErrorType::Block);
    }
    Ok(decode_server(params, parse_transmission(params, ts[0])))
}

fn no_server_auth() -> ErrorType {
    ErrorType::Proxy(ProxyError::Broker(BrokerError::Transport(
        TransportError::NoServerAuth,
    )))
}

impl Conn<'_> {
    /// Decrypt, verify and run a forwarded command; the result is the RRES (or an error).
    pub fn forwarded(&self, relay: &RelaySession<'_>, corr: &[u8], enc: &[u8]) -> BrokerMsg {
        match self.forwarded_inner(relay, corr, enc) {
            Ok(b) => BrokerMsg::Rres(b),
            Err(e) => BrokerMsg::Err(e),
        }
    }

    fn forwarded_inner(
        &self,
        relay: &RelaySession<'_>,
        corr: &[u8],
        enc: &[u8],
    ) -> Result<Vec<u8>, ErrorType> {
        let secret = relay.session_secret.ok_or_else(no_server_auth)?;
        let proxy_nonce = cbox::cb_nonce(corr);
        let plain =
            cbox::secret_box_open(&secret, &proxy_nonce, enc).map_err(|_| ErrorType::Crypto)?;
        let Forwarded {
            corr_id: fwd_corr,
            version: fwd_version,
            key: fwd_key,
            transmission: et,
        } = parse_forwarded(&plain)?;
        let client_secret = relay.dh.dh(&fwd_key).map_err(|_| ErrorType::Crypto)?;
        let client_nonce = cbox::cb_nonce(&fwd_corr);
        let b =
            cbox::cb_decrypt(&client_secret, &client_nonce, et).map_err(|_| ErrorType::Crypto)?;
        let params = THParams {
            session_id: relay.params.session_id.clone(),
            version: fwd_version,
        };
        let decoded = decode_forwarded(&params, &b)?;
        let conn = Conn {
            state: self.state,
            client: self.client,
            version: fwd_version,
            relay: None,
        };
        let (rc, re, msg) = match decoded {
            Err((c, e, err)) => (c, e, BrokerMsg::Err(err)),
            Ok(st) => {
                let allowed = matches!(
                    st.command,
                    Command::Send(..) | Command::Skey(_) | Command::Lkey(_) | Command::Lget
                );
                if !allowed {
                    (
                        st.corr_id,
                        st.entity_id,
                        BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)),
                    )
                } else {
                    match verify_transmission(self.state.store.as_ref(), relay.dh, &st) {
                        Err(e) => (st.corr_id, st.entity_id, BrokerMsg::Err(e)),
                        Ok(v) => {
                            let mut out = Output::default();
                            conn.process(&st.corr_id, &st.entity_id, st.command, v, &mut out);
                            out.responses.into_iter().next().unwrap_or((
                                st.corr_id,
                                st.entity_id,
                                BrokerMsg::Err(ErrorType::Internal),
                            ))
                        }
                    }
                }
            }
        };
        let t = encode_server(&params, &rc, &re, &msg);
        let content = match batch(&[t], SMP_BLOCK_SIZE).into_iter().next() {
            Some(Ok(c)) => c,
            _ => return Err(ErrorType::Block),
        };
        let r2 = cbox::cb_encrypt(
            &client_secret,
            &cbox::reverse_nonce(&client_nonce),
            &content,
            PADDED_PROXIED_T_LENGTH,
        )
        .map_err(|_| ErrorType::Block)?;
        let mut e = Encoder::with_capacity(r2.len() + 32);
        e.short_bytes(&fwd_corr).raw(&r2);
        Ok(cbox::secret_box(
            &secret,
            &cbox::reverse_nonce(&proxy_nonce),
            &e.finish(),
        ))
    }
}
