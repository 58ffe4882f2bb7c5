//! SLOs, error budgets, burn-rate alerts, scores, the score API and the release gate,
//! through the real binary with spans sent by the OpenTelemetry SDK over OTLP/gRPC.
//!
//! Objectives are 0.9 throughout, so a budget is 10% of requests and burn rates come out
//! as small whole numbers: an error ratio of 0.5 burns at 5, of 1.0 at 10.

mod common;

use common::*;
use opentelemetry::KeyValue;
use std::time::Duration;

const SHOP: &str = r#"
version: score-test
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m, 5m]
cohorts:
  keys: [cloud.region]
slo:
  objectives: { availability: 0.9, latency: 0.9, correctness: 0.9 }
  min_events: 5
journeys:
  - name: checkout
    weight: 3
    latency_threshold: 500ms
    match: { span_name: POST /checkout }
    incorrect:
      attributes: [{ key: app.result.valid, equals: false }]
  - name: login
    latency_threshold: 500ms
    match: { span_name: POST /login }
  - name: search
    match: { span_name: GET /search }
"#;

fn region(s: SpanSpec, r: &'static str) -> SpanSpec {
    s.attr(KeyValue::new("cloud.region", r))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn wait_close(cf: &Cerflow, name: &str, labels: &[(&str, &str)], want: f64) -> Scrape {
    let what = format!("{} ~= {want}", Scrape::key_text(name, labels));
    cf.wait_until(&what, |s| {
        s.get(name, labels).is_some_and(|v| close(v, want))
    })
}

/// The shop scenario: checkout fails only in us (a cohort failing, the journey burning
/// at 5x), login is slow twice in ten (no correctness rule: that component has no data),
/// search gets nothing.
fn shop_spans() -> Vec<SpanSpec> {
    let mut spans = Vec::new();
    for _ in 0..10 {
        spans.push(region(server("POST /checkout", 100), "eu"));
        spans.push(region(server("POST /checkout", 100), "us").error());
    }
    for i in 0..10 {
        spans.push(region(
            server("POST /login", if i < 2 { 800 } else { 100 }),
            "eu",
        ));
    }
    spans
}

#[test]
fn scores_budgets_and_alerts_match_hand_computed_values() {
    let cf = Cerflow::start_with(SHOP);
    let rt = runtime();
    cf.send_grpc(&rt, resource("shop-api", &[]), &shop_spans());

    // checkout: 20 requests, 10 errors: ratio 0.5 against a budget of 0.1 = burn 5,
    // component 1 - (5 - 1) / (10 - 1) = 5/9; latency and correctness are perfect.
    // Score = 0.5 * 5/9 + 0.3 + 0.2 = 7/9.
    let checkout = 7.0 / 9.0;
    wait_close(
        &cf,
        "cer_journey_score",
        &[("journey", "checkout"), ("window", "1m")],
        checkout,
    );
    // login: latency ratio 0.2 = burn 2, component 8/9; no correctness rule, so the score
    // is over availability (0.5) and latency (0.3): (0.5 + 0.3 * 8/9) / 0.8.
    let login = (0.5 + 0.3 * 8.0 / 9.0) / 0.8;
    // Overall: weights checkout 3, login 1; search has no data and is left out.
    let overall = (3.0 * checkout + login) / 4.0;
    let s = wait_close(&cf, "cer_score", &[("window", "1m")], overall);
    assert!(
        close(
            s.value(
                "cer_journey_score",
                &[("journey", "login"), ("window", "1m")]
            ),
            login
        ),
        "{}",
        s.text
    );
    assert!(close(
        s.value(
            "cer_journey_score",
            &[("journey", "checkout"), ("window", "5m")]
        ),
        checkout
    ));
    s.assert_absent(
        "cer_journey_score",
        &[("journey", "search"), ("window", "1m")],
    );
    s.assert(
        "cer_journey_data_present",
        &[("journey", "search"), ("window", "1m")],
        0.0,
    );
    s.assert(
        "cer_journey_data_present",
        &[("journey", "checkout"), ("window", "1m")],
        1.0,
    );

    // Cohorts: eu is perfect; us fails every request: burn 10, component 0, score 0.5.
    s.assert(
        "cer_cohort_score",
        &[
            ("journey", "checkout"),
            ("window", "1m"),
            ("cloud_region", "eu"),
        ],
        1.0,
    );
    s.assert(
        "cer_cohort_score",
        &[
            ("journey", "checkout"),
            ("window", "1m"),
            ("cloud_region", "us"),
        ],
        0.5,
    );

    // Budgets over the period: checkout availability burned 5x its budget: 1 - 5 = -4.
    s.assert(
        "cer_slo_objective_ratio",
        &[("journey", "checkout"), ("sli", "availability")],
        0.9,
    );
    assert!(close(
        s.value(
            "cer_slo_error_budget_remaining_ratio",
            &[("journey", "checkout"), ("sli", "availability")]
        ),
        -4.0
    ));
    assert!(close(
        s.value(
            "cer_slo_error_budget_remaining_ratio",
            &[("journey", "login"), ("sli", "latency")]
        ),
        -1.0
    ));
    s.assert(
        "cer_slo_error_budget_remaining_ratio",
        &[("journey", "login"), ("sli", "availability")],
        1.0,
    );
    s.assert_absent(
        "cer_slo_error_budget_remaining_ratio",
        &[("journey", "login"), ("sli", "correctness")],
    );
    assert!(close(
        s.value(
            "cer_slo_burn_rate",
            &[
                ("journey", "checkout"),
                ("sli", "availability"),
                ("window", "5m")
            ]
        ),
        5.0
    ));
    assert!(close(
        s.value(
            "cer_slo_burn_rate",
            &[
                ("journey", "checkout"),
                ("sli", "availability"),
                ("window", "1h"),
                ("cloud_region", "us")
            ]
        ),
        10.0
    ));
    // Alerts (objective 0.9): the page thresholds are 14.4 (1h & 5m) and 6 (6h & 30m), the
    // ticket ones 3 (1d & 2h) and 1 (3d & 6h). The journey burns at 5: ticket, no page.
    // The us cohort burns at 10 > 6: a page for that cohort alone.
    let alert = |labels: &[(&str, &str)]| s.value("cer_slo_alert_active", labels);
    assert_eq!(
        alert(&[
            ("journey", "checkout"),
            ("sli", "availability"),
            ("severity", "ticket")
        ]),
        1.0
    );
    assert_eq!(
        alert(&[
            ("journey", "checkout"),
            ("sli", "availability"),
            ("severity", "page")
        ]),
        0.0
    );
    assert_eq!(
        alert(&[
            ("journey", "checkout"),
            ("sli", "availability"),
            ("severity", "page"),
            ("cloud_region", "us")
        ]),
        1.0
    );
    assert_eq!(
        alert(&[
            ("journey", "checkout"),
            ("sli", "availability"),
            ("severity", "page"),
            ("cloud_region", "eu")
        ]),
        0.0
    );
    // login has 10 events but burns latency at 2: a ticket (> 1 over 3d and 6h) only.
    assert_eq!(
        alert(&[
            ("journey", "login"),
            ("sli", "latency"),
            ("severity", "ticket")
        ]),
        1.0
    );
    assert_eq!(
        alert(&[
            ("journey", "login"),
            ("sli", "latency"),
            ("severity", "page")
        ]),
        0.0
    );
}

#[test]
fn all_good_traffic_scores_one_and_fires_nothing() {
    let cf = Cerflow::start_with(SHOP);
    let rt = runtime();
    let spans: Vec<SpanSpec> = (0..12)
        .map(|_| region(server("POST /checkout", 50), "eu"))
        .collect();
    cf.send_grpc(&rt, resource("shop-api", &[]), &spans);
    let s = cf.wait_for("cer_score", &[("window", "1m")], 1.0);
    s.assert(
        "cer_journey_score",
        &[("journey", "checkout"), ("window", "1m")],
        1.0,
    );
    s.assert(
        "cer_slo_error_budget_remaining_ratio",
        &[("journey", "checkout"), ("sli", "availability")],
        1.0,
    );
    assert_eq!(s.sum("cer_slo_alert_active", &[]), 0.0, "{}", s.text);
}

/// `yaml` with the SLO checkpoint at `path`, written every second.
fn with_checkpoint(yaml: &str, ckpt: &Checkpoint) -> String {
    replace_once(
        yaml,
        "  min_events: 5\n",
        &format!("  min_events: 5\n{}", ckpt.slo_yaml()),
    )
}

#[test]
fn a_restart_keeps_the_period_budget() {
    let ckpt = Checkpoint::new();
    let yaml = with_checkpoint(SHOP, &ckpt);
    let config = |p: &Ports| format!("{}{yaml}", p.listeners_yaml(""));
    let mut first = Cerflow::start(config);
    let rt = runtime();
    first.send_grpc(&rt, resource("shop-api", &[]), &shop_spans());
    wait_close(
        &first,
        "cer_slo_error_budget_remaining_ratio",
        &[("journey", "checkout"), ("sli", "availability")],
        -4.0,
    );
    assert!(first.terminate().success(), "{}", first.logs());
    assert!(
        ckpt.path.exists(),
        "the shutdown wrote {}",
        ckpt.path.display()
    );

    let second = Cerflow::start(config);
    let s = wait_close(
        &second,
        "cer_slo_error_budget_remaining_ratio",
        &[("journey", "checkout"), ("sli", "availability")],
        -4.0,
    );
    assert!(close(
        s.value(
            "cer_slo_error_budget_remaining_ratio",
            &[("journey", "login"), ("sli", "latency")]
        ),
        -1.0
    ));
    // No spans reached this process: its event-time windows are empty.
    s.assert_absent(
        "cer_journey_score",
        &[("journey", "checkout"), ("window", "1m")],
    );
    assert!(
        second.logs().contains("Restored the SLO state."),
        "{}",
        second.logs()
    );
}

#[test]
fn a_corrupt_checkpoint_starts_fresh_with_a_warning() {
    let ckpt = Checkpoint::new();
    std::fs::write(
        &ckpt.path,
        b"cerflow-slo-checkpoint crc32=00000000 len=3\n{}x",
    )
    .unwrap();
    let yaml = with_checkpoint(SHOP, &ckpt);
    let cf = Cerflow::start_with(&yaml);
    let s = cf.wait_for(
        "cer_slo_error_budget_remaining_ratio",
        &[("journey", "checkout"), ("sli", "availability")],
        1.0,
    );
    assert!(s
        .get("cer_definition_info", &[("version", "score-test")])
        .is_some());
    assert!(
        cf.logs()
            .contains("Cannot restore the SLO state; starting with fresh error budgets."),
        "{}",
        cf.logs()
    );
    assert!(cf.logs().contains("checksum mismatch"), "{}", cf.logs());
}

const GATE: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m, 5m]
cohorts:
  keys: [service.version]
slo:
  objectives: { availability: 0.9, latency: 0.9, correctness: 0.9 }
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
"#;

fn gate(cf: &Cerflow, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--journey", "checkout", "--window", "5m"];
    all.extend_from_slice(args);
    cf.gate(&all)
}

#[test]
fn the_gate_passes_a_healthy_canary_and_fails_a_degraded_one() {
    let cf = Cerflow::start_with(GATE);
    let rt = runtime();
    let version = |v: &'static str, errors: usize| -> Vec<SpanSpec> {
        (0..10)
            .map(|i| {
                let s = server("POST /checkout", 50).attr(KeyValue::new("service.version", v));
                if i < errors {
                    s.error()
                } else {
                    s
                }
            })
            .collect()
    };
    let mut spans = version("2.0", 0);
    spans.extend(version("2.1-good", 1)); // ratio 0.1 = burn 1: still a perfect component
                                          // ratio 0.5 = burn 5, component 5/9; no correctness rule, so the score is
                                          // (0.5 * 5/9 + 0.3 * 1) / 0.8 = 0.7222.
    spans.extend(version("2.1-bad", 5));
    cf.send_grpc(&rt, resource("shop-api", &[]), &spans);
    // The journey: 30 requests, 6 errors: ratio 0.2, burn 2: (0.5 * 8/9 + 0.3) / 0.8 = 0.9306.
    wait_close(
        &cf,
        "cer_journey_score",
        &[("journey", "checkout"), ("window", "5m")],
        (0.5 * 8.0 / 9.0 + 0.3) / 0.8,
    );

    let (code, out) = gate(
        &cf,
        &[
            "--compare",
            "service.version=2.1-good:2.0",
            "--max-drop",
            "0.02",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1.0000 vs 1.0000 (drop 0.0000)"), "{out}");
    let (code, out) = gate(
        &cf,
        &[
            "--compare",
            "service.version=2.1-bad:2.0",
            "--max-drop",
            "0.02",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0.7222 vs 1.0000 (drop 0.2778)"), "{out}");
    assert!(out.contains("gate: FAIL"), "{out}");

    let (code, out) = gate(&cf, &["--min-score", "0.95"]);
    assert_eq!(code, 1, "0.9306 < 0.95: {out}");
    let (code, out) = gate(&cf, &["--min-score", "0.93", "--deny-alerts", "page"]);
    assert_eq!(code, 0, "{out}");
    // A cohort with no data cannot be judged.
    let (code, out) = gate(&cf, &["--compare", "service.version=3.0:2.0"]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn the_gate_cannot_decide_without_cerflow_or_without_data() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let (status, out, _) = run_cli(
        &[
            "gate",
            "--endpoint",
            &url,
            "--journey",
            "checkout",
            "--min-score",
            "0.9",
        ],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("gate: UNDECIDED"), "{out}");

    let cf = Cerflow::start_with(GATE);
    let (code, out) = gate(&cf, &["--min-score", "0.9"]);
    assert_eq!(code, 2, "no spans yet: {out}");
    assert!(out.contains("no data"), "{out}");
}

#[test]
fn the_score_api_serves_json_and_grpc() {
    let cf = Cerflow::start_with(SHOP);
    let rt = runtime();
    cf.send_grpc(&rt, resource("shop-api", &[]), &shop_spans());
    wait_close(
        &cf,
        "cer_journey_score",
        &[("journey", "checkout"), ("window", "1m")],
        7.0 / 9.0,
    );

    let url = format!(
        "http://127.0.0.1:{}/api/v1/scores?journey=checkout&window=1m&cohort=cloud.region:us",
        cf.ports.prom
    );
    let v: serde_json::Value =
        serde_json::from_str(&cf.client().get(&url).send().unwrap().text().unwrap()).unwrap();
    assert_eq!(v["definition_version"], "score-test");
    assert_eq!(v["journeys"][0]["cohort"]["cloud_region"], "us");
    assert_eq!(v["journeys"][0]["windows"][0]["requests"], 10);
    assert_eq!(v["journeys"][0]["windows"][0]["errors"], 10);
    assert_eq!(v["journeys"][0]["windows"][0]["score"], 0.5);
    let bad = cf
        .client()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/scores?nope=1",
            cf.ports.prom
        ))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    use cerflow::proto::score_service_client::ScoreServiceClient;
    use cerflow::proto::GetScoresRequest;
    let endpoint = cf.grpc_endpoint();
    rt.block_on(async move {
        let mut client = ScoreServiceClient::connect(endpoint).await.unwrap();
        let req = GetScoresRequest {
            journeys: vec!["login".into()],
            window: "1m".into(),
            ..Default::default()
        };
        let snap = client.get_scores(req.clone()).await.unwrap().into_inner();
        assert_eq!(snap.definition_version, "score-test");
        let login = snap
            .journeys
            .iter()
            .find(|j| j.cohort.is_empty())
            .expect("journey-level login");
        assert_eq!(login.windows[0].requests, 10);
        assert_eq!(login.windows[0].slow, 2);
        assert!(close(
            login.windows[0].score.unwrap(),
            (0.5 + 0.3 * 8.0 / 9.0) / 0.8
        ));
        assert!(login
            .alerts
            .iter()
            .any(|a| a.sli == "latency" && a.severity == "ticket"));
        assert!(close(login.budget_remaining["latency"], -1.0));

        let mut stream = client.watch_scores(req).await.unwrap().into_inner();
        let a = stream.message().await.unwrap().unwrap();
        let b = stream.message().await.unwrap().unwrap();
        assert!(
            b.time_unix_nano > a.time_unix_nano,
            "a new snapshot on each tick"
        );
        // Without Kafka stage 2 no instance is named, and SCOPE_ALL has no owners'
        // snapshots to read: refused, in a stream too, with the HTTP API's words.
        assert_eq!(snap.instance, None);
        let all = GetScoresRequest {
            journeys: vec!["login".into()],
            scope: cerflow::proto::Scope::All as i32,
            ..Default::default()
        };
        let e = client.watch_scores(all).await.expect_err("no stage 2");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    });
    use cerflow::proto::{GetScoresRequest as Req, Scope};
    let login = |scope: i32| Req {
        journeys: vec!["login".into()],
        window: "1m".into(),
        scope,
        ..Default::default()
    };
    // SCOPE_OWN answers as an unset scope does (older clients): login's 10 requests.
    let own = cf.try_grpc_scores(login(Scope::Own as i32)).expect("own");
    let login_entry = own.journeys.iter().find(|j| j.cohort.is_empty());
    assert_eq!(login_entry.map(|j| j.windows[0].requests), Some(10));
    let e = cf
        .try_grpc_scores(login(Scope::All as i32))
        .expect_err("no stage 2");
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::FailedPrecondition,
            "scope=all needs Kafka stage 2 (receivers.kafka.aggregates)"
        )
    );
    // A scope this version does not know is refused, not read as own.
    let e = cf.try_grpc_scores(login(7)).expect_err("unknown scope");
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::InvalidArgument,
            "unknown scope 7 (use SCOPE_OWN or SCOPE_ALL)"
        )
    );
}
