//! Config reload through the real binary: SIGHUP and a change of the file swap in a
//! valid config, journeys whose definition did not change keep their window state, and
//! an invalid file is refused while the old config keeps running.

mod common;

use common::*;
use std::time::Duration;

fn config(p: &Ports, version: &str, journeys: &str) -> String {
    format!(
        "{}version: {version}\npipeline:\n  evaluation_interval: 100ms\njourneys:\n{journeys}",
        p.listeners_yaml("")
    )
}

const V1: &str = "  - name: checkout\n    match: { span_name: POST /checkout }\n  - name: login\n    match: { span_name: POST /login }\n";
// login's threshold changes (its state goes), search is new, checkout is untouched.
const V2: &str = "  - name: checkout\n    match: { span_name: POST /checkout }\n  - name: login\n    latency_threshold: 200ms\n    match: { span_name: POST /login }\n  - name: search\n    match: { span_name: GET /search }\n";

fn hup(cf: &Cerflow) {
    let pid = cf.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP {pid}");
}

#[test]
fn sighup_swaps_journeys_and_keeps_unchanged_state() {
    let cf = Cerflow::start(|p| config(p, "v1", V1));
    let rt = runtime();
    let spans = [
        server("POST /checkout", 50),
        server("POST /checkout", 50),
        server("POST /checkout", 50),
        server("POST /login", 50),
        server("POST /login", 50),
    ];
    cf.send_grpc(&rt, resource("shop-api", &[]), &spans);
    cf.wait_for("cer_journey_requests_total", &[("journey", "login")], 2.0);
    cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        3.0,
    );

    std::fs::write(&cf.config_path, config(&cf.ports, "v2", V2)).unwrap();
    hup(&cf);
    let s = cf.wait_for("cer_definition_info", &[("version", "v2")], 1.0);
    s.assert_absent("cer_definition_info", &[("version", "v1")]);
    assert_eq!(
        s.value("cerflow_config_reloads_total", &[]),
        1.0,
        "{}",
        cf.logs()
    );
    // checkout kept its window state; login's definition changed, so its series went.
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        3.0,
    );
    s.assert_absent("cer_journey_requests_total", &[("journey", "login")]);
    s.assert(
        "cer_journey_data_present",
        &[("journey", "search"), ("window", "1m")],
        0.0,
    );

    // New spans land on the new definitions: login is slow at 300 ms now.
    let more = [
        server("POST /checkout", 50),
        server("POST /login", 300),
        server("GET /search", 20),
    ];
    cf.send_grpc(&rt, resource("shop-api", &[]), &more);
    cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        4.0,
    );
    cf.wait_for("cer_journey_requests_total", &[("journey", "search")], 1.0);
    let s = cf.wait_for("cer_journey_slow_total", &[("journey", "login")], 1.0);
    s.assert("cer_journey_requests_total", &[("journey", "login")], 1.0);
    // Every span of both rounds is accounted for.
    s.assert("cerflow_processed_spans_total", &[], 8.0);
}

#[test]
fn an_invalid_file_is_refused_and_the_old_config_keeps_running() {
    let cf = Cerflow::start(|p| config(p, "v1", V1));
    let mtime = std::fs::metadata(&cf.config_path)
        .and_then(|m| m.modified())
        .unwrap();
    // The new file is written beside the config, given the config's modification time,
    // then renamed over it, so only the SIGHUP reloads it: setting the time after
    // writing in place left a moment in which the file watcher saw the change, and the
    // refusal was counted twice (seen in CI under load).
    let next = cf.config_path.with_extension("next");
    std::fs::write(
        &next,
        config(
            &cf.ports,
            "v2",
            "  - name: checkout\n    weight: -1\n    match: { span_name: { regex: \"(\" } }\n",
        ),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&next)
        .and_then(|f| f.set_modified(mtime))
        .unwrap();
    std::fs::rename(&next, &cf.config_path).unwrap();
    hup(&cf);
    let s = cf.wait_for("cerflow_config_reload_failures_total", &[], 1.0);
    s.assert("cer_definition_info", &[("version", "v1")], 1.0);
    s.assert("cerflow_config_reloads_total", &[], 0.0);
    let logs = cf.logs();
    assert!(
        logs.contains("Refused the new config; the running one stays in force."),
        "{logs}"
    );
    assert!(
        logs.contains("journeys[0].weight: must be greater than 0, got -1"),
        "{logs}"
    );
    assert!(
        logs.contains("journeys[0].match.span_name.regex: invalid regex"),
        "{logs}"
    );
    // Still serving with the old journeys.
    let rt = runtime();
    cf.send_grpc(&rt, resource("shop-api", &[]), &[server("POST /login", 10)]);
    cf.wait_for("cer_journey_requests_total", &[("journey", "login")], 1.0);
}

#[test]
fn a_changed_file_is_reloaded_without_a_signal() {
    let cf = Cerflow::start(|p| config(p, "v1", V1));
    // Let the file's modification time move on, then rewrite it.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&cf.config_path, config(&cf.ports, "v3", V1)).unwrap();
    cf.wait_for("cer_definition_info", &[("version", "v3")], 1.0);
    let logs = cf.logs();
    assert!(
        logs.contains("Reloaded the config.") && logs.contains("the config file changed"),
        "{logs}"
    );
}
