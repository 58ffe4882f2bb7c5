//! The customer-experience reliability score (CER).
//!
//! Each SLI of a journey becomes a component in [0, 1]: 1 while its burn rate over the
//! window is at most 1 (the SLI meets its objective), then falling linearly to 0 when
//! the burn rate reaches `score.floor_burn_rate`. A journey's score is the weighted mean
//! of the components that have data; the overall score is the mean of journey scores
//! weighted by journey weight (optionally times traffic). Cohort scores use the same
//! formula over one cohort's requests.

pub mod config;

use crate::config::{NoData, Objectives, PerSli, Score, Severity, SliKind, WeightBy, SLIS};
use crate::duration::format_duration;
use crate::journey::{JourneyInfo, Journeys};
use crate::signals::SliceCounts;
use crate::sli::{derive, Snapshot, UserCounts};
use crate::slo::config::{slis_for, N_SLIS};
use crate::slo::{alert_active, burn_rate, BadCount, Key, SloCounts, SloEval, SloTracker};
use crate::snapshot::SeriesSnap;
use crate::window::exemplars::{Exemplar, Kind, KINDS, PER_KIND};
use crate::window::Counts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One SLI's component: 1 at burn <= 1, 0 at burn >= floor, linear between.
pub fn component(burn: f64, floor: f64) -> f64 {
    if burn <= 1.0 {
        1.0
    } else {
        (1.0 - (burn - 1.0) / (floor - 1.0)).clamp(0.0, 1.0)
    }
}

/// Per-SLI burn rates or components of one window.
pub type PerSliOpt = [Option<f64>; N_SLIS];

/// Burn rates, components and score of one window's counts and time slices. `None`
/// score without data for any weighted SLI.
pub fn window_score(
    c: &Counts,
    slices: SliceCounts,
    objectives: &Objectives,
    has_correctness: bool,
    cfg: &Score,
) -> (PerSliOpt, PerSliOpt, Option<f64>) {
    let mut burns = [None; N_SLIS];
    let mut comps = [None; N_SLIS];
    let mut num = 0.0;
    let mut den = 0.0;
    let both = SloCounts {
        requests: *c,
        slices,
    };
    // Operations without slices has no burn rate, so no component: no flag needed.
    for sli in slis_for(has_correctness, true) {
        let i = sli as usize;
        // Without events (no slices for operations, no vitals for experience) an SLI has
        // no burn and is left out.
        burns[i] = burn_rate(both.bad(sli), both.total(sli), objectives.get(sli));
        if let Some(b) = burns[i] {
            let comp = component(b, cfg.floor_burn_rate);
            comps[i] = Some(comp);
            num += cfg.sli_weights.get(sli) * comp;
            den += cfg.sli_weights.get(sli);
        }
    }
    let score = (den > 0.0).then(|| num / den);
    (burns, comps, score)
}

/// What the score API, the metrics and the gate all read: one entry per journey, and one
/// per journey x cohort where cohorts are configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScoreView {
    pub time_unix_nano: u64,
    pub definition_version: String,
    pub windows: Vec<String>,
    pub overall: Vec<OverallScore>,
    pub journeys: Vec<JourneyView>,
    /// Kafka stage 2: the instance that answers, which owns the journeys listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OverallScore {
    pub window: String,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JourneyView {
    pub journey: String,
    pub weight: f64,
    /// Cohort label -> value; empty for the journey as a whole.
    pub cohort: BTreeMap<String, String>,
    pub objectives: BTreeMap<String, f64>,
    pub windows: Vec<WindowView>,
    /// Share of the period's error budget left, per SLI.
    pub budget_remaining: BTreeMap<String, f64>,
    /// Burn rate per SLO window, per SLI.
    pub burn_rates: BTreeMap<String, BTreeMap<String, f64>>,
    pub alerts: Vec<AlertView>,
    /// The journey's value currency, when its value rule names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Value of all requests and of the failed or incorrect ones since the series
    /// began (`cer_journey_value_total`, `cer_journey_value_failed_total`); on the
    /// journey-level entry of a journey with a value rule only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_total: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_failed_total: Option<f64>,
    /// Value of the failed or incorrect requests over the SLO period
    /// (`cer_slo_value_lost`), kept across restarts by the SLO checkpoint; with a value
    /// rule only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_lost_period: Option<f64>,
    /// The journey's pending, then judged deployments, newest first; journey-level
    /// entries only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<crate::deployments::Deployment>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowView {
    pub window: String,
    /// Request counts in [`crate::sampling::UNIT`]s, written as (adjusted) requests.
    #[serde(with = "crate::sampling::as_requests")]
    pub requests: u64,
    #[serde(with = "crate::sampling::as_requests")]
    pub errors: u64,
    #[serde(with = "crate::sampling::as_requests")]
    pub slow: u64,
    #[serde(with = "crate::sampling::as_requests")]
    pub incorrect: u64,
    pub score: Option<f64>,
    pub availability: Option<f64>,
    pub latency: Option<f64>,
    pub correctness: Option<f64>,
    /// Good time slices over slices with data, for a journey with signals.
    #[serde(default)]
    pub operations: Option<f64>,
    /// Time slices with data in the window, and those out of a signal's bound.
    #[serde(default)]
    pub slices: u64,
    #[serde(default)]
    pub bad_slices: u64,
    /// Burn rate of each SLI over this window.
    pub burn_rate: BTreeMap<String, f64>,
    /// Distinct users, and those with a bad request; for the journey as a whole, the
    /// merge across its cohorts. Absent where it cannot be known: a cohort filter that
    /// sums several cohorts (users cannot be summed, and the sketches are not kept).
    #[serde(default)]
    pub users: Option<u64>,
    #[serde(default)]
    pub users_affected: Option<u64>,
    #[serde(default)]
    pub users_affected_ratio: Option<f64>,
    /// Web vital measurements in the window, those over their threshold, and the
    /// experience SLI (absent without measurements).
    #[serde(default)]
    pub vitals: u64,
    #[serde(default)]
    pub vitals_bad: u64,
    #[serde(default)]
    pub experience: Option<f64>,
    /// Value of the failed or incorrect requests in the window; for the journey as a
    /// whole, the sum over its cohorts. Absent without a value rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_at_risk: Option<f64>,
    /// The window's failed requests by what they are blamed on (a dependency whose call
    /// under them failed, or `self`), largest share first; journey-level entries only,
    /// from assembled traces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blame: Vec<BlameShare>,
    /// Example requests of the window: per kind the [`PER_KIND`] newest that ended in
    /// it, newest first; for the journey as a whole, across its cohorts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemplars: Vec<ExemplarView>,
}

/// One example request, to link a window's figures to a trace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExemplarView {
    /// `failed`, `slow` or `incorrect`.
    pub kind: String,
    /// Lower-case hex (32 and 16 digits).
    pub trace_id: String,
    pub span_id: String,
    pub time_unix_nano: u64,
    pub duration_seconds: f64,
}

impl ExemplarView {
    fn of(kind: Kind, e: &Exemplar) -> ExemplarView {
        ExemplarView {
            kind: kind.as_str().to_string(),
            trace_id: e.trace_hex(),
            span_id: e.span_hex(),
            time_unix_nano: e.end_ns,
            duration_seconds: e.duration_ns as f64 / 1e9,
        }
    }
}

/// The exemplars of window `w` over `series`: per kind the [`PER_KIND`] newest.
fn window_exemplars<'a>(
    series: impl Iterator<Item = &'a SeriesSnap> + Clone,
    w: usize,
) -> Vec<ExemplarView> {
    let mut out = Vec::new();
    for kind in KINDS {
        let mut all: Vec<&Exemplar> = series
            .clone()
            .filter_map(|s| Some((s.exemplars.as_deref()?, s.windows.get(w)?.start_ns)))
            .flat_map(|(x, since)| x.bad(kind, since))
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.end_ns));
        out.extend(
            all.into_iter()
                .take(PER_KIND)
                .map(|e| ExemplarView::of(kind, e)),
        );
    }
    out
}

/// Several entries' exemplars as one: per kind the [`PER_KIND`] newest.
fn merge_exemplars<'a>(lists: impl Iterator<Item = &'a ExemplarView>) -> Vec<ExemplarView> {
    let mut all: Vec<&ExemplarView> = lists.collect();
    let rank = |k: &str| KINDS.iter().position(|x| x.as_str() == k);
    all.sort_by(|a, b| {
        rank(&a.kind)
            .cmp(&rank(&b.kind))
            .then(b.time_unix_nano.cmp(&a.time_unix_nano))
    });
    let mut out: Vec<ExemplarView> = Vec::new();
    for e in all {
        if out.iter().filter(|x| x.kind == e.kind).count() < PER_KIND {
            out.push(e.clone());
        }
    }
    out
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlameShare {
    /// The dependency, `self`, or `otel_metric_overflow` for the journey's overflow series.
    pub dependency: String,
    /// Failed requests attributed to it in the window.
    pub failures: u64,
    /// `failures` over all attributions of the journey in the window; the shares add up
    /// to 1 unless a request was blamed on several dependencies.
    pub share: f64,
}

/// The blame rows of one journey and window, by share.
fn blame_shares(snap: &Snapshot, journey: &str, w: usize) -> Vec<BlameShare> {
    let rows: Vec<(&str, u64)> = snap
        .blame
        .iter()
        .filter(|b| &*b.journey.name == journey)
        .map(|b| {
            let name = if b.overflow {
                "otel_metric_overflow"
            } else {
                &b.dependency
            };
            (name, b.windows.get(w).copied().unwrap_or(0))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    let mut out: Vec<BlameShare> = rows
        .into_iter()
        .map(|(d, n)| BlameShare {
            dependency: d.to_string(),
            failures: n,
            share: n as f64 / total as f64,
        })
        .collect();
    out.sort_by(|a, b| {
        b.failures
            .cmp(&a.failures)
            .then_with(|| a.dependency.cmp(&b.dependency))
    });
    out
}

impl WindowView {
    fn with_users(mut self, u: Option<UserCounts>) -> WindowView {
        let u = u.unwrap_or_default();
        self.users = Some(u.users);
        self.users_affected = Some(u.affected);
        self.users_affected_ratio = u.affected_ratio();
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AlertView {
    pub sli: String,
    pub severity: String,
}

/// Everything derived at one tick, kept for the exporters and the API.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub view: ScoreView,
    /// Per journey-level entry: its info, in `view.journeys` order (cohort entries map to their journey).
    pub infos: Vec<Arc<JourneyInfo>>,
    pub score_cfg: Option<Score>,
    pub burn_windows: Vec<String>,
    /// Open, then recent incidents; set by the deriver after the evaluation.
    pub incidents: Vec<crate::incidents::Incident>,
    pub incident_stats: Vec<crate::incidents::IncidentStats>,
    /// Pending, then judged deployments, newest first; set by the deriver.
    pub deployments: Vec<crate::deployments::Deployment>,
    pub deployment_stats: Vec<crate::deployments::DeploymentStats>,
    /// `deployments.version_key`, for the API (the gate checks its `--compare` key).
    pub version_key: String,
}

impl Evaluation {
    /// Publishes the deployments, also on each journey-level entry of the score view.
    pub fn set_deployments(
        &mut self,
        list: Vec<crate::deployments::Deployment>,
        stats: Vec<crate::deployments::DeploymentStats>,
        version_key: &str,
    ) {
        for j in self
            .view
            .journeys
            .iter_mut()
            .filter(|j| j.cohort.is_empty())
        {
            j.deployments = list
                .iter()
                .filter(|d| d.journey == j.journey)
                .cloned()
                .collect();
        }
        self.deployments = list;
        self.deployment_stats = stats;
        self.version_key = version_key.to_string();
    }
}

/// The journey's SLIs; `journey_level` because slices are the journey's, not a cohort's.
fn slis_of(info: &JourneyInfo, journey_level: bool) -> impl Iterator<Item = SliKind> {
    slis_for(info.has_correctness, info.has_operations && journey_level)
}

fn per_sli_map(v: &PerSli, info: &JourneyInfo, journey_level: bool) -> BTreeMap<String, f64> {
    slis_of(info, journey_level)
        .map(|s| (s.as_str().to_string(), v.get(s)))
        .collect()
}

fn window_view(
    window: &str,
    c: &Counts,
    slices: SliceCounts,
    dur: std::time::Duration,
    info: &JourneyInfo,
    cfg: &Score,
) -> WindowView {
    let sli = derive(c, dur);
    let (burns, _, score) = window_score(c, slices, &info.objectives, info.has_correctness, cfg);
    WindowView {
        window: window.to_string(),
        requests: c.requests,
        errors: c.errors,
        slow: c.slow,
        incorrect: c.incorrect,
        score,
        availability: sli.availability,
        latency: sli.latency,
        correctness: if info.has_correctness {
            sli.correctness
        } else {
            None
        },
        operations: slices.ratio(),
        slices: slices.slices,
        bad_slices: slices.bad,
        vitals: c.vitals,
        vitals_bad: c.vitals_bad,
        experience: crate::sli::good_ratio(c.vitals_bad, c.vitals),
        burn_rate: SLIS
            .iter()
            .filter_map(|s| burns[*s as usize].map(|b| (s.as_str().to_string(), b)))
            .collect(),
        ..Default::default()
    }
}

/// Budget remaining per SLI, burn rates per SLO window and SLI, active alerts.
type SloParts = (
    BTreeMap<String, f64>,
    BTreeMap<String, BTreeMap<String, f64>>,
    Vec<AlertView>,
);

fn slo_parts(
    e: Option<&SloEval>,
    burn_windows: &[String],
    info: &JourneyInfo,
    journey_level: bool,
) -> SloParts {
    let mut budget = BTreeMap::new();
    let mut burns = BTreeMap::new();
    let mut alerts = Vec::new();
    let slis: Vec<SliKind> = slis_of(info, journey_level).collect();
    // The experience SLO shows only for a journey that has had web vitals in the period.
    let shown = |vitals: bool| {
        slis.iter()
            .copied()
            .filter(move |s| vitals || *s != SliKind::Experience)
    };
    match e {
        None => {
            for s in shown(false) {
                budget.insert(s.as_str().to_string(), 1.0);
            }
        }
        Some(e) => {
            for s in shown(e.period_counts.vitals > 0) {
                budget.insert(s.as_str().to_string(), e.budget_remaining[s as usize]);
                for sev in [Severity::Page, Severity::Ticket] {
                    if alert_active(e, s, sev) {
                        alerts.push(AlertView {
                            sli: s.as_str().into(),
                            severity: sev.as_str().into(),
                        });
                    }
                }
            }
            for (w, per) in burn_windows.iter().zip(&e.burn) {
                let m: BTreeMap<String, f64> = SLIS
                    .iter()
                    .filter_map(|s| per[*s as usize].map(|b| (s.as_str().to_string(), b)))
                    .collect();
                if !m.is_empty() {
                    burns.insert(w.clone(), m);
                }
            }
        }
    }
    (budget, burns, alerts)
}

/// Builds the evaluation of one tick from the merged snapshot and the SLO state.
/// `restored` names SLO keys brought back by the checkpoint with their journeys: those
/// without a series in `snap` are shown with empty windows, so their budgets, burn rates
/// and alerts are there before their traffic is.
pub fn evaluate(
    snap: &Snapshot,
    slo: &SloTracker,
    journeys: &Journeys,
    restored: &[(Key, Arc<JourneyInfo>)],
    cfg: &Score,
    version: &str,
) -> Evaluation {
    let windows: Vec<String> = snap.windows.iter().map(|w| format_duration(*w)).collect();
    let burn_windows: Vec<String> = slo
        .burn_windows()
        .iter()
        .map(|w| format_duration(*w))
        .collect();
    // Journey-level counts and value at risk: the sums of the journey's series, per window.
    type PerWindow = (Arc<JourneyInfo>, Vec<Counts>, Vec<f64>);
    let empty = |info: &Arc<JourneyInfo>| -> PerWindow {
        (
            info.clone(),
            vec![Counts::default(); windows.len()],
            vec![0.0; windows.len()],
        )
    };
    let mut by_journey: BTreeMap<Arc<str>, PerWindow> = BTreeMap::new();
    for j in journeys.configured() {
        by_journey.insert(j.name.clone(), empty(j));
    }
    for (key, info) in restored {
        if key.cohort.is_none() {
            by_journey
                .entry(key.journey.clone())
                .or_insert_with(|| empty(info));
        }
    }
    for s in &snap.series {
        let entry = by_journey
            .entry(s.journey.name.clone())
            .or_insert_with(|| empty(&s.journey));
        for ((acc, var), w) in entry.1.iter_mut().zip(entry.2.iter_mut()).zip(&s.windows) {
            acc.add(&w.counts);
            *var += w.value_at_risk;
        }
    }
    let mut view = ScoreView {
        time_unix_nano: snap.at_unix_ns,
        definition_version: version.to_string(),
        windows: windows.clone(),
        ..Default::default()
    };
    let mut infos = Vec::new();
    let mut overall_num = vec![0.0; windows.len()];
    let mut overall_den = vec![0.0; windows.len()];
    for (name, (info, counts, at_risk)) in &by_journey {
        let wviews: Vec<WindowView> = windows
            .iter()
            .zip(&snap.windows)
            .zip(counts)
            .enumerate()
            .map(|(i, ((w, d), c))| {
                let slices = snap.journey_slices(name, i).unwrap_or_default();
                let mut wv = window_view(w, c, slices, *d, info, cfg)
                    .with_users(snap.journey_user_counts(name, i));
                wv.value_at_risk = info.value.as_ref().map(|_| at_risk[i]);
                wv.blame = blame_shares(snap, name, i);
                let own = snap.series.iter().filter(|s| s.journey.name == *name);
                wv.exemplars = window_exemplars(own, i);
                wv
            })
            .collect();
        for (i, wv) in wviews.iter().enumerate() {
            if let Some((num, den)) = overall_part(cfg, info.weight, wv) {
                overall_num[i] += num;
                overall_den[i] += den;
            }
        }
        let key = Key {
            journey: name.clone(),
            cohort: None,
        };
        let (budget_remaining, burn_rates, alerts) =
            slo_parts(slo.eval(&key), &burn_windows, info, true);
        let value = info.value.as_ref().map(|_| {
            snap.journey_values
                .iter()
                .find(|v| v.journey.name == *name)
                .map_or((0.0, 0.0), |v| (v.total, v.failed))
        });
        view.journeys.push(JourneyView {
            journey: name.to_string(),
            weight: info.weight,
            cohort: BTreeMap::new(),
            objectives: per_sli_map(&info.objectives, info, true),
            windows: wviews,
            budget_remaining,
            burn_rates,
            alerts,
            currency: currency_of(info),
            value_lost_period: value_lost(slo.eval(&key), info),
            value_total: value.map(|v| v.0),
            value_failed_total: value.map(|v| v.1),
            deployments: Vec::new(),
        });
        infos.push(info.clone());
    }
    for (si, s) in snap.series.iter().enumerate() {
        if s.journey.cohort_keys.is_empty() && !s.overflow {
            continue;
        }
        let users = snap.users.get(si);
        let wviews = windows
            .iter()
            .zip(&snap.windows)
            .zip(&s.windows)
            .enumerate()
            .map(|(i, ((w, d), ws))| {
                let mut wv =
                    window_view(w, &ws.counts, SliceCounts::default(), *d, &s.journey, cfg)
                        .with_users(users.and_then(|u| u.get(i)).copied());
                wv.value_at_risk = s.journey.value.as_ref().map(|_| ws.value_at_risk);
                wv.exemplars = window_exemplars(std::iter::once(s), i);
                wv
            })
            .collect();
        let key = Key {
            journey: s.journey.name.clone(),
            cohort: Some(crate::slo::cohort_key(s)),
        };
        let cohort: BTreeMap<String, String> = if s.overflow {
            BTreeMap::from([("otel_metric_overflow".to_string(), "true".to_string())])
        } else {
            s.journey
                .cohort_labels
                .iter()
                .cloned()
                .zip(s.cohort.iter().map(|v| v.to_string()))
                .collect()
        };
        let (budget_remaining, burn_rates, alerts) =
            slo_parts(slo.eval(&key), &burn_windows, &s.journey, false);
        view.journeys.push(JourneyView {
            journey: s.journey.name.to_string(),
            weight: s.journey.weight,
            cohort,
            objectives: per_sli_map(&s.journey.objectives, &s.journey, false),
            windows: wviews,
            budget_remaining,
            burn_rates,
            alerts,
            currency: currency_of(&s.journey),
            value_lost_period: value_lost(slo.eval(&key), &s.journey),
            ..Default::default()
        });
        infos.push(s.journey.clone());
    }
    for (key, info) in restored {
        let Some(values) = &key.cohort else { continue };
        let has_series = snap.series.iter().any(|s| {
            s.journey.name == key.journey
                && (!s.journey.cohort_keys.is_empty() || s.overflow)
                && crate::slo::cohort_key(s) == *values
        });
        let Some(cohort) = restored_cohort_labels(values, info) else {
            continue;
        };
        if has_series {
            continue;
        }
        let empty = Counts::default();
        let wviews = windows
            .iter()
            .zip(&snap.windows)
            .map(|(w, d)| WindowView {
                value_at_risk: info.value.as_ref().map(|_| 0.0),
                ..window_view(w, &empty, SliceCounts::default(), *d, info, cfg)
            })
            .collect();
        let (budget_remaining, burn_rates, alerts) =
            slo_parts(slo.eval(key), &burn_windows, info, false);
        view.journeys.push(JourneyView {
            journey: key.journey.to_string(),
            weight: info.weight,
            cohort,
            objectives: per_sli_map(&info.objectives, info, false),
            windows: wviews,
            budget_remaining,
            burn_rates,
            alerts,
            currency: currency_of(info),
            value_lost_period: value_lost(slo.eval(key), info),
            ..Default::default()
        });
        infos.push(info.clone());
    }
    view.overall = windows
        .iter()
        .enumerate()
        .map(|(i, w)| OverallScore {
            window: w.clone(),
            score: (overall_den[i] > 0.0).then(|| overall_num[i] / overall_den[i]),
        })
        .collect();
    Evaluation {
        view,
        infos,
        score_cfg: Some(cfg.clone()),
        burn_windows,
        incidents: Vec::new(),
        incident_stats: Vec::new(),
        deployments: Vec::new(),
        deployment_stats: Vec::new(),
        version_key: String::new(),
    }
}

fn value_lost(e: Option<&SloEval>, info: &JourneyInfo) -> Option<f64> {
    info.value.as_ref()?;
    Some(e.map_or(0.0, |e| e.value_lost))
}

fn currency_of(info: &JourneyInfo) -> Option<String> {
    info.value.as_ref()?.currency.as_deref().map(str::to_string)
}

/// The cohort labels of a restored cohort key, or `None` when the journey's cohort keys
/// changed since the checkpoint was written (the values no longer name a cohort).
fn restored_cohort_labels(
    values: &[Box<str>],
    info: &JourneyInfo,
) -> Option<BTreeMap<String, String>> {
    if values.first().map(|v| &**v) == Some(crate::slo::OVERFLOW_COHORT) {
        return Some(BTreeMap::from([(
            "otel_metric_overflow".to_string(),
            "true".to_string(),
        )]));
    }
    (values.len() == info.cohort_labels.len() && !values.is_empty()).then(|| {
        info.cohort_labels
            .iter()
            .cloned()
            .zip(values.iter().map(|v| v.to_string()))
            .collect()
    })
}

/// What a score request asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub journeys: Vec<String>,
    pub window: Option<String>,
    /// Cohort label (or attribute key) -> value.
    pub cohort: BTreeMap<String, String>,
}

impl Filter {
    /// Parses `journey=a&journey=b&window=5m&cohort=cloud.region:eu` query pairs.
    pub fn from_pairs<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (k, v) in pairs {
            match k {
                "journey" => f.journeys.push(v.to_string()),
                "window" => f.window = Some(v.to_string()),
                "cohort" => {
                    let (label, value) = v
                        .split_once([':', '='])
                        .ok_or_else(|| format!("cohort filter \"{v}\" is not label:value"))?;
                    f.cohort
                        .insert(crate::labels::sanitize_label(label), value.to_string());
                }
                other => {
                    return Err(format!(
                        "unknown query parameter \"{other}\" (expected journey, window, cohort)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// Applies a filter. With a cohort filter, each journey's matching cohorts are summed
/// into one entry whose `cohort` is the filter, so "version=canary" can be compared with
/// "version=stable" across every other cohort key.
/// One journey's share of the overall score in one window: (weight x traffic x score,
/// weight x traffic), or none when its no-data score is left out.
fn overall_part(cfg: &Score, weight: f64, wv: &WindowView) -> Option<(f64, f64)> {
    let traffic = match cfg.weight_by {
        WeightBy::Weight => 1.0,
        WeightBy::Traffic => wv.requests as f64,
        WeightBy::Users => wv.users.unwrap_or(0) as f64,
    };
    let score = match (wv.score, cfg.no_data) {
        (Some(s), _) => s,
        (None, NoData::Exclude) => return None,
        (None, NoData::Good) => 1.0,
        (None, NoData::Bad) => 0.0,
    };
    Some((weight * traffic * score, weight * traffic))
}

/// The overall score of `windows` from per-journey figures alone (the journey-level
/// views, cohort ones skipped), as the deriver computes it: what an instance answers for
/// journeys it does not own, from their owners' snapshots.
pub fn overall_of(cfg: &Score, windows: &[String], journeys: &[JourneyView]) -> Vec<OverallScore> {
    windows
        .iter()
        .map(|w| {
            let (mut num, mut den) = (0.0, 0.0);
            for j in journeys.iter().filter(|j| j.cohort.is_empty()) {
                let part = j.windows.iter().find(|x| &x.window == w);
                if let Some((n, d)) = part.and_then(|wv| overall_part(cfg, j.weight, wv)) {
                    num += n;
                    den += d;
                }
            }
            OverallScore {
                window: w.clone(),
                score: (den > 0.0).then(|| num / den),
            }
        })
        .collect()
}

pub fn filtered(eval: &Evaluation, f: &Filter) -> ScoreView {
    let v = &eval.view;
    let window_ok = |w: &str| f.window.as_deref().is_none_or(|x| x == w);
    let journey_ok = |j: &str| f.journeys.is_empty() || f.journeys.iter().any(|x| x == j);
    let mut out = ScoreView {
        time_unix_nano: v.time_unix_nano,
        definition_version: v.definition_version.clone(),
        windows: v.windows.iter().filter(|w| window_ok(w)).cloned().collect(),
        overall: v
            .overall
            .iter()
            .filter(|o| window_ok(&o.window))
            .cloned()
            .collect(),
        journeys: Vec::new(),
        instance: v.instance.clone(),
    };
    let keep_windows = |jv: &JourneyView| {
        let mut jv = jv.clone();
        jv.windows.retain(|w| window_ok(&w.window));
        jv
    };
    if f.cohort.is_empty() {
        out.journeys = v
            .journeys
            .iter()
            .filter(|j| journey_ok(&j.journey))
            .map(keep_windows)
            .collect();
        return out;
    }
    let Some(cfg) = &eval.score_cfg else {
        return out;
    };
    // Per journey: its first matching entry, the summed counts and value at risk, how
    // many entries.
    type Group = (usize, Vec<Counts>, Vec<Option<f64>>, Vec<usize>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (i, jv) in v.journeys.iter().enumerate() {
        if jv.cohort.is_empty() || !journey_ok(&jv.journey) {
            continue;
        }
        if !f
            .cohort
            .iter()
            .all(|(k, val)| jv.cohort.get(k) == Some(val))
        {
            continue;
        }
        let g = groups.entry(jv.journey.clone()).or_insert_with(|| {
            let n = jv.windows.len();
            (i, vec![Counts::default(); n], vec![None; n], Vec::new())
        });
        g.3.push(i);
        for ((acc, var), w) in g.1.iter_mut().zip(g.2.iter_mut()).zip(&jv.windows) {
            acc.add(&Counts {
                requests: w.requests,
                errors: w.errors,
                slow: w.slow,
                incorrect: w.incorrect,
                vitals: w.vitals,
                vitals_bad: w.vitals_bad,
            });
            // Money adds up across cohorts, unlike users.
            if let Some(x) = w.value_at_risk {
                *var = Some(var.unwrap_or(0.0) + x);
            }
        }
    }
    for (name, (first, counts, at_risk, members)) in groups {
        let info = &eval.infos[first];
        let base = &v.journeys[first];
        let windows = base
            .windows
            .iter()
            .zip(counts.iter().zip(&at_risk))
            .zip(v.windows.iter())
            .filter(|((w, _), _)| window_ok(&w.window))
            .map(|((w, (c, var)), _)| {
                let dur = crate::duration::parse_duration(&w.window)
                    .unwrap_or(std::time::Duration::from_secs(60));
                let mut wv = window_view(&w.window, c, SliceCounts::default(), dur, info, cfg);
                wv.value_at_risk = *var;
                wv.exemplars = merge_exemplars(
                    members
                        .iter()
                        .filter_map(|&m| {
                            v.journeys[m].windows.iter().find(|x| x.window == w.window)
                        })
                        .flat_map(|x| x.exemplars.iter()),
                );
                if members.len() == 1 {
                    // One cohort: its users are the group's.
                    wv.users = w.users;
                    wv.users_affected = w.users_affected;
                    wv.users_affected_ratio = w.users_affected_ratio;
                }
                wv
            })
            .collect();
        out.journeys.push(JourneyView {
            journey: name,
            weight: base.weight,
            cohort: f.cohort.clone(),
            objectives: base.objectives.clone(),
            windows,
            budget_remaining: BTreeMap::new(),
            burn_rates: BTreeMap::new(),
            alerts: Vec::new(),
            currency: base.currency.clone(),
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Score {
        crate::config::Config::default().score
    }

    const OBJ: PerSli = PerSli([0.999, 0.99, 0.999, 0.99, 0.75]);

    #[test]
    fn operations_weighs_nothing_by_default_and_its_share_when_weighted() {
        // 1000 requests, 2 failed: availability burn 2, component 1 - 1/9 = 8/9.
        let c = Counts {
            requests: 1000,
            errors: 2,
            ..Default::default()
        };
        // 8 good slices of 11 against 0.99: burn (3/11)/0.01 = 27.27 >= floor: component 0.
        let slices = SliceCounts { slices: 11, bad: 3 };
        let without = window_score(&c, SliceCounts::default(), &OBJ, false, &cfg());
        let with = window_score(&c, slices, &OBJ, false, &cfg());
        // Weight 0: the same score, (0.5 x 8/9 + 0.3 x 1) / 0.8, yet the component is there.
        assert_eq!(with.2, without.2);
        assert!((with.2.unwrap() - (0.5 * 8.0 / 9.0 + 0.3) / 0.8).abs() < 1e-12);
        assert_eq!(with.1[SliKind::Operations as usize], Some(0.0));
        assert_eq!(without.1[SliKind::Operations as usize], None);
        // Weight 1: (0.5 x 8/9 + 0.3 + 1 x 0) / 1.8.
        let mut weighted = cfg();
        weighted.sli_weights.0[SliKind::Operations as usize] = 1.0;
        let s = window_score(&c, slices, &OBJ, false, &weighted).2.unwrap();
        assert!((s - (0.5 * 8.0 / 9.0 + 0.3) / 1.8).abs() < 1e-12, "{s}");
    }

    #[test]
    fn components_fall_linearly_from_burn_1_to_the_floor() {
        assert_eq!(component(0.5, 10.0), 1.0);
        assert_eq!(component(1.0, 10.0), 1.0);
        assert!((component(5.5, 10.0) - 0.5).abs() < 1e-12);
        assert_eq!(component(10.0, 10.0), 0.0);
        assert_eq!(component(50.0, 10.0), 0.0);
    }

    #[test]
    fn all_good_scores_one() {
        let c = Counts {
            requests: 1000,
            errors: 0,
            slow: 0,
            incorrect: 0,
            ..Default::default()
        };
        assert_eq!(
            window_score(&c, SliceCounts::default(), &OBJ, true, &cfg()).2,
            Some(1.0)
        );
    }

    #[test]
    fn availability_burning_at_5x() {
        // 5 errors in 1000 = 0.5% against a 0.1% budget: burn 5, component 1 - 4/9 = 5/9.
        // Score = (0.5 * 5/9 + 0.3 * 1 + 0.2 * 1) / 1.0.
        let c = Counts {
            requests: 1000,
            errors: 5,
            slow: 0,
            incorrect: 0,
            ..Default::default()
        };
        let (burns, comps, score) = window_score(&c, SliceCounts::default(), &OBJ, true, &cfg());
        assert!((burns[0].unwrap() - 5.0).abs() < 1e-9);
        assert!((comps[0].unwrap() - 5.0 / 9.0).abs() < 1e-12);
        assert!((score.unwrap() - (0.5 * 5.0 / 9.0 + 0.5)).abs() < 1e-12);
    }

    #[test]
    fn a_component_with_no_data_is_left_out() {
        // No correctness rule: the score is over availability (0.5) and latency (0.3) only.
        // Latency: 30 slow of 1000 = 3% against 1%: burn 3, component 1 - 2/9 = 7/9.
        let c = Counts {
            requests: 1000,
            errors: 0,
            slow: 30,
            incorrect: 0,
            ..Default::default()
        };
        let (_, comps, score) = window_score(&c, SliceCounts::default(), &OBJ, false, &cfg());
        assert_eq!(comps[2], None);
        let expected = (0.5 * 1.0 + 0.3 * 7.0 / 9.0) / 0.8;
        assert!(
            (score.unwrap() - expected).abs() < 1e-12,
            "{score:?} vs {expected}"
        );
    }

    #[test]
    fn the_readme_worked_example() {
        let checkout = Counts {
            requests: 2000,
            errors: 6,
            slow: 30,
            incorrect: 0,
            ..Default::default()
        };
        let (burns, comps, score) =
            window_score(&checkout, SliceCounts::default(), &OBJ, true, &cfg());
        assert!((burns[0].unwrap() - 3.0).abs() < 1e-9);
        assert!((burns[1].unwrap() - 1.5).abs() < 1e-9);
        assert!((comps[0].unwrap() - (1.0 - 2.0 / 9.0)).abs() < 1e-12);
        assert!((comps[1].unwrap() - (1.0 - 0.5 / 9.0)).abs() < 1e-12);
        let checkout = score.unwrap();
        assert!((checkout - 0.87222).abs() < 1e-5, "{checkout}");
        let login = Counts {
            requests: 1000,
            errors: 0,
            slow: 5,
            incorrect: 0,
            ..Default::default()
        };
        let login = window_score(&login, SliceCounts::default(), &OBJ, false, &cfg())
            .2
            .unwrap();
        assert_eq!(login, 1.0);
        let overall = (5.0 * checkout + 3.0 * login) / 8.0;
        assert!((overall - 0.92014).abs() < 1e-5, "{overall}");
    }

    fn overall_with(policy: &str) -> Option<f64> {
        use crate::config::Config;
        use crate::snapshot::SeriesSnap;
        use crate::window::WindowStats;
        let yaml = format!(
            "windows: {{ sizes: [1m] }}\nslo: {{ objectives: {{ availability: 0.9, latency: 0.9 }} }}\nscore: {policy}\njourneys:\n  - {{ name: a, weight: 3, match: {{ span_name: a }} }}\n  - {{ name: b, weight: 1, match: {{ span_name: b }} }}\n  - {{ name: c, weight: 1, match: {{ span_name: c }} }}\n"
        );
        let cfg = Config::parse(&yaml, "t", &|_| None).unwrap();
        let journeys = Journeys::new(&cfg);
        let series = |id: u32, c: Counts| SeriesSnap {
            journey: journeys.get(id).unwrap(),
            from_metrics: false,
            cohort: Arc::from(Vec::<Box<str>>::new()),
            overflow: false,
            totals: c,
            duration_sum_s: 0.0,
            value_total: 0.0,
            value_failed: 0.0,
            buckets: vec![],
            created_unix_ns: 1,
            windows: vec![WindowStats {
                counts: c,
                users: Default::default(),
                value_at_risk: 0.0,
                quantiles_s: vec![],
                start_ns: 0,
                vitals: Default::default(),
            }],
            frustrations: vec![],
            exemplars: None,
        };
        // a: 100 requests, 50 errors: burn 5, score (0.5 * 5/9 + 0.3) / 0.8 = 25/36 + 3/8.
        // b: 300 requests, all good: score 1. c: no requests.
        let snap = Snapshot {
            windows: cfg.windows.sizes.clone(),
            series: vec![
                series(
                    0,
                    Counts {
                        requests: 100,
                        errors: 50,
                        slow: 0,
                        incorrect: 0,
                        ..Default::default()
                    },
                ),
                series(
                    1,
                    Counts {
                        requests: 300,
                        errors: 0,
                        slow: 0,
                        incorrect: 0,
                        ..Default::default()
                    },
                ),
            ],
            // a: 10 users of whom 5 were hurt; b: 50 users.
            users: vec![
                vec![UserCounts {
                    users: 10,
                    affected: 5,
                }],
                vec![UserCounts {
                    users: 50,
                    affected: 0,
                }],
            ],
            ..Default::default()
        };
        let tracker = SloTracker::new(&cfg.slo);
        let eval = evaluate(&snap, &tracker, &journeys, &[], &cfg.score, "v");
        eval.view.overall[0].score
    }

    #[test]
    fn overall_policies_weigh_journeys_as_documented() {
        let a = (0.5 * 5.0 / 9.0 + 0.3) / 0.8;
        let close = |x: Option<f64>, y: f64| (x.unwrap() - y).abs() < 1e-12;
        assert!(
            close(overall_with("{}"), (3.0 * a + 1.0) / 4.0),
            "exclude: c is left out"
        );
        assert!(close(
            overall_with("{ no_data: good }"),
            (3.0 * a + 1.0 + 1.0) / 5.0
        ));
        assert!(close(
            overall_with("{ no_data: bad }"),
            (3.0 * a + 1.0) / 5.0
        ));
        // By traffic: weights 3 x 100 and 1 x 300.
        assert!(close(
            overall_with("{ weight_by_traffic: true }"),
            (300.0 * a + 300.0) / 600.0
        ));
        assert!(close(
            overall_with("{ weight_by: traffic }"),
            (300.0 * a + 300.0) / 600.0
        ));
        // By users: weights 3 x 10 and 1 x 50.
        assert!(close(
            overall_with("{ weight_by: users }"),
            (30.0 * a + 50.0) / 80.0
        ));
    }

    #[test]
    fn no_requests_no_score() {
        assert_eq!(
            window_score(
                &Counts::default(),
                SliceCounts::default(),
                &OBJ,
                true,
                &cfg()
            )
            .2,
            None
        );
    }

    #[test]
    fn filters_parse_from_query_pairs() {
        let f = Filter::from_pairs(
            [
                ("journey", "checkout"),
                ("window", "5m"),
                ("cohort", "service.version:canary"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(f.journeys, vec!["checkout"]);
        assert_eq!(f.window.as_deref(), Some("5m"));
        assert_eq!(
            f.cohort.get("service_version").map(String::as_str),
            Some("canary")
        );
        assert!(Filter::from_pairs([("bogus", "1")].into_iter()).is_err());
    }
}
