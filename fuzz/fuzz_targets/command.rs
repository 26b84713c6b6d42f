//! Each command's arguments at a given version (server side), and that what we parse we
//! encode back to the same command (our client and proxy send what the server parsed).
//! Input: one version byte, then the command (`TAG fields...`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::protocol::command::Command;
use smp_server::protocol::encoding::Encoder;
use smp_server_fuzz::split_version;

fuzz_target!(|data: &[u8]| {
    let Some((v, s)) = split_version(data) else {
        return;
    };
    let Ok(cmd) = Command::parse(v, s) else {
        return;
    };
    let _ = cmd.check_credentials(true, b"entity");
    let _ = cmd.check_credentials(false, b"");
    let mut e = Encoder::new();
    cmd.encode(v, &mut e);
    let again = Command::parse(v, &e.finish());
    assert_eq!(again.as_ref(), Ok(&cmd), "re-encoded command parses differently at v{v}");
});
