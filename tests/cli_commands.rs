//! The real `smp-server` binary, run as the operators' guide runs it, in temporary directories.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use smp_server::config::{Config, Paths};

mod common;
use common::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_smp-server");

struct Server {
    _tmp: tempfile::TempDir,
    paths: Paths,
}

impl Server {
    fn new() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new(tmp.path().join("etc"), tmp.path().join("var"));
        Server { _tmp: tmp, paths }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("SMP_SERVER_CFG_PATH", &self.paths.cfg_dir)
            .env("SMP_SERVER_LOG_PATH", &self.paths.log_dir)
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().expect("runs")
    }

    fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writes");
        child.wait_with_output().expect("waits")
    }

    fn fingerprint(&self) -> String {
        std::fs::read_to_string(self.paths.fingerprint_file())
            .expect("fingerprint file")
            .trim()
            .to_string()
    }

    fn config(&self) -> Config {
        Config::load_from(self.paths.clone()).expect("generated ini loads")
    }

    fn write_ini(&self, text: &str) {
        std::fs::create_dir_all(&self.paths.cfg_dir).expect("mkdir");
        std::fs::write(self.paths.ini_file(), text).expect("write ini");
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "unexpectedly succeeded:\n{}",
        stdout(o)
    );
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn line_value<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn version() {
    let s = Server::new();
    let out = ok(&s.run(&["--version"]));
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(format!("SMP server v{}", env!("CARGO_PKG_VERSION")).as_str()),
        "the reference's first line"
    );
    let commit = lines
        .next()
        .and_then(|l| l.strip_prefix("commit "))
        .expect("a commit line");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert_eq!(commit, head, "the checkout's commit"),
        None => assert!(commit.len() == 40 || commit == "unknown", "{commit}"),
    }
    assert_eq!(ok(&s.run(&["-v"])), out);
}

#[test]
fn no_arguments_shows_commands() {
    let s = Server::new();
    let out = failed(&s.run(&[]));
    for cmd in ["init", "start", "delete", "cert"] {
        assert!(out.contains(cmd), "{cmd} missing in:\n{out}");
    }
}

#[test]
fn init_store_messages_memory_keeps_the_reference_default() {
    let s = Server::new();
    ok(&s.run(&["init", "-y", "--store-messages", "memory"]));
    let c = s.config();
    assert!(c.store_log.enable);
    assert_eq!(
        c.store_log.store_messages,
        smp_server::config::MessageStoreType::Memory
    );
    let ini = std::fs::read_to_string(s.paths.ini_file()).expect("ini");
    assert!(ini.contains("\nstore_messages = memory\n"), "{ini}");
    assert!(ini.contains("\n# journal_fsync = batch\n"), "{ini}");
    let out = failed(&Server::new().run(&["init", "-y", "--store-messages", "disk"]));
    assert!(out.contains("--store-messages"), "{out}");
}

#[test]
fn guide_init_with_ip_and_password() {
    let s = Server::new();
    let out = ok(&s.run(&[
        "init",
        "-y",
        "-l",
        "--ip",
        "192.168.1.5",
        "--password",
        "test",
    ]));
    let fp = s.fingerprint();
    assert_eq!(fp.len(), 44, "base64url of SHA-256 with padding");
    assert_eq!(line_value(&out, "Fingerprint: "), fp);
    assert_eq!(
        line_value(&out, "Server address: "),
        format!("smp://{fp}:test@192.168.1.5")
    );
    assert!(out.contains(&format!("SMP server v{}", env!("CARGO_PKG_VERSION"))));
    assert!(out.contains("Run `smp-server start` to start server."));
    assert!(out.contains(&s.paths.ca_key_file().display().to_string()));
    for f in [
        s.paths.ini_file(),
        s.paths.ca_key_file(),
        s.paths.ca_cert_file(),
        s.paths.server_key_file(),
        s.paths.server_cert_file(),
    ] {
        assert!(f.exists(), "{} missing", f.display());
    }
    assert!(s.paths.log_dir.is_dir());
    #[cfg(unix)]
    {
        assert_eq!(mode(&s.paths.ini_file()), 0o600);
        assert_eq!(mode(&s.paths.ca_key_file()), 0o600);
    }

    let c = s.config();
    assert_eq!(c.transport.host, "192.168.1.5");
    assert_eq!(c.transport.ports, vec![5223, 443]);
    assert_eq!(c.auth.create_password.as_deref(), Some("test"));
    assert!(c.auth.new_queues);
    assert!(c.store_log.enable);
    assert_eq!(c.store_log.restore_messages, Some(true));
    // new servers get the crash-safe journal
    assert_eq!(
        c.store_log.store_messages,
        smp_server::config::MessageStoreType::Journal
    );
    assert_eq!(
        c.store_log.journal_fsync,
        smp_server::config::JournalFsync::Batch
    );
    assert!(!c.store_log.log_stats);
    assert_eq!(c.store_log.expire_messages_days, Some(21));
    assert_eq!(c.transport.control_port, None);
    assert!(c.inactive_clients.is_some());
    assert_eq!(c.web.https, Some(443));
    assert_eq!(c.web.static_path, Some(s.paths.default_web_static_dir()));
    assert!(c.unknown_keys.is_empty());

    let id = smp_server::crypto::identity::load_identity(&s.paths.cfg_dir).expect("identity");
    assert_eq!(id.fingerprint.to_base64url(), fp);
}

#[test]
fn init_ed448_with_fqdn_and_no_password() {
    let s = Server::new();
    let out = ok(&s.run(&[
        "init",
        "-y",
        "-a",
        "ED448",
        "-n",
        "smp.example.com",
        "--no-password",
    ]));
    let fp = s.fingerprint();
    assert_eq!(
        line_value(&out, "Server address: "),
        format!("smp://{fp}@smp.example.com")
    );
    let c = s.config();
    assert_eq!(c.auth.create_password, None);
    assert_eq!(c.transport.host, "smp.example.com");
    let id = smp_server::crypto::identity::load_identity(&s.paths.cfg_dir).expect("identity");
    let ca = id.chain.last().expect("ca");
    let alg = smp_server::crypto::x509::cert_public_key(ca)
        .expect("ca key")
        .algorithm();
    assert_eq!(alg, smp_server::crypto::keys::KeyAlgorithm::Ed448);
}

#[test]
fn guide_tor_setup_flags() {
    let s = Server::new();
    let out = ok(&s.run(&[
        "init",
        "--yes",
        "--store-log",
        "--no-password",
        "--control-port",
        "--socks-proxy",
        "--source-code",
        "--fqdn=smp1.example.com",
    ]));
    // `--source-code` without a value: this project's repository as the build names it,
    // never the reference's
    match smp_server::config::defaults::source_code() {
        Some(u) => assert!(out.contains(&format!("Server source code: {u}")), "{out}"),
        None => assert!(
            out.contains("Warning: server source code is not specified."),
            "{out}"
        ),
    }
    assert!(!out.contains("github.com/simplex-chat/simplexmq"), "{out}");
    let c = s.config();
    assert_eq!(c.transport.control_port, Some(5224));
    let admin = c.auth.control_port_admin_password.clone().expect("admin");
    let user = c.auth.control_port_user_password.clone().expect("user");
    assert_eq!(admin.len(), 24);
    assert_ne!(admin, user);
    assert_eq!(
        c.proxy.socks_proxy,
        Some("127.0.0.1:9050".parse().expect("addr"))
    );
    assert_eq!(
        c.information.source_code,
        smp_server::config::defaults::source_code()
    );
    assert_eq!(c.transport.host, "smp1.example.com");
}

#[test]
fn default_init_makes_random_password_and_placeholder_host() {
    let s = Server::new();
    let out = ok(&s.run(&["init", "-y"]));
    let fp = s.fingerprint();
    let addr = line_value(&out, "Server address: ");
    let rest = addr
        .strip_prefix(&format!("smp://{fp}:"))
        .expect("address with password");
    let (pw, host) = rest.split_once('@').expect("@");
    assert_eq!(pw.len(), 44);
    assert_eq!(host, "<hostnames>");
    assert_eq!(s.config().auth.create_password.as_deref(), Some(pw));
}

#[test]
fn init_with_server_information() {
    let s = Server::new();
    ok(&s.run(&[
        "init",
        "-y",
        "--source-code",
        "https://example.com/src",
        "--operator",
        "Example Org",
        "--operator-country",
        "de",
        "--hosting",
        "Host Co",
        "--hosting-country",
        "FR",
        "--hosting-type",
        "dedicated",
        "--server-country",
        "NL",
        "--operator-website",
        "https://example.com",
        "--own-domains",
        "example.com,example.org",
        "--web-path",
        "/srv/smp-www",
        "--disable-web",
        "--daily-stats",
        "--disable-store-log",
        "--control-port",
        "5300",
    ]));
    let c = s.config();
    let i = &c.information;
    assert_eq!(i.source_code.as_deref(), Some("https://example.com/src"));
    let op = i.operator.as_ref().expect("operator");
    assert_eq!(
        (op.name.as_str(), op.country.as_deref()),
        ("Example Org", Some("DE"))
    );
    let h = i.hosting.as_ref().expect("hosting");
    assert_eq!(
        (h.name.as_str(), h.country.as_deref()),
        ("Host Co", Some("FR"))
    );
    assert_eq!(
        i.hosting_type,
        Some(smp_server::config::HostingType::Dedicated)
    );
    assert_eq!(i.server_country.as_deref(), Some("NL"));
    assert_eq!(i.website.as_deref(), Some("https://example.com"));
    assert_eq!(
        c.proxy.own_server_domains,
        vec!["example.com", "example.org"]
    );
    assert_eq!(c.web.static_path, Some(PathBuf::from("/srv/smp-www")));
    assert_eq!(c.web.https, None);
    assert!(c.store_log.log_stats);
    assert!(!c.store_log.enable);
    assert_eq!(c.store_log.restore_messages, Some(false));
    // without the store log there is nothing for a journal to restore into
    assert_eq!(
        c.store_log.store_messages,
        smp_server::config::MessageStoreType::Memory
    );
    assert_eq!(c.transport.control_port, Some(5300));
}

#[test]
fn init_checks_information_flags() {
    let s = Server::new();
    let out = failed(&s.run(&["init", "-y", "--operator", "X"]));
    assert!(out.contains("requires passing --source-code"), "{out}");
    let out = failed(&s.run(&["init", "-y", "--source-code", "--hosting-country", "DE"]));
    assert!(
        out.contains("--hosting-country requires passing --hosting"),
        "{out}"
    );
    assert!(!s.paths.ini_file().exists());
}

#[test]
fn init_refuses_to_overwrite() {
    let s = Server::new();
    ok(&s.run(&["init", "-y", "--no-password"]));
    let fp = s.fingerprint();
    let out = failed(&s.run(&["init", "-y"]));
    assert!(out.contains("already initialized"), "{out}");
    assert!(out.contains("smp-server delete"), "{out}");
    assert_eq!(s.fingerprint(), fp);
}

#[test]
fn interactive_init() {
    let s = Server::new();
    // Enter, store log (default yes), stats (no), no password, FQDN, source (default), web path (default)
    let o = s.run_with_input(&["init"], "\n\nn\nn\nsmp.test.example\n\n\n");
    let out = ok(&o);
    assert!(out.contains("Use `smp-server init -h` for available options."));
    let fp = s.fingerprint();
    assert_eq!(
        line_value(&out, "Server address: "),
        format!("smp://{fp}@smp.test.example")
    );
    let c = s.config();
    assert!(c.store_log.enable);
    assert!(!c.store_log.log_stats);
    assert_eq!(
        c.information.source_code,
        smp_server::config::defaults::source_code()
    );
    // the reference's answers end before our ACME question: the default, our ACME, is on
    assert!(c.acme.enable);

    // answering 'n' (Caddy or certbot manages web.crt) leaves ACME off
    let s = Server::new();
    let o = s.run_with_input(&["init"], "\n\nn\nn\nsmp.test.example\n\n\nn\n");
    ok(&o);
    assert!(!s.config().acme.enable);
}

#[test]
fn interactive_init_without_input_aborts() {
    let s = Server::new();
    let out = failed(&s.run(&["init"]));
    assert!(out.contains("-y"), "{out}");
    assert!(!s.paths.ini_file().exists());
}

#[test]
fn start_requires_init() {
    let s = Server::new();
    let out = failed(&s.run(&["start"]));
    assert!(out.contains("server is not initialized"), "{out}");
    assert!(out.contains("Run `smp-server init`."), "{out}");
}

#[test]
fn cert_requires_init() {
    let s = Server::new();
    let out = failed(&s.run(&["cert"]));
    assert!(out.contains("Run `smp-server init`."), "{out}");
}

#[test]
fn start_reports_config_errors_with_section_and_key() {
    let s = Server::new();
    ok(&s.run(&["init", "-y"]));
    let ini = std::fs::read_to_string(s.paths.ini_file()).expect("ini");
    s.write_ini(&ini.replace("port = 5223,443", "port = abc"));
    let out = failed(&s.run(&["start"]));
    assert!(
        out.contains("[TRANSPORT] port: 'abc' is not a port number; use e.g. port = 5223,443"),
        "{out}"
    );
    s.write_ini(&ini.replace("new_queues = on", "new_queues = yes"));
    let out = failed(&s.run(&["start"]));
    assert!(out.contains("[AUTH] new_queues: 'yes'"), "{out}");
    s.write_ini(&ini.replace("[AUTH]", "[AUTH]\nthis line is broken"));
    let out = failed(&s.run(&["start"]));
    assert!(out.contains("line"), "{out}");
}

/// Run `start`, collect stdout up to the queue-creation line, then stop the server.
fn start_output(s: &Server) -> String {
    let mut child = s
        .cmd(&["start"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = String::new();
    for line in reader.lines() {
        let line = line.expect("line");
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("creating new queues") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

#[test]
fn start_with_colon_form_ini_prints_status() {
    let s = Server::new();
    ok(&s.run(&["init", "-y", "--password", "pw1"]));
    let (p1, p2) = (free_port(), free_port());
    let ini = std::fs::read_to_string(s.paths.ini_file()).expect("ini");
    // Rewrite every `key = value` line into the guide's `key: value` form.
    let colon: String = ini
        .lines()
        .map(|l| {
            if l.starts_with('#') || l.starts_with('[') || !l.contains(" = ") {
                l.to_string()
            } else {
                l.replacen(" = ", ": ", 1)
            }
        })
        .map(|l| {
            if l.starts_with("port:") {
                format!("port: {p1},{p2}")
            } else if l.starts_with("host:") {
                "host: smp.example.com".into()
            } else if l.starts_with("https:") {
                "# https: 443".into()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(colon.contains("create_password: pw1"));
    s.write_ini(&colon);
    let fp = s.fingerprint();
    let out = start_output(&s);
    assert_eq!(line_value(&out, "Fingerprint: "), fp);
    assert_eq!(
        line_value(&out, "Server address: "),
        format!("smp://{fp}:pw1@smp.example.com:{p1},{p2}")
    );
    assert!(out.contains(&format!(
        "Store log: {}",
        s.paths.store_log_file().display()
    )));
    assert!(out.contains(&format!("Serving SMP protocol on port {p1} (TLS)...")));
    assert!(out.contains(&format!("Serving SMP protocol on port {p2} (TLS)...")));
    assert!(out.contains("expiring messages after 21 days"));
    assert!(out.contains("expiring clients inactive for 21600 seconds every 3600 seconds"));
    assert!(out.contains("creating new queues requires password"));
}

#[test]
fn cert_keeps_the_identity() {
    let s = Server::new();
    ok(&s.run(&["init", "-y", "--fqdn", "smp.example.com"]));
    let fp = s.fingerprint();
    let old_crt = std::fs::read(s.paths.server_cert_file()).expect("crt");
    let out = ok(&s.run(&["cert"]));
    assert!(out.contains("Generated new server credentials"), "{out}");
    assert!(out.contains(&s.paths.ca_key_file().display().to_string()));
    assert_ne!(
        std::fs::read(s.paths.server_cert_file()).expect("crt"),
        old_crt
    );
    assert_eq!(s.fingerprint(), fp);
    let id = smp_server::crypto::identity::load_identity(&s.paths.cfg_dir).expect("identity");
    assert_eq!(id.fingerprint.to_base64url(), fp);

    ok(&s.run(&["cert", "--cn", "other.example.com"]));
    assert_eq!(s.fingerprint(), fp);
    let out = failed(&s.run(&["cert", "-a", "ED448"]));
    assert!(out.contains("ED25519"), "{out}");

    std::fs::remove_file(s.paths.ca_key_file()).expect("rm ca.key");
    let out = failed(&s.run(&["cert"]));
    assert!(out.contains("ca.key"), "{out}");
}

#[test]
fn delete_asks_then_removes_everything() {
    let s = Server::new();
    ok(&s.run(&["init", "-y"]));
    std::fs::write(s.paths.store_log_file(), "").expect("store log");

    let out = failed(&s.run_with_input(&["delete"], "n\n"));
    assert!(out.contains("THIS CANNOT BE UNDONE!"), "{out}");
    assert!(out.contains("Server NOT deleted"), "{out}");
    assert!(s.paths.ini_file().exists());

    let out = ok(&s.run_with_input(&["delete"], "Y\n"));
    assert!(out.contains("Deleted configuration and log files"), "{out}");
    assert!(!s.paths.cfg_dir.exists());
    assert!(!s.paths.log_dir.exists());
}

#[test]
fn delete_yes_and_reinit() {
    let s = Server::new();
    ok(&s.run(&["init", "-y"]));
    let fp = s.fingerprint();
    let out = ok(&s.run(&["delete", "-y"]));
    assert!(out.contains("Deleted configuration and log files"));
    assert!(!s.paths.cfg_dir.exists() && !s.paths.log_dir.exists());
    ok(&s.run(&["init", "-y"]));
    assert_ne!(s.fingerprint(), fp);
}

#[test]
fn storage_commands_need_an_initialised_server() {
    let s = Server::new();
    // Not initialised: the journal and database commands say what to do first.
    let out = failed(&s.run(&["journal", "import"]));
    assert!(out.contains("smp-server init"), "{out}");
    let out = failed(&s.run(&["database", "export", "--table", "queues"]));
    assert!(out.contains("smp-server init"), "{out}");
}

#[cfg(unix)]
#[test]
fn start_listens_and_stops_on_sigterm() {
    use std::time::{Duration, Instant};
    let s = Server::new();
    ok(&s.run(&["init", "-y", "--no-password", "--disable-web"]));
    let (p1, p2) = (free_port(), free_port());
    let ini = std::fs::read_to_string(s.paths.ini_file()).expect("ini");
    s.write_ini(&ini.replace("port = 5223,443", &format!("port = {p1},{p2}")));
    let mut child = s
        .cmd(&["start"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while reader.read_line(&mut line).expect("line") > 0 {
        if line.starts_with("creating new queues") {
            break;
        }
        line.clear();
    }
    assert_eq!(line.trim(), "creating new queues allowed");
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [p1, p2] {
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "port {port} never accepted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn start_check_config_prints_the_plan_or_every_problem() {
    let s = Server::new();
    ok(&s.run(&["init", "-y"]));
    let ini = std::fs::read_to_string(s.paths.ini_file()).expect("ini");
    // a port that something else holds: --check-config must not bind, so it still passes
    let held = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let held_port = held.local_addr().expect("addr").port();
    s.write_ini(&ini.replace("port = 5223,443", &format!("port = {held_port}")));
    let out = ok(&s.run(&["start", "--check-config"]));
    let fp = s.fingerprint();
    assert!(out.contains(&format!("smp://{fp}")), "{out}");
    for l in [
        "Listeners:",
        &format!("  SMP on port {held_port} (TLS)"),
        "Stores:",
        &format!(
            "  queues: memory, store log {}",
            s.paths.store_log_file().display()
        ),
        "Roles:",
        "  relay: new queues require a password",
        "Configuration OK.",
    ] {
        assert!(out.lines().any(|x| x == l), "no line {l:?} in:\n{out}");
    }
    assert!(
        !s.paths.store_log_file().exists(),
        "the check opened no store"
    );
    drop(held);

    // two listeners on one port, and a damaged key: both reported, exit status 1
    let two = ini
        .replace("# control_port = 5224", "control_port = 5224")
        .replace(
            "# prometheus_address = 127.0.0.1:9090",
            "prometheus_address = 127.0.0.1:5224",
        );
    assert_ne!(two, ini, "the template has these commented lines");
    s.write_ini(&two);
    std::fs::write(s.paths.server_key_file(), "not a key").expect("damage key");
    let out = failed(&s.run(&["start", "--check-config"]));
    assert!(
        out.contains(
            "Error: port 5224 is used by [TRANSPORT] control_port and [STORE_LOG] prometheus_address at once"
        ),
        "{out}"
    );
    assert!(out.contains("Error: server identity in "), "{out}");
    assert!(
        out.contains("Error: configuration check failed: 2 problem(s)"),
        "{out}"
    );

    // an invalid INI value: the same message as `start`, naming section and key
    s.write_ini(&ini.replace("new_queues = on", "new_queues = yes"));
    let out = failed(&s.run(&["start", "--check-config"]));
    assert!(out.contains("[AUTH] new_queues: 'yes'"), "{out}");
}
