//! The rules that refuse a metric data point an input would use, each with its reason
//! ([`PointReason`]): the sender hears of it through OTLP partial success
//! (`rejected_data_points`) and cerflow counts it in `cerflow_refused_data_points_total`.
//! Points that feed no input are never refused: their metrics are none of cerflow's
//! business, and OTLP allows NaN gauges and units of any kind.

use super::{Point, PointKind};
use crate::telemetry::{PointReason, POINT_REASONS};

/// Why `p` cannot be used, if it cannot. Checks that need state (the stream limit,
/// the age against the windows) are the caller's.
pub fn check(p: &Point<'_>) -> Result<f64, PointReason> {
    if p.kind == PointKind::Distribution {
        return Err(PointReason::UnsupportedType);
    }
    if p.time_ns == 0 {
        return Err(PointReason::MissingTime);
    }
    let v = p.value.unwrap_or(f64::NAN);
    if !v.is_finite() {
        return Err(PointReason::NotFinite);
    }
    if matches!(
        p.kind,
        PointKind::Sum {
            monotonic: true,
            ..
        }
    ) && v < 0.0
    {
        return Err(PointReason::NegativeCounter);
    }
    if !known_unit(p.unit) {
        return Err(PointReason::UnknownUnit);
    }
    Ok(v)
}

/// What one metrics request came to, over every input that read it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Refused points by [`PointReason`], indexed as [`POINT_REASONS`].
    pub refused: [u64; POINT_REASONS.len()],
    /// The first refusal, for the partial-success message.
    pub first: Option<String>,
}

impl Outcome {
    pub fn rejected(&self) -> u64 {
        self.refused.iter().sum()
    }

    pub fn refuse(&mut self, r: PointReason, metric: &str) {
        self.refused[r as usize] += 1;
        if self.first.is_none() {
            self.first = Some(format!("metric \"{metric}\": {}", r.as_str()));
        }
    }
}

/// UCUM atoms OpenTelemetry's semantic conventions and receivers use.
const ATOMS: &[&str] = &[
    "1", "%", "s", "min", "h", "d", "Hz", "By", "bit", "Cel", "K", "W", "J", "V", "A", "m", "g",
];
/// Metric prefixes, and the binary ones for bytes.
const PREFIXES: &[&str] = &[
    "n", "u", "m", "c", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi",
];

/// Whether `unit` is UCUM as OpenTelemetry writes it: empty (dimensionless), an
/// annotation (`{request}`), a prefixed atom (`ms`, `KiBy`), or a product or quotient of
/// those (`By/s`, `{packet}/s`, `1/s`).
pub fn known_unit(unit: &str) -> bool {
    unit.is_empty()
        || unit
            .split(['/', '.'])
            .all(|term| !term.is_empty() && known_term(term))
}

fn known_term(t: &str) -> bool {
    // A term may end in an annotation: `By{packet}`, or be one.
    let t = match t.find('{') {
        Some(i) if t.ends_with('}') && !t[i + 1..t.len() - 1].contains(['{', '}']) => &t[..i],
        Some(_) => return false,
        None => t,
    };
    if t.is_empty() {
        return true;
    }
    ATOMS.contains(&t)
        || PREFIXES.iter().any(|p| {
            t.strip_prefix(p)
                .is_some_and(|a| a != "1" && a != "%" && ATOMS.contains(&a))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_otel_writes_are_known_and_others_are_not() {
        for u in [
            "",
            "1",
            "%",
            "s",
            "ms",
            "us",
            "By",
            "KiBy",
            "MiBy",
            "By/s",
            "{request}",
            "{packet}/s",
            "1/s",
            "{cpu}",
            "Cel",
            "kBy",
        ] {
            assert!(known_unit(u), "{u}");
        }
        for u in [
            "furlong", "seconds", "s/", "{a", "k%", "x1", "{a}{b}", "Ms1",
        ] {
            assert!(!known_unit(u), "{u}");
        }
    }
}
