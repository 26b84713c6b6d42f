//! The control port over TCP against the real server object: greeting, roles, every command's
//! answer, blocking observed by real SMP clients, deletion, wrong passwords and bad input.

use base64::Engine;

mod common;
mod ops_support;

use std::sync::Arc;

use common::*;
use ops_support::*;
use smp_server::protocol::command::Command;
use smp_server::protocol::errors::{BlockingInfo, BlockingReason, ErrorType};
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;
use smp_server::stats::daily::SystemClock;

const INI: &str = "[AUTH]\ncontrol_port_admin_password = adminpw\ncontrol_port_user_password = userpw\ndaily_block_queue_quota = 2\n[INFORMATION]\nsource_code = https://example.com/src\n";

#[tokio::test]
async fn control_port_roles_and_commands() {
    let srv = start_server(Settings::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ops, sd) = start_ops(
        config(dir.path(), INI),
        srv.server.state.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let addr = ops.control_addr.expect("control port bound");
    assert!(addr.ip().is_loopback());

    // some traffic so the answers have something to show
    let rc = srv.client().await;
    let r = create_queue(&rc).await;
    let sc = srv.client().await;
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"one"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&rc).await;
    assert_eq!(decrypt_msg(&r, &m).body.as_deref(), Some(&b"one"[..]));

    let mut anon = Control::connect(addr).await;
    assert_eq!(
        anon.greeting,
        "SMP server control port\n'help' for supported commands\n"
    );
    // nothing but help, auth and (as the reference) stats-rts without a role
    let rts = anon.cmd("stats-rts").await;
    assert!(
        rts.iter().any(|l| l.starts_with("memory_rss_bytes: ")),
        "{rts:?}"
    );
    for c in [
        "stats",
        "clients",
        "sockets",
        "threads",
        "socket-threads",
        "server-info",
        "save",
    ] {
        assert_eq!(anon.cmd(c).await, vec!["AUTH"], "{c} needs a role");
    }
    assert_eq!(
        anon.cmd(&format!("status {}", b64(r.sid()))).await,
        vec!["AUTH"]
    );
    assert_eq!(
        anon.cmd(&format!("delete {}", b64(r.sid()))).await,
        vec!["AUTH"]
    );
    // wrong password: no role, and the session can still authenticate
    assert_eq!(
        anon.cmd("auth wrong").await,
        vec!["Current role is CPRNone"]
    );
    assert_eq!(anon.cmd("stats").await, vec!["AUTH"]);
    // bad input gets a clear error and the session goes on
    let e = anon.cmd("frobnicate").await;
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("error: unknown command"), "{e:?}");
    let e = anon.cmd("status not-base64!!").await;
    assert!(e[0].starts_with("error: bad queue ID"), "{e:?}");
    assert_eq!(anon.cmd("").await, Vec::<String>::new());

    // user role
    let mut user = Control::connect(addr).await;
    assert_eq!(
        user.cmd("auth userpw").await,
        vec!["Current role is CPRUser"]
    );
    assert_eq!(
        user.cmd("auth adminpw").await,
        vec!["Current role is CPRUser, start new session to change."]
    );
    let stats = user.cmd("stats").await;
    let get = |name: &str| -> String {
        stats
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in {stats:?}"))
            .to_string()
    };
    assert_eq!(get("qCreated"), "1");
    assert!(get("fromTime").ends_with(" UTC"), "{stats:?}");
    assert_eq!(get("msgSent"), "1");
    assert_eq!(get("qCount"), "1");
    assert_eq!(get("qCount 2"), "1");
    assert_eq!(get("daily active queues"), "1");
    assert!(stats
        .iter()
        .any(|l| l == "other SUB events (auth, duplicate, prohibited): (0,0,0)"));
    assert!(stats
        .iter()
        .any(|l| l.starts_with("pRelays: requests=0, successes=0")));
    assert!(
        !stats.iter().any(|l| l.starts_with("ntfCount 2")),
        "admin-only line"
    );
    let rts = user.cmd("stats-rts").await;
    assert!(
        rts.iter()
            .any(|l| l.starts_with("memory_rss_bytes: ") && l != "memory_rss_bytes: 0"),
        "{rts:?}"
    );
    assert!(rts.iter().any(|l| l == "connections: 2"), "{rts:?}");
    let sockets = user.cmd("sockets").await;
    assert_eq!(sockets[0], format!("Sockets for port {}:", srv.addr.port()));
    assert_eq!(sockets[1], "accepted: 2");
    assert_eq!(sockets[3], "active: 2");
    assert_eq!(
        user.cmd("clients").await,
        vec!["AUTH"],
        "clients is admin-only"
    );
    assert_eq!(user.cmd("threads").await, vec!["AUTH"]);
    assert_eq!(user.cmd("socket-threads").await, vec!["AUTH"]);
    assert_eq!(user.cmd("save").await, vec!["AUTH"]);
    assert_eq!(
        user.cmd(&format!("delete {}", b64(r.sid()))).await,
        vec!["AUTH"]
    );
    let info = user.cmd("server-info").await;
    assert!(info.iter().any(|l| l == "Clients: 2"), "{info:?}");
    assert!(info.iter().any(|l| l == "SMP subscriptions: 1"), "{info:?}");
    assert!(
        info.iter().any(|l| l.contains("https://example.com/src")),
        "{info:?}"
    );
    assert!(
        !info
            .iter()
            .any(|l| l.starts_with("SMP subscriptions (via clients)")),
        "admin-only"
    );
    let st = user.cmd(&format!("status {}", b64(r.sid()))).await;
    assert_eq!(st.len(), 1);
    assert!(
        st[0].starts_with("status: EntityActive, updatedAt: Just (RoundedSystemTime "),
        "{st:?}"
    );
    assert!(st[0].ends_with(", queueMode: Just QMMessaging"), "{st:?}");
    assert_eq!(user.cmd("status AAAA").await, vec!["error: AUTH"]);

    // block: the subscriber is told at once, the sender is refused, the recipient too
    let b = user
        .cmd(&format!("block {} reason=spam", b64(r.sid())))
        .await;
    assert_eq!(
        b,
        vec!["ok, queue blocked: EntityBlocked (BlockingInfo {reason = BRSpam, notice = Nothing})"]
    );
    let blocked = ErrorType::Blocked(BlockingInfo {
        reason: BlockingReason::Spam,
        notice: None,
    });
    let (ent, pushed) = event(&rc).await;
    assert_eq!(ent, r.rid());
    assert_eq!(pushed, BrokerMsg::Err(blocked.clone()));
    let (_, e) = sc
        .request(r.sid(), send_cmd(b"two"), None)
        .await
        .expect("SEND");
    assert_eq!(e, BrokerMsg::Err(blocked.clone()));
    let (_, e) = rc
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(e, BrokerMsg::Err(blocked.clone()));
    let st = user.cmd(&format!("status {}", b64(r.sid()))).await;
    assert!(
        st[0].starts_with("status: EntityBlocked (BlockingInfo {reason = BRSpam"),
        "{st:?}"
    );
    // blocking again: already inactive, not counted
    let b = user.cmd(&format!("block {}", b64(r.sid()))).await;
    assert!(
        b[0].starts_with("ok, already inactive: EntityBlocked"),
        "{b:?}"
    );
    // unblock
    assert_eq!(
        user.cmd(&format!("unblock {}", b64(r.sid()))).await,
        vec!["ok, queue unblocked, reason to block was: BlockingInfo {reason = BRSpam, notice = Nothing}"]
    );
    assert_eq!(
        user.cmd(&format!("unblock {}", b64(r.sid()))).await,
        vec!["ok, queue was active"]
    );
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"three"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    // the daily quota (2): a second queue can be blocked, a third cannot
    let r2 = create_queue(&rc).await;
    let r3 = create_queue(&rc).await;
    let b = user
        .cmd(&format!("block {} reason=content", b64(r2.sid())))
        .await;
    assert!(
        b[0].starts_with("ok, queue blocked: EntityBlocked (BlockingInfo {reason = BRContent"),
        "{b:?}"
    );
    assert_eq!(
        user.cmd(&format!("block {}", b64(r3.sid()))).await,
        vec!["error: reached limit of 2 queues blocked daily"]
    );

    // admin role
    let mut admin = Control::connect(addr).await;
    assert_eq!(
        admin.cmd("auth adminpw").await,
        vec!["Current role is CPRAdmin"]
    );
    let clients = admin.cmd("clients").await;
    assert_eq!(
        clients[0],
        "clientId,sessionId,connected,createdAt,rcvActiveAt,sndActiveAt,age,subscriptions"
    );
    assert_eq!(clients.len(), 3, "{clients:?}");
    // the reference's columns: number, session ID (standard base64), True, three times in
    // Unix seconds, age, subscriptions; the recipient (first to connect) holds its three queues
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let std_b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (line, (c, subs)) in clients[1..].iter().zip([(&rc, "3"), (&sc, "0")]) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 8, "{line}");
        assert!(f[0].parse::<u64>().is_ok(), "{line}");
        assert_eq!(f[1], std_b64(&c.params.session_id), "{line}");
        assert_eq!(f[2], "True");
        for t in &f[3..6] {
            let t: i64 = t.parse().expect("Unix seconds");
            assert!((now - 600..=now + 5).contains(&t), "{line}");
        }
        assert!(f[6].parse::<i64>().expect("age") < 600, "{line}");
        assert_eq!(f[7], subs, "{line}");
    }
    let threads = admin.cmd("threads").await;
    assert!(threads[0].starts_with("Threads: "), "{threads:?}");
    assert_eq!(admin.cmd("socket-threads").await.len(), 2);
    let info = admin.cmd("server-info").await;
    assert!(
        info.iter()
            .any(|l| l == "SMP subscriptions (via clients): 3"),
        "{info:?}"
    );
    assert!(admin
        .cmd("stats")
        .await
        .iter()
        .any(|l| l == "ntfCount 2: 0"));
    assert_eq!(admin.cmd("suspend").await, vec!["suspend not implemented"]);
    assert_eq!(
        admin.cmd("save").await,
        vec!["saving server state...", "server state saved!"]
    );
    // delete: the queue and its message go; the sender then gets AUTH
    assert_eq!(
        admin.cmd(&format!("delete {}", b64(r.sid()))).await,
        vec!["ok, 2 messages deleted"],
        "the unacknowledged \"one\" and \"three\""
    );
    let (_, e) = sc
        .request(r.sid(), send_cmd(b"four"), None)
        .await
        .expect("SEND");
    assert_eq!(e, BrokerMsg::Err(ErrorType::Auth));
    assert_eq!(
        admin.cmd(&format!("delete {}", b64(r.sid()))).await,
        vec!["error: AUTH"]
    );
    let stats = admin.cmd("stats").await;
    assert!(stats.iter().any(|l| l == "qDeletedAll: 1"), "{stats:?}");
    assert!(stats.iter().any(|l| l == "qCount: 2"), "{stats:?}");

    // an overlong line closes only that session; the port and the server go on
    anon.raw(&vec![b'x'; 10_000]).await;
    assert_eq!(anon.line().await.as_deref(), Some("error: line too long"));
    assert_eq!(anon.line().await, None);
    admin.raw(b"quit\n").await;
    assert_eq!(admin.line().await, None, "quit closes the session");
    let mut again = Control::connect(addr).await;
    assert_eq!(
        again.cmd("auth userpw").await,
        vec!["Current role is CPRUser"]
    );
    let (_, ok) = sc
        .request(r3.sid(), send_cmd(b"still up"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    sd.cancel();
    ops.stop().await;
}

#[tokio::test]
async fn control_port_without_passwords_grants_nothing() {
    let srv = start_server(Settings::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ops, sd) = start_ops(
        config(dir.path(), ""),
        srv.server.state.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let mut c = Control::connect(ops.control_addr.expect("bound")).await;
    assert_eq!(c.cmd("auth ").await, vec!["error: usage: auth <password>"]);
    assert_eq!(
        c.cmd("auth anything").await,
        vec!["Current role is CPRNone"]
    );
    assert_eq!(c.cmd("stats").await, vec!["AUTH"]);
    sd.cancel();
    ops.stop().await;
}
