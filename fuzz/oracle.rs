//! What the fuzz targets check, shared with `tests/decoder_props.rs` (which includes
//! this file with `#[path]`) so every committed crash input and seed is replayed by
//! `cargo test` through exactly the checks the fuzzer ran.
//!
//! Each `check_*` returns `Err(why)` when a property fails; the fuzz targets panic on
//! it, the tests assert on it. A panic inside cerflow itself is a finding either way.

#![allow(dead_code)]

use cerflow::config::Config;
use cerflow::decode::json::{self, JsonError};
use cerflow::decode::lazy::{self, Attr};
use cerflow::decode::{self, invalid_reason, service_name, Format, ProstSpan};
use cerflow::span::{AttrValue, SpanView};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;

/// The outcome of one body through both protobuf decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Rejected,
    Accepted { spans: usize },
}

fn prost_value(kv: &KeyValue) -> AttrValue<'_> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        _ => AttrValue::Other,
    }
}

/// Equality with NaN equal to itself (same bits).
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

/// Every span of a prost request with its resource, in request order.
pub fn prost_spans(req: &ExportTraceServiceRequest) -> Vec<ProstSpan<'_>> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let service = service_name(resource);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push(ProstSpan {
                    resource,
                    service,
                    span,
                });
            }
        }
    }
    out
}

/// The protobuf path: `decode::traces(_, Protobuf)` (prost, the reference) and
/// `decode::lazy::decode_traces_in` (what ingest runs) accept and reject the same bodies
/// and, when they accept, agree on every field the pipeline reads, span by span. An
/// accepted request also survives a prost re-encode unchanged.
pub fn check_protobuf(bytes: &[u8]) -> Result<Outcome, String> {
    let reference = decode::traces(bytes, Format::Protobuf);
    // As ingest decodes: into lists an earlier request filled and gave back (pooled),
    // here those of a first decode of the same body.
    let lists = lazy::decode_traces(bytes)
        .map(|r| r.into_lists())
        .unwrap_or_default();
    let ours = lazy::decode_traces_in(bytes, lists, usize::MAX, usize::MAX);
    let (p, l) = match (reference, ours) {
        (Err(_), Err(_)) => return Ok(Outcome::Rejected),
        (Ok(_), Err(e)) => return Err(format!("prost accepts, the lazy decoder rejects: {e}")),
        (Err(e), Ok(_)) => return Err(format!("the lazy decoder accepts, prost rejects: {e}")),
        (Ok(p), Ok(l)) => (p, l),
    };
    let n = same_spans(&l, &p, "prost")?;
    // A request prost accepted re-encodes to bytes that decode to the same request.
    let again = p.encode_to_vec();
    match ExportTraceServiceRequest::decode(&again[..]) {
        Ok(q) if q.encode_to_vec() == again => {}
        Ok(_) => return Err("prost re-encode is not stable".into()),
        Err(e) => return Err(format!("prost rejects its own encoding: {e}")),
    }
    if lazy::decode_traces(&again).map(|r| r.span_count()).ok() != Some(n) {
        return Err("the lazy decoder disagrees on prost's re-encoding".into());
    }
    Ok(Outcome::Accepted { spans: n })
}

/// A lazy decoder's request and the full decoder's (`full`, named in messages) agree on
/// every span, span by span, on every field the pipeline reads; returns the span count.
pub fn same_spans(
    l: &lazy::TraceRequest<'_>,
    p: &ExportTraceServiceRequest,
    full: &str,
) -> Result<usize, String> {
    let expected = prost_spans(p);
    if l.span_count() != expected.len() || decode::span_count(p) as usize != expected.len() {
        return Err(format!(
            "{} spans, {full} has {} (span_count says {})",
            l.span_count(),
            expected.len(),
            decode::span_count(p)
        ));
    }
    if l.resource_count() != p.resource_spans.len() {
        return Err(format!(
            "{} resources, {full} has {}",
            l.resource_count(),
            p.resource_spans.len()
        ));
    }
    for (i, (ls, ps)) in l.spans().zip(&expected).enumerate() {
        let at = |what: String| format!("span {i}: {what}");
        let s = ps.span;
        let checks: [(&str, bool); 11] = [
            ("service", ls.service_name() == ps.service_name()),
            ("name", ls.name() == ps.name()),
            ("kind", ls.kind() == ps.kind()),
            ("status", ls.status_code() == ps.status_code()),
            ("start", ls.start_ns() == ps.start_ns()),
            ("end", ls.end_ns() == ps.end_ns()),
            ("trace_id", ls.trace_id() == &s.trace_id[..]),
            ("span_id", ls.span_id() == &s.span_id[..]),
            // Counts weigh each span by its trace state's sampling threshold.
            ("trace_state", ls.trace_state() == s.trace_state),
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
                "events {:?}, {full} has {names:?}",
                ls.event_names()
            )));
        }
        for key in s
            .attributes
            .iter()
            .chain(ps.resource)
            .map(|kv| kv.key.as_str())
            .chain(["service.name", "absent"])
        {
            if !same(ls.attr(key), ps.attr(key)) {
                return Err(at(format!(
                    "lookup of {key:?}: {:?}, {full} {:?}",
                    ls.attr(key),
                    ps.attr(key)
                )));
            }
        }
    }
    Ok(expected.len())
}

/// The JSON path: `decode::traces(_, Json)` (the full decoder, the reference) and
/// `decode::json::decode_traces_in` (what ingest runs) accept and refuse the same bodies
/// and agree on every field the pipeline reads; a request they accept (1) has its span count and per-span validity computable, (2) re-encodes as
/// protobuf to bytes both protobuf decoders accept with the same spans, and
/// (3) survives a serde round trip (serialize, decode again) unchanged, doubles bit
/// for bit.
pub fn check_json(bytes: &[u8]) -> Result<Outcome, String> {
    let arena = json::Bump::new();
    let reference = decode::traces(bytes, Format::Json);
    // As ingest decodes: into lists an earlier request filled and gave back (pooled),
    // here those of a first decode of the same body.
    let lists = json::decode_traces(bytes, &json::Bump::new())
        .map(|r| r.into_lists())
        .unwrap_or_default();
    let ours = json::decode_traces_in(bytes, &arena, lists, usize::MAX, usize::MAX);
    let (req, l) = match (reference, ours) {
        (Err(_), Err(_)) => return Ok(Outcome::Rejected),
        // The known difference (src/decode/json.rs): a message as a JSON array.
        (Ok(_), Err(JsonError::Invalid(e))) if e.contains("invalid type: sequence, expected a") => {
            return Ok(Outcome::Rejected)
        }
        (Ok(_), Err(e)) => {
            return Err(format!(
                "the full JSON decoder accepts, the lazy one refuses: {e}"
            ))
        }
        (Err(e), Ok(_)) => {
            return Err(format!(
                "the lazy JSON decoder accepts, the full one refuses: {e}"
            ))
        }
        (Ok(req), Ok(l)) => (req, l),
    };
    same_spans(&l, &req, "the full JSON decoder")?;
    let spans = prost_spans(&req);
    if decode::span_count(&req) as usize != spans.len() {
        return Err("span_count disagrees with the spans".into());
    }
    for s in &spans {
        let _ = invalid_reason(s.span);
        let _ = (s.service_name(), s.attr("service.name"), s.is_entry_point());
    }
    let pb = req.encode_to_vec();
    match check_protobuf(&pb)? {
        Outcome::Accepted { spans: n } if n == spans.len() => {}
        other => {
            return Err(format!(
                "the protobuf encoding of an accepted JSON request gives {other:?}, want {} spans",
                spans.len()
            ))
        }
    }
    let text = serde_json::to_vec(&req).map_err(|e| format!("cannot serialize: {e}"))?;
    match decode::traces(&text, Format::Json) {
        Ok(again) if again.encode_to_vec() == pb => {}
        Ok(_) => {
            return Err(format!(
                "serde round trip changed the request; re-serialized: {}",
                String::from_utf8_lossy(&text)
            ))
        }
        Err(e) => {
            return Err(format!(
                "serde round trip is rejected: {e}; re-serialized: {}",
                String::from_utf8_lossy(&text)
            ))
        }
    }
    Ok(Outcome::Accepted { spans: spans.len() })
}

/// The config parser never panics, with or without `${env:...}` values, and its
/// errors format. A config it accepts builds its journeys (what start-up does next).
pub fn check_config(text: &str) -> Result<bool, String> {
    let env_none = |_: &str| None;
    let env_some = |k: &str| Some(format!("v-{k}"));
    let mut accepted = false;
    for env in [&env_none as &dyn Fn(&str) -> Option<String>, &env_some] {
        match Config::parse(text, "fuzz", env) {
            Ok(cfg) => {
                accepted = true;
                let _ = cfg.longest_window();
                let _ = cerflow::journey::Journeys::new(&cfg);
            }
            Err(e) => {
                let shown = e.to_string();
                if shown.is_empty() {
                    return Err("an error with no text".into());
                }
            }
        }
    }
    Ok(accepted)
}
