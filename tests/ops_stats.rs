//! Statistics against the real server object: the daily CSV (columns and values, the day
//! boundary driven by an injected clock), counters surviving a restart, and Prometheus
//! metrics (HTTP and file) checked with the official `prometheus_client` parser.

mod common;
mod ops_support;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ops_support::*;
use smp_server::protocol::command::Command;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;
use smp_server::stats::daily::{ManualClock, SystemClock, DAILY_CSV_COLUMNS};
use smp_server::stats::period::days_from_civil;

/// The CSV header as the operators' guide documents it (docs/SERVER.md, "Daily statistics").
const GUIDE_HEADER: &str = "fromTime,qCreated,qSecured,qDeleted,msgSent,msgRecv,dayMsgQueues,weekMsgQueues,monthMsgQueues,msgSentNtf,msgRecvNtf,dayCountNtf,weekCountNtf,monthCountNtf,qCount,msgCount,msgExpired,qDeletedNew,qDeletedSecured,pRelays_pRequests,pRelays_pSuccesses,pRelays_pErrorsConnect,pRelays_pErrorsCompat,pRelays_pErrorsOther,pRelaysOwn_pRequests,pRelaysOwn_pSuccesses,pRelaysOwn_pErrorsConnect,pRelaysOwn_pErrorsCompat,pRelaysOwn_pErrorsOther,pMsgFwds_pRequests,pMsgFwds_pSuccesses,pMsgFwds_pErrorsConnect,pMsgFwds_pErrorsCompat,pMsgFwds_pErrorsOther,pMsgFwdsOwn_pRequests,pMsgFwdsOwn_pSuccesses,pMsgFwdsOwn_pErrorsConnect,pMsgFwdsOwn_pErrorsCompat,pMsgFwdsOwn_pErrorsOther,pMsgFwdsRecv,qSub,qSubAuth,qSubDuplicate,qSubProhibited,msgSentAuth,msgSentQuota,msgSentLarge,msgNtfs,msgNtfNoSub,msgNtfLost,qSubNoMsg,msgRecvGet,msgGet,msgGetNoMsg,msgGetAuth,msgGetDuplicate,msgGetProhibited,psSubDaily,psSubWeekly,psSubMonthly,qCount2,ntfCreated,ntfDeleted,ntfSub,ntfSubAuth,ntfSubDuplicate,ntfCount,qDeletedAllB,qSubAllB,qSubEnd,qSubEndB,ntfDeletedB,ntfSubB,msgNtfsB,msgNtfExpired";

/// Send `bodies` to `r` and receive and acknowledge each on `rc` (subscribed).
async fn exchange(
    rc: &smp_server::client::SmpClient,
    sc: &smp_server::client::SmpClient,
    r: &Recipient,
    bodies: &[&[u8]],
) {
    for b in bodies {
        let (_, ok) = sc.request(r.sid(), send_cmd(b), None).await.expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
    }
    let (_, mut m) = event(rc).await;
    for (i, b) in bodies.iter().enumerate() {
        let got = decrypt_msg(r, &m);
        assert_eq!(got.body.as_deref(), Some(*b));
        let (_, next) = rc
            .request(r.rid(), Command::Ack(got.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        if i + 1 < bodies.len() {
            m = next;
        } else {
            assert_eq!(next, BrokerMsg::Ok);
        }
    }
}

async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..200 {
        if let Ok(t) = std::fs::read_to_string(path) {
            let lines: Vec<String> = t.lines().map(str::to_string).collect();
            if lines.len() >= n {
                return lines;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} did not get {n} lines", path.display());
}

#[tokio::test]
async fn daily_csv_at_midnight_with_counters_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "[STORE_LOG]\nlog_stats = on\n");
    // Sunday 31 March 2024, noon: the next midnight starts a Monday and a month
    let day = days_from_civil(2024, 3, 31) * 86400;
    let clock = Arc::new(ManualClock::new(day + 43200));

    // first run: one queue, two messages through, one refused SEND
    let srv = start_server(Settings::default()).await;
    let (ops, sd) = start_ops(cfg.clone(), srv.server.state.clone(), clock.clone()).await;
    let rc = srv.client().await;
    let sc = srv.client().await;
    let r = create_queue(&rc).await;
    exchange(&rc, &sc, &r, &[b"a", b"b"]).await;
    let (_, e) = sc
        .request(b"no such queue 0123456789", send_cmd(b"x"), None)
        .await
        .expect("SEND");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
    drop((rc, sc));
    sd.cancel();
    ops.stop().await;
    let saved = std::fs::read_to_string(dir.path().join("smp-server-stats.log"))
        .expect("stats saved at stop");
    assert!(
        saved.starts_with("fromTime=2024-03-31T12:00:00Z\nqCreated=1\n"),
        "{saved}"
    );
    assert!(
        saved.contains("\nmsgSent=2\n") && saved.contains("\nmsgRecv=2\n"),
        "{saved}"
    );
    drop(srv);

    // second run, same day: the counters continue
    let srv = start_server(Settings::default()).await;
    let (ops, sd) = start_ops(cfg.clone(), srv.server.state.clone(), clock.clone()).await;
    assert!(
        dir.path().join("smp-server-stats.log.bak").exists(),
        "restored file is moved aside"
    );
    let rc = srv.client().await;
    let sc = srv.client().await;
    let r2 = create_queue(&rc).await;
    exchange(&rc, &sc, &r2, &[b"c"]).await;
    let (_, ok) = sc
        .request(r2.sid(), send_cmd(b"pending"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let _ = event(&rc).await;

    let daily = dir.path().join("smp-server-stats.daily.log");
    assert!(!daily.exists(), "nothing is written before midnight");
    clock.set(day + 86400);
    let lines = wait_lines(&daily, 1).await;
    let cols: Vec<&str> = lines[0].split(',').collect();
    // columns: count and order as the reference writes them
    let guide: Vec<&str> = GUIDE_HEADER.split(',').collect();
    assert_eq!(guide.len(), 75);
    assert_eq!(&DAILY_CSV_COLUMNS[..75], &guide[..]);
    assert_eq!(cols.len(), DAILY_CSV_COLUMNS.len(), "{}", lines[0]);
    let col = |name: &str| -> &str {
        let i = DAILY_CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("column");
        cols[i]
    };
    assert_eq!(col("fromTime"), "2024-03-31");
    assert_eq!(col("qCreated"), "2");
    assert_eq!(col("msgSent"), "4");
    assert_eq!(col("msgRecv"), "3");
    assert_eq!(col("msgSentAuth"), "1");
    assert_eq!(col("dayMsgQueues"), "2");
    assert_eq!(col("weekMsgQueues"), "2", "a Monday reports the week");
    assert_eq!(col("monthMsgQueues"), "2", "the 1st reports the month");
    assert_eq!(col("qCount"), "1", "queues in the store now");
    assert_eq!(col("qCount2"), "1");
    assert_eq!(col("msgCount"), "1", "the unacknowledged message");
    assert_eq!(col("qSubNoMsg"), "0");
    assert_eq!(col("qDeleted"), "0");

    // the next day: per-day counters were reset, gauges kept; Tuesday has no week count
    clock.set(day + 2 * 86400);
    let lines = wait_lines(&daily, 2).await;
    let cols: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cols.len(), DAILY_CSV_COLUMNS.len());
    assert_eq!(cols[0], "2024-04-01");
    assert_eq!(cols[1], "0", "qCreated reset");
    assert_eq!(cols[4], "0", "msgSent reset");
    assert_eq!((cols[6], cols[7], cols[8]), ("0", "", ""));
    assert_eq!(cols[14], "1", "qCount kept");
    sd.cancel();
    ops.stop().await;
}

#[tokio::test]
async fn prometheus_http_and_file_parse_and_match_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "[STORE_LOG]\nprometheus_interval = 1\n");
    let srv = start_server(Settings::default()).await;
    let (ops, sd) = start_ops(cfg, srv.server.state.clone(), Arc::new(SystemClock)).await;
    let addr = ops.metrics_addr.expect("metrics bound");
    let rc = srv.client().await;
    let sc = srv.client().await;
    let r = create_queue(&rc).await;
    exchange(&rc, &sc, &r, &[b"one", b"two"]).await;
    let (_, e) = rc
        .request(r.rid(), Command::Get, Some(&r.key))
        .await
        .expect("GET");
    assert_eq!(
        e,
        BrokerMsg::Err(ErrorType::Cmd(
            smp_server::protocol::errors::CommandError::Prohibited
        ))
    );

    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let Some(p) = parse_metrics(&body) else {
        return;
    };
    let v = |name: &str, labels: &[(&str, &str)]| {
        sample(&p, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(v("simplex_smp_queues_created", &[]), 1.0);
    assert_eq!(v("simplex_smp_messages_sent", &[]), 2.0);
    assert_eq!(v("simplex_smp_messages_received", &[]), 2.0);
    assert_eq!(v("simplex_smp_queues_daily", &[]), 1.0);
    assert_eq!(
        v(
            "simplex_smp_messages_notify_get_errors",
            &[("type", "prohibited")]
        ),
        1.0
    );
    assert_eq!(v("simplex_smp_subscribtion_total", &[]), 1.0);
    assert_eq!(v("simplex_smp_clients_total", &[]), 2.0);
    assert_eq!(v("simplex_smp_queues_total2", &[]), 1.0);
    assert_eq!(
        v(
            "simplex_smp_sockets_accepted",
            &[("port", &srv.addr.port().to_string())]
        ),
        2.0
    );
    // latency histograms: delivery -> ACK (the reference's) and SEND -> delivery (ours)
    assert_eq!(
        p["families"]["simplex_smp_delivery_ack_confirmed_time"],
        "histogram"
    );
    assert_eq!(
        v(
            "simplex_smp_delivery_ack_confirmed_time_bucket",
            &[("le", "+Inf")]
        ),
        2.0
    );
    assert_eq!(p["families"]["simplex_smp_send_deliver_time"], "histogram");
    assert_eq!(v("simplex_smp_send_deliver_time_count", &[]), 2.0);
    assert_eq!(
        v("simplex_smp_send_deliver_time_bucket", &[("le", "+Inf")]),
        2.0
    );
    assert!(v("simplex_smp_send_deliver_time_bucket", &[("le", "5")]) >= 2.0);
    assert_eq!(
        v("simplex_smp_subscribtion_errors", &[("type", "auth")]),
        0.0
    );
    assert_eq!(
        v(
            "simplex_smp_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("rts_options", "set SMP_RTS_OPTIONS")
            ]
        ),
        1.0
    );

    // other paths and methods get clear errors
    assert_eq!(http_get(addr, "/nope").await.0, "HTTP/1.1 404 Not Found");

    // the file written every prometheus_interval parses the same way
    let file = dir.path().join("smp-server-metrics.txt");
    let mut text = String::new();
    for _ in 0..100 {
        if let Ok(t) = std::fs::read_to_string(&file) {
            text = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!text.is_empty(), "metrics file written");
    let Some(pf) = parse_metrics(&text) else {
        return;
    };
    assert_eq!(sample(&pf, "simplex_smp_messages_sent", &[]), Some(2.0));
    sd.cancel();
    drop((rc, sc));
    ops.stop().await;
}
