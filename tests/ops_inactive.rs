//! `[INACTIVE_CLIENTS]`: idle connections without subscriptions are closed after the TTL;
//! subscribed ones stay.

mod common;

use std::time::{Duration, Instant};

use common::*;
use smp_server::protocol::command::Command;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

#[tokio::test]
async fn idle_clients_without_subscriptions_are_disconnected() {
    let srv = start_server(Settings {
        inactive_clients: Some((1, 1)),
        ..Settings::default()
    })
    .await;
    let idle = srv.client().await;
    let (_, pong) = idle.request(b"", Command::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
    let subscribed = srv.client().await;
    let _r = create_queue(&subscribed).await;
    assert_eq!(srv.server.state.client_count(), 2);
    let t = Instant::now();
    while srv.server.state.client_count() > 1 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the idle client was not disconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the idle one is gone, the subscribed one (idle as long) still works
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        idle.request(b"", Command::Ping, None),
    )
    .await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "the closed connection answered: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, pong) = subscribed
        .request(b"", Command::Ping, None)
        .await
        .expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
}

#[tokio::test]
async fn without_the_setting_idle_clients_stay() {
    let srv = start_server(Settings::default()).await;
    let idle = srv.client().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, pong) = idle.request(b"", Command::Ping, None).await.expect("PING");
    assert_eq!(pong, BrokerMsg::Pong);
}
