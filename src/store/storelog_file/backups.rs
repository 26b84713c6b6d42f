//! Timed store log backups: `<log>.<ISO 8601 UTC time>` names and their retention.
//!
//! Names match the reference's `iso8601Show` of a `UTCTime`:
//! `2024-01-15T10:20:30.123456Z` (fraction without trailing zeros, none if zero).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86400;
/// Backups older than 24 hours beyond this many are candidates for deletion.
const MIN_OLD_BACKUPS: usize = 3;
/// Backups older than this are deleted (unless among the 3 kept).
const OLD_BACKUP_TTL: u64 = 21 * DAY;

use smp_proto::calendar::{days_from_civil, iso_datetime};

/// ISO 8601 UTC time as the reference names backups.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut s = iso_datetime(d.as_secs() as i64);
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let f = format!("{nanos:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parse what [`iso8601`] writes (any fraction length).
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-');
    let (y, m, d): (i64, i64, i64) = (
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
    );
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let (hh, mm, ss): (u64, u64, u64) = (
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
    );
    if dp.next().is_some() || tp.next().is_some() || !(1..=12).contains(&m) {
        return None;
    }
    let mut nanos = 0u32;
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let f9: String = f.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = f9.parse().ok()?;
    }
    let days = days_from_civil(y, m, d);
    let secs = u64::try_from(days).ok()? * DAY + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Delete old timed backups of `log` as the reference does; returns the deleted paths.
pub fn remove_old_backups(log: &Path, now: SystemTime) -> Vec<std::path::PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut times: Vec<(SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            let t = parse_iso8601(n.strip_prefix(&prefix)?)?;
            Some((t, e.path()))
        })
        .collect();
    times.sort();
    let new = now - Duration::from_secs(DAY);
    let old = now - Duration::from_secs(OLD_BACKUP_TTL);
    let older: Vec<_> = times.into_iter().filter(|(t, _)| *t < new).collect();
    let candidates = older.len().saturating_sub(MIN_OLD_BACKUPS);
    let mut deleted = Vec::new();
    for (t, p) in older.into_iter().take(candidates) {
        if t < old && std::fs::remove_file(&p).is_ok() {
            deleted.push(p);
        }
    }
    if !deleted.is_empty() {
        tracing::info!("removed {} old store log backups", deleted.len());
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_like_iso8601_show() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_450_000);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.12345Z");
        assert_eq!(parse_iso8601("2023-11-14T22:13:20.12345Z"), Some(t));
        let t0 = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(t0), "2000-02-29T00:00:00Z");
        assert_eq!(parse_iso8601("2000-02-29T00:00:00Z"), Some(t0));
        assert_eq!(parse_iso8601("bak"), None);
    }

    #[test]
    fn retention_keeps_recent_and_three_old() {
        let dir = std::env::temp_dir().join(format!("smp-backups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("smp-server-store.log");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ages_days = [0u64, 2, 25, 30, 40, 50, 60];
        for a in ages_days {
            let p = dir.join(format!(
                "smp-server-store.log.{}",
                iso8601(now - Duration::from_secs(a * DAY + 60))
            ));
            std::fs::write(p, b"x").expect("write");
        }
        std::fs::write(dir.join("smp-server-store.log.bak"), b"x").expect("bak");
        let deleted = remove_old_backups(&log, now);
        // older than 24h: 2,25,30,40,50,60 -> keep the newest 3 (2,25,30); of 40,50,60 all > 21d
        assert_eq!(deleted.len(), 3);
        let left = std::fs::read_dir(&dir).expect("ls").count();
        assert_eq!(left, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
