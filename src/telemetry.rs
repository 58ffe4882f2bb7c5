//! cerflow's own health counters, and the one log rate-limiter. Events that bump them
//! live in [`crate::internal_events`], each counting and logging in one `emit()`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
    Kafka,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
            Transport::Kafka => "kafka",
        }
    }
}

/// Why spans or requests were refused; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The body is not valid OTLP protobuf or JSON.
    Malformed,
    /// The span itself is invalid (end before start, bad ids).
    InvalidSpan,
    /// The content type is not one OTLP defines.
    UnsupportedMediaType,
    /// The body or its inflated form is larger than allowed.
    TooLarge,
    /// The Content-Encoding is unknown or the gzip stream is corrupt.
    BadEncoding,
    /// The pipeline queues were full; the sender should retry.
    QueueFull,
    /// No valid bearer token.
    Unauthenticated,
    /// The request did not arrive within `request_timeout`.
    Timeout,
    /// A browser request from an origin the CORS config does not allow.
    Cors,
    /// A public token's client address sent more than `public_rate_limit` allows.
    RateLimited,
}

pub const REASONS: [Reason; 10] = [
    Reason::Malformed,
    Reason::InvalidSpan,
    Reason::UnsupportedMediaType,
    Reason::TooLarge,
    Reason::BadEncoding,
    Reason::QueueFull,
    Reason::Unauthenticated,
    Reason::Timeout,
    Reason::Cors,
    Reason::RateLimited,
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::InvalidSpan => "invalid_span",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::TooLarge => "too_large",
            Reason::BadEncoding => "bad_encoding",
            Reason::QueueFull => "queue_full",
            Reason::Unauthenticated => "unauthenticated",
            Reason::Timeout => "timeout",
            Reason::Cors => "cors",
            Reason::RateLimited => "rate_limited",
        }
    }

    pub fn index(self) -> usize {
        REASONS.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Why a metric data point that feeds an input was refused (OTLP partial success): the
/// `reason` label of `cerflow_refused_data_points_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointReason {
    /// NaN or infinite value.
    NotFinite,
    /// A monotonic counter below zero.
    NegativeCounter,
    /// A unit that is not UCUM as OpenTelemetry writes it.
    UnknownUnit,
    /// No timestamp.
    MissingTime,
    /// Older than the longest window.
    TooOld,
    /// A point type the input cannot use (a histogram for a signal).
    UnsupportedType,
    /// A new cumulative stream while the stream table is full, or a new journey series
    /// of a metric input past the same limit.
    StreamLimit,
    /// Histogram buckets that do not add up to the count, bounds not increasing, or an
    /// exponential scale out of range.
    BadBuckets,
}

pub const POINT_REASONS: [PointReason; 8] = [
    PointReason::NotFinite,
    PointReason::NegativeCounter,
    PointReason::UnknownUnit,
    PointReason::MissingTime,
    PointReason::TooOld,
    PointReason::UnsupportedType,
    PointReason::StreamLimit,
    PointReason::BadBuckets,
];

impl PointReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PointReason::NotFinite => "not_finite",
            PointReason::NegativeCounter => "negative_counter",
            PointReason::UnknownUnit => "unknown_unit",
            PointReason::MissingTime => "missing_time",
            PointReason::TooOld => "too_old",
            PointReason::UnsupportedType => "unsupported_type",
            PointReason::StreamLimit => "stream_limit",
            PointReason::BadBuckets => "bad_buckets",
        }
    }
}

#[derive(Debug, Default)]
pub struct Telemetry {
    pub received_spans: [AtomicU64; 3],
    pub refused_spans: [AtomicU64; REASONS.len()],
    pub refused_requests: [AtomicU64; REASONS.len()],
    pub received_data_points: AtomicU64,
    /// Data points refused, by [`PointReason`].
    pub refused_data_points: [AtomicU64; POINT_REASONS.len()],
    pub received_log_records: AtomicU64,
    /// Spans that went through the pipeline, whatever the outcome (recorded, unmatched, late).
    pub processed_spans: AtomicU64,
    pub unmatched_spans: AtomicU64,
    pub late_spans: AtomicU64,
    pub clamped_spans: AtomicU64,
    /// Spans whose trace state's `ot=th:` could not be read (counted as 1 request).
    pub invalid_sampling_thresholds: AtomicU64,
    pub otlp_exports_ok: AtomicU64,
    pub otlp_exports_failed: AtomicU64,
    /// OTLP push attempts made while backing off after a retryable failure.
    pub otlp_export_retries: AtomicU64,
    /// OTLP export requests given up on, by [`ExportDrop`].
    pub otlp_export_dropped: [AtomicU64; 3],
    /// OTLP export requests waiting to be sent, the one being sent included.
    pub otlp_export_queue_depth: AtomicU64,
    pub series_expired: AtomicU64,
    pub snapshots_incomplete: AtomicU64,
    pub config_reloads: AtomicU64,
    pub config_reload_failures: AtomicU64,
    /// Spans and metric data points recorded into a journey's overflow series.
    pub cardinality_overflow: AtomicU64,
    /// Traces completed before `traces.wait`, by [`Evict`].
    pub traces_evicted: [AtomicU64; 2],
    /// Spans of assembled traces in which no journey claimed a span.
    pub orphan_spans: AtomicU64,
    /// Versions a worker forgot at `deployments.max_versions`.
    pub deployment_versions_evicted: AtomicU64,
    /// Kafka stage 2: requests (in sampling units) of evicted versions that could not be
    /// held for the next barrier.
    pub deployment_version_requests_lost: AtomicU64,
    /// Request values ignored as not numeric, negative or not finite, per journey. A
    /// lock, not an atomic: the path is rare and the key set is bounded by the journeys.
    pub invalid_values: std::sync::Mutex<std::collections::BTreeMap<std::sync::Arc<str>, u64>>,
    /// Web view requests refused, by [`UiRefusal`].
    pub ui_refused: [AtomicU64; 2],
    /// Live streams of the web view open now.
    pub ui_stream_clients: AtomicU64,
    /// Web vital events ignored, by [`crate::experience::InvalidEvent`] index.
    pub invalid_events: [AtomicU64; 5],
    /// Web vital reports whose id a series could not remember (its table was full).
    pub vital_ids_overflow: AtomicU64,
    /// Attempts not tracked because `limits.max_pending_attempts` were pending.
    pub attempts_overflow: AtomicU64,
    /// Client addresses past the public rate limiter's table, sharing one allowance.
    pub public_clients_overflow: AtomicU64,
    /// The Kafka receiver's state; its metrics are shown only when it is configured.
    pub kafka: KafkaState,
    /// Unix second of the last log line per [`LogKey`].
    last_log_sec: [AtomicU64; LOG_KEYS],
}

fn now_sec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Telemetry {
    /// Invalid request values per journey, for the exposition.
    pub fn invalid_values(&self) -> Vec<(std::sync::Arc<str>, u64)> {
        match self.invalid_values.lock() {
            Ok(m) => m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(p) => p
                .into_inner()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }

    pub fn received_spans(&self, t: Transport) -> u64 {
        self.received_spans[t as usize].load(Relaxed)
    }

    pub fn refused_spans(&self, r: Reason) -> u64 {
        self.refused_spans[r.index()].load(Relaxed)
    }

    pub fn refused_data_points(&self, r: PointReason) -> u64 {
        self.refused_data_points[r as usize].load(Relaxed)
    }

    pub fn refused_requests(&self, r: Reason) -> u64 {
        self.refused_requests[r.index()].load(Relaxed)
    }

    /// Whether a rate-limited log line for `key` may be written now: at most one per
    /// `every_secs`, so a flood of bad input cannot flood the log; the counters carry
    /// the full numbers. The one limiter every internal event uses.
    pub fn log_due(&self, key: LogKey, every_secs: u64) -> bool {
        let now = now_sec();
        let slot = &self.last_log_sec[key.index()];
        let last = slot.load(Relaxed);
        (last == 0 || now >= last.saturating_add(every_secs))
            && slot.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}

/// What a rate-limited log line is about; each key has its own allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKey {
    Refusal(Reason),
    ExportDrop(ExportDrop),
    InvalidValue,
    TracesEvicted,
    PointRefusal(PointReason),
    UiRefusal(UiRefusal),
    PublicClientsOverflow,
    InvalidEvent,
    AttemptsOverflow,
    VitalIdsOverflow,
    KafkaError,
    InvalidSamplingThreshold,
}

/// What the Kafka receiver reports about itself.
#[derive(Debug, Default)]
pub struct KafkaState {
    /// Set once at start-up when `receivers.kafka` is configured.
    pub enabled: AtomicBool,
    /// A broker connection is up (librdkafka's statistics, every second).
    pub connected: AtomicBool,
    /// Partitions of the spans topic this instance consumes now.
    pub partitions_assigned: AtomicU64,
    /// Errors librdkafka reported (connection losses included).
    pub errors_reported: AtomicU64,
    /// Stage 2 (`receivers.kafka.aggregates`) is on: its metrics are shown.
    pub aggregates: AtomicBool,
    /// Partial-aggregate messages published in committed transactions.
    pub aggregates_published: AtomicU64,
    /// Transactions committed and aborted (their spans are read again).
    pub transactions_committed: AtomicU64,
    pub transactions_aborted: AtomicU64,
    /// Sub-buckets over `max_message_bytes` on their own: not published.
    pub partials_too_large: AtomicU64,
    /// Aggregates partitions this instance owns (the owners' group).
    pub owned_partitions: AtomicU64,
    /// Messages of the aggregates topic merged and refused by this owner.
    pub partials_merged: AtomicU64,
    pub partials_refused: AtomicU64,
    /// Sub-buckets of merged partials outside the owner's window: left out.
    pub partial_sub_buckets_dropped: AtomicU64,
    /// Partials of derived journeys refused past `auto_journeys.max` (also refused).
    pub journeys_not_adopted: AtomicU64,
    /// Changelog records of owned journeys written (stage 2's long-lived state).
    pub changelog_written: AtomicU64,
    /// Owned journeys whose partition was revoked: their state left for the new owner.
    pub journeys_handed_over: AtomicU64,
    /// Changelog records not written or not restored, and restores cut short, by
    /// [`StateRefusal`](crate::internal_events::StateRefusal).
    pub state_refused: [AtomicU64; 4],
    /// Journeys held from the snapshots topic.
    pub snapshots_held: AtomicU64,
    /// Snapshots dropped, by [`SnapshotDrop`](crate::internal_events::SnapshotDrop).
    pub snapshots_dropped: [AtomicU64; 4],
}

impl KafkaState {
    /// Not ready while a configured Kafka receiver has no broker connection.
    pub fn ready(&self) -> bool {
        !self.enabled.load(Relaxed) || self.connected.load(Relaxed)
    }
}

/// Where the keys after the per-reason ones begin.
const SINGLE_KEYS: usize =
    REASONS.len() + EXPORT_DROPS.len() + 1 + POINT_REASONS.len() + UI_REFUSALS.len();

/// How many [`LogKey`]s there are: the length of `last_log_sec`.
const LOG_KEYS: usize = SINGLE_KEYS + 7;

/// Why the web view refused a request; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiRefusal {
    /// No or wrong credentials under `ui.auth`.
    Unauthenticated,
    /// `ui.max_stream_clients` streams were already open.
    StreamLimit,
}

pub const UI_REFUSALS: [UiRefusal; 2] = [UiRefusal::Unauthenticated, UiRefusal::StreamLimit];

impl UiRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            UiRefusal::Unauthenticated => "unauthenticated",
            UiRefusal::StreamLimit => "stream_limit",
        }
    }
}

impl LogKey {
    fn index(self) -> usize {
        match self {
            LogKey::Refusal(r) => r.index(),
            LogKey::ExportDrop(d) => REASONS.len() + d as usize,
            LogKey::InvalidValue => REASONS.len() + EXPORT_DROPS.len(),
            LogKey::PointRefusal(r) => REASONS.len() + EXPORT_DROPS.len() + 1 + r as usize,
            LogKey::UiRefusal(r) => {
                REASONS.len() + EXPORT_DROPS.len() + 1 + POINT_REASONS.len() + r as usize
            }
            LogKey::TracesEvicted => SINGLE_KEYS,
            LogKey::PublicClientsOverflow => SINGLE_KEYS + 1,
            LogKey::InvalidEvent => SINGLE_KEYS + 2,
            LogKey::AttemptsOverflow => SINGLE_KEYS + 3,
            LogKey::VitalIdsOverflow => SINGLE_KEYS + 4,
            LogKey::KafkaError => SINGLE_KEYS + 5,
            LogKey::InvalidSamplingThreshold => SINGLE_KEYS + 6,
        }
    }
}

/// Why the OTLP exporter gave up on a request; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDrop {
    /// The queue was full: the oldest request made room for the newest.
    QueueFull,
    /// The endpoint answered with an error that retrying cannot fix.
    Permanent,
    /// The request was older than `retry.max_elapsed_time`.
    Expired,
}

pub const EXPORT_DROPS: [ExportDrop; 3] = [
    ExportDrop::QueueFull,
    ExportDrop::Permanent,
    ExportDrop::Expired,
];

impl ExportDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportDrop::QueueFull => "queue_full",
            ExportDrop::Permanent => "permanent",
            ExportDrop::Expired => "expired",
        }
    }
}

impl Telemetry {
    pub fn otlp_dropped(&self, d: ExportDrop) -> u64 {
        self.otlp_export_dropped[d as usize].load(Relaxed)
    }
}

/// Why a trace was completed before `traces.wait`; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// The trace buffer reached `traces.max_bytes`: the oldest traces went first.
    Memory,
    /// The trace reached `traces.max_spans_per_trace`.
    MaxSpans,
}

pub const EVICTS: [Evict; 2] = [Evict::Memory, Evict::MaxSpans];

impl Evict {
    pub fn as_str(self) -> &'static str {
        match self {
            Evict::Memory => "memory",
            Evict::MaxSpans => "max_spans",
        }
    }
}

pub trait AddRelaxed {
    fn add(&self, n: u64);
    fn get(&self) -> u64;
}

impl AddRelaxed for AtomicU64 {
    fn add(&self, n: u64) {
        if n > 0 {
            self.fetch_add(n, Relaxed);
        }
    }
    fn get(&self) -> u64 {
        self.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_log_key_has_its_own_slot_and_the_slots_are_all_used() {
        let mut keys: Vec<LogKey> = REASONS.map(LogKey::Refusal).to_vec();
        keys.extend(EXPORT_DROPS.map(LogKey::ExportDrop));
        keys.extend(POINT_REASONS.map(LogKey::PointRefusal));
        keys.extend(UI_REFUSALS.map(LogKey::UiRefusal));
        keys.extend([
            LogKey::InvalidValue,
            LogKey::TracesEvicted,
            LogKey::PublicClientsOverflow,
            LogKey::InvalidEvent,
            LogKey::AttemptsOverflow,
            LogKey::VitalIdsOverflow,
            LogKey::KafkaError,
            LogKey::InvalidSamplingThreshold,
        ]);
        let mut idx: Vec<usize> = keys.iter().map(|k| k.index()).collect();
        idx.sort_unstable();
        // 10 refusal reasons + 3 export drops + 8 point reasons + 2 web view refusals +
        // 8 single keys = 31 slots, numbered 0..31 with none shared.
        assert_eq!(idx, (0..31).collect::<Vec<_>>());
        assert_eq!(LOG_KEYS, 31);
        let tel = Telemetry::default();
        assert!(keys.iter().all(|k| tel.log_due(*k, 60)));
    }
}
