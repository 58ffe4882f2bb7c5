//! Record: sliding windows on event time, as rings of sub-buckets.
//!
//! A window of length W with N sub-buckets keeps N slots of W/N each, addressed by
//! `end_time / (W/N)`. A slot remembers which bucket index it holds, so stale slots
//! are recognised and reset lazily instead of by a timer. A window's figures at time
//! `now` are the sum of the slots whose index lies in the last N buckets up to `now`:
//! it covers between W - W/N and W of event time and slides one sub-bucket at a time.

pub mod config;
pub mod exemplars;

use crate::distinct::Distinct;
use crate::experience::{from_hist, to_hist, VITAL_COUNT};
use crate::hist::{self, SparseHist};
use crate::sampling;
use crate::span_record::{event, flag, Record};
use exemplars::Exemplars;

/// What one span adds to each request figure of a [`Counts`]: worked out once for the
/// totals and every window a span goes into, not once for each (~6 instructions a
/// `Counts` a span).
#[derive(Debug, Clone, Copy)]
pub struct SpanWeight {
    requests: u64,
    errors: u64,
    slow: u64,
    incorrect: u64,
}

impl SpanWeight {
    #[inline]
    pub fn new(flags: u8, weight: u64) -> SpanWeight {
        let w = |on: bool| if on { weight } else { 0 };
        SpanWeight {
            requests: weight,
            errors: w(flags & flag::ERROR != 0),
            slow: w(flags & flag::SLOW != 0),
            incorrect: w(flags & flag::INCORRECT != 0),
        }
    }
}

/// Request counts are in [`sampling::UNIT`]s (2^-20 of a request), so a sampled span
/// adds its adjusted count and sums stay integers that merge associatively; vitals are
/// whole log events (logs carry no sampling threshold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    #[serde(with = "sampling::as_requests")]
    pub requests: u64,
    #[serde(with = "sampling::as_requests")]
    pub errors: u64,
    #[serde(with = "sampling::as_requests")]
    pub slow: u64,
    #[serde(with = "sampling::as_requests")]
    pub incorrect: u64,
    /// Web vital measurements, and those over their threshold: the experience SLI's
    /// events (log events, not requests).
    pub vitals: u64,
    pub vitals_bad: u64,
}

impl Counts {
    /// Whole requests (tests, metric inputs): each figure times [`sampling::UNIT`].
    pub fn whole(requests: u64, errors: u64, slow: u64, incorrect: u64) -> Counts {
        Counts {
            requests: sampling::from_requests(requests),
            errors: sampling::from_requests(errors),
            slow: sampling::from_requests(slow),
            incorrect: sampling::from_requests(incorrect),
            ..Counts::default()
        }
    }

    /// Adds one span of `weight` units. Sums saturate: a saturating sum of unsigned
    /// parts is still the same in any order.
    pub fn add_weighted(&mut self, flags: u8, weight: u64) {
        self.add_span(&SpanWeight::new(flags, weight));
    }

    /// Adds one span whose figures [`SpanWeight::new`] worked out, as
    /// [`Counts::add_weighted`] does.
    #[inline]
    pub fn add_span(&mut self, w: &SpanWeight) {
        self.requests = self.requests.saturating_add(w.requests);
        self.errors = self.errors.saturating_add(w.errors);
        self.slow = self.slow.saturating_add(w.slow);
        self.incorrect = self.incorrect.saturating_add(w.incorrect);
    }

    pub fn add(&mut self, o: &Counts) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.slow = self.slow.saturating_add(o.slow);
        self.incorrect = self.incorrect.saturating_add(o.incorrect);
        self.vitals += o.vitals;
        self.vitals_bad += o.vitals_bad;
    }
}

impl Reset for Counts {
    fn reset(&mut self) {
        *self = Counts::default();
    }
}

impl Counts {
    pub fn sub(&self, o: &Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(o.requests),
            errors: self.errors.saturating_sub(o.errors),
            slow: self.slow.saturating_sub(o.slow),
            incorrect: self.incorrect.saturating_sub(o.incorrect),
            vitals: self.vitals.saturating_sub(o.vitals),
            vitals_bad: self.vitals_bad.saturating_sub(o.vitals_bad),
        }
    }
}

const EMPTY: u64 = u64::MAX;

#[derive(Debug, Clone)]
pub struct Ring<T> {
    sub_ns: u64,
    idx: Box<[u64]>,
    slots: Box<[T]>,
    /// The slot [`Ring::slot_mut`] returned last: events in `[hot_lo, hot_lo + sub_ns)`
    /// go to slot `hot_i` while `now_ns < hot_until`. Spans end close to now, so nearly
    /// every event lands there, and this saves the three 64-bit divisions (tens of
    /// cycles each) of finding a slot. `hot_until == 0` when there is none.
    hot_lo: u64,
    hot_until: u64,
    hot_i: usize,
}

pub trait Reset {
    fn reset(&mut self);
}

impl<T: Default + Clone + Reset> Ring<T> {
    pub fn new(window_ns: u64, sub_buckets: u32) -> Ring<T> {
        let n = sub_buckets.max(1) as usize;
        Ring {
            sub_ns: (window_ns / n as u64).max(1),
            idx: vec![EMPTY; n].into_boxed_slice(),
            slots: vec![T::default(); n].into_boxed_slice(),
            hot_lo: 0,
            hot_until: 0,
            hot_i: 0,
        }
    }

    /// The slot for an event at `t_ns`, or `None` when it falls before the window at `now_ns`.
    /// Always inlined: a few compares on the hint, and as a call (which codegen-unit
    /// splitting made it once) it cost ~30 instructions a ring a span.
    #[inline(always)]
    pub fn slot_mut(&mut self, t_ns: u64, now_ns: u64) -> Option<&mut T> {
        // The slot of the last call holds bucket `hot_lo / sub_ns` (nothing but this
        // function reassigns a slot, and `import`/`drain` drop the hint); that bucket
        // is in the window while `now_b < b + n`, i.e. `now_ns < (b + n) * sub_ns`.
        if t_ns.wrapping_sub(self.hot_lo) < self.sub_ns
            && now_ns < self.hot_until
            && self.hot_i < self.slots.len()
        {
            return self.slots.get_mut(self.hot_i);
        }
        self.find_slot(t_ns, now_ns)
    }

    fn find_slot(&mut self, t_ns: u64, now_ns: u64) -> Option<&mut T> {
        let n = self.slots.len() as u64;
        let b = t_ns / self.sub_ns;
        let now_b = now_ns / self.sub_ns;
        if b + n <= now_b {
            return None;
        }
        let i = (b % n) as usize;
        let held = self.idx[i];
        if held != b {
            if held != EMPTY && held > b {
                // The slot already holds a later bucket: `b` has slid out of the ring.
                return None;
            }
            self.idx[i] = b;
            self.slots[i].reset();
        }
        // `b * sub_ns <= t_ns` cannot overflow; a bucket at the very end of the range
        // (its end or its window's end past u64::MAX) gets no hint.
        let lo = b * self.sub_ns;
        let until = b.checked_add(n).and_then(|e| e.checked_mul(self.sub_ns));
        match (lo.checked_add(self.sub_ns), until) {
            (Some(_), Some(until)) => {
                self.hot_lo = lo;
                self.hot_until = until;
                self.hot_i = i;
            }
            _ => self.hot_until = 0,
        }
        Some(&mut self.slots[i])
    }

    /// The slots that make up the window at `now_ns`.
    pub fn live(&self, now_ns: u64) -> impl Iterator<Item = &T> {
        let n = self.slots.len() as u64;
        let now_b = now_ns / self.sub_ns;
        self.idx
            .iter()
            .zip(self.slots.iter())
            .filter(move |(&b, _)| b != EMPTY && b <= now_b && b + n > now_b)
            .map(|(_, s)| s)
    }

    /// [`Ring::live`] with the start time (ns) of each slot's sub-bucket.
    pub fn live_since(&self, now_ns: u64) -> impl Iterator<Item = (u64, &T)> {
        let n = self.slots.len() as u64;
        let now_b = now_ns / self.sub_ns;
        let sub = self.sub_ns;
        self.idx
            .iter()
            .zip(self.slots.iter())
            .filter(move |(&b, _)| b != EMPTY && b <= now_b && b + n > now_b)
            .map(move |(&b, s)| (b * sub, s))
    }

    pub fn sub_ns(&self) -> u64 {
        self.sub_ns
    }

    /// The window the ring covers: its sub-bucket length times its sub-buckets.
    pub fn window_ns(&self) -> u64 {
        self.sub_ns * self.slots.len() as u64
    }

    /// The start (ns) of the oldest sub-bucket of the window at `now_ns`.
    pub fn start_ns(&self, now_ns: u64) -> u64 {
        let n = self.slots.len() as u64;
        (now_ns / self.sub_ns + 1).saturating_sub(n) * self.sub_ns
    }

    /// The slots in use with the bucket index each holds, for checkpoints.
    pub fn export(&self) -> Vec<(u64, T)> {
        self.idx
            .iter()
            .zip(self.slots.iter())
            .filter(|(b, _)| **b != EMPTY)
            .map(|(b, s)| (*b, s.clone()))
            .collect()
    }

    /// Restores slots saved by [`Ring::export`] from a ring of the same shape.
    pub fn import(&mut self, entries: Vec<(u64, T)>) {
        self.hot_until = 0;
        let n = self.slots.len() as u64;
        for (b, v) in entries {
            let i = (b % n) as usize;
            if self.idx[i] == EMPTY || self.idx[i] < b {
                self.idx[i] = b;
                self.slots[i] = v;
            }
        }
    }

    /// Takes the slots in use with the start (ns) of each one's sub-bucket and leaves
    /// the ring empty: what a Kafka stage-1 instance publishes as its partials.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        let sub = self.sub_ns;
        self.hot_until = 0;
        let mut out = Vec::new();
        for (b, s) in self.idx.iter_mut().zip(self.slots.iter_mut()) {
            if *b != EMPTY {
                out.push((*b * sub, std::mem::take(s)));
                *b = EMPTY;
            }
        }
        out
    }

    /// True when no slot holds data for the window at `now_ns`.
    pub fn is_idle(&self, now_ns: u64) -> bool {
        self.live(now_ns).next().is_none()
    }
}

impl Ring<Slot> {
    /// The window's counts at `now_ns`, summed over its live slots, and the histograms of
    /// the slots that have any: what a dependency window is made of, on one instance and
    /// at an owner alike.
    pub fn live_counts_and_hists(&self, now_ns: u64) -> (Counts, Vec<SparseHist>) {
        let mut counts = Counts::default();
        let mut hists = Vec::new();
        for slot in self.live(now_ns) {
            counts.add(&slot.counts);
            if !slot.hist.bins().is_empty() {
                hists.push(slot.hist.clone());
            }
        }
        (counts, hists)
    }
}

/// One sub-bucket of a journey x cohort series.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub counts: Counts,
    pub hist: SparseHist,
    /// Users and value at risk, boxed and made on the slot's first user or valued
    /// failure: a series whose spans name no user and carry no value (users.keys empty,
    /// no journey value) pays 8 bytes a slot for them, not 72.
    pub customers: Option<Box<Customers>>,
    /// Web vitals, made on the first one: most journeys have none.
    pub vitals: Option<Box<VitalSlot>>,
}

/// The customer figures of one sub-bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Customers {
    pub users: Users,
    /// Value of the failed or incorrect requests.
    pub value_at_risk: f64,
}

impl Reset for Slot {
    fn reset(&mut self) {
        self.counts = Counts::default();
        self.hist.clear();
        // The box stays for the next bucket: a series that names users keeps naming them.
        if let Some(c) = self.customers.as_deref_mut() {
            c.users.clear();
            c.value_at_risk = 0.0;
        }
        self.vitals = None;
    }
}

impl Slot {
    pub fn heap_bytes(&self) -> usize {
        self.hist.heap_bytes()
            + self.customers.as_deref().map_or(0, |c| {
                std::mem::size_of::<Customers>() + c.users.heap_bytes()
            })
            + self.vitals.as_deref().map_or(0, |v| {
                std::mem::size_of::<VitalSlot>()
                    + v.hist.iter().map(|h| h.heap_bytes()).sum::<usize>()
            })
    }
}

/// Web vital measurements of one sub-bucket, per vital (in `VITALS` order).
#[derive(Debug, Clone, Default)]
pub struct VitalSlot {
    pub good: [u64; VITAL_COUNT],
    pub all: [u64; VITAL_COUNT],
    /// Values in [`to_hist`] units.
    pub hist: [SparseHist; VITAL_COUNT],
}

/// The experience figures of one window: the SLI's counts and each vital's quantiles
/// (export units: seconds, unitless for cls), in [`VITAL_QUANTILES`] order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VitalStats {
    pub good: u64,
    pub all: u64,
    pub quantiles: [Vec<Option<f64>>; VITAL_COUNT],
}

/// The quantiles each vital reports: 0.75 is the one the web vitals are judged at.
pub const VITAL_QUANTILES: [f64; 3] = [0.5, 0.75, 0.95];

/// Distinct users with a request, and those with at least one bad one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    pub all: Distinct,
    pub affected: Distinct,
}

impl Users {
    pub fn record(&mut self, user: u64, flags: u8) {
        self.all.insert(user);
        if flags & (flag::BAD | flag::FRUSTRATED) != 0 {
            self.affected.insert(user);
        }
    }

    /// The union: a user in both counts once.
    pub fn merge(&mut self, o: &Users) {
        self.all.merge(&o.all);
        self.affected.merge(&o.affected);
    }

    pub fn clear(&mut self) {
        self.all.clear();
        self.affected.clear();
    }

    pub fn heap_bytes(&self) -> usize {
        self.all.heap_bytes() + self.affected.heap_bytes()
    }
}

/// A count per sub-bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally(pub u64);

impl Reset for Tally {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Failed journey requests blamed on one dependency (or on the journey itself): since
/// the series began, and per window sub-bucket by the request's end time.
#[derive(Debug, Clone)]
pub struct Blame {
    pub total: u64,
    pub windows: Vec<Ring<Tally>>,
    pub created_unix_ns: u64,
    pub last_unix_ns: u64,
}

impl Blame {
    pub fn new(window_ns: &[u64], sub_buckets: u32, now: u64) -> Blame {
        Blame {
            total: 0,
            windows: window_ns
                .iter()
                .map(|&w| Ring::new(w, sub_buckets))
                .collect(),
            created_unix_ns: now,
            last_unix_ns: now,
        }
    }

    /// One failed request at `at_ns` (event time), recorded at `now`.
    pub fn add(&mut self, at_ns: u64, now: u64) {
        self.total += 1;
        for r in self.windows.iter_mut() {
            if let Some(t) = r.slot_mut(at_ns, now) {
                t.0 += 1;
            }
        }
        self.last_unix_ns = now;
    }

    /// Blamed requests in window `w` at `now`.
    pub fn window(&self, w: usize, now: u64) -> u64 {
        self.windows[w].live(now).map(|t| t.0).sum()
    }

    /// True when nothing was recorded since the last [`crate::partial`] take.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Entry-point spans seen and matched, for the coverage ratio.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    pub entry: u64,
    pub matched: u64,
}

impl Reset for Coverage {
    fn reset(&mut self) {
        *self = Coverage::default();
    }
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.entry += o.entry;
        self.matched += o.matched;
    }
}

/// Everything kept for one journey x cohort series.
#[derive(Debug, Clone)]
pub struct SeriesState {
    pub totals: Counts,
    /// Latency of all requests, each span's times its adjusted count.
    pub duration_sum_s: f64,
    /// Value of all requests, and of the failed or incorrect ones, since the series began.
    pub value_total: f64,
    pub value_failed: f64,
    /// Count per histogram bound (in [`sampling::UNIT`]s, like the counts),
    /// non-cumulative; the last entry is the +Inf overflow.
    pub buckets: Vec<u64>,
    pub windows: Vec<Ring<Slot>>,
    pub created_unix_ns: u64,
    pub last_update_unix_ns: u64,
    /// Example requests; made at the first request with trace ids.
    pub exemplars: Option<Box<Exemplars>>,
    /// Frustration events since the series began, by the journey's event index.
    pub frustrations: Vec<u64>,
    /// The last report of each web vital measurement (by id hash), so a later report
    /// replaces it; at most [`MAX_VITAL_IDS`].
    vital_ids: std::collections::HashMap<u64, VitalReport>,
}

/// Web vital measurements a series remembers by id at once.
pub const MAX_VITAL_IDS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct VitalReport {
    end_ns: u64,
    vital: usize,
    hist: u64,
    good: bool,
}

impl SeriesState {
    pub fn new(window_ns: &[u64], sub_buckets: u32, n_bounds: usize, now_ns: u64) -> SeriesState {
        SeriesState {
            totals: Counts::default(),
            duration_sum_s: 0.0,
            value_total: 0.0,
            value_failed: 0.0,
            buckets: vec![0; n_bounds + 1],
            windows: window_ns
                .iter()
                .map(|&w| Ring::new(w, sub_buckets))
                .collect(),
            created_unix_ns: now_ns,
            last_update_unix_ns: now_ns,
            exemplars: None,
            frustrations: Vec::new(),
            vital_ids: std::collections::HashMap::new(),
        }
    }

    /// Takes back a vital report that a later one of the same measurement replaces, from
    /// the totals and from every window that still holds it.
    fn undo_vital(&mut self, old: VitalReport, now_ns: u64) {
        let bad = u64::from(!old.good);
        self.totals.vitals = self.totals.vitals.saturating_sub(1);
        self.totals.vitals_bad = self.totals.vitals_bad.saturating_sub(bad);
        for ring in self.windows.iter_mut() {
            let Some(slot) = ring.slot_mut(old.end_ns, now_ns) else {
                continue;
            };
            let Some(vs) = slot.vitals.as_deref_mut() else {
                continue;
            };
            if vs.all[old.vital] == 0 {
                continue;
            }
            vs.all[old.vital] -= 1;
            vs.good[old.vital] -= u64::from(old.good).min(vs.good[old.vital]);
            vs.hist[old.vital].remove(old.hist);
            slot.counts.vitals = slot.counts.vitals.saturating_sub(1);
            slot.counts.vitals_bad = slot.counts.vitals_bad.saturating_sub(bad);
        }
    }

    /// Remembers a vital report by id; `false` when the table is full even after
    /// forgetting reports older than every window (those can no longer be taken back).
    fn remember_vital(&mut self, id: u64, report: VitalReport, now_ns: u64) -> bool {
        if self.vital_ids.len() >= MAX_VITAL_IDS && !self.vital_ids.contains_key(&id) {
            let longest = self
                .windows
                .iter()
                .map(|r| r.window_ns())
                .max()
                .unwrap_or(0);
            let oldest = now_ns.saturating_sub(longest);
            self.vital_ids.retain(|_, r| r.end_ns >= oldest);
            if self.vital_ids.len() >= MAX_VITAL_IDS {
                return false;
            }
        }
        self.vital_ids.insert(id, report);
        true
    }

    /// Records a log event: a vital measurement or a frustration. Neither is a
    /// request; a frustrated user is an affected one. A vital report with an id
    /// replaces the earlier report of that id. `false` when the id could not be
    /// remembered (the table was full).
    fn record_event(&mut self, r: &Record, now_ns: u64) -> bool {
        let mut remembered = true;
        let index = (r.event & event::INDEX) as usize;
        if r.event & event::FRUSTRATION != 0 {
            if self.frustrations.len() <= index {
                self.frustrations.resize(index + 1, 0);
            }
            self.frustrations[index] += 1;
        }
        let vital = (r.event & event::VITAL != 0 && index < VITAL_COUNT).then_some(index);
        let good = r.event & event::GOOD != 0;
        if let Some(v) = vital {
            // The id's hash travels in `duration_ns` (see `Record`).
            let id = r.duration_ns;
            if id != 0 {
                if let Some(old) = self.vital_ids.get(&id).copied() {
                    self.undo_vital(old, now_ns);
                }
                let report = VitalReport {
                    end_ns: r.end_ns,
                    vital: v,
                    hist: to_hist(r.value),
                    good,
                };
                remembered = self.remember_vital(id, report, now_ns);
            }
            self.totals.vitals += 1;
            self.totals.vitals_bad += u64::from(!good);
        }
        for ring in self.windows.iter_mut() {
            if let Some(slot) = ring.slot_mut(r.end_ns, now_ns) {
                if let Some(v) = vital {
                    slot.counts.vitals += 1;
                    slot.counts.vitals_bad += u64::from(!good);
                    let vs = slot.vitals.get_or_insert_with(Default::default);
                    vs.all[v] += 1;
                    vs.good[v] += u64::from(good);
                    vs.hist[v].record(to_hist(r.value));
                }
                if r.flags & flag::USER != 0 {
                    let c = slot.customers.get_or_insert_with(Default::default);
                    c.users.record(r.user, r.flags);
                }
            }
        }
        self.last_update_unix_ns = now_ns;
        remembered
    }

    /// Records one span or event; `bounds_ns` are the histogram bounds in nanoseconds.
    /// `false` when a web vital's id could not be remembered ([`MAX_VITAL_IDS`]).
    pub fn record(&mut self, r: &Record, bounds_ns: &[u64], now_ns: u64) -> bool {
        if r.flags & flag::EVENT != 0 {
            return self.record_event(r, now_ns);
        }
        let (end_ns, duration_ns, flags, user) = (r.end_ns, r.duration_ns, r.flags, r.user);
        let weight = r.weight;
        // The span stands for its adjusted count of requests: so do its value and latency.
        let requests = sampling::to_requests(weight);
        let sw = SpanWeight::new(flags, weight);
        self.totals.add_span(&sw);
        let lost = flags & flag::VALUE != 0 && flags & flag::LOST != 0;
        let value = r.value * requests;
        if flags & flag::VALUE != 0 {
            self.value_total += value;
            if lost {
                self.value_failed += value;
            }
        }
        self.duration_sum_s += duration_ns as f64 / 1e9 * requests;
        let b = bounds_ns.partition_point(|&bound| bound < duration_ns);
        self.buckets[b] = self.buckets[b].saturating_add(weight);
        if exemplars::has_ids(r) {
            if self.exemplars.is_none() {
                // A bucket's example stays the slowest one for the shortest window.
                let fresh = self.windows.iter().map(Ring::window_ns).min().unwrap_or(0);
                self.exemplars = Some(Box::new(Exemplars::new(self.buckets.len(), fresh)));
            }
            if let Some(x) = self.exemplars.as_deref_mut() {
                x.record(r, b);
            }
        }
        let bin = hist::bin_of(duration_ns / 1000);
        for ring in self.windows.iter_mut() {
            if let Some(slot) = ring.slot_mut(end_ns, now_ns) {
                slot.counts.add_span(&sw);
                slot.hist.record_bin(bin, 1);
                let named = flags & flag::USER != 0;
                if named || lost {
                    let c = slot.customers.get_or_insert_with(Default::default);
                    if named {
                        c.users.record(user, flags);
                    }
                    if lost {
                        c.value_at_risk += value;
                    }
                }
            }
        }
        self.last_update_unix_ns = now_ns;
        true
    }

    /// Records the requests a metric input counted at `t_ns`: `counts` (in units), their
    /// latency sum, and their whole counts per histogram bucket (`buckets`, as long as
    /// `self.buckets`). A
    /// bucket's requests enter the quantile histogram at its bound (the overflow bucket at
    /// the last bound): the quantiles of a metrics-fed series are bucket upper bounds.
    pub fn record_counts(
        &mut self,
        t_ns: u64,
        counts: &Counts,
        sum_s: f64,
        buckets: &[u64],
        bounds_ns: &[u64],
        now_ns: u64,
    ) {
        self.totals.add(counts);
        self.duration_sum_s += sum_s;
        for (a, b) in self.buckets.iter_mut().zip(buckets) {
            *a = a.saturating_add(sampling::from_requests(*b));
        }
        for ring in self.windows.iter_mut() {
            if let Some(slot) = ring.slot_mut(t_ns, now_ns) {
                slot.counts.add(counts);
                for (i, &n) in buckets.iter().enumerate() {
                    if n > 0 {
                        let bound = bounds_ns.get(i).or(bounds_ns.last()).copied();
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        slot.hist.record_n(bound.unwrap_or(0) / 1000, n);
                    }
                }
            }
        }
        self.last_update_unix_ns = now_ns;
    }

    /// Counts and latency quantiles (seconds) of window `w` at `now_ns`.
    pub fn window_stats(
        &self,
        w: usize,
        now_ns: u64,
        qs: &[f64],
        scratch: &mut Vec<(u32, u32)>,
        qout: &mut Vec<Option<u64>>,
    ) -> WindowStats {
        let ring = &self.windows[w];
        let mut counts = Counts::default();
        let mut users = Users::default();
        let mut value_at_risk = 0.0;
        for s in ring.live(now_ns) {
            counts.add(&s.counts);
            if let Some(c) = s.customers.as_deref() {
                users.merge(&c.users);
                value_at_risk += c.value_at_risk;
            }
        }
        hist::quantiles(ring.live(now_ns).map(|s| &s.hist), qs, scratch, qout);
        let quantiles_s = qout.iter().map(|q| q.map(|us| us as f64 / 1e6)).collect();
        let mut vitals = VitalStats::default();
        if ring.live(now_ns).any(|s| s.vitals.is_some()) {
            for v in 0..VITAL_COUNT {
                for s in ring.live(now_ns).filter_map(|s| s.vitals.as_deref()) {
                    vitals.good += s.good[v];
                    vitals.all += s.all[v];
                }
                let parts = ring
                    .live(now_ns)
                    .filter_map(|s| s.vitals.as_deref())
                    .map(|s| &s.hist[v]);
                hist::quantiles(parts, &VITAL_QUANTILES, scratch, qout);
                vitals.quantiles[v] = qout.iter().map(|q| q.map(|h| from_hist(v, h))).collect();
            }
        }
        WindowStats {
            counts,
            users,
            value_at_risk,
            start_ns: ring.start_ns(now_ns),
            quantiles_s,
            vitals,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.windows
            .iter()
            .map(|r| {
                r.slots
                    .iter()
                    .map(|s| s.heap_bytes() + std::mem::size_of::<Slot>() + 8)
                    .sum::<usize>()
            })
            .sum::<usize>()
            + self.buckets.len() * 8
            + self.exemplars.as_deref().map_or(0, Exemplars::heap_bytes)
            + self.frustrations.len() * 8
            + self.vital_ids.capacity() * (8 + std::mem::size_of::<VitalReport>())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub counts: Counts,
    /// The window's users, merged over its sub-buckets; the deriver merges cohorts.
    pub users: Users,
    /// Value of the failed or incorrect requests in the window.
    pub value_at_risk: f64,
    pub quantiles_s: Vec<Option<f64>>,
    /// Where the window began: its exemplars are the series' ones that ended since.
    pub start_ns: u64,
    /// Web vitals in the window: the experience SLI and each vital's quantiles.
    pub vitals: VitalStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rec(end_ns: u64, duration_ns: u64, flags: u8, user: u64, value: f64) -> Record {
        Record {
            hash: 0,
            has_version: false,
            journey: 0,
            first_value: 0,
            n_values: 0,
            flags,
            end_ns,
            duration_ns,
            user,
            value,
            trace_id: [0; 16],
            span_id: [0; 8],
            event: 0,
            weight: sampling::UNIT,
        }
    }

    /// A vital event record: `id` travels in `duration_ns`.
    fn vital(end_ns: u64, vital: u16, value: f64, good: bool, id: u64) -> Record {
        let code = event::VITAL | vital | if good { event::GOOD } else { 0 };
        Record {
            flags: flag::EVENT,
            duration_ns: id,
            event: code,
            ..rec(end_ns, 0, 0, 0, value)
        }
    }

    #[test]
    fn a_later_vital_report_replaces_the_earlier_one_everywhere() {
        let now = 1_000 * S;
        let mut s = SeriesState::new(&[60 * S, 3600 * S], 6, 0, now);
        // cls (index 2) of id 7: 0.3 (bad), then 0.05 (good); lcp (0) of id 8 once.
        s.record(&vital(now - S, 2, 0.3, false, 7), &[], now);
        s.record(&vital(now - S, 0, 1000.0, true, 8), &[], now);
        s.record(&vital(now, 2, 0.05, true, 7), &[], now);
        // Without an id, every report counts.
        s.record(&vital(now, 0, 3000.0, false, 0), &[], now);
        assert_eq!((s.totals.vitals, s.totals.vitals_bad), (3, 1));
        let (mut scratch, mut qout) = (Vec::new(), Vec::new());
        for w in 0..2 {
            let st = s.window_stats(w, now, &[0.5], &mut scratch, &mut qout);
            assert_eq!((st.counts.vitals, st.counts.vitals_bad), (3, 1));
            assert_eq!((st.vitals.all, st.vitals.good), (3, 2));
            // cls holds only 0.05 (50 thousandths, exact below 2048).
            assert_eq!(st.vitals.quantiles[2], [Some(0.05), Some(0.05), Some(0.05)]);
        }
    }

    #[test]
    fn a_window_slides_one_sub_bucket_at_a_time() {
        // 60 s window, 6 sub-buckets of 10 s.
        let mut ring: Ring<Coverage> = Ring::new(60 * S, 6);
        let now = 1_000 * S; // bucket 100
        for t in [955, 965, 975, 985, 995, 1000] {
            ring.slot_mut(t * S, now).unwrap().entry += 1;
        }
        // 945 s is bucket 94, which is before the 6 buckets 95..=100.
        assert!(ring.slot_mut(945 * S, now).is_none());
        let sum = |ring: &Ring<Coverage>, now| ring.live(now).map(|c| c.entry).sum::<u64>();
        assert_eq!(sum(&ring, now), 6);
        assert_eq!(sum(&ring, 1_009 * S), 6);
        assert_eq!(sum(&ring, 1_010 * S), 5, "bucket 95 leaves at 1010 s");
        assert_eq!(sum(&ring, 1_060 * S), 0);
        assert!(ring.is_idle(1_060 * S));
    }

    #[test]
    fn a_reused_slot_forgets_its_old_bucket() {
        let mut ring: Ring<Coverage> = Ring::new(60 * S, 6);
        ring.slot_mut(1_000 * S, 1_000 * S).unwrap().entry = 7;
        // 60 s later the same slot index comes round again.
        let slot = ring.slot_mut(1_060 * S, 1_060 * S).unwrap();
        assert_eq!(slot.entry, 0);
        // An event for the old bucket is now outside the window.
        assert!(ring.slot_mut(1_000 * S, 1_060 * S).is_none());
    }

    /// The slot lookup without the hint, as it was: the reference for the test below.
    struct Plain {
        sub_ns: u64,
        idx: Vec<u64>,
        slots: Vec<u64>,
    }

    impl Plain {
        fn slot_mut(&mut self, t_ns: u64, now_ns: u64) -> Option<&mut u64> {
            let n = self.slots.len() as u64;
            let (b, now_b) = (t_ns / self.sub_ns, now_ns / self.sub_ns);
            if b + n <= now_b {
                return None;
            }
            let i = (b % n) as usize;
            if self.idx[i] != b {
                if self.idx[i] != EMPTY && self.idx[i] > b {
                    return None;
                }
                self.idx[i] = b;
                self.slots[i] = 0;
            }
            Some(&mut self.slots[i])
        }
    }

    #[test]
    fn the_hot_slot_hint_finds_the_slot_the_division_finds() {
        // 60 s of 6 x 10 s slots. Events mostly just behind a clock that moves in
        // small steps, sometimes back, sometimes far ahead, some events older than the
        // window or later than now, and some at the end of the u64 range, where the
        // hint is not set; each found slot is incremented, so a wrong slot or a missed
        // reset shows in the counts. The same sequence through the plain lookup must
        // give the same answer at every step and the same slots at the end.
        let mut ring: Ring<Tally> = Ring::new(60 * S, 6);
        let mut plain = Plain {
            sub_ns: 10 * S,
            idx: vec![EMPTY; 6],
            slots: vec![0; 6],
        };
        let mut rng = crate::rng::Rng::new(9);
        let mut now = 1_000 * S;
        let mut answered = [0u64; 2];
        for step in 0..20_000u64 {
            now = match rng.below(100) {
                0 => now.saturating_sub(rng.below(30) as u64 * S),
                1 => now.saturating_add(rng.below(200) as u64 * S),
                2 => u64::MAX - rng.below(3) as u64,
                3 if now > u64::MAX / 2 => 1_000 * S,
                _ => now.saturating_add(rng.below(50_000_000) as u64),
            };
            let t = match rng.below(10) {
                0 => now.saturating_sub(rng.below(120) as u64 * S),
                1 => now.saturating_add(rng.below(20) as u64 * S),
                _ => now.saturating_sub(rng.below(3_000_000_000) as u64),
            };
            let ours = ring.slot_mut(t, now).map(|s| {
                s.0 += 1;
                s.0
            });
            let theirs = plain.slot_mut(t, now).map(|s| {
                *s += 1;
                *s
            });
            assert_eq!(ours, theirs, "step {step}: t {t}, now {now}");
            answered[usize::from(ours.is_some())] += 1;
        }
        assert_eq!(&ring.idx[..], &plain.idx[..]);
        let counts: Vec<u64> = ring.slots.iter().map(|s| s.0).collect();
        assert_eq!(counts, plain.slots);
        // Both answers were exercised often.
        assert!(answered[0] > 1_000 && answered[1] > 10_000, "{answered:?}");
    }

    #[test]
    fn series_counts_buckets_and_quantiles() {
        let bounds_ns = [100_000_000u64, 1_000_000_000];
        let now = 10_000 * S;
        let mut s = SeriesState::new(&[60 * S], 12, bounds_ns.len(), now);
        s.record(&rec(now, 50_000_000, 0, 0, 0.0), &bounds_ns, now);
        s.record(&rec(now, 100_000_000, 0, 0, 0.0), &bounds_ns, now);
        s.record(
            &rec(now, 2_000_000_000, flag::ERROR | flag::SLOW, 0, 0.0),
            &bounds_ns,
            now,
        );
        let u = sampling::UNIT;
        assert_eq!(
            s.buckets,
            vec![2 * u, 0, u],
            "100 ms falls in the le=0.1 bucket"
        );
        assert_eq!(s.totals, Counts::whole(3, 1, 1, 0));
        let stats = s.window_stats(0, now, &[0.5, 1.0], &mut Vec::new(), &mut Vec::new());
        assert_eq!(stats.counts.requests, 3 * u);
        assert_eq!(stats.quantiles_s[0], Some(0.1));
        let max = stats.quantiles_s[1].unwrap();
        assert!(
            (max - 2.0).abs() <= 2.0 / 1000.0,
            "max {max} is 2 s within HDR precision"
        );
    }

    #[test]
    fn a_sampled_span_counts_its_adjusted_count_in_counts_buckets_latency_and_value() {
        let u = sampling::UNIT;
        let bounds_ns = [100_000_000u64];
        let now = 1_000 * S;
        let mut s = SeriesState::new(&[60 * S], 6, bounds_ns.len(), now);
        let v = flag::VALUE;
        // th:8 (2), 50 ms, value 10, failed; th:c (4), 200 ms, value 1; no th (1), 50 ms,
        // slow; th:e666666666666 (10, exact in units), 200 ms, value 2.5, incorrect.
        for (weight, ms, flags, value) in [
            (2 * u, 50, v | flag::ERROR, 10.0),
            (4 * u, 200, v, 1.0),
            (u, 50, flag::SLOW, 0.0),
            (10 * u, 200, v | flag::INCORRECT, 2.5),
        ] {
            let r = Record {
                weight,
                user: 7,
                ..rec(now, ms * 1_000_000, flags | flag::USER, 7, value)
            };
            s.record(&r, &bounds_ns, now);
        }
        // Requests 2 + 4 + 1 + 10 = 17; errors 2; slow 1; incorrect 10.
        assert_eq!(s.totals, Counts::whole(17, 2, 1, 10));
        // le=0.1: the two 50 ms spans, 2 + 1 = 3; +Inf: 4 + 10 = 14.
        assert_eq!(s.buckets, vec![3 * u, 14 * u]);
        // 0.05 x 2 + 0.2 x 4 + 0.05 x 1 + 0.2 x 10 = 0.1 + 0.8 + 0.05 + 2 = 2.95 s.
        assert!((s.duration_sum_s - 2.95).abs() < 1e-12);
        // Value 10 x 2 + 1 x 4 + 2.5 x 10 = 49; failed or incorrect 20 + 25 = 45.
        assert_eq!((s.value_total, s.value_failed), (49.0, 45.0));
        let st = s.window_stats(0, now, &[], &mut Vec::new(), &mut Vec::new());
        assert_eq!(st.counts, Counts::whole(17, 2, 1, 10));
        assert_eq!(st.value_at_risk, 45.0);
        // One distinct user however many requests the spans stand for.
        assert_eq!((st.users.all.count(), st.users.affected.count()), (1, 1));
    }

    #[test]
    fn users_are_counted_once_per_window_and_affected_by_any_bad_request() {
        // 60 s window of 6 sub-buckets; users 1..=3, user 2 fails once in another bucket.
        let now = 1_000 * S;
        let mut s = SeriesState::new(&[60 * S], 6, 0, now);
        let u = flag::USER;
        for (t, user, flags) in [
            (955, 1, u),
            (975, 1, u),
            (975, 2, u),
            (995, 2, u | flag::ERROR),
            (995, 3, u | flag::SLOW),
            (999, 0, 0), // names no user: a request, not a user
        ] {
            s.record(&rec(t * S, 0, flags, user, 0.0), &[], now);
        }
        let st = s.window_stats(0, now, &[], &mut Vec::new(), &mut Vec::new());
        assert_eq!(st.counts.requests, 6 * sampling::UNIT);
        assert_eq!((st.users.all.count(), st.users.affected.count()), (3, 2));
        // At 1035 s the live buckets are 98..=103: 955 s and 975 s have left, users 2 and 3 remain.
        let st = s.window_stats(0, 1_035 * S, &[], &mut Vec::new(), &mut Vec::new());
        assert_eq!((st.users.all.count(), st.users.affected.count()), (2, 2));
    }

    #[test]
    fn a_series_without_users_or_value_pays_eight_bytes_a_slot_for_them() {
        use std::mem::size_of;
        // Counts 6 x 8 = 48 (requests, errors, slow, incorrect, vitals, bad vitals), the
        // histogram's Vec 24, the customers and vitals box pointers 8 each.
        assert_eq!(size_of::<Slot>(), 88);
        // Two sketches (an enum of two Vecs or a Box: 24 bytes and a tag, 32 each)
        // and an f64.
        assert_eq!(size_of::<Customers>(), 72);
        let now = 1_000 * S;
        let mut s = SeriesState::new(&[60 * S, 300 * S, 3_600 * S], 12, 0, now);
        // 3 windows x 12 slots x (88 + 8 for the slot's bucket index), plus the one
        // +Inf histogram bucket's 8 bytes: 3,456 + 8.
        assert_eq!(s.heap_bytes(), 3_464);
        s.record(&rec(now, 1_000, 0, 0, 0.0), &[], now);
        // One slot per window gets a histogram bin: a Vec of capacity 4 x 8 bytes.
        assert_eq!(s.heap_bytes(), 3_464 + 3 * 32);
        s.record(&rec(now, 1_000, flag::USER, 7, 0.0), &[], now);
        // Same bin; each of the three slots boxes its customers (72) with a users
        // sketch of capacity 4 hashes (32).
        assert_eq!(s.heap_bytes(), 3_464 + 3 * 32 + 3 * (72 + 32));
    }

    #[test]
    fn exemplars_are_made_at_the_first_request_with_ids_and_counted_in_the_state_bytes() {
        let now = 1_000 * S;
        let mut s = SeriesState::new(&[60 * S, 300 * S, 3_600 * S], 12, 0, now);
        s.record(&rec(now, 1_000, 0, 0, 0.0), &[], now);
        assert!(s.exemplars.is_none(), "no ids, no exemplars");
        let before = s.heap_bytes();
        let with_ids = Record {
            trace_id: [7; 16],
            span_id: [9; 8],
            ..rec(now, 1_000, flag::ERROR, 0, 0.0)
        };
        s.record(&with_ids, &[], now);
        // The box: 984 bytes of fixed arrays plus one (+Inf) bucket's 40.
        assert_eq!(s.heap_bytes(), before + 1_024);
        let x = s.exemplars.as_deref().unwrap();
        let failed = x.latest(exemplars::Kind::Failed).unwrap();
        assert_eq!((failed.trace_id, failed.span_id), ([7; 16], [9; 8]));
        assert_eq!(x.bucket(0).map(|e| e.span_id), Some([9; 8]));
        // The 1 m window of 12 x 5 s sub-buckets at 1000 s starts at 945 s.
        let st = s.window_stats(0, now, &[], &mut Vec::new(), &mut Vec::new());
        assert_eq!(st.start_ns, 945 * S);
    }

    #[test]
    fn value_at_risk_is_the_value_of_failed_or_incorrect_requests_in_the_window() {
        let now = 1_000 * S;
        let mut s = SeriesState::new(&[60 * S], 6, 0, now);
        let v = flag::VALUE;
        for (t, flags, value) in [
            (955, v | flag::ERROR, 10.25),
            (975, v, 99.0),
            (995, v | flag::INCORRECT, 0.5),
            (995, v | flag::SLOW, 7.0), // slow but sold: not at risk
            (999, flag::ERROR, 0.0),    // no value
        ] {
            s.record(&rec(t * S, 0, flags, 0, value), &[], now);
        }
        assert_eq!((s.value_total, s.value_failed), (116.75, 10.75));
        let at = |t| {
            s.window_stats(0, t, &[], &mut Vec::new(), &mut Vec::new())
                .value_at_risk
        };
        assert_eq!(at(now), 10.75);
        // At 1015 s the live buckets are 96..=101: the 955 s failure has left.
        assert_eq!(at(1_015 * S), 0.5);
    }
}
