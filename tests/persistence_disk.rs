//! Bad disk conditions with the real binary on real file systems: a full tmpfs as the log
//! directory (journal, store log, the messages file saved at a clean stop), a read-only mount
//! and a log directory the server's user may not write.
//!
//! These need root (to mount tmpfs and to switch to an unprivileged user); CI runs as root.
//! Run as another user they fail with a message saying so.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::site::*;
use common::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

#[tokio::test]
async fn full_disk_refuses_journal_sends_and_new_queues_and_keeps_earlier_data() {
    if !require_root("persistence_disk") {
        return;
    }
    let mut site = Site::new();
    let fs = Tmpfs::mount(&site.log, "4m");
    site.init(&[]); // the journal is the default for new servers
    let (srv, c) = site.start().await;
    let q = create_queue(&c).await;
    let sender = site.connect().await;
    let mut accepted = Vec::new();
    for i in 0..3 {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        assert_eq!(r, BrokerMsg::Ok);
        accepted.push(body(i));
    }

    let filler = fill(&site.log);
    // Keep sending: a SEND may still fit into the last, partly used page of its journal
    // file, but every OK must be a message that is in the file, and refusals must come.
    let mut refused = 0;
    for i in 3..40 {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        match r {
            BrokerMsg::Ok => accepted.push(body(i)),
            BrokerMsg::Err(ErrorType::Store(e)) => {
                assert!(e.starts_with("writeMsg"), "{e}");
                refused += 1;
            }
            other => panic!("SEND on a full disk: {other:?}"),
        }
    }
    eprintln!(
        "full disk: {} SENDs accepted, {refused} refused",
        accepted.len() - 3
    );
    assert!(refused > 0, "a full disk must refuse SENDs");
    // New queues need a store log record: refused too, once the page slack is used up.
    let mut new_refused = false;
    let mut created = Vec::new();
    for _ in 0..40 {
        let k = key_for(c.version());
        let dh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
        let (_, r) = c
            .request(
                b"",
                new_req(
                    &k,
                    &dh,
                    smp_server::protocol::command::SubscriptionMode::OnlyCreate,
                    None,
                ),
                Some(&k),
            )
            .await
            .expect("NEW");
        match r {
            BrokerMsg::Ids(ids) => created.push(Recipient { key: k, dh, ids }),
            BrokerMsg::Err(ErrorType::Store(e)) => {
                assert!(e.starts_with("addStoreQueue"), "{e}");
                new_refused = true;
                break;
            }
            other => panic!("NEW on a full disk: {other:?}"),
        }
    }
    assert!(new_refused, "a full disk must refuse NEW");
    let mut srv = srv;
    assert!(srv.alive(), "the server keeps running:\n{}", srv.output());
    let out = srv.output();
    eprintln!("server output on a full disk:\n{out}");
    assert!(
        out.contains("shard-") && out.contains(".journal") && out.contains("disk is full"),
        "the journal error names the file and the fix:\n{out}"
    );
    assert!(
        out.contains("smp-server-store.log") && out.contains("free space"),
        "the store log error names the file and the fix:\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");

    // Space again: sending works, nothing was lost or damaged.
    std::fs::remove_file(&filler).expect("free space");
    let (_, r) = sender
        .request(q.sid(), send_cmd(&body(99)), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Ok);
    accepted.push(body(99));
    drop(sender);
    drop(c);
    site.stop(srv).await;

    let (srv, c) = site.start().await;
    assert_eq!(
        drain(&c, &q).await,
        accepted,
        "exactly the accepted messages"
    );
    for r in &created {
        let (_, resp) = c
            .request(r.rid(), Cmd::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert!(
            matches!(resp, BrokerMsg::Sok(_) | BrokerMsg::Ok),
            "queue created on the full disk: {resp:?}"
        );
    }
    drop(c);
    site.stop(srv).await;
    drop(fs);
}

#[tokio::test]
async fn full_disk_at_clean_stop_keeps_messages_until_they_are_saved() {
    if !require_root("persistence_disk") {
        return;
    }
    let mut site = Site::new();
    let _fs = Tmpfs::mount(&site.log, "4m");
    site.init(&["--store-messages", "memory"]);
    let (srv, c) = site.start().await;
    let q = create_queue(&c).await;
    let sender = site.connect().await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        assert_eq!(r, BrokerMsg::Ok);
        sent.push(body(i));
    }
    drop(sender);
    drop(c);
    // A first stop saves the messages; the next start restores them and keeps the file as .bak.
    site.stop(srv).await;
    let (mut srv, c) = site.start().await;
    let bak = site.log.join("smp-server-messages.log.bak");
    let bak_before = std::fs::read(&bak).expect("messages .bak");
    let sender = site.connect().await;
    for i in 5..8 {
        let (_, r) = sender
            .request(q.sid(), send_cmd(&body(i)), None)
            .await
            .expect("SEND");
        assert_eq!(
            r,
            BrokerMsg::Ok,
            "the memory store writes nothing per message"
        );
        sent.push(body(i));
    }
    drop(sender);
    drop(c);

    let filler = fill(&site.log);
    srv.signal("-INT");
    let out = srv
        .wait_output("saving server state failed", Duration::from_secs(20))
        .await;
    eprintln!("server output at stop on a full disk:\n{out}");
    assert!(
        out.contains("smp-server-messages.log") && out.contains("disk is full"),
        "the error names the file and the fix:\n{out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        srv.alive(),
        "the server waits rather than exit without saving"
    );
    assert!(
        !site.log.join("smp-server-messages.log").exists(),
        "no partial file in place"
    );
    assert!(
        !site.log.join("smp-server-messages.log.tmp").exists(),
        "the partial copy is removed"
    );
    assert_eq!(
        std::fs::read(&bak).expect("bak"),
        bak_before,
        "old file intact"
    );

    std::fs::remove_file(&filler).expect("free space");
    let st = srv.wait_exit(Duration::from_secs(20)).await;
    assert!(st.success(), "saved once space was free:\n{}", srv.output());
    let (srv, c) = site.start().await;
    assert_eq!(drain(&c, &q).await, sent);
    drop(c);
    site.stop(srv).await;
}

#[tokio::test]
async fn read_only_log_directory_stops_start_and_changes_nothing() {
    if !require_root("persistence_disk") {
        return;
    }
    let mut site = Site::new();
    let fs = Tmpfs::mount(&site.log, "8m");
    site.init(&[]);
    let q = site.with_one_message().await;
    let before = listing(&site.log);

    fs.remount("ro");
    let out = site.cmd().arg("start").output().expect("start");
    fs.remount("rw");
    assert!(
        !out.status.success(),
        "start must fail on a read-only log directory"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("start on a read-only directory ({:?}):\n{text}", out.status);
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains(&site.log.display().to_string()) && text.contains("read-write"),
        "names the file and the fix:\n{text}"
    );
    assert_eq!(listing(&site.log), before, "nothing was changed");

    let (srv, c) = site.start().await;
    assert_eq!(drain(&c, &q).await, vec![b"kept".to_vec()]);
    drop(c);
    site.stop(srv).await;
}

/// Run the binary as `nobody`.
fn as_nobody(site: &Site) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_smp-server"))
        .arg("start")
        .env("SMP_SERVER_CFG_PATH", &site.cfg)
        .env("SMP_SERVER_LOG_PATH", &site.log)
        .stdin(Stdio::null());
    c.output().expect("run setpriv (util-linux)")
}

fn chown_r(p: &Path, owner: &str) {
    let st = Command::new("chown")
        .args(["-R", owner])
        .arg(p)
        .status()
        .expect("chown");
    assert!(st.success());
}

#[tokio::test]
async fn log_directory_not_writable_by_the_server_user_stops_start() {
    if !require_root("persistence_disk") {
        return;
    }
    let mut site = Site::new();
    site.init(&[]);
    let q = site.with_one_message().await;
    // The server's user owns its configuration but not the log directory (root, 0755).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    chown_r(&site.cfg, "65534:65534");
    std::fs::set_permissions(&site.log, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for f in walk(&site.log) {
        let mode = if f.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let before = listing(&site.log);
    let out = as_nobody(&site);
    assert!(!out.status.success(), "start must fail: {out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    eprintln!("start as nobody ({:?}):\n{text}", out.status);
    assert!(
        text.contains(&site.log.display().to_string())
            && text.contains("Permission denied")
            && text.contains("chown"),
        "names the file and the fix:\n{text}"
    );
    assert_eq!(listing(&site.log), before, "nothing was changed");

    // A journal file the server's user cannot read: the same kind of error.
    chown_r(&site.log, "65534:65534");
    let shard = walk(&site.log.join("messages"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "journal"))
        .expect("a journal file");
    chown_r(&shard, "0:0");
    std::fs::set_permissions(&shard, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let before = std::fs::read(&shard).expect("read");
    let out = as_nobody(&site);
    assert!(!out.status.success(), "start must fail: {out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    eprintln!(
        "start as nobody, unreadable journal file ({:?}):\n{text}",
        out.status
    );
    assert!(
        text.contains(&shard.display().to_string()) && text.contains("chown"),
        "names the journal file and the fix:\n{text}"
    );
    assert_eq!(std::fs::read(&shard).expect("read"), before);

    // Fixed ownership: the server starts as that user and the message is still there.
    chown_r(&site.log, "65534:65534");
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_smp-server"))
        .arg("start")
        .env("SMP_SERVER_CFG_PATH", &site.cfg)
        .env("SMP_SERVER_LOG_PATH", &site.log);
    let out_path = site.dir.path().join("nobody.out");
    let f = std::fs::File::create(&out_path).expect("out");
    let child = c
        .stdout(f.try_clone().expect("clone"))
        .stderr(f)
        .spawn()
        .expect("setpriv");
    let mut srv = SiteServer {
        child,
        out: out_path,
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", site.port).parse().expect("a");
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = loop {
        assert!(srv.alive(), "server exited:\n{}", srv.output());
        match SmpClient::connect(addr, site.fp.0, ClientOptions::default()).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("server did not come up: {e}\n{}", srv.output()),
        }
    };
    assert_eq!(drain(&c, &q).await, vec![b"kept".to_vec()]);
    drop(c);
    site.stop(srv).await;
}

#[tokio::test]
async fn second_stop_signal_gives_up_a_failing_save_with_an_error() {
    if !require_root("persistence_disk") {
        return;
    }
    let mut site = Site::new();
    let _fs = Tmpfs::mount(&site.log, "4m");
    site.init(&["--store-messages", "memory"]);
    let (mut srv, c) = site.start().await;
    let q = create_queue(&c).await;
    let (_, r) = c
        .request(q.sid(), send_cmd(&body(1)), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Ok);
    drop(c);
    let _filler = fill(&site.log);
    srv.signal("-TERM");
    srv.wait_output("saving server state failed", Duration::from_secs(20))
        .await;
    srv.signal("-TERM");
    let st = srv.wait_exit(Duration::from_secs(20)).await;
    let out = srv.output();
    assert!(!st.success(), "giving up is an error exit:\n{out}");
    assert!(out.contains("gave up saving server state"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(!site.log.join("smp-server-messages.log.tmp").exists());
}

#[tokio::test]
async fn full_disk_at_start_puts_the_store_log_back_and_says_so() {
    if !require_root("persistence_disk") {
        return;
    }
    let mut site = Site::new();
    let _fs = Tmpfs::mount(&site.log, "4m");
    site.init(&[]);
    let q = site.with_one_message().await;
    let log = site.log.join("smp-server-store.log");
    let before = std::fs::read(&log).expect("store log");

    // The compacted copy written at start does not fit: start stops, the log is as it was.
    let filler = fill(&site.log);
    let out = site.cmd().arg("start").output().expect("start");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("start on a full disk ({:?}):\n{text}", out.status);
    assert!(!out.status.success(), "start must fail: {text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains(&log.display().to_string()) && text.contains("disk is full"),
        "names the file and the fix:\n{text}"
    );
    assert_eq!(std::fs::read(&log).expect("store log"), before);
    assert!(!site.log.join("smp-server-store.log.start").exists());

    std::fs::remove_file(&filler).expect("free space");
    let (srv, c) = site.start().await;
    assert_eq!(drain(&c, &q).await, vec![b"kept".to_vec()]);
    drop(c);
    site.stop(srv).await;
}
