//! A histogram point (explicit bounds or exponential) checked by the OTLP rules and laid
//! onto one journey: its count, its slow count against the journey's latency threshold,
//! its sum in seconds, and its counts in cerflow's own histogram buckets.
//!
//! A bucket is slow when its upper bound is above the threshold. When the threshold is
//! one of the point's bounds this is exact (the bucket `(t, next]` and above are slow);
//! otherwise the bucket holding the threshold counts as slow, an upper bound on slow
//! requests. A bucket goes to the first cerflow bucket whose bound is at or above its
//! upper bound, so latency quantiles from it are never below the truth by more than
//! the two layouts' widths (see README, "Metrics as request counts").

use super::Dist;
use crate::telemetry::PointReason;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

/// Where [`lay`] writes each figure in its output.
pub const COUNT: usize = 0;
pub const SLOW: usize = 1;
pub const SUM_S: usize = 2;
/// The first of the cerflow buckets (bounds, then +Inf).
pub const BUCKETS: usize = 3;

/// Nanoseconds per unit of a duration histogram: `s` and `ms` (and `us`, `ns`).
pub fn unit_ns(unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1e9),
        "ms" => Some(1e6),
        "us" => Some(1e3),
        "ns" => Some(1.0),
        _ => None,
    }
}

/// Exponential scales OTLP allows.
const SCALES: std::ops::RangeInclusive<i32> = -10..=20;

/// Why the point cannot be used, if it cannot; its unit's nanoseconds otherwise.
pub fn check(d: Dist<'_>, unit: &str) -> Result<f64, PointReason> {
    let ns = unit_ns(unit).ok_or(PointReason::UnknownUnit)?;
    let sum = match d {
        Dist::Histogram(p, _) => {
            if !p.bucket_counts.is_empty() {
                if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                    return Err(PointReason::BadBuckets);
                }
                let total = p
                    .bucket_counts
                    .iter()
                    .try_fold(0u64, |a, &c| a.checked_add(c));
                if total != Some(p.count) {
                    return Err(PointReason::BadBuckets);
                }
            }
            let increasing = p.explicit_bounds.windows(2).all(|w| w[0] < w[1]);
            if !increasing || p.explicit_bounds.iter().any(|b| !b.is_finite()) {
                return Err(PointReason::BadBuckets);
            }
            p.sum
        }
        Dist::Exponential(p, _) => {
            // A NaN threshold fails the range test too.
            if !SCALES.contains(&p.scale) || !(0.0..=f64::MAX).contains(&p.zero_threshold) {
                return Err(PointReason::BadBuckets);
            }
            let side = |b: &Option<Buckets>| -> Option<u64> {
                b.as_ref().map_or(Some(0), |b| {
                    b.bucket_counts
                        .iter()
                        .try_fold(0u64, |a, &c| a.checked_add(c))
                })
            };
            let total = side(&p.positive)
                .zip(side(&p.negative))
                .and_then(|(a, b)| a.checked_add(b)?.checked_add(p.zero_count));
            if total != Some(p.count) {
                return Err(PointReason::BadBuckets);
            }
            p.sum
        }
    };
    if let Some(s) = sum {
        if !s.is_finite() {
            return Err(PointReason::NotFinite);
        }
        if s < 0.0 {
            // Durations are not negative: a negative sum is a broken instrument.
            return Err(PointReason::NegativeCounter);
        }
    }
    Ok(ns)
}

/// Lays a checked point onto `threshold_ns` and `bounds_ns` (cerflow's histogram bounds):
/// `out` has [`BUCKETS`] + `bounds_ns.len()` + 1 entries and is overwritten.
pub fn lay(d: Dist<'_>, unit_ns: f64, threshold_ns: u64, bounds_ns: &[u64], out: &mut [f64]) {
    out.fill(0.0);
    let mut put = |upper_ns: f64, n: u64| {
        if n == 0 {
            return;
        }
        let n = n as f64;
        if upper_ns > threshold_ns as f64 {
            out[SLOW] += n;
        }
        let b = bounds_ns.partition_point(|&b| (b as f64) < upper_ns);
        out[BUCKETS + b] += n;
    };
    match d {
        Dist::Histogram(p, _) => {
            if p.bucket_counts.is_empty() {
                // Count and sum only: every request is in the one +Inf bucket.
                put(f64::INFINITY, p.count);
            }
            for (i, &n) in p.bucket_counts.iter().enumerate() {
                let upper = p.explicit_bounds.get(i).map_or(f64::INFINITY, |b| {
                    // A bound in seconds times 1e9 is rounded, so 0.25 s is 250 ms exactly.
                    (b * unit_ns).round()
                });
                put(upper, n);
            }
            out[COUNT] = p.count as f64;
            out[SUM_S] = p.sum.unwrap_or(0.0) * unit_ns / 1e9;
        }
        Dist::Exponential(p, _) => {
            // Zero and negative buckets hold no time at all: the fastest bucket.
            let zero: u64 = p.zero_count
                + p.negative
                    .as_ref()
                    .map_or(0, |b| b.bucket_counts.iter().sum::<u64>());
            put((p.zero_threshold * unit_ns).round(), zero);
            if let Some(b) = &p.positive {
                let step = (-(p.scale as f64)).exp2();
                for (i, &n) in b.bucket_counts.iter().enumerate() {
                    // Bucket `index` holds (base^index, base^(index+1)], base = 2^(2^-scale).
                    let index = b.offset as f64 + i as f64;
                    let upper = ((index + 1.0) * step).exp2() * unit_ns;
                    put(upper.round(), n);
                }
            }
            out[COUNT] = p.count as f64;
            out[SUM_S] = p.sum.unwrap_or(0.0) * unit_ns / 1e9;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogramDataPoint, HistogramDataPoint,
    };

    const MS: u64 = 1_000_000;

    fn explicit(bounds: &[f64], counts: &[u64], sum: f64) -> HistogramDataPoint {
        HistogramDataPoint {
            time_unix_nano: 1,
            count: counts.iter().sum(),
            sum: Some(sum),
            bucket_counts: counts.to_vec(),
            explicit_bounds: bounds.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn slow_is_exact_on_a_bound_and_takes_the_holding_bucket_otherwise() {
        // Buckets (..0.1], (0.1..0.25], (0.25..0.5], (0.5..]: 5, 3, 2, 1 requests.
        let p = explicit(&[0.1, 0.25, 0.5], &[5, 3, 2, 1], 2.0);
        let d = Dist::Histogram(&p, false);
        let ns = check(d, "s").unwrap();
        // cerflow buckets 100 ms, 1 s (+Inf).
        let bounds = [100 * MS, 1000 * MS];
        let mut out = [0.0; BUCKETS + 3];
        // 250 ms is a bound: slow = 2 + 1. cerflow's 100 ms bucket takes the first 5,
        // its 1 s bucket the 3 and 2 (bounds 0.25 and 0.5 are within 1 s), +Inf the last 1.
        lay(d, ns, 250 * MS, &bounds, &mut out);
        assert_eq!(out, [11.0, 3.0, 2.0, 5.0, 5.0, 1.0]);
        // 300 ms is inside (0.25, 0.5]: that bucket counts as slow, 2 + 1 again; 200 ms
        // is inside (0.1, 0.25]: 3 + 2 + 1.
        lay(d, ns, 300 * MS, &bounds, &mut out);
        assert_eq!(out[SLOW], 3.0);
        lay(d, ns, 200 * MS, &bounds, &mut out);
        assert_eq!(out[SLOW], 6.0);
        // The same histogram in ms gives the same figures.
        let p = explicit(&[100.0, 250.0, 500.0], &[5, 3, 2, 1], 2000.0);
        let d = Dist::Histogram(&p, false);
        lay(d, check(d, "ms").unwrap(), 250 * MS, &bounds, &mut out);
        assert_eq!(out, [11.0, 3.0, 2.0, 5.0, 5.0, 1.0]);
    }

    #[test]
    fn exponential_buckets_are_powers_of_the_base() {
        // Scale 0: base 2; offset -3 puts bucket 0 at (0.125, 0.25] s, then (0.25, 0.5].
        let p = ExponentialHistogramDataPoint {
            time_unix_nano: 1,
            count: 6,
            sum: Some(1.5),
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: -3,
                bucket_counts: vec![3, 2],
            }),
            ..Default::default()
        };
        let d = Dist::Exponential(&p, false);
        let bounds = [250 * MS];
        let mut out = [0.0; BUCKETS + 2];
        lay(d, check(d, "s").unwrap(), 250 * MS, &bounds, &mut out);
        // Slow: the (0.25, 0.5] bucket only. cerflow's 250 ms bucket: zero + 3.
        assert_eq!(out, [6.0, 2.0, 1.5, 4.0, 2.0]);
    }

    #[test]
    fn malformed_points_are_refused_by_the_otlp_rules() {
        let mut p = explicit(&[0.1, 0.25], &[1, 2, 3], 1.0);
        p.count = 5; // the buckets add up to 6
        assert_eq!(
            check(Dist::Histogram(&p, false), "s"),
            Err(PointReason::BadBuckets)
        );
        let p = explicit(&[0.25, 0.1], &[1, 2, 3], 1.0);
        assert_eq!(
            check(Dist::Histogram(&p, false), "s"),
            Err(PointReason::BadBuckets)
        );
        let p = explicit(&[0.1], &[1, 2, 3], 1.0);
        assert_eq!(
            check(Dist::Histogram(&p, false), "s"),
            Err(PointReason::BadBuckets)
        );
        let p = explicit(&[0.1], &[1, 2], f64::NAN);
        assert_eq!(
            check(Dist::Histogram(&p, false), "s"),
            Err(PointReason::NotFinite)
        );
        let p = explicit(&[0.1], &[1, 2], -1.0);
        assert_eq!(
            check(Dist::Histogram(&p, false), "s"),
            Err(PointReason::NegativeCounter)
        );
        let p = explicit(&[0.1], &[1, 2], 1.0);
        assert_eq!(
            check(Dist::Histogram(&p, false), "By"),
            Err(PointReason::UnknownUnit)
        );
        let e = ExponentialHistogramDataPoint {
            count: 2,
            zero_count: 1,
            ..Default::default()
        };
        assert_eq!(
            check(Dist::Exponential(&e, false), "ms"),
            Err(PointReason::BadBuckets)
        );
    }
}
