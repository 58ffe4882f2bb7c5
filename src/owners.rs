//! Stage 2's owner state (issue 13): the window state of the journeys this instance
//! owns, built only from the partial aggregates of the aggregates topic, and the seam
//! through which other parts follow ownership.
//!
//! Why no request is counted twice or lost on an owner:
//! - With `receivers.kafka.aggregates`, the workers' journey series hold only what was
//!   recorded since the last barrier: each barrier moves it out into partials
//!   ([`crate::partial::take_series`]) and publishes it in the transaction that commits
//!   the input offsets. The deriver does not read the workers' journey series in this
//!   mode (it would count this instance's spans a second time); it reads [`Owners`].
//! - [`Owners`] is fed only by committed partials of the partitions the owners' group
//!   gave this instance ([`crate::receiver::kafka::owners`]), each read once, in order,
//!   from the partition's start; a partition taken away drops its journeys, and its new
//!   owner reads the same partials from the same start. Every partial holds each span
//!   of a committed transaction exactly once (`transactions.rs`), and a journey's
//!   partials all land in one partition (keyed by journey), so one owner merges all of
//!   them and no other merges any.
//! - Merges add integers (counts in sampling units, histogram bins) and take unions of
//!   user sketches, so the owner's figures are bit-identical to one instance's whatever
//!   the split of spans between publishers and the order of their partials; f64 sums
//!   (latency, values) differ only in rounding.
//!
//! Telemetry coverage is owned the same way, though it belongs to no journey: every
//! publisher's coverage goes to one aggregates partition ([`crate::partial::COVERAGE_KEY`]),
//! and the instance that owns it merges it per partition and alone has it in its
//! snapshot (only once that partition is re-read, like a journey's series); the other
//! instances' snapshots hold no coverage, so they export no ratio.
//!
//! A journey derived by `auto_journeys` on the instance that saw its spans is adopted
//! by its owner ([`Journeys::adopt`]: made as if derived here, split into service and
//! span name where the publisher joined them (the partial names the service), bounded by
//! `auto_journeys.max`, past which its partials are refused and counted). Partials of a
//! journey this instance's config does not know (another config) are refused and counted.
//!
//! A newly assigned partition's journeys join the snapshot only once the partition is
//! re-read to where it ended at assignment (`caught_up`), together with the long-lived
//! state a [`StateSource`] read for them (a new owner's changelog): the deriver sees
//! either neither or both in one snapshot, taken under one lock. Shown earlier, a tick
//! would derive from the oldest partials alone, without their restored incidents, and
//! open an incident anew; restored earlier, a tick seeing only the oldest partials
//! would close the restored one.

use crate::internal_events::{
    InternalEvent, KafkaJourneyNotAdopted, KafkaPartialRefused, KafkaPartialsMerged,
    KafkaStateRefused, StateRefusal,
};
use crate::journey::{JourneyInfo, Journeys, NotAdopted};
use crate::receiver::kafka::owners::PartialSink;
use crate::snapshot::{SeriesSnap, ShardSnapshot, QUANTILES};
use crate::telemetry::Telemetry;
use crate::window::{Coverage, Ring, SeriesState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Called when the set of owned aggregates partitions changes (on the owners'
/// consumer thread), with the partitions that changed: the seam for state that follows
/// ownership (a flush on `revoked`).
pub trait OwnershipListener: Send + Sync {
    fn assigned(&self, partitions: &[i32]);
    fn revoked(&self, partitions: &[i32]);
}

/// Journey -> (its partition, its long-lived state record, opaque here).
pub type StateRecords = BTreeMap<String, (i32, Vec<u8>)>;

/// Reads the long-lived state of newly assigned partitions' journeys (the changelog:
/// `crate::kstate::restore`), on the owners' consumer thread, before any partial of
/// the assignment is merged; [`Owners`] holds it until the partitions are re-read.
pub trait StateSource: Send + Sync {
    fn read(&self, partitions: &[i32]) -> StateRecords;
}

/// What the deriver takes each tick: the owned series of the re-read partitions, and
/// the state records of the partitions re-read since the last tick, to restore before
/// this snapshot is evaluated.
pub struct OwnedSnapshot {
    pub shard: ShardSnapshot,
    pub restored: StateRecords,
}

/// Window layout the owner's series are made with: the same as the workers'.
#[derive(Debug, Clone)]
pub struct Layout {
    pub window_ns: Vec<u64>,
    pub sub_buckets: u32,
    pub n_bounds: usize,
    pub ttl_ns: u64,
    /// `dependencies.max_per_journey`: named dependency series per owned journey.
    pub max_dependencies: usize,
    /// `deployments.max_versions`: versions kept per owned journey.
    pub max_versions: usize,
}

/// One journey x cohort series merged from partials.
struct Owned {
    journey: Arc<JourneyInfo>,
    cohort: Arc<[Box<str>]>,
    overflow: bool,
    from_metrics: bool,
    /// The aggregates partition its partials come from.
    partition: i32,
    state: SeriesState,
}

/// (journey name, cohort values, overflow, from metrics).
type Key = (Arc<str>, Vec<Box<str>>, bool, bool);

#[derive(Default)]
struct Inner {
    series: HashMap<Key, Owned>,
    partitions: BTreeSet<i32>,
    /// Journeys dropped by a revoke since the deriver last asked: their series are built
    /// again from the partition's start if it comes back, so what was counted from them
    /// must be forgotten, not counted a second time.
    dropped: BTreeSet<Arc<str>>,
    /// The owned journeys' dependency calls and blame.
    deps: dependencies::OwnedDependencies,
    /// The owned journeys' requests per version, for the deployments.
    versions: versions::OwnedVersions,
    /// Telemetry coverage merged from each owned partition that has any (one, unless
    /// the topic's partition count changed): rings per window.
    coverage: BTreeMap<i32, Vec<Ring<Coverage>>>,
    /// Owned partitions re-read to their end at assignment: only their series are in
    /// the snapshot (see the module's header).
    caught_up: BTreeSet<i32>,
    /// State records of owned partitions not yet caught up, for the snapshot that
    /// first holds their partition.
    held: StateRecords,
}

impl Inner {
    /// Drops the held records of `partitions`, counted and logged: their new owner
    /// reads them again.
    fn drop_held(&mut self, partitions: &[i32], tel: &Telemetry) {
        self.held.retain(|journey, (p, _)| {
            let keep = !partitions.contains(p);
            if !keep {
                KafkaStateRefused {
                    reason: StateRefusal::Revoked,
                    journey,
                    detail: &format!("partition {p} was revoked before its re-read ended"),
                }
                .emit(tel);
            }
            keep
        });
    }
}

/// The owned journeys' state; shared by the owners' consumer (merges) and the deriver
/// (a snapshot each tick).
pub struct Owners {
    inner: Mutex<Inner>,
    journeys: Mutex<Arc<Journeys>>,
    layout: Layout,
    listeners: Mutex<Vec<Arc<dyn OwnershipListener>>>,
    source: Mutex<Option<Arc<dyn StateSource>>>,
    tel: Arc<Telemetry>,
}

impl Owners {
    pub fn new(layout: Layout, journeys: Arc<Journeys>, tel: Arc<Telemetry>) -> Owners {
        Owners {
            inner: Mutex::default(),
            journeys: Mutex::new(journeys),
            layout,
            listeners: Mutex::default(),
            source: Mutex::default(),
            tel,
        }
    }

    /// Adds a listener for ownership changes (see [`OwnershipListener`]).
    pub fn listen(&self, l: Arc<dyn OwnershipListener>) {
        lock(&self.listeners).push(l);
    }

    /// Where newly assigned partitions' long-lived state is read (see [`StateSource`]).
    pub fn restore_from(&self, s: Arc<dyn StateSource>) {
        *lock(&self.source) = Some(s);
    }

    /// After a config reload: partials are matched to the new journeys by name.
    pub fn set_journeys(&self, journeys: Arc<Journeys>) {
        let mut inner = lock(&self.inner);
        // A journey that went with the reload takes its series with it; a kept one
        // points at its new definition.
        let find = |j: &JourneyInfo| journeys.adopt(&j.name, j.derived_service()).ok();
        inner.deps.retain(&find);
        inner.versions.retain(&find);
        inner.series.retain(|_, s| match find(&s.journey) {
            Some(j) => {
                s.journey = j.clone();
                true
            }
            None => false,
        });
        *lock(&self.journeys) = journeys;
    }

    /// The aggregates partitions this instance owns now.
    pub fn owned_partitions(&self) -> BTreeSet<i32> {
        lock(&self.inner).partitions.clone()
    }

    /// The journeys this instance owns now (those it has merged partials of).
    pub fn owned_journeys(&self) -> BTreeSet<Arc<str>> {
        lock(&self.inner)
            .series
            .values()
            .map(|s| s.journey.name.clone())
            .collect()
    }

    /// The journeys a revoke dropped since the last call (see `Inner::dropped`).
    pub fn take_dropped(&self) -> BTreeSet<Arc<str>> {
        std::mem::take(&mut lock(&self.inner).dropped)
    }

    /// Merges one message of the aggregates topic from `partition` at `now_ns`.
    pub fn merge(&self, partition: i32, bytes: &[u8], now_ns: u64) -> Result<(), String> {
        let m = crate::partial::decode(bytes)?;
        if m.journey.is_empty() {
            return self.merge_coverage(partition, &m, now_ns);
        }
        if !m.coverage.is_empty() {
            // Elsewhere than under its own key it could be in any partition, and two
            // owners would each derive a share.
            return Err(format!(
                "the partial of journey {:?} carries coverage, which travels only in messages of its own",
                m.journey
            ));
        }
        let service = (!m.derived_service.is_empty()).then_some(m.derived_service.as_str());
        let journey = adopt(&lock(&self.journeys), &m.journey, service, &self.tel)?;
        let mut inner = lock(&self.inner);
        if !inner.partitions.contains(&partition) {
            return Err(format!("partition {partition} is not owned here"));
        }
        let mut late = 0;
        for p in &m.series {
            let key: Key = (
                journey.name.clone(),
                p.cohort.iter().map(|c| Box::from(c.as_str())).collect(),
                p.overflow,
                p.from_metrics,
            );
            let layout = &self.layout;
            let owned = inner.series.entry(key).or_insert_with(|| Owned {
                journey: journey.clone(),
                cohort: p.cohort.iter().map(|c| Box::from(c.as_str())).collect(),
                overflow: p.overflow,
                from_metrics: p.from_metrics,
                partition,
                state: SeriesState::new(
                    &layout.window_ns,
                    layout.sub_buckets,
                    layout.n_bounds,
                    now_ns,
                ),
            });
            owned.partition = partition;
            let merged = crate::partial::merge_series(&mut owned.state, p, now_ns)?;
            late += merged.late + merged.future;
        }
        late += inner
            .deps
            .merge(&journey, partition, &m, &self.layout, now_ns)?;
        inner
            .versions
            .merge(&journey, partition, &m, self.layout.max_versions, &self.tel);
        KafkaPartialsMerged {
            sub_buckets_dropped: late,
        }
        .emit(&self.tel);
        Ok(())
    }

    /// A coverage message (empty journey): nothing but coverage, checked whole first.
    fn merge_coverage(
        &self,
        partition: i32,
        m: &crate::proto::aggregates::JourneyPartial,
        now_ns: u64,
    ) -> Result<(), String> {
        let other = !m.series.is_empty()
            || !m.dependencies.is_empty()
            || !m.self_blame.is_empty()
            || !m.versions.is_empty();
        if other || m.coverage.is_empty() {
            return Err("a partial names no journey and holds more or less than coverage".into());
        }
        let mut inner = lock(&self.inner);
        if !inner.partitions.contains(&partition) {
            return Err(format!("partition {partition} is not owned here"));
        }
        let layout = &self.layout;
        let rings = inner.coverage.entry(partition).or_insert_with(|| {
            layout
                .window_ns
                .iter()
                .map(|&w| Ring::new(w, layout.sub_buckets))
                .collect()
        });
        // Checked whole before any is added: a scratch copy, so a refused entry leaves
        // the rings as they were.
        let mut merged = rings.clone();
        let mut dropped = 0;
        for c in &m.coverage {
            dropped += crate::partial::merge_coverage(&mut merged, c, now_ns)?;
        }
        *rings = merged;
        KafkaPartialsMerged {
            sub_buckets_dropped: dropped,
        }
        .emit(&self.tel);
        Ok(())
    }

    /// The owned series of the re-read partitions as one more shard for the deriver, at
    /// `now_ns`, with the state records of those partitions not handed over before;
    /// series that merged nothing for `windows.series_ttl` expire, as a worker's do.
    pub fn snapshot(&self, now_ns: u64) -> OwnedSnapshot {
        let mut inner = lock(&self.inner);
        let ttl = self.layout.ttl_ns;
        inner
            .series
            .retain(|_, s| now_ns.saturating_sub(s.state.last_update_unix_ns) < ttl);
        let Inner {
            series,
            caught_up,
            held,
            deps,
            versions,
            coverage,
            ..
        } = &mut *inner;
        let (ready, waiting): (StateRecords, StateRecords) = std::mem::take(held)
            .into_iter()
            .partition(|(_, (p, _))| caught_up.contains(p));
        *held = waiting;
        let (mut scratch, mut q) = (Vec::new(), Vec::new());
        let mut out = ShardSnapshot {
            coverage: vec![Coverage::default(); self.layout.window_ns.len()],
            ..Default::default()
        };
        for (_, rings) in coverage.iter().filter(|(p, _)| caught_up.contains(p)) {
            for (acc, ring) in out.coverage.iter_mut().zip(rings) {
                ring.live(now_ns).for_each(|c| acc.add(c));
            }
        }
        for s in series.values().filter(|s| caught_up.contains(&s.partition)) {
            let windows = (0..s.state.windows.len())
                .map(|w| {
                    s.state
                        .window_stats(w, now_ns, &QUANTILES, &mut scratch, &mut q)
                })
                .collect();
            out.state_bytes += s.state.heap_bytes();
            out.series.push(SeriesSnap {
                journey: s.journey.clone(),
                cohort: s.cohort.clone(),
                overflow: s.overflow,
                from_metrics: s.from_metrics,
                totals: s.state.totals,
                duration_sum_s: s.state.duration_sum_s,
                value_total: s.state.value_total,
                value_failed: s.state.value_failed,
                buckets: s.state.buckets.clone(),
                created_unix_ns: s.state.created_unix_ns,
                windows,
                exemplars: None,
                frustrations: s.state.frustrations.clone(),
            });
        }
        (out.dependencies, out.self_blame) = deps.snapshot(caught_up, now_ns, ttl);
        versions.snapshot(caught_up, &mut out.versions);
        OwnedSnapshot {
            shard: out,
            restored: ready,
        }
    }
}

/// The journey of a partial, adopted if another instance derived it; past the bound,
/// counted (the caller counts the refusal).
fn adopt(
    journeys: &Journeys,
    name: &str,
    service: Option<&str>,
    tel: &Telemetry,
) -> Result<Arc<JourneyInfo>, String> {
    journeys.adopt(name, service).map_err(|e| match e {
        NotAdopted::Unknown => format!("journey {name:?} is not in this instance's config"),
        NotAdopted::Full => {
            KafkaJourneyNotAdopted { journey: name }.emit(tel);
            format!("journey {name:?} is past auto_journeys.max here")
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PartialSink for Owners {
    fn assigned(&self, partitions: &[i32]) {
        {
            let mut inner = lock(&self.inner);
            inner.partitions.extend(partitions.iter().copied());
            // Re-read from the start, whatever was read before.
            inner.caught_up.retain(|p| !partitions.contains(p));
            inner.coverage.retain(|p, _| !partitions.contains(p));
            inner.drop_held(partitions, &self.tel);
            self.tel.kafka.owned_partitions.store(
                inner.partitions.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        for l in lock(&self.listeners).iter() {
            l.assigned(partitions);
        }
        let source = lock(&self.source).clone();
        if let Some(source) = source {
            // Read outside the lock (it takes a while), but before this assignment's
            // first partial: the consumer thread is here.
            let read = source.read(partitions);
            let mut inner = lock(&self.inner);
            for (journey, (p, v)) in read {
                if inner.partitions.contains(&p) && !inner.caught_up.contains(&p) {
                    inner.held.insert(journey, (p, v));
                } else {
                    KafkaStateRefused {
                        reason: StateRefusal::Revoked,
                        journey: &journey,
                        detail: &format!("read for partition {p}, which is not being re-read here"),
                    }
                    .emit(&self.tel);
                }
            }
        }
    }

    fn revoked(&self, partitions: &[i32]) {
        for l in lock(&self.listeners).iter() {
            l.revoked(partitions);
        }
        let mut inner = lock(&self.inner);
        let Inner {
            series,
            dropped,
            deps,
            versions,
            ..
        } = &mut *inner;
        deps.revoke(partitions, dropped);
        versions.revoke(partitions);
        series.retain(|_, s| {
            let keep = !partitions.contains(&s.partition);
            if !keep {
                dropped.insert(s.journey.name.clone());
            }
            keep
        });
        for p in partitions {
            inner.partitions.remove(p);
            inner.caught_up.remove(p);
            inner.coverage.remove(p);
        }
        inner.drop_held(partitions, &self.tel);
        self.tel.kafka.owned_partitions.store(
            inner.partitions.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn caught_up(&self, partitions: &[i32]) {
        let mut inner = lock(&self.inner);
        let Inner {
            partitions: owned,
            caught_up,
            ..
        } = &mut *inner;
        caught_up.extend(partitions.iter().filter(|p| owned.contains(p)));
    }

    fn partial(&self, partition: i32, bytes: &[u8]) {
        if let Err(e) = self.merge(partition, bytes, crate::clock::now_unix_ns()) {
            KafkaPartialRefused { detail: &e }.emit(&self.tel);
        }
    }
}

mod dependencies;
mod versions;

#[cfg(test)]
mod tests;
