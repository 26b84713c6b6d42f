//! The README's two commands, as a newcomer runs them: in a fresh clone, the test command's
//! installer in check-only mode and the quick-start server, which then answers an SMP
//! handshake; and plain `cargo test` with the external tools hidden from PATH, which passes and
//! says which suites were skipped and why.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>` of this test build (shared with the commands under test: no second full build).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_smp-server"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A process group (a script and what it starts) stopped with SIGINT, then SIGKILL, on drop.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pg = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-INT", "--", &pg]).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &pg]).status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_clone_check_and_quick_start_server_answers_smp() {
    if !require::tools("newcomer", &["git", "cargo"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let clone = dir.path().join("smp-server");
    let out = Command::new("git")
        .arg("clone")
        .arg("--quiet")
        .arg(repo_root())
        .arg(&clone)
        .output()
        .expect("git clone");
    assert!(out.status.success(), "git clone: {out:?}");

    // The test command's set-up step, check-only: exit 0, or 1 with one "<what>: <how>" line
    // per missing tool.
    let check = Command::new(clone.join("scripts/test.sh"))
        .arg("--check")
        .output()
        .expect("scripts/test.sh --check");
    let text = String::from_utf8_lossy(&check.stdout);
    match check.status.code() {
        Some(0) => assert!(
            text.contains("Everything the tests need is installed"),
            "{text}"
        ),
        Some(1) => {
            assert!(
                text.starts_with("Missing for the full test suite"),
                "{text}"
            );
            assert!(text.lines().skip(1).all(|l| l.contains(": ")), "{text}");
            assert!(
                std::env::var(require::REQUIRE_ALL).as_deref() != Ok("1"),
                "the strict test run has tools missing:\n{text}"
            );
        }
        other => panic!("scripts/test.sh --check exited with {other:?}: {text}"),
    }

    // The quick start (dev profile and a free port, sharing this build's target dir).
    let port = free_port();
    let server = Group(
        Command::new(clone.join("scripts/run-local.sh"))
            .env("SMP_LOCAL_PORT", port.to_string())
            .env("SMP_LOCAL_PROFILE", "dev")
            .env("CARGO_TARGET_DIR", target_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("scripts/run-local.sh"),
    );
    let fp_file = clone.join("local/etc/fingerprint");
    let fp = wait_for_file(&fp_file, Duration::from_secs(900)).await;
    let fp = smp_server::crypto::identity::Fingerprint::from_base64url(&fp).expect("fingerprint");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let c = connect_when_up(addr, fp.0, Duration::from_secs(300)).await;
    let r = create_queue(&c).await;
    assert!(
        !r.rid().is_empty(),
        "the quick-start server creates a queue"
    );
    drop(c);
    drop(server);
}

/// A PATH with only the basics (a shell, coreutils that tests use, the compiler), so every
/// external tool the suites need is missing.
fn bare_path(dir: &Path) -> std::ffi::OsString {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for tool in [
        "sh", "bash", "env", "id", "kill", "cat", "rm", "mkdir", "chmod", "sleep",
    ] {
        if let Some(p) = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
        {
            let _ = std::os::unix::fs::symlink(p, bin.join(tool));
        }
    }
    bin.into_os_string()
}

/// The newest test executable of `suite` in this build (cargo names them `<suite>-<hash>`).
/// They are run directly: cargo itself would rebuild build scripts that watch PATH.
fn test_executable(suite: &str) -> PathBuf {
    let deps = target_dir().join("debug/deps");
    std::fs::read_dir(&deps)
        .expect("deps dir")
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(suite)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter(|e| {
            std::os::unix::fs::PermissionsExt::mode(&e.metadata().expect("meta").permissions())
                & 0o111
                != 0
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .unwrap_or_else(|| panic!("no test executable for {suite} in {}", deps.display()))
}

#[test]
fn suites_without_tools_pass_and_say_what_was_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bare_path(dir.path());
    let mut stderr = String::new();
    for suite in [
        "crypto_vectors",
        "tls_openssl",
        "web_acme",
        "dist_update",
        "persistence_disk",
        "tor_network",
        "dist_container_image",
    ] {
        let out = Command::new(test_executable(suite))
            .arg("--quiet")
            .current_dir(repo_root())
            .env("PATH", &path)
            .env_remove("SMP_TEST_PYTHON")
            .env_remove(require::REQUIRE_ALL)
            .env("SMP_TEST_TOR_NETWORK", "1")
            .output()
            .expect("run the suite");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{suite} without tools failed:\n{}\n{err}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr.push_str(&err);
    }
    for (suite, why) in [
        ("crypto_vectors", "cannot `import nacl, cryptography`"),
        ("tls_openssl", "`openssl` not found on PATH"),
        ("tls_openssl", "cannot `import OpenSSL`"),
        ("web_acme", "`pebble` not found on PATH"),
        ("web_acme", "`chromium` not found on PATH"),
        ("dist_update", "`zipsign` not found on PATH"),
        ("persistence_disk", ""),
        ("tor_network", "`tor` not found on PATH"),
        ("dist_container_image", "`podman` not found on PATH"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("skipped: {suite}")) && l.contains(why))
            .unwrap_or_else(|| panic!("no `skipped: {suite}: ...{why}...` line in:\n{stderr}"));
        assert!(
            line.contains("install") || line.contains("root"),
            "the line says how to fix it: {line}"
        );
    }
}
