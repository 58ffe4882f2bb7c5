//! Decode: OTLP protobuf and JSON request bodies into prost structs (the full decoders,
//! used for metrics and logs and as the reference), the lazy trace decoders for both
//! formats ([`lazy`], [`json`]), and the [`SpanView`] the match stage reads spans through.

use crate::span::{AttrValue, SpanView};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

pub mod arena;
pub mod json;
pub mod lazy;

pub use crate::receiver::consumer::Format;

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    format: Format,
) -> Result<M, String> {
    match format {
        Format::Protobuf => M::decode(body).map_err(|e| format!("invalid OTLP protobuf: {e}")),
        Format::Json => {
            let text = json_text(body)?;
            match serde_json::from_str(text) {
                Ok(m) => Ok(m),
                // `null` members, enum names and repeated fields take the slower way
                // through a Value tree; SDKs send none of them, hand-rolled clients might.
                Err(_) => {
                    let Unique(mut v) = serde_json::from_str(text)
                        .map_err(|e| format!("invalid OTLP JSON: {e}"))?;
                    normalize(&mut v);
                    serde_json::from_value(v).map_err(|e| format!("invalid OTLP JSON: {e}"))
                }
            }
        }
    }
}

/// The body as text: JSON is UTF-8 (RFC 8259), checked once for the whole body.
pub(crate) fn json_text(body: &[u8]) -> Result<&str, String> {
    // The check reads every byte of a ~1 MB body per 1,000 spans: simdutf8's SIMD check
    // costs about a third of std's instructions; a body it refuses goes to std for a
    // message that says where.
    simdutf8::basic::from_utf8(body)
        .or_else(|_| std::str::from_utf8(body))
        .map_err(|e| format!("invalid OTLP JSON: the body is not UTF-8 ({e})"))
}

/// A JSON value whose objects repeat no key: the Value tree would keep the last of a
/// repeated field, which serde's derive (and Go's protojson) refuse.
struct Unique(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique(serde_json::Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Unique, A::Error> {
        let mut out = Vec::new();
        while let Some(Unique(v)) = a.next_element()? {
            out.push(v);
        }
        Ok(Unique(out.into()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Unique, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = m.next_key::<String>()? {
            let Unique(v) = m.next_value()?;
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("duplicate field `{k}`")));
            }
            out.insert(k, v);
        }
        Ok(Unique(out.into()))
    }
}

/// What the protobuf JSON mapping allows and serde's derive refuses: a `null` member is
/// the field's default, so it is dropped; an enum may be written as its name, so known
/// names become their numbers (as the OpenTelemetry Collector reads them). Depth is bounded by
/// serde_json's own recursion limit (128) on the way in.
fn normalize(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            for (k, x) in m.iter_mut() {
                match x {
                    serde_json::Value::String(name) => {
                        if let Some(n) = enum_number(k, name) {
                            *x = n.into();
                        }
                    }
                    _ => normalize(x),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// The number of enum value `name` of the field `key`. Keys are the schema's member
/// names, never user data (attribute keys are values), so the key alone says the enum.
fn enum_number(key: &str, name: &str) -> Option<i32> {
    use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
    match key {
        "kind" => SpanKind::from_str_name(name).map(|e| e as i32),
        "code" => StatusCode::from_str_name(name).map(|e| e as i32),
        "aggregationTemporality" => AggregationTemporality::from_str_name(name).map(|e| e as i32),
        "severityNumber" => SeverityNumber::from_str_name(name).map(|e| e as i32),
        _ => None,
    }
}

/// Why a lazy decoder refused a trace request.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// More spans than `max_spans_per_request`.
    TooManySpans,
    /// Not a valid request; the message says why and where.
    Malformed(String),
}

/// Decodes a trace request in place, protobuf ([`lazy`]) or JSON ([`json`]), keeping at
/// most `max_attrs` attributes per span and refusing more than `max_spans` spans.
/// `arena` holds what JSON cannot lend from the body (unescaped strings, decoded ids);
/// `lists` are filled with the spans and attributes ([`lazy::TraceRequest::into_lists`]
/// gives them back for the next request).
pub fn traces_lazy<'a>(
    body: &'a [u8],
    format: Format,
    arena: &'a bumpalo::Bump,
    lists: lazy::Lists,
    max_attrs: usize,
    max_spans: usize,
) -> Result<lazy::TraceRequest<'a>, Refusal> {
    match format {
        Format::Protobuf => {
            lazy::decode_traces_in(body, lists, max_attrs, max_spans).map_err(|e| {
                if e.what == lazy::TOO_MANY_SPANS {
                    Refusal::TooManySpans
                } else {
                    Refusal::Malformed(format!("invalid OTLP protobuf: {e}"))
                }
            })
        }
        Format::Json => {
            json::decode_traces_in(body, arena, lists, max_attrs, max_spans).map_err(|e| match e {
                json::JsonError::TooManySpans => Refusal::TooManySpans,
                json::JsonError::Invalid(m) => Refusal::Malformed(m),
            })
        }
    }
}

pub fn traces(body: &[u8], format: Format) -> Result<ExportTraceServiceRequest, String> {
    decode(body, format)
}

pub fn metrics(body: &[u8], format: Format) -> Result<ExportMetricsServiceRequest, String> {
    decode(body, format)
}

pub fn logs(body: &[u8], format: Format) -> Result<ExportLogsServiceRequest, String> {
    decode(body, format)
}

pub fn span_count(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

pub fn data_point_count(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

pub fn log_record_count(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

/// The value of attribute `key` in a prost attribute list, as rules read it.
pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<AttrValue<'a>> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    Some(match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        _ => AttrValue::Other,
    })
}

pub fn service_name(resource_attrs: &[KeyValue]) -> &str {
    match find(resource_attrs, "service.name") {
        Some(AttrValue::Str(s)) => s,
        _ => "unknown_service",
    }
}

/// A prost-decoded span with its resource.
pub struct ProstSpan<'a> {
    pub resource: &'a [KeyValue],
    pub service: &'a str,
    pub span: &'a Span,
}

impl SpanView for ProstSpan<'_> {
    fn service_name(&self) -> &str {
        self.service
    }
    fn name(&self) -> &str {
        &self.span.name
    }
    fn kind(&self) -> i32 {
        self.span.kind
    }
    fn status_code(&self) -> i32 {
        self.span.status.as_ref().map_or(0, |s| s.code)
    }
    fn start_ns(&self) -> u64 {
        self.span.start_time_unix_nano
    }
    fn end_ns(&self) -> u64 {
        self.span.end_time_unix_nano
    }
    fn span_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        find(&self.span.attributes, key)
    }
    fn resource_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        find(self.resource, key)
    }
    fn any_event(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
        self.span.events.iter().any(|e| test(&e.name))
    }
    fn trace_id(&self) -> &[u8] {
        &self.span.trace_id
    }
    fn span_id(&self) -> &[u8] {
        &self.span.span_id
    }
    fn parent_span_id(&self) -> &[u8] {
        &self.span.parent_span_id
    }
    fn trace_state(&self) -> &str {
        &self.span.trace_state
    }
}

/// A prost-decoded log record that has an event name (the OTLP `event_name` field, or
/// else the `event.name` attribute), seen as the rules see spans: its attributes, then
/// its resource's; no span name, kind or status.
pub struct ProstEvent<'a> {
    pub resource: &'a [KeyValue],
    pub service: &'a str,
    pub record: &'a opentelemetry_proto::tonic::logs::v1::LogRecord,
    pub name: &'a str,
}

impl<'a> ProstEvent<'a> {
    /// The record as an event, or `None` when it has no event name.
    pub fn of(
        resource: &'a [KeyValue],
        service: &'a str,
        record: &'a opentelemetry_proto::tonic::logs::v1::LogRecord,
    ) -> Option<ProstEvent<'a>> {
        let name = if record.event_name.is_empty() {
            match find(&record.attributes, "event.name") {
                Some(AttrValue::Str(s)) if !s.is_empty() => s,
                _ => return None,
            }
        } else {
            &record.event_name
        };
        Some(ProstEvent {
            resource,
            service,
            record,
            name,
        })
    }

    /// When the event happened: its time, else when it was observed (0 when neither).
    pub fn time_ns(&self) -> u64 {
        match self.record.time_unix_nano {
            0 => self.record.observed_time_unix_nano,
            t => t,
        }
    }
}

impl SpanView for ProstEvent<'_> {
    fn service_name(&self) -> &str {
        self.service
    }
    fn name(&self) -> &str {
        ""
    }
    fn kind(&self) -> i32 {
        0
    }
    fn status_code(&self) -> i32 {
        0
    }
    fn start_ns(&self) -> u64 {
        self.time_ns()
    }
    fn end_ns(&self) -> u64 {
        self.time_ns()
    }
    fn span_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        find(&self.record.attributes, key)
    }
    fn resource_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        find(self.resource, key)
    }
    fn any_event(&self, _: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
    fn event_name(&self) -> Option<&str> {
        Some(self.name)
    }
}

/// Why a span cannot be used; `None` when it is valid.
pub fn invalid_reason(span: &Span) -> Option<&'static str> {
    invalid_parts(
        &span.trace_id,
        &span.span_id,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
    )
}

/// [`invalid_reason`] on the fields it reads, for decoders that do not build a [`Span`].
pub fn invalid_parts(
    trace_id: &[u8],
    span_id: &[u8],
    start_ns: u64,
    end_ns: u64,
) -> Option<&'static str> {
    if trace_id.len() != 16 || trace_id.iter().all(|b| *b == 0) {
        return Some("trace_id must be 16 bytes and not all zero");
    }
    if span_id.len() != 8 || span_id.iter().all(|b| *b == 0) {
        return Some("span_id must be 8 bytes and not all zero");
    }
    if end_ns == 0 {
        return Some("end time is missing");
    }
    // An unset start would make a 56-year span: slow, and every quantile wrong.
    if start_ns == 0 {
        return Some("start time is missing");
    }
    if end_ns < start_ns {
        return Some("end time is before start time");
    }
    None
}
