//! The metric catalogue: every metric cerflow emits, declared once. Both exporters
//! take names, units, kinds and help from here, and `tests/catalogue.rs` checks that
//! each exporter emits exactly these and that README.md's tables list them all.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The `# TYPE` word of the Prometheus text format.
    pub fn prom(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric, as both exporters and the README name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Name in the Prometheus exposition.
    pub prom: &'static str,
    /// Name in the OTLP push; `None` for what only `/metrics` shows.
    pub otlp: Option<&'static str>,
    /// UCUM unit, as the OTLP push sends it.
    pub unit: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label (attribute) names; [`COHORTS`] stands for the configured cohort keys.
    pub labels: &'static [&'static str],
}

/// Placeholder in [`Metric::labels`] for the journey's cohort labels.
pub const COHORTS: &str = "{cohorts}";

pub const CER_JOURNEY_REQUESTS_TOTAL: Metric = Metric {
    prom: "cer_journey_requests_total",
    otlp: Some("cer.journey.requests"),
    unit: "{request}",
    kind: Kind::Counter,
    help: "Spans recorded for the journey since the series started.",
    labels: &["journey", COHORTS],
};

pub const CER_JOURNEY_ERRORS_TOTAL: Metric = Metric {
    prom: "cer_journey_errors_total",
    otlp: Some("cer.journey.errors"),
    unit: "{request}",
    kind: Kind::Counter,
    help: "Spans classified as failed.",
    labels: &["journey", COHORTS],
};

pub const CER_JOURNEY_SLOW_TOTAL: Metric = Metric {
    prom: "cer_journey_slow_total",
    otlp: Some("cer.journey.slow"),
    unit: "{request}",
    kind: Kind::Counter,
    help: "Spans slower than the journey's latency threshold.",
    labels: &["journey", COHORTS],
};

pub const CER_JOURNEY_INCORRECT_TOTAL: Metric = Metric {
    prom: "cer_journey_incorrect_total",
    otlp: Some("cer.journey.incorrect"),
    unit: "{request}",
    kind: Kind::Counter,
    help: "Spans classified as incorrect.",
    labels: &["journey", COHORTS],
};

pub const CER_JOURNEY_DURATION_SECONDS: Metric = Metric {
    prom: "cer_journey_duration_seconds",
    otlp: Some("cer.journey.duration"),
    unit: "s",
    kind: Kind::Histogram,
    help: "Span duration of the journey.",
    labels: &["journey", COHORTS, "le"],
};

pub const CER_SLI_EXPERIENCE_RATIO: Metric = Metric {
    prom: "cer_sli_experience_ratio",
    otlp: Some("cer.sli.experience"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of web vital measurements in the window at or under their threshold.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_JOURNEY_WEB_VITAL: Metric = Metric {
    prom: "cer_journey_web_vital",
    otlp: Some("cer.journey.web_vital"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Web vital quantile in the window: seconds for lcp, inp, fcp and ttfb, unitless for cls.",
    labels: &["journey", COHORTS, "window", "name", "quantile"],
};

pub const CER_JOURNEY_FRUSTRATIONS_TOTAL: Metric = Metric {
    prom: "cer_journey_frustrations_total",
    otlp: Some("cer.journey.frustrations"),
    unit: "{event}",
    kind: Kind::Counter,
    help: "Frustration events of the journey (its experience.frustration_events), by event name.",
    labels: &["journey", "event"],
};

pub const CER_JOURNEY_ABANDONMENT_RATIO: Metric = Metric {
    prom: "cer_journey_abandonment_ratio",
    otlp: Some("cer.journey.abandonment"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Abandoned attempts / attempts with an outcome in the window (completed or timed out).",
    labels: &["journey", "window"],
};

pub const CER_JOURNEY_ATTEMPTS_TOTAL: Metric = Metric {
    prom: "cer_journey_attempts_total",
    otlp: Some("cer.journey.attempts"),
    unit: "{attempt}",
    kind: Kind::Counter,
    help: "Attempts of the journey by outcome: completed in time or abandoned.",
    labels: &["journey", "outcome"],
};

pub const CERFLOW_VITAL_IDS_OVERFLOW_TOTAL: Metric = Metric {
    prom: "cerflow_vital_ids_overflow_total",
    otlp: None,
    unit: "{event}",
    kind: Kind::Counter,
    help: "Web vital reports whose id a series could not remember (10000 per series within the longest window); a later report of the same measurement then counts again.",
    labels: &[],
};

pub const CERFLOW_ATTEMPTS_OVERFLOW_TOTAL: Metric = Metric {
    prom: "cerflow_attempts_overflow_total",
    otlp: None,
    unit: "{attempt}",
    kind: Kind::Counter,
    help: "Attempts not tracked because limits.max_pending_attempts were pending.",
    labels: &[],
};

pub const CERFLOW_INVALID_EVENTS_TOTAL: Metric = Metric {
    prom: "cerflow_invalid_events_total",
    otlp: None,
    unit: "{event}",
    kind: Kind::Counter,
    help: "Web vital events of a journey ignored because their name or value cannot be counted, by reason.",
    labels: &["reason"],
};

pub const CER_SLI_AVAILABILITY_RATIO: Metric = Metric {
    prom: "cer_sli_availability_ratio",
    otlp: Some("cer.sli.availability"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of requests in the window that did not fail.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_SLI_LATENCY_RATIO: Metric = Metric {
    prom: "cer_sli_latency_ratio",
    otlp: Some("cer.sli.latency"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of requests in the window faster than the latency threshold.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_SLI_CORRECTNESS_RATIO: Metric = Metric {
    prom: "cer_sli_correctness_ratio",
    otlp: Some("cer.sli.correctness"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of requests in the window not marked incorrect.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_SLI_OPERATIONS_RATIO: Metric = Metric {
    prom: "cer_sli_operations_ratio",
    otlp: Some("cer.sli.operations"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of the window's time slices with signal data in which every signal was within its bound.",
    labels: &["journey", "window"],
};

pub const CER_SIGNAL_VALUE: Metric = Metric {
    prom: "cer_signal_value",
    otlp: Some("cer.signal.value"),
    unit: "1",
    kind: Kind::Gauge,
    help: "A signal's aggregate over the latest time slice with data in the window, in the metric's unit.",
    labels: &["journey", "signal", "window"],
};

pub const CER_SIGNAL_OK: Metric = Metric {
    prom: "cer_signal_ok",
    otlp: Some("cer.signal.ok"),
    unit: "1",
    kind: Kind::Gauge,
    help: "1 when the signal's latest time slice with data is within its bound, else 0.",
    labels: &["journey", "signal"],
};

pub const CER_JOURNEY_LATENCY_SECONDS: Metric = Metric {
    prom: "cer_journey_latency_seconds",
    otlp: Some("cer.journey.latency"),
    unit: "s",
    kind: Kind::Gauge,
    help: "Latency quantiles of the journey over the window.",
    labels: &["journey", COHORTS, "window", "quantile"],
};

pub const CER_JOURNEY_REQUESTS_PER_SECOND: Metric = Metric {
    prom: "cer_journey_requests_per_second",
    otlp: Some("cer.journey.request_rate"),
    unit: "{request}/s",
    kind: Kind::Gauge,
    help: "Requests over the window divided by its length.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_JOURNEY_USERS: Metric = Metric {
    prom: "cer_journey_users",
    otlp: Some("cer.journey.users"),
    unit: "{user}",
    kind: Kind::Gauge,
    help: "Distinct users with a request in the window; without cohort labels, across the journey's cohorts.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_JOURNEY_USERS_AFFECTED: Metric = Metric {
    prom: "cer_journey_users_affected",
    otlp: Some("cer.journey.users_affected"),
    unit: "{user}",
    kind: Kind::Gauge,
    help: "Distinct users with at least one failed, slow or incorrect request in the window.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_JOURNEY_USERS_AFFECTED_RATIO: Metric = Metric {
    prom: "cer_journey_users_affected_ratio",
    otlp: Some("cer.journey.users_affected_ratio"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Affected users over users in the window; absent with no users.",
    labels: &["journey", COHORTS, "window"],
};

pub const CER_TELEMETRY_COVERAGE_RATIO: Metric = Metric {
    prom: "cer_telemetry_coverage_ratio",
    otlp: Some("cer.telemetry.coverage"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of entry-point spans that matched a journey.",
    labels: &["window"],
};

pub const CER_JOURNEY_COVERAGE_RATIO: Metric = Metric {
    prom: "cer_journey_coverage_ratio",
    otlp: Some("cer.journey.coverage"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Spans seen over requests counted by the journey's metric inputs in the window.",
    labels: &["journey", "window"],
};

pub const CER_DEFINITION_INFO: Metric = Metric {
    prom: "cer_definition_info",
    otlp: Some("cer.definition.info"),
    unit: "1",
    kind: Kind::Gauge,
    help: "The version string of the journey definitions in force.",
    labels: &["version"],
};

pub const CER_SLO_OBJECTIVE_RATIO: Metric = Metric {
    prom: "cer_slo_objective_ratio",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "The SLO objective of each journey's SLI.",
    labels: &["journey", "sli"],
};

pub const CER_SLO_ERROR_BUDGET_REMAINING_RATIO: Metric = Metric {
    prom: "cer_slo_error_budget_remaining_ratio",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of the SLO period's error budget left: 1 untouched, 0 spent, negative overspent.",
    labels: &["journey", "sli", COHORTS],
};

pub const CER_SLO_VALUE_LOST: Metric = Metric {
    prom: "cer_slo_value_lost",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Value of the failed or incorrect requests over the SLO period; kept across restarts.",
    labels: &["journey", COHORTS, "currency"],
};

pub const CER_SLO_BURN_RATE: Metric = Metric {
    prom: "cer_slo_burn_rate",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "How fast the error budget burns over the window; 1 spends it exactly in the period.",
    labels: &["journey", "sli", "window", COHORTS],
};

pub const CER_SLO_ALERT_ACTIVE: Metric = Metric {
    prom: "cer_slo_alert_active",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "1 while a multi-window burn-rate alert is active.",
    labels: &["journey", "sli", "severity", COHORTS],
};

pub const CER_JOURNEY_DATA_PRESENT: Metric = Metric {
    prom: "cer_journey_data_present",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "1 when the journey had requests in the window, else 0.",
    labels: &["journey", "window"],
};

pub const CER_JOURNEY_SCORE: Metric = Metric {
    prom: "cer_journey_score",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Customer-experience reliability score of the journey over the window, 0 to 1.",
    labels: &["journey", "window"],
};

pub const CER_COHORT_SCORE: Metric = Metric {
    prom: "cer_cohort_score",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Customer-experience reliability score of one cohort of a journey, 0 to 1.",
    labels: &["journey", "window", COHORTS],
};

pub const CER_SCORE: Metric = Metric {
    prom: "cer_score",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Overall customer-experience reliability score, journeys weighted by business impact.",
    labels: &["window"],
};

pub const CER_JOURNEY_INCIDENT_OPEN: Metric = Metric {
    prom: "cer_journey_incident_open",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "1 while an incident of the journey is open (an alert of incidents.severity active), else 0.",
    labels: &["journey"],
};

pub const CER_JOURNEY_INCIDENTS_TOTAL: Metric = Metric {
    prom: "cer_journey_incidents_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Incidents of the journey opened, kept across restarts.",
    labels: &["journey"],
};

pub const CER_JOURNEY_TIME_TO_RECOVERY_SECONDS: Metric = Metric {
    prom: "cer_journey_time_to_recovery_seconds",
    otlp: None,
    unit: "s",
    kind: Kind::Histogram,
    help: "Durations of the journey's closed incidents, from the alert firing to no alert active.",
    labels: &["journey", "le"],
};

pub const CER_JOURNEY_TIME_TO_DETECT_SECONDS: Metric = Metric {
    prom: "cer_journey_time_to_detect_seconds",
    otlp: None,
    unit: "s",
    kind: Kind::Histogram,
    help: "From the first sub-bucket whose burn exceeded a firing alert's rate to the incident opening.",
    labels: &["journey", "le"],
};

pub const CER_DEPLOYMENTS_TOTAL: Metric = Metric {
    prom: "cer_deployments_total",
    otlp: Some("cer.deployments"),
    unit: "{deployment}",
    kind: Kind::Counter,
    help: "Deployments of the journey judged, by result (ok, regressed); regressed over all is the deployment failure rate.",
    labels: &["journey", "result"],
};

pub const CER_DEPLOYMENT_INFO: Metric = Metric {
    prom: "cer_deployment_info",
    otlp: Some("cer.deployment.info"),
    unit: "1",
    kind: Kind::Gauge,
    help: "1 per remembered deployment of the journey, with its versions and result (pending, ok, regressed, superseded).",
    labels: &["journey", "version", "previous_version", "result"],
};

pub const CERFLOW_BUILD_INFO: Metric = Metric {
    prom: "cerflow_build_info",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "cerflow's version.",
    labels: &["version"],
};

pub const CERFLOW_RECEIVED_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_received_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans received in decodable requests.",
    labels: &["transport"],
};

pub const CERFLOW_KAFKA_CONNECTED: Metric = Metric {
    prom: "cerflow_kafka_connected",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "1 while the Kafka receiver has a broker connection, else 0 (shown when receivers.kafka is set).",
    labels: &[],
};

pub const CERFLOW_KAFKA_PARTITIONS: Metric = Metric {
    prom: "cerflow_kafka_partitions",
    otlp: None,
    unit: "{partition}",
    kind: Kind::Gauge,
    help: "Partitions of the spans topic this instance consumes now.",
    labels: &[],
};

pub const CERFLOW_KAFKA_ERRORS_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_errors_total",
    otlp: None,
    unit: "{error}",
    kind: Kind::Counter,
    help: "Errors the Kafka client reported; it retries by itself.",
    labels: &[],
};

pub const CERFLOW_KAFKA_AGGREGATES_PUBLISHED_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_aggregates_published_total",
    otlp: None,
    unit: "{message}",
    kind: Kind::Counter,
    help: "Partial-aggregate messages published in committed transactions (shown when receivers.kafka.aggregates is set).",
    labels: &[],
};

pub const CERFLOW_KAFKA_TRANSACTIONS_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_transactions_total",
    otlp: None,
    unit: "{transaction}",
    kind: Kind::Counter,
    help: "Kafka transactions of partial aggregates and input offsets, by outcome: committed, or aborted (their spans are read again).",
    labels: &["outcome"],
};

pub const CERFLOW_KAFKA_PARTIALS_TOO_LARGE_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_partials_too_large_total",
    otlp: None,
    unit: "{sub_bucket}",
    kind: Kind::Counter,
    help: "Window sub-buckets whose partial alone exceeds receivers.kafka.aggregates.max_message_bytes: not published.",
    labels: &[],
};

pub const CERFLOW_KAFKA_OWNED_PARTITIONS: Metric = Metric {
    prom: "cerflow_kafka_owned_partitions",
    otlp: None,
    unit: "{partition}",
    kind: Kind::Gauge,
    help: "Partitions of the aggregates topic this instance owns: it derives and exports their journeys (shown when receivers.kafka.aggregates is set).",
    labels: &[],
};

pub const CERFLOW_KAFKA_PARTIALS_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_partials_total",
    otlp: None,
    unit: "{message}",
    kind: Kind::Counter,
    help: "Messages of the aggregates topic read by this owner, by outcome: merged, or refused (not a partial of this version, a journey or window layout this config lacks).",
    labels: &["outcome"],
};

pub const CERFLOW_KAFKA_PARTIAL_SUB_BUCKETS_DROPPED_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_partial_sub_buckets_dropped_total",
    otlp: None,
    unit: "{sub_bucket}",
    kind: Kind::Counter,
    help: "Sub-buckets of merged partials that had slid out of the owner's windows (or start in the future): left out, as late spans are.",
    labels: &[],
};

pub const CERFLOW_KAFKA_JOURNEYS_NOT_ADOPTED_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_journeys_not_adopted_total",
    otlp: None,
    unit: "{message}",
    kind: Kind::Counter,
    help: "Aggregates-topic messages of a journey another instance derived, refused because this owner already holds auto_journeys.max derived journeys (also counted as refused).",
    labels: &[],
};

pub const CERFLOW_KAFKA_JOURNEYS_HANDED_OVER_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_journeys_handed_over_total",
    otlp: None,
    unit: "{journey}",
    kind: Kind::Counter,
    help: "Owned journeys whose aggregates partition was revoked (a rebalance or a stop): their incidents and deployments left to the new owner, not closed.",
    labels: &[],
};

pub const CERFLOW_KAFKA_CHANGELOG_RECORDS_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_changelog_records_total",
    otlp: None,
    unit: "{record}",
    kind: Kind::Counter,
    help: "Changelog records written for owned journeys whose long-lived state changed (Kafka stage 2).",
    labels: &[],
};

pub const CERFLOW_KAFKA_STATE_REFUSED_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_state_refused_total",
    otlp: None,
    unit: "{record}",
    kind: Kind::Counter,
    help: "Changelog records not written (too_large) or not restored (invalid; revoked before the partition was re-read), and restores cut short by restore_timeout.",
    labels: &["reason"],
};

pub const CERFLOW_KAFKA_SNAPSHOTS: Metric = Metric {
    prom: "cerflow_kafka_snapshots",
    otlp: None,
    unit: "{journey}",
    kind: Kind::Gauge,
    help:
        "Journeys whose owners' latest snapshot this instance holds, for the score API's scope=all.",
    labels: &[],
};

pub const CERFLOW_KAFKA_SNAPSHOTS_DROPPED_TOTAL: Metric = Metric {
    prom: "cerflow_kafka_snapshots_dropped_total",
    otlp: None,
    unit: "{snapshot}",
    kind: Kind::Counter,
    help:
        "Journey snapshots dropped: stale (owner gone), full (max_snapshots), invalid, too_large.",
    labels: &["reason"],
};

pub const CERFLOW_REFUSED_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_refused_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans refused, by reason.",
    labels: &["reason"],
};

pub const CERFLOW_REFUSED_REQUESTS_TOTAL: Metric = Metric {
    prom: "cerflow_refused_requests_total",
    otlp: None,
    unit: "{request}",
    kind: Kind::Counter,
    help: "Requests refused as a whole, by reason.",
    labels: &["reason"],
};

pub const CERFLOW_PROCESSED_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_processed_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans through the pipeline: recorded, unmatched or late.",
    labels: &[],
};

pub const CERFLOW_UNMATCHED_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_unmatched_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans no journey claimed.",
    labels: &[],
};

pub const CERFLOW_LATE_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_late_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans that ended before the longest window and were not recorded.",
    labels: &[],
};

pub const CERFLOW_CLAMPED_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_clamped_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans ending further in the future than max_clock_skew, recorded as ending now.",
    labels: &[],
};

pub const CERFLOW_INVALID_SAMPLING_THRESHOLDS_TOTAL: Metric = Metric {
    prom: "cerflow_invalid_sampling_thresholds_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Journey spans whose trace state has a malformed ot=th sampling threshold; each counts as 1 request.",
    labels: &[],
};

pub const CERFLOW_RECEIVED_DATA_POINTS_TOTAL: Metric = Metric {
    prom: "cerflow_received_data_points_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Metric data points received.",
    labels: &[],
};

pub const CERFLOW_PUBLIC_CLIENTS_OVERFLOW_TOTAL: Metric = Metric {
    prom: "cerflow_public_clients_overflow_total",
    otlp: None,
    unit: "{request}",
    kind: Kind::Counter,
    help: "Public-token requests from client addresses past the rate limiter's table, which share one allowance.",
    labels: &[],
};

pub const CERFLOW_REFUSED_DATA_POINTS_TOTAL: Metric = Metric {
    prom: "cerflow_refused_data_points_total",
    otlp: None,
    unit: "{data_point}",
    kind: Kind::Counter,
    help: "Metric data points a signal or metric input would use, refused as unusable (OTLP partial success).",
    labels: &["reason"],
};

pub const CERFLOW_RECEIVED_LOG_RECORDS_TOTAL: Metric = Metric {
    prom: "cerflow_received_log_records_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Log records received; those with an event name feed journeys, the others are dropped.",
    labels: &[],
};

pub const CERFLOW_SERIES_EXPIRED_TOTAL: Metric = Metric {
    prom: "cerflow_series_expired_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Journey x cohort series dropped after series_ttl without data.",
    labels: &[],
};

pub const CERFLOW_SNAPSHOTS_INCOMPLETE_TOTAL: Metric = Metric {
    prom: "cerflow_snapshots_incomplete_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Evaluation ticks at which a pipeline worker did not answer in time.",
    labels: &[],
};

pub const CERFLOW_DEPLOYMENT_VERSIONS_EVICTED_TOTAL: Metric = Metric {
    prom: "cerflow_deployment_versions_evicted_total",
    otlp: None,
    unit: "{version}",
    kind: Kind::Counter,
    help: "Versions a worker forgot because their journey had deployments.max_versions newer ones.",
    labels: &[],
};

pub const CERFLOW_DEPLOYMENT_VERSION_REQUESTS_LOST_TOTAL: Metric = Metric {
    prom: "cerflow_deployment_version_requests_lost_total",
    otlp: None,
    unit: "{request}",
    kind: Kind::Counter,
    help: "Kafka stage 2: requests of evicted versions a worker could not hold for the next barrier (more than deployments.max_versions versions evicted in one interval).",
    labels: &[],
};

pub const CERFLOW_INVALID_VALUES_TOTAL: Metric = Metric {
    prom: "cerflow_invalid_values_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Request values ignored as not a number of 0 or more; the requests still count.",
    labels: &["journey"],
};

pub const CER_JOURNEY_VALUE_TOTAL: Metric = Metric {
    prom: "cer_journey_value_total",
    otlp: Some("cer.journey.value"),
    unit: "1",
    kind: Kind::Counter,
    help: "Value of the journey's requests, in its currency.",
    labels: &["journey", "currency"],
};

pub const CER_JOURNEY_VALUE_FAILED_TOTAL: Metric = Metric {
    prom: "cer_journey_value_failed_total",
    otlp: Some("cer.journey.value_failed"),
    unit: "1",
    kind: Kind::Counter,
    help: "Value of the journey's failed or incorrect requests.",
    labels: &["journey", "currency"],
};

pub const CER_JOURNEY_VALUE_AT_RISK: Metric = Metric {
    prom: "cer_journey_value_at_risk",
    otlp: Some("cer.journey.value_at_risk"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Value of the failed or incorrect requests in the window.",
    labels: &["journey", COHORTS, "window", "currency"],
};

pub const CER_DEPENDENCY_REQUESTS_TOTAL: Metric = Metric {
    prom: "cer_dependency_requests_total",
    otlp: Some("cer.dependency.requests"),
    unit: "{call}",
    kind: Kind::Counter,
    help: "Calls to the dependency made under the journey's requests, from assembled traces.",
    labels: &["journey", "dependency"],
};

pub const CER_DEPENDENCY_ERRORS_TOTAL: Metric = Metric {
    prom: "cer_dependency_errors_total",
    otlp: Some("cer.dependency.errors"),
    unit: "{call}",
    kind: Kind::Counter,
    help: "Calls to the dependency under the journey whose span status is ERROR.",
    labels: &["journey", "dependency"],
};

pub const CER_DEPENDENCY_DURATION_SECONDS: Metric = Metric {
    prom: "cer_dependency_duration_seconds",
    otlp: Some("cer.dependency.duration"),
    unit: "s",
    kind: Kind::Histogram,
    help: "Duration of the calls to the dependency under the journey.",
    labels: &["journey", "dependency", "le"],
};

pub const CER_DEPENDENCY_AVAILABILITY_RATIO: Metric = Metric {
    prom: "cer_dependency_availability_ratio",
    otlp: Some("cer.dependency.availability"),
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of the calls to the dependency in the window that did not fail.",
    labels: &["journey", "dependency", "window"],
};

pub const CER_DEPENDENCY_LATENCY_SECONDS: Metric = Metric {
    prom: "cer_dependency_latency_seconds",
    otlp: Some("cer.dependency.latency"),
    unit: "s",
    kind: Kind::Gauge,
    help: "Latency quantiles of the calls to the dependency over the window.",
    labels: &["journey", "dependency", "window", "quantile"],
};

pub const CER_JOURNEY_FAILURES_ATTRIBUTED_TOTAL: Metric = Metric {
    prom: "cer_journey_failures_attributed_total",
    otlp: Some("cer.journey.failures_attributed"),
    unit: "{request}",
    kind: Kind::Counter,
    help: "Failed journey requests blamed on each dependency whose call under them failed, or on self.",
    labels: &["journey", "dependency"],
};

pub const CERFLOW_TRACES_EVICTED_TOTAL: Metric = Metric {
    prom: "cerflow_traces_evicted_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Traces completed before traces.wait, by reason (memory: traces.max_bytes; max_spans: traces.max_spans_per_trace).",
    labels: &["reason"],
};

pub const CERFLOW_ORPHAN_SPANS_TOTAL: Metric = Metric {
    prom: "cerflow_orphan_spans_total",
    otlp: None,
    unit: "{span}",
    kind: Kind::Counter,
    help: "Spans of assembled traces in which no journey claimed a span.",
    labels: &[],
};

pub const CERFLOW_TRACE_BUFFER_BYTES: Metric = Metric {
    prom: "cerflow_trace_buffer_bytes",
    otlp: None,
    unit: "By",
    kind: Kind::Gauge,
    help: "Bytes of spans waiting in the trace assembly buffers.",
    labels: &[],
};

pub const CERFLOW_CARDINALITY_OVERFLOW_TOTAL: Metric = Metric {
    prom: "cerflow_cardinality_overflow_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Spans and metric data points recorded into a journey's overflow series (cohort or memory limit reached).",
    labels: &[],
};

pub const CERFLOW_CONFIG_RELOADS_TOTAL: Metric = Metric {
    prom: "cerflow_config_reloads_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Config reloads applied (SIGHUP or a change of the config file).",
    labels: &[],
};

pub const CERFLOW_CONFIG_RELOAD_FAILURES_TOTAL: Metric = Metric {
    prom: "cerflow_config_reload_failures_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "Config reloads refused because the new file was invalid; the old config kept running.",
    labels: &[],
};

pub const CERFLOW_WINDOW_STATE_LIMIT_BYTES: Metric = Metric {
    prom: "cerflow_window_state_limit_bytes",
    otlp: None,
    unit: "By",
    kind: Kind::Gauge,
    help: "limits.max_window_state_bytes.",
    labels: &[],
};

pub const CERFLOW_OTLP_EXPORTS_TOTAL: Metric = Metric {
    prom: "cerflow_otlp_exports_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "OTLP metric pushes that succeeded.",
    labels: &[],
};

pub const CERFLOW_OTLP_EXPORT_FAILURES_TOTAL: Metric = Metric {
    prom: "cerflow_otlp_export_failures_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "OTLP metric pushes that failed.",
    labels: &[],
};

pub const CERFLOW_OTLP_EXPORT_RETRIES_TOTAL: Metric = Metric {
    prom: "cerflow_otlp_export_retries_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "OTLP push attempts made while backing off after a retryable failure.",
    labels: &[],
};

pub const CERFLOW_OTLP_EXPORT_DROPPED_TOTAL: Metric = Metric {
    prom: "cerflow_otlp_export_dropped_total",
    otlp: None,
    unit: "1",
    kind: Kind::Counter,
    help: "OTLP export requests given up on, by reason.",
    labels: &["reason"],
};

pub const CERFLOW_OTLP_EXPORT_QUEUE_DEPTH: Metric = Metric {
    prom: "cerflow_otlp_export_queue_depth",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "OTLP export requests waiting to be sent, the one being sent included.",
    labels: &[],
};

pub const CERFLOW_QUEUE_DEPTH: Metric = Metric {
    prom: "cerflow_queue_depth",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Batches waiting in each worker's queue.",
    labels: &["worker"],
};

pub const CERFLOW_QUEUE_BYTES: Metric = Metric {
    prom: "cerflow_queue_bytes",
    otlp: None,
    unit: "By",
    kind: Kind::Gauge,
    help: "Heap bytes of the batches waiting in each worker's queue (bounded by pipeline.queue_bytes).",
    labels: &["worker"],
};

pub const CERFLOW_QUEUE_CAPACITY: Metric = Metric {
    prom: "cerflow_queue_capacity",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Batches each worker's queue holds.",
    labels: &[],
};

pub const CERFLOW_SERIES: Metric = Metric {
    prom: "cerflow_series",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Journey x cohort series held.",
    labels: &[],
};

pub const CERFLOW_AUTO_JOURNEYS: Metric = Metric {
    prom: "cerflow_auto_journeys",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Journeys derived automatically from entry-point spans.",
    labels: &[],
};

pub const CERFLOW_WINDOW_STATE_BYTES: Metric = Metric {
    prom: "cerflow_window_state_bytes",
    otlp: None,
    unit: "By",
    kind: Kind::Gauge,
    help: "Heap bytes held by window state.",
    labels: &[],
};

pub const CERFLOW_UI_REFUSED_TOTAL: Metric = Metric {
    prom: "cerflow_ui_refused_total",
    otlp: None,
    unit: "{request}",
    kind: Kind::Counter,
    help: "Web view requests refused, by reason: unauthenticated or stream_limit.",
    labels: &["reason"],
};

pub const CERFLOW_UI_STREAM_CLIENTS: Metric = Metric {
    prom: "cerflow_ui_stream_clients",
    otlp: None,
    unit: "1",
    kind: Kind::Gauge,
    help: "Live event streams of the web view open now.",
    labels: &[],
};

pub const CERFLOW_UI_HISTORY_BYTES: Metric = Metric {
    prom: "cerflow_ui_history_bytes",
    otlp: None,
    unit: "By",
    kind: Kind::Gauge,
    help: "Heap bytes held by the web view's hour of score history and budget curves.",
    labels: &[],
};

/// Every metric, in the order of README.md's tables.
pub const ALL: &[Metric] = &[
    CER_JOURNEY_REQUESTS_TOTAL,
    CER_JOURNEY_ERRORS_TOTAL,
    CER_JOURNEY_SLOW_TOTAL,
    CER_JOURNEY_INCORRECT_TOTAL,
    CER_JOURNEY_DURATION_SECONDS,
    CER_SLI_AVAILABILITY_RATIO,
    CER_SLI_LATENCY_RATIO,
    CER_SLI_CORRECTNESS_RATIO,
    CER_SLI_EXPERIENCE_RATIO,
    CER_JOURNEY_WEB_VITAL,
    CER_JOURNEY_FRUSTRATIONS_TOTAL,
    CER_JOURNEY_ABANDONMENT_RATIO,
    CER_JOURNEY_ATTEMPTS_TOTAL,
    CER_SLI_OPERATIONS_RATIO,
    CER_SIGNAL_VALUE,
    CER_SIGNAL_OK,
    CER_JOURNEY_LATENCY_SECONDS,
    CER_JOURNEY_REQUESTS_PER_SECOND,
    CER_JOURNEY_USERS,
    CER_JOURNEY_USERS_AFFECTED,
    CER_JOURNEY_USERS_AFFECTED_RATIO,
    CER_JOURNEY_VALUE_TOTAL,
    CER_JOURNEY_VALUE_FAILED_TOTAL,
    CER_JOURNEY_VALUE_AT_RISK,
    CER_DEPENDENCY_REQUESTS_TOTAL,
    CER_DEPENDENCY_ERRORS_TOTAL,
    CER_DEPENDENCY_DURATION_SECONDS,
    CER_DEPENDENCY_AVAILABILITY_RATIO,
    CER_DEPENDENCY_LATENCY_SECONDS,
    CER_JOURNEY_FAILURES_ATTRIBUTED_TOTAL,
    CER_TELEMETRY_COVERAGE_RATIO,
    CER_JOURNEY_COVERAGE_RATIO,
    CER_DEFINITION_INFO,
    CER_SLO_OBJECTIVE_RATIO,
    CER_SLO_ERROR_BUDGET_REMAINING_RATIO,
    CER_SLO_BURN_RATE,
    CER_SLO_VALUE_LOST,
    CER_SLO_ALERT_ACTIVE,
    CER_JOURNEY_DATA_PRESENT,
    CER_JOURNEY_SCORE,
    CER_COHORT_SCORE,
    CER_SCORE,
    CER_JOURNEY_INCIDENT_OPEN,
    CER_JOURNEY_INCIDENTS_TOTAL,
    CER_JOURNEY_TIME_TO_RECOVERY_SECONDS,
    CER_JOURNEY_TIME_TO_DETECT_SECONDS,
    CER_DEPLOYMENTS_TOTAL,
    CER_DEPLOYMENT_INFO,
    CERFLOW_BUILD_INFO,
    CERFLOW_RECEIVED_SPANS_TOTAL,
    CERFLOW_KAFKA_CONNECTED,
    CERFLOW_KAFKA_PARTITIONS,
    CERFLOW_KAFKA_ERRORS_TOTAL,
    CERFLOW_KAFKA_AGGREGATES_PUBLISHED_TOTAL,
    CERFLOW_KAFKA_TRANSACTIONS_TOTAL,
    CERFLOW_KAFKA_PARTIALS_TOO_LARGE_TOTAL,
    CERFLOW_KAFKA_OWNED_PARTITIONS,
    CERFLOW_KAFKA_PARTIALS_TOTAL,
    CERFLOW_KAFKA_PARTIAL_SUB_BUCKETS_DROPPED_TOTAL,
    CERFLOW_KAFKA_JOURNEYS_NOT_ADOPTED_TOTAL,
    CERFLOW_KAFKA_JOURNEYS_HANDED_OVER_TOTAL,
    CERFLOW_KAFKA_CHANGELOG_RECORDS_TOTAL,
    CERFLOW_KAFKA_STATE_REFUSED_TOTAL,
    CERFLOW_KAFKA_SNAPSHOTS,
    CERFLOW_KAFKA_SNAPSHOTS_DROPPED_TOTAL,
    CERFLOW_REFUSED_SPANS_TOTAL,
    CERFLOW_REFUSED_REQUESTS_TOTAL,
    CERFLOW_PROCESSED_SPANS_TOTAL,
    CERFLOW_UNMATCHED_SPANS_TOTAL,
    CERFLOW_LATE_SPANS_TOTAL,
    CERFLOW_CLAMPED_SPANS_TOTAL,
    CERFLOW_INVALID_SAMPLING_THRESHOLDS_TOTAL,
    CERFLOW_RECEIVED_DATA_POINTS_TOTAL,
    CERFLOW_REFUSED_DATA_POINTS_TOTAL,
    CERFLOW_RECEIVED_LOG_RECORDS_TOTAL,
    CERFLOW_PUBLIC_CLIENTS_OVERFLOW_TOTAL,
    CERFLOW_INVALID_EVENTS_TOTAL,
    CERFLOW_ATTEMPTS_OVERFLOW_TOTAL,
    CERFLOW_VITAL_IDS_OVERFLOW_TOTAL,
    CERFLOW_SERIES_EXPIRED_TOTAL,
    CERFLOW_SNAPSHOTS_INCOMPLETE_TOTAL,
    CERFLOW_CARDINALITY_OVERFLOW_TOTAL,
    CERFLOW_TRACES_EVICTED_TOTAL,
    CERFLOW_ORPHAN_SPANS_TOTAL,
    CERFLOW_TRACE_BUFFER_BYTES,
    CERFLOW_DEPLOYMENT_VERSIONS_EVICTED_TOTAL,
    CERFLOW_DEPLOYMENT_VERSION_REQUESTS_LOST_TOTAL,
    CERFLOW_INVALID_VALUES_TOTAL,
    CERFLOW_CONFIG_RELOADS_TOTAL,
    CERFLOW_CONFIG_RELOAD_FAILURES_TOTAL,
    CERFLOW_WINDOW_STATE_LIMIT_BYTES,
    CERFLOW_OTLP_EXPORTS_TOTAL,
    CERFLOW_OTLP_EXPORT_FAILURES_TOTAL,
    CERFLOW_OTLP_EXPORT_RETRIES_TOTAL,
    CERFLOW_OTLP_EXPORT_DROPPED_TOTAL,
    CERFLOW_OTLP_EXPORT_QUEUE_DEPTH,
    CERFLOW_QUEUE_DEPTH,
    CERFLOW_QUEUE_BYTES,
    CERFLOW_QUEUE_CAPACITY,
    CERFLOW_SERIES,
    CERFLOW_AUTO_JOURNEYS,
    CERFLOW_WINDOW_STATE_BYTES,
    CERFLOW_UI_REFUSED_TOTAL,
    CERFLOW_UI_STREAM_CLIENTS,
    CERFLOW_UI_HISTORY_BYTES,
];
