//! Message notifications (the reference's testMessageNotifications and related behaviour):
//! NKEY/NID, NSUB by a notifier connection, NMSG with encrypted metadata, END when another
//! connection subscribes, DELD on NDEL/DEL, notifier credentials in NEW (v17+), and
//! notifications kept while nobody is subscribed.

mod common;

use common::*;
use smp_server::client::{AuthKey, SmpClient};
use smp_server::crypto::cbox;
use smp_server::crypto::keys::{DhKeyPair, PublicKey};
use smp_server::protocol::command::{
    Command, MsgFlags, NewQueueReq, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::encoding::Decoder;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

/// Older versions (v6: signed commands and END for deleted queues; v12: authenticators,
/// DELD, OK for subscriptions) and the newest.
const VERSIONS: [u16; 3] = [6, 12, 18];

/// A notifier's credentials: key for NSUB and the secret that opens NMSG metadata.
struct Notifier {
    key: AuthKey,
    nid: Vec<u8>,
    secret: [u8; 32],
}

fn ntf_send(body: &[u8]) -> Command {
    Command::Send(MsgFlags { notification: true }, body.to_vec())
}

/// The response to a subscription at version `v`: SOK from v16, OK before.
fn sok(v: u16) -> BrokerMsg {
    if v >= 16 {
        BrokerMsg::Sok(None)
    } else {
        BrokerMsg::Ok
    }
}

/// DELD from v10, END before.
fn deld(v: u16) -> BrokerMsg {
    if v >= 10 {
        BrokerMsg::Deld
    } else {
        BrokerMsg::End
    }
}

async fn nkey(rc: &SmpClient, r: &Recipient) -> Notifier {
    let key = key_for(rc.version());
    let dh = DhKeyPair::generate().expect("dh");
    let (ent, resp) = rc
        .request(
            r.rid(),
            Command::Nkey(key.public(), dh.public()),
            Some(&r.key),
        )
        .await
        .expect("NKEY");
    assert_eq!(ent, r.rid());
    let BrokerMsg::Nid(nid, srv_dh) = resp else {
        panic!("expected NID, got {resp:?}")
    };
    Notifier {
        secret: dh.dh(&srv_dh).expect("dh"),
        key,
        nid,
    }
}

/// Open NMSG: (message ID, timestamp).
fn decrypt_ntf(n: &Notifier, ent: &[u8], msg: &BrokerMsg) -> (Vec<u8>, i64) {
    assert_eq!(ent, n.nid.as_slice(), "NMSG is sent for the notifier ID");
    let BrokerMsg::Nmsg(nonce, enc) = msg else {
        panic!("expected NMSG, got {msg:?}")
    };
    let plain = cbox::cb_decrypt(&n.secret, nonce, enc).expect("decrypt NMSG metadata");
    let mut d = Decoder::new(&plain);
    let id = d.short_bytes().expect("msgId").to_vec();
    let ts = d.i64().expect("ts");
    (id, ts)
}

async fn nsub(nc: &SmpClient, n: &Notifier) -> BrokerMsg {
    let (ent, resp) = nc
        .request(&n.nid, Command::Nsub, Some(&n.key))
        .await
        .expect("NSUB");
    assert_eq!(ent, n.nid);
    resp
}

/// Send from `sc`, receive the MSG on `rc` and acknowledge it; returns the decrypted message.
async fn send_receive_ack(
    sc: &SmpClient,
    rc: &SmpClient,
    r: &Recipient,
    skey: &AuthKey,
    cmd: Command,
) -> Received {
    let (_, ok) = sc.request(r.sid(), cmd, Some(skey)).await.expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (ent, msg) = event(rc).await;
    assert_eq!(ent, r.rid());
    let m = decrypt_msg(r, &msg);
    let (_, ok) = rc
        .request(r.rid(), Command::Ack(m.msg_id.clone()), Some(&r.key))
        .await
        .expect("ACK");
    assert_eq!(ok, BrokerMsg::Ok);
    m
}

/// Create a queue on `rc` and secure it with a new sender key.
async fn secured_queue(rc: &SmpClient) -> (Recipient, AuthKey) {
    let r = create_queue(rc).await;
    let skey = key_for(rc.version());
    let (_, ok) = rc
        .request(r.rid(), Command::Key(skey.public()), Some(&r.key))
        .await
        .expect("KEY");
    assert_eq!(ok, BrokerMsg::Ok);
    (r, skey)
}

#[tokio::test]
async fn message_notifications_all_versions() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let nc1 = s.client_at(v).await;
        let nc2 = s.client_at(v).await;
        let (r, skey) = secured_queue(&rc).await;

        // NKEY twice: the second replaces the first with a new notifier ID
        let n0 = nkey(&rc, &r).await;
        let n = nkey(&rc, &r).await;
        assert_ne!(n0.nid, n.nid, "v{v}");
        assert_eq!(
            nsub(&nc1, &n0).await,
            BrokerMsg::Err(ErrorType::Auth),
            "v{v} replaced"
        );
        // NSUB with a wrong key, or with a recipient ID
        let (_, e) = nc1
            .request(&n.nid, Command::Nsub, Some(&key_for(v)))
            .await
            .expect("NSUB");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "v{v} wrong key");
        let (_, e) = nc1
            .request(r.rid(), Command::Nsub, Some(&n.key))
            .await
            .expect("NSUB");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "v{v} recipient ID");
        assert_eq!(nsub(&nc1, &n).await, sok(v), "v{v}");

        // SEND with the notification flag: MSG to the recipient, NMSG to the notifier
        let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(b"hello")).await;
        assert_eq!(m.body.as_deref(), Some(&b"hello"[..]));
        assert!(m.notification, "v{v} flag is passed to the recipient");
        let (ent, nmsg) = event(&nc1).await;
        assert_eq!(
            decrypt_ntf(&n, &ent, &nmsg),
            (m.msg_id.clone(), m.ts),
            "v{v}"
        );

        // SEND without the flag: no notification
        let m = send_receive_ack(&sc, &rc, &r, &skey, send_cmd(b"quiet")).await;
        assert!(!m.notification);
        no_event(&nc1).await;

        // another connection subscribes: the first gets END, the second gets notifications
        assert_eq!(nsub(&nc2, &n).await, sok(v), "v{v}");
        let (ent, end) = event(&nc1).await;
        assert_eq!((ent, end), (n.nid.clone(), BrokerMsg::End), "v{v}");
        let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(b"hello again")).await;
        let (ent, nmsg) = event(&nc2).await;
        assert_eq!(decrypt_ntf(&n, &ent, &nmsg), (m.msg_id, m.ts), "v{v}");
        no_event(&nc1).await;

        // NDEL: the subscribed notifier connection gets DELD (END before v10)
        let (ent, ok) = rc
            .request(r.rid(), Command::Ndel, Some(&r.key))
            .await
            .expect("NDEL");
        assert_eq!((ent.as_slice(), ok), (r.rid(), BrokerMsg::Ok));
        let (ent, d) = event(&nc2).await;
        assert_eq!((ent, d), (n.nid.clone(), deld(v)), "v{v}");
        let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(b"hello there")).await;
        assert_eq!(m.body.as_deref(), Some(&b"hello there"[..]));
        no_event(&nc2).await;
        no_event(&nc1).await;
        assert_eq!(
            nsub(&nc2, &n).await,
            BrokerMsg::Err(ErrorType::Auth),
            "v{v} after NDEL"
        );
        // NDEL without a notifier is OK
        let (_, ok) = rc
            .request(r.rid(), Command::Ndel, Some(&r.key))
            .await
            .expect("NDEL");
        assert_eq!(ok, BrokerMsg::Ok);

        // a new notifier works again
        let n2 = nkey(&rc, &r).await;
        assert_eq!(nsub(&nc1, &n2).await, sok(v));
        let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(b"one more")).await;
        let (ent, nmsg) = event(&nc1).await;
        assert_eq!(decrypt_ntf(&n2, &ent, &nmsg), (m.msg_id, m.ts), "v{v}");
        no_event(&nc2).await;
    }
}

#[tokio::test]
async fn nkey_replacing_subscribed_notifier_sends_deld() {
    let s = start_server(Settings::default()).await;
    for v in [6u16, 18] {
        let rc = s.client_at(v).await;
        let nc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let n = nkey(&rc, &r).await;
        assert_eq!(nsub(&nc, &n).await, sok(v));
        let n2 = nkey(&rc, &r).await;
        let (ent, d) = event(&nc).await;
        assert_eq!((ent, d), (n.nid.clone(), deld(v)), "v{v}");
        assert_eq!(nsub(&nc, &n).await, BrokerMsg::Err(ErrorType::Auth));
        assert_eq!(nsub(&nc, &n2).await, sok(v));
    }
}

#[tokio::test]
async fn deleting_queue_ends_notifier_subscription() {
    let s = start_server(Settings::default()).await;
    for v in [6u16, 12, 18] {
        let rc = s.client_at(v).await;
        let nc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let n = nkey(&rc, &r).await;
        assert_eq!(nsub(&nc, &n).await, sok(v));
        let (_, ok) = rc
            .request(r.rid(), Command::Del, Some(&r.key))
            .await
            .expect("DEL");
        assert_eq!(ok, BrokerMsg::Ok);
        let (ent, d) = event(&nc).await;
        assert_eq!((ent, d), (n.nid.clone(), deld(v)), "v{v}");
        assert_eq!(nsub(&nc, &n).await, BrokerMsg::Err(ErrorType::Auth));
        no_event(&nc).await;
    }
}

#[tokio::test]
async fn notifications_are_kept_until_subscribed() {
    let s = start_server(Settings::default()).await;
    for v in [6u16, 18] {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let (r, skey) = secured_queue(&rc).await;
        let n = nkey(&rc, &r).await;
        let mut sent = Vec::new();
        for i in 0..3 {
            let body = format!("m{i}");
            let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(body.as_bytes())).await;
            sent.push((m.msg_id, m.ts));
        }
        // a notifier connection that subscribes later gets all three, in order
        let nc = s.client_at(v).await;
        assert_eq!(nsub(&nc, &n).await, sok(v));
        let mut got = Vec::new();
        for _ in 0..3 {
            let (ent, nmsg) = event(&nc).await;
            got.push(decrypt_ntf(&n, &ent, &nmsg));
        }
        assert_eq!(got, sent, "v{v}");
        no_event(&nc).await;

        // after the notifier connection leaves, notifications are kept for the next one
        drop(nc);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(b"later")).await;
        let nc = s.client_at(v).await;
        assert_eq!(nsub(&nc, &n).await, sok(v));
        let (ent, nmsg) = event(&nc).await;
        assert_eq!(decrypt_ntf(&n, &ent, &nmsg), (m.msg_id, m.ts), "v{v}");
        no_event(&nc).await;
    }
}

fn new_with_ntf(key: &AuthKey, dh: &DhKeyPair, nkey: &PublicKey, ndh: &PublicKey) -> Command {
    Command::New(NewQueueReq {
        rcv_auth_key: key.public(),
        rcv_dh_key: dh.public(),
        auth: None,
        sub_mode: SubscriptionMode::Subscribe,
        queue_req_data: Some(QueueReqData::Messaging(None)),
        ntf_creds: Some((nkey.clone(), ndh.clone())),
    })
}

#[tokio::test]
async fn new_with_notifier_credentials() {
    let s = start_server(Settings::default()).await;
    for v in [17u16, 18] {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let nc = s.client_at(v).await;
        let key = key_for(v);
        let dh = DhKeyPair::generate().expect("dh");
        let nkey = key_for(v);
        let ndh = DhKeyPair::generate().expect("dh");
        let (_, resp) = rc
            .request(
                b"",
                new_with_ntf(&key, &dh, &nkey.public(), &ndh.public()),
                Some(&key),
            )
            .await
            .expect("NEW");
        let BrokerMsg::Ids(ids) = resp else {
            panic!("expected IDS, got {resp:?}")
        };
        let (nid, srv_ndh) = ids.ntf_creds.clone().expect("notifier ID in IDS");
        assert_ne!(nid, ids.rcv_id);
        assert_ne!(nid, ids.snd_id);
        let r = Recipient { key, dh, ids };
        let n = Notifier {
            key: nkey,
            nid,
            secret: ndh.dh(&srv_ndh).expect("dh"),
        };
        // QUE reports the notifier
        let (_, info) = rc
            .request(r.rid(), Command::Que, Some(&r.key))
            .await
            .expect("QUE");
        let BrokerMsg::Info(json) = info else {
            panic!("expected INFO, got {info:?}")
        };
        let j: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(j["qiNtf"], serde_json::Value::Bool(true));

        assert_eq!(nsub(&nc, &n).await, BrokerMsg::Sok(None), "v{v}");
        let skey = key_for(v);
        let (_, ok) = sc
            .request(r.sid(), Command::Skey(skey.public()), Some(&skey))
            .await
            .expect("SKEY");
        assert_eq!(ok, BrokerMsg::Ok);
        let m = send_receive_ack(&sc, &rc, &r, &skey, ntf_send(b"hi")).await;
        let (ent, nmsg) = event(&nc).await;
        assert_eq!(decrypt_ntf(&n, &ent, &nmsg), (m.msg_id, m.ts), "v{v}");
    }
}
