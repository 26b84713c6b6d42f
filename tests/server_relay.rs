//! The relay role: a command forwarded by a proxy (RFWD) is decrypted, run and answered (RRES)
//! with the reference's layering of encryptions.

mod common;

use common::*;
use smp_server::crypto::cbox;
use smp_server::crypto::keys::DhKeyPair;
use smp_server::protocol::command::{key, Command};
use smp_server::protocol::encoding::{Decoder, Encoder};
use smp_server::protocol::errors::{CommandError, ErrorType};
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::{batch, decode_client, split_batch, THParams};
use smp_server::protocol::version::{PADDED_PROXIED_T_LENGTH, SMP_BLOCK_SIZE};
use smp_server::server::Settings;

/// Forward `cmd` for `entity` through `proxy` (a client connection acting as the proxy) at
/// `fwd_version`; returns the relay's decrypted response.
async fn forward(
    proxy: &smp_server::client::SmpClient,
    entity: &[u8],
    cmd: Command,
    sender_key: Option<&smp_server::client::AuthKey>,
    fwd_version: u16,
) -> BrokerMsg {
    let relay_key = proxy.server_dh_key.clone().expect("relay session key");
    let sess_secret = proxy.session_secret.expect("session secret");
    // The end client's side: its own key for this transmission, and the relay's session ID.
    let fwd_key = DhKeyPair::generate().expect("dh");
    let client_secret = fwd_key.dh(&relay_key).expect("dh");
    let fwd_corr = smp_server::client::new_corr_id();
    let params = THParams {
        session_id: proxy.params.session_id.clone(),
        version: fwd_version,
    };
    let ct = smp_server::protocol::transmission::encode_client(&params, &fwd_corr, entity, &cmd);
    let auth = sender_key.map(|k| match k {
        smp_server::client::AuthKey::Sign(s) => s.sign(&ct.for_auth),
        smp_server::client::AuthKey::Dh(d) => {
            cbox::cb_authenticate(&relay_key, d, &cbox::cb_nonce(&fwd_corr), &ct.for_auth)
                .expect("auth")
        }
    });
    let t = smp_server::protocol::transmission::with_auth(&params, auth.as_deref(), &ct.to_send);
    let content = batch(&[t], SMP_BLOCK_SIZE).remove(0).expect("fits");
    let et = cbox::cb_encrypt(
        &client_secret,
        &cbox::cb_nonce(&fwd_corr),
        &content,
        PADDED_PROXIED_T_LENGTH,
    )
    .expect("enc");
    // The proxy's side.
    let mut e = Encoder::new();
    e.short_bytes(&fwd_corr).u16(fwd_version);
    key(&mut e, &fwd_key.public());
    e.raw(&et);
    let corr = smp_server::client::new_corr_id();
    let enc = cbox::secret_box(&sess_secret, &cbox::cb_nonce(&corr), &e.finish());
    let t = proxy
        .transmission(&corr, b"", &Command::Rfwd(enc), None)
        .expect("transmission");
    let mut r = proxy
        .send_batch(vec![(corr.clone(), t)])
        .await
        .expect("RFWD");
    let (ent, msg) = r.remove(0);
    assert!(ent.is_empty(), "RRES has no entity");
    let BrokerMsg::Rres(r3) = msg else {
        panic!("expected RRES, got {msg:?}")
    };
    let fr = cbox::secret_box_open(
        &sess_secret,
        &cbox::reverse_nonce(&cbox::cb_nonce(&corr)),
        &r3,
    )
    .expect("open RRES");
    let mut d = Decoder::new(&fr);
    assert_eq!(d.short_bytes().expect("corr"), fwd_corr.as_slice());
    let r2 = d.tail();
    assert_eq!(r2.len(), PADDED_PROXIED_T_LENGTH + 16);
    let content = cbox::cb_decrypt(
        &client_secret,
        &cbox::reverse_nonce(&cbox::cb_nonce(&fwd_corr)),
        r2,
    )
    .expect("open response");
    let ts = split_batch(&content).expect("batch");
    assert_eq!(ts.len(), 1);
    let (rc, _, m) = decode_client(&params, ts[0]).expect("response");
    assert_eq!(rc, fwd_corr);
    m
}

#[tokio::test]
async fn forwarded_skey_and_send_reach_the_recipient() {
    let s = start_server(Settings::default()).await;
    let rc = s.client().await;
    let r = create_queue(&rc).await;
    let proxy = s.client().await;
    let skey = dh_auth_key();
    let resp = forward(
        &proxy,
        r.sid(),
        Command::Skey(skey.public()),
        Some(&skey),
        17,
    )
    .await;
    assert_eq!(resp, BrokerMsg::Ok);
    let resp = forward(&proxy, r.sid(), send_cmd(b"via proxy"), Some(&skey), 17).await;
    assert_eq!(resp, BrokerMsg::Ok);
    let (_, m) = event(&rc).await;
    assert_eq!(decrypt_msg(&r, &m).body.as_deref(), Some(&b"via proxy"[..]));
    // unauthorized forwarded SEND
    let resp = forward(&proxy, r.sid(), send_cmd(b"x"), None, 17).await;
    assert_eq!(resp, BrokerMsg::Err(ErrorType::Auth));
    // recipient commands can't be forwarded
    let resp = forward(&proxy, r.rid(), Command::Sub, Some(&r.key), 17).await;
    assert_eq!(
        resp,
        BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited))
    );
}

#[tokio::test]
async fn rfwd_with_garbage_is_crypto_error() {
    let s = start_server(Settings::default()).await;
    let proxy = s.client().await;
    let corr = smp_server::client::new_corr_id();
    let t = proxy
        .transmission(&corr, b"", &Command::Rfwd(vec![7; 200]), None)
        .expect("t");
    let mut r = proxy.send_batch(vec![(corr, t)]).await.expect("RFWD");
    assert_eq!(r.remove(0).1, BrokerMsg::Err(ErrorType::Crypto));
    // the connection still works
    let (_, pong) = proxy.request(b"", Command::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
}
