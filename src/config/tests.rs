use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, "test.yaml", &|k| match k {
        "REGION_KEY" => Some("cloud.region".into()),
        "OTLP_PORT" => Some("4999".into()),
        _ => None,
    })
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn the_embedded_default_is_valid_and_equals_the_code_defaults() {
    let cfg = Config::embedded_default();
    let d = Config::default();
    assert_eq!(cfg.receivers.grpc, d.receivers.grpc);
    assert_eq!(cfg.receivers.http, d.receivers.http);
    assert_eq!(
        cfg.receivers.max_request_bytes,
        d.receivers.max_request_bytes
    );
    assert_eq!(
        cfg.receivers.max_decompressed_bytes,
        d.receivers.max_decompressed_bytes
    );
    assert_eq!(cfg.exporters.prometheus, d.exporters.prometheus);
    assert_eq!(cfg.windows.sizes, d.windows.sizes);
    assert_eq!(cfg.windows.sub_buckets, d.windows.sub_buckets);
    assert_eq!(cfg.windows.max_clock_skew, d.windows.max_clock_skew);
    assert_eq!(cfg.windows.series_ttl, d.windows.series_ttl);
    assert_eq!(cfg.histogram_buckets, d.histogram_buckets);
    assert_eq!(cfg.pipeline.workers, d.pipeline.workers);
    assert_eq!(cfg.pipeline.queue_size, d.pipeline.queue_size);
    assert_eq!(cfg.pipeline.queue_bytes, d.pipeline.queue_bytes);
    assert_eq!(
        cfg.pipeline.evaluation_interval,
        d.pipeline.evaluation_interval
    );
    assert_eq!(cfg.defaults.latency_threshold, Duration::from_secs(1));
    assert_eq!(cfg.cohorts.missing_value, "unknown");
    assert!(cfg.auto_journeys.enabled);
    assert_eq!(cfg.auto_journeys.max, 500);
    assert!(cfg.journeys.is_empty());
    assert_eq!(cfg.slo.period, d.slo.period);
    assert_eq!(cfg.slo.objectives, d.slo.objectives);
    assert_eq!(cfg.slo.alerts, d.slo.alerts);
    assert_eq!(cfg.slo.burn_windows, d.slo.burn_windows);
    assert_eq!(cfg.slo.min_events, d.slo.min_events);
    assert_eq!(cfg.slo.clear_after, d.slo.clear_after);
    assert_eq!(
        cfg.slo.checkpoint.as_ref().map(|c| (&c.path, c.interval)),
        d.slo.checkpoint.as_ref().map(|c| (&c.path, c.interval))
    );
    assert_eq!(cfg.score.floor_burn_rate, d.score.floor_burn_rate);
    assert_eq!(cfg.score.sli_weights, d.score.sli_weights);
    assert_eq!(cfg.score.weight_by, d.score.weight_by);
    assert_eq!(cfg.score.no_data, d.score.no_data);
    assert_eq!(
        cfg.limits.max_series_per_journey,
        d.limits.max_series_per_journey
    );
    assert_eq!(
        cfg.limits.max_window_state_bytes,
        d.limits.max_window_state_bytes
    );
}

#[test]
fn slo_and_score_settings_are_checked() {
    assert_eq!(
        problems(
            "slo:\n  objectives: { availability: 1.5 }\n  alerts:\n    - { severity: sev1, long_window: 5m, short_window: 1h, burn_rate: 2 }\nscore:\n  floor_burn_rate: 1\n  no_data: maybe\n"
        ),
        vec![
            "2:31: slo.objectives.availability: must be between 0 and 1 (exclusive), got 1.5",
            "4:9: slo.alerts[0]: short_window must be shorter than long_window",
            "4:19: slo.alerts[0].severity: unknown severity \"sev1\" (expected page or ticket)",
            "6:20: score.floor_burn_rate: must be greater than 1, got 1",
            "7:12: score.no_data: unknown policy \"maybe\" (expected exclude, good or bad)",
        ]
    );
}

#[test]
fn an_empty_file_is_the_default() {
    let cfg = parse("").unwrap();
    assert!(cfg.auto_journeys.enabled);
    assert_eq!(cfg.version, "default");
}

#[test]
fn a_full_shop_config_parses() {
    let cfg = parse(
        r#"
version: shop-2026-11
cohorts:
  keys: ["${env:REGION_KEY}", app.plan.tier]
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:${env:OTLP_PORT}" }
journeys:
  - name: checkout
    weight: 3
    latency_threshold: 800ms
    match:
      - service: shop-api
        span_name: POST /checkout
        kind: server
      - span_name: { regex: "^checkout" }
        attributes:
          - { key: http.route, one_of: [/checkout, /pay] }
    incorrect:
      any:
        - attributes: [{ key: app.result.valid, equals: false }]
        - event: validation_failed
  - name: login
    match: { span_name: POST /login }
"#,
    )
    .unwrap();
    assert_eq!(cfg.version, "shop-2026-11");
    assert_eq!(cfg.cohorts.keys, vec!["cloud.region", "app.plan.tier"]);
    assert_eq!(cfg.receivers.grpc, Some("127.0.0.1:4999".parse().unwrap()));
    assert_eq!(cfg.journeys.len(), 2);
    assert_eq!(cfg.journeys[0].weight, 3.0);
    assert_eq!(
        cfg.journeys[0].latency_threshold,
        Duration::from_millis(800)
    );
    assert_eq!(cfg.journeys[1].latency_threshold, Duration::from_secs(1));
    assert_eq!(
        cfg.journeys[1].cohorts,
        vec!["cloud.region", "app.plan.tier"]
    );
    assert!(
        !cfg.auto_journeys.enabled,
        "defining journeys turns auto-derivation off"
    );
}

#[test]
fn unknown_keys_are_reported_with_their_place() {
    assert_eq!(
        problems(
            "receivers:\n  otlp:\n    protocols:\n      htttp:\n        endpoint: 127.0.0.1:1\n"
        ),
        vec!["4:7: receivers.otlp.protocols: unknown key \"htttp\" (expected one of: grpc, http)"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = problems(
        r#"
windows:
  sizes: [1m, 5 minutes]
journeys:
  - name: checkout
    weight: 0
    match: { span_name: { regex: "(" } }
  - name: checkout
    weight: -2
    latency_threshold: soon
    match: { kind: sideways }
  - weight: 1
"#,
    );
    assert_eq!(
        got,
        vec![
            "3:15: windows.sizes[1]: invalid duration \"5 minutes\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)",
            "6:13: journeys[0].weight: must be greater than 0, got 0",
            "7:34: journeys[0].match.span_name.regex: invalid regex \"(\": error: unclosed group",
            "8:11: journeys[1].name: duplicate journey name \"checkout\" (first defined at line 5)",
            "9:13: journeys[1].weight: must be greater than 0, got -2",
            "10:24: journeys[1].latency_threshold: invalid duration \"soon\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)",
            "11:20: journeys[1].match.kind: unknown value \"sideways\" (expected one of: unspecified, internal, server, client, producer, consumer)",
            "12:5: journeys[2]: missing required key \"name\"",
            "12:5: journeys[2]: missing required key \"match\" (or \"metrics\")",
        ]
    );
}

#[test]
fn an_unset_environment_variable_is_an_error_unless_defaulted() {
    assert_eq!(
        problems("version: ${env:NOPE}\n"),
        vec!["1:10: environment variable \"NOPE\" is not set (give a default with ${env:NOPE:-value})"]
    );
    assert_eq!(parse("version: ${env:NOPE:-v2}\n").unwrap().version, "v2");
    assert_eq!(parse("version: cost-$$5\n").unwrap().version, "cost-$5");
}

#[test]
fn yaml_syntax_errors_name_the_place() {
    let got = problems("journeys:\n  - name: [unclosed\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("invalid YAML"), "{got:?}");
}

#[test]
fn attribute_tests_need_exactly_one_operator() {
    assert_eq!(
        problems("journeys:\n  - name: a\n    match:\n      attributes:\n        - { key: x, equals: 1, gt: 2 }\n"),
        vec!["5:13: journeys[0].match.attributes[0]: give exactly one test of: equals, not_equals, one_of, regex, exists, gt, gte, lt, lte"]
    );
}

#[test]
fn cohort_keys_may_not_clash_with_cerflow_labels() {
    assert_eq!(
        problems("cohorts:\n  keys: [journey]\n"),
        vec![
            "2:10: cohorts.keys[0]: cohort key \"journey\" would clash with the label \"journey\""
        ]
    );
}

#[test]
fn the_example_shop_config_is_valid() {
    let cfg = Config::parse(
        include_str!("../../examples/shop.yaml"),
        "examples/shop.yaml",
        &|_| None,
    )
    .unwrap();
    let names: Vec<&str> = cfg.journeys.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, vec!["checkout", "login", "search"]);
    assert_eq!(cfg.cohorts.keys, vec!["cloud.region", "app.plan.tier"]);
    assert_eq!(
        cfg.journeys[0].objectives,
        PerSli([0.9995, 0.99, 0.999, 0.99, 0.75])
    );
    assert_eq!(cfg.receivers.grpc, Some("127.0.0.1:4317".parse().unwrap()));
}

#[test]
fn anchors_work_on_lists_and_mappings_and_expansion_is_bounded() {
    let cfg = parse("cohorts:\n  keys: &k [cloud.region]\njourneys:\n  - name: a\n    cohorts: *k\n    match: &m { span_name: x }\n  - name: b\n    match: *m\n").unwrap();
    assert_eq!(cfg.journeys[0].cohorts, vec!["cloud.region"]);
    assert_eq!(cfg.journeys.len(), 2);
    // Each level doubles the one before: 2^30 nodes if expanded.
    let mut bomb = String::from("a0: &a0 [x, x]\n");
    for i in 1..30 {
        bomb.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
    }
    let got = problems(&bomb);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("aliases expand to too many nodes"),
        "{got:?}"
    );
}

#[test]
fn configs_compare_by_value_for_reload() {
    let text = "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [{ token: a }]\njourneys:\n  - name: j\n    match: { span_name: { regex: \"^GET \" } }\n";
    let a = parse(text).unwrap();
    let b = parse(text).unwrap();
    assert_eq!(a, b, "the same file twice, regexes included");
    let c = parse(&text.replace("token: a", "token: b")).unwrap();
    assert_ne!(a.receivers, c.receivers, "a changed token is a change");
    assert_eq!(a.journeys, c.journeys);
    let d = parse(&text.replace("^GET ", "^POST ")).unwrap();
    assert_ne!(a.journeys, d.journeys, "a changed regex is a change");
}
