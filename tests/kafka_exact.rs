//! Exactness over Kafka: the same seeded `cerflow loadgen` traffic (a healthy phase, a
//! fault phase with failing calls to a dependency, a recovery) goes (a) to one cerflow
//! over OTLP and (b) to a topic read by a consumer group of cerflow instances: a tee
//! ([`KafkaTee`]) hands every request to (a) unchanged and to the topic split into one
//! message per trace id, as the Collector's `kafka` exporter does. Once both sides have
//! drained, every journey's figures of (b), read by (journey, name, labels) across the
//! instances, are compared with (a)'s and every difference is reported.
//!
//! Stage 1 (on main): each instance records the spans of its partitions, so counters
//! add up across instances; with one instance joining mid-stream and clean stops the
//! sums equal (a)'s exactly. Stage 2 (`receivers.kafka.aggregates`: partials and input
//! offsets in one transaction, one owner per journey) makes every journey figure equal,
//! also when an instance is SIGKILLed (the second test), dependency calls and blame
//! included, except the time-to-detect sum listed in [`NOT_YET_OWNED`], and the
//! telemetry coverage, derived by the one owner of the coverage partition: the config
//! leaves one of the three generated journeys out, so a third or so of the entry spans
//! are claimed by no journey and the ratio is well below 1.

mod common;

use common::exact::{
    differences, owned_score_differences, partitions_shared, wait_all, wait_settled, Cover, Figures,
};
use common::kafka::{shared, Kafka, KafkaTee};
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// 8 s healthy, 8 s with checkout failing in eu-* cohorts (30%) and calls to payments
/// failing (50%, failing their request: blame moves to payments), 8 s healthy again.
const SCENARIO: &str = "\
phases:
  - name: healthy
    duration: 8s
  - name: checkout-eu-and-payments-failing
    duration: 8s
    faults:
      - dependency: payments
        error_rate: 0.5
      - journey: checkout
        region: \"eu-*\"
        error_rate: 0.3
  - name: recovered
    duration: 8s
";

/// 200 spans/s in requests of 48 spans = 12 traces of 4 spans (a journey request and
/// its calls to payments, inventory and postgresql): about 4 requests a second. The
/// loadgen re-stamps its 16 bodies (new trace ids) every second, so no trace id is sent
/// twice: a trace is whole in one message on both sides.
const LOAD: &[&str] = &[
    "--rate",
    "200",
    "--spans-per-request",
    "48",
    "--pool",
    "16",
    "--dependencies",
    "3",
    "--users",
    "300",
    "--order-value",
    "--seed",
    "13",
    "--quiet",
];

const PARTITIONS: i32 = 6;

/// Samples that depend on when an instance derived them rather than on the spans:
/// none today (the windows below hold the whole run). A figure added here needs a
/// comment saying why it cannot be compared.
const NOT_COMPARED: &[&str] = &[];

/// Not yet exact in stage 2, so left out of the SIGKILL comparison until they are:
/// - an incident's time to detect runs to the tick that opened it, and the single
///   instance and the group's owner tick at their own times (the sums differed by
///   0.25 to 0.32 s in a run; the buckets and count are compared). The
///   incident itself, its count and its recovery carry over to a new owner through the
///   changelog (`src/kstate/restore.rs`), so they are compared.
const NOT_YET_OWNED: &[&str] = &["cer_journey_time_to_detect_seconds_sum"];

/// cerflow settings for both sides: windows long enough to hold the whole run (so a
/// figure does not depend on when it is read), traces complete 1 s after their last
/// span, and the journeys and cohorts of the generated spans, but for one: the loadgen
/// sends its default 3 journeys (checkout, cart, login), the config has the first 2, so
/// login's entry spans are claimed by no journey (telemetry coverage below 1).
fn settings(dir: &Path) -> String {
    let (status, journeys, err) = run_cli(
        &[
            "loadgen",
            "--print-config",
            "--journeys",
            "2",
            "--dependencies",
            "3",
            "--order-value",
        ],
        dir,
        Duration::from_secs(30),
    );
    assert!(status.success(), "loadgen --print-config: {err}");
    format!(
        "pipeline:\n  evaluation_interval: 100ms\n  shutdown_timeout: 3s\n\
         windows:\n  sizes: [10m, 1h]\n\
         traces:\n  wait: 1s\n{journeys}"
    )
}

/// Entry spans no journey claimed (login's), worked out from the single instance: each
/// trace is 4 spans, 1 SERVER entry span and 3 CLIENT calls, and no journey matches a
/// CLIENT span, so `cerflow_unmatched_spans_total` = 3 x traces + unclaimed entry spans,
/// with traces = spans / 4.
fn unclaimed(single: &Scrape, spans: u64) -> f64 {
    single.value("cerflow_unmatched_spans_total", &[]) - 3.0 * (spans / 4) as f64
}

/// The loadgen's summary: spans the tee accepted, and requests that went wrong.
struct Sent {
    spans: u64,
    error_requests: u64,
}

/// Runs the scenario through the tee in the background; the handle returns its summary.
fn send(tee: &KafkaTee, dir: &Path) -> std::thread::JoinHandle<Sent> {
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, SCENARIO).expect("writing the scenario");
    let summary = dir.join("summary.json");
    let mut args: Vec<String> = vec![
        "loadgen".into(),
        "--endpoint".into(),
        tee.endpoint(),
        "--scenario".into(),
        scenario.display().to_string(),
        "--summary-json".into(),
        summary.display().to_string(),
    ];
    args.extend(LOAD.iter().map(|s| s.to_string()));
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out, err) = run_cli(&args, &dir, Duration::from_secs(120));
        assert!(status.success(), "loadgen failed:\n{out}\n{err}");
        let text = std::fs::read_to_string(&summary).expect("the loadgen's summary");
        let s: serde_json::Value = serde_json::from_str(&text).expect("summary JSON");
        Sent {
            spans: s["spans_accepted"].as_u64().expect("spans_accepted"),
            error_requests: s["error_requests"].as_u64().expect("error_requests"),
        }
    })
}

/// A member of the group; with `aggregates` (stage 2) it publishes partials there as
/// `instance` and owns the journeys of the aggregates partitions Kafka gives it.
fn group_member(
    k: &Kafka,
    topic: &str,
    group: &str,
    settings: &str,
    aggregates: Option<(&str, String)>,
) -> Cerflow {
    let (bootstrap, topic, group) = (k.bootstrap(), topic.to_string(), group.to_string());
    let settings = settings.to_string();
    let stage2 = aggregates.map_or_else(String::new, |(topic, instance)| {
        format!("    aggregates:\n      topic: {topic}\n      instance: {instance}\n")
    });
    Cerflow::start(move |p: &Ports| {
        let yaml = format!("{}{settings}", p.listeners_yaml(""));
        with_kafka_receiver(&yaml, &bootstrap, &topic, &group, &stage2)
    })
}

/// How a run of the scenario treats the group.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Two members from the start, a third joining mid-stream, all stopped cleanly.
    None,
    /// As [`Fault::None`], and the first member SIGKILLed after the third joined.
    Kill,
}

/// Runs the scenario into both sides; returns what both sides show once drained and
/// settled.
fn run(topic: &str, group: &str, fault: Fault, cover: Cover, skip: &[&str]) -> Outcome {
    let k = shared();
    k.create_topic(topic, PARTITIONS);
    // The SIGKILL run is stage 2: partials in transactions, one owner per journey.
    let aggregates = format!("{topic}-aggregates");
    let stage2 = fault == Fault::Kill;
    if stage2 {
        k.create_topic(&aggregates, PARTITIONS);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = settings(dir.path());
    let member = |i: usize| {
        let agg = stage2.then(|| (aggregates.as_str(), format!("i{i}")));
        group_member(k, topic, group, &settings, agg)
    };
    let single = Cerflow::start(|p: &Ports| format!("{}{settings}", p.listeners_yaml("")));
    let mut members = vec![member(0), member(1)];
    wait_all(
        &members.iter().collect::<Vec<_>>(),
        "both first members holding partitions",
        Duration::from_secs(60),
        |s| partitions_shared(s, f64::from(PARTITIONS)),
    );
    let tee = KafkaTee::start(k, topic, &single.grpc_endpoint());
    let started = Instant::now();
    let load = send(&tee, dir.path());
    // The third member joins during the fault phase: Kafka moves partitions to it while
    // spans are flowing.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()));
    members.push(member(2));
    let mut killed = None;
    if fault == Fault::Kill {
        std::thread::sleep(Duration::from_secs(15).saturating_sub(started.elapsed()));
        let mut first = members.remove(0);
        let status = first.kill();
        assert!(!status.success(), "SIGKILLed: {status}");
        killed = Some(first);
    }
    let sent = load.join().expect("the loadgen thread");
    assert_eq!(sent.error_requests, 0, "every request reached both sides");
    tee.flush();
    assert_eq!(
        tee.spans(),
        sent.spans,
        "the tee passed on what the loadgen sent"
    );
    let spans = tee.spans() as f64;
    // Drained: the single instance took every span, and the group committed every
    // message (lag 0: stage 1 commits every 5 s, stage 2 with each interval's partials).
    single.wait_until("every span in the single instance", |s| {
        s.get("cerflow_processed_spans_total", &[]) == Some(spans)
    });
    k.wait_drained(group, topic, PARTITIONS, Duration::from_secs(120));
    let refs: Vec<&Cerflow> = members.iter().collect();
    // Settled: trace completion (1 s) and window closing have caught up on both sides.
    let mut all: Vec<&Cerflow> = vec![&single];
    all.extend(refs.iter().copied());
    // Owned: every figure of the single instance has a counterpart in the group. A member
    // just given partitions exports nothing of them while it re-reads them, and two such
    // scrapes alike would pass for settled.
    wait_all(
        &all,
        "every journey figure of the single instance in the group",
        Duration::from_secs(120),
        |s| Figures::of(&s[..1], cover, skip).same_keys(&Figures::of(&s[1..], cover, skip)),
    );
    let mut scrapes = wait_settled(
        &all,
        cover,
        skip,
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    let single_scrape = scrapes.remove(0);
    Outcome {
        single_scrape,
        scores: single.get_json("/api/v1/scores"),
        group_scores: members
            .iter()
            .map(|m| m.get_json("/api/v1/scores"))
            .collect(),
        group: scrapes,
        spans: tee.spans(),
        messages: tee.messages(),
        members,
        _killed: killed,
        _single: single,
        _tee: tee,
    }
}

struct Outcome {
    single_scrape: Scrape,
    scores: serde_json::Value,
    /// Every surviving member's score API answer.
    group_scores: Vec<serde_json::Value>,
    group: Vec<Scrape>,
    spans: u64,
    messages: u64,
    members: Vec<Cerflow>,
    _killed: Option<Cerflow>,
    _single: Cerflow,
    _tee: KafkaTee,
}

#[test]
fn a_group_with_a_late_joiner_counts_exactly_what_one_instance_counts() {
    let mut o = run(
        "exact-join",
        "exact-join",
        Fault::None,
        Cover::Counters,
        NOT_COMPARED,
    );
    let single = Figures::of(
        std::slice::from_ref(&o.single_scrape),
        Cover::Counters,
        NOT_COMPARED,
    );
    let group = Figures::of(&o.group, Cover::Counters, NOT_COMPARED);
    let diff = differences(&single, &group);
    assert!(
        diff.is_empty(),
        "{} counters differ between one instance and the group:\n{}",
        diff.len(),
        diff.join("\n")
    );
    // Each request body holds 12 traces of 4 spans, each with one entry span: requests
    // of the configured journeys + unclaimed entry spans = spans / 4, whatever the
    // pacing made of the 24 s at 200 spans/s.
    assert_eq!(o.spans % 48, 0, "whole request bodies: {}", o.spans);
    let requests: f64 = single.requests_by_journey().values().sum();
    let unclaimed = unclaimed(&o.single_scrape, o.spans);
    assert!(unclaimed > 0.0, "login's entry spans are unclaimed");
    assert_eq!(requests + unclaimed, (o.spans / 4) as f64);
    // Each trace is one message: spans / 4 of them.
    assert_eq!(o.messages, o.spans / 4);
    // Every span reached the group exactly once, and the late joiner took a share.
    let received: Vec<f64> = o
        .group
        .iter()
        .map(|s| s.value("cerflow_received_spans_total", &[("transport", "kafka")]))
        .collect();
    assert_eq!(received.iter().sum::<f64>(), o.spans as f64, "{received:?}");
    assert!(
        received[2] > 0.0,
        "the late joiner consumed spans: {received:?}"
    );
    // The fault phase shows: some checkout requests and some payments calls failed.
    assert!(single
        .values
        .keys()
        .any(|(j, n, _)| j == "checkout" && n == "cer_journey_errors_total"));
    assert!(
        o.single_scrape
            .sum("cer_dependency_errors_total", &[("dependency", "payments")])
            > 0.0,
        "payments calls failed in the fault phase"
    );
    // Clean stops commit what was taken: the group's committed offsets reach the end of
    // every partition, one offset per message.
    for m in o.members.iter_mut() {
        let status = m.terminate();
        assert!(
            status.success(),
            "a member exited with {status} after SIGTERM"
        );
    }
    let k = shared();
    assert_eq!(k.end_offsets("exact-join", PARTITIONS), o.messages as i64);
    assert_eq!(
        k.committed("exact-join", "exact-join", PARTITIONS),
        o.messages as i64
    );
}

/// Stage 2 under SIGKILL: three members publish partials in transactions and own the
/// journeys of the aggregates partitions Kafka gives them; the first is SIGKILLed in
/// the fault phase after the third joined. Every journey figure (counters summed, any
/// other from its one owner) and every owner's score API entry equals the single
/// instance's, except the [`NOT_YET_OWNED`] ones.
#[test]
fn a_group_that_loses_a_member_to_sigkill_gives_every_figure_of_one_instance() {
    let skip: Vec<&str> = NOT_COMPARED.iter().chain(NOT_YET_OWNED).copied().collect();
    let o = run("exact-kill", "exact-kill", Fault::Kill, Cover::All, &skip);
    let single = Figures::of(std::slice::from_ref(&o.single_scrape), Cover::All, &skip);
    let group = Figures::of(&o.group, Cover::All, &skip);
    let diff = differences(&single, &group);
    assert!(
        diff.is_empty(),
        "{} figures differ between one instance and the group:\n{}",
        diff.len(),
        diff.join("\n")
    );
    // Every journey is owned by one member, whose journey samples carry its name.
    for (journey, _) in single.requests_by_journey() {
        let owners: Vec<String> = o
            .group
            .iter()
            .filter_map(|s| {
                s.samples
                    .iter()
                    .find(|((n, l), _)| {
                        n == "cer_journey_requests_total"
                            && l.iter().any(|(k, v)| k == "journey" && *v == journey)
                    })
                    .and_then(|((_, l), _)| l.iter().find(|(k, _)| k == "instance"))
                    .map(|(_, v)| v.clone())
            })
            .collect();
        assert_eq!(owners.len(), 1, "{journey} exported by {owners:?}");
        assert!(["i1", "i2"].contains(&owners[0].as_str()), "{owners:?}");
    }
    // Each survivor's score API names it (members i1 and i2; i0 was killed).
    let names: Vec<&str> = o
        .group_scores
        .iter()
        .map(|d| d["instance"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(names, ["i1", "i2"]);
    // The owners' score APIs together answer for every journey, each once, blame
    // shares included (dependency calls and blame travel in the partials).
    let diff = owned_score_differences(&o.scores, &o.group_scores, &[]);
    assert!(
        diff.is_empty(),
        "{} score API figures differ:\n{}",
        diff.len(),
        diff.join("\n")
    );
    let requests: f64 = single.requests_by_journey().values().sum();
    let unclaimed = unclaimed(&o.single_scrape, o.spans);
    assert!(unclaimed > 0.0, "login's entry spans are unclaimed");
    assert_eq!(requests + unclaimed, (o.spans / 4) as f64);
    // Telemetry coverage, in both windows (each holds the whole run): entry spans =
    // traces = spans / 4, matched = the configured journeys' requests, so the ratio is
    // requests / (spans / 4), below 1 by login's share.
    let traces = (o.spans / 4) as f64;
    let coverage = requests / traces;
    assert!(coverage > 0.0 && coverage < 1.0, "{coverage}");
    eprintln!(
        "coverage: {requests} requests + {unclaimed} unclaimed = {traces} entry spans: {coverage}"
    );
    let single_coverage = o
        .single_scrape
        .matching("cer_telemetry_coverage_ratio", &[]);
    assert_eq!(single_coverage.len(), 2, "{}", o.single_scrape.text);
    for (labels, v) in &single_coverage {
        assert_eq!(*v, coverage, "{labels:?}");
    }
    // The group: exactly one survivor, the owner of the coverage partition (its partials
    // are merged from every publisher's transactions, the SIGKILLed one's committed ones
    // included), exports it, with its instance label, and equal to one instance's.
    let members: Vec<&Cerflow> = o.members.iter().collect();
    let exporters = |scrapes: &[Scrape]| -> Vec<(usize, Labels, f64)> {
        scrapes
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.matching("cer_telemetry_coverage_ratio", &[])
                    .into_iter()
                    .map(move |(l, v)| (i, l, v))
            })
            .collect()
    };
    let scrapes = wait_all(
        &members,
        "one member exporting the coverage of each window, equal to one instance's",
        Duration::from_secs(60),
        |s| {
            let e = exporters(s);
            e.len() == 2 && e.iter().all(|(_, _, v)| *v == coverage)
        },
    );
    let e = exporters(&scrapes);
    assert_eq!(e[0].0, e[1].0, "one owner for both windows: {e:?}");
    for (i, labels, _) in &e {
        let name = ["i1", "i2"][*i];
        assert!(
            labels.contains(&("instance".to_string(), name.to_string())),
            "{labels:?}"
        );
        let window = labels
            .iter()
            .find(|(k, _)| k == "window")
            .expect("a window");
        assert!(
            single_coverage.iter().any(|(l, _)| l.contains(window)),
            "{labels:?}"
        );
    }
}

/// The comparison itself, on scrapes written here: a counter summed across instances
/// that falls short, a figure two instances export, a duration sum that differs only by
/// f64 rounding (equal), the `instance` label ignored, a sample without `journey` left out.
#[test]
fn the_comparison_reports_every_difference_and_only_those() {
    let single = Scrape::parse(
        "cer_journey_requests_total{journey=\"a\",region=\"x\"} 10\n\
         cer_journey_duration_seconds_sum{journey=\"a\",region=\"x\"} 1.000000001\n\
         cer_sli_availability_ratio{journey=\"a\",window=\"1m\"} 0.9\n\
         cerflow_processed_spans_total 10\n",
    );
    // 4 + 5 = 9 requests, one short of 10; 0.4 + 0.600000001 s = 1,000,000,001 ns.
    let group = [
        Scrape::parse(
            "cer_journey_requests_total{journey=\"a\",region=\"x\",instance=\"i0\"} 4\n\
             cer_journey_duration_seconds_sum{journey=\"a\",region=\"x\",instance=\"i0\"} 0.4\n\
             cer_sli_availability_ratio{journey=\"a\",window=\"1m\",instance=\"i0\"} 0.9\n\
             cerflow_processed_spans_total 4\n",
        ),
        Scrape::parse(
            "cer_journey_requests_total{journey=\"a\",region=\"x\",instance=\"i1\"} 5\n\
             cer_journey_duration_seconds_sum{journey=\"a\",region=\"x\",instance=\"i1\"} 0.600000001\n\
             cer_sli_availability_ratio{journey=\"a\",window=\"1m\",instance=\"i1\"} 0.9\n\
             cerflow_processed_spans_total 5\n",
        ),
    ];
    let diff = |cover| {
        differences(
            &Figures::of(std::slice::from_ref(&single), cover, NOT_COMPARED),
            &Figures::of(&group, cover, NOT_COMPARED),
        )
    };
    assert_eq!(
        diff(Cover::Counters),
        vec!["a: cer_journey_requests_total{region=\"x\"}: single 10, group 9".to_string()]
    );
    assert_eq!(
        diff(Cover::All),
        vec![
            "a: cer_journey_requests_total{region=\"x\"}: single 10, group 9".to_string(),
            "a: cer_sli_availability_ratio{window=\"1m\"}: exported by 2 instances [(0, 0.9), (1, 0.9)]: only the journey's owner may".to_string(),
        ]
    );
}
