//! Partial aggregates: what a Kafka stage-1 instance hands to a journey's owner
//! (issue 13, stage 2), and how the owner merges it. Owns the wire encoding
//! (`proto/cerflow/aggregates/v1/partials.proto`, version [`VERSION`]), the split of a
//! journey's partials into messages under the topic's size limit, and the merge.
//!
//! A partial is a delta: [`take_series`] moves out everything a series recorded since
//! the previous take (its totals, latency buckets, frustrations and every window
//! sub-bucket, by start time) and leaves the series empty, so each recorded span is in
//! exactly one partial. [`merge_series`] adds a partial into the owner's series: counts,
//! histogram bins and latency buckets add, user sketches take the union
//! ([`crate::distinct`]: the merged sketch equals the one built from all inserts, form
//! included). Integer figures and sketches are therefore identical to one instance's
//! whatever the split of spans between instances and the order partials arrive in.
//!
//! A journey's partials also carry its dependency series and blame ([`Entry`]): calls
//! as a series without cohort, blame as integer counts per sub-bucket, each with the
//! retractions of its publisher (what a trace's later spans took back), which
//! [`merge_dependency`] subtracts right after adding the entry. Retractions travel with
//! or after what they take back (one worker, one partition, in order), so an owner's
//! counts never go below what one instance would have.
//!
//! Telemetry coverage (entry-point spans seen and claimed, per window sub-bucket) belongs
//! to no journey: [`take_coverage`] moves it out of a worker's rings, it travels in
//! messages of its own (empty journey, Kafka key [`COVERAGE_KEY`]) so that all of it
//! lands in one aggregates partition, and [`merge_coverage`] adds it at that
//! partition's owner, the one instance that derives the ratio.
//!
//! Not exact, and why: the f64 sums (latency sum, value totals, value at risk) are
//! added in a different order than one instance adds them, so they may differ in the
//! last bits; a web-vital report that replaces an earlier one of the same id
//! ([`crate::window::MAX_VITAL_IDS`]) can only take it back while both are recorded on
//! the same instance between two takes; a sub-bucket that reaches its owner after it
//! slid out of the owner's window is dropped and counted ([`Merged::late`]), as a late
//! span is on one instance.

use crate::distinct::Distinct;
use crate::experience::VITAL_COUNT;
use crate::hist::SparseHist;
use crate::proto::aggregates as pb;
use crate::window::{
    Blame, Counts, Coverage, Customers, Ring, SeriesState, Slot, Users, VitalSlot,
};
use prost::Message;

/// The encoding version this build writes and reads.
pub const VERSION: u32 = 1;

/// The Kafka key of the coverage messages: one fixed key, so every publisher's coverage
/// is in one aggregates partition. Only the route: an owner tells a coverage message by
/// its empty journey, so a journey of this very name is still merged as a journey.
pub const COVERAGE_KEY: &str = "cerflow.telemetry-coverage";

/// The one place [`Counts`] is written: a change of its representation (e.g. weighted
/// counts) changes this function and [`decode_counts`] only.
pub fn encode_counts(c: &Counts) -> pb::Counts {
    pb::Counts {
        requests: c.requests,
        errors: c.errors,
        slow: c.slow,
        incorrect: c.incorrect,
        vitals: c.vitals,
        vitals_bad: c.vitals_bad,
    }
}

/// The reverse of [`encode_counts`]; an absent message is all zeros.
pub fn decode_counts(c: Option<&pb::Counts>) -> Counts {
    let Some(c) = c else {
        return Counts::default();
    };
    Counts {
        requests: c.requests,
        errors: c.errors,
        slow: c.slow,
        incorrect: c.incorrect,
        vitals: c.vitals,
        vitals_bad: c.vitals_bad,
    }
}

fn encode_hist(h: &SparseHist) -> (Vec<u32>, Vec<u32>) {
    h.bins().iter().copied().unzip()
}

fn decode_hist(bins: &[u32], counts: &[u32]) -> Result<SparseHist, String> {
    if bins.len() != counts.len() {
        return Err(format!(
            "a histogram has {} bins but {} counts",
            bins.len(),
            counts.len()
        ));
    }
    SparseHist::from_bins(bins.iter().copied().zip(counts.iter().copied()).collect())
}

fn encode_distinct(d: &Distinct) -> Option<pb::Distinct> {
    use pb::distinct::Form;
    let form = match d {
        Distinct::Exact(v) if v.is_empty() => return None,
        Distinct::Exact(v) => Form::Exact(pb::Hashes { hashes: v.clone() }),
        Distinct::Sparse(v) => Form::Sparse(pb::Registers { entries: v.clone() }),
        Distinct::Dense(r) => Form::Dense(r.to_vec()),
    };
    Some(pb::Distinct { form: Some(form) })
}

fn decode_distinct(d: Option<&pb::Distinct>) -> Result<Distinct, String> {
    use pb::distinct::Form;
    match d.and_then(|d| d.form.as_ref()) {
        None => Ok(Distinct::default()),
        Some(Form::Exact(h)) => Distinct::checked_exact(h.hashes.clone()),
        Some(Form::Sparse(r)) => Distinct::checked_sparse(r.entries.clone()),
        Some(Form::Dense(b)) => Distinct::checked_dense(b.clone().into_boxed_slice()),
    }
}

fn encode_slot(start_ns: u64, s: &Slot) -> pb::SubBucket {
    let (hist_bins, hist_counts) = encode_hist(&s.hist);
    let c = s.customers.as_deref();
    pb::SubBucket {
        start_ns,
        counts: Some(encode_counts(&s.counts)),
        hist_bins,
        hist_counts,
        users_all: c.and_then(|c| encode_distinct(&c.users.all)),
        users_affected: c.and_then(|c| encode_distinct(&c.users.affected)),
        value_at_risk: c.map_or(0.0, |c| c.value_at_risk),
        vitals: s.vitals.as_deref().map_or_else(Vec::new, |v| {
            (0..VITAL_COUNT)
                .map(|i| {
                    let (hist_bins, hist_counts) = encode_hist(&v.hist[i]);
                    pb::Vital {
                        good: v.good[i],
                        all: v.all[i],
                        hist_bins,
                        hist_counts,
                    }
                })
                .collect()
        }),
    }
}

fn decode_slot(b: &pb::SubBucket) -> Result<Slot, String> {
    if !b.value_at_risk.is_finite() {
        return Err("a sub-bucket's value at risk is not finite".into());
    }
    let users = Users {
        all: decode_distinct(b.users_all.as_ref())?,
        affected: decode_distinct(b.users_affected.as_ref())?,
    };
    let customers = (!users.all.is_empty() || !users.affected.is_empty() || b.value_at_risk != 0.0)
        .then(|| {
            Box::new(Customers {
                users,
                value_at_risk: b.value_at_risk,
            })
        });
    let vitals = if b.vitals.is_empty() {
        None
    } else if b.vitals.len() != VITAL_COUNT {
        return Err(format!(
            "a sub-bucket has {} web vitals, not {VITAL_COUNT}",
            b.vitals.len()
        ));
    } else {
        let mut v = VitalSlot::default();
        for (i, x) in b.vitals.iter().enumerate() {
            v.good[i] = x.good;
            v.all[i] = x.all;
            v.hist[i] = decode_hist(&x.hist_bins, &x.hist_counts)?;
        }
        Some(Box::new(v))
    };
    Ok(Slot {
        counts: decode_counts(b.counts.as_ref()),
        hist: decode_hist(&b.hist_bins, &b.hist_counts)?,
        customers,
        vitals,
    })
}

/// Adds counts from the wire: saturating, so a hostile partial cannot overflow them.
pub fn add_counts(a: &mut Counts, b: &Counts) {
    a.requests = a.requests.saturating_add(b.requests);
    a.errors = a.errors.saturating_add(b.errors);
    a.slow = a.slow.saturating_add(b.slow);
    a.incorrect = a.incorrect.saturating_add(b.incorrect);
    a.vitals = a.vitals.saturating_add(b.vitals);
    a.vitals_bad = a.vitals_bad.saturating_add(b.vitals_bad);
}

/// Adds `o` into `s`: the sub-bucket both would have made from all their inputs.
fn merge_slot(s: &mut Slot, o: Slot) {
    add_counts(&mut s.counts, &o.counts);
    s.hist.merge(&o.hist);
    if let Some(oc) = o.customers {
        match s.customers.as_deref_mut() {
            None => s.customers = Some(oc),
            Some(c) => {
                c.users.merge(&oc.users);
                c.value_at_risk += oc.value_at_risk;
            }
        }
    }
    if let Some(ov) = o.vitals {
        match s.vitals.as_deref_mut() {
            None => s.vitals = Some(ov),
            Some(v) => {
                for i in 0..VITAL_COUNT {
                    v.good[i] = v.good[i].saturating_add(ov.good[i]);
                    v.all[i] = v.all[i].saturating_add(ov.all[i]);
                    v.hist[i].merge(&ov.hist[i]);
                }
            }
        }
    }
}

/// Moves out what `state` recorded since the last take, leaving it empty; `None` when
/// it recorded nothing. `cohort`, `overflow` and `from_metrics` name the series.
pub fn take_series(
    state: &mut SeriesState,
    cohort: &[Box<str>],
    overflow: bool,
    from_metrics: bool,
) -> Option<pb::SeriesPartial> {
    let windows: Vec<pb::WindowPartial> = state
        .windows
        .iter_mut()
        .map(|ring| pb::WindowPartial {
            sub_buckets: ring
                .drain()
                .iter()
                .map(|(start, s)| encode_slot(*start, s))
                .collect(),
        })
        .collect();
    let totals = std::mem::take(&mut state.totals);
    let frustrations = std::mem::take(&mut state.frustrations);
    let buckets = if state.buckets.iter().any(|&n| n > 0) {
        let n = state.buckets.len();
        std::mem::replace(&mut state.buckets, vec![0; n])
    } else {
        Vec::new()
    };
    let empty = totals == Counts::default()
        && buckets.is_empty()
        && frustrations.iter().all(|&n| n == 0)
        && windows.iter().all(|w| w.sub_buckets.is_empty());
    let p = pb::SeriesPartial {
        cohort: cohort.iter().map(|c| c.to_string()).collect(),
        overflow,
        from_metrics,
        totals: Some(encode_counts(&totals)),
        duration_sum_s: std::mem::take(&mut state.duration_sum_s),
        value_total: std::mem::take(&mut state.value_total),
        value_failed: std::mem::take(&mut state.value_failed),
        buckets,
        frustrations,
        created_unix_ns: state.created_unix_ns,
        windows,
    };
    (!empty).then_some(p)
}

/// Subtracts counts: saturating, so a retraction of what never arrived cannot wrap.
pub fn sub_counts(a: &mut Counts, b: &Counts) {
    a.requests = a.requests.saturating_sub(b.requests);
    a.errors = a.errors.saturating_sub(b.errors);
    a.slow = a.slow.saturating_sub(b.slow);
    a.incorrect = a.incorrect.saturating_sub(b.incorrect);
    a.vitals = a.vitals.saturating_sub(b.vitals);
    a.vitals_bad = a.vitals_bad.saturating_sub(b.vitals_bad);
}

/// One entry of a journey's partials: a journey x cohort series, a dependency of the
/// journey, or its own blame.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Series(pb::SeriesPartial),
    Dependency(Box<pb::DependencyPartial>),
    SelfBlame(pb::SelfBlamePartial),
    Version(pb::VersionPartial),
    /// Only in a coverage message (empty journey, [`COVERAGE_KEY`]).
    Coverage(pb::CoveragePartial),
}

/// Moves out the coverage `rings` (one per window) recorded since the last take, leaving
/// them empty; `None` when they hold nothing.
pub fn take_coverage(rings: &mut [Ring<Coverage>]) -> Option<pb::CoveragePartial> {
    let windows: Vec<pb::CoverageWindow> = rings
        .iter_mut()
        .map(|ring| {
            let mut w = pb::CoverageWindow::default();
            for (start, c) in ring.drain() {
                if c.entry > 0 || c.matched > 0 {
                    w.start_ns.push(start);
                    w.entry.push(c.entry);
                    w.matched.push(c.matched);
                }
            }
            w
        })
        .collect();
    windows
        .iter()
        .any(|w| !w.start_ns.is_empty())
        .then_some(pb::CoveragePartial { windows })
}

/// Adds coverage partial `p` into the owner's `rings` at `now_ns`; checked whole first,
/// so a refused one leaves them as they were. Returns the sub-buckets dropped as late or
/// future, as [`merge_series`] does.
pub fn merge_coverage(
    rings: &mut [Ring<Coverage>],
    p: &pb::CoveragePartial,
    now_ns: u64,
) -> Result<u64, String> {
    if p.windows.len() != rings.len() {
        return Err(format!(
            "a coverage partial has {} windows, this instance {}: their window config differs",
            p.windows.len(),
            rings.len()
        ));
    }
    let same = |w: &pb::CoverageWindow| {
        w.entry.len() == w.start_ns.len() && w.matched.len() == w.start_ns.len()
    };
    if !p.windows.iter().all(same) {
        return Err("a coverage window has not as many counts as sub-buckets".into());
    }
    let mut dropped = 0;
    for (ring, w) in rings.iter_mut().zip(&p.windows) {
        for ((&start, &entry), &matched) in w.start_ns.iter().zip(&w.entry).zip(&w.matched) {
            if start > now_ns.saturating_add(ring.sub_ns()) {
                dropped += 1;
                continue;
            }
            match ring.slot_mut(start, now_ns) {
                Some(c) => {
                    c.entry = c.entry.saturating_add(entry);
                    c.matched = c.matched.saturating_add(matched);
                }
                None => dropped += 1,
            }
        }
    }
    Ok(dropped)
}

/// Moves out what `b` recorded since the last take; `None` when nothing.
pub fn take_blame(b: &mut Blame) -> Option<pb::BlamePartial> {
    let windows: Vec<pb::BlameWindow> = b
        .windows
        .iter_mut()
        .map(|ring| {
            let (start_ns, counts) = ring
                .drain()
                .into_iter()
                .filter(|(_, t)| t.0 > 0)
                .map(|(start, t)| (start, t.0))
                .unzip();
            pb::BlameWindow { start_ns, counts }
        })
        .collect();
    let total = std::mem::take(&mut b.total);
    let empty = total == 0 && windows.iter().all(|w| w.start_ns.is_empty());
    (!empty).then_some(pb::BlamePartial {
        total,
        created_unix_ns: b.created_unix_ns,
        windows,
    })
}

/// Moves out what a dependency series recorded since the last take (its calls and
/// blame), with what was taken back since (`retracted`); `None` when nothing.
pub fn take_dependency(
    name: &str,
    overflow: bool,
    calls: &mut SeriesState,
    blame: &mut Blame,
    retracted: Option<(&mut SeriesState, &mut Blame)>,
) -> Option<pb::DependencyPartial> {
    let (retracted_calls, retracted_blamed) = match retracted {
        Some((c, b)) => (take_series(c, &[], overflow, false), take_blame(b)),
        None => (None, None),
    };
    let p = pb::DependencyPartial {
        name: name.to_string(),
        overflow,
        calls: take_series(calls, &[], overflow, false),
        blamed: take_blame(blame),
        retracted_calls,
        retracted_blamed,
    };
    let empty = p.calls.is_none()
        && p.blamed.is_none()
        && p.retracted_calls.is_none()
        && p.retracted_blamed.is_none();
    (!empty).then_some(p)
}

/// [`take_dependency`] for a journey's own blame.
pub fn take_self_blame(
    blame: &mut Blame,
    retracted: Option<&mut Blame>,
) -> Option<pb::SelfBlamePartial> {
    let p = pb::SelfBlamePartial {
        blamed: take_blame(blame),
        retracted: retracted.and_then(take_blame),
    };
    (p.blamed.is_some() || p.retracted.is_some()).then_some(p)
}

/// Adds (or with `subtract`, takes back) blame partial `p` into `b` at `now_ns`;
/// checked whole first. Returns the sub-buckets dropped as late or future.
fn merge_blame(
    b: &mut Blame,
    p: &pb::BlamePartial,
    now_ns: u64,
    subtract: bool,
) -> Result<u64, String> {
    if !p.windows.is_empty() && p.windows.len() != b.windows.len() {
        return Err(format!(
            "a blame partial has {} windows, this instance {}: their window config differs",
            p.windows.len(),
            b.windows.len()
        ));
    }
    if p.windows.iter().any(|w| w.start_ns.len() != w.counts.len()) {
        return Err("a blame window has not as many counts as sub-buckets".into());
    }
    let mut dropped = 0;
    for (ring, w) in b.windows.iter_mut().zip(&p.windows) {
        for (&start, &n) in w.start_ns.iter().zip(&w.counts) {
            if start > now_ns.saturating_add(ring.sub_ns()) {
                dropped += 1;
                continue;
            }
            match ring.slot_mut(start, now_ns) {
                Some(t) if subtract => t.0 = t.0.saturating_sub(n),
                Some(t) => t.0 = t.0.saturating_add(n),
                None => dropped += 1,
            }
        }
    }
    if subtract {
        b.total = b.total.saturating_sub(p.total);
    } else {
        b.total = b.total.saturating_add(p.total);
        if p.created_unix_ns != 0 {
            b.created_unix_ns = b.created_unix_ns.min(p.created_unix_ns);
        }
    }
    b.last_unix_ns = b.last_unix_ns.max(now_ns);
    Ok(dropped)
}

/// Adds dependency partial `p` into the owner's `calls` and `blame` at `now_ns`, then
/// takes back its retractions. Returns the sub-buckets dropped as late or future.
pub fn merge_dependency(
    calls: &mut SeriesState,
    blame: &mut Blame,
    p: &pb::DependencyPartial,
    now_ns: u64,
) -> Result<u64, String> {
    let mut dropped = 0;
    if let Some(c) = &p.calls {
        let m = merge_series(calls, c, now_ns)?;
        dropped += m.late + m.future;
    }
    if let Some(b) = &p.blamed {
        dropped += merge_blame(blame, b, now_ns, false)?;
    }
    if let Some(c) = &p.retracted_calls {
        dropped += subtract_series(calls, c, now_ns)?;
    }
    if let Some(b) = &p.retracted_blamed {
        dropped += merge_blame(blame, b, now_ns, true)?;
    }
    Ok(dropped)
}

/// [`merge_dependency`] for a journey's own blame.
pub fn merge_self_blame(
    blame: &mut Blame,
    p: &pb::SelfBlamePartial,
    now_ns: u64,
) -> Result<u64, String> {
    let mut dropped = 0;
    if let Some(b) = &p.blamed {
        dropped += merge_blame(blame, b, now_ns, false)?;
    }
    if let Some(b) = &p.retracted {
        dropped += merge_blame(blame, b, now_ns, true)?;
    }
    Ok(dropped)
}

/// The sub-buckets of `p` (a `what`: partial or retraction), decoded per window, once its
/// windows and latency buckets are checked against `state`'s: a mismatch means the two
/// instances' window or histogram config differs, and nothing of `p` may be applied.
fn checked_slots(
    state: &SeriesState,
    p: &pb::SeriesPartial,
    what: &str,
) -> Result<Vec<Vec<(u64, Slot)>>, String> {
    if p.windows.len() != state.windows.len() {
        return Err(format!(
            "the {what} has {} windows, this instance {}: their window config differs",
            p.windows.len(),
            state.windows.len()
        ));
    }
    if !p.buckets.is_empty() && p.buckets.len() != state.buckets.len() {
        return Err(format!(
            "the {what} has {} latency buckets, this instance {}: histogram bounds differ",
            p.buckets.len(),
            state.buckets.len()
        ));
    }
    p.windows
        .iter()
        .map(|w| {
            w.sub_buckets
                .iter()
                .map(|b| Ok((b.start_ns, decode_slot(b)?)))
                .collect()
        })
        .collect()
}

/// Takes back a retraction `p` (calls recorded as a series, [`take_dependency`]) from
/// `state`: the reverse of [`merge_series`] for counts, buckets, sums and histograms.
/// Returns the sub-buckets that had slid out (nothing left there to take back).
pub fn subtract_series(
    state: &mut SeriesState,
    p: &pb::SeriesPartial,
    now_ns: u64,
) -> Result<u64, String> {
    if !p.duration_sum_s.is_finite() {
        return Err("the retraction's latency sum is not finite".into());
    }
    let slots = checked_slots(state, p, "retraction")?;
    let mut dropped = 0;
    for (ring, window) in state.windows.iter_mut().zip(slots) {
        for (start_ns, slot) in window {
            if start_ns > now_ns.saturating_add(ring.sub_ns()) {
                dropped += 1;
                continue;
            }
            match ring.slot_mut(start_ns, now_ns) {
                Some(s) => {
                    sub_counts(&mut s.counts, &slot.counts);
                    s.hist.subtract(&slot.hist);
                }
                None => dropped += 1,
            }
        }
    }
    sub_counts(&mut state.totals, &decode_counts(p.totals.as_ref()));
    state.duration_sum_s -= p.duration_sum_s;
    for (a, b) in state.buckets.iter_mut().zip(&p.buckets) {
        *a = a.saturating_sub(*b);
    }
    state.last_update_unix_ns = state.last_update_unix_ns.max(now_ns);
    Ok(dropped)
}

/// What a merge did with a partial's sub-buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    pub sub_buckets: u64,
    /// Sub-buckets that had slid out of the owner's window at `now_ns`: dropped.
    pub late: u64,
    /// Sub-buckets starting more than a sub-bucket after `now_ns` (a clock far ahead, or
    /// a corrupt partial): dropped, as they would hold a ring slot for a future bucket.
    pub future: u64,
}

/// Adds partial `p` into the owner's `state` at `now_ns`. The whole partial is checked
/// before anything is added, so a refused one leaves `state` as it was.
pub fn merge_series(
    state: &mut SeriesState,
    p: &pb::SeriesPartial,
    now_ns: u64,
) -> Result<Merged, String> {
    let sums = [p.duration_sum_s, p.value_total, p.value_failed];
    if sums.iter().any(|v| !v.is_finite()) {
        return Err("the partial's latency or value sums are not finite".into());
    }
    let slots = checked_slots(state, p, "partial")?;
    let mut merged = Merged::default();
    for (ring, window) in state.windows.iter_mut().zip(slots) {
        for (start_ns, slot) in window {
            merged.sub_buckets += 1;
            if start_ns > now_ns.saturating_add(ring.sub_ns()) {
                merged.future += 1;
                continue;
            }
            match ring.slot_mut(start_ns, now_ns) {
                Some(s) => merge_slot(s, slot),
                None => merged.late += 1,
            }
        }
    }
    add_counts(&mut state.totals, &decode_counts(p.totals.as_ref()));
    state.duration_sum_s += p.duration_sum_s;
    state.value_total += p.value_total;
    state.value_failed += p.value_failed;
    for (a, b) in state.buckets.iter_mut().zip(&p.buckets) {
        *a = a.saturating_add(*b);
    }
    if state.frustrations.len() < p.frustrations.len() {
        state.frustrations.resize(p.frustrations.len(), 0);
    }
    for (a, b) in state.frustrations.iter_mut().zip(&p.frustrations) {
        *a = a.saturating_add(*b);
    }
    if p.created_unix_ns != 0 {
        state.created_unix_ns = state.created_unix_ns.min(p.created_unix_ns);
    }
    state.last_update_unix_ns = state.last_update_unix_ns.max(now_ns);
    Ok(merged)
}

/// Why a journey's partials could not all be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub journey: String,
    /// Bytes of the one sub-bucket that alone exceeds the limit.
    pub bytes: usize,
}

/// Encodes one journey's partials as messages of at most `max_bytes` each. A series
/// that alone exceeds the limit is cut into pieces along its sub-buckets (partials
/// add, so pieces merge to the whole); a single sub-bucket, dependency or blame entry
/// over the limit cannot be cut and is returned as [`TooLarge`] beside the messages
/// that could be made. Entries keep their order across the messages. `derived_service`:
/// the service of a derived journey (`journey::JourneyInfo::derived_service`), else "".
pub fn encode_journey(
    journey: &str,
    derived_service: &str,
    instance: &str,
    sequence: u64,
    entries: Vec<Entry>,
    max_bytes: usize,
) -> (Vec<Vec<u8>>, Vec<TooLarge>) {
    let header = || pb::JourneyPartial {
        version: VERSION,
        journey: journey.to_string(),
        derived_service: derived_service.to_string(),
        instance: instance.to_string(),
        sequence,
        part: 0,
        parts: 0,
        ..Default::default()
    };
    // Room for the part numbers, set once the count is known (two varints, <= 12 bytes).
    let budget = max_bytes.saturating_sub(header().encoded_len() + 12);
    let mut too_large = Vec::new();
    let mut pieces = Vec::new();
    for e in entries {
        match e {
            Entry::Series(s) if entry_len(&s) > budget => {
                cut(s, budget, journey, &mut pieces, &mut too_large)
            }
            e => {
                let len = entry_len_of(&e);
                if len > budget {
                    too_large.push(TooLarge {
                        journey: journey.to_string(),
                        bytes: len,
                    });
                } else {
                    pieces.push(e);
                }
            }
        }
    }
    let mut groups: Vec<pb::JourneyPartial> = Vec::new();
    let mut used = usize::MAX;
    for p in pieces {
        let len = entry_len_of(&p);
        if used.saturating_add(len) > budget {
            groups.push(header());
            used = 0;
        }
        used += len;
        if let Some(g) = groups.last_mut() {
            match p {
                Entry::Series(s) => g.series.push(s),
                Entry::Dependency(d) => g.dependencies.push(*d),
                Entry::SelfBlame(b) => g.self_blame.push(b),
                Entry::Version(v) => g.versions.push(v),
                Entry::Coverage(c) => g.coverage.push(c),
            }
        }
    }
    let parts = groups.len() as u32;
    let messages = groups
        .into_iter()
        .enumerate()
        .map(|(i, mut m)| {
            m.part = i as u32;
            m.parts = parts;
            m.encode_to_vec()
        })
        .collect();
    (messages, too_large)
}

/// Bytes an entry takes inside a [`pb::JourneyPartial`]: tag, length and body.
fn entry_len_of(e: &Entry) -> usize {
    let n = match e {
        Entry::Series(s) => s.encoded_len(),
        Entry::Dependency(d) => d.encoded_len(),
        Entry::SelfBlame(b) => b.encoded_len(),
        Entry::Version(v) => v.encoded_len(),
        Entry::Coverage(c) => c.encoded_len(),
    };
    1 + prost::length_delimiter_len(n) + n
}

/// Bytes a series takes inside a [`pb::JourneyPartial`]: tag, length and body.
fn entry_len(s: &pb::SeriesPartial) -> usize {
    let n = s.encoded_len();
    1 + prost::length_delimiter_len(n) + n
}

/// Cuts a series over the budget: the first piece carries its totals, then each piece
/// as many whole sub-buckets as fit.
fn cut(
    mut s: pb::SeriesPartial,
    budget: usize,
    journey: &str,
    out: &mut Vec<Entry>,
    too_large: &mut Vec<TooLarge>,
) {
    let windows = std::mem::take(&mut s.windows);
    let n = windows.len();
    let bare = |s: &pb::SeriesPartial| pb::SeriesPartial {
        cohort: s.cohort.clone(),
        overflow: s.overflow,
        from_metrics: s.from_metrics,
        created_unix_ns: s.created_unix_ns,
        windows: vec![pb::WindowPartial::default(); n],
        ..Default::default()
    };
    let empty = bare(&s);
    s.windows = vec![pb::WindowPartial::default(); n];
    let mut piece = s;
    for (w, window) in windows.into_iter().enumerate() {
        for b in window.sub_buckets {
            let blen = {
                let n = b.encoded_len();
                1 + prost::length_delimiter_len(n) + n
            };
            // A window's own framing grows by at most a few bytes with one more bucket.
            if entry_len(&empty) + blen + 8 > budget {
                too_large.push(TooLarge {
                    journey: journey.to_string(),
                    bytes: blen,
                });
                continue;
            }
            if entry_len(&piece) + blen + 8 > budget {
                out.push(Entry::Series(std::mem::replace(&mut piece, bare(&empty))));
            }
            piece.windows[w].sub_buckets.push(b);
        }
    }
    out.push(Entry::Series(piece));
}

/// Reads one message of the aggregates topic; refuses a version this build does not know.
pub fn decode(bytes: &[u8]) -> Result<pb::JourneyPartial, String> {
    let m = pb::JourneyPartial::decode(bytes).map_err(|e| format!("not a partial: {e}"))?;
    if m.version != VERSION {
        return Err(format!(
            "partial version {} is not the {VERSION} this build reads",
            m.version
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests;
