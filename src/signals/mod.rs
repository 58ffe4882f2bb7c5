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
pub use crate::metric_input::refusal::Outcome;
use crate::metric_input::streams::{Increment, StreamTable};
use crate::metric_input::{for_each_point, refusal, PointKind, NO_RECORDED_VALUE};
use crate::telemetry::{PointReason, Telemetry};
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
    /// Points older than this (as spans: the longest window) are refused.
    longest_ns: u64,
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
            longest_ns: cfg.longest_window().as_nanos() as u64,
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
            // Ahead of our clock: the sender's clock is off; the point is now. Within the
            // longest window its slice is at most that many slices back: in the ring.
            let time = p.time_ns.min(now);
            if now - time > self.longest_ns {
                return out.refuse(PointReason::TooOld, p.metric);
            }
            let index = time / self.slice_ns;
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        Sum,
    };

    const S: u64 = 1_000_000_000;
    const MIN: u64 = 60 * S;
    /// A time on a minute boundary: slice `NOW / MIN` starts exactly here.
    const NOW: u64 = 1_700_000_040 * S;

    fn setup(signals: &str, extra: &str) -> (Config, Signals) {
        let cfg = Config::parse(
            &format!(
                "windows: {{ sizes: [1m, 5m] }}\n{extra}journeys:\n  - name: checkout\n    match: {{ span_name: x }}\n    signals:\n{signals}"
            ),
            "t",
            &|_| None,
        )
        .unwrap();
        let journeys = Journeys::new(&cfg);
        let s = Signals::new(&cfg, &journeys, NOW - 3600 * S);
        (cfg, s)
    }

    fn point(start: u64, t: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn request(m: Metric) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![m],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> ExportMetricsServiceRequest {
        request(Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        })
    }

    fn counter(points: Vec<NumberDataPoint>) -> ExportMetricsServiceRequest {
        request(Metric {
            name: "restarts".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        })
    }

    /// Slice `k` before the current one, plus `s` seconds.
    fn at(k: u64, s: u64) -> u64 {
        NOW - k * MIN + s * S
    }

    #[test]
    fn windows_count_slices_with_data_and_the_budget_counts_each_closed_slice_once() {
        let (_, sig) = setup("      - { name: cpu, max: 0.8 }\n", "");
        // Slices -4 (0.9: bad), -3 (none: missing), -2 (0.5), -1 (0.5), 0 (0.95: bad).
        let req = gauge(
            "cpu",
            vec![
                point(0, at(4, 1), 0.9),
                point(0, at(2, 1), 0.5),
                point(0, at(1, 1), 0.5),
                point(0, NOW + S, 0.95),
            ],
        );
        assert_eq!(sig.process(&req, NOW + 2 * S).rejected(), 0);
        let tel = Telemetry::default();
        let ops = sig.snapshot(NOW + 2 * S, &tel);
        // 1m holds slice 0 only: 1 with data, bad. 5m holds 0..-4: 4 with data, 2 bad.
        assert_eq!(
            ops[0].windows,
            [
                SliceCounts { slices: 1, bad: 1 },
                SliceCounts { slices: 4, bad: 2 }
            ]
        );
        // Closed (two slices old or more): -4 (bad) and -2; -1 and 0 are in their grace.
        assert_eq!(ops[0].closed, SliceCounts { slices: 2, bad: 1 });
        assert_eq!(ops[0].signals[0].last, [Some(0.95), Some(0.95)]);
        assert_eq!(ops[0].signals[0].ok, Some(false));
        // Nothing new has closed: the next tick adds nothing.
        assert_eq!(
            sig.snapshot(NOW + 3 * S, &tel)[0].closed,
            SliceCounts::default()
        );
        // A late point for slice -4, already counted: the window sees it, the budget not.
        sig.process(&gauge("cpu", vec![point(0, at(4, 30), 0.1)]), NOW + 4 * S);
        let ops = sig.snapshot(NOW + 4 * S, &tel);
        assert_eq!(ops[0].closed, SliceCounts::default());
        assert_eq!(ops[0].windows[1], SliceCounts { slices: 4, bad: 2 });
        // A minute later slice -1 (good) closes.
        let ops = sig.snapshot(NOW + MIN + 4 * S, &tel);
        assert_eq!(ops[0].closed, SliceCounts { slices: 1, bad: 0 });
    }

    #[test]
    fn a_rate_is_the_slices_increments_over_its_seconds() {
        let (_, sig) = setup(
            "      - { name: restarts, aggregate: rate, max: 0.01 }\n",
            "",
        );
        let started = NOW - 7200 * S;
        // Baseline 10 (slice -3), then +0 (slice -2), then +1 and +2 within slice -1:
        // 3 in 60 s = 0.05.
        let req = counter(vec![
            point(started, at(3, 1), 10.0),
            point(started, at(2, 1), 10.0),
            point(started, at(1, 1), 11.0),
            point(started, at(1, 30), 13.0),
        ]);
        sig.process(&req, NOW);
        let ops = sig.snapshot(NOW, &Telemetry::default());
        assert_eq!(ops[0].windows[1], SliceCounts { slices: 2, bad: 1 });
        assert_eq!(ops[0].signals[0].last[1], Some(3.0 / 60.0));
    }

    #[test]
    fn new_streams_past_the_limit_are_refused_and_old_points_are_too_old() {
        let (_, sig) = setup(
            "      - { name: restarts, aggregate: rate, max: 1 }\n",
            "signals: { max_streams: 1 }\n",
        );
        let mut req = counter(vec![point(NOW - S, at(1, 1), 1.0)]);
        let mut other = counter(vec![point(NOW - S, at(1, 2), 1.0)]);
        other.resource_metrics[0].scope_metrics[0].metrics[0].name = "restarts".into();
        if let Some(metric::Data::Sum(s)) =
            &mut other.resource_metrics[0].scope_metrics[0].metrics[0].data
        {
            s.data_points[0].attributes = vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                key: "pod".into(),
                ..Default::default()
            }];
        }
        assert_eq!(sig.process(&req, NOW).rejected(), 0);
        let out = sig.process(&other, NOW);
        assert_eq!(out.refused[PointReason::StreamLimit as usize], 1);
        assert_eq!(
            out.first.as_deref(),
            Some("metric \"restarts\": stream_limit")
        );
        // The 5m window is the longest: a point 5m59s old is too old, 4m59s is not.
        let set_time = |req: &mut ExportMetricsServiceRequest, t: u64| {
            if let Some(metric::Data::Sum(s)) =
                &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
            {
                s.data_points[0].time_unix_nano = t;
            }
        };
        set_time(&mut req, at(6, 1));
        let out = sig.process(&req, NOW);
        assert_eq!(out.refused[PointReason::TooOld as usize], 1);
        set_time(&mut req, at(5, 1));
        assert_eq!(sig.process(&req, NOW).rejected(), 0);
    }

    #[test]
    fn a_reload_keeps_the_slices_of_unchanged_signals_only() {
        let (cfg, sig) = setup("      - { name: cpu, max: 0.8 }\n", "");
        sig.process(&gauge("cpu", vec![point(0, at(2, 1), 0.5)]), NOW);
        let journeys = Journeys::new(&cfg);
        sig.reload(&cfg, &journeys);
        let tel = Telemetry::default();
        assert_eq!(sig.snapshot(NOW, &tel)[0].windows[1].slices, 1);
        let (changed, _) = setup("      - { name: cpu, max: 0.9 }\n", "");
        sig.reload(&changed, &Journeys::new(&changed));
        assert_eq!(sig.snapshot(NOW, &tel)[0].windows[1].slices, 0);
    }
}
