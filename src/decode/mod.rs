//! Decode: OTLP protobuf and JSON request bodies into prost structs, and the
//! [`SpanView`] the match stage reads them through.

use crate::span::{AttrValue, SpanView};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

pub mod lazy;

pub use crate::receiver::consumer::Format;

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    format: Format,
) -> Result<M, String> {
    match format {
        Format::Protobuf => M::decode(body).map_err(|e| format!("invalid OTLP protobuf: {e}")),
        // Bodies with a `null` take the slower way through a Value tree; SDKs send none.
        Format::Json if contains_null(body) => {
            let mut v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("invalid OTLP JSON: {e}"))?;
            strip_nulls(&mut v);
            serde_json::from_value(v).map_err(|e| format!("invalid OTLP JSON: {e}"))
        }
        Format::Json => serde_json::from_slice(body).map_err(|e| format!("invalid OTLP JSON: {e}")),
    }
}

fn contains_null(body: &[u8]) -> bool {
    body.windows(4).any(|w| w == b"null")
}

/// The protobuf JSON mapping reads `null` as the field's default; serde's derive would
/// refuse it, so null members are dropped before decoding. Depth is bounded by
/// serde_json's own recursion limit (128) on the way in.
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
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

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<AttrValue<'a>> {
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
