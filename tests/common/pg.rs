//! A throwaway PostgreSQL cluster for one test process: `initdb` into a temporary directory
//! (as the `postgres` user when running as root, since PostgreSQL refuses root), the server
//! listening only on a Unix socket in that directory, one fresh database per test. A watchdog
//! shell stops the cluster and removes the directory when the test process exits, however it
//! exits. Debian's `postgresql` is installed by `.ci/setup-postgres.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running cluster.
pub struct Cluster {
    /// Data directory (also the socket directory).
    pub dir: PathBuf,
    /// Port (names the socket file).
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    /// Also listening on 127.0.0.1 (TCP, TLS only): see [`Cluster::start_tls`].
    tcp: bool,
    /// Outlives the tests on purpose: it cleans up after the process exits.
    _watchdog: Option<std::process::Child>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .expect("PostgreSQL not found under /usr/lib/postgresql: run .ci/setup-postgres.sh")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// The process's cluster, started on first use.
    pub fn get() -> &'static Cluster {
        CLUSTER.get_or_init(Cluster::start)
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

    fn start() -> Cluster {
        Cluster::start_with(None)
    }

    /// A cluster of its own that also listens on 127.0.0.1:`port` and takes TCP connections
    /// only over TLS (`hostssl`; plain `host` is rejected), with this certificate and key
    /// (PEM). The Unix socket stays open without TLS for `psql`.
    pub fn start_tls(cert: &Path, key: &Path) -> Cluster {
        Cluster::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Cluster {
        let bin = pg_bin();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("smp-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(ok.success(), "chown of the cluster directory failed");
        }
        let port = if tls.is_some() {
            super::process::free_port()
        } else {
            20000 + (std::process::id() % 20000) as u16
        };
        let mut c = Cluster {
            dir: dir.clone(),
            port,
            bin,
            as_postgres,
            tcp: tls.is_some(),
            _watchdog: None,
        };
        let data = dir.join("data");
        let out = c
            .cmd("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((cert, key)) = tls {
            c.enable_tls(&data, cert, key);
        }
        c.pg_ctl_start();
        // Stop and remove the cluster when this test process ends.
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
                .spawn()
                .expect("watchdog"),
        );
        c
    }

    fn enable_tls(&self, data: &Path, cert: &Path, key: &Path) {
        std::fs::copy(cert, data.join("server.crt")).expect("server.crt");
        std::fs::copy(key, data.join("server.key")).expect("server.key");
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("postgresql.conf");
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n";
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        let mut chown = Command::new("sh");
        chown.args(["-c", "chmod 600 \"$1/server.key\" && { [ \"$2\" = 0 ] || chown postgres:postgres \"$1\"/server.* \"$1\"/pg_hba.conf \"$1\"/postgresql.conf; }", "sh"]);
        chown
            .arg(data)
            .arg(if self.as_postgres { "1" } else { "0" });
        assert!(
            chown.status().expect("chmod").success(),
            "chmod/chown of the TLS files"
        );
    }

    fn stop_command(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let run = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{run}{} stop -m immediate -D '{}' >/dev/null 2>&1",
            pg_ctl.display(),
            self.dir.join("data").display()
        )
    }

    fn pg_ctl_start(&self) {
        let listen = if self.tcp { "127.0.0.1" } else { "" };
        let opts = format!(
            "-k {} -p {} -c listen_addresses='{listen}' -c fsync=off -c max_connections=300",
            self.dir.display(),
            self.port
        );
        let out = self
            .cmd("pg_ctl")
            .args(["start", "-w", "-t", "60", "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stop the server (fast: connections are cut), as an outage.
    pub fn stop(&self) {
        let st = self
            .cmd("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl stop");
        assert!(st.success(), "pg_ctl stop failed");
    }

    /// Start it again after [`Cluster::stop`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// A libpq connection string to database `db`.
    pub fn conn(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        )
    }

    /// Run SQL with psql in database `db`; panics on error. Returns stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conn(db))
            .args(["-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new empty database; returns its name.
    pub fn new_db(&self) -> String {
        let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Wait until the server accepts connections again.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h"])
                .arg(&self.dir)
                .args(["-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not come back");
    }

    /// The data directory path.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

/// Database options for a fresh database in the process's cluster.
pub fn fresh_db_options() -> smp_server::store::postgres::db::DbOptions {
    let c = Cluster::get();
    let db = c.new_db();
    smp_server::store::postgres::db::DbOptions {
        connection: c.conn(&db),
        schema: "smp_server".into(),
        pool_size: 4,
    }
}
