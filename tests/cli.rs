//! The command line of the real binary: validate, --help, default-config, and a clear
//! exit when a port is taken.

mod common;

use common::*;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Ten problems on purpose, each where a reader would look for it.
const BAD: &str = r#"version: ""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: not-an-endpoint
pipeline:
  evaluation_interval: 10ms
  workerz: 3
windows:
  sizes: [1m, 5 minutes]
journeys:
  - name: checkout
    match:
      span_name:
        regex: "([unclosed"
      kind: sever
  - name: checkout
    weight: -1
"#;

#[test]
fn validate_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.yaml", BAD);
    let (status, stdout, stderr) = run_cli(&["validate", "--config", &path], dir.path(), LIMIT);
    assert_eq!(
        status.code(),
        Some(1),
        "exit code\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let expected = [
        "1:10: version: must not be empty",
        "6:19: receivers.otlp.protocols.grpc.endpoint: invalid endpoint \"not-an-endpoint\"",
        "8:24: pipeline.evaluation_interval: must be at least 100ms",
        "9:3: pipeline: unknown key \"workerz\" (expected one of: workers, queue_size, queue_bytes, evaluation_interval, shutdown_timeout)",
        "11:15: windows.sizes[1]: invalid duration \"5 minutes\"",
        "16:16: journeys[0].match.span_name.regex: invalid regex \"([unclosed\"",
        "17:13: journeys[0].match.kind: unknown value \"sever\"",
        "18:5: journeys[1]: missing required key \"match\"",
        "18:11: journeys[1].name: duplicate journey name \"checkout\" (first defined at line 13)",
        "19:13: journeys[1].weight: must be greater than 0, got -1",
    ];
    assert!(
        stderr.contains(&format!("{path}: 10 problems:")),
        "header line\n{stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("{path}:")))
        .skip(1)
        .collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "one line per problem\n{stderr}"
    );
    for (line, want) in lines.iter().zip(expected) {
        let want = format!("{path}:{want}");
        assert!(
            line.trim_start().starts_with(&want),
            "expected a line starting with\n  {want}\ngot\n  {line}\nin\n{stderr}"
        );
    }
    assert!(
        stdout.is_empty(),
        "problems go to stderr, stdout is empty: {stdout}"
    );
}

#[test]
fn validate_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "good.yaml",
        "version: shop-1\npipeline:\n  evaluation_interval: 100ms\nwindows:\n  sizes: [1m, 1h]\ncohorts:\n  keys: [cloud.region]\n\
         journeys:\n  - name: checkout\n    match:\n      service: shop-api\n      span_name: POST /checkout\n      kind: server\n\
         \x20   latency_threshold: 300ms\n    incorrect:\n      event: validation_failed\n",
    );
    let (status, stdout, stderr) = run_cli(&["validate", "--config", &path], dir.path(), LIMIT);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("valid (1 journeys, 2 windows, version \"shop-1\")"),
        "{stdout}"
    );
    // The customer settings are listed: the default user keys, and no value rule.
    assert!(
        stdout.contains(
            "\n  users.keys: enduser.id, user.id, enduser.pseudo.id, session.id\n  journey checkout: no value\n"
        ),
        "{stdout}"
    );
}

#[test]
fn validate_lists_the_user_keys_and_each_journeys_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "shop.yaml",
        "users:\n  keys: [customer.id]\njourneys:\n\
         \x20 - name: checkout\n    match: { span_name: POST /checkout }\n\
         \x20   value: { attribute: app.order.value, currency: EUR }\n\
         \x20 - name: subscribe\n    match: { span_name: POST /subscribe }\n\
         \x20   value: { per_request: 12.5 }\n\
         \x20 - name: search\n    match: { span_name: GET /search }\n",
    );
    let (status, stdout, stderr) = run_cli(&["validate", "--config", &path], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    let listed: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        listed,
        [
            "  users.keys: customer.id",
            "  journey checkout: value from attribute app.order.value, currency EUR",
            "  journey subscribe: value from 12.5 per request, no currency",
            "  journey search: no value",
            "  deployments: version from service.version, judged after 100 events, \
             regressed past a score drop of 0.02, 10 versions kept per journey",
        ],
        "{stdout}"
    );
    // An empty list turns users off, and validate says so.
    let off = write(
        dir.path(),
        "off.yaml",
        "users:\n  keys: []\njourneys:\n  - name: search\n    match: { span_name: GET /search }\n",
    );
    let (status, stdout, _) = run_cli(&["validate", "--config", &off], dir.path(), LIMIT);
    assert!(status.success());
    assert!(
        stdout.contains("\n  users.keys: none (users are not counted)\n"),
        "{stdout}"
    );
}

#[test]
fn validate_says_where_metric_fed_journeys_count_and_warns_of_a_threshold_off_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "shop.yaml",
        "journeys:\n\
         \x20 - name: checkout\n    match: { span_name: POST /checkout }\n\
         \x20   latency_threshold: 250ms\n\
         \x20   metrics: [{ name: http.server.request.duration }]\n\
         \x20 - name: search\n    latency_threshold: 300ms\n\
         \x20   metrics: [{ name: search.requests }, { name: search.errors, role: errors }]\n",
    );
    let (status, stdout, stderr) = run_cli(&["validate", "--config", &path], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    // After the users line, the journeys' lines; the deployments line that follows is
    // another test's.
    let listed: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with("  deployments:"))
        .collect();
    assert_eq!(
        listed,
        [
            "  journey checkout: no value",
            "  journey checkout: request counts from metrics http.server.request.duration (spans give users, value and coverage)",
            "  journey search: no value",
            "  journey search: request counts from metrics search.requests, search.errors (no spans)",
            "  warning: journey search: latency_threshold 300ms is not a bucket bound of the conventional duration histogram; unless the histograms have a bound there, the bucket holding it counts as slow",
        ],
        "{stdout}"
    );
}

#[test]
fn validate_reports_unset_environment_variables_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "env.yaml",
        "exporters:\n  prometheus:\n    endpoint: 127.0.0.1:${env:CERFLOW_TEST_SURELY_UNSET_PORT}\n",
    );
    let (status, _, stderr) = run_cli(&["validate", "--config", &path], dir.path(), LIMIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("3:15"), "points at the value: {stderr}");
    assert!(
        stderr.contains("environment variable \"CERFLOW_TEST_SURELY_UNSET_PORT\" is not set"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.yaml");
    let (status, _, stderr) = run_cli(
        &["validate", "--config", missing.to_str().unwrap()],
        dir.path(),
        LIMIT,
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn help_documents_config() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_cli(&["--help"], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stderr}");
    assert!(stdout.contains("--config <CONFIG>"), "{stdout}");
    assert!(
        stdout.contains("CERFLOW_CONFIG"),
        "the env variable is documented: {stdout}"
    );
    for cmd in ["run", "validate", "default-config"] {
        assert!(stdout.contains(cmd), "command {cmd} is listed: {stdout}");
    }
    // The about text names "run" by itself: the Commands section must list each one.
    assert_eq!(
        listed(&stdout, "Commands:"),
        [
            "run",
            "validate",
            "default-config",
            "gate",
            "loadgen",
            "export",
            "help"
        ],
        "{stdout}"
    );
}

/// The first word of each line of the help section that starts with `heading`.
fn listed(help: &str, heading: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The long flags that start the lines of a help text's Options section, in order
/// (`-c, --config` counts as `--config`; flags named inside descriptions do not count).
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Options:")
        .filter_map(|l| {
            let l = l.trim_start();
            let l = match l.split_once(", ") {
                Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
                _ => l,
            };
            l.split_whitespace().next().filter(|w| w.starts_with("--"))
        })
        .map(String::from)
        .collect()
}

#[test]
fn gate_help_documents_every_flag_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_cli(&["gate", "--help"], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stderr}");
    assert!(
        stdout.contains(
            "exit 0 when the journey's score passes, 1 when it fails, 2 when it cannot decide"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Usage: cerflow gate [OPTIONS] --journey <JOURNEY>"),
        "{stdout}"
    );
    assert_eq!(
        flags(&stdout),
        [
            "--config",
            "--endpoint",
            "--journey",
            "--log-level",
            "--log-format",
            "--window",
            "--min-score",
            "--deny-alerts",
            "--compare",
            "--max-drop",
            "--wait",
            "--interval",
            "--help"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("[default: http://127.0.0.1:9464]"),
        "{stdout}"
    );
}

#[test]
fn loadgen_help_documents_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_cli(&["loadgen", "--help"], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stderr}");
    assert!(
        stdout.contains("exit 1 when more requests failed than --max-errors"),
        "{stdout}"
    );
    assert_eq!(
        flags(&stdout),
        [
            "--config",
            "--endpoint",
            "--log-level",
            "--protocol",
            "--gzip",
            "--log-format",
            "--rate",
            "--duration",
            "--spans",
            "--concurrency",
            "--connections",
            "--spans-per-request",
            "--journeys",
            "--cohorts",
            "--dependencies",
            "--error-rate",
            "--latency-ms",
            "--latency-spread",
            "--users",
            "--order-value",
            "--scenario",
            "--max-errors",
            "--summary-json",
            "--timeout",
            "--pool",
            "--seed",
            "--threads",
            "--quiet",
            "--probe-metrics",
            "--print-config",
            "--help-scenario",
            "--help"
        ],
        "{stdout}"
    );
}

#[test]
fn default_config_is_valid_yaml_that_validate_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_cli(&["default-config"], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stderr}");
    for key in [
        "receivers:",
        "exporters:",
        "pipeline:",
        "windows:",
        "cohorts:",
        "journeys:",
    ] {
        assert!(stdout.contains(key), "{key} in\n{stdout}");
    }
    let path = write(dir.path(), "default.yaml", &stdout);
    let (status, out, err) = run_cli(&["validate", "--config", &path], dir.path(), LIMIT);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("version \"default\""), "{out}");
}

#[test]
fn a_port_in_use_stops_cerflow_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (what, which) in [
        ("OTLP/gRPC", 0),
        ("OTLP/HTTP", 1),
        ("Prometheus metrics", 2),
    ] {
        // Hold the port for the whole run.
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let mut ports = free_ports(3);
        ports[which] = busy_port;
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{}\n      http:\n        endpoint: 127.0.0.1:{}\n\
             exporters:\n  prometheus:\n    endpoint: 127.0.0.1:{}\n",
            ports[0], ports[1], ports[2]
        );
        let path = write(dir.path(), "busy.yaml", &yaml);
        let (status, stdout, stderr) = run_cli(&["--config", &path], dir.path(), LIMIT);
        assert!(
            !status.success(),
            "cerflow must not run with {what} port {busy_port} taken\n{stderr}"
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        let want = format!("cannot listen on 127.0.0.1:{busy_port} for {what}");
        assert!(
            stderr.contains(&want),
            "expected \"{want}\" in\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stderr.contains("Address already in use") || stderr.contains("in use"),
            "{stderr}"
        );
        drop(busy);
    }
}

#[test]
fn export_help_lists_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_cli(&["export", "--help"], dir.path(), LIMIT);
    assert!(status.success(), "exit {status}\n{stderr}");
    assert_eq!(
        listed(&stdout, "Commands:"),
        ["prometheus-rules", "openslo", "help"],
        "{stdout}"
    );
}
