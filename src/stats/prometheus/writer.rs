//! The text writer of the exposition format, with the reference's comments and buckets.

use std::fmt::Write as _;

use crate::stats::period::TimeBuckets;

/// The exposition text being written, and the timestamp every sample carries.
pub(super) struct W {
    pub(super) out: String,
    pub(super) ts: String,
}

impl W {
    pub(super) fn section(&mut self, title: &str, blank: bool) {
        let _ = write!(self.out, "# {title}\n# {}\n", "-".repeat(title.len()));
        if blank {
            self.out.push('\n');
        }
    }
    pub(super) fn head(&mut self, name: &str, help: &str, typ: &str) {
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {typ}\n");
    }
    pub(super) fn sample(
        &mut self,
        name: &str,
        labels: &str,
        v: impl std::fmt::Display,
        comment: &str,
    ) {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(self.out, "{name}{labels} {v} {}", self.ts);
        if !comment.is_empty() {
            let _ = writeln!(self.out, "# {comment}");
        }
    }
    /// A metric with one unlabelled sample and the reference's trailing comment.
    pub(super) fn one(
        &mut self,
        name: &str,
        help: &str,
        typ: &str,
        v: impl std::fmt::Display,
        c: &str,
    ) {
        self.head(name, help, typ);
        self.sample(name, "", v, c);
        self.out.push('\n');
    }
}

/// Escape a label value.
pub(super) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Cumulative buckets as the reference prints them: an extra bucket 60 s below a bucket that
/// follows a gap, so graphs show the step.
pub(super) fn time_buckets(w: &mut W, metric: &str, b: &TimeBuckets) {
    let (mut prev, mut total) = (0i64, 0i64);
    let name = format!("{metric}_bucket");
    for (sec, cnt) in &b.buckets {
        if sec - 60 > prev {
            w.sample(&name, &format!("le=\"{}\"", sec - 60), total, "");
        }
        total += cnt;
        w.sample(&name, &format!("le=\"{sec}\""), total, "");
        prev = *sec;
    }
}

/// Counts of times in the periods 0-60, 60-300, 300-1200, 1200-3600 and 3600+ seconds.
pub(super) fn bucket_sums(w: &mut W, metric: &str, b: &TimeBuckets) {
    for (lo, hi) in [
        (0, 60),
        (60, 300),
        (300, 1200),
        (1200, 3600),
        (3600, i64::MAX),
    ] {
        let sum: i64 = b.buckets.range(lo..hi).map(|(_, c)| c).sum();
        let label = if hi <= 3600 {
            format!("period=\"{lo}-{hi}\"")
        } else {
            format!("period=\"{lo}+\"")
        };
        w.sample(metric, &label, sum, "");
    }
}
