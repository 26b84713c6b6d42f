//! `smp-server doctor` (beyond the reference): checks a configured server from the operator's
//! side and prints, for each problem, what to fix. A first-time operator runs it after `init`
//! and after `start`; it changes nothing.
//!
//! Checked: the INI, the identity and state files and their permissions, the SMP ports (our
//! server answering a handshake with our identity, free, or taken by another program), the
//! certificates' validity and names, ACME and Tor status, clock sanity as far as possible
//! offline (no NTP: certificates and files from the future), and free disk space.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::Decode as _;

use super::CliError;
use crate::config::{Config, Paths};

/// Free space below which the log directory is reported (messages and backups live there).
const MIN_FREE_BYTES: u64 = 1 << 30;

/// The findings, printed as they come; the exit status is a failure when any is an error.
#[derive(Default)]
struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        println!("ok:    {}", what.as_ref());
    }
    fn warn(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.warnings += 1;
        println!("warn:  {}\n       fix: {}", what.as_ref(), fix.as_ref());
    }
    fn error(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.errors += 1;
        println!("error: {}\n       fix: {}", what.as_ref(), fix.as_ref());
    }
}

/// Run the checks; `Err` (exit status 1) when something must be fixed.
pub fn run(paths: &Paths) -> Result<(), CliError> {
    let mut r = Report::default();
    let ini = paths.ini_file();
    let config = if !ini.exists() {
        r.error(
            format!("{} does not exist", ini.display()),
            "run `smp-server init` (or set SMP_SERVER_CFG_PATH to your configuration directory)",
        );
        None
    } else {
        match Config::load_from(paths.clone()) {
            Ok(c) => {
                r.ok(format!("{} is valid", ini.display()));
                for k in &c.unknown_keys {
                    r.warn(
                        format!("unknown INI key {k}"),
                        "check its spelling; it is ignored",
                    );
                }
                Some(c)
            }
            Err(e) => {
                r.error(
                    format!("{} cannot be used: {e}", ini.display()),
                    "correct that line (compare with a fresh `smp-server init` in a scratch directory)",
                );
                None
            }
        }
    };
    check_files(&mut r, paths);
    if let Some(c) = &config {
        check_ports(&mut r, c);
        check_web(&mut r, c);
        check_tor(&mut r, c);
    }
    check_clock(&mut r, paths);
    check_disk(&mut r, paths.log_dir());
    println!("{} error(s), {} warning(s)", r.errors, r.warnings);
    if r.errors > 0 {
        Err(CliError::Aborted(
            "doctor found problems to fix (see above)".into(),
        ))
    } else {
        Ok(())
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(_: &Path) -> Option<u32> {
    None
}

fn check_files(r: &mut Report, paths: &Paths) {
    for (p, private) in [
        (paths.ca_cert_file(), false),
        (paths.server_cert_file(), false),
        (paths.server_key_file(), true),
        (paths.fingerprint_file(), false),
    ] {
        if !p.is_file() {
            r.error(
                format!("{} is missing", p.display()),
                "restore it from your backup; `smp-server cert` makes a new server.crt/server.key if ca.key is available",
            );
            continue;
        }
        match mode(&p) {
            Some(m) if private && m & 0o077 != 0 => r.error(
                format!("{} is readable by others (mode {m:o})", p.display()),
                format!("chmod 600 {}", p.display()),
            ),
            _ => r.ok(format!("{} present", p.display())),
        }
    }
    if paths.ca_key_file().exists() {
        r.warn(
            format!("{} is on the server", paths.ca_key_file().display()),
            "move ca.key offline after init; it is only needed by `smp-server cert`",
        );
    }
    let log = paths.log_dir();
    let probe = log.join(".doctor-write-test");
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            r.ok(format!("{} is writable", log.display()));
        }
        Err(e) => r.error(
            format!("cannot write in {}: {e}", log.display()),
            "create it and give it to the server's user (e.g. chown -R smp:smp)",
        ),
    }
}

/// One SMP port: our server answering with our identity, free, or taken by something else.
fn check_ports(r: &mut Report, c: &Config) {
    let fp = crate::crypto::identity::fingerprint_of_ca(c.paths.cfg_dir()).ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    for port in &c.transport.ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let answered = match (&rt, &fp) {
            (Ok(rt), Some(fp)) => rt.block_on(async {
                let opts = crate::client::ClientOptions {
                    timeout: Duration::from_secs(5),
                    ..Default::default()
                };
                crate::client::SmpClient::connect(addr, fp.0, opts).await
            }),
            _ => continue,
        };
        match answered {
            Ok(_) => r.ok(format!(
                "port {port}: this server answers an SMP handshake with its identity"
            )),
            Err(e) => match TcpListener::bind(("0.0.0.0", *port)) {
                Ok(_) => r.warn(
                    format!("port {port}: nothing listens (the server is not running)"),
                    "start it (systemctl start smp-server, or smp-server start)",
                ),
                Err(be) if be.kind() == std::io::ErrorKind::AddrInUse => r.error(
                    format!("port {port} is in use by another program, which is not this server ({e})"),
                    format!("stop that program (see `ss -ltnp 'sport = :{port}'`) or change [TRANSPORT] port"),
                ),
                Err(be) => r.warn(
                    format!("port {port}: cannot check ({be})"),
                    "ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)",
                ),
            },
        }
    }
}

/// (not before, not after, names) of the first certificate of a PEM file.
fn cert_facts(pem: &Path) -> Result<(SystemTime, SystemTime, Vec<String>), String> {
    let text = std::fs::read_to_string(pem).map_err(|e| e.to_string())?;
    let ders = crate::crypto::x509::certs_from_pem(&text).map_err(|e| e.to_string())?;
    let der = ders.first().ok_or("no certificate in the file")?;
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
    let v = &cert.tbs_certificate().validity();
    let nb = UNIX_EPOCH + v.not_before.to_unix_duration();
    let na = UNIX_EPOCH + v.not_after.to_unix_duration();
    let mut names: Vec<String> = cert
        .tbs_certificate()
        .subject()
        .to_string()
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("CN=").map(str::to_string))
        .collect();
    if let Ok(Some((_, san))) = cert
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectAltName>()
    {
        for n in san.0 {
            if let x509_cert::ext::pkix::name::GeneralName::DnsName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    Ok((nb, na, names))
}

fn check_cert(r: &mut Report, what: &str, pem: &Path, host: Option<&str>) {
    match cert_facts(pem) {
        Err(e) => r.error(
            format!("{what} {}: {e}", pem.display()),
            "restore or renew the certificate",
        ),
        Ok((nb, na, names)) => {
            let now = SystemTime::now();
            if now < nb {
                r.error(
                    format!("{what} is not valid yet (the clock may be behind)"),
                    "check the system clock (timedatectl)",
                );
            } else if na < now {
                r.error(
                    format!("{what} {} has expired", pem.display()),
                    "renew it (`smp-server cert`, or your ACME client)",
                );
            } else if na < now + Duration::from_secs(14 * 86400) {
                r.warn(format!("{what} expires within 14 days"), "renew it soon");
            } else {
                r.ok(format!("{what} valid, names: {}", names.join(", ")));
            }
            if let Some(h) = host {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
                    r.warn(
                        format!("{what} does not name {h}"),
                        "browsers will refuse the page; get a certificate for that name",
                    );
                }
            }
        }
    }
}

fn check_web(r: &mut Report, c: &Config) {
    check_cert(r, "server certificate", &c.paths.server_cert_file(), None);
    let Some(_) = c.web.https else {
        return;
    };
    let cert = c
        .web
        .cert
        .clone()
        .unwrap_or_else(|| c.paths.web_cert_file());
    let host = c
        .transport
        .host
        .split(',')
        .map(str::trim)
        .find(|h| crate::config::acme::is_dns_name(h));
    let elsewhere = crate::web::cert_owner::managed_elsewhere(&cert, c.paths.cfg_dir());
    match (c.acme.enable, &elsewhere) {
        (true, Some(why)) => r.warn(
            crate::web::cert_owner::acme_off_message(why),
            "set [ACME] enable = off (docs/acme.md)",
        ),
        (true, None) => r.ok(format!("ACME on: this server manages {}", cert.display())),
        (false, Some(why)) => r.ok(format!("ACME off; another client manages it: {why}")),
        (false, None) => r.ok("ACME off"),
    }
    if cert.exists() {
        check_cert(r, "web certificate", &cert, host);
    } else if c.acme.enable && elsewhere.is_none() {
        r.warn(
            format!("{} does not exist yet", cert.display()),
            "ACME gets it at start; port 80 or 443 must be reachable from the internet",
        );
    } else {
        r.error(
            format!("{} is missing", cert.display()),
            "get a certificate (init --fqdn turns on ACME), or comment out [WEB] https",
        );
    }
}

fn check_tor(r: &mut Report, c: &Config) {
    if !c.tor.enable {
        return;
    }
    match std::fs::read_to_string(crate::config::onion_address_file(&c.paths)) {
        Ok(a) if !a.trim().is_empty() => r.ok(format!("Tor: onion address {}", a.trim())),
        _ => r.warn(
            "Tor is on but no onion address was published yet",
            "start the server and wait for the onion service (see its log)",
        ),
    }
}

/// Offline clock check: files in the log directory from the future mean the clock went back.
fn check_clock(r: &mut Report, paths: &Paths) {
    let now = SystemTime::now();
    let newest = std::fs::read_dir(paths.log_dir())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok()?.modified().ok())
                .max()
        })
        .ok()
        .flatten();
    match newest {
        Some(t) if t > now + Duration::from_secs(300) => r.error(
            "files in the log directory are from the future: the clock went back",
            "fix the time (timedatectl set-ntp true); queue expiry and statistics depend on it",
        ),
        _ => r.ok("clock: no file from the future (no network time check offline)"),
    }
}

fn check_disk(r: &mut Report, dir: &Path) {
    let out = std::process::Command::new("df")
        .args(["-Pk"])
        .arg(dir)
        .output();
    let avail = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text.lines().nth(1)?.to_string();
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match avail {
        Some(kb) if kb * 1024 < MIN_FREE_BYTES => r.warn(
            format!("only {} MB free in {}", kb / 1024, dir.display()),
            "free space: messages, the store log and backups are written there",
        ),
        Some(kb) => r.ok(format!("disk: {} MB free in {}", kb / 1024, dir.display())),
        None => r.warn(
            format!("cannot tell the free space of {}", dir.display()),
            "check with df",
        ),
    }
}
