//! OTLP/JSON trace requests through `cerflow::decode::traces(_, Format::Json)`: never
//! panics; an accepted request re-encodes as protobuf that both protobuf decoders
//! accept with the same spans, and survives a serde round trip unchanged.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracle::check_json(data) {
        panic!("{e}");
    }
});
