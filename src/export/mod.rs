//! Export: what leaves cerflow. Every exporter formats what the deriver published
//! ([`crate::published::Shared`]) and never touches worker state, so a slow scrape or
//! push cannot hold up ingest, and nothing is derived twice.

pub mod config;

pub mod otlp;
pub mod prometheus;

use crate::catalogue::{self, Metric};
use crate::sli::{JourneyValue, Sli, UserCounts};
use crate::snapshot::SeriesSnap;
use crate::window::exemplars::Kind;

/// A catalogued metric and how to read its value from what the deriver published.
pub type Column<T, V> = (&'static Metric, fn(&T) -> V);

/// The request counters of each journey x cohort series, with the kind of bad request
/// whose exemplars each carries. Both exporters read this one table, so they cannot
/// disagree on which count a metric shows. Counts are in sampling units
/// ([`crate::sampling::UNIT`] per request); each exporter converts them in its own format.
pub const REQUEST_COUNTERS: [(Column<SeriesSnap, u64>, Option<Kind>); 4] = [
    (
        (&catalogue::CER_JOURNEY_REQUESTS_TOTAL, |s| {
            s.totals.requests
        }),
        None,
    ),
    (
        (&catalogue::CER_JOURNEY_ERRORS_TOTAL, |s| s.totals.errors),
        Some(Kind::Failed),
    ),
    (
        (&catalogue::CER_JOURNEY_SLOW_TOTAL, |s| s.totals.slow),
        Some(Kind::Slow),
    ),
    (
        (&catalogue::CER_JOURNEY_INCORRECT_TOTAL, |s| {
            s.totals.incorrect
        }),
        Some(Kind::Incorrect),
    ),
];

/// The SLI ratio gauges of each series and window (operations is the journey's, not a
/// series', and is exported on its own).
pub const SLI_RATIOS: [Column<Sli, Option<f64>>; 4] = [
    (&catalogue::CER_SLI_AVAILABILITY_RATIO, |s| s.availability),
    (&catalogue::CER_SLI_LATENCY_RATIO, |s| s.latency),
    (&catalogue::CER_SLI_CORRECTNESS_RATIO, |s| s.correctness),
    (&catalogue::CER_SLI_EXPERIENCE_RATIO, |s| s.experience),
];

/// The user gauges of each series and journey row, per window.
pub const USER_GAUGES: [Column<UserCounts, Option<f64>>; 3] = [
    (&catalogue::CER_JOURNEY_USERS, |u| Some(u.users as f64)),
    (&catalogue::CER_JOURNEY_USERS_AFFECTED, |u| {
        Some(u.affected as f64)
    }),
    (&catalogue::CER_JOURNEY_USERS_AFFECTED_RATIO, |u| {
        u.affected_ratio()
    }),
];

/// The value counters of each journey with a value rule.
pub const VALUE_COUNTERS: [Column<JourneyValue, f64>; 2] = [
    (&catalogue::CER_JOURNEY_VALUE_TOTAL, |v| v.total),
    (&catalogue::CER_JOURNEY_VALUE_FAILED_TOTAL, |v| v.failed),
];
