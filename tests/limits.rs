//! Limits through the real binary: the per-journey cardinality limit and its overflow
//! series, memory staying bounded under 100,000 distinct cohort values, and the
//! accounting of an overloaded pipeline (received = processed + refused).

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::time::{SystemTime, UNIX_EPOCH};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// One request of `n` checkout spans; span i has `cloud.region = region(i)`.
fn request(n: usize, first_id: u64, region: impl Fn(usize) -> String) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 - 1_000_000_000;
    let spans = (0..n)
        .map(|i| {
            let id = first_id + i as u64 + 1;
            Span {
                trace_id: [id.to_be_bytes(), 7u64.to_be_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: "POST /checkout".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: now - 50_000_000,
                end_time_unix_nano: now,
                attributes: vec![kv("cloud.region", &region(i))],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", "shop-api")], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn post(cf: &Cerflow, body: Vec<u8>) -> u16 {
    cf.client()
        .post(cf.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("POST /v1/traces")
        .status()
        .as_u16()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const CHECKOUT: &str = "cohorts:\n  keys: [cloud.region]\njourneys:\n  - name: checkout\n    match: { span_name: POST /checkout }\n";

#[test]
fn cohorts_past_the_limit_share_one_overflow_series() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nlimits:\n  max_series_per_journey: 3\n{CHECKOUT}",
            p.listeners_yaml("")
        )
    });
    // Ten spans in ten regions, in one request: three get their own series, seven overflow.
    assert_eq!(post(&cf, request(10, 0, |i| format!("r{i}"))), 200);
    cf.wait_for("cerflow_processed_spans_total", &[], 10.0);
    let s = cf.wait_until("the overflow series", |s| {
        s.get("cer_journey_requests_total", &[("journey", "checkout"), ("otel_metric_overflow", "true")]) == Some(7.0)
    });
    assert_eq!(s.sum("cer_journey_requests_total", &[("journey", "checkout")]), 10.0, "{}", s.text);
    assert_eq!(s.matching("cer_journey_requests_total", &[("journey", "checkout")]).len(), 4, "{}", s.text);
    s.assert("cerflow_cardinality_overflow_total", &[], 7.0);
    s.assert("cerflow_series", &[], 4.0);
    // The journey's own SLI still counts every span.
    s.assert("cer_journey_data_present", &[("journey", "checkout"), ("window", "1m")], 1.0);
    // A region that already has a series keeps it.
    let kept: String = s
        .matching("cer_journey_requests_total", &[("journey", "checkout")])
        .iter()
        .find_map(|(labels, _)| labels.iter().find(|(k, _)| k == "cloud_region").map(|(_, v)| v.clone()))
        .expect("a region with its own series");
    let again = kept.clone();
    assert_eq!(post(&cf, request(1, 100, move |_| again.clone())), 200);
    cf.wait_for("cerflow_processed_spans_total", &[], 11.0);
    cf.wait_for("cer_journey_requests_total", &[("journey", "checkout"), ("cloud_region", &kept)], 2.0);
    cf.wait_for("cerflow_cardinality_overflow_total", &[], 7.0);
}

#[test]
fn a_hundred_thousand_cohort_values_keep_memory_bounded() {
    let cf = Cerflow::start(|p| format!("{}pipeline:\n  evaluation_interval: 200ms\n{CHECKOUT}", p.listeners_yaml("")));
    let pid = cf.pid().expect("running");
    let before = rss_kib(pid);
    for batch in 0..100 {
        let code = post(&cf, request(1000, batch * 1000, |i| format!("region-{batch}-{i}")));
        assert_eq!(code, 200, "request {batch}");
    }
    cf.wait_for("cerflow_processed_spans_total", &[], 100_000.0);
    let s = cf.wait_until("all spans in the overflow series", |s| {
        s.get("cer_journey_requests_total", &[("journey", "checkout"), ("otel_metric_overflow", "true")]) == Some(99_000.0)
    });
    // The default limit: 1000 cohort series, plus one overflow series.
    s.assert("cerflow_series", &[], 1001.0);
    s.assert("cerflow_cardinality_overflow_total", &[], 99_000.0);
    assert_eq!(s.sum("cer_journey_requests_total", &[("journey", "checkout")]), 100_000.0);
    let after = rss_kib(pid);
    eprintln!("RSS before {before} KiB, after 100,000 cohort values {after} KiB");
    assert!(after < 200 * 1024, "RSS {after} KiB");
}

#[test]
fn an_overloaded_pipeline_refuses_with_retry_and_accounts_for_every_span() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  workers: 1\n  queue_size: 1\n  evaluation_interval: 100ms\n{CHECKOUT}",
            p.listeners_yaml("")
        )
    });
    let spans_per_request = 1000usize;
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let cf = &cf;
                scope.spawn(move || {
                    (0..15u64)
                        .map(|i| post(cf, request(spans_per_request, (t * 100 + i) * 10_000, |j| format!("r{}", j % 5))))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ok = codes.iter().filter(|c| **c == 200).count() as f64;
    let unavailable = codes.iter().filter(|c| **c == 503).count() as f64;
    assert_eq!(ok + unavailable, 60.0, "only 200 and 503 are expected: {codes:?}");
    let n = spans_per_request as f64;
    let s = cf.wait_for("cerflow_processed_spans_total", &[], ok * n);
    s.assert("cerflow_received_spans_total", &[("transport", "http")], 60.0 * n);
    s.assert("cerflow_refused_spans_total", &[("reason", "queue_full")], unavailable * n);
    s.assert("cerflow_refused_requests_total", &[("reason", "queue_full")], unavailable);
    let received = s.sum("cerflow_received_spans_total", &[]);
    let refused = s.sum("cerflow_refused_spans_total", &[]);
    assert_eq!(received, s.value("cerflow_processed_spans_total", &[]) + refused);
    // The journey series catch up at the next evaluation tick.
    cf.wait_until("every accepted span in the journey", |s| {
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]) == ok * n
    });
    eprintln!("{ok} requests accepted, {unavailable} refused with 503");
}
