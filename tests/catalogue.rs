//! The metric catalogue is the one list of metrics: the Prometheus exposition shows
//! exactly its metrics (names, kinds, help), the OTLP push exactly those with an OTLP
//! name (with their units and descriptions), and README.md's tables name every one.

use cerflow::catalogue::{self, Kind, Metric};
use cerflow::config::Config;
use cerflow::hist::SparseHist;
use cerflow::journey::Journeys;
use cerflow::pipeline::Pipeline;
use cerflow::published::Shared;
use cerflow::score::{self, Evaluation};
use cerflow::sli::Snapshot;
use cerflow::slo::SloTracker;
use cerflow::snapshot::{
    DependencySnap, DependencyWindow, SelfBlameSnap, SeriesSnap, ShardSnapshot,
};
use cerflow::span_record::{flag, Record};
use cerflow::telemetry::Telemetry;
use cerflow::window::exemplars::Exemplars;
use cerflow::window::{Counts, Coverage, Users, VitalStats, WindowStats};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const S: u64 = 1_000_000_000;

/// A published state in which every metric has at least one sample: one journey with a
/// cohort, requests in both windows, quantiles and coverage, one dependency with a
/// blamed failure and the journey's own.
fn published() -> (Arc<Shared>, Pipeline) {
    let cfg = Config::parse(
        "cohorts:\n  keys: [cloud.region]\njourneys:\n  - name: checkout\n    match: { span_name: x }\n    value: { per_request: 2.5, currency: EUR }\n    experience: { frustration_events: [app.rage_click] }\n",
        "t",
        &|_| None,
    )
    .expect("a valid config");
    let journeys = Arc::new(Journeys::new(&cfg));
    let tel = Arc::new(Telemetry::default());
    // The Kafka receiver's metrics have samples only when it is configured.
    tel.kafka
        .enabled
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Stage 2's (receivers.kafka.aggregates) likewise.
    tel.kafka
        .aggregates
        .store(true, std::sync::atomic::Ordering::Relaxed);
    cerflow::internal_events::InternalEvent::emit(
        cerflow::internal_events::InvalidValue {
            journey: &Arc::from("checkout"),
        },
        &tel,
    );
    let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
    let counts = Counts::whole(4, 1, 1, 0);
    let windows = cfg.windows.sizes.clone();
    let mut users = Users::default();
    users.record(7, flag::USER | flag::ERROR);
    let series = SeriesSnap {
        journey: journeys.get(0).expect("the configured journey"),
        from_metrics: false,
        cohort: Arc::from(vec![Box::<str>::from("eu")]),
        overflow: false,
        totals: counts,
        duration_sum_s: 1.0,
        value_total: 10.0,
        value_failed: 2.5,
        buckets: vec![4 * cerflow::sampling::UNIT; cfg.histogram_buckets.len() + 1],
        created_unix_ns: S,
        windows: windows
            .iter()
            .map(|_| WindowStats {
                counts,
                users: users.clone(),
                value_at_risk: 2.5,
                quantiles_s: vec![Some(0.1); 4],
                start_ns: 0,
                vitals: VitalStats {
                    good: 3,
                    all: 4,
                    quantiles: std::array::from_fn(|_| vec![Some(0.5); 3]),
                },
            })
            .collect(),
        frustrations: vec![2],
        exemplars: Some(Box::new(exemplars(cfg.histogram_buckets.len() + 1))),
    };
    let journey = journeys.get(0).expect("the configured journey");
    let mut hist = SparseHist::default();
    hist.record(20_000);
    let dependency = DependencySnap {
        journey: journey.clone(),
        name: Arc::from("payments"),
        overflow: false,
        totals: counts,
        duration_sum_s: 0.08,
        buckets: vec![4 * cerflow::sampling::UNIT; cfg.histogram_buckets.len() + 1],
        created_unix_ns: S,
        blamed_total: 1,
        windows: windows
            .iter()
            .map(|_| DependencyWindow {
                counts,
                hists: vec![hist.clone()],
                blamed: 1,
            })
            .collect(),
    };
    let self_blame = SelfBlameSnap {
        journey,
        total: 2,
        created_unix_ns: S,
        windows: vec![2; windows.len()],
    };
    let shard = ShardSnapshot {
        dependencies: vec![dependency],
        self_blame: vec![self_blame],
        trace_bytes: 64,
        series: vec![series],
        coverage: vec![
            Coverage {
                entry: 2,
                matched: 1
            };
            windows.len()
        ],
        state_bytes: 100,
        versions: Vec::new(),
    };
    let n_windows = windows.len();
    let mut snap = Snapshot::merge(100 * S, windows, vec![shard]);
    // The journey's coverage, as if it had metric inputs.
    snap.journey_coverage = vec![cerflow::sli::JourneyCoverage {
        journey: journeys.get(0).expect("the configured journey"),
        windows: vec![Some(0.5); n_windows],
    }];
    // One journey with one signal, with data in every window.
    snap.operations = vec![cerflow::signals::JourneyOps {
        journey: journeys.get(0).expect("the configured journey"),
        windows: vec![cerflow::signals::SliceCounts { slices: 4, bad: 1 }; n_windows],
        signals: vec![cerflow::signals::SignalSnap {
            name: Arc::from("queue.depth"),
            last: vec![Some(12.0); n_windows],
            ok: Some(true),
        }],
        closed: cerflow::signals::SliceCounts { slices: 4, bad: 1 },
    }];
    let outcomes = cerflow::completion::Outcomes {
        completed: 2,
        abandoned: 1,
    };
    snap.journey_attempts = vec![cerflow::completion::AttemptStats {
        journey: Arc::from("checkout"),
        totals: outcomes,
        created_unix_ns: S,
        windows: vec![outcomes; n_windows],
    }];
    let mut tracker = SloTracker::new(&cfg.slo);
    tracker.update(&snap, &journeys, 100 * S);
    let mut eval: Evaluation = score::evaluate(&snap, &tracker, &journeys, &[], &cfg.score, "v1");
    eval.incident_stats = vec![cerflow::incidents::IncidentStats {
        journey: "checkout".into(),
        open: false,
        total: 1,
        recovery_buckets: vec![1; cerflow::incidents::RECOVERY_BUCKETS_S.len() + 1],
        recovery_sum_s: 120.0,
        recovery_count: 1,
        detect_buckets: vec![1; cerflow::incidents::RECOVERY_BUCKETS_S.len() + 1],
        detect_sum_s: 30.0,
        detect_count: 1,
    }];
    // One judged deployment: 2.0 after 1.0, regressed.
    let figures = |requests, errors, score| cerflow::deployments::Figures {
        requests,
        errors,
        score: Some(score),
        ..Default::default()
    };
    eval.set_deployments(
        vec![cerflow::deployments::Deployment {
            journey: "checkout".into(),
            version: "2.0".into(),
            previous_version: "1.0".into(),
            result: cerflow::deployments::Outcome::Regressed,
            start_unix_nano: 90 * S,
            end_unix_nano: Some(100 * S),
            figures: figures(100, 30, 0.375),
            previous_figures: figures(100, 0, 1.0),
            baseline: "same_span".into(),
            score_drop: Some(0.625),
        }],
        vec![cerflow::deployments::DeploymentStats {
            journey: "checkout".into(),
            ok: 0,
            regressed: 1,
        }],
        "service.version",
    );
    let shared = Shared {
        snapshot: arc_swap::ArcSwap::from_pointee(snap),
        eval: arc_swap::ArcSwap::from_pointee(eval),
        history: Default::default(),
        ticks: tokio::sync::watch::channel(0).0,
        tel,
        input: pipeline.input(),
        journeys: arc_swap::ArcSwap::new(journeys),
        version: arc_swap::ArcSwap::from_pointee("v1".to_string()),
        histogram_bounds: cfg.histogram_buckets.clone(),
        state_limit_bytes: cfg.limits.max_window_state_bytes,
        ready: std::sync::atomic::AtomicBool::new(true),
        instance_id: "test".into(),
        start_unix_ns: S,
        instance_label: None,
        all_snapshots: Default::default(),
    };
    (Arc::new(shared), pipeline)
}

/// One failed request of 200 ms that ended at 99 s, trace 0xab.., span 0xcd...
fn exemplars(n_buckets: usize) -> Exemplars {
    let mut x = Exemplars::new(n_buckets, 60 * S);
    let r = Record {
        hash: 0,
        journey: 0,
        first_value: 0,
        n_values: 0,
        flags: flag::ERROR,
        end_ns: 99 * S,
        duration_ns: 200_000_000,
        user: 0,
        value: 0.0,
        trace_id: [0xab; 16],
        span_id: [0xcd; 8],
        event: 0,
        has_version: false,
        weight: cerflow::sampling::UNIT,
    };
    // 0.2 s is in the le="0.25" bucket, the 6th of the default bounds (index 5).
    x.record(&r, 5);
    x
}

fn prom_names() -> BTreeSet<(String, String, String)> {
    catalogue::ALL
        .iter()
        .map(|m| {
            (
                m.prom.to_string(),
                m.kind.prom().to_string(),
                m.help.to_string(),
            )
        })
        .collect()
}

#[test]
fn the_exposition_shows_exactly_the_catalogue() {
    let (sh, pipeline) = published();
    let text = cerflow::export::prometheus::render(&sh);
    pipeline.shutdown(Duration::from_secs(5));
    let mut seen = BTreeSet::new();
    let mut helps = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            helps.insert(name.to_string(), help.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let help = helps.get(name).cloned().unwrap_or_default();
            seen.insert((name.to_string(), kind.to_string(), help));
        }
    }
    assert_eq!(seen, prom_names());
    // Every sample belongs to a declared metric that has samples.
    let declared: BTreeSet<String> = catalogue::ALL.iter().map(|m| m.prom.to_string()).collect();
    let mut sampled = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| declared.contains(*b) && !declared.contains(name))
            })
            .unwrap_or(name);
        assert!(declared.contains(base), "{name} is not in the catalogue");
        sampled.insert(base.to_string());
    }
    assert_eq!(
        sampled, declared,
        "every catalogued metric has a sample here"
    );
}

#[test]
fn the_otlp_push_sends_exactly_the_catalogue_metrics_with_an_otlp_name() {
    let (sh, pipeline) = published();
    let snap = sh.snapshot.load();
    let req = cerflow::export::otlp::build_request(&sh, &snap);
    pipeline.shutdown(Duration::from_secs(5));
    let sent: BTreeSet<(String, String, String)> = req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| (m.name.clone(), m.unit.clone(), m.description.clone()))
        .collect();
    let expected: BTreeSet<(String, String, String)> = catalogue::ALL
        .iter()
        .filter_map(|m: &Metric| {
            m.otlp
                .map(|n| (n.to_string(), m.unit.to_string(), m.help.to_string()))
        })
        .collect();
    assert_eq!(
        expected.len(),
        35,
        "the OTLP table of README.md has 35 metrics"
    );
    assert_eq!(sent, expected);
}

/// Every name in the README's metric tables, with `a.b.c`, `.d` spelled out as `a.b.d`.
fn readme_table_names() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let mut names = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split('|').nth(1).unwrap_or_default();
        let mut last_full: Option<String> = None;
        for part in first_cell.split('`').skip(1).step_by(2) {
            let name = match (part.strip_prefix('.'), &last_full) {
                (Some(tail), Some(full)) => {
                    let stem = full.rsplit_once('.').map_or(full.as_str(), |(s, _)| s);
                    format!("{stem}.{tail}")
                }
                _ => {
                    last_full = Some(part.to_string());
                    part.to_string()
                }
            };
            names.insert(name);
        }
    }
    names
}

/// `cer_x_total`, `cerflow_x`, `cer.journey.x`: names, not files or wildcards.
fn looks_like_a_metric(n: &str) -> bool {
    let body = n
        .strip_prefix("cerflow_")
        .or_else(|| n.strip_prefix("cer_"))
        .or_else(|| n.strip_prefix("cer."));
    body.is_some_and(|b| {
        !b.is_empty()
            && b.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
            && !b.ends_with(".json")
    })
}

#[test]
fn the_readme_tables_list_every_catalogue_metric() {
    let names = readme_table_names();
    let missing: Vec<&str> = catalogue::ALL
        .iter()
        .flat_map(|m| std::iter::once(m.prom).chain(m.otlp))
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(missing.is_empty(), "README.md's tables miss {missing:?}");
    // And the tables name no metric the catalogue lacks.
    let known: BTreeSet<&str> = catalogue::ALL
        .iter()
        .flat_map(|m| std::iter::once(m.prom).chain(m.otlp))
        .collect();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| looks_like_a_metric(n) && !known.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "README.md lists uncatalogued {unknown:?}"
    );
}

#[test]
fn histograms_and_counters_follow_the_naming_rules() {
    for m in catalogue::ALL {
        match m.kind {
            Kind::Counter => assert!(m.prom.ends_with("_total"), "{}", m.prom),
            Kind::Histogram => assert!(m.prom.ends_with("_seconds"), "{}", m.prom),
            Kind::Gauge => assert!(!m.prom.ends_with("_total"), "{}", m.prom),
        }
    }
    let names: BTreeSet<&str> = catalogue::ALL.iter().map(|m| m.prom).collect();
    assert_eq!(
        names.len(),
        catalogue::ALL.len(),
        "a metric is declared twice"
    );
}

#[test]
fn openmetrics_names_counter_families_without_total_adds_exemplars_and_ends_with_eof() {
    let (sh, pipeline) = published();
    let text = cerflow::export::prometheus::render(&sh);
    let om = cerflow::export::prometheus::render_as(&sh, true);
    pipeline.shutdown(Duration::from_secs(5));
    assert!(!text.contains("# {"), "the text format has no exemplars");
    assert!(!text.contains("# EOF"));
    assert_eq!(om.lines().last(), Some("# EOF"));
    // Families: a counter's is its name without `_total`; every other is unchanged.
    let families: BTreeSet<(String, String)> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|r| {
            let (n, k) = r.split_once(' ').expect("# TYPE name kind");
            (n.to_string(), k.to_string())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = catalogue::ALL
        .iter()
        .map(|m| {
            let name = match m.kind {
                Kind::Counter => m
                    .prom
                    .strip_suffix("_total")
                    .expect("counters end in _total"),
                _ => m.prom,
            };
            (name.to_string(), m.kind.prom().to_string())
        })
        .collect();
    assert_eq!(families, expected);
    // The samples are the text format's, some with an exemplar after ` # `.
    let samples = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" # ").next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(samples(&om), samples(&text));
    let trace = "ab".repeat(16);
    let span = "cd".repeat(8);
    let with_exemplar: Vec<&str> = om.lines().filter(|l| l.contains(" # {")).collect();
    // The failure counts 1 on the counter; on the histogram its value is its 0.2 s. The
    // series' buckets hold 4 each, so le="0.25" (the 6th) is cumulative 6 x 4 = 24.
    assert_eq!(
        with_exemplar,
        vec![
            format!("cer_journey_errors_total{{journey=\"checkout\",cloud_region=\"eu\"}} 1 # {{trace_id=\"{trace}\",span_id=\"{span}\"}} 1 99.000000000"),
            format!("cer_journey_duration_seconds_bucket{{journey=\"checkout\",cloud_region=\"eu\",le=\"0.25\"}} 24 # {{trace_id=\"{trace}\",span_id=\"{span}\"}} 0.2 99.000000000"),
        ]
    );
}
