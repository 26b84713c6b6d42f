//! Lines of the control port (`[CONTROL]`/`control_port`), as the server parses them before
//! checking the operator's password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::control::protocol::parse;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(cmd) = parse(line) {
            let _ = cmd.word();
        }
    }
});
