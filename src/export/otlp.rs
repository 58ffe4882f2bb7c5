//! OTLP push: the same series as `/metrics`, as OTLP metrics with dotted names,
//! cumulative temporality, sent to a gRPC MetricsService every interval. The journey
//! histogram's points carry the slowest recent request of each bucket as exemplar, and
//! the failed, slow and incorrect counters their kept example requests.
//!
//! Every interval the current snapshot's request joins a bounded queue; one request is
//! in flight at a time, oldest first. Retryable failures (per the OTLP specification:
//! `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`,
//! `DATA_LOSS`, and `RESOURCE_EXHAUSTED` when the server sends `RetryInfo`) keep the
//! request at the head of the queue and wait an exponential backoff with jitter, or the
//! server's `RetryInfo` delay when longer. Other failures drop the request. A full queue
//! drops its oldest request; a request older than `retry.max_elapsed_time` is dropped
//! too. Every drop is counted by reason. The queue resumes by itself when the endpoint
//! answers again.

use crate::catalogue::{self, Metric as Def};
use crate::config::{OtlpExporter, OtlpRetry};
use crate::duration::format_duration;
use crate::internal_events::{
    InternalEvent, OtlpExportDropped, OtlpExportFailed, OtlpExportRetried, OtlpExportSucceeded,
};
use crate::published::Shared;
use crate::rng::Rng;
use crate::sampling::{self, UNIT};
use crate::sli::Snapshot;
use crate::sli::UserRow;
use crate::snapshot::{SeriesSnap, QUANTILES};
use crate::telemetry::{ExportDrop, Telemetry};
use crate::window::exemplars::{self as ex, Kind};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Journey and cohort attributes, with the cohort keys as the user wrote them.
fn series_attrs(s: &SeriesSnap) -> Vec<KeyValue> {
    let mut v = vec![kv("journey", &s.journey.name)];
    if s.overflow {
        v.push(KeyValue {
            key: "otel.metric.overflow".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        });
        return v;
    }
    for (k, val) in s.journey.cohort_keys.iter().zip(s.cohort.iter()) {
        v.push(kv(k, val));
    }
    v
}

/// A request count (in sampling units) as a point value: an integer while it is a
/// whole number of requests (always, without sampled spans), a double once sampled
/// spans made it fractional.
fn requests_value(units: u64) -> number_data_point::Value {
    if units.is_multiple_of(UNIT) {
        number_data_point::Value::AsInt((units / UNIT) as i64)
    } else {
        number_data_point::Value::AsDouble(sampling::to_requests(units))
    }
}

/// Histogram bucket counts in whole requests (OTLP counts are integers): each bucket's
/// adjusted count rounded to the nearest request, and their sum as the count.
fn whole_buckets(units: &[u64]) -> (Vec<u64>, u64) {
    let b: Vec<u64> = units.iter().map(|u| sampling::whole_requests(*u)).collect();
    let n = b.iter().fold(0u64, |a, x| a.saturating_add(*x));
    (b, n)
}

fn number(
    attrs: Vec<KeyValue>,
    start: u64,
    time: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    }
}

/// An OTLP exemplar of an example request.
fn exemplar(e: &ex::Exemplar, value: exemplar::Value) -> Exemplar {
    Exemplar {
        time_unix_nano: e.end_ns,
        value: Some(value),
        span_id: e.span_id.to_vec(),
        trace_id: e.trace_id.to_vec(),
        ..Default::default()
    }
}

/// The kept requests of `kind` of a series, newest first, each counting 1.
fn kind_exemplars(s: &SeriesSnap, kind: Option<Kind>) -> Vec<Exemplar> {
    match (kind, s.exemplars.as_deref()) {
        (Some(k), Some(x)) => x
            .bad(k, 0)
            .map(|e| exemplar(e, exemplar::Value::AsInt(1)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The slowest recent request of each histogram bucket, valued at its duration (s).
fn bucket_exemplars(s: &SeriesSnap) -> Vec<Exemplar> {
    let Some(x) = s.exemplars.as_deref() else {
        return Vec::new();
    };
    (0..s.buckets.len())
        .filter_map(|i| x.bucket(i))
        .map(|e| exemplar(e, exemplar::Value::AsDouble(e.duration_ns as f64 / 1e9)))
        .collect()
}

/// The OTLP name of a catalogued metric; only metrics with one are pushed.
fn otlp_name(m: &Def) -> &'static str {
    m.otlp.unwrap_or(m.prom)
}

fn gauge(m: &Def, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: otlp_name(m).into(),
        description: m.help.into(),
        unit: m.unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// A monotonic cumulative sum.
fn counter(m: &Def, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: otlp_name(m).into(),
        description: m.help.into(),
        unit: m.unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// Builds the export request for one snapshot.
pub fn build_request(sh: &Shared, snap: &Snapshot) -> ExportMetricsServiceRequest {
    let now = snap.at_unix_ns;
    let windows: Vec<String> = snap.windows.iter().map(|w| format_duration(*w)).collect();
    let mut metrics = Vec::new();

    // The bad-request counters carry their kept example requests.
    for ((m, get), kind) in super::REQUEST_COUNTERS {
        let points = snap
            .series
            .iter()
            .map(|s| NumberDataPoint {
                exemplars: kind_exemplars(s, kind),
                ..number(
                    series_attrs(s),
                    s.created_unix_ns,
                    now,
                    requests_value(get(s)),
                )
            })
            .collect();
        metrics.push(counter(m, points));
    }

    let hist_points = snap
        .series
        .iter()
        .map(|s| {
            let (bucket_counts, count) = whole_buckets(&s.buckets);
            HistogramDataPoint {
                attributes: series_attrs(s),
                start_time_unix_nano: s.created_unix_ns,
                time_unix_nano: now,
                count,
                sum: Some(s.duration_sum_s),
                bucket_counts,
                explicit_bounds: sh.histogram_bounds.clone(),
                exemplars: bucket_exemplars(s),
                ..Default::default()
            }
        })
        .collect();
    let duration = &catalogue::CER_JOURNEY_DURATION_SECONDS;
    metrics.push(Metric {
        name: otlp_name(duration).into(),
        description: duration.help.into(),
        unit: duration.unit.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: hist_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    });

    let slis = &snap.slis;
    let windowed = |s: &SeriesSnap, w: &str| {
        let mut a = series_attrs(s);
        a.push(kv("window", w));
        a
    };
    for (m, get) in super::SLI_RATIOS {
        let mut points = Vec::new();
        for (s, per_window) in snap.series.iter().zip(slis) {
            for (sli, w) in per_window.iter().zip(&windows) {
                if let Some(v) = get(sli) {
                    points.push(number(
                        windowed(s, w),
                        0,
                        now,
                        number_data_point::Value::AsDouble(v),
                    ));
                }
            }
        }
        metrics.push(gauge(m, points));
    }

    let mut latency = Vec::new();
    let mut rate = Vec::new();
    for (s, per_window) in snap.series.iter().zip(slis) {
        for ((ws, sli), w) in s.windows.iter().zip(per_window).zip(&windows) {
            for (q, v) in QUANTILES.iter().zip(&ws.quantiles_s) {
                if let Some(v) = v {
                    let mut a = windowed(s, w);
                    a.push(kv("quantile", &q.to_string()));
                    latency.push(number(a, 0, now, number_data_point::Value::AsDouble(*v)));
                }
            }
            rate.push(number(
                windowed(s, w),
                0,
                now,
                number_data_point::Value::AsDouble(sli.requests_per_second),
            ));
        }
    }
    metrics.push(gauge(&catalogue::CER_JOURNEY_LATENCY_SECONDS, latency));
    let mut vitals = Vec::new();
    for s in &snap.series {
        for (ws, w) in s.windows.iter().zip(&windows) {
            for (name, qs) in crate::experience::VITALS.iter().zip(&ws.vitals.quantiles) {
                for (q, v) in crate::window::VITAL_QUANTILES.iter().zip(qs) {
                    if let Some(v) = v {
                        let mut a = windowed(s, w);
                        a.push(kv("name", name));
                        a.push(kv("quantile", &q.to_string()));
                        vitals.push(number(a, 0, now, number_data_point::Value::AsDouble(*v)));
                    }
                }
            }
        }
    }
    metrics.push(gauge(&catalogue::CER_JOURNEY_WEB_VITAL, vitals));
    let mut frustrations = Vec::new();
    for f in &snap.journey_frustrations {
        for (event, n) in f.journey.frustration_events.iter().zip(&f.frustrations) {
            frustrations.push(number(
                vec![kv("journey", &f.journey.name), kv("event", event)],
                f.created_unix_ns,
                now,
                number_data_point::Value::AsInt(*n as i64),
            ));
        }
    }
    metrics.push(counter(
        &catalogue::CER_JOURNEY_FRUSTRATIONS_TOTAL,
        frustrations,
    ));
    let mut abandonment = Vec::new();
    let mut attempts = Vec::new();
    for a in &snap.journey_attempts {
        for (o, w) in a.windows.iter().zip(&windows) {
            if let Some(r) = o.abandonment_ratio() {
                abandonment.push(number(
                    vec![kv("journey", &a.journey), kv("window", w)],
                    0,
                    now,
                    number_data_point::Value::AsDouble(r),
                ));
            }
        }
        for (outcome, n) in [
            ("completed", a.totals.completed),
            ("abandoned", a.totals.abandoned),
        ] {
            attempts.push(number(
                vec![kv("journey", &a.journey), kv("outcome", outcome)],
                a.created_unix_ns,
                now,
                number_data_point::Value::AsInt(n as i64),
            ));
        }
    }
    metrics.push(gauge(
        &catalogue::CER_JOURNEY_ABANDONMENT_RATIO,
        abandonment,
    ));
    metrics.push(counter(&catalogue::CER_JOURNEY_ATTEMPTS_TOTAL, attempts));
    metrics.push(gauge(&catalogue::CER_JOURNEY_REQUESTS_PER_SECOND, rate));

    let currency = |j: &crate::journey::JourneyInfo, a: &mut Vec<KeyValue>| {
        if let Some(c) = j.value.as_ref().and_then(|v| v.currency.as_deref()) {
            a.push(kv("currency", c));
        }
    };
    for (m, get) in super::VALUE_COUNTERS {
        let points = snap
            .journey_values
            .iter()
            .map(|v| {
                let mut a = vec![kv("journey", &v.journey.name)];
                currency(&v.journey, &mut a);
                number(
                    a,
                    v.created_unix_ns,
                    now,
                    number_data_point::Value::AsDouble(get(v)),
                )
            })
            .collect();
        metrics.push(counter(m, points));
    }
    let mut at_risk = Vec::new();
    for s in snap.series.iter().filter(|s| s.journey.value.is_some()) {
        for (ws, w) in s.windows.iter().zip(&windows) {
            let mut a = series_attrs(s);
            a.push(kv("window", w));
            currency(&s.journey, &mut a);
            at_risk.push(number(
                a,
                0,
                now,
                number_data_point::Value::AsDouble(ws.value_at_risk),
            ));
        }
    }
    metrics.push(gauge(&catalogue::CER_JOURNEY_VALUE_AT_RISK, at_risk));

    for (m, get) in super::USER_GAUGES {
        let mut points = Vec::new();
        for (row, per_window) in snap.user_rows() {
            for (u, w) in per_window.iter().zip(&windows) {
                if let Some(v) = get(u) {
                    let mut a = match row {
                        UserRow::Series(s) => series_attrs(s),
                        UserRow::Journey(j) => vec![kv("journey", &j.name)],
                    };
                    a.push(kv("window", w));
                    points.push(number(a, 0, now, number_data_point::Value::AsDouble(v)));
                }
            }
        }
        metrics.push(gauge(m, points));
    }

    // The operations SLI and its signals, journey-level.
    let (mut ratio, mut values, mut oks) = (Vec::new(), Vec::new(), Vec::new());
    let double = number_data_point::Value::AsDouble;
    for ops in &snap.operations {
        let j = || kv("journey", &ops.journey.name);
        for (c, w) in ops.windows.iter().zip(&windows) {
            if let Some(v) = c.ratio() {
                ratio.push(number(vec![j(), kv("window", w)], 0, now, double(v)));
            }
        }
        for s in &ops.signals {
            for (v, w) in s.last.iter().zip(&windows) {
                if let Some(v) = v {
                    let a = vec![j(), kv("signal", &s.name), kv("window", w)];
                    values.push(number(a, 0, now, double(*v)));
                }
            }
            if let Some(ok) = s.ok {
                let a = vec![j(), kv("signal", &s.name)];
                oks.push(number(
                    a,
                    0,
                    now,
                    number_data_point::Value::AsInt(i64::from(ok)),
                ));
            }
        }
    }
    metrics.push(gauge(&catalogue::CER_SLI_OPERATIONS_RATIO, ratio));
    metrics.push(gauge(&catalogue::CER_SIGNAL_VALUE, values));
    metrics.push(gauge(&catalogue::CER_SIGNAL_OK, oks));
    dependency_metrics(sh, snap, &windows, &mut metrics);

    let coverage = windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            snap.coverage_ratio(i).map(|v| {
                number(
                    vec![kv("window", w)],
                    0,
                    now,
                    number_data_point::Value::AsDouble(v),
                )
            })
        })
        .collect();
    metrics.push(gauge(&catalogue::CER_TELEMETRY_COVERAGE_RATIO, coverage));
    let journey_coverage = snap
        .journey_coverage
        .iter()
        .flat_map(|c| {
            c.windows.iter().zip(&windows).filter_map(|(v, w)| {
                v.map(|v| {
                    number(
                        vec![kv("journey", &c.journey.name), kv("window", w)],
                        0,
                        now,
                        number_data_point::Value::AsDouble(v),
                    )
                })
            })
        })
        .collect();
    metrics.push(gauge(
        &catalogue::CER_JOURNEY_COVERAGE_RATIO,
        journey_coverage,
    ));
    deployment_metrics(sh, now, &mut metrics);
    metrics.push(gauge(
        &catalogue::CER_DEFINITION_INFO,
        vec![number(
            vec![kv("version", &sh.version.load())],
            0,
            now,
            number_data_point::Value::AsInt(1),
        )],
    ));
    metrics.retain(|m| match &m.data {
        Some(metric::Data::Gauge(g)) => !g.data_points.is_empty(),
        Some(metric::Data::Sum(s)) => !s.data_points.is_empty(),
        Some(metric::Data::Histogram(h)) => !h.data_points.is_empty(),
        _ => true,
    });

    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "cerflow"),
                    kv("service.instance.id", &sh.instance_id),
                    kv("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "cerflow".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The deployments of the same tick as the Prometheus exposition shows them.
fn deployment_metrics(sh: &Shared, now: u64, metrics: &mut Vec<Metric>) {
    let eval = sh.eval.load();
    let mut totals = Vec::new();
    for st in &eval.deployment_stats {
        for (result, n) in [("ok", st.ok), ("regressed", st.regressed)] {
            totals.push(number(
                vec![kv("journey", &st.journey), kv("result", result)],
                sh.start_unix_ns,
                now,
                number_data_point::Value::AsInt(n as i64),
            ));
        }
    }
    metrics.push(counter(&catalogue::CER_DEPLOYMENTS_TOTAL, totals));
    let info = eval
        .deployments
        .iter()
        .map(|d| {
            let attrs = vec![
                kv("journey", &d.journey),
                kv("version", &d.version),
                kv("previous_version", &d.previous_version),
                kv("result", d.result.as_str()),
            ];
            number(attrs, 0, now, number_data_point::Value::AsInt(1))
        })
        .collect();
    metrics.push(gauge(&catalogue::CER_DEPLOYMENT_INFO, info));
}

/// `journey` and `dependency`, or `otel.metric.overflow` for a journey's overflow series.
fn dependency_attrs(journey: &str, dependency: &str, overflow: bool) -> Vec<KeyValue> {
    let mut v = vec![kv("journey", journey)];
    if overflow {
        v.push(KeyValue {
            key: "otel.metric.overflow".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        });
    } else {
        v.push(kv("dependency", dependency));
    }
    v
}

/// Journey x dependency series and blame, as `/metrics` shows them.
fn dependency_metrics(sh: &Shared, snap: &Snapshot, windows: &[String], metrics: &mut Vec<Metric>) {
    let now = snap.at_unix_ns;
    let attrs =
        |d: &crate::sli::DependencySeries| dependency_attrs(&d.journey.name, &d.name, d.overflow);
    for (m, errors) in [
        (&catalogue::CER_DEPENDENCY_REQUESTS_TOTAL, false),
        (&catalogue::CER_DEPENDENCY_ERRORS_TOTAL, true),
    ] {
        let points = snap
            .dependencies
            .iter()
            .map(|d| {
                let v = if errors {
                    d.totals.errors
                } else {
                    d.totals.requests
                };
                number(attrs(d), d.created_unix_ns, now, requests_value(v))
            })
            .collect();
        metrics.push(counter(m, points));
    }
    let duration = &catalogue::CER_DEPENDENCY_DURATION_SECONDS;
    let hist_points = snap
        .dependencies
        .iter()
        .map(|d| {
            let (bucket_counts, count) = whole_buckets(&d.buckets);
            HistogramDataPoint {
                attributes: attrs(d),
                start_time_unix_nano: d.created_unix_ns,
                time_unix_nano: now,
                count,
                sum: Some(d.duration_sum_s),
                bucket_counts,
                explicit_bounds: sh.histogram_bounds.clone(),
                ..Default::default()
            }
        })
        .collect();
    metrics.push(Metric {
        name: otlp_name(duration).into(),
        description: duration.help.into(),
        unit: duration.unit.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: hist_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    });
    let mut availability = Vec::new();
    let mut latency = Vec::new();
    for d in &snap.dependencies {
        for (ws, w) in d.windows.iter().zip(windows) {
            let mut a = attrs(d);
            a.push(kv("window", w));
            if let Some(v) = ws.availability {
                availability.push(number(
                    a.clone(),
                    0,
                    now,
                    number_data_point::Value::AsDouble(v),
                ));
            }
            for (q, v) in QUANTILES.iter().zip(&ws.quantiles_s) {
                if let Some(v) = v {
                    let mut qa = a.clone();
                    qa.push(kv("quantile", &q.to_string()));
                    latency.push(number(qa, 0, now, number_data_point::Value::AsDouble(*v)));
                }
            }
        }
    }
    metrics.push(gauge(
        &catalogue::CER_DEPENDENCY_AVAILABILITY_RATIO,
        availability,
    ));
    metrics.push(gauge(&catalogue::CER_DEPENDENCY_LATENCY_SECONDS, latency));
    let blame = snap
        .blame
        .iter()
        .map(|b| {
            number(
                dependency_attrs(&b.journey.name, &b.dependency, b.overflow),
                b.created_unix_ns,
                now,
                number_data_point::Value::AsInt(b.total as i64),
            )
        })
        .collect();
    metrics.push(counter(
        &catalogue::CER_JOURNEY_FAILURES_ATTRIBUTED_TOTAL,
        blame,
    ));
}

// ---------------------------------------------------------------------------------
// Failures: which are retryable, and how long to wait.
// ---------------------------------------------------------------------------------

/// The `RetryInfo.retry_delay` of a gRPC error, when the server sent one.
///
/// Read by hand from `tonic-types`' messages rather than with `StatusExt`, which needs the
/// exact `type.googleapis.com/` prefix and turns `{1s, -5ns}` into a delay: any type URL
/// ending in `/google.rpc.RetryInfo` counts, and a negative part means no delay.
pub fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    use prost::Message;
    use tonic_types::pb;
    if status.details().is_empty() {
        return None;
    }
    let details = pb::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .filter(|a| a.type_url.ends_with("/google.rpc.RetryInfo"))
        .find_map(|a| pb::RetryInfo::decode(a.value.as_slice()).ok()?.retry_delay)
        .map(|d| {
            if d.seconds < 0 || d.nanos < 0 {
                Duration::ZERO
            } else {
                Duration::new(d.seconds as u64, d.nanos.min(999_999_999) as u32)
            }
        })
}

/// What to do with a request after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again later, at least after the server's delay when it gave one.
    Retry(Option<Duration>),
    /// Retrying cannot help: drop the request.
    Permanent,
}

/// Classifies a gRPC error as the OTLP specification does.
pub fn classify(status: &tonic::Status) -> Verdict {
    use tonic::Code;
    let delay = retry_delay(status);
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Verdict::Retry(delay),
        // Retryable only when the server says it can recover, by sending RetryInfo.
        Code::ResourceExhausted if delay.is_some() => Verdict::Retry(delay),
        _ => Verdict::Permanent,
    }
}

/// Exponential backoff with jitter over consecutive failures of the endpoint: the n-th
/// failure in a row waits `initial_interval x 2^(n-1)`, at most `max_interval`, spread
/// uniformly over +-50% of that and never past `max_interval`. A success resets it.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    rng: Rng,
}

impl Backoff {
    pub fn new(cfg: &OtlpRetry, seed: u64) -> Backoff {
        Backoff {
            initial: cfg.initial_interval,
            max: cfg.max_interval.max(cfg.initial_interval),
            failures: 0,
            rng: Rng::new(seed),
        }
    }

    /// The wait before jitter after the `n`-th failure in a row (`n` from 1).
    pub fn base(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1);
        if doublings >= 31 {
            return self.max;
        }
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Records one more failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let base = self.base(self.failures);
        base.mul_f64(0.5 + self.rng.unit()).min(self.max)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

// ---------------------------------------------------------------------------------
// The queue of export requests.
// ---------------------------------------------------------------------------------

/// `t + d`, or a year after `t` if that cannot be represented.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(t)
}

struct Pending {
    req: ExportMetricsServiceRequest,
    enqueued: Instant,
    attempts: u32,
}

/// The pending requests and the retry schedule, without any I/O: the caller sends what
/// [`ExportQueue::next_to_send`] hands out and reports the outcome to
/// [`ExportQueue::finish`]. The request being sent stays at the head until then.
pub struct ExportQueue {
    items: VecDeque<Pending>,
    capacity: usize,
    max_elapsed: Duration,
    backoff: Backoff,
    /// The head may be sent from this moment on.
    due: Instant,
    sending: bool,
    tel: Arc<Telemetry>,
    endpoint: String,
}

impl ExportQueue {
    pub fn new(cfg: &OtlpExporter, tel: Arc<Telemetry>, seed: u64, now: Instant) -> ExportQueue {
        tel.otlp_export_queue_depth.store(0, Relaxed);
        ExportQueue {
            items: VecDeque::with_capacity(cfg.queue_size.min(1024) + 1),
            capacity: cfg.queue_size.max(1),
            max_elapsed: cfg.retry.max_elapsed_time,
            backoff: Backoff::new(&cfg.retry, seed),
            due: now,
            sending: false,
            tel,
            endpoint: cfg.endpoint.clone(),
        }
    }

    /// Requests waiting, the one being sent included.
    pub fn depth(&self) -> usize {
        self.items.len()
    }

    pub fn is_sending(&self) -> bool {
        self.sending
    }

    /// When the head may be sent.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Whether a request can be handed out at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        !self.sending && !self.items.is_empty() && now >= self.due
    }

    /// Lets the head go at once whatever the backoff (the final push at shutdown).
    pub fn due_now(&mut self, now: Instant) {
        self.due = now;
    }

    fn set_depth(&self) {
        self.tel
            .otlp_export_queue_depth
            .store(self.items.len() as u64, Relaxed);
    }

    fn dropped(&mut self, why: ExportDrop, p: &Pending, now: Instant, detail: &str) {
        OtlpExportDropped {
            endpoint: &self.endpoint,
            why,
            attempts: p.attempts,
            age: now.duration_since(p.enqueued),
            detail,
        }
        .emit(&self.tel);
    }

    /// Adds a request; when the queue is full its oldest request is dropped. Returns true
    /// when that was the request being sent: the caller must abandon its attempt.
    pub fn push(&mut self, req: ExportMetricsServiceRequest, now: Instant) -> bool {
        self.items.push_back(Pending {
            req,
            enqueued: now,
            attempts: 0,
        });
        let mut abandoned = false;
        while self.items.len() > self.capacity {
            let Some(p) = self.items.pop_front() else {
                break;
            };
            if self.sending {
                self.sending = false;
                abandoned = true;
            }
            let detail = format!("the queue holds {} requests", self.capacity);
            self.dropped(ExportDrop::QueueFull, &p, now, &detail);
        }
        self.set_depth();
        abandoned
    }

    /// Drops requests older than `max_elapsed_time` from the head, then hands out the
    /// head's request for one attempt. `None` when nothing is left or not yet due.
    pub fn next_to_send(&mut self, now: Instant) -> Option<ExportMetricsServiceRequest> {
        if self.sending || now < self.due {
            return None;
        }
        while let Some(head) = self.items.front() {
            if now.duration_since(head.enqueued) <= self.max_elapsed {
                break;
            }
            if let Some(p) = self.items.pop_front() {
                self.dropped(
                    ExportDrop::Expired,
                    &p,
                    now,
                    "older than retry.max_elapsed_time",
                );
            }
        }
        self.set_depth();
        let head = self.items.front_mut()?;
        // A retry is any attempt made while backing off, whether it re-sends the same
        // request or a newer one that took the place of a dropped one.
        head.attempts += 1;
        if self.backoff.failures() > 0 {
            OtlpExportRetried {
                endpoint: &self.endpoint,
                attempt: head.attempts,
            }
            .emit(&self.tel);
        }
        self.sending = true;
        Some(head.req.clone())
    }

    /// The outcome of the attempt [`next_to_send`](Self::next_to_send) handed out.
    pub fn finish(
        &mut self,
        result: Result<ExportMetricsServiceResponse, tonic::Status>,
        now: Instant,
    ) {
        if !self.sending {
            return;
        }
        self.sending = false;
        let Some(p) = self.items.pop_front() else {
            return;
        };
        match result {
            Ok(resp) => {
                let partial = resp
                    .partial_success
                    .filter(|ps| ps.rejected_data_points > 0 || !ps.error_message.is_empty());
                OtlpExportSucceeded {
                    endpoint: &self.endpoint,
                    failures_before: self.backoff.failures(),
                    queued: self.items.len(),
                    partial: partial
                        .as_ref()
                        .map(|ps| (ps.rejected_data_points, ps.error_message.as_str())),
                }
                .emit(&self.tel);
                self.backoff.reset();
                self.due = now;
            }
            Err(status) => {
                match classify(&status) {
                    Verdict::Permanent => {
                        OtlpExportFailed {
                            endpoint: &self.endpoint,
                            status: &status,
                            failures: self.backoff.failures(),
                            retry_in: None,
                        }
                        .emit(&self.tel);
                        let detail = format!("{:?}: {}", status.code(), status.message());
                        self.dropped(ExportDrop::Permanent, &p, now, &detail);
                        // The endpoint answered: the next request may fare better.
                        self.backoff.reset();
                        self.due = now;
                    }
                    Verdict::Retry(server_delay) => {
                        // The server's delay is honoured up to max_elapsed_time, past
                        // which any request would have expired anyway.
                        let delay = self
                            .backoff
                            .next_delay()
                            .max(server_delay.unwrap_or(Duration::ZERO).min(self.max_elapsed));
                        OtlpExportFailed {
                            endpoint: &self.endpoint,
                            status: &status,
                            failures: self.backoff.failures(),
                            retry_in: Some(delay),
                        }
                        .emit(&self.tel);
                        self.due = after(now, delay);
                        if now.duration_since(p.enqueued).saturating_add(delay) > self.max_elapsed {
                            self.dropped(
                                ExportDrop::Expired,
                                &p,
                                now,
                                "its next attempt would pass retry.max_elapsed_time",
                            );
                        } else {
                            self.items.push_front(p);
                        }
                    }
                }
            }
        }
        self.set_depth();
    }
}

// ---------------------------------------------------------------------------------
// The exporter task.
// ---------------------------------------------------------------------------------

type Attempt =
    Pin<Box<dyn Future<Output = Result<ExportMetricsServiceResponse, tonic::Status>> + Send>>;

fn attempt(
    client: &MetricsServiceClient<tonic::transport::Channel>,
    req: ExportMetricsServiceRequest,
    timeout: Duration,
) -> Attempt {
    let mut client = client.clone();
    let mut request = tonic::Request::new(req);
    request.set_timeout(timeout);
    Box::pin(async move {
        match tokio::time::timeout(timeout, client.export(request)).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {}",
                format_duration(timeout)
            ))),
        }
    })
}

/// Awaits the attempt in `slot`; only polled while there is one.
async fn in_flight(
    slot: &mut Option<Attempt>,
) -> Result<ExportMetricsServiceResponse, tonic::Status> {
    match slot.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn seed() -> u64 {
    crate::clock::now_unix_ns() ^ (u64::from(std::process::id()) << 32)
}

/// Pushes every interval until cancelled, retrying and queueing as described above; then
/// waits for the final snapshot of shutdown, pushes it once more and keeps retrying what
/// is queued until `grace` (the shutdown timeout) is nearly over.
pub async fn run(
    sh: Arc<Shared>,
    cfg: OtlpExporter,
    cancel: CancellationToken,
    final_push: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) {
    let channel = match tonic::transport::Endpoint::from_shared(cfg.endpoint.clone()) {
        Ok(e) => e.connect_timeout(cfg.timeout).connect_lazy(),
        Err(e) => {
            tracing::error!(endpoint = %cfg.endpoint, error = %e, "Invalid OTLP exporter endpoint; pushing is off.");
            return;
        }
    };
    let client = MetricsServiceClient::new(channel);
    let mut queue = ExportQueue::new(&cfg, sh.tel.clone(), seed(), Instant::now());
    let mut sending: Option<Attempt> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let can_start = !queue.is_sending() && queue.depth() > 0;
        let due = tokio::time::Instant::from_std(queue.due());
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = in_flight(&mut sending), if sending.is_some() => {
                sending = None;
                queue.finish(r, Instant::now());
            }
            _ = tick.tick() => {
                let req = build_request(&sh, &sh.snapshot.load_full());
                if queue.push(req, Instant::now()) {
                    sending = None;
                }
            }
            _ = tokio::time::sleep_until(due), if can_start => {
                if let Some(req) = queue.next_to_send(Instant::now()) {
                    sending = Some(attempt(&client, req, cfg.timeout));
                }
            }
        }
    }

    // Shutdown: the final snapshot goes out once more, retried within the grace period.
    let deadline = after(Instant::now(), grace - grace / 10);
    let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), final_push).await;
    let now = Instant::now();
    if queue.push(build_request(&sh, &sh.snapshot.load_full()), now) {
        sending = None;
    }
    // One attempt at once whatever the backoff (after the one in flight, if any); the
    // backoff applies from there on.
    queue.due_now(now);
    let mut tried = false;
    let stop_at = tokio::time::Instant::from_std(deadline);
    while queue.depth() > 0 {
        let can_start = !queue.is_sending();
        let due = tokio::time::Instant::from_std(queue.due());
        tokio::select! {
            biased;
            r = in_flight(&mut sending), if sending.is_some() => {
                sending = None;
                let now = Instant::now();
                queue.finish(r, now);
                if !tried {
                    queue.due_now(now);
                }
            }
            _ = tokio::time::sleep_until(due), if can_start => {
                if let Some(req) = queue.next_to_send(Instant::now()) {
                    tried = true;
                    sending = Some(attempt(&client, req, cfg.timeout));
                }
            }
            _ = tokio::time::sleep_until(stop_at) => {
                tracing::warn!(
                    endpoint = %cfg.endpoint,
                    undelivered = queue.depth(),
                    "Stopping with OTLP metric export requests not delivered (shutdown timeout)."
                );
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::AddRelaxed;
    use prost::Message;

    #[test]
    fn counts_are_ints_while_whole_and_histogram_counts_whole_requests() {
        use number_data_point::Value::{AsDouble, AsInt};
        assert_eq!(requests_value(20 * UNIT), AsInt(20));
        // th:4 (p 3/4) twice: 2 x 1,398,101 units = 2.666666030883789 requests.
        assert_eq!(
            requests_value(2 * 1_398_101),
            AsDouble(2.666_666_030_883_789)
        );
        // Buckets of 16, 2.666666 and 0.4 requests: 16, 3 and 0; the count is their sum.
        let (b, n) = whole_buckets(&[16 * UNIT, 2 * 1_398_101, 2 * UNIT / 5]);
        assert_eq!((b, n), (vec![16, 3, 0], 19));
    }

    fn retry(initial_ms: u64, max_ms: u64, elapsed_ms: u64) -> OtlpRetry {
        OtlpRetry {
            initial_interval: Duration::from_millis(initial_ms),
            max_interval: Duration::from_millis(max_ms),
            max_elapsed_time: Duration::from_millis(elapsed_ms),
        }
    }

    fn exporter(queue_size: usize, r: OtlpRetry) -> OtlpExporter {
        OtlpExporter {
            endpoint: "http://127.0.0.1:1".into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            queue_size,
            retry: r,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A request told apart by its resource's only attribute.
    fn req(n: u32) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("n", &n.to_string())],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }
    }

    fn id(r: &ExportMetricsServiceRequest) -> String {
        match &r.resource_metrics[0].resource.as_ref().unwrap().attributes[0]
            .value
            .as_ref()
            .unwrap()
            .value
        {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn ok() -> Result<ExportMetricsServiceResponse, tonic::Status> {
        Ok(ExportMetricsServiceResponse::default())
    }

    fn with_retry_info(code: tonic::Code, delay: Duration) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        tonic::Status::with_error_details(
            code,
            "slow down",
            ErrorDetails::with_retry_info(Some(delay)),
        )
    }

    /// A RetryInfo no `std::time::Duration` can hold (negative, or past `i64`).
    fn with_raw_retry_info(code: tonic::Code, seconds: i64, nanos: i32) -> tonic::Status {
        use tonic_types::pb;
        // `prost_types` is not a dependency: its Duration and Any are reached through
        // the fields that hold them.
        let mut info = pb::RetryInfo {
            retry_delay: Some(Default::default()),
        };
        if let Some(d) = info.retry_delay.as_mut() {
            d.seconds = seconds;
            d.nanos = nanos;
        }
        let mut st = pb::Status {
            code: code as i32,
            message: "slow down".into(),
            details: vec![Default::default()],
        };
        st.details[0].type_url = "type.googleapis.com/google.rpc.RetryInfo".into();
        st.details[0].value = info.encode_to_vec();
        tonic::Status::with_details(code, "slow down", st.encode_to_vec().into())
    }

    #[test]
    fn the_backoff_doubles_up_to_the_cap() {
        let b = Backoff::new(&retry(100, 500, 60_000), 7);
        let bases: Vec<_> = (1..=7).map(|n| b.base(n)).collect();
        assert_eq!(
            bases,
            vec![
                ms(100),
                ms(200),
                ms(400),
                ms(500),
                ms(500),
                ms(500),
                ms(500)
            ]
        );
        // Defaults: 1s, 2s, 4s, 8s, 16s, then 30s.
        let d = Backoff::new(&OtlpRetry::default(), 7);
        let bases: Vec<_> = (1..=7).map(|n| d.base(n).as_secs()).collect();
        assert_eq!(bases, vec![1, 2, 4, 8, 16, 30, 30]);
        // No overflow however long the outage.
        assert_eq!(d.base(u32::MAX), Duration::from_secs(30));
        assert_eq!(d.base(33), Duration::from_secs(30));
    }

    #[test]
    fn the_jitter_stays_within_half_of_the_base_and_under_the_cap() {
        let cfg = retry(100, 500, 60_000);
        for seed in 0..200 {
            let mut b = Backoff::new(&cfg, seed);
            for n in 1..=8u32 {
                let d = b.next_delay();
                let base = b.base(n);
                assert_eq!(b.failures(), n);
                assert!(
                    d >= base / 2 && d <= (base * 3 / 2).min(ms(500)),
                    "seed {seed}, failure {n}: {d:?} for base {base:?}"
                );
            }
            b.reset();
            assert_eq!(b.failures(), 0);
            let d = b.next_delay();
            assert!(d >= ms(50) && d <= ms(150), "after a reset: {d:?}");
        }
    }

    #[test]
    fn the_jitter_is_deterministic_for_a_seed_and_spreads() {
        let cfg = retry(1000, 30_000, 300_000);
        let run = |seed| {
            let mut b = Backoff::new(&cfg, seed);
            (0..6).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        // The first delay over many seeds covers [0.5s, 1.5s): not one fixed value.
        let firsts: Vec<Duration> = (0..1000).map(|s| run(s)[0]).collect();
        let lo = firsts.iter().min().unwrap();
        let hi = firsts.iter().max().unwrap();
        assert!(*lo >= ms(500) && *lo < ms(560), "lowest {lo:?}");
        assert!(*hi < ms(1500) && *hi > ms(1440), "highest {hi:?}");
    }

    #[test]
    fn codes_are_classified_as_the_otlp_specification_says() {
        use tonic::Code;
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert_eq!(
                classify(&tonic::Status::new(code, "x")),
                Verdict::Retry(None),
                "{code:?}"
            );
        }
        for code in [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::Unauthenticated,
        ] {
            assert_eq!(
                classify(&tonic::Status::new(code, "x")),
                Verdict::Permanent,
                "{code:?}"
            );
        }
        // RESOURCE_EXHAUSTED with RetryInfo is retryable, after the server's delay.
        assert_eq!(
            classify(&with_retry_info(Code::ResourceExhausted, ms(2500))),
            Verdict::Retry(Some(ms(2500)))
        );
        assert_eq!(
            classify(&with_retry_info(Code::Unavailable, Duration::from_secs(3))),
            Verdict::Retry(Some(Duration::from_secs(3)))
        );
        // Garbage in the details is no RetryInfo.
        let junk = tonic::Status::with_details(
            Code::ResourceExhausted,
            "x",
            bytes::Bytes::from_static(&[0xff, 0xff, 0xff]),
        );
        assert_eq!(classify(&junk), Verdict::Permanent);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_request() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(3, retry(100, 500, 60_000)), tel.clone(), 1, t0);
        for n in 0..5 {
            assert!(!q.push(req(n), t0));
        }
        assert_eq!(q.depth(), 3);
        assert_eq!(tel.otlp_dropped(ExportDrop::QueueFull), 2);
        assert_eq!(tel.otlp_export_queue_depth.get(), 3);
        // Oldest first: 2, 3, 4 are left.
        for want in ["2", "3", "4"] {
            let r = q.next_to_send(t0).expect("a request is due");
            assert_eq!(id(&r), want);
            q.finish(ok(), t0);
        }
        assert_eq!(q.depth(), 0);
        assert_eq!(tel.otlp_exports_ok.get(), 3);
        assert_eq!(tel.otlp_export_queue_depth.get(), 0);
        assert!(q.next_to_send(t0).is_none());
    }

    #[test]
    fn dropping_the_request_being_sent_abandons_its_attempt() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(1, retry(100, 500, 60_000)), tel.clone(), 1, t0);
        q.push(req(0), t0);
        assert_eq!(id(&q.next_to_send(t0).unwrap()), "0");
        assert!(q.push(req(1), t0), "the request in flight was the oldest");
        assert!(!q.is_sending());
        // A late answer for the abandoned attempt changes nothing.
        q.finish(ok(), t0);
        assert_eq!(tel.otlp_exports_ok.get(), 0);
        assert_eq!(id(&q.next_to_send(t0).unwrap()), "1");
        q.finish(ok(), t0);
        assert_eq!(tel.otlp_exports_ok.get(), 1);
        assert_eq!(tel.otlp_dropped(ExportDrop::QueueFull), 1);
    }

    #[test]
    fn retryable_failures_back_off_and_keep_the_request() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(4, retry(100, 500, 60_000)), tel.clone(), 9, t0);
        q.push(req(0), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for n in 1..=5u32 {
            assert!(q.next_to_send(now).is_some());
            q.finish(Err(tonic::Status::unavailable("down")), now);
            let wait = q.due() - now;
            let base = [100, 200, 400, 500, 500][n as usize - 1];
            assert!(
                wait >= ms(base / 2) && wait <= ms(base * 3 / 2).min(ms(500)),
                "failure {n}: {wait:?}"
            );
            // Not due before its time.
            assert!(!q.ready(now + wait - ms(1)));
            assert!(q.next_to_send(now + wait - ms(1)).is_none());
            waits.push(wait);
            now += wait;
        }
        assert_eq!(q.depth(), 1);
        assert_eq!(tel.otlp_exports_failed.get(), 5);
        assert_eq!(
            tel.otlp_export_retries.get(),
            4,
            "the first attempt is no retry"
        );
        assert_eq!(id(&q.next_to_send(now).unwrap()), "0");
        assert_eq!(tel.otlp_export_retries.get(), 5);
        q.finish(ok(), now);
        assert_eq!(tel.otlp_exports_ok.get(), 1);
        // A success resets the backoff.
        q.push(req(1), now);
        q.next_to_send(now).unwrap();
        q.finish(Err(tonic::Status::deadline_exceeded("slow")), now);
        let wait = q.due() - now;
        assert!(wait >= ms(50) && wait <= ms(150), "{wait:?}");
    }

    #[test]
    fn attempts_while_backing_off_are_retries_even_for_a_newer_request() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(1, retry(100, 500, 60_000)), tel.clone(), 2, t0);
        q.push(req(0), t0);
        q.next_to_send(t0).unwrap();
        q.finish(Err(tonic::Status::unavailable("down")), t0);
        // Request 0 waits for its retry; request 1 takes its place.
        assert!(!q.push(req(1), t0 + ms(10)));
        assert_eq!(tel.otlp_dropped(ExportDrop::QueueFull), 1);
        let due = q.due();
        assert_eq!(id(&q.next_to_send(due).unwrap()), "1");
        assert_eq!(tel.otlp_export_retries.get(), 1);
        q.finish(Err(tonic::Status::unavailable("down")), due);
        assert_eq!(tel.otlp_exports_failed.get(), 2);
        // Still backing off: the wait grew (base 200ms).
        let wait = q.due() - due;
        assert!(wait >= ms(100) && wait <= ms(300), "{wait:?}");
    }

    #[test]
    fn the_servers_retry_delay_wins_when_longer() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(4, retry(100, 500, 60_000)), tel.clone(), 3, t0);
        q.push(req(0), t0);
        q.next_to_send(t0).unwrap();
        q.finish(
            Err(with_retry_info(tonic::Code::ResourceExhausted, ms(1700))),
            t0,
        );
        assert_eq!(q.due() - t0, ms(1700));
        assert_eq!(q.depth(), 1);
        assert_eq!(tel.otlp_dropped(ExportDrop::Permanent), 0);
    }

    #[test]
    fn an_absurd_retry_delay_is_capped_by_max_elapsed_time() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(4, retry(100, 500, 60_000)), tel.clone(), 3, t0);
        q.push(req(0), t0);
        q.next_to_send(t0).unwrap();
        q.finish(
            Err(with_raw_retry_info(tonic::Code::Unavailable, i64::MAX, 0)),
            t0,
        );
        assert_eq!(q.due() - t0, Duration::from_secs(60));
        assert_eq!(q.depth(), 1, "just young enough to be tried once more");
        // A negative delay is no delay: the backoff decides.
        assert_eq!(
            retry_delay(&with_raw_retry_info(tonic::Code::Unavailable, -5, 0)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn permanent_failures_drop_the_request_and_move_on() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(4, retry(100, 500, 60_000)), tel.clone(), 3, t0);
        q.push(req(0), t0);
        q.push(req(1), t0);
        q.next_to_send(t0).unwrap();
        q.finish(Err(tonic::Status::invalid_argument("bad")), t0);
        assert_eq!(tel.otlp_dropped(ExportDrop::Permanent), 1);
        assert_eq!(tel.otlp_exports_failed.get(), 1);
        assert_eq!(q.depth(), 1);
        // The next request goes at once.
        assert_eq!(id(&q.next_to_send(t0).unwrap()), "1");
        assert_eq!(tel.otlp_export_retries.get(), 0);
    }

    #[test]
    fn requests_older_than_max_elapsed_time_are_dropped() {
        let tel = Arc::new(Telemetry::default());
        let t0 = Instant::now();
        let mut q = ExportQueue::new(&exporter(8, retry(400, 400, 1000)), tel.clone(), 5, t0);
        q.push(req(0), t0);
        q.push(req(1), t0 + ms(300));
        // Fails at 0: waits 200..400ms, still young enough at its next attempt.
        q.next_to_send(t0).unwrap();
        q.finish(Err(tonic::Status::unavailable("down")), t0);
        assert_eq!(q.depth(), 2);
        // Fails at 900: its next attempt would be past 1s: dropped now.
        let t = t0 + ms(900);
        assert_eq!(id(&q.next_to_send(t).unwrap()), "0");
        q.finish(Err(tonic::Status::unavailable("down")), t);
        assert_eq!(tel.otlp_dropped(ExportDrop::Expired), 1);
        assert_eq!(q.depth(), 1);
        // Request 1 is 1.01s old when next due: dropped before an attempt is made.
        assert!(q.next_to_send(t0 + ms(1310)).is_none());
        assert_eq!(tel.otlp_dropped(ExportDrop::Expired), 2);
        assert_eq!(q.depth(), 0);
        assert_eq!(tel.otlp_export_queue_depth.get(), 0);
    }
}
