//! Sampled spans count what they stand for: a span whose W3C trace state carries the
//! OpenTelemetry threshold `ot=th:<hex>` adds its adjusted count 1/p to requests,
//! errors, slow, the latency histogram and the value figures, through the real binary,
//! with spans sent by the OpenTelemetry SDK (gRPC: the protobuf decoder; HTTP JSON: the
//! JSON decoder). Ratios are ratios of the adjusted sums.

mod common;

use common::*;
use opentelemetry::KeyValue;
use opentelemetry_otlp::Protocol;

const CONFIG: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m]
cohorts:
  keys: [cloud.region]
journeys:
  - name: checkout
    latency_threshold: 500ms
    match: { span_name: POST /checkout }
    value: { attribute: app.order.value }
"#;

/// One request unit: counts are kept in 2^-20 of a request.
const UNIT: f64 = 1_048_576.0;

fn checkout(user: &'static str, millis: u64, value: f64) -> SpanSpec {
    server("POST /checkout", millis)
        .attr(KeyValue::new("enduser.id", user))
        .attr(KeyValue::new("app.order.value", value))
}

/// eu, over gRPC. Adjusted counts: th:8 keeps 2^55 of 2^56 (p 1/2): 2; th:c keeps 2^54
/// (p 1/4): 4; th:e666666666666 keeps 0x199999999999a0 = 7,205,759,403,792,800
/// (p = 0.1000000000000001): 2^76 / that = 10,485,759.99999999 units, rounded to
/// 10,485,760 = exactly 10 requests; no th: 1; a malformed th (`8G`): 1, counted.
///
/// requests 2 + 2 + 4 + 1 + 10 + 1 = 20; errors bob 2 + dave 1 = 3; slow carol 4.
/// value 10 x 2 + 10 x 2 + 1 x 4 + 5 x 1 + 2 x 10 + 7 x 1 = 76; failed bob 20 + dave 5 = 25.
/// latency: the 100 ms spans weigh 2 + 2 + 1 + 10 + 1 = 16, the 800 ms one 4:
/// le=0.1 holds 16, le=1 all 20; sum 0.1 x 16 + 0.8 x 4 = 4.8 s.
/// Users: 6 distinct (a span names one user whatever it stands for), affected bob,
/// carol (slow) and dave: 3.
fn eu() -> Vec<SpanSpec> {
    vec![
        checkout("alice", 100, 10.0).trace_state("ot=th:8"),
        checkout("bob", 100, 10.0).trace_state("ot=th:8").error(),
        checkout("carol", 800, 1.0).trace_state("vendor=x,ot=rv:0123456789abcd;th:c"),
        checkout("dave", 100, 5.0).error(),
        checkout("erin", 100, 2.0).trace_state("ot=th:e666666666666"),
        checkout("frank", 100, 7.0).trace_state("ot=th:8G"),
    ]
}

/// us, over HTTP JSON: th:4 keeps 3 x 2^54 (p 3/4): 4/3 of a request, 1,398,101.33
/// units rounded to 1,398,101 (1.3333330154418945 requests); th:c: 4 (4,194,304 units).
/// requests 5,592,405 units; errors (alice) 1,398,101; value 3 x 1,398,101 / 2^20 =
/// 3.99999904632568359375 (exact in f64), all of it failed.
fn us() -> Vec<SpanSpec> {
    vec![
        checkout("alice", 100, 3.0).trace_state("ot=th:4").error(),
        checkout("gina", 100, 0.0).trace_state("ot=th:c"),
    ]
}

#[test]
fn sampled_spans_count_their_adjusted_count_and_keep_ratios_of_the_sums() {
    let cf = Cerflow::start_with(CONFIG);
    let rt = runtime();
    cf.send_grpc(&rt, resource("shop", &[("cloud.region", "eu")]), &eu());
    send(
        http_provider(
            &cf.http_url("/v1/traces"),
            resource("shop", &[("cloud.region", "us")]),
            Protocol::HttpJson,
        ),
        &us(),
    );
    let j = ("journey", "checkout");
    let (eu_l, us_l) = (("cloud_region", "eu"), ("cloud_region", "us"));
    let w = ("window", "1m");
    let us_requests = 5_592_405.0 / UNIT;
    let us_errors = 1_398_101.0 / UNIT;
    cf.wait_for("cer_journey_requests_total", &[j, eu_l], 20.0);
    let s = cf.wait_for("cer_journey_requests_total", &[j, us_l], us_requests);
    assert_eq!(us_requests, 5.333_333_015_441_894_5);

    s.assert("cer_journey_errors_total", &[j, eu_l], 3.0);
    s.assert("cer_journey_slow_total", &[j, eu_l], 4.0);
    s.assert("cer_journey_errors_total", &[j, us_l], us_errors);
    s.assert("cer_journey_slow_total", &[j, us_l], 0.0);
    s.assert("cerflow_invalid_sampling_thresholds_total", &[], 1.0);

    // Ratios of the adjusted sums: eu 1 - 3/20 and 1 - 4/20; us 1 - 1,398,101 /
    // 5,592,405 (a hair over 0.75: 4/3 rounded down to the unit, 4 exact).
    s.assert("cer_sli_availability_ratio", &[j, eu_l, w], 0.85);
    s.assert("cer_sli_latency_ratio", &[j, eu_l, w], 0.8);
    s.assert(
        "cer_sli_availability_ratio",
        &[j, us_l, w],
        1.0 - 1_398_101.0 / 5_592_405.0,
    );
    // 20 requests in the 60 s window.
    s.assert(
        "cer_journey_requests_per_second",
        &[j, eu_l, w],
        20.0 / 60.0,
    );

    let b = "cer_journey_duration_seconds_bucket";
    s.assert(b, &[j, eu_l, ("le", "0.05")], 0.0);
    s.assert(b, &[j, eu_l, ("le", "0.1")], 16.0);
    s.assert(b, &[j, eu_l, ("le", "0.5")], 16.0);
    s.assert(b, &[j, eu_l, ("le", "1")], 20.0);
    s.assert("cer_journey_duration_seconds_count", &[j, eu_l], 20.0);
    let sum = s.value("cer_journey_duration_seconds_sum", &[j, eu_l]);
    assert!((sum - 4.8).abs() < 1e-9, "latency sum {sum}");

    // Value: the journey's counters add both cohorts.
    let us_value = 3.0 * 1_398_101.0 / UNIT;
    assert_eq!(us_value, 3.999_999_046_325_683_6);
    s.assert("cer_journey_value_total", &[j], 76.0 + us_value);
    s.assert("cer_journey_value_failed_total", &[j], 25.0 + us_value);
    s.assert("cer_journey_value_at_risk", &[j, eu_l, w], 25.0);
    s.assert("cer_journey_value_at_risk", &[j, us_l, w], us_value);

    // Users stay distinct people: eu 6 (3 affected), us 2 (alice affected); the
    // journey 7 (alice in both), 4 affected.
    s.assert("cer_journey_users", &[j, eu_l, w], 6.0);
    s.assert("cer_journey_users_affected", &[j, eu_l, w], 3.0);
    s.assert("cer_journey_users", &[j, us_l, w], 2.0);
    s.assert("cer_journey_users", &[j, w], 7.0);
    s.assert("cer_journey_users_affected", &[j, w], 4.0);

    // The score API: whole counts stay integers, fractional ones are floats.
    let url = format!(
        "http://127.0.0.1:{}/api/v1/scores?journey=checkout&window=1m",
        cf.ports.prom
    );
    let v: serde_json::Value =
        serde_json::from_str(&cf.client().get(&url).send().unwrap().text().unwrap()).unwrap();
    let entry = |region: &str| {
        v["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["cohort"].get("cloud_region").and_then(|r| r.as_str()) == Some(region))
            .unwrap_or_else(|| panic!("no entry for {region} in {v}"))["windows"][0]
            .clone()
    };
    let (eu_w, us_w) = (entry("eu"), entry("us"));
    // The journey across cohorts: 20 x 2^20 + 5,592,405 = 26,563,925 units, errors
    // 3 x 2^20 + 1,398,101 = 4,543,829.
    let all = v["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cohort"].as_object().is_some_and(|c| c.is_empty()))
        .unwrap_or_else(|| panic!("no journey-level entry in {v}"))["windows"][0]
        .clone();
    assert_eq!(all["requests"].as_f64(), Some(26_563_925.0 / UNIT));
    assert_eq!(
        all["availability"].as_f64(),
        Some(1.0 - 4_543_829.0 / 26_563_925.0)
    );
    assert_eq!(
        (
            eu_w["requests"].as_u64(),
            eu_w["errors"].as_u64(),
            eu_w["slow"].as_u64()
        ),
        (Some(20), Some(3), Some(4))
    );
    assert_eq!(eu_w["availability"].as_f64(), Some(0.85));
    assert_eq!(
        (us_w["requests"].as_f64(), us_w["errors"].as_f64()),
        (Some(us_requests), Some(us_errors))
    );
    assert!(cf.logs().contains("malformed ot=th sampling threshold"));
}
