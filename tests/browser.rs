//! Browsers as senders, through the real binary: CORS on the OTLP/HTTP receiver,
//! public tokens and their rate limit per client address.

mod common;

use common::otlp::{checkout_spans, traces};
use common::*;
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
