//! Exemplars through the real binary: hand-built spans with known ids; the score API
//! (JSON and gRPC) lists exactly the newest bad requests per kind and window, at most 8
//! per kind; the OpenMetrics scrape carries the slowest request of each bucket and the
//! newest bad one on each counter; the text format carries none.

mod common;

use common::otlp::{body, failed, span_hex, trace_hex, trace_span, traces, with_attr};
use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// A checkout of `millis` in `region`, trace and span id `id`, ending `id` ms after `base`.
fn checkout(id: u64, millis: u64, region: &str, base: u64) -> Span {
    let mut s = trace_span(id, id, 0, "POST /checkout", SpanKind::Server, millis);
    s.end_time_unix_nano = base + id * 1_000_000;
    s.start_time_unix_nano = s.end_time_unix_nano - millis * 1_000_000;
    with_attr(s, "cloud.region", region)
}

/// `(kind, span id)` of a window's exemplars, in the API's order.
fn listed(w: &serde_json::Value) -> Vec<(String, String)> {
    w["exemplars"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["kind"].as_str().unwrap_or_default().to_string(),
                        e["span_id"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ids(kind: &str, spans: &[u64]) -> Vec<(String, String)> {
    spans
        .iter()
        .map(|&i| (kind.to_string(), span_hex(i)))
        .collect()
}

#[test]
fn the_exact_bad_requests_are_the_exemplars_of_api_and_openmetrics() {
    let c = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  workers: 2\n  evaluation_interval: 100ms\nhistogram: {{ buckets: [0.1, 0.5] }}\n\
             cohorts:\n  keys: [cloud.region]\n\
             journeys:\n  - name: checkout\n    match: {{ span_name: POST /checkout }}\n    latency_threshold: 300ms\n",
            p.listeners_yaml("")
        )
    });
    let base = common::otlp::now_ns() - 2_000_000_000;
    // eu: requests 1..=10 fail after 50 ms, ending 1..=10 ms after `base`.
    // us: 11 is slow (400 ms), 12 fails and is slow (700 ms), 13 is good (20 ms).
    let mut spans: Vec<Span> = (1..=10)
        .map(|i| failed(checkout(i, 50, "eu", base)))
        .collect();
    spans.push(checkout(11, 400, "us", base));
    spans.push(failed(checkout(12, 700, "us", base)));
    spans.push(checkout(13, 20, "us", base));
    assert_eq!(
        c.post_traces(body(&traces("shop", spans)), "application/x-protobuf"),
        200
    );
    c.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cloud_region", "us")],
        3.0,
    );

    let scores = c.get_json("/api/v1/scores?window=1m");
    let entry = |region: Option<&str>| {
        scores["journeys"]
            .as_array()
            .expect("journeys")
            .iter()
            .find(|j| j["cohort"].get("cloud_region").and_then(|v| v.as_str()) == region)
            .unwrap_or_else(|| panic!("no entry for {region:?}: {scores}"))
            .clone()
    };
    // The journey: 11 failures (1..=10 and 12); the 8 newest by end time are 12 and
    // 10 down to 4. Slow: 12 then 11. Nothing incorrect.
    let journey = entry(None);
    let w = &journey["windows"][0];
    assert_eq!(w["errors"], 11);
    let mut want = ids("failed", &[12, 10, 9, 8, 7, 6, 5, 4]);
    want.extend(ids("slow", &[12, 11]));
    assert_eq!(listed(w), want);
    let first = &w["exemplars"][0];
    assert_eq!(first["trace_id"], trace_hex(12));
    assert_eq!(first["time_unix_nano"], base + 12_000_000);
    assert_eq!(first["duration_seconds"], 0.7);
    // Each cohort its own: eu keeps 8 of its 10 failures, 10 down to 3.
    assert_eq!(
        listed(&entry(Some("eu"))["windows"][0]),
        ids("failed", &[10, 9, 8, 7, 6, 5, 4, 3])
    );
    let mut us = ids("failed", &[12]);
    us.extend(ids("slow", &[12, 11]));
    assert_eq!(listed(&entry(Some("us"))["windows"][0]), us);
    // A cohort filter lists its cohorts' exemplars.
    let filtered = c.get_json("/api/v1/scores?window=1m&cohort=cloud.region:us");
    assert_eq!(listed(&filtered["journeys"][0]["windows"][0]), us);

    // The gRPC API has them as WindowDetail.exemplars (field 25).
    let snap = c.grpc_scores(&["checkout"], "1m");
    let j = snap
        .journeys
        .iter()
        .find(|j| j.cohort.is_empty())
        .expect("the journey entry");
    let got: Vec<(String, String)> = j.windows[0]
        .exemplars
        .iter()
        .map(|e| (e.kind.clone(), e.span_id.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(j.windows[0].exemplars[0].trace_id, trace_hex(12));

    // OpenMetrics: each bucket's slowest request. eu's 50 ms failures tie in le="0.1":
    // the newest recorded of equals, 10, is kept; us has 13 (20 ms) there, 11 (400 ms)
    // in le="0.5" and 12 (700 ms) in +Inf. The counters carry the newest bad request.
    let om = c
        .client()
        .get(c.admin_url("/metrics"))
        .header("accept", OPENMETRICS)
        .send()
        .expect("scraping");
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = om.text().expect("the exposition");
    assert!(om.ends_with("# EOF\n"));
    let exemplar_of = |prefix: &str| -> Option<String> {
        let line = om.lines().find(|l| l.starts_with(prefix))?;
        let (_, ex) = line.split_once(" # ")?;
        Some(ex.to_string())
    };
    let ex = |id: u64, value: &str| {
        let end = base + id * 1_000_000;
        format!(
            "{{trace_id=\"{}\",span_id=\"{}\"}} {value} {}.{:09}",
            trace_hex(id),
            span_hex(id),
            end / 1_000_000_000,
            end % 1_000_000_000
        )
    };
    let b = "cer_journey_duration_seconds_bucket{journey=\"checkout\",cloud_region=";
    assert_eq!(
        exemplar_of(&format!("{b}\"eu\",le=\"0.1\"}} 10 ")),
        Some(ex(10, "0.05"))
    );
    assert_eq!(exemplar_of(&format!("{b}\"eu\",le=\"0.5\"}} 10 ")), None);
    assert_eq!(
        exemplar_of(&format!("{b}\"us\",le=\"0.1\"}} 1 ")),
        Some(ex(13, "0.02"))
    );
    assert_eq!(
        exemplar_of(&format!("{b}\"us\",le=\"0.5\"}} 2 ")),
        Some(ex(11, "0.4"))
    );
    assert_eq!(
        exemplar_of(&format!("{b}\"us\",le=\"+Inf\"}} 3 ")),
        Some(ex(12, "0.7"))
    );
    let errors = "cer_journey_errors_total{journey=\"checkout\",cloud_region=";
    assert_eq!(
        exemplar_of(&format!("{errors}\"eu\"}} 10 ")),
        Some(ex(10, "1"))
    );
    assert_eq!(
        exemplar_of(&format!("{errors}\"us\"}} 1 ")),
        Some(ex(12, "1"))
    );
    let slow = "cer_journey_slow_total{journey=\"checkout\",cloud_region=";
    assert_eq!(exemplar_of(&format!("{slow}\"eu\"}} 0")), None);
    assert_eq!(
        exemplar_of(&format!("{slow}\"us\"}} 2 ")),
        Some(ex(12, "1"))
    );
    assert_eq!(
        exemplar_of("cer_journey_requests_total{journey=\"checkout\",cloud_region=\"us\"} 3"),
        None,
        "a request is no example of anything"
    );
    // The text format, asked for or by default, has no exemplars and no # EOF.
    let text = c
        .client()
        .get(c.admin_url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("scraping");
    assert!(!text.contains(" # {") && !text.contains("# EOF"));
}

#[test]
fn the_otlp_push_carries_the_exemplars_on_its_data_points() {
    use common::fake_receiver::{metrics, Answer, Collector, Receiver};
    use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric, Exemplar};
    let rt = runtime();
    let collector = Collector::new(Answer::Accept);
    let receiver = Receiver::start(&rt, &collector, 0);
    let c = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nhistogram: {{ buckets: [0.1, 0.5] }}\n\
             journeys:\n  - name: checkout\n    match: {{ span_name: POST /checkout }}\n    latency_threshold: 300ms\n",
            p.listeners_yaml(&format!(
                "  otlp:\n    endpoint: http://127.0.0.1:{}\n    interval: 200ms\n    timeout: 2s\n",
                receiver.port
            ))
        )
    });
    let base = common::otlp::now_ns() - 2_000_000_000;
    // 1 fails after 50 ms, 2 is slow (400 ms), 3 is good (20 ms).
    let spans = vec![
        failed(checkout(1, 50, "eu", base)),
        checkout(2, 400, "eu", base),
        checkout(3, 20, "eu", base),
    ];
    assert_eq!(
        c.post_traces(body(&traces("shop", spans)), "application/x-protobuf"),
        200
    );
    let req = collector.wait_for("3 checkout requests", |r| {
        metrics(r).any(|m| {
            m.name == "cer.journey.requests"
                && matches!(&m.data, Some(metric::Data::Sum(s)) if s.data_points.iter().any(|p| p.value == Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(3))))
        })
    });
    let want = |id: u64, value: exemplar::Value| Exemplar {
        time_unix_nano: base + id * 1_000_000,
        value: Some(value),
        span_id: id.to_be_bytes().to_vec(),
        trace_id: [0xabu64.to_be_bytes(), id.to_be_bytes()].concat(),
        ..Default::default()
    };
    let counter = |name: &str| -> Vec<Exemplar> {
        metrics(&req)
            .find(|m| m.name == name)
            .and_then(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.first().map(|p| p.exemplars.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(
        counter("cer.journey.errors"),
        vec![want(1, exemplar::Value::AsInt(1))]
    );
    assert_eq!(
        counter("cer.journey.slow"),
        vec![want(2, exemplar::Value::AsInt(1))]
    );
    assert_eq!(counter("cer.journey.incorrect"), vec![]);
    assert_eq!(counter("cer.journey.requests"), vec![]);
    // Bucket le=0.1 holds 1 (50 ms) and 3 (20 ms): 1 is its slowest; le=0.5 holds 2;
    // +Inf is empty.
    let hist = metrics(&req)
        .find(|m| m.name == "cer.journey.duration")
        .and_then(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => h.data_points.first().cloned(),
            _ => None,
        })
        .expect("the duration histogram");
    assert_eq!(hist.bucket_counts, vec![2, 1, 0]);
    assert_eq!(
        hist.exemplars,
        vec![
            want(1, exemplar::Value::AsDouble(0.05)),
            want(2, exemplar::Value::AsDouble(0.4)),
        ]
    );
    drop(c);
    let mut receiver = receiver;
    receiver.stop(&rt);
}
