//! Queue scenarios of the reference's ServerTests, against the real server over TLS,
//! at the newest version and at older ones.

mod common;

use common::*;
use smp_server::protocol::command::{Command, QueueReqData, SubscriptionMode};
use smp_server::protocol::errors::{CommandError, ErrorType};
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

const VERSIONS: [u16; 4] = [6, 9, 12, 18];

#[tokio::test]
async fn create_secure_send_receive_ack_all_versions() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let data = (v >= 9).then_some(QueueReqData::Contact(None));
        let r = create_queue_with(&rc, key_for(v), SubscriptionMode::Subscribe, data).await;
        // unsecured queue accepts an unsigned SEND (the confirmation message)
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"hello"), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok, "v{v}");
        let (ent, msg) = event(&rc).await;
        assert_eq!(ent, r.rid());
        let m = decrypt_msg(&r, &msg);
        assert_eq!(m.body.as_deref(), Some(&b"hello"[..]));
        // recipient secures the queue with the sender's key
        let skey = key_for(v);
        let (_, k) = rc
            .request(r.rid(), Command::Key(skey.public()), Some(&r.key))
            .await
            .expect("KEY");
        assert_eq!(k, BrokerMsg::Ok);
        // unsigned SEND is now refused, signed one accepted
        let (_, e) = sc
            .request(r.sid(), send_cmd(b"x"), None)
            .await
            .expect("send");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let (_, e) = sc
            .request(r.sid(), send_cmd(b"x"), Some(&key_for(v)))
            .await
            .expect("send");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "wrong key");
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"second"), Some(&skey))
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
        // not delivered until the first is acknowledged
        no_event(&rc).await;
        let (_, next) = rc
            .request(r.rid(), Command::Ack(m.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        let m2 = decrypt_msg(&r, &next);
        assert_eq!(m2.body.as_deref(), Some(&b"second"[..]));
        let (_, ok) = rc
            .request(r.rid(), Command::Ack(m2.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(ok, BrokerMsg::Ok);
        // ACK with nothing delivered
        let (_, e) = rc
            .request(r.rid(), Command::Ack(m2.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(e, BrokerMsg::Err(ErrorType::NoMsg));
        // KEY again with another key
        let (_, e) = rc
            .request(r.rid(), Command::Key(key_for(v).public()), Some(&r.key))
            .await
            .expect("KEY");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        // recipient command signed with a wrong key
        let (_, e) = rc
            .request(r.rid(), Command::Sub, Some(&key_for(v)))
            .await
            .expect("SUB");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
    }
}

#[tokio::test]
async fn sender_secures_with_skey_then_sends() {
    let s = start_server(Settings::default()).await;
    for v in [9u16, 18] {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let skey = key_for(v);
        let (_, ok) = sc
            .request(r.sid(), Command::Skey(skey.public()), Some(&skey))
            .await
            .expect("SKEY");
        assert_eq!(ok, BrokerMsg::Ok);
        // repeated SKEY with the same key is OK, another key is AUTH
        let (_, ok) = sc
            .request(r.sid(), Command::Skey(skey.public()), Some(&skey))
            .await
            .expect("SKEY");
        assert_eq!(ok, BrokerMsg::Ok);
        let other = key_for(v);
        let (_, e) = sc
            .request(r.sid(), Command::Skey(other.public()), Some(&other))
            .await
            .expect("SKEY");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"hi"), Some(&skey))
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, msg) = event(&rc).await;
        assert_eq!(decrypt_msg(&r, &msg).body.as_deref(), Some(&b"hi"[..]));
    }
}

#[tokio::test]
async fn skey_prohibited_on_contact_queue() {
    let s = start_server(Settings::default()).await;
    let rc = s.client().await;
    let sc = s.client().await;
    let r = create_queue_with(
        &rc,
        dh_auth_key(),
        SubscriptionMode::Subscribe,
        Some(QueueReqData::Contact(None)),
    )
    .await;
    let skey = dh_auth_key();
    let (_, e) = sc
        .request(r.sid(), Command::Skey(skey.public()), Some(&skey))
        .await
        .expect("SKEY");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
}

#[tokio::test]
async fn rkey_updates_recipient_keys_of_contact_queue() {
    let s = start_server(Settings::default()).await;
    let c = s.client().await;
    let r = create_queue_with(
        &c,
        dh_auth_key(),
        SubscriptionMode::OnlyCreate,
        Some(QueueReqData::Contact(None)),
    )
    .await;
    let k2 = dh_auth_key();
    let k3 = sign_key();
    let (_, ok) = c
        .request(
            r.rid(),
            Command::Rkey(vec![k2.public(), k3.public()]),
            Some(&r.key),
        )
        .await
        .expect("RKEY");
    assert_eq!(ok, BrokerMsg::Ok);
    // the old key no longer works, both new ones do
    let (_, e) = c
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
    let (_, ok) = c
        .request(r.rid(), Command::Sub, Some(&k2))
        .await
        .expect("SUB");
    assert_eq!(ok, BrokerMsg::Sok(None));
    let (_, ok) = c
        .request(r.rid(), Command::Sub, Some(&k3))
        .await
        .expect("SUB");
    assert_eq!(ok, BrokerMsg::Sok(None));
    // RKEY is refused on messaging queues
    let m = create_queue(&c).await;
    let (_, e) = c
        .request(m.rid(), Command::Rkey(vec![k2.public()]), Some(&m.key))
        .await
        .expect("RKEY");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
}

#[tokio::test]
async fn off_and_del() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let rc = s.client_at(v).await;
        let rc2 = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"m1"), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
        let _ = event(&rc).await;
        // another connection subscribes: the first gets END
        let (_, sok) = rc2
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(
            sok,
            if v >= 16 {
                BrokerMsg::Sok(None)
            } else {
                BrokerMsg::Ok
            }
        );
        let (ent, end) = event(&rc).await;
        assert_eq!((ent.as_slice(), end), (r.rid(), BrokerMsg::End));
        let _ = event(&rc2).await; // redelivered m1
                                   // OFF: sending is refused
        let (_, ok) = rc
            .request(r.rid(), Command::Off, Some(&r.key))
            .await
            .expect("OFF");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, e) = sc
            .request(r.sid(), send_cmd(b"m2"), None)
            .await
            .expect("send");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        // DEL from the first connection: the subscribed one gets DELD (END before v10)
        let (_, ok) = rc
            .request(r.rid(), Command::Del, Some(&r.key))
            .await
            .expect("DEL");
        assert_eq!(ok, BrokerMsg::Ok);
        let (ent, deld) = event(&rc2).await;
        assert_eq!(ent, r.rid());
        assert_eq!(
            deld,
            if v >= 10 {
                BrokerMsg::Deld
            } else {
                BrokerMsg::End
            }
        );
        let (_, e) = rc
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let (_, e) = sc
            .request(r.sid(), send_cmd(b"m3"), None)
            .await
            .expect("send");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
    }
}

#[tokio::test]
async fn new_queues_setting_and_password() {
    let s = start_server(Settings {
        allow_new_queues: false,
        ..Settings::default()
    })
    .await;
    let c = s.client().await;
    let k = dh_auth_key();
    let dh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
    let (_, e) = c
        .request(
            b"",
            new_req(&k, &dh, SubscriptionMode::Subscribe, None),
            Some(&k),
        )
        .await
        .expect("NEW");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));

    let s = start_server(Settings {
        create_password: Some(b"secret".to_vec()),
        ..Settings::default()
    })
    .await;
    let c = s.client().await;
    let with_auth = |auth: Option<&[u8]>| {
        let Command::New(mut r) = new_req(&k, &dh, SubscriptionMode::Subscribe, None) else {
            unreachable!()
        };
        r.auth = auth.map(|a| a.to_vec());
        Command::New(r)
    };
    for (auth, ok) in [
        (None, false),
        (Some(&b"wrong"[..]), false),
        (Some(&b"secret"[..]), true),
    ] {
        let (_, resp) = c
            .request(b"", with_auth(auth), Some(&k))
            .await
            .expect("NEW");
        assert_eq!(matches!(resp, BrokerMsg::Ids(_)), ok, "{resp:?}");
    }
}

#[tokio::test]
async fn get_and_sub_are_exclusive_per_connection() {
    let s = start_server(Settings::default()).await;
    let c = s.client().await;
    let sc = s.client().await;
    let r = create_queue_with(
        &c,
        dh_auth_key(),
        SubscriptionMode::OnlyCreate,
        Some(QueueReqData::Messaging(None)),
    )
    .await;
    let (_, ok) = c
        .request(r.rid(), Command::Get, Some(&r.key))
        .await
        .expect("GET");
    assert_eq!(ok, BrokerMsg::Ok, "empty queue");
    sc.request(r.sid(), send_cmd(b"one"), None)
        .await
        .expect("send");
    let (_, m) = c
        .request(r.rid(), Command::Get, Some(&r.key))
        .await
        .expect("GET");
    let m = decrypt_msg(&r, &m);
    assert_eq!(m.body.as_deref(), Some(&b"one"[..]));
    let (_, e) = c
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)));
    let (_, ok) = c
        .request(r.rid(), Command::Ack(m.msg_id), Some(&r.key))
        .await
        .expect("ACK");
    assert_eq!(ok, BrokerMsg::Ok);
    // a subscribed connection can't GET
    let c2 = s.client().await;
    let (_, ok) = c2
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(ok, BrokerMsg::Sok(None));
    let (_, e) = c2
        .request(r.rid(), Command::Get, Some(&r.key))
        .await
        .expect("GET");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)));
}

#[tokio::test]
async fn quota_and_quota_marker() {
    let s = start_server(Settings {
        msg_queue_quota: 4,
        ..Settings::default()
    })
    .await;
    let rc = s.client().await;
    let sc = s.client().await;
    let r = create_queue(&rc).await;
    for i in 0..4 {
        let (_, ok) = sc
            .request(r.sid(), send_cmd(format!("m{i}").as_bytes()), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    for _ in 0..2 {
        let (_, e) = sc
            .request(r.sid(), send_cmd(b"over"), None)
            .await
            .expect("send");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Quota));
    }
    let (_, first) = event(&rc).await;
    let mut m = decrypt_msg(&r, &first);
    let mut bodies = vec![];
    loop {
        bodies.push(m.body.clone());
        let (_, next) = rc
            .request(r.rid(), Command::Ack(m.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        if next == BrokerMsg::Ok {
            break;
        }
        m = decrypt_msg(&r, &next);
    }
    let expected: Vec<Option<Vec<u8>>> = vec![
        Some(b"m0".to_vec()),
        Some(b"m1".to_vec()),
        Some(b"m2".to_vec()),
        Some(b"m3".to_vec()),
        None,
    ];
    assert_eq!(bodies, expected, "four messages then the QUOTA marker");
    // after draining, sending works again
    let (_, ok) = sc
        .request(r.rid(), send_cmd(b"x"), None)
        .await
        .expect("send");
    assert_eq!(
        ok,
        BrokerMsg::Err(ErrorType::Auth),
        "recipient ID is not a sender ID"
    );
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"again"), None)
        .await
        .expect("send");
    assert_eq!(ok, BrokerMsg::Ok);
}

#[tokio::test]
async fn duplex_over_two_connections() {
    let s = start_server(Settings::default()).await;
    let alice = s.client().await;
    let bob = s.client().await;
    let ra = create_queue(&alice).await; // Alice receives here
    let rb = create_queue(&bob).await; // Bob receives here
    let ka = key_for(18);
    let kb = key_for(18);
    bob.request(ra.sid(), Command::Skey(kb.public()), Some(&kb))
        .await
        .expect("skey");
    alice
        .request(rb.sid(), Command::Skey(ka.public()), Some(&ka))
        .await
        .expect("skey");
    for i in 0..5 {
        let body = format!("bob->alice {i}");
        let (_, ok) = bob
            .request(ra.sid(), send_cmd(body.as_bytes()), Some(&kb))
            .await
            .expect("s");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m) = event(&alice).await;
        let m = decrypt_msg(&ra, &m);
        assert_eq!(m.body.as_deref(), Some(body.as_bytes()));
        alice
            .request(ra.rid(), Command::Ack(m.msg_id), Some(&ra.key))
            .await
            .expect("ack");
        let body = format!("alice->bob {i}");
        let (_, ok) = alice
            .request(rb.sid(), send_cmd(body.as_bytes()), Some(&ka))
            .await
            .expect("s");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m) = event(&bob).await;
        let m = decrypt_msg(&rb, &m);
        assert_eq!(m.body.as_deref(), Some(body.as_bytes()));
        bob.request(rb.rid(), Command::Ack(m.msg_id), Some(&rb.key))
            .await
            .expect("ack");
    }
}

#[tokio::test]
async fn large_message_is_refused() {
    let s = start_server(Settings::default()).await;
    for (v, max) in [(6u16, 16088usize), (9, 16064), (18, 16048)] {
        let rc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let sc = s.client_at(v).await;
        let (_, ok) = sc
            .request(r.sid(), send_cmd(&vec![b'a'; max]), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok, "v{v} max");
        let (_, e) = sc
            .request(r.sid(), send_cmd(&vec![b'a'; max + 1]), None)
            .await
            .expect("send");
        assert_eq!(e, BrokerMsg::Err(ErrorType::LargeMsg), "v{v} over max");
        let (_, m) = event(&rc).await;
        assert_eq!(decrypt_msg(&r, &m).body.map(|b| b.len()), Some(max));
    }
}

/// Two connections repeatedly taking over each other's subscriptions at once must not
/// deadlock (each takeover touches both connections' subscription state).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cross_takeovers_do_not_deadlock() {
    let s = start_server(Settings::default()).await;
    let a = std::sync::Arc::new(s.client().await);
    let b = std::sync::Arc::new(s.client().await);
    let qa = std::sync::Arc::new(create_queue(&a).await);
    let qb = std::sync::Arc::new(create_queue(&b).await);
    let run = |c: std::sync::Arc<smp_server::client::SmpClient>,
               q1: std::sync::Arc<Recipient>,
               q2: std::sync::Arc<Recipient>| {
        tokio::spawn(async move {
            for _ in 0..100 {
                for q in [&q1, &q2] {
                    let (_, r) = c
                        .request(q.rid(), Command::Sub, Some(&q.key))
                        .await
                        .expect("SUB");
                    assert_eq!(r, BrokerMsg::Sok(None));
                }
            }
        })
    };
    let t1 = run(a.clone(), qb.clone(), qa.clone());
    let t2 = run(b.clone(), qa.clone(), qb.clone());
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        t1.await.expect("a");
        t2.await.expect("b");
    })
    .await
    .expect("takeovers finished (no deadlock)");
}
