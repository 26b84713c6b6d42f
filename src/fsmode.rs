//! Modes of the files and directories the server writes: state is readable by the server's
//! user only. The store log holds every queue's DH secret and keys; messages, notifications
//! and statistics describe users' traffic. So state files are created 0600 in 0700
//! directories, files written through a temporary file get the mode before they are renamed
//! into place, and at start existing state files with wider modes are narrowed and logged.
//!
//! Not narrowed: the generated web site (`[WEB] static_path`, public by design, possibly
//! served by another web server) and Arti's state directory (the onion crate keeps it 0700
//! itself). If the web site lies inside the log directory, that directory gets 0711 instead
//! of 0700: others may pass through to the site but cannot list or read the state files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every state file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every state directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the log directory when the public web site is inside it.
pub const DIR_MODE_WITH_WEB: u32 = 0o711;

/// Options that create a file with [`FILE_MODE`] (an existing file keeps its mode: use
/// [`restrict`] or [`write_private`]).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Narrow `path` to `mode` if it grants anything `mode` does not; returns the old mode if it
/// was changed.
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<Option<u32>> {
    let old = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if old & !mode == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(old & mode))?;
    Ok(Some(old))
}

/// Narrow an open file to [`FILE_MODE`] (a leftover temporary file may be wider).
pub fn restrict_file(f: &File) -> std::io::Result<()> {
    let old = f.metadata()?.permissions().mode() & 0o7777;
    if old & !FILE_MODE != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(old & FILE_MODE))?;
    }
    Ok(())
}

/// Create (or truncate) `path` with [`FILE_MODE`] and write `data`.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    restrict_file(&f)?;
    f.write_all(data)
}

/// Create `dir` and its missing parents with [`DIR_MODE`].
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Whether a name in the log directory is one of the server's state files.
fn is_state_name(name: &str) -> bool {
    name.starts_with("smp-server-") || name == "acme-account.json"
}

/// At start: narrow the state files in `log_dir` and `log_dir/messages` to [`FILE_MODE`] and
/// those directories to [`DIR_MODE`] (or [`DIR_MODE_WITH_WEB`] when `web_root` is inside
/// `log_dir`), logging each change. Returns how many modes were changed. A mode that cannot be
/// changed (a file of another owner) is a warning: opening the file then fails with the error
/// that says what to do, or works and the warning stays.
pub fn restrict_state(log_dir: &Path, web_root: Option<&Path>) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut note = |p: &Path, r: std::io::Result<Option<u32>>, new: u32| -> std::io::Result<()> {
        match r {
            Ok(Some(old)) => {
                changed += 1;
                tracing::info!(
                    "narrowed the mode of {} from {old:o} to {:o} (state is for the server's \
                     user only)",
                    p.display(),
                    old & new
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "cannot narrow the mode of {} to {new:o}: {e}. Make it owned by the user \
                 running smp-server (chown), or chmod it yourself",
                p.display()
            ),
        }
        Ok(())
    };
    if !log_dir.is_dir() {
        return Ok(0);
    }
    let web_inside = web_root.is_some_and(|w| w.starts_with(log_dir));
    let dir_mode = if web_inside {
        DIR_MODE_WITH_WEB
    } else {
        DIR_MODE
    };
    note(log_dir, restrict(log_dir, dir_mode), dir_mode)?;
    for e in std::fs::read_dir(log_dir)? {
        let e = e?;
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let ty = e.file_type()?;
        if ty.is_file() && is_state_name(&name) {
            note(&p, restrict(&p, FILE_MODE), FILE_MODE)?;
        } else if ty.is_dir() && (name == "messages" || name == "messages.importing") {
            note(&p, restrict(&p, DIR_MODE), DIR_MODE)?;
            for f in std::fs::read_dir(&p)? {
                let f = f?;
                if f.file_type()?.is_file() {
                    note(&f.path(), restrict(&f.path(), FILE_MODE), FILE_MODE)?;
                }
            }
        } else if ty.is_dir() && name == "backups" {
            // dated copies made at stop: `backups/<kind>/<file>.<time>`
            note(&p, restrict(&p, DIR_MODE), DIR_MODE)?;
            for k in std::fs::read_dir(&p)? {
                let k = k?;
                if !k.file_type()?.is_dir() {
                    continue;
                }
                note(&k.path(), restrict(&k.path(), DIR_MODE), DIR_MODE)?;
                for f in std::fs::read_dir(k.path())? {
                    let f = f?;
                    if f.file_type()?.is_file() {
                        note(&f.path(), restrict(&f.path(), FILE_MODE), FILE_MODE)?;
                    }
                }
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn wide_state_files_are_narrowed_and_others_left_alone() {
        let t = tempfile::tempdir().expect("tmp");
        let log = t.path().join("log");
        std::fs::create_dir_all(log.join("messages")).expect("mkdir");
        std::fs::create_dir_all(log.join("www")).expect("mkdir");
        let files = [
            log.join("smp-server-store.log"),
            log.join("smp-server-store.log.2026-01-01T00:00:00Z"),
            log.join("messages/shard-00.journal"),
        ];
        for f in &files {
            std::fs::write(f, b"x").expect("write");
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        std::fs::write(log.join("www/index.html"), b"x").expect("write");
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let n = restrict_state(&log, Some(&log.join("www"))).expect("restrict");
        assert_eq!(
            n, 5,
            "three files, the messages directory and the log directory"
        );
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&log.join("messages")), 0o700);
        assert_eq!(mode(&log), 0o711, "the public site inside stays reachable");
        assert_eq!(mode(&log.join("www/index.html")), 0o644);
        assert_eq!(restrict_state(&log, None).expect("again"), 1, "now 0700");
        assert_eq!(mode(&log), 0o700);
    }

    #[test]
    fn the_daily_statistics_csv_is_created_private() {
        let t = tempfile::tempdir().expect("tmp");
        let p = t.path().join("smp-server-stats.daily.log");
        crate::stats::daily::append_line(&p, "a,b").expect("append");
        crate::stats::daily::append_line(&p, "c,d").expect("append");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "a,b\nc,d\n");
    }

    #[test]
    fn private_writes_narrow_a_leftover_wide_file() {
        let t = tempfile::tempdir().expect("tmp");
        let p = t.path().join("f.tmp");
        std::fs::write(&p, b"old").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        write_private(&p, b"new").expect("write");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).expect("read"), b"new");
    }
}
