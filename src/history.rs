//! The recent past the web view draws, kept by the deriver at every evaluation.
//!
//! - A ring of the last hour in 30-second slots ([`SLOTS`] x [`SLOT`]): the overall
//!   score per window, and per journey its score per window and its burn rate per SLO
//!   window and SLI. Every evaluation goes in; a slot keeps the worst value it saw (the
//!   lowest score, the highest burn rate), so a dip shorter than a slot still shows.
//! - Each journey's error budget over the SLO period, cumulated slot by slot from the
//!   SLO period ring (30 slots), so its last point is the budget remaining.
//!
//! Bounded: [`SLOTS`] x (windows + journeys x (windows + burn windows x SLIs)) f32
//! cells, at most [`MAX_JOURNEYS`] journeys (the rest are counted, not kept), plus 30
//! points per journey for the budget. [`History::heap_bytes`] is what it holds.

use crate::config::SLIS;
use crate::score::Evaluation;
use crate::slo::{burn_rate, BadCount, Key, SloCounts, SloTracker};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Length of one downsampled slot.
pub const SLOT: Duration = Duration::from_secs(30);
/// Slots kept: one hour.
pub const SLOTS: usize = 120;
/// Journeys with a trend; the worst of the others still show their current figures.
pub const MAX_JOURNEYS: usize = 500;

const EMPTY: u64 = u64::MAX;

/// One ring of `SLOTS` rows of `width` cells; NaN is "no value".
#[derive(Debug, Clone)]
struct Rows {
    ids: Vec<u64>,
    cells: Vec<f32>,
    width: usize,
}

impl Rows {
    fn new(width: usize) -> Rows {
        Rows {
            ids: vec![EMPTY; SLOTS],
            cells: vec![f32::NAN; SLOTS * width],
            width,
        }
    }

    /// The row of slot `s`, reset when it held an older slot.
    fn row(&mut self, s: u64) -> &mut [f32] {
        let i = (s % SLOTS as u64) as usize;
        if self.ids[i] != s {
            self.ids[i] = s;
            self.cells[i * self.width..(i + 1) * self.width].fill(f32::NAN);
        }
        &mut self.cells[i * self.width..(i + 1) * self.width]
    }

    /// Live rows, oldest first, as (slot number, cells).
    fn live(&self, now_slot: u64) -> Vec<(u64, &[f32])> {
        let mut out: Vec<(u64, &[f32])> = self
            .ids
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != EMPTY && s <= now_slot && s + SLOTS as u64 > now_slot)
            .map(|(i, &s)| (s, &self.cells[i * self.width..(i + 1) * self.width]))
            .collect();
        out.sort_by_key(|(s, _)| *s);
        out
    }

    fn bytes(&self) -> usize {
        self.ids.capacity() * 8 + self.cells.capacity() * 4
    }
}

fn worst_low(cell: &mut f32, v: Option<f64>) {
    if let Some(v) = v {
        let v = v as f32;
        if cell.is_nan() || v < *cell {
            *cell = v;
        }
    }
}

fn worst_high(cell: &mut f32, v: Option<f64>) {
    if let Some(v) = v {
        let v = v as f32;
        if cell.is_nan() || v > *cell {
            *cell = v;
        }
    }
}

#[derive(Debug, Clone)]
struct JourneyRows {
    /// [window scores..., burn rates in `History::burn_keys` order...]
    rows: Rows,
    last_slot: u64,
}

/// One point of a trend: the slot's start (unix ms) and its cells, `None` without data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrendPoint {
    pub t_ms: u64,
    pub v: Vec<Option<f32>>,
}

/// One point of the budget over the SLO period: the end of a period slot (unix ms) and
/// the share of budget left per SLI counting every event of the period up to then.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetPoint {
    pub t_ms: u64,
    pub remaining: BTreeMap<String, f64>,
}

/// A journey's trend: its score per window, then each burn series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JourneyTrend {
    pub scores: Vec<TrendPoint>,
    pub burn: Vec<TrendPoint>,
}

#[derive(Debug)]
pub struct History {
    slot_ns: u64,
    now_slot: u64,
    windows: Vec<String>,
    /// Columns of a journey's burn cells: (SLO window, SLI).
    burn_keys: Vec<(String, String)>,
    overall: Rows,
    journeys: BTreeMap<Arc<str>, JourneyRows>,
    /// Journeys seen at the last evaluation that found no room.
    pub journeys_skipped: usize,
    budgets: BTreeMap<Arc<str>, Vec<BudgetPoint>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            slot_ns: SLOT.as_nanos() as u64,
            now_slot: 0,
            windows: Vec::new(),
            burn_keys: Vec::new(),
            overall: Rows::new(0),
            journeys: BTreeMap::new(),
            journeys_skipped: 0,
            budgets: BTreeMap::new(),
        }
    }
}

impl History {
    /// Takes in one evaluation made at `now` (unix ns).
    pub fn record(&mut self, eval: &Evaluation, slo: &SloTracker, now: u64) {
        let v = &eval.view;
        let burn_keys: Vec<(String, String)> = eval
            .burn_windows
            .iter()
            .flat_map(|w| {
                SLIS.iter()
                    .map(move |s| (w.clone(), s.as_str().to_string()))
            })
            .collect();
        if v.windows != self.windows || burn_keys != self.burn_keys {
            // Windows change only with a restart, or from the empty start: begin afresh.
            *self = History {
                windows: v.windows.clone(),
                overall: Rows::new(v.windows.len()),
                burn_keys,
                ..History::default()
            };
        }
        let s = now / self.slot_ns;
        self.now_slot = s;
        let row = self.overall.row(s);
        for (cell, o) in row.iter_mut().zip(&v.overall) {
            worst_low(cell, o.score);
        }
        let width = self.windows.len() + self.burn_keys.len();
        let mut skipped = 0;
        let mut budgets = BTreeMap::new();
        for (jv, info) in v.journeys.iter().zip(&eval.infos) {
            if !jv.cohort.is_empty() {
                continue;
            }
            let name = &info.name;
            if !self.journeys.contains_key(name) {
                if self.journeys.len() >= MAX_JOURNEYS {
                    skipped += 1;
                    continue;
                }
                self.journeys.insert(
                    name.clone(),
                    JourneyRows {
                        rows: Rows::new(width),
                        last_slot: s,
                    },
                );
            }
            let Some(j) = self.journeys.get_mut(name) else {
                continue;
            };
            j.last_slot = s;
            let row = j.rows.row(s);
            let (scores, burns) = row.split_at_mut(self.windows.len());
            for (cell, w) in scores.iter_mut().zip(&jv.windows) {
                worst_low(cell, w.score);
            }
            for (cell, (w, sli)) in burns.iter_mut().zip(&self.burn_keys) {
                worst_high(cell, jv.burn_rates.get(w).and_then(|m| m.get(sli)).copied());
            }
            let key = Key {
                journey: name.clone(),
                cohort: None,
            };
            budgets.insert(name.clone(), budget_curve(slo, &key, jv, now));
        }
        // A journey quiet for the whole hour has nothing left to draw.
        self.journeys.retain(|_, j| j.last_slot + SLOTS as u64 > s);
        self.journeys_skipped = skipped;
        self.budgets = budgets;
    }

    fn point(&self, s: u64, cells: &[f32]) -> TrendPoint {
        TrendPoint {
            t_ms: s.saturating_mul(self.slot_ns) / 1_000_000,
            v: cells.iter().map(|c| (!c.is_nan()).then_some(*c)).collect(),
        }
    }

    /// The overall score per window (in `windows()` order), oldest slot first.
    pub fn overall(&self) -> Vec<TrendPoint> {
        self.overall
            .live(self.now_slot)
            .into_iter()
            .map(|(s, c)| self.point(s, c))
            .collect()
    }

    pub fn windows(&self) -> &[String] {
        &self.windows
    }

    /// (SLO window, SLI) of each burn cell of [`JourneyTrend::burn`].
    pub fn burn_keys(&self) -> &[(String, String)] {
        &self.burn_keys
    }

    pub fn journey(&self, name: &str) -> Option<JourneyTrend> {
        let j = self.journeys.get(name)?;
        let n = self.windows.len();
        let live = j.rows.live(self.now_slot);
        Some(JourneyTrend {
            scores: live.iter().map(|(s, c)| self.point(*s, &c[..n])).collect(),
            burn: live.iter().map(|(s, c)| self.point(*s, &c[n..])).collect(),
        })
    }

    pub fn budget(&self, name: &str) -> Option<&[BudgetPoint]> {
        self.budgets.get(name).map(Vec::as_slice)
    }

    /// Heap bytes held: the rings and the budget curves.
    pub fn heap_bytes(&self) -> usize {
        let rows: usize = self.journeys.values().map(|j| j.rows.bytes() + 64).sum();
        let budgets: usize = self
            .budgets
            .values()
            .map(|b| {
                b.iter()
                    .map(|p| std::mem::size_of::<BudgetPoint>() + p.remaining.len() * 64)
                    .sum::<usize>()
            })
            .sum();
        self.overall.bytes() + rows + budgets
    }
}

/// The budget left after each slot of the period ring, counting the period's events up
/// to that slot; SLIs are those the journey has objectives for.
fn budget_curve(
    slo: &SloTracker,
    key: &Key,
    jv: &crate::score::JourneyView,
    now: u64,
) -> Vec<BudgetPoint> {
    let mut cum = SloCounts::default();
    slo.period_slots(key, now)
        .into_iter()
        .map(|(end, c)| {
            cum.add(&c);
            let remaining = SLIS
                .iter()
                .filter_map(|s| {
                    let o = jv.objectives.get(s.as_str())?;
                    let left = burn_rate(cum.bad(*s), cum.total(*s), *o).map_or(1.0, |b| 1.0 - b);
                    Some((s.as_str().to_string(), left))
                })
                .collect();
            BudgetPoint {
                // The newest slot is still filling: its point is now, not its end.
                t_ms: end.min(now) / 1_000_000,
                remaining,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{JourneyView, OverallScore, ScoreView, WindowView};

    const S: u64 = 1_000_000_000;

    fn eval(overall: f64, journey_score: f64, burn_5m: f64) -> Evaluation {
        let cfg = crate::config::Config::parse(
            "journeys:\n  - { name: checkout, match: { span_name: x } }\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let journeys = crate::journey::Journeys::new(&cfg);
        Evaluation {
            view: ScoreView {
                windows: vec!["1m".into()],
                overall: vec![OverallScore {
                    window: "1m".into(),
                    score: Some(overall),
                }],
                journeys: vec![JourneyView {
                    journey: "checkout".into(),
                    windows: vec![WindowView {
                        window: "1m".into(),
                        score: Some(journey_score),
                        ..Default::default()
                    }],
                    burn_rates: BTreeMap::from([(
                        "5m".to_string(),
                        BTreeMap::from([("availability".to_string(), burn_5m)]),
                    )]),
                    ..Default::default()
                }],
                ..Default::default()
            },
            infos: vec![journeys.get(0).unwrap()],
            score_cfg: None,
            burn_windows: vec!["5m".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_slot_keeps_the_worst_of_its_evaluations_and_the_ring_holds_an_hour() {
        let slo = SloTracker::new(&crate::config::Config::default().slo);
        let mut h = History::default();
        // Slot 100 (t = 3000 s .. 3030 s): scores 0.9 then 0.5 then 0.8; burn 2 then 7.
        h.record(&eval(0.9, 0.95, 2.0), &slo, 3000 * S);
        h.record(&eval(0.5, 0.4, 7.0), &slo, 3010 * S);
        h.record(&eval(0.8, 0.7, 1.0), &slo, 3029 * S);
        // Slot 101: 1.0.
        h.record(&eval(1.0, 1.0, 0.0), &slo, 3030 * S);
        let o = h.overall();
        assert_eq!(o.len(), 2);
        assert_eq!(
            o[0],
            TrendPoint {
                t_ms: 3_000_000,
                v: vec![Some(0.5)]
            }
        );
        assert_eq!(
            o[1],
            TrendPoint {
                t_ms: 3_030_000,
                v: vec![Some(1.0)]
            }
        );
        let j = h.journey("checkout").unwrap();
        assert_eq!(j.scores[0].v, vec![Some(0.4)]);
        // burn keys: 5m x (availability, latency, correctness, operations, experience);
        // only availability has data.
        assert_eq!(h.burn_keys().len(), 5);
        assert_eq!(j.burn[0].v, vec![Some(7.0), None, None, None, None]);
        assert_eq!(j.burn[1].v, vec![Some(0.0), None, None, None, None]);
        // An hour after slot 101 (t = 3030 + 3600 s, slot 221) both earlier slots have
        // slid out: a slot s is live while s + 120 > 221.
        h.record(&eval(0.6, 0.6, 3.0), &slo, (3030 + 3600) * S);
        let o = h.overall();
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].t_ms, 6_630_000);
        // Bounded by the shape, not by the evaluations: 120 x 8 + 120 x 1 x 4 for the
        // overall ring, 120 x 8 + 120 x 4 x (1 + 5) + 64 for the journey.
        assert_eq!(h.heap_bytes(), 960 + 480 + 960 + 2880 + 64);
    }

    #[test]
    fn the_budget_curve_cumulates_the_period_ring_up_to_now() {
        use crate::snapshot::SeriesSnap;
        use crate::window::Counts;
        let cfg = crate::config::Config::parse(
            "slo: { period: 1h, checkpoint: { enabled: false } }\njourneys:\n  - { name: checkout, match: { span_name: x } }\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let journeys = crate::journey::Journeys::new(&cfg);
        let mut slo = SloTracker::new(&cfg.slo);
        let snap = |requests: u64, errors: u64| crate::sli::Snapshot {
            series: vec![SeriesSnap {
                journey: journeys.get(0).unwrap(),
                from_metrics: false,
                cohort: Arc::from(Vec::<Box<str>>::new()),
                overflow: false,
                totals: Counts {
                    requests,
                    errors,
                    slow: 0,
                    incorrect: 0,
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
            }],
            ..Default::default()
        };
        // A 1h period is 30 slots of 120 s. The series' cumulative counters grow by
        // 1000 requests at t = 1000 s (slot 960..1080 s), by 1000 requests and 1 error
        // at 1100 s (slot 1080..1200 s), by 1000 and 2 errors at 1250 s (1200..1320 s).
        let mut h = History::default();
        for (t, requests, errors) in [(1000, 1000, 0), (1100, 2000, 1), (1250, 3000, 3)] {
            let s = snap(requests, errors);
            slo.update(&s, &journeys, t * S);
            let eval = crate::score::evaluate(&s, &slo, &journeys, &[], &cfg.score, "v");
            h.record(&eval, &slo, t * S);
        }
        // Availability (objective 0.999, a budget of 0.1%): after the first slot 0 of
        // 1000 failed, 1; after the second 1 of 2000 (burn 0.5), 0.5; now 3 of 3000
        // (burn 1), 0. The newest slot's point is now (1250 s), not its end (1320 s).
        // Latency has no slow request: 1 throughout.
        let curve: Vec<(u64, f64, f64)> = h
            .budget("checkout")
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p.t_ms,
                    (p.remaining["availability"] * 1e9).round() / 1e9,
                    p.remaining["latency"],
                )
            })
            .collect();
        assert_eq!(
            curve,
            [
                (1_080_000, 1.0, 1.0),
                (1_200_000, 0.5, 1.0),
                (1_250_000, 0.0, 1.0)
            ]
        );
    }
}
