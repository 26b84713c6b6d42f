//! AUTH errors take about the same time whether the queue exists (wrong key) or not (the
//! reference's testTiming): the server verifies against a dummy key when there is no queue or
//! no key of the right type. Medians over many requests with generous bounds, so a loaded
//! machine does not make this flaky while a missing dummy verification still shows.

mod common;

use std::time::{Duration, Instant};

use common::*;
use smp_server::client::{new_corr_id, AuthKey, SmpClient};
use smp_server::crypto::keys::KeyAlgorithm;
use smp_server::protocol::command::{Command, QueueReqData, SubscriptionMode};
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

/// Requests per measurement (each measurement is a median).
const N: usize = 25;

fn key_of(alg: KeyAlgorithm) -> AuthKey {
    match alg {
        KeyAlgorithm::Ed25519 => sign_key(),
        KeyAlgorithm::Ed448 => ed448_key(),
        _ => dh_auth_key(),
    }
}

/// Median time of `n` requests that must all fail with AUTH. Transmissions are signed before
/// timing, so only the server's work and the round trip are measured.
async fn median_auth(
    c: &SmpClient,
    key: &AuthKey,
    entity: &[u8],
    cmd: &Command,
    n: usize,
) -> Duration {
    let ts: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|_| {
            let corr = new_corr_id();
            let t = c
                .transmission(&corr, entity, cmd, Some(key))
                .expect("transmission");
            (corr, t)
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    for t in ts {
        let start = Instant::now();
        let r = c.send_batch(vec![t]).await.expect("request");
        times.push(start.elapsed());
        assert_eq!(r, vec![(entity.to_vec(), BrokerMsg::Err(ErrorType::Auth))]);
    }
    times.sort();
    times[n / 2]
}

async fn same_timing(c: &SmpClient, bad: &AuthKey, entity: &[u8], cmd: Command, what: &str) {
    let missing = b"1234".to_vec();
    // warm up
    let _ = median_auth(c, bad, &missing, &cmd, 8).await;
    // interleave the two measurements so load changes affect both alike
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let wrong_key = median_auth(c, bad, entity, &cmd, N).await;
        let no_queue = median_auth(c, bad, &missing, &cmd, N).await;
        eprintln!("{what}: wrong key {wrong_key:?}, no queue {no_queue:?}");
        ratios.push(wrong_key.as_secs_f64() / no_queue.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let r = ratios[1];
    assert!(
        (0.5..2.0).contains(&r),
        "{what}: wrong key / no queue time ratio {r:.2} (all: {ratios:?})"
    );
}

#[tokio::test]
async fn auth_error_timing_does_not_reveal_queues() {
    let s = start_server(Settings::default()).await;
    // (queue key, key used) as in the reference's timing table
    let table = [
        (KeyAlgorithm::Ed25519, KeyAlgorithm::Ed25519),
        (KeyAlgorithm::Ed448, KeyAlgorithm::Ed25519),
        (KeyAlgorithm::Ed448, KeyAlgorithm::Ed448),
        (KeyAlgorithm::Ed448, KeyAlgorithm::X25519),
        (KeyAlgorithm::X25519, KeyAlgorithm::Ed25519),
        (KeyAlgorithm::X25519, KeyAlgorithm::Ed448),
        (KeyAlgorithm::X25519, KeyAlgorithm::X25519),
    ];
    for (good, used) in table {
        let rc = s.client().await;
        let sc = s.client().await;
        let r = create_queue_with(
            &rc,
            key_of(good),
            SubscriptionMode::Subscribe,
            Some(QueueReqData::Messaging(None)),
        )
        .await;
        let bad = key_of(used);
        same_timing(
            &rc,
            &bad,
            r.rid(),
            Command::Sub,
            &format!("SUB {good:?}/{used:?}"),
        )
        .await;
        let skey = key_of(good);
        let (_, ok) = rc
            .request(r.rid(), Command::Key(skey.public()), Some(&r.key))
            .await
            .expect("KEY");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"hello"), Some(&skey))
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m) = event(&rc).await;
        assert_eq!(decrypt_msg(&r, &m).body.as_deref(), Some(&b"hello"[..]));
        same_timing(
            &sc,
            &bad,
            r.sid(),
            send_cmd(b"hello"),
            &format!("SEND {good:?}/{used:?}"),
        )
        .await;
    }
}
