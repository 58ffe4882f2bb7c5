//! cerflow as a Kafka consumer-group member, against a real Apache Kafka broker (KRaft)
//! on a free loopback port: OTLP protobuf bodies produced to a topic, keyed by trace id as
//! the Collector's `kafka` exporter does, give exactly the figures worked out below on
//! `/metrics`; two instances in one group share the partitions and their sum is the input;
//! a broker stopped for 30 s leaves cerflow serving its last figures, not ready, and it
//! carries on without loss or duplicates when the broker is back. In stage 2, a
//! deployment whose spans two instances took is judged by the journey's owner exactly as
//! one OTLP instance judges the same spans.

mod common;

use cerflow::sampling::UNIT;
use common::exact::{partitions_shared, wait_all};
use common::kafka::{shared, Kafka};
use common::otlp::{body, checkout_spans, failed, traces, with_resource_attr};
use common::*;
use std::time::{Duration, Instant};

const JOURNEYS: &str = "pipeline:\n  evaluation_interval: 100ms\n  shutdown_timeout: 3s\njourneys:\n  - name: checkout\n    match:\n      span_name: POST /checkout\n";

fn config(k: &Kafka, topic: &str, group: &str) -> impl Fn(&Ports) -> String {
    let bootstrap = k.bootstrap();
    let (topic, group) = (topic.to_string(), group.to_string());
    move |p: &Ports| {
        let yaml = format!("{}{JOURNEYS}", p.listeners_yaml(""));
        with_kafka_receiver(&yaml, &bootstrap, &topic, &group, "")
    }
}

/// Produces `messages` requests of `per` checkout spans each (ids from `first`), keyed by
/// the trace id of their first span; the first span of every fourth request failed.
/// Returns (spans, failed spans).
fn produce(k: &Kafka, topic: &str, messages: u64, per: usize, first: u64) -> (u64, u64) {
    produce_as(k, topic, "shop-api", messages, per, first)
}

/// [`produce`] with the spans of `service`.
fn produce_as(
    k: &Kafka,
    topic: &str,
    service: &str,
    messages: u64,
    per: usize,
    first: u64,
) -> (u64, u64) {
    let producer = k.producer();
    let mut failed_spans = 0;
    for i in 0..messages {
        let mut spans = checkout_spans(per, first + i * per as u64, 20);
        if i % 4 == 0 {
            spans[0] = failed(spans[0].clone());
            failed_spans += 1;
        }
        let key = spans[0].trace_id.clone();
        producer.send(topic, &key, &body(&traces(service, spans)));
    }
    producer.flush();
    (messages * per as u64, failed_spans)
}

#[test]
fn spans_from_a_topic_give_exact_figures() {
    let k = shared();
    k.create_topic("exact-spans", 4);
    let c = Cerflow::start(config(k, "exact-spans", "exact"));
    c.wait_for("cerflow_kafka_partitions", &[], 4.0);
    // 40 requests x 5 spans = 200 spans; requests 0, 4, ..., 36 carry one failed span: 10.
    let (spans, errors) = produce(k, "exact-spans", 40, 5, 0);
    assert_eq!((spans, errors), (200, 10));
    // One value that is not OTLP protobuf: refused as malformed, counted, never retried.
    let junk = k.producer();
    junk.send("exact-spans", b"junk", b"\xff\xffnot protobuf");
    junk.flush();
    let journey = [("journey", "checkout")];
    let s = c.wait_for("cer_journey_requests_total", &journey, 200.0);
    s.assert("cer_journey_errors_total", &journey, 10.0);
    let s = c.wait_for(
        "cerflow_refused_requests_total",
        &[("reason", "malformed")],
        1.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "kafka")],
        200.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "grpc")],
        0.0,
    );
    s.assert("cerflow_processed_spans_total", &[], 200.0);
    s.assert("cerflow_kafka_partitions", &[], 4.0);
    // The gauge follows librdkafka's statistics, once a second: on a loaded machine the
    // spans can all arrive before the first report that sees the broker up.
    c.wait_for("cerflow_kafka_connected", &[], 1.0);
    let ready = c
        .client()
        .get(c.admin_url("/readyz"))
        .send()
        .expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 200);
}

#[test]
fn two_instances_in_one_group_share_the_partitions_and_sum_to_the_input() {
    let k = shared();
    k.create_topic("shared-spans", 4);
    let a = Cerflow::start(config(k, "shared-spans", "pair"));
    let b = Cerflow::start(config(k, "shared-spans", "pair"));
    // Kafka splits 4 partitions between the two members of group "pair".
    wait_all(
        &[&a, &b],
        "both members holding partitions, 4 in all",
        Duration::from_secs(60),
        |s| partitions_shared(s, 4.0),
    );
    // 60 requests x 3 spans = 180 spans, 15 of them failed (requests 0, 4, ..., 56).
    let (spans, errors) = produce(k, "shared-spans", 60, 3, 1_000_000);
    assert_eq!((spans, errors), (180, 15));
    let journey = [("journey", "checkout")];
    let s = wait_all(
        &[&a, &b],
        "180 requests in all",
        Duration::from_secs(60),
        |s| {
            s.iter()
                .map(|s| s.get("cer_journey_requests_total", &journey).unwrap_or(0.0))
                .sum::<f64>()
                == 180.0
        },
    );
    let per: Vec<f64> = s
        .iter()
        .map(|s| s.value("cer_journey_requests_total", &journey))
        .collect();
    assert!(
        per.iter().all(|&n| n > 0.0),
        "both instances took spans: {per:?}"
    );
    let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
        s.iter().map(|s| s.get(name, labels).unwrap_or(0.0)).sum()
    };
    assert_eq!(sum("cer_journey_errors_total", &journey), 15.0);
    assert_eq!(
        sum("cerflow_received_spans_total", &[("transport", "kafka")]),
        180.0
    );
    assert_eq!(sum("cerflow_processed_spans_total", &[]), 180.0);
}

#[test]
fn a_broker_outage_marks_cerflow_not_ready_and_loses_or_repeats_nothing() {
    // A broker of its own: the shared one must stay up for the other tests.
    let k = Kafka::start();
    k.create_topic("outage-spans", 2);
    let mut c = Cerflow::start(config(&k, "outage-spans", "outage"));
    c.wait_for("cerflow_kafka_partitions", &[], 2.0);
    // Before: 20 requests x 2 spans = 40 spans, 5 failed (requests 0, 4, ..., 16).
    assert_eq!(produce(&k, "outage-spans", 20, 2, 0), (40, 5));
    let journey = [("journey", "checkout")];
    c.wait_for("cer_journey_requests_total", &journey, 40.0);
    // The 20 offsets committed (every 5 s), so a rejoin after the outage starts after them.
    let every = Duration::from_millis(200);
    poll(
        "20 offsets committed",
        Duration::from_secs(30),
        every,
        || match k.committed("outage", "outage-spans", 2) {
            20 => Ok(()),
            n => Err(format!("{n} committed")),
        },
    );
    let readyz = || {
        c.client()
            .get(c.admin_url("/readyz"))
            .send()
            .expect("GET /readyz")
            .status()
            .as_u16()
    };
    assert_eq!(readyz(), 200);
    k.stop();
    let down = Instant::now();
    let s = c.wait_until("cerflow_kafka_connected 0", |s| {
        s.get("cerflow_kafka_connected", &[]) == Some(0.0)
    });
    // The last figures are still served, and cerflow says they are stale.
    s.assert("cer_journey_requests_total", &journey, 40.0);
    assert_eq!(readyz(), 503);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    c.scrape()
        .assert("cer_journey_requests_total", &journey, 40.0);
    k.restart();
    c.wait_until("cerflow_kafka_connected 1", |s| {
        s.get("cerflow_kafka_connected", &[]) == Some(1.0)
    });
    assert_eq!(readyz(), 200);
    // After: 10 requests x 3 spans = 30 spans, 3 failed (requests 0, 4, 8): 70 and 8 in all.
    assert_eq!(produce(&k, "outage-spans", 10, 3, 1_000), (30, 3));
    let s = c.wait_until_within("70 requests", Duration::from_secs(60), |s| {
        s.get("cer_journey_requests_total", &journey) == Some(70.0)
    });
    s.assert("cer_journey_requests_total", &journey, 70.0);
    s.assert("cer_journey_errors_total", &journey, 8.0);
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "kafka")],
        70.0,
    );
    s.assert("cerflow_processed_spans_total", &[], 70.0);
    assert!(
        s.value("cerflow_kafka_errors_total", &[]) >= 1.0,
        "the outage was reported"
    );
    // Shutdown is bounded without a broker too: the receiver's commit cannot hang it.
    k.stop();
    c.wait_for("cerflow_kafka_connected", &[], 0.0);
    let status = c.terminate();
    assert!(
        status.success(),
        "cerflow exited with {status} after SIGTERM"
    );
}

/// Stage 2 (`receivers.kafka.aggregates`): per journey, the requests and errors of
/// every committed partial aggregate, in whole requests (the spans carry no sampling
/// threshold, so each is one [`UNIT`]). Partials are deltas, so their sum is the count.
fn committed_partials(k: &Kafka, topic: &str, partitions: i32) -> (u64, u64, usize) {
    let (mut requests, mut errors) = (0, 0);
    let messages = k.read_committed(topic, partitions);
    for m in &messages {
        let p = cerflow::partial::decode(m).expect("a partial of this version");
        if p.journey.is_empty() {
            // The coverage's own message: see `committed_coverage`.
            assert!(p.series.is_empty() && !p.coverage.is_empty(), "{p:?}");
            continue;
        }
        assert_eq!(p.journey, "checkout");
        for s in &p.series {
            let c = cerflow::partial::decode_counts(s.totals.as_ref());
            requests += c.requests;
            errors += c.errors;
        }
    }
    assert!(
        requests.is_multiple_of(UNIT) && errors.is_multiple_of(UNIT),
        "unsampled spans count whole requests: {requests} {errors} units"
    );
    (requests / UNIT, errors / UNIT, messages.len())
}

/// Entry-point spans seen and claimed per window, summed over the committed coverage
/// messages (those without journey) of the aggregates topic.
fn committed_coverage(k: &Kafka, topic: &str, partitions: i32) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for m in &k.read_committed(topic, partitions) {
        let p = cerflow::partial::decode(m).expect("a partial of this version");
        for c in p.coverage.iter().filter(|_| p.journey.is_empty()) {
            out.resize(out.len().max(c.windows.len()), (0, 0));
            for (acc, w) in out.iter_mut().zip(&c.windows) {
                acc.0 += w.entry.iter().sum::<u64>();
                acc.1 += w.matched.iter().sum::<u64>();
            }
        }
    }
    out
}

fn stage2_config(
    k: &Kafka,
    topic: &str,
    group: &str,
    aggregates: &str,
    instance: &str,
) -> impl Fn(&Ports) -> String {
    let bootstrap = k.bootstrap();
    let (topic, group) = (topic.to_string(), group.to_string());
    let settings =
        format!("    aggregates:\n      topic: {aggregates}\n      instance: {instance}\n");
    move |p: &Ports| {
        let yaml = format!(
            "{}{}",
            p.listeners_yaml(""),
            JOURNEYS.replace("evaluation_interval: 100ms", "evaluation_interval: 500ms")
        );
        with_kafka_receiver(&yaml, &bootstrap, &topic, &group, &settings)
    }
}

/// A deploy that creates the aggregates topic just as cerflow starts: stage 2 looks for
/// the topic's partitions for up to 10 s instead of refusing at once. The topic appears
/// 2 s after the start; the instance comes up and owns both of its 2 partitions.
#[test]
fn stage_two_waits_for_an_aggregates_topic_created_just_after_it_starts() {
    let k = shared();
    k.create_topic("late-spans", 1);
    let creator = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(2));
        shared().create_topic("late-aggregates", 2);
    });
    let a = Cerflow::start(stage2_config(
        k,
        "late-spans",
        "late",
        "late-aggregates",
        "a",
    ));
    creator.join().expect("topic creator");
    a.wait_for("cerflow_kafka_owned_partitions", &[], 2.0);
}

/// Exactly once under SIGKILL: instance `a` commits a first 100 spans, then is killed
/// while it takes a second 100, so whatever it took after its last commit (and any
/// transaction it had open, aborted by the broker's transaction timeout) is read again
/// by `b` and `c`, and nothing it committed is. The committed partials sum to the input
/// exactly: 20 + 20 + 40 requests x 5 spans = 400 spans; the first span of every fourth
/// request failed: 5 + 5 + 10 = 20 errors. The group's committed offsets are the 80
/// messages, one each. Every span is a SERVER span of checkout ending 1 s before it is
/// sent, so the committed coverage holds 400 entry spans, 400 claimed, in each of the
/// default windows (1m, 5m, 1h), once too.
#[test]
fn stage_two_counts_every_span_once_in_committed_partials_across_a_sigkill() {
    let k = shared();
    k.create_topic("s2-spans", 4);
    k.create_topic("s2-aggregates", 2);
    let mut a = Cerflow::start(stage2_config(k, "s2-spans", "s2", "s2-aggregates", "a"));
    a.wait_for("cerflow_kafka_partitions", &[], 4.0);
    assert_eq!(produce(k, "s2-spans", 20, 5, 0), (100, 5));
    let deadline = Instant::now() + Duration::from_secs(60);
    while k.committed("s2", "s2-spans", 4) < 20 {
        assert!(Instant::now() < deadline, "a committed no offsets in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(produce(k, "s2-spans", 20, 5, 500_000), (100, 5));
    a.wait_until("a took spans of the second 100", |s| {
        s.get("cerflow_received_spans_total", &[("transport", "kafka")])
            .unwrap_or(0.0)
            > 100.0
    });
    a.kill();
    let (before, _, _) = committed_partials(k, "s2-aggregates", 2);
    assert!(
        (100..=200).contains(&before),
        "{before} requests committed by a"
    );
    let mut b = Cerflow::start(stage2_config(k, "s2-spans", "s2", "s2-aggregates", "b"));
    let mut c = Cerflow::start(stage2_config(k, "s2-spans", "s2", "s2-aggregates", "c"));
    assert_eq!(produce(k, "s2-spans", 40, 5, 1_000_000), (200, 10));
    let deadline = Instant::now() + Duration::from_secs(120);
    while k.committed("s2", "s2-spans", 4) < 80 {
        assert!(
            Instant::now() < deadline,
            "offsets committed: {} of 80\n--- b ---\n{}",
            k.committed("s2", "s2-spans", 4),
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The offsets and the partials before them are one transaction: both are visible.
    let (requests, errors, messages) = committed_partials(k, "s2-aggregates", 2);
    assert_eq!((requests, errors), (400, 20), "{messages} partial messages");
    assert_eq!(
        committed_coverage(k, "s2-aggregates", 2),
        vec![(400, 400); 3]
    );
    let sb = b.scrape();
    let sc = c.scrape();
    let kafka = [("transport", "kafka")];
    eprintln!(
        "a committed {before} requests; b and c received {} spans",
        sb.value("cerflow_received_spans_total", &kafka)
            + sc.value("cerflow_received_spans_total", &kafka)
    );
    let committed = |s: &Scrape| {
        s.value(
            "cerflow_kafka_transactions_total",
            &[("outcome", "committed")],
        )
    };
    assert!(committed(&sb) + committed(&sc) >= 1.0);
    // A clean stop commits nothing new (nothing taken since), and nothing is counted twice.
    b.terminate();
    c.terminate();
    assert_eq!(committed_partials(k, "s2-aggregates", 2).0, 400);
    assert_eq!(k.committed("s2", "s2-spans", 4), 80);
}

/// The barrier's take (no broker needed): every span handed to the pipeline before it
/// is in the partials of the four workers, once; a second take finds nothing. 30
/// checkout spans of version 2.1.0, of which 0, 10 and 20 failed: 30 requests, 3
/// errors, in the series and in the version entries alike; all 30 are SERVER spans
/// claimed by checkout, so the coverage entries add up to 30 entry spans, 30 matched,
/// in each window.
#[test]
fn the_barrier_takes_every_recorded_span_exactly_once() {
    use cerflow::receiver::consumer::{Consumer, Format};
    let cfg = cerflow::config::Config::parse(
        "pipeline:\n  workers: 4\ncohorts:\n  keys: [cloud.region]\njourneys:\n  - name: checkout\n    match:\n      span_name: POST /checkout\n",
        "t",
        &|_| None,
    )
    .expect("a valid config");
    let tel = std::sync::Arc::new(cerflow::telemetry::Telemetry::default());
    let journeys = std::sync::Arc::new(cerflow::journey::Journeys::new(&cfg));
    let pipeline = cerflow::pipeline::Pipeline::start(&cfg, journeys.clone(), tel.clone());
    let ingest = cerflow::ingest::Ingest::new(&cfg, journeys, pipeline.input(), tel);
    let mut spans = checkout_spans(30, 0, 20);
    for i in [0, 10, 20] {
        spans[i] = failed(spans[i].clone());
    }
    let req = body(&with_resource_attr(
        traces("shop-api", spans),
        "service.version",
        "2.1.0",
    ));
    Consumer::traces(
        &ingest,
        &req,
        Format::Protobuf,
        cerflow::telemetry::Transport::Kafka,
        None,
    )
    .expect("taken");
    let taker = pipeline.partial_taker();
    let parts = taker
        .take(Duration::from_secs(10))
        .expect("every worker answers");
    let (mut requests, mut errors, mut self_blamed) = (0, 0, 0);
    let (mut v_requests, mut v_errors) = (0, 0);
    for (journey, p) in &parts.journeys {
        assert_eq!(&*journey.name, "checkout");
        let p = match p {
            cerflow::partial::Entry::Series(p) => p,
            cerflow::partial::Entry::SelfBlame(b) => {
                self_blamed += b.blamed.as_ref().map_or(0, |b| b.total);
                continue;
            }
            cerflow::partial::Entry::Dependency(d) => panic!("no calls were sent: {d:?}"),
            cerflow::partial::Entry::Version(v) => {
                assert_eq!(v.version, "2.1.0");
                let c = cerflow::partial::decode_counts(v.counts.as_ref());
                v_requests += c.requests;
                v_errors += c.errors;
                continue;
            }
            cerflow::partial::Entry::Coverage(c) => panic!("coverage is no journey's: {c:?}"),
        };
        let c = cerflow::partial::decode_counts(p.totals.as_ref());
        requests += c.requests;
        errors += c.errors;
        // Every sub-bucket of the first window adds up to the series' delta.
        let in_window: u64 = p.windows[0]
            .sub_buckets
            .iter()
            .map(|b| cerflow::partial::decode_counts(b.counts.as_ref()).requests)
            .sum();
        assert_eq!(in_window, c.requests);
    }
    assert_eq!((requests, errors), (30 * UNIT, 3 * UNIT));
    assert_eq!((v_requests, v_errors), (30 * UNIT, 3 * UNIT));
    // The 3 failed requests have no call under them: blamed on checkout itself, taken
    // with this barrier although their traces are still in assembly (traces.wait).
    assert_eq!(self_blamed, 3);
    let windows = cfg.windows.sizes.len();
    let mut coverage = vec![(0, 0); windows];
    for c in &parts.coverage {
        assert_eq!(c.windows.len(), windows);
        for (acc, w) in coverage.iter_mut().zip(&c.windows) {
            acc.0 += w.entry.iter().sum::<u64>();
            acc.1 += w.matched.iter().sum::<u64>();
        }
    }
    assert_eq!(coverage, vec![(30, 30); windows]);
    let again = taker
        .take(Duration::from_secs(10))
        .expect("every worker answers");
    assert!(
        again.journeys.is_empty() && again.coverage.is_empty(),
        "taken twice: {again:?}"
    );
    pipeline.shutdown(Duration::from_secs(5));
}

/// A stage-2 instance with no journeys configured (so `auto_journeys` derives them),
/// `max` derived journeys at most, its own spans topic, consumer groups and state topics,
/// owning the partitions of `aggregates` in group `<group>-owners`.
fn auto_config(
    k: &Kafka,
    spans: &str,
    group: &str,
    aggregates: &str,
    max: usize,
) -> impl Fn(&Ports) -> String {
    let bootstrap = k.bootstrap();
    let (spans, group) = (spans.to_string(), group.to_string());
    let settings = format!(
        "    aggregates:\n      topic: {aggregates}\n      instance: {group}\n      changelog_topic: {aggregates}-changelog\n      snapshots_topic: {aggregates}-snapshots\n"
    );
    move |p: &Ports| {
        let yaml = format!(
            "{}pipeline:\n  evaluation_interval: 200ms\n  shutdown_timeout: 3s\nauto_journeys:\n  max: {max}\n",
            p.listeners_yaml("")
        );
        with_kafka_receiver(&yaml, &bootstrap, &spans, &group, &settings)
    }
}

/// The aggregates-topic messages of `journey` committed so far.
fn partial_messages(k: &Kafka, topic: &str, journey: &str) -> usize {
    k.read_committed(topic, 1)
        .iter()
        .filter(|m| cerflow::partial::decode(m).is_ok_and(|p| p.journey == journey))
        .count()
}

/// A journey derived by `auto_journeys` on the instance that saw its spans is adopted by
/// an owner that never saw one. `a` consumes the spans and publishes partials; `b`, in
/// owners' group of its own on the same aggregates topic, owns its one partition too and
/// has no spans at all. 8 requests of 5 `POST /checkout` spans of service `svc:a` (a `:`
/// in the service name: the partials name the service, so `b` splits the journey's
/// name after it), the first span of every fourth request failed: 40 requests, 2 errors
/// of `svc:a:POST /checkout` on `b`. `b` holds at most 1 derived journey, so
/// `svc:a:GET /cart` (sent after) is refused: each of its messages is counted once as
/// not adopted and once as refused.
#[test]
fn an_owner_adopts_a_journey_another_instance_derived_up_to_auto_journeys_max() {
    let k = shared();
    k.create_topic("adopt-spans", 1);
    k.create_topic("adopt-none", 1);
    k.create_topic("adopt-aggregates", 1);
    let b = Cerflow::start(auto_config(
        k,
        "adopt-none",
        "adopt-b",
        "adopt-aggregates",
        1,
    ));
    b.wait_for("cerflow_kafka_owned_partitions", &[], 1.0);
    let a = Cerflow::start(auto_config(
        k,
        "adopt-spans",
        "adopt-a",
        "adopt-aggregates",
        500,
    ));
    a.wait_for("cerflow_kafka_partitions", &[], 1.0);
    assert_eq!(produce_as(k, "adopt-spans", "svc:a", 8, 5, 0), (40, 2));
    let checkout = [("journey", "svc:a:POST /checkout"), ("instance", "adopt-b")];
    let s = b.wait_for("cer_journey_requests_total", &checkout, 40.0);
    s.assert("cer_journey_errors_total", &checkout, 2.0);
    s.assert("cerflow_auto_journeys", &[], 1.0);
    // b received no span: every figure came from a's partials.
    assert_eq!(
        s.get("cerflow_received_spans_total", &[("transport", "kafka")]),
        Some(0.0)
    );
    // Its score API lists the journey as its own: all 40 requests in the 1h window.
    let own = b.get_json("/api/v1/scores?journey=svc%3Aa%3APOST+%2Fcheckout&window=1h");
    assert_eq!(own["instance"], "adopt-b", "{own}");
    assert_eq!(own["journeys"][0]["windows"][0]["requests"], 40.0, "{own}");
    assert_eq!(own["journeys"][0]["windows"][0]["errors"], 2.0, "{own}");

    // A second derived journey: a has room for it, b (max 1) has not.
    let producer = k.producer();
    for i in 0..3u64 {
        let mut spans = checkout_spans(2, 10_000 + i * 2, 20);
        for s in &mut spans {
            s.name = "GET /cart".into();
        }
        let key = spans[0].trace_id.clone();
        producer.send("adopt-spans", &key, &body(&traces("svc:a", spans)));
    }
    producer.flush();
    let cart = [("journey", "svc:a:GET /cart"), ("instance", "adopt-a")];
    a.wait_for("cer_journey_requests_total", &cart, 6.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (messages, s) = loop {
        let messages = partial_messages(k, "adopt-aggregates", "svc:a:GET /cart");
        let s = b.scrape();
        let refused = s.get("cerflow_kafka_journeys_not_adopted_total", &[]);
        if (messages > 0 && refused == Some(messages as f64)) || Instant::now() > deadline {
            break (messages, s);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(messages >= 1, "a published the cart journey");
    s.assert(
        "cerflow_kafka_journeys_not_adopted_total",
        &[],
        messages as f64,
    );
    s.assert(
        "cerflow_kafka_partials_total",
        &[("outcome", "refused")],
        messages as f64,
    );
    s.assert_absent(
        "cer_journey_requests_total",
        &[("journey", "svc:a:GET /cart"), ("instance", "adopt-b")],
    );
    s.assert("cerflow_auto_journeys", &[], 1.0);
    assert!(
        b.logs()
            .contains("already holds auto_journeys.max derived journeys"),
        "the refusal is logged"
    );
}

/// What README's "OTLP metric inputs stay per instance" says, on a stage-2 instance that
/// owns the aggregates topic's one partition: the metric points it receives (delta
/// counters: 40 requests, 4 errors of `orders`, a journey fed by metrics alone) are
/// exported as its counters with its `instance` label, so `sum by (journey)` adds them up
/// across instances; the journey has no partials, hence no owner, and no score entry.
#[test]
fn stage_two_exports_metric_inputs_per_instance_with_its_label() {
    use common::otlp::{metrics_request, now_ns, number_point, sum_metric};
    let k = shared();
    k.create_topic("metrics-spans", 1);
    k.create_topic("metrics-aggregates", 1);
    let bootstrap = k.bootstrap();
    let m = Cerflow::start(move |p: &Ports| {
        let yaml = format!(
            "{}pipeline:\n  evaluation_interval: 200ms\njourneys:\n  - name: orders\n    metrics:\n      - {{ name: orders.requests }}\n      - {{ name: orders.errors, role: errors }}\n",
            p.listeners_yaml("")
        );
        with_kafka_receiver(
            &yaml,
            &bootstrap,
            "metrics-spans",
            "metrics",
            "    aggregates:\n      topic: metrics-aggregates\n      instance: m\n      changelog_topic: metrics-changelog\n      snapshots_topic: metrics-snapshots\n",
        )
    });
    m.wait_for("cerflow_kafka_owned_partitions", &[], 1.0);
    let t = now_ns();
    let delta = |name: &str, n: f64| {
        sum_metric(
            name,
            "{request}",
            true,
            false,
            vec![number_point(t - 1, t, n, vec![])],
        )
    };
    let req = metrics_request(
        &[("service.name", "orders")],
        vec![delta("orders.requests", 40.0), delta("orders.errors", 4.0)],
    );
    assert_eq!(m.post_metrics(&req), (0, String::new()));
    let orders = [("journey", "orders"), ("instance", "m")];
    let s = m.wait_for("cer_journey_requests_total", &orders, 40.0);
    s.assert("cer_journey_errors_total", &orders, 4.0);
    let own = m.get_json("/api/v1/scores?journey=orders");
    assert_eq!(own["instance"], "m", "{own}");
    assert_eq!(own["journeys"].as_array().map(Vec::len), Some(0), "{own}");
}

/// Deployments (`deployments` of the README) on two instances: the SLO objectives of
/// tests/deployments.rs, so the same arithmetic holds. A stage-2 instance when
/// `kafka` is `Some((bootstrap, group))`, else one OTLP instance.
fn deploy_config(kafka: Option<(String, String)>) -> impl Fn(&Ports) -> String {
    move |p: &Ports| {
        let yaml = format!(
            "{}pipeline:\n  evaluation_interval: 200ms\n  shutdown_timeout: 3s\n\
             slo:\n  objectives: {{ availability: 0.9, latency: 0.99 }}\n\
             journeys:\n  - name: checkout\n    match: {{ span_name: POST /checkout }}\n",
            p.listeners_yaml("")
        );
        match &kafka {
            None => yaml,
            Some((bootstrap, group)) => with_kafka_receiver(
                &yaml,
                bootstrap,
                "deploy-spans",
                group,
                &format!(
                    "    aggregates:\n      topic: deploy-aggregates\n      instance: i{}\n      changelog_topic: deploy-changelog\n      snapshots_topic: deploy-snapshots\n",
                    p.http
                ),
            ),
        }
    }
}

/// Message `i` of a deployment phase: 5 checkout requests of 1.0, all healthy, and, when
/// `new` is set, 5 of 2.0 of which the first 2 (even `i`) or 1 (odd `i`) failed; one
/// trace id keys it, so a message's requests of both versions go to one instance.
fn deploy_message(i: u64, new: bool) -> (Vec<u8>, Vec<u8>) {
    let ids = 10_000 + i * 10;
    let mut req = with_resource_attr(
        traces("shop", checkout_spans(5, ids, 20)),
        "service.version",
        "1.0",
    );
    if new {
        let failing = if i.is_multiple_of(2) { 2 } else { 1 };
        let spans = checkout_spans(5, ids + 5, 20)
            .into_iter()
            .enumerate()
            .map(|(n, s)| if n < failing { failed(s) } else { s })
            .collect();
        let v2 = with_resource_attr(traces("shop", spans), "service.version", "2.0");
        req.resource_spans.extend(v2.resource_spans);
    }
    let key = req.resource_spans[0].scope_spans[0].spans[0]
        .trace_id
        .clone();
    (key, body(&req))
}

/// What a journey's one deployment shows, without its times (the owner's ticks are not
/// the single instance's).
fn judged(c: &Cerflow) -> serde_json::Value {
    let v = c.get_json("/api/v1/deployments");
    let list = v["deployments"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{v}");
    let mut d = list[0].clone();
    for k in ["start_unix_nano", "end_unix_nano"] {
        d.as_object_mut().map(|o| o.remove(k));
    }
    d
}

/// A deployment through two instances: the spans of 1.0 (healthy) and 2.0 (30% failed)
/// spread over the 4 spans partitions of `a` and `b`, and the one that owns the
/// aggregates topic's one partition judges it from both instances' partials exactly as
/// one OTLP instance judges the same spans. By hand (tests/deployments.rs's arithmetic):
/// - first 20 messages x 5 requests of 1.0: 100 requests, 1.0 is the current version;
/// - then 20 messages of 5 requests of 1.0 and 5 of 2.0: 1.0 100 requests, 0 errors;
///   2.0 100 requests, 10 x 2 + 10 x 1 = 30 errors. 2.0 reaches min_events (100) with
///   its last partial, which holds the last of 1.0's too (they travel in one message):
///   2.0 availability 0.7, burn 3, component 7/9, score (0.5 * 7/9 + 0.3) / 0.8 =
///   0.861111 against 1.0's 1: a drop of 0.138889 > 0.02, regressed.
#[test]
fn a_deployment_through_two_instances_is_judged_by_its_owner_as_by_one_instance() {
    let k = shared();
    k.create_topic("deploy-spans", 4);
    k.create_topic("deploy-aggregates", 1);
    let kafka = || Some((k.bootstrap(), "deploy".to_string()));
    let a = Cerflow::start(deploy_config(kafka()));
    let b = Cerflow::start(deploy_config(kafka()));
    let single = Cerflow::start(deploy_config(None));
    // The owners' group assigns (eagerly) once per generation, and every member reads
    // the changelog of what it got, nothing included: once both have, the generation
    // holds both, and the owner found below stays the owner.
    let joined = "Read the changelog of the assigned partitions.";
    poll(
        "both instances in the owners' group",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            if a.logs().contains(joined) && b.logs().contains(joined) {
                Ok(())
            } else {
                Err(String::new())
            }
        },
    );
    wait_all(
        &[&a, &b],
        "both members holding spans partitions, 4 in all, and one owner",
        Duration::from_secs(60),
        |s| {
            let owned: f64 = s
                .iter()
                .map(|s| s.value("cerflow_kafka_owned_partitions", &[]))
                .sum();
            partitions_shared(s, 4.0) && owned == 1.0
        },
    );
    let owned = |c: &Cerflow| c.scrape().value("cerflow_kafka_owned_partitions", &[]) == 1.0;
    let (owner, other) = if owned(&a) { (&a, &b) } else { (&b, &a) };
    let j = ("journey", "checkout");
    let producer = k.producer();
    let phase = |new: bool, total: f64| {
        for i in 0..20 {
            let (key, payload) = deploy_message(i + if new { 20 } else { 0 }, new);
            producer.send("deploy-spans", &key, &payload);
            assert_eq!(single.post_traces(payload, "application/x-protobuf"), 200);
        }
        producer.flush();
        wait_sum(owner, "cer_journey_requests_total", &[j], total);
        wait_sum(&single, "cer_journey_requests_total", &[j], total);
    };
    phase(false, 100.0);
    assert!(
        judged_none(owner) && judged_none(&single),
        "a first version is no deployment"
    );
    phase(true, 300.0);
    let regressed = [j, ("result", "regressed")];
    // The owner's series carry its `instance` label: matched by the labels given.
    let s = wait_sum(owner, "cer_deployments_total", &regressed, 1.0);
    wait_sum(&single, "cer_deployments_total", &regressed, 1.0);
    assert_eq!(s.sum("cer_deployments_total", &[j, ("result", "ok")]), 0.0);
    let info = [
        j,
        ("version", "2.0"),
        ("previous_version", "1.0"),
        ("result", "regressed"),
    ];
    assert_eq!(s.matching("cer_deployment_info", &info).len(), 1);
    assert_eq!(s.sum("cer_deployment_info", &info), 1.0);
    // Both instances took spans, and the other one exports no deployment of checkout.
    let kafka_spans = |c: &Cerflow| {
        c.scrape()
            .value("cerflow_received_spans_total", &[("transport", "kafka")])
    };
    let (on_a, on_b) = (kafka_spans(&a), kafka_spans(&b));
    assert!(on_a > 0.0 && on_b > 0.0, "spans on a {on_a}, on b {on_b}");
    assert_eq!(on_a + on_b, 300.0);
    assert!(other
        .scrape()
        .matching("cer_deployments_total", &[j])
        .is_empty());
    let d = judged(owner);
    assert_eq!(d["result"], "regressed", "{d}");
    assert_eq!(d["version"], "2.0");
    assert_eq!(d["previous_version"], "1.0");
    assert_eq!(d["baseline"], "same_span");
    assert_eq!(d["figures"]["requests"], 100, "{d}");
    assert_eq!(d["figures"]["errors"], 30, "{d}");
    assert_eq!(d["previous_figures"]["requests"], 100, "{d}");
    assert_eq!(d["previous_figures"]["errors"], 0, "{d}");
    let score = (0.5 * 7.0 / 9.0 + 0.3) / 0.8;
    let close = |v: &serde_json::Value, want: f64| {
        let got = v.as_f64().unwrap_or_else(|| panic!("a number, got {v}"));
        assert!((got - want).abs() < 1e-9, "{got} != {want}");
    };
    close(&d["figures"]["score"], score);
    close(&d["previous_figures"]["score"], 1.0);
    close(&d["score_drop"], 1.0 - score);
    // Field for field what one instance judged from the same spans.
    assert_eq!(d, judged(&single));
    let (code, out) = owner.gate(&["--journey", "checkout", "--compare", "service.version=auto"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0.8611 vs 1.0000 (drop 0.1389)"), "{out}");
}

/// Waits until the series of `name` matching `labels` add up to `want`.
fn wait_sum(c: &Cerflow, name: &str, labels: &[(&str, &str)], want: f64) -> Scrape {
    c.wait_until(&format!("{name} {labels:?} adding up to {want}"), |s| {
        s.sum(name, labels) == want
    })
}

fn judged_none(c: &Cerflow) -> bool {
    c.get_json("/api/v1/deployments")["deployments"]
        .as_array()
        .is_some_and(|l| l.is_empty())
}
