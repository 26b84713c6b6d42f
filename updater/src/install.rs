//! Replacing the installed binary atomically, keeping the previous one, and rolling back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{UpdateError, Verified};

/// Where the replaced binary is kept: `<binary>.previous`.
pub fn previous_path(binary: &Path) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    binary.with_file_name(name)
}

/// Run `binary --version`. A file just written can briefly fail with ETXTBSY ("text file
/// busy") when another thread forks while its write descriptor is open: the child holds a copy
/// until it execs. That is retried for up to a second rather than taken as a broken binary.
fn run_version(binary: &Path) -> Result<std::process::Output, UpdateError> {
    const ETXTBSY: i32 = 26; // Linux, every architecture
    let mut tries = 0;
    loop {
        match Command::new(binary).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                return Err(UpdateError::SmokeTest(format!(
                    "cannot run {}: {e}",
                    binary.display()
                )))
            }
            Ok(out) => return Ok(out),
        }
    }
}

/// Run `binary --version` and check it prints `version`. Guards against an archive that
/// verifies but does not run here (wrong libc, truncated build).
pub fn smoke_test(binary: &Path, version: &str) -> Result<(), UpdateError> {
    let out = run_version(binary)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(UpdateError::SmokeTest(format!(
            "`--version` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // the first line; later lines (the commit) are informational
    let reported = stdout.lines().next().unwrap_or_default().trim();
    if !reported.ends_with(&format!("v{version}")) {
        return Err(UpdateError::SmokeTest(format!(
            "it reports '{reported}', expected version {version}"
        )));
    }
    Ok(())
}

/// Copy `from` next to `dest` as a temporary file with `dest`'s permissions, fsync it, and
/// return its path; the caller renames it into place.
fn stage_next_to(from: &Path, dest: &Path) -> Result<PathBuf, UpdateError> {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let staged = dest.with_file_name(name);
    std::fs::copy(from, &staged)
        .map_err(|e| UpdateError::io(format!("writing {}", staged.display()), e))?;
    let mode = std::fs::metadata(dest)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o755)
        | 0o500;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .map_err(|e| UpdateError::io(format!("setting permissions of {}", staged.display()), e))?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| UpdateError::io(format!("syncing {}", staged.display()), e))?;
    Ok(staged)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Smoke-test the verified binary, then install it at `dest`: the current binary is copied to
/// `<dest>.previous` and the new one renamed over `dest` (atomic on one file system).
pub fn install_binary(verified: &Verified, dest: &Path) -> Result<(), UpdateError> {
    smoke_test(&verified.binary, &verified.release.version)?;
    let staged = stage_next_to(&verified.binary, dest)?;
    let previous = previous_path(dest);
    let keep = std::fs::copy(dest, &previous).map_err(|e| {
        UpdateError::io(
            format!("keeping the current binary as {}", previous.display()),
            e,
        )
    });
    if let Err(e) = keep {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&staged, dest) {
        let _ = std::fs::remove_file(&staged);
        return Err(UpdateError::io(format!("replacing {}", dest.display()), e));
    }
    sync_dir(dest);
    // Until the new binary has started and answered its own health check, the unit's start
    // guard (install.sh's smp-update-guard) rolls back a binary that fails to start.
    let marker = pending_path(dest);
    if let Err(e) = std::fs::write(&marker, format!("0\n{}\n", verified.release.version)) {
        tracing::warn!(
            "cannot write {}: {e}; no automatic rollback",
            marker.display()
        );
    }
    tracing::info!(
        "installed smp-server {} at {} (previous binary kept at {})",
        verified.release.version,
        dest.display(),
        previous.display()
    );
    Ok(())
}

/// Put `<dest>.previous` back at `dest` after checking that it runs; the binary being replaced
/// becomes the new `.previous`, so a rollback can itself be undone.
pub fn rollback(dest: &Path) -> Result<(), UpdateError> {
    let previous = previous_path(dest);
    if !previous.is_file() {
        return Err(UpdateError::NoPrevious(previous));
    }
    let out = run_version(&previous)?;
    if !out.status.success() {
        return Err(UpdateError::SmokeTest(format!(
            "{} --version exited with {}",
            previous.display(),
            out.status
        )));
    }
    let staged = stage_next_to(&previous, dest)?;
    std::fs::copy(dest, &previous)
        .map_err(|e| UpdateError::io(format!("keeping {}", previous.display()), e))?;
    std::fs::rename(&staged, dest)
        .map_err(|e| UpdateError::io(format!("restoring {}", dest.display()), e))?;
    sync_dir(dest);
    let _ = std::fs::remove_file(pending_path(dest));
    Ok(())
}

/// `<dest>.update-pending`: present from an update until the new binary has started and
/// answered a handshake on its own port. Its first line counts start attempts (the start guard
/// increments it; a second attempt without confirmation means the new binary failed to start).
pub fn pending_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".update-pending");
    dest.with_file_name(name)
}

/// The running binary started and serves: drop the marker. Returns whether there was one.
pub fn confirm_started(dest: &Path) -> bool {
    std::fs::remove_file(pending_path(dest)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn previous_is_next_to_the_binary() {
        assert_eq!(
            previous_path(Path::new("/opt/simplex/bin/smp-server")),
            Path::new("/opt/simplex/bin/smp-server.previous")
        );
    }

    #[test]
    fn smoke_test_checks_status_and_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = script(dir.path(), "good", "echo 'SMP server v1.2.3'");
        assert!(smoke_test(&good, "1.2.3").is_ok());
        assert!(matches!(
            smoke_test(&good, "1.2.4"),
            Err(UpdateError::SmokeTest(_))
        ));
        let failing = script(dir.path(), "bad", "echo 'SMP server v1.2.3'; exit 1");
        assert!(smoke_test(&failing, "1.2.3").is_err());
        assert!(smoke_test(&dir.path().join("missing"), "1.2.3").is_err());
    }

    #[test]
    fn rollback_swaps_and_needs_a_previous_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = script(dir.path(), "smp-server", "echo 'SMP server v2.0.0'");
        assert!(matches!(rollback(&bin), Err(UpdateError::NoPrevious(_))));
        let old = std::fs::read(&bin).expect("read");
        let prev = script(
            dir.path(),
            "smp-server.previous",
            "echo 'SMP server v1.0.0'",
        );
        let prev_bytes = std::fs::read(&prev).expect("read");
        rollback(&bin).expect("rollback");
        assert_eq!(std::fs::read(&bin).expect("read"), prev_bytes);
        assert_eq!(std::fs::read(&prev).expect("read"), old);
        // A previous binary that does not run is not put back.
        std::fs::write(&prev, "#!/bin/sh\nexit 3\n").expect("write");
        let before = std::fs::read(&bin).expect("read");
        assert!(rollback(&bin).is_err());
        assert_eq!(std::fs::read(&bin).expect("read"), before);
    }
}
