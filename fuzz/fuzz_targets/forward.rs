//! The relay role's forwarded commands (RFWD), past the session encryption: the header
//! (fwdCorrId, version, client's key) and the one transmission inside, at the client's version.
//! Input: the decrypted RFWD body; its encrypted tail is used as the decrypted transmission.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::server::core::relay::{decode_forwarded, parse_forwarded};
use smp_server_fuzz::params;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = parse_forwarded(data) else {
        return;
    };
    if let Ok(Ok(st)) = decode_forwarded(&params(f.version), f.transmission) {
        let _ = st.command.party();
    }
});
