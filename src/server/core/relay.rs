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

use super::{Core, Effects, Env, Outgoing, Session, VerifiedTransmission};
use crate::crypto::cbox;
use crate::protocol::command::{dh_key, Command};
use crate::protocol::encoding::{Decoder, Encoder};
use crate::protocol::errors::{BrokerError, CommandError, ErrorType, ProxyError, TransportError};
use crate::protocol::response::BrokerMsg;
use crate::protocol::transmission::{
    batch, decode_server, encode_server, parse_transmission, split_batch, THParams,
};
use crate::protocol::version::{PADDED_PROXIED_T_LENGTH, SMP_BLOCK_SIZE};

fn no_server_auth() -> ErrorType {
    ErrorType::Proxy(ProxyError::Broker(BrokerError::Transport(
        TransportError::NoServerAuth,
    )))
}

impl Core {
    /// RFWD: a proxy forwards a client's command; the answer is RRES (or an error).
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
        let r = match self.forwarded(s, corr, enc, env, fx) {
            Ok(b) => BrokerMsg::Rres(b),
            Err(e) => BrokerMsg::Err(e),
        };
        fx.reply(corr, &[], r)
    }

    fn forwarded(
        &self,
        s: &Session<'_>,
        corr: &[u8],
        enc: &[u8],
        env: &mut Env<'_>,
        fx: &mut Effects,
    ) -> Result<Vec<u8>, ErrorType> {
        let keys = s.keys;
        let secret = keys.session_secret.ok_or_else(no_server_auth)?;
        let proxy_nonce = cbox::cb_nonce(corr);
        let plain =
            cbox::secret_box_open(&secret, &proxy_nonce, enc).map_err(|_| ErrorType::Crypto)?;
        let syntax = ErrorType::Cmd(CommandError::Syntax);
        let mut d = Decoder::new(&plain);
        let fwd_corr = d.short_bytes().map_err(|_| syntax.clone())?.to_vec();
        let fwd_version = d.u16().map_err(|_| syntax.clone())?;
        let fwd_key = dh_key(&mut d).map_err(|_| syntax.clone())?;
        let et = d.tail();
        let client_secret = keys.dh.dh(&fwd_key).map_err(|_| ErrorType::Crypto)?;
        let client_nonce = cbox::cb_nonce(&fwd_corr);
        let b =
            cbox::cb_decrypt(&client_secret, &client_nonce, et).map_err(|_| ErrorType::Crypto)?;
        let params = THParams {
            session_id: keys.session_id.clone(),
            version: fwd_version,
        };
        // Exactly one forwarded transmission.
        let ts = split_batch(&b).map_err(|_| ErrorType::Block)?;
        if ts.len() != 1 {
            return Err(ErrorType::Block);
        }
        let inner = Session {
            client: s.client,
            version: fwd_version,
            keys,
            forwarded: true,
        };
        let out = match decode_server(&params, parse_transmission(&params, ts[0])) {
            Err((c, e, err)) => Outgoing::new(&c, &e, BrokerMsg::Err(err)),
            Ok(st) => {
                let allowed = matches!(
                    st.command,
                    Command::Send(..) | Command::Skey(_) | Command::Lkey(_) | Command::Lget
                );
                if !allowed {
                    let e = ErrorType::Cmd(CommandError::Prohibited);
                    Outgoing::new(&st.corr_id, &st.entity_id, BrokerMsg::Err(e))
                } else {
                    match super::auth::verify_transmission(self.store.as_ref(), &keys.dh, &st) {
                        Err(e) => Outgoing::new(&st.corr_id, &st.entity_id, BrokerMsg::Err(e)),
                        Ok(queue) => {
                            // Sender commands reply once and deliver to other connections only.
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
        };
        let t = encode_server(&params, &out.corr_id, &out.entity_id, &out.msg);
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
