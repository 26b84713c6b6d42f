//! Arti's client configuration: our base (state under one directory, memory quota) with the
//! operator's optional Arti TOML file merged on top.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arti_client::TorClientConfig;
use tor_config::{ConfigurationSource, ConfigurationSources};

use crate::OnionError;

/// Memory Arti may use for queued data before it starts closing the largest queues.
///
/// One GiB bounds a relay under a flood of onion clients without starving a normal load
/// (each SMP client keeps at most a few 16 KB blocks in flight).
pub const DEFAULT_MEMORY_MAX: u64 = 1 << 30;

/// Where embedded Tor keeps its files and how it is tuned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorSettings {
    /// Root of everything Arti writes: `state/` (keys, guards, onion-service state) and
    /// `cache/` (directory documents). Created 0700; keep it to keep the onion address.
    pub state_dir: PathBuf,
    /// An Arti TOML file merged over our configuration: private test networks, bridges,
    /// tuning. Its values win over ours.
    pub arti_config: Option<PathBuf>,
    /// Arti's memory quota in bytes (`system.memory.max`).
    pub memory_max: u64,
}

impl TorSettings {
    /// Settings with defaults for everything but the state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        TorSettings {
            state_dir: state_dir.into(),
            arti_config: None,
            memory_max: DEFAULT_MEMORY_MAX,
        }
    }

    /// Arti's persistent state, including the onion service's identity keys.
    pub fn arti_state_dir(&self) -> PathBuf {
        self.state_dir.join("state")
    }

    /// Arti's directory cache (safe to delete).
    pub fn arti_cache_dir(&self) -> PathBuf {
        self.state_dir.join("cache")
    }

    /// The base configuration as Arti TOML.
    fn base_toml(&self) -> Result<String, OnionError> {
        let mut s = String::from("[storage]\n");
        let _ = writeln!(s, "state_dir = {}", toml_path(&self.arti_state_dir())?);
        let _ = writeln!(s, "cache_dir = {}", toml_path(&self.arti_cache_dir())?);
        let _ = writeln!(s, "\n[system]\nmemory.max = {}", self.memory_max);
        Ok(s)
    }

    /// Resolve the full client configuration. Keys Arti does not know are logged, not fatal,
    /// so a file written for a newer Arti still loads.
    pub(crate) fn client_config(&self) -> Result<TorClientConfig, OnionError> {
        let mut sources = ConfigurationSources::new_empty();
        sources.push_source(
            ConfigurationSource::from_verbatim(self.base_toml()?),
            tor_config::sources::MustRead::MustRead,
        );
        if let Some(extra) = &self.arti_config {
            if !extra.is_file() {
                return Err(OnionError::Config(format!(
                    "arti_config file {} does not exist; fix the path in [TOR] arti_config or remove the key",
                    extra.display()
                )));
            }
            sources.push_source(
                ConfigurationSource::from_path(extra.clone()),
                tor_config::sources::MustRead::MustRead,
            );
        }
        let tree = sources
            .load()
            .map_err(|e| OnionError::Config(e.to_string()))?;
        let res = tor_config::resolve_return_results::<TorClientConfig>(
            &tree,
            &tor_config::load::ConfigResolveOptions::default(),
        )
        .map_err(|e| OnionError::Config(e.to_string()))?;
        for key in &res.unrecognized {
            tracing::warn!("Tor: unknown Arti configuration key {key} is ignored");
        }
        Ok(res.value)
    }
}

/// A path as a TOML basic string.
fn toml_path(p: &Path) -> Result<String, OnionError> {
    let s = p.to_str().ok_or_else(|| {
        OnionError::Config(format!(
            "state directory {} is not valid UTF-8; choose another [TOR] state_dir",
            p.display()
        ))
    })?;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the memory quota's maximum shows in the configuration's debug output.
    fn memory_debug(bytes: u64) -> String {
        format!("max: ByteQty({bytes})")
    }

    #[test]
    fn base_config_resolves_with_our_dirs() {
        let s = TorSettings::new("/var/opt/simplex/tor");
        let c = s.client_config().expect("resolves");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("/var/opt/simplex/tor/state"), "{dbg}");
        assert!(dbg.contains("/var/opt/simplex/tor/cache"), "{dbg}");
        assert!(dbg.contains(&memory_debug(DEFAULT_MEMORY_MAX)), "{dbg}");
    }

    #[test]
    fn operator_file_is_merged_over_ours() {
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("arti.toml");
        std::fs::write(
            &f,
            "[system]\nmemory.max = 268435456\n[address_filter]\nallow_local_addrs = true\n",
        )
        .expect("write");
        let mut s = TorSettings::new(t.path().join("tor"));
        s.arti_config = Some(f);
        let c = s.client_config().expect("resolves");
        let dbg = format!("{c:?}");
        assert!(dbg.contains(&memory_debug(268435456)), "{dbg}");
        assert!(!dbg.contains(&memory_debug(DEFAULT_MEMORY_MAX)), "{dbg}");
    }

    #[test]
    fn missing_or_bad_operator_file_is_a_clear_error() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut s = TorSettings::new(t.path().join("tor"));
        s.arti_config = Some(t.path().join("nope.toml"));
        let e = s.client_config().expect_err("missing file");
        assert!(e.to_string().contains("nope.toml"), "{e}");
        let f = t.path().join("bad.toml");
        std::fs::write(&f, "[storage\n").expect("write");
        s.arti_config = Some(f);
        assert!(s.client_config().is_err());
    }

    #[test]
    fn paths_are_escaped() {
        assert_eq!(
            toml_path(Path::new("/a \"b\"\\c")).expect("utf8"),
            "\"/a \\\"b\\\"\\\\c\""
        );
    }
}
