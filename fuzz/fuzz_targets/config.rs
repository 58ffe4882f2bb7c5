//! `cerflow::config::Config::parse` never panics, for any text, with or without
//! `${env:...}` values; an accepted config builds its journeys.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Config files are read with read_to_string: only UTF-8 text reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = oracle::check_config(text) {
        panic!("{e}");
    }
});
