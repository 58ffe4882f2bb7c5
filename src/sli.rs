//! Derive: SLIs from window counts, and the snapshot every exporter reads.
//!
//! A window with no requests has no ratio at all: it is left out of the export rather
//! than shown as 1 (which hides an outage of traffic) or NaN (which poisons queries).

use crate::journey::JourneyInfo;
use crate::signals::{JourneyOps, SliceCounts};
use crate::snapshot::{DependencySnap, SelfBlameSnap, SeriesSnap, ShardSnapshot, QUANTILES};
use crate::window::{Counts, Coverage, Users};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Distinct users of one window, and those with at least one bad request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserCounts {
    pub users: u64,
    pub affected: u64,
}

impl UserCounts {
    pub fn of(u: &Users) -> UserCounts {
        UserCounts {
            users: u.all.count(),
            affected: u.affected.count(),
        }
    }

    /// Affected over users; `None` with no users, like a ratio with no requests.
    pub fn affected_ratio(&self) -> Option<f64> {
        (self.users > 0).then(|| self.affected as f64 / self.users as f64)
    }
}

/// Where a row of user figures belongs: one series, or a journey across its cohorts.
#[derive(Debug, Clone, Copy)]
pub enum UserRow<'a> {
    Series(&'a SeriesSnap),
    Journey(&'a JourneyInfo),
}

/// A journey with cohorts, across them: the merge of the cohorts' sketches, so one
/// user in two cohorts is one user.
#[derive(Debug, Clone)]
pub struct JourneyUsers {
    pub journey: Arc<JourneyInfo>,
    pub windows: Vec<UserCounts>,
}

/// The SLIs of one window. `None` where the window had no requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sli {
    pub availability: Option<f64>,
    pub latency: Option<f64>,
    pub correctness: Option<f64>,
    /// Good web vital measurements / all of them; `None` without any.
    pub experience: Option<f64>,
    pub requests_per_second: f64,
}

pub fn good_ratio(bad: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| 1.0 - bad as f64 / total as f64)
}

pub fn derive(c: &Counts, window: Duration) -> Sli {
    Sli {
        availability: good_ratio(c.errors, c.requests),
        latency: good_ratio(c.slow, c.requests),
        correctness: good_ratio(c.incorrect, c.requests),
        experience: None,
        requests_per_second: crate::sampling::to_requests(c.requests) / window.as_secs_f64(),
    }
}

/// The state of every series at one evaluation tick.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub at_unix_ns: u64,
    pub windows: Vec<Duration>,
    pub series: Vec<SeriesSnap>,
    /// Entry-point spans seen and matched, per window.
    pub coverage: Vec<Coverage>,
    /// Per journey with metric inputs and a span rule: spans seen over requests counted
    /// by its metrics, per window (`None` while the metrics counted none); sorted.
    pub journey_coverage: Vec<JourneyCoverage>,
    /// Bytes held by window state, summed over workers.
    pub state_bytes: usize,
    /// The SLIs of `series[i]` per window, derived once here so exporters only format.
    pub slis: Vec<Vec<Sli>>,
    /// The users of `series[i]` per window.
    pub users: Vec<Vec<UserCounts>>,
    /// Journey-level users of the journeys that have cohorts, by journey name.
    pub journey_users: Vec<JourneyUsers>,
    /// Value counters of the journeys with a value rule: the sum of their series.
    pub journey_values: Vec<JourneyValue>,
    /// Frustration counters of the journeys with frustration events: the sum of their
    /// series, by the journey's event index.
    pub journey_frustrations: Vec<JourneyValue>,
    /// Attempt outcomes of the journeys with `completion`, set by the deriver.
    pub journey_attempts: Vec<crate::completion::AttemptStats>,
    /// The operations of the journeys with signals, in config order.
    pub operations: Vec<JourneyOps>,
    /// Journey x dependency series from assembled traces, merged over workers, sorted.
    pub dependencies: Vec<DependencySeries>,
    /// Failed journey requests by what they are blamed on, per journey; sorted.
    pub blame: Vec<BlameRow>,
    /// Bytes of spans waiting in the trace buffers, summed over workers.
    pub trace_bytes: usize,
    /// Requests per journey and version, summed over workers, sorted by journey then version.
    pub versions: Vec<crate::snapshot::VersionSnap>,
}

/// One dependency of one journey: calls, failures and latency per window.
#[derive(Debug, Clone)]
pub struct DependencySeries {
    pub journey: Arc<JourneyInfo>,
    pub name: Arc<str>,
    /// The journey's overflow series: dependencies past `dependencies.max_per_journey`.
    pub overflow: bool,
    pub totals: Counts,
    pub duration_sum_s: f64,
    pub buckets: Vec<u64>,
    pub created_unix_ns: u64,
    pub windows: Vec<DependencyStats>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DependencyStats {
    pub counts: Counts,
    pub availability: Option<f64>,
    /// Seconds, in the order of [`QUANTILES`].
    pub quantiles_s: Vec<Option<f64>>,
}

/// Failed requests of a journey blamed on one dependency, or on the journey itself.
#[derive(Debug, Clone)]
pub struct BlameRow {
    pub journey: Arc<JourneyInfo>,
    /// The dependency's name, or [`crate::traces::SELF`].
    pub dependency: Arc<str>,
    pub overflow: bool,
    pub total: u64,
    pub created_unix_ns: u64,
    pub windows: Vec<u64>,
}

/// The real coverage of a journey measured from metrics: its traced share of requests.
#[derive(Debug, Clone)]
pub struct JourneyCoverage {
    pub journey: Arc<JourneyInfo>,
    pub windows: Vec<Option<f64>>,
}

#[derive(Debug, Clone)]
pub struct JourneyValue {
    pub journey: Arc<JourneyInfo>,
    pub total: f64,
    pub failed: f64,
    /// Frustrations by event index (in `journey_frustrations` only).
    pub frustrations: Vec<u64>,
    /// When the oldest of its series began: the counters' start time.
    pub created_unix_ns: u64,
}

impl Snapshot {
    pub fn merge(at_unix_ns: u64, windows: Vec<Duration>, shards: Vec<ShardSnapshot>) -> Snapshot {
        let mut coverage = vec![Coverage::default(); windows.len()];
        let mut series = Vec::new();
        let mut state_bytes = 0;
        let mut trace_bytes = 0;
        let mut deps = Vec::new();
        let mut selfs = Vec::new();
        let mut versions: Vec<crate::snapshot::VersionSnap> = Vec::new();
        for s in shards {
            for (acc, c) in coverage.iter_mut().zip(&s.coverage) {
                acc.add(c);
            }
            state_bytes += s.state_bytes;
            trace_bytes += s.trace_bytes;
            series.extend(s.series);
            deps.extend(s.dependencies);
            selfs.extend(s.self_blame);
            versions.extend(s.versions);
        }
        let (dependencies, blame) = merge_dependencies(deps, selfs, windows.len());
        versions.sort_by(|a, b| (&a.journey.name, &a.version).cmp(&(&b.journey.name, &b.version)));
        // Versions are counted on whichever worker a request's series lives: sum them.
        let mut merged_versions: Vec<crate::snapshot::VersionSnap> = Vec::new();
        for v in versions {
            match merged_versions.last_mut() {
                Some(m) if m.journey.name == v.journey.name && m.version == v.version => {
                    m.counts.add(&v.counts);
                    m.first_seen_ns = m.first_seen_ns.min(v.first_seen_ns);
                    m.last_seen_ns = m.last_seen_ns.max(v.last_seen_ns);
                }
                _ => merged_versions.push(v),
            }
        }
        // Each worker keeps its own overflow series per journey; the export shows one.
        let mut merged: Vec<SeriesSnap> = Vec::with_capacity(series.len());
        for s in series {
            match merged.iter_mut().find(|m| {
                m.overflow
                    && s.overflow
                    && m.journey.id == s.journey.id
                    && m.from_metrics == s.from_metrics
            }) {
                Some(m) => merge_overflow(m, &s),
                None => merged.push(s),
            }
        }
        let (mut series, journey_coverage) = take_metric_counts(merged, windows.len());
        // A stable order keeps the exposition diff-friendly and tests deterministic.
        series.sort_by(|a, b| {
            a.journey
                .name
                .cmp(&b.journey.name)
                .then_with(|| a.cohort.cmp(&b.cohort))
        });
        let users = series
            .iter()
            .map(|s| s.windows.iter().map(|w| UserCounts::of(&w.users)).collect())
            .collect();
        let journey_users = journey_users(&series, windows.len());
        let mut journey_values: Vec<JourneyValue> = Vec::new();
        for s in series.iter().filter(|s| s.journey.value.is_some()) {
            match journey_values.last_mut() {
                Some(v) if v.journey.name == s.journey.name => {
                    v.total += s.value_total;
                    v.failed += s.value_failed;
                    v.created_unix_ns = v.created_unix_ns.min(s.created_unix_ns);
                }
                _ => journey_values.push(JourneyValue {
                    journey: s.journey.clone(),
                    total: s.value_total,
                    failed: s.value_failed,
                    frustrations: Vec::new(),
                    created_unix_ns: s.created_unix_ns,
                }),
            }
        }
        let mut journey_frustrations: Vec<JourneyValue> = Vec::new();
        for s in series
            .iter()
            .filter(|s| !s.journey.frustration_events.is_empty())
        {
            let j = match journey_frustrations.last_mut() {
                Some(v) if v.journey.name == s.journey.name => v,
                _ => {
                    journey_frustrations.push(JourneyValue {
                        journey: s.journey.clone(),
                        total: 0.0,
                        failed: 0.0,
                        frustrations: vec![0; s.journey.frustration_events.len()],
                        created_unix_ns: s.created_unix_ns,
                    });
                    let last = journey_frustrations.len() - 1;
                    &mut journey_frustrations[last]
                }
            };
            j.created_unix_ns = j.created_unix_ns.min(s.created_unix_ns);
            for (a, b) in j.frustrations.iter_mut().zip(&s.frustrations) {
                *a += b;
            }
        }
        // The sketches are spent: the published snapshot keeps only their counts.
        for s in series.iter_mut() {
            for w in s.windows.iter_mut() {
                w.users = Users::default();
            }
        }
        let slis = series
            .iter()
            .map(|s| {
                s.windows
                    .iter()
                    .zip(&windows)
                    .map(|(w, d)| Sli {
                        experience: good_ratio(w.vitals.all - w.vitals.good, w.vitals.all),
                        ..derive(&w.counts, *d)
                    })
                    .collect()
            })
            .collect();
        Snapshot {
            at_unix_ns,
            windows,
            series,
            coverage,
            journey_coverage,
            state_bytes,
            slis,
            users,
            journey_users,
            journey_values,
            journey_frustrations,
            journey_attempts: Vec::new(),
            operations: Vec::new(),
            dependencies,
            blame,
            trace_bytes,
            versions: merged_versions,
        }
    }

    /// A journey's time slices in window `w`; `None` when it has no signals.
    pub fn journey_slices(&self, journey: &str, w: usize) -> Option<SliceCounts> {
        let ops = self
            .operations
            .iter()
            .find(|o| &*o.journey.name == journey)?;
        ops.windows.get(w).copied()
    }

    /// Every row of user figures: each series, then each journey with cohorts.
    pub fn user_rows(&self) -> impl Iterator<Item = (UserRow<'_>, &[UserCounts])> {
        let series = self
            .series
            .iter()
            .zip(&self.users)
            .map(|(s, u)| (UserRow::Series(s), u.as_slice()));
        let journeys = self
            .journey_users
            .iter()
            .map(|j| (UserRow::Journey(&j.journey), j.windows.as_slice()));
        series.chain(journeys)
    }

    /// A journey's distinct users in window `w`: its journey-level merge when it has
    /// cohorts, else its one series.
    pub fn journey_user_counts(&self, journey: &str, w: usize) -> Option<UserCounts> {
        if let Some(j) = self
            .journey_users
            .iter()
            .find(|j| &*j.journey.name == journey)
        {
            return j.windows.get(w).copied();
        }
        let i = self
            .series
            .iter()
            .position(|s| &*s.journey.name == journey)?;
        self.users.get(i)?.get(w).copied()
    }

    pub fn coverage_ratio(&self, w: usize) -> Option<f64> {
        let c = self.coverage.get(w)?;
        (c.entry > 0).then(|| c.matched as f64 / c.entry as f64)
    }
}

/// Merges the users of each journey's cohort series; series are sorted by journey.
fn journey_users(series: &[SeriesSnap], n_windows: usize) -> Vec<JourneyUsers> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < series.len() {
        let j = &series[i].journey;
        let end = i + series[i..]
            .iter()
            .take_while(|s| s.journey.name == j.name)
            .count();
        if !j.cohort_labels.is_empty() {
            let windows = (0..n_windows)
                .map(|w| {
                    let mut u = Users::default();
                    for s in &series[i..end] {
                        if let Some(ws) = s.windows.get(w) {
                            u.merge(&ws.users);
                        }
                    }
                    UserCounts::of(&u)
                })
                .collect();
            out.push(JourneyUsers {
                journey: j.clone(),
                windows,
            });
        }
        i = end;
    }
    out
}

/// Dependency series of all workers merged per (journey, dependency): counts add, and
/// quantiles come from the union of the workers' sub-bucket histograms, so they are
/// exact as for a series held by one worker. Blame rows come from the same series plus
/// each journey's `self`.
fn merge_dependencies(
    mut deps: Vec<DependencySnap>,
    selfs: Vec<SelfBlameSnap>,
    n_windows: usize,
) -> (Vec<DependencySeries>, Vec<BlameRow>) {
    deps.sort_by(|a, b| {
        (&a.journey.name, a.overflow, &a.name).cmp(&(&b.journey.name, b.overflow, &b.name))
    });
    let mut out: Vec<DependencySeries> = Vec::new();
    let mut blame: Vec<BlameRow> = Vec::new();
    let (mut scratch, mut qout) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < deps.len() {
        let first = &deps[i];
        let end = i + deps[i..]
            .iter()
            .take_while(|d| {
                d.journey.name == first.journey.name
                    && d.overflow == first.overflow
                    && d.name == first.name
            })
            .count();
        let group = &deps[i..end];
        let mut totals = Counts::default();
        let mut buckets = vec![0u64; first.buckets.len()];
        let mut duration_sum_s = 0.0;
        let mut blamed_total = 0;
        let mut created = u64::MAX;
        for d in group {
            totals.add(&d.totals);
            for (a, b) in buckets.iter_mut().zip(&d.buckets) {
                *a += b;
            }
            duration_sum_s += d.duration_sum_s;
            blamed_total += d.blamed_total;
            created = created.min(d.created_unix_ns);
        }
        let windows: Vec<DependencyStats> = (0..n_windows)
            .map(|w| {
                let mut counts = Counts::default();
                for d in group {
                    if let Some(x) = d.windows.get(w) {
                        counts.add(&x.counts);
                    }
                }
                let hists = group
                    .iter()
                    .filter_map(|d| d.windows.get(w))
                    .flat_map(|x| x.hists.iter());
                crate::hist::quantiles(hists, &QUANTILES, &mut scratch, &mut qout);
                DependencyStats {
                    counts,
                    availability: good_ratio(counts.errors, counts.requests),
                    quantiles_s: qout.iter().map(|q| q.map(|us| us as f64 / 1e6)).collect(),
                }
            })
            .collect();
        if blamed_total > 0 {
            blame.push(BlameRow {
                journey: first.journey.clone(),
                dependency: first.name.clone(),
                overflow: first.overflow,
                total: blamed_total,
                created_unix_ns: created,
                windows: (0..n_windows)
                    .map(|w| {
                        group
                            .iter()
                            .filter_map(|d| d.windows.get(w))
                            .map(|x| x.blamed)
                            .sum()
                    })
                    .collect(),
            });
        }
        out.push(DependencySeries {
            journey: first.journey.clone(),
            name: first.name.clone(),
            overflow: first.overflow,
            totals,
            duration_sum_s,
            buckets,
            created_unix_ns: created,
            windows,
        });
        i = end;
    }
    for s in selfs {
        match blame.iter_mut().find(|b| {
            b.journey.name == s.journey.name && &*b.dependency == crate::traces::SELF && !b.overflow
        }) {
            Some(b) => {
                b.total += s.total;
                b.created_unix_ns = b.created_unix_ns.min(s.created_unix_ns);
                for (a, x) in b.windows.iter_mut().zip(&s.windows) {
                    *a += x;
                }
            }
            None => blame.push(BlameRow {
                journey: s.journey.clone(),
                dependency: Arc::from(crate::traces::SELF),
                overflow: false,
                total: s.total,
                created_unix_ns: s.created_unix_ns,
                windows: s.windows.clone(),
            }),
        }
    }
    blame.sort_by(|a, b| {
        (&a.journey.name, a.overflow, &a.dependency).cmp(&(
            &b.journey.name,
            b.overflow,
            &b.dependency,
        ))
    });
    (out, blame)
}

/// Journeys with metric inputs take their request counts, latency and SLIs from the
/// metrics (complete, not sampled) and their users and value from their spans: a span
/// series keeps its users and value and takes the counts of the metric series of the
/// same cohort; a series only one side has stays as it is (a span series without
/// counts). Returns the series and each such journey's coverage, spans seen / requests
/// counted by metrics per window.
fn take_metric_counts(
    series: Vec<SeriesSnap>,
    n_windows: usize,
) -> (Vec<SeriesSnap>, Vec<JourneyCoverage>) {
    type Key = (Arc<str>, bool, Arc<[Box<str>]>);
    let key = |s: &SeriesSnap| -> Key { (s.journey.name.clone(), s.overflow, s.cohort.clone()) };
    let mut out: Vec<SeriesSnap> = Vec::with_capacity(series.len());
    let mut metric = Vec::new();
    let mut spans: HashMap<Key, usize> = HashMap::new();
    // (journey, spans seen, requests counted by metrics) per window.
    let mut cover: Vec<(Arc<JourneyInfo>, Vec<u64>, Vec<u64>)> = Vec::new();
    type Cover = Vec<(Arc<JourneyInfo>, Vec<u64>, Vec<u64>)>;
    let cover_of = |cover: &mut Cover, j: &Arc<JourneyInfo>| -> usize {
        match cover.iter().position(|c| c.0.name == j.name) {
            Some(i) => i,
            None => {
                cover.push((j.clone(), vec![0; n_windows], vec![0; n_windows]));
                cover.len() - 1
            }
        }
    };
    for mut s in series {
        if s.from_metrics {
            metric.push(s);
            continue;
        }
        if s.journey.has_metrics {
            let c = cover_of(&mut cover, &s.journey);
            for (w, ws) in s.windows.iter_mut().enumerate() {
                cover[c].1[w] += ws.counts.requests;
                ws.counts = Counts::default();
                ws.quantiles_s.iter_mut().for_each(|q| *q = None);
            }
            s.totals = Counts::default();
            s.duration_sum_s = 0.0;
            s.buckets.iter_mut().for_each(|b| *b = 0);
            spans.insert(key(&s), out.len());
        }
        out.push(s);
    }
    for m in metric {
        let c = cover_of(&mut cover, &m.journey);
        for (w, ws) in m.windows.iter().enumerate() {
            cover[c].2[w] += ws.counts.requests;
        }
        match spans.get(&key(&m)) {
            Some(&i) => {
                let s = &mut out[i];
                s.totals = m.totals;
                s.duration_sum_s = m.duration_sum_s;
                s.buckets = m.buckets;
                s.created_unix_ns = s.created_unix_ns.min(m.created_unix_ns);
                for (a, b) in s.windows.iter_mut().zip(m.windows) {
                    a.counts = b.counts;
                    a.quantiles_s = b.quantiles_s;
                }
            }
            None => out.push(m),
        }
    }
    let mut coverage: Vec<JourneyCoverage> = cover
        .into_iter()
        .filter(|(j, _, _)| !j.metrics_only)
        .map(|(journey, seen, counted)| JourneyCoverage {
            journey,
            windows: seen
                .iter()
                .zip(&counted)
                .map(|(&s, &c)| (c > 0).then(|| s as f64 / c as f64))
                .collect(),
        })
        .collect();
    coverage.sort_by(|a, b| a.journey.name.cmp(&b.journey.name));
    (out, coverage)
}

/// Adds one shard's overflow series into another's. Counts add exactly; a quantile
/// becomes the larger of the two, an upper bound, since the shards' bins are not shipped.
fn merge_overflow(into: &mut SeriesSnap, from: &SeriesSnap) {
    into.totals.add(&from.totals);
    into.duration_sum_s += from.duration_sum_s;
    into.value_total += from.value_total;
    into.value_failed += from.value_failed;
    for (a, b) in into.buckets.iter_mut().zip(&from.buckets) {
        *a = a.saturating_add(*b);
    }
    into.created_unix_ns = into.created_unix_ns.min(from.created_unix_ns);
    match (&mut into.exemplars, &from.exemplars) {
        (Some(a), Some(b)) => a.merge(b),
        (a @ None, Some(b)) => *a = Some(b.clone()),
        _ => {}
    }
    if into.frustrations.len() < from.frustrations.len() {
        into.frustrations.resize(from.frustrations.len(), 0);
    }
    for (a, b) in into.frustrations.iter_mut().zip(&from.frustrations) {
        *a += b;
    }
    for (a, b) in into.windows.iter_mut().zip(&from.windows) {
        a.counts.add(&b.counts);
        a.users.merge(&b.users);
        a.vitals.good += b.vitals.good;
        a.vitals.all += b.vitals.all;
        // Quantiles cannot be merged from quantiles: the larger is the bound kept.
        for (va, vb) in a.vitals.quantiles.iter_mut().zip(&b.vitals.quantiles) {
            if va.is_empty() {
                va.clone_from(vb);
            }
            for (qa, qb) in va.iter_mut().zip(vb) {
                *qa = match (*qa, *qb) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                };
            }
        }
        for (qa, qb) in a.quantiles_s.iter_mut().zip(&b.quantiles_s) {
            *qa = match (*qa, *qb) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_good_over_total() {
        let c = Counts::whole(8, 2, 1, 0);
        let s = derive(&c, Duration::from_secs(60));
        assert_eq!(s.availability, Some(0.75));
        assert_eq!(s.latency, Some(0.875));
        assert_eq!(s.correctness, Some(1.0));
        assert!((s.requests_per_second - 8.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn sampled_counts_keep_their_ratios_and_scale_the_rate() {
        // 2 spans at th:8 (2 each, one failed) and 1 at th:c (4, slow): 8 requests,
        // 2 errors, 4 slow; the ratios of the sums, 0.75 and 0.5, and 8 / 60 requests a
        // second, exactly as 8 unsampled requests with those outcomes.
        use crate::span_record::flag;
        let u = crate::sampling::UNIT;
        let mut c = Counts::default();
        c.add_weighted(0, 2 * u);
        c.add_weighted(flag::ERROR, 2 * u);
        c.add_weighted(flag::SLOW, 4 * u);
        let s = derive(&c, Duration::from_secs(60));
        assert_eq!((s.availability, s.latency), (Some(0.75), Some(0.5)));
        assert_eq!(s.requests_per_second, 8.0 / 60.0);
    }

    #[test]
    fn no_requests_means_no_ratio() {
        let s = derive(&Counts::default(), Duration::from_secs(60));
        assert_eq!(
            (s.availability, s.latency, s.correctness),
            (None, None, None)
        );
        assert_eq!(s.requests_per_second, 0.0);
    }
}
