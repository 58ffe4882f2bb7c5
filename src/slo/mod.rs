//! SLOs: error budgets over a rolling period, burn rates, and multi-window alerts.
//!
//! Budgets are kept per journey, and per journey x cohort where cohorts are configured,
//! in counts-only rings fed by the per-tick growth of each series' cumulative counters.
//! They therefore outlive the series (a cohort that goes quiet keeps its history for the
//! whole period), cost a few KB per key however long the period, and can be written to
//! a checkpoint and read back after a restart. Burn windows run on arrival time, as
//! PromQL `rate()`-based SLO rules do; the score windows stay on event time.

pub mod config;

use crate::config::{Objectives, Severity, SliKind, Slo};
use crate::journey::{Journeys, Origin};
use crate::signals::SliceCounts;
use crate::sli::Snapshot;
use crate::slo::config::{slis_for, N_SLIS, SLIS};
use crate::window::{Counts, Reset, Ring};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Sub-buckets per burn window and per period.
const BURN_SUB_BUCKETS: u32 = 12;
const PERIOD_SUB_BUCKETS: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub journey: Arc<str>,
    /// `None` for the journey as a whole.
    pub cohort: Option<Arc<[Box<str>]>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct AlertState {
    active: bool,
    last_true_ns: u64,
}

/// What the budget rings count: requests for the request SLIs, time slices for the
/// operations SLI.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SloCounts {
    pub requests: Counts,
    pub slices: SliceCounts,
}

impl SloCounts {
    pub fn add(&mut self, o: &SloCounts) {
        self.requests.add(&o.requests);
        self.slices.slices += o.slices.slices;
        self.slices.bad += o.slices.bad;
    }
}

impl Reset for SloCounts {
    fn reset(&mut self) {
        *self = SloCounts::default();
    }
}

/// Value of the failed or incorrect requests in one period sub-bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Lost(f64);

impl Reset for Lost {
    fn reset(&mut self) {
        self.0 = 0.0;
    }
}

#[derive(Debug, Clone)]
struct Entry {
    burn: Vec<Ring<SloCounts>>,
    period: Ring<SloCounts>,
    /// The money behind the period's failures, beside its counts: the same shape, so it
    /// slides and is checkpointed with them.
    lost: Ring<Lost>,
    /// [sli][severity]
    alerts: [[AlertState; 2]; N_SLIS],
    origin: Origin,
}

/// The SLO figures of one key at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SloEval {
    pub objectives: Objectives,
    pub period_counts: Counts,
    /// Time slices of the operations SLI over the period.
    pub period_slices: SliceCounts,
    /// Value of the failed or incorrect requests over the period (0 without a value rule).
    pub value_lost: f64,
    /// 1 = untouched, 0 = spent, negative = overspent; 1 with no events.
    pub budget_remaining: [f64; N_SLIS],
    /// Per burn window, per SLI; `None` where the window had no events.
    pub burn: Vec<[Option<f64>; N_SLIS]>,
    pub burn_counts: Vec<Counts>,
    /// [sli][severity]: active after hysteresis.
    pub alerts: [[bool; 2]; N_SLIS],
}

/// The cohort key of a journey's overflow series: a value no cohort can have.
pub const OVERFLOW_COHORT: &str = "\u{0}otel_metric_overflow";

/// The cohort part of a series' SLO key; overflow series get [`OVERFLOW_COHORT`].
pub fn cohort_key(s: &crate::snapshot::SeriesSnap) -> Arc<[Box<str>]> {
    if s.overflow {
        Arc::from(vec![Box::<str>::from(OVERFLOW_COHORT)])
    } else {
        s.cohort.clone()
    }
}

/// The events that count against an SLI (errors, slow or incorrect requests, bad
/// slices, vitals over their threshold) and the events it is judged over (requests,
/// slices with data, web vital measurements).
/// Lives here, not on `Counts`, because only SLO and score arithmetic asks it.
pub trait BadCount {
    fn bad(&self, sli: SliKind) -> u64;
    fn total(&self, sli: SliKind) -> u64;
}

impl BadCount for Counts {
    fn bad(&self, sli: SliKind) -> u64 {
        match sli {
            SliKind::Availability => self.errors,
            SliKind::Latency => self.slow,
            SliKind::Correctness => self.incorrect,
            SliKind::Operations => 0,
            SliKind::Experience => self.vitals_bad,
        }
    }
    fn total(&self, sli: SliKind) -> u64 {
        match sli {
            SliKind::Operations => 0,
            SliKind::Experience => self.vitals,
            _ => self.requests,
        }
    }
}

impl BadCount for SloCounts {
    fn bad(&self, sli: SliKind) -> u64 {
        match sli {
            SliKind::Operations => self.slices.bad,
            _ => self.requests.bad(sli),
        }
    }
    fn total(&self, sli: SliKind) -> u64 {
        match sli {
            SliKind::Operations => self.slices.slices,
            _ => self.requests.total(sli),
        }
    }
}

pub fn burn_rate(bad: u64, total: u64, objective: f64) -> Option<f64> {
    // 1 - 0.999 is 0.0010000000000000009 in binary; rounding the budget share to 12
    // decimals keeps hand-computed figures (0.25 / 0.001 = 250) exact.
    let budget = ((1.0 - objective) * 1e12).round() / 1e12;
    (total > 0).then(|| (bad as f64 / total as f64) / budget)
}

/// A series by journey name and cohort values.
type SeriesKey = (Arc<str>, Arc<[Box<str>]>);

/// A series' cumulative figures at the last tick that showed it.
#[derive(Clone, Copy)]
struct Prev {
    created_unix_ns: u64,
    totals: Counts,
    value_failed: f64,
    seen_unix_ns: u64,
}

/// How long the figures of a series missing from the snapshots are kept. A series can be
/// missing while still alive (its worker did not answer in time); forgetting it then
/// would add its whole count again when it is back. One that expired comes back with a
/// new creation time and starts from zero anyway, so keeping it longer than needed is
/// harmless; this only bounds the memory of series that never return.
const PREV_KEEP_NS: u64 = 3_600 * 1_000_000_000;

pub struct SloTracker {
    cfg: Slo,
    /// Each series' cumulative counts and failed value at the last tick, keyed by
    /// journey name (stable across reloads, unlike ids) and cohort.
    prev: HashMap<SeriesKey, Prev>,
    entries: HashMap<Key, Entry>,
    evals: HashMap<Key, SloEval>,
    /// Keys read from the checkpoint at start, shown until their journeys' traffic returns
    /// or the caller forgets them.
    restored: Vec<Key>,
}

fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Page => 0,
        Severity::Ticket => 1,
    }
}

impl SloTracker {
    pub fn new(cfg: &Slo) -> SloTracker {
        SloTracker {
            cfg: cfg.clone(),
            prev: HashMap::new(),
            entries: HashMap::new(),
            evals: HashMap::new(),
            restored: Vec::new(),
        }
    }

    /// Takes new objectives, alert rules and thresholds from a reloaded config. The
    /// rings stay; a new period or new burn windows need a restart to take effect.
    pub fn reconfigure(&mut self, cfg: &Slo) -> Result<(), &'static str> {
        if cfg.period != self.cfg.period || cfg.burn_windows != self.cfg.burn_windows {
            self.cfg.objectives = cfg.objectives;
            self.cfg.min_events = cfg.min_events;
            self.cfg.clear_after = cfg.clear_after;
            return Err("slo.period or the burn windows changed; they take effect after a restart");
        }
        let checkpoint = self.cfg.checkpoint.clone();
        self.cfg = Slo {
            checkpoint,
            ..cfg.clone()
        };
        Ok(())
    }

    pub fn burn_windows(&self) -> &[std::time::Duration] {
        &self.cfg.burn_windows
    }

    fn new_entry(&self, origin: Origin) -> Entry {
        Entry {
            burn: self
                .cfg
                .burn_windows
                .iter()
                .map(|w| Ring::new(w.as_nanos() as u64, BURN_SUB_BUCKETS))
                .collect(),
            period: Ring::new(self.cfg.period.as_nanos() as u64, PERIOD_SUB_BUCKETS),
            lost: Ring::new(self.cfg.period.as_nanos() as u64, PERIOD_SUB_BUCKETS),
            alerts: Default::default(),
            origin,
        }
    }

    fn add(&mut self, key: Key, origin: &Origin, delta: &SloCounts, lost: f64, now: u64) {
        if !self.entries.contains_key(&key) {
            let e = self.new_entry(origin.clone());
            self.entries.insert(key.clone(), e);
        }
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        for ring in e.burn.iter_mut().chain(std::iter::once(&mut e.period)) {
            if let Some(slot) = ring.slot_mut(now, now) {
                slot.add(delta);
            }
        }
        if let Some(slot) = e.lost.slot_mut(now, now) {
            slot.0 += lost;
        }
    }

    /// Takes in the growth of every series since the last tick, and the time slices that
    /// closed, and re-evaluates.
    pub fn update(&mut self, snap: &Snapshot, journeys: &Journeys, now: u64) {
        let mut objectives: HashMap<Arc<str>, (Objectives, bool, bool)> = HashMap::new();
        for s in &snap.series {
            let id = (s.journey.name.clone(), cohort_key(s));
            let (before, lost_before) = match self.prev.get(&id) {
                // A series that expired and came back starts its counters again.
                Some(p) if p.created_unix_ns == s.created_unix_ns => (p.totals, p.value_failed),
                _ => (Counts::default(), 0.0),
            };
            let delta = s.totals.sub(&before);
            let lost = (s.value_failed - lost_before).max(0.0);
            self.prev.insert(
                id,
                Prev {
                    created_unix_ns: s.created_unix_ns,
                    totals: s.totals,
                    value_failed: s.value_failed,
                    seen_unix_ns: now,
                },
            );
            objectives.insert(
                s.journey.name.clone(),
                (
                    s.journey.objectives,
                    s.journey.has_correctness,
                    s.journey.has_operations,
                ),
            );
            if delta.requests == 0 && delta.vitals == 0 {
                continue;
            }
            let delta = SloCounts {
                requests: delta,
                ..Default::default()
            };
            self.add(
                Key {
                    journey: s.journey.name.clone(),
                    cohort: None,
                },
                &s.journey.origin,
                &delta,
                lost,
                now,
            );
            if !s.journey.cohort_keys.is_empty() || s.overflow {
                self.add(
                    Key {
                        journey: s.journey.name.clone(),
                        cohort: Some(cohort_key(s)),
                    },
                    &s.journey.origin,
                    &delta,
                    lost,
                    now,
                );
            }
        }
        self.prev
            .retain(|_, p| now.saturating_sub(p.seen_unix_ns) < PREV_KEEP_NS);
        // Slices are a journey's, not a cohort's: they go to the journey key only.
        for ops in snap.operations.iter().filter(|o| o.closed.slices > 0) {
            let delta = SloCounts {
                slices: ops.closed,
                ..Default::default()
            };
            let key = Key {
                journey: ops.journey.name.clone(),
                cohort: None,
            };
            self.add(key, &ops.journey.origin, &delta, 0.0, now);
        }
        for j in journeys.configured() {
            objectives.insert(
                j.name.clone(),
                (j.objectives, j.has_correctness, j.has_operations),
            );
        }
        // Keys whose whole period is empty are dropped: nothing is left to say about them.
        self.entries.retain(|_, e| !e.period.is_idle(now));
        let default_objectives = self.cfg.objectives;
        let mut evals = HashMap::with_capacity(self.entries.len());
        for (key, e) in self.entries.iter_mut() {
            let (obj, has_correctness, has_operations) = objectives
                .get(&key.journey)
                .copied()
                .unwrap_or((default_objectives, false, false));
            // Cohort keys never hold slices.
            let has_operations = has_operations && key.cohort.is_none();
            evals.insert(
                key.clone(),
                evaluate_entry(&self.cfg, e, obj, has_correctness, has_operations, now),
            );
        }
        self.evals = evals;
    }

    /// When the journey's budget began to burn too fast for an active alert of `sev`: the
    /// start of the oldest sub-bucket, in such an alert's long window, whose own burn rate
    /// exceeded the alert's rate (any SLI, the journey as a whole or a cohort).
    pub fn onset(&self, journey: &str, sev: Severity, now: u64) -> Option<u64> {
        let mut first: Option<u64> = None;
        for (key, e) in self.entries.iter().filter(|(k, _)| &*k.journey == journey) {
            let Some(ev) = self.evals.get(key) else {
                continue;
            };
            for rule in self.cfg.alerts.iter().filter(|r| r.severity == sev) {
                let Some(l) = self
                    .cfg
                    .burn_windows
                    .iter()
                    .position(|w| *w == rule.long_window)
                else {
                    continue;
                };
                for sli in SLIS.into_iter().filter(|s| alert_active(ev, *s, sev)) {
                    let o = ev.objectives.get(sli);
                    for (start, c) in e.burn[l].live_since(now) {
                        if burn_rate(c.bad(sli), c.total(sli), o)
                            .is_some_and(|b| b > rule.burn_rate)
                        {
                            first = Some(first.map_or(start, |f| f.min(start)));
                        }
                    }
                }
            }
        }
        first
    }

    pub fn eval(&self, key: &Key) -> Option<&SloEval> {
        self.evals.get(key)
    }

    /// The live slots of a key's period ring, oldest first: when each slot ends (unix
    /// ns) and the events that arrived in it. What the web view draws the budget from.
    pub fn period_slots(&self, key: &Key, now: u64) -> Vec<(u64, SloCounts)> {
        let Some(e) = self.entries.get(key) else {
            return Vec::new();
        };
        let sub = e.period.sub_ns();
        let n = u64::from(PERIOD_SUB_BUCKETS);
        let now_b = now / sub;
        let mut out: Vec<(u64, SloCounts)> = e
            .period
            .export()
            .into_iter()
            .filter(|(b, _)| *b <= now_b && b + n > now_b)
            .map(|(b, c)| (b.saturating_add(1).saturating_mul(sub), c))
            .collect();
        out.sort_by_key(|(end, _)| *end);
        out
    }

    pub fn evals(&self) -> impl Iterator<Item = (&Key, &SloEval)> {
        self.evals.iter()
    }

    /// The keys the checkpoint brought back that still hold state, with their journey's
    /// origin, so their budgets can be shown before their traffic returns.
    pub fn restored(&self) -> impl Iterator<Item = (&Key, &Origin)> {
        self.restored
            .iter()
            .filter_map(|k| self.entries.get(k).map(|e| (k, &e.origin)))
    }

    /// From now on only keys with traffic are shown (a restored journey that stayed quiet
    /// for `windows.series_ttl` expires like any other); their state stays in the
    /// checkpoint for the SLO period.
    pub fn forget_restored(&mut self) {
        self.restored = Vec::new();
    }

    /// Writes the state atomically: a temporary file, fsync, then rename over the old one.
    pub fn save(&self, path: &Path, now: u64) -> std::io::Result<()> {
        let file = CheckpointFile {
            format: 1,
            request_unit: crate::sampling::UNIT,
            saved_unix_ns: now,
            entries: self
                .entries
                .iter()
                .map(|(k, e)| CheckpointEntry::of(k, e))
                .collect(),
        };
        let body = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        let crc = crc32fast::hash(&body);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{CHECKPOINT_MAGIC} crc32={crc:08x} len={}", body.len())?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Reads a checkpoint; every problem is an error for the caller to log, never a panic.
    pub fn load(&mut self, path: &Path) -> Result<usize, String> {
        let data =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let nl = data
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("no header line")?;
        let header = std::str::from_utf8(&data[..nl]).map_err(|_| "header is not text")?;
        let body = &data[nl + 1..];
        let mut parts = header.split(' ');
        if parts.next() != Some(CHECKPOINT_MAGIC) {
            return Err("not a cerflow checkpoint".into());
        }
        let crc = parts
            .next()
            .and_then(|p| p.strip_prefix("crc32="))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or("header has no checksum")?;
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch: the file is corrupt or was cut short".into());
        }
        let file: CheckpointFile =
            serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))?;
        if file.format != 1 {
            return Err(format!("unknown checkpoint format {}", file.format));
        }
        // Request counts of files written before sampling units were whole requests.
        let scale = match file.request_unit {
            1 => crate::sampling::UNIT,
            crate::sampling::UNIT => 1,
            u => return Err(format!("unknown request unit {u}")),
        };
        let restored = file.entries.len();
        for ce in file.entries {
            self.insert_entry(ce, scale);
        }
        Ok(restored)
    }

    fn insert_entry(&mut self, ce: CheckpointEntry, scale: u64) {
        let mut e = self.new_entry(ce.origin);
        // Rings whose shape changed with the config (another window or period) start empty.
        for (ring, data) in e.burn.iter_mut().zip(ce.burn) {
            data.into_ring(ring, scale);
        }
        ce.period.into_ring(&mut e.period, scale);
        if let Some(lost) = ce.lost {
            lost.into_ring(&mut e.lost);
        }
        for (i, (active, last)) in ce.alerts.into_iter().enumerate().take(2 * N_SLIS) {
            e.alerts[i / 2][i % 2] = AlertState {
                active,
                last_true_ns: last,
            };
        }
        let key = Key {
            journey: Arc::from(ce.journey.as_str()),
            cohort: ce
                .cohort
                .map(|c| c.into_iter().map(|v| v.into_boxed_str()).collect()),
        };
        self.restored.push(key.clone());
        self.entries.insert(key, e);
    }

    /// One journey's state (the journey as a whole and its cohorts) in the checkpoint's
    /// encoding, for the owner's Kafka changelog; entries sorted so equal state encodes
    /// to equal bytes (the changelog writes a journey only when its bytes change).
    pub fn journey_state(&self, journey: &str) -> JourneySlo {
        let mut entries: Vec<CheckpointEntry> = self
            .entries
            .iter()
            .filter(|(k, _)| &*k.journey == journey)
            .map(|(k, e)| CheckpointEntry::of(k, e))
            .collect();
        entries.sort_by(|a, b| a.cohort.cmp(&b.cohort));
        JourneySlo {
            request_unit: crate::sampling::UNIT,
            entries,
        }
    }

    /// Replaces a journey's state with one read from the changelog (a new owner after a
    /// rebalance); returns the number of series restored.
    pub fn restore_journey(&mut self, journey: &str, state: JourneySlo) -> Result<usize, String> {
        if state.request_unit != crate::sampling::UNIT {
            return Err(format!("unknown request unit {}", state.request_unit));
        }
        if let Some(bad) = state.entries.iter().find(|e| e.journey != journey) {
            return Err(format!(
                "the changelog record of {journey} holds state of {}",
                bad.journey
            ));
        }
        self.forget_journey(journey);
        let n = state.entries.len();
        for ce in state.entries {
            self.insert_entry(ce, 1);
        }
        Ok(n)
    }

    /// Drops the totals last seen of a journey's series, so the next update counts its
    /// series from zero: after a Kafka owner rebuilds them from the partition's start.
    /// Not part of [`SloTracker::forget_journey`]: a changelog restore keeps them.
    pub fn forget_seen(&mut self, journey: &str) {
        self.prev.retain(|(j, _), _| &**j != journey);
    }

    /// Drops a journey's state: its partition went to another owner.
    pub fn forget_journey(&mut self, journey: &str) {
        self.entries.retain(|k, _| &*k.journey != journey);
        self.evals.retain(|k, _| &*k.journey != journey);
        self.restored.retain(|k| &*k.journey != journey);
    }
}

/// One journey's SLO state as the changelog carries it (see [`SloTracker::journey_state`]).
#[derive(Serialize, Deserialize)]
pub struct JourneySlo {
    request_unit: u64,
    entries: Vec<CheckpointEntry>,
}

const CHECKPOINT_MAGIC: &str = "cerflow-slo-checkpoint";

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    format: u32,
    /// What one request counts in the rings: [`crate::sampling::UNIT`]; absent (1) in
    /// files written before sampled spans counted their adjusted count.
    #[serde(default = "whole_request")]
    request_unit: u64,
    saved_unix_ns: u64,
    entries: Vec<CheckpointEntry>,
}

impl CheckpointEntry {
    fn of(k: &Key, e: &Entry) -> CheckpointEntry {
        CheckpointEntry {
            journey: k.journey.to_string(),
            cohort: k
                .cohort
                .as_ref()
                .map(|c| c.iter().map(|v| v.to_string()).collect()),
            burn: e.burn.iter().map(RingData::from_ring).collect(),
            period: RingData::from_ring(&e.period),
            lost: Some(LostData::from_ring(&e.lost)),
            alerts: e
                .alerts
                .iter()
                .flat_map(|per_sev| per_sev.iter().map(|a| (a.active, a.last_true_ns)))
                .collect(),
            origin: e.origin.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointEntry {
    journey: String,
    cohort: Option<Vec<String>>,
    burn: Vec<RingData>,
    period: RingData,
    /// Absent in checkpoints written before the period's lost value was kept.
    #[serde(default)]
    lost: Option<LostData>,
    alerts: Vec<(bool, u64)>,
    /// Absent in checkpoints written before origins were kept: read as configured.
    #[serde(default)]
    origin: Origin,
}

fn whole_request() -> u64 {
    1
}

#[derive(Serialize, Deserialize)]
struct RingData {
    sub_ns: u64,
    /// (bucket index, [requests, errors, slow, incorrect, slices, bad slices, vitals,
    /// bad vitals]); files written before the operations SLI have the first four, read
    /// with no slices, and before the experience SLI the first six, read with no vitals.
    slots: Vec<(u64, Vec<u64>)>,
}

impl RingData {
    fn from_ring(r: &Ring<SloCounts>) -> RingData {
        RingData {
            sub_ns: r.sub_ns(),
            slots: r
                .export()
                .into_iter()
                .map(|(b, c)| {
                    let q = c.requests;
                    let s = c.slices;
                    (
                        b,
                        vec![
                            q.requests,
                            q.errors,
                            q.slow,
                            q.incorrect,
                            s.slices,
                            s.bad,
                            q.vitals,
                            q.vitals_bad,
                        ],
                    )
                })
                .collect(),
        }
    }

    /// `scale` turns the file's request counts into units (see `request_unit`).
    fn into_ring(self, r: &mut Ring<SloCounts>, scale: u64) {
        if self.sub_ns != r.sub_ns() {
            return;
        }
        r.import(
            self.slots
                .into_iter()
                .map(|(b, v)| {
                    let at = |i: usize| v.get(i).copied().unwrap_or(0);
                    let req = |i: usize| at(i).saturating_mul(scale);
                    let requests = Counts {
                        requests: req(0),
                        errors: req(1),
                        slow: req(2),
                        incorrect: req(3),
                        vitals: at(6),
                        vitals_bad: at(7).min(at(6)),
                    };
                    let slices = SliceCounts {
                        slices: at(4),
                        bad: at(5).min(at(4)),
                    };
                    (b, SloCounts { requests, slices })
                })
                .collect(),
        );
    }
}

#[derive(Serialize, Deserialize)]
struct LostData {
    sub_ns: u64,
    /// (bucket index, value)
    slots: Vec<(u64, f64)>,
}

impl LostData {
    fn from_ring(r: &Ring<Lost>) -> LostData {
        LostData {
            sub_ns: r.sub_ns(),
            slots: r.export().into_iter().map(|(b, v)| (b, v.0)).collect(),
        }
    }

    fn into_ring(self, r: &mut Ring<Lost>) {
        // A value that is not a finite, non-negative sum was not written by cerflow.
        if self.sub_ns != r.sub_ns()
            || self
                .slots
                .iter()
                .any(|(_, v)| !(v.is_finite() && *v >= 0.0))
        {
            return;
        }
        r.import(self.slots.into_iter().map(|(b, v)| (b, Lost(v))).collect());
    }
}

fn sum(ring: &Ring<SloCounts>, now: u64) -> SloCounts {
    let mut c = SloCounts::default();
    ring.live(now).for_each(|x| c.add(x));
    c
}

/// A journey without a correctness rule has no correctness data: no burn, no alert;
/// one without signals has no operations data.
fn evaluate_entry(
    cfg: &Slo,
    e: &mut Entry,
    obj: Objectives,
    has_correctness: bool,
    has_operations: bool,
    now: u64,
) -> SloEval {
    let period = sum(&e.period, now);
    let burn_counts: Vec<SloCounts> = e.burn.iter().map(|r| sum(r, now)).collect();
    let mut budget_remaining = [1.0; N_SLIS];
    let mut burn = vec![[None; N_SLIS]; burn_counts.len()];
    let slis: Vec<SliKind> = slis_for(has_correctness, has_operations).collect();
    for &sli in &slis {
        let i = sli as usize;
        let o = obj.get(sli);
        if let Some(b) = burn_rate(period.bad(sli), period.total(sli), o) {
            budget_remaining[i] = 1.0 - b;
        }
        for (w, c) in burn_counts.iter().enumerate() {
            burn[w][i] = burn_rate(c.bad(sli), c.total(sli), o);
        }
    }
    let window_index = |d: std::time::Duration| cfg.burn_windows.iter().position(|w| *w == d);
    let mut firing = [[false; 2]; N_SLIS];
    for rule in &cfg.alerts {
        let (Some(l), Some(s)) = (
            window_index(rule.long_window),
            window_index(rule.short_window),
        ) else {
            continue;
        };
        for &sli in &slis {
            // Events are requests (in sampling units), slices with data (operations) or
            // vitals (experience).
            let min_events = match sli {
                SliKind::Operations | SliKind::Experience => cfg.min_events,
                _ => crate::sampling::from_requests(cfg.min_events),
            };
            if burn_counts[l].total(sli) < min_events {
                continue;
            }
            let i = sli as usize;
            let over = |w: usize| burn[w][i].is_some_and(|b| b > rule.burn_rate);
            if over(l) && over(s) {
                firing[i][severity_index(rule.severity)] = true;
            }
        }
    }
    let clear_ns = cfg.clear_after.as_nanos() as u64;
    let mut alerts = [[false; 2]; N_SLIS];
    for (i, per_sev) in e.alerts.iter_mut().enumerate() {
        for (j, st) in per_sev.iter_mut().enumerate() {
            if firing[i][j] {
                st.active = true;
                st.last_true_ns = now;
            } else if st.active && now.saturating_sub(st.last_true_ns) >= clear_ns {
                st.active = false;
            }
            alerts[i][j] = st.active;
        }
    }
    SloEval {
        objectives: obj,
        period_counts: period.requests,
        period_slices: period.slices,
        value_lost: e.lost.live(now).map(|l| l.0).sum(),
        budget_remaining,
        burn,
        burn_counts: burn_counts.iter().map(|c| c.requests).collect(),
        alerts,
    }
}

pub fn alert_active(e: &SloEval, sli: SliKind, sev: Severity) -> bool {
    e.alerts[sli as usize][severity_index(sev)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::snapshot::SeriesSnap;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    fn snap_with(journeys: &Journeys, totals: Counts, created: u64) -> Snapshot {
        let info = journeys.get(0).unwrap();
        Snapshot {
            series: vec![SeriesSnap {
                journey: info,
                from_metrics: false,
                cohort: Arc::from(Vec::<Box<str>>::new()),
                overflow: false,
                totals,
                duration_sum_s: 0.0,
                value_total: 0.0,
                value_failed: 0.0,
                buckets: vec![],
                created_unix_ns: created,
                windows: vec![],
                exemplars: None,
                frustrations: vec![],
            }],
            ..Default::default()
        }
    }

    fn setup(extra: &str) -> (Config, Journeys) {
        let cfg = Config::parse(
            &format!("journeys:\n  - name: checkout\n    match: {{ span_name: x }}\n{extra}"),
            "t",
            &|_| None,
        )
        .unwrap();
        let j = Journeys::new(&cfg);
        (cfg, j)
    }

    #[test]
    fn the_default_table_is_the_sre_workbook() {
        let cfg = Config::default();
        let rates: Vec<(Severity, u64, u64, f64)> = cfg
            .slo
            .alerts
            .iter()
            .map(|a| {
                (
                    a.severity,
                    a.long_window.as_secs(),
                    a.short_window.as_secs(),
                    (a.burn_rate * 1000.0).round() / 1000.0,
                )
            })
            .collect();
        assert_eq!(
            rates,
            vec![
                (Severity::Page, 3600, 300, 14.4),
                (Severity::Page, 21600, 1800, 6.0),
                (Severity::Ticket, 86400, 7200, 3.0),
                (Severity::Ticket, 259200, 21600, 1.0),
            ]
        );
        let windows: Vec<u64> = cfg.slo.burn_windows.iter().map(|w| w.as_secs()).collect();
        assert_eq!(windows, vec![300, 1800, 3600, 7200, 21600, 86400, 259200]);
    }

    #[test]
    fn a_7_day_period_scales_the_factors() {
        let (cfg, _) = setup("slo:\n  period: 7d\n");
        let page: Vec<f64> = cfg
            .slo
            .alerts
            .iter()
            .map(|a| (a.burn_rate * 1000.0).round() / 1000.0)
            .collect();
        // 2% of 7 days in 1 h = 3.36; 5% in 6 h = 1.4; 10% in 1 d = 0.7; 10% in 3 d = 0.233.
        assert_eq!(page, vec![3.36, 1.4, 0.7, 0.233]);
    }

    #[test]
    fn budget_and_burn_follow_the_deltas() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        // 1000 requests, 2 failures: error ratio 0.002 against a budget of 0.001.
        t.update(
            &snap_with(
                &journeys,
                Counts {
                    requests: 1000,
                    errors: 2,
                    slow: 0,
                    incorrect: 0,
                    ..Default::default()
                },
                1,
            ),
            &journeys,
            now,
        );
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        let e = t.eval(&key).unwrap();
        let avail = SliKind::Availability as usize;
        assert!(
            (e.burn[0][avail].unwrap() - 2.0).abs() < 1e-9,
            "{:?}",
            e.burn[0]
        );
        assert!((e.budget_remaining[avail] - -1.0).abs() < 1e-9);
        assert_eq!(e.budget_remaining[SliKind::Latency as usize], 1.0);
        // The same cumulative totals again add nothing.
        t.update(
            &snap_with(
                &journeys,
                Counts {
                    requests: 1000,
                    errors: 2,
                    slow: 0,
                    incorrect: 0,
                    ..Default::default()
                },
                1,
            ),
            &journeys,
            now + S,
        );
        assert_eq!(t.eval(&key).unwrap().period_counts.requests, 1000);
        // A restarted series (new creation time) counts from zero again.
        t.update(
            &snap_with(
                &journeys,
                Counts {
                    requests: 500,
                    errors: 0,
                    slow: 0,
                    incorrect: 0,
                    ..Default::default()
                },
                2,
            ),
            &journeys,
            now + 2 * S,
        );
        assert_eq!(t.eval(&key).unwrap().period_counts.requests, 1500);
    }

    /// A Kafka owner that loses a journey's partition and gets it back rebuilds the
    /// series from the partition's start (new creation time, all of its totals): after
    /// `forget_journey` + `forget_seen` the period holds the rebuilt totals once.
    /// By hand: 70 requests (10 failed) owned, then revoked, then 71 (10 failed) rebuilt:
    /// 71 in the period, not 70 + 71 = 141.
    #[test]
    fn a_journey_an_owner_gets_back_is_counted_once() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        let counts = |requests: u64| Counts {
            requests,
            errors: 10,
            ..Default::default()
        };
        t.update(&snap_with(&journeys, counts(70), 1), &journeys, now);
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        assert_eq!(t.eval(&key).unwrap().period_counts.requests, 70);
        t.forget_journey("checkout");
        t.forget_seen("checkout");
        t.update(&Snapshot::default(), &journeys, now + S);
        assert!(t.eval(&key).is_none());
        t.update(&snap_with(&journeys, counts(71), 2), &journeys, now + 2 * S);
        let e = t.eval(&key).unwrap();
        assert_eq!((e.period_counts.requests, e.period_counts.errors), (71, 10));
    }

    #[test]
    fn a_series_missing_from_one_snapshot_is_not_counted_twice() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        let requests = |n| Counts {
            requests: n,
            ..Default::default()
        };
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        t.update(&snap_with(&journeys, requests(1000), 1), &journeys, now);
        // Its worker did not answer: the series is absent from this tick's snapshot.
        t.update(&Snapshot::default(), &journeys, now + S);
        // Back with 1200 in all: 200 new, so 1000 + 200 = 1200 over the period, not
        // 1000 + 1200.
        t.update(
            &snap_with(&journeys, requests(1200), 1),
            &journeys,
            now + 2 * S,
        );
        assert_eq!(t.eval(&key).unwrap().period_counts.requests, 1200);
        // Unseen for longer than PREV_KEEP_NS, it is forgotten: what it shows then is
        // counted as new (a series that old has long expired on its worker).
        t.update(&Snapshot::default(), &journeys, now + 2 * S + PREV_KEEP_NS);
        assert!(t.prev.is_empty());
    }

    #[test]
    fn a_page_needs_both_windows_enough_events_and_clears_after_hysteresis() {
        let (cfg, journeys) = setup(
            "slo:\n  min_events: 100\n  clear_after: 10m\n  alerts:\n    - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }\n",
        );
        let mut t = SloTracker::new(&cfg.slo);
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        let now = 1_000_000 * S;
        // 50 requests, all failing: burn 1000, but fewer than min_events.
        t.update(
            &snap_with(&journeys, Counts::whole(50, 50, 0, 0), 1),
            &journeys,
            now,
        );
        assert!(!alert_active(
            t.eval(&key).unwrap(),
            SliKind::Availability,
            Severity::Page
        ));
        // 100 more, all failing: 150 events in 1 h, burn far above 14.4 in 5 m and 1 h.
        t.update(
            &snap_with(&journeys, Counts::whole(150, 150, 0, 0), 1),
            &journeys,
            now + S,
        );
        let e = t.eval(&key).unwrap();
        assert!(alert_active(e, SliKind::Availability, Severity::Page));
        assert!(
            !alert_active(e, SliKind::Availability, Severity::Ticket),
            "no ticket rule is configured"
        );
        assert!(!alert_active(e, SliKind::Latency, Severity::Page));
        // 6 minutes later the 5 m window is empty: the condition is false but the alert holds.
        let later = now + 6 * 60 * S;
        t.update(
            &snap_with(&journeys, Counts::whole(150, 150, 0, 0), 1),
            &journeys,
            later,
        );
        assert!(alert_active(
            t.eval(&key).unwrap(),
            SliKind::Availability,
            Severity::Page
        ));
        // 10 minutes after it was last true, it clears.
        t.update(
            &snap_with(&journeys, Counts::whole(150, 150, 0, 0), 1),
            &journeys,
            now + S + 10 * 60 * S,
        );
        assert!(!alert_active(
            t.eval(&key).unwrap(),
            SliKind::Availability,
            Severity::Page
        ));
    }

    #[test]
    fn closed_slices_burn_the_operations_budget_and_survive_a_checkpoint() {
        let (cfg, journeys) = setup(
            "    signals: [{ name: cpu, max: 0.8 }]\nslo:\n  objectives: { operations: 0.9 }\n",
        );
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        let info = journeys.get(0).unwrap();
        let snap = Snapshot {
            operations: vec![crate::signals::JourneyOps {
                journey: info,
                windows: vec![],
                signals: vec![],
                closed: SliceCounts { slices: 11, bad: 3 },
            }],
            ..Default::default()
        };
        t.update(&snap, &journeys, now);
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        let ops = SliKind::Operations as usize;
        // (3/11) / (1 - 0.9) = 30/11; remaining 1 - 30/11 = -19/11.
        let e = t.eval(&key).unwrap();
        assert!((e.burn[0][ops].unwrap() - 30.0 / 11.0).abs() < 1e-9);
        assert!((e.budget_remaining[ops] - -19.0 / 11.0).abs() < 1e-9);
        // No request SLI burns: slices are not requests.
        assert_eq!(e.burn[0][SliKind::Availability as usize], None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slo.ckpt");
        t.save(&path, now).unwrap();
        let mut back = SloTracker::new(&cfg.slo);
        assert_eq!(back.load(&path), Ok(1));
        back.update(&Snapshot::default(), &journeys, now + S);
        let e = back.eval(&key).unwrap();
        assert_eq!(e.period_slices, SliceCounts { slices: 11, bad: 3 });
    }

    #[test]
    fn the_value_lost_over_the_period_grows_with_the_series_and_survives_a_checkpoint() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        let counts = |requests| Counts {
            requests,
            errors: 1,
            ..Default::default()
        };
        let with_lost = |requests, failed: f64, created| {
            let mut s = snap_with(&journeys, counts(requests), created);
            s.series[0].value_failed = failed;
            s
        };
        // The series' failed value grows 10.25 -> 30.75 (+20.5) over two ticks; then it
        // expires and a new one (another start time) begins at 4.5: 30.75 + 4.5 = 35.25.
        t.update(&with_lost(10, 10.25, 1), &journeys, now);
        t.update(&with_lost(20, 30.75, 1), &journeys, now + S);
        t.update(&with_lost(1, 4.5, 2), &journeys, now + 2 * S);
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        assert_eq!(t.eval(&key).unwrap().value_lost, 35.25);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slo.ckpt");
        t.save(&path, now + 2 * S).unwrap();
        let mut back = SloTracker::new(&cfg.slo);
        assert_eq!(back.load(&path), Ok(1));
        back.update(&Snapshot::default(), &journeys, now + 3 * S);
        assert_eq!(back.eval(&key).unwrap().value_lost, 35.25);
        // A checkpoint from before the value was kept reads with none lost.
        let text = std::fs::read_to_string(&path).unwrap();
        let body = text.split_once('\n').unwrap().1;
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["entries"][0].as_object_mut().unwrap().remove("lost");
        let body = serde_json::to_string(&v).unwrap();
        let old = format!(
            "{CHECKPOINT_MAGIC} crc32={:08x} len={}\n{body}",
            crc32fast::hash(body.as_bytes()),
            body.len()
        );
        std::fs::write(&path, old).unwrap();
        let mut back = SloTracker::new(&cfg.slo);
        assert_eq!(back.load(&path), Ok(1));
        back.update(&Snapshot::default(), &journeys, now + 3 * S);
        assert_eq!(back.eval(&key).unwrap().value_lost, 0.0);
        assert_eq!(back.eval(&key).unwrap().period_counts.requests, 21);
    }

    #[test]
    fn a_checkpoint_round_trips_and_a_corrupt_one_is_refused() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        t.update(
            &snap_with(
                &journeys,
                Counts {
                    requests: 40,
                    errors: 4,
                    slow: 2,
                    incorrect: 0,
                    ..Default::default()
                },
                1,
            ),
            &journeys,
            now,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/slo.ckpt");
        t.save(&path, now).unwrap();
        let mut back = SloTracker::new(&cfg.slo);
        assert_eq!(back.load(&path), Ok(1));
        back.update(&Snapshot::default(), &journeys, now + S);
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        assert_eq!(
            back.eval(&key).unwrap().period_counts,
            Counts {
                requests: 40,
                errors: 4,
                slow: 2,
                incorrect: 0,
                ..Default::default()
            }
        );

        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let err = SloTracker::new(&cfg.slo).load(&path).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
        let _ = Duration::ZERO;
    }

    #[test]
    fn a_checkpoint_in_whole_requests_reads_back_in_sampling_units() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        let c = Counts::whole(40, 4, 2, 0);
        t.update(&snap_with(&journeys, c, 1), &journeys, now);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slo.ckpt");
        t.save(&path, now).unwrap();
        // Rewrite it as cerflow wrote it before sampling units: no request_unit, the
        // first four figures of each slot in whole requests.
        let data = std::fs::read(&path).unwrap();
        let nl = data.iter().position(|b| *b == b'\n').unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&data[nl + 1..]).unwrap();
        assert_eq!(v["request_unit"], crate::sampling::UNIT);
        v.as_object_mut().unwrap().remove("request_unit");
        let whole = |ring: &mut serde_json::Value| {
            for slot in ring["slots"].as_array_mut().unwrap() {
                for i in 0..4 {
                    let n = slot[1][i].as_u64().unwrap();
                    slot[1][i] = (n / crate::sampling::UNIT).into();
                }
            }
        };
        let entry = &mut v["entries"][0];
        entry["burn"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(whole);
        whole(&mut entry["period"]);
        let body = serde_json::to_vec(&v).unwrap();
        let mut file = format!(
            "{CHECKPOINT_MAGIC} crc32={:08x} len={}\n",
            crc32fast::hash(&body),
            body.len()
        )
        .into_bytes();
        file.extend_from_slice(&body);
        std::fs::write(&path, file).unwrap();
        let mut back = SloTracker::new(&cfg.slo);
        assert_eq!(back.load(&path), Ok(1));
        back.update(&Snapshot::default(), &journeys, now + S);
        let key = Key {
            journey: Arc::from("checkout"),
            cohort: None,
        };
        // 40 whole requests, 4 errors, 2 slow: the same counts as before the rewrite.
        assert_eq!(back.eval(&key).unwrap().period_counts, c);
    }

    #[test]
    fn a_checkpoint_keeps_each_keys_origin_and_old_files_read_as_configured() {
        let (cfg, journeys) = setup("");
        let mut t = SloTracker::new(&cfg.slo);
        let now = 1_000_000 * S;
        let c = Counts {
            requests: 10,
            ..Default::default()
        };
        t.update(&snap_with(&journeys, c, 1), &journeys, now);
        let derived = Origin::Derived {
            service: "shop".into(),
            span: "GET /".into(),
        };
        let key = |name: &str| Key {
            journey: Arc::from(name),
            cohort: None,
        };
        let c2 = SloCounts {
            requests: c,
            ..Default::default()
        };
        t.add(key("shop:GET /"), &derived, &c2, 0.0, now);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slo.ckpt");
        t.save(&path, now).unwrap();
        let mut back = SloTracker::new(&cfg.slo);
        assert_eq!(back.load(&path), Ok(2));
        let mut origins: Vec<(String, Origin)> = back
            .restored()
            .map(|(k, o)| (k.journey.to_string(), o.clone()))
            .collect();
        origins.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            origins,
            [
                ("checkout".to_string(), Origin::Configured),
                ("shop:GET /".to_string(), derived)
            ]
        );
        back.forget_restored();
        assert_eq!(back.restored().count(), 0);

        // A checkpoint written before origins were kept has entries without one.
        let body = br#"{"format":1,"saved_unix_ns":1,"entries":[{"journey":"j","cohort":null,"burn":[],"period":{"sub_ns":1,"slots":[]},"alerts":[]}]}"#;
        let mut file = format!(
            "{CHECKPOINT_MAGIC} crc32={:08x} len={}\n",
            crc32fast::hash(body),
            body.len()
        )
        .into_bytes();
        file.extend_from_slice(body);
        std::fs::write(&path, file).unwrap();
        let mut old = SloTracker::new(&cfg.slo);
        assert_eq!(old.load(&path), Ok(1));
        assert_eq!(
            old.restored().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
            [Origin::Configured]
        );
    }
}
