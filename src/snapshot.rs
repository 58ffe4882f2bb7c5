//! What the record stage hands on at each tick: one snapshot per worker shard, one
//! entry per journey x cohort series. Derive merges them; nothing here computes.

use crate::journey::JourneyInfo;
use crate::window::{Counts, Coverage, WindowStats};
use std::sync::Arc;

/// The quantiles each window reports, in the order of `WindowStats::quantiles_s`.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// What the export stage sees of one journey x cohort series.
#[derive(Debug, Clone)]
pub struct SeriesSnap {
    pub journey: Arc<JourneyInfo>,
    pub cohort: Arc<[Box<str>]>,
    /// The journey's overflow series: cohorts refused by the cardinality or memory limit.
    pub overflow: bool,
    pub totals: Counts,
    pub duration_sum_s: f64,
    /// Value of all requests, and of the failed or incorrect ones, since the series began.
    pub value_total: f64,
    pub value_failed: f64,
    pub buckets: Vec<u64>,
    pub created_unix_ns: u64,
    pub windows: Vec<WindowStats>,
    /// Frustration events since the series began, by the journey's event index.
    pub frustrations: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct ShardSnapshot {
    pub series: Vec<SeriesSnap>,
    pub coverage: Vec<Coverage>,
    pub state_bytes: usize,
}
