//! Match: what a journey's log events say about the customer's side of the screen.
//! A `browser.web_vital` event is a measurement, good when at or under the journey's
//! threshold (the experience SLI); an event named in `frustration_events` is a
//! frustration. Both are read at match time into the record's `event` field
//! ([`crate::span_record::event`]); vitals that cannot be read are reported as invalid.

pub mod config;

use crate::span::{AttrValue, SpanView};
use config::ExperienceConfig;

pub use config::{VITALS, VITAL_COUNT};

/// The index of CLS, the one vital without a unit.
pub const CLS: usize = 2;

/// The event name of a web vital measurement.
pub const WEB_VITAL_EVENT: &str = "browser.web_vital";

/// Why a web vital was ignored; the `reason` label of `cerflow_invalid_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidEvent {
    MissingName,
    UnknownName,
    MissingValue,
    NonNumericValue,
    NegativeValue,
}

pub const INVALID_EVENTS: [InvalidEvent; 5] = [
    InvalidEvent::MissingName,
    InvalidEvent::UnknownName,
    InvalidEvent::MissingValue,
    InvalidEvent::NonNumericValue,
    InvalidEvent::NegativeValue,
];

impl InvalidEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidEvent::MissingName => "missing_vital_name",
            InvalidEvent::UnknownName => "unknown_vital_name",
            InvalidEvent::MissingValue => "missing_vital_value",
            InvalidEvent::NonNumericValue => "non_numeric_vital_value",
            InvalidEvent::NegativeValue => "negative_vital_value",
        }
    }
}

/// What one event of a journey means for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventUse {
    /// A web vital (index into [`VITALS`]) with its value (ms, or unitless for cls).
    Vital {
        vital: usize,
        value: f64,
        good: bool,
    },
    /// The frustration event at this index of the journey's `frustration_events`.
    Frustration(usize),
    /// A web vital that cannot be counted.
    Invalid(InvalidEvent),
    /// Nothing the journey counts (a vital it does not list, another event).
    Nothing,
}

/// Reads an event matched to a journey with experience settings `cfg`.
pub fn read_event<S: SpanView + ?Sized>(cfg: &ExperienceConfig, name: &str, e: &S) -> EventUse {
    if name == WEB_VITAL_EVENT {
        return read_vital(cfg, e);
    }
    match cfg.frustration_events.iter().position(|f| f == name) {
        Some(i) => EventUse::Frustration(i),
        None => EventUse::Nothing,
    }
}

fn read_vital<S: SpanView + ?Sized>(cfg: &ExperienceConfig, e: &S) -> EventUse {
    let vital = match e.span_attr("browser.web_vital.name") {
        Some(AttrValue::Str(n)) => match VITALS.iter().position(|v| *v == n) {
            Some(i) => i,
            None => return EventUse::Invalid(InvalidEvent::UnknownName),
        },
        Some(_) => return EventUse::Invalid(InvalidEvent::UnknownName),
        None => return EventUse::Invalid(InvalidEvent::MissingName),
    };
    let value = match e.span_attr("browser.web_vital.value") {
        None => return EventUse::Invalid(InvalidEvent::MissingValue),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() => x,
            _ => return EventUse::Invalid(InvalidEvent::NonNumericValue),
        },
    };
    if value < 0.0 {
        return EventUse::Invalid(InvalidEvent::NegativeValue);
    }
    match cfg.thresholds[vital] {
        Some(t) => EventUse::Vital {
            vital,
            value,
            good: value <= t,
        },
        None => EventUse::Nothing,
    }
}

/// The histogram unit of a vital: microseconds for the time vitals (given in ms), and
/// thousandths for cls; the histogram keeps 3 significant digits of either.
pub fn to_hist(value: f64) -> u64 {
    (value * 1000.0).round() as u64
}

/// A histogram value back in the vital's export unit: seconds for the time vitals
/// (Prometheus' base unit), unitless for cls.
pub fn from_hist(vital: usize, h: u64) -> f64 {
    if vital == CLS {
        h as f64 / 1e3
    } else {
        h as f64 / 1e6
    }
}
