//! Short-link data of queues (the reference's testInvQueueLinkData and
//! testContactQueueLinkData): client-chosen sender IDs derived from the correlation ID, LKEY,
//! LGET, LSET and LDEL, at the first version with short links and at the newest.

mod common;

use common::*;
use sha3::{Digest, Sha3_384};
use smp_server::client::{new_corr_id, AuthKey, SmpClient};
use smp_server::crypto::keys::DhKeyPair;
use smp_server::protocol::command::{
    Command, QueueLinkData, QueueMode, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::errors::{CommandError, ErrorType};
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::{encode_client, with_auth};
use smp_server::server::Settings;

const VERSIONS: [u16; 2] = [15, 18];

fn sender_id_for(corr: &[u8]) -> Vec<u8> {
    Sha3_384::digest(corr)[..24].to_vec()
}

fn ld(fixed: &[u8], user: &[u8]) -> QueueLinkData {
    (fixed.to_vec(), user.to_vec())
}

/// Send one command with a chosen correlation ID; returns (corrId, entity, response).
async fn request_with_corr(
    c: &SmpClient,
    corr: &[u8],
    entity: &[u8],
    cmd: &Command,
    key: Option<&AuthKey>,
) -> (Vec<u8>, BrokerMsg) {
    let t = c
        .transmission(corr, entity, cmd, key)
        .expect("transmission");
    let mut r = c.send_batch(vec![(corr.to_vec(), t)]).await.expect("send");
    r.pop().expect("response")
}

/// Send a command with an arbitrary (wrong) 64-byte signature.
async fn request_bad_sig(c: &SmpClient, entity: &[u8], cmd: &Command) -> BrokerMsg {
    let corr = new_corr_id();
    let ct = encode_client(&c.params, &corr, entity, cmd);
    let t = with_auth(&c.params, Some(&[7u8; 64]), &ct.to_send);
    let mut r = c.send_batch(vec![(corr, t)]).await.expect("send");
    r.pop().expect("response").1
}

/// NEW with link data; the sender ID is derived from the correlation ID of the request.
async fn new_with_link(
    c: &SmpClient,
    contact_link_id: Option<Vec<u8>>,
    data: QueueLinkData,
) -> Recipient {
    let key = key_for(c.version());
    let dh = DhKeyPair::generate().expect("dh");
    let qrd = |sid: Vec<u8>| match &contact_link_id {
        None => QueueReqData::Messaging(Some((sid, data.clone()))),
        Some(l) => QueueReqData::Contact(Some((l.clone(), sid, data.clone()))),
    };
    // a sender ID not derived from this corrId is refused
    let other = sender_id_for(&new_corr_id());
    let corr = new_corr_id();
    let cmd = new_req(&key, &dh, SubscriptionMode::Subscribe, Some(qrd(other)));
    let (ent, e) = request_with_corr(c, &corr, b"", &cmd, Some(&key)).await;
    assert_eq!(ent, b"");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)));

    let corr = new_corr_id();
    let sid = sender_id_for(&corr);
    let cmd = new_req(
        &key,
        &dh,
        SubscriptionMode::Subscribe,
        Some(qrd(sid.clone())),
    );
    let (ent, resp) = request_with_corr(c, &corr, b"", &cmd, Some(&key)).await;
    assert_eq!(ent, b"");
    let BrokerMsg::Ids(ids) = resp else {
        panic!("expected IDS, got {resp:?}")
    };
    assert_eq!(ids.snd_id, sid, "the sender ID is the one requested");
    let mode = if contact_link_id.is_some() {
        QueueMode::Contact
    } else {
        QueueMode::Messaging
    };
    assert_eq!(ids.queue_mode, Some(mode));
    let lid = ids.link_id.clone().expect("link ID");
    if let Some(l) = &contact_link_id {
        assert_eq!(&lid, l, "contact link ID is the one requested");
    }
    assert_ne!(lid, ids.rcv_id);
    assert_ne!(lid, sid);
    Recipient { key, dh, ids }
}

fn lid(r: &Recipient) -> Vec<u8> {
    r.ids.link_id.clone().expect("link ID")
}

#[tokio::test]
async fn invitation_queue_link_data() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let r = new_with_link(&rc, None, ld(b"fixed data", b"user data")).await;
        let l = lid(&r);
        // LGET is only for contact queues
        let (ent, e) = sc.request(&l, Command::Lget, None).await.expect("LGET");
        assert_eq!(
            (ent, e),
            (l.clone(), BrokerMsg::Err(ErrorType::Auth)),
            "v{v}"
        );
        // the recipient can update link data before the queue is secured
        let new_ld = ld(b"fixed data", b"updated user data");
        let (ent, ok) = rc
            .request(
                r.rid(),
                Command::Lset(l.clone(), new_ld.clone()),
                Some(&r.key),
            )
            .await
            .expect("LSET");
        assert_eq!((ent.as_slice(), ok), (r.rid(), BrokerMsg::Ok));

        let skey = key_for(v);
        let lkey = Command::Lkey(skey.public());
        let (_, e) = sc.request(&l, lkey.clone(), None).await.expect("LKEY");
        assert_eq!(
            e,
            BrokerMsg::Err(ErrorType::Cmd(CommandError::NoAuth)),
            "unsigned"
        );
        assert_eq!(
            request_bad_sig(&sc, &l, &lkey).await,
            BrokerMsg::Err(ErrorType::Auth),
            "wrong signature"
        );
        let (_, e) = sc
            .request(r.rid(), lkey.clone(), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "recipient ID");
        // LKEY secures the queue and returns the link data
        let (ent, lnk) = sc
            .request(&l, lkey.clone(), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(ent, l);
        assert_eq!(
            lnk,
            BrokerMsg::Lnk(r.sid().to_vec(), new_ld.clone()),
            "v{v}"
        );
        // another key is refused, the same key again returns the data
        let other = key_for(v);
        let (_, e) = sc
            .request(&l, Command::Lkey(other.public()), Some(&other))
            .await
            .expect("LKEY");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let (_, lnk) = sc
            .request(&l, lkey.clone(), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(lnk, BrokerMsg::Lnk(r.sid().to_vec(), new_ld.clone()));
        // the queue is secured: unsigned SEND is refused
        let (_, e) = sc
            .request(r.sid(), send_cmd(b"x"), None)
            .await
            .expect("SEND");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        // link data of a secured queue can't be changed, only deleted
        let (ent, e) = rc
            .request(
                r.rid(),
                Command::Lset(l.clone(), new_ld.clone()),
                Some(&r.key),
            )
            .await
            .expect("LSET");
        assert_eq!(
            (ent.as_slice(), e),
            (r.rid(), BrokerMsg::Err(ErrorType::Auth))
        );
        let (ent, ok) = rc
            .request(r.rid(), Command::Ldel, Some(&r.key))
            .await
            .expect("LDEL");
        assert_eq!((ent.as_slice(), ok), (r.rid(), BrokerMsg::Ok));
        let (_, e) = sc
            .request(&l, lkey.clone(), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "v{v} link deleted");
    }
}

#[tokio::test]
async fn link_data_is_deleted_when_secured_queue_receives_message() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let data = ld(b"fixed", b"user");
        let r = new_with_link(&rc, None, data.clone()).await;
        let l = lid(&r);
        let skey = key_for(v);
        let (_, lnk) = sc
            .request(&l, Command::Lkey(skey.public()), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(lnk, BrokerMsg::Lnk(r.sid().to_vec(), data));
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"hello"), Some(&skey))
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, msg) = event(&rc).await;
        assert_eq!(decrypt_msg(&r, &msg).body.as_deref(), Some(&b"hello"[..]));
        let (ent, e) = sc
            .request(&l, Command::Lkey(skey.public()), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(
            (ent, e),
            (l.clone(), BrokerMsg::Err(ErrorType::Auth)),
            "v{v}"
        );
        // LDEL without link data is still OK
        let (_, ok) = rc
            .request(r.rid(), Command::Ldel, Some(&r.key))
            .await
            .expect("LDEL");
        assert_eq!(ok, BrokerMsg::Ok);
    }
}

#[tokio::test]
async fn contact_queue_link_data() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let l = smp_server::crypto::random_bytes(24);
        let data = ld(b"fixed data", b"user data");
        let r = new_with_link(&rc, Some(l.clone()), data.clone()).await;

        // a contact queue can't be secured with LKEY
        let skey = key_for(v);
        let (_, e) = sc
            .request(&l, Command::Lkey(skey.public()), Some(&skey))
            .await
            .expect("LKEY");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "v{v}");
        // LGET must not be authorized
        for key in [sign_key(), key_for(v)] {
            let (ent, e) = sc
                .request(&l, Command::Lget, Some(&key))
                .await
                .expect("LGET");
            assert_eq!(
                (ent, e),
                (
                    l.clone(),
                    BrokerMsg::Err(ErrorType::Cmd(CommandError::HasAuth))
                )
            );
        }
        assert_eq!(
            request_bad_sig(&sc, &l, &Command::Lget).await,
            BrokerMsg::Err(ErrorType::Cmd(CommandError::HasAuth))
        );
        let (_, e) = sc
            .request(r.rid(), Command::Lget, None)
            .await
            .expect("LGET");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "recipient ID");
        let (_, e) = sc
            .request(r.sid(), Command::Lget, None)
            .await
            .expect("LGET");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth), "sender ID");
        for _ in 0..2 {
            let (ent, lnk) = sc.request(&l, Command::Lget, None).await.expect("LGET");
            assert_eq!(ent, l);
            assert_eq!(lnk, BrokerMsg::Lnk(r.sid().to_vec(), data.clone()), "v{v}");
        }
        // LSET updates user data
        let new_ld = ld(b"fixed data", b"updated user data");
        let (ent, ok) = rc
            .request(
                r.rid(),
                Command::Lset(l.clone(), new_ld.clone()),
                Some(&r.key),
            )
            .await
            .expect("LSET");
        assert_eq!((ent.as_slice(), ok), (r.rid(), BrokerMsg::Ok));
        let (_, lnk) = sc.request(&l, Command::Lget, None).await.expect("LGET");
        assert_eq!(lnk, BrokerMsg::Lnk(r.sid().to_vec(), new_ld.clone()));
        // another link ID, or changed fixed data, is refused
        let bad_lid = smp_server::crypto::random_bytes(24);
        let (_, e) = rc
            .request(
                r.rid(),
                Command::Lset(bad_lid.clone(), new_ld.clone()),
                Some(&r.key),
            )
            .await
            .expect("LSET");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let bad_ld = ld(b"changed fixed data", b"updated user data 2");
        let (_, e) = rc
            .request(r.rid(), Command::Lset(l.clone(), bad_ld), Some(&r.key))
            .await
            .expect("LSET");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        let (_, e) = sc
            .request(&bad_lid, Command::Lget, None)
            .await
            .expect("LGET");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        // LSET needs the recipient key
        let (_, e) = rc
            .request(
                r.rid(),
                Command::Lset(l.clone(), new_ld.clone()),
                Some(&key_for(v)),
            )
            .await
            .expect("LSET");
        assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
        // LDEL (twice), then LGET fails
        for _ in 0..2 {
            let (ent, ok) = rc
                .request(r.rid(), Command::Ldel, Some(&r.key))
                .await
                .expect("LDEL");
            assert_eq!((ent.as_slice(), ok), (r.rid(), BrokerMsg::Ok));
        }
        let (ent, e) = sc.request(&l, Command::Lget, None).await.expect("LGET");
        assert_eq!(
            (ent, e),
            (l.clone(), BrokerMsg::Err(ErrorType::Auth)),
            "v{v}"
        );
        // the contact queue still accepts messages
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"hi"), None)
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, msg) = event(&rc).await;
        assert_eq!(decrypt_msg(&r, &msg).body.as_deref(), Some(&b"hi"[..]));
    }
}

#[tokio::test]
async fn contact_link_id_must_be_unique() {
    let s = start_server(Settings::default()).await;
    let c = s.client().await;
    let l = smp_server::crypto::random_bytes(24);
    let _r = new_with_link(&c, Some(l.clone()), ld(b"f", b"u")).await;
    // a second queue with the same link ID: AUTH (the reference maps the duplicate to AUTH
    // for client-chosen IDs)
    let key = key_for(18);
    let dh = DhKeyPair::generate().expect("dh");
    let corr = new_corr_id();
    let qrd = QueueReqData::Contact(Some((l.clone(), sender_id_for(&corr), ld(b"f", b"u"))));
    let cmd = new_req(&key, &dh, SubscriptionMode::Subscribe, Some(qrd));
    let (_, e) = request_with_corr(&c, &corr, b"", &cmd, Some(&key)).await;
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
}
