//! A server installed with `init` in a temporary directory and run as the real binary, for
//! tests of what it does with its files (full, read-only, damaged, missing, other owners).
//! Helpers that mount or switch users need root; CI runs as root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::Command as Cmd;
use smp_server::protocol::response::BrokerMsg;

/// Root with `mount` and `setpriv`, or a `skipped:` line (a failure under
/// `SMP_TEST_REQUIRE_ALL=1`, as in CI).
pub fn require_root(suite: &str) -> bool {
    crate::common::require::root(suite)
        && crate::common::require::tools(suite, &["setpriv", "mount"])
}

/// A tmpfs mounted for the test; unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
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

    pub fn remount(&self, opt: &str) {
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
pub fn fill(dir: &Path) -> PathBuf {
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

pub struct SiteServer {
    pub child: Child,
    pub out: PathBuf,
}

impl Drop for SiteServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SiteServer {
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
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
    pub async fn wait_output(&self, text: &str, within: Duration) -> String {
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
pub struct Site {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    pub fp: Fingerprint,
}

impl Default for Site {
    fn default() -> Self {
        Site::new()
    }
}

impl Site {
    /// A new directory (not yet initialized); `log` is where a tmpfs may be mounted.
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        Site {
            cfg: dir.path().join("etc"),
            log: dir.path().join("var"),
            dir,
            port,
            fp: Fingerprint([0; 32]),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_smp-server"));
        c.env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log);
        c
    }

    /// `init` with the given extra options, then set the port.
    pub fn init(&mut self, extra: &[&str]) {
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

    /// Set `key = value` in `[section]` of `smp-server.ini` (the key must be there, uncommented).
    pub fn set_ini(&self, section: &str, key: &str, value: &str) {
        let path = self.cfg.join("smp-server.ini");
        let ini = std::fs::read_to_string(&path).expect("ini");
        let mut in_section = false;
        let mut done = false;
        let lines: Vec<String> = ini
            .lines()
            .map(|l| {
                if l.starts_with('[') {
                    in_section = l == format!("[{section}]");
                } else if in_section
                    && !done
                    && l.split([':', '=']).next().map(str::trim) == Some(key)
                {
                    done = true;
                    return format!("{key} = {value}");
                }
                l.to_string()
            })
            .collect();
        assert!(done, "no {key} in [{section}] of {}", path.display());
        std::fs::write(&path, lines.join("\n") + "\n").expect("write ini");
    }

    /// Run `start` with `args` and wait for it to exit (a start that must be refused).
    pub fn start_refused(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .arg("start")
            .args(args)
            .output()
            .expect("run start");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "start must be refused:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
        text
    }

    pub fn spawn(&self) -> SiteServer {
        self.spawn_with(&[])
    }

    /// Spawn `start` with extra arguments.
    pub fn spawn_with(&self, args: &[&str]) -> SiteServer {
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
            .args(args)
            .stdout(f.try_clone().expect("clone"))
            .stderr(f)
            .spawn()
            .expect("start");
        SiteServer { child, out }
    }

    pub async fn connect(&self) -> SmpClient {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("a");
        SmpClient::connect(addr, self.fp.0, ClientOptions::default())
            .await
            .expect("connect")
    }

    pub async fn start(&self) -> (SiteServer, SmpClient) {
        self.start_with(&[]).await
    }

    /// Start with extra arguments and connect.
    pub async fn start_with(&self, args: &[&str]) -> (SiteServer, SmpClient) {
        let mut r = self.spawn_with(args);
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

    pub async fn stop(&self, mut r: SiteServer) {
        r.signal("-INT");
        let st = r.wait_exit(Duration::from_secs(30)).await;
        assert!(st.success(), "clean exit: {st:?}\n{}", r.output());
    }

    /// Start, create a queue holding one accepted message "kept", stop cleanly.
    pub async fn with_one_message(&self) -> Recipient {
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
pub async fn drain(c: &SmpClient, r: &Recipient) -> Vec<Vec<u8>> {
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

pub fn body(i: usize) -> Vec<u8> {
    let mut b = format!("message {i} ").into_bytes();
    b.resize(6000, b'0' + (i % 10) as u8);
    b
}

pub fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

/// Assert two [`listing`]s are equal, naming the paths that differ (not their bytes).
pub fn assert_same_files(before: &[(String, Vec<u8>)], after: &[(String, Vec<u8>)], what: &str) {
    let names = |l: &[(String, Vec<u8>)]| l.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    let differ: Vec<&String> = after
        .iter()
        .filter(|a| !before.contains(a))
        .map(|(p, _)| p)
        .chain(before.iter().filter(|b| !after.contains(b)).map(|(p, _)| p))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: these files changed, appeared or vanished: {differ:?}\nbefore: {:?}\nafter: {:?}",
        names(before),
        names(after)
    );
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// An ext4 file system without a journal (so a write error does not make it read-only) on a
/// loop device, mounted at `mnt`; its image is a sparse file in `img_dir`.
///
/// [`Ext4Loop::fail_writes`] makes every write of the loop device fail with EIO: the image is
/// made immutable (`chattr +i`), which the file system holding it must check on writes through
/// an open file (ext4 does; so put the image on another `Ext4Loop`). This is the real way to
/// make `fsync` fail here (no device-mapper). Filling a tmpfs under the image is not: the loop
/// driver reports a short write to its backing file as success, so data is lost silently.
pub struct Ext4Loop {
    pub mnt: PathBuf,
    img: PathBuf,
}

impl Ext4Loop {
    pub fn mount(mnt: &Path, img_dir: &Path, size_mib: u64) -> Ext4Loop {
        std::fs::create_dir_all(img_dir).expect("image dir");
        let img = img_dir.join("ext4.img");
        let f = std::fs::File::create(&img).expect("image");
        f.set_len(size_mib << 20).expect("sparse image");
        drop(f);
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-O", "^has_journal", "-E", "nodiscard"])
            .arg(&img)
            .status()
            .expect("run mkfs.ext4 (e2fsprogs)");
        assert!(st.success(), "mkfs.ext4 failed");
        std::fs::create_dir_all(mnt).expect("mount point");
        let m = Ext4Loop {
            mnt: mnt.to_path_buf(),
            img,
        };
        m.attach();
        m
    }

    fn attach(&self) {
        let st = Command::new("mount")
            .args(["-o", "loop,errors=continue"])
            .arg(&self.img)
            .arg(&self.mnt)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -o loop {} failed", self.img.display());
    }

    /// Make the loop device's writes fail (`true`) or work again (`false`).
    pub fn fail_writes(&self, fail: bool) {
        let st = Command::new("chattr")
            .arg(if fail { "+i" } else { "-i" })
            .arg(&self.img)
            .status()
            .expect("run chattr (e2fsprogs)");
        assert!(st.success(), "chattr on {}", self.img.display());
    }

    /// Unmount and mount again: what a restart of the machine would read (no page cache).
    pub fn remount(&self) {
        let st = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .expect("umount");
        assert!(st.success(), "umount {} failed", self.mnt.display());
        self.attach();
    }
}

impl Drop for Ext4Loop {
    fn drop(&mut self) {
        self.fail_writes(false);
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}
