//! What the record stage hands on at each tick: one snapshot per worker shard, one
//! entry per journey x cohort series, and per journey x dependency from the assembled
//! traces. Derive merges them; nothing here computes.

use crate::journey::JourneyInfo;
use crate::window::exemplars::Exemplars;
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
    /// Counted from the journey's metric inputs ([`crate::metric_requests`]), not spans.
    pub from_metrics: bool,
    pub totals: Counts,
    pub duration_sum_s: f64,
    /// Value of all requests, and of the failed or incorrect ones, since the series began.
    pub value_total: f64,
    pub value_failed: f64,
    pub buckets: Vec<u64>,
    pub created_unix_ns: u64,
    pub windows: Vec<WindowStats>,
    /// Example requests of the series; each window's are those since its `start_ns`.
    pub exemplars: Option<Box<Exemplars>>,
    /// Frustration events since the series began, by the journey's event index.
    pub frustrations: Vec<u64>,
}

/// The requests of one version of one journey since cerflow started, as one worker saw
/// them (derive sums the workers).
#[derive(Debug, Clone)]
pub struct VersionSnap {
    pub journey: Arc<JourneyInfo>,
    pub version: Arc<str>,
    pub counts: Counts,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

#[derive(Debug, Default)]
pub struct ShardSnapshot {
    pub series: Vec<SeriesSnap>,
    pub coverage: Vec<Coverage>,
    pub state_bytes: usize,
    pub dependencies: Vec<DependencySnap>,
    pub self_blame: Vec<SelfBlameSnap>,
    /// Bytes of spans waiting in the trace buffer.
    pub trace_bytes: usize,
    /// Per journey, the requests of each version (`deployments.version_key`).
    pub versions: Vec<VersionSnap>,
}

/// One dependency of one journey, as one worker holds it. Dependency series live on the
/// worker that assembled the trace, so one series may be spread over several workers:
/// each window ships its sub-buckets' histograms, and derive merges them exactly.
#[derive(Debug, Clone)]
pub struct DependencySnap {
    pub journey: Arc<JourneyInfo>,
    /// The dependency's name; empty for the journey's overflow series.
    pub name: Arc<str>,
    pub overflow: bool,
    pub totals: Counts,
    pub duration_sum_s: f64,
    pub buckets: Vec<u64>,
    pub created_unix_ns: u64,
    /// Failed journey requests attributed to this dependency, since the series began.
    pub blamed_total: u64,
    pub windows: Vec<DependencyWindow>,
}

#[derive(Debug, Clone, Default)]
pub struct DependencyWindow {
    pub counts: Counts,
    pub hists: Vec<crate::hist::SparseHist>,
    /// Failed journey requests in the window attributed to this dependency.
    pub blamed: u64,
}

/// Failed journey requests whose trace held no failed dependency call: the journey's own.
#[derive(Debug, Clone)]
pub struct SelfBlameSnap {
    pub journey: Arc<JourneyInfo>,
    pub total: u64,
    pub created_unix_ns: u64,
    pub windows: Vec<u64>,
}
