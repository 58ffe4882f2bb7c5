//! Internal events, in the style of Vector's `internal_events`: one small type per
//! thing that happens to cerflow itself, and one `emit()` that bumps its counter and
//! writes its log line. Counting and logging cannot drift apart, and warnings a flood
//! of bad input could repeat are rate-limited in one place ([`Telemetry::log_due`]).

use crate::telemetry::{
    AddRelaxed, Evict, ExportDrop, LogKey, PointReason, Reason, Telemetry, Transport,
};
use std::time::Duration;

pub trait InternalEvent {
    fn emit(self, tel: &Telemetry);
}

/// How long between two warnings about the same kind of OTLP export drop.
const DROP_WARN_EVERY_SECS: u64 = 10;
/// How long between two warnings about refusals for the same reason.
const REFUSAL_WARN_EVERY_SECS: u64 = 1;

/// Spans arrived in a request that could be decoded (or counted before a refusal).
pub struct SpansReceived {
    pub transport: Transport,
    pub spans: u64,
}

impl InternalEvent for SpansReceived {
    fn emit(self, tel: &Telemetry) {
        tel.received_spans[self.transport as usize].add(self.spans);
        tracing::trace!(
            transport = self.transport.as_str(),
            spans = self.spans,
            "Received spans."
        );
    }
}

/// A whole request was refused; `spans` is how many spans it held, when known.
pub struct RequestRefused<'a> {
    pub transport: Transport,
    pub reason: Reason,
    pub spans: u64,
    pub detail: &'a str,
}

impl InternalEvent for RequestRefused<'_> {
    fn emit(self, tel: &Telemetry) {
        let r = self.reason;
        tel.refused_requests[r.index()].add(1);
        tel.refused_spans[r.index()].add(self.spans);
        if tel.log_due(LogKey::Refusal(r), REFUSAL_WARN_EVERY_SECS) {
            tracing::warn!(
                transport = self.transport.as_str(),
                reason = r.as_str(),
                spans = self.spans,
                detail = self.detail,
                "Refused an OTLP request."
            );
        }
    }
}

/// Some spans of an accepted request were refused.
pub struct SpansRefused<'a> {
    pub transport: Transport,
    pub reason: Reason,
    pub spans: u64,
    pub detail: &'a str,
}

impl InternalEvent for SpansRefused<'_> {
    fn emit(self, tel: &Telemetry) {
        let r = self.reason;
        tel.refused_spans[r.index()].add(self.spans);
        if tel.log_due(LogKey::Refusal(r), REFUSAL_WARN_EVERY_SECS) {
            tracing::warn!(
                transport = self.transport.as_str(),
                reason = r.as_str(),
                spans = self.spans,
                detail = self.detail,
                "Refused spans of an OTLP request."
            );
        }
    }
}

/// Spans of an accepted request that were not recorded: no journey claimed them, or
/// they ended before the longest window. Both count as processed.
pub struct SpansNotRecorded {
    pub unmatched: u64,
    pub late: u64,
}

impl InternalEvent for SpansNotRecorded {
    fn emit(self, tel: &Telemetry) {
        tel.unmatched_spans.add(self.unmatched);
        tel.late_spans.add(self.late);
        tel.processed_spans.add(self.unmatched + self.late);
        if self.unmatched + self.late > 0 {
            tracing::trace!(
                unmatched = self.unmatched,
                late = self.late,
                "Spans not recorded."
            );
        }
    }
}

/// A worker recorded a batch of spans.
pub struct SpansRecorded {
    pub spans: u64,
}

impl InternalEvent for SpansRecorded {
    fn emit(self, tel: &Telemetry) {
        tel.processed_spans.add(self.spans);
        tracing::trace!(spans = self.spans, "Recorded spans.");
    }
}

/// A span ended further in the future than `max_clock_skew` and counts as ending now.
pub struct SpanClamped {
    pub ahead_ns: u64,
}

impl InternalEvent for SpanClamped {
    fn emit(self, tel: &Telemetry) {
        tel.clamped_spans.add(1);
        tracing::trace!(
            ahead_ns = self.ahead_ns,
            "Clamped a span's end time to now."
        );
    }
}

/// A journey span's trace state has an `ot=th:` threshold that is not 1 to 14 lowercase
/// hex digits. Its sampling probability is unknown, so it counts as one request, as a
/// span without a threshold does (the Collector's sampling package and Elastic's
/// enrichment fall back the same way); refusing it would lose a real request.
pub struct InvalidSamplingThreshold<'a> {
    pub trace_state: &'a str,
}

impl InternalEvent for InvalidSamplingThreshold<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.invalid_sampling_thresholds.add(1);
        if tel.log_due(
            crate::telemetry::LogKey::InvalidSamplingThreshold,
            REFUSAL_WARN_EVERY_SECS,
        ) {
            tracing::warn!(
                trace_state = %crate::span::clip(self.trace_state, 256),
                "Counted a span with a malformed ot=th sampling threshold as 1 request."
            );
        }
    }
}

/// A span or a metric data point went to its journey's overflow series (cohort or memory
/// limit reached).
pub struct CardinalityOverflow {
    pub journey: u32,
}

impl InternalEvent for CardinalityOverflow {
    fn emit(self, tel: &Telemetry) {
        tel.cardinality_overflow.add(1);
        tracing::trace!(
            journey = self.journey,
            "Recorded a span or data point into the overflow series."
        );
    }
}

/// Traces completed before `traces.wait`: their children that arrive later are not
/// attributed to the journey. Warned about at most every 10 s; the counter has them all.
pub struct TracesEvicted {
    pub reason: Evict,
    pub traces: u64,
}

impl InternalEvent for TracesEvicted {
    fn emit(self, tel: &Telemetry) {
        tel.traces_evicted[self.reason as usize].add(self.traces);
        if tel.log_due(LogKey::TracesEvicted, 10) {
            tracing::warn!(
                reason = self.reason.as_str(),
                traces = self.traces,
                "Completed traces before traces.wait to stay within the trace buffer's limits."
            );
        }
    }
}

/// A journey had `deployments.max_versions` versions on a worker and a new one came: the
/// least recently seen is forgotten there (its counts start again if it comes back).
pub struct VersionEvicted<'a> {
    pub journey: u32,
    pub version: &'a str,
}

impl InternalEvent for VersionEvicted<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.deployment_versions_evicted.add(1);
        tracing::debug!(
            journey = self.journey,
            version = self.version,
            "Forgot the least recently seen version of a journey at deployments.max_versions."
        );
    }
}

/// Kafka stage 2: an evicted version's counts since the last barrier that the worker
/// could not hold for the next one (it already holds `deployments.max_versions`).
pub struct VersionDeltaLost<'a> {
    pub journey: u32,
    pub version: &'a str,
    /// In sampling units.
    pub requests: u64,
}

impl InternalEvent for VersionDeltaLost<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.deployment_version_requests_lost.add(self.requests);
        tracing::warn!(
            journey = self.journey,
            version = self.version,
            requests = crate::sampling::to_requests(self.requests),
            "Lost an evicted version's requests since the last barrier: more versions were evicted in one interval than deployments.max_versions."
        );
    }
}

/// Spans of an assembled trace in which no journey claimed a span.
pub struct OrphanSpans {
    pub spans: u64,
}

impl InternalEvent for OrphanSpans {
    fn emit(self, tel: &Telemetry) {
        tel.orphan_spans.add(self.spans);
        tracing::trace!(spans = self.spans, "Assembled a trace no journey claimed.");
    }
}

/// A request's value was not a number, negative or not finite: it is left out of the
/// journey's value, and the request still counts.
pub struct InvalidValue<'a> {
    pub journey: &'a std::sync::Arc<str>,
}

impl InternalEvent for InvalidValue<'_> {
    fn emit(self, tel: &Telemetry) {
        let mut m = match tel.invalid_values.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match m.get_mut(self.journey) {
            Some(n) => *n += 1,
            None => {
                m.insert(self.journey.clone(), 1);
            }
        }
        drop(m);
        if tel.log_due(
            crate::telemetry::LogKey::InvalidValue,
            REFUSAL_WARN_EVERY_SECS,
        ) {
            tracing::warn!(
                journey = %self.journey,
                "Ignored a request value that is not a number of 0 or more; the request still counts."
            );
        }
    }
}

/// Series dropped after `series_ttl` without data.
pub struct SeriesExpired {
    pub count: u64,
}

impl InternalEvent for SeriesExpired {
    fn emit(self, tel: &Telemetry) {
        tel.series_expired.add(self.count);
        if self.count > 0 {
            tracing::debug!(count = self.count, "Dropped series idle for series_ttl.");
        }
    }
}

/// A worker did not answer the evaluation's snapshot request in time. The tick is
/// skipped (the last complete figures stay published) unless too many were skipped in a
/// row, when it is published without that worker's series.
pub struct SnapshotIncomplete {
    pub answered: usize,
    pub workers: usize,
    pub published: bool,
}

impl InternalEvent for SnapshotIncomplete {
    fn emit(self, tel: &Telemetry) {
        tel.snapshots_incomplete.add(1);
        tracing::warn!(
            answered = self.answered,
            workers = self.workers,
            published = self.published,
            "A pipeline worker did not answer the snapshot request in time."
        );
    }
}

/// Metric data points received: those a signal reads are then recorded or refused.
pub struct DataPointsReceived {
    pub count: u64,
}

impl InternalEvent for DataPointsReceived {
    fn emit(self, tel: &Telemetry) {
        tel.received_data_points.add(self.count);
        tracing::trace!(count = self.count, "Received metric data points.");
    }
}

/// Data points of an accepted metrics request were refused (partial success).
pub struct DataPointsRefused<'a> {
    pub reason: PointReason,
    pub points: u64,
    pub detail: &'a str,
}

impl InternalEvent for DataPointsRefused<'_> {
    fn emit(self, tel: &Telemetry) {
        let r = self.reason;
        tel.refused_data_points[r as usize].add(self.points);
        if self.points > 0 && tel.log_due(LogKey::PointRefusal(r), REFUSAL_WARN_EVERY_SECS) {
            tracing::warn!(
                reason = r.as_str(),
                points = self.points,
                detail = self.detail,
                "Refused metric data points."
            );
        }
    }
}

/// Cumulative metric streams not seen for `windows.series_ttl` were forgotten.
pub struct MetricStreamsExpired {
    pub count: u64,
}

impl InternalEvent for MetricStreamsExpired {
    fn emit(self, _tel: &Telemetry) {
        if self.count > 0 {
            tracing::debug!(
                count = self.count,
                "Forgot metric streams idle for series_ttl."
            );
        }
    }
}

/// Log records received (those with an event name go on to the journeys).
pub struct LogRecordsReceived {
    pub count: u64,
}

impl InternalEvent for LogRecordsReceived {
    fn emit(self, tel: &Telemetry) {
        tel.received_log_records.add(self.count);
        tracing::trace!(count = self.count, "Received log records.");
    }
}

/// A web vital event of a journey could not be counted (no name, an unknown one, a
/// value that is missing, not a number or negative).
pub struct InvalidVital<'a> {
    /// The `reason` label and its index in `Telemetry::invalid_events`.
    pub reason: &'static str,
    pub index: usize,
    pub journey: &'a str,
}

impl InternalEvent for InvalidVital<'_> {
    fn emit(self, tel: &Telemetry) {
        if let Some(c) = tel.invalid_events.get(self.index) {
            c.add(1);
        }
        if tel.log_due(LogKey::InvalidEvent, REFUSAL_WARN_EVERY_SECS) {
            tracing::warn!(
                reason = self.reason,
                journey = self.journey,
                "Ignored a web vital event that cannot be counted."
            );
        }
    }
}

/// A series remembered as many web vital ids as it may: this report of a
/// measurement counts, but a later report of it will not replace it.
pub struct VitalIdsOverflow;

impl InternalEvent for VitalIdsOverflow {
    fn emit(self, tel: &Telemetry) {
        tel.vital_ids_overflow.add(1);
        if tel.log_due(LogKey::VitalIdsOverflow, DROP_WARN_EVERY_SECS) {
            tracing::warn!("A series remembers as many web vital ids as it may; a later report of this measurement will count again.");
        }
    }
}

/// A journey's attempt was not tracked: `limits.max_pending_attempts` were pending.
pub struct AttemptsOverflow {
    pub max: usize,
}

impl InternalEvent for AttemptsOverflow {
    fn emit(self, tel: &Telemetry) {
        tel.attempts_overflow.add(1);
        if tel.log_due(LogKey::AttemptsOverflow, DROP_WARN_EVERY_SECS) {
            tracing::warn!(
                max = self.max,
                "As many attempts as limits.max_pending_attempts are pending; a new one is not tracked."
            );
        }
    }
}

/// A client address found the public rate limiter's table full and shares the one
/// allowance of all such addresses.
pub struct PublicClientsOverflow {
    pub max_clients: usize,
}

impl InternalEvent for PublicClientsOverflow {
    fn emit(self, tel: &Telemetry) {
        tel.public_clients_overflow.add(1);
        if tel.log_due(LogKey::PublicClientsOverflow, DROP_WARN_EVERY_SECS) {
            tracing::warn!(
                max_clients = self.max_clients,
                "The public rate limiter tracks as many client addresses as it may; new ones share one allowance."
            );
        }
    }
}

/// A new config was applied; `notes` name the settings that need a restart.
pub struct ConfigReloaded<'a> {
    pub trigger: &'a str,
    pub version: &'a str,
    pub notes: &'a [String],
}

impl InternalEvent for ConfigReloaded<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.config_reloads.add(1);
        let (trigger, version) = (self.trigger, self.version);
        tracing::info!(trigger, %version, "Reloaded the config.");
        for note in self.notes {
            tracing::warn!(trigger, "{note}");
        }
    }
}

/// A new config was invalid; the running one stays.
pub struct ConfigReloadFailed<'a> {
    pub trigger: &'a str,
    pub problems: &'a dyn std::fmt::Display,
}

impl InternalEvent for ConfigReloadFailed<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.config_reload_failures.add(1);
        tracing::error!(
            trigger = self.trigger,
            problems = %self.problems,
            "Refused the new config; the running one stays in force."
        );
    }
}

/// An OTLP metric push succeeded; `failures_before` attempts had failed before it.
pub struct OtlpExportSucceeded<'a> {
    pub endpoint: &'a str,
    pub failures_before: u32,
    pub queued: usize,
    /// Data points the endpoint rejected, and its message, when it accepted in part.
    pub partial: Option<(i64, &'a str)>,
}

impl InternalEvent for OtlpExportSucceeded<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.otlp_exports_ok.add(1);
        let endpoint = self.endpoint;
        if let Some((rejected_data_points, message)) = self.partial {
            tracing::warn!(
                %endpoint,
                rejected_data_points,
                %message,
                "The OTLP endpoint accepted the metric push in part (not retried)."
            );
        }
        if self.failures_before > 0 {
            tracing::info!(
                %endpoint,
                failed_attempts = self.failures_before,
                queued = self.queued,
                "OTLP metric push works again."
            );
        } else {
            tracing::trace!(%endpoint, "Pushed OTLP metrics.");
        }
    }
}

/// An OTLP metric push failed. `retry_in` is `None` for a permanent failure (the drop
/// that follows says so); the first failure of an outage warns, later ones are debug.
pub struct OtlpExportFailed<'a> {
    pub endpoint: &'a str,
    pub status: &'a tonic::Status,
    pub failures: u32,
    pub retry_in: Option<Duration>,
}

impl InternalEvent for OtlpExportFailed<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.otlp_exports_failed.add(1);
        let (endpoint, code, grpc_message) =
            (self.endpoint, self.status.code(), self.status.message());
        match self.retry_in {
            Some(retry_in) if self.failures == 1 => tracing::warn!(
                %endpoint,
                ?code,
                grpc_message,
                ?retry_in,
                "OTLP metric push failed; retrying with backoff."
            ),
            Some(retry_in) => tracing::debug!(
                %endpoint,
                ?code,
                grpc_message,
                failures = self.failures,
                ?retry_in,
                "OTLP metric push failed again."
            ),
            None => tracing::debug!(
                %endpoint,
                ?code,
                grpc_message,
                "OTLP metric push failed permanently."
            ),
        }
    }
}

/// An OTLP push attempt made while backing off after a retryable failure.
pub struct OtlpExportRetried<'a> {
    pub endpoint: &'a str,
    pub attempt: u32,
}

impl InternalEvent for OtlpExportRetried<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.otlp_export_retries.add(1);
        tracing::debug!(
            endpoint = %self.endpoint,
            attempt = self.attempt,
            "Retrying the OTLP metric push."
        );
    }
}

/// An OTLP export request was given up on. Each permanent refusal warns; queue-full
/// and expired drops warn at most once per 10 s per reason, the rest go to debug.
pub struct OtlpExportDropped<'a> {
    pub endpoint: &'a str,
    pub why: ExportDrop,
    pub attempts: u32,
    pub age: Duration,
    pub detail: &'a str,
}

impl InternalEvent for OtlpExportDropped<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.otlp_export_dropped[self.why as usize].add(1);
        let warn = self.why == ExportDrop::Permanent
            || tel.log_due(LogKey::ExportDrop(self.why), DROP_WARN_EVERY_SECS);
        let total = tel.otlp_dropped(self.why);
        let (endpoint, reason, attempts, age, detail) = (
            self.endpoint,
            self.why.as_str(),
            self.attempts,
            self.age,
            self.detail,
        );
        if warn {
            tracing::warn!(
                %endpoint,
                reason,
                attempts,
                ?age,
                dropped_so_far = total,
                detail,
                "Dropped an OTLP metric export request."
            );
        } else {
            tracing::debug!(
                %endpoint,
                reason,
                attempts,
                ?age,
                dropped_so_far = total,
                detail,
                "Dropped an OTLP metric export request."
            );
        }
    }
}

/// The web view refused a request: bad credentials, or too many live streams.
pub struct UiRequestRefused {
    pub reason: crate::telemetry::UiRefusal,
}

impl InternalEvent for UiRequestRefused {
    fn emit(self, tel: &Telemetry) {
        tel.ui_refused[self.reason as usize].add(1);
        if tel.log_due(
            crate::telemetry::LogKey::UiRefusal(self.reason),
            REFUSAL_WARN_EVERY_SECS,
        ) {
            tracing::warn!(
                reason = self.reason.as_str(),
                "Refused a request to the web view."
            );
        }
    }
}

/// How long between two warnings about Kafka client errors.
const KAFKA_WARN_EVERY_SECS: u64 = 10;

/// The Kafka receiver gained or lost its last broker connection.
pub struct KafkaConnection {
    pub connected: bool,
}

impl InternalEvent for KafkaConnection {
    fn emit(self, tel: &Telemetry) {
        let was = tel
            .kafka
            .connected
            .swap(self.connected, std::sync::atomic::Ordering::Relaxed);
        if was != self.connected {
            if self.connected {
                tracing::info!("Connected to the Kafka brokers.");
            } else {
                tracing::warn!("Lost every Kafka broker connection; not ready until one is back.");
            }
        }
    }
}

/// The consumer group gave this instance a new set of partitions.
pub struct KafkaAssigned {
    pub partitions: u64,
}

impl InternalEvent for KafkaAssigned {
    fn emit(self, tel: &Telemetry) {
        tel.kafka
            .partitions_assigned
            .store(self.partitions, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(partitions = self.partitions, "Kafka partitions assigned.");
    }
}

/// librdkafka reported an error (it retries by itself; this is for the operator).
pub struct KafkaError<'a> {
    pub detail: &'a str,
}

impl InternalEvent for KafkaError<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.errors_reported.add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(detail = self.detail, "Kafka client error.");
        }
    }
}

/// A barrier's transaction committed: partials published, input offsets committed.
pub struct KafkaAggregatesPublished {
    pub messages: u64,
}

impl InternalEvent for KafkaAggregatesPublished {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.aggregates_published.add(self.messages);
        tel.kafka.transactions_committed.add(1);
        tracing::debug!(messages = self.messages, "Partial aggregates published.");
    }
}

/// A barrier's transaction aborted: its partials were dropped and its spans are read
/// again from the last committed offsets.
pub struct KafkaTransactionAborted<'a> {
    pub detail: &'a str,
}

impl InternalEvent for KafkaTransactionAborted<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.transactions_aborted.add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(
                detail = self.detail,
                "Kafka transaction aborted; its spans are read again."
            );
        }
    }
}

/// One sub-bucket of a journey's partials exceeds the message limit alone: not sent.
pub struct KafkaPartialTooLarge<'a> {
    pub journey: &'a str,
    pub bytes: usize,
}

impl InternalEvent for KafkaPartialTooLarge<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.partials_too_large.add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(
                journey = self.journey,
                bytes = self.bytes,
                "A partial aggregate's sub-bucket exceeds receivers.kafka.aggregates.max_message_bytes; dropped."
            );
        }
    }
}

/// An owner merged one message of the aggregates topic; `sub_buckets_dropped` of its
/// sub-buckets had slid out of the window (or start in the future) and were left out,
/// as a late span is on one instance.
pub struct KafkaPartialsMerged {
    pub sub_buckets_dropped: u64,
}

impl InternalEvent for KafkaPartialsMerged {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.partials_merged.add(1);
        tel.kafka
            .partial_sub_buckets_dropped
            .add(self.sub_buckets_dropped);
    }
}

/// An owner refused a message of the aggregates topic (not a partial of this version,
/// a journey this config lacks, a window layout that differs, a partition not owned).
pub struct KafkaPartialRefused<'a> {
    pub detail: &'a str,
}

impl InternalEvent for KafkaPartialRefused<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.partials_refused.add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(
                detail = self.detail,
                "A partial aggregate was refused by its owner; its figures are left out."
            );
        }
    }
}

/// An owner refused a partial of a journey derived by another instance's
/// `auto_journeys` because it already holds `auto_journeys.max` derived journeys: the
/// partial is also counted as refused; its figures are left out.
pub struct KafkaJourneyNotAdopted<'a> {
    pub journey: &'a str,
}

impl InternalEvent for KafkaJourneyNotAdopted<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.journeys_not_adopted.add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(
                journey = self.journey,
                "A derived journey's partial was refused: this owner already holds auto_journeys.max derived journeys."
            );
        }
    }
}

/// The aggregates partitions of owned journeys were revoked (a rebalance, or this
/// instance leaving the owners' group at shutdown): their incidents and deployments are
/// left to the new owner, which restores them from the changelog. Not an incident
/// closing: the incident goes on, elsewhere. One log line per hand-over.
pub struct KafkaJourneysHandedOver<'a> {
    pub journeys: &'a [&'a str],
    /// Of them, those with an open incident.
    pub open_incidents: usize,
}

impl InternalEvent for KafkaJourneysHandedOver<'_> {
    fn emit(self, tel: &Telemetry) {
        if self.journeys.is_empty() {
            return;
        }
        tel.kafka
            .journeys_handed_over
            .add(self.journeys.len() as u64);
        // At most a few names: a revoke can take hundreds of journeys.
        let shown: Vec<&str> = self.journeys.iter().take(5).copied().collect();
        tracing::info!(
            journeys = self.journeys.len(),
            open_incidents = self.open_incidents,
            first = ?shown,
            "Journeys handed over: their aggregates partition went to another owner, which carries on their incidents and deployments."
        );
    }
}

/// A changed journey's long-lived state was queued to the changelog.
pub struct KafkaChangelogWritten<'a> {
    pub journey: &'a str,
}

impl InternalEvent for KafkaChangelogWritten<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.changelog_written.add(1);
        tracing::debug!(journey = self.journey, "Changelog record written.");
    }
}

/// Why a journey's changelog record was not written or not restored: the `reason`
/// label of `cerflow_kafka_state_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    /// Over `max_record_bytes`: the previous record stays the journey's.
    TooLarge,
    /// A record that does not decode (corrupt, foreign, another format): refused whole.
    Invalid,
    /// The new owner's read of the changelog hit `restore_timeout`, or its re-read of
    /// an aggregates partition did.
    RestoreTimeout,
    /// A record read for a partition that was revoked before its re-read ended: not
    /// restored here (the partition's next owner reads it again).
    Revoked,
}

pub const STATE_REFUSALS: [StateRefusal; 4] = [
    StateRefusal::TooLarge,
    StateRefusal::Invalid,
    StateRefusal::RestoreTimeout,
    StateRefusal::Revoked,
];

impl StateRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            StateRefusal::TooLarge => "too_large",
            StateRefusal::Invalid => "invalid",
            StateRefusal::RestoreTimeout => "restore_timeout",
            StateRefusal::Revoked => "revoked",
        }
    }
}

/// A journey's long-lived state did not go through the changelog (see [`StateRefusal`]).
pub struct KafkaStateRefused<'a> {
    pub reason: StateRefusal,
    /// Empty for a restore timeout (it concerns partitions).
    pub journey: &'a str,
    pub detail: &'a str,
}

impl InternalEvent for KafkaStateRefused<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.state_refused[self.reason as usize].add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(
                reason = self.reason.as_str(),
                journey = self.journey,
                detail = self.detail,
                "A journey's state did not go through the Kafka changelog; it starts empty where it is not restored."
            );
        }
    }
}

/// Why a journey's snapshot was dropped: the `reason` label of
/// `cerflow_kafka_snapshots_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotDrop {
    /// Older than `snapshot_ttl`: its owner stopped writing.
    Stale,
    /// `max_snapshots` journeys are held already.
    Full,
    /// A record that does not decode, or whose key is not its journey.
    Invalid,
    /// Over `max_record_bytes`: not published.
    TooLarge,
}

pub const SNAPSHOT_DROPS: [SnapshotDrop; 4] = [
    SnapshotDrop::Stale,
    SnapshotDrop::Full,
    SnapshotDrop::Invalid,
    SnapshotDrop::TooLarge,
];

impl SnapshotDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotDrop::Stale => "stale",
            SnapshotDrop::Full => "full",
            SnapshotDrop::Invalid => "invalid",
            SnapshotDrop::TooLarge => "too_large",
        }
    }
}

pub struct KafkaSnapshotDropped<'a> {
    pub reason: SnapshotDrop,
    pub journey: &'a str,
}

impl InternalEvent for KafkaSnapshotDropped<'_> {
    fn emit(self, tel: &Telemetry) {
        tel.kafka.snapshots_dropped[self.reason as usize].add(1);
        if tel.log_due(LogKey::KafkaError, KAFKA_WARN_EVERY_SECS) {
            tracing::warn!(
                reason = self.reason.as_str(),
                journey = self.journey,
                "A journey's snapshot was dropped; the score API's scope=all leaves it out."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_counts_the_request_and_its_spans() {
        let tel = Telemetry::default();
        RequestRefused {
            transport: Transport::Http,
            reason: Reason::TooLarge,
            spans: 3,
            detail: "x",
        }
        .emit(&tel);
        SpansRefused {
            transport: Transport::Grpc,
            reason: Reason::TooLarge,
            spans: 2,
            detail: "y",
        }
        .emit(&tel);
        assert_eq!(tel.refused_requests(Reason::TooLarge), 1);
        assert_eq!(tel.refused_spans(Reason::TooLarge), 5);
        assert_eq!(tel.refused_requests(Reason::Malformed), 0);
    }

    #[test]
    fn the_log_limiter_lets_one_line_per_key_and_interval_through() {
        let tel = Telemetry::default();
        let key = LogKey::Refusal(Reason::Malformed);
        assert!(tel.log_due(key, 3600));
        assert!(!tel.log_due(key, 3600), "the same key within the interval");
        assert!(tel.log_due(LogKey::Refusal(Reason::Timeout), 3600));
        assert!(tel.log_due(LogKey::ExportDrop(ExportDrop::Expired), 3600));
    }

    #[test]
    fn kafka_events_set_the_gauges_and_count_errors() {
        let tel = Telemetry::default();
        assert!(tel.kafka.ready(), "no Kafka receiver: ready");
        tel.kafka
            .enabled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(!tel.kafka.ready(), "configured, not connected");
        KafkaConnection { connected: true }.emit(&tel);
        assert!(tel.kafka.ready());
        KafkaAssigned { partitions: 3 }.emit(&tel);
        KafkaError { detail: "a" }.emit(&tel);
        KafkaError { detail: "b" }.emit(&tel);
        KafkaConnection { connected: false }.emit(&tel);
        assert!(!tel.kafka.ready());
        assert_eq!(tel.kafka.partitions_assigned.get(), 3);
        assert_eq!(tel.kafka.errors_reported.get(), 2);
        KafkaAggregatesPublished { messages: 4 }.emit(&tel);
        KafkaAggregatesPublished { messages: 3 }.emit(&tel);
        KafkaTransactionAborted { detail: "fenced" }.emit(&tel);
        KafkaPartialTooLarge {
            journey: "checkout",
            bytes: 2_000_000,
        }
        .emit(&tel);
        assert_eq!(tel.kafka.aggregates_published.get(), 7);
        assert_eq!(tel.kafka.transactions_committed.get(), 2);
        assert_eq!(tel.kafka.transactions_aborted.get(), 1);
        assert_eq!(tel.kafka.partials_too_large.get(), 1);
    }

    #[test]
    fn state_refusals_and_snapshot_drops_count_by_reason() {
        let tel = Telemetry::default();
        for reason in [
            StateRefusal::Invalid,
            StateRefusal::Invalid,
            StateRefusal::RestoreTimeout,
        ] {
            KafkaStateRefused {
                reason,
                journey: "checkout",
                detail: "x",
            }
            .emit(&tel);
        }
        KafkaSnapshotDropped {
            reason: SnapshotDrop::Stale,
            journey: "login",
        }
        .emit(&tel);
        let refused: Vec<u64> = tel.kafka.state_refused.iter().map(|c| c.get()).collect();
        assert_eq!(refused, [0, 2, 1, 0]);
        let dropped: Vec<u64> = tel
            .kafka
            .snapshots_dropped
            .iter()
            .map(|c| c.get())
            .collect();
        assert_eq!(dropped, [1, 0, 0, 0]);
    }

    #[test]
    fn not_recorded_spans_count_as_processed() {
        let tel = Telemetry::default();
        SpansNotRecorded {
            unmatched: 2,
            late: 3,
        }
        .emit(&tel);
        SpansRecorded { spans: 4 }.emit(&tel);
        assert_eq!(tel.processed_spans.get(), 9);
        assert_eq!(tel.unmatched_spans.get(), 2);
        assert_eq!(tel.late_spans.get(), 3);
    }
}
