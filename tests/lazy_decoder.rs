//! The lazy protobuf decoder against prost, the reference: for random requests and
//! adversarial mutations of them, both decoders reject, or both accept and agree on
//! every field the pipeline reads, span by span. Also: the ingest path gives the same
//! outcome and the same accounting whichever decoder read the request.

mod common;

use cerflow::decode::lazy::{self, Attr};
use cerflow::decode::{invalid_reason, service_name, ProstSpan};
use cerflow::span::{AttrKey, AttrValue, SpanView};
use common::gen::{a_request, a_resource, a_span, bytes, damage, damaged};
use common::otlp::{field, put_varint};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Status;
use proptest::prelude::*;
use prost::Message;

// ------------------------------------------------- raw encodings, still valid

fn unknown() -> impl Strategy<Value = Vec<u8>> {
    (50u32..60, 0u8..5, any::<u64>(), bytes(6)).prop_map(|(tag, kind, v, b)| {
        let mut out = Vec::new();
        let key = |wt: u64| (u64::from(tag) << 3) | wt;
        match kind {
            0 => {
                put_varint(&mut out, key(0));
                put_varint(&mut out, v);
            }
            1 => {
                put_varint(&mut out, key(1));
                out.extend_from_slice(&v.to_le_bytes());
            }
            2 => field(&mut out, tag, &b),
            3 => {
                put_varint(&mut out, key(5));
                out.extend_from_slice(&(v as u32).to_le_bytes());
            }
            _ => {
                // A group holding a varint and a nested group.
                put_varint(&mut out, key(3));
                put_varint(&mut out, 61 << 3);
                put_varint(&mut out, v);
                put_varint(&mut out, (62 << 3) | 3);
                put_varint(&mut out, (62 << 3) | 4);
                put_varint(&mut out, key(4));
            }
        }
        out
    })
}

/// A span message made of two encoded spans back to back (protobuf merges them: the
/// second's scalars win, repeated fields append, `status` merges) and unknown fields.
fn raw_span() -> impl Strategy<Value = Vec<u8>> {
    (
        a_span(false),
        prop::option::of(a_span(false)),
        prop::collection::vec(unknown(), 0..2),
        any::<bool>(),
    )
        .prop_map(|(a, b, unknowns, front)| {
            let mut out = Vec::new();
            if front {
                unknowns.iter().for_each(|u| out.extend_from_slice(u));
            }
            out.extend_from_slice(&a.encode_to_vec());
            if let Some(mut b) = b {
                // Keep the merge interesting: b sometimes sets only a status without a code.
                if b.kind % 2 == 0 {
                    b.status = Some(Status {
                        message: "second".into(),
                        code: 0,
                    });
                }
                out.extend_from_slice(&b.encode_to_vec());
            }
            if !front {
                unknowns.iter().for_each(|u| out.extend_from_slice(u));
            }
            out
        })
}

/// A request whose ResourceSpans put `resource` after the spans, twice, or not at all,
/// with unknown fields between them.
fn raw_request() -> impl Strategy<Value = Vec<u8>> {
    let rs = (
        prop::collection::vec(a_resource(false), 0..3),
        prop::collection::vec(prop::collection::vec(raw_span(), 0..3), 0..3),
        prop::collection::vec(unknown(), 0..2),
        0usize..3,
    )
        .prop_map(|(resources, scopes, unknowns, order)| {
            let mut res = Vec::new();
            for r in &resources {
                field(&mut res, 1, &r.encode_to_vec());
            }
            let mut spans = Vec::new();
            for scope in &scopes {
                let mut ss = Vec::new();
                for s in scope {
                    field(&mut ss, 2, s);
                }
                field(&mut spans, 2, &ss);
            }
            let mut out = Vec::new();
            match order {
                0 => {
                    out.extend_from_slice(&res);
                    out.extend_from_slice(&spans);
                }
                1 => {
                    out.extend_from_slice(&spans);
                    out.extend_from_slice(&res);
                }
                _ => {
                    let half = res.len() / 2;
                    out.extend_from_slice(&res[..half]);
                    out.extend_from_slice(&spans);
                    out.extend_from_slice(&res[half..]);
                }
            }
            unknowns.iter().for_each(|u| out.extend_from_slice(u));
            out
        });
    prop::collection::vec(rs, 0..3).prop_map(|list| {
        let mut out = Vec::new();
        for rs in &list {
            field(&mut out, 1, rs);
        }
        out
    })
}

// ------------------------------------------------------------ the comparison

fn prost_value(kv: &KeyValue) -> AttrValue<'_> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        _ => AttrValue::Other,
    }
}

/// Equality that treats NaN as equal to NaN with the same bits.
fn same(a: Option<AttrValue<'_>>, b: Option<AttrValue<'_>>) -> bool {
    match (a, b) {
        (Some(AttrValue::Double(x)), Some(AttrValue::Double(y))) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    }
}

fn same_attrs(lazy: &[Attr<'_>], prost: &[KeyValue]) -> Result<(), String> {
    if lazy.len() != prost.len() {
        return Err(format!(
            "{} attributes, prost has {}",
            lazy.len(),
            prost.len()
        ));
    }
    for (l, p) in lazy.iter().zip(prost) {
        if l.key != p.key || !same(Some(l.value), Some(prost_value(p))) {
            return Err(format!(
                "attribute {:?}={:?}, prost has {:?}={:?}",
                l.key,
                l.value,
                p.key,
                prost_value(p)
            ));
        }
    }
    Ok(())
}

fn compare(bytes: &[u8]) -> Result<(), String> {
    let reference = ExportTraceServiceRequest::decode(bytes);
    let ours = lazy::decode_traces(bytes);
    let (p, l) = match (reference, ours) {
        (Err(_), Err(_)) => return Ok(()),
        (Ok(_), Err(e)) => return Err(format!("prost accepts, the lazy decoder rejects: {e}")),
        (Err(e), Ok(_)) => return Err(format!("the lazy decoder accepts, prost rejects: {e}")),
        (Ok(p), Ok(l)) => (p, l),
    };
    let mut expected = Vec::new();
    for rs in &p.resource_spans {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let service = service_name(resource);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                expected.push(ProstSpan {
                    resource,
                    service,
                    span,
                });
            }
        }
    }
    if l.span_count() != expected.len()
        || cerflow::decode::span_count(&p) as usize != expected.len()
    {
        return Err(format!(
            "{} spans, prost has {}",
            l.span_count(),
            expected.len()
        ));
    }
    if l.resource_count() != p.resource_spans.len() {
        return Err(format!(
            "{} resources, prost has {}",
            l.resource_count(),
            p.resource_spans.len()
        ));
    }
    // One key per name for the whole request, as a config's are: lookups remember
    // where a key was by its id, and the next spans are answered from that.
    let mut keyed: std::collections::HashMap<String, AttrKey> = Default::default();
    for (i, (ls, ps)) in l.spans().zip(&expected).enumerate() {
        let at = |what: String| format!("span {i}: {what}");
        let s = ps.span;
        let checks: [(&str, bool); 10] = [
            ("service", ls.service_name() == ps.service_name()),
            ("name", ls.name() == ps.name()),
            ("kind", ls.kind() == ps.kind()),
            ("status", ls.status_code() == ps.status_code()),
            ("start", ls.start_ns() == ps.start_ns()),
            ("end", ls.end_ns() == ps.end_ns()),
            ("trace_id", ls.trace_id() == &s.trace_id[..]),
            ("span_id", ls.span_id() == &s.span_id[..]),
            ("invalid_reason", ls.invalid_reason() == invalid_reason(s)),
            ("entry point", ls.is_entry_point() == ps.is_entry_point()),
        ];
        for (what, ok) in checks {
            if !ok {
                return Err(at(format!("{what} differs")));
            }
        }
        same_attrs(ls.span_attrs(), &s.attributes).map_err(|e| at(format!("span {e}")))?;
        same_attrs(ls.resource_attrs(), ps.resource).map_err(|e| at(format!("resource {e}")))?;
        let names: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
        if ls.event_names() != &names[..] {
            return Err(at(format!(
                "events {:?}, prost has {names:?}",
                ls.event_names()
            )));
        }
        // The lookups rules and cohorts use, for every key present and a few absent.
        let keys = s
            .attributes
            .iter()
            .chain(ps.resource)
            .map(|kv| kv.key.as_str())
            .chain(["service.name", "http.route", "absent", ""]);
        for key in keys {
            // By name, and by a key whose filter bit was worked out at config load (the
            // lazy span answers those from its key filter when the bit is clear).
            let k: &AttrKey = keyed
                .entry(key.to_string())
                .or_insert_with(|| AttrKey::new(key));
            if !same(ls.attr(key), ps.attr(key))
                || !same(ls.span_attr(key), ps.span_attr(key))
                || !same(ls.resource_attr(key), ps.resource_attr(key))
                || !same(ls.attr_key(k), ps.attr(key))
                || !same(ls.span_attr_key(k), ps.span_attr(key))
                || !same(ls.resource_attr_key(k), ps.resource_attr(key))
            {
                return Err(at(format!(
                    "lookup of {key:?}: {:?}, prost {:?}",
                    ls.attr(key),
                    ps.attr(key)
                )));
            }
            if ps.attr(key).is_some() && ls.key_filter() & k.bit() == 0 {
                return Err(at(format!("the key filter rules out present key {key:?}")));
            }
        }
        for probe in names.iter().copied().chain(["exception", ""]) {
            if ls.any_event(&mut |n| n == probe) != ps.any_event(&mut |n| n == probe) {
                return Err(at(format!("any_event({probe:?}) differs")));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_prost_on_random_requests(req in a_request(false), m in damage()) {
        let bytes = damaged(req.encode_to_vec(), &m);
        if let Err(e) = compare(&bytes) {
            return Err(TestCaseError::fail(format!("{e}\nmutation {m:?}\nbytes {bytes:02x?}")));
        }
    }

    #[test]
    fn agrees_with_prost_on_merged_fields_and_unknown_fields(raw in raw_request(), m in damage()) {
        let bytes = damaged(raw, &m);
        if let Err(e) = compare(&bytes) {
            return Err(TestCaseError::fail(format!("{e}\nmutation {m:?}\nbytes {bytes:02x?}")));
        }
    }

    #[test]
    fn agrees_with_prost_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        // Mostly rejected by both; what matters is that neither accepts alone.
        if let Err(e) = compare(&bytes) {
            return Err(TestCaseError::fail(format!("{e}\nbytes {bytes:02x?}")));
        }
    }
}

// --------------------------------------------------------------- edge cases

fn nested_array(depth: usize) -> Vec<u8> {
    // AnyValue{array_value: ArrayValue{values: [AnyValue{...}]}} nested `depth` times.
    let mut inner = Vec::new();
    field(&mut inner, 1, b"leaf");
    for _ in 0..depth {
        let mut array = Vec::new();
        field(&mut array, 1, &inner);
        let mut any = Vec::new();
        field(&mut any, 5, &array);
        inner = any;
    }
    let mut kv = Vec::new();
    field(&mut kv, 1, b"deep");
    field(&mut kv, 2, &inner);
    let mut span = Vec::new();
    field(&mut span, 9, &kv);
    let mut ss = Vec::new();
    field(&mut ss, 2, &span);
    let mut rs = Vec::new();
    field(&mut rs, 2, &ss);
    let mut req = Vec::new();
    field(&mut req, 1, &rs);
    req
}

#[test]
fn agrees_with_prost_at_the_recursion_limit() {
    let mut seen = (false, false);
    for depth in 40..=52 {
        let bytes = nested_array(depth);
        compare(&bytes).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
        match ExportTraceServiceRequest::decode(&bytes[..]) {
            Ok(_) => seen.0 = true,
            Err(_) => seen.1 = true,
        }
    }
    assert_eq!(seen, (true, true), "the depths tried straddle the limit");
}

#[test]
fn agrees_with_prost_on_varint_edges() {
    // Request field 1 (LEN) with over-long and overflowing length varints.
    let cases: [&[u8]; 6] = [
        &[0x0a, 0x80, 0x00],
        &[
            0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ],
        &[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        &[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ],
        &[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
        ],
        // A key above u32::MAX.
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
    ];
    for c in cases {
        compare(c).unwrap_or_else(|e| panic!("{c:02x?}: {e}"));
    }
}

// ------------------------------------------------- the ingest path, both ways

mod ingest {
    use super::*;
    use cerflow::config::Config;
    use cerflow::decode::Format;
    use cerflow::ingest::Ingest;
    use cerflow::journey::Journeys;
    use cerflow::pipeline::Pipeline;
    use cerflow::telemetry::{Reason, Telemetry, Transport};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    const CONFIG: &str = r#"
cohorts:
  keys: [cloud.region, app.plan.tier]
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
    incorrect: { event: exception }
  - name: routed
    match: { attributes: [{ key: http.route, exists: true }] }
    failure: { attributes: [{ key: http.response.status_code, gte: 500 }] }
  - name: by-service
    match: { service: svc-1 }
"#;

    struct Side {
        ingest: Ingest,
        tel: Arc<Telemetry>,
        _pipeline: Pipeline,
    }

    fn side() -> Side {
        let cfg = Config::parse(CONFIG, "test.yaml", &|_| None).expect("the test config is valid");
        let tel = Arc::new(Telemetry::default());
        let journeys = Arc::new(Journeys::new(&cfg));
        let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
        let ingest = Ingest::new(&cfg, journeys, pipeline.input(), tel.clone());
        Side {
            ingest,
            tel,
            _pipeline: pipeline,
        }
    }

    fn counters(t: &Telemetry) -> Vec<u64> {
        let mut v = vec![
            t.received_spans(Transport::Grpc),
            t.unmatched_spans.load(Ordering::Relaxed),
            t.late_spans.load(Ordering::Relaxed),
            t.clamped_spans.load(Ordering::Relaxed),
        ];
        for r in [Reason::Malformed, Reason::InvalidSpan, Reason::QueueFull] {
            v.push(t.refused_spans(r));
            v.push(t.refused_requests(r));
        }
        v
    }

    /// Spans with timestamps near now, so they are neither late nor clamped by default.
    fn recent(mut req: ExportTraceServiceRequest, shift: u64) -> ExportTraceServiceRequest {
        let now = cerflow::clock::now_unix_ns();
        for s in req
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans)
        {
            if s.end_time_unix_nano % 4 != 0 {
                let d = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) % 5_000_000_000;
                s.end_time_unix_nano = now - (shift % 30_000_000_000);
                s.start_time_unix_nano = s.end_time_unix_nano.saturating_sub(d);
            }
        }
        req
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_lazy_path_accounts_like_the_prost_path(req in a_request(false), shift in any::<u64>(), m in damage()) {
            let bytes = damaged(recent(req, shift).encode_to_vec(), &m);
            let lazy_side = side();
            let prost_side = side();
            let got = lazy_side.ingest.traces_body(&bytes, Format::Protobuf, Transport::Grpc);
            let want = match ExportTraceServiceRequest::decode(&bytes[..]) {
                Ok(r) => prost_side.ingest.traces(&r, Transport::Grpc),
                Err(_) => {
                    prop_assert!(got.is_err(), "prost rejects, ingest accepted: {got:?}");
                    return Ok(());
                }
            };
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(counters(&lazy_side.tel), counters(&prost_side.tel));
        }
    }
}
