//! The SMP handshake blocks: the client hello (server side) and the server hello with its
//! certificate chain and signed session key (client side, and the proxy from its relays).
//! Input: one selector byte (even: client hello, odd: server hello), then the unpadded block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::crypto::keys::DhKeyPair;
use smp_server::crypto::x509;
use smp_server::protocol::handshake::{ClientHandshake, ServerHandshake};
use smp_server::transport::verify::{cert_fingerprint, check_server_chain};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, b)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        let Ok(ch) = ClientHandshake::decode(b) else {
            return;
        };
        if let Some(k) = &ch.auth_pub_key {
            let _ = DhKeyPair::from_secret_bytes([7; 32]).dh(k);
        }
        return;
    }
    let Ok(sh) = ServerHandshake::decode(b) else {
        return;
    };
    let Some(ck) = sh.auth_pub_key else {
        return;
    };
    // What a client checks: the chain against the address fingerprint (here the chain's own
    // identity certificate, so the checks past the fingerprint run), then the signed key.
    let chain: Vec<&[u8]> = ck.chain.iter().map(Vec::as_slice).collect();
    if let Some(id) = chain.get(1) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = check_server_chain(&chain, &cert_fingerprint(id), now);
    }
    if let Ok(leaf_key) = x509::cert_public_key(&ck.chain[0]) {
        let _ = x509::verify_signed_pubkey(&leaf_key, &ck.signed_key);
    }
});
