//! `[UPDATE]`: signed self-update from GitHub releases (our own section; the reference has none).
//!
//! ```ini
//! [UPDATE]
//! mode = check               # off | check | auto
//! check_interval = 86400     # seconds between checks
//! window = 03:00-05:00       # UTC hours in which `auto` installs
//! repository = owner/name    # where releases are published
//! api_url = https://api.github.com
//! verifying_keys = BASE64KEY # extra ed25519 keys (mirrors that re-sign)
//! ```

use std::fmt::Write as _;

use super::read::Reader;
use super::ConfigError;

const SECTION: &str = "UPDATE";

/// Keys of `[UPDATE]`.
pub(crate) const KEYS: &[&str] = &[
    "mode",
    "check_interval",
    "window",
    "repository",
    "api_url",
    "verifying_keys",
];

/// The GitHub API, used unless `api_url` names a mirror.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Default seconds between checks (one day).
pub const DEFAULT_CHECK_INTERVAL_SECS: u64 = 86400;

/// Repository used when `repository` is absent: set by whoever builds the release
/// (`SMP_UPDATE_REPOSITORY` at build time); none in a plain source build.
pub const BUILD_REPOSITORY: Option<&str> = option_env!("SMP_UPDATE_REPOSITORY");

/// `mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateMode {
    /// Never look for updates (default; `smp-server self-update` still works by hand).
    #[default]
    Off,
    /// Log when a newer signed release exists.
    Check,
    /// Install it during the configured window, then restart.
    Auto,
}

/// UTC minutes-of-day `[start, end)`; wraps past midnight when `end < start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateWindow {
    /// Start, minutes after 00:00 UTC.
    pub start_min: u16,
    /// End, minutes after 00:00 UTC.
    pub end_min: u16,
}

impl Default for UpdateWindow {
    fn default() -> Self {
        UpdateWindow {
            start_min: 3 * 60,
            end_min: 5 * 60,
        }
    }
}

impl UpdateWindow {
    /// Whether `minute` (after 00:00 UTC) lies in the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_min <= self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }

    fn parse(s: &str) -> Option<UpdateWindow> {
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            // `then`, not `then_some`: the sum must not be computed for an out-of-range hour
            // (9999:00 overflows u16; found by the `ini` fuzz target).
            (h < 24 && m < 60).then(|| h * 60 + m)
        };
        let (a, b) = s.split_once('-')?;
        let w = UpdateWindow {
            start_min: hm(a)?,
            end_min: hm(b)?,
        };
        (w.start_min != w.end_min).then_some(w)
    }
}

impl std::fmt::Display for UpdateWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.start_min, self.end_min);
        write!(f, "{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
    }
}

/// `[UPDATE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// `mode`.
    pub mode: UpdateMode,
    /// `check_interval`, seconds.
    pub check_interval_secs: u64,
    /// `window` (used by `auto`).
    pub window: UpdateWindow,
    /// `repository` as `owner/name`; `None` = not configured.
    pub repository: Option<String>,
    /// `api_url`.
    pub api_url: String,
    /// `verifying_keys`: base64 ed25519 keys trusted in addition to the compiled-in ones.
    pub verifying_keys: Vec<String>,
}

impl Default for Update {
    fn default() -> Self {
        Update {
            mode: UpdateMode::Off,
            check_interval_secs: DEFAULT_CHECK_INTERVAL_SECS,
            window: UpdateWindow::default(),
            repository: BUILD_REPOSITORY.map(str::to_string),
            api_url: DEFAULT_API_URL.to_string(),
            verifying_keys: Vec::new(),
        }
    }
}

/// Read `[UPDATE]`.
pub(crate) fn read(r: &Reader<'_>) -> Result<Update, ConfigError> {
    let d = Update::default();
    let mode = match r.raw(SECTION, "mode") {
        None | Some("off") => UpdateMode::Off,
        Some("check") => UpdateMode::Check,
        Some("auto") => UpdateMode::Auto,
        Some(v) => {
            return Err(r.invalid(
                SECTION,
                "mode",
                v,
                "is not an update mode",
                "use mode = off, mode = check or mode = auto",
            ))
        }
    };
    let check_interval_secs = match r.number::<u64>(SECTION, "check_interval", "86400")? {
        None => d.check_interval_secs,
        Some(n) if n >= 60 => n,
        Some(n) => {
            return Err(r.invalid(
                SECTION,
                "check_interval",
                &n.to_string(),
                "is less than a minute",
                "use e.g. check_interval = 86400",
            ))
        }
    };
    let window = match r.raw(SECTION, "window") {
        None => d.window,
        Some(v) => UpdateWindow::parse(v).ok_or_else(|| {
            r.invalid(
                SECTION,
                "window",
                v,
                "is not a UTC time range",
                "use e.g. window = 03:00-05:00",
            )
        })?,
    };
    let repository = match r.text(SECTION, "repository") {
        None => d.repository,
        Some(v) => {
            let ok = matches!(v.split_once('/'), Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/'));
            if !ok {
                return Err(r.invalid(
                    SECTION,
                    "repository",
                    &v,
                    "is not owner/name",
                    "use e.g. repository = example/smp-server",
                ));
            }
            Some(v)
        }
    };
    let api_url = match r.text(SECTION, "api_url") {
        None => d.api_url,
        Some(v) if v.starts_with("https://") || v.starts_with("http://") => v,
        Some(v) => {
            return Err(r.invalid(
                SECTION,
                "api_url",
                &v,
                "is not an http(s) URL",
                format!("use e.g. api_url = {DEFAULT_API_URL}"),
            ))
        }
    };
    let verifying_keys = r
        .text(SECTION, "verifying_keys")
        .map(|v| {
            v.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if mode != UpdateMode::Off && repository.is_none() {
        return Err(ConfigError::Inconsistent {
            problem: "[UPDATE] mode is check or auto but no repository is set".into(),
            fix: "set repository = owner/name of the releases you trust, or mode = off".into(),
        });
    }
    Ok(Update {
        mode,
        check_interval_secs,
        window,
        repository,
        api_url,
        verifying_keys,
    })
}

/// The `[UPDATE]` section `init` writes (everything commented out: updates are opt-in).
pub(crate) fn template(out: &mut String) {
    out.push_str(
        "\n[UPDATE]\n\
         # Signed self-update from GitHub releases (see docs/updates.md).\n\
         # off: never check; check: log when a newer signed release exists;\n\
         # auto: install it during `window` (UTC) and restart.\n\
         # mode = off\n",
    );
    let _ = writeln!(out, "# check_interval = {DEFAULT_CHECK_INTERVAL_SECS}");
    let _ = writeln!(out, "# window = {}", UpdateWindow::default());
    let _ = writeln!(
        out,
        "# Where releases are published (owner/name) and the API serving them (a mirror may be used)."
    );
    match BUILD_REPOSITORY {
        Some(repo) => {
            let _ = writeln!(out, "# repository = {repo}");
        }
        None => out.push_str("# repository = owner/name\n"),
    }
    let _ = writeln!(out, "# api_url = {DEFAULT_API_URL}");
    out.push_str(
        "# Extra ed25519 release keys (base64), for mirrors that re-sign releases. Releases must\n\
         # always be signed by a key built into the binary or listed here.\n\
         # verifying_keys =\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Paths};

    #[test]
    fn window_rejects_out_of_range_times_without_overflow() {
        for bad in [
            "9999:00-05:00",
            "03:00-65535:59",
            "24:00-05:00",
            "03:60-05:00",
            "03:00-03:00",
        ] {
            assert!(UpdateWindow::parse(bad).is_none(), "{bad}");
        }
        let w = UpdateWindow::parse("23:30-01:15").expect("wraps midnight");
        assert!(w.contains(23 * 60 + 45) && w.contains(60) && !w.contains(12 * 60));
    }

    fn parse(s: &str) -> Result<Update, ConfigError> {
        Config::parse(s, Paths::new("/c", "/l")).map(|c| c.update)
    }

    #[test]
    fn defaults_and_values() {
        let u = parse("").expect("valid");
        assert_eq!(u.mode, UpdateMode::Off);
        assert_eq!(u.api_url, DEFAULT_API_URL);
        let u = parse("[UPDATE]\nmode = auto\nrepository = a/b\nwindow = 23:30-01:00\ncheck_interval = 600\napi_url = http://127.0.0.1:1/api\nverifying_keys = k1, k2\n").expect("valid");
        assert_eq!(u.mode, UpdateMode::Auto);
        assert_eq!(u.check_interval_secs, 600);
        assert!(u.window.contains(0) && u.window.contains(23 * 60 + 30) && !u.window.contains(60));
        assert_eq!(u.verifying_keys, vec!["k1", "k2"]);
        assert_eq!(u.window.to_string(), "23:30-01:00");
    }

    #[test]
    fn bad_values_name_key_and_fix() {
        for (ini, key) in [
            ("[UPDATE]\nmode = yes\n", "mode"),
            ("[UPDATE]\nwindow = 3-5\n", "window"),
            ("[UPDATE]\nrepository = nope\n", "repository"),
            ("[UPDATE]\napi_url = ftp://x\n", "api_url"),
            ("[UPDATE]\ncheck_interval = 5\n", "check_interval"),
        ] {
            let e = parse(ini).expect_err(ini).to_string();
            assert!(e.contains(&format!("[UPDATE] {key}")), "{e}");
        }
        if BUILD_REPOSITORY.is_none() {
            let e = parse("[UPDATE]\nmode = check\n").expect_err("needs repository");
            assert!(e.to_string().contains("repository"));
        }
    }

    #[test]
    fn template_parses_and_is_documented() {
        let mut s = String::new();
        template(&mut s);
        assert!(s.contains("[UPDATE]") && s.contains("verifying_keys"));
        assert_eq!(parse(&s).expect("valid"), Update::default());
    }
}
