//! A sparse latency histogram with HDR's bucket layout at 3 significant digits.
//!
//! Values are microseconds. Bins follow HdrHistogram's scheme with 2048 sub-buckets:
//! exact below 2048 µs, then 1024 bins per power of two, so a bin is never wider than
//! 1/1024 of its value. A dense HDR histogram over 1 µs..1 h costs ~90 KB; a window
//! ring holds one histogram per sub-bucket, so bins are stored sparsely instead: a
//! sorted vector of (bin, count) that grows only with the distinct latencies seen.
//! Kept for memory: ~90 KB dense (HDR's own layout) per sub-bucket per window per series.

/// Bin index of a latency in microseconds.
pub fn bin_of(us: u64) -> u32 {
    if us < 2048 {
        return us as u32;
    }
    let shift = 63 - us.leading_zeros() - 10; // us >> shift lands in [1024, 2047]
    1024 * shift + (us >> shift) as u32
}

/// The range of microsecond values a bin holds, inclusive.
pub fn bin_range(bin: u32) -> (u64, u64) {
    if bin < 2048 {
        return (bin as u64, bin as u64);
    }
    let shift = bin / 1024 - 1;
    let mantissa = (bin - 1024 * shift) as u64;
    let low = mantissa << shift;
    (low, low + (1u64 << shift) - 1)
}

/// The value reported for a bin: its middle, so the error is at most half a bin.
pub fn bin_value(bin: u32) -> u64 {
    let (low, high) = bin_range(bin);
    low + (high - low).div_ceil(2)
}

#[derive(Debug, Clone, Default)]
pub struct SparseHist {
    bins: Vec<(u32, u32)>,
}

impl SparseHist {
    pub fn record(&mut self, us: u64) {
        self.record_n(us, 1);
    }

    /// Records `n` values of `us` at once (a bucket of a histogram input).
    pub fn record_n(&mut self, us: u64, n: u32) {
        self.record_bin(bin_of(us), n);
    }

    /// Records `n` values of bin `bin` ([`bin_of`]): a span's latency goes into several
    /// windows' histograms, its bin worked out once.
    #[inline]
    pub fn record_bin(&mut self, bin: u32, n: u32) {
        match self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
            Ok(i) => self.bins[i].1 = self.bins[i].1.saturating_add(n),
            Err(i) => self.bins.insert(i, (bin, n)),
        }
    }

    pub fn clear(&mut self) {
        self.bins.clear();
    }

    /// Takes back one value recorded before: a measurement a later report replaced.
    pub fn remove(&mut self, us: u64) {
        let bin = bin_of(us);
        if let Ok(i) = self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
            if self.bins[i].1 <= 1 {
                self.bins.remove(i);
            } else {
                self.bins[i].1 -= 1;
            }
        }
    }

    pub fn bins(&self) -> &[(u32, u32)] {
        &self.bins
    }

    /// Adds every value of `o`: the histogram of both inputs, whatever the order.
    pub fn merge(&mut self, o: &SparseHist) {
        if self.bins.is_empty() {
            self.bins.clone_from(&o.bins);
            return;
        }
        for &(bin, n) in &o.bins {
            match self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
                Ok(i) => self.bins[i].1 = self.bins[i].1.saturating_add(n),
                Err(i) => self.bins.insert(i, (bin, n)),
            }
        }
    }

    /// Takes back every value of `o` (values recorded before and retracted since); a bin
    /// that reaches 0 goes, and one `self` lacks is left alone.
    pub fn subtract(&mut self, o: &SparseHist) {
        for &(bin, n) in &o.bins {
            if let Ok(i) = self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
                if self.bins[i].1 <= n {
                    self.bins.remove(i);
                } else {
                    self.bins[i].1 -= n;
                }
            }
        }
    }

    /// A histogram from bins read off the wire: ascending, no count 0, no bin past the
    /// layout's last (`bin_of(u64::MAX)`); anything else would corrupt the quantiles.
    pub fn from_bins(bins: Vec<(u32, u32)>) -> Result<SparseHist, String> {
        let last = bin_of(u64::MAX);
        let sorted = bins.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted || bins.iter().any(|&(b, n)| n == 0 || b > last) {
            return Err("histogram bins are not ascending, or hold an empty or unknown bin".into());
        }
        Ok(SparseHist { bins })
    }

    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

/// Quantiles over the union of several histograms. `scratch` is reused between calls.
/// Returns microseconds for each q in `qs`, or `None` when the histograms are empty.
pub fn quantiles<'a>(
    parts: impl Iterator<Item = &'a SparseHist>,
    qs: &[f64],
    scratch: &mut Vec<(u32, u32)>,
    out: &mut Vec<Option<u64>>,
) {
    scratch.clear();
    for p in parts {
        scratch.extend_from_slice(&p.bins);
    }
    out.clear();
    if scratch.is_empty() {
        out.extend(qs.iter().map(|_| None));
        return;
    }
    scratch.sort_unstable_by_key(|&(b, _)| b);
    let total: u64 = scratch.iter().map(|&(_, c)| c as u64).sum();
    for &q in qs {
        // The rank of the q-quantile, as HdrHistogram counts it: at least the first value.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        let mut value = None;
        for &(bin, count) in scratch.iter() {
            seen += count as u64;
            if seen >= rank {
                value = Some(bin_value(bin));
                break;
            }
        }
        out.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_contiguous_and_narrow() {
        let mut prev_high = None;
        for bin in 0..(1024 * 30) {
            let (low, high) = bin_range(bin);
            if let Some(p) = prev_high {
                assert_eq!(low, p + 1, "bin {bin} starts right after the previous one");
            }
            assert_eq!(bin_of(low), bin);
            assert_eq!(bin_of(high), bin);
            if low >= 2048 {
                assert!(
                    (high - low + 1) * 1024 <= low,
                    "bin {bin} is within 1/1024 of its value"
                );
            }
            prev_high = Some(high);
        }
    }

    #[test]
    fn hundred_milliseconds_reads_back_exactly() {
        assert_eq!(bin_value(bin_of(100_000)), 100_000);
        assert_eq!(bin_value(bin_of(250)), 250);
    }

    #[test]
    fn quantiles_agree_with_hdrhistogram() {
        let mut ours = SparseHist::default();
        let mut hdr = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        // A deterministic spread over four decades.
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = 100 + (x >> 33) % 2_000_000;
            ours.record(v);
            hdr.record(v).unwrap();
        }
        let qs = [0.5, 0.9, 0.95, 0.99, 1.0];
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        quantiles(std::iter::once(&ours), &qs, &mut scratch, &mut out);
        for (q, v) in qs.iter().zip(&out) {
            let theirs = hdr.value_at_quantile(*q) as f64;
            let ours = v.unwrap() as f64;
            assert!(
                (ours - theirs).abs() <= theirs / 1000.0,
                "q{q}: ours {ours} vs hdr {theirs}"
            );
        }
    }

    #[test]
    fn empty_histograms_have_no_quantiles() {
        let mut out = Vec::new();
        quantiles(std::iter::empty(), &[0.5], &mut Vec::new(), &mut out);
        assert_eq!(out, vec![None]);
    }
}
