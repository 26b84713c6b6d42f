//! Start-up time with a large store log: writes a log of N queues (default 1,000,000; set
//! `SMP_BENCH_QUEUES`), each created, secured and given a time, plus deleted queues; then
//! measures replay + compaction (`open_store_log`) as the server does at start.
//!
//! Run: `cargo bench --bench startup` (release build).

use std::io::{BufWriter, Write};
use std::time::Instant;

use smp_server::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_server::store::memory::MemoryStore;
use smp_server::store::storelog::StoreLogRecord;
use smp_server::store::storelog_file::open_store_log;
use smp_server::store::{QueueBody, QueueRec};

fn id(i: u64, tag: u8) -> Vec<u8> {
    let mut v = vec![tag; 24];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::var("SMP_BENCH_QUEUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("smp-bench-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("smp-server-store.log");
    let t = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&log)?);
    let rk = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[7; 32])?;
    let sk = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[8; 32])?;
    // every 10th queue is deleted again, so compaction has something to drop
    for i in 0..n + n / 10 {
        let rec = QueueRec {
            recipient_id: id(i, 1).into(),
            sender_id: id(i, 2).into(),
            body: QueueBody::new(
                rk.clone(),
                [9; 32],
                Some(smp_server::protocol::command::QueueMode::Messaging),
            ),
        };
        let mut recs = vec![
            StoreLogRecord::Create(Box::new(rec)),
            StoreLogRecord::Secure(id(i, 1), sk.clone()),
            StoreLogRecord::Time(id(i, 1), 1_700_006_400),
        ];
        if i % 11 == 10 {
            recs.push(StoreLogRecord::Delete(id(i, 1)));
        }
        for r in recs {
            w.write_all(&r.encode())?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()?;
    drop(w);
    let size = std::fs::metadata(&log)?.len();
    println!(
        "generated {} lines-worth log of {:.1} MB in {:.2?}",
        n + n / 10,
        size as f64 / 1e6,
        t.elapsed()
    );
    let st = MemoryStore::new();
    let t = Instant::now();
    let (_w, stats) = open_store_log(&log, &st)?;
    let el = t.elapsed();
    let compacted = std::fs::metadata(&log)?.len();
    println!(
        "replay + compaction: {el:.2?} ({} lines, {} live queues, compacted log {:.1} MB)",
        stats.lines,
        st.queue_count(),
        compacted as f64 / 1e6
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
