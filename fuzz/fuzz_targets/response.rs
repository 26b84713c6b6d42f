//! Server messages as the client (and the proxy, from its relays) parses them, and that what
//! we encode parses back to the same encoding.
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
    // Encoding is lossy across versions on purpose (DELD is END before v10, SOK is OK before
    // v16), so the check is that an encoding parses and encodes back to itself.
    let mut e = Encoder::new();
    msg.encode(v, &mut e);
    let first = e.finish();
    let again = BrokerMsg::parse(v, &first)
        .unwrap_or_else(|err| panic!("our encoding of {msg:?} does not parse at v{v}: {err:?}"));
    let mut e = Encoder::new();
    again.encode(v, &mut e);
    assert_eq!(e.finish(), first, "re-encoded message differs at v{v}");
});
