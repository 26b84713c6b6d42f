//! SimpleX names (SMP v20): RSLV answered with RNAME or `ERR NAME ...`, directly and forwarded
//! through a proxy (two real servers), against a real HTTP resolver started on loopback by the
//! test (it serves the reference resolver's REST interface: `GET /resolve/<name>`,
//! `GET /health`). Outcomes: found, not found, resolver down, too slow, response too large,
//! HTTP 5xx, invalid JSON, and the names role disabled.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use smp_server::config::names::{Names, ResolverAuth};
use smp_server::protocol::command::{Command, SmpServerRef};
use smp_server::protocol::errors::{CommandError, ErrorType, NameError};
use smp_server::protocol::names::{NameRecord, SimplexDomain};
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn record() -> NameRecord {
    NameRecord {
        name: "alice.simplex".into(),
        nickname: "Alice \"A\"".into(),
        website: "https://alice.example".into(),
        location: "".into(),
        simplex_contact: vec!["https://smp.example/a#x".into(), "simplex:/b".into()],
        simplex_channel: vec![],
        eth: Some("0xabc".into()),
        btc: None,
        xmr: None,
        dot: None,
        owner: "0x0101".into(),
        resolver: "0x0202".into(),
    }
}

/// A minimal HTTP/1.1 resolver. Records the request lines and Authorization headers it saw.
struct LocalResolver {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn start_resolver() -> LocalResolver {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or("").to_string();
                let auth = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| l.to_string())
                    .unwrap_or_default();
                log.lock().expect("log").push(format!("{line} | {auth}"));
                let path = line.split(' ').nth(1).unwrap_or("");
                let (status, body): (&str, Vec<u8>) = match path {
                    "/health" => ("200 OK", b"{}".to_vec()),
                    "/resolve/alice.simplex" => ("200 OK", record().to_json()),
                    "/resolve/nobody.simplex" => ("404 Not Found", b"{}".to_vec()),
                    "/resolve/badtld.example" => ("400 Bad Request", b"{}".to_vec()),
                    "/resolve/broken.simplex" => ("502 Bad Gateway", b"rpc down".to_vec()),
                    "/resolve/garbage.simplex" => ("200 OK", b"<html>".to_vec()),
                    "/resolve/big.simplex" => ("200 OK", vec![b' '; 20_000]),
                    "/resolve/slow.simplex" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        ("200 OK", record().to_json())
                    }
                    _ => ("404 Not Found", Vec::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    LocalResolver { url, seen }
}

fn names_cfg(endpoint: &str) -> Names {
    Names {
        endpoint: endpoint.to_string(),
        auth: Some(ResolverAuth::Bearer("tok3n".into())),
        timeout_ms: 500,
        max_response_bytes: 16000,
        concurrency: 4,
    }
}

async fn names_server(endpoint: &str) -> TestServer {
    let s = start_server(Settings::default()).await;
    smp_server::server::names::start(&s.server.state, Some(&names_cfg(endpoint)));
    s
}

fn rslv(name: &str) -> Command {
    Command::Rslv(SimplexDomain::parse(name.as_bytes()).expect("name"))
}

fn name_err(e: NameError) -> BrokerMsg {
    BrokerMsg::Err(ErrorType::Name(e))
}

fn resolver_err(s: &str) -> BrokerMsg {
    name_err(NameError::Resolver(s.into()))
}

/// Every outcome, asked directly at v20.
#[tokio::test]
async fn rslv_direct_outcomes() {
    let res = start_resolver().await;
    let srv = names_server(&res.url).await;
    let c = srv.client().await;
    assert_eq!(c.version(), 20);
    let cases = [
        ("alice.simplex", BrokerMsg::Rname(record())),
        ("Alice.Simplex", BrokerMsg::Rname(record())),
        ("nobody.simplex", name_err(NameError::NotFound)),
        ("badtld.example", name_err(NameError::NotFound)),
        ("broken.simplex", resolver_err("HTTP 502")),
        ("garbage.simplex", resolver_err("invalid response")),
        ("big.simplex", resolver_err("response too large")),
        ("slow.simplex", resolver_err("timeout")),
    ];
    for (name, expect) in &cases {
        let (ent, m) = c.request(b"", rslv(name), None).await.expect("RSLV");
        assert!(ent.is_empty());
        assert_eq!(&m, expect, "{name}");
    }
    // the resolver saw lower-cased names and our bearer token
    let seen = res.seen.lock().expect("log").clone();
    assert!(seen.iter().any(|l| l
        == "GET /resolve/alice.simplex HTTP/1.1 | authorization: Bearer tok3n"
        || l == "GET /resolve/alice.simplex HTTP/1.1 | Authorization: Bearer tok3n"));
    let st = &srv.server.state.stats.rslv;
    assert_eq!(
        (
            st.reqs.get(),
            st.succ.get(),
            st.not_found.get(),
            st.resolver_errs.get(),
            st.disabled.get()
        ),
        (8, 2, 2, 4, 0)
    );
    // Prometheus: the 112 families of the reference 7.0 (compared name by name with its
    // Prometheus.hs when written) plus our send->deliver histogram, with the names counters
    let text = smp_server::stats::prometheus::render_state(&*srv.server.state);
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(families.len(), 113);
    assert!(families.contains(&"simplex_smp_send_deliver_time"));
    for f in [
        "simplex_smp_rcv_services_sub_msg_count",
        "simplex_smp_rcv_services_sub_duplicate_count",
        "simplex_smp_ntf_services_sub_fewer_total",
        "simplex_smp_subscribtion_service_subs_total",
        "simplex_smp_subscription_ntf_service_subs_total",
    ] {
        assert!(families.contains(&f), "{f}");
    }
    for (metric, v) in [
        ("simplex_smp_names_reqs", 8),
        ("simplex_smp_names_success", 2),
        ("simplex_smp_names_not_found", 2),
        ("simplex_smp_names_resolver_errs", 4),
        ("simplex_smp_names_disabled", 0),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{metric} ")))
            .unwrap_or_else(|| panic!("{metric} missing"));
        assert_eq!(
            line.split(' ').nth(1),
            Some(v.to_string().as_str()),
            "{line}"
        );
    }
    // RSLV needs neither entity nor authorization, and a valid name
    let (_, m) = c
        .request(b"q", rslv("alice.simplex"), None)
        .await
        .expect("RSLV");
    assert_eq!(m, BrokerMsg::Err(ErrorType::Cmd(CommandError::HasAuth)));
    let corr = smp_server::client::new_corr_id();
    let t = c.transmission(&corr, b"", &Command::Ping, None).expect("t");
    // replace PING by a bare label (no TLD): CMD SYNTAX
    let bad = [&t[..t.len() - 4], b"RSLV alice"].concat();
    let (_, m) = c
        .send_batch(vec![(corr, bad)])
        .await
        .expect("RSLV")
        .remove(0);
    assert_eq!(m, BrokerMsg::Err(ErrorType::Cmd(CommandError::Syntax)));
}

/// A slow resolution runs off the read loop: a PING sent after it is answered first.
#[tokio::test]
async fn rslv_does_not_block_the_connection() {
    let res = start_resolver().await;
    let srv = names_server(&res.url).await;
    let c = Arc::new(srv.client().await);
    let c2 = c.clone();
    let slow = tokio::spawn(async move { c2.request(b"", rslv("slow.simplex"), None).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, m) = c.request(b"", Command::Ping, None).await.expect("PING");
    assert_eq!(m, BrokerMsg::Pong);
    assert!(
        !slow.is_finished(),
        "PONG came while the resolution was still running"
    );
    let (_, m) = slow.await.expect("join").expect("RSLV");
    assert_eq!(m, resolver_err("timeout"));
}

#[tokio::test]
async fn rslv_resolver_down_and_disabled() {
    // nothing listens on this port
    let down = names_server(&format!("http://127.0.0.1:{}", free_port())).await;
    let c = down.client().await;
    let (_, m) = c
        .request(b"", rslv("alice.simplex"), None)
        .await
        .expect("RSLV");
    assert_eq!(m, resolver_err("transport failure"));

    let off = start_server(Settings::default()).await;
    let c = off.client().await;
    let (_, m) = c
        .request(b"", rslv("alice.simplex"), None)
        .await
        .expect("RSLV");
    assert_eq!(m, name_err(NameError::NoResolver));
    let st = &off.server.state.stats.rslv;
    assert_eq!((st.reqs.get(), st.disabled.get()), (1, 1));
}

fn relay_ref(s: &TestServer) -> SmpServerRef {
    SmpServerRef {
        hosts: vec![b"127.0.0.1".to_vec()],
        port: s.addr.port().to_string().into_bytes(),
        key_hash: s.fingerprint.to_vec(),
    }
}

/// RSLV forwarded by a proxy to a relay with the names role (PFWD -> RFWD -> RRES -> PRES),
/// and to a relay without it.
#[tokio::test]
async fn rslv_through_proxy() {
    let res = start_resolver().await;
    let relay = names_server(&res.url).await;
    let proxy = start_server(Settings::default()).await;
    let sc = proxy.client().await;
    let (sid, relay_key) = proxy_session(&sc, relay_ref(&relay)).await;
    for (name, expect) in [
        ("alice.simplex", BrokerMsg::Rname(record())),
        ("nobody.simplex", name_err(NameError::NotFound)),
        ("slow.simplex", resolver_err("timeout")),
        ("big.simplex", resolver_err("response too large")),
    ] {
        let m = proxied_request_at(&sc, &sid, &relay_key, b"", &rslv(name), None, 20).await;
        assert_eq!(m, expect, "{name}");
    }
    let st = &relay.server.state.stats;
    assert_eq!((st.rslv.reqs.get(), st.rslv.succ.get()), (4, 1));
    assert_eq!(st.p_msg_fwds_recv.get(), 4);

    let plain = start_server(Settings::default()).await;
    let (sid, relay_key) = proxy_session(&sc, relay_ref(&plain)).await;
    let m = proxied_request_at(&sc, &sid, &relay_key, b"", &rslv("alice.simplex"), None, 20).await;
    assert_eq!(m, name_err(NameError::NoResolver));

    // a relay whose resolver is down
    let down = names_server(&format!("http://127.0.0.1:{}", free_port())).await;
    let (sid, relay_key) = proxy_session(&sc, relay_ref(&down)).await;
    let m = proxied_request_at(&sc, &sid, &relay_key, b"", &rslv("alice.simplex"), None, 20).await;
    assert_eq!(m, resolver_err("transport failure"));
}
