//! Expiry with a short TTL: the periodic task removes old messages and notifications.

mod common;

use std::time::Duration;

use common::*;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::core::PendingNtf;
use smp_server::server::expire;
use smp_server::server::Settings;
use smp_server::sync::lock;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn old_messages_and_notifications_expire_periodically() {
    let settings = Settings {
        message_ttl: Some(1),
        ntf_ttl: 1,
        expire_messages_on_send: false,
        expire_messages_interval: Duration::from_millis(200),
        expire_ntfs_interval: Duration::from_millis(200),
        ..Settings::default()
    };
    let srv = start_server(settings).await;
    let stop = CancellationToken::new();
    tokio::spawn(expire::run(srv.server.state.clone(), stop.clone()));
    let c = srv.client().await;
    let r = create_queue(&c).await;
    let (_, ok) = c
        .request(r.sid(), send_cmd(b"old"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let st = srv.server.state.clone();
    let q = st
        .store
        .get_queue(smp_server::protocol::command::Party::Recipient, r.rid())
        .expect("queue");
    assert_eq!(st.store.queue_size(&q).expect("size"), 1);
    lock(&st.core.pending_ntfs).insert(
        vec![1; 24],
        vec![PendingNtf {
            nonce: [0; 24],
            enc_meta: vec![1],
            ts: smp_server::clock::now_secs() - 10,
            msg_id: vec![2; 24],
        }],
    );
    // a fresh message stays until it is older than the TTL
    let mut waited = Duration::ZERO;
    while st.store.queue_size(&q).expect("size") > 0 {
        assert!(waited < Duration::from_secs(10), "message did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(
        waited >= Duration::from_millis(500),
        "expired too early: {waited:?}"
    );
    assert!(
        lock(&st.core.pending_ntfs).is_empty(),
        "old notification expired"
    );
    stop.cancel();
    assert_eq!(st.store.peek_msg(&q).expect("peek"), None);
}
