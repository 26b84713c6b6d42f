//! Two clones of this commit at different paths build byte-identical release archives and
//! binaries (packaging/check-reproducible.sh with the light `repro-check` profile and a shared
//! target directory: dependencies are built once, the workspace crates twice). Slow: runs with
//! `SMP_TEST_REPRODUCIBLE=1`. The full check with the `release` profile is run by hand.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn two_clones_at_different_paths_build_identical_releases() {
    if !common::require::switch("dist_reproducible", "SMP_TEST_REPRODUCIBLE")
        || !common::require::tools("dist_reproducible", &["git", "tar", "gzip", "sha256sum"])
    {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target: PathBuf = Path::new(env!("CARGO_BIN_EXE_smp-server"))
        .parent()
        .and_then(Path::parent)
        .expect("target")
        .join("repro-shared");
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(root.join("packaging/check-reproducible.sh"))
        .args(["--profile", "repro-check", "--work"])
        .arg(work.path())
        .arg("--shared-target")
        .arg(&target)
        .output()
        .expect("check-reproducible.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("identical: smp-server-"), "{stdout}");
    assert!(stdout.contains(".tar.gz"), "{stdout}");
    assert!(!stdout.contains("DIFFERENT"), "{stdout}");
}
