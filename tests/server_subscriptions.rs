//! Subscription switching between connections (testSwitchSub), concurrent sending and
//! delivery (testConcurrentSendDelivery), batched subscriptions, and QUE's INFO.

mod common;

use std::collections::HashMap;

use common::*;
use smp_server::client::new_corr_id;
use smp_server::protocol::command::{Command, QueueReqData, SubscriptionMode};
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

fn sok(v: u16) -> BrokerMsg {
    if v >= 16 {
        BrokerMsg::Sok(None)
    } else {
        BrokerMsg::Ok
    }
}

#[tokio::test]
async fn switch_subscription_between_connections() {
    let s = start_server(Settings::default()).await;
    for v in [6u16, 12, 18] {
        let rc1 = s.client_at(v).await;
        let rc2 = s.client_at(v).await;
        let rc3 = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let r = create_queue(&rc1).await;
        for body in [&b"test1"[..], b"test2, no ACK"] {
            let (_, ok) = sc
                .request(r.sid(), send_cmd(body), None)
                .await
                .expect("SEND");
            assert_eq!(ok, BrokerMsg::Ok);
        }
        let (_, m1) = event(&rc1).await;
        let m1 = decrypt_msg(&r, &m1);
        assert_eq!(m1.body.as_deref(), Some(&b"test1"[..]));
        let (_, m2) = rc1
            .request(r.rid(), Command::Ack(m1.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        let m2 = decrypt_msg(&r, &m2);
        assert_eq!(m2.body.as_deref(), Some(&b"test2, no ACK"[..]));

        // the second connection subscribes: unacknowledged message is delivered again there
        let (_, ok) = rc2
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(ok, sok(v));
        let (_, m2b) = event(&rc2).await;
        let m2b = decrypt_msg(&r, &m2b);
        assert_eq!(m2b.msg_id, m2.msg_id);
        assert_eq!(
            event(&rc1).await,
            (r.rid().to_vec(), BrokerMsg::End),
            "v{v}"
        );
        // the first connection can't acknowledge any more
        let (_, e) = rc1
            .request(r.rid(), Command::Ack(m2.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(e, BrokerMsg::Err(ErrorType::NoMsg));

        // the third connection subscribes: only the second gets END
        let (_, ok) = rc3
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(ok, sok(v));
        let (_, m2c) = event(&rc3).await;
        assert_eq!(decrypt_msg(&r, &m2c).msg_id, m2.msg_id);
        assert_eq!(
            event(&rc2).await,
            (r.rid().to_vec(), BrokerMsg::End),
            "v{v}"
        );
        let (_, ok) = rc3
            .request(r.rid(), Command::Ack(m2.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(ok, BrokerMsg::Ok);

        // new messages go to the third connection only
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"test3"), None)
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m3) = event(&rc3).await;
        let m3 = decrypt_msg(&r, &m3);
        assert_eq!(m3.body.as_deref(), Some(&b"test3"[..]));
        let (_, e) = rc1
            .request(r.rid(), Command::Ack(m3.msg_id.clone()), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(e, BrokerMsg::Err(ErrorType::NoMsg));
        let (_, ok) = rc3
            .request(r.rid(), Command::Ack(m3.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(ok, BrokerMsg::Ok);

        // the first connection subscribes again: the third gets END exactly once
        let (_, ok) = rc1
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(ok, sok(v));
        assert_eq!(event(&rc3).await, (r.rid().to_vec(), BrokerMsg::End));
        // a repeated SUB on the same connection ends nobody
        let (_, ok) = rc1
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(ok, sok(v));

        // DEL from another connection: the subscribed one gets DELD (END before v10)
        let (_, ok) = rc2
            .request(r.rid(), Command::Del, Some(&r.key))
            .await
            .expect("DEL");
        assert_eq!(ok, BrokerMsg::Ok);
        let deld = if v >= 10 {
            BrokerMsg::Deld
        } else {
            BrokerMsg::End
        };
        assert_eq!(event(&rc1).await, (r.rid().to_vec(), deld));
        no_event(&rc1).await;
        no_event(&rc2).await;
        no_event(&rc3).await;
    }
}

#[tokio::test]
async fn concurrent_senders_all_delivered_once_in_order() {
    const SENDERS: usize = 10;
    const MSGS: usize = 20;
    let s = start_server(Settings {
        msg_queue_quota: 1000,
        ..Settings::default()
    })
    .await;
    for v in [6u16, 18] {
        let rc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let skey = key_for(v);
        let (_, ok) = rc
            .request(r.rid(), Command::Key(skey.public()), Some(&r.key))
            .await
            .expect("KEY");
        assert_eq!(ok, BrokerMsg::Ok);
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            senders.push(s.client_at(v).await);
        }
        let send_all = async {
            let tasks = senders.iter().enumerate().map(|(i, sc)| {
                let skey = &skey;
                let sid = r.sid().to_vec();
                async move {
                    for j in 0..MSGS {
                        let body = format!("{i} {j}");
                        let (_, ok) = sc
                            .request(&sid, send_cmd(body.as_bytes()), Some(skey))
                            .await
                            .expect("SEND");
                        assert_eq!(ok, BrokerMsg::Ok);
                    }
                }
            });
            futures_join_all(tasks).await;
        };
        let receive_all = async {
            let mut got: Vec<(usize, usize)> = Vec::new();
            let mut next = None;
            while got.len() < SENDERS * MSGS {
                let msg = match next.take() {
                    Some(m) => m,
                    None => event(&rc).await.1,
                };
                let m = decrypt_msg(&r, &msg);
                let body = String::from_utf8(m.body.expect("body")).expect("utf8");
                let (i, j) = body.split_once(' ').expect("i j");
                got.push((i.parse().expect("i"), j.parse().expect("j")));
                let (_, resp) = rc
                    .request(r.rid(), Command::Ack(m.msg_id), Some(&r.key))
                    .await
                    .expect("ACK");
                match resp {
                    BrokerMsg::Ok => {}
                    m @ BrokerMsg::Msg(..) => next = Some(m),
                    other => panic!("unexpected {other:?}"),
                }
            }
            got
        };
        let ((), got) = tokio::join!(send_all, receive_all);
        no_event(&rc).await;
        let mut per_sender: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, j) in got {
            per_sender.entry(i).or_default().push(j);
        }
        assert_eq!(per_sender.len(), SENDERS, "v{v}");
        for (i, js) in per_sender {
            assert_eq!(
                js,
                (0..MSGS).collect::<Vec<_>>(),
                "v{v} sender {i}: all, once, in order"
            );
        }
    }
}

/// Join futures without an extra dependency.
async fn futures_join_all<F: std::future::Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    // poll all concurrently
    std::future::poll_fn(|cx| {
        let mut pending = false;
        set.retain_mut(|f| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => false,
            std::task::Poll::Pending => {
                pending = true;
                true
            }
        });
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
}

#[tokio::test]
async fn batched_subscriptions_are_all_answered() {
    const Q: usize = 100;
    let s = start_server(Settings::default()).await;
    for v in [12u16, 18] {
        let owner = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let mut qs = Vec::new();
        for _ in 0..Q {
            qs.push(create_queue(&owner).await);
        }
        for r in qs.iter().step_by(10) {
            let (_, ok) = sc
                .request(r.sid(), send_cmd(b"waiting"), None)
                .await
                .expect("SEND");
            assert_eq!(ok, BrokerMsg::Ok);
            let _ = event(&owner).await;
        }
        let c = s.client_at(v).await;
        let items: Vec<(Vec<u8>, Vec<u8>)> = qs
            .iter()
            .map(|r| {
                let corr = new_corr_id();
                let t = c
                    .transmission(&corr, r.rid(), &Command::Sub, Some(&r.key))
                    .expect("transmission");
                (corr, t)
            })
            .collect();
        let total: usize = items.iter().map(|(_, t)| t.len() + 2).sum();
        assert!(
            total < 16384 - 20,
            "v{v}: all {Q} SUBs fit one block ({total} bytes)"
        );
        let resps = c.send_batch(items).await.expect("responses");
        assert_eq!(resps.len(), Q);
        for (r, (ent, resp)) in qs.iter().zip(&resps) {
            assert_eq!(ent.as_slice(), r.rid());
            assert_eq!(*resp, sok(v), "v{v}");
        }
        // every queue's previous subscriber gets END; queues with messages deliver them
        let mut ended = std::collections::HashSet::new();
        for _ in 0..Q {
            let (ent, m) = event(&owner).await;
            assert_eq!(m, BrokerMsg::End);
            ended.insert(ent);
        }
        assert_eq!(ended.len(), Q);
        for _ in 0..Q / 10 {
            let (ent, m) = event(&c).await;
            let r = qs
                .iter()
                .find(|r| r.rid() == ent.as_slice())
                .expect("queue");
            assert_eq!(decrypt_msg(r, &m).body.as_deref(), Some(&b"waiting"[..]));
        }
        no_event(&c).await;
    }
}

#[tokio::test]
async fn que_reports_queue_state() {
    let s = start_server(Settings::default()).await;
    for v in [6u16, 12, 18] {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let r = create_queue_with(
            &rc,
            key_for(v),
            SubscriptionMode::OnlyCreate,
            Some(QueueReqData::Messaging(None)),
        )
        .await;
        let que = || async {
            let (ent, info) = rc
                .request(r.rid(), Command::Que, Some(&r.key))
                .await
                .expect("QUE");
            assert_eq!(ent, r.rid());
            let BrokerMsg::Info(json) = info else {
                panic!("expected INFO, got {info:?}")
            };
            serde_json::from_slice::<serde_json::Value>(&json).expect("JSON")
        };
        let j = que().await;
        assert_eq!(j["qiSnd"], false, "v{v} {j}");
        assert_eq!(j["qiNtf"], false);
        assert_eq!(j["qiSize"], 0);
        assert!(j.get("qiSub").is_none(), "not subscribed: {j}");
        assert!(j.get("qiMsg").is_none(), "no messages: {j}");

        let skey = key_for(v);
        let (_, ok) = rc
            .request(r.rid(), Command::Key(skey.public()), Some(&r.key))
            .await
            .expect("KEY");
        assert_eq!(ok, BrokerMsg::Ok);
        let ndh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
        let (_, nid) = rc
            .request(
                r.rid(),
                Command::Nkey(key_for(v).public(), ndh.public()),
                Some(&r.key),
            )
            .await
            .expect("NKEY");
        assert!(matches!(nid, BrokerMsg::Nid(..)));
        for b in [&b"one"[..], b"two"] {
            let (_, ok) = sc
                .request(r.sid(), send_cmd(b), Some(&skey))
                .await
                .expect("SEND");
            assert_eq!(ok, BrokerMsg::Ok);
        }
        let j = que().await;
        assert_eq!(j["qiSnd"], true, "{j}");
        assert_eq!(j["qiNtf"], true);
        assert_eq!(j["qiSize"], 2);
        assert_eq!(j["qiMsg"]["msgType"], "message");
        assert!(j["qiMsg"]["msgId"].is_string());
        assert!(j["qiMsg"]["msgTs"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));

        // subscribed with one message delivered
        let (_, ok) = rc
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert_eq!(ok, sok(v));
        let (_, m) = event(&rc).await;
        let m = decrypt_msg(&r, &m);
        let j = que().await;
        assert_eq!(j["qiSub"]["qSubThread"], "noSub", "{j}");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&m.msg_id);
        assert_eq!(j["qiSub"]["qDelivered"], b64.as_str());
        assert_eq!(j["qiMsg"]["msgId"], b64.as_str());
        let (_, next) = rc
            .request(r.rid(), Command::Ack(m.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        let m2 = decrypt_msg(&r, &next);
        let (_, ok) = rc
            .request(r.rid(), Command::Ack(m2.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        assert_eq!(ok, BrokerMsg::Ok);
        let j = que().await;
        assert_eq!(j["qiSize"], 0);
        assert!(j["qiSub"].get("qDelivered").is_none(), "{j}");
        assert!(j.get("qiMsg").is_none());

        // QUE needs the recipient key
        let (_, e) = rc
            .request(r.rid(), Command::Que, Some(&key_for(v)))
            .await
            .expect("QUE");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let (_, e) = sc
            .request(r.sid(), Command::Que, Some(&skey))
            .await
            .expect("QUE");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
    }
}

#[tokio::test]
async fn get_connection_que_shows_prohibit_sub() {
    let s = start_server(Settings::default()).await;
    let c = s.client().await;
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
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, info) = c
        .request(r.rid(), Command::Que, Some(&r.key))
        .await
        .expect("QUE");
    let BrokerMsg::Info(json) = info else {
        panic!("{info:?}")
    };
    let j: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(j["qiSub"]["qSubThread"], "prohibitSub", "{j}");
}

/// A block of SUBs that mixes good ones with a wrong key, a missing queue and a repeated
/// queue is answered in the block's order, each as it would be alone (with the database
/// store this is the batched path: one lookup and one peek for the block).
#[tokio::test]
async fn batched_subscriptions_answer_each_in_order() {
    let s = start_server(Settings::default()).await;
    let v = 18u16;
    let owner = s.client_at(v).await;
    let sc = s.client_at(v).await;
    let mut qs = Vec::new();
    for _ in 0..6 {
        qs.push(create_queue(&owner).await);
    }
    for r in [&qs[1], &qs[4]] {
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"queued"), None)
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let _ = event(&owner).await;
    }
    let c = s.client_at(v).await;
    let missing = vec![7u8; 24];
    // (entity, signing queue, expected answer)
    let plan: Vec<(Vec<u8>, usize, BrokerMsg)> = vec![
        (qs[0].rid().to_vec(), 0, sok(v)),
        (qs[1].rid().to_vec(), 1, sok(v)),
        (qs[2].rid().to_vec(), 3, BrokerMsg::Err(ErrorType::Auth)),
        (missing, 2, BrokerMsg::Err(ErrorType::Auth)),
        (qs[4].rid().to_vec(), 4, sok(v)),
        (qs[5].rid().to_vec(), 5, sok(v)),
    ];
    let items: Vec<(Vec<u8>, Vec<u8>)> = plan
        .iter()
        .map(|(ent, k, _)| {
            let corr = new_corr_id();
            let t = c
                .transmission(&corr, ent, &Command::Sub, Some(&qs[*k].key))
                .expect("transmission");
            (corr, t)
        })
        .collect();
    let resps = c.send_batch(items).await.expect("responses");
    assert_eq!(resps.len(), plan.len());
    for ((ent, _, want), (got_ent, got)) in plan.iter().zip(&resps) {
        assert_eq!(got_ent, ent);
        assert_eq!(got, want);
    }
    // the two queues with a message deliver it, once each
    let mut got = std::collections::HashSet::new();
    for _ in 0..2 {
        let (ent, m) = event(&c).await;
        let r = qs
            .iter()
            .find(|r| r.rid() == ent.as_slice())
            .expect("queue");
        assert_eq!(decrypt_msg(r, &m).body.as_deref(), Some(&b"queued"[..]));
        got.insert(ent);
    }
    assert_eq!(got.len(), 2);
    no_event(&c).await;
    // the four queues taken over end at their owner; the one that failed AUTH stays there
    let mut ended = std::collections::HashSet::new();
    for _ in 0..4 {
        let (ent, m) = event(&owner).await;
        assert_eq!(m, BrokerMsg::End);
        ended.insert(ent);
    }
    let taken: std::collections::HashSet<Vec<u8>> =
        [0, 1, 4, 5].iter().map(|&i| qs[i].rid().to_vec()).collect();
    assert_eq!(ended, taken);
    let (_, ok) = sc
        .request(qs[2].sid(), send_cmd(b"still the owner's"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (ent, m) = event(&owner).await;
    assert_eq!(ent.as_slice(), qs[2].rid());
    assert!(matches!(m, BrokerMsg::Msg(..)), "{m:?}");
}
