//! Each command's arguments at a given version (server side), and that what we encode parses
//! back to the same encoding (our client and proxy send commands the server must read).
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
    // Like responses, an encoding may drop what a version cannot carry, so the check is that
    // our encoding parses and encodes back to itself.
    let mut e = Encoder::new();
    cmd.encode(v, &mut e);
    let first = e.finish();
    let again = Command::parse(v, &first)
        .unwrap_or_else(|err| panic!("our encoding of {cmd:?} does not parse at v{v}: {err:?}"));
    let mut e = Encoder::new();
    again.encode(v, &mut e);
    assert_eq!(e.finish(), first, "re-encoded command differs at v{v}");
});
