//! `smp-server init`: identity, `smp-server.ini`, and the address to give to clients.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;

use super::args::InitArgs;
use super::console::{print_ca_key_advice, print_service_info, print_source_code, Console};
use super::CliError;
use crate::config::{
    defaults, is_valid_password, render_ini, Entity, IniTemplate, MessageStoreType, Paths,
    ServerAddress, PLACEHOLDER_HOST,
};

/// How the queue creation password is chosen.
#[derive(Clone, PartialEq, Eq)]
enum PasswordChoice {
    /// Generate one (the default).
    Random,
    /// The operator's own.
    Given(String),
    /// Anyone may create queues.
    None,
}

/// The answers that the interactive mode may change.
struct Answers {
    enable_store_log: bool,
    log_stats: bool,
    password: PasswordChoice,
    fqdn: Option<String>,
    source_code: Option<String>,
    web_path: Option<PathBuf>,
    /// Our ACME client manages web.crt (off when Caddy, certbot, ... does).
    builtin_acme: bool,
}

impl Answers {
    fn from_args(a: &InitArgs) -> Self {
        let password = if a.no_password {
            PasswordChoice::None
        } else {
            match &a.password {
                Some(p) => PasswordChoice::Given(p.clone()),
                None => PasswordChoice::Random,
            }
        };
        Answers {
            enable_store_log: !a.disable_store_log,
            log_stats: a.daily_stats,
            password,
            fqdn: a.fqdn.clone(),
            source_code: match a.source_code.as_deref() {
                Some("") => defaults::source_code(),
                s => s.map(str::to_string),
            },
            web_path: a.web_path.clone(),
            builtin_acme: !a.no_acme,
        }
    }
}

/// `store_messages` for a new server: as asked, else the journal when queues are kept (without
/// the store log the journal's messages would have no queues after a restart).
fn init_store_messages(flag: Option<&str>, store_log: bool) -> MessageStoreType {
    match flag {
        Some("memory") => MessageStoreType::Memory,
        Some(_) => MessageStoreType::Journal,
        None if store_log => MessageStoreType::Journal,
        None => MessageStoreType::Memory,
    }
}

/// Run `init`.
pub fn run(args: InitArgs, paths: &Paths) -> Result<(), CliError> {
    let ini = paths.ini_file();
    if ini.exists() {
        return Err(CliError::Message(format!(
            "Error: server is already initialized ({} exists).\nRun `smp-server start`, or `smp-server delete` to remove this server and initialize a new one.",
            ini.display()
        )));
    }
    let mut answers = Answers::from_args(&args);
    if !args.yes {
        println!("Use `smp-server init -h` for available options.");
        check_options(&args, answers.source_code.as_deref())?;
        ask(&args, paths, &mut answers, &mut Console::stdin())?;
    }
    initialize(&args, &answers, paths)
}

/// The reference's consistency rules for server information flags.
fn check_options(a: &InitArgs, source_code: Option<&str>) -> Result<(), CliError> {
    let has_info = a.operator.is_some()
        || a.operator_website.is_some()
        || a.hosting.is_some()
        || a.hosting_type.is_some()
        || a.server_country.is_some();
    let msg = if source_code.is_none() && has_info {
        "Error: passing any server information requires passing --source-code"
    } else if a.operator.is_none() && a.operator_country.is_some() {
        "Error: passing --operator-country requires passing --operator"
    } else if a.hosting.is_none() && a.hosting_country.is_some() {
        "Error: passing --hosting-country requires passing --hosting"
    } else {
        return Ok(());
    };
    Err(CliError::Message(msg.into()))
}

fn ask<R: BufRead>(
    a: &InitArgs,
    paths: &Paths,
    ans: &mut Answers,
    c: &mut Console<R>,
) -> Result<(), CliError> {
    c.ask("SMP server will be initialized (press Enter)")?;
    ans.enable_store_log = c.yes_no(
        "Enable store log to restore queues and messages on server restart",
        true,
    )?;
    ans.log_stats = c.yes_no("Enable logging daily statistics", false)?;
    println!("Require a password to create new messaging queues?");
    ans.password = loop {
        let s = c.ask("'r' for random (default), 'n' - no password (recommended for public servers), or enter password: ")?;
        match s.as_str() {
            "" | "r" => break PasswordChoice::Random,
            "n" => break PasswordChoice::None,
            p if is_valid_password(p) => break PasswordChoice::Given(p.to_string()),
            _ => println!(
                "Invalid password: use printable characters without spaces, '@', ':' or '/'."
            ),
        }
    };
    let host = ans.fqdn.clone().unwrap_or_else(|| a.ip.clone());
    let h = c.ask(&format!(
        "Enter server FQDN or IP address for certificate ({host}): "
    ))?;
    if !h.trim().is_empty() {
        ans.fqdn = Some(h.trim().to_string());
    }
    let default_src = ans.source_code.clone().or_else(defaults::source_code);
    let shown = default_src.as_deref().unwrap_or("none");
    let src = loop {
        let s = c.ask(&format!("Enter server source code URI ({shown}): "))?;
        let s = s.trim().to_string();
        if s.is_empty() || s.starts_with("https://") || s.starts_with("http://") {
            break s;
        }
        println!("Invalid source code URI: it must start with http:// or https://");
    };
    ans.source_code = if src.is_empty() {
        default_src
    } else {
        Some(src)
    };
    let default_web = ans
        .web_path
        .clone()
        .unwrap_or_else(|| paths.default_web_static_dir());
    let w = c.ask(&format!(
        "Enter path to store generated server pages to show connection links ({}): ",
        default_web.display()
    ))?;
    if !w.trim().is_empty() {
        ans.web_path = Some(PathBuf::from(w.trim()));
    }
    // One certificate client for web.crt: ours, or the one the operator already runs.
    if ans.builtin_acme
        && !a.disable_web
        && ans
            .fqdn
            .as_deref()
            .is_some_and(crate::config::acme::is_dns_name)
    {
        // Asked after the reference's questions; input scripted for the reference ends before
        // it, and the end of input means the default (yes).
        let s = c
            .ask("Get the web certificate with the built-in ACME client (Let's Encrypt)? 'n' if Caddy or certbot manages web.crt (Y/n): ")
            .unwrap_or_default();
        ans.builtin_acme = !matches!(s.trim(), "n" | "N" | "no");
    }
    Ok(())
}

/// base64url (with padding) of `n` random bytes, as the reference makes passwords.
fn random_base64(n: usize) -> Result<String, CliError> {
    let mut buf = vec![0u8; n];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| CliError::Message(format!("Error: random number generator failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE.encode(buf))
}

/// Files a previous server left behind, removed before a new identity is made: the old
/// identity in the configuration directory, and queue/message/statistics files (which belong
/// to the old identity) in the log directory. Unlike the reference, other files are kept.
fn remove_previous_server(paths: &Paths) -> Result<(), CliError> {
    let cfg_files = [
        paths.ca_key_file(),
        paths.ca_cert_file(),
        paths.server_key_file(),
        paths.server_cert_file(),
        paths.fingerprint_file(),
        paths.cfg_dir.join("ca.srl"),
        paths.cfg_dir.join("server.csr"),
        paths.cfg_dir.join("openssl_ca.conf"),
        paths.cfg_dir.join("openssl_server.conf"),
    ];
    for f in cfg_files {
        remove_if_exists(&f)?;
    }
    if let Ok(entries) = std::fs::read_dir(&paths.log_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("smp-server-") || name == "messages" {
                remove_if_exists(&entry.path())?;
            }
        }
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<(), CliError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::io(format!("removing {}", path.display()), e)),
    }
}

/// Write a file readable only by its owner (it holds passwords).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let ctx = || format!("writing {}", path.display());
    let mut f = opts.open(path).map_err(|e| CliError::io(ctx(), e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io(ctx(), e))
}

fn initialize(a: &InitArgs, ans: &Answers, paths: &Paths) -> Result<(), CliError> {
    check_options(a, ans.source_code.as_deref())?;
    remove_previous_server(paths)?;
    std::fs::create_dir_all(&paths.cfg_dir)
        .map_err(|e| CliError::io(format!("creating {}", paths.cfg_dir.display()), e))?;
    // The log directory holds the state (store log, messages): the server's user only.
    crate::fsmode::create_dir(&paths.log_dir)
        .map_err(|e| CliError::io(format!("creating {}", paths.log_dir.display()), e))?;
    let common_name = ans.fqdn.clone().unwrap_or_else(|| a.ip.clone());
    let fingerprint = crate::crypto::identity::create_identity(
        &paths.cfg_dir,
        a.sign_algorithm.key_algorithm(),
        &common_name,
    )?
    .to_base64url();
    let password = match &ans.password {
        PasswordChoice::Random => Some(random_base64(32)?),
        PasswordChoice::Given(p) => Some(p.clone()),
        PasswordChoice::None => None,
    };
    let control_port_passwords = match a.control_port {
        Some(_) => Some((random_base64(18)?, random_base64(18)?)),
        None => None,
    };
    let host = match &ans.fqdn {
        Some(f) => f.clone(),
        None if a.ip == "127.0.0.1" => PLACEHOLDER_HOST.to_string(),
        None => a.ip.clone(),
    };
    let template = IniTemplate {
        paths: paths.clone(),
        enable_store_log: ans.enable_store_log,
        store_messages: init_store_messages(a.store_messages.as_deref(), ans.enable_store_log),
        db_connection: a.db.database.clone(),
        db_schema: a.db.schema.clone(),
        db_pool_size: a.db.pool_size,
        log_stats: ans.log_stats,
        host: host.clone(),
        create_password: password.clone(),
        control_port: a.control_port,
        control_port_passwords,
        socks_proxy: a.socks_proxy.map(|s| s.to_string()),
        own_domains: a.own_domains.clone().map(|d| d.0).unwrap_or_default(),
        source_code: ans.source_code.clone(),
        server_country: a.server_country.clone(),
        operator: a.operator.clone().map(|name| Entity {
            name,
            country: a.operator_country.clone(),
        }),
        website: a.operator_website.clone(),
        hosting: a.hosting.clone().map(|name| Entity {
            name,
            country: a.hosting_country.clone(),
        }),
        hosting_type: a.hosting_type,
        web_static_path: ans.web_path.clone(),
        disable_web: a.disable_web,
        enable_tor: a.tor,
        acme_email: a.acme_email.clone(),
        acme_domains: match &ans.fqdn {
            Some(f)
                if ans.builtin_acme && !a.disable_web && crate::config::acme::is_dns_name(f) =>
            {
                vec![f.clone()]
            }
            _ => Vec::new(),
        },
    };
    let ini = paths.ini_file();
    write_private(&ini, &render_ini(&template))?;

    println!(
        "Server initialized, please provide additional server information in {}.",
        ini.display()
    );
    println!("Run `smp-server start` to start server.");
    print_ca_key_advice(&paths.ca_key_file());
    let address = ServerAddress::for_init(&fingerprint, password.as_deref(), &host);
    print_service_info(&fingerprint, &address);
    print_source_code(ans.source_code.as_deref());
    if a.tor {
        println!(
            "Tor is enabled: `start` prints the onion address after the public hosts and writes it to {}.",
            crate::config::onion_address_file(paths).display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use clap::Parser;

    fn args(extra: &[&str]) -> InitArgs {
        let cli =
            Cli::try_parse_from(["smp-server", "init"].iter().chain(extra.iter())).expect("parses");
        match cli.command {
            Some(crate::cli::Command::Init(a)) => *a,
            _ => panic!("not init"),
        }
    }

    #[test]
    fn random_passwords_have_reference_length() {
        let p = random_base64(32).expect("rng");
        assert_eq!(p.len(), 44);
        assert!(p.ends_with('='));
        assert!(is_valid_password(&p));
        assert_eq!(random_base64(18).expect("rng").len(), 24);
    }

    #[test]
    fn information_needs_source_code() {
        let a = args(&["--operator", "Op"]);
        assert!(check_options(&a, None).is_err());
        assert!(check_options(&a, Some("https://x")).is_ok());
        let a = args(&["--source-code", "--operator-country", "DE"]);
        assert!(check_options(&a, a.source_code.as_deref()).is_err());
        let a = args(&["--source-code", "--hosting-country", "DE"]);
        assert!(check_options(&a, a.source_code.as_deref()).is_err());
    }

    #[test]
    fn interactive_answers() {
        let a = args(&[]);
        let mut ans = Answers::from_args(&a);
        let paths = Paths::new("/c", "/l");
        let input =
            "\n\ny\nbad pw\nmypw\nsmp.example.com\nftp://x\nhttps://src.example\n/srv/www\n";
        ask(&a, &paths, &mut ans, &mut Console::new(input.as_bytes())).expect("answers");
        assert!(ans.enable_store_log);
        assert!(ans.log_stats);
        assert!(ans.password == PasswordChoice::Given("mypw".into()));
        assert_eq!(ans.fqdn.as_deref(), Some("smp.example.com"));
        assert_eq!(ans.source_code.as_deref(), Some("https://src.example"));
        assert_eq!(ans.web_path, Some(PathBuf::from("/srv/www")));

        let mut ans = Answers::from_args(&a);
        ask(
            &a,
            &paths,
            &mut ans,
            &mut Console::new("\nn\n\nn\n\n\n\n".as_bytes()),
        )
        .expect("answers");
        assert!(!ans.enable_store_log);
        assert!(ans.password == PasswordChoice::None);
        assert_eq!(ans.fqdn, None);
        assert_eq!(ans.source_code, defaults::source_code());
        assert_eq!(ans.web_path, None);
    }
}
