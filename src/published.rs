//! What the deriver publishes at every tick, and everything the exporters and the
//! score API read: the merged snapshot with its SLIs, and the evaluation (SLOs, burn
//! rates, budgets, alerts, scores) derived from it once. Readers only format it.

use crate::history::History;
use crate::journey::Journeys;
use crate::pipeline::PipelineInput;
use crate::score::Evaluation;
use crate::sli::Snapshot;
use crate::telemetry::Telemetry;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// What the exporters share.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// SLOs and scores derived from the same snapshot.
    pub eval: ArcSwap<Evaluation>,
    /// The last hour of evaluations and the budgets over the period, for the web view;
    /// written by the deriver at every tick, read briefly by whoever formats it.
    pub history: std::sync::Mutex<History>,
    /// Bumped after every evaluation, for streaming clients.
    pub ticks: tokio::sync::watch::Sender<u64>,
    pub tel: Arc<Telemetry>,
    pub input: Arc<PipelineInput>,
    /// Swapped by a config reload.
    pub journeys: ArcSwap<Journeys>,
    /// The config's `version`; swapped by a config reload.
    pub version: ArcSwap<String>,
    pub histogram_bounds: Vec<f64>,
    pub state_limit_bytes: usize,
    /// True from the moment every listener is serving until shutdown begins.
    pub ready: std::sync::atomic::AtomicBool,
    pub instance_id: String,
    pub start_unix_ns: u64,
    /// Kafka stage 2: this instance's name (`receivers.kafka.aggregates.instance`),
    /// exported as the `instance` label of every journey sample it owns.
    pub instance_label: Option<String>,
    /// Every owner's latest per-journey figures (Kafka stage 2), for the score API's
    /// `scope=all`; set once at start-up when the snapshots topic is read.
    pub all_snapshots: std::sync::OnceLock<Arc<crate::kstate::snapshots::SnapshotStore>>,
}
