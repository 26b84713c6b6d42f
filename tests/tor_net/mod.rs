//! A private Tor network on loopback, from Debian's `tor` and `tor-gencert`: 3 directory
//! authorities (also relays), 5 relays (2 of them exits to 127.0.0.0/8), then C-tor clients
//! and onion services on demand. Every tor process is killed when the network is dropped
//! (and exits by itself if the test process dies, via `__OwningControllerProcess`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fail clearly when the tools are missing (CI installs them with `.ci/setup-tor.sh`).
pub fn require_tor() {
    for tool in ["tor", "tor-gencert"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            ok,
            "`{tool}` is not installed: run `bash .ci/setup-tor.sh` (apt-get install -y tor) first"
        );
    }
}

pub use crate::common::process::free_port;

struct Authority {
    nick: String,
    or_port: u16,
    dir_port: u16,
    v3ident: String,
    rsa_fp: String,
    ed_id: String,
}

/// The running network.
pub struct TorNetwork {
    /// Root directory of every node.
    pub dir: PathBuf,
    auths: Vec<Authority>,
    children: Vec<Child>,
}

impl Drop for TorNetwork {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(cmd: &mut Command, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait tool");
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn list_fingerprint(dir: &Path, kind: Option<&str>) -> String {
    let mut c = Command::new("tor");
    c.args(["--quiet", "--ignore-missing-torrc", "-f", "/nonexistent"]);
    c.arg("--list-fingerprint");
    if let Some(k) = kind {
        c.arg(k);
    }
    c.args(["--orport", "1", "--datadirectory"]).arg(dir);
    let out = run(&mut c, b"");
    let line = out.lines().last().expect("fingerprint line");
    line.split_whitespace().skip(1).collect::<Vec<_>>().join("")
}

const COMMON: &str = "TestingTorNetwork 1
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingDirAuthVoteExit *
TestingMinExitFlagThreshold 0
PathsNeededToBuildCircuits 0.67
V3AuthNIntervalsValid 2
Sandbox 0
RunAsDaemon 0
";

impl TorNetwork {
    fn common_torrc(&self, nick: &str, dir: &Path) -> String {
        let mut t = format!(
            "DataDirectory {}\nNickname {nick}\nLog notice file {}/notice.log\n__OwningControllerProcess {}\n{COMMON}",
            dir.display(),
            dir.display(),
            std::process::id()
        );
        for a in &self.auths {
            let _ = writeln!(
                t,
                "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
                a.nick, a.or_port, a.v3ident, a.dir_port, a.rsa_fp
            );
        }
        t
    }

    fn spawn(&mut self, dir: &Path, torrc: &str) {
        let path = dir.join("torrc");
        std::fs::write(&path, torrc).expect("torrc");
        let child = Command::new("tor")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tor");
        self.children.push(child);
    }

    fn relay_torrc(&self, nick: &str, dir: &Path, or_port: u16, dir_port: u16) -> String {
        format!(
            "{}SocksPort 0\nORPort 127.0.0.1:{or_port}\nAddress 127.0.0.1\nDirPort 127.0.0.1:{dir_port}\nAssumeReachable 1\nServerDNSResolvConfFile /dev/null\n",
            self.common_torrc(nick, dir)
        )
    }

    /// Generate keys, start every node and wait until the consensus lists all relays as HSDir.
    pub async fn start(root: &Path) -> TorNetwork {
        require_tor();
        let t0 = Instant::now();
        let mut net = TorNetwork {
            dir: root.to_path_buf(),
            auths: Vec::new(),
            children: Vec::new(),
        };
        for i in 0..3 {
            let nick = format!("auth{i}");
            let dir = root.join(&nick);
            std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
            let (or_port, dir_port) = (free_port(), free_port());
            let k = dir.join("keys");
            run(
                Command::new("tor-gencert")
                    .args(["--create-identity-key", "-m", "12", "-a"])
                    .arg(format!("127.0.0.1:{dir_port}"))
                    .arg("-i")
                    .arg(k.join("authority_identity_key"))
                    .arg("-s")
                    .arg(k.join("authority_signing_key"))
                    .arg("-c")
                    .arg(k.join("authority_certificate"))
                    .args(["--passphrase-fd", "0"]),
                b"\n",
            );
            let cert = std::fs::read_to_string(k.join("authority_certificate")).expect("cert");
            let v3ident = cert
                .lines()
                .find_map(|l| l.strip_prefix("fingerprint "))
                .expect("v3ident")
                .trim()
                .to_string();
            let rsa_fp = list_fingerprint(&dir, None);
            let ed_id = list_fingerprint(&dir, Some("ed25519"));
            net.auths.push(Authority {
                nick,
                or_port,
                dir_port,
                v3ident,
                rsa_fp,
                ed_id,
            });
        }
        eprintln!("tor network: keys in {:?}", t0.elapsed());
        for i in 0..3 {
            let (nick, or_port, dir_port) = {
                let a = &net.auths[i];
                (a.nick.clone(), a.or_port, a.dir_port)
            };
            let dir = root.join(&nick);
            let torrc = format!(
                "{}ExitRelay 0\nAuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nV3AuthVotingInterval 20\nV3AuthVoteDelay 4\nV3AuthDistDelay 4\nTestingV3AuthInitialVotingInterval 20\nTestingV3AuthInitialVoteDelay 4\nTestingV3AuthInitialDistDelay 4\nConsensusParams hsdir_interval=8 cbtdisabled=1 cbtinitialtimeout=20000\n",
                net.relay_torrc(&nick, &dir, or_port, dir_port)
            );
            net.spawn(&dir, &torrc);
        }
        for i in 0..5 {
            let nick = format!("relay{i}");
            let dir = root.join(&nick);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let mut torrc = net.relay_torrc(&nick, &dir, free_port(), free_port());
            if i < 2 {
                torrc.push_str("ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicy accept 127.0.0.0/8:*\nExitPolicy reject *:*\n");
            } else {
                torrc.push_str("ExitRelay 0\nExitPolicy reject *:*\n");
            }
            net.spawn(&dir, &torrc);
        }
        net.wait_for_consensus(8, Duration::from_secs(180)).await;
        eprintln!(
            "tor network: consensus with 8 HSDirs after {:?}",
            t0.elapsed()
        );
        net
    }

    async fn fetch_consensus(&self) -> Option<String> {
        let a = self.auths.first()?;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", a.dir_port))
            .await
            .ok()?;
        s.write_all(b"GET /tor/status-vote/current/consensus HTTP/1.0\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&body).into_owned();
        text.starts_with("HTTP/1.0 200").then_some(text)
    }

    async fn wait_for_consensus(&self, relays: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.fetch_consensus().await {
                let hsdirs = c
                    .lines()
                    .filter(|l| l.starts_with("s ") && l.split(' ').any(|f| f == "HSDir"))
                    .count();
                if hsdirs >= relays {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the private Tor network produced no consensus with {relays} HSDirs in {limit:?}; see {}/*/notice.log",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Start a C-tor client with a SOCKS port and optionally an onion service forwarding
    /// `virtual port -> 127.0.0.1:target`. Returns (SOCKS port, onion service directory).
    pub fn start_client(&mut self, nick: &str, service: Option<(u16, u16)>) -> (u16, PathBuf) {
        let dir = self.dir.join(nick);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let socks = free_port();
        let hs_dir = dir.join("hs");
        let mut torrc = format!(
            "{}SocksPort 127.0.0.1:{socks}\n",
            self.common_torrc(nick, &dir)
        );
        if let Some((virt, target)) = service {
            let _ = write!(
                torrc,
                "HiddenServiceDir {}\nHiddenServicePort {virt} 127.0.0.1:{target}\n",
                hs_dir.display()
            );
        }
        self.spawn(&dir, &torrc);
        (socks, hs_dir)
    }

    /// Arti configuration (TOML) for this network, for `[TOR] arti_config`.
    pub fn arti_toml(&self) -> String {
        let mut t = String::from("[tor_network]\nfallback_caches = [\n");
        for a in &self.auths {
            let _ = writeln!(
                t,
                "  {{ rsa_identity = \"{}\", ed_identity = \"{}\", orports = [\"127.0.0.1:{}\"] }},",
                a.rsa_fp, a.ed_id, a.or_port
            );
        }
        t.push_str("]\n\n[tor_network.authorities]\n");
        let idents: Vec<String> = self
            .auths
            .iter()
            .map(|a| format!("\"{}\"", a.v3ident))
            .collect();
        let _ = writeln!(t, "v3idents = [{}]", idents.join(", "));
        let dirs: Vec<String> = self
            .auths
            .iter()
            .map(|a| format!("[\"127.0.0.1:{}\"]", a.dir_port))
            .collect();
        for key in ["uploads", "downloads", "votes"] {
            let _ = writeln!(t, "{key} = [{}]", dirs.join(", "));
        }
        t.push_str(
            "\n[path_rules]\nipv4_subnet_family_prefix = 33\nipv6_subnet_family_prefix = 129\n\n\
             [address_filter]\nallow_local_addrs = true\n\n\
             [storage.permissions]\ndangerously_trust_everyone = true\n",
        );
        t
    }
}

/// Retry `f` every 2 s until it succeeds or `limit` passes; the last error is in the panic.
pub async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match f().await {
            Ok(v) => {
                eprintln!(
                    "{what}: ok after {:?} ({attempts} attempts)",
                    start.elapsed()
                );
                return v;
            }
            Err(e) if start.elapsed() < limit => {
                eprintln!("{what}: attempt {attempts} failed: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("{what}: still failing after {limit:?} ({attempts} attempts): {e}"),
        }
    }
}
