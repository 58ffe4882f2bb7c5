//! The metric-point path of operational signals, in data points per second
//! (`Throughput::Elements`):
//!
//! - `signals/process/1000`: one `ExportMetricsServiceRequest` of 1,000 points (10
//!   deployments x (30 pod cpu gauge points, 30 cumulative restart counters, 40 queue
//!   gauge points)) through `Signals::process` for 10 journeys with 3 signals each, every
//!   journey's cpu signal matched by a resource attribute: the walk, the name lookup, the
//!   conditions, the refusal checks, the cumulative stream table and the slice slots.
//!   Each iteration's request is one export later (timestamps +10 s, counters +1), so
//!   cumulative points take the increment path, not the repeat path.
//! - `signals/skip/1000`: the same request when no journey has signals: the cost every
//!   metrics request pays now that metrics are read.
//!
//! Wall time, on whatever else the machine runs: see BENCHMARKS.md for the load noted.
//! Run: `cargo bench --bench metric_path`.

use cerflow::clock::now_unix_ns;
use cerflow::config::Config;
use cerflow::journey::Journeys;
use cerflow::signals::Signals;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

const DEPLOYMENTS: usize = 10;
const S: u64 = 1_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn config(with_signals: bool) -> Config {
    let mut text = String::from("journeys:\n");
    for d in 0..DEPLOYMENTS {
        text.push_str(&format!(
            "  - name: j{d}\n    match: {{ span_name: s{d} }}\n"
        ));
        if with_signals {
            text.push_str(&format!(
                "    signals:\n      - name: k8s.pod.cpu.utilization\n        match: {{ resource_attributes: [{{ key: k8s.deployment.name, equals: d{d} }}] }}\n        max: 0.8\n      - {{ name: k8s.container.restarts, aggregate: rate, max: 0.01, match: {{ resource_attributes: [{{ key: k8s.deployment.name, equals: d{d} }}] }} }}\n      - {{ name: queue.depth, aggregate: avg, max: 1000, match: {{ attributes: [{{ key: queue, equals: q{d} }}] }} }}\n"
            ));
        }
    }
    Config::parse(&text, "bench.yaml", &|_| None).expect("a valid bench config")
}

fn number(start: u64, t: u64, v: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// The request of export number `n` (10 s apart).
fn request(start: u64, n: u64) -> ExportMetricsServiceRequest {
    let t = start + (n + 1) * 10 * S;
    let resource_metrics = (0..DEPLOYMENTS)
        .map(|d| {
            let pod = |p: usize| vec![kv("k8s.pod.name", &format!("d{d}-p{p}"))];
            let cpu = (0..30).map(|p| number(0, t, 0.5, pod(p))).collect();
            let restarts = (0..30)
                .map(|p| number(start, t, n as f64, pod(p)))
                .collect();
            let queue = (0..40)
                .map(|p| number(0, t, 10.0, vec![kv("queue", &format!("q{}", (d + p) % 10))]))
                .collect();
            let gauge = |name: &str, data_points| Metric {
                name: name.into(),
                unit: "1".into(),
                data: Some(metric::Data::Gauge(Gauge { data_points })),
                ..Default::default()
            };
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", &format!("svc{d}")),
                        kv("k8s.deployment.name", &format!("d{d}")),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        gauge("k8s.pod.cpu.utilization", cpu),
                        Metric {
                            name: "k8s.container.restarts".into(),
                            unit: "{restart}".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: restarts,
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        gauge("queue.depth", queue),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("signals");
    g.throughput(Throughput::Elements(1000));
    for (name, with) in [("process", true), ("skip", false)] {
        let cfg = config(with);
        let journeys = Journeys::new(&cfg);
        // Streams started after cerflow: every first value counts, none is a baseline.
        let start = now_unix_ns() - 3 * 60 * S;
        let signals = Signals::new(&cfg, &journeys, start - S);
        let mut n = 0u64;
        g.bench_function(format!("{name}/1000"), |b| {
            b.iter_batched(
                || {
                    n = (n + 1) % 12;
                    request(start, n)
                },
                |req| {
                    let out = signals.process(&req, start + 3 * 60 * S);
                    assert_eq!(out.rejected(), 0);
                    black_box(out)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
