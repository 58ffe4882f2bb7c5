//! Journeys through the whole trace, through the real binary: hand-built traces (children
//! before their parent, a trace split over requests, nested journeys, a parent arriving
//! after `traces.wait`, protobuf and JSON) give exact dependency counts, blame shares and
//! orphans; the buffer's limits evict exactly as worked out; `traces.enabled: false`
//! turns it all off.

mod common;

use common::otlp::{body, call, failed, trace_span, traces, with_attr};
use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use std::time::Duration;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn config(p: &Ports, traces: &str) -> String {
    format!(
        "{}pipeline:\n  workers: 2\n  evaluation_interval: 100ms\n{traces}\
         journeys:\n  - name: checkout\n    match: {{ span_name: POST /checkout }}\n  \
         - name: login\n    match: {{ span_name: POST /login }}\n",
        p.listeners_yaml("")
    )
}

fn dep<'a>(journey: &'a str, dependency: &'a str) -> [(&'static str, &'a str); 2] {
    [("journey", journey), ("dependency", dependency)]
}

/// Waits until every buffered trace has completed (the buffers are empty) and the
/// orphan counter shows `orphans`.
fn settled(c: &Cerflow, orphans: f64) -> Scrape {
    c.wait_until("empty trace buffers", |s| {
        s.get("cerflow_trace_buffer_bytes", &[]) == Some(0.0)
            && s.get("cerflow_orphan_spans_total", &[]) == Some(orphans)
    })
}

#[test]
fn dependencies_blame_and_orphans_come_from_whole_traces() {
    let c = Cerflow::start(|p| config(p, "traces:\n  wait: 1s\n"));
    use SpanKind::{Client, Internal, Server};

    // Trace 1, a failed checkout, split over two requests, children first:
    //   1 SERVER POST /checkout (ERROR)
    //   ├─ 2 CLIENT payments 40 ms (ERROR)
    //   ├─ 3 CLIENT payments 60 ms (ERROR)   same dependency: blamed once
    //   └─ 4 INTERNAL render
    //      └─ 5 CLIENT db.system.name=postgresql db.namespace=shop 10 ms
    let children = vec![
        failed(call(1, 2, 1, "charge", 40, "payments")),
        failed(call(1, 3, 1, "charge again", 60, "payments")),
        trace_span(1, 4, 1, "render", Internal, 15),
        with_attr(
            with_attr(
                trace_span(1, 5, 4, "SELECT", Client, 10),
                "db.system.name",
                "postgresql",
            ),
            "db.namespace",
            "shop",
        ),
    ];
    assert_eq!(
        c.post_traces(body(&traces("shop", children)), PROTOBUF),
        200
    );
    let parent = failed(trace_span(1, 1, 0, "POST /checkout", Server, 100));
    assert_eq!(
        c.post_traces(body(&traces("shop", vec![parent])), PROTOBUF),
        200
    );

    // Trace 2, a good checkout whose login (a journey of its own) failed:
    //   10 SERVER POST /checkout
    //   └─ 11 CLIENT peer.service=auth 20 ms
    //      └─ 12 SERVER POST /login (ERROR)
    //         ├─ 13 CLIENT server.address=ldap.internal 30 ms (ERROR)
    //         └─ 14 CLIENT peer.service=cache 5 ms
    let trace2 = vec![
        call(2, 11, 10, "auth", 20, "auth"),
        failed(trace_span(2, 12, 11, "POST /login", Server, 18)),
        failed(with_attr(
            trace_span(2, 13, 12, "bind", Client, 30),
            "server.address",
            "ldap.internal",
        )),
        call(2, 14, 12, "get", 5, "cache"),
        trace_span(2, 10, 0, "POST /checkout", Server, 50),
    ];
    assert_eq!(c.post_traces(body(&traces("shop", trace2)), PROTOBUF), 200);

    // Trace 3, as OTLP/JSON: a failed checkout whose only call succeeded: blamed on self.
    //   20 SERVER POST /checkout (ERROR)
    //   └─ 21 CLIENT peer.service=inventory 15 ms
    let trace3 = traces(
        "shop",
        vec![
            failed(trace_span(3, 20, 0, "POST /checkout", Server, 30)),
            call(3, 21, 20, "reserve", 15, "inventory"),
        ],
    );
    let json = serde_json::to_vec(&trace3).expect("a request serializes to OTLP/JSON");
    assert_eq!(c.post_traces(json, JSON), 200);

    // Trace 4: no journey claims any span: 2 orphans.
    let trace4 = vec![
        trace_span(4, 30, 0, "GET /health", Server, 1),
        call(4, 31, 30, "ping", 1, "payments"),
    ];
    assert_eq!(c.post_traces(body(&traces("shop", trace4)), PROTOBUF), 200);

    // Trace 5: the children arrive, traces.wait passes (the trace completes without a
    // claimed span: 2 more orphans), then the parent comes: a request, but no calls.
    let trace5_children = vec![
        call(5, 41, 40, "charge", 40, "payments"),
        trace_span(5, 42, 40, "render", Internal, 1),
    ];
    assert_eq!(
        c.post_traces(body(&traces("shop", trace5_children)), PROTOBUF),
        200
    );
    // Orphans: trace 4 (2) + trace 5's children (2) = 4.
    settled(&c, 4.0);
    let late_parent = trace_span(5, 40, 0, "POST /checkout", Server, 80);
    assert_eq!(
        c.post_traces(body(&traces("shop", vec![late_parent])), PROTOBUF),
        200
    );
    // Checkout requests: traces 1, 2, 3 and 5's late parent = 4.
    c.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        4.0,
    );
    // The late parent's own trace completes a wait later, alone: no calls, no orphans.
    std::thread::sleep(Duration::from_millis(1100));
    let s = settled(&c, 4.0);

    s.assert("cer_journey_errors_total", &[("journey", "checkout")], 2.0);
    s.assert("cer_journey_requests_total", &[("journey", "login")], 1.0);
    s.assert("cer_journey_errors_total", &[("journey", "login")], 1.0);
    // Calls: payments 2 (trace 1 only; trace 4's and 5's were orphans), both failed.
    s.assert(
        "cer_dependency_requests_total",
        &dep("checkout", "payments"),
        2.0,
    );
    s.assert(
        "cer_dependency_errors_total",
        &dep("checkout", "payments"),
        2.0,
    );
    // The SELECT under the INTERNAL render span belongs to checkout, named system/namespace.
    s.assert(
        "cer_dependency_requests_total",
        &dep("checkout", "postgresql/shop"),
        1.0,
    );
    s.assert(
        "cer_dependency_errors_total",
        &dep("checkout", "postgresql/shop"),
        0.0,
    );
    s.assert(
        "cer_dependency_requests_total",
        &dep("checkout", "auth"),
        1.0,
    );
    s.assert(
        "cer_dependency_requests_total",
        &dep("checkout", "inventory"),
        1.0,
    );
    // The login's calls are the login's, not the checkout's.
    s.assert(
        "cer_dependency_requests_total",
        &dep("login", "ldap.internal"),
        1.0,
    );
    s.assert(
        "cer_dependency_errors_total",
        &dep("login", "ldap.internal"),
        1.0,
    );
    s.assert("cer_dependency_requests_total", &dep("login", "cache"), 1.0);
    s.assert_absent(
        "cer_dependency_requests_total",
        &dep("checkout", "ldap.internal"),
    );
    s.assert_absent("cer_dependency_requests_total", &dep("checkout", "cache"));
    assert_eq!(
        s.matching("cer_dependency_requests_total", &[]).len(),
        6,
        "checkout: payments, postgresql/shop, auth, inventory; login: ldap.internal, cache"
    );
    // Availability over the 1m window: payments 0 of 2 good, auth 1 of 1.
    let w = |j, d| [("journey", j), ("dependency", d), ("window", "1m")];
    s.assert(
        "cer_dependency_availability_ratio",
        &w("checkout", "payments"),
        0.0,
    );
    s.assert(
        "cer_dependency_availability_ratio",
        &w("checkout", "auth"),
        1.0,
    );
    // Latency of payments' calls, 40 and 60 ms: p50 is the first, p99 the second.
    let calls = [Duration::from_millis(40), Duration::from_millis(60)];
    let q = |quantile| {
        [
            ("journey", "checkout"),
            ("dependency", "payments"),
            ("window", "1m"),
            ("quantile", quantile),
        ]
    };
    s.assert(
        "cer_dependency_latency_seconds",
        &q("0.5"),
        expected_quantile(&calls, 0.5),
    );
    s.assert(
        "cer_dependency_latency_seconds",
        &q("0.99"),
        expected_quantile(&calls, 0.99),
    );
    // Histogram: 40 ms in (0.025, 0.05], 60 ms in (0.05, 0.1]; sum 0.1 s.
    let b = |le| {
        [
            ("journey", "checkout"),
            ("dependency", "payments"),
            ("le", le),
        ]
    };
    s.assert("cer_dependency_duration_seconds_bucket", &b("0.025"), 0.0);
    s.assert("cer_dependency_duration_seconds_bucket", &b("0.05"), 1.0);
    s.assert("cer_dependency_duration_seconds_bucket", &b("0.1"), 2.0);
    s.assert(
        "cer_dependency_duration_seconds_count",
        &dep("checkout", "payments"),
        2.0,
    );
    let sum = s.value(
        "cer_dependency_duration_seconds_sum",
        &dep("checkout", "payments"),
    );
    assert!((sum - 0.1).abs() < 1e-9, "40 ms + 60 ms, got {sum}");

    // Blame: checkout's 2 failures are trace 1 (payments, once for two failed calls) and
    // trace 3 (no failed call: self). The good checkout of trace 2 is blamed on nothing,
    // and the login's failure is the login's (ldap.internal).
    s.assert(
        "cer_journey_failures_attributed_total",
        &dep("checkout", "payments"),
        1.0,
    );
    s.assert(
        "cer_journey_failures_attributed_total",
        &dep("checkout", "self"),
        1.0,
    );
    s.assert(
        "cer_journey_failures_attributed_total",
        &dep("login", "ldap.internal"),
        1.0,
    );
    assert_eq!(
        s.matching("cer_journey_failures_attributed_total", &[])
            .len(),
        3
    );
    s.assert("cerflow_traces_evicted_total", &[("reason", "memory")], 0.0);
    s.assert(
        "cerflow_traces_evicted_total",
        &[("reason", "max_spans")],
        0.0,
    );

    // The score API: per journey and window, by share (1 of 2 each, ties by name).
    let scores = c.get_json("/api/v1/scores?journey=checkout&window=1m");
    let journeys = scores["journeys"].as_array().expect("journeys");
    let checkout = journeys
        .iter()
        .find(|j| {
            j["journey"] == "checkout" && j["cohort"].as_object().is_some_and(|m| m.is_empty())
        })
        .expect("checkout as a whole");
    let window = checkout["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["window"] == "1m"))
        .expect("the 1m window");
    assert_eq!(
        window["blame"],
        serde_json::json!([
            { "dependency": "payments", "failures": 1, "share": 0.5 },
            { "dependency": "self", "failures": 1, "share": 0.5 },
        ])
    );
    // The same over gRPC.
    let snap = c.grpc_scores(&["login"], "1m");
    let login = snap
        .journeys
        .iter()
        .find(|j| j.cohort.is_empty())
        .expect("login");
    let blame: Vec<_> = login.windows[0]
        .blame
        .iter()
        .map(|b| (b.dependency.as_str(), b.failures, b.share))
        .collect();
    assert_eq!(blame, [("ldap.internal", 1, 1.0)]);
}

#[test]
fn the_buffer_limits_complete_traces_early_and_count_them() {
    // One worker, so the whole buffer (1 MiB, the least allowed) is one worker's.
    let c = Cerflow::start(|p| {
        replace_once(
            &config(
                p,
                "traces:\n  wait: 1s\n  max_bytes: 1048576\n  max_spans_per_trace: 3\n",
            ),
            "workers: 2",
            "workers: 1",
        )
    });
    use SpanKind::Server;
    // A checkout with 4 calls, in one request: the first 3 spans (the parent and 2
    // calls) reach max_spans_per_trace and complete at once; the last 2 calls start a
    // new trace that never shows the parent: 2 orphans.
    let mut spans = vec![trace_span(1, 1, 0, "POST /checkout", Server, 50)];
    for id in 2..=5 {
        spans.push(call(1, id, 1, "q", 5, "db"));
    }
    assert_eq!(c.post_traces(body(&traces("shop", spans)), PROTOBUF), 200);
    let s = settled(&c, 2.0);
    s.assert(
        "cerflow_traces_evicted_total",
        &[("reason", "max_spans")],
        1.0,
    );
    s.assert("cer_dependency_requests_total", &dep("checkout", "db"), 2.0);

    // 6000 traces of one call each, in one request. Each costs 96 (its table entry, 48,
    // counted twice) + 32 (its one arrival) + 48 (its span's node) + 24 + 8 (the header
    // of its names and their room: "db" in a string's first 8 bytes) = 208 bytes. After
    // the batch the buffer would hold 6000 x 208 = 1,248,000 bytes > 1,048,576; the
    // oldest complete until it fits: 5041 x 208 = 1,048,528 fits (5042 x 208 = 1,048,736
    // does not), so 6000 - 5041 = 959 are evicted for memory.
    let calls: Vec<_> = (0..6000u64)
        .map(|i| call(100 + i, 1, 0, "q", 5, "db"))
        .collect();
    assert_eq!(c.post_traces(body(&traces("shop", calls)), PROTOBUF), 200);
    // Every one of them is an orphan in the end, evicted or not: 2 + 6000.
    let s = settled(&c, 6002.0);
    s.assert(
        "cerflow_traces_evicted_total",
        &[("reason", "memory")],
        959.0,
    );
    s.assert(
        "cerflow_traces_evicted_total",
        &[("reason", "max_spans")],
        1.0,
    );
}

#[test]
fn with_trace_assembly_off_there_are_no_dependencies_and_no_orphans() {
    let c = Cerflow::start(|p| config(p, "traces:\n  enabled: false\n  wait: 10s\n"));
    use SpanKind::Server;
    let spans = vec![
        failed(trace_span(1, 1, 0, "POST /checkout", Server, 50)),
        failed(call(1, 2, 1, "charge", 40, "payments")),
        call(2, 3, 0, "orphan", 40, "payments"),
    ];
    assert_eq!(c.post_traces(body(&traces("shop", spans)), PROTOBUF), 200);
    c.wait_for("cer_journey_errors_total", &[("journey", "checkout")], 1.0);
    // A few ticks later: with assembly on, the 3 spans would sit in the buffer for the
    // whole 10 s wait; off, nothing is buffered and nothing is derived from traces.
    std::thread::sleep(Duration::from_millis(500));
    let s = c.scrape();
    s.assert("cerflow_trace_buffer_bytes", &[], 0.0);
    assert!(s.matching("cer_dependency_requests_total", &[]).is_empty());
    assert!(s
        .matching("cer_journey_failures_attributed_total", &[])
        .is_empty());
    s.assert("cerflow_orphan_spans_total", &[], 0.0);
}

/// Parents and children as the OpenTelemetry SDK makes them (gRPC exporter): two
/// checkouts, each calling payments (peer.service) and a database (db.system.name); the
/// first checkout and its payments call fail.
#[test]
fn spans_from_the_sdk_are_assembled_by_their_parent_ids() {
    use opentelemetry::trace::SpanKind as Kind;
    use opentelemetry::KeyValue;
    let c = Cerflow::start(|p| config(p, "traces:\n  wait: 1s\n"));
    let checkout = |fail: bool| {
        let pay = span("charge", Kind::Client, 40).attr(KeyValue::new("peer.service", "payments"));
        let s = server("POST /checkout", 100)
            .child(if fail { pay.error() } else { pay })
            .child(
                span("SELECT", Kind::Client, 10)
                    .attr(KeyValue::new("db.system.name", "postgresql")),
            );
        if fail {
            s.error()
        } else {
            s
        }
    };
    let rt = runtime();
    c.send_grpc(
        &rt,
        resource("shop", &[]),
        &[checkout(true), checkout(false)],
    );
    c.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        2.0,
    );
    let s = settled(&c, 0.0);
    s.assert(
        "cer_dependency_requests_total",
        &dep("checkout", "payments"),
        2.0,
    );
    s.assert(
        "cer_dependency_errors_total",
        &dep("checkout", "payments"),
        1.0,
    );
    // No db.namespace: the name is the system alone.
    s.assert(
        "cer_dependency_requests_total",
        &dep("checkout", "postgresql"),
        2.0,
    );
    s.assert(
        "cer_journey_failures_attributed_total",
        &dep("checkout", "payments"),
        1.0,
    );
    s.assert_absent(
        "cer_journey_failures_attributed_total",
        &dep("checkout", "self"),
    );
}

/// A game day with the load generator: requests call payments and inventory; in the
/// second phase every payments call fails and fails its request. Whatever the random
/// draw, every failed request is blamed on payments and nothing on self or inventory,
/// and each request made exactly one call to each dependency.
#[test]
fn a_loadgen_fault_in_one_dependency_moves_the_blame_to_it() {
    let c = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\ntraces:\n  wait: 1s\n",
            p.listeners_yaml("")
        )
    });
    let scenario = c.dir.path().join("game-day.yaml");
    std::fs::write(
        &scenario,
        "phases:\n  - name: healthy\n    duration: 1s\n  - name: payments-down\n    duration: 1s\n    \
         faults:\n      - dependency: payments\n        error_rate: 1.0\n",
    )
    .expect("writing the scenario");
    let endpoint = format!("127.0.0.1:{}", c.ports.http);
    let (status, out, err) = run_cli(
        &[
            "loadgen",
            "--endpoint",
            &endpoint,
            "--protocol",
            "http",
            "--journeys",
            "1",
            "--cohorts",
            "1",
            "--dependencies",
            "2",
            "--rate",
            "300",
            "--spans-per-request",
            "30",
            "--scenario",
            scenario.to_str().expect("a UTF-8 path"),
        ],
        c.dir.path(),
        Duration::from_secs(60),
    );
    assert!(status.success(), "loadgen failed: {out}{err}");
    let s = c.wait_until("every trace completed", |s| {
        s.get("cerflow_trace_buffer_bytes", &[]) == Some(0.0)
            && s.get("cer_journey_failures_attributed_total", &dep(J, "payments"))
                .is_some()
    });
    const J: &str = "checkout-service:POST /checkout";
    let requests = s.value("cer_journey_requests_total", &[("journey", J)]);
    let errors = s.value("cer_journey_errors_total", &[("journey", J)]);
    assert!(
        errors > 0.0 && errors < requests,
        "{errors} of {requests} failed"
    );
    s.assert(
        "cer_journey_failures_attributed_total",
        &dep(J, "payments"),
        errors,
    );
    s.assert_absent("cer_journey_failures_attributed_total", &dep(J, "self"));
    s.assert_absent(
        "cer_journey_failures_attributed_total",
        &dep(J, "inventory"),
    );
    s.assert(
        "cer_dependency_requests_total",
        &dep(J, "payments"),
        requests,
    );
    s.assert(
        "cer_dependency_requests_total",
        &dep(J, "inventory"),
        requests,
    );
    s.assert("cer_dependency_errors_total", &dep(J, "payments"), errors);
    s.assert("cer_dependency_errors_total", &dep(J, "inventory"), 0.0);
    s.assert("cerflow_orphan_spans_total", &[], 0.0);
}
