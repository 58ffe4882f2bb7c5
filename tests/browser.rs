//! Browsers as senders, through the real binary: CORS on the OTLP/HTTP receiver,
//! public tokens and their rate limit per client address, and log events (web vitals,
//! frustrations) feeding journeys.

mod common;

use common::otlp::{checkout_spans, event, kv, kv_f64, logs, traces, web_vital};
use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

const CHECKOUT: &str = "pipeline:\n  evaluation_interval: 100ms\njourneys:\n  - name: checkout\n    match: { span_name: POST /checkout }\n";

const PAGE: &str = "http://page.test:8080";

/// The receiver settings of a cerflow that lets pages on `PAGE` and `*.shop.test` send.
fn with_cors(p: &Ports, receiver_settings: &str) -> String {
    let yaml = replace_once(
        &p.listeners_yaml(""),
        &format!("        endpoint: 127.0.0.1:{}\n", p.http),
        &format!(
            "        endpoint: 127.0.0.1:{}\n        cors:\n          allowed_origins: [\"{PAGE}\", \"http://*.shop.test\"]\n          allowed_headers: [Authorization]\n          max_age: 600\n",
            p.http
        ),
    );
    with_otlp_receiver_settings(&yaml, receiver_settings)
}

/// POSTs `n` checkout spans (ids from `first`) with these headers.
fn post(
    cf: &Cerflow,
    client: &reqwest::blocking::Client,
    headers: &[(&str, &str)],
    n: usize,
    first: u64,
) -> reqwest::blocking::Response {
    let mut r = client
        .post(cf.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces("shop-web", checkout_spans(n, first, 10)).encode_to_vec());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

fn preflight(cf: &Cerflow, origin: &str, headers: &str) -> reqwest::blocking::Response {
    cf.client()
        .request(reqwest::Method::OPTIONS, cf.http_url("/v1/traces"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .send()
        .unwrap()
}

fn header<'a>(r: &'a reqwest::blocking::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn cors_answers_allowed_origins_and_refuses_the_others() {
    let cf = Cerflow::start(|p| with_cors(p, "") + CHECKOUT);
    let c = cf.client();

    let r = preflight(&cf, PAGE, "content-type,authorization");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(PAGE));
    assert_eq!(header(&r, "access-control-allow-methods"), Some("POST"));
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("content-type,authorization")
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("600"));
    // The wildcard pattern, in another case.
    let r = preflight(&cf, "http://EU.shop.test", "content-type");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("http://EU.shop.test")
    );

    // Refused: an origin not listed, a header not allowed, a method other than POST.
    for r in [
        preflight(&cf, "http://evil.test", "content-type"),
        preflight(&cf, PAGE, "content-type,x-secret"),
        c.request(reqwest::Method::OPTIONS, cf.http_url("/v1/traces"))
            .header("origin", PAGE)
            .header("access-control-request-method", "PUT")
            .send()
            .unwrap(),
    ] {
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(header(&r, "access-control-allow-origin"), None);
    }

    // The POSTs themselves: 3 spans from the page, 4 without any Origin (a server),
    // 5 from a page not allowed, which are never read.
    let r = post(&cf, c, &[("origin", PAGE)], 3, 0);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        header(&r, "access-control-expose-headers"),
        Some("Retry-After")
    );
    let r = post(&cf, c, &[], 4, 100);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = post(&cf, c, &[("origin", "http://evil.test")], 5, 200);
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // 3 + 4 recorded; 3 refused preflights + 1 refused POST.
    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        7.0,
    );
    s.assert("cerflow_refused_requests_total", &[("reason", "cors")], 4.0);
    s.assert("cerflow_refused_spans_total", &[("reason", "cors")], 0.0);
}

#[test]
fn without_cors_no_cors_header_is_sent() {
    let cf = Cerflow::start(|p| p.listeners_yaml("") + CHECKOUT);
    let r = post(&cf, cf.client(), &[("origin", PAGE)], 2, 0);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = preflight(&cf, PAGE, "content-type");
    assert_eq!(r.status().as_u16(), 405, "no route answers OPTIONS");
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        2.0,
    );
    s.assert("cerflow_refused_requests_total", &[("reason", "cors")], 0.0);
}

#[test]
fn a_public_token_works_only_from_its_origins_and_is_rate_limited_per_address() {
    // 0.01 spans/s: a bucket of 0.01 that a first request of any size passes, leaving
    // a debt of (size - 0.01) that takes 100 s per span to pay back.
    let cf = Cerflow::start(|p| {
        with_cors(
            p,
            "    public_rate_limit: 0.01\n    auth:\n      bearer_tokens:\n        - { token: s3cret }\n        - { token: pub-42, tenant: web, public: true, allowed_origins: [\"http://page.test:8080\"] }\n",
        ) + "cohorts:\n  keys: [cerflow.tenant]\n" + CHECKOUT
    });
    let c = cf.client();
    let public = [("authorization", "Bearer pub-42"), ("origin", PAGE)];

    // Without an Origin (a server, a script that does not pretend) and from another
    // origin CORS allows, the public token is refused: 2 + 3 spans.
    let r = post(&cf, c, &[("authorization", "Bearer pub-42")], 2, 0);
    assert_eq!(r.status().as_u16(), 401);
    let r = post(
        &cf,
        c,
        &[
            ("authorization", "Bearer pub-42"),
            ("origin", "http://eu.shop.test"),
        ],
        3,
        10,
    );
    assert_eq!(r.status().as_u16(), 401);

    // From the page: 6 spans pass the full bucket; the next 4 wait (6 - 0.01 + 0.01)
    // / 0.01 = 600 s, less the time between the two requests (well under 10 s).
    let r = post(&cf, c, &public, 6, 20);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(PAGE));
    let r = post(&cf, c, &public, 4, 30);
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((590..=600).contains(&wait), "Retry-After: {wait}");
    assert_eq!(header(&r, "access-control-allow-origin"), Some(PAGE));

    // Another client address has its own allowance: 7 spans from 127.0.0.2.
    let other = reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .build()
        .unwrap();
    assert_eq!(post(&cf, &other, &public, 7, 40).status().as_u16(), 200);

    // A secret token is never rate-limited, with or without an Origin: 5 + 5 spans.
    let secret = [("authorization", "Bearer s3cret")];
    assert_eq!(post(&cf, c, &secret, 5, 50).status().as_u16(), 200);
    let secret_from_page = [("authorization", "Bearer s3cret"), ("origin", PAGE)];
    assert_eq!(
        post(&cf, c, &secret_from_page, 5, 60).status().as_u16(),
        200
    );

    // 6 + 7 under the public token's tenant, 10 without a tenant.
    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cerflow_tenant", "web")],
        13.0,
    );
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cerflow_tenant", "unknown")],
        10.0,
    );
    s.assert(
        "cerflow_refused_spans_total",
        &[("reason", "unauthenticated")],
        5.0,
    );
    s.assert(
        "cerflow_refused_requests_total",
        &[("reason", "unauthenticated")],
        2.0,
    );
    s.assert(
        "cerflow_refused_spans_total",
        &[("reason", "rate_limited")],
        4.0,
    );
    s.assert(
        "cerflow_refused_requests_total",
        &[("reason", "rate_limited")],
        1.0,
    );
    // received = processed + refused: 2 + 3 + 6 + 4 + 7 + 5 + 5 = 32 = 23 + 9.
    let s = cf.wait_for("cerflow_processed_spans_total", &[], 23.0);
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        32.0,
    );
    s.assert("cerflow_public_clients_overflow_total", &[], 0.0);
}

const SHOP_PAGE: &str = "pipeline:\n  evaluation_interval: 100ms\njourneys:\n  - name: shop-page\n    match: { service: shop-web }\n    experience:\n      web_vitals: { lcp: 2.5s, inp: 200ms, cls: 0.1 }\n      frustration_events: [app.rage_click, app.dead_click]\n";

fn post_logs(cf: &Cerflow, req: &ExportLogsServiceRequest) {
    let r = cf
        .client()
        .post(cf.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn web_vitals_and_frustrations_from_log_events_make_the_experience_sli() {
    let cf = Cerflow::start(|p| p.listeners_yaml("") + SHOP_PAGE);
    let mut by_attribute = web_vital("s3", "lcp", 3000.0);
    // The older way to name an event: the `event.name` attribute.
    by_attribute.event_name.clear();
    by_attribute
        .attributes
        .push(kv("event.name", "browser.web_vital"));
    let bad = |attrs: Vec<KeyValue>| event("browser.web_vital", attrs);
    post_logs(
        &cf,
        &logs(
            "shop-web",
            vec![
                // lcp 1000, 2000, 2500 ms are good (at or under 2.5 s), 3000 is not.
                web_vital("s1", "lcp", 1000.0),
                web_vital("s1", "lcp", 2000.0),
                web_vital("s2", "lcp", 2500.0),
                by_attribute,
                // inp: 100 good, 300 not; cls: 0.05 good, 0.2 not.
                web_vital("s1", "inp", 100.0),
                web_vital("s2", "inp", 300.0),
                web_vital("s1", "cls", 0.05),
                web_vital("s2", "cls", 0.2),
                // ttfb is not listed by the journey: ignored, and not invalid.
                web_vital("s1", "ttfb", 100.0),
                // Five that cannot be counted, one per reason.
                bad(vec![kv_f64("browser.web_vital.value", 1.0)]),
                bad(vec![
                    kv("browser.web_vital.name", "fid"),
                    kv_f64("browser.web_vital.value", 1.0),
                ]),
                bad(vec![kv("browser.web_vital.name", "lcp")]),
                bad(vec![
                    kv("browser.web_vital.name", "lcp"),
                    kv("browser.web_vital.value", "fast"),
                ]),
                bad(vec![
                    kv("browser.web_vital.name", "inp"),
                    kv_f64("browser.web_vital.value", -5.0),
                ]),
                // Frustrations: two rage clicks of s4, a dead click of s5; app.other is
                // not one; a record without an event name is only counted.
                event("app.rage_click", vec![kv("session.id", "s4")]),
                event("app.rage_click", vec![kv("session.id", "s4")]),
                event("app.dead_click", vec![kv("session.id", "s5")]),
                event("app.other", vec![kv("session.id", "s6")]),
                opentelemetry_proto::tonic::logs::v1::LogRecord::default(),
            ],
        ),
    );
    // Events of another service match no journey.
    post_logs(&cf, &logs("other", vec![web_vital("s9", "lcp", 1.0)]));

    let j = [("journey", "shop-page"), ("window", "1m")];
    // 8 measurements counted, 5 good (3 lcp, 1 inp, 1 cls): 5 / 8 = 0.625.
    let s = cf.wait_for("cer_sli_experience_ratio", &j, 0.625);
    let vital = |name: &str, q: &str| {
        s.value(
            "cer_journey_web_vital",
            &[j[0], j[1], ("name", name), ("quantile", q)],
        )
    };
    // lcp sorted 1000, 2000, 2500, 3000 ms: p50 is the 2nd, p75 the 3rd, p95 the 4th
    // (ranks ceil(q x 4)), each the middle of its HDR bin, in seconds.
    let reported = |ms: u64| hdr_mid_us(ms * 1000) as f64 / 1e6;
    assert_eq!(vital("lcp", "0.5"), reported(2000));
    assert_eq!(vital("lcp", "0.75"), reported(2500));
    assert_eq!(vital("lcp", "0.95"), reported(3000));
    assert!((vital("lcp", "0.75") - 2.5).abs() <= 2.5 / 1024.0);
    // cls 0.05 and 0.2, kept in thousandths (exact below 2048): p50 0.05, p75 0.2.
    assert_eq!(vital("cls", "0.5"), 0.05);
    assert_eq!(vital("cls", "0.75"), 0.2);
    // inp 100 and 300 ms: p75 is 300 ms.
    assert_eq!(vital("inp", "0.75"), reported(300));
    s.assert_absent(
        "cer_journey_web_vital",
        &[j[0], j[1], ("name", "ttfb"), ("quantile", "0.75")],
    );
    s.assert(
        "cer_journey_frustrations_total",
        &[("journey", "shop-page"), ("event", "app.rage_click")],
        2.0,
    );
    s.assert(
        "cer_journey_frustrations_total",
        &[("journey", "shop-page"), ("event", "app.dead_click")],
        1.0,
    );
    for reason in [
        "missing_vital_name",
        "unknown_vital_name",
        "missing_vital_value",
        "non_numeric_vital_value",
        "negative_vital_value",
    ] {
        s.assert("cerflow_invalid_events_total", &[("reason", reason)], 1.0);
    }
    // Users: s1, s2, s3 sent vitals, s4 and s5 frustrations (s6's app.other is not
    // recorded): 5 users, of whom the 2 frustrated are affected.
    s.assert("cer_journey_users", &j, 5.0);
    s.assert("cer_journey_users_affected", &j, 2.0);
    // Events are not requests: no request counter, no availability.
    s.assert_absent("cer_sli_availability_ratio", &j);
    s.assert("cerflow_received_log_records_total", &[], 20.0);
    s.assert("cerflow_processed_spans_total", &[], 0.0);

    // The experience SLO: 3 of 8 bad against a budget of 1 - 0.75: burn 0.375 / 0.25 =
    // 1.5 over every window, budget remaining 1 - 1.5 = -0.5.
    let sli = [("journey", "shop-page"), ("sli", "experience")];
    let s = cf.wait_for(
        "cer_slo_burn_rate",
        &[sli[0], sli[1], ("window", "5m")],
        1.5,
    );
    s.assert("cer_slo_objective_ratio", &sli, 0.75);
    s.assert("cer_slo_error_budget_remaining_ratio", &sli, -0.5);
    // The score has only the experience component (no requests): 1 - (1.5 - 1) / 9.
    let want = 1.0 - 0.5 / 9.0;
    let score = s.value("cer_journey_score", &j);
    assert!((score - want).abs() < 1e-12, "{score} != {want}");
    let body = cf
        .client()
        .get(format!("http://127.0.0.1:{}/api/v1/scores", cf.ports.prom))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let w = &api["journeys"][0]["windows"][0];
    assert_eq!(api["journeys"][0]["journey"], "shop-page");
    assert_eq!(w["window"], "1m");
    assert_eq!(w["vitals"], 8);
    assert_eq!(w["vitals_bad"], 3);
    assert_eq!(w["experience"], 0.625);
    assert_eq!(w["burn_rate"]["experience"], 1.5);
    assert_eq!(api["journeys"][0]["budget_remaining"]["experience"], -0.5);
}

#[test]
fn an_attempt_not_completed_within_its_time_is_abandoned() {
    let cf = Cerflow::start(|p| {
        p.listeners_yaml("")
            + "pipeline:\n  evaluation_interval: 100ms\njourneys:\n  - name: checkout\n    match: { service: shop-web }\n    completion:\n      start: { event_name: app.checkout_started }\n      complete: { event_name: app.order_placed }\n      key: session.id\n      within: 3s\n"
    });
    let at = |name: &str, session: &str| event(name, vec![kv("session.id", session)]);
    // Three sessions start checkout (1 s ago, so each has until 2 s from now); s1 and s2
    // place their order, s3 gives up; an order of s9, who never started, is no attempt.
    post_logs(
        &cf,
        &logs(
            "shop-web",
            vec![
                at("app.checkout_started", "s1"),
                at("app.checkout_started", "s2"),
                at("app.checkout_started", "s3"),
                at("app.order_placed", "s9"),
            ],
        ),
    );
    post_logs(
        &cf,
        &logs(
            "shop-web",
            vec![at("app.order_placed", "s1"), at("app.order_placed", "s2")],
        ),
    );
    let s = cf.wait_for(
        "cer_journey_attempts_total",
        &[("journey", "checkout"), ("outcome", "abandoned")],
        1.0,
    );
    s.assert(
        "cer_journey_attempts_total",
        &[("journey", "checkout"), ("outcome", "completed")],
        2.0,
    );
    // 1 abandoned of 3 attempts with an outcome in the window.
    s.assert(
        "cer_journey_abandonment_ratio",
        &[("journey", "checkout"), ("window", "1m")],
        1.0 / 3.0,
    );
    s.assert("cerflow_attempts_overflow_total", &[], 0.0);
}

#[test]
fn pending_attempts_survive_a_restart() {
    // A start before the restart and its completion after it: completed, not abandoned.
    let ckpt = Checkpoint::new();
    let config = |p: &Ports| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nslo:\n{}journeys:\n  - name: checkout\n    match: {{ service: shop-web }}\n    completion:\n      start: {{ event_name: app.checkout_started }}\n      complete: {{ event_name: app.order_placed }}\n      key: session.id\n      within: 1h\n",
            p.listeners_yaml(""),
            ckpt.slo_yaml()
        )
    };
    let mut cf = Cerflow::start(config);
    post_logs(
        &cf,
        &logs(
            "shop-web",
            vec![event("app.checkout_started", vec![kv("session.id", "s1")])],
        ),
    );
    // The shutdown writes the checkpoint, pending attempts beside the SLO state.
    assert!(cf.terminate().success());
    let saved = std::fs::read_to_string(ckpt.beside("slo.attempts")).unwrap();
    assert!(saved.starts_with("[[\"checkout\","), "{saved}");
    let cf = Cerflow::start(config);
    post_logs(
        &cf,
        &logs(
            "shop-web",
            vec![event("app.order_placed", vec![kv("session.id", "s1")])],
        ),
    );
    let s = cf.wait_for(
        "cer_journey_attempts_total",
        &[("journey", "checkout"), ("outcome", "completed")],
        1.0,
    );
    s.assert(
        "cer_journey_attempts_total",
        &[("journey", "checkout"), ("outcome", "abandoned")],
        0.0,
    );
}

#[test]
fn a_later_report_of_a_measurement_replaces_the_earlier_one() {
    let cf = Cerflow::start(|p| p.listeners_yaml("") + SHOP_PAGE);
    let with_id = |name: &str, value: f64, id: &str| {
        let mut e = web_vital("s1", name, value);
        e.attributes.push(kv("browser.web_vital.id", id));
        e
    };
    // cls of m1 is reported as 0.3 (bad), then as 0.05 (good); lcp m2 once, 1000 ms.
    post_logs(
        &cf,
        &logs(
            "shop-web",
            vec![with_id("cls", 0.3, "m1"), with_id("lcp", 1000.0, "m2")],
        ),
    );
    post_logs(&cf, &logs("shop-web", vec![with_id("cls", 0.05, "m1")]));
    // Two measurements, both good now: 2 / 2; cls's only value is its last, 0.05.
    let j = [("journey", "shop-page"), ("window", "1m")];
    let s = cf.wait_until("the cls report replaced", |s| {
        s.get(
            "cer_journey_web_vital",
            &[j[0], j[1], ("name", "cls"), ("quantile", "0.95")],
        ) == Some(0.05)
    });
    s.assert("cer_sli_experience_ratio", &j, 1.0);
    s.assert("cerflow_vital_ids_overflow_total", &[], 0.0);
}
