//! The store log (`smp-server-store.log`) as start-up replays it into the queue store, and
//! each line's record: what we parse we encode back to the same record (compaction rewrites
//! the log from parsed records).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::store::memory::MemoryStore;
use smp_server::store::storelog::StoreLogRecord;
use smp_server::store::storelog_file::replay;
use smp_server_fuzz::scratch;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if let Ok(rec) = StoreLogRecord::parse(line) {
            let again = StoreLogRecord::parse(&rec.encode());
            assert_eq!(
                again.as_ref().ok(),
                Some(&rec),
                "re-encoded record parses differently"
            );
        }
    }
    let path = scratch("smp-server-store.log");
    std::fs::write(&path, data).expect("write scratch store log");
    let _ = replay(&path, &MemoryStore::new());
});
