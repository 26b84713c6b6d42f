//! The `*Own` proxy statistics: a relay whose first host is in `[PROXY] own_server_domains`
//! (here this very server, on 127.0.0.1) is counted in `pRelaysOwn`/`pMsgFwdsOwn` as well as
//! in `pRelays`/`pMsgFwds`; another relay only in the latter. Checked in the control port's
//! `stats`, the Prometheus endpoint and the daily CSV.

mod common;
mod ops_support;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ops_support::*;
use smp_server::crypto::cbox;
use smp_server::crypto::keys::{DhKeyPair, PublicKey};
use smp_server::crypto::x509;
use smp_server::protocol::command::{Command, SmpServerRef};
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::{
    batch, decode_client, encode_client, split_batch, with_auth, THParams,
};
use smp_server::protocol::version::{PADDED_PROXIED_T_LENGTH, SMP_BLOCK_SIZE};
use smp_server::server::Settings;
use smp_server::stats::daily::{ManualClock, DAILY_CSV_COLUMNS};
use smp_server::stats::period::days_from_civil;

fn server_ref(host: &str, s: &TestServer) -> SmpServerRef {
    SmpServerRef {
        hosts: vec![host.as_bytes().to_vec()],
        port: s.addr.port().to_string().into_bytes(),
        key_hash: s.fingerprint.to_vec(),
    }
}

/// PFWD an unsigned-key SEND (`SKEY` first when `skey`) to `r` through the proxy session.
async fn forward(
    sc: &smp_server::client::SmpClient,
    session: &[u8],
    relay_key: &PublicKey,
    r: &Recipient,
    cmd: Command,
    key: Option<&smp_server::client::AuthKey>,
) -> BrokerMsg {
    let fwd_key = DhKeyPair::generate().expect("dh");
    let secret = fwd_key.dh(relay_key).expect("dh");
    let corr = smp_server::client::new_corr_id();
    let params = THParams {
        session_id: session.to_vec(),
        version: 17,
    };
    let ct = encode_client(&params, &corr, r.sid(), &cmd);
    let a = key.map(|k| match k {
        smp_server::client::AuthKey::Dh(d) => {
            cbox::cb_authenticate(relay_key, d, &cbox::cb_nonce(&corr), &ct.for_auth).expect("auth")
        }
        smp_server::client::AuthKey::Sign(s) => s.sign(&ct.for_auth),
    });
    let t = with_auth(&params, a.as_deref(), &ct.to_send);
    let content = batch(&[t], SMP_BLOCK_SIZE).remove(0).expect("fits");
    let enc = cbox::cb_encrypt(
        &secret,
        &cbox::cb_nonce(&corr),
        &content,
        PADDED_PROXIED_T_LENGTH,
    )
    .expect("enc");
    let pfwd = Command::Pfwd(17, fwd_key.public(), enc);
    let t = sc.transmission(&corr, session, &pfwd, None).expect("t");
    let mut resp = sc.send_batch(vec![(corr.clone(), t)]).await.expect("PFWD");
    let (_, pres) = resp.remove(0);
    let BrokerMsg::Pres(body) = pres else {
        panic!("expected PRES, got {pres:?}")
    };
    let plain = cbox::cb_decrypt(&secret, &cbox::reverse_nonce(&cbox::cb_nonce(&corr)), &body)
        .expect("decrypt PRES");
    let ts = split_batch(&plain).expect("batch");
    decode_client(&params, ts[0]).expect("decode").2
}

#[tokio::test]
async fn proxying_to_an_own_server_counts_in_the_own_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "[STORE_LOG]\nlog_stats = on\n[AUTH]\ncontrol_port_admin_password = adminpw\n[PROXY]\nown_server_domains = example.com 127.0.0.1\n",
    );
    let day = days_from_civil(2024, 5, 7) * 86400;
    let clock = Arc::new(ManualClock::new(day + 3600));
    let srv = start_server(smp_server::server::Settings::from_config(&cfg)).await;
    assert_eq!(
        srv.server.state.settings.own_server_domains,
        vec!["example.com", "127.0.0.1"]
    );
    let (ops, sd) = start_ops(cfg.clone(), srv.server.state.clone(), clock.clone()).await;

    // the recipient's queue is on this server, which is also the proxy and the relay
    let rc = srv.client().await;
    let r = create_queue(&rc).await;
    let sc = srv.client().await;
    let (_, pkey) = sc
        .request(
            b"",
            Command::Prxy(server_ref("127.0.0.1", &srv), None),
            None,
        )
        .await
        .expect("PRXY");
    let BrokerMsg::Pkey(session, _, auth) = pkey else {
        panic!("expected PKEY, got {pkey:?}")
    };
    let leaf = x509::cert_public_key(&auth.chain[0]).expect("leaf key");
    let relay_key = x509::verify_signed_pubkey(&leaf, &auth.signed_key).expect("signed key");
    let skey = dh_auth_key();
    let ok = forward(
        &sc,
        &session,
        &relay_key,
        &r,
        Command::Skey(skey.public()),
        Some(&skey),
    )
    .await;
    assert_eq!(ok, BrokerMsg::Ok);
    let ok = forward(&sc, &session, &relay_key, &r, send_cmd(b"own"), Some(&skey)).await;
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&rc).await;
    assert_eq!(decrypt_msg(&r, &m).body.as_deref(), Some(&b"own"[..]));

    // a relay that is not ours (and does not answer): counted in pRelays only
    let (_, e) = sc
        .request(
            b"",
            Command::Prxy(server_ref("127.0.0.2", &srv), None),
            None,
        )
        .await
        .expect("PRXY");
    assert!(matches!(e, BrokerMsg::Err(_)), "{e:?}");

    let mut admin = Control::connect(ops.control_addr.expect("control port")).await;
    assert_eq!(
        admin.cmd("auth adminpw").await,
        vec!["Current role is CPRAdmin"]
    );
    let stats = admin.cmd("stats").await;
    for line in [
        "pRelays: requests=2, successes=1, errorsConnect=1, errorsCompat=0, errorsOther=0",
        "pRelaysOwn: requests=1, successes=1, errorsConnect=0, errorsCompat=0, errorsOther=0",
        "pMsgFwds: requests=2, successes=2, errorsConnect=0, errorsCompat=0, errorsOther=0",
        "pMsgFwdsOwn: requests=2, successes=2, errorsConnect=0, errorsCompat=0, errorsOther=0",
        "pMsgFwdsRecv: 2",
    ] {
        assert!(stats.iter().any(|l| l == line), "{line} not in {stats:#?}");
    }

    let (status, body) = http_get(ops.metrics_addr.expect("metrics"), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let Some(p) = parse_metrics(&body) else {
        return;
    };
    let v = |name: &str, labels: &[(&str, &str)]| {
        sample(&p, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(
        v("simplex_smp_relay_sessions_requests", &[("source", "all")]),
        2.0
    );
    assert_eq!(
        v("simplex_smp_relay_sessions_requests", &[("source", "own")]),
        1.0
    );
    assert_eq!(
        v("simplex_smp_relay_sessions_successes", &[("source", "own")]),
        1.0
    );
    assert_eq!(
        v("simplex_smp_relay_messages_successes", &[("source", "own")]),
        2.0
    );
    assert_eq!(
        v(
            "simplex_smp_relay_sessions_errors",
            &[("source", "own"), ("type", "connect")]
        ),
        0.0
    );

    clock.set(day + 86400);
    let daily = dir.path().join("smp-server-stats.daily.log");
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&daily).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let cols: Vec<&str> = text
        .lines()
        .next()
        .expect("a daily line")
        .split(',')
        .collect();
    let col = |name: &str| {
        let i = DAILY_CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("column");
        cols[i].to_string()
    };
    assert_eq!(col("pRelays_pRequests"), "2");
    assert_eq!(col("pRelays_pErrorsConnect"), "1");
    assert_eq!(col("pRelaysOwn_pRequests"), "1");
    assert_eq!(col("pRelaysOwn_pSuccesses"), "1");
    assert_eq!(col("pRelaysOwn_pErrorsConnect"), "0");
    assert_eq!(col("pMsgFwdsOwn_pRequests"), "2");
    assert_eq!(col("pMsgFwdsOwn_pSuccesses"), "2");
    drop((rc, sc));
    sd.cancel();
    ops.stop().await;
}

#[tokio::test]
async fn without_own_domains_nothing_is_own() {
    let srv = start_server(Settings::default()).await;
    let sc = srv.client().await;
    let (_, pkey) = sc
        .request(
            b"",
            Command::Prxy(server_ref("127.0.0.1", &srv), None),
            None,
        )
        .await
        .expect("PRXY");
    assert!(matches!(pkey, BrokerMsg::Pkey(..)), "{pkey:?}");
    let s = &srv.server.state.stats;
    assert_eq!(
        (s.p_relays.requests.get(), s.p_relays.successes.get()),
        (1, 1)
    );
    assert_eq!(s.p_relays_own.requests.get(), 0);
}
