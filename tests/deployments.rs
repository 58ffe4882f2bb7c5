//! Deployments through the real binary: a journey's requests carry `service.version`
//! (resource attribute, or span attribute); a new version is judged against the previous
//! one over the same span once it has `deployments.min_events` (100) requests; the result
//! is on `/metrics`, in `GET /api/v1/deployments` and the score API, survives a restart,
//! and drives `cerflow gate --compare service.version=auto`.
//!
//! The arithmetic: availability objective 0.9 (so a 30% error rate is a burn of 3, not
//! past the floor), latency 0.99 with no slow request, no correctness rule, weights 0.5
//! and 0.3, floor burn rate 10. A version with e errors of n requests has availability
//! burn (e / n) / 0.1 and component 1 - (burn - 1) / 9 when burn > 1 (else 1); its score
//! is (0.5 * component + 0.3 * 1) / 0.8.
//! - 0 errors: 1.
//! - 30 of 100: burn 3, component 7/9, score (0.5 * 7/9 + 0.3) / 0.8 = 0.861111; drop
//!   1 - 0.861111 = 0.138889 > 0.02: regressed.
//!
//! All spans of the journey share one series (no cohorts), hence one worker and one batch
//! per request: the versions of one request are counted at the same evaluation.

mod common;

use common::otlp::{body, checkout_spans, failed, traces, with_attr, with_resource_attr};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

fn config(p: &Ports, ckpt: &Checkpoint) -> String {
    format!(
        "{}pipeline:\n  evaluation_interval: 100ms\n\
         slo:\n  objectives: {{ availability: 0.9, latency: 0.99 }}\n{}\
         journeys:\n  - name: checkout\n    match: {{ span_name: POST /checkout }}\n",
        p.listeners_yaml(""),
        ckpt.slo_yaml()
    )
}

/// `n` checkout requests of `version` (a resource attribute), the first `errors` failed.
fn version(version: &str, n: usize, errors: usize, first_id: u64) -> ExportTraceServiceRequest {
    let spans = checkout_spans(n, first_id, 20)
        .into_iter()
        .enumerate()
        .map(|(i, s)| if i < errors { failed(s) } else { s })
        .collect();
    with_resource_attr(traces("shop", spans), "service.version", version)
}

/// One request holding several versions' spans.
fn send(c: &Cerflow, parts: Vec<ExportTraceServiceRequest>) {
    let mut req = ExportTraceServiceRequest::default();
    for p in parts {
        req.resource_spans.extend(p.resource_spans);
    }
    assert_eq!(c.post_traces(body(&req), "application/x-protobuf"), 200);
}

fn deployments(c: &Cerflow) -> Vec<serde_json::Value> {
    let v = c.get_json("/api/v1/deployments");
    assert_eq!(v["version_key"], "service.version");
    v["deployments"]
        .as_array()
        .cloned()
        .expect("a deployments array")
}

fn gate_auto(c: &Cerflow) -> (i32, String) {
    c.gate(&["--journey", "checkout", "--compare", "service.version=auto"])
}

fn close(v: &serde_json::Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("a number, got {v}"));
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

const J: (&str, &str) = ("journey", "checkout");

#[test]
fn a_version_with_30_percent_errors_is_regressed_and_a_restart_keeps_it() {
    let ckpt = Checkpoint::new();
    let mut c = Cerflow::start(|p| config(p, &ckpt));
    send(&c, vec![version("1.0", 100, 0, 0)]);
    // The evaluation that publishes these 100 requests has made 1.0 the current version.
    c.wait_for("cer_journey_requests_total", &[J], 100.0);
    assert!(
        deployments(&c).is_empty(),
        "a first version is no deployment"
    );

    // 2.0: 100 requests, 30 failed, beside 100 more healthy ones of 1.0.
    send(
        &c,
        vec![version("1.0", 100, 0, 1000), version("2.0", 100, 30, 2000)],
    );
    let s = c.wait_for("cer_deployments_total", &[J, ("result", "regressed")], 1.0);
    s.assert("cer_deployments_total", &[J, ("result", "ok")], 0.0);
    s.assert(
        "cer_deployment_info",
        &[
            J,
            ("version", "2.0"),
            ("previous_version", "1.0"),
            ("result", "regressed"),
        ],
        1.0,
    );
    let list = deployments(&c);
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d["result"], "regressed");
    assert_eq!(d["baseline"], "same_span");
    assert_eq!(d["figures"]["requests"], 100);
    assert_eq!(d["figures"]["errors"], 30);
    assert_eq!(d["previous_figures"]["requests"], 100);
    assert_eq!(d["previous_figures"]["errors"], 0);
    close(&d["figures"]["availability"], 0.7);
    close(&d["figures"]["score"], (0.5 * 7.0 / 9.0 + 0.3) / 0.8);
    close(&d["previous_figures"]["score"], 1.0);
    close(&d["score_drop"], 1.0 - (0.5 * 7.0 / 9.0 + 0.3) / 0.8);
    // The score API carries it on the journey-level entry.
    let scores = c.get_json("/api/v1/scores?journey=checkout");
    assert_eq!(scores["journeys"][0]["deployments"][0]["version"], "2.0");

    let (code, out) = gate_auto(&c);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0.8611 vs 1.0000 (drop 0.1389)"), "{out}");

    // A restart keeps the judged deployment and 2.0 as the current version: more 2.0
    // requests start no new deployment.
    assert!(c.terminate().success());
    let c = Cerflow::start(|p| config(p, &ckpt));
    let s = c.wait_for("cer_deployments_total", &[J, ("result", "regressed")], 1.0);
    s.assert(
        "cer_deployment_info",
        &[
            J,
            ("version", "2.0"),
            ("previous_version", "1.0"),
            ("result", "regressed"),
        ],
        1.0,
    );
    send(&c, vec![version("2.0", 100, 0, 3000)]);
    c.wait_for("cer_journey_requests_total", &[J], 100.0);
    assert_eq!(deployments(&c).len(), 1);
    let (code, out) = gate_auto(&c);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn an_equal_version_is_pending_below_min_events_then_ok() {
    let ckpt = Checkpoint::new();
    let c = Cerflow::start(|p| config(p, &ckpt));
    let (code, out) = gate_auto(&c);
    assert_eq!(code, 2, "no deployment yet: {out}");
    assert!(out.contains("no deployment of checkout yet"), "{out}");

    send(&c, vec![version("1.0", 100, 0, 0)]);
    c.wait_for("cer_journey_requests_total", &[J], 100.0);
    // 60 requests of 2.0 (the version as a span attribute this time), 40 of 1.0: 60 < 100.
    let spans = checkout_spans(60, 1000, 20)
        .into_iter()
        .map(|s| with_attr(s, "service.version", "2.0"))
        .collect();
    send(&c, vec![traces("shop", spans), version("1.0", 40, 0, 2000)]);
    let pending = [
        J,
        ("version", "2.0"),
        ("previous_version", "1.0"),
        ("result", "pending"),
    ];
    c.wait_for("cer_deployment_info", &pending, 1.0);
    let d = &deployments(&c)[0];
    assert_eq!(d["result"], "pending");
    assert_eq!(d["figures"]["requests"], 60);
    assert_eq!(d["previous_figures"]["requests"], 40);
    assert!(d["end_unix_nano"].is_null());
    let (code, out) = gate_auto(&c);
    assert_eq!(code, 2, "pending: {out}");
    assert!(
        out.contains("pending: 60 requests of the new version"),
        "{out}"
    );

    // 40 more of 2.0 (100 in all) and 10 of 1.0 (50 in the span): both score 1, drop 0.
    send(
        &c,
        vec![version("2.0", 40, 0, 3000), version("1.0", 10, 0, 4000)],
    );
    let s = c.wait_for("cer_deployments_total", &[J, ("result", "ok")], 1.0);
    s.assert("cer_deployments_total", &[J, ("result", "regressed")], 0.0);
    let d = &deployments(&c)[0];
    assert_eq!(d["result"], "ok");
    assert_eq!(d["figures"]["requests"], 100);
    assert_eq!(d["previous_figures"]["requests"], 50);
    close(&d["score_drop"], 0.0);
    let (code, out) = gate_auto(&c);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1.0000 vs 1.0000 (drop 0.0000)"), "{out}");
    // The compared key must be the one cerflow reads versions from.
    let (code, out) = c.gate(&[
        "--journey",
        "checkout",
        "--compare",
        "deployment.version=auto",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cerflow reads versions from service.version"),
        "{out}"
    );
}

#[test]
fn past_max_versions_the_least_recently_seen_version_is_forgotten_and_counted() {
    let ckpt = Checkpoint::new();
    let c = Cerflow::start(|p| {
        config(p, &ckpt).replace(
            "journeys:",
            "deployments:\n  min_events: 10\n  max_versions: 2\njourneys:",
        )
    });
    // Each version in its own evaluation, 10 healthy requests: 2.0 and 3.0 are judged
    // ok against the version before them, both over a cutover (baseline: before). The
    // test waits for each version's evaluation, so the time just before each span is
    // quiet: the baseline is the previous version's latest 10 requests.
    let mut total = 0.0;
    for (i, v) in ["1.0", "2.0", "3.0"].iter().enumerate() {
        send(&c, vec![version(v, 10, 0, 1000 * i as u64)]);
        total += 10.0;
        c.wait_for("cer_journey_requests_total", &[J], total);
    }
    let s = c.wait_for("cer_deployments_total", &[J, ("result", "ok")], 2.0);
    // The journey's spans share one series, hence one worker: it held 1.0 and 2.0 when
    // 3.0 came, and forgot 1.0, the least recently seen.
    s.assert("cerflow_deployment_versions_evicted_total", &[], 1.0);
    let got: Vec<String> = deployments(&c)
        .iter()
        .map(|d| {
            format!(
                "{} from {}: {}, {} baseline requests {}",
                d["version"],
                d["previous_version"],
                d["result"],
                d["baseline"],
                d["previous_figures"]["requests"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            r#""3.0" from "2.0": "ok", "before" baseline requests 10"#,
            r#""2.0" from "1.0": "ok", "before" baseline requests 10"#,
        ]
    );
}
