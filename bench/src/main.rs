//! `smp-bench`: the release `smp-server` binary measured from outside, over loopback TLS, with
//! every figure divided by a crypto floor measured in the same run (see docs/benchmarks.md).
//!
//! `smp-bench` prints the table of issue 15 (quick sizes); `--full` uses the full sizes
//! (1,000,000 queues); `--ci` runs the short mode and fails when a ratio is more than 25 %
//! above `bench/baseline.json` in two runs in a row; `--write-baseline` stores this run's
//! ratios there.

mod conns;
mod delivery;
mod flood;
mod floor;
mod pg;
mod queues;
mod report;
mod run;
mod server;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "smp-bench",
    about = "Benchmark the smp-server binary against its crypto floor"
)]
pub struct Args {
    /// The server binary (default: smp-server next to this binary, i.e. the same target dir).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Full sizes: 1,000,000 queues for SUB, RSS and restart; more loads and repeats.
    #[arg(long, conflicts_with = "ci")]
    pub full: bool,
    /// Short mode for CI: compare the ratios with the baseline, fail on a regression > 25 %.
    #[arg(long)]
    pub ci: bool,
    /// Baseline file for --ci and --write-baseline.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline.json"))]
    pub baseline: PathBuf,
    /// Store this run's ratios as the baseline.
    #[arg(long)]
    pub write_baseline: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where servers keep their files (a real disk, for the journal).
    #[arg(long, default_value = "/var/tmp")]
    pub scratch: PathBuf,
    /// Pin the server to these CPUs (`taskset -c`), e.g. 0.
    #[arg(long)]
    pub pin_server: Option<String>,
    /// Extra environment of the server, KEY=VALUE (repeatable), e.g. to compare allocators
    /// with LD_PRELOAD or GLIBC_TUNABLES without rebuilding.
    #[arg(long, value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    /// Only the memory-store phase (delivery, handshakes, idle connections and queues, memory
    /// after load): for comparing server builds or allocators quickly.
    #[arg(long)]
    pub memory_only: bool,
    /// Only the two handshake rows (Ed25519 and Ed448 identities, memory store): for profiling
    /// and comparing the handshake path alone.
    #[arg(long, conflicts_with_all = ["memory_only", "big_only"])]
    pub handshakes_only: bool,
    /// Repeats of each CPU figure (the median is kept); default 3.
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Only this store's phases: memory (with the handshake and connection rows), journal or
    /// database; default: all (`--ci`: memory and journal, see docs/benchmarks.md).
    #[arg(long, value_parser = ["all", "memory", "journal", "database"], default_value = "all")]
    pub store: String,
    /// Queue counts for the many-queue figures (restart, RSS, batched SUB), comma-separated,
    /// e.g. 100000,1000000; default: 1000000 with --full, none otherwise.
    #[arg(long, value_delimiter = ',')]
    pub big_queues: Vec<u64>,
    /// Only the many-queue figures (`--big-queues`) of the stores chosen with `--store`.
    #[arg(long)]
    pub big_only: bool,
    /// SUB only this many of the many queues (every k-th, spread over the whole ID range);
    /// default: all of them.
    #[arg(long)]
    pub big_sub: Option<u64>,
    /// Offered loads of 16 KB messages (msg/s), comma-separated, the ratio taken at the first;
    /// default by mode (e.g. 500,250,1000).
    #[arg(long, value_delimiter = ',')]
    pub loads_16k: Vec<f64>,
    /// Offered loads of 1 KB messages, as `--loads-16k`.
    #[arg(long, value_delimiter = ',')]
    pub loads_1k: Vec<f64>,
    /// Connections the many-queue SUB is spread over (one batch of 100 in flight on each).
    #[arg(long, default_value_t = 4)]
    pub sub_lanes: usize,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s}: expected KEY=VALUE"))
}

fn server_binary(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.server {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("own path")?;
    let p = me.with_file_name("smp-server");
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p smp-server) or pass --server",
            p.display()
        );
    }
    if me.parent().and_then(|d| d.file_name()) != Some(std::ffi::OsStr::new("release")) {
        eprintln!(
            "warning: {} is not a release build; its figures mean little",
            p.display()
        );
    }
    Ok(p)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = server_binary(&args)?;
    // One thread for all clients: the client never takes more than one of the two cores, and
    // its cost per message is about the server's, so the server keeps the other one.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run::all(&args, &bin))?;
    println!("\n{}", report.markdown());
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    if args.write_baseline {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let measured = format!(
            "smp-bench {}, load average before the end: {}",
            if args.full {
                "--full"
            } else if args.ci {
                "--ci"
            } else {
                "(quick)"
            },
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        report::write_baseline(&args.baseline, &report, measured)?;
        println!("baseline written to {}", args.baseline.display());
    }
    if args.ci {
        let base = report::read_baseline(&args.baseline)?;
        let mut bad = report::compare(&report, &base);
        if !bad.is_empty() {
            // A regression must show twice: one run on a shared machine can be slowed in one
            // phase only. A ratio fails only if it is over the limit in both runs (noise that
            // lands on another ratio in the second run is noise too).
            for b in &bad {
                eprintln!("possible regression {b}");
            }
            eprintln!("smp-bench --ci: confirming with a second run");
            let again = rt.block_on(run::all(&args, &bin))?;
            println!("\n{}", again.markdown());
            let key = |b: &String| b.split(':').next().unwrap_or_default().to_string();
            let first: Vec<String> = bad.iter().map(key).collect();
            bad = report::compare(&again, &base)
                .into_iter()
                .filter(|b| first.contains(&key(b)))
                .collect();
        }
        if !bad.is_empty() {
            for b in &bad {
                eprintln!("REGRESSION {b}");
            }
            bail!("{} ratio(s) regressed by more than 25 %", bad.len());
        }
        println!(
            "smp-bench --ci: every ratio within 25 % of {}",
            args.baseline.display()
        );
    }
    Ok(())
}
