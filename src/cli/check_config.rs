//! `smp-server start --check-config` (ours; the reference has no such switch, pingora's `-t`
//! is the model): load and validate `smp-server.ini` and the files it names, print what
//! `start` would run, and exit without binding a port or touching a store.
//!
//! Why beside `doctor`: `doctor` inspects a server as it runs (ports answering, clocks, disk);
//! this answers "will this configuration start?" before a restart, so it reads only files and
//! fails (exit status 1) exactly on what would stop `start` or leave a configured part off.

use std::collections::BTreeMap;
use std::path::Path;

use super::CliError;
use crate::config::{Config, MessageStoreType, QueueStoreType};

/// Check `config` (already parsed and validated by `Config::load_from`) and the files it
/// names; print the plan, or every problem found and fail.
pub(super) fn run(config: &Config) -> Result<(), CliError> {
    let mut problems = Vec::new();
    let fingerprint = match crate::crypto::identity::load_identity(&config.paths.cfg_dir) {
        Ok(id) => Some(id.fingerprint.to_base64url()),
        Err(e) => {
            problems.push(format!(
                "server identity in {}: {e}",
                config.paths.cfg_dir.display()
            ));
            None
        }
    };
    check_web_files(config, &mut problems);
    check_store_paths(config, &mut problems);
    check_ports(config, &mut problems);

    println!("Configuration: {}", config.paths.ini_file().display());
    if let Some(fp) = &fingerprint {
        println!("Server address: {}", config.server_address(fp));
    }
    println!("Listeners:");
    for l in listeners(config) {
        println!("  {l}");
    }
    println!("Stores:");
    for s in stores(config) {
        println!("  {s}");
    }
    println!("Roles:");
    for r in roles(config) {
        println!("  {r}");
    }
    for w in config.warnings() {
        println!("Warning: {w}");
    }
    for k in &config.unknown_keys {
        println!("Warning: unknown INI key {k} (ignored)");
    }
    if problems.is_empty() {
        println!("Configuration OK.");
        return Ok(());
    }
    for p in &problems {
        println!("Error: {p}");
    }
    Err(CliError::Message(format!(
        "Error: configuration check failed: {} problem(s); `start` would not run as configured.",
        problems.len()
    )))
}

/// `[WEB]`: the static site directory, and the certificate and key when HTTPS is on and they
/// exist. Missing ones are not a problem: ACME obtains them, or `start` runs SMP without the
/// page (and says so, as here).
fn check_web_files(c: &Config, problems: &mut Vec<String>) {
    if let Some(root) = &c.web.static_path {
        if root.exists() && !root.is_dir() {
            problems.push(format!(
                "[WEB] static_path {} is not a directory",
                root.display()
            ));
        }
    }
    if c.web.https.is_none() {
        return;
    }
    let cert = c
        .web
        .cert
        .clone()
        .unwrap_or_else(|| c.paths.web_cert_file());
    let key = c.web.key.clone().unwrap_or_else(|| c.paths.web_key_file());
    if !cert.exists() && !key.exists() {
        if !c.acme.enable {
            println!(
                "Warning: [WEB] {} does not exist: the HTTPS information page cannot start.",
                cert.display()
            );
        }
        return;
    }
    let certs = crate::web::certs::WebCerts::new(smp_acme::Challenges::new());
    if let Err(e) = certs.load_files(&cert, &key) {
        problems.push(format!(
            "[WEB] certificate {} / key {}: {e}",
            cert.display(),
            key.display()
        ));
    }
}

/// The log directory and the store files in it: directories where directories are expected,
/// readable files where files exist (missing ones are created at start).
fn check_store_paths(c: &Config, problems: &mut Vec<String>) {
    let log_dir = c.paths.log_dir();
    if log_dir.exists() && !log_dir.is_dir() {
        problems.push(format!(
            "log directory {} is not a directory",
            log_dir.display()
        ));
        return;
    }
    let mut files = Vec::new();
    if c.store_log.enable && c.store_log.store_queues == QueueStoreType::Memory {
        files.push(c.paths.store_log_file());
    }
    if c.store_log.store_messages == MessageStoreType::Memory {
        files.push(c.paths.messages_file());
    }
    if c.store_log.log_stats {
        files.push(c.paths.stats_file());
    }
    for f in files {
        if f.exists() {
            if let Err(e) = readable_file(&f) {
                problems.push(format!("{}: {e}", f.display()));
            }
        }
    }
    if c.store_log.store_messages == MessageStoreType::Journal {
        let d = c.paths.messages_journal_dir();
        if d.exists() && !d.is_dir() {
            problems.push(format!(
                "message journal {} is not a directory",
                d.display()
            ));
        }
    }
}

fn readable_file(f: &Path) -> std::io::Result<()> {
    if !f.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    std::fs::File::open(f).map(drop)
}

/// Two listeners on one port cannot both bind (the `[WEB] https` port may be an SMP port: the
/// SMP listener then routes browsers to the page).
fn check_ports(c: &Config, problems: &mut Vec<String>) {
    let mut used: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut add = |port: u16, what: String| used.entry(port).or_default().push(what);
    if !c.tor.onion_only_active() {
        for p in &c.transport.ports {
            add(*p, "[TRANSPORT] port".into());
        }
        if let Some(p) = c.web.http {
            add(p, "[WEB] http".into());
        }
        if let Some(p) = c.web.https.filter(|p| !c.transport.ports.contains(p)) {
            add(p, "[WEB] https".into());
        }
    }
    if let Some(p) = c.transport.control_port {
        add(p, "[TRANSPORT] control_port".into());
    }
    if let Some(a) = c.store_log.prometheus_address {
        add(a.port(), "[STORE_LOG] prometheus_address".into());
    }
    for (port, users) in used {
        if users.len() > 1 {
            problems.push(format!(
                "port {port} is used by {} at once",
                users.join(" and ")
            ));
        }
    }
}

fn listeners(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if c.tor.onion_only_active() {
        out.push("no public port ([TOR] onion_only = on)".into());
    } else {
        for p in &c.transport.ports {
            if c.web.https == Some(*p) {
                out.push(format!("SMP on port {p} (TLS), shared with the HTTPS page"));
            } else {
                out.push(format!("SMP on port {p} (TLS)"));
            }
        }
        if let Some(p) = c.web.http {
            out.push(format!("web page over HTTP on port {p}"));
        }
        if let Some(p) = c.web.https.filter(|p| !c.transport.ports.contains(p)) {
            out.push(format!("web page over HTTPS on port {p}"));
        }
    }
    if c.tor.enable {
        let ports: Vec<String> = c
            .tor
            .onion_ports(&c.transport, &c.web)
            .iter()
            .map(u16::to_string)
            .collect();
        out.push(format!(
            "onion service (embedded Tor) on virtual ports {}",
            ports.join(",")
        ));
    }
    if let Some(p) = c.transport.control_port {
        out.push(format!("control port on 127.0.0.1:{p}"));
    }
    if let Some(a) = c.store_log.prometheus_address {
        out.push(format!("Prometheus metrics on http://{a}/metrics"));
    }
    out
}

fn stores(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    out.push(match c.store_log.store_queues {
        QueueStoreType::Database => format!(
            "queues: PostgreSQL {}, schema {}",
            crate::config::redact_connection(&c.store_log.db_connection),
            c.store_log.db_schema
        ),
        QueueStoreType::Memory if c.store_log.enable => format!(
            "queues: memory, store log {}",
            c.paths.store_log_file().display()
        ),
        QueueStoreType::Memory => "queues: memory, not saved (store log disabled)".into(),
    });
    out.push(match c.store_log.store_messages {
        MessageStoreType::Journal => format!(
            "messages: journal {}",
            c.paths.messages_journal_dir().display()
        ),
        MessageStoreType::Memory if c.store_log.restore_messages_enabled() => format!(
            "messages: memory, saved at stop to {}",
            c.paths.messages_file().display()
        ),
        other => format!("messages: {other}"),
    });
    if c.store_log.log_stats {
        out.push(format!(
            "statistics: {} (daily log {})",
            c.paths.stats_file().display(),
            c.paths.stats_daily_file().display()
        ));
    }
    out
}

fn roles(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let queues = if !c.auth.new_queues {
        "NOT allowed"
    } else if c.auth.create_password.is_some() {
        "require a password"
    } else {
        "allowed"
    };
    out.push(format!("relay: new queues {queues}"));
    out.push(match c.store_log.message_ttl_secs() {
        Some(ttl) => format!("expiry: messages after {ttl} seconds"),
        None => "expiry: messages kept".into(),
    });
    if let Some(ic) = &c.inactive_clients {
        out.push(format!(
            "inactive clients: disconnected after {} seconds",
            ic.ttl_secs
        ));
    }
    out.push(match c.proxy.socks_proxy {
        Some(a) => format!("proxy: forwards to other servers, .onion through SOCKS {a}"),
        None => "proxy: forwards to other servers directly".into(),
    });
    if let Some(n) = &c.names {
        out.push(format!("names: resolver {}", n.endpoint));
    }
    if c.acme.enable {
        out.push(format!(
            "ACME: certificates for {}",
            c.acme.effective_domains(&c.transport.host).join(", ")
        ));
    }
    out.push(format!("updates: {:?}", c.update.mode).to_lowercase());
    out
}
