//! Operational signals through the real binary: OTLP metrics built by hand (gauges,
//! delta and cumulative counters) over OTLP/HTTP, judged in one-minute time slices, as
//! the operations SLI, its SLO and the score; bad points refused as partial success.

mod common;

use common::otlp::{
    checkout_spans, gauge_metric, metrics_request, now_ns, number_point, sum_metric, traces,
};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
};
use prost::Message;

const MIN: u64 = 60_000_000_000;
const SEC: u64 = 1_000_000_000;

const CONFIG: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m, 15m]
signals:
  slice: 1m
slo:
  objectives: { operations: 0.9 }
score:
  sli_weights: { availability: 0.5, latency: 0.3, correctness: 0.2, operations: 1 }
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
    signals:
      - name: k8s.pod.cpu.utilization
        match: { resource_attributes: [{ key: k8s.deployment.name, equals: checkout }] }
        aggregate: max
        max: 0.8
  - name: strict
    match: { span_name: never at all }
    objectives: { operations: 0.99 }
    signals:
      - name: k8s.pod.cpu.utilization
        match: { resource_attributes: [{ key: k8s.deployment.name, equals: checkout }] }
        max: 0.8
  - name: restarts
    match: { span_name: never }
    signals:
      - { name: k8s.container.restarts, aggregate: rate, max: 0.01 }
  - name: queue
    match: { span_name: never either }
    signals:
      - { name: queue.depth, aggregate: avg, max: 1000 }
"#;

/// POSTs a metrics request as OTLP/HTTP protobuf; the partial success it was answered with.
fn post_metrics(cf: &Cerflow, req: &ExportMetricsServiceRequest) -> (i64, String) {
    cf.post_metrics(req)
}

/// POSTs cumulative, monotonic `k8s.container.restarts` points of service checkout
/// (the restarts journey's signal), answered with no rejection.
fn post_restarts(cf: &Cerflow, points: Vec<NumberDataPoint>) {
    let restarts = sum_metric("k8s.container.restarts", "{restart}", true, true, points);
    let req = metrics_request(&[("service.name", "checkout")], vec![restarts]);
    assert_eq!(post_metrics(cf, &req), (0, String::new()));
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() < 1e-9
}

/// The start of slice `current - k`, where `current` is the slice holding `now`.
fn slice_start(now: u64, k: u64) -> u64 {
    (now / MIN - k) * MIN
}

/// The hand-worked scenario of the issue: 12 one-minute slices (current - 13 to
/// current - 2), two cpu points in each at +10 s and +40 s, max aggregate, bound 0.8:
/// slice -8 has no point (missing), slices -13, -10 and -4 go over the bound (0.9,
/// 0.95, 0.85), the rest stay under. Slices with data: 11; bad: 3; good: 8.
/// A point of another deployment (0.99, every slice) must not count.
fn cpu_scenario(now: u64) -> ExportMetricsServiceRequest {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for k in 2..=13u64 {
        if k == 8 {
            continue;
        }
        let high = match k {
            13 => 0.9,
            10 => 0.95,
            4 => 0.85,
            2 => 0.6,
            _ => 0.7,
        };
        let t = slice_start(now, k);
        ours.push(number_point(0, t + 10 * SEC, 0.3, vec![]));
        ours.push(number_point(0, t + 40 * SEC, high, vec![]));
        theirs.push(number_point(0, t + 20 * SEC, 0.99, vec![]));
    }
    let mut req = metrics_request(
        &[
            ("service.name", "checkout"),
            ("k8s.deployment.name", "checkout"),
        ],
        vec![gauge_metric("k8s.pod.cpu.utilization", "1", ours)],
    );
    req.resource_metrics.extend(
        metrics_request(
            &[
                ("service.name", "search"),
                ("k8s.deployment.name", "search"),
            ],
            vec![gauge_metric("k8s.pod.cpu.utilization", "1", theirs)],
        )
        .resource_metrics,
    );
    req
}

#[test]
fn cpu_slices_give_the_hand_worked_ratio_budget_and_weighted_score() {
    let cf = Cerflow::start_with(CONFIG);
    let now = now_ns();
    assert_eq!(post_metrics(&cf, &cpu_scenario(now)), (0, String::new()));
    // 10 fast, successful checkout spans: availability and latency are perfect.
    let body = traces("shop", checkout_spans(10, 0, 5)).encode_to_vec();
    let r = cf
        .client()
        .post(cf.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("POST /v1/traces");
    assert_eq!(r.status(), 200);

    let j = ("journey", "checkout");
    let w15 = ("window", "15m");
    let sli = ("sli", "operations");
    let s = cf.wait_until("the slices closed into the budget", |s| {
        s.get("cer_journey_requests_total", &[j]) == Some(10.0)
            && s.get("cer_slo_burn_rate", &[j, sli, ("window", "5m")])
                .is_some()
    });
    // 8 good of 11 slices with data; the missing slice counts for nothing.
    s.assert("cer_sli_operations_ratio", &[j, w15], 8.0 / 11.0);
    // The 1m window holds only the current slice, which has no point: no ratio.
    s.assert_absent("cer_sli_operations_ratio", &[j, ("window", "1m")]);
    // The latest slice with data (-2) had max 0.6, within 0.8.
    let signal = ("signal", "k8s.pod.cpu.utilization");
    s.assert("cer_signal_value", &[j, signal, w15], 0.6);
    s.assert_absent("cer_signal_value", &[j, signal, ("window", "1m")]);
    s.assert("cer_signal_ok", &[j, signal], 1.0);
    // Budget over the period: bad share 3/11 against 1 - 0.9: burn 30/11 = 2.7272...,
    // remaining 1 - 30/11 = -19/11. The 5m burn window holds the same 11 slices (they
    // all closed at once, on arrival).
    let burn = s.value("cer_slo_burn_rate", &[j, sli, ("window", "5m")]);
    assert!(close(burn, 30.0 / 11.0), "burn {burn}\n{}", s.text);
    let left = s.value("cer_slo_error_budget_remaining_ratio", &[j, sli]);
    assert!(close(left, -19.0 / 11.0), "budget {left}\n{}", s.text);
    s.assert("cer_slo_objective_ratio", &[j, sli], 0.9);
    // Score over 15m: availability and latency components 1 (weights 0.5, 0.3); the
    // operations component at burn 30/11 with floor 10 is 1 - (30/11 - 1) / 9 = 80/99,
    // weight 1. (0.8 + 80/99) / 1.8 = 0.89337...
    let score = s.value("cer_journey_score", &[j, w15]);
    assert!(
        close(score, (0.8 + 80.0 / 99.0) / 1.8),
        "score {score}\n{}",
        s.text
    );
    // Over 1m the operations SLI has no data: the score is the request SLIs' alone.
    s.assert("cer_journey_score", &[j, ("window", "1m")], 1.0);
    // 11 slices in the 1h long window are at least min_events (10), burn 2.7 < 14.4.
    s.assert("cer_slo_alert_active", &[j, sli, ("severity", "page")], 0.0);
    // The same slices against 0.99: burn (3/11) / 0.01 = 27.3 over 11 slices (at least
    // min_events) in every window, above 14.4 (page, 1h and 5m), 3 and 1 (tickets).
    let strict = ("journey", "strict");
    s.assert(
        "cer_slo_alert_active",
        &[strict, sli, ("severity", "page")],
        1.0,
    );
    s.assert(
        "cer_slo_alert_active",
        &[strict, sli, ("severity", "ticket")],
        1.0,
    );
    s.assert(
        "cer_slo_alert_active",
        &[strict, ("sli", "availability"), ("severity", "page")],
        0.0,
    );
    // Journeys without signals show no operations series.
    s.assert_absent("cer_slo_objective_ratio", &[("journey", "nothing"), sli]);

    // The score API carries the same figures.
    let url = format!(
        "http://127.0.0.1:{}/api/v1/scores?journey=checkout&window=15m",
        cf.ports.prom
    );
    let text = cf
        .client()
        .get(url)
        .send()
        .expect("GET the score API")
        .text()
        .expect("a body");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let w = &v["journeys"][0]["windows"][0];
    assert_eq!(w["slices"], 11, "{v}");
    assert_eq!(w["bad_slices"], 3, "{v}");
    assert_eq!(w["operations"].as_f64(), Some(8.0 / 11.0), "{v}");
    let b = v["journeys"][0]["budget_remaining"]["operations"].as_f64();
    assert!(b.is_some_and(|b| close(b, -19.0 / 11.0)), "{v}");

    // And the gRPC score API (score.proto's WindowDetail fields 14 to 16).
    let snap = cf.grpc_scores(&["checkout"], "15m");
    let w = &snap.journeys[0].windows[0];
    assert_eq!((w.slices, w.bad_slices), (11, 3));
    assert_eq!(w.operations, Some(8.0 / 11.0));
    assert!(close(
        snap.journeys[0].budget_remaining["operations"],
        -19.0 / 11.0
    ));

    // The release gate reads the same score: 0.893 fails a floor of 0.9, passes 0.85.
    let gate = |min: &str| {
        cf.gate(&[
            "--journey",
            "checkout",
            "--window",
            "15m",
            "--min-score",
            min,
        ])
    };
    let (code, out) = gate("0.9");
    assert_eq!(code, 1, "{out}");
    let (code, out) = gate("0.85");
    assert_eq!(code, 0, "{out}");
    // And its alerts: the strict journey's operations page denies the release.
    let (code, out) = cf.gate(&[
        "--journey",
        "strict",
        "--window",
        "15m",
        "--deny-alerts",
        "page",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("page:operations"), "{out}");
}

#[test]
fn a_restart_counter_crossing_its_rate_bound_with_a_baseline_and_a_reset() {
    let cf = Cerflow::start_with(CONFIG);
    let now = now_ns();
    let t = |k: u64| slice_start(now, k) + 30 * SEC;
    // A cumulative counter whose process started an hour before cerflow: its first
    // point (40, slice -5) is a baseline, so slice -5 has no data. Then 40 (slice -4:
    // +0, rate 0), 43 (slice -3: +3 in 60 s, rate 0.05 > 0.01: bad), then the process
    // restarts (new start time) and reports 0 (slice -2: +0). Slices with data: -4, -3,
    // -2; bad: -3. Ratio 2/3.
    let old_start = now - 3600 * SEC;
    let new_start = slice_start(now, 2) + SEC;
    let points = vec![
        number_point(old_start, t(5), 40.0, vec![]),
        number_point(old_start, t(4), 40.0, vec![]),
        number_point(old_start, t(3), 43.0, vec![]),
        number_point(new_start, t(2), 0.0, vec![]),
    ];
    post_restarts(&cf, points);
    let j = ("journey", "restarts");
    let w15 = ("window", "15m");
    let s = cf.wait_until("the restart slices", |s| {
        s.get("cer_sli_operations_ratio", &[j, w15]).is_some()
    });
    s.assert("cer_sli_operations_ratio", &[j, w15], 2.0 / 3.0);
    let signal = ("signal", "k8s.container.restarts");
    s.assert("cer_signal_value", &[j, signal, w15], 0.0);
    s.assert("cer_signal_ok", &[j, signal], 1.0);

    // The same counter again, 2 more restarts in the slice before the current one:
    // rate 2/60 > 0.01, so the signal is out of bounds now and the ratio is 2/4.
    let more = vec![number_point(
        new_start,
        slice_start(now, 1) + 30 * SEC,
        2.0,
        vec![],
    )];
    post_restarts(&cf, more);
    let s = cf.wait_for("cer_signal_ok", &[j, signal], 0.0);
    s.assert("cer_sli_operations_ratio", &[j, w15], 2.0 / 4.0);
    s.assert("cer_signal_value", &[j, signal, w15], 2.0 / 60.0);
}

#[test]
fn delta_points_are_averaged_and_bad_points_are_refused_with_their_reasons() {
    let cf = Cerflow::start_with(CONFIG);
    let now = now_ns();
    let t = slice_start(now, 3) + 5 * SEC;
    // Queue depth gauge points in slice -3: 900 and 1300 average 1100 > 1000: bad.
    // Slice -2: 200: good. Restarts as a delta counter: 2 in slice -3 (2/60 > 0.01:
    // bad), 0 in slice -2 (good).
    let good = vec![
        gauge_metric(
            "queue.depth",
            "{message}",
            vec![
                number_point(0, t, 900.0, vec![]),
                number_point(0, t + SEC, 1300.0, vec![]),
                number_point(0, t + MIN, 200.0, vec![]),
            ],
        ),
        sum_metric(
            "k8s.container.restarts",
            "{restart}",
            true,
            false,
            vec![
                number_point(t - SEC, t, 2.0, vec![]),
                number_point(t + MIN - SEC, t + MIN, 0.0, vec![]),
            ],
        ),
        // Not a signal: a NaN here is none of cerflow's business.
        gauge_metric(
            "other.metric",
            "furlong",
            vec![number_point(0, t, f64::NAN, vec![])],
        ),
    ];
    let histogram = Metric {
        name: "queue.depth".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: t,
                count: 1,
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })),
        ..Default::default()
    };
    let bad = vec![
        gauge_metric(
            "queue.depth",
            "{message}",
            vec![number_point(0, t, f64::NAN, vec![])],
        ),
        sum_metric(
            "queue.depth",
            "{message}",
            true,
            false,
            vec![number_point(0, t, -3.0, vec![])],
        ),
        gauge_metric(
            "queue.depth",
            "furlong",
            vec![number_point(0, t, 5.0, vec![])],
        ),
        gauge_metric(
            "queue.depth",
            "{message}",
            vec![number_point(0, 0, 5.0, vec![])],
        ),
        // 20 minutes ago: older than the longest window (15m).
        gauge_metric(
            "queue.depth",
            "{message}",
            vec![number_point(0, now - 20 * MIN, 5.0, vec![])],
        ),
        histogram,
    ];
    let mut req = metrics_request(&[("service.name", "worker")], good);
    req.resource_metrics[0].scope_metrics[0].metrics.extend(bad);
    let (rejected, message) = post_metrics(&cf, &req);
    // 6 bad of 12 points; the message names the first.
    assert_eq!(rejected, 6, "{message}");
    assert_eq!(
        message,
        "6 of 12 data points rejected; first: metric \"queue.depth\": not_finite"
    );
    let j = ("journey", "queue");
    let w15 = ("window", "15m");
    let s = cf.wait_until("the queue slices", |s| {
        s.get("cer_sli_operations_ratio", &[j, w15]).is_some()
    });
    s.assert("cer_sli_operations_ratio", &[j, w15], 0.5);
    s.assert(
        "cer_signal_value",
        &[j, ("signal", "queue.depth"), w15],
        200.0,
    );
    let r = ("journey", "restarts");
    s.assert("cer_sli_operations_ratio", &[r, w15], 0.5);
    s.assert(
        "cer_signal_value",
        &[r, ("signal", "k8s.container.restarts"), w15],
        0.0,
    );
    s.assert("cerflow_received_data_points_total", &[], 12.0);
    for reason in [
        "not_finite",
        "negative_counter",
        "unknown_unit",
        "missing_time",
        "too_old",
        "unsupported_type",
    ] {
        s.assert(
            "cerflow_refused_data_points_total",
            &[("reason", reason)],
            1.0,
        );
    }
    s.assert(
        "cerflow_refused_data_points_total",
        &[("reason", "stream_limit")],
        0.0,
    );
}

#[test]
fn otlp_json_metrics_hear_of_refused_points_as_rejected_data_points() {
    let cf = Cerflow::start_with(CONFIG);
    // One monotonic delta point of -1 restarts: a negative counter.
    let body = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"k8s.container.restarts","unit":"{{restart}}","sum":{{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{{"timeUnixNano":"{}","asDouble":-1}}]}}}}]}}]}}]}}"#,
        now_ns()
    );
    let r = cf
        .client()
        .post(cf.http_url("/v1/metrics"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("POST /v1/metrics");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().expect("a body")).expect("JSON");
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1", "{v}");
    assert_eq!(
        v["partialSuccess"]["errorMessage"],
        "1 of 1 data points rejected; first: metric \"k8s.container.restarts\": negative_counter"
    );
    cf.wait_for(
        "cerflow_refused_data_points_total",
        &[("reason", "negative_counter")],
        1.0,
    );
}

#[test]
fn a_cumulative_stream_idle_for_series_ttl_is_forgotten_and_baselined_again() {
    let config = CONFIG.replace(
        "  sizes: [1m, 15m]\n",
        "  sizes: [1m, 15m]\n  series_ttl: 1s\n",
    );
    let cf = Cerflow::start_with(&config);
    let now = now_ns();
    let started = now - 3600 * SEC;
    let t = slice_start(now, 2);
    let send = |time: u64, value: f64| {
        let points = vec![number_point(started, time, value, vec![])];
        post_restarts(&cf, points);
    };
    // 10: the stream began before cerflow, a baseline. Then 1.5 s of silence, past the
    // 1 s ttl: the stream is forgotten, so 15 is a baseline again (not +5). Then 17 in
    // the same slice: +2, rate 2/60 over the bound. Had the stream been kept, the slice
    // would hold +7.
    send(t + SEC, 10.0);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    send(t + 2 * SEC, 15.0);
    send(t + 3 * SEC, 17.0);
    let j = ("journey", "restarts");
    let signal = ("signal", "k8s.container.restarts");
    let s = cf.wait_until("the restart slice", |s| {
        s.get("cer_signal_value", &[j, signal, ("window", "15m")])
            .is_some()
    });
    s.assert(
        "cer_signal_value",
        &[j, signal, ("window", "15m")],
        2.0 / 60.0,
    );
    s.assert("cer_sli_operations_ratio", &[j, ("window", "15m")], 0.0);
}
