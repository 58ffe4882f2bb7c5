//! Request counts from OTLP metrics: a journey's `metrics` inputs (histograms of request
//! durations, monotonic counters of requests, errors or incorrect requests) become the
//! same journey x cohort series spans make, so SLIs, SLOs, budgets and scores are
//! derived from them exactly as from spans.
//!
//! - A histogram point gives requests (its count), slow requests (above the journey's
//!   latency threshold, [`crate::metric_input::histogram`]), its latency sum and
//!   buckets; its requests are errors when the input's `failure` holds for the point and
//!   incorrect when its `incorrect` holds (on point attributes, then resource).
//! - A counter point adds to the count its `role` names (requests by default; a
//!   requests counter is split by `failure` and `incorrect` like a histogram).
//! - Cumulative points become deltas through a [`StreamTable`] (resets, baselines,
//!   expiry), one stream per point stream and input; delta points count as they come.
//!   The table holds at most `signals.max_streams` streams, as the signals' table does.
//! - Cohort values are read from point attributes, then resource; a journey's series
//!   past `limits.max_series_per_journey`, or made while the window state (span-fed and
//!   metric-fed series together, the workers' [`Admission`]) is at
//!   `limits.max_window_state_bytes`, go to its overflow series, as spans do; each
//!   recording into it is counted (`cerflow_cardinality_overflow_total`). Series not
//!   updated for `windows.series_ttl` expire.
//!
//! A point is counted at its own time (`time_unix_nano`, capped at now): the whole
//! delta lands in the sub-bucket of that instant. The state sits behind one lock taken
//! once per request and once per tick; the deriver merges the series it hands out with
//! the workers' span series ([`crate::sli::Snapshot::merge`]).

pub mod config;

use crate::config::Config;
use crate::internal_events::{
    CardinalityOverflow, InternalEvent, MetricStreamsExpired, SeriesExpired,
};
use crate::journey::{JourneyInfo, Journeys};
use crate::metric_input::histogram::{self, BUCKETS, COUNT, SLOW, SUM_S};
use crate::metric_input::matcher::Matcher;
use crate::metric_input::refusal::Outcome;
use crate::metric_input::streams::StreamTable;
use crate::metric_input::NO_RECORDED_VALUE;
use crate::metric_input::{for_each_point, refusal, Dist, Point, PointKind, PointView};
use crate::pipeline::Admission;
use crate::snapshot::{SeriesSnap, ShardSnapshot, QUANTILES};
use crate::span::{clip, SpanView, MAX_LABEL_VALUE_BYTES};
use crate::telemetry::{PointReason, Telemetry};
use crate::window::{Counts, SeriesState};
use config::{MetricInputConfig, Role};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

struct JourneyState {
    info: Arc<JourneyInfo>,
    inputs: Vec<MetricInputConfig>,
    /// Series the journey holds, for its cardinality limit.
    series: usize,
}

struct Series {
    journey: usize,
    cohort: Arc<[Box<str>]>,
    overflow: bool,
    state: SeriesState,
}

struct State {
    matcher: Matcher<(usize, usize)>,
    journeys: Vec<JourneyState>,
    streams: StreamTable,
    /// By the hash of journey name and cohort values; collisions share the list.
    series: HashMap<u64, Vec<Series>>,
    /// Reused per point: the laid-out histogram, its increment, the cohort values.
    laid: Vec<f64>,
    inc: Vec<f64>,
    text: String,
    ends: Vec<usize>,
    hits: Vec<(usize, usize)>,
    buckets: Vec<u64>,
    /// Heap bytes of the series: measured at each snapshot, grown by each new series.
    bytes: usize,
}

pub struct MetricRequests {
    state: Mutex<State>,
    window_ns: Vec<u64>,
    sub_buckets: u32,
    bounds_ns: Vec<u64>,
    ttl_ns: u64,
    longest_ns: u64,
    max_series: usize,
    missing: String,
    hasher: ahash::RandomState,
    /// The memory limit, shared with the span-fed series.
    admission: Arc<Admission>,
}

fn build(cfg: &Config, journeys: &Journeys) -> (Matcher<(usize, usize)>, Vec<JourneyState>) {
    let mut matcher = Matcher::default();
    let mut out = Vec::new();
    for (jc, info) in cfg.journeys.iter().zip(journeys.configured()) {
        if jc.metrics.is_empty() {
            continue;
        }
        let j = out.len();
        for (i, m) in jc.metrics.iter().enumerate() {
            matcher.add(&m.name, m.matcher.clone(), (j, i));
        }
        out.push(JourneyState {
            info: info.clone(),
            inputs: jc.metrics.clone(),
            series: 0,
        });
    }
    (matcher, out)
}

/// What one input takes from one point, before cumulative streams become deltas.
enum Reading<'a> {
    Counter(f64),
    /// A checked histogram and its unit's nanoseconds.
    Histogram(Dist<'a>, f64),
}

impl MetricRequests {
    pub fn new(
        cfg: &Config,
        journeys: &Journeys,
        started_ns: u64,
        admission: Arc<Admission>,
    ) -> MetricRequests {
        let (matcher, js) = build(cfg, journeys);
        let bounds_ns: Vec<u64> = cfg.bounds_ns();
        MetricRequests {
            state: Mutex::new(State {
                matcher,
                journeys: js,
                streams: StreamTable::new(
                    cfg.signals.max_streams,
                    cfg.windows.series_ttl.as_nanos() as u64,
                    started_ns,
                ),
                series: HashMap::new(),
                laid: vec![0.0; BUCKETS + bounds_ns.len() + 1],
                inc: vec![0.0; BUCKETS + bounds_ns.len() + 1],
                text: String::new(),
                ends: Vec::new(),
                hits: Vec::new(),
                buckets: Vec::new(),
                bytes: 0,
            }),
            window_ns: cfg.windows_ns(),
            sub_buckets: cfg.windows.sub_buckets,
            bounds_ns,
            ttl_ns: cfg.windows.series_ttl.as_nanos() as u64,
            longest_ns: cfg.longest_window().as_nanos() as u64,
            max_series: cfg.limits.max_series_per_journey,
            missing: cfg.cohorts.missing_value.clone(),
            hasher: ahash::RandomState::with_seeds(21, 22, 23, 24),
            admission,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop ingestion; the state stays consistent per point.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the journeys of a reloaded config. A journey whose inputs did not change
    /// keeps its series (under its new index); the others start again.
    pub fn reload(&self, cfg: &Config, journeys: &Journeys) {
        let mut st = self.lock();
        let (matcher, mut js) = build(cfg, journeys);
        let old = std::mem::take(&mut st.journeys);
        let map: Vec<Option<usize>> = old
            .iter()
            .map(|o| {
                js.iter()
                    .position(|n| n.info.name == o.info.name && n.inputs == o.inputs)
            })
            .collect();
        st.series.retain(|_, list| {
            list.retain_mut(|s| match map[s.journey] {
                Some(n) => {
                    s.journey = n;
                    js[n].series += 1;
                    true
                }
                None => false,
            });
            !list.is_empty()
        });
        st.matcher = matcher;
        st.journeys = std::mem::take(&mut js);
    }

    /// Records every point of the request that feeds a journey's metric input; refuses
    /// bad ones into `out`.
    pub fn process(
        &self,
        req: &ExportMetricsServiceRequest,
        now: u64,
        out: &mut Outcome,
        tel: &Telemetry,
    ) {
        let mut guard = self.lock();
        if guard.journeys.is_empty() {
            return;
        }
        let st = &mut *guard;
        for_each_point(req, |p| {
            if !st.matcher.wants(p.metric) || !st.matcher.any_match(p) {
                return;
            }
            if p.flags & NO_RECORDED_VALUE != 0 {
                return;
            }
            let reading = match (p.kind, p.dist) {
                (_, Some(d)) => match histogram::check(d, p.unit) {
                    Ok(ns) => Reading::Histogram(d, ns),
                    Err(r) => return out.refuse(r, p.metric),
                },
                (
                    PointKind::Sum {
                        monotonic: true, ..
                    },
                    _,
                ) => match refusal::check(p) {
                    Ok(v) => Reading::Counter(v),
                    Err(r) => return out.refuse(r, p.metric),
                },
                _ => return out.refuse(PointReason::UnsupportedType, p.metric),
            };
            if p.time_ns == 0 {
                return out.refuse(PointReason::MissingTime, p.metric);
            }
            // Ahead of our clock: the sender's clock is off; the point is now.
            let time = p.time_ns.min(now);
            if now - time > self.longest_ns {
                return out.refuse(PointReason::TooOld, p.metric);
            }
            let mut refused = None;
            let mut hits = std::mem::take(&mut st.hits);
            hits.clear();
            st.matcher.each_match(p, |&ji| hits.push(ji));
            for &(j, i) in &hits {
                if let Err(r) = self.record(st, p, &reading, j, i, time, now, tel) {
                    refused.get_or_insert(r);
                }
            }
            st.hits = hits;
            if let Some(r) = refused {
                out.refuse(r, p.metric);
            }
        });
    }

    /// Adds what input `i` of journey `j` takes from the point to the series it names.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        st: &mut State,
        p: &Point<'_>,
        reading: &Reading<'_>,
        j: usize,
        i: usize,
        time: u64,
        now: u64,
        tel: &Telemetry,
    ) -> Result<(), PointReason> {
        let (failed, incorrect, role, threshold_ns) = {
            let js = &st.journeys[j];
            let input = &js.inputs[i];
            let view = PointView(p);
            (
                input.failure.eval(&view),
                input.incorrect.as_ref().is_some_and(|c| c.eval(&view)),
                input.role.unwrap_or(Role::Requests),
                js.info.latency_threshold_ns,
            )
        };
        let n = match reading {
            Reading::Counter(v) => {
                st.laid[0] = *v;
                1
            }
            Reading::Histogram(d, ns) => {
                if role != Role::Requests {
                    return Err(PointReason::UnsupportedType);
                }
                histogram::lay(*d, *ns, threshold_ns, &self.bounds_ns, &mut st.laid);
                st.laid.len()
            }
        };
        let cumulative = match (p.kind, p.dist) {
            (_, Some(Dist::Histogram(_, c) | Dist::Exponential(_, c))) => c,
            (PointKind::Sum { cumulative, .. }, _) => cumulative,
            _ => false,
        };
        if cumulative {
            let mut h = self.hasher.build_hasher();
            h.write_u64(p.stream_id());
            h.write_usize(j);
            h.write_usize(i);
            let (laid, inc) = (&st.laid[..n], &mut st.inc[..n]);
            match st
                .streams
                .cumulative_many(h.finish(), p.start_ns, p.time_ns, laid, now, inc)
            {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(_) => return Err(PointReason::StreamLimit),
            }
        } else {
            let (laid, inc) = (&st.laid[..n], &mut st.inc[..n]);
            inc.copy_from_slice(laid);
        }
        let inc = &st.inc;
        // Double-valued counters may carry fractions; a request is whole.
        let whole = |x: f64| x.max(0.0).round() as u64;
        let mut counts = Counts::default();
        let mut sum_s = 0.0;
        let mut buckets = std::mem::take(&mut st.buckets);
        buckets.clear();
        // Counts are in sampling units; the buckets stay whole (`record_counts` converts).
        let v = crate::sampling::from_requests(whole(inc[COUNT]));
        match (reading, role) {
            (Reading::Counter(_), Role::Errors) => counts.errors = v,
            (Reading::Counter(_), Role::Incorrect) => counts.incorrect = v,
            (_, _) => {
                counts.requests = v;
                counts.errors = if failed { v } else { 0 };
                counts.incorrect = if incorrect { v } else { 0 };
                if let Reading::Histogram(..) = reading {
                    counts.slow = crate::sampling::from_requests(whole(inc[SLOW]));
                    sum_s = inc[SUM_S].max(0.0);
                    buckets.extend(inc[BUCKETS..n].iter().map(|&x| whole(x)));
                }
            }
        }
        let journey = st.journeys[j].info.id;
        let series = self.series_of(st, p, j);
        if series.overflow {
            CardinalityOverflow { journey }.emit(tel);
        }
        series
            .state
            .record_counts(time, &counts, sum_s, &buckets, &self.bounds_ns, now);
        st.buckets = buckets;
        Ok(())
    }

    /// The series of journey `j` the point's cohort values name, made when new (or the
    /// journey's overflow series past its limit).
    fn series_of<'s>(&self, st: &'s mut State, p: &Point<'_>, j: usize) -> &'s mut Series {
        let State {
            journeys,
            series,
            text,
            ends,
            bytes,
            ..
        } = st;
        let info = &journeys[j].info;
        let view = PointView(p);
        text.clear();
        ends.clear();
        for key in info.cohort_keys.iter() {
            let start = text.len();
            match view.attr(key) {
                Some(v) => v.write_to(text),
                None => text.push_str(&self.missing),
            }
            let kept = clip(&text[start..], MAX_LABEL_VALUE_BYTES).len();
            text.truncate(start + kept);
            ends.push(text.len());
        }
        let (text, ends) = (&*text, &*ends);
        let values = || cohort_values(text, ends);
        let key = |overflow: bool| {
            let mut h = self.hasher.build_hasher();
            h.write(info.name.as_bytes());
            h.write_u8(u8::from(overflow));
            if !overflow {
                for v in values() {
                    h.write(v.as_bytes());
                    h.write_u8(0xff);
                }
            }
            h.finish()
        };
        let same = |s: &Series, overflow: bool| {
            s.journey == j
                && s.overflow == overflow
                && (overflow
                    || (s.cohort.len() == ends.len()
                        && s.cohort.iter().zip(values()).all(|(a, b)| **a == *b)))
        };
        let mut overflow = false;
        let mut k = key(false);
        let known = series
            .get(&k)
            .is_some_and(|l| l.iter().any(|s| same(s, false)));
        if !known && (journeys[j].series >= self.max_series || self.admission.over_memory()) {
            overflow = true;
            k = key(true);
        }
        let list = series.entry(k).or_default();
        let pos = match list.iter().position(|s| same(s, overflow)) {
            Some(pos) => pos,
            None => {
                journeys[j].series += 1;
                let cohort: Arc<[Box<str>]> = if overflow {
                    Arc::from(Vec::<Box<str>>::new())
                } else {
                    values().map(Box::from).collect()
                };
                let state = SeriesState::new(
                    &self.window_ns,
                    self.sub_buckets,
                    self.bounds_ns.len(),
                    p.time_ns.min(crate::clock::now_unix_ns()),
                );
                // Counted at once, so the next new series of this request sees it.
                *bytes += state.heap_bytes();
                self.admission.set_metric_bytes(*bytes);
                list.push(Series {
                    journey: j,
                    cohort,
                    overflow,
                    state,
                });
                list.len() - 1
            }
        };
        &mut list[pos]
    }

    /// Every series at `now` and their heap bytes, as a worker hands its shard; expires
    /// idle streams and series first. Called once per tick, by the deriver.
    pub fn snapshot(&self, now: u64, tel: &Telemetry) -> ShardSnapshot {
        let mut st = self.lock();
        let st = &mut *st;
        MetricStreamsExpired {
            count: st.streams.expire(now) as u64,
        }
        .emit(tel);
        let ttl = self.ttl_ns;
        let mut expired = 0u64;
        let journeys = &mut st.journeys;
        st.series.retain(|_, list| {
            list.retain(|s| {
                let keep = now.saturating_sub(s.state.last_update_unix_ns) < ttl;
                if !keep {
                    journeys[s.journey].series -= 1;
                    expired += 1;
                }
                keep
            });
            !list.is_empty()
        });
        SeriesExpired { count: expired }.emit(tel);
        let (mut scratch, mut qout) = (Vec::new(), Vec::new());
        let state_bytes = st
            .series
            .values()
            .flatten()
            .map(|s| s.state.heap_bytes())
            .sum();
        // What the series hold now (expired ones freed, windows filled) replaces the
        // running estimate, as each worker's measure does.
        st.bytes = state_bytes;
        self.admission.set_metric_bytes(state_bytes);
        let series = st
            .series
            .values()
            .flatten()
            .map(|s| SeriesSnap {
                journey: st.journeys[s.journey].info.clone(),
                cohort: s.cohort.clone(),
                overflow: s.overflow,
                from_metrics: true,
                totals: s.state.totals,
                duration_sum_s: s.state.duration_sum_s,
                value_total: 0.0,
                value_failed: 0.0,
                // Frustrations are browser events: a journey's come from its span series.
                frustrations: Vec::new(),
                // Requests counted from metrics have no spans to point at.
                exemplars: None,
                buckets: s.state.buckets.clone(),
                created_unix_ns: s.state.created_unix_ns,
                windows: (0..s.state.windows.len())
                    .map(|w| {
                        s.state
                            .window_stats(w, now, &QUANTILES, &mut scratch, &mut qout)
                    })
                    .collect(),
            })
            .collect();
        ShardSnapshot {
            series,
            state_bytes,
            ..Default::default()
        }
    }
}

/// The cohort values written one after the other into `text`, each ending at `ends[i]`.
fn cohort_values<'t>(text: &'t str, ends: &'t [usize]) -> impl Iterator<Item = &'t str> + 't {
    ends.iter().scan(0, move |start, &e| {
        let v = &text[*start..e];
        *start = e;
        Some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::AddRelaxed;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, metric, ExponentialHistogram,
        ExponentialHistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    };

    const S: u64 = 1_000_000_000;
    const NOW: u64 = 1_700_000_000 * S;

    fn setup(extra: &str) -> (Config, MetricRequests) {
        let cfg = Config::parse(
            &format!(
                "windows: {{ sizes: [1m] }}\nhistogram: {{ buckets: [0.25, 1] }}\n{extra}journeys:\n  - name: pay\n    cohorts: [region]\n    latency_threshold: 256ms\n    metrics:\n      - {{ name: pay.duration }}\n"
            ),
            "t",
            &|_| None,
        )
        .unwrap();
        let journeys = Journeys::new(&cfg);
        let admission = Arc::new(Admission::new(&cfg, 1));
        let m = MetricRequests::new(&cfg, &journeys, NOW - 3600 * S, admission);
        (cfg, m)
    }

    fn region(r: &str) -> KeyValue {
        KeyValue {
            key: "region".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(r.into())),
            }),
            ..Default::default()
        }
    }

    /// A delta exponential histogram of scale 0 (base 2) in ms: offset 7 makes bucket 0
    /// (128, 256] ms and bucket 1 (256, 512] ms; the threshold, 256 ms, is their bound.
    fn request(points: Vec<ExponentialHistogramDataPoint>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "pay.duration".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: points,
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn point(r: &str, fast: u64, slow: u64) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            attributes: vec![region(r)],
            time_unix_nano: NOW - S,
            count: fast + slow,
            sum: Some(0.0),
            scale: 0,
            positive: Some(Buckets {
                offset: 7,
                bucket_counts: vec![fast, slow],
            }),
            ..Default::default()
        }
    }

    fn totals(m: &MetricRequests) -> Vec<(Vec<String>, bool, Counts)> {
        let mut v: Vec<_> = m
            .snapshot(NOW, &Telemetry::default())
            .series
            .into_iter()
            .map(|s| {
                let cohort: Vec<String> = s.cohort.iter().map(|c| c.to_string()).collect();
                (cohort, s.overflow, s.windows[0].counts)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn counts(requests: u64, slow: u64) -> Counts {
        Counts::whole(requests, 0, slow, 0)
    }

    #[test]
    fn cohorts_come_from_point_attributes_and_past_the_limit_go_to_overflow() {
        let (_, m) = setup("limits: { max_series_per_journey: 2 }\n");
        let mut out = Outcome::default();
        let tel = Telemetry::default();
        // eu: 3 fast (128-256 ms), 1 slow (256-512 ms, above 256 ms); us: 2 fast; ap,
        // the third cohort, overflows with its 1 slow.
        m.process(
            &request(vec![
                point("eu", 3, 1),
                point("us", 2, 0),
                point("ap", 0, 1),
            ]),
            NOW,
            &mut out,
            &tel,
        );
        assert_eq!(out.rejected(), 0);
        // ap's one point went to the overflow series.
        assert_eq!(tel.cardinality_overflow.get(), 1);
        assert_eq!(
            totals(&m),
            [
                (vec![], true, counts(1, 1)),
                (vec!["eu".into()], false, counts(4, 1)),
                (vec!["us".into()], false, counts(2, 0)),
            ]
        );
    }

    #[test]
    fn a_reload_keeps_the_series_of_unchanged_inputs_only() {
        let (cfg, m) = setup("");
        m.process(
            &request(vec![point("eu", 1, 0)]),
            NOW,
            &mut Outcome::default(),
            &Telemetry::default(),
        );
        m.reload(&cfg, &Journeys::new(&cfg));
        assert_eq!(totals(&m), [(vec!["eu".into()], false, counts(1, 0))]);
        let (changed, _) = setup("defaults: { latency_threshold: 1s }\n");
        let mut changed = changed;
        changed.journeys[0].metrics[0].name = "pay.latency".into();
        m.reload(&changed, &Journeys::new(&changed));
        assert!(totals(&m).is_empty());
    }

    /// A delta monotonic counter `pay.requests`, one point of `n` requests per region.
    fn counter_request(points: &[(String, i64)]) -> ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::metrics::v1::{number_data_point, NumberDataPoint, Sum};
        let data_points = points
            .iter()
            .map(|(r, n)| NumberDataPoint {
                attributes: vec![region(r)],
                time_unix_nano: NOW - S,
                value: Some(number_data_point::Value::AsInt(*n)),
                ..Default::default()
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "pay.requests".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points,
                            aggregation_temporality: 1,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn past_max_window_state_bytes_new_cohorts_overflow_counted_and_their_bytes_count() {
        let cfg = Config::parse(
            "windows: { sizes: [1m], series_ttl: 10m }\nhistogram: { buckets: [0.25, 1] }\n\
             limits: { max_window_state_bytes: 1048576, max_series_per_journey: 100000 }\n\
             journeys:\n  - name: pay\n    cohorts: [region]\n    metrics:\n      - { name: pay.requests }\n",
            "t",
            &|_| None,
        )
        .unwrap();
        // One worker, holding nothing yet: the metric-fed series have the whole limit.
        let admission = Arc::new(Admission::new(&cfg, 1));
        let m = MetricRequests::new(
            &cfg,
            &Journeys::new(&cfg),
            NOW - 3600 * S,
            admission.clone(),
        );
        // A series as made: 1 window of 12 sub-buckets, each a Slot and its 8-byte index,
        // and 3 latency buckets (2 bounds + 1) of 8 bytes. A counter brings no latency,
        // so recording leaves it that size.
        let one = 12 * (std::mem::size_of::<crate::window::Slot>() + 8) + 3 * 8;
        assert_eq!(SeriesState::new(&[60 * S], 12, 2, NOW).heap_bytes(), one);
        // The n-th new series (from 0) is admitted while n x one < 1 MiB: ceil(1 MiB /
        // one) of them. Three cohorts more, 2 requests each, go to the overflow series.
        let admitted = 1_048_576usize.div_ceil(one);
        let mut points: Vec<(String, i64)> = (0..admitted).map(|i| (format!("r{i}"), 1)).collect();
        points.extend((0..3).map(|i| (format!("late{i}"), 2)));
        let tel = Telemetry::default();
        let mut out = Outcome::default();
        m.process(&counter_request(&points), NOW, &mut out, &tel);
        assert_eq!(out.rejected(), 0);
        assert_eq!(tel.cardinality_overflow.get(), 3);
        // The overflow series is one series more: admitted + 1 series of `one` bytes.
        assert_eq!(admission.state_bytes(), (admitted + 1) * one);
        assert!(admission.over_memory(), "span-fed series are refused too");
        let snap = m.snapshot(NOW, &tel);
        assert_eq!(snap.series.len(), admitted + 1);
        assert_eq!(snap.state_bytes, (admitted + 1) * one);
        let overflow: Vec<u64> = snap
            .series
            .iter()
            .filter(|s| s.overflow)
            .map(|s| s.windows[0].counts.requests)
            .collect();
        // Counts are in sampling units (2^-20 of a request): 3 points x 2 requests.
        assert_eq!(overflow, [3 * 2 * crate::sampling::UNIT]);
        let own: u64 = snap
            .series
            .iter()
            .filter(|s| !s.overflow)
            .map(|s| s.windows[0].counts.requests)
            .sum();
        assert_eq!(own, admitted as u64 * crate::sampling::UNIT);
        // Ten minutes idle: every series expires and its bytes are given back.
        let later = m.snapshot(NOW + 600 * S, &tel);
        assert_eq!((later.series.len(), later.state_bytes), (0, 0));
        assert_eq!(admission.state_bytes(), 0);
        assert!(!admission.over_memory());
    }
}
