//! Command-line syntax: the reference `smp-server`'s commands, flags, metavariables and defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{defaults, is_valid_password, HostingType};

/// `smp-server`: a SimpleX Messaging Protocol relay.
#[derive(Parser, Debug)]
#[command(
    name = "smp-server",
    disable_version_flag = true,
    arg_required_else_help = true,
    about = "SMP server: a SimpleX Messaging Protocol relay"
)]
pub struct Cli {
    /// Print the version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the server: identity keys and certificates, smp-server.ini, and the log directory
    Init(Box<InitArgs>),
    /// Make a new online TLS key and certificate signed by ca.key (the server address stays the same)
    Cert(CertArgs),
    /// Run the server as configured in smp-server.ini
    Start(StartArgs),
    /// Remove the configuration and log directories (the server identity is lost)
    Delete(DeleteArgs),
    /// Install the newest signed release of this server (see [UPDATE] in smp-server.ini)
    #[command(name = "self-update")]
    SelfUpdate(SelfUpdateArgs),
    /// Check the configuration, files, ports, certificates, ACME, Tor, clock and disk, and say what to fix
    Doctor,
    /// Import/export messages to/from journal storage
    Journal {
        /// What to do.
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Import/export queues to/from PostgreSQL database storage
    Database {
        /// What to do.
        #[command(subcommand)]
        cmd: StoreCmd,
        /// Which tables: queues, messages or all
        #[arg(long = "table", global = true, value_name = "TABLE", default_value = "all", value_parser = ["queues", "messages", "all"])]
        table: String,
        /// Database connection settings.
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `journal` / `database` sub-commands.
#[derive(Subcommand, Debug, Clone, Copy)]
pub enum StoreCmd {
    /// Import into the new storage
    Import,
    /// Export from the storage
    Export,
    /// Delete the storage
    Delete,
}

/// Signature algorithm of the TLS certificates.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "UPPER")]
pub enum SignAlgorithm {
    /// Ed25519 (default for new servers).
    #[value(name = "ED25519")]
    Ed25519,
    /// Ed448.
    #[value(name = "ED448")]
    Ed448,
}

impl SignAlgorithm {
    /// The key algorithm of the crypto layer.
    pub fn key_algorithm(self) -> crate::crypto::keys::KeyAlgorithm {
        match self {
            SignAlgorithm::Ed25519 => crate::crypto::keys::KeyAlgorithm::Ed25519,
            SignAlgorithm::Ed448 => crate::crypto::keys::KeyAlgorithm::Ed448,
        }
    }
}

/// PostgreSQL options (accepted for compatibility; written to the INI file by `init`).
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// PostgreSQL connection string
    #[arg(short = 'd', long = "database", global = true, value_name = "DB_CONN", default_value = defaults::DB_CONNECTION)]
    pub database: String,
    /// PostgreSQL schema name
    #[arg(long = "schema", global = true, value_name = "DB_SCHEMA", default_value = defaults::DB_SCHEMA)]
    pub schema: String,
    /// Number of PostgreSQL connections
    #[arg(long = "pool-size", global = true, value_name = "POOL_SIZE", default_value_t = defaults::DB_POOL_SIZE)]
    pub pool_size: u32,
}

/// A comma-separated list of host names (`--own-domains`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainList(pub Vec<String>);

fn parse_domains(s: &str) -> Result<DomainList, String> {
    let items: Vec<String> = s.split(',').map(|d| d.trim().to_string()).collect();
    if items.iter().any(|d| {
        d.is_empty()
            || d.chars()
                .any(|c| c.is_whitespace() || matches!(c, '#' | ';' | '/' | '@'))
    }) {
        return Err("expected comma-separated domain names, e.g. example.com,example.org".into());
    }
    Ok(DomainList(items))
}

fn parse_password(s: &str) -> Result<String, String> {
    if is_valid_password(s) {
        Ok(s.to_string())
    } else {
        Err("use printable characters without whitespace, '@', ':' and '/'".into())
    }
}

fn parse_socks_proxy(s: &str) -> Result<SocketAddr, String> {
    crate::config::parse_socks_proxy(s)
        .ok_or_else(|| "expected an IP address with an optional port, e.g. 127.0.0.1:9050".into())
}

fn parse_country(s: &str) -> Result<String, String> {
    crate::config::country_code(s).ok_or_else(|| "use an ISO 3166 2-letter country code".into())
}

fn parse_hosting_type(s: &str) -> Result<HostingType, String> {
    s.parse()
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| "expected a port number 1-65535".into())
}

/// `smp-server init`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Do not keep queue records across restarts (the store log is on by default)
    #[arg(long = "disable-store-log")]
    pub disable_store_log: bool,
    /// Keep queue records across restarts (deprecated: this is the default)
    #[arg(short = 'l', long = "store-log", conflicts_with = "disable_store_log")]
    pub store_log: bool,
    /// Database connection settings, written to the INI file.
    #[command(flatten)]
    pub db: DbArgs,
    /// Write daily statistics to a CSV file
    #[arg(short = 's', long = "daily-stats")]
    pub daily_stats: bool,
    /// Key type of the identity and TLS certificates
    #[arg(
        short = 'a',
        long = "sign-algorithm",
        value_name = "ALG",
        default_value = "ED25519",
        ignore_case = true
    )]
    pub sign_algorithm: SignAlgorithm,
    /// Public IP address; the certificate's Common Name when no --fqdn is given
    #[arg(long = "ip", value_name = "IP", default_value = "127.0.0.1")]
    pub ip: String,
    /// Public domain name; the certificate's Common Name and the address host
    #[arg(short = 'n', long = "fqdn", value_name = "FQDN")]
    pub fqdn: Option<String>,
    /// Let anyone create queues (recommended for public servers)
    #[arg(long = "no-password", conflicts_with = "password")]
    pub no_password: bool,
    /// Password clients need to create queues (default: a random one)
    #[arg(long = "password", value_name = "PASSWORD", value_parser = parse_password)]
    pub password: Option<String>,
    /// Enable the control port, 5224 unless a port is given
    #[arg(long = "control-port", value_name = "PORT", num_args = 0..=1, default_missing_value = "5224", value_parser = parse_port)]
    pub control_port: Option<u16>,
    /// SOCKS proxy for forwarding to onion-only servers, 127.0.0.1:9050 unless given
    #[arg(long = "socks-proxy", value_name = "PROXY", num_args = 0..=1, default_missing_value = defaults::SOCKS_PROXY, value_parser = parse_socks_proxy)]
    pub socks_proxy: Option<SocketAddr>,
    /// Domains of your own relays, separated by commas
    #[arg(long = "own-domains", value_name = "DOMAINS", value_parser = parse_domains)]
    pub own_domains: Option<DomainList>,
    /// URI of the source code you run; this project's repository unless given
    #[arg(long = "source-code", value_name = "URI", num_args = 0..=1, default_missing_value = "")]
    pub source_code: Option<String>,
    /// Name of the operator (organization or person)
    #[arg(long = "operator", value_name = "OPERATOR_NAME")]
    pub operator: Option<String>,
    /// Operator's country (ISO 3166 two-letter code)
    #[arg(long = "operator-country", value_name = "OPERATOR_COUNTRY", value_parser = parse_country)]
    pub operator_country: Option<String>,
    /// Name of the hosting provider
    #[arg(long = "hosting", value_name = "HOSTING_NAME")]
    pub hosting: Option<String>,
    /// Hosting provider's country (ISO 3166 two-letter code)
    #[arg(long = "hosting-country", value_name = "HOSTING_COUNTRY", value_parser = parse_country)]
    pub hosting_country: Option<String>,
    /// One of: virtual, dedicated, colocation, owned
    #[arg(long = "hosting-type", value_name = "HOSTING_TYPE", value_parser = parse_hosting_type)]
    pub hosting_type: Option<HostingType>,
    /// Country of the data centre (ISO 3166 two-letter code)
    #[arg(long = "server-country", value_name = "SERVER_COUNTRY", value_parser = parse_country)]
    pub server_country: Option<String>,
    /// Operator's website
    #[arg(long = "operator-website", value_name = "WEBSITE")]
    pub operator_website: Option<String>,
    /// Where to generate the server information pages
    #[arg(long = "web-path", value_name = "PATH")]
    pub web_path: Option<PathBuf>,
    /// Do not serve the information pages over HTTPS
    #[arg(long = "disable-web")]
    pub disable_web: bool,
    /// Also serve the relay as a Tor onion service with embedded Tor (writes [TOR] enable = on)
    #[arg(long = "tor")]
    pub tor: bool,
    /// Another client (Caddy, certbot) manages web.crt: leave the built-in ACME off
    #[arg(long = "no-acme")]
    pub no_acme: bool,
    /// Contact e-mail for the ACME account (expiry notices), written to [ACME] email
    #[arg(long = "acme-email", value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// Where undelivered messages are kept: journal (default with the store log; written before
    /// each command is answered) or memory (saved at a clean stop, the reference's default)
    #[arg(long = "store-messages", value_name = "STORE", value_parser = ["journal", "memory"])]
    pub store_messages: Option<String>,
    /// Ask no questions; use the options given
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

/// `--log-level` values, as the reference.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    Info,
    /// Notable events (shown as info).
    Note,
    /// Warnings.
    Warn,
    /// Errors only.
    Error,
}

/// `--confirm-migrations` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmMigrationsArg {
    /// Apply up-migrations.
    Up,
    /// Apply up- and down-migrations.
    Down,
}

/// `smp-server start`.
#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// Run start-up and shutdown tasks only, without serving clients
    #[arg(short = 'm', long = "maintenance")]
    pub maintenance: bool,
    /// Compact the store log at start (always done with in-memory queues)
    #[arg(long = "compact-log")]
    pub compact_log: bool,
    /// How much to log: trace, debug, info, note, warn or error
    #[arg(long = "log-level", value_name = "LOG_LEVEL", default_value = "info")]
    pub log_level: LogLevel,
    /// Start even if there are non-critical warnings
    #[arg(long = "skip-warnings")]
    pub skip_warnings: bool,
    /// Start even if the store log is missing or lacks the queues of many journaled messages;
    /// those messages are moved to smp-server-messages.orphaned.<time>.log
    #[arg(long = "allow-orphaned-messages")]
    pub allow_orphaned_messages: bool,
    /// Apply PostgreSQL migrations without asking: up, or down
    #[arg(long = "confirm-migrations", value_name = "CONFIRM_MIGRATIONS")]
    pub confirm_migrations: Option<ConfirmMigrationsArg>,
    /// Check the configuration and the files it names, print what would run, and exit
    /// (status 1 on a problem) without binding ports or opening stores
    #[arg(long = "check-config")]
    pub check_config: bool,
}

/// `smp-server cert`.
#[derive(Args, Debug, Clone)]
pub struct CertArgs {
    /// Key type of the new certificate (must be the CA's)
    #[arg(
        short = 'a',
        long = "sign-algorithm",
        value_name = "ALG",
        ignore_case = true
    )]
    pub sign_algorithm: Option<SignAlgorithm>,
    /// Common Name of the new certificate (default: the current one)
    #[arg(long = "cn", value_name = "FQDN")]
    pub cn: Option<String>,
}

/// `smp-server self-update`.
#[derive(Args, Debug, Clone)]
pub struct SelfUpdateArgs {
    /// Only report whether a newer release exists
    #[arg(long = "check", conflicts_with = "rollback")]
    pub check: bool,
    /// Install without asking
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Put back the binary replaced by the last update
    #[arg(long = "rollback")]
    pub rollback: bool,
    /// Install this release (e.g. v6.4.0) instead of the newest, also an older one
    #[arg(long = "version", value_name = "TAG", conflicts_with = "rollback")]
    pub version: Option<String>,
}

/// `smp-server delete`.
#[derive(Args, Debug, Clone)]
pub struct DeleteArgs {
    /// Do not ask for confirmation
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("smp-server").chain(args.iter().copied()))
    }

    fn init(args: &[&str]) -> InitArgs {
        match parse(args).expect("parses").command {
            Some(Command::Init(a)) => *a,
            other => panic!("not init: {other:?}"),
        }
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn guide_commands_parse() {
        let a = init(&[
            "init",
            "-y",
            "-l",
            "--ip",
            "192.168.1.5",
            "--password",
            "test",
        ]);
        assert!(a.yes && a.store_log && !a.disable_store_log);
        assert_eq!(a.ip, "192.168.1.5");
        assert_eq!(a.password.as_deref(), Some("test"));
        assert_eq!(a.sign_algorithm, SignAlgorithm::Ed25519);

        let a = init(&[
            "init",
            "--yes",
            "--store-log",
            "--no-password",
            "--control-port",
            "--socks-proxy",
            "--source-code",
            "--fqdn=smp1.example.com",
        ]);
        assert!(a.no_password);
        assert_eq!(a.control_port, Some(5224));
        assert_eq!(a.socks_proxy, Some("127.0.0.1:9050".parse().expect("addr")));
        // without a value: this build's repository, resolved by `init`
        assert_eq!(a.source_code.as_deref(), Some(""));
        assert_eq!(a.fqdn.as_deref(), Some("smp1.example.com"));

        let a = init(&["init", "-y", "-a", "ED448", "-n", "smp.example.com"]);
        assert_eq!(a.sign_algorithm, SignAlgorithm::Ed448);
        assert_eq!(a.fqdn.as_deref(), Some("smp.example.com"));
    }

    #[test]
    fn optional_values() {
        let a = init(&[
            "init",
            "--control-port",
            "6000",
            "--socks-proxy",
            ":9150",
            "--source-code",
            "https://example.com/src",
            "--own-domains",
            "a.com,b.org",
        ]);
        assert_eq!(a.control_port, Some(6000));
        assert_eq!(a.socks_proxy, Some("127.0.0.1:9150".parse().expect("addr")));
        assert_eq!(a.source_code.as_deref(), Some("https://example.com/src"));
        assert_eq!(
            a.own_domains,
            Some(DomainList(vec!["a.com".into(), "b.org".into()]))
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["init", "--password", "a@b"]).is_err());
        assert!(parse(&["init", "--password", "x", "--no-password"]).is_err());
        assert!(parse(&["init", "-a", "RSA"]).is_err());
        assert!(parse(&["init", "--server-country", "Germany"]).is_err());
        assert!(parse(&["init", "-l", "--disable-store-log"]).is_err());
        assert!(parse(&["start", "--log-level", "loud"]).is_err());
    }

    #[test]
    fn start_cert_delete() {
        match parse(&["start", "--log-level", "debug", "-m"])
            .expect("parses")
            .command
        {
            Some(Command::Start(s)) => {
                assert_eq!(s.log_level, LogLevel::Debug);
                assert!(s.maintenance);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["cert", "--cn", "x.example", "-a", "ED448"])
            .expect("parses")
            .command
        {
            Some(Command::Cert(c)) => {
                assert_eq!(c.cn.as_deref(), Some("x.example"));
                assert_eq!(c.sign_algorithm, Some(SignAlgorithm::Ed448));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["delete", "-y"]).expect("parses").command,
            Some(Command::Delete(DeleteArgs { yes: true }))
        ));
        assert!(parse(&["--version"]).expect("parses").version);
        assert!(parse(&["-v"]).expect("parses").version);
    }
}
