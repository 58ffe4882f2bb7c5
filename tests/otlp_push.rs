//! OTLP metric push: a real OTLP MetricsService (the official generated tonic service)
//! runs inside the test; cerflow pushes its journey metrics to it, and pushes one last
//! time when it gets SIGTERM.

mod common;

use common::fake_receiver::{attrs, metrics, Answer, Collector, Receiver};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn config(p: &Ports, receiver_port: u16, interval: &str) -> String {
    format!(
        "version: push-v1\n{}pipeline:\n  evaluation_interval: 100ms\nwindows:\n  sizes: [1m]\n\
         cohorts:\n  keys: [cloud.region]\n\
         journeys:\n  - name: checkout\n    match:\n      service: shop-api\n      span_name: POST /checkout\n      kind: server\n    latency_threshold: 300ms\n",
        p.listeners_yaml(&format!(
            "  otlp:\n    endpoint: http://127.0.0.1:{receiver_port}\n    interval: {interval}\n    timeout: 2s\n"
        ))
    )
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    metrics(req).find(|m| m.name == name)
}

#[track_caller]
fn must<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    metric(req, name).unwrap_or_else(|| panic!("no metric {name} in the push:\n{req:#?}"))
}

fn number_points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(metric::Data::Sum(s)) => &s.data_points,
        Some(metric::Data::Gauge(g)) => &g.data_points,
        _ => &[],
    }
}

/// The value of the number point of `name` whose attributes are exactly `want`.
fn point_value(
    req: &ExportMetricsServiceRequest,
    name: &str,
    want: &[(&str, &str)],
) -> Option<number_data_point::Value> {
    let want = map(want);
    number_points(metric(req, name)?)
        .iter()
        .find(|p| attrs(&p.attributes) == want)
        .and_then(|p| p.value)
}

#[track_caller]
fn assert_int(req: &ExportMetricsServiceRequest, name: &str, labels: &[(&str, &str)], want: i64) {
    let got = point_value(req, name, labels);
    assert_eq!(
        got,
        Some(number_data_point::Value::AsInt(want)),
        "{name}{labels:?}\n{:#?}",
        metric(req, name)
    );
}

#[track_caller]
fn assert_double(
    req: &ExportMetricsServiceRequest,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) {
    let got = point_value(req, name, labels);
    assert_eq!(
        got,
        Some(number_data_point::Value::AsDouble(want)),
        "{name}{labels:?}\n{:#?}",
        metric(req, name)
    );
}

fn requests_are(n: i64) -> impl Fn(&ExportMetricsServiceRequest) -> bool {
    move |r| {
        point_value(
            r,
            "cer.journey.requests",
            &[("journey", "checkout"), ("cloud.region", "eu-west-1")],
        ) == Some(number_data_point::Value::AsInt(n))
    }
}

#[test]
fn journey_metrics_are_pushed_over_otlp() {
    let rt = runtime();
    let collector = Collector::new(Answer::Accept);
    let receiver = Receiver::start(&rt, &collector, 0);
    let mut cerflow = Cerflow::start(|p| config(p, receiver.port, "200ms"));
    send_checkouts(&rt, &cerflow.grpc_endpoint());

    let req = collector.wait_for(
        "cer.journey.requests{checkout, eu-west-1} = 4",
        requests_are(4),
    );

    // Resource and scope.
    assert_eq!(req.resource_metrics.len(), 1, "{req:#?}");
    let rm = &req.resource_metrics[0];
    let res = attrs(&rm.resource.as_ref().expect("a resource").attributes);
    assert_eq!(
        res.get("service.name").map(String::as_str),
        Some("cerflow"),
        "{res:?}"
    );
    let instance = res.get("service.instance.id").cloned().unwrap_or_default();
    assert!(!instance.is_empty(), "service.instance.id is set: {res:?}");
    assert!(res.contains_key("service.version"), "{res:?}");
    assert_eq!(
        rm.scope_metrics[0].scope.as_ref().map(|s| s.name.as_str()),
        Some("cerflow")
    );

    // Counters: cumulative monotonic sums, cohort keys as written in the config.
    let series = [("journey", "checkout"), ("cloud.region", "eu-west-1")];
    for (name, want) in [
        ("cer.journey.requests", 4),
        ("cer.journey.errors", 1),
        ("cer.journey.slow", 1),
        ("cer.journey.incorrect", 0),
    ] {
        let m = must(&req, name);
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("{name} is not a Sum: {m:#?}")
        };
        assert!(sum.is_monotonic, "{name} is monotonic");
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32,
            "{name} is cumulative"
        );
        assert_eq!(sum.data_points.len(), 1, "{m:#?}");
        let p = &sum.data_points[0];
        assert!(
            p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano,
            "{p:#?}"
        );
        assert_int(&req, name, &series, want);
    }

    // Duration histogram: non-cumulative bucket counts over the default bounds.
    let m = must(&req, "cer.journey.duration");
    assert_eq!(m.unit, "s");
    let Some(metric::Data::Histogram(h)) = &m.data else {
        panic!("cer.journey.duration is not a Histogram: {m:#?}")
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(h.data_points.len(), 1, "{m:#?}");
    let p = &h.data_points[0];
    assert_eq!(attrs(&p.attributes), map(&series));
    assert_eq!(p.count, 4);
    let sum = p.sum.expect("sum is set");
    assert!((sum - 0.75).abs() < 1e-9, "sum {sum}");
    assert_eq!(
        p.explicit_bounds,
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    );
    // 50 ms -> le 0.05, 100 ms -> le 0.1, 200 ms -> le 0.25, 400 ms -> le 0.5.
    assert_eq!(p.bucket_counts, vec![0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0]);

    // SLI gauges with the window attribute.
    let windowed = [
        ("journey", "checkout"),
        ("cloud.region", "eu-west-1"),
        ("window", "1m"),
    ];
    for name in [
        "cer.sli.availability",
        "cer.sli.latency",
        "cer.sli.correctness",
    ] {
        let m = must(&req, name);
        assert!(
            matches!(m.data, Some(metric::Data::Gauge(_))),
            "{name} is a Gauge: {m:#?}"
        );
        assert_eq!(m.unit, "1");
    }
    assert_double(&req, "cer.sli.availability", &windowed, 0.75);
    assert_double(&req, "cer.sli.latency", &windowed, 0.75);
    assert_double(&req, "cer.sli.correctness", &windowed, 1.0);
    assert_double(&req, "cer.journey.request_rate", &windowed, 4.0 / 60.0);
    let durations = [
        Duration::from_millis(50),
        Duration::from_millis(100),
        Duration::from_millis(200),
        Duration::from_millis(400),
    ];
    for q in ["0.5", "0.9", "0.95", "0.99"] {
        let mut l = windowed.to_vec();
        l.push(("quantile", q));
        assert_double(
            &req,
            "cer.journey.latency",
            &l,
            expected_quantile(&durations, q.parse().unwrap()),
        );
    }
    assert_double(
        &req,
        "cer.journey.latency",
        &[windowed[0], windowed[1], windowed[2], ("quantile", "0.5")],
        0.1,
    );
    assert_double(&req, "cer.telemetry.coverage", &[("window", "1m")], 1.0);
    assert_int(&req, "cer.definition.info", &[("version", "push-v1")], 1);

    // Pushes keep coming every 200ms with the same instance id; /metrics counts them.
    let before = collector.count();
    let s = cerflow.wait_until("two more pushes", |s| {
        collector.count() >= before + 2 && s.value("cerflow_otlp_exports_total", &[]) >= 2.0
    });
    s.assert("cerflow_otlp_export_failures_total", &[], 0.0);
    for r in collector.all().iter().map(|a| &a.req) {
        let res = attrs(&r.resource_metrics[0].resource.as_ref().unwrap().attributes);
        assert_eq!(
            res.get("service.instance.id"),
            Some(&instance),
            "one instance id for the process"
        );
    }

    // On SIGTERM cerflow pushes once more before it exits.
    let killed_at = Instant::now();
    let status = cerflow.terminate();
    assert!(status.success(), "exit status {status}\n{}", cerflow.logs());
    let after: Vec<_> = collector
        .all()
        .into_iter()
        .filter(|a| a.at > killed_at)
        .collect();
    assert!(
        !after.is_empty(),
        "no push after SIGTERM\n{}",
        cerflow.logs()
    );
    assert!(
        requests_are(4)(&after.last().unwrap().req),
        "the final push carries the figures"
    );
}

/// With an interval far longer than the test, the only push is the final one at SIGTERM,
/// and it carries everything received before the signal.
#[test]
fn the_final_push_happens_on_sigterm() {
    let rt = runtime();
    let collector = Collector::new(Answer::Accept);
    let receiver = Receiver::start(&rt, &collector, 0);
    let mut cerflow = Cerflow::start(|p| config(p, receiver.port, "1h"));
    send_checkouts(&rt, &cerflow.grpc_endpoint());
    let s = cerflow.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cloud_region", "eu-west-1")],
        4.0,
    );
    s.assert("cerflow_otlp_exports_total", &[], 0.0);
    assert_eq!(
        collector.count(),
        0,
        "no push before the first interval ends"
    );

    let status = cerflow.terminate();
    assert!(status.success(), "exit status {status}\n{}", cerflow.logs());
    let all = collector.all();
    assert_eq!(
        all.len(),
        1,
        "exactly one push, at shutdown\n{}",
        cerflow.logs()
    );
    let req = &all[0].req;
    assert!(requests_are(4)(req), "{req:#?}");
    assert_int(
        req,
        "cer.journey.errors",
        &[("journey", "checkout"), ("cloud.region", "eu-west-1")],
        1,
    );
    assert_double(
        req,
        "cer.sli.availability",
        &[
            ("journey", "checkout"),
            ("cloud.region", "eu-west-1"),
            ("window", "1m"),
        ],
        0.75,
    );
}

/// A push target that refuses connections: failures are counted, cerflow keeps serving
/// and still stops cleanly on SIGTERM.
#[test]
fn failed_pushes_are_counted_and_not_fatal() {
    let rt = runtime();
    let nobody = free_port();
    // Undelivered pushes are retried until shutdown_timeout; keep that short here.
    let mut cerflow = Cerflow::start(|p| {
        replace_once(
            &config(p, nobody, "200ms"),
            "pipeline:\n  evaluation_interval: 100ms\n",
            "pipeline:\n  evaluation_interval: 100ms\n  shutdown_timeout: 1s\n",
        )
    });
    send_checkouts(&rt, &cerflow.grpc_endpoint());
    let s = cerflow.wait_until("two failed pushes and 4 requests", |s| {
        s.value("cerflow_otlp_export_failures_total", &[]) >= 2.0
            && s.get(
                "cer_journey_requests_total",
                &[("journey", "checkout"), ("cloud_region", "eu-west-1")],
            ) == Some(4.0)
    });
    s.assert("cerflow_otlp_exports_total", &[], 0.0);
    let stopping = Instant::now();
    let status = cerflow.terminate();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "shutdown_timeout 1s bounds the stop, took {took:?}\n{}",
        cerflow.logs()
    );
    assert!(status.success(), "exit status {status}\n{}", cerflow.logs());
    assert!(
        cerflow.logs().contains("OTLP metric push failed"),
        "the failure is logged\n{}",
        cerflow.logs()
    );
}
