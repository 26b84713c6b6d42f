//! Server messages as the client (and the proxy, from its relays) parses them, and that what
//! we parse we encode back to the same message.
//! Input: one version byte, then the message (`TAG fields...`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::protocol::encoding::Encoder;
use smp_server::protocol::response::BrokerMsg;
use smp_server_fuzz::split_version;

fuzz_target!(|data: &[u8]| {
    let Some((v, s)) = split_version(data) else {
        return;
    };
    let Ok(msg) = BrokerMsg::parse(v, s) else {
        return;
    };
    let mut e = Encoder::new();
    msg.encode(v, &mut e);
    let again = BrokerMsg::parse(v, &e.finish());
    assert_eq!(again.as_ref().ok(), Some(&msg), "re-encoded message parses differently at v{v}");
});
