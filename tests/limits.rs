//! Limits through the real binary: the per-journey cardinality limit and its overflow
//! series, memory staying bounded under 100,000 distinct cohort values, and the
//! accounting of an overloaded pipeline (received = processed + refused).

mod common;

use common::otlp::{checkout_spans, kv, traces};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// One request of `n` checkout spans of 50 ms; span i has `cloud.region = region(i)`.
fn request(n: usize, first_id: u64, region: impl Fn(usize) -> String) -> Vec<u8> {
    let mut spans = checkout_spans(n, first_id, 50);
    for (i, s) in spans.iter_mut().enumerate() {
        s.attributes.push(kv("cloud.region", &region(i)));
    }
    traces("shop-api", spans).encode_to_vec()
}

fn post(cf: &Cerflow, body: Vec<u8>) -> u16 {
    cf.client()
        .post(cf.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("POST /v1/traces")
        .status()
        .as_u16()
}

/// Status and, for a 200, the spans its partial success rejected.
fn post_counted(cf: &Cerflow, body: Vec<u8>) -> (u16, u64) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let r = cf
        .client()
        .post(cf.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("POST /v1/traces");
    let status = r.status().as_u16();
    let bytes = r.bytes().expect("response body");
    let rejected = if status == 200 {
        ExportTraceServiceResponse::decode(bytes.as_ref())
            .expect("an OTLP response")
            .partial_success
            .map_or(0, |p| p.rejected_spans as u64)
    } else {
        0
    };
    (status, rejected)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const CHECKOUT: &str = "cohorts:\n  keys: [cloud.region]\njourneys:\n  - name: checkout\n    match: { span_name: POST /checkout }\n";

#[test]
fn cohorts_past_the_limit_share_one_overflow_series() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nlimits:\n  max_series_per_journey: 3\n{CHECKOUT}",
            p.listeners_yaml("")
        )
    });
    // Ten spans in ten regions, in one request: three get their own series, seven overflow.
    assert_eq!(post(&cf, request(10, 0, |i| format!("r{i}"))), 200);
    cf.wait_for("cerflow_processed_spans_total", &[], 10.0);
    let s = cf.wait_until("the overflow series", |s| {
        s.get(
            "cer_journey_requests_total",
            &[("journey", "checkout"), ("otel_metric_overflow", "true")],
        ) == Some(7.0)
    });
    assert_eq!(
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]),
        10.0,
        "{}",
        s.text
    );
    assert_eq!(
        s.matching("cer_journey_requests_total", &[("journey", "checkout")])
            .len(),
        4,
        "{}",
        s.text
    );
    s.assert("cerflow_cardinality_overflow_total", &[], 7.0);
    s.assert("cerflow_series", &[], 4.0);
    // The journey's own SLI still counts every span.
    s.assert(
        "cer_journey_data_present",
        &[("journey", "checkout"), ("window", "1m")],
        1.0,
    );
    // A region that already has a series keeps it.
    let kept: String = s
        .matching("cer_journey_requests_total", &[("journey", "checkout")])
        .iter()
        .find_map(|(labels, _)| {
            labels
                .iter()
                .find(|(k, _)| k == "cloud_region")
                .map(|(_, v)| v.clone())
        })
        .expect("a region with its own series");
    let again = kept.clone();
    assert_eq!(post(&cf, request(1, 100, move |_| again.clone())), 200);
    cf.wait_for("cerflow_processed_spans_total", &[], 11.0);
    cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cloud_region", &kept)],
        2.0,
    );
    cf.wait_for("cerflow_cardinality_overflow_total", &[], 7.0);
}

#[test]
fn a_hundred_thousand_cohort_values_keep_memory_bounded() {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 200ms\n{CHECKOUT}",
            p.listeners_yaml("")
        )
    });
    let pid = cf.pid().expect("running");
    let before = rss_kib(pid);
    for batch in 0..100 {
        let code = post(
            &cf,
            request(1000, batch * 1000, |i| format!("region-{batch}-{i}")),
        );
        assert_eq!(code, 200, "request {batch}");
    }
    cf.wait_for("cerflow_processed_spans_total", &[], 100_000.0);
    let s = cf.wait_until("all spans in the overflow series", |s| {
        s.get(
            "cer_journey_requests_total",
            &[("journey", "checkout"), ("otel_metric_overflow", "true")],
        ) == Some(99_000.0)
    });
    // The default limit: 1000 cohort series, plus one overflow series.
    s.assert("cerflow_series", &[], 1001.0);
    s.assert("cerflow_cardinality_overflow_total", &[], 99_000.0);
    assert_eq!(
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]),
        100_000.0
    );
    let after = rss_kib(pid);
    eprintln!("RSS before {before} KiB, after 100,000 cohort values {after} KiB");
    assert!(after < 200 * 1024, "RSS {after} KiB");
}

#[test]
fn an_overloaded_pipeline_refuses_with_retry_and_accounts_for_every_span() {
    overload("  queue_size: 1\n");
}

/// The same with the queue bounded in bytes only: 1,000 spans for one worker make a
/// batch that reserves 1,250 records (a quarter ahead) of 88 bytes, 3,750 values of 8,
/// 30,000 bytes of text and 1,250 trace spans of 64 (trace assembly is on by default):
/// 110,000 + 30,000 + 30,000 + 80,000 = 250,000 bytes, over the 64 KiB bound, so a request finds
/// the queue full whenever another one waits in it.
#[test]
fn a_queue_bounded_in_bytes_refuses_with_retry_and_accounts_for_every_span() {
    overload("  queue_size: 100000\n  queue_bytes: 65536\n");
}

/// 4 senders x 15 requests of 1,000 spans against one worker whose queue is bounded by
/// `queue` (YAML lines of the `pipeline` section).
fn overload(queue: &str) {
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  workers: 1\n{queue}  evaluation_interval: 100ms\n{CHECKOUT}",
            p.listeners_yaml("")
        )
    });
    let spans_per_request = 1000usize;
    let codes: Vec<(u16, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let cf = &cf;
                scope.spawn(move || {
                    (0..15u64)
                        .map(|i| {
                            post_counted(
                                cf,
                                request(spans_per_request, (t * 100 + i) * 10_000, |j| {
                                    format!("r{}", j % 5)
                                }),
                            )
                        })
                        .collect::<Vec<(u16, u64)>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let ok = codes.iter().filter(|c| c.0 == 200).count() as f64;
    let unavailable = codes.iter().filter(|c| c.0 == 503).count() as f64;
    // A queue that fills in the instant between check and send can cost part of an
    // accepted request; the response says how much, as a partial success.
    let partial: f64 = codes.iter().map(|c| c.1 as f64).sum();
    assert_eq!(
        ok + unavailable,
        60.0,
        "only 200 and 503 are expected: {codes:?}"
    );
    eprintln!("partial successes rejected {partial} spans");
    let n = spans_per_request as f64;
    // Every span received is processed or refused, once the queues have drained.
    let s = cf.wait_until("received = processed + refused", |s| {
        s.value("cerflow_processed_spans_total", &[]) + s.sum("cerflow_refused_spans_total", &[])
            == 60.0 * n
    });
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        60.0 * n,
    );
    // Each 503 refused its whole request.
    s.assert(
        "cerflow_refused_requests_total",
        &[("reason", "queue_full")],
        unavailable,
    );
    s.assert(
        "cerflow_refused_spans_total",
        &[("reason", "queue_full")],
        unavailable * n + partial,
    );
    s.assert("cerflow_processed_spans_total", &[], ok * n - partial);
    // The journey series catch up at the next evaluation tick.
    cf.wait_until("every accepted span in the journey", |s| {
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]) == ok * n - partial
    });
    eprintln!("{ok} requests accepted, {unavailable} refused with 503");
    // Drained, the queue takes a request again: what the worker recorded was taken off
    // its counts (a count that only grew would refuse from now on).
    assert_eq!(
        post_counted(
            &cf,
            request(spans_per_request, 999 * 10_000, |_| "r0".into())
        ),
        (200, 0)
    );
    cf.wait_until("the last request in the journey", |s| {
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]) == ok * n - partial + n
    });
}

#[test]
fn the_window_memory_budget_sends_new_series_to_overflow() {
    // 1 MiB for window state, and no per-journey cap to speak of.
    let cf = Cerflow::start(|p| {
        format!(
            "{}pipeline:\n  evaluation_interval: 100ms\nlimits:\n  max_series_per_journey: 100000\n  max_window_state_bytes: 1048576\n{CHECKOUT}",
            p.listeners_yaml("")
        )
    });
    for batch in 0..5 {
        assert_eq!(
            post(
                &cf,
                request(1000, batch * 1000, |i| format!("m-{batch}-{i}"))
            ),
            200
        );
    }
    cf.wait_for("cerflow_processed_spans_total", &[], 5000.0);
    let s = cf.wait_until("5000 spans in the journey", |s| {
        s.sum("cer_journey_requests_total", &[("journey", "checkout")]) == 5000.0
    });
    let series = s.value("cerflow_series", &[]);
    let overflow = s.value("cerflow_cardinality_overflow_total", &[]);
    let bytes = s.value("cerflow_window_state_bytes", &[]);
    s.assert("cerflow_window_state_limit_bytes", &[], 1_048_576.0);
    assert!(
        series < 5000.0 && overflow > 0.0,
        "series {series}, overflow {overflow}\n{}",
        s.text
    );
    // Every span is either in its own cohort series or in the overflow series.
    assert_eq!(
        series - 1.0 + overflow,
        5000.0,
        "one series per admitted cohort, plus the overflow series"
    );
    // Admission stops at the budget; series admitted before the next measurement may pass it a little.
    assert!(bytes < 1.5 * 1_048_576.0, "window state {bytes} bytes");
}

/// The same timeout layer over gRPC: the call gets CANCELLED "Timeout expired", what
/// tonic's server timeout answered, and is counted like the HTTP one.
#[test]
fn a_grpc_body_that_does_not_arrive_in_time_is_cancelled_and_counted() {
    use futures_util::StreamExt;
    use tower::ServiceExt;
    let cf = Cerflow::start(|p| {
        with_otlp_receiver_settings(&p.listeners_yaml(""), "    request_timeout: 500ms\n")
            + CHECKOUT
    });
    let endpoint = cf.grpc_endpoint();
    let (code, message) = runtime().block_on(async {
        let channel = tonic::transport::Channel::from_shared(endpoint.clone())
            .expect("a valid endpoint")
            .connect()
            .await
            .expect("connecting to cerflow's gRPC port");
        // A message header promising 100 bytes, 10 of them, then nothing.
        let mut start = vec![0u8, 0, 0, 0, 100];
        start.extend_from_slice(b"0123456789");
        let frames = futures_util::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
            bytes::Bytes::from(start),
        ))])
        .chain(futures_util::stream::pending());
        let req = http::Request::builder()
            .method("POST")
            .uri(format!(
                "{endpoint}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(http_body_util::StreamBody::new(
                frames,
            )))
            .expect("a request");
        let resp = channel.oneshot(req).await.expect("an HTTP/2 response");
        let status = tonic::Status::from_header_map(resp.headers()).expect("a grpc-status");
        (status.code(), status.message().to_string())
    });
    assert_eq!(code, tonic::Code::Cancelled);
    assert_eq!(message, "Timeout expired");
    let s = cf.wait_for(
        "cerflow_refused_requests_total",
        &[("reason", "timeout")],
        1.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "grpc")],
        0.0,
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    use std::io::{Read, Write};
    let cf = Cerflow::start(|p| {
        with_otlp_receiver_settings(&p.listeners_yaml(""), "    request_timeout: 500ms\n")
            + CHECKOUT
    });
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", cf.ports.http)).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Promise 100 bytes, send 10, then wait.
    write!(conn, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n0123456789").unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let s = cf.wait_for(
        "cerflow_refused_requests_total",
        &[("reason", "timeout")],
        1.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        0.0,
    );
}

#[test]
fn attributes_past_the_per_span_limit_are_not_read() {
    let cf = Cerflow::start(|p| {
        with_otlp_receiver_settings(&p.listeners_yaml(""), "    max_attributes_per_span: 2\n")
            + "pipeline:\n  evaluation_interval: 100ms\n"
            + CHECKOUT
    });
    let mut req =
        ExportTraceServiceRequest::decode(request(2, 0, |_| "eu".into()).as_slice()).unwrap();
    // Span 0 has its region first; span 1 has it third, past the limit of 2.
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[1].attributes.insert(0, kv("a", "1"));
    spans[1].attributes.insert(1, kv("b", "2"));
    assert_eq!(post(&cf, req.encode_to_vec()), 200);
    let region = |s: &Scrape, r: &str| {
        s.get(
            "cer_journey_requests_total",
            &[("journey", "checkout"), ("cloud_region", r)],
        )
    };
    let s = cf.wait_until("eu 1, unknown 1", |s| {
        region(s, "eu") == Some(1.0) && region(s, "unknown") == Some(1.0)
    });
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        2.0,
    );
}
