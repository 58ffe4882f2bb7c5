//! Journeys measured from OTLP metrics through the real binary: the same requests sent
//! as spans, as a delta, a cumulative and an exponential histogram give the same counts and
//! SLIs; cumulative counters with a baseline and a reset; the coverage of a journey a
//! quarter of whose requests are traced, whose users still come from its spans;
//! malformed points refused as partial success.

mod common;

use common::otlp::{
    checkout_spans, exponential_metric, failed, histogram_metric, histogram_point, kv, kv_any,
    metrics_request, now_ns, number_point, sum_metric, traces,
};
use common::*;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use prost::Message;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

const CONFIG: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m, 5m]
histogram:
  buckets: [0.1, 0.25, 0.5, 1]
journeys:
  - name: spans
    match: { span_name: POST /checkout }
    latency_threshold: 250ms
  - name: delta
    latency_threshold: 250ms
    metrics:
      - name: http.server.request.duration
        match: { attributes: [{ key: http.route, equals: /delta }] }
  - name: cumulative
    latency_threshold: 250ms
    metrics:
      - name: http.server.request.duration
        match: { attributes: [{ key: http.route, equals: /cumulative }] }
  - name: exponential
    latency_threshold: 250ms
    metrics:
      - name: http.server.request.duration
        match: { attributes: [{ key: http.route, equals: /exponential }] }
  - name: orders
    metrics:
      - { name: orders.requests }
      - { name: orders.errors, role: errors }
  - name: traced
    match: { span_name: GET /traced }
    cohorts: [region]
    metrics:
      - { name: traced.requests }
"#;

const BOUNDS: [f64; 4] = [0.1, 0.25, 0.5, 1.0];

fn status(code: i64) -> KeyValue {
    kv_any(
        "http.response.status_code",
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(code)),
        }),
    )
}

/// The two points (status 200, status 503) of route `route` holding `ok` and `bad`
/// requests per bucket.
fn route_points(
    route: &str,
    start: u64,
    t: u64,
    ok: [u64; 5],
    ok_sum: f64,
    bad: [u64; 5],
    bad_sum: f64,
) -> Vec<HistogramDataPoint> {
    vec![
        histogram_point(
            start,
            t,
            &BOUNDS,
            &ok,
            ok_sum,
            vec![kv("http.route", route), status(200)],
        ),
        histogram_point(
            start,
            t,
            &BOUNDS,
            &bad,
            bad_sum,
            vec![kv("http.route", route), status(503)],
        ),
    ]
}

fn duration_request(
    cumulative: bool,
    points: Vec<HistogramDataPoint>,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    metrics_request(
        &[("service.name", "shop")],
        vec![histogram_metric(
            "http.server.request.duration",
            "s",
            cumulative,
            points,
        )],
    )
}

#[test]
fn spans_and_delta_cumulative_and_exponential_histograms_give_the_same_slis() {
    let cf = Cerflow::start_with(CONFIG);
    // The same 10 requests three ways. Durations: 4 x 50 ms (2 of them failed), 3 x 200
    // ms, 2 x 400 ms, 1 x 2 s. Slow (> 250 ms, a bucket bound): 2 + 1 = 3. Failed: 2.
    // Availability 8/10 = 0.8, latency 7/10 = 0.7.
    let mut spans = checkout_spans(2, 0, 50);
    spans.extend(checkout_spans(2, 10, 50).into_iter().map(failed));
    spans.extend(checkout_spans(3, 20, 200));
    spans.extend(checkout_spans(2, 30, 400));
    spans.extend(checkout_spans(1, 40, 2000));
    assert_eq!(
        cf.post_traces(
            traces("shop", spans).encode_to_vec(),
            "application/x-protobuf"
        ),
        200
    );
    // Status 200 in buckets (..0.1], (..0.25], (..0.5], (..1], (1..): 2, 3, 2, 0, 1;
    // sum 2 x 0.05 + 3 x 0.2 + 2 x 0.4 + 2 = 3.5. Status 503: 2 in the first; sum 0.1.
    let t = now_ns() - SEC;
    let delta = route_points(
        "/delta",
        t - 10 * SEC,
        t,
        [2, 3, 2, 0, 1],
        3.5,
        [2, 0, 0, 0, 0],
        0.1,
    );
    let req = duration_request;
    assert_eq!(cf.post_metrics(&req(false, delta)), (0, String::new()));
    // Cumulative, started after cerflow: the first export counts whole (200: 2, 1 in the
    // first two buckets; 503: 1), the second adds the rest up to the same totals.
    let start = now_ns();
    let first = route_points(
        "/cumulative",
        start,
        start + MS,
        [2, 1, 0, 0, 0],
        0.3,
        [1, 0, 0, 0, 0],
        0.05,
    );
    assert_eq!(cf.post_metrics(&req(true, first)), (0, String::new()));
    let second = route_points(
        "/cumulative",
        start,
        start + 2 * MS,
        [2, 3, 2, 0, 1],
        3.5,
        [2, 0, 0, 0, 0],
        0.1,
    );
    assert_eq!(cf.post_metrics(&req(true, second)), (0, String::new()));

    // Exponential, scale 0: bucket i is (2^i, 2^(i+1)] s. From offset -5: 0.05 s in
    // (1/32, 1/16], 0.2 in (1/8, 1/4], 0.4 in (1/4, 1/2], 2 in (1, 2]. 0.25 s is a bound:
    // slow is exact, (1/4, 1/2] and (1, 2]: 2 + 1.
    let route = |code| vec![kv("http.route", "/exponential"), status(code)];
    let exp = metrics_request(
        &[("service.name", "shop")],
        vec![exponential_metric(
            "http.server.request.duration",
            "s",
            t,
            -5,
            vec![(route(200), vec![2, 0, 3, 2, 0, 1]), (route(503), vec![2])],
        )],
    );
    assert_eq!(cf.post_metrics(&exp), (0, String::new()));
    let all = ["spans", "delta", "cumulative", "exponential"];
    let s = cf.wait_until("all four journeys counted 10 requests", |s| {
        all.iter()
            .all(|j| s.get("cer_journey_requests_total", &[("journey", j)]) == Some(10.0))
    });
    for j in all {
        let jl = ("journey", j);
        assert_eq!(s.value("cer_journey_errors_total", &[jl]), 2.0, "{j}");
        assert_eq!(s.value("cer_journey_slow_total", &[jl]), 3.0, "{j}");
        for w in ["1m", "5m"] {
            let l = [jl, ("window", w)];
            assert_eq!(s.value("cer_sli_availability_ratio", &l), 0.8, "{j} {w}");
            assert_eq!(s.value("cer_sli_latency_ratio", &l), 0.7, "{j} {w}");
        }
    }
    // The metric-fed histogram of cerflow's buckets 0.1, 0.25, 0.5, 1: the spans' own.
    for j in all {
        let jl = ("journey", j);
        for (le, n) in [
            ("0.1", 4.0),
            ("0.25", 7.0),
            ("0.5", 9.0),
            ("1", 9.0),
            ("+Inf", 10.0),
        ] {
            assert_eq!(
                s.value("cer_journey_duration_seconds_bucket", &[jl, ("le", le)]),
                n,
                "{j} le={le}"
            );
        }
    }
}

#[test]
fn cumulative_counters_baseline_and_reset_and_a_quarter_traced_is_a_coverage_of_a_quarter() {
    let cf = Cerflow::start_with(CONFIG);
    // After cerflow started: first values count whole.
    let start = now_ns();
    let t = start + MS;
    let pod = |p: &str| vec![kv("pod", p)];
    let counters = |t: u64, req_a: (u64, f64), req_b: f64, err_a: (u64, f64)| {
        metrics_request(
            &[("service.name", "orders")],
            vec![
                sum_metric(
                    "orders.requests",
                    "{request}",
                    true,
                    true,
                    vec![
                        number_point(req_a.0, t, req_a.1, pod("a")),
                        // Pod b started before cerflow (start 1 ns): its first point is a baseline.
                        number_point(1, t, req_b, pod("b")),
                    ],
                ),
                sum_metric(
                    "orders.errors",
                    "{request}",
                    true,
                    true,
                    vec![number_point(err_a.0, t, err_a.1, pod("a"))],
                ),
            ],
        )
    };
    // Requests: a 40, 100, then restarted (new start) at 5: 40 + 60 + 5 = 105; b's 1000 is
    // a baseline, then 1003: +3. 108 in all. Errors: 4, 10, restarted at 1: 4 + 6 + 1 = 11.
    // Availability = 1 - 11/108 = 97/108.
    let restarted = start + MS;
    for (i, (ra, rb, ea)) in [
        ((start, 40.0), 1000.0, (start, 4.0)),
        ((start, 100.0), 1003.0, (start, 10.0)),
        ((restarted, 5.0), 1003.0, (restarted, 1.0)),
    ]
    .into_iter()
    .enumerate()
    {
        let req = counters(t + i as u64 * MS, ra, rb, ea);
        assert_eq!(cf.post_metrics(&req), (0, String::new()));
    }
    // Traced: 8 requests counted by a delta counter, 2 of them traced: coverage 2/8.
    let req = metrics_request(
        &[("service.name", "traced")],
        vec![sum_metric(
            "traced.requests",
            "{request}",
            true,
            false,
            vec![number_point(0, t, 8.0, vec![kv("region", "eu")])],
        )],
    );
    assert_eq!(cf.post_metrics(&req), (0, String::new()));
    // The traced two name their users and region: the journey's users come from them.
    let mut spans = checkout_spans(2, 100, 5);
    for (s, user) in spans.iter_mut().zip(["u1", "u2"]) {
        s.name = "GET /traced".into();
        s.attributes.push(kv("region", "eu"));
        s.attributes.push(kv("enduser.id", user));
    }
    assert_eq!(
        cf.post_traces(
            traces("traced", spans).encode_to_vec(),
            "application/x-protobuf"
        ),
        200
    );
    let s = cf.wait_until("the orders and the traced requests", |s| {
        s.get("cer_journey_requests_total", &[("journey", "orders")]) == Some(108.0)
            && s.get(
                "cer_journey_users",
                &[("journey", "traced"), ("region", "eu"), ("window", "1m")],
            ) == Some(2.0)
            && s.get(
                "cer_journey_coverage_ratio",
                &[("journey", "traced"), ("window", "1m")],
            ) == Some(0.25)
    });
    let o = ("journey", "orders");
    assert_eq!(s.value("cer_journey_errors_total", &[o]), 11.0);
    assert_eq!(
        s.value("cer_sli_availability_ratio", &[o, ("window", "1m")]),
        1.0 - 11.0 / 108.0
    );
    // The traced journey's counts are the metrics', not its 2 spans; its users are its
    // spans', in the one series of region eu both make.
    let tr = ("journey", "traced");
    let eu = [tr, ("region", "eu")];
    assert_eq!(s.value("cer_journey_requests_total", &eu), 8.0);
    assert_eq!(
        s.value(
            "cer_journey_users",
            &[tr, ("region", "eu"), ("window", "1m")]
        ),
        2.0
    );
    assert_eq!(
        s.value(
            "cer_sli_availability_ratio",
            &[tr, ("region", "eu"), ("window", "1m")]
        ),
        1.0
    );
    assert_eq!(
        s.value("cer_journey_coverage_ratio", &[tr, ("window", "5m")]),
        0.25
    );
    // Journeys measured from metrics alone have no coverage.
    assert_eq!(
        s.get("cer_journey_coverage_ratio", &[o, ("window", "1m")]),
        None
    );
}

#[test]
fn malformed_points_are_refused_as_partial_success_and_counted_by_reason() {
    let cf = Cerflow::start_with(CONFIG);
    let t = now_ns() - SEC;
    let route = || vec![kv("http.route", "/delta")];
    // Buckets add up to 6, the count says 5.
    let mut uneven = histogram_point(0, t, &BOUNDS, &[1, 2, 3, 0, 0], 1.0, route());
    uneven.count = 5;
    let nan = histogram_point(0, t, &BOUNDS, &[1, 0, 0, 0, 0], f64::NAN, route());
    let fine = histogram_point(0, t, &BOUNDS, &[1, 0, 0, 0, 0], 0.05, route());
    let mut req = metrics_request(
        &[("service.name", "shop")],
        vec![
            histogram_metric(
                "http.server.request.duration",
                "s",
                false,
                vec![uneven, nan],
            ),
            // A duration in bytes.
            histogram_metric(
                "http.server.request.duration",
                "By",
                false,
                vec![fine.clone()],
            ),
            histogram_metric("http.server.request.duration", "ms", false, vec![fine]),
        ],
    );
    // A point of a metric no input reads is none of cerflow's business: not refused.
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(histogram_metric("other", "By", false, vec![]));
    assert_eq!(
        cf.post_metrics(&req),
        (
            3,
            "3 of 4 data points rejected; first: metric \"http.server.request.duration\": bad_buckets"
                .into()
        )
    );
    let s = cf.wait_until("the good point counted", |s| {
        s.get("cer_journey_requests_total", &[("journey", "delta")]) == Some(1.0)
    });
    for reason in ["bad_buckets", "not_finite", "unknown_unit"] {
        assert_eq!(
            s.value("cerflow_refused_data_points_total", &[("reason", reason)]),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(s.value("cerflow_received_data_points_total", &[]), 4.0);
}

/// Metric-fed series share `limits.max_window_state_bytes` with span-fed ones: past it a
/// new cohort goes to the journey's overflow series, counted, and their bytes are what
/// `cerflow_window_state_bytes` shows.
#[test]
fn metric_series_are_admitted_against_the_window_state_limit_and_counted_in_its_gauge() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nwindows:\n  sizes: [1m]\n\
             histogram:\n  buckets: [0.25, 1]\n\
             limits:\n  max_window_state_bytes: 1048576\n  max_series_per_journey: 100000\n\
             journeys:\n  - name: many\n    cohorts: [region]\n    metrics:\n      - {{ name: many.requests }}\n",
            p.listeners_yaml("")
        )
    });
    // A series as made: 1 window of 12 sub-buckets, each a Slot and its 8-byte index, and
    // 3 latency buckets (2 bounds + 1) of 8 bytes; counters bring no latency, so it stays
    // that size. No spans: the metric series are all the window state.
    let one = 12 * (std::mem::size_of::<cerflow::window::Slot>() + 8) + 3 * 8;
    // The n-th new series (from 0) is admitted while n x one < 1 MiB; three cohorts more,
    // 2 requests each, go to the overflow series (one series more).
    let admitted = 1_048_576usize.div_ceil(one);
    let t = now_ns() - SEC;
    let mut points: Vec<_> = (0..admitted)
        .map(|i| number_point(0, t, 1.0, vec![kv("region", &format!("r{i}"))]))
        .collect();
    points.extend((0..3).map(|i| number_point(0, t, 2.0, vec![kv("region", &format!("late{i}"))])));
    let req = metrics_request(
        &[("service.name", "many")],
        vec![sum_metric(
            "many.requests",
            "{request}",
            true,
            false,
            points,
        )],
    );
    assert_eq!(cf.post_metrics(&req), (0, String::new()));
    let s = cf.wait_until("the overflow counted and the bytes published", |s| {
        s.get("cerflow_cardinality_overflow_total", &[]) == Some(3.0)
            && s.get("cerflow_window_state_bytes", &[])
                .is_some_and(|b| b > 0.0)
    });
    s.assert(
        "cerflow_window_state_bytes",
        &[],
        ((admitted + 1) * one) as f64,
    );
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "many"), ("otel_metric_overflow", "true")],
        6.0,
    );
    assert_eq!(
        s.sum("cer_journey_requests_total", &[("journey", "many")]),
        (admitted + 6) as f64
    );
}
