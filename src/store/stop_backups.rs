//! Dated copies of the store log, the saved messages and the statistics, taken at each clean
//! stop and on the control port's `save`, as the reference's stop script does after its
//! service stops (`simplex-servers-stopscript`): an operator who follows the guide finds them
//! where they expect them and needs no `ExecStopPost` script.
//!
//! Layout (the reference's): `<log dir>/backups/{queues,messages,stats}/<file>.<YYYY-MM-DDTHH:MM:SS>`
//! (UTC). Retention, per directory, as the script's: backups from the two most recent days that
//! have any are kept; older ones are deleted. The script reads the day from each copy's
//! modification time, which is the time of the copy; we read it from the name, which carries
//! the same time, so a clock can be injected in tests and a copied-around backup keeps its day.
//! Files whose names are not ours are never touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::iso_time;
use crate::config::Paths;

/// The backups directory under the log directory.
pub const BACKUPS_DIR: &str = "backups";

/// Why a backup could not be made (the server's state itself is unaffected).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Creating a directory or copying a file failed.
    #[error("backup of {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What one call did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Copies made.
    pub copied: Vec<PathBuf>,
    /// Old copies deleted by the retention rule.
    pub removed: Vec<PathBuf>,
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, as `date -u '+%Y-%m-%dT%H:%M:%S'` in the reference's script.
fn stamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let t = iso_time(i64::try_from(secs).unwrap_or(i64::MAX));
    t.trim_end_matches('Z').chars().take(19).collect()
}

/// The day (`YYYY-MM-DD`) of a backup named `<base>.<stamp>`, if `name` is one.
fn day_of(name: &str, base: &str) -> Option<String> {
    let s = name.strip_prefix(base)?.strip_prefix('.')?;
    let b = s.as_bytes();
    let ok = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    ok.then(|| s[..10].to_string())
}

/// Delete backups of `base` in `dir` from days before the two most recent days with backups.
pub fn apply_retention(dir: &Path, base: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let backups: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let day = day_of(e.file_name().to_str()?, base)?;
            Some((day, e.path()))
        })
        .collect();
    let days: BTreeSet<&str> = backups.iter().map(|(d, _)| d.as_str()).collect();
    let Some(keep_from) = days.iter().rev().nth(1).map(|d| d.to_string()) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for (day, p) in &backups {
        if *day < keep_from && std::fs::remove_file(p).is_ok() {
            removed.push(p.clone());
        }
    }
    removed.sort();
    removed
}

/// Copy each existing state file into its backups directory under a dated name, then apply the
/// retention rule. A missing source file (e.g. no stats, or the message journal instead of a
/// messages file) is not an error.
pub fn backup_state(paths: &Paths, now: SystemTime) -> Result<BackupReport, BackupError> {
    let root = paths.log_dir().join(BACKUPS_DIR);
    let stamp = stamp(now);
    let mut report = BackupReport::default();
    for (sub, file) in [
        ("queues", paths.store_log_file()),
        ("messages", paths.messages_file()),
        ("stats", paths.stats_file()),
    ] {
        let Some(base) = file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !file.is_file() {
            continue;
        }
        let dir = root.join(sub);
        // Owner-only directories, like the log directory: the copies hold queue keys.
        crate::fsmode::create_dir(&dir).map_err(|source| BackupError::Io {
            path: dir.clone(),
            source,
        })?;
        for d in [root.as_path(), dir.as_path()] {
            let _ = crate::fsmode::restrict(d, crate::fsmode::DIR_MODE);
        }
        let out = dir.join(format!("{base}.{stamp}"));
        std::fs::copy(&file, &out).map_err(|source| BackupError::Io {
            path: out.clone(),
            source,
        })?;
        // Backups hold queue keys and messages: owner-only, like the files they copy.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600));
        }
        report.copied.push(out);
        report.removed.extend(apply_retention(&dir, &base));
    }
    Ok(report)
}

/// [`backup_state`] with the outcome logged; never fails the caller (a stop or a `save`).
pub fn backup_and_log(paths: &Paths, now: SystemTime) -> Result<BackupReport, String> {
    match backup_state(paths, now) {
        Ok(r) => {
            for p in &r.copied {
                tracing::info!("backup written: {}", p.display());
            }
            if !r.removed.is_empty() {
                tracing::info!("removed {} old backups", r.removed.len());
            }
            Ok(r)
        }
        Err(e) => {
            tracing::error!("{e}; the server's own files are unchanged");
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DAY: u64 = 86_400;

    fn at(day: u64, secs: u64) -> SystemTime {
        // 2024-01-01T00:00:00Z plus days and seconds
        UNIX_EPOCH + Duration::from_secs(1_704_067_200 + day * DAY + secs)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn stamps_are_the_scripts_date_format() {
        assert_eq!(stamp(at(0, 3723)), "2024-01-01T01:02:03");
        assert_eq!(
            day_of("a.log.2024-01-01T01:02:03", "a.log").as_deref(),
            Some("2024-01-01")
        );
        assert_eq!(day_of("a.log.bak", "a.log"), None);
        assert_eq!(day_of("a.log.2024-01-01T01:02:03x", "a.log"), None);
        assert_eq!(day_of("b.log.2024-01-01T01:02:03", "a.log"), None);
    }

    #[test]
    fn copies_each_file_and_keeps_the_two_most_recent_days() {
        let tmp = tempfile::tempdir().expect("tmp");
        let paths = Paths::new(tmp.path().join("etc"), tmp.path().join("var"));
        std::fs::create_dir_all(paths.log_dir()).expect("mkdir");
        std::fs::write(paths.store_log_file(), b"queues").expect("store log");
        std::fs::write(paths.stats_file(), b"stats").expect("stats");
        // no messages file: nothing to copy there

        // day 0 twice, day 3, day 10 twice: each stop copies, retention keeps 2 latest days
        let r = backup_state(&paths, at(0, 10)).expect("backup");
        assert_eq!(r.copied.len(), 2);
        backup_state(&paths, at(0, 20)).expect("backup");
        let r = backup_state(&paths, at(3, 5)).expect("backup");
        assert!(r.removed.is_empty(), "two days so far: {r:?}");
        let queues = paths.log_dir().join("backups/queues");
        assert_eq!(
            names(&queues),
            [
                "smp-server-store.log.2024-01-01T00:00:10",
                "smp-server-store.log.2024-01-01T00:00:20",
                "smp-server-store.log.2024-01-04T00:00:05"
            ]
        );
        std::fs::write(queues.join("notes.txt"), b"mine").expect("operator's file");
        let r = backup_state(&paths, at(10, 1)).expect("backup");
        assert_eq!(r.removed.len(), 4, "day 0 of queues and stats: {r:?}");
        backup_state(&paths, at(10, 2)).expect("backup");
        assert_eq!(
            names(&queues),
            [
                "notes.txt",
                "smp-server-store.log.2024-01-04T00:00:05",
                "smp-server-store.log.2024-01-11T00:00:01",
                "smp-server-store.log.2024-01-11T00:00:02"
            ]
        );
        assert_eq!(
            std::fs::read(queues.join("smp-server-store.log.2024-01-11T00:00:02")).expect("copy"),
            b"queues"
        );
        assert_eq!(names(&paths.log_dir().join("backups/stats")).len(), 3);
        assert!(!paths.log_dir().join("backups/messages").exists());
    }
}
