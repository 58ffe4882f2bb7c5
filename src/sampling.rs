//! Sampling-aware counts: the adjusted count a span stands for, read from the
//! OpenTelemetry consistent-probability threshold in its W3C trace state
//! (`ot=th:<hex>`), and the fixed-point unit request counts are kept in.
//!
//! A threshold `th` is the 56-bit rejection threshold, written as 1 to 14 lowercase hex
//! digits with trailing zeros dropped: `th:8` is 0x80000000000000. The span was kept
//! with probability p = (2^56 - th) / 2^56 and stands for 1/p spans.
//!
//! Counts are integers in units of 2^-20 of a request ([`UNIT`]), not f64 sums: the
//! window sub-buckets are merged across workers (and across instances by the Kafka
//! stage), and integer sums are associative, so any order of merging gives the same
//! bits. Power-of-two probabilities (the common case: `th:8`, `th:c`, ...) are exact; any
//! other adjusted count is rounded to the nearest 2^-20 (under 1e-6 of a request).

/// One request in count units: counts of requests, errors, slow and incorrect ones are
/// kept as multiples of 2^-20 of a request.
pub const UNIT: u64 = 1 << 20;

/// The largest adjusted count one span stands for (2^32, p = 2^-32). Smaller
/// probabilities are valid but would let a few spans overflow the 64-bit sums; they are
/// read as this.
pub const MAX_ADJUSTED: u64 = 1 << 32;

/// A count in units as requests, for export.
pub fn to_requests(units: u64) -> f64 {
    units as f64 / UNIT as f64
}

/// Whole requests in count units (metric inputs count whole requests); saturates.
pub fn from_requests(n: u64) -> u64 {
    n.saturating_mul(UNIT)
}

/// Serde for a count in units written as requests: a whole number of requests as an
/// integer (so figures without sampled spans read as before), any other as a float.
/// Reading takes either, so checkpoints and API answers written before counts were in
/// units (whole requests) read back the same.
pub mod as_requests {
    use crate::sampling::{to_requests, UNIT};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(units: &u64, s: S) -> Result<S::Ok, S::Error> {
        if units.is_multiple_of(UNIT) {
            s.serialize_u64(units / UNIT)
        } else {
            s.serialize_f64(to_requests(*units))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let x = f64::deserialize(d)?;
        if !(x.is_finite() && x >= 0.0) {
            return Err(serde::de::Error::custom(format!(
                "a request count must be a finite number of 0 or more, got {x}"
            )));
        }
        // Exact below 2^33 requests: a power-of-two scale keeps every bit.
        Ok((x * UNIT as f64).round() as u64)
    }
}

/// Whole requests for a field that can only hold integers (gRPC's uint64 figures, OTLP
/// histogram counts): the count rounded to the nearest request.
pub fn whole_requests(units: u64) -> u64 {
    units.saturating_add(UNIT / 2) / UNIT
}

/// Why a trace state's `th` could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Empty, longer than 14 digits, or not lowercase hex.
    BadThreshold,
}

/// The adjusted count (in [`UNIT`]s) of a span with this W3C trace state: `Ok(None)`
/// when it carries no `ot` threshold (the span counts as 1), `Err` when the threshold is
/// malformed. No allocation: the state is scanned in place.
pub fn adjusted_count(trace_state: &str) -> Result<Option<u64>, Malformed> {
    if trace_state.is_empty() {
        return Ok(None);
    }
    // W3C list members are comma separated (optional spaces around); ours is `ot=`.
    let Some(ot) = trace_state
        .split(',')
        .map(str::trim)
        .find_map(|m| m.strip_prefix("ot="))
    else {
        return Ok(None);
    };
    let Some(th) = ot.split(';').find_map(|kv| kv.strip_prefix("th:")) else {
        return Ok(None);
    };
    threshold_units(th).map(Some)
}

/// The adjusted count of threshold digits `th` (without `th:`), in units.
fn threshold_units(th: &str) -> Result<u64, Malformed> {
    if th.is_empty() || th.len() > 14 {
        return Err(Malformed::BadThreshold);
    }
    let mut t: u64 = 0;
    for b in th.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return Err(Malformed::BadThreshold),
        };
        t = (t << 4) | u64::from(d);
    }
    // Trailing zeros were dropped: pad to 14 digits (56 bits).
    let t = t << (4 * (14 - th.len()));
    let kept = (1u128 << 56) - u128::from(t);
    // 1/p in units = 2^56 / kept * 2^20, rounded to the nearest unit.
    let units = ((1u128 << 76) + kept / 2) / kept;
    Ok(units.min(u128::from(MAX_ADJUSTED * UNIT)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_give_their_adjusted_counts() {
        // th:0: p = 1, count 1. th:8: 2^56 - 2^55 = 2^55 kept, p 1/2, count 2.
        // th:c: 0xc0.. = 3 * 2^54, kept 2^54, p 1/4, count 4.
        assert_eq!(adjusted_count("ot=th:0"), Ok(Some(UNIT)));
        assert_eq!(adjusted_count("ot=th:8"), Ok(Some(2 * UNIT)));
        assert_eq!(adjusted_count("ot=th:c"), Ok(Some(4 * UNIT)));
        // Among other members and keys, with the W3C optional spaces.
        assert_eq!(
            adjusted_count("vendor=x, ot=rv:1234;th:c;k:v ,other=1"),
            Ok(Some(4 * UNIT))
        );
        // th:e666666666666 pads to 0xe6666666666660; kept = 2^56 - that = 0x199999999999a0
        // = 7,205,759,403,792,800 (p = 0.1000000000000001); 2^76 / kept =
        // 10,485,759.99999999..., nearest unit 10,485,760 = exactly 10 requests.
        assert_eq!(adjusted_count("ot=th:e666666666666"), Ok(Some(10 * UNIT)));
        // th:fd70a3d70a3d71 (p ~= 0.01): kept = 0x28f5c28f5c28f = 720,575,940,379,279;
        // 2^76 / kept = 104,857,600.00000006..., nearest unit 100 requests.
        assert_eq!(adjusted_count("ot=th:fd70a3d70a3d71"), Ok(Some(100 * UNIT)));
        // The smallest probability, 2^-56, is capped at 2^32 requests.
        assert_eq!(
            adjusted_count("ot=th:ffffffffffffff"),
            Ok(Some(MAX_ADJUSTED * UNIT))
        );
    }

    #[test]
    fn no_threshold_is_no_adjustment_and_a_bad_one_is_malformed() {
        for none in ["", "ot=rv:abcdefabcdefab", "vendor=th:8", "ot=xth:8"] {
            assert_eq!(adjusted_count(none), Ok(None), "{none}");
        }
        for bad in [
            "ot=th:",
            "ot=th:C",
            "ot=th:8g",
            "ot=th:123456789abcdef",
            "ot=th:-1",
        ] {
            assert_eq!(adjusted_count(bad), Err(Malformed::BadThreshold), "{bad}");
        }
    }

    #[test]
    fn counts_serialize_as_requests_whole_ones_as_integers() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct C {
            #[serde(with = "as_requests")]
            n: u64,
        }
        let json = |n| serde_json::to_string(&C { n }).unwrap();
        assert_eq!(json(3 * UNIT), r#"{"n":3}"#);
        // 2.5 requests: a half is exact in units.
        assert_eq!(json(5 * UNIT / 2), r#"{"n":2.5}"#);
        let back = |s: &str| serde_json::from_str::<C>(s).map(|c| c.n);
        assert_eq!(back(r#"{"n":3}"#).unwrap(), 3 * UNIT);
        assert_eq!(back(r#"{"n":2.5}"#).unwrap(), 5 * UNIT / 2);
        assert!(back(r#"{"n":-1}"#).is_err());
        // 10.4 requests round to the nearest unit and back to the same bits.
        let u = back(r#"{"n":10.4}"#).unwrap();
        assert_eq!(u, 10_905_190, "10.4 x 2^20 = 10,905,190.4");
        assert_eq!(whole_requests(u), 10);
        assert_eq!(whole_requests(5 * UNIT / 2), 3, "half a request rounds up");
    }

    #[test]
    fn unit_sums_merge_in_any_order_to_the_same_bits() {
        // Three workers' partial sums of th:e666666666666 (10), th:8 (2) and no th (1).
        let parts = [10 * UNIT, 2 * UNIT, UNIT];
        let a = (parts[0] + parts[1]) + parts[2];
        let b = parts[0] + (parts[1] + parts[2]);
        assert_eq!(a, b);
        assert_eq!(to_requests(a), 13.0);
    }
}
