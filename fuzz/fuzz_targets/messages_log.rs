//! The messages file (`smp-server-messages.log`) as start-up restores it into the queue
//! store, and each line: what we parse we encode back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::server::persist::restore_messages;
use smp_server::store::memory::MemoryStore;
use smp_server::store::msgfile::{encode_msg, parse_msg};
use smp_server_fuzz::scratch;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if let Ok((rid, m)) = parse_msg(line) {
            let again = parse_msg(&encode_msg(&rid, &m));
            assert_eq!(
                again.ok(),
                Some((rid, m)),
                "re-encoded message line differs"
            );
        }
    }
    let path = scratch("smp-server-messages.log");
    std::fs::write(&path, data).expect("write scratch messages file");
    // both ways a bad line is handled: refused, or skipped with a warning
    let _ = restore_messages(&path, &MemoryStore::new(), Some(0), data.len() % 2 == 1);
});
