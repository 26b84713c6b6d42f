//! "Require a tool or skip with a reason": one rule for every suite that needs something
//! outside Rust (Python packages, pebble, chromium, zipsign, systemd-analyze, tor, root).
//!
//! Plain `cargo test --workspace` on a machine without those tools passes, and every test that
//! could not run says so on the terminal as `skipped: <suite>: <why> (<how to install>)`.
//! The line is written to the process's real stderr, not through `eprintln!`, because libtest
//! captures the latter for passing tests and a skip must never look like a silent pass.
//! `scripts/test.sh` (and so CI) sets `SMP_TEST_REQUIRE_ALL=1`: there a missing tool fails the
//! test instead, so a broken setup cannot hide behind skips.
//!
//! Only std is used, so suites that do not need the rest of `tests/common` can include this file
//! alone with `#[path = "common/require.rs"] mod require;`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The switch that turns a skip into a failure.
pub const REQUIRE_ALL: &str = "SMP_TEST_REQUIRE_ALL";

/// How to get each tool; the installer scripts are idempotent and run as root.
fn install_hint(tool: &str) -> &'static str {
    match tool {
        "pebble" | "pebble-challtestsrv" | "chromium" | "curl" => {
            "run scripts/test.sh --install (or .ci/setup-acme.sh) as root"
        }
        "zipsign" | "systemd-analyze" => {
            "run scripts/test.sh --install (or .ci/setup-dist.sh) as root"
        }
        "tor" | "tor-gencert" => "run scripts/test.sh --install (or .ci/setup-tor.sh) as root",
        "podman" | "runc" => "run scripts/test.sh --install (or .ci/setup-container.sh) as root",
        _ => "run scripts/test.sh --install as root, or apt-get install it",
    }
}

/// Report a skip once per suite process and reason; returns `false` so callers can
/// `if !require::...(..) { return; }`. Panics instead under `SMP_TEST_REQUIRE_ALL=1`.
pub fn skip(suite: &str, why: &str) -> bool {
    if std::env::var(REQUIRE_ALL).as_deref() == Ok("1") {
        panic!("{suite}: {why} ({REQUIRE_ALL}=1 forbids skipping)");
    }
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let line = format!("skipped: {suite}: {why}");
    let first = SAID
        .lock()
        .map(|mut s| s.insert(line.clone()))
        .unwrap_or(true);
    if first {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    false
}

/// Whether `tool` is an executable on PATH.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(tool);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Every tool in `tools` is on PATH, or the test is skipped naming the first missing one.
pub fn tools(suite: &str, tools: &[&str]) -> bool {
    match tools.iter().find(|t| !on_path(t)) {
        None => true,
        Some(t) => skip(
            suite,
            &format!("`{t}` not found on PATH; {}", install_hint(t)),
        ),
    }
}

/// Running as root (tmpfs mounts, switching users), or skipped.
pub fn root(suite: &str) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    uid == "0"
        || skip(
            suite,
            "needs root (mounts tmpfs, switches users); run it as root",
        )
}

/// The interpreter from `SMP_TEST_PYTHON` (default `python3`) if it imports every module in
/// `modules`; otherwise the test is skipped with the install command.
pub fn python(suite: &str, modules: &[&str]) -> Option<String> {
    let python = std::env::var("SMP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new(&python)
        .args(["-c", &import])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let req = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/requirements.txt");
    skip(
        suite,
        &format!(
            "`{python}` cannot `{import}`; run scripts/test.sh --install, or \
             `python3 -m venv V && V/bin/pip install -r {}` and set SMP_TEST_PYTHON=V/bin/python",
            req.display()
        ),
    );
    None
}

/// An opt-in slow suite: runs only when `switch` is `1`.
pub fn switch(suite: &str, switch: &str) -> bool {
    std::env::var(switch).as_deref() == Ok("1") || {
        // Not a missing tool: a slow suite that is off unless asked for, even in strict mode.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {suite}: slow suite, set {switch}=1 to run it (scripts/test.sh does)"
        );
        false
    }
}
