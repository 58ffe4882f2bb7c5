//! The spine end to end: the real cerflow binary receives spans from the real
//! OpenTelemetry SDK over OTLP/gRPC, OTLP/gRPC with gzip, OTLP/HTTP protobuf and
//! OTLP/HTTP JSON, and `/metrics` shows exactly the figures worked out by hand below.

mod common;

use common::*;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use opentelemetry_otlp::Protocol;
use std::time::Duration;

const SHOP_JOURNEYS: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m, 1h]
cohorts:
  keys: [cloud.region, app.plan.tier]
journeys:
  - name: checkout
    match:
      service: shop-api
      span_name: POST /checkout
      kind: server
    latency_threshold: 300ms
    incorrect:
      - attributes:
          - key: app.result.valid
            equals: false
      - event: validation_failed
  - name: login
    match:
      service: shop-api
      span_name: POST /login
      kind: server
    latency_threshold: 150ms
  - name: search
    match:
      service: search-svc
      span_name:
        regex: "^GET /search"
      kind: server
  - name: refund
    match:
      service: shop-api
      span_name: POST /refund
"#;

fn shop_config(p: &Ports) -> String {
    format!(
        "version: shop-2024-06\n{}{SHOP_JOURNEYS}",
        p.listeners_yaml("")
    )
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Labels of a journey x cohort series (cohort keys cloud.region, app.plan.tier).
fn series<'a>(journey: &'a str, region: &'a str, tier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("journey", journey),
        ("cloud_region", region),
        ("app_plan_tier", tier),
    ]
}

fn with<'a>(
    mut labels: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    labels.extend_from_slice(extra);
    labels
}

/// Asserts requests/errors/slow/incorrect totals of one series.
#[track_caller]
fn assert_counts(
    s: &Scrape,
    labels: &[(&str, &str)],
    requests: f64,
    errors: f64,
    slow: f64,
    incorrect: f64,
) {
    s.assert("cer_journey_requests_total", labels, requests);
    s.assert("cer_journey_errors_total", labels, errors);
    s.assert("cer_journey_slow_total", labels, slow);
    s.assert("cer_journey_incorrect_total", labels, incorrect);
}

/// Asserts the three SLI ratios of one series over one window.
#[track_caller]
fn assert_slis(
    s: &Scrape,
    labels: &[(&str, &str)],
    window: &str,
    availability: f64,
    latency: f64,
    correctness: f64,
) {
    let l = with(labels.to_vec(), &[("window", window)]);
    s.assert("cer_sli_availability_ratio", &l, availability);
    s.assert("cer_sli_latency_ratio", &l, latency);
    s.assert("cer_sli_correctness_ratio", &l, correctness);
}

#[track_caller]
fn assert_quantiles(s: &Scrape, labels: &[(&str, &str)], window: &str, durations: &[Duration]) {
    for q in ["0.5", "0.9", "0.95", "0.99"] {
        let want = expected_quantile(durations, q.parse().unwrap());
        s.assert(
            "cer_journey_latency_seconds",
            &with(labels.to_vec(), &[("window", window), ("quantile", q)]),
            want,
        );
    }
}

/// The designed traffic: every figure asserted in `shop_journeys_over_every_transport`
/// follows from this list.
#[test]
fn shop_journeys_over_every_transport() {
    let cerflow = Cerflow::start(shop_config);
    let rt = runtime();
    let three_minutes = Duration::from_secs(180);

    // A: OTLP/gRPC, shop-api in eu-west-1.
    let a = vec![
        server("POST /checkout", 100).tier("gold"), // A1 good
        server("POST /checkout", 200).tier("gold").error(), // A2 failed (status ERROR)
        server("POST /checkout", 450).tier("gold"), // A3 slow (> 300ms)
        server("POST /checkout", 50)
            .tier("gold")
            .attr(KeyValue::new("app.result.valid", false)), // A4 incorrect
        server("POST /checkout", 100)
            .tier("silver")
            .event("validation_failed"), // A5 incorrect (event)
        server("POST /checkout", 100).attr(KeyValue::new("http.response.status_code", 503_i64)), // A6 failed, no tier
        span("POST /checkout", SpanKind::Client, 30).tier("gold"), // A7 unmatched: not SERVER
        server("GET /health", 1),                                  // A8 unmatched entry point
        server("POST /checkout", 100).tier("gold").backwards(), // A9 invalid: ends before it starts
        server("POST /checkout", 100)
            .tier("gold")
            .attr(KeyValue::new("app.result.valid", true)), // A10 good
    ];
    cerflow.send_grpc(
        &rt,
        resource("shop-api", &[("cloud.region", "eu-west-1")]),
        &a,
    );

    // B: OTLP/HTTP protobuf, shop-api in us-east-1.
    let b = vec![
        server("POST /login", 100).tier("free"), // B1 good
        server("POST /login", 200).tier("free"), // B2 slow (> 150ms)
        server("POST /login", 100)
            .tier("free")
            .attr(KeyValue::new("http.response.status_code", 500_i64)), // B3 failed
        server("POST /checkout", 100).tier("gold"), // B4 good
        span("SELECT orders", SpanKind::Internal, 5), // B5 unmatched, not an entry point
    ];
    send(
        http_provider(
            &cerflow.http_url("/v1/traces"),
            resource("shop-api", &[("cloud.region", "us-east-1")]),
            Protocol::HttpBinary,
        ),
        &b,
    );

    // C: OTLP/HTTP JSON, search-svc in eu-west-1; two spans ended 3 minutes ago (in the
    // 1h window, not in the 1m one).
    let c = vec![
        server("GET /search", 25).tier("gold"),         // C1
        server("GET /search?q=shoes", 50).tier("gold"), // C2 (regex match)
        span("orders.process", SpanKind::Consumer, 10), // C3 unmatched entry point
        server("GET /search", 100)
            .tier("gold")
            .ended_ago(three_minutes), // C4
        server("GET /search", 100)
            .tier("free")
            .ended_ago(three_minutes), // C5
    ];
    send(
        http_provider(
            &cerflow.http_url("/v1/traces"),
            resource("search-svc", &[("cloud.region", "eu-west-1")]),
            Protocol::HttpJson,
        ),
        &c,
    );

    // D: OTLP/gRPC with gzip, shop-api with no cloud.region at all.
    let d = vec![
        server("POST /checkout", 100).tier("gold"), // D1
        server("POST /login", 100),                 // D2 neither region nor tier
    ];
    send(
        grpc_provider(
            &rt,
            &cerflow.grpc_endpoint(),
            resource("shop-api", &[]),
            true,
        ),
        &d,
    );

    // 17 spans recorded + 4 unmatched; A9 refused.
    cerflow.wait_for("cerflow_processed_spans_total", &[], 21.0);
    let s = cerflow.wait_until("17 requests in the snapshot", |s| {
        s.sum("cer_journey_requests_total", &[]) == 17.0
    });

    // --- cerflow's own counters ---
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "grpc")],
        12.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        10.0,
    );
    s.assert(
        "cerflow_refused_spans_total",
        &[("reason", "invalid_span")],
        1.0,
    );
    s.assert("cerflow_unmatched_spans_total", &[], 4.0);
    s.assert("cerflow_late_spans_total", &[], 0.0);
    s.assert("cerflow_clamped_spans_total", &[], 0.0);
    s.assert("cerflow_series", &[], 9.0);
    s.assert("cerflow_auto_journeys", &[], 0.0);
    let received = s.sum("cerflow_received_spans_total", &[]);
    let accounted =
        s.value("cerflow_processed_spans_total", &[]) + s.sum("cerflow_refused_spans_total", &[]);
    assert_eq!(
        received, accounted,
        "received = processed + refused\n{}",
        s.text
    );
    assert_eq!(received, 22.0);
    for (_, v) in s.matching("cerflow_refused_requests_total", &[]) {
        assert_eq!(v, 0.0, "no request was refused\n{}", s.text);
    }

    // --- definition version ---
    s.assert("cer_definition_info", &[("version", "shop-2024-06")], 1.0);

    // --- checkout ---
    let co_eu_gold = series("checkout", "eu-west-1", "gold");
    assert_counts(&s, &co_eu_gold, 5.0, 1.0, 1.0, 1.0);
    assert_slis(&s, &co_eu_gold, "1m", 0.8, 0.8, 0.8);
    assert_slis(&s, &co_eu_gold, "1h", 0.8, 0.8, 0.8);
    let co_eu_gold_durations = [ms(100), ms(200), ms(450), ms(50), ms(100)];
    assert_quantiles(&s, &co_eu_gold, "1m", &co_eu_gold_durations);
    assert_quantiles(&s, &co_eu_gold, "1h", &co_eu_gold_durations);
    // By hand: 0.5 -> 3rd of [50,100,100,200,450] = 100 ms, read back exactly; 0.9 -> 450 ms,
    // whose 256 us wide bin reads 449.92 ms.
    s.assert(
        "cer_journey_latency_seconds",
        &with(co_eu_gold.clone(), &[("window", "1m"), ("quantile", "0.5")]),
        0.1,
    );
    s.assert(
        "cer_journey_latency_seconds",
        &with(co_eu_gold.clone(), &[("window", "1m"), ("quantile", "0.9")]),
        0.44992,
    );
    s.assert(
        "cer_journey_requests_per_second",
        &with(co_eu_gold.clone(), &[("window", "1m")]),
        5.0 / 60.0,
    );
    s.assert(
        "cer_journey_requests_per_second",
        &with(co_eu_gold.clone(), &[("window", "1h")]),
        5.0 / 3600.0,
    );
    // Histogram, cumulative: 50 | 100 100 | 200 | 450.
    for (le, n) in [
        ("0.005", 0.0),
        ("0.01", 0.0),
        ("0.025", 0.0),
        ("0.05", 1.0),
        ("0.1", 3.0),
        ("0.25", 4.0),
        ("0.5", 5.0),
        ("1", 5.0),
        ("2.5", 5.0),
        ("5", 5.0),
        ("10", 5.0),
        ("+Inf", 5.0),
    ] {
        s.assert(
            "cer_journey_duration_seconds_bucket",
            &with(co_eu_gold.clone(), &[("le", le)]),
            n,
        );
    }
    s.assert("cer_journey_duration_seconds_count", &co_eu_gold, 5.0);
    let sum = s.value("cer_journey_duration_seconds_sum", &co_eu_gold);
    assert!(
        (sum - 0.9).abs() < 1e-9,
        "duration sum {sum}, expected 0.9\n{}",
        s.text
    );

    let co_eu_silver = series("checkout", "eu-west-1", "silver");
    assert_counts(&s, &co_eu_silver, 1.0, 0.0, 0.0, 1.0);
    assert_slis(&s, &co_eu_silver, "1m", 1.0, 1.0, 0.0);

    // A6 has no app.plan.tier: the placeholder "unknown" stands in.
    let co_eu_unknown = series("checkout", "eu-west-1", "unknown");
    assert_counts(&s, &co_eu_unknown, 1.0, 1.0, 0.0, 0.0);
    assert_slis(&s, &co_eu_unknown, "1m", 0.0, 1.0, 1.0);

    let co_us_gold = series("checkout", "us-east-1", "gold");
    assert_counts(&s, &co_us_gold, 1.0, 0.0, 0.0, 0.0);
    assert_slis(&s, &co_us_gold, "1m", 1.0, 1.0, 1.0);

    let co_unknown_gold = series("checkout", "unknown", "gold");
    assert_counts(&s, &co_unknown_gold, 1.0, 0.0, 0.0, 0.0);
    assert_slis(&s, &co_unknown_gold, "1m", 1.0, 1.0, 1.0);
    assert_eq!(
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]),
        9.0,
        "{}",
        s.text
    );

    // --- login ---
    let login_us_free = series("login", "us-east-1", "free");
    assert_counts(&s, &login_us_free, 3.0, 1.0, 1.0, 0.0);
    // cerflow computes 1 - bad/total: 1 - 1/3.
    assert_slis(
        &s,
        &login_us_free,
        "1m",
        1.0 - 1.0 / 3.0,
        1.0 - 1.0 / 3.0,
        1.0,
    );
    assert_quantiles(&s, &login_us_free, "1m", &[ms(100), ms(200), ms(100)]);
    s.assert(
        "cer_journey_latency_seconds",
        &with(
            login_us_free.clone(),
            &[("window", "1m"), ("quantile", "0.5")],
        ),
        0.1,
    );
    s.assert(
        "cer_journey_latency_seconds",
        &with(
            login_us_free.clone(),
            &[("window", "1m"), ("quantile", "0.99")],
        ),
        0.2,
    );
    s.assert(
        "cer_journey_requests_per_second",
        &with(login_us_free.clone(), &[("window", "1m")]),
        3.0 / 60.0,
    );

    let login_unknown = series("login", "unknown", "unknown");
    assert_counts(&s, &login_unknown, 1.0, 0.0, 0.0, 0.0);
    assert_slis(&s, &login_unknown, "1m", 1.0, 1.0, 1.0);

    // --- search: two spans only in the 1h window ---
    let search_gold = series("search", "eu-west-1", "gold");
    assert_counts(&s, &search_gold, 3.0, 0.0, 0.0, 0.0);
    assert_slis(&s, &search_gold, "1m", 1.0, 1.0, 1.0);
    assert_slis(&s, &search_gold, "1h", 1.0, 1.0, 1.0);
    s.assert(
        "cer_journey_requests_per_second",
        &with(search_gold.clone(), &[("window", "1m")]),
        2.0 / 60.0,
    );
    s.assert(
        "cer_journey_requests_per_second",
        &with(search_gold.clone(), &[("window", "1h")]),
        3.0 / 3600.0,
    );
    assert_quantiles(&s, &search_gold, "1m", &[ms(25), ms(50)]);
    assert_quantiles(&s, &search_gold, "1h", &[ms(25), ms(50), ms(100)]);
    s.assert(
        "cer_journey_latency_seconds",
        &with(
            search_gold.clone(),
            &[("window", "1m"), ("quantile", "0.5")],
        ),
        0.025,
    );
    s.assert(
        "cer_journey_latency_seconds",
        &with(
            search_gold.clone(),
            &[("window", "1h"), ("quantile", "0.5")],
        ),
        0.05,
    );

    // A window with no requests exports no ratio: search/free only has a span from
    // 3 minutes ago, so its 1m window is empty.
    let search_free = series("search", "eu-west-1", "free");
    assert_counts(&s, &search_free, 1.0, 0.0, 0.0, 0.0);
    assert_slis(&s, &search_free, "1h", 1.0, 1.0, 1.0);
    for name in [
        "cer_sli_availability_ratio",
        "cer_sli_latency_ratio",
        "cer_sli_correctness_ratio",
    ] {
        s.assert_absent(name, &with(search_free.clone(), &[("window", "1m")]));
    }
    for q in ["0.5", "0.9", "0.95", "0.99"] {
        s.assert_absent(
            "cer_journey_latency_seconds",
            &with(search_free.clone(), &[("window", "1m"), ("quantile", q)]),
        );
    }
    s.assert(
        "cer_journey_requests_per_second",
        &with(search_free.clone(), &[("window", "1m")]),
        0.0,
    );
    s.assert(
        "cer_journey_requests_per_second",
        &with(search_free.clone(), &[("window", "1h")]),
        1.0 / 3600.0,
    );

    // A journey that was configured but never hit has no series at all.
    for name in [
        "cer_sli_availability_ratio",
        "cer_sli_latency_ratio",
        "cer_sli_correctness_ratio",
        "cer_journey_requests_total",
        "cer_journey_latency_seconds",
        "cer_journey_requests_per_second",
    ] {
        let found = s.matching(name, &[("journey", "refund")]);
        assert!(
            found.is_empty(),
            "{name} has refund series {found:?}\n{}",
            s.text
        );
    }

    // Coverage: matched entry points / all SERVER and CONSUMER spans.
    // 1m: 15 matched (A:7, B:4, C:2, D:2); unmatched A8 and C3 -> 15/17.
    // 1h: C4 and C5 as well -> 17/19.
    s.assert(
        "cer_telemetry_coverage_ratio",
        &[("window", "1m")],
        15.0 / 17.0,
    );
    s.assert(
        "cer_telemetry_coverage_ratio",
        &[("window", "1h")],
        17.0 / 19.0,
    );

    // Every journey x cohort series carries the journey and both cohort labels.
    let per_series = [
        "cer_journey_requests_total",
        "cer_journey_errors_total",
        "cer_journey_slow_total",
        "cer_journey_incorrect_total",
        "cer_journey_duration_seconds_bucket",
        "cer_journey_duration_seconds_sum",
        "cer_journey_duration_seconds_count",
        "cer_journey_latency_seconds",
        "cer_journey_requests_per_second",
        "cer_sli_availability_ratio",
        "cer_sli_latency_ratio",
        "cer_sli_correctness_ratio",
    ];
    for (name, labels) in s.samples.keys() {
        if per_series.contains(&name.as_str()) {
            let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            for k in ["journey", "cloud_region", "app_plan_tier"] {
                assert!(keys.contains(&k), "{name}{labels:?} lacks {k}");
            }
        }
    }

    let mut cerflow = cerflow;
    let status = cerflow.terminate();
    assert!(
        status.success(),
        "cerflow exit status after SIGTERM: {status}\n{}",
        cerflow.logs()
    );
}

/// With no journeys, every SERVER or CONSUMER span makes the journey
/// "{service.name}:{span name}" and CLIENT or INTERNAL spans are unmatched.
#[test]
fn auto_journeys_when_none_are_configured() {
    let cerflow = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\n",
            p.listeners_yaml("")
        )
    });
    let rt = runtime();
    let shop = vec![
        server("GET /a", 100),
        server("GET /a", 1500), // slower than the default threshold of 1s
        server("POST /b", 100).error(),
        span("GET /x", SpanKind::Client, 20),
        span("render", SpanKind::Internal, 3),
    ];
    cerflow.send_grpc(&rt, resource("shop-api", &[]), &shop);
    let worker = vec![span("orders.process", SpanKind::Consumer, 100)
        .attr(KeyValue::new("http.status_code", 502_i64))];
    send(
        http_provider(
            &cerflow.http_url("/v1/traces"),
            resource("worker", &[]),
            Protocol::HttpBinary,
        ),
        &worker,
    );

    cerflow.wait_for("cerflow_processed_spans_total", &[], 6.0);
    let s = cerflow.wait_until("4 requests in the snapshot", |s| {
        s.sum("cer_journey_requests_total", &[]) == 4.0
    });

    s.assert("cer_definition_info", &[("version", "default")], 1.0);
    s.assert("cerflow_auto_journeys", &[], 3.0);
    s.assert("cerflow_unmatched_spans_total", &[], 2.0);
    s.assert("cerflow_series", &[], 3.0);

    let a = [("journey", "shop-api:GET /a")];
    assert_counts(&s, &a, 2.0, 0.0, 1.0, 0.0);
    for w in ["1m", "5m", "1h"] {
        assert_slis(&s, &a, w, 1.0, 0.5, 1.0);
    }
    assert_quantiles(&s, &a, "1m", &[ms(100), ms(1500)]);
    s.assert(
        "cer_journey_latency_seconds",
        &[
            ("journey", "shop-api:GET /a"),
            ("window", "5m"),
            ("quantile", "0.5"),
        ],
        0.1,
    );

    let b = [("journey", "shop-api:POST /b")];
    assert_counts(&s, &b, 1.0, 1.0, 0.0, 0.0);
    assert_slis(&s, &b, "1m", 0.0, 1.0, 1.0);

    // The default failure rule also reads the older http.status_code attribute.
    let w = [("journey", "worker:orders.process")];
    assert_counts(&s, &w, 1.0, 1.0, 0.0, 0.0);
    s.assert(
        "cer_journey_requests_per_second",
        &[("journey", "worker:orders.process"), ("window", "5m")],
        1.0 / 300.0,
    );

    for (labels, _) in s.matching("cer_journey_requests_total", &[]) {
        let journey = &labels
            .iter()
            .find(|(k, _)| k == "journey")
            .expect("journey label")
            .1;
        assert!(
            !journey.contains("GET /x") && !journey.contains("render"),
            "{journey} must not be a journey\n{}",
            s.text
        );
        assert_eq!(
            labels.len(),
            1,
            "no cohort keys configured: only the journey label, got {labels:?}"
        );
    }
    for w in ["1m", "5m", "1h"] {
        s.assert("cer_telemetry_coverage_ratio", &[("window", w)], 1.0);
    }
}

/// A span that ended longer ago than the longest window is counted as late and not
/// recorded; one ending far in the future is clamped to now and recorded.
#[test]
fn late_and_future_spans() {
    let cerflow = Cerflow::start(|p| {
        format!("version: late-test\n{}pipeline:\n  evaluation_interval: 100ms\nwindows:\n  sizes: [1m, 1h]\n", p.listeners_yaml(""))
    });
    let spans = vec![
        server("GET /late", 100).ended_ago(Duration::from_secs(2 * 3600)),
        server("GET /now", 100),
        server("GET /future", 100).ending_in(Duration::from_secs(600)),
    ];
    send(
        http_provider(
            &cerflow.http_url("/v1/traces"),
            resource("svc", &[]),
            Protocol::HttpJson,
        ),
        &spans,
    );

    cerflow.wait_for("cerflow_processed_spans_total", &[], 3.0);
    let s = cerflow.wait_until("2 requests in the snapshot", |s| {
        s.sum("cer_journey_requests_total", &[]) == 2.0
    });
    s.assert("cer_definition_info", &[("version", "late-test")], 1.0);
    s.assert("cerflow_late_spans_total", &[], 1.0);
    s.assert("cerflow_clamped_spans_total", &[], 1.0);
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        3.0,
    );
    s.assert("cerflow_unmatched_spans_total", &[], 0.0);
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /now")],
        1.0,
    );
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /future")],
        1.0,
    );
    s.assert_absent(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /late")],
    );
    assert!(
        s.matching(
            "cer_sli_availability_ratio",
            &[("journey", "svc:GET /late")]
        )
        .is_empty(),
        "{}",
        s.text
    );
    // The clamped span counts in the 1m window as ending now.
    assert_slis(&s, &[("journey", "svc:GET /future")], "1m", 1.0, 1.0, 1.0);
    s.assert("cerflow_auto_journeys", &[], 2.0);
    // The late span is no entry point in any window either.
    s.assert("cer_telemetry_coverage_ratio", &[("window", "1h")], 1.0);
}

/// Past `auto_journeys.max`, new entry points share the journey "_overflow".
#[test]
fn auto_journeys_stop_at_their_limit() {
    let cerflow = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nauto_journeys:\n  max: 2\n",
            p.listeners_yaml("")
        )
    });
    let spans = vec![
        server("GET /one", 100),
        server("GET /two", 100),
        server("GET /three", 100),
        server("GET /four", 100),
        server("GET /one", 100),
    ];
    send(
        http_provider(
            &cerflow.http_url("/v1/traces"),
            resource("svc", &[]),
            Protocol::HttpBinary,
        ),
        &spans,
    );
    let s = cerflow.wait_until("5 requests in the snapshot", |s| {
        s.sum("cer_journey_requests_total", &[]) == 5.0
    });
    s.assert("cerflow_auto_journeys", &[], 2.0);
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /one")],
        2.0,
    );
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /two")],
        1.0,
    );
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "_overflow")],
        2.0,
    );
    s.assert_absent(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /three")],
    );
    s.assert_absent(
        "cer_journey_requests_total",
        &[("journey", "svc:GET /four")],
    );
}

/// `cer_definition_info{version}` carries the config's version string, escaped as
/// the exposition format requires.
#[test]
fn definition_info_shows_the_config_version() {
    let cerflow = Cerflow::start(|p| {
        format!(
            "version: 'shop \"2024-06\" \\ rollout'\n{}pipeline:\n  evaluation_interval: 100ms\n",
            p.listeners_yaml("")
        )
    });
    let s = cerflow.scrape();
    s.assert(
        "cer_definition_info",
        &[("version", "shop \"2024-06\" \\ rollout")],
        1.0,
    );
    assert_eq!(
        s.matching("cer_definition_info", &[]).len(),
        1,
        "exactly one definition version\n{}",
        s.text
    );
    assert!(
        s.text
            .contains(r#"cer_definition_info{version="shop \"2024-06\" \\ rollout"} 1"#),
        "escaped in the text\n{}",
        s.text
    );
}
