//! OTLP push: the same series as `/metrics`, as OTLP metrics with dotted names,
//! cumulative temporality, sent to a gRPC MetricsService every interval.

use super::Shared;
use crate::config::decode::format_duration;
use crate::config::OtlpExporter;
use crate::pipeline::{SeriesSnap, QUANTILES};
use crate::sli::{derive, Sli, Snapshot};
use crate::telemetry::AddRelaxed;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::sync::Arc;
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
            value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
            ..Default::default()
        });
        return v;
    }
    for (k, val) in s.journey.cohort_keys.iter().zip(s.cohort.iter()) {
        v.push(kv(k, val));
    }
    v
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

fn gauge(name: &str, unit: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// Builds the export request for one snapshot.
pub fn build_request(sh: &Shared, snap: &Snapshot) -> ExportMetricsServiceRequest {
    let now = snap.at_unix_ns;
    let windows: Vec<String> = snap.windows.iter().map(|w| format_duration(*w)).collect();
    let mut metrics = Vec::new();

    let counters: [(&str, &str, fn(&SeriesSnap) -> u64); 4] = [
        (
            "cer.journey.requests",
            "Spans recorded for the journey.",
            |s| s.totals.requests,
        ),
        ("cer.journey.errors", "Spans classified as failed.", |s| {
            s.totals.errors
        }),
        (
            "cer.journey.slow",
            "Spans slower than the latency threshold.",
            |s| s.totals.slow,
        ),
        (
            "cer.journey.incorrect",
            "Spans classified as incorrect.",
            |s| s.totals.incorrect,
        ),
    ];
    for (name, description, get) in counters {
        let points = snap
            .series
            .iter()
            .map(|s| {
                number(
                    series_attrs(s),
                    s.created_unix_ns,
                    now,
                    number_data_point::Value::AsInt(get(s) as i64),
                )
            })
            .collect();
        metrics.push(Metric {
            name: name.into(),
            description: description.into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        });
    }

    let hist_points = snap
        .series
        .iter()
        .map(|s| HistogramDataPoint {
            attributes: series_attrs(s),
            start_time_unix_nano: s.created_unix_ns,
            time_unix_nano: now,
            count: s.totals.requests,
            sum: Some(s.duration_sum_s),
            bucket_counts: s.buckets.clone(),
            explicit_bounds: sh.histogram_bounds.clone(),
            ..Default::default()
        })
        .collect();
    metrics.push(Metric {
        name: "cer.journey.duration".into(),
        description: "Span duration of the journey.".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: hist_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    });

    let ratios: [(&str, &str, fn(&Sli) -> Option<f64>); 3] = [
        (
            "cer.sli.availability",
            "Share of requests in the window that did not fail.",
            |s| s.availability,
        ),
        (
            "cer.sli.latency",
            "Share of requests in the window faster than the threshold.",
            |s| s.latency,
        ),
        (
            "cer.sli.correctness",
            "Share of requests in the window not marked incorrect.",
            |s| s.correctness,
        ),
    ];
    let slis: Vec<Vec<Sli>> = snap
        .series
        .iter()
        .map(|s| {
            s.windows
                .iter()
                .zip(&snap.windows)
                .map(|(w, d)| derive(&w.counts, *d))
                .collect()
        })
        .collect();
    let windowed = |s: &SeriesSnap, w: &str| {
        let mut a = series_attrs(s);
        a.push(kv("window", w));
        a
    };
    for (name, description, get) in ratios {
        let mut points = Vec::new();
        for (s, per_window) in snap.series.iter().zip(&slis) {
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
        metrics.push(gauge(name, "1", description, points));
    }

    let mut latency = Vec::new();
    let mut rate = Vec::new();
    for (s, per_window) in snap.series.iter().zip(&slis) {
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
    metrics.push(gauge(
        "cer.journey.latency",
        "s",
        "Latency quantiles over the window.",
        latency,
    ));
    metrics.push(gauge(
        "cer.journey.request_rate",
        "{request}/s",
        "Requests over the window per second.",
        rate,
    ));

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
    metrics.push(gauge(
        "cer.telemetry.coverage",
        "1",
        "Share of entry-point spans that matched a journey.",
        coverage,
    ));
    metrics.push(gauge(
        "cer.definition.info",
        "1",
        "The version string of the journey definitions in force.",
        vec![number(
            vec![kv("version", &sh.version)],
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

/// Pushes once; failures are counted and logged, never fatal.
pub async fn push_once(
    sh: &Shared,
    client: &mut MetricsServiceClient<tonic::transport::Channel>,
    cfg: &OtlpExporter,
) {
    let snap = sh.snapshot.load_full();
    let req = build_request(sh, &snap);
    let mut request = tonic::Request::new(req);
    request.set_timeout(cfg.timeout);
    match client.export(request).await {
        Ok(_) => sh.tel.otlp_exports_ok.add(1),
        Err(status) => {
            sh.tel.otlp_exports_failed.add(1);
            tracing::warn!(endpoint = %cfg.endpoint, code = ?status.code(), message = status.message(), "OTLP metric push failed.");
        }
    }
}

/// Pushes every interval until cancelled, then once more so the last figures leave.
pub async fn run(
    sh: Arc<Shared>,
    cfg: OtlpExporter,
    cancel: CancellationToken,
    final_push: tokio::sync::oneshot::Receiver<()>,
) {
    let channel = match tonic::transport::Endpoint::from_shared(cfg.endpoint.clone()) {
        Ok(e) => e.connect_timeout(cfg.timeout).connect_lazy(),
        Err(e) => {
            tracing::error!(endpoint = %cfg.endpoint, error = %e, "Invalid OTLP exporter endpoint; pushing is off.");
            return;
        }
    };
    let mut client = MetricsServiceClient::new(channel);
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => push_once(&sh, &mut client, &cfg).await,
            _ = cancel.cancelled() => break,
        }
    }
    // Wait for the final snapshot of shutdown, then push it.
    let _ = final_push.await;
    push_once(&sh, &mut client, &cfg).await;
}
