//! OTLP/protobuf trace requests: prost (`cerflow::decode::traces`) and the lazy
//! decoder ingest runs (`cerflow::decode::lazy::decode_traces`) never panic, accept
//! and reject the same bodies, and agree on every extracted field.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracle::check_protobuf(data) {
        panic!("{e}");
    }
});
