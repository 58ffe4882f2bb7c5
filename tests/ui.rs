//! The web view through the real binary: the event stream carries the evaluation the
//! deriver published (worked out by hand below), streams are bounded and refusals
//! counted, `ui.auth` guards every route of the view (and only those), `ui.enabled:
//! false` serves none of them, the page's assets are the embedded ones, and the journey
//! page names the dependency its failures are blamed on and its open incident (which the
//! overview lists too).

mod common;

use common::sse::SseReader;
use common::*;
use opentelemetry::KeyValue;
use serde_json::Value;

const SHOP: &str = r#"
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
    value: { per_request: 2.5, currency: EUR }
  - name: search
    match: { span_name: GET /search }
"#;

fn checkout(user: &'static str, region: &'static str, millis: u64) -> SpanSpec {
    server("POST /checkout", millis)
        .attr(KeyValue::new("cloud.region", region))
        .attr(KeyValue::new("enduser.id", user))
}

/// A streaming GET on the metrics port, with an optional `Authorization` header.
fn get(cf: &Cerflow, path: &str, auth: Option<&str>) -> reqwest::blocking::Response {
    let mut r = cf.client().get(cf.admin_url(path));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send().expect("the metrics port answers")
}

fn json(r: reqwest::blocking::Response) -> Value {
    serde_json::from_str(&r.text().expect("a body")).expect("a JSON body")
}

fn rows(doc: &Value, key: &str) -> Vec<Value> {
    doc[key].as_array().expect("a list of rows").clone()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().expect("a number") - b).abs() < 1e-9
}

#[test]
fn the_stream_carries_the_published_evaluation_worst_budget_first() {
    let cf = Cerflow::start_with(SHOP);
    let rt = runtime();
    // eu: alice ok, alice failed, bob ok, carol slow (800 ms > 500 ms); us: dave ok.
    // search: two good requests, in the cohort "unknown" (no region).
    let spans = vec![
        checkout("alice", "eu", 100),
        checkout("alice", "eu", 100).error(),
        checkout("bob", "eu", 100),
        checkout("carol", "eu", 800),
        checkout("dave", "us", 100),
        server("GET /search", 10),
        server("GET /search", 10),
    ];
    cf.send_grpc(&rt, resource("shop", &[]), &spans);
    cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "search"), ("cloud_region", "unknown")],
        2.0,
    );
    cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cloud_region", "us")],
        1.0,
    );
    let resp = get(&cf, "/api/v1/stream", None);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = SseReader::new(resp);
    let doc = events.next_json();
    assert_eq!(doc["kind"], "overview");
    assert_eq!(doc["interval_ms"], 100);
    assert_eq!(doc["windows"], serde_json::json!(["1m"]));
    assert_eq!(cf.scrape().value("cerflow_ui_stream_clients", &[]), 1.0);

    // checkout over 1m: 5 requests, 1 failed, 1 slow. Availability 4/5, burn
    // (1/5) / 0.001 = 200, budget 1 - 200 = -199; latency burn (1/5) / 0.01 = 20,
    // budget -19. No alert: 5 events are fewer than slo.min_events (10). So its status
    // is "exhausted" and it comes before search (budget untouched, status ok).
    let journeys = rows(&doc, "journeys");
    let names: Vec<&str> = journeys
        .iter()
        .map(|r| r["journey"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["checkout", "search"]);
    let c = &journeys[0];
    assert_eq!(c["status"], "exhausted");
    assert!(close(&c["budget_min"], -199.0), "{c}");
    assert!(close(&c["budget_remaining"]["latency"], -19.0), "{c}");
    assert_eq!(c["alerts"], serde_json::json!([]));
    assert_eq!(c["currency"], "EUR");
    let w = &c["windows"][0];
    assert_eq!(
        (&w["requests"], &w["errors"], &w["slow"]),
        (&Value::from(5), &Value::from(1), &Value::from(1))
    );
    assert!(close(&w["availability"], 0.8) && close(&w["burn_rate"]["availability"], 200.0));
    // Users: alice, bob, carol, dave; alice (failed) and carol (slow) were hurt.
    assert_eq!(
        (&w["users"], &w["users_affected"]),
        (&Value::from(4), &Value::from(2))
    );
    // Value at risk: the one failed request at 2.5 EUR (a slow request is not failed).
    assert!(close(&w["value_at_risk"], 2.5), "{w}");
    assert_eq!(journeys[1]["status"], "ok");
    assert!(journeys[1]["windows"][0].get("value_at_risk").is_none());

    // Cohorts, worst first: checkout/eu (4 requests, 1 failed: budget 1 - 250 = -249),
    // then the untouched ones by name: checkout/us, search/unknown.
    let cohorts: Vec<(String, String, f64)> = rows(&doc, "cohorts")
        .iter()
        .map(|r| {
            (
                r["journey"].as_str().unwrap().to_string(),
                r["cohort"]["cloud_region"].as_str().unwrap().to_string(),
                r["budget_min"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cohorts,
        [
            ("checkout".into(), "eu".into(), 1.0 - 250.0),
            ("checkout".into(), "us".into(), 1.0),
            ("search".into(), "unknown".into(), 1.0),
        ]
    );

    // The stream formats what the score API shows for the same evaluation: the next
    // event and a scores request made before the tick after it agree field by field.
    let (doc, scores) = (0..50)
        .find_map(|_| {
            let doc = events.next_json();
            let scores = json(get(&cf, "/api/v1/scores", None));
            (scores["time_unix_nano"].as_u64().unwrap() / 1_000_000 == doc["time_unix_ms"])
                .then_some((doc, scores))
        })
        .expect("one of 50 events and a score request saw the same evaluation");
    for row in rows(&doc, "journeys").iter().chain(&rows(&doc, "cohorts")) {
        let mut row = row.clone();
        let m = row.as_object_mut().unwrap();
        for k in ["status", "budget_min"] {
            m.remove(k);
        }
        let same = rows(&scores, "journeys")
            .into_iter()
            .find(|j| j["journey"] == row["journey"] && j["cohort"] == row["cohort"])
            .expect("the row is in the score API");
        // The view names the currency on every row; the score API only where the journey
        // configures one.
        let mut same = same.clone();
        if same.get("currency").is_none() {
            let m = row.as_object_mut().unwrap();
            assert!(m.remove("currency").is_none_or(|c| c.is_null()));
            same.as_object_mut().unwrap().remove("currency");
        }
        assert_eq!(row, same);
    }
    // Events follow the evaluations: a later one carries a later evaluation.
    let later = events.next_json();
    assert!(later["time_unix_ms"].as_u64() > doc["time_unix_ms"].as_u64());

    // The journey page's document: its row, its cohorts worst first, its trend and
    // its budget over the period (one point so far: the last is the budget left).
    let mut page = SseReader::new(get(&cf, "/api/v1/stream?journey=checkout", None));
    let j = page.next_json();
    assert_eq!(j["kind"], "journey");
    assert_eq!(j["journey"]["journey"], "checkout");
    let regions: Vec<&str> = j["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cohort"]["cloud_region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["eu", "us"]);
    let budget = j["budget"].as_array().unwrap();
    assert!(close(
        &budget.last().unwrap()["remaining"]["availability"],
        -199.0
    ));
    assert!(!j["score_trend"].as_array().unwrap().is_empty());
    let unknown = json(get(&cf, "/api/v1/ui?journey=nope", None));
    assert_eq!(unknown["journey"], Value::Null);
    assert_eq!(get(&cf, "/api/v1/ui?bogus=1", None).status(), 400);
}

#[test]
fn streams_past_the_limit_are_refused_and_counted() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nui:\n  max_stream_clients: 2\n",
            p.listeners_yaml("")
        )
    });
    let mut a = SseReader::new(get(&cf, "/api/v1/stream", None));
    let b = get(&cf, "/api/v1/stream", None);
    assert_eq!(b.status(), 200);
    a.next_json();
    let refused = get(&cf, "/api/v1/stream", None);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let s = cf.scrape();
    s.assert("cerflow_ui_stream_clients", &[], 2.0);
    s.assert(
        "cerflow_ui_refused_total",
        &[("reason", "stream_limit")],
        1.0,
    );
    s.assert(
        "cerflow_ui_refused_total",
        &[("reason", "unauthenticated")],
        0.0,
    );
    // A client that goes away gives its place back.
    drop(b);
    cf.wait_for("cerflow_ui_stream_clients", &[], 1.0);
    let mut c = SseReader::new(get(&cf, "/api/v1/stream", None));
    assert_eq!(c.next_json()["kind"], "overview");
    cf.scrape().assert(
        "cerflow_ui_refused_total",
        &[("reason", "stream_limit")],
        1.0,
    );
    // Shutdown ends open streams: cerflow stops cleanly with two of them open.
    drop(a);
    let mut cf = cf;
    assert!(cf.terminate().success(), "{}", cf.logs());
}

#[test]
fn basic_auth_guards_the_view_and_leaves_metrics_open() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}ui:\n  auth:\n    basic: {{ username: oncall, password: s3cret }}\n",
            p.listeners_yaml("")
        )
    });
    // base64("oncall:s3cret") = b25jYWxsOnMzY3JldA==; base64("oncall:nope") = b25jYWxsOm5vcGU=
    let good = Some("Basic b25jYWxsOnMzY3JldA==");
    for path in [
        "/",
        "/journey?name=x",
        "/ui/app.js",
        "/api/v1/ui",
        "/api/v1/stream",
    ] {
        let r = get(&cf, path, None);
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"cerflow\", charset=\"UTF-8\""
        );
    }
    assert_eq!(get(&cf, "/", Some("Basic b25jYWxsOm5vcGU=")).status(), 401);
    let page = get(&cf, "/", good);
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("<script src=\"ui/app.js\""));
    let mut s = SseReader::new(get(&cf, "/api/v1/stream", good));
    assert_eq!(s.next_json()["kind"], "overview");
    // The scrape and the probes need no credentials.
    assert_eq!(get(&cf, "/healthz", None).status(), 200);
    cf.scrape().assert(
        "cerflow_ui_refused_total",
        &[("reason", "unauthenticated")],
        6.0,
    );
}

#[test]
fn bearer_auth_takes_the_token_only() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}ui:\n  auth:\n    bearer: {{ token: t0ken }}\n",
            p.listeners_yaml("")
        )
    });
    assert_eq!(get(&cf, "/", None).status(), 401);
    assert_eq!(get(&cf, "/", Some("Bearer t0ken2")).status(), 401);
    assert_eq!(get(&cf, "/", Some("Bearer t0ken")).status(), 200);
    assert_eq!(get(&cf, "/api/v1/ui", Some("bearer t0ken")).status(), 200);
    cf.scrape().assert(
        "cerflow_ui_refused_total",
        &[("reason", "unauthenticated")],
        2.0,
    );
}

#[test]
fn a_disabled_view_serves_nothing_but_the_rest_stays() {
    let cf = Cerflow::start_with("ui:\n  enabled: false\n");
    for path in [
        "/",
        "/journey",
        "/ui/app.js",
        "/api/v1/ui",
        "/api/v1/stream",
    ] {
        assert_eq!(get(&cf, path, None).status(), 404, "{path}");
    }
    assert_eq!(get(&cf, "/api/v1/scores", None).status(), 200);
    assert_eq!(get(&cf, "/healthz", None).status(), 200);
    cf.scrape().assert("cerflow_ui_stream_clients", &[], 0.0);
}

#[test]
fn the_assets_are_embedded_and_load_nothing_from_elsewhere() {
    let cf = Cerflow::start(|p| p.listeners_yaml(""));
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/journey?name=checkout", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let r = get(&cf, path, None);
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'"),
            "{csp}"
        );
        let body = r.text().unwrap();
        // No CDN, no web font, no external script: nothing outside this origin.
        assert!(
            !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
            "{path} refers to another origin"
        );
    }
    assert_eq!(get(&cf, "/favicon.ico", None).status(), 204);
}

const TRACED: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m]
traces:
  wait: 1s
slo:
  min_events: 1
  clear_after: 60s
  alerts:
    - { severity: page, long_window: 10s, short_window: 2s, burn_rate: 1 }
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
"#;

fn call(dependency: &'static str, millis: u64) -> SpanSpec {
    span("call", opentelemetry::trace::SpanKind::Client, millis)
        .attr(KeyValue::new("peer.service", dependency))
}

#[test]
fn the_journey_page_names_the_dependency_to_blame_and_the_open_incident() {
    let cf = Cerflow::start_with(TRACED);
    let rt = runtime();
    // Four checkouts, each a whole trace, sent in one flush (so one evaluation sees all):
    //   failed, its payments call failed   -> blamed on payments
    //   failed, its payments call failed   -> blamed on payments
    //   failed, its inventory call was fine -> blamed on self
    //   good, its payments call was fine
    let spans = vec![
        server("POST /checkout", 200)
            .error()
            .child(call("payments", 50).error()),
        server("POST /checkout", 200)
            .error()
            .child(call("payments", 50).error()),
        server("POST /checkout", 200)
            .error()
            .child(call("inventory", 100)),
        server("POST /checkout", 200).child(call("payments", 50)),
    ];
    cf.send_grpc(&rt, resource("shop", &[]), &spans);
    let dep = |d| [("journey", "checkout"), ("dependency", d)];
    cf.wait_for("cer_dependency_requests_total", &dep("inventory"), 1.0);
    cf.wait_for("cer_dependency_requests_total", &dep("payments"), 3.0);
    cf.wait_for("cer_journey_incident_open", &[("journey", "checkout")], 1.0);

    let j = json(get(&cf, "/api/v1/ui?journey=checkout", None));
    // Availability 1/4 over 4 requests: burn (3/4) / 0.001 = 750 over both alert windows,
    // above 1 with 4 >= min_events events: the page alert fires, so "failing".
    assert_eq!(j["journey"]["status"], "failing");

    // Blame over 1m: payments 2 of 3 attributions, self 1 of 3, largest share first.
    let blame = j["journey"]["windows"][0]["blame"].as_array().unwrap();
    let blamed: Vec<(&str, u64)> = blame
        .iter()
        .map(|b| {
            (
                b["dependency"].as_str().unwrap(),
                b["failures"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(blamed, [("payments", 2), ("self", 1)]);
    assert!(close(&blame[0]["share"], 2.0 / 3.0) && close(&blame[1]["share"], 1.0 / 3.0));

    // Dependencies, most failed calls first: payments 3 calls, 2 failed (availability
    // 1/3), all 50 ms (the middle of its histogram bin, so every quantile reads 0.05 s);
    // inventory 1 call at 100 ms, none failed.
    let deps = j["dependencies"].as_array().unwrap();
    let names: Vec<&str> = deps
        .iter()
        .map(|d| d["dependency"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments", "inventory"]);
    let p = &deps[0]["windows"][0];
    assert_eq!(p["window"], "1m");
    assert_eq!(
        (&p["calls"], &p["errors"]),
        (&Value::from(3), &Value::from(2))
    );
    assert!(close(&p["availability"], 1.0 / 3.0), "{p}");
    assert!(
        close(&p["latency_s"][0], 0.05) && close(&p["latency_s"][3], 0.05),
        "{p}"
    );
    assert_eq!(deps[0]["overflow"], false);
    let i = &deps[1]["windows"][0];
    assert_eq!(
        (&i["calls"], &i["errors"]),
        (&Value::from(1), &Value::from(0))
    );
    assert!(
        close(&i["availability"], 1.0) && close(&i["latency_s"][0], 0.1),
        "{i}"
    );

    // The incident: open (clear_after is 60 s), its peak burn the 750 above.
    let incidents = j["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{j}");
    assert_eq!(incidents[0]["journey"], "checkout");
    assert!(incidents[0]["end_unix_nano"].is_null());
    assert!(
        close(&incidents[0]["peak_burn_rate"], 750.0),
        "{}",
        incidents[0]
    );
    // The overview lists it among the open incidents, so checkout's row says so.
    let overview = json(get(&cf, "/api/v1/ui", None));
    let open = overview["open_incidents"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{overview}");
    assert_eq!(open[0]["start_unix_nano"], incidents[0]["start_unix_nano"]);
    // Another journey's page carries none of it.
    let other = json(get(&cf, "/api/v1/ui?journey=search", None));
    assert_eq!(other["dependencies"], serde_json::json!([]));
    assert_eq!(other["incidents"], serde_json::json!([]));
}
