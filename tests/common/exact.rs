//! Figures of one cerflow compared with those of several that shared its input (a
//! Kafka consumer group): every per-journey sample of `/metrics`, keyed by (journey,
//! name, other labels), with every difference reported, not just the first; and the
//! score API's per-journey figures, flattened to the same kind of keys.
//!
//! Recorded counters (`*_total`, and a histogram's `_bucket`, `_count`, `_sum`, of
//! spans) are summed across instances: each instance counts the spans of its
//! partitions. Any other sample (SLIs, quantiles, budgets, alerts, scores, and the
//! counters derived from them: incidents, times to detect and recover, deployments
//! judged) is a figure of the whole journey: only its one owner may export it (stage 2
//! of issue 13), so it must come from exactly one instance. The `instance` label an
//! owner adds is not part of the key.
//!
//! Sums of durations and of order values are f64 in cerflow, added in arrival order, so
//! the same spans in another order (across instances, or in one instance on another
//! run) give sums that differ in the last bits. The spans carry whole nanoseconds and,
//! from the loadgen, whole cents: the true sums are whole numbers of those, and these
//! are compared exactly ([`quantum`]).

use super::process::Cerflow;
use super::scrape::{Labels, Scrape};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Which samples a comparison covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// Counters only: what instances that each record their own partitions' spans
    /// (stage 1) add up to.
    Counters,
    /// Every per-journey sample: counters summed, any other figure from its one owner.
    All,
}

/// (journey, sample name, labels without `journey` and `instance`).
pub type FigureKey = (String, String, Labels);

/// Per-journey samples of one or more instances: per key, each instance's value.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub values: BTreeMap<FigureKey, Vec<(usize, f64)>>,
}

/// Counters derived from a journey's alerts and deployments, not counted from spans:
/// an instance that sees a share of the spans opens its own incidents.
const DERIVED: &[&str] = &[
    "cer_journey_incidents_total",
    "cer_journey_time_to_recovery_seconds",
    "cer_journey_time_to_detect_seconds",
    "cer_deployments_total",
];

/// True for the samples that count spans: summed across instances.
pub fn is_counter(name: &str) -> bool {
    let counts = name.ends_with("_total")
        || name.ends_with("_bucket")
        || name.ends_with("_count")
        || name.ends_with("_sum");
    counts && !DERIVED.iter().any(|d| name.starts_with(d))
}

/// The resolution of the input a sum of f64s is compared at: whole nanoseconds for a
/// duration histogram's `_sum` (in seconds), whole cents for value totals; `None`:
/// compared bit for bit.
pub fn quantum(name: &str) -> Option<f64> {
    if name.ends_with("_seconds_sum") {
        Some(1e-9)
    } else if name.starts_with("cer_journey_value_") || name == "cer_slo_value_lost" {
        Some(0.01)
    } else {
        None
    }
}

/// `a` and `b` are the same figure of `name` (see [`quantum`]).
fn same_figure(name: &str, a: f64, b: f64) -> bool {
    match quantum(name) {
        Some(q) => (a / q).round() == (b / q).round(),
        None => a == b || (a.is_nan() && b.is_nan()),
    }
}

impl Figures {
    /// Both hold the same figures (whatever their values): every journey series of one
    /// has a counterpart in the other.
    pub fn same_keys(&self, other: &Figures) -> bool {
        self.values.len() == other.values.len()
            && self
                .values
                .keys()
                .zip(other.values.keys())
                .all(|(a, b)| a == b)
    }

    /// The samples with a `journey` label of each scrape (instance `i` is `scrapes[i]`),
    /// leaving out the names in `skip` and, with [`Cover::Counters`], all but counters.
    pub fn of(scrapes: &[Scrape], cover: Cover, skip: &[&str]) -> Figures {
        let mut values: BTreeMap<FigureKey, Vec<(usize, f64)>> = BTreeMap::new();
        for (i, s) in scrapes.iter().enumerate() {
            for ((name, labels), v) in &s.samples {
                if skip.contains(&name.as_str()) || (cover == Cover::Counters && !is_counter(name))
                {
                    continue;
                }
                let Some(journey) = labels.iter().find(|(k, _)| k == "journey") else {
                    continue;
                };
                let rest: Labels = labels
                    .iter()
                    .filter(|(k, _)| k != "journey" && k != "instance")
                    .cloned()
                    .collect();
                values
                    .entry((journey.1.clone(), name.clone(), rest))
                    .or_default()
                    .push((i, *v));
            }
        }
        Figures { values }
    }

    /// The figure of `key` across the instances: the sum of a counter, the one value of
    /// any other sample; `Err` says why there is no single figure.
    pub fn figure(&self, key: &FigureKey) -> Result<Option<f64>, String> {
        let Some(vs) = self.values.get(key) else {
            return Ok(None);
        };
        if is_counter(&key.1) {
            return Ok(Some(vs.iter().map(|(_, v)| v).sum()));
        }
        match vs.as_slice() {
            [(_, v)] => Ok(Some(*v)),
            _ => Err(format!(
                "exported by {} instances {:?}: only the journey's owner may",
                vs.len(),
                vs
            )),
        }
    }

    /// The same samples with bit-identical values (NaN equals NaN here).
    pub fn same(&self, other: &Figures) -> bool {
        let bits = |f: &Figures| -> Vec<(FigureKey, Vec<(usize, u64)>)> {
            f.values
                .iter()
                .map(|(k, vs)| {
                    (
                        k.clone(),
                        vs.iter().map(|(i, v)| (*i, v.to_bits())).collect(),
                    )
                })
                .collect()
        };
        bits(self) == bits(other)
    }

    /// Request totals per journey (`cer_journey_requests_total` over every cohort).
    pub fn requests_by_journey(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for ((journey, name, _), vs) in &self.values {
            if name == "cer_journey_requests_total" {
                *out.entry(journey.clone()).or_insert(0.0) +=
                    vs.iter().map(|(_, v)| v).sum::<f64>();
            }
        }
        out
    }
}

fn key_text((journey, name, labels): &FigureKey) -> String {
    let mut s = format!("{journey}: {name}");
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{k}=\"{v}\"");
        }
        s.push('}');
    }
    s
}

/// Every difference between `single` (one instance) and `many` (the group), one line
/// each: a figure that differs, that only one side has (a counter absent on one side
/// counts as 0), or that the group exports more than once. Empty when they agree.
pub fn differences(single: &Figures, many: &Figures) -> Vec<String> {
    let mut keys: Vec<&FigureKey> = single.values.keys().chain(many.values.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let a = single.figure(key);
        let b = many.figure(key);
        let line = match (a, b) {
            (Err(e), _) => format!("{}: the single instance {e}", key_text(key)),
            (_, Err(e)) => format!("{}: {e}", key_text(key)),
            (Ok(a), Ok(b)) => {
                let counter = is_counter(&key.1);
                let (a0, b0) = if counter {
                    (Some(a.unwrap_or(0.0)), Some(b.unwrap_or(0.0)))
                } else {
                    (a, b)
                };
                match (a0, b0) {
                    (Some(x), Some(y)) if same_figure(&key.1, x, y) => continue,
                    (Some(x), Some(y)) => format!("{}: single {x}, group {y}", key_text(key)),
                    (Some(x), None) => format!("{}: single {x}, group has none", key_text(key)),
                    (None, Some(y)) => format!("{}: single has none, group {y}", key_text(key)),
                    (None, None) => continue,
                }
            }
        };
        out.push(line);
    }
    out
}

/// The score API's figures (`/api/v1/scores`): every number of each journey x cohort
/// entry and of each of its windows, keyed by (journey, path, cohort), and the overall
/// score per window under the journey name `(overall)`.
/// Exemplars (trace ids of examples) are left out: which request is kept as an example
/// may differ while every figure agrees.
pub fn score_figures(doc: &serde_json::Value) -> BTreeMap<FigureKey, f64> {
    fn walk(path: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        match v {
            serde_json::Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    out.push((path.to_string(), f));
                }
            }
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k != "exemplars" && k != "journey" && k != "cohort" && k != "window" {
                        walk(&format!("{path}.{k}"), v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    // Windows are named: key them by name, not by position.
                    let name = v
                        .get("window")
                        .and_then(|w| w.as_str())
                        .map_or_else(|| i.to_string(), str::to_string);
                    walk(&format!("{path}[{name}]"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    let mut overall = Vec::new();
    if let Some(o) = doc.get("overall") {
        walk("", o, &mut overall);
    }
    for (path, v) in overall {
        out.insert(("(overall)".to_string(), path, Vec::new()), v);
    }
    let journeys = doc
        .get("journeys")
        .and_then(|j| j.as_array())
        .cloned()
        .unwrap_or_default();
    for j in &journeys {
        let name = j
            .get("journey")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let cohort = j.get("cohort").map_or_else(String::new, |c| c.to_string());
        let mut leaves = Vec::new();
        walk("", j, &mut leaves);
        for (path, v) in leaves {
            out.insert(
                (
                    name.clone(),
                    path,
                    vec![("cohort".to_string(), cohort.clone())],
                ),
                v,
            );
        }
    }
    out
}

/// Every difference between two score documents' per-journey figures, one line each.
pub fn score_differences(single: &serde_json::Value, other: &serde_json::Value) -> Vec<String> {
    let (a, b) = (score_figures(single), score_figures(other));
    let mut keys: Vec<&FigureKey> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (x, y) => Some(format!("{}: single {x:?}, other {y:?}", key_text(k))),
        })
        .collect()
}

/// The per-journey figures of several owners' score documents (stage 2: each answers
/// for the journeys it owns), joined; a figure two documents hold is reported, as is any
/// difference from `single`'s. Paths containing one of `skip` are left out, the overall
/// score too (it is computed over every journey: the owners' snapshots' work).
/// Value sums are f64 and compared in whole cents, like [`quantum`]'s.
pub fn owned_score_differences(
    single: &serde_json::Value,
    owners: &[serde_json::Value],
    skip: &[&str],
) -> Vec<String> {
    let kept = |k: &FigureKey| k.0 != "(overall)" && !skip.iter().any(|s| k.1.contains(s));
    let a: BTreeMap<FigureKey, f64> = score_figures(single)
        .into_iter()
        .filter(|(k, _)| kept(k))
        .collect();
    let mut out = Vec::new();
    let mut b: BTreeMap<FigureKey, f64> = BTreeMap::new();
    for doc in owners {
        for (k, v) in score_figures(doc) {
            if !kept(&k) {
                continue;
            }
            if let Some(old) = b.insert(k.clone(), v) {
                out.push(format!(
                    "{}: answered by two owners ({old} and {v})",
                    key_text(&k)
                ));
            }
        }
    }
    let mut keys: Vec<&FigureKey> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let same = match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if k.1.contains("value") => (x / 0.01).round() == (y / 0.01).round(),
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
        if !same {
            out.push(format!(
                "{}: single {:?}, owners {:?}",
                key_text(k),
                a.get(k),
                b.get(k)
            ));
        }
    }
    out
}

/// The group's members share `total` input partitions, each holding at least one.
pub fn partitions_shared(s: &[Scrape], total: f64) -> bool {
    let p: Vec<f64> = s
        .iter()
        .map(|s| s.value("cerflow_kafka_partitions", &[]))
        .collect();
    p.iter().sum::<f64>() == total && p.iter().all(|&n| n >= 1.0)
}

/// Scrapes every instance until `ok` holds for the list of scrapes (within `limit`);
/// panics with every instance's last scrape.
#[track_caller]
pub fn wait_all(
    cs: &[&Cerflow],
    what: &str,
    limit: Duration,
    ok: impl Fn(&[Scrape]) -> bool,
) -> Vec<Scrape> {
    let deadline = Instant::now() + limit;
    loop {
        let scrapes: Vec<Scrape> = cs.iter().map(|c| c.scrape()).collect();
        if ok(&scrapes) {
            return scrapes;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}:\n{}",
            scrapes
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Scrapes every instance until the figures `cover` selects are the same in two scrapes
/// `settle` apart (trace completion and window closing have caught up); returns them.
#[track_caller]
pub fn wait_settled(
    cs: &[&Cerflow],
    cover: Cover,
    skip: &[&str],
    settle: Duration,
    limit: Duration,
) -> Vec<Scrape> {
    let deadline = Instant::now() + limit;
    let mut last: Option<Figures> = None;
    loop {
        let scrapes: Vec<Scrape> = cs.iter().map(|c| c.scrape()).collect();
        let now = Figures::of(&scrapes, cover, skip);
        if let Some(prev) = &last {
            if prev.same(&now) {
                return scrapes;
            }
            assert!(
                Instant::now() < deadline,
                "figures still moving after {limit:?}:\n{}",
                differences(prev, &now).join("\n")
            );
        }
        last = Some(now);
        std::thread::sleep(settle);
    }
}
