//! A received 16 KB block as the server and the client read it: unpad, split the batch, split
//! each transmission and decode it as a command (server) and as a response (client).
//! Input: one version byte, then the padded block (`<u16 len><content><padding>`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::crypto::cbox;
use smp_server::protocol::transmission::{
    decode_client, decode_server, parse_transmission, split_batch,
};
use smp_server_fuzz::{params, split_version};

fuzz_target!(|data: &[u8]| {
    let Some((v, block)) = split_version(data) else {
        return;
    };
    let Ok(content) = cbox::unpad(block) else {
        return;
    };
    let p = params(v);
    let Ok(ts) = split_batch(&content) else {
        return;
    };
    assert!(!ts.is_empty(), "a batch has at least one transmission");
    for t in ts {
        if let Ok(st) = decode_server(&p, parse_transmission(&p, t)) {
            // What the session asks of every accepted command.
            let _ = st.command.party();
            let _ = st.command.uses_service_auth();
        }
        let _ = decode_client(&p, t);
    }
});
