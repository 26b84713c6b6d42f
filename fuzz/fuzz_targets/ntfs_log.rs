//! Lines of the pending-notifications file (`smp-server-ntfs.log`) as start-up parses them:
//! what we parse we encode back to the same notification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::store::msgfile::{encode_ntf, parse_ntf};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if let Ok(n) = parse_ntf(line) {
            let again = parse_ntf(&encode_ntf(&n));
            assert_eq!(again.ok(), Some(n), "re-encoded notification line differs");
        }
    }
});
