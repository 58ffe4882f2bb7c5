//! Exemplars of one journey x cohort series: the trace and span ids of example requests
//! behind its numbers, so a dashboard can link a burning journey to traces.
//!
//! [`Exemplars`] keeps, in fixed-size arrays made once per series, the [`PER_KIND`]
//! latest (by end time) failed, slow and incorrect requests, and per histogram bucket
//! the slowest request among those that ended within `fresh_ns` (the shortest window) of
//! the newest one of that bucket. Recording never allocates. The latest eight of a kind
//! overall hold the latest eight of every window that ends now, so one store serves all
//! windows: a window's exemplars are those ending at or after its start.

use crate::span_record::{flag, Record};

/// Bad requests kept per kind.
pub const PER_KIND: usize = 8;

/// What made a request an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Failed = 0,
    Slow = 1,
    Incorrect = 2,
}

pub const KINDS: [Kind; 3] = [Kind::Failed, Kind::Slow, Kind::Incorrect];

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failed => "failed",
            Kind::Slow => "slow",
            Kind::Incorrect => "incorrect",
        }
    }

    fn flag(self) -> u8 {
        match self {
            Kind::Failed => flag::ERROR,
            Kind::Slow => flag::SLOW,
            Kind::Incorrect => flag::INCORRECT,
        }
    }
}

/// One example request: 40 bytes. `end_ns == 0` marks an empty place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub end_ns: u64,
    pub duration_ns: u64,
}

impl Exemplar {
    pub fn is_empty(&self) -> bool {
        self.end_ns == 0
    }

    fn of(r: &Record) -> Exemplar {
        Exemplar {
            trace_id: r.trace_id,
            span_id: r.span_id,
            // A span ending at the epoch is still an example, not an empty place.
            end_ns: r.end_ns.max(1),
            duration_ns: r.duration_ns,
        }
    }

    /// Lower-case hex, as W3C trace context and the OTLP JSON encoding spell ids.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_hex(&self) -> String {
        hex(&self.span_id)
    }
}

pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// True when the record carries ids an exemplar can point at: W3C calls an all-zero
/// trace id invalid, and records made without a span (dependency calls) have none.
pub fn has_ids(r: &Record) -> bool {
    r.trace_id != [0; 16]
}

/// The examples of one series. Boxed in the series and made at its first request with
/// ids, so a series pays 8 bytes until then.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplars {
    bad: [[Exemplar; PER_KIND]; 3],
    /// One per histogram bucket, the last being `+Inf`.
    buckets: Box<[Exemplar]>,
    /// How long a bucket's slowest request stays its example once newer ones come.
    fresh_ns: u64,
}

impl Exemplars {
    pub fn new(n_buckets: usize, fresh_ns: u64) -> Exemplars {
        Exemplars {
            bad: [[Exemplar::default(); PER_KIND]; 3],
            buckets: vec![Exemplar::default(); n_buckets].into_boxed_slice(),
            fresh_ns,
        }
    }

    /// Bytes on the heap for a series' box: the struct and its bucket slice.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Exemplars>() + std::mem::size_of_val(&*self.buckets)
    }

    /// Keeps `r` where it is an example; `bucket` is its histogram bucket.
    pub fn record(&mut self, r: &Record, bucket: usize) {
        let e = Exemplar::of(r);
        if r.flags & flag::BAD != 0 {
            for k in KINDS {
                if r.flags & k.flag() != 0 {
                    keep_latest(&mut self.bad[k as usize], e);
                }
            }
        }
        if let Some(b) = self.buckets.get_mut(bucket) {
            keep_slowest(b, e, self.fresh_ns);
        }
    }

    /// Adds another shard's examples of the same series (the journey's overflow series,
    /// which every worker keeps its own part of).
    pub fn merge(&mut self, o: &Exemplars) {
        for (mine, theirs) in self.bad.iter_mut().zip(&o.bad) {
            for e in theirs.iter().filter(|e| !e.is_empty()) {
                keep_latest(mine, *e);
            }
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            if !theirs.is_empty() {
                keep_slowest(mine, *theirs, self.fresh_ns);
            }
        }
    }

    /// The kept requests of `kind` that ended at or after `since_ns`, newest first.
    pub fn bad(&self, kind: Kind, since_ns: u64) -> impl Iterator<Item = &Exemplar> {
        let mut order: [usize; PER_KIND] = std::array::from_fn(|i| i);
        let list = &self.bad[kind as usize];
        order.sort_by(|&a, &b| list[b].end_ns.cmp(&list[a].end_ns));
        order
            .into_iter()
            .map(move |i| &list[i])
            .filter(move |e| !e.is_empty() && e.end_ns >= since_ns)
    }

    /// The newest kept request of `kind`.
    pub fn latest(&self, kind: Kind) -> Option<&Exemplar> {
        self.bad(kind, 0).next()
    }

    /// The example of histogram bucket `i`, if one is kept.
    pub fn bucket(&self, i: usize) -> Option<&Exemplar> {
        self.buckets.get(i).filter(|e| !e.is_empty())
    }
}

/// Replaces the oldest place of `list` when `e` ended at or after it.
fn keep_latest(list: &mut [Exemplar; PER_KIND], e: Exemplar) {
    let mut oldest = 0;
    for (i, x) in list.iter().enumerate() {
        if x.end_ns < list[oldest].end_ns {
            oldest = i;
        }
    }
    if e.end_ns >= list[oldest].end_ns {
        list[oldest] = e;
    }
}

/// Keeps the slower of the two, unless the kept one ended more than `fresh_ns` before
/// `e`: then `e` takes its place, so a bucket's example does not stay one old request.
fn keep_slowest(kept: &mut Exemplar, e: Exemplar, fresh_ns: u64) {
    if kept.is_empty()
        || e.duration_ns >= kept.duration_ns
        || kept.end_ns.saturating_add(fresh_ns) < e.end_ns
    {
        *kept = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rec(n: u8, end_s: u64, duration_ms: u64, flags: u8) -> Record {
        Record {
            hash: 0,
            journey: 0,
            first_value: 0,
            n_values: 0,
            flags,
            end_ns: end_s * S,
            duration_ns: duration_ms * 1_000_000,
            user: 0,
            value: 0.0,
            trace_id: [n; 16],
            span_id: [n; 8],
            event: 0,
            has_version: false,
            weight: crate::sampling::UNIT,
        }
    }

    fn ids(it: impl Iterator<Item = Exemplar>) -> Vec<u8> {
        it.map(|e| e.span_id[0]).collect()
    }

    #[test]
    fn the_eight_latest_failures_are_kept_newest_first() {
        let mut x = Exemplars::new(1, 60 * S);
        // Requests 1..=12 end at 100+n s; 5 arrives last though it ended first.
        for n in (1..=12u8).filter(|n| *n != 5) {
            x.record(&rec(n, 100 + u64::from(n), 10, flag::ERROR), 0);
        }
        x.record(&rec(5, 105, 10, flag::ERROR), 0);
        // The eight latest by end time are 12 down to 5; 4..1 were pushed out.
        assert_eq!(
            ids(x.bad(Kind::Failed, 0).copied()),
            vec![12, 11, 10, 9, 8, 7, 6, 5]
        );
        // A window starting at 109 s sees the four that ended at 109..=112 s.
        assert_eq!(
            ids(x.bad(Kind::Failed, 109 * S).copied()),
            vec![12, 11, 10, 9]
        );
        assert_eq!(x.bad(Kind::Slow, 0).count(), 0);
        // A request older than every kept one does not displace any.
        x.record(&rec(99, 50, 10, flag::ERROR), 0);
        assert_eq!(x.latest(Kind::Failed).map(|e| e.span_id[0]), Some(12));
        assert!(x.bad(Kind::Failed, 0).all(|e| e.span_id[0] != 99));
    }

    #[test]
    fn a_request_both_slow_and_failed_is_an_example_of_each() {
        let mut x = Exemplars::new(1, 60 * S);
        x.record(&rec(1, 100, 900, flag::ERROR | flag::SLOW), 0);
        x.record(&rec(2, 101, 10, flag::INCORRECT), 0);
        x.record(&rec(3, 102, 10, 0), 0);
        assert_eq!(ids(x.bad(Kind::Failed, 0).copied()), vec![1]);
        assert_eq!(ids(x.bad(Kind::Slow, 0).copied()), vec![1]);
        assert_eq!(ids(x.bad(Kind::Incorrect, 0).copied()), vec![2]);
    }

    #[test]
    fn a_bucket_keeps_its_slowest_request_until_it_is_older_than_the_freshness() {
        let mut x = Exemplars::new(2, 60 * S);
        x.record(&rec(1, 100, 200, 0), 1);
        x.record(&rec(2, 110, 150, 0), 1); // faster: 1 stays
        assert_eq!(x.bucket(1).map(|e| e.span_id[0]), Some(1));
        x.record(&rec(3, 120, 250, 0), 1); // slower: 3 takes over
        assert_eq!(x.bucket(1).map(|e| e.span_id[0]), Some(3));
        // 3 ended at 120 s; a faster request ending at 181 s is more than 60 s newer.
        x.record(&rec(4, 181, 120, 0), 1);
        assert_eq!(x.bucket(1).map(|e| e.span_id[0]), Some(4));
        assert!(x.bucket(0).is_none());
        assert!(x.bucket(2).is_none(), "out of range");
    }

    #[test]
    fn shards_merge_to_the_latest_eight_and_the_slowest_per_bucket() {
        let (mut a, mut b) = (Exemplars::new(1, 60 * S), Exemplars::new(1, 60 * S));
        // Odd requests on one shard, even on the other: 1..=10 ending at 100+n s.
        for n in 1..=10u8 {
            let x = if n % 2 == 1 { &mut a } else { &mut b };
            x.record(&rec(n, 100 + u64::from(n), u64::from(n), flag::SLOW), 0);
        }
        a.merge(&b);
        assert_eq!(
            ids(a.bad(Kind::Slow, 0).copied()),
            vec![10, 9, 8, 7, 6, 5, 4, 3]
        );
        // The slowest of the bucket is 10 (10 ms).
        assert_eq!(a.bucket(0).map(|e| e.span_id[0]), Some(10));
    }

    #[test]
    fn sizes_are_fixed() {
        assert_eq!(std::mem::size_of::<Exemplar>(), 40);
        // 3 kinds x 8 x 40 = 960, the bucket slice pointer 16, fresh_ns 8.
        assert_eq!(std::mem::size_of::<Exemplars>(), 984);
        // 12 buckets: 984 + 12 x 40.
        assert_eq!(Exemplars::new(12, S).heap_bytes(), 1_464);
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
    }
}
