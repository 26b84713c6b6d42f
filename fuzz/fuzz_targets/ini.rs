//! `smp-server.ini` as start-up reads it: the INI syntax, then the typed configuration with
//! its validation and warnings (no file is read: the paths point nowhere).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::config::{Config, Ini, Paths};

fuzz_target!(|data: &[u8]| {
    // The server reads the file as UTF-8 text and refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ini) = Ini::parse(text) {
        for (_, keys) in ini.sections() {
            let _ = keys.len();
        }
    }
    let paths = Paths::new("/nonexistent/smp-fuzz/etc", "/nonexistent/smp-fuzz/var");
    if let Ok(config) = Config::parse(text, paths) {
        let _ = config.warnings();
    }
});
