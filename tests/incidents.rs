//! Incidents through the real binary: a burst of failures pages, which opens an incident
//! of the journey; it closes when the alert clears, with its duration on `/metrics` and in
//! `GET /api/v1/incidents`; a restart keeps an open incident open with its start.
//!
//! The alert: `{page, long_window: 10s, short_window: 2s, burn_rate: 1}` with
//! `min_events: 1`. 10 failed checkouts burn at (10 / 10) / 0.001 = 1000 over both windows
//! at the first evaluation that sees them: the incident opens there. The burn rings are
//! filled at evaluation time, so the short window (12 sub-buckets of 2s / 12) holds the
//! failures for between 2s - 2s/12 and 2s; the alert then stops firing, and clears
//! `clear_after` (1s) after its last firing evaluation. The incident therefore lasts
//! between 2 - 1/6 + 1 - 0.1 = 2.73s and 2 + 1 + 0.1 = 3.1s (0.1s: the evaluation
//! interval); the bound above allows 0.4s more for late evaluations on a loaded machine.

mod common;

use common::otlp::{body, failed, trace_span, traces};
use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn config(p: &Ports, ckpt: &Checkpoint, clear_after: &str) -> String {
    format!(
        "{}pipeline:\n  evaluation_interval: 100ms\n\
         slo:\n  min_events: 1\n  clear_after: {clear_after}\n  alerts:\n    \
         - {{ severity: page, long_window: 10s, short_window: 2s, burn_rate: 1 }}\n{}\
         journeys:\n  - name: checkout\n    match: {{ span_name: POST /checkout }}\n",
        p.listeners_yaml(""),
        ckpt.slo_yaml()
    )
}

fn failures(c: &Cerflow, first_trace: u64) {
    let spans = (0..10)
        .map(|i| {
            failed(trace_span(
                first_trace + i,
                1,
                0,
                "POST /checkout",
                SpanKind::Server,
                20,
            ))
        })
        .collect();
    assert_eq!(
        c.post_traces(body(&traces("shop", spans)), "application/x-protobuf"),
        200
    );
}

fn incidents(c: &Cerflow) -> Vec<serde_json::Value> {
    c.get_json("/api/v1/incidents")["incidents"]
        .as_array()
        .cloned()
        .expect("an incidents array")
}

const OPEN: &str = "cer_journey_incident_open";
const J: [(&str, &str); 1] = [("journey", "checkout")];

#[test]
fn a_burst_of_failures_opens_an_incident_that_closes_when_the_alert_clears() {
    let ckpt = Checkpoint::new();
    let c = Cerflow::start(|p| config(p, &ckpt, "1s"));
    failures(&c, 1);
    let s = c.wait_for(OPEN, &J, 1.0);
    s.assert("cer_journey_incidents_total", &J, 1.0);
    let open = incidents(&c);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["journey"], "checkout");
    assert!(open[0]["end_unix_nano"].is_null());
    // The peak burn: 10 failures of 10 requests over an objective of 0.999.
    let peak = open[0]["peak_burn_rate"]
        .as_f64()
        .expect("a peak burn rate");
    assert!((peak - 1000.0).abs() < 1e-6, "peak burn {peak}");
    // No span names a user: the incident has no user figure rather than 0 affected.
    assert!(open[0]["users_affected"].is_null(), "{}", open[0]);

    let s = c.wait_for(OPEN, &J, 0.0);
    s.assert("cer_journey_incidents_total", &J, 1.0);
    s.assert("cer_journey_time_to_recovery_seconds_count", &J, 1.0);
    let d = s.value("cer_journey_time_to_recovery_seconds_sum", &J);
    assert!(
        (2.73..=3.5).contains(&d),
        "incident lasted {d}s; see the module comment"
    );
    // Bucket bounds 1, 5: the one incident is in (1, 5].
    s.assert(
        "cer_journey_time_to_recovery_seconds_bucket",
        &[("journey", "checkout"), ("le", "1")],
        0.0,
    );
    s.assert(
        "cer_journey_time_to_recovery_seconds_bucket",
        &[("journey", "checkout"), ("le", "5")],
        1.0,
    );
    let closed = incidents(&c);
    assert_eq!(closed.len(), 1);
    let (start, end) = (
        closed[0]["start_unix_nano"].as_u64().expect("a start"),
        closed[0]["end_unix_nano"].as_u64().expect("an end"),
    );
    assert_eq!(
        closed[0]["duration_seconds"].as_f64(),
        Some((end - start) as f64 / 1e9)
    );
    assert_eq!(closed[0]["duration_seconds"].as_f64(), Some(d));
    assert_eq!(start, open[0]["start_unix_nano"].as_u64().expect("a start"));

    // The gRPC method lists the same incident.
    let list = c.grpc_incidents(&["checkout"]);
    assert_eq!(list.incidents.len(), 1);
    let i = &list.incidents[0];
    assert_eq!(
        (i.journey.as_str(), i.start_unix_nano, i.end_unix_nano),
        ("checkout", start, Some(end))
    );
    assert_eq!(i.duration_seconds, d);
}

#[test]
fn a_restart_keeps_an_open_incident_open_with_its_start() {
    let ckpt = Checkpoint::new();
    // clear_after 10m: the alert, and so the incident, stays active across the restart.
    let mut first = Cerflow::start(|p| config(p, &ckpt, "10m"));
    failures(&first, 1);
    first.wait_for(OPEN, &J, 1.0);
    let before = incidents(&first);
    assert_eq!(before.len(), 1);
    let status = first.terminate();
    assert!(status.success(), "exit {status:?}\n{}", first.logs());
    assert!(
        ckpt.beside("slo.incidents").exists(),
        "written beside slo.ckpt"
    );

    let second = Cerflow::start(|p| config(p, &ckpt, "10m"));
    let s = second.wait_for(OPEN, &J, 1.0);
    // Still the one incident: not closed, not opened again.
    s.assert("cer_journey_incidents_total", &J, 1.0);
    let after = incidents(&second);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["start_unix_nano"], before[0]["start_unix_nano"]);
    assert!(after[0]["end_unix_nano"].is_null());
}
