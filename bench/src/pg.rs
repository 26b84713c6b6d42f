//! A throwaway PostgreSQL cluster for the database-store phases, as the tests make one
//! (`tests/common/pg.rs`): `initdb` into a scratch directory (as the `postgres` user when the
//! benchmark runs as root, since PostgreSQL refuses root), listening only on a Unix socket in
//! that directory, with PostgreSQL's default durability (`fsync = on`, a synchronous commit per
//! transaction). A watchdog shell stops the cluster and removes the directory when the
//! benchmark exits, however it exits.
//!
//! The database's CPU time is measured like the server's: utime + stime of the postmaster and
//! of its live children (the backends of the server's pool, the WAL writer, the checkpointer),
//! plus the postmaster's cutime + cstime for children that have exited.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The running cluster.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
    _watchdog: Option<Child>,
}

/// Debian's newest PostgreSQL binaries.
fn pg_bin() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .context("PostgreSQL not found under /usr/lib/postgresql: run .ci/setup-postgres.sh")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// `initdb` and start a cluster in a fresh directory under `scratch`.
    pub fn start(scratch: &Path) -> Result<Cluster> {
        let bin = pg_bin()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("smp-bench-pg-")
            .tempdir_in(scratch)?
            .keep();
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()?;
            if !ok.success() {
                bail!("chown of {} failed", dir.display());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut c = Cluster {
            dir: dir.clone(),
            port,
            bin,
            as_postgres,
            _watchdog: None,
        };
        // --no-sync only makes initdb itself quicker; the running cluster keeps fsync = on.
        let out = c
            .cmd("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .output()?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let opts = format!(
            "-k {} -p {port} -c listen_addresses='' -c max_connections=100",
            dir.display()
        );
        let out = c
            .cmd("pg_ctl")
            .args(["start", "-w", "-t", "60", "-l"])
            .arg(dir.join("log"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-o", &opts])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
        }
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = c.stop_command(),
            dir = dir.display()
        );
        c._watchdog = Some(
            Command::new("sh")
                .args(["-c", &watchdog])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let v = c.psql("postgres", "SHOW server_version")?;
        let fsync = c.psql("postgres", "SHOW fsync")?;
        println!(
            "  PostgreSQL {} in {} (fsync = {})",
            v.trim(),
            dir.display(),
            fsync.trim()
        );
        Ok(c)
    }

    fn cmd(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn stop_command(&self) -> String {
        let run = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{run}{} stop -m immediate -D '{}' >/dev/null 2>&1",
            self.bin.join("pg_ctl").display(),
            self.dir.join("data").display()
        )
    }

    /// A libpq connection string to database `db` (superuser, Unix socket).
    pub fn conn(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        )
    }

    /// Run SQL with psql in database `db`; returns stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conn(db))
            .args(["-c", sql])
            .output()?;
        if !out.status.success() {
            bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A new empty database `name`, with the schema `smp_server` when `schema` (a new server
    /// starts on an existing empty schema and applies the migrations; `database import`
    /// creates its own).
    pub fn new_db(&self, name: &str, schema: bool) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        if schema {
            self.psql(name, "CREATE SCHEMA smp_server")?;
        }
        Ok(self.conn(name))
    }

    /// Bytes the queue table of database `name` takes on disk (with its indexes and TOAST).
    pub fn queues_size(&self, name: &str) -> Result<u64> {
        let s = self.psql(
            name,
            "SELECT pg_total_relation_size('smp_server.msg_queues')",
        )?;
        Ok(s.trim().parse()?)
    }

    /// The postmaster's process ID.
    fn postmaster(&self) -> Result<u32> {
        let s = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))?;
        Ok(s.lines().next().context("postmaster.pid")?.trim().parse()?)
    }

    /// CPU time of the whole cluster so far: the postmaster, its live children, and the
    /// children that have exited (the postmaster's cutime + cstime).
    pub fn cpu(&self) -> Result<Duration> {
        let pm = self.postmaster()?;
        let mut ticks = stat_ticks(pm, true)?;
        for e in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid != pm && parent(pid) == Some(pm) {
                ticks += stat_ticks(pid, false).unwrap_or(0);
            }
        }
        Ok(Duration::from_nanos(
            ticks * 1_000_000_000 / crate::server::clock_ticks(),
        ))
    }
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Parent process ID (field 4).
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// utime + stime (fields 14, 15), plus cutime + cstime (16, 17) when `children`.
fn stat_ticks(pid: u32, children: bool) -> Result<u64> {
    let f = stat_fields(pid).context("/proc stat")?;
    let n = if children { 4 } else { 2 };
    let mut t = 0u64;
    for i in 11..11 + n {
        t += f.get(i).context("stat field")?.parse::<i64>()?.max(0) as u64;
    }
    Ok(t)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command()])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
