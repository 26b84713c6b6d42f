//! The real `smp-server` binary as a child process: `init` into a scratch directory, `start`,
//! `SIGTERM`, and what the kernel says about it (CPU time and RSS from `/proc/<pid>`).
//!
//! The CPU time is the server's own (utime + stime of all its threads, including exited ones),
//! so it does not grow when other processes compete for the cores: that is why it is the
//! primary figure of the benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;

/// Where messages are kept (`[STORE_LOG] store_messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgStore {
    /// In memory, saved at a clean stop.
    Memory,
    /// Our journal with `journal_fsync = batch` (what `init` writes).
    Journal,
    /// Queues and messages in PostgreSQL (`store_queues = database`, `store_messages =
    /// database`, [`ServerSpec::db`] is the connection string).
    Database,
}

impl MsgStore {
    /// The `init --store-messages` value.
    pub fn name(self) -> &'static str {
        match self {
            MsgStore::Memory => "memory",
            MsgStore::Journal => "journal",
            MsgStore::Database => "database",
        }
    }
}

/// How to initialise a server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Message store.
    pub store: MsgStore,
    /// `init -a ED448` instead of the default Ed25519 identity.
    pub ed448: bool,
    /// CPUs to pin the server to (`taskset -c`), if any.
    pub pin: Option<String>,
    /// Extra environment of the server process (e.g. `LD_PRELOAD` of another allocator).
    pub env: Vec<(String, String)>,
    /// `db_connection` with [`MsgStore::Database`].
    pub db: Option<String>,
}

/// An initialised server directory and, while started, its process.
pub struct Server {
    bin: PathBuf,
    spec: ServerSpec,
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Loopback address of the SMP port.
    pub addr: SocketAddr,
    /// CA fingerprint clients must name.
    pub fingerprint: [u8; 32],
    /// The PostgreSQL cluster of a database-store server (its CPU is counted separately).
    pub cluster: Option<std::sync::Arc<crate::pg::Cluster>>,
}

impl Server {
    /// Run `smp-server init` into a fresh directory under `scratch` and set a free loopback
    /// port; the server is not started.
    pub fn init(bin: &Path, scratch: &Path, spec: ServerSpec) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("smp-bench-")
            .tempdir_in(scratch)
            .with_context(|| format!("scratch directory in {}", scratch.display()))?;
        let cfg = dir.path().join("etc");
        let log = dir.path().join("var");
        let mut init = Command::new(bin);
        init.env("SMP_SERVER_CFG_PATH", &cfg)
            .env("SMP_SERVER_LOG_PATH", &log)
            .args([
                "init",
                "-y",
                "-l",
                "--ip",
                "127.0.0.1",
                "--no-password",
                "--disable-web",
                "--store-messages",
                // database is set in the INI below (init writes memory or journal)
                if spec.store == MsgStore::Journal {
                    "journal"
                } else {
                    "memory"
                },
            ]);
        if spec.ed448 {
            init.args(["-a", "ED448"]);
        }
        let out = init.output().context("run smp-server init")?;
        if !out.status.success() {
            bail!(
                "smp-server init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).context("fingerprint")?;
        let fingerprint = Fingerprint::from_base64url(fp_text.trim())
            .map_err(|e| anyhow::anyhow!("fingerprint: {e:?}"))?
            .0;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let ini_path = cfg.join("smp-server.ini");
        let ini = std::fs::read_to_string(&ini_path)?;
        // A free port; idle benchmark connections must not be dropped as inactive.
        let db = spec.db.clone().filter(|_| spec.store == MsgStore::Database);
        let ini: Vec<String> = ini
            .lines()
            .map(|l| {
                if let Some(conn) = &db {
                    if l.starts_with("store_queues") {
                        return "store_queues = database".to_string();
                    } else if l.starts_with("store_messages") {
                        return "store_messages = database".to_string();
                    } else if l.starts_with("# db_connection") {
                        return format!("db_connection = {conn}");
                    }
                }
                if l.starts_with("port") {
                    format!("port = {port}")
                } else if l.starts_with("disconnect") {
                    "disconnect = off".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&ini_path, ini.join("\n") + "\n")?;
        Ok(Server {
            bin: bin.to_path_buf(),
            spec,
            _dir: dir,
            cfg,
            log,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            fingerprint,
            cluster: None,
        })
    }

    /// Point `db_connection` at another database (the server must be stopped).
    pub fn set_db(&mut self, conn: &str) -> Result<()> {
        let path = self.cfg.join("smp-server.ini");
        let ini = std::fs::read_to_string(&path)?;
        let ini: Vec<String> = ini
            .lines()
            .map(|l| {
                if l.starts_with("db_connection") {
                    format!("db_connection = {conn}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&path, ini.join("\n") + "\n")?;
        self.spec.db = Some(conn.to_string());
        Ok(())
    }

    /// The store log the server replays at start.
    pub fn store_log_path(&self) -> PathBuf {
        self.log.join("smp-server-store.log")
    }

    /// Start the server and wait until an SMP handshake succeeds; returns the time from
    /// spawning the process to the first completed SMP handshake.
    pub async fn start(&mut self) -> Result<Duration> {
        if self.child.is_some() {
            bail!("already started");
        }
        let mut cmd = match &self.spec.pin {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .args(["start", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let t = Instant::now();
        self.child = Some(cmd.spawn().context("spawn smp-server start")?);
        let deadline = t + Duration::from_secs(600);
        loop {
            let opts = ClientOptions {
                timeout: Duration::from_secs(5),
                ..ClientOptions::default()
            };
            match SmpClient::connect(self.addr, self.fingerprint, opts).await {
                Ok(_) => return Ok(t.elapsed()),
                Err(e) => {
                    if let Some(c) = self.child.as_mut() {
                        if let Some(st) = c.try_wait()? {
                            bail!("smp-server exited at start: {st}");
                        }
                    }
                    if Instant::now() > deadline {
                        bail!("smp-server did not answer: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    /// SIGTERM (the server saves its state) and wait for the exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()?;
            if !st.success() {
                let _ = c.kill();
            }
            c.wait()?;
        }
        Ok(())
    }

    /// Process ID of the running server (with `taskset`, it execs the server in place).
    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("server not started")
    }

    /// The server's CPU time so far (user + system, all threads).
    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(self.pid()?)
    }

    /// Context switches of the server's threads so far.
    pub fn ctx_switches(&self) -> Result<u64> {
        ctx_switches_of(self.pid()?)
    }

    /// The server's user and kernel CPU time so far, apart.
    pub fn cpu_split(&self) -> Result<(Duration, Duration)> {
        cpu_split_of(self.pid()?)
    }

    /// CPU time of the PostgreSQL cluster so far (zero without one).
    pub fn db_cpu(&self) -> Result<Duration> {
        match &self.cluster {
            Some(c) => c.cpu(),
            None => Ok(Duration::ZERO),
        }
    }

    /// Run an `smp-server` tool command (e.g. `database import`) on this server's files with
    /// `input` on stdin; returns its stdout, or fails with its output.
    pub fn tool(&self, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write;
        let mut c = Command::new(&self.bin)
            .env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", &self.log)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn smp-server")?;
        c.stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
        let out = c.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "smp-server {}: {text}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// The server's resident set size in bytes.
    pub fn rss(&self) -> Result<u64> {
        rss_of(self.pid()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// utime + stime of a process from `/proc/<pid>/stat` (fields 14 and 15).
pub fn cpu_of(pid: u32) -> Result<Duration> {
    let (user, kernel) = cpu_split_of(pid)?;
    Ok(user + kernel)
}

/// utime and stime of a process apart: the kernel's share of a delivery is mostly loopback TCP,
/// which the crypto floor leaves out.
pub fn cpu_split_of(pid: u32) -> Result<(Duration, Duration)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = s.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize, name: &str| -> Result<Duration> {
        let t: u64 = f.get(i).context(name.to_string())?.parse()?;
        Ok(Duration::from_nanos(t * 1_000_000_000 / clock_ticks()))
    };
    Ok((ticks(11, "utime")?, ticks(12, "stime")?))
}

/// Context switches of a process's live threads so far (voluntary and not): how often its
/// threads went to sleep or were put off a core, which is where wake-ups between threads cost.
pub fn ctx_switches_of(pid: u32) -> Result<u64> {
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(s) = std::fs::read_to_string(t?.path().join("status")) else {
            continue;
        };
        for l in s.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                n += v.trim().parse::<u64>()?;
            }
        }
    }
    Ok(n)
}

/// VmRSS of a process in bytes.
pub fn rss_of(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?;
    Ok(kb * 1024)
}

/// CPU time of the calling thread in nanoseconds (`/proc/thread-self/schedstat`, first field):
/// nanosecond resolution without unsafe code, and unaffected by time spent waiting for a core.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
