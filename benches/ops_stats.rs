//! Cost of the operations features: per-message statistics, rendering Prometheus metrics and
//! the daily CSV line with many queues. Run with `cargo bench --bench ops_stats`.

use std::sync::Arc;
use std::time::Instant;

use smp_server::crypto::keys::{KeyAlgorithm, PrivateSignKey};
use smp_server::server::{ServerState, Settings};
use smp_server::stats::daily::take_daily_line;
use smp_server::stats::{entity_counts, ServerStats};
use smp_server::store::memory::MemoryStore;
use smp_server::store::{QueueBody, QueueRec, Store};

fn main() {
    // 1. the statistics one SEND + ACK records
    let stats = ServerStats::new(0);
    let ids: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            let mut v = i.to_le_bytes().to_vec();
            v.resize(24, 7);
            v
        })
        .collect();
    let n = 1_000_000;
    let t = Instant::now();
    for i in 0..n {
        let id = &ids[i % ids.len()];
        stats.msg_sent.inc();
        stats.msg_count.inc();
        stats.active_queues.update(id);
        stats.message_delivered(0);
        stats.message_received(id, false, false, 0);
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("statistics per message (SEND+delivery+ACK): {per:.0} ns");

    // 2. Prometheus text and the daily line with many queues
    let store = Arc::new(MemoryStore::new());
    let key = PrivateSignKey::generate(KeyAlgorithm::Ed25519)
        .expect("key")
        .public();
    let queues = 100_000;
    for i in 0..queues as u32 {
        let mut rid = i.to_le_bytes().to_vec();
        rid.resize(24, 1);
        let mut sid = i.to_le_bytes().to_vec();
        sid.resize(24, 2);
        store
            .add_queue(QueueRec {
                recipient_id: rid.into(),
                sender_id: sid.into(),
                body: QueueBody::new(key.clone(), [0; 32], None),
            })
            .expect("add");
    }
    let state = ServerState::new(Settings::default(), store.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t = Instant::now();
    let text = rt.block_on(async { smp_server::stats::prometheus::render_state(&state) });
    println!(
        "Prometheus render with {queues} queues: {:.1} ms ({} bytes)",
        t.elapsed().as_secs_f64() * 1000.0,
        text.len()
    );
    let t = Instant::now();
    let c = entity_counts(store.as_ref());
    let line = take_daily_line(&stats, &c, 86400);
    println!(
        "daily CSV line with {queues} queues: {:.1} ms ({} columns)",
        t.elapsed().as_secs_f64() * 1000.0,
        line.split(',').count()
    );
}
