//! Active-queue counts by day, week and month, and delivery time buckets.
//!
//! Privacy: only a 64-bit hash of each queue ID is kept, and each set is emptied when its
//! period is reported, as the reference does (its `PeriodStats` of `IntSet`s).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::sync::lock;

/// Hash of a queue ID as kept in the period sets.
pub fn id_hash(id: &[u8]) -> i64 {
    let d = Sha256::digest(id);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_le_bytes(b)
}

/// Sets of queue hashes active in the current day, week and month.
#[derive(Debug, Default)]
pub struct PeriodStats {
    /// This day.
    pub day: Mutex<BTreeSet<i64>>,
    /// This week (Monday to Sunday).
    pub week: Mutex<BTreeSet<i64>>,
    /// This month.
    pub month: Mutex<BTreeSet<i64>>,
}

/// Counts of one report: week and month are empty strings unless their period just ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodCounts {
    /// Queues active in the day.
    pub day: String,
    /// Queues active in the week, reported on Mondays.
    pub week: String,
    /// Queues active in the month, reported on the 1st.
    pub month: String,
}

impl PeriodStats {
    /// Record activity on a queue.
    pub fn update(&self, id: &[u8]) {
        let h = id_hash(id);
        for s in [&self.day, &self.week, &self.month] {
            lock(s).insert(h);
        }
    }

    /// Sizes without resetting (Prometheus, control port).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            lock(&self.day).len(),
            lock(&self.week).len(),
            lock(&self.month).len(),
        )
    }

    /// Counts for the daily report made at `now` (Unix seconds, the start of a new day):
    /// the day set is always reported and cleared, the week set on Mondays, the month set on
    /// the 1st of a month.
    pub fn report(&self, now: i64) -> PeriodCounts {
        let days = now.div_euclid(86400);
        let take = |m: &Mutex<BTreeSet<i64>>| std::mem::take(&mut *lock(m)).len().to_string();
        PeriodCounts {
            day: take(&self.day),
            week: if weekday_monday1(days) == 1 {
                take(&self.week)
            } else {
                String::new()
            },
            month: if civil_from_days(days).2 == 1 {
                take(&self.month)
            } else {
                String::new()
            },
        }
    }

    /// Replace the sets (restore at start).
    pub fn set(&self, day: BTreeSet<i64>, week: BTreeSet<i64>, month: BTreeSet<i64>) {
        *lock(&self.day) = day;
        *lock(&self.week) = week;
        *lock(&self.month) = month;
    }
}

/// ISO weekday of a day number since 1970-01-01 (a Thursday): Monday = 1 ... Sunday = 7.
pub fn weekday_monday1(days: i64) -> i64 {
    (days + 3).rem_euclid(7) + 1
}

pub use smp_proto::calendar::{civil_from_days, days_from_civil, iso_date};

pub use crate::clock::iso_time;

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (what the reference writes) to Unix seconds.
pub fn parse_iso_time(s: &str) -> Option<i64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    let time = time.split('.').next()?;
    let mut tp = time.splitn(3, ':');
    let hh: i64 = tp.next()?.parse().ok()?;
    let mm: i64 = tp.next()?.parse().ok()?;
    let ss: i64 = tp.next()?.parse().ok()?;
    // Four-digit years only (what the reference writes): a larger year overflowed the seconds.
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Counts of times in buckets of whole seconds (the reference's `TimeBuckets`): exact up to
/// 5 s, then rounded up to 5 s up to 30, 10 s up to 60, 30 s up to 180, then to minutes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeBuckets {
    /// Sum of all times.
    pub sum_time: i64,
    /// The largest time.
    pub max_time: i64,
    /// Count by bucket (upper bound in seconds).
    pub buckets: BTreeMap<i64, i64>,
}

impl TimeBuckets {
    /// Add the time from `from` to `to` (Unix seconds).
    pub fn update(&mut self, from: i64, to: i64) {
        let t = to - from;
        self.sum_time += t;
        self.max_time = self.max_time.max(t);
        let round_up = |n: i64, m: i64| -((-n).div_euclid(m) * m);
        let b = if t <= 5 {
            t
        } else if t <= 30 {
            round_up(t, 5)
        } else if t <= 60 {
            round_up(t, 10)
        } else if t <= 180 {
            round_up(t, 30)
        } else {
            round_up(t, 60)
        };
        *self.buckets.entry(b).or_insert(0) += 1;
    }

    /// Total number of recorded times.
    pub fn count(&self) -> i64 {
        self.buckets.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(weekday_monday1(0), 4); // 1970-01-01 was a Thursday
        let d = days_from_civil(2024, 1, 1);
        assert_eq!(weekday_monday1(d), 1);
        assert_eq!(civil_from_days(d), (2024, 1, 1));
        assert_eq!(iso_date(1_700_000_000), "2023-11-14");
        assert_eq!(
            parse_iso_time("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_iso_time(&iso_time(1_700_000_000)),
            Some(1_700_000_000)
        );
        assert_eq!(parse_iso_time("garbage"), None);
    }

    /// Found by the `stats` fuzz target: a huge year overflowed (a panic with overflow checks,
    /// a wrapped time without), and negative hours were accepted.
    #[test]
    fn parse_iso_time_rejects_out_of_range_fields() {
        assert_eq!(parse_iso_time("99999999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_iso_time("-99999999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_iso_time("2024-01-01T-1:00:00Z"), None);
        assert_eq!(parse_iso_time("2024-01-01T00:-5:00Z"), None);
        assert_eq!(
            parse_iso_time("9999-12-31T23:59:60Z"),
            Some(253_402_300_800)
        );
    }

    #[test]
    fn period_reports() {
        let p = PeriodStats::default();
        p.update(b"a");
        p.update(b"b");
        p.update(b"a");
        // a Tuesday, not the 1st: only the day is reported
        let tue = days_from_civil(2024, 1, 2) * 86400;
        assert_eq!(
            p.report(tue),
            PeriodCounts {
                day: "2".into(),
                week: String::new(),
                month: String::new()
            }
        );
        assert_eq!(p.sizes(), (0, 2, 2));
        // Monday 1 April 2024: week and month are reported and cleared
        let mon = days_from_civil(2024, 4, 1) * 86400;
        let c = p.report(mon);
        assert_eq!(
            (c.day.as_str(), c.week.as_str(), c.month.as_str()),
            ("0", "2", "2")
        );
        assert_eq!(p.sizes(), (0, 0, 0));
    }

    #[test]
    fn buckets_round_up() {
        let mut b = TimeBuckets::default();
        for t in [0, 3, 7, 31, 61, 200] {
            b.update(0, t);
        }
        let keys: Vec<i64> = b.buckets.keys().copied().collect();
        assert_eq!(keys, vec![0, 3, 10, 40, 90, 240]);
        assert_eq!(b.max_time, 200);
        assert_eq!(b.count(), 6);
    }
}
