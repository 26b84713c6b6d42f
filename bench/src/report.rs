//! The figures of a run, printed as a Markdown table, written as JSON, and compared with the
//! committed baseline (ratios only: absolute times differ from machine to machine).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How much worse than the baseline a ratio may get before `--ci` fails.
pub const TOLERANCE: f64 = 1.25;

/// One figure with its floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// What was measured, as in issue 15's table.
    pub figure: String,
    /// The measured value with its unit.
    pub value: String,
    /// The floor it is compared with, with its unit ("—" if none).
    pub floor: String,
    /// value / floor (or value / goal where there is no floor); lower is better.
    pub ratio: Option<f64>,
    /// The goal, as the issue states it.
    pub goal: String,
}

/// All rows of a run, keyed by a stable name (the baseline's keys).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Rows by key, in insertion order of the keys' names.
    pub rows: BTreeMap<String, Row>,
    /// Rows without a ratio (latency, throughput, notes), printed after the table.
    pub notes: Vec<String>,
}

impl Report {
    /// Add a row.
    pub fn row(
        &mut self,
        key: &str,
        figure: &str,
        value: String,
        floor: String,
        ratio: Option<f64>,
        goal: &str,
    ) {
        let r = Row {
            figure: figure.to_string(),
            value,
            floor,
            ratio,
            goal: goal.to_string(),
        };
        println!(
            "  {key}: {} | floor {} | ratio {} | goal {}",
            r.value,
            r.floor,
            fmt_ratio(r.ratio),
            r.goal
        );
        self.rows.insert(key.to_string(), r);
    }

    /// Add a note line (printed now and in the summary).
    pub fn note(&mut self, line: String) {
        println!("  {line}");
        self.notes.push(line);
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| key | figure | now | floor | ratio | goal |\n|---|---|---|---|---|---|\n",
        );
        for (k, r) in &self.rows {
            s.push_str(&format!(
                "| {k} | {} | {} | {} | {} | {} |\n",
                r.figure,
                r.value,
                r.floor,
                fmt_ratio(r.ratio),
                r.goal
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n- {n}"));
        }
        s.push('\n');
        s
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".to_string(), |r| format!("{r:.2}×"))
}

/// The committed figures `--ci` compares with.
#[derive(Debug, Serialize, Deserialize)]
pub struct Baseline {
    /// Where and how the figures were measured.
    pub measured: String,
    /// Ratio by row key.
    pub ratios: BTreeMap<String, f64>,
}

/// Read the baseline file.
pub fn read_baseline(path: &Path) -> Result<Baseline> {
    let s = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&s).with_context(|| format!("parse {}", path.display()))
}

/// Write this run's ratios as the new baseline.
pub fn write_baseline(path: &Path, report: &Report, measured: String) -> Result<()> {
    let ratios = report
        .rows
        .iter()
        .filter_map(|(k, r)| r.ratio.map(|v| (k.clone(), (v * 1000.0).round() / 1000.0)))
        .collect();
    let b = Baseline { measured, ratios };
    std::fs::write(path, serde_json::to_string_pretty(&b)? + "\n")
        .with_context(|| format!("write {}", path.display()))
}

/// Compare with the baseline: the list of regressions beyond [`TOLERANCE`] (empty = pass).
/// A row the baseline has but the run lacks is a failure too, so a figure cannot silently
/// stop being checked.
pub fn compare(report: &Report, base: &Baseline) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, &b) in &base.ratios {
        match report.rows.get(k).and_then(|r| r.ratio) {
            None => bad.push(format!("{k}: not measured in this run (baseline {b:.2}×)")),
            Some(now) if now > b * TOLERANCE => bad.push(format!(
                "{k}: {now:.2}× against {b:.2}× in the baseline (+{:.0} %, limit +{:.0} %)",
                (now / b - 1.0) * 100.0,
                (TOLERANCE - 1.0) * 100.0
            )),
            Some(now) => println!(
                "ok {k}: {now:.2}× (baseline {b:.2}×, {:+.0} %)",
                (now / b - 1.0) * 100.0
            ),
        }
    }
    bad
}
