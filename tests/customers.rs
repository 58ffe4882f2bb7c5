//! Customers, not requests: distinct users and affected users through the real binary,
//! with spans sent by the OpenTelemetry SDK over OTLP/gRPC.

mod common;

use common::*;
use opentelemetry::KeyValue;

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
"#;

fn checkout(user: Option<&'static str>, region: &'static str, millis: u64) -> SpanSpec {
    let s = server("POST /checkout", millis).attr(KeyValue::new("cloud.region", region));
    match user {
        Some(u) => s.attr(KeyValue::new("enduser.id", u)),
        None => s,
    }
}

/// By hand: eu sees alice (ok), bob (fails once, ok once), carol (slow); us sees bob
/// (fails) and dave (ok twice); two spans name no user. So eu has 3 users of whom 2 are
/// affected (bob, carol), us 2 users, 1 affected (bob); across the journey alice, bob,
/// carol and dave are 4 users and bob, seen failing in both regions, is one of the 2
/// affected.
fn spans() -> Vec<SpanSpec> {
    vec![
        checkout(Some("alice"), "eu", 100),
        checkout(Some("bob"), "eu", 100).error(),
        checkout(Some("bob"), "eu", 100),
        checkout(Some("carol"), "eu", 800),
        checkout(Some("bob"), "us", 100).error(),
        checkout(Some("dave"), "us", 100),
        checkout(Some("dave"), "us", 100),
        checkout(None, "us", 100).error(),
        checkout(None, "eu", 100),
    ]
}

#[test]
fn users_and_affected_users_are_distinct_per_cohort_and_merged_per_journey() {
    let cf = Cerflow::start_with(CONFIG);
    let rt = runtime();
    cf.send_grpc(&rt, resource("shop", &[]), &spans());
    let j = ("journey", "checkout");
    let w = ("window", "1m");
    // One request's cohorts go to different workers, and a tick can snapshot one worker
    // after its batch and the other before: each cohort is waited for, not assumed.
    cf.wait_for(
        "cer_journey_requests_total",
        &[j, ("cloud_region", "us")],
        4.0,
    );
    cf.wait_for(
        "cer_journey_requests_total",
        &[j, ("cloud_region", "eu")],
        5.0,
    );
    let s = cf.wait_for("cer_journey_users", &[j, w], 4.0);
    s.assert("cer_journey_users", &[j, ("cloud_region", "eu"), w], 3.0);
    s.assert("cer_journey_users", &[j, ("cloud_region", "us"), w], 2.0);
    s.assert(
        "cer_journey_users_affected",
        &[j, ("cloud_region", "eu"), w],
        2.0,
    );
    s.assert(
        "cer_journey_users_affected",
        &[j, ("cloud_region", "us"), w],
        1.0,
    );
    s.assert("cer_journey_users_affected", &[j, w], 2.0);
    s.assert(
        "cer_journey_users_affected_ratio",
        &[j, ("cloud_region", "eu"), w],
        2.0 / 3.0,
    );
    s.assert(
        "cer_journey_users_affected_ratio",
        &[j, ("cloud_region", "us"), w],
        0.5,
    );
    s.assert("cer_journey_users_affected_ratio", &[j, w], 0.5);

    // The score API carries the same figures; a filter matching one cohort keeps them.
    let api = |query: &str| -> serde_json::Value {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/scores?journey=checkout&window=1m{query}",
            cf.ports.prom
        );
        serde_json::from_str(&cf.client().get(&url).send().unwrap().text().unwrap()).unwrap()
    };
    let v = api("");
    let entry = |v: &serde_json::Value, region: Option<&str>| {
        v["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["cohort"].get("cloud_region").and_then(|r| r.as_str()) == region)
            .unwrap_or_else(|| panic!("no entry for {region:?} in {v}"))["windows"][0]
            .clone()
    };
    let (all, eu, us) = (
        entry(&v, None),
        entry(&v, Some("eu")),
        entry(&v, Some("us")),
    );
    assert_eq!(
        (all["users"].as_u64(), all["users_affected"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(all["users_affected_ratio"].as_f64(), Some(0.5));
    assert_eq!(
        (eu["users"].as_u64(), eu["users_affected"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (us["users"].as_u64(), us["users_affected"].as_u64()),
        (Some(2), Some(1))
    );
    let one = api("&cohort=cloud.region:us");
    let us = &one["journeys"][0]["windows"][0];
    assert_eq!(
        (us["users"].as_u64(), us["requests"].as_u64()),
        (Some(2), Some(4))
    );
}

#[test]
fn spans_without_a_user_count_as_requests_and_give_no_ratio() {
    let cf = Cerflow::start_with(CONFIG);
    let rt = runtime();
    cf.send_grpc(
        &rt,
        resource("shop", &[]),
        &[checkout(None, "eu", 100), checkout(None, "eu", 100).error()],
    );
    let j = ("journey", "checkout");
    let eu = ("cloud_region", "eu");
    let w = ("window", "1m");
    let s = cf.wait_for("cer_journey_requests_total", &[j, eu], 2.0);
    s.assert("cer_journey_users", &[j, eu, w], 0.0);
    s.assert("cer_journey_users_affected", &[j, eu, w], 0.0);
    s.assert_absent("cer_journey_users_affected_ratio", &[j, eu, w]);
    s.assert_absent("cer_journey_users_affected_ratio", &[j, w]);
}

const SHOP_VALUE: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m]
cohorts:
  keys: [cloud.region]
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
    incorrect:
      attributes: [{ key: app.result.valid, equals: false }]
    value: { attribute: app.order.value, currency: EUR }
  - name: subscribe
    match: { span_name: POST /subscribe }
    value: { per_request: 12.5 }
"#;

fn order(region: &'static str, value: opentelemetry::Value) -> SpanSpec {
    server("POST /checkout", 100)
        .attr(KeyValue::new("cloud.region", region))
        .attr(KeyValue::new("app.order.value", value))
}

/// By hand, checkout in EUR: eu sells 19.99 (ok), 5.01 (failed), 0.10 (incorrect) and a
/// "30.5" string (ok); us sells 100 (failed), "abc" (failed: invalid, no value) and -3
/// (ok: invalid, no value). Total 19.99 + 5.01 + 0.10 + 30.5 + 100 = 155.60; failed or
/// incorrect 5.01 + 0.10 + 100 = 105.11; at risk in eu 5.11, in us 100; 2 invalid.
/// subscribe at 12.5 a request: 3 requests, 1 failed: 37.5 and 12.5.
#[test]
fn value_at_risk_to_the_cent_and_invalid_values_counted() {
    let cf = Cerflow::start_with(SHOP_VALUE);
    let rt = runtime();
    let spans = vec![
        order("eu", 19.99.into()),
        order("eu", 5.01.into()).error(),
        order("eu", 0.10.into()).attr(KeyValue::new("app.result.valid", false)),
        order("eu", "30.5".into()),
        order("us", 100i64.into()).error(),
        order("us", "abc".into()).error(),
        order("us", (-3i64).into()),
        server("POST /subscribe", 100),
        server("POST /subscribe", 100).error(),
        server("POST /subscribe", 100),
    ];
    cf.send_grpc(&rt, resource("shop", &[]), &spans);
    let (j, eur, w) = (
        ("journey", "checkout"),
        ("currency", "EUR"),
        ("window", "1m"),
    );
    let (sub, unknown) = (("journey", "subscribe"), ("cloud_region", "unknown"));
    cf.wait_for("cer_journey_requests_total", &[sub, unknown], 3.0);
    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[j, ("cloud_region", "us")],
        3.0,
    );
    let cents = |v: f64| (v * 100.0).round() / 100.0;
    let got = |name: &str, labels: &[(&str, &str)]| cents(s.value(name, labels));
    assert_eq!(got("cer_journey_value_total", &[j, eur]), 155.60);
    assert_eq!(got("cer_journey_value_failed_total", &[j, eur]), 105.11);
    assert_eq!(
        got(
            "cer_journey_value_at_risk",
            &[j, ("cloud_region", "eu"), w, eur]
        ),
        5.11
    );
    assert_eq!(
        got(
            "cer_journey_value_at_risk",
            &[j, ("cloud_region", "us"), w, eur]
        ),
        100.0
    );
    // The requests with invalid values still count: us had 3 requests, 2 of them failed.
    s.assert(
        "cer_journey_errors_total",
        &[j, ("cloud_region", "us")],
        2.0,
    );
    s.assert("cerflow_invalid_values_total", &[j], 2.0);
    s.assert("cer_journey_value_total", &[sub], 37.5);
    s.assert("cer_journey_value_failed_total", &[sub], 12.5);
    s.assert("cer_journey_value_at_risk", &[sub, unknown, w], 12.5);
    s.assert_absent("cerflow_invalid_values_total", &[sub]);
    assert!(
        cf.logs().contains("Ignored a request value"),
        "the invalid value is logged:\n{}",
        cf.logs()
    );

    // The score API carries the same figures: the journey entry sums its cohorts' value
    // at risk (5.11 + 100 = 105.11) and has the counters; a cohort filter keeps its own.
    let api = |query: &str| -> serde_json::Value {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/scores?journey=checkout&window=1m{query}",
            cf.ports.prom
        );
        serde_json::from_str(&cf.client().get(&url).send().unwrap().text().unwrap()).unwrap()
    };
    let v = api("");
    let entry = |region: Option<&str>| {
        v["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["cohort"].get("cloud_region").and_then(|r| r.as_str()) == region)
            .unwrap_or_else(|| panic!("no entry for {region:?} in {v}"))
            .clone()
    };
    let (all, eu) = (entry(None), entry(Some("eu")));
    let num = |x: &serde_json::Value| x.as_f64().map(cents);
    assert_eq!(all["currency"].as_str(), Some("EUR"));
    assert_eq!(
        (num(&all["value_total"]), num(&all["value_failed_total"])),
        (Some(155.60), Some(105.11))
    );
    assert_eq!(num(&all["windows"][0]["value_at_risk"]), Some(105.11));
    // All of it fell in the SLO period too: lost eu 5.11, journey 105.11.
    assert_eq!(num(&all["value_lost_period"]), Some(105.11));
    assert_eq!(num(&eu["value_lost_period"]), Some(5.11));
    assert_eq!(num(&eu["windows"][0]["value_at_risk"]), Some(5.11));
    assert_eq!(
        eu["value_total"],
        serde_json::Value::Null,
        "journey-level only"
    );
    let us = api("&cohort=cloud.region:us");
    assert_eq!(
        num(&us["journeys"][0]["windows"][0]["value_at_risk"]),
        Some(100.0)
    );
    // And over gRPC.
    let snap = cf.grpc_scores(&["checkout", "subscribe"], "1m");
    let whole = |name: &str| {
        snap.journeys
            .iter()
            .find(|j| j.journey == name && j.cohort.is_empty())
            .unwrap_or_else(|| panic!("no {name} in {snap:?}"))
    };
    let c = whole("checkout");
    assert_eq!(c.currency.as_deref(), Some("EUR"));
    assert_eq!(
        (c.value_total.map(cents), c.value_failed_total.map(cents)),
        (Some(155.60), Some(105.11))
    );
    assert_eq!(c.windows[0].value_at_risk.map(cents), Some(105.11));
    assert_eq!(c.value_lost_period.map(cents), Some(105.11));
    let sub = whole("subscribe");
    assert_eq!(sub.currency, None, "subscribe's rule names no currency");
    assert_eq!(
        (
            sub.value_total,
            sub.value_failed_total,
            sub.windows[0].value_at_risk
        ),
        (Some(37.5), Some(12.5), Some(12.5))
    );
}
