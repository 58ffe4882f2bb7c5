//! Operational signals: the health of what serves a journey (saturation, queue depth,
//! restarts) from OTLP metrics, judged in time slices, as the journey's operations SLI.
//!
//! Time is cut into slices of `signals.slice` on the data points' own timestamps,
//! aligned to the Unix epoch. A signal is good in a slice when the aggregate of its
//! points in that slice (max, avg, sum, or rate = sum of increments / slice seconds) is
//! within its bound; a slice where it has no point is missing for it, neither good nor
//! bad. A slice of the journey has data when any of its signals has, and is good when
//! every signal with data is good. A window of length W holds the W / slice latest
//! slices, the current one included; the operations SLI of the window is good slices /
//! slices with data (OpenSLO's `Timeslices` budgeting), and has no value without data.
//!
//! For the error budget a slice counts once, when it has data and is two slices old
//! (one slice of grace for late exports); a point that arrives for a slice already
//! counted changes the windows but not the budget. Values are never carried forward:
//! a signal that stops reporting makes missing slices, not good ones.
//!
//! The state sits behind one lock taken once per request (metrics arrive far less often
//! than spans) and once per tick by the deriver. Points are read through the shared
//! input layer ([`crate::metric_input`]).

pub mod config;

use crate::config::Config;
use crate::internal_events::{InternalEvent, MetricStreamsExpired};
use crate::journey::{JourneyInfo, Journeys};
use crate::metric_input::matcher::Matcher;
use crate::metric_input::streams::{Increment, StreamTable};
use crate::metric_input::{for_each_point, refusal, PointKind, NO_RECORDED_VALUE};
use crate::telemetry::{PointReason, Telemetry, POINT_REASONS};
use config::{Aggregate, Bound, SignalConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use std::sync::{Arc, Mutex, MutexGuard};

/// One slice of one signal: enough to give any aggregate.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Slice number since the epoch; a slot whose index is not the slice asked is empty.
    index: u64,
    points: u64,
    sum: f64,
    max: f64,
}

#[derive(Debug)]
struct SignalState {
    label: Arc<str>,
    bound: Bound,
    aggregate: Aggregate,
    slots: Vec<Slot>,
}

impl SignalState {
    fn record(&mut self, index: u64, v: f64) {
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(index % n) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                points: 0,
                sum: 0.0,
                max: f64::MIN,
            };
        }
        slot.points += 1;
        slot.sum += v;
        slot.max = slot.max.max(v);
    }

    fn aggregate(&self, index: u64, slice_s: f64) -> Option<f64> {
        let n = self.slots.len() as u64;
        let s = &self.slots[(index % n) as usize];
        (s.index == index && s.points > 0).then(|| match self.aggregate {
            Aggregate::Max => s.max,
            Aggregate::Avg => s.sum / s.points as f64,
            Aggregate::Sum => s.sum,
            Aggregate::Rate => s.sum / slice_s,
        })
    }
}

#[derive(Debug)]
struct JourneyState {
    info: Arc<JourneyInfo>,
    cfg: Vec<SignalConfig>,
    signals: Vec<SignalState>,
    /// Per ring slot: the slice it was last counted for in the error budget.
    counted: Vec<u64>,
}

/// Slices with data and bad slices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceCounts {
    pub slices: u64,
    pub bad: u64,
}

impl SliceCounts {
    pub fn good(&self) -> u64 {
        self.slices - self.bad
    }

    /// Good slices over slices with data; `None` without data.
    pub fn ratio(&self) -> Option<f64> {
        (self.slices > 0).then(|| self.good() as f64 / self.slices as f64)
    }
}

/// One signal at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSnap {
    pub name: Arc<str>,
    /// Per window: the aggregate of the latest slice with data in it.
    pub last: Vec<Option<f64>>,
    /// Whether the latest slice with data (in the longest window) is within the bound.
    pub ok: Option<bool>,
}

/// A journey's operations at one tick.
#[derive(Debug, Clone)]
pub struct JourneyOps {
    pub journey: Arc<JourneyInfo>,
    /// Per window.
    pub windows: Vec<SliceCounts>,
    pub signals: Vec<SignalSnap>,
    /// Slices that closed since the last tick, for the error budget.
    pub closed: SliceCounts,
}

/// What one metrics request came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Refused points by [`PointReason`], indexed as [`POINT_REASONS`].
    pub refused: [u64; POINT_REASONS.len()],
    /// The first refusal, for the partial-success message.
    pub first: Option<String>,
}

impl Outcome {
    pub fn rejected(&self) -> u64 {
        self.refused.iter().sum()
    }

    fn refuse(&mut self, r: PointReason, metric: &str) {
        self.refused[r as usize] += 1;
        if self.first.is_none() {
            self.first = Some(format!("metric \"{metric}\": {}", r.as_str()));
        }
    }
}

struct State {
    matcher: Matcher<(usize, usize)>,
    journeys: Vec<JourneyState>,
    streams: StreamTable,
}

pub struct Signals {
    state: Mutex<State>,
    slice_ns: u64,
    /// Slices per window.
    window_slices: Vec<u64>,
    /// Slices kept: the longest window, plus two for the grace before a slice counts.
    ring: u64,
}

fn build(
    cfg: &Config,
    journeys: &Journeys,
    ring: u64,
    mut old: Vec<JourneyState>,
) -> (Matcher<(usize, usize)>, Vec<JourneyState>) {
    let mut matcher = Matcher::default();
    let mut out = Vec::new();
    for (jc, info) in cfg.journeys.iter().zip(journeys.configured()) {
        if jc.signals.is_empty() {
            continue;
        }
        let j = out.len();
        for (s, sc) in jc.signals.iter().enumerate() {
            matcher.add(&sc.name, sc.matcher.clone(), (j, s));
        }
        // A journey whose signals did not change keeps its slices across a reload.
        let kept = old
            .iter()
            .position(|o| o.info.name == info.name && o.cfg == jc.signals)
            .map(|i| old.swap_remove(i));
        out.push(match kept {
            Some(mut k) => {
                k.info = info.clone();
                k
            }
            None => JourneyState {
                info: info.clone(),
                cfg: jc.signals.clone(),
                signals: jc
                    .signals
                    .iter()
                    .map(|sc| SignalState {
                        label: Arc::from(sc.name.as_str()),
                        bound: sc.bound,
                        aggregate: sc.aggregate,
                        slots: vec![Slot::default(); ring as usize],
                    })
                    .collect(),
                counted: vec![0; ring as usize],
            },
        });
    }
    (matcher, out)
}

impl Signals {
    pub fn new(cfg: &Config, journeys: &Journeys, started_ns: u64) -> Signals {
        let slice_ns = cfg.signals.slice.as_nanos() as u64;
        let window_slices: Vec<u64> = cfg
            .windows
            .sizes
            .iter()
            .map(|w| (w.as_nanos() as u64 / slice_ns).max(1))
            .collect();
        let ring = window_slices.iter().copied().max().unwrap_or(1) + 2;
        let (matcher, journeys) = build(cfg, journeys, ring, Vec::new());
        Signals {
            state: Mutex::new(State {
                matcher,
                journeys,
                streams: StreamTable::new(
                    cfg.signals.max_streams,
                    cfg.windows.series_ttl.as_nanos() as u64,
                    started_ns,
                ),
            }),
            slice_ns,
            window_slices,
            ring,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop ingestion; the state stays consistent per point.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the journeys of a reloaded config; slice length and windows need a restart.
    pub fn reload(&self, cfg: &Config, journeys: &Journeys) {
        let mut st = self.lock();
        let old = std::mem::take(&mut st.journeys);
        let (matcher, js) = build(cfg, journeys, self.ring, old);
        st.matcher = matcher;
        st.journeys = js;
    }

    /// Records every point of the request that feeds a signal; refuses bad ones.
    pub fn process(&self, req: &ExportMetricsServiceRequest, now: u64) -> Outcome {
        let mut out = Outcome::default();
        let mut guard = self.lock();
        let State {
            matcher,
            journeys,
            streams,
        } = &mut *guard;
        if journeys.is_empty() {
            return out;
        }
        let current = now / self.slice_ns;
        let kept = self.ring - 2;
        for_each_point(req, |p| {
            if !matcher.wants(p.metric) || !matcher.any_match(p) {
                return;
            }
            if p.flags & NO_RECORDED_VALUE != 0 {
                return;
            }
            let v = match refusal::check(p) {
                Ok(v) => v,
                Err(r) => return out.refuse(r, p.metric),
            };
            // Ahead of our clock: the sender's clock is off; the point is now.
            let index = p.time_ns.min(now) / self.slice_ns;
            if index + kept <= current {
                return out.refuse(PointReason::TooOld, p.metric);
            }
            let v = match p.kind {
                PointKind::Sum {
                    monotonic: true,
                    cumulative: true,
                } => match streams.cumulative(p.stream_id(), p.start_ns, p.time_ns, v, now) {
                    Ok(Increment::By(x)) => x,
                    Ok(Increment::Nothing) => return,
                    Err(_) => return out.refuse(PointReason::StreamLimit, p.metric),
                },
                _ => v,
            };
            matcher.each_match(p, |&(j, s)| journeys[j].signals[s].record(index, v));
        });
        out
    }

    /// Every journey's slices, windows and signals at `now`, and the slices that closed
    /// since the last call. Called once per tick, by the deriver.
    pub fn snapshot(&self, now: u64, tel: &Telemetry) -> Vec<JourneyOps> {
        let mut st = self.lock();
        let expired = st.streams.expire(now);
        MetricStreamsExpired {
            count: expired as u64,
        }
        .emit(tel);
        let current = now / self.slice_ns;
        let slice_s = self.slice_ns as f64 / 1e9;
        let nw = self.window_slices.len();
        let ring = self.ring;
        st.journeys
            .iter_mut()
            .map(|j| {
                let mut windows = vec![SliceCounts::default(); nw];
                let mut closed = SliceCounts::default();
                let mut signals: Vec<SignalSnap> = j
                    .signals
                    .iter()
                    .map(|s| SignalSnap {
                        name: s.label.clone(),
                        last: vec![None; nw],
                        ok: None,
                    })
                    .collect();
                for k in 0..ring.min(current) {
                    let index = current - k;
                    let mut has_data = false;
                    let mut bad = false;
                    for (s, snap) in j.signals.iter().zip(signals.iter_mut()) {
                        let Some(v) = s.aggregate(index, slice_s) else {
                            continue;
                        };
                        let good = s.bound.holds(v);
                        has_data = true;
                        bad |= !good;
                        if k < ring - 2 && snap.ok.is_none() {
                            snap.ok = Some(good);
                        }
                        for (w, n) in self.window_slices.iter().enumerate() {
                            if k < *n && snap.last[w].is_none() {
                                snap.last[w] = Some(v);
                            }
                        }
                    }
                    if !has_data {
                        continue;
                    }
                    for (w, n) in self.window_slices.iter().enumerate() {
                        if k < *n {
                            windows[w].slices += 1;
                            windows[w].bad += u64::from(bad);
                        }
                    }
                    let mark = &mut j.counted[(index % ring) as usize];
                    if k >= 2 && *mark != index {
                        *mark = index;
                        closed.slices += 1;
                        closed.bad += u64::from(bad);
                    }
                }
                JourneyOps {
                    journey: j.info.clone(),
                    windows,
                    signals,
                    closed,
                }
            })
            .collect()
    }
}
