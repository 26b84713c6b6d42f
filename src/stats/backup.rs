//! `smp-server-stats.log`: the statistics saved at shutdown and restored at start, in the
//! reference's `key=value` format, so a restart does not reset the day's counters and a
//! server migrated from the reference keeps its numbers.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::counters::ServerStats;
use super::period::{iso_time, parse_iso_time, PeriodStats};
use crate::sync::lock;

/// Scalar counters in the order the reference writes them, before the sections.
const HEAD: &[&str] = &[
    "qCreated",
    "qSecured",
    "qDeletedAll",
    "qDeletedNew",
    "qDeletedSecured",
    "qDeletedAllB",
    "qBlocked",
    "qCount",
    "qSub",
    "qSubAllB",
    "qSubAuth",
    "qSubDuplicate",
    "qSubProhibited",
    "qSubEnd",
    "qSubEndB",
    "ntfCreated",
    "ntfNewCreated",
    "ntfDeleted",
    "ntfDeletedB",
    "ntfSub",
    "ntfSubB",
    "ntfSubAuth",
    "ntfSubDuplicate",
    "msgSent",
    "msgSentAuth",
    "msgSentQuota",
    "msgSentLarge",
    "msgSentBlock",
    "msgRecv",
    "msgRecvGet",
    "msgGet",
    "msgGetNoMsg",
    "msgGetAuth",
    "msgGetDuplicate",
    "msgGetProhibited",
    "msgExpired",
    "msgSentNtf",
    "msgRecvNtf",
    "msgNtfs",
    "msgNtfsB",
    "msgNtfNoSub",
    "msgNtfLost",
    "msgNtfExpired",
];

/// Errors reading the backup file.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A line is not in the expected format.
    #[error("line {line}: {problem}")]
    Format {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

fn int_set(s: &BTreeSet<i64>) -> String {
    s.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn period(out: &mut String, p: &PeriodStats) {
    let _ = writeln!(out, "dayHashes={}", int_set(&lock(&p.day)));
    let _ = writeln!(out, "weekHashes={}", int_set(&lock(&p.week)));
    let _ = writeln!(out, "monthHashes={}", int_set(&lock(&p.month)));
}

/// The statistics in the reference's text format.
pub fn encode(s: &ServerStats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fromTime={}",
        iso_time(s.from_time.load(std::sync::atomic::Ordering::Relaxed))
    );
    for name in HEAD {
        let v = s.counters.by_name(name).map(|c| c.get()).unwrap_or(0);
        let _ = writeln!(out, "{name}={v}");
    }
    out.push_str("activeQueues:\n");
    period(&mut out, &s.active_queues);
    out.push_str("activeQueuesNtf:\n");
    period(&mut out, &s.active_queues_ntf);
    for (name, p) in [
        ("pRelays", &s.p_relays),
        ("pRelaysOwn", &s.p_relays_own),
        ("pMsgFwds", &s.p_msg_fwds),
        ("pMsgFwdsOwn", &s.p_msg_fwds_own),
    ] {
        let _ = writeln!(out, "{name}:");
        for (k, c) in p.named() {
            let _ = writeln!(out, "{k}={}", c.get());
        }
    }
    let _ = writeln!(out, "pMsgFwdsRecv={}", s.p_msg_fwds_recv.get());
    for (name, p) in [
        ("rcvServices", &s.rcv_services),
        ("ntfServices", &s.ntf_services),
    ] {
        let _ = writeln!(out, "{name}:");
        for (k, c) in p.named() {
            let _ = writeln!(out, "{k}={}", c.get());
        }
    }
    // 7.0 appends the name resolution counters as the last section.
    out.push_str("rslvStats:\n");
    for (k, c) in s.rslv.named() {
        let _ = writeln!(out, "{k}={}", c.get());
    }
    out
}

fn parse_set(v: &str) -> Result<BTreeSet<i64>, String> {
    if v.is_empty() {
        return Ok(BTreeSet::new());
    }
    v.split(',')
        .map(|x| {
            x.trim()
                .parse::<i64>()
                .map_err(|_| format!("bad number {x:?}"))
        })
        .collect()
}

/// Load statistics from the text format into `s` (counters not in the text stay as they are).
/// Accepts the older layouts the reference still reads (`qDeleted=`, `dayMsgQueues=`, ...).
pub fn decode_into(text: &str, s: &ServerStats) -> Result<(), BackupError> {
    let mut section = "";
    let mut saw_from = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let err = |problem: String| BackupError::Format {
            line: i + 1,
            problem,
        };
        if let Some(h) = line.strip_suffix(':') {
            section = match h {
                "activeQueues" | "activeQueuesNtf" | "subscribedQueues" | "pRelays"
                | "pRelaysOwn" | "pMsgFwds" | "pMsgFwdsOwn" | "rcvServices" | "ntfServices"
                | "rslvStats" => h,
                _ => return Err(err(format!("unknown section {h:?}"))),
            };
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| err("expected key=value".into()))?;
        let num = || {
            v.trim()
                .parse::<i64>()
                .map_err(|_| err(format!("{k}: bad number {v:?}")))
        };
        let periods = match section {
            "activeQueues" => Some(&s.active_queues),
            "activeQueuesNtf" => Some(&s.active_queues_ntf),
            _ => None,
        };
        if let Some(p) = periods {
            let target = match k {
                "dayHashes" => Some(&p.day),
                "weekHashes" => Some(&p.week),
                "monthHashes" => Some(&p.month),
                // the reference's older layout (sets of IDs): counts cannot be carried over
                "day" | "week" | "month" => None,
                _ => return Err(err(format!("unknown key {k:?} in {section}"))),
            };
            if let Some(t) = target {
                *lock(t) = parse_set(v).map_err(err)?;
            }
            continue;
        }
        if section == "subscribedQueues"
            && [
                "day",
                "week",
                "month",
                "dayHashes",
                "weekHashes",
                "monthHashes",
            ]
            .contains(&k)
        {
            continue;
        }
        let proxy = match section {
            "pRelays" => Some(&s.p_relays),
            "pRelaysOwn" => Some(&s.p_relays_own),
            "pMsgFwds" => Some(&s.p_msg_fwds),
            "pMsgFwdsOwn" => Some(&s.p_msg_fwds_own),
            _ => None,
        };
        if let Some(c) = proxy.and_then(|p| p.named().into_iter().find(|(n, _)| *n == k)) {
            c.1.set(num()?);
            continue;
        }
        let service = match section {
            "rcvServices" => Some(&s.rcv_services),
            "ntfServices" => Some(&s.ntf_services),
            _ => None,
        };
        if let Some(c) = service.and_then(|p| p.named().into_iter().find(|(n, _)| *n == k)) {
            c.1.set(num()?);
            continue;
        }
        if section == "rslvStats" {
            match s.rslv.named().into_iter().find(|(n, _)| *n == k) {
                Some((_, c)) => c.set(num()?),
                None => return Err(err(format!("unknown key {k:?} in rslvStats"))),
            }
            continue;
        }
        match k {
            "fromTime" => {
                let t = parse_iso_time(v).ok_or_else(|| err(format!("bad time {v:?}")))?;
                s.from_time.store(t, std::sync::atomic::Ordering::Relaxed);
                saw_from = true;
            }
            "qDeleted" => s.q_deleted_all.set(num()?),
            "qSubNoMsg" | "dayMsgQueues" | "weekMsgQueues" | "monthMsgQueues" => {}
            _ => match s.counters.by_name(k) {
                Some(c) => c.set(num()?),
                None => return Err(err(format!("unknown key {k:?}"))),
            },
        }
    }
    if !saw_from {
        return Err(BackupError::Format {
            line: 1,
            problem: "no fromTime".into(),
        });
    }
    Ok(())
}

/// Write the statistics to `path` (through a temporary file, so a crash leaves the old one).
pub fn save(path: &Path, s: &ServerStats) -> Result<(), BackupError> {
    let tmp = path.with_extension("log.tmp");
    crate::fsmode::write_private(&tmp, encode(s).as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Restore from `path` if it exists, then move it aside to `<path>.bak` as the reference
/// does (so a crash before the next save does not restore stale numbers twice).
/// Returns whether a file was restored.
pub fn restore(path: &Path, s: &ServerStats) -> Result<bool, BackupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    decode_into(&text, s)?;
    let mut bak = path.as_os_str().to_owned();
    bak.push(".bak");
    std::fs::rename(path, bak)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = ServerStats::new(1_700_000_000);
        s.q_created.add(5);
        s.msg_sent.add(7);
        s.p_msg_fwds.errors_other.add(2);
        s.ntf_services.assoc_updated.add(3);
        s.p_msg_fwds_recv.add(4);
        s.active_queues.update(b"q1");
        s.active_queues_ntf.update(b"q2");
        let text = encode(&s);
        assert!(text.starts_with("fromTime=2023-11-14T22:13:20Z\nqCreated=5\nqSecured=0\n"));
        assert!(text.contains("\nassocUpdatedt=3\n"));
        let r = ServerStats::new(0);
        decode_into(&text, &r).expect("decode");
        assert_eq!(encode(&r), text);
    }

    #[test]
    fn reference_sample_and_errors() {
        let text = "fromTime=2024-05-01T00:00:00.5Z\nqCreated=1\nqSecured=2\nqDeleted=3\nmsgSent=4\nmsgRecv=5\nactiveQueues:\ndayHashes=1,2\nweekHashes=\nmonthHashes=-3\n";
        let r = ServerStats::new(0);
        decode_into(text, &r).expect("decode");
        assert_eq!(r.q_deleted_all.get(), 3);
        assert_eq!(r.active_queues.sizes(), (2, 0, 1));
        assert!(decode_into("qCreated=1\n", &ServerStats::new(0)).is_err());
        assert!(decode_into(
            "fromTime=2024-05-01T00:00:00Z\nqCreated=x\n",
            &ServerStats::new(0)
        )
        .is_err());
    }
}
