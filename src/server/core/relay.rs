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
//! Only sender commands (SEND, SKEY, LKEY, LGET) and RSLV may be forwarded. RSLV is answered
//! later by a [`super::Job::Resolve`], whose RRES is sealed with the [`FwdSeal`] kept here.

use super::{Core, Effects, Env, Job, Outgoing, ResolveAnswer, Session, VerifiedTransmission};
use crate::crypto::cbox;
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

/// What sealing a forwarded command's response needs: both secrets and nonces, the proxy's
/// correlation ID and the client's framing parameters. Kept by a forwarded RSLV's job, which
/// answers after the resolver does.
#[derive(Clone)]
pub struct FwdSeal {
    secret: [u8; 32],
    proxy_nonce: [u8; 24],
    client_secret: [u8; 32],
    client_nonce: [u8; 24],
    fwd_corr: Vec<u8>,
    params: THParams,
}

impl std::fmt::Debug for FwdSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the secrets stay out of logs
        f.debug_struct("FwdSeal").finish_non_exhaustive()
    }
}

impl FwdSeal {
    /// Encode the inner response for the client and seal it twice, giving the RRES body.
    pub fn seal(&self, rc: &[u8], re: &[u8], msg: &BrokerMsg) -> Result<Vec<u8>, ErrorType> {
        let t = encode_server(&self.params, rc, re, msg);
        let content = match batch(&[t], SMP_BLOCK_SIZE).into_iter().next() {
            Some(Ok(c)) => c,
            _ => return Err(ErrorType::Block),
        };
        let r2 = cbox::cb_encrypt(
            &self.client_secret,
            &cbox::reverse_nonce(&self.client_nonce),
            &content,
            PADDED_PROXIED_T_LENGTH,
        )
        .map_err(|_| ErrorType::Block)?;
        let mut e = Encoder::with_capacity(r2.len() + 32);
        e.short_bytes(&self.fwd_corr).raw(&r2);
        Ok(cbox::secret_box(
            &self.secret,
            &cbox::reverse_nonce(&self.proxy_nonce),
            &e.finish(),
        ))
    }

    /// The RRES (or the error) answering the RFWD with `msg` as the inner response.
    pub fn rres(&self, rc: &[u8], re: &[u8], msg: &BrokerMsg) -> BrokerMsg {
        match self.seal(rc, re, msg) {
            Ok(b) => BrokerMsg::Rres(b),
            Err(e) => BrokerMsg::Err(e),
        }
    }
}

impl Core {
    /// RFWD: a proxy forwards a client's command; the answer is RRES (or an error), now or,
    /// for a forwarded RSLV, from its job.
    pub(super) fn rfwd(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        ent: &[u8],
        enc: &[u8],
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) {
        if s.forwarded {
            return fx.err(corr, ent, ErrorType::Cmd(CommandError::Prohibited));
        }
        self.stats.p_msg_fwds_recv.inc();
        match self.forwarded(s, corr, enc, env, fx) {
            Ok(Some(b)) => fx.reply(corr, &[], BrokerMsg::Rres(b)),
            Ok(None) => {}
            Err(e) => fx.reply(corr, &[], BrokerMsg::Err(e)),
        }
    }

    /// Open, verify and run the forwarded transmission; `Ok(None)` when a job answers later.
    fn forwarded(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        enc: &[u8],
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) -> Result<Option<Vec<u8>>, ErrorType> {
        let keys = s.keys;
        let secret = keys.session_secret.ok_or_else(no_server_auth)?;
        let proxy_nonce = cbox::cb_nonce(corr);
        let plain =
            cbox::secret_box_open(&secret, &proxy_nonce, enc).map_err(|_| ErrorType::Crypto)?;
        let Forwarded {
            corr_id: fwd_corr,
            version: fwd_version,
            key: fwd_key,
            transmission: et,
        } = parse_forwarded(&plain)?;
        let client_secret = keys.dh.dh(&fwd_key).map_err(|_| ErrorType::Crypto)?;
        let client_nonce = cbox::cb_nonce(&fwd_corr);
        let b =
            cbox::cb_decrypt(&client_secret, &client_nonce, et).map_err(|_| ErrorType::Crypto)?;
        let seal = FwdSeal {
            secret,
            proxy_nonce,
            client_secret,
            client_nonce,
            fwd_corr,
            params: THParams {
                session_id: keys.session_id.clone(),
                version: fwd_version,
            },
        };
        let params = &seal.params;
        let decoded = decode_forwarded(params, &b)?;
        let inner = Session {
            client: s.client,
            version: fwd_version,
            keys,
            forwarded: true,
        };
        let out = match decoded {
            Err((c, e, err)) => Outgoing::new(&c, &e, BrokerMsg::Err(err)),
            Ok(st) => {
                let allowed = matches!(
                    st.command,
                    Command::Send(..)
                        | Command::Skey(_)
                        | Command::Lkey(_)
                        | Command::Lget
                        | Command::Rslv(_)
                );
                if !allowed {
                    let e = ErrorType::Cmd(CommandError::Prohibited);
                    Outgoing::new(&st.corr_id, &st.entity_id, BrokerMsg::Err(e))
                } else {
                    match super::auth::verify_transmission(self.store.as_ref(), &keys.dh, &st) {
                        Err(e) => Outgoing::new(&st.corr_id, &st.entity_id, BrokerMsg::Err(e)),
                        Ok(queue) => {
                            if let Command::Rslv(domain) = st.command {
                                match self.rslv_admit() {
                                    Err(e) => Outgoing::new(&st.corr_id, &[], BrokerMsg::Err(e)),
                                    Ok(()) => {
                                        fx.jobs.push(Job::Resolve {
                                            domain,
                                            answer: ResolveAnswer::Forwarded {
                                                rfwd_corr: corr.to_vec(),
                                                inner_corr: st.corr_id,
                                                seal,
                                            },
                                        });
                                        return Ok(None);
                                    }
                                }
                            } else {
                                // Sender commands reply once and deliver to other connections
                                // only.
                                let mut inner_fx = Effects::default();
                                let (c, e) = (st.corr_id.clone(), st.entity_id.clone());
                                let t = VerifiedTransmission {
                                    corr_id: st.corr_id,
                                    entity_id: st.entity_id,
                                    command: st.command,
                                    queue,
                                };
                                self.apply(&inner, t, env, &mut inner_fx);
                                let first = inner_fx.replies.drain(..).next();
                                fx.deliveries.append(&mut inner_fx.deliveries);
                                first.unwrap_or_else(|| {
                                    Outgoing::new(&c, &e, BrokerMsg::Err(ErrorType::Internal))
                                })
                            }
                        }
                    }
                }
            }
        };
        seal.seal(&out.corr_id, &out.entity_id, &out.msg).map(Some)
    }
}
