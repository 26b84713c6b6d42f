//! The stats backup file (`smp-server-stats.log`) as start-up restores it, and that a restored
//! file saves and restores to the same text (the server rewrites it from what it restored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::stats::backup::{decode_into, encode};
use smp_server::stats::counters::ServerStats;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let s = ServerStats::new(0);
    if decode_into(text, &s).is_err() {
        return;
    }
    let saved = encode(&s);
    let s2 = ServerStats::new(0);
    decode_into(&saved, &s2).expect("a saved stats file restores");
    assert_eq!(encode(&s2), saved, "saved stats restore differently");
});
