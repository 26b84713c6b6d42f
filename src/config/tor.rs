//! `[TOR]`: the embedded Tor (Arti) onion service and `.onion` egress.

use std::path::PathBuf;

use super::model::{Transport, Web};
use super::paths::Paths;
use super::read::Reader;
use super::ConfigError;

const TOR: &str = "TOR";

/// Keys of `[TOR]`.
pub(crate) const TOR_KEYS: &[&str] = &[
    "enable",
    "ports",
    "state_dir",
    "onion_only",
    "egress",
    "arti_config",
];

/// How connections to `.onion` destinations leave this server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TorEgress {
    /// Through the embedded Arti client (default).
    #[default]
    Arti,
    /// Through `[PROXY] socks_proxy`, as the reference does.
    Socks,
}

impl TorEgress {
    /// The INI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TorEgress::Arti => "arti",
            TorEgress::Socks => "socks",
        }
    }
}

/// `[TOR]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tor {
    /// `enable`: run the embedded Tor client and the onion service (default off).
    pub enable: bool,
    /// `ports`: virtual ports the onion service serves; `None` = the SMP ports and the web
    /// ports (see [`Tor::onion_ports`]).
    pub ports: Option<Vec<u16>>,
    /// `state_dir`: Arti's state, cache and onion keys; `None` = `<log dir>/tor`.
    pub state_dir: Option<PathBuf>,
    /// `onion_only`: open no public listener at all; the relay is reachable only as .onion.
    pub onion_only: bool,
    /// `egress`: how `.onion` destinations are reached (default `arti`).
    pub egress: TorEgress,
    /// `arti_config`: an Arti TOML file merged over the built-in Arti configuration.
    pub arti_config: Option<PathBuf>,
}

impl Tor {
    /// Where Arti keeps its files.
    pub fn state_dir(&self, paths: &Paths) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| paths.log_dir().join("tor"))
    }

    /// The virtual ports of the onion service: `ports` if given, else the SMP ports followed
    /// by the web ports (`[WEB] http`, and `https` when not already an SMP port).
    pub fn onion_ports(&self, transport: &Transport, web: &Web) -> Vec<u16> {
        if let Some(p) = &self.ports {
            return p.clone();
        }
        let mut out = transport.ports.clone();
        for p in [web.http, web.https].into_iter().flatten() {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Whether public listeners must stay closed.
    pub fn onion_only_active(&self) -> bool {
        self.enable && self.onion_only
    }
}

/// The file (in the log directory) holding the onion address, for scripts.
pub fn onion_address_file(paths: &Paths) -> PathBuf {
    paths.log_dir().join("onion-address")
}

pub(crate) fn tor(r: &Reader<'_>) -> Result<Tor, ConfigError> {
    let ports = match r.raw(TOR, "ports") {
        None => None,
        Some(v) => Some(r.port_list(TOR, "ports", v)?),
    };
    let egress = match r.raw(TOR, "egress") {
        None | Some("arti") => TorEgress::Arti,
        Some("socks") => TorEgress::Socks,
        Some(v) => {
            return Err(r.invalid(
                TOR,
                "egress",
                v,
                "is not a Tor egress",
                "use egress = arti (embedded Tor) or egress = socks ([PROXY] socks_proxy)",
            ))
        }
    };
    Ok(Tor {
        enable: r.on_off_or(TOR, "enable", false)?,
        ports,
        state_dir: r.text(TOR, "state_dir").map(PathBuf::from),
        onion_only: r.on_off_or(TOR, "onion_only", false)?,
        egress,
        arti_config: r.text(TOR, "arti_config").map(PathBuf::from),
    })
}

/// Cross-key rules of `[TOR]`.
pub(crate) fn validate(t: &Tor, proxy_socks: bool) -> Result<(), ConfigError> {
    if t.onion_only && !t.enable {
        return Err(ConfigError::Inconsistent {
            problem: "[TOR] onion_only = on needs enable = on (the relay would be unreachable)"
                .into(),
            fix: "set enable = on in [TOR], or onion_only = off".into(),
        });
    }
    if t.enable && t.egress == TorEgress::Socks && !proxy_socks {
        return Err(ConfigError::Inconsistent {
            problem: "[TOR] egress = socks but [PROXY] socks_proxy is not set".into(),
            fix: "set socks_proxy = 127.0.0.1:9050 in [PROXY], or use egress = arti".into(),
        });
    }
    if matches!(&t.ports, Some(p) if p.is_empty()) {
        return Err(ConfigError::Inconsistent {
            problem: "[TOR] ports lists no ports".into(),
            fix: "use e.g. ports = 5223,443 or remove the key for the default".into(),
        });
    }
    Ok(())
}

/// The `[TOR]` section `init` writes.
pub(crate) fn template(out: &mut String, enable: bool) {
    use std::fmt::Write as _;
    let on = if enable { "on" } else { "off" };
    out.push_str(
        "\n[TOR]\n\
         # Embedded Tor (no system tor daemon): publishes this relay as an onion service and\n\
         # reaches .onion relays when forwarding. The onion address is printed at start after\n\
         # the public hosts and written to <log dir>/onion-address.\n",
    );
    let _ = writeln!(out, "enable = {on}\n");
    out.push_str(
        "# Virtual ports of the onion service (default: the SMP ports and the web ports).\n\
         # ports = 5223,443\n\n\
         # Arti's state, cache and onion keys (default: <log dir>/tor). Back it up: losing it\n\
         # changes the onion address.\n\
         # state_dir = /var/opt/simplex/tor\n\n\
         # onion_only = on opens no public port at all: a private relay reachable only as .onion.\n\
         # onion_only = off\n\n\
         # How .onion destinations are reached: arti (embedded Tor) or socks ([PROXY] socks_proxy).\n\
         # egress = arti\n\n\
         # An Arti TOML file merged over the built-in settings (bridges, tuning, test networks).\n\
         # arti_config = /etc/opt/simplex/arti.toml\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{render_ini, Config, IniTemplate};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Paths::new("/c", "/l"))
    }

    #[test]
    fn defaults_when_absent() {
        let c = parse("").expect("valid");
        assert_eq!(c.tor, Tor::default());
        assert!(!c.tor.enable);
        assert_eq!(c.tor.egress, TorEgress::Arti);
        assert_eq!(c.tor.state_dir(&c.paths), PathBuf::from("/l/tor"));
        assert_eq!(
            onion_address_file(&c.paths),
            PathBuf::from("/l/onion-address")
        );
    }

    #[test]
    fn all_keys() {
        let c = parse(
            "[PROXY]\nsocks_proxy = 127.0.0.1:9050\n[TOR]\nenable = on\nports = 5223,80\nstate_dir = /s/tor\nonion_only = on\negress = socks\narti_config = /c/arti.toml\n",
        )
        .expect("valid");
        assert!(c.tor.enable && c.tor.onion_only && c.tor.onion_only_active());
        assert_eq!(c.tor.ports, Some(vec![5223, 80]));
        assert_eq!(c.tor.state_dir(&c.paths), PathBuf::from("/s/tor"));
        assert_eq!(c.tor.egress, TorEgress::Socks);
        assert_eq!(c.tor.arti_config, Some(PathBuf::from("/c/arti.toml")));
        assert_eq!(c.tor.onion_ports(&c.transport, &c.web), vec![5223, 80]);
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
    }

    #[test]
    fn default_ports_are_smp_then_web() {
        let c = parse(
            "[TRANSPORT]\nport = 5223,443\n[WEB]\nhttp = 8000\nhttps = 443\n[TOR]\nenable = on\n",
        )
        .expect("valid");
        assert_eq!(
            c.tor.onion_ports(&c.transport, &c.web),
            vec![5223, 443, 8000]
        );
    }

    #[test]
    fn bad_values_name_the_key_and_fix() {
        let e = parse("[TOR]\negress = tor\n").expect_err("bad egress");
        assert!(e.to_string().contains("[TOR] egress"), "{e}");
        assert!(e.to_string().contains("egress = arti"), "{e}");
        let e = parse("[TOR]\nenable = yes\n").expect_err("bad switch");
        assert!(e.to_string().contains("enable = on"), "{e}");
        let e = parse("[TOR]\nports = 5223,x\n").expect_err("bad port");
        assert!(e.to_string().contains("[TOR] ports"), "{e}");
        let e = parse("[TOR]\nonion_only = on\n").expect_err("onion_only without enable");
        assert!(e.to_string().contains("enable = on"), "{e}");
        let e = parse("[TOR]\nenable = on\negress = socks\n").expect_err("socks without proxy");
        assert!(e.to_string().contains("socks_proxy"), "{e}");
    }

    #[test]
    fn template_round_trips() {
        for enable in [false, true] {
            let t = IniTemplate {
                enable_tor: enable,
                ..IniTemplate::default()
            };
            let text = render_ini(&t);
            assert!(text.contains("[TOR]"));
            let c = parse(&text).expect("template parses");
            assert_eq!(c.tor.enable, enable);
            assert!(!c.tor.onion_only);
            assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        }
    }

    #[test]
    fn address_lists_onion_after_public_hosts() {
        let onion = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";
        let c = parse("[TRANSPORT]\nhost = smp.example.com\nport = 5223\n[TOR]\nenable = on\n")
            .expect("valid");
        assert_eq!(
            c.server_address_with_onion("FP", Some(onion)).to_string(),
            format!("smp://FP@smp.example.com,{onion}")
        );
        assert_eq!(
            c.server_address_with_onion("FP", None).to_string(),
            "smp://FP@smp.example.com"
        );
        let c = parse("[TRANSPORT]\nhost = smp.example.com\nport = 5223\n[TOR]\nenable = on\nonion_only = on\n")
            .expect("valid");
        assert_eq!(
            c.server_address_with_onion("FP", Some(onion)).to_string(),
            format!("smp://FP@{onion}")
        );
    }
}
