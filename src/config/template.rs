//! The `smp-server.ini` that `init` writes: the reference's sections, keys, defaults and
//! commented-out optional keys, explained in our own words.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::defaults;
use super::model::{Entity, HostingType};
use super::paths::Paths;

/// What `init` decided; everything the template needs.
#[derive(Clone)]
pub struct IniTemplate {
    /// Directories (for the default web paths).
    pub paths: Paths,
    /// `[STORE_LOG] enable` and `restore_messages`.
    pub enable_store_log: bool,
    /// `store_messages` written by `init` (new servers get the journal; an INI without the
    /// key still means memory, as with the reference).
    pub store_messages: super::MessageStoreType,
    /// `db_connection` (written uncommented only when not the default).
    pub db_connection: String,
    /// `db_schema` (written uncommented only when not the default).
    pub db_schema: String,
    /// `db_pool_size` (written uncommented only when not the default).
    pub db_pool_size: u32,
    /// `log_stats`.
    pub log_stats: bool,
    /// `[TRANSPORT] host`.
    pub host: String,
    /// `create_password`; commented out when `None`.
    pub create_password: Option<String>,
    /// `control_port`; commented out when `None`.
    pub control_port: Option<u16>,
    /// Control port admin and user passwords; commented out when `None`.
    pub control_port_passwords: Option<(String, String)>,
    /// `socks_proxy`; commented out when `None`.
    pub socks_proxy: Option<String>,
    /// `own_server_domains`; commented out when empty.
    pub own_domains: Vec<String>,
    /// `source_code`; commented out when `None`.
    pub source_code: Option<String>,
    /// `server_country`.
    pub server_country: Option<String>,
    /// `operator` and `operator_country`.
    pub operator: Option<Entity>,
    /// `website`.
    pub website: Option<String>,
    /// `hosting` and `hosting_country`.
    pub hosting: Option<Entity>,
    /// `hosting_type` (written as `virtual` when `None`).
    pub hosting_type: Option<HostingType>,
    /// `[WEB] static_path` (default `<log dir>/www`).
    pub web_static_path: Option<PathBuf>,
    /// Comment out `https`, `cert` and `key`.
    pub disable_web: bool,
    /// `[TOR] enable`.
    pub enable_tor: bool,
    /// `[ACME] domains`; `enable = on` when not empty (`init --fqdn`).
    pub acme_domains: Vec<String>,
    /// `[ACME] email` (`init --acme-email`, the container's ACME_EMAIL).
    pub acme_email: Option<String>,
}

impl Default for IniTemplate {
    fn default() -> Self {
        IniTemplate {
            paths: Paths::default(),
            enable_store_log: true,
            store_messages: super::MessageStoreType::Journal,
            db_connection: defaults::DB_CONNECTION.into(),
            db_schema: defaults::DB_SCHEMA.into(),
            db_pool_size: defaults::DB_POOL_SIZE,
            log_stats: false,
            host: super::PLACEHOLDER_HOST.into(),
            create_password: None,
            control_port: None,
            control_port_passwords: None,
            socks_proxy: None,
            own_domains: Vec::new(),
            source_code: None,
            server_country: None,
            operator: None,
            website: None,
            hosting: None,
            hosting_type: None,
            web_static_path: None,
            disable_web: false,
            enable_tor: false,
            acme_domains: Vec::new(),
            acme_email: None,
        }
    }
}

impl std::fmt::Debug for IniTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IniTemplate")
            .field("host", &self.host)
            .field("enable_store_log", &self.enable_store_log)
            .field("control_port", &self.control_port)
            .finish_non_exhaustive()
    }
}

/// `# ` when the option is off, so the line stays as a commented-out example.
fn hash(disabled: bool) -> &'static str {
    if disabled {
        "# "
    } else {
        ""
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `key = value`, or `# key = placeholder` when there is no value.
fn opt_line(out: &mut String, key: &str, value: Option<&str>, placeholder: &str) {
    let _ = writeln!(
        out,
        "{}{key} = {}",
        hash(value.is_none()),
        value.unwrap_or(placeholder)
    );
}

fn entity_lines(out: &mut String, key: &str, entity: Option<&Entity>) {
    opt_line(
        out,
        key,
        entity.map(|e| e.name.as_str()),
        "name of the organization or person",
    );
    opt_line(
        out,
        &format!("{key}_country"),
        entity.and_then(|e| e.country.as_deref()),
        "two-letter ISO 3166 code",
    );
}

fn information(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "[INFORMATION]\n\
         # The AGPLv3 license obliges you to offer the source code of the server you run,\n\
         # including any changes you made, to its users.\n\
         # License text: https://github.com/simplex-chat/simplexmq/blob/stable/LICENSE\n\
         # Point source_code at your modified source if you changed anything.\n\
         # source_code must be set whenever any other field below is set.\n\n",
    );
    opt_line(out, "source_code", t.source_code.as_deref(), "URI");
    out.push_str(
        "\n# Everything below is optional.\n\n\
         # Conditions of use; prefer the standard conditions plus a separate amendments document.\n\
         # usage_conditions = https://github.com/simplex-chat/simplex-chat/blob/stable/PRIVACY.md\n\
         # condition_amendments = link\n\n\
         # Where the server is and who runs it.\n",
    );
    opt_line(
        out,
        "server_country",
        t.server_country.as_deref(),
        "two-letter ISO 3166 code",
    );
    entity_lines(out, "operator", t.operator.as_ref());
    opt_line(out, "website", t.website.as_deref(), "");
    out.push_str(
        "\n# Administrator contacts.\n\
         # admin_simplex = SimpleX address\n\
         # admin_email =\n\
         # admin_pgp =\n\
         # admin_pgp_fingerprint =\n\n\
         # Where to send complaints and feedback.\n\
         # complaints_simplex = SimpleX address\n\
         # complaints_email =\n\
         # complaints_pgp =\n\
         # complaints_pgp_fingerprint =\n\n\
         # Hosting provider.\n",
    );
    entity_lines(out, "hosting", t.hosting.as_ref());
    out.push_str("\n# One of: virtual, dedicated, colocation, owned.\n");
    let _ = writeln!(
        out,
        "hosting_type = {}\n",
        t.hosting_type.unwrap_or(HostingType::Virtual).as_str()
    );
}

fn store_log(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "[STORE_LOG]\n\
         # Queue records live in memory (or in PostgreSQL, see store_queues).\n\
         # With enable = on every change is appended to a log that is replayed on restart\n\
         # and compacted at start-up.\n",
    );
    let _ = writeln!(out, "enable = {}\n", on_off(t.enable_store_log));
    out.push_str(
        "# Where queue records are kept: memory (with the log above) or database (PostgreSQL,\n\
         # which needs store_messages = database; see docs/postgres.md).\n\
         store_queues = memory\n\n\
         # PostgreSQL settings, used with store_queues = database.\n",
    );
    let _ = writeln!(
        out,
        "{}db_connection = {}",
        hash(t.db_connection == defaults::DB_CONNECTION),
        t.db_connection
    );
    let _ = writeln!(
        out,
        "{}db_schema = {}",
        hash(t.db_schema == defaults::DB_SCHEMA),
        t.db_schema
    );
    let _ = writeln!(
        out,
        "{}db_pool_size = {}\n",
        hash(t.db_pool_size == defaults::DB_POOL_SIZE),
        t.db_pool_size
    );
    out.push_str(
        "# Also append database changes to the store log file.\n\
         # db_store_log = off\n\n\
         # How long deleted queues are kept in the database, in seconds (21 days here).\n",
    );
    let _ = writeln!(out, "# db_deleted_ttl = {}\n", defaults::DB_DELETED_TTL);
    out.push_str(
        "# Where messages are kept: memory or journal. memory = in memory, saved to\n\
         # smp-server-messages.log at a clean stop (lost if the process is killed);\n\
         # journal = each change written to files in messages/ before it is answered.\n\
         # Change it only together with `smp-server journal import` / `export`.\n",
    );
    let _ = writeln!(out, "store_messages = {}\n", t.store_messages);
    out.push_str(
        "# With store_messages = journal (our own journal format, see docs/journal.md): when\n\
         # journal writes are fsynced. always = before each command is answered, shared by\n\
         # concurrent commands (survives power loss, about half the throughput); batch = every\n\
         # 100 ms (a power loss may lose the last 100 ms); off = never while running. All three\n\
         # survive the server process being killed. Without this line: always.\n",
    );
    // New servers: batch costs nothing measurable (docs/benchmarks.md), always about half.
    let journal = t.store_messages == super::MessageStoreType::Journal;
    let _ = writeln!(out, "{}journal_fsync = batch\n", hash(!journal));
    out.push_str(
        "# With store_messages = memory, undelivered messages can be saved at shutdown and\n\
         # loaded at the next start; the saved file is kept as .bak until the restart after.\n",
    );
    let _ = writeln!(out, "restore_messages = {}\n", on_off(t.enable_store_log));
    out.push_str("# When undelivered messages and notifications are dropped.\n");
    let _ = writeln!(
        out,
        "expire_messages_days = {}",
        defaults::EXPIRE_MESSAGES_DAYS
    );
    out.push_str("expire_messages_on_start = on\nexpire_messages_on_send = off\n");
    let _ = writeln!(out, "expire_ntfs_hours = {}\n", defaults::EXPIRE_NTFS_HOURS);
    out.push_str("# Write daily statistics to a CSV file.\n");
    let _ = writeln!(out, "log_stats = {}\n", on_off(t.log_stats));
    out.push_str(
        "# Seconds between writes of Prometheus metrics.\n\
         # prometheus_interval = 60\n\n\
         # Also serve the Prometheus metrics over HTTP (GET /metrics) on this address.\n\
         # Keep it on a loopback address: the metrics are not authenticated.\n\
         # prometheus_address = 127.0.0.1:9090\n\n",
    );
}

fn auth(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "[AUTH]\n\
         # new_queues = off refuses all new queues, e.g. while retiring the server and waiting\n\
         # for existing connections to move elsewhere.\n\
         new_queues = on\n\n\
         # With create_password set, only clients that know it can create queues (and use the\n\
         # server as a forwarding proxy). It goes into the address given to those users:\n\
         # smp://fingerprint:password@host1,host2\n\
         # Contacts who only send you messages never need it; share it only with the users\n\
         # you allow to create queues here.\n",
    );
    opt_line(
        out,
        "create_password",
        t.create_password.as_deref(),
        "<printable ASCII without spaces, '@', ':' or '/'>",
    );
    out.push('\n');
    let (admin, user) = match &t.control_port_passwords {
        Some((a, u)) => (Some(a.as_str()), Some(u.as_str())),
        None => (None, None),
    };
    opt_line(out, "control_port_admin_password", admin, "");
    opt_line(out, "control_port_user_password", user, "");
    out.push_str(
        "\n# Queues that may be blocked through the control port per day (resets at 00:00 UTC);\n\
         # 0 means no limit, -1 forbids blocking.\n",
    );
    let _ = writeln!(
        out,
        "# daily_block_queue_quota = {}\n",
        defaults::DAILY_BLOCK_QUEUE_QUOTA
    );
}

fn transport(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "[TRANSPORT]\n\
         # host is printed in the server address at start; nothing listens on it.\n\
         # port may list several ports, separated by commas.\n",
    );
    let _ = writeln!(out, "host = {}", t.host);
    let ports: Vec<String> = defaults::PORTS.iter().map(u16::to_string).collect();
    let _ = writeln!(out, "port = {}", ports.join(","));
    out.push_str(
        "log_tls_errors = off\n\n\
         # Deprecated, for testing only: websockets = 443 also serves WebSockets\n\
         # (443 must then be listed in port as well).\n\
         websockets = off\n",
    );
    let _ = writeln!(
        out,
        "{}control_port = {}\n",
        hash(t.control_port.is_none()),
        t.control_port.unwrap_or(defaults::CONTROL_PORT)
    );
}

fn proxy(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "[PROXY]\n\
         # How this server reaches other servers when it forwards messages for clients.\n\
         # host_mode chooses which of a server's host names to use: public (default) or onion.\n\
         # host_mode = public\n\
         # required_host_mode = off\n\n\
         # Domain suffixes of your own relays (separated by spaces), counted separately\n\
         # in proxy statistics.\n",
    );
    let own = (!t.own_domains.is_empty()).then(|| t.own_domains.join(","));
    opt_line(out, "own_server_domains", own.as_deref(), "");
    out.push_str(
        "\n# SOCKS proxy for connections to destination servers. Incoming single-hop\n\
         # requests may need a separate SOCKS proxy instance.\n",
    );
    opt_line(
        out,
        "socks_proxy",
        t.socks_proxy.as_deref(),
        defaults::SOCKS_PROXY,
    );
    out.push_str(
        "\n# socks_mode: onion (default) uses the proxy only for .onion destinations,\n\
         # always uses it for every destination (useful when this server is onion-only).\n\
         # socks_mode = onion\n\n\
         # Maximum proxy commands processed in parallel for one client.\n",
    );
    let _ = writeln!(
        out,
        "# client_concurrency = {}\n",
        defaults::CLIENT_CONCURRENCY
    );
}

fn inactive_and_web(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "[INACTIVE_CLIENTS]\n\
         # Disconnect clients idle for ttl seconds, checking every check_interval seconds.\n\
         disconnect = on\n",
    );
    let _ = writeln!(out, "ttl = {}", defaults::INACTIVE_TTL_SECS);
    let _ = writeln!(
        out,
        "check_interval = {}\n",
        defaults::INACTIVE_CHECK_INTERVAL_SECS
    );
    out.push_str(
        "[WEB]\n\
         # Directory where the server information pages (and connection link pages) are generated.\n",
    );
    let static_path = t
        .web_static_path
        .clone()
        .unwrap_or_else(|| t.paths.default_web_static_dir());
    let _ = writeln!(out, "static_path = {}\n", static_path.display());
    out.push_str(
        "# Serve those pages over plain HTTP on this port. An onion site may use any port\n\
         # mapped in the hidden service configuration; port 80 may need extra capabilities.\n\
         # http = 8000\n\n\
         # Serve them over HTTPS with this port, certificate and key (not needed for an\n\
         # onion-only relay). If the port is also an SMP port, both share it.\n",
    );
    let w = hash(t.disable_web);
    let _ = writeln!(out, "{w}https = 443");
    let _ = writeln!(out, "{w}cert = {}", t.paths.web_cert_file().display());
    let _ = writeln!(out, "{w}key = {}", t.paths.web_key_file().display());
}

/// Render the complete INI file.
pub fn render_ini(t: &IniTemplate) -> String {
    let mut out = String::with_capacity(6000);
    information(&mut out, t);
    store_log(&mut out, t);
    auth(&mut out, t);
    transport(&mut out, t);
    proxy(&mut out, t);
    super::names::template(&mut out);
    inactive_and_web(&mut out, t);
    super::tor::template(&mut out, t.enable_tor);
    super::update::template(&mut out);
    acme_section(&mut out, t);
    out
}

fn acme_section(out: &mut String, t: &IniTemplate) {
    out.push_str(
        "\n[ACME]\n\
         # Obtain and renew the [WEB] certificate automatically from an ACME CA (Let's Encrypt\n\
         # by default): no Caddy, certbot or cron needed. The certificate is written to the\n\
         # [WEB] cert and key files and swapped in without a restart. The CA must reach this\n\
         # server on port 80 ([WEB] http, for http-01) or 443 ([WEB] https, for tls-alpn-01).\n\
         # See docs/acme.md.\n",
    );
    let on = !t.acme_domains.is_empty();
    let _ = writeln!(out, "enable = {}", on_off(on));
    out.push_str("# Names on the certificate, comma-separated (default: the DNS names in [TRANSPORT] host).\n");
    let domains = t.acme_domains.join(",");
    opt_line(
        out,
        "domains",
        on.then_some(domains.as_str()),
        "smp.example.com",
    );
    out.push_str("# Contact for expiry notices from the CA (optional).\n");
    opt_line(out, "email", t.acme_email.as_deref(), "admin@example.com");
    out.push_str(
        "# Only one client may write the [WEB] cert: keep enable = off when Caddy or certbot\n\
         # manages it (init --no-acme). A cert that is a symlink or lies outside the configuration\n\
         # directory is taken as managed elsewhere, and ACME then stays off (docs/acme.md).\n",
    );
    out.push_str(
        "# CA directory: Let's Encrypt production by default, `staging` for tests, or any URL.\n\
         # directory = https://acme-v02.api.letsencrypt.org/directory\n\
         # Challenge: http-01, tls-alpn-01, or auto (http-01, then tls-alpn-01).\n\
         # challenge = auto\n\
         # Certificate key: ecdsa (P-256, default) or rsa (2048 bits).\n\
         # key_type = ecdsa\n\
         # Extra PEM root certificate to trust for the CA's own HTTPS (private or test CAs).\n\
         # ca_root = /etc/opt/simplex/acme-ca.pem\n\
         # Seconds between renewal checks (renewal follows the CA's ARI window when offered,\n\
         # else two thirds of the certificate's lifetime).\n\
         # check_interval = 43200\n",
    );
}
