//! Bad disk conditions with the real binary on real file systems: a full tmpfs as the log
//! directory (journal, store log, the messages file saved at a clean stop), a read-only mount
//! and a log directory the server's user may not write.
//!
//! These need root (to mount tmpfs and to switch to an unprivileged user); CI runs as root.
//! Run as another user they fail with a message saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::response::BrokerMsg;

/// Root (tmpfs mounts, `setpriv`), or a `skipped:` line (a failure under
/// `SMP_TEST_REQUIRE_ALL=1`, as in CI).
fn require_root() -> bool {
    common::require::root("persistence_disk")
        && common::require::tools("persistence_disk", &["setpriv", "mount"])
}

/// A tmpfs mounted for the test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs on {} failed", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {opt} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system holding `dir` with `dir/filler` until writes fail with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("filler");
    for chunk in [65536usize, 4096, 512, 1] {
        let buf = vec![0x5au8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) if n == chunk => continue,
                Ok(_) => break,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                    break;
                }
            }
        }
    }
    p
}

struct Running {
    child: Child,
    out: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                t.elapsed() < within,
                "server did not exit; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the output contains `text`.
    async fn wait_output(&self, text: &str, within: Duration) -> String {
        let t = Instant::now();
        loop {
            let out = self.output();
            if out.contains(text) {
                return out;
            }
            assert!(t.elapsed() < within, "no {text:?} in output:\n{out}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A server's configuration and log directories under one temporary directory.
struct Site {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    fp: Fingerprint,
}

impl Site {
    /// A new directory (not yet initialized); `log` is where a tmpfs may be mounted.
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        Site {
            cfg: dir.path().join("etc"),
            log: dir.path().join("var"),
            dir,
            port,
            fp: Fingerprint([0; 32]),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
        c.env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log);
        c
    }

    /// `init` with the given extra options, then set the port.
    fn init(&mut self, extra: &[&str]) {
        let out = self
            .cmd()
            .args(["init", "-y", "--ip", "127.0.0.1", "--no-password"])
            .args(["--disable-web"])
            .args(extra)
            .output()
            .expect("run init");
        assert!(out.status.success(), "init failed: {out:?}");
        let fp = std::fs::read_to_string(self.cfg.join("fingerprint")).expect("fingerprint");
        self.fp = Fingerprint::from_base64url(fp.trim()).expect("fingerprint");
        let ini_path = self.cfg.join("smp-server.ini");
        let ini = std::fs::read_to_string(&ini_path).expect("ini");
        let port = self.port;
        let ini: String = ini
            .lines()
            .map(|l| {
                if l.starts_with("port") {
                    format!("port: {port}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&ini_path, ini).expect("write ini");
    }

    fn spawn(&self) -> Running {
        let out = self.dir.path().join(format!(
            "server-{}.out",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_nanos()
        ));
        let f = std::fs::File::create(&out).expect("output file");
        let child = self
            .cmd()
            .arg("start")
            .stdout(f.try_clone().expect("clone"))
            .stderr(f)
            .spawn()
            .expect("start");
        Running { child, out }
    }

    async fn connect(&self) -> SmpClient {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("a");
        SmpClient::connect(addr, self.fp.0, ClientOptions::default())
            .await
            .expect("connect")
    }

    async fn start(&self) -> (Running, SmpClient) {
        let mut r = self.spawn();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("a");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(r.alive(), "server exited:\n{}", r.output());
            match SmpClient::connect(addr, self.fp.0, ClientOptions::default()).await {
                Ok(c) => return (r, c),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("server did not come up: {e}\n{}", r.output()),
            }
        }
    }

    async fn stop(&self, mut r: Running) {
        r.signal("-INT");
        let st = r.wait_exit(Duration::from_secs(30)).await;
        assert!(st.success(), "clean exit: {st:?}\n{}", r.output());
    }

    /// Start, create a queue holding one accepted message "kept", stop cleanly.
    async fn with_one_message(&self) -> Recipient {
        let (srv, c) = self.start().await;
        let q = create_queue(&c).await;
        let (_, r) = c
            .request(q.sid(), send_cmd(b"kept"), None)
            .await
            .expect("SEND");
        assert_eq!(r, BrokerMsg::Ok);
        drop(c);
        self.stop(srv).await;
        q
    }
}

/// Subscribe and receive every message of `r`, ACKing each; returns the bodies.
async fn drain(c: &SmpClient, r: &Recipient) -> Vec<Vec<u8>> {
    let (_, resp) = c
        .request(r.rid(), Cmd::Sub, Some(&r.key))
        .await
        .expect("SUB");
    let mut next = match resp {
        BrokerMsg::Msg(..) => Some(resp),
        BrokerMsg::Sok(_) | BrokerMsg::Ok => {
            c.next_event(Duration::from_secs(2)).await.map(|(_, m)| m)
        }
        other => panic!("SUB: {other:?}"),
    };
    let mut got = Vec::new();
    while let Some(m) = next {
        let rcv = decrypt_msg(r, &m);
        got.push(rcv.body.expect("a message, not a quota marker"));
        let (_, resp) = c
            .request(r.rid(), Cmd::Ack(rcv.msg_id), Some(&r.key))
            .await
            .expect("ACK");
        next = match resp {
            BrokerMsg::Ok => c.next_event(Duration::from_secs(2)).await.map(|(_, m)| m),
            m @ BrokerMsg::Msg(..) => Some(m),
            other => panic!("ACK: {other:?}"),
        };
    }
    got
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("message {i} ").into_bytes();
    b.resize(6000, b'0' + (i % 10) as u8);
    b
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walk(dir) {
        let data = if e.is_file() {
            std::fs::read(&e).expect("read")
        } else {
            Vec::new()
        };
        v.push((e.display().to_string(), data));
    }
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

#[tokio::test]
async fn full_disk_refuses_journal_sends_and_new_queues_and_keeps_earlier_data() {
    if !require_root() {
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
    if !require_root() {
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
    if !require_root() {
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
    if !require_root() {
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
    let mut srv = Running {
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
    if !require_root() {
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
    if !require_root() {
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
