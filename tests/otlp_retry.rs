//! Downstream faults of the OTLP metric push: a real OTLP MetricsService (the official
//! generated tonic service) runs inside the test on a fixed loopback port. It is stopped
//! and started again on the same port, or made to refuse pushes on purpose, while the
//! real cerflow binary keeps pushing; cerflow must back off, bound its queue, count every
//! drop and recover by itself.

mod common;

use common::fake_receiver::{attrs, metrics, Answer, Collector, Receiver};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------
// cerflow and what it pushes.
// ---------------------------------------------------------------------------------

const SERIES: [(&str, &str); 2] = [("journey", "checkout"), ("cloud.region", "eu-west-1")];

/// The config: pushes every 200ms to `port` with the given queue and retry settings.
fn config(p: &Ports, port: u16, queue_size: usize, retry: &str) -> String {
    format!(
        "version: retry-v1\n{}pipeline:\n  evaluation_interval: 100ms\n  shutdown_timeout: 5s\nwindows:\n  sizes: [1m]\n\
         cohorts:\n  keys: [cloud.region]\n\
         journeys:\n  - name: checkout\n    match:\n      service: shop-api\n      span_name: POST /checkout\n      kind: server\n    latency_threshold: 300ms\n",
        p.listeners_yaml(&format!(
            "  otlp:\n    endpoint: http://127.0.0.1:{port}\n    interval: 200ms\n    timeout: 1s\n    queue_size: {queue_size}\n    retry:\n{retry}"
        ))
    )
}

fn retry_yaml(initial: &str, max: &str, max_elapsed: &str) -> String {
    format!(
        "      initial_interval: {initial}\n      max_interval: {max}\n      max_elapsed_time: {max_elapsed}\n"
    )
}

fn number_points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Vec<&'a NumberDataPoint> {
    metrics(req)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.iter().collect::<Vec<_>>(),
            Some(metric::Data::Gauge(g)) => g.data_points.iter().collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// `cer.journey.requests` of checkout in eu-west-1, if the push carries it.
fn requests(req: &ExportMetricsServiceRequest) -> Option<i64> {
    let want: BTreeMap<String, String> = SERIES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    number_points(req, "cer.journey.requests")
        .into_iter()
        .find(|p| attrs(&p.attributes) == want)
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
}

/// When the snapshot of a push was taken (the time of its `cer.definition.info` point).
fn snapshot_ns(req: &ExportMetricsServiceRequest) -> u64 {
    number_points(req, "cer.definition.info")
        .first()
        .map(|p| p.time_unix_nano)
        .expect("every push carries cer.definition.info")
}

fn instance_id(req: &ExportMetricsServiceRequest) -> String {
    attrs(
        &req.resource_metrics[0]
            .resource
            .as_ref()
            .expect("a resource")
            .attributes,
    )
    .get("service.instance.id")
    .cloned()
    .unwrap_or_default()
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn dropped(s: &Scrape, reason: &str) -> f64 {
    s.value("cerflow_otlp_export_dropped_total", &[("reason", reason)])
}

fn failures(s: &Scrape) -> f64 {
    s.value("cerflow_otlp_export_failures_total", &[])
}

fn retries(s: &Scrape) -> f64 {
    s.value("cerflow_otlp_export_retries_total", &[])
}

fn depth(s: &Scrape) -> f64 {
    s.value("cerflow_otlp_export_queue_depth", &[])
}

fn exports(s: &Scrape) -> f64 {
    s.value("cerflow_otlp_exports_total", &[])
}

/// Log lines that contain every one of `parts`.
fn log_lines(logs: &str, parts: &[&str]) -> usize {
    logs.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

// ---------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------

/// The receiver goes away (port closed) and comes back on the same port: cerflow retries
/// with backoff, keeps at most `queue_size` requests, drops the oldest when full, and
/// delivers again by itself, the figures intact.
#[test]
fn the_push_survives_a_downstream_outage_and_recovers_by_itself() {
    const QUEUE: f64 = 4.0;
    let rt = runtime();
    let first = Collector::new(Answer::Accept);
    let mut receiver = Receiver::start(&rt, &first, 0);
    let port = receiver.port;
    let mut cerflow =
        Cerflow::start(|p| config(p, port, QUEUE as usize, &retry_yaml("100ms", "500ms", "1m")));
    send_checkouts(&rt, &cerflow.grpc_endpoint());

    // Healthy: pushes arrive with the figures, nothing failed or dropped.
    first.wait_until("a push with cer.journey.requests = 4", |a| {
        a.iter().any(|a| requests(&a.req) == Some(4))
    });
    let s = cerflow.wait_until("two successful pushes", |s| exports(s) >= 2.0);
    assert_eq!(failures(&s), 0.0, "{}", s.text);
    assert_eq!(retries(&s), 0.0);
    for reason in ["queue_full", "permanent", "expired"] {
        assert_eq!(dropped(&s, reason), 0.0, "{reason}\n{}", s.text);
    }
    assert!(depth(&s) <= 1.0, "at most the push in flight\n{}", s.text);
    let instance = instance_id(&first.all()[0].req);

    // Outage: the server is stopped and its port refuses connections.
    receiver.stop(&rt);
    let delivered_before_outage = first.all().len();

    // Attempts fail (connection refused is UNAVAILABLE), are retried, the queue fills up
    // and stays at exactly its size while the oldest requests are dropped.
    let check_bounded = |s: &Scrape| {
        let d = depth(s);
        assert!(
            d <= QUEUE,
            "queue depth {d} > queue_size {QUEUE}\n{}",
            s.text
        );
        if dropped(s, "queue_full") > 0.0 {
            assert_eq!(d, QUEUE, "a queue that overflowed stays full\n{}", s.text);
        }
        assert_eq!(dropped(s, "permanent"), 0.0, "{}", s.text);
        assert_eq!(dropped(s, "expired"), 0.0, "{}", s.text);
    };
    let s = cerflow.wait_until("failures, retries and queue_full drops", |s| {
        check_bounded(s);
        failures(s) >= 4.0 && retries(s) >= 3.0 && dropped(s, "queue_full") >= 2.0
    });
    let (t1, f1, q1) = (Instant::now(), failures(&s), dropped(&s, "queue_full"));
    let delivered = exports(&s);

    // Backoff: once the wait has reached max_interval (500ms, jittered down to no less
    // than 250ms), attempts come at most every 250ms, while requests keep being queued
    // (and dropped) every 200ms.
    let mut scrapes = Vec::new();
    // A scrape that fails on a loaded machine is skipped, not fatal: the bounds below are
    // worked out from the time that really passed.
    while t1.elapsed() < Duration::from_secs(3) {
        if let Ok(s) = cerflow.try_scrape() {
            check_bounded(&s);
            scrapes.push(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = cerflow.wait_until("a scrape after the backoff", |_| true);
    check_bounded(&s);
    let elapsed = t1.elapsed();
    let (f2, q2) = (failures(&s), dropped(&s, "queue_full"));
    let most = (elapsed.as_millis() / 250) as f64 + 1.0;
    assert!(
        f2 - f1 >= 1.0 && f2 - f1 <= most,
        "{} failed attempts in {elapsed:?}: more than one per 250ms means no backoff",
        f2 - f1
    );
    assert!(
        q2 > q1,
        "the oldest requests keep being dropped: {q1} -> {q2}"
    );
    assert_eq!(
        exports(&s),
        delivered,
        "nothing delivered during the outage"
    );
    // Every attempt of the outage but its first is a retry, and each retry ends in a
    // failure unless the full queue dropped its request while it was in flight: that
    // attempt is abandoned with no failure counted
    // (`dropping_the_request_being_sent_abandons_its_attempt`), which happens when an
    // attempt outlasts the 200ms between two snapshots (seen on a loaded machine: 45
    // retries and 45 failures). So retries exceed failures - 1 by at most the queue_full
    // drops. (Waiting for a scrape where it holds, as a scrape may land between an
    // attempt's start and its failure.)
    cerflow.wait_until(
        "failures - 1 <= retries <= failures - 1 + queue_full drops",
        |s| {
            check_bounded(s);
            let abandoned = retries(s) - (failures(s) - 1.0);
            (0.0..=dropped(s, "queue_full")).contains(&abandoned)
        },
    );
    assert_eq!(
        first.all().len(),
        delivered_before_outage,
        "nothing reached the stopped receiver"
    );
    assert_eq!(
        log_lines(
            &cerflow.logs(),
            &["OTLP metric push failed; retrying with backoff."]
        ),
        1,
        "one warning when the outage starts, not one per attempt\n{}",
        cerflow.logs()
    );

    // The receiver comes back on the same port: cerflow delivers again by itself.
    let second = Collector::new(Answer::Accept);
    let back_at = SystemTime::now();
    let _receiver2 = Receiver::start(&rt, &second, port);
    second.wait_until("a push after the restart", |a| !a.is_empty());
    let s = cerflow.wait_until("the queue drained and pushes flowing", |s| {
        depth(s) <= 1.0 && exports(s) >= delivered + 3.0
    });
    assert_eq!(dropped(&s, "permanent"), 0.0, "{}", s.text);
    assert_eq!(dropped(&s, "expired"), 0.0, "{}", s.text);
    let more = second.all().len() + 3;
    second.wait_until("three more pushes", |a| a.len() >= more);

    let got = second.all();
    assert!(got.iter().all(|a| a.accepted));
    // The figures are right in every push: 4 requests for checkout in eu-west-1.
    for a in &got {
        assert_eq!(requests(&a.req), Some(4), "{:#?}", a.req);
        assert_eq!(instance_id(&a.req), instance, "the same process");
    }
    // Oldest first: snapshot times never go back.
    let times: Vec<u64> = got.iter().map(|a| snapshot_ns(&a.req)).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "delivered in queue order: {times:?}"
    );
    // What was queued during the outage was delivered after it, but never more than
    // the queue holds (plus one snapshot taken just before the restart, pushed after).
    let queued = times.iter().filter(|t| **t < unix_ns(back_at)).count();
    assert!(
        (1..=QUEUE as usize + 1).contains(&queued),
        "{queued} requests from the outage were delivered"
    );
    assert_eq!(
        log_lines(&cerflow.logs(), &["OTLP metric push works again."]),
        1,
        "{}",
        cerflow.logs()
    );

    // SIGTERM: the final push goes out to the receiver that came back.
    let killed_at = Instant::now();
    let status = cerflow.terminate();
    assert!(status.success(), "exit status {status}\n{}", cerflow.logs());
    let last = second
        .all()
        .into_iter()
        .rev()
        .find(|a| a.at > killed_at)
        .unwrap_or_else(|| panic!("no push after SIGTERM\n{}", cerflow.logs()));
    assert_eq!(requests(&last.req), Some(4));
}

/// Errors the specification calls non-retryable drop the request at once, with a count
/// and a log line each; the next request is tried at the next tick, and pushes resume as
/// soon as the receiver accepts them.
#[test]
fn permanent_errors_drop_the_request_without_retrying() {
    let rt = runtime();
    let collector = Collector::new(Answer::Refuse(tonic::Code::InvalidArgument));
    let _receiver = Receiver::start(&rt, &collector, 0);
    let port = _receiver.port;
    let mut cerflow = Cerflow::start(|p| config(p, port, 4, &retry_yaml("100ms", "500ms", "1m")));
    send_checkouts(&rt, &cerflow.grpc_endpoint());

    let s = cerflow.wait_until("three permanent drops", |s| dropped(s, "permanent") >= 3.0);
    assert_eq!(retries(&s), 0.0, "never retried\n{}", s.text);
    assert_eq!(exports(&s), 0.0);
    assert_eq!(dropped(&s, "queue_full"), 0.0);
    assert_eq!(dropped(&s, "expired"), 0.0);
    assert!(depth(&s) <= 1.0, "{}", s.text);
    assert!(collector.all().iter().all(|a| !a.accepted));

    // The receiver accepts again: the next tick's request goes through.
    collector.answer_with(Answer::Accept);
    collector.wait_until("an accepted push with the figures", |a| {
        a.iter().any(|a| a.accepted && requests(&a.req) == Some(4))
    });
    let s = cerflow.wait_until("two successful pushes", |s| exports(s) >= 2.0);
    let d = dropped(&s, "permanent");
    assert_eq!(
        failures(&s),
        d,
        "each failure dropped its request\n{}",
        s.text
    );
    assert_eq!(retries(&s), 0.0);
    let refused = collector.all().iter().filter(|a| !a.accepted).count();
    assert_eq!(refused as f64, d, "every refused push was counted once");
    let logs = cerflow.logs();
    assert_eq!(
        log_lines(
            &logs,
            &[
                "Dropped an OTLP metric export request.",
                "permanent",
                "InvalidArgument"
            ]
        ) as f64,
        d,
        "one log line per dropped request\n{logs}"
    );
    let status = cerflow.terminate();
    assert!(status.success(), "exit status {status}\n{}", cerflow.logs());
}

/// RESOURCE_EXHAUSTED with RetryInfo is retried after the server's delay (longer than
/// max_interval here), and requests older than max_elapsed_time are dropped as expired.
#[test]
fn retry_info_is_honoured_and_old_requests_expire() {
    let rt = runtime();
    let delay = Duration::from_millis(700);
    let collector = Collector::new(Answer::RetryAfter(tonic::Code::ResourceExhausted, delay));
    let _receiver = Receiver::start(&rt, &collector, 0);
    let port = _receiver.port;
    // 16 requests take 3.2s to fill the queue; none lives past 1s.
    let mut cerflow = Cerflow::start(|p| config(p, port, 16, &retry_yaml("100ms", "500ms", "1s")));
    send_checkouts(&rt, &cerflow.grpc_endpoint());

    let s = cerflow.wait_until("three expired requests and four attempts", |s| {
        dropped(s, "expired") >= 3.0 && retries(s) >= 3.0 && collector.all().len() >= 4
    });
    assert_eq!(
        dropped(&s, "permanent"),
        0.0,
        "RetryInfo makes it retryable\n{}",
        s.text
    );
    assert_eq!(dropped(&s, "queue_full"), 0.0, "{}", s.text);
    assert_eq!(exports(&s), 0.0);
    // Expired requests leave the queue: it holds what 1s of age plus one 700ms wait
    // lets in at one request per 200ms, far from its 16.
    assert!(depth(&s) <= 10.0, "{}", s.text);

    // Every attempt came at least the server's delay after the previous one.
    let all = collector.all();
    assert!(all.len() >= 4, "{} attempts", all.len());
    for w in all.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= delay,
            "attempts {gap:?} apart, less than RetryInfo's {delay:?}"
        );
    }

    // The throttling ends: pushes resume by themselves.
    collector.answer_with(Answer::Accept);
    collector.wait_until("an accepted push with the figures", |a| {
        a.iter().any(|a| a.accepted && requests(&a.req) == Some(4))
    });
    let s = cerflow.wait_until("the queue drained", |s| {
        exports(s) >= 2.0 && depth(s) <= 1.0
    });
    assert_eq!(dropped(&s, "permanent"), 0.0);
    let status = cerflow.terminate();
    assert!(status.success(), "exit status {status}\n{}", cerflow.logs());
}

/// The new keys are decoded strictly: bad values name the key path, line and column.
#[test]
fn the_retry_settings_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "exporters:\n  otlp:\n    endpoint: 127.0.0.1:4317\n    queue_size: 0\n    retry:\n      initial_interval: 2s\n      max_interval: 1s\n      max_elapsed_time: 0s\n      jitter: 0.5\n",
    )
    .unwrap();
    let path = path.to_str().unwrap().to_string();
    let (status, stdout, stderr) = run_cli(
        &["validate", "--config", &path],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let expected = [
        "4:17: exporters.otlp.queue_size: must be between 1 and 100000",
        "7:21: exporters.otlp.retry.max_interval: max_interval (1s) must not be shorter than initial_interval (2s)",
        "8:25: exporters.otlp.retry.max_elapsed_time: must be greater than 0",
        "9:7: exporters.otlp.retry: unknown key \"jitter\" (expected one of: initial_interval, max_interval, max_elapsed_time)",
    ];
    assert!(
        stderr.contains(&format!("{path}: {} problems:", expected.len())),
        "{stderr}"
    );
    for want in expected {
        assert!(
            stderr.contains(&format!("{path}:{want}")),
            "missing {want:?}\n{stderr}"
        );
    }

    // And good values pass.
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "exporters:\n  otlp:\n    endpoint: 127.0.0.1:4317\n    queue_size: 100000\n    retry:\n      initial_interval: 250ms\n      max_interval: 250ms\n      max_elapsed_time: 1h\n",
    )
    .unwrap();
    let (status, stdout, stderr) = run_cli(
        &["validate", "--config", good.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(30),
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
}
