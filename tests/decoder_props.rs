//! Property tests over the public decode functions (`cerflow::decode::{traces, metrics,
//! logs}` and `cerflow::decode::lazy::decode_traces`), fast enough for every
//! `cargo test`:
//!
//! - random requests and random or corrupted bytes never make a decoder panic;
//! - a random `ExportTraceServiceRequest` encoded as protobuf decodes back to the same
//!   request, every span kept, with both decoders agreeing span by span;
//! - serialized as OTLP JSON (opentelemetry-proto's serde) it decodes back to the same
//!   request too;
//! - the fuzz seeds and every input the fuzzers ever flagged (`fuzz/corpus`, and the
//!   regressions below) pass the same checks the fuzz targets run (`fuzz/oracle.rs`).

mod common;
#[path = "../fuzz/oracle.rs"]
mod oracle;

use cerflow::decode::{self, lazy, Format};
use common::gen::{a_request, damage, damaged};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oracle::Outcome;
use proptest::prelude::*;
use prost::Message;
use std::path::Path;

/// Every decode function on `bytes`, as protobuf and as JSON; none may panic.
fn decode_everything(bytes: &[u8]) {
    for f in [Format::Protobuf, Format::Json] {
        let _ = decode::traces(bytes, f).map(|r| decode::span_count(&r));
        let _ = decode::metrics(bytes, f).map(|r| decode::data_point_count(&r));
        let _ = decode::logs(bytes, f).map(|r| decode::log_record_count(&r));
    }
    if let Ok(r) = lazy::decode_traces(bytes) {
        for s in r.spans() {
            let _ = (
                s.invalid_reason(),
                s.span_attrs().len(),
                s.event_names().len(),
            );
        }
    }
}

/// The first line where the pretty Debug forms of `a` and `b` differ, with context.
fn first_difference<T: std::fmt::Debug>(a: &T, b: &T) -> String {
    let (a, b) = (format!("{a:#?}"), format!("{b:#?}"));
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    match (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        Some(i) => format!(
            "line {i}: {:?} became {:?} (after {:?})",
            a.get(i),
            b.get(i),
            &a[i.saturating_sub(3)..i]
        ),
        None => "no difference in Debug form".into(),
    }
}

fn span_total(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

// ------------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
        prop_assert!(oracle::check_protobuf(&bytes).is_ok(), "{:?}", oracle::check_protobuf(&bytes));
        prop_assert!(oracle::check_json(&bytes).is_ok(), "{:?}", oracle::check_json(&bytes));
    }

    #[test]
    fn random_json_like_text_never_panics(text in r#"[\[\]{}":,0-9a-zA-Z\\ .-]{0,200}"#) {
        decode_everything(text.as_bytes());
        prop_assert!(oracle::check_json(text.as_bytes()).is_ok());
    }

    #[test]
    fn protobuf_round_trip_keeps_every_span(req in a_request(false)) {
        let bytes = req.encode_to_vec();
        let back = decode::traces(&bytes, Format::Protobuf).expect("prost decodes its own encoding");
        // Byte equality: equal fields, NaN doubles included.
        prop_assert_eq!(back.encode_to_vec(), bytes.clone());
        prop_assert_eq!(decode::span_count(&back) as usize, span_total(&req));
        let l = lazy::decode_traces(&bytes).expect("the lazy decoder accepts a valid request");
        prop_assert_eq!(l.span_count(), span_total(&req));
        for (ls, ps) in l.spans().zip(oracle::prost_spans(&req)) {
            prop_assert_eq!(ls.trace_id(), &ps.span.trace_id[..]);
            prop_assert_eq!(ls.span_id(), &ps.span.span_id[..]);
            prop_assert_eq!(ls.invalid_reason(), decode::invalid_reason(ps.span));
        }
        prop_assert_eq!(oracle::check_protobuf(&bytes), Ok(Outcome::Accepted { spans: span_total(&req) }));
    }

    #[test]
    fn corrupted_protobuf_never_panics_and_decoders_agree(req in a_request(false), d in prop::collection::vec(damage(), 1..3)) {
        let bytes = d.iter().fold(req.encode_to_vec(), damaged);
        decode_everything(&bytes);
        if let Err(e) = oracle::check_protobuf(&bytes) {
            return Err(TestCaseError::fail(format!("{e}\ndamage {d:?}\nbytes {bytes:02x?}")));
        }
    }

    #[test]
    fn json_round_trip_keeps_every_span(req in a_request(true)) {
        let text = serde_json::to_vec(&req).expect("serializable");
        let back = decode::traces(&text, Format::Json)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text))))?;
        prop_assert_eq!(decode::span_count(&back) as usize, span_total(&req));
        // Byte equality of the protobuf encodings: doubles must come back bit for bit
        // (`json_doubles_are_parsed_exactly` below), -0.0 included.
        prop_assert!(
            back.encode_to_vec() == req.encode_to_vec(),
            "JSON round trip changed the request: {}\n{}",
            first_difference(&req, &back),
            String::from_utf8_lossy(&text)
        );
        prop_assert_eq!(oracle::check_json(&text), Ok(Outcome::Accepted { spans: span_total(&req) }));
    }

    #[test]
    fn corrupted_json_never_panics(req in a_request(true), d in prop::collection::vec(damage(), 1..3)) {
        let text = serde_json::to_vec(&req).expect("serializable");
        let bytes = d.iter().fold(text, damaged);
        decode_everything(&bytes);
        if let Err(e) = oracle::check_json(&bytes) {
            return Err(TestCaseError::fail(format!("{e}\ndamage {d:?}\n{}", String::from_utf8_lossy(&bytes))));
        }
    }
}

// ------------------------------------------------- what OTLP JSON cannot carry

/// `string_value_strindex` survives protobuf but not OTLP JSON: opentelemetry-proto
/// serializes it as `stringValueStrindex` and its deserializer ignores that key, so
/// the value comes back empty. This is why the JSON generator leaves it out. cerflow
/// only reads OTLP JSON (and never reads that field), so no user sees it; an
/// `AnyValue` with no value, on the other hand, round-trips (as `{}`).
#[test]
fn json_lossy_values() {
    let with_value = |value: Option<any_value::Value>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes: vec![KeyValue {
                        key: "k".into(),
                        value: Some(AnyValue { value }),
                        key_strindex: 0,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let empty = serde_json::to_vec(&with_value(None)).expect("serializable");
    assert_eq!(
        decode::traces(&empty, Format::Json).expect("valid OTLP JSON"),
        with_value(None)
    );
    let strindex = serde_json::to_vec(&with_value(Some(any_value::Value::StringValueStrindex(7))))
        .expect("serializable");
    let back = decode::traces(&strindex, Format::Json).expect("valid OTLP JSON");
    assert_eq!(
        back,
        with_value(None),
        "string_value_strindex now round-trips ({}): widen the JSON generator",
        String::from_utf8_lossy(&strindex)
    );
}

/// Regression (FUZZING.md, finding 1; fixed by serde_json's `float_roundtrip`): the
/// JSON decoder parsed `doubleValue`s with serde_json's default, not correctly
/// rounded, float parser, so a double in its shortest round-trip form, as every SDK
/// writes it, could decode to a neighbouring double, and a rule comparing the
/// attribute with the same literal could disagree with what the sender meant.
#[test]
fn json_doubles_are_parsed_exactly() {
    // The first two were found by `json_round_trip_keeps_every_span` (1 and 2 ULP off),
    // the third by the otlp_json fuzz target (fuzz/regressions/otlp_json/crash-5db3...).
    for text in [
        "-6.826125015034501e-15",
        "-1.0122217346311603e239",
        "129E95",
    ] {
        let want: f64 = text.parse().expect("a double");
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{{"doubleValue":{text}}}}}]}}]}}]}}]}}"#
        );
        let req = decode::traces(body.as_bytes(), Format::Json).expect("valid OTLP JSON");
        let got = match &req.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref())
        {
            Some(any_value::Value::DoubleValue(d)) => *d,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{text} decoded as {got:e}, {} ULP off",
            got.to_bits().abs_diff(want.to_bits())
        );
    }
}

// -------------------------------------------- the fuzz corpus and its regressions

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    files(&dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable seed");
            (p.display().to_string(), bytes)
        })
        .collect()
}

/// The SDK captures decode with every span, in both formats, and agree.
#[test]
fn sdk_seed_corpus_decodes() {
    let pb = corpus("otlp_protobuf");
    let js = corpus("otlp_json");
    assert!(
        pb.len() >= 5 && pb.len() == js.len(),
        "seeds captured by fuzz/capture_seeds.py"
    );
    for ((pname, p), (jname, j)) in pb.iter().zip(&js) {
        let Ok(Outcome::Accepted { spans }) = oracle::check_protobuf(p) else {
            panic!("{pname}: {:?}", oracle::check_protobuf(p));
        };
        assert!(spans > 0, "{pname} holds spans");
        assert_eq!(
            oracle::check_json(j),
            Ok(Outcome::Accepted { spans }),
            "{jname} is {pname} in OTLP JSON"
        );
        let from_pb = decode::traces(p, Format::Protobuf).expect("valid");
        let from_json = decode::traces(j, Format::Json).expect("valid");
        assert_eq!(from_pb, from_json, "{jname} decodes to what {pname} does");
    }
}

#[test]
fn config_seed_corpus_is_valid() {
    for (name, text) in corpus("config") {
        let text = String::from_utf8(text).expect("UTF-8");
        assert_eq!(oracle::check_config(&text), Ok(true), "{name}");
    }
}

/// Inputs that once failed a fuzz target (`fuzz/regressions/<target>/`, the crash
/// files libFuzzer wrote), replayed through the same checks, with what each one found
/// and the outcome it must now have.
#[test]
fn fuzz_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut seen = 0;
    for (target, check) in [
        (
            "otlp_protobuf",
            oracle::check_protobuf as fn(&[u8]) -> Result<Outcome, String>,
        ),
        ("otlp_json", oracle::check_json),
    ] {
        let dir = dir.join(target);
        if !dir.is_dir() {
            continue;
        }
        for p in files(&dir) {
            let input = std::fs::read(&p).expect("readable");
            seen += 1;
            if let Err(e) = check(&input) {
                panic!("{}: {e}", p.display());
            }
        }
    }
    assert!(seen >= 1, "the committed crash inputs are replayed");
}

/// Regression (FUZZING.md, finding 4; found by the `config` fuzz target, round 2,
/// after 1.9 million executions; fixed): `parse_duration` (src/config/decode.rs) added
/// each component of a duration as `(number * unit_ns).round() as u128`; a component
/// too large for u128 saturated to `u128::MAX`, and adding it to the components before
/// it overflowed. A debug build panicked ("attempt to add with overflow": `cerflow
/// validate` exited 101); a release build wrapped, and accepted
/// `1s99999999999999999999999999999999999999999s` as a latency threshold of 1 s - 1 ns.
/// Each must be refused with a problem at its key.
#[test]
fn config_duration_overflow_is_an_error() {
    for text in [
        "defaults:\n  latency_threshold: 1s99999999999999999999999999999999999999999s\n",
        "defaults:\n  latency_threshold: 1s340282366920938463463374607431768211455ns\n",
        "windows:\n  sizes: [1m, 1h99999999999999999999999999999999999999d]\n",
    ] {
        let got = std::panic::catch_unwind(|| {
            cerflow::config::Config::parse(text, "regression.yaml", &|_| None).map(|_| ())
        });
        match got {
            Err(_) => panic!("Config::parse panicked on {text:?}"),
            Ok(Ok(())) => panic!("Config::parse accepted {text:?}"),
            Ok(Err(e)) => assert!(e.to_string().contains("invalid duration"), "{text:?}: {e}"),
        }
    }
    // The crash input the fuzzer wrote (examples/shop.yaml, mutated).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/config");
    for p in files(&dir) {
        let text = String::from_utf8(std::fs::read(&p).expect("readable")).expect("UTF-8");
        let got = std::panic::catch_unwind(|| oracle::check_config(&text));
        assert!(matches!(got, Ok(Ok(_))), "{}: {got:?}", p.display());
    }
}
