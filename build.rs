//! Embeds the source's git commit as `SMP_SERVER_COMMIT`, for `smp-server --version`.
//!
//! In order: the `SMP_SERVER_COMMIT` environment variable (a packager's override), `git
//! rev-parse HEAD` in a checkout, `packaging/COMMIT` as `git archive` fills it in through
//! `export-subst` (a source tarball without `.git`), else `unknown`. Nothing time- or
//! path-dependent is embedded, so two builds of one commit stay identical.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SMP_SERVER_COMMIT");
    println!("cargo:rerun-if-changed=packaging/COMMIT");
    let from_env = std::env::var("SMP_SERVER_COMMIT")
        .ok()
        .filter(|s| !s.is_empty());
    let from_git = || {
        if !Path::new(".git").exists() {
            return None;
        }
        // Rebuild when HEAD moves: HEAD itself, the branch it points to, packed refs.
        for p in ["HEAD", "packed-refs"] {
            if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(path) = git(&["rev-parse", "--git-path", &r]) {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        git(&["rev-parse", "HEAD"]).filter(|c| is_commit(c))
    };
    let from_archive = || {
        std::fs::read_to_string("packaging/COMMIT")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|c| is_commit(c))
    };
    let commit = from_env
        .or_else(from_git)
        .or_else(from_archive)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SMP_SERVER_COMMIT={commit}");
}
