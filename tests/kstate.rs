//! Kafka stage 2's long-lived state against a real Apache Kafka broker (KRaft, the
//! tests/common/kafka.rs fixture): an owner's changelog restores a journey's budget and
//! open incident exactly in a new owner; owners' snapshots are read by every instance,
//! whose `scope=all` view holds every journey with the owners' figures and the overall
//! score computed from them, in the library and on a running cerflow's score API.

mod common;

use cerflow::config::Config;
use cerflow::deployments::DeploymentTracker;
use cerflow::incidents::IncidentTracker;
use cerflow::journey::Journeys;
use cerflow::kstate::changelog::{self, ChangelogWriter, JourneyRecord, Written};
use cerflow::kstate::snapshots::{self, JourneySnapshot, SnapshotPublisher, SnapshotStore};
use cerflow::kstate::{ensure_topics, KState};
use cerflow::receiver::kafka::config::KafkaReceiver;
use cerflow::sampling::from_requests;
use cerflow::score::{JourneyView, ScoreView, WindowView};
use cerflow::sli::Snapshot;
use cerflow::slo::{Key, SloTracker};
use cerflow::snapshot::SeriesSnap;
use cerflow::telemetry::{AddRelaxed, Telemetry};
use cerflow::window::Counts;
use common::kafka::{shared, Kafka};
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const S: u64 = 1_000_000_000;

/// Two journeys with a 99% availability objective; incidents open on page alerts.
fn config(k: &Kafka) -> Config {
    let yaml = format!(
        "receivers:\n  kafka:\n    brokers: [{}]\n    group_id: kstate\n\
         slo:\n  objectives: {{ availability: 0.99 }}\n\
         journeys:\n  - name: checkout\n    match: {{ span_name: c }}\n  - name: login\n    match: {{ span_name: l }}\n",
        k.bootstrap()
    );
    Config::parse(&yaml, "t", &|_| None).expect("config")
}

fn receiver(cfg: &Config) -> KafkaReceiver {
    cfg.receivers.kafka.clone().expect("receivers.kafka")
}

fn state(test: &str) -> KState {
    KState {
        changelog_topic: format!("{test}-changelog"),
        snapshots_topic: format!("{test}-snapshots"),
        ..KState::default()
    }
}

/// One series per journey with these cumulative totals (whole requests).
fn snap(journeys: &Journeys, totals: &[(u64, u64)]) -> Snapshot {
    let series = totals
        .iter()
        .enumerate()
        .map(|(i, &(requests, errors))| SeriesSnap {
            journey: journeys.get(i as u32).expect("journey"),
            from_metrics: false,
            cohort: Arc::from(Vec::<Box<str>>::new()),
            overflow: false,
            totals: Counts {
                requests: from_requests(requests),
                errors: from_requests(errors),
                ..Default::default()
            },
            duration_sum_s: 0.0,
            value_total: 0.0,
            value_failed: 0.0,
            buckets: vec![],
            created_unix_ns: 1,
            windows: vec![],
            exemplars: None,
            frustrations: vec![],
        })
        .collect();
    Snapshot {
        series,
        ..Default::default()
    }
}

struct Owner {
    slo: SloTracker,
    incidents: IncidentTracker,
    deployments: DeploymentTracker,
}

impl Owner {
    fn new(cfg: &Config) -> Owner {
        Owner {
            slo: SloTracker::new(&cfg.slo),
            incidents: IncidentTracker::new(&cfg.incidents),
            deployments: DeploymentTracker::new(&cfg.deployments),
        }
    }

    fn record(&self, journey: &str) -> JourneyRecord {
        JourneyRecord::of(journey, &self.slo, &self.incidents, &self.deployments)
    }

    fn budget(&self, journey: &str) -> f64 {
        let key = Key {
            journey: Arc::from(journey),
            cohort: None,
        };
        self.slo.eval(&key).expect("an evaluation").budget_remaining[0]
    }
}

#[test]
fn a_new_owner_restores_budget_consumed_and_an_open_incident_exactly() {
    let k = shared();
    let cfg = config(k);
    let kafka = receiver(&cfg);
    let ks = state("restore");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(ensure_topics(&kafka, &ks, 1, 1))
        .expect("state topics");
    // A second call finds them there and leaves them.
    rt.block_on(ensure_topics(&kafka, &ks, 1, 1))
        .expect("state topics again");
    for t in [&ks.changelog_topic, &ks.snapshots_topic] {
        assert_eq!(
            k.topic_config(t, "cleanup.policy").as_deref(),
            Some("compact")
        );
    }
    let journeys = Journeys::new(&cfg);
    let tel = Arc::new(Telemetry::default());

    // The first owner: checkout takes 1000 requests, 200 failed; login 1000, 5 failed.
    let now = 1_000_000 * S;
    let mut a = Owner::new(&cfg);
    let traffic = snap(&journeys, &[(1000, 200), (1000, 5)]);
    a.slo.update(&traffic, &journeys, now);
    assert!(
        a.incidents.update(&a.slo, &traffic, now),
        "an incident opened"
    );
    // checkout: error ratio 200/1000 = 0.2 against a budget of 1 - 0.99 = 0.01: burn 20
    // in every window, over the page rule's 14.4 (1 h and 5 min, 1000 >= 10 events): an
    // incident opens at `now`; 20 budgets consumed, 1 - 20 = -19 left.
    // login: 5/1000 = 0.005, burn 0.5, 0.5 left; no alert.
    assert!(
        (a.budget("checkout") - -19.0).abs() < 1e-9,
        "{}",
        a.budget("checkout")
    );
    assert!(
        (a.budget("login") - 0.5).abs() < 1e-9,
        "{}",
        a.budget("login")
    );
    let open: Vec<_> = a
        .incidents
        .incidents()
        .into_iter()
        .filter(|i| i.end_unix_nano.is_none())
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].journey.as_str(), open[0].start_unix_nano),
        ("checkout", now)
    );

    let mut w = ChangelogWriter::new(&kafka, &ks, tel.clone()).expect("changelog writer");
    for j in ["checkout", "login"] {
        assert_eq!(w.write(j, &a.record(j)), Ok(Written::Sent));
    }
    // The next tick with no change writes nothing.
    for j in ["checkout", "login"] {
        assert_eq!(w.write(j, &a.record(j)), Ok(Written::Unchanged));
    }
    w.flush(Duration::from_secs(30)).expect("delivered");
    assert_eq!(tel.kafka.changelog_written.get(), 2);
    // A record no cerflow wrote, for a third key: refused whole when restored.
    let p = k.producer();
    p.send(&ks.changelog_topic, b"search", b"{\"not\":\"a record\"}");
    p.flush();

    // The first owner stops; a new one is assigned partition 0 and reads it to its end.
    let text = |o: &Owner, j: &str| String::from_utf8(o.record(j).encode().expect("encode"));
    let expected_checkout = text(&a, "checkout");
    let expected_login = text(&a, "login");
    drop(w);
    drop(a);
    let read = changelog::read(&kafka, &ks, &[0], &tel).expect("changelog read");
    assert!(read.complete);
    assert_eq!(
        read.records.keys().map(String::as_str).collect::<Vec<_>>(),
        ["checkout", "login", "search"]
    );
    // A restore given no time at all reads nothing, says so and counts it.
    let hurried = KState {
        restore_timeout: Duration::from_micros(1),
        ..ks.clone()
    };
    let cut = changelog::read(&kafka, &hurried, &[0], &tel).expect("a cut-short read");
    assert!(!cut.complete);
    assert_eq!(tel.kafka.state_refused[2].get(), 1);
    let mut b = Owner::new(&cfg);
    let restored = changelog::restore(
        &read,
        &mut b.slo,
        &mut b.incidents,
        &mut b.deployments,
        &tel,
    );
    assert_eq!(restored, 2, "checkout and login; search refused");
    assert_eq!(
        tel.kafka
            .state_refused
            .iter()
            .map(|c| c.get())
            .collect::<Vec<_>>(),
        [0, 1, 1, 0],
        "too_large 0, invalid 1 (search), restore_timeout 1 (the hurried read), revoked 0"
    );
    // Bit for bit the first owner's state.
    assert_eq!(text(&b, "checkout"), expected_checkout);
    assert_eq!(text(&b, "login"), expected_login);

    // The next tick, 10 s later with no new traffic, derives the same figures: the budget
    // carries on (-19 and 0.5) and the incident stays open with its start, not reopened.
    let later = now + 10 * S;
    let quiet = snap(&journeys, &[]);
    b.slo.update(&quiet, &journeys, later);
    assert!(
        !b.incidents.update(&b.slo, &quiet, later),
        "nothing opened or closed"
    );
    assert!(
        (b.budget("checkout") - -19.0).abs() < 1e-9,
        "{}",
        b.budget("checkout")
    );
    assert!(
        (b.budget("login") - 0.5).abs() < 1e-9,
        "{}",
        b.budget("login")
    );
    let list = b.incidents.incidents();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].journey.as_str(),
            list[0].start_unix_nano,
            list[0].end_unix_nano
        ),
        ("checkout", now, None)
    );
    let stats = b.incidents.stats();
    assert_eq!(
        stats
            .iter()
            .map(|s| (s.journey.as_str(), s.open, s.total))
            .collect::<Vec<_>>(),
        [("checkout", true, 1)]
    );
}

/// A journey's figures in one 5m window: `requests`, `errors`, its score.
fn view(journey: &str, weight: f64, requests: u64, errors: u64, score: f64) -> JourneyView {
    JourneyView {
        journey: journey.into(),
        weight,
        windows: vec![WindowView {
            window: "5m".into(),
            requests: from_requests(requests),
            errors: from_requests(errors),
            score: Some(score),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn owner_view(at: u64, journeys: Vec<JourneyView>) -> ScoreView {
    ScoreView {
        time_unix_nano: at,
        definition_version: "v1".into(),
        windows: vec!["5m".into()],
        journeys,
        ..Default::default()
    }
}

/// Waits until `store` holds `n` journeys fresh at `now`.
fn wait_for(store: &SnapshotStore, now: u64, n: usize) -> Vec<JourneySnapshot> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = store.live(now);
        if live.len() >= n || Instant::now() > deadline {
            return live;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_instance_reads_all_owners_snapshots_and_scores_all_journeys() {
    let k = shared();
    let cfg = config(k);
    let kafka = receiver(&cfg);
    let ks = state("snapshots");
    // Three partitions: the reader, in no group, reads them all.
    k.create_topic(&ks.snapshots_topic, 3);
    let now = cerflow::clock::now_unix_ns();
    // The two owners of `publish_two_owners`, and search (weight 1, score 0.5) whose
    // snapshot is 5 min old: past the 2 min ttl, its owner gone.
    let two_owners = publish_two_owners(&kafka, &ks, now);
    let (one, two) = (vec![two_owners[0].clone()], vec![two_owners[1].clone()]);
    let gone = snapshots::of_view(
        &owner_view(now - 300 * S, vec![view("search", 1.0, 10, 5, 0.5)]),
        "owner-3",
    );
    let publisher =
        SnapshotPublisher::new(&kafka, &ks, Arc::new(Telemetry::default())).expect("publisher");
    assert_eq!(publisher.publish(&gone), 1);
    publisher.flush(Duration::from_secs(30)).expect("delivered");

    // Two instances read the topic; each holds every live journey with the owners' figures.
    let mut views = Vec::new();
    for _ in 0..2 {
        let tel = Arc::new(Telemetry::default());
        let store = Arc::new(SnapshotStore::new(&ks, tel.clone()));
        let _reader =
            snapshots::start_reader(&kafka, &ks, store.clone(), tel.clone()).expect("reader");
        // Wait for all three to arrive (search is read, then aged out by `live`).
        let deadline = Instant::now() + Duration::from_secs(60);
        while tel.kafka.snapshots_held.get() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let live = wait_for(&store, now, 2);
        assert_eq!(
            live.iter()
                .map(|s| (s.journey.as_str(), s.instance.as_str()))
                .collect::<Vec<_>>(),
            [("checkout", "owner-1"), ("login", "owner-2")]
        );
        assert_eq!(live[0], one[0]);
        assert_eq!(live[1], two[0]);
        // search was older than the ttl: dropped once, counted.
        assert_eq!(tel.kafka.snapshots_dropped[0].get(), 1);
        assert_eq!(tel.kafka.snapshots_held.get(), 2);
        let all = snapshots::all_view(&live, &cfg.score);
        views.push(all);
    }
    // The overall score by weight: (3 x 0.9 + 1 x 1.0) / (3 + 1) = 3.7 / 4 = 0.925.
    let overall = views[0].overall[0].score.expect("an overall score");
    assert!((overall - 0.925).abs() < 1e-12, "{overall}");
    assert_eq!(views[0], views[1], "both instances answer alike");
    assert_eq!(
        views[0].journeys,
        [one[0].views[0].clone(), two[0].views[0].clone()]
    );

    // A bounded store: one journey only; the second is dropped as full, counted.
    let tel = Arc::new(Telemetry::default());
    let small = SnapshotStore::new(
        &KState {
            max_snapshots: 1,
            ..ks.clone()
        },
        tel.clone(),
    );
    small.insert(one[0].clone());
    small.insert(two[0].clone());
    assert_eq!(small.live(now).len(), 1);
    assert_eq!(tel.kafka.snapshots_dropped[1].get(), 1);
}

/// The snapshots of the two owners of the tests: checkout (weight 3: 1000 requests, 10
/// failed, score 0.9) by owner-1 and login (weight 1: 500 requests, score 1.0) by owner-2,
/// evaluated at `at`, published to `ks.snapshots_topic`.
fn publish_two_owners(kafka: &KafkaReceiver, ks: &KState, at: u64) -> Vec<JourneySnapshot> {
    let mut snaps = snapshots::of_view(
        &owner_view(at, vec![view("checkout", 3.0, 1000, 10, 0.9)]),
        "owner-1",
    );
    snaps.extend(snapshots::of_view(
        &owner_view(at, vec![view("login", 1.0, 500, 0, 1.0)]),
        "owner-2",
    ));
    let publisher =
        SnapshotPublisher::new(kafka, ks, Arc::new(Telemetry::default())).expect("publisher");
    assert_eq!(publisher.publish(&snaps), 2);
    publisher.flush(Duration::from_secs(30)).expect("delivered");
    snaps
}

/// A running stage-2 cerflow that owns nothing answers `scope=all` for both journeys with
/// the owners' figures and the overall score (3 x 0.9 + 1 x 1.0) / 4 = 0.925, and shows
/// the 2 snapshots it holds on /metrics.
#[test]
fn a_running_instance_answers_scope_all_from_the_owners_snapshots() {
    let k = shared();
    let ks = KState {
        changelog_topic: "api-changelog".into(),
        snapshots_topic: "api-snapshots".into(),
        ..KState::default()
    };
    k.create_topic("api-spans", 1);
    k.create_topic("api-aggregates", 1);
    k.create_topic(&ks.snapshots_topic, 2);
    let kafka = receiver(&config(k));
    let now = cerflow::clock::now_unix_ns();
    let snaps = publish_two_owners(&kafka, &ks, now);

    let bootstrap = k.bootstrap();
    let c = Cerflow::start(move |p: &Ports| {
        let yaml = format!(
            "{}pipeline:\n  evaluation_interval: 200ms\njourneys:\n  - name: checkout\n    match: {{ span_name: c }}\n",
            p.listeners_yaml("")
        );
        with_kafka_receiver(
            &yaml,
            &bootstrap,
            "api-spans",
            "api",
            "    aggregates:\n      topic: api-aggregates\n      instance: reader\n      changelog_topic: api-changelog\n      snapshots_topic: api-snapshots\n",
        )
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let v = c.get_json("/api/v1/scores?scope=all");
        let n = v["journeys"].as_array().map_or(0, Vec::len);
        if n == 2 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let journeys = all["journeys"].as_array().expect("journeys");
    let names: Vec<&str> = journeys
        .iter()
        .filter_map(|j| j["journey"].as_str())
        .collect();
    assert_eq!(names, ["checkout", "login"], "{all}");
    // The owners' entries, as they published them.
    for (got, snap) in journeys.iter().zip(&snaps) {
        assert_eq!(got, &serde_json::to_value(&snap.views[0]).expect("json"));
    }
    assert_eq!(journeys[0]["windows"][0]["requests"], 1000.0);
    assert_eq!(journeys[0]["windows"][0]["errors"], 10.0);
    let overall = all["overall"][0]["score"]
        .as_f64()
        .expect("an overall score");
    assert!((overall - 0.925).abs() < 1e-12, "{overall}");
    // A filter still applies: login alone.
    let login = c.get_json("/api/v1/scores?scope=all&journey=login");
    assert_eq!(login["journeys"].as_array().map(Vec::len), Some(1));
    assert_eq!(login["journeys"][0]["journey"], "login");
    // An unknown scope and a cohort filter with scope=all are refused with the reason.
    assert_eq!(
        c.get_json("/api/v1/scores?scope=every")["error"],
        "unknown scope \"every\" (use own or all)"
    );
    assert_eq!(
        c.get_json("/api/v1/scores?scope=all&cohort=region:eu")["error"],
        "a cohort filter is not supported with scope=all"
    );
    c.wait_for("cerflow_kafka_snapshots", &[], 2.0);

    // The gRPC API answers alike: SCOPE_ALL gives the owners' figures and the same
    // overall 0.925, with no one instance named; SCOPE_OWN names this instance, which
    // owns no journey.
    use cerflow::proto::{GetScoresRequest, Scope};
    let req = |scope: Scope, journeys: &[&str]| GetScoresRequest {
        journeys: journeys.iter().map(|j| j.to_string()).collect(),
        scope: scope as i32,
        ..Default::default()
    };
    let all = c.try_grpc_scores(req(Scope::All, &[])).expect("scope all");
    assert_eq!(all.instance, None);
    let figures: Vec<_> = all
        .journeys
        .iter()
        .map(|j| {
            let w = &j.windows[0];
            (
                j.journey.as_str(),
                j.weight,
                w.window.as_str(),
                w.requests,
                w.errors,
                w.score,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            ("checkout", 3.0, "5m", 1000, 10, Some(0.9)),
            ("login", 1.0, "5m", 500, 0, Some(1.0))
        ]
    );
    let overall = all.overall[0].score.expect("an overall score");
    assert!((overall - 0.925).abs() < 1e-12, "{overall}");
    let login = c
        .try_grpc_scores(req(Scope::All, &["login"]))
        .expect("login");
    assert_eq!(login.journeys.len(), 1);
    assert_eq!(login.journeys[0].journey, "login");
    let own = c.try_grpc_scores(req(Scope::Own, &[])).expect("scope own");
    assert_eq!(own.instance.as_deref(), Some("reader"));
    assert_eq!(own.journeys.len(), 0, "{own:?}");
    let mut cohort = req(Scope::All, &[]);
    cohort.cohort.insert("region".into(), "eu".into());
    let e = c.try_grpc_scores(cohort).expect_err("a cohort filter");
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::InvalidArgument,
            "a cohort filter is not supported with scope=all"
        )
    );
}

/// A running owner writes its journey's changelog record and snapshot at its ticks: 40
/// requests of 5 spans (200 checkout requests; the first span of every fourth request
/// failed: 10 errors) through the spans topic, stage 2 and the owners' group. Its
/// snapshot, read back by its own `scope=all`, has the figures of its own score API; its
/// changelog record, restored into a fresh tracker, gives its budget: 10 / 200 = 0.05
/// against the default 99.9% (a budget of 0.001): burn 50, 1 - 50 = -49 left.
#[test]
fn a_running_owner_writes_its_journeys_changelog_record_and_snapshot() {
    use common::otlp::{body, checkout_spans, failed, traces};
    let k = shared();
    let ks = KState {
        changelog_topic: "own-changelog".into(),
        snapshots_topic: "own-snapshots".into(),
        ..KState::default()
    };
    k.create_topic("own-spans", 1);
    k.create_topic("own-aggregates", 1);
    let cfg = Config::parse(
        &format!(
            "receivers:\n  kafka:\n    brokers: [{}]\njourneys:\n  - name: checkout\n    match:\n      span_name: POST /checkout\n",
            k.bootstrap()
        ),
        "t",
        &|_| None,
    )
    .expect("config");
    let kafka = receiver(&cfg);
    // cerflow makes the state topics itself, compacted, as many partitions as the
    // aggregates topic.
    let bootstrap = k.bootstrap();
    let c = Cerflow::start(move |p: &Ports| {
        let yaml = format!(
            "{}pipeline:\n  evaluation_interval: 200ms\njourneys:\n  - name: checkout\n    match:\n      span_name: POST /checkout\n",
            p.listeners_yaml("")
        );
        with_kafka_receiver(
            &yaml,
            &bootstrap,
            "own-spans",
            "own",
            "    aggregates:\n      topic: own-aggregates\n      instance: owner-a\n      changelog_topic: own-changelog\n      snapshots_topic: own-snapshots\n",
        )
    });
    let producer = k.producer();
    for i in 0..40u64 {
        let mut spans = checkout_spans(5, i * 5, 20);
        if i % 4 == 0 {
            spans[0] = failed(spans[0].clone());
        }
        let key = spans[0].trace_id.clone();
        producer.send("own-spans", &key, &body(&traces("shop-api", spans)));
    }
    producer.flush();
    let deadline = Instant::now() + Duration::from_secs(120);
    let all = loop {
        let v = c.get_json("/api/v1/scores?scope=all");
        let w = &v["journeys"][0]["windows"][0];
        if (w["requests"] == 200.0 && w["errors"] == 10.0) || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let from_snapshot = &all["journeys"][0];
    assert_eq!(from_snapshot["journey"], "checkout", "{all}");
    assert_eq!(from_snapshot["windows"][0]["requests"], 200.0, "{all}");
    assert_eq!(from_snapshot["windows"][0]["errors"], 10.0, "{all}");
    let own = c.get_json("/api/v1/scores");
    let budget = own["journeys"][0]["budget_remaining"]["availability"]
        .as_f64()
        .expect("a budget");
    assert!((budget - -49.0).abs() < 1e-9, "{own}");
    assert_eq!(
        from_snapshot["budget_remaining"],
        own["journeys"][0]["budget_remaining"]
    );
    assert_eq!(own["instance"], "owner-a");
    // Over gRPC: the owner names itself with its own scope, and both scopes give the
    // 200 requests and 10 errors in the 1h window (a slow broker cannot age them out).
    use cerflow::proto::{GetScoresRequest, Scope};
    for (scope, instance) in [(Scope::Own, Some("owner-a")), (Scope::All, None)] {
        let snap = c
            .try_grpc_scores(GetScoresRequest {
                journeys: vec!["checkout".into()],
                window: "1h".into(),
                scope: scope as i32,
                ..Default::default()
            })
            .expect("scores");
        assert_eq!(snap.instance.as_deref(), instance, "{scope:?}");
        let checkout = &snap.journeys[0];
        assert_eq!(checkout.journey, "checkout");
        let w: Vec<_> = checkout
            .windows
            .iter()
            .map(|w| (w.window.as_str(), w.requests, w.errors))
            .collect();
        assert_eq!(w, [("1h", 200, 10)], "{scope:?}");
        assert!(
            (checkout.budget_remaining["availability"] - -49.0).abs() < 1e-9,
            "{scope:?}"
        );
    }

    for t in [&ks.changelog_topic, &ks.snapshots_topic] {
        assert_eq!(
            k.topic_config(t, "cleanup.policy").as_deref(),
            Some("compact")
        );
    }
    let tel = Telemetry::default();
    let started = Instant::now();
    let read = changelog::read(&kafka, &ks, &[0], &tel).expect("changelog read");
    assert!(
        read.complete,
        "after {:?}: {:?}, refused {:?}, errors {}",
        started.elapsed(),
        read.records.keys().collect::<Vec<_>>(),
        tel.kafka
            .state_refused
            .iter()
            .map(|c| c.get())
            .collect::<Vec<_>>(),
        tel.kafka.errors_reported.get()
    );
    assert_eq!(read.records.keys().collect::<Vec<_>>(), ["checkout"]);
    let mut b = Owner::new(&cfg);
    assert_eq!(
        changelog::restore(
            &read,
            &mut b.slo,
            &mut b.incidents,
            &mut b.deployments,
            &tel
        ),
        1
    );
    let journeys = Journeys::new(&cfg);
    b.slo.update(
        &snap(&journeys, &[]),
        &journeys,
        cerflow::clock::now_unix_ns(),
    );
    assert!(
        (b.budget("checkout") - -49.0).abs() < 1e-9,
        "{}",
        b.budget("checkout")
    );
    assert_eq!(b.budget("checkout"), budget);
    c.wait_for("cerflow_kafka_snapshots", &[], 1.0);
}

/// A running owner of the `{prefix}-aggregates` partition with one checkout journey
/// (the default 99.9% objective; incidents open on page alerts).
fn start_owner(k: &Kafka, prefix: &str, instance: &str) -> Cerflow {
    start_owner_with(k, prefix, instance, "")
}

/// [`start_owner`] with more `receivers.kafka.aggregates` settings (indented lines).
fn start_owner_with(k: &Kafka, prefix: &str, instance: &str, more: &str) -> Cerflow {
    let bootstrap = k.bootstrap();
    let (prefix, instance, more) = (prefix.to_string(), instance.to_string(), more.to_string());
    Cerflow::start(move |p: &Ports| {
        let yaml = format!(
            "{}pipeline:\n  evaluation_interval: 200ms\njourneys:\n  - name: checkout\n    match:\n      span_name: POST /checkout\n",
            p.listeners_yaml("")
        );
        with_kafka_receiver(
            &yaml,
            &bootstrap,
            &format!("{prefix}-spans"),
            &prefix,
            &format!(
                "    aggregates:\n      topic: {prefix}-aggregates\n      instance: {instance}\n      changelog_topic: {prefix}-changelog\n      snapshots_topic: {prefix}-snapshots\n{more}"
            ),
        )
    })
}

/// The owner's own score API once its checkout window holds `requests` and `errors`.
fn owned_figures(c: &Cerflow, requests: f64, errors: f64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = c.get_json("/api/v1/scores");
        let w = &v["journeys"][0]["windows"][0];
        if (w["requests"] == requests && w["errors"] == errors) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A new owner carries on the old owner's incident: owner A derives, from 200 checkout
/// requests of which 10 failed (the first span of every fourth of 40 requests of 5
/// spans), an error ratio of 10 / 200 = 0.05 against the default 99.9% objective: burn
/// 0.05 / 0.001 = 50 on every window (above the page rate 14.4), so the page alert fires
/// and an incident opens; budget 1 - 50 = -49. A stops; B is given the aggregates
/// partition, re-reads its partials (200 / 10 again, the same -49: the period is rebuilt
/// from the re-read, not restored on top, which would give 400 / 20 and 1 - 100 = -99)
/// and restores the incident from A's changelog record: the same start, still open,
/// `cer_journey_incidents_total` 1 (not reopened: 2). A, stopping, hands the journey over
/// rather than closing its incident.
#[test]
fn a_new_owner_carries_on_the_old_owners_open_incident() {
    use common::otlp::{body, checkout_spans, failed, traces};
    let k = shared();
    k.create_topic("handover-spans", 1);
    k.create_topic("handover-aggregates", 1);
    let mut a = start_owner(k, "handover", "owner-a");
    let producer = k.producer();
    for i in 0..40u64 {
        let mut spans = checkout_spans(5, i * 5, 20);
        if i % 4 == 0 {
            spans[0] = failed(spans[0].clone());
        }
        let key = spans[0].trace_id.clone();
        producer.send("handover-spans", &key, &body(&traces("shop-api", spans)));
    }
    producer.flush();
    let at_a = owned_figures(&a, 200.0, 10.0);
    assert_eq!(
        at_a["journeys"][0]["windows"][0]["requests"], 200.0,
        "{at_a}"
    );
    assert_eq!(at_a["journeys"][0]["windows"][0]["errors"], 10.0, "{at_a}");
    let budget_a = at_a["journeys"][0]["budget_remaining"]["availability"]
        .as_f64()
        .expect("a budget");
    assert!((budget_a - -49.0).abs() < 1e-9, "{at_a}");
    // The incident's record is written at the tick that opened it, before that tick is
    // published; stopping A flushes it.
    a.wait_for(
        "cer_journey_incident_open",
        &[("instance", "owner-a"), ("journey", "checkout")],
        1.0,
    );
    let incidents_a = a.get_json("/api/v1/incidents");
    let list = incidents_a["incidents"].as_array().expect("incidents");
    assert_eq!(list.len(), 1, "{incidents_a}");
    let start = list[0]["start_unix_nano"].as_u64().expect("a start");
    assert!(list[0]["end_unix_nano"].is_null(), "{incidents_a}");
    assert_eq!(
        a.scrape().value(
            "cer_journey_incidents_total",
            &[("instance", "owner-a"), ("journey", "checkout")]
        ),
        1.0
    );
    a.terminate();
    // Stopping, A left the owners' group and so gave up checkout's partition: it hands
    // the journey over (one line, with its 1 open incident) and closes nothing, since
    // the incident goes on at the next owner.
    let logs_a = a.logs();
    assert!(!logs_a.contains("An incident closed"), "{logs_a}");
    let handed: Vec<&str> = logs_a
        .lines()
        .filter(|l| l.contains("Journeys handed over"))
        .collect();
    assert_eq!(handed.len(), 1, "{logs_a}");
    assert!(
        handed[0].contains("journeys=1") && handed[0].contains("open_incidents=1"),
        "{}",
        handed[0]
    );

    let b = start_owner(k, "handover", "owner-b");
    let at_b = owned_figures(&b, 200.0, 10.0);
    assert_eq!(
        at_b["journeys"][0]["windows"][0]["requests"], 200.0,
        "{at_b}"
    );
    assert_eq!(at_b["journeys"][0]["windows"][0]["errors"], 10.0, "{at_b}");
    assert_eq!(
        at_b["journeys"][0]["budget_remaining"], at_a["journeys"][0]["budget_remaining"],
        "{at_b}"
    );
    // The partition ends in A's last commit marker: the re-read ended there, not at
    // `restore_timeout`.
    assert_eq!(restores_timed_out(&b), 0.0, "{}", b.logs());
    let s = b.wait_for(
        "cer_journey_incident_open",
        &[("instance", "owner-b"), ("journey", "checkout")],
        1.0,
    );
    assert_eq!(
        s.value(
            "cer_journey_incidents_total",
            &[("instance", "owner-b"), ("journey", "checkout")]
        ),
        1.0,
        "{}",
        b.logs()
    );
    let incidents_b = b.get_json("/api/v1/incidents");
    let list = incidents_b["incidents"].as_array().expect("incidents");
    assert_eq!(list.len(), 1, "{incidents_b}");
    assert_eq!(list[0]["journey"], "checkout");
    assert_eq!(
        list[0]["start_unix_nano"].as_u64(),
        Some(start),
        "{incidents_b}"
    );
    assert!(list[0]["end_unix_nano"].is_null(), "{incidents_b}");
    assert_eq!(
        list[0]["time_to_detect_seconds"],
        incidents_a["incidents"][0]["time_to_detect_seconds"]
    );
    // Still the same after more ticks: not closed by a tick before the re-read.
    std::thread::sleep(Duration::from_secs(1));
    let again = b.get_json("/api/v1/incidents");
    assert_eq!(
        again["incidents"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    assert_eq!(
        again["incidents"][0]["start_unix_nano"].as_u64(),
        Some(start)
    );
    assert!(again["incidents"][0]["end_unix_nano"].is_null(), "{again}");
}

/// Restores cut short by `restore_timeout` on `c` (none expected below).
fn restores_timed_out(c: &Cerflow) -> f64 {
    c.scrape().sum(
        "cerflow_kafka_state_refused_total",
        &[("reason", "restore_timeout")],
    )
}

/// A new owner's re-read ends where the partition ends even when the last offsets are
/// an aborted transaction that `read_committed` never delivers: librdkafka's position
/// moves past its messages and its abort marker, so the owner reports the partition
/// caught up without waiting `restore_timeout` (10 minutes here, beyond every wait of
/// this test: the journey could not be shown otherwise). A publishes 50 requests, 3
/// failed (the first span of requests 0, 4, 8 of 10 x 5 spans) and stops; a producer
/// then writes a copy of every committed partial in a transaction it aborts, the last
/// thing on the partition; B re-reads it: 50 / 3 (not 100 / 6: the aborted copies are
/// not merged), and no restore timed out.
#[test]
fn a_new_owner_re_reads_to_the_end_past_an_aborted_transaction_without_waiting() {
    use common::otlp::{body, checkout_spans, failed, traces};
    let k = shared();
    k.create_topic("aborted-spans", 1);
    k.create_topic("aborted-aggregates", 1);
    let long = "      restore_timeout: 10m\n";
    let mut a = start_owner_with(k, "aborted", "owner-a", long);
    let producer = k.producer();
    for i in 0..10u64 {
        let mut spans = checkout_spans(5, i * 5, 20);
        if i % 4 == 0 {
            spans[0] = failed(spans[0].clone());
        }
        let key = spans[0].trace_id.clone();
        producer.send("aborted-spans", &key, &body(&traces("shop-api", spans)));
    }
    producer.flush();
    let at_a = owned_figures(&a, 50.0, 3.0);
    assert_eq!(
        at_a["journeys"][0]["windows"][0]["requests"], 50.0,
        "{at_a}"
    );
    assert!(a.terminate().success());
    let committed = k.read_committed("aborted-aggregates", 1);
    assert!(!committed.is_empty(), "A published its partials");
    k.abort_transaction("aborted-test", "aborted-aggregates", 0, &committed);
    // Still only A's committed partials for a read_committed reader.
    assert_eq!(k.read_committed("aborted-aggregates", 1), committed);

    let b = start_owner_with(k, "aborted", "owner-b", long);
    let at_b = owned_figures(&b, 50.0, 3.0);
    let w = &at_b["journeys"][0]["windows"][0];
    assert!(w["requests"] == 50.0 && w["errors"] == 3.0, "{at_b}");
    assert_eq!(restores_timed_out(&b), 0.0, "{}", b.logs());
}
