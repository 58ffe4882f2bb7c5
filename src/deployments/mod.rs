//! Deployments, derived once per tick from the requests per journey and version.
//!
//! The first version a journey shows is its current one. A version it has never shown
//! starts a deployment from the current version: from the evaluation before its first
//! request (the span's start) the tracker adds up the requests of both versions, tick by
//! tick. Once the new version has `deployments.min_events` requests, both are scored by
//! the journey's score formula (`score::window_score`, handed in by derive) over that same span and
//! judged by the gate's rule ([`regressed`], `deployments.max_drop`): `ok`
//! or `regressed`. When the previous version served nothing in that span (a full
//! cutover), it is scored over the same length of time just before the span instead
//! (or, when that was quiet, over its latest requests before the span, as many as the
//! new version has), from the per-tick counts kept for the current version. A
//! deployment still pending when yet another version appears is `superseded` (not
//! counted as ok or regressed).
//! [`DeploymentTracker`] owns the versions, pending and recent deployments and the
//! counts per result, and writes them beside the SLO checkpoint so a restart keeps them.

pub mod config;

use crate::journey::JourneyInfo;
use crate::snapshot::VersionSnap;
use crate::window::Counts;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

/// The journey's score formula over some requests (derive hands in the score module's,
/// which imports this module's types for the evaluation).
pub type ScoreFn<'a> = dyn Fn(&Counts, &JourneyInfo) -> Option<f64> + 'a;

/// Per-tick counts kept for a journey's current version, for a cutover's baseline; past
/// this the two oldest entries are merged, so older time is kept coarser, never dropped.
const BASELINE_TICKS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Fewer than `min_events` requests of the new version so far.
    Pending,
    Ok,
    Regressed,
    /// A newer version appeared before this one was judged.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Ok => "ok",
            Outcome::Regressed => "regressed",
            Outcome::Superseded => "superseded",
        }
    }
}

/// What was measured of one version over the deployment's span.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Request counts in [`crate::sampling::UNIT`]s, written as (adjusted) requests.
    #[serde(with = "crate::sampling::as_requests")]
    pub requests: u64,
    #[serde(with = "crate::sampling::as_requests")]
    pub errors: u64,
    #[serde(with = "crate::sampling::as_requests")]
    pub slow: u64,
    #[serde(with = "crate::sampling::as_requests")]
    pub incorrect: u64,
    pub availability: Option<f64>,
    pub latency: Option<f64>,
    /// With a correctness rule only.
    pub correctness: Option<f64>,
    /// The journey's score formula over these requests.
    pub score: Option<f64>,
}

impl Figures {
    fn of(c: &Counts, info: &JourneyInfo, score: &ScoreFn<'_>) -> Figures {
        let ratio = |bad: u64| (c.requests > 0).then(|| 1.0 - bad as f64 / c.requests as f64);
        let has_correctness = info.has_correctness;
        let score = score(c, info);
        Figures {
            requests: c.requests,
            errors: c.errors,
            slow: c.slow,
            incorrect: c.incorrect,
            availability: ratio(c.errors),
            latency: ratio(c.slow),
            correctness: if has_correctness {
                ratio(c.incorrect)
            } else {
                None
            },
            score,
        }
    }
}

/// The gate's rule, shared by `cerflow gate --compare` and the deployments: a canary (a
/// new version) regressed when its score is below the baseline's by more than
/// `max_drop`. The epsilon keeps a drop of exactly `max_drop` (0.9 - 0.88 is
/// 0.020000000000000018 in floating point) a pass.
pub fn regressed(canary: f64, baseline: f64, max_drop: f64) -> bool {
    baseline - canary > max_drop + 1e-12
}

/// One deployment, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub journey: String,
    pub version: String,
    pub previous_version: String,
    pub result: Outcome,
    /// The evaluation before the new version's first request: where the span starts.
    pub start_unix_nano: u64,
    /// When it was judged (or superseded); absent while pending.
    pub end_unix_nano: Option<u64>,
    /// The new version over the span.
    pub figures: Figures,
    /// The previous version over the same span, or over as long just before it.
    pub previous_figures: Figures,
    /// `same_span`, or `before` when the previous version served nothing in the span.
    pub baseline: String,
    /// Previous score minus the new one; regressed when above `max_drop`.
    pub score_drop: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Known {
    version: String,
    first_seen_unix_nano: u64,
    last_seen_unix_nano: u64,
    /// The merged counter at the last tick (see [`delta`]); the workers' counters start
    /// again after a restart, so it is not kept.
    #[serde(skip)]
    last: Counts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    deployment: Deployment,
    new: Counts,
    previous: Counts,
    /// The previous version's per-tick counts before the span (end time, counts).
    before: Vec<(u64, Counts)>,
}

/// The per-journey figures of the exposition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeploymentStats {
    pub journey: String,
    pub ok: u64,
    pub regressed: u64,
}

/// One journey's versions, pending deployment, recent ones and figures: what its checkpoint keeps, and what the
/// owner of the journey writes to the Kafka changelog (see `kstate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JourneyState {
    current: Option<String>,
    /// Versions seen, most recently seen last; at most `max_versions`.
    versions: Vec<Known>,
    /// The current version's counts per tick (end time, counts), for a cutover baseline.
    ticks: VecDeque<(u64, Counts)>,
    pending: Option<Pending>,
    /// Judged and superseded deployments, newest first; at most `max_versions`.
    recent: VecDeque<Deployment>,
    stats: DeploymentStats,
}

const CHECKPOINT_KIND: &str = "deployments";
/// The layout of the journeys' state in the checkpoint; a change to it takes the next number.
const CHECKPOINT_FORMAT: u32 = 1;

pub struct DeploymentTracker {
    cfg: crate::config::Deployments,
    journeys: BTreeMap<String, JourneyState>,
    /// The time of the last tick: a new version's span starts there.
    last_tick: u64,
}

/// The growth of a merged counter since the last tick, and the value to remember. A fall
/// is held at the last value: it is a worker that did not answer this tick (its share
/// comes back with it, and counting it again would double it), or one that forgot the
/// version at `max_versions` (counted; its new requests count again once the sum passes
/// the old one). A restart starts the tracker's values at zero with the workers'.
fn delta(now: &Counts, last: &Counts) -> (Counts, Counts) {
    if now.requests < last.requests {
        (Counts::default(), *last)
    } else {
        (now.sub(last), *now)
    }
}

fn push_tick(ticks: &mut VecDeque<(u64, Counts)>, at: u64, c: Counts) {
    if c.requests == 0 {
        return;
    }
    ticks.push_back((at, c));
    if ticks.len() > BASELINE_TICKS {
        if let (Some((_, a)), Some((t, b))) = (ticks.pop_front(), ticks.pop_front()) {
            let mut sum = a;
            sum.add(&b);
            ticks.push_front((t, sum));
        }
    }
}

impl DeploymentTracker {
    pub fn new(cfg: &crate::config::Deployments) -> DeploymentTracker {
        DeploymentTracker {
            cfg: cfg.clone(),
            journeys: BTreeMap::new(),
            last_tick: 0,
        }
    }

    pub fn reconfigure(&mut self, cfg: &crate::config::Deployments) {
        self.cfg = cfg.clone();
    }

    /// Takes this tick's counts per journey and version (sorted by journey, as the
    /// merged snapshot has them); true when a deployment started or was judged.
    pub fn update(&mut self, versions: &[VersionSnap], score: &ScoreFn<'_>, now: u64) -> bool {
        let since = if self.last_tick == 0 {
            now
        } else {
            self.last_tick
        };
        self.last_tick = now;
        let mut changed = false;
        let mut rest = versions;
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|v| v.journey.name == first.journey.name)
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let name = first.journey.name.to_string();
            let info = first.journey.clone();
            let st = self.journeys.entry(name.clone()).or_default();
            st.stats.journey = name.clone();
            changed |= step(st, &name, group, &info, &self.cfg, score, since, now);
        }
        changed
    }

    /// Pending deployments first, then judged ones; newest first in each.
    pub fn deployments(&self) -> Vec<Deployment> {
        let mut pending: Vec<Deployment> = self
            .journeys
            .values()
            .filter_map(|s| s.pending.as_ref().map(|p| p.deployment.clone()))
            .collect();
        pending.sort_by_key(|d| std::cmp::Reverse(d.start_unix_nano));
        let mut done: Vec<Deployment> = self
            .journeys
            .values()
            .flat_map(|s| s.recent.iter().cloned())
            .collect();
        done.sort_by_key(|d| std::cmp::Reverse(d.start_unix_nano));
        pending.extend(done);
        pending
    }

    pub fn stats(&self) -> Vec<DeploymentStats> {
        self.journeys
            .values()
            .filter(|s| {
                s.pending.is_some() || !s.recent.is_empty() || s.stats.ok + s.stats.regressed > 0
            })
            .map(|s| s.stats.clone())
            .collect()
    }

    /// One journey's state, for the owner's changelog record of it.
    pub fn journey_state(&self, journey: &str) -> Option<JourneyState> {
        self.journeys.get(journey).cloned()
    }

    /// Replaces a journey's state with its changelog record (none: the journey had no
    /// state), when a new owner takes it over.
    pub fn restore_journey(&mut self, journey: &str, state: Option<JourneyState>) {
        match state {
            Some(s) => {
                self.journeys.insert(journey.to_string(), s);
            }
            None => {
                self.journeys.remove(journey);
            }
        }
    }

    /// Writes the state next to the SLO checkpoint (see [`crate::checkpoint`]).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::checkpoint::write(path, CHECKPOINT_KIND, CHECKPOINT_FORMAT, &self.journeys)
    }

    /// Reads a checkpoint; a problem is an error for the caller to log, never a panic.
    pub fn load(&mut self, path: &Path) -> Result<usize, String> {
        self.journeys = crate::checkpoint::read(path, CHECKPOINT_KIND, CHECKPOINT_FORMAT)?;
        Ok(self.journeys.len())
    }
}

/// Where the deployments are kept: the SLO checkpoint's path with the extension `deployments`.
pub fn checkpoint_path(slo_checkpoint: &Path) -> std::path::PathBuf {
    slo_checkpoint.with_extension("deployments")
}

/// One journey's tick.
#[allow(clippy::too_many_arguments)]
fn step(
    st: &mut JourneyState,
    journey: &str,
    group: &[VersionSnap],
    info: &JourneyInfo,
    cfg: &crate::config::Deployments,
    score: &ScoreFn<'_>,
    since: u64,
    now: u64,
) -> bool {
    let mut changed = false;
    // This tick's requests per version, and the versions never seen before.
    let mut deltas: Vec<(&str, Counts)> = Vec::with_capacity(group.len());
    let mut new: Vec<(&str, u64)> = Vec::new();
    for v in group {
        match st.versions.iter_mut().find(|k| *k.version == *v.version) {
            Some(k) => {
                let (d, keep) = delta(&v.counts, &k.last);
                k.last = keep;
                if d.requests > 0 {
                    k.last_seen_unix_nano = now;
                }
                deltas.push((&v.version, d));
            }
            None if v.counts.requests > 0 => {
                new.push((&v.version, v.first_seen_ns));
                deltas.push((&v.version, v.counts));
            }
            None => {}
        }
    }
    let of = |name: &str| -> Counts {
        deltas
            .iter()
            .find(|(v, _)| *v == name)
            .map_or(Counts::default(), |(_, c)| *c)
    };
    // The counts of the tick go to the pending deployment before a new one can start.
    if let Some(p) = st.pending.as_mut() {
        p.new.add(&of(&p.deployment.version));
        p.previous.add(&of(&p.deployment.previous_version));
    }
    // In order of first sight, so the last one seen is the newest.
    new.sort_by_key(|(_, first)| *first);
    for (version, _) in &new {
        let counts = of(version);
        st.versions.push(Known {
            version: version.to_string(),
            first_seen_unix_nano: now,
            last_seen_unix_nano: now,
            last: group
                .iter()
                .find(|g| &*g.version == *version)
                .map_or(counts, |g| g.counts),
        });
        let Some(previous) = st.current.replace(version.to_string()) else {
            tracing::info!(journey, version, "A journey's first version.");
            st.ticks.clear();
            continue;
        };
        if let Some(old) = st.pending.take() {
            let mut d = old.deployment;
            d.result = Outcome::Superseded;
            d.end_unix_nano = Some(now);
            st.recent.push_front(d);
        }
        tracing::info!(journey, version, previous = %previous, "A deployment: the journey shows a new version.");
        let before = std::mem::take(&mut st.ticks).into_iter().collect();
        st.pending = Some(Pending {
            deployment: Deployment {
                journey: journey.to_string(),
                version: version.to_string(),
                previous_version: previous.clone(),
                result: Outcome::Pending,
                start_unix_nano: since,
                end_unix_nano: None,
                figures: Figures::default(),
                previous_figures: Figures::default(),
                baseline: "same_span".into(),
                score_drop: None,
            },
            new: counts,
            previous: of(&previous),
            before,
        });
        changed = true;
    }
    if let Some(cur) = st.current.clone() {
        push_tick(&mut st.ticks, now, of(&cur));
    }
    if let Some(p) = st.pending.as_mut() {
        let d = &mut p.deployment;
        let span = now.saturating_sub(d.start_unix_nano);
        let (baseline, which) = if p.previous.requests > 0 {
            (p.previous, "same_span")
        } else {
            let from = d.start_unix_nano.saturating_sub(span);
            let mut c = Counts::default();
            for (_, t) in p.before.iter().filter(|(at, _)| *at > from) {
                c.add(t);
            }
            if c.requests == 0 {
                // Quiet just before the deployment: its latest requests, walking back
                // until there are as many as the new version has.
                for (_, t) in p.before.iter().rev() {
                    c.add(t);
                    if c.requests >= p.new.requests {
                        break;
                    }
                }
            }
            (c, "before")
        };
        d.figures = Figures::of(&p.new, info, score);
        d.previous_figures = Figures::of(&baseline, info, score);
        d.baseline = which.into();
        d.score_drop = match (d.figures.score, d.previous_figures.score) {
            (Some(n), Some(b)) => Some(b - n),
            _ => None,
        };
        let ready = p.new.requests >= crate::sampling::from_requests(cfg.min_events);
        if let (true, Some(n), Some(b)) = (ready, d.figures.score, d.previous_figures.score) {
            let regressed = regressed(n, b, cfg.max_drop);
            d.result = if regressed {
                st.stats.regressed += 1;
                Outcome::Regressed
            } else {
                st.stats.ok += 1;
                Outcome::Ok
            };
            d.end_unix_nano = Some(now);
            tracing::info!(
                journey,
                version = %d.version,
                previous = %d.previous_version,
                result = d.result.as_str(),
                score = n,
                previous_score = b,
                "A deployment was judged."
            );
            if let Some(done) = st.pending.take() {
                st.recent.push_front(done.deployment);
            }
            changed = true;
        }
    }
    st.recent.truncate(cfg.max_versions);
    // Past the bound the least recently seen version goes (never the current one, nor
    // one a pending deployment compares).
    while st.versions.len() > cfg.max_versions {
        let keep = |k: &Known| {
            Some(&k.version) == st.current.as_ref()
                || st.pending.as_ref().is_some_and(|p| {
                    p.deployment.version == k.version || p.deployment.previous_version == k.version
                })
        };
        let Some((i, _)) = st
            .versions
            .iter()
            .enumerate()
            .filter(|(_, k)| !keep(k))
            .min_by_key(|(_, k)| k.last_seen_unix_nano)
        else {
            break;
        };
        st.versions.remove(i);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Counts are in sampling units; the fixtures count whole requests.
    const U: u64 = crate::sampling::UNIT;
    use crate::config::Config;
    use crate::journey::Journeys;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;

    fn close(got: Option<f64>, want: f64) {
        let g = got.expect("a figure");
        assert!((g - want).abs() < 1e-12, "{g} != {want}");
    }

    struct Fixture {
        cfg: Config,
        journey: Arc<crate::journey::JourneyInfo>,
        /// Cumulative requests and errors per version, as the merged snapshot has them.
        totals: BTreeMap<&'static str, Counts>,
        tracker: DeploymentTracker,
    }

    impl Fixture {
        fn new() -> Fixture {
            let cfg = Config::parse(
                "journeys:\n  - name: checkout\n    match: { span_name: x }\n",
                "t",
                &|_| None,
            )
            .unwrap();
            let journeys = Journeys::new(&cfg);
            Fixture {
                tracker: DeploymentTracker::new(&cfg.deployments),
                journey: journeys.get(0).unwrap(),
                cfg,
                totals: BTreeMap::new(),
            }
        }

        /// Adds requests (and errors) per version, then ticks at `at` seconds.
        fn tick(&mut self, at: u64, add: &[(&'static str, u64, u64)]) -> bool {
            for (v, n, e) in add {
                let c = self.totals.entry(v).or_default();
                c.requests += n * U;
                c.errors += e * U;
            }
            let snaps: Vec<VersionSnap> = self
                .totals
                .iter()
                .map(|(v, c)| VersionSnap {
                    journey: self.journey.clone(),
                    version: Arc::from(*v),
                    counts: *c,
                    first_seen_ns: at * S,
                    last_seen_ns: at * S,
                })
                .collect();
            let cfg = self.cfg.score.clone();
            let score = move |c: &Counts, j: &JourneyInfo| {
                let slices = crate::signals::SliceCounts::default();
                crate::score::window_score(c, slices, &j.objectives, j.has_correctness, &cfg).2
            };
            self.tracker.update(&snaps, &score, at * S)
        }
    }

    // Default objectives: availability 0.999, latency 0.99; weights 0.5 and 0.3 (no
    // correctness rule); floor burn rate 10.
    #[test]
    fn a_worse_new_version_is_regressed_by_the_hand_worked_margin() {
        let mut f = Fixture::new();
        assert!(
            !f.tick(10, &[("1.0", 100, 0)]),
            "a first version is no deployment"
        );
        assert!(f.tracker.deployments().is_empty());
        // v2: 30 errors of 100: bad ratio 0.3, burn 0.3 / 0.001 = 300 >= 10: component 0;
        // latency 1: score (0.5 * 0 + 0.3 * 1) / 0.8 = 0.375. v1 over the same span:
        // 100 requests, no errors: 1. Drop 0.625 > 0.02.
        assert!(f.tick(20, &[("1.0", 100, 0), ("2.0", 100, 30)]));
        let d = &f.tracker.deployments()[0];
        assert_eq!(
            (d.version.as_str(), d.previous_version.as_str()),
            ("2.0", "1.0")
        );
        assert_eq!(d.result, Outcome::Regressed);
        assert_eq!((d.start_unix_nano, d.end_unix_nano), (10 * S, Some(20 * S)));
        assert_eq!((d.figures.requests / U, d.figures.errors / U), (100, 30));
        assert_eq!(d.previous_figures.requests / U, 100);
        close(d.figures.score, 0.375);
        close(d.previous_figures.score, 1.0);
        close(d.score_drop, 0.625);
        assert_eq!(d.baseline, "same_span");
        assert_eq!(
            f.tracker.stats(),
            [DeploymentStats {
                journey: "checkout".into(),
                ok: 0,
                regressed: 1
            }]
        );
    }

    #[test]
    fn an_equal_version_is_ok_and_a_short_one_pending() {
        let mut f = Fixture::new();
        f.tick(10, &[("1.0", 100, 0)]);
        // 60 of the 100 events v2 needs: pending, with the figures so far.
        f.tick(20, &[("1.0", 40, 0), ("2.0", 60, 0)]);
        let d = &f.tracker.deployments()[0];
        assert_eq!(d.result, Outcome::Pending);
        assert_eq!(
            (d.figures.requests / U, d.previous_figures.requests / U),
            (60, 40)
        );
        assert_eq!(d.end_unix_nano, None);
        // 60 + 40 = 100: judged; both 1.0 over 100 and 40 + 10 = 50 requests: drop 0.
        f.tick(30, &[("1.0", 10, 0), ("2.0", 40, 0)]);
        let d = &f.tracker.deployments()[0];
        assert_eq!(d.result, Outcome::Ok);
        assert_eq!(
            (d.figures.requests / U, d.previous_figures.requests / U),
            (100, 50)
        );
        close(d.score_drop, 0.0);
        assert_eq!(f.tracker.stats()[0].ok, 1);
    }

    #[test]
    fn a_worker_missing_from_one_tick_is_not_counted_twice() {
        let mut f = Fixture::new();
        f.tick(10, &[("1.0", 100, 0)]);
        f.tick(20, &[("1.0", 10, 0), ("2.0", 50, 0)]);
        // A tick published without a worker that held 30 of 2.0's 50 requests: the sum
        // falls to 20 and is held at 50; the next complete tick brings 50 + 40 = 90,
        // growth 40: 90 requests of 2.0 in all, still pending (not 50 + 20 + 70 = 140).
        let full = f.totals["2.0"];
        f.totals.insert(
            "2.0",
            Counts {
                requests: 20 * U,
                ..full
            },
        );
        f.tick(30, &[]);
        f.totals.insert("2.0", full);
        f.tick(40, &[("2.0", 40, 0)]);
        let d = &f.tracker.deployments()[0];
        assert_eq!((d.result, d.figures.requests / U), (Outcome::Pending, 90));
    }

    #[test]
    fn a_cutover_is_compared_with_as_long_before_it() {
        let mut f = Fixture::new();
        f.tick(10, &[("1.0", 100, 0)]);
        // 0.5% errors: burn 5, component 1 - 4/9; score (0.5 * 5/9 + 0.3) / 0.8 = 0.7222.
        f.tick(20, &[("1.0", 200, 1)]);
        // From here only v2: the span runs from 20 to 30 (10 s), so the baseline is v1's
        // requests after 20 - 10 = 10 up to 20: the tick at 20, 200 requests, 1 error.
        f.tick(30, &[("2.0", 100, 0)]);
        let d = &f.tracker.deployments()[0];
        assert_eq!(d.baseline, "before");
        assert_eq!(
            (
                d.previous_figures.requests / U,
                d.previous_figures.errors / U
            ),
            (200, 1)
        );
        close(d.previous_figures.score, (0.5 * 5.0 / 9.0 + 0.3) / 0.8);
        // v2 is better than v1: ok.
        assert_eq!(d.result, Outcome::Ok);
    }

    #[test]
    fn a_newer_version_supersedes_a_pending_one_and_a_restart_keeps_them() {
        let mut f = Fixture::new();
        f.tick(10, &[("1.0", 100, 0)]);
        f.tick(20, &[("2.0", 10, 0)]);
        f.tick(30, &[("3.0", 10, 0)]);
        let list = f.tracker.deployments();
        let got: Vec<(&str, &str, Outcome)> = list
            .iter()
            .map(|d| (d.version.as_str(), d.previous_version.as_str(), d.result))
            .collect();
        assert_eq!(
            got,
            [
                ("3.0", "2.0", Outcome::Pending),
                ("2.0", "1.0", Outcome::Superseded)
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(&dir.path().join("slo.ckpt"));
        f.tracker.save(&path).unwrap();
        let mut back = DeploymentTracker::new(&f.cfg.deployments);
        assert_eq!(back.load(&path), Ok(1));
        assert_eq!(back.deployments(), list);
        // After a restart the counters start from zero; 3.0 is still the version pending,
        // 10 requests before and 90 now: judged.
        f.tracker = back;
        f.totals.clear();
        f.tick(40, &[("3.0", 90, 0), ("2.0", 5, 0)]);
        let d = &f.tracker.deployments()[0];
        assert_eq!((d.version.as_str(), d.result), ("3.0", Outcome::Ok));
        assert_eq!(
            (d.figures.requests / U, d.previous_figures.requests / U),
            (100, 5)
        );
        // 2.0 came back after the restart: a version known from the checkpoint starts
        // no deployment.
        assert_eq!(f.tracker.deployments().len(), 2);
    }
}
