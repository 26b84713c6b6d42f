//! Private permissions for Tor's state: directories 0700, files 0600.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::OnionError;

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> OnionError + '_ {
    move |source| OnionError::StateDir {
        path: path.to_path_buf(),
        source,
    }
}

/// Create `dir` (and parents) if needed and make it private (0700).
pub(crate) fn private_dir(dir: &Path) -> Result<(), OnionError> {
    fs::create_dir_all(dir).map_err(err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err(dir))
}

/// Make every directory under `dir` 0700 and every file 0600 (symlinks are left alone).
///
/// Arti creates most files privately already; this also covers files it left as the umask
/// made them, so keys and state never become readable by other users.
///
/// Arti writes files as `*.tmp` and renames them while this runs, so an entry that is gone
/// by the time it is reached is skipped, not an error.
pub(crate) fn tighten(dir: &Path) -> Result<(), OnionError> {
    match tighten_inner(dir) {
        Err(OnionError::StateDir { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        r => r,
    }
}

fn tighten_inner(dir: &Path) -> Result<(), OnionError> {
    let meta = fs::symlink_metadata(dir).map_err(err(dir))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err(dir))?;
        }
        for entry in fs::read_dir(dir).map_err(err(dir))? {
            let entry = entry.map_err(err(dir))?;
            // Each entry on its own: one that vanished does not stop the others.
            tighten(&entry.path())?;
        }
    } else if meta.permissions().mode() & 0o777 & !0o600 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o600)).map_err(err(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightens_dirs_and_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("tor");
        private_dir(&root.join("state/keys")).expect("dir");
        let f = root.join("state/keys/k");
        fs::write(&f, b"x").expect("write");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::set_permissions(root.join("state"), fs::Permissions::from_mode(0o755)).expect("chmod");
        tighten(&root).expect("tighten");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("state")), 0o700);
        assert_eq!(mode(&f), 0o600);
    }

    #[test]
    fn a_vanished_entry_is_not_an_error() {
        let t = tempfile::tempdir().expect("tempdir");
        // What a file renamed away between read_dir and chmod looks like.
        tighten(&t.path().join("iptpub.tmp")).expect("gone is fine");
        // Other errors still are errors.
        let f = t.path().join("file");
        fs::write(&f, b"x").expect("write");
        assert!(tighten(&f.join("below-a-file")).is_err());
    }
}
