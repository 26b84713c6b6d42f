//! Tests of the typed configuration.

use super::*;

fn paths() -> Paths {
    Paths::new("/cfg", "/log")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, paths())
}

#[test]
fn empty_file_gives_reference_defaults() {
    let c = parse("").expect("empty is valid");
    assert_eq!(c.transport.host, "<hostnames>");
    assert_eq!(c.transport.ports, vec![5223, 443]);
    assert!(!c.transport.log_tls_errors);
    assert_eq!(c.transport.websockets, Websockets::Off);
    assert!(c.transport.accept_service_credentials);
    assert!(c.auth.new_queues);
    assert_eq!(c.auth.create_password, None);
    assert_eq!(c.auth.daily_block_queue_quota, 20);
    assert!(!c.store_log.enable);
    assert_eq!(c.store_log.restore_messages, None);
    assert!(!c.store_log.restore_messages_enabled());
    assert_eq!(c.store_log.expire_messages_days, Some(21));
    assert_eq!(c.store_log.message_ttl_secs(), Some(21 * 86400));
    assert!(c.store_log.expire_messages_on_start);
    assert!(c.store_log.expire_messages_on_send);
    assert_eq!(c.store_log.expire_ntfs_hours, 24);
    assert_eq!(c.store_log.store_queues, QueueStoreType::Memory);
    assert_eq!(c.store_log.store_messages, MessageStoreType::Memory);
    assert_eq!(
        c.store_log.db_connection,
        "postgresql://smp@/smp_server_store"
    );
    assert_eq!(c.store_log.db_schema, "smp_server");
    assert_eq!(c.store_log.db_pool_size, 10);
    assert_eq!(c.store_log.prometheus_interval, None);
    assert_eq!(c.inactive_clients, None);
    assert_eq!(c.proxy.client_concurrency, 32);
    assert_eq!(c.proxy.socks_proxy, None);
    assert_eq!(c.proxy.socks_mode, SocksMode::Onion);
    assert_eq!(c.proxy.host_mode, HostMode::Public);
    assert_eq!(c.web, Web::default());
    assert_eq!(c.information, Information::default());
    assert!(c.unknown_keys.is_empty());
}

#[test]
fn restore_messages_follows_enable() {
    let c = parse("[STORE_LOG]\nenable = on\n").expect("valid");
    assert!(c.store_log.restore_messages_enabled());
    let c = parse("[STORE_LOG]\nenable = on\nrestore_messages = off\n").expect("valid");
    assert!(!c.store_log.restore_messages_enabled());
}

#[test]
fn generated_ini_parses_back() {
    let t = IniTemplate {
        paths: paths(),
        enable_store_log: true,
        log_stats: true,
        host: "smp.example.com".into(),
        create_password: Some("test".into()),
        control_port: Some(5224),
        control_port_passwords: Some(("adminpw".into(), "userpw".into())),
        socks_proxy: Some("127.0.0.1:9050".into()),
        own_domains: vec!["example.com".into(), "example.org".into()],
        source_code: Some("https://src.example/smp".into()),
        server_country: Some("DE".into()),
        operator: Some(Entity {
            name: "Op".into(),
            country: Some("FR".into()),
        }),
        website: Some("https://example.com".into()),
        hosting: Some(Entity {
            name: "Host Co".into(),
            country: None,
        }),
        hosting_type: Some(HostingType::Dedicated),
        ..IniTemplate::default()
    };
    let text = render_ini(&t);
    let c = parse(&text).expect("generated ini is valid");
    assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
    assert_eq!(c.transport.host, "smp.example.com");
    assert_eq!(c.transport.ports, vec![5223, 443]);
    assert_eq!(c.transport.control_port, Some(5224));
    assert_eq!(c.auth.create_password.as_deref(), Some("test"));
    assert_eq!(
        c.auth.control_port_admin_password.as_deref(),
        Some("adminpw")
    );
    assert_eq!(c.auth.control_port_user_password.as_deref(), Some("userpw"));
    assert!(c.store_log.enable);
    assert_eq!(c.store_log.restore_messages, Some(true));
    assert!(c.store_log.log_stats);
    assert!(c.store_log.expire_messages_on_start);
    assert!(!c.store_log.expire_messages_on_send);
    assert_eq!(
        c.inactive_clients,
        Some(InactiveClients {
            ttl_secs: 21600,
            check_interval_secs: 3600
        })
    );
    assert_eq!(
        c.proxy.socks_proxy,
        Some("127.0.0.1:9050".parse().expect("addr"))
    );
    assert_eq!(
        c.proxy.own_server_domains,
        vec!["example.com", "example.org"]
    );
    assert_eq!(
        c.information.source_code.as_deref(),
        Some("https://src.example/smp")
    );
    assert_eq!(c.information.server_country.as_deref(), Some("DE"));
    assert_eq!(
        c.information.operator,
        Some(Entity {
            name: "Op".into(),
            country: Some("FR".into())
        })
    );
    assert_eq!(c.information.hosting_type, Some(HostingType::Dedicated));
    assert_eq!(
        c.web.static_path.as_deref(),
        Some(std::path::Path::new("/log/www"))
    );
    assert_eq!(c.web.https, Some(443));
    assert_eq!(
        c.web.cert.as_deref(),
        Some(std::path::Path::new("/cfg/web.crt"))
    );
}

#[test]
fn minimal_generated_ini_comments_out_options() {
    let t = IniTemplate {
        paths: paths(),
        enable_store_log: false,
        disable_web: true,
        ..IniTemplate::default()
    };
    let text = render_ini(&t);
    for line in [
        "# create_password = ",
        "# control_port = 5224",
        "# socks_proxy = 127.0.0.1:9050",
        "# source_code = URI",
        "# https = 443",
        "# db_connection = postgresql://smp@/smp_server_store",
        "hosting_type = virtual",
        "enable = off",
        "restore_messages = off",
        "port = 5223,443",
        "host = <hostnames>",
        "expire_messages_days = 21",
        "expire_ntfs_hours = 24",
    ] {
        assert!(text.contains(line), "missing {line:?}");
    }
    let c = parse(&text).expect("valid");
    assert_eq!(c.auth.create_password, None);
    assert_eq!(c.transport.control_port, None);
    assert_eq!(c.web.https, None);
    assert_eq!(c.information.source_code, None);
    assert_eq!(c.information.hosting_type, Some(HostingType::Virtual));
}

/// The example from the operators' guide, in `key: value` form.
const GUIDE_EXAMPLE: &str = "[INFORMATION]
source_code: https://github.com/simplex-chat/simplexmq

# usage_conditions: https://github.com/simplex-chat/simplex-chat/blob/stable/PRIVACY.md
# condition_amendments: link
# server_country: ISO-3166 2-letter code
# website:

[STORE_LOG]
enable: on
restore_messages: on
expire_messages_days: 21
expire_ntfs_hours: 24
log_stats: on

[AUTH]
new_queues: on
# create_password: password to create new queues (any printable ASCII characters without whitespace, '@', ':' and '/')

# control_port_admin_password:
# control_port_user_password:

[TRANSPORT]
host: <domain/ip>
port: 5223,443
log_tls_errors: off
websockets: off
# control_port: 5224

[PROXY]
# own_server_domains: 
# socks_proxy: localhost:9050
# client_concurrency: 32

[INACTIVE_CLIENTS]
disconnect: off
# ttl: 21600
# check_interval: 3600

[WEB]
static_path: /var/opt/simplex/www
#http: 8000
https: 443
cert: /etc/opt/simplex/web.crt
key: /etc/opt/simplex/web.key
";

#[test]
fn colon_form_from_the_guide() {
    let c = parse(GUIDE_EXAMPLE).expect("guide example is valid");
    assert_eq!(
        c.information.source_code.as_deref(),
        Some("https://github.com/simplex-chat/simplexmq")
    );
    assert!(c.store_log.enable);
    assert!(c.store_log.log_stats);
    assert_eq!(c.transport.host, "<domain/ip>");
    assert_eq!(c.transport.ports, vec![5223, 443]);
    assert_eq!(c.inactive_clients, None);
    assert_eq!(c.web.https, Some(443));
    assert_eq!(
        c.web.key.as_deref(),
        Some(std::path::Path::new("/etc/opt/simplex/web.key"))
    );
    assert_eq!(c.web.http, None);
}

#[test]
fn control_port_section_from_the_guide() {
    let c = parse(
        "[AUTH]\ncontrol_port_admin_password: abc123\ncontrol_port_user_password: def456\n\n[TRANSPORT]\ncontrol_port: 5224\n[PROXY]\nsocks_proxy: 127.0.0.1:9050\nown_server_domains: example.com example.net\n",
    )
    .expect("valid");
    assert_eq!(c.transport.control_port, Some(5224));
    assert_eq!(
        c.auth.control_port_admin_password.as_deref(),
        Some("abc123")
    );
    assert_eq!(
        c.proxy.own_server_domains,
        vec!["example.com", "example.net"]
    );
}

fn err(text: &str) -> String {
    parse(text).expect_err("must fail").to_string()
}

#[test]
fn errors_name_section_key_value_and_fix() {
    assert_eq!(
        err("[TRANSPORT]\nport = abc\n"),
        "[TRANSPORT] port: 'abc' is not a port number; use e.g. port = 5223,443"
    );
    assert_eq!(
        err("[STORE_LOG]\nenable = yes\n"),
        "[STORE_LOG] enable: 'yes' is not a switch value; use enable = on or enable = off"
    );
    let e = err("[STORE_LOG]\nexpire_messages_days = soon\n");
    assert!(
        e.starts_with("[STORE_LOG] expire_messages_days: 'soon'"),
        "{e}"
    );
    let e = err("[INFORMATION]\nserver_country = Germany\n");
    assert!(
        e.starts_with("[INFORMATION] server_country: 'Germany'"),
        "{e}"
    );
    let e = err("[STORE_LOG]\nstore_messages = disk\n");
    assert!(
        e.contains("store_messages = memory, journal or database"),
        "{e}"
    );
    let e = err("[STORE_LOG]\nstore_queues = database\nstore_messages = memory\n");
    assert!(e.contains("cannot be combined"), "{e}");
    let e = err("[TRANSPORT]\nport = 5223,5223\n");
    assert!(e.contains("twice"), "{e}");
    let e = err("[PROXY]\nsocks_proxy = tor.example:9050\n");
    assert!(e.starts_with("[PROXY] socks_proxy:"), "{e}");
}

#[test]
fn password_errors_hide_the_value() {
    let e = err("[AUTH]\ncreate_password = my secret\n");
    assert!(e.starts_with("[AUTH] create_password: '<hidden>'"), "{e}");
    assert!(!e.contains("my secret"));
}

#[test]
fn syntax_error_names_line() {
    let e = err("[AUTH]\nnew_queues = on\nbroken line\n");
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn unknown_keys_are_warnings() {
    let c = parse("[TRANSPORT]\nfuture_key = 1\n[FUTURE]\nx = y\n").expect("valid");
    assert_eq!(c.unknown_keys, vec!["[TRANSPORT] future_key", "[FUTURE]"]);
    assert_eq!(c.warnings().len(), 2);
}

#[test]
fn debug_redacts_secrets() {
    let c = parse(
        "[AUTH]\ncreate_password = s3cret1\ncontrol_port_admin_password = s3cret2\ncontrol_port_user_password = s3cret3\n[STORE_LOG]\ndb_connection = postgresql://u:s3cret4@db/x\n",
    )
    .expect("valid");
    let dbg = format!("{c:?}");
    for s in ["s3cret1", "s3cret2", "s3cret3", "s3cret4"] {
        assert!(!dbg.contains(s), "{s} leaked");
    }
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn inactive_clients_and_websockets() {
    let c = parse(
        "[INACTIVE_CLIENTS]\ndisconnect = on\nttl = 60\ncheck_interval = 10\n[TRANSPORT]\nport = 5223,443\nwebsockets = 443,80\n",
    )
    .expect("valid");
    assert_eq!(
        c.inactive_clients,
        Some(InactiveClients {
            ttl_secs: 60,
            check_interval_secs: 10
        })
    );
    assert_eq!(c.transport.websockets, Websockets::Ports(vec![80]));
    let c = parse("[TRANSPORT]\nwebsockets = on\n").expect("valid");
    assert_eq!(c.transport.websockets, Websockets::Ports(vec![80]));
}

#[test]
fn start_address_uses_config() {
    let c =
        parse("[TRANSPORT]\nhost = a.example,b.onion\nport = 5223\n[AUTH]\ncreate_password = pw\n")
            .expect("valid");
    assert_eq!(
        c.server_address("FP=").to_string(),
        "smp://FP=:pw@a.example,b.onion"
    );
}
