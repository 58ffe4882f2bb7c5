//! OTLP protobuf built by hand: attribute values, spans, whole trace requests, log
//! events (web vitals, frustrations) and logs requests, gzip, and
//! the wire-level pieces that tests splice into deliberately broken messages.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

/// A string attribute value.
pub fn str_value(s: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

/// An attribute with any value, or none.
pub fn kv_any(key: impl Into<String>, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    kv_any(key, str_value(value))
}

/// A resource with only `service.name`.
pub fn service_resource(service: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", service)],
        ..Default::default()
    }
}

/// One trace request: one resource with `service.name = service`, one scope, `spans`.
pub fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(service_resource(service)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `req` with the string attribute `key=value` on every resource (`service.version`, ...).
pub fn with_resource_attr(
    mut req: ExportTraceServiceRequest,
    key: &str,
    value: &str,
) -> ExportTraceServiceRequest {
    for rs in req.resource_spans.iter_mut() {
        rs.resource
            .get_or_insert_with(Resource::default)
            .attributes
            .push(kv(key, value));
    }
    req
}

/// `n` SERVER spans `POST /checkout` of `millis` each, ending 1 s ago; span i has the
/// ids `first_id + i + 1`, so requests built with distinct ranges never share a span.
pub fn checkout_spans(n: usize, first_id: u64, millis: u64) -> Vec<Span> {
    let end = now_ns() - 1_000_000_000;
    (0..n as u64)
        .map(|i| {
            let id = first_id + i + 1;
            Span {
                trace_id: [id.to_be_bytes(), 7u64.to_be_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: "POST /checkout".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: end - millis * 1_000_000,
                end_time_unix_nano: end,
                ..Default::default()
            }
        })
        .collect()
}

/// A span of a hand-built trace: trace `trace` (ids are small numbers, readable in a
/// test), span `id`, parent `parent` (0: a root), ending 1 s ago after `millis`.
pub fn trace_span(
    trace: u64,
    id: u64,
    parent: u64,
    name: &str,
    kind: span::SpanKind,
    millis: u64,
) -> Span {
    let end = now_ns() - 1_000_000_000;
    Span {
        trace_id: [0xabu64.to_be_bytes(), trace.to_be_bytes()].concat(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: end - millis * 1_000_000,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

/// [`trace_span`]'s trace id `trace` as the APIs show it (hex): 0xab, then `trace`.
pub fn trace_hex(trace: u64) -> String {
    format!("{:016x}{trace:016x}", 0xabu64)
}

/// [`trace_span`]'s span id `id` in hex.
pub fn span_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// A CLIENT span of a hand-built trace calling `peer` (`peer.service`).
pub fn call(trace: u64, id: u64, parent: u64, name: &str, millis: u64, peer: &str) -> Span {
    with_attr(
        trace_span(trace, id, parent, name, span::SpanKind::Client, millis),
        "peer.service",
        peer,
    )
}

/// `s` with status ERROR.
pub fn failed(mut s: Span) -> Span {
    s.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        code: opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32,
        ..Default::default()
    });
    s
}

/// `s` with the string attribute `key=value`.
pub fn with_attr(mut s: Span, key: &str, value: &str) -> Span {
    s.attributes.push(kv(key, value));
    s
}

/// The protobuf body of a trace request.
pub fn body(req: &ExportTraceServiceRequest) -> Vec<u8> {
    use prost::Message;
    req.encode_to_vec()
}

/// `data` gzip-compressed (best compression: bombs stay small).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// A protobuf base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: key (wire type 2), length, bytes.
pub fn field(out: &mut Vec<u8>, tag: u32, body: &[u8]) {
    put_varint(out, (u64::from(tag) << 3) | 2);
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// A double attribute.
pub fn kv_f64(key: &str, value: f64) -> KeyValue {
    kv_any(
        key,
        Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(value)),
        }),
    )
}

/// A log record with the event name `name` (the OTLP field) and `attrs`, 1 s ago.
pub fn event(name: &str, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: now_ns() - 1_000_000_000,
        event_name: name.into(),
        attributes: attrs,
        ..Default::default()
    }
}

/// A `browser.web_vital` event of `session` with the vital's name and value.
pub fn web_vital(session: &str, name: &str, value: f64) -> LogRecord {
    event(
        "browser.web_vital",
        vec![
            kv("browser.web_vital.name", name),
            kv_f64("browser.web_vital.value", value),
            kv("session.id", session),
        ],
    )
}

/// One logs request: one resource with `service.name = service`, one scope, `records`.
pub fn logs(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(service_resource(service)),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A number data point of `value` at `time_ns` (cumulative points also take `start_ns`).
pub fn number_point(
    start_ns: u64,
    time_ns: u64,
    value: f64,
    attributes: Vec<KeyValue>,
) -> opentelemetry_proto::tonic::metrics::v1::NumberDataPoint {
    use opentelemetry_proto::tonic::metrics::v1::{number_data_point, NumberDataPoint};
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// A gauge metric.
pub fn gauge_metric(
    name: &str,
    unit: &str,
    points: Vec<opentelemetry_proto::tonic::metrics::v1::NumberDataPoint>,
) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    use opentelemetry_proto::tonic::metrics::v1::{metric, Gauge, Metric};
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// A sum metric, monotonic or not, cumulative or delta.
pub fn sum_metric(
    name: &str,
    unit: &str,
    monotonic: bool,
    cumulative: bool,
    points: Vec<opentelemetry_proto::tonic::metrics::v1::NumberDataPoint>,
) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    use opentelemetry_proto::tonic::metrics::v1::{metric, AggregationTemporality, Metric, Sum};
    let temporality = if cumulative {
        AggregationTemporality::Cumulative
    } else {
        AggregationTemporality::Delta
    };
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

/// An explicit-bounds histogram point of `counts` per bucket of `bounds` (one more count
/// than bounds: the last is the overflow), with `sum`, at `time_ns`.
pub fn histogram_point(
    start_ns: u64,
    time_ns: u64,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
    attributes: Vec<KeyValue>,
) -> opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint {
    opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

/// A histogram metric, cumulative or delta.
pub fn histogram_metric(
    name: &str,
    unit: &str,
    cumulative: bool,
    points: Vec<opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint>,
) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, AggregationTemporality, Histogram, Metric,
    };
    let temporality = if cumulative {
        AggregationTemporality::Cumulative
    } else {
        AggregationTemporality::Delta
    };
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temporality as i32,
        })),
        ..Default::default()
    }
}

/// A delta exponential histogram of one point per `(attributes, count per bucket)`:
/// scale 0 (base 2), positive buckets from index `offset` ((2^i, 2^(i+1)] each), at `time_ns`.
pub fn exponential_metric(
    name: &str,
    unit: &str,
    time_ns: u64,
    offset: i32,
    points: Vec<(Vec<KeyValue>, Vec<u64>)>,
) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    use opentelemetry_proto::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, metric, AggregationTemporality,
        ExponentialHistogram, ExponentialHistogramDataPoint, Metric,
    };
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points
                .into_iter()
                .map(|(attributes, counts)| ExponentialHistogramDataPoint {
                    attributes,
                    time_unix_nano: time_ns,
                    count: counts.iter().sum(),
                    scale: 0,
                    positive: Some(Buckets {
                        offset,
                        bucket_counts: counts,
                    }),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    }
}

/// One metrics request: one resource with these attributes, one scope, `metrics`.
pub fn metrics_request(
    resource: &[(&str, &str)],
    metrics: Vec<opentelemetry_proto::tonic::metrics::v1::Metric>,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
