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
    let cf = Cerflow::start(|p| format!("{}{CONFIG}", p.listeners_yaml("")));
    let rt = runtime();
    send(
        grpc_provider(&rt, &cf.grpc_endpoint(), resource("shop", &[]), false),
        &spans(),
    );
    let j = ("journey", "checkout");
    let w = ("window", "1m");
    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[j, ("cloud_region", "us")],
        4.0,
    );
    s.assert(
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
    let cf = Cerflow::start(|p| format!("{}{CONFIG}", p.listeners_yaml("")));
    let rt = runtime();
    send(
        grpc_provider(&rt, &cf.grpc_endpoint(), resource("shop", &[]), false),
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
