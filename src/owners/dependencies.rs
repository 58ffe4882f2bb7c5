//! The owned journeys' dependency calls and blame (Kafka stage 2), merged from the
//! `dependencies` and `self_blame` entries of their partials ([`crate::partial`]).
//!
//! Calls are kept as a series without cohort per journey x dependency, and blame as a
//! count per window sub-bucket, like a worker's trace assembly keeps them, so the
//! deriver merges them exactly as it merges the workers' ([`crate::sli`]). Counts add
//! as integers whatever the order of the partials; a retraction (a trace whose
//! attribution changed after a barrier published it) is subtracted right after the
//! adds of its entry.
//!
//! Bounded like one instance: at most `dependencies.max_per_journey` named series per
//! journey; calls to further names go to the journey's overflow series, as the
//! publishers' own overflow series do.

use super::Layout;
use crate::journey::JourneyInfo;
use crate::proto::aggregates as pb;
use crate::snapshot::{DependencySnap, DependencyWindow, SelfBlameSnap};
use crate::window::{Blame, SeriesState};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

struct Dep {
    journey: Arc<JourneyInfo>,
    name: Arc<str>,
    overflow: bool,
    partition: i32,
    calls: SeriesState,
    blame: Blame,
}

struct SelfBlame {
    journey: Arc<JourneyInfo>,
    partition: i32,
    blame: Blame,
}

/// (journey, dependency name or "" for the overflow series, overflow).
type Key = (Arc<str>, Arc<str>, bool);

#[derive(Default)]
pub struct OwnedDependencies {
    deps: HashMap<Key, Dep>,
    selfs: HashMap<Arc<str>, SelfBlame>,
}

impl OwnedDependencies {
    /// Merges the dependency and self-blame entries of one message from `partition`;
    /// returns the sub-buckets dropped as late or future.
    pub fn merge(
        &mut self,
        journey: &Arc<JourneyInfo>,
        partition: i32,
        m: &pb::JourneyPartial,
        layout: &Layout,
        now_ns: u64,
    ) -> Result<u64, String> {
        let mut dropped = 0;
        let new_dep = |name: &str, overflow: bool| Dep {
            journey: journey.clone(),
            name: Arc::from(name),
            overflow,
            partition,
            calls: SeriesState::new(
                &layout.window_ns,
                layout.sub_buckets,
                layout.n_bounds,
                now_ns,
            ),
            blame: Blame::new(&layout.window_ns, layout.sub_buckets, now_ns),
        };
        for d in &m.dependencies {
            let named = !d.overflow && !d.name.is_empty();
            let key: Key = (journey.name.clone(), Arc::from(d.name.as_str()), false);
            let admitted = named
                && (self.deps.contains_key(&key)
                    || self
                        .deps
                        .keys()
                        .filter(|k| k.0 == journey.name && !k.2)
                        .count()
                        < layout.max_dependencies);
            let key = if admitted {
                key
            } else {
                (journey.name.clone(), Arc::from(""), true)
            };
            let dep = self
                .deps
                .entry(key)
                .or_insert_with(|| new_dep(if admitted { &d.name } else { "" }, !admitted));
            dep.partition = partition;
            dropped += crate::partial::merge_dependency(&mut dep.calls, &mut dep.blame, d, now_ns)?;
        }
        for b in &m.self_blame {
            let s = self
                .selfs
                .entry(journey.name.clone())
                .or_insert_with(|| SelfBlame {
                    journey: journey.clone(),
                    partition,
                    blame: Blame::new(&layout.window_ns, layout.sub_buckets, now_ns),
                });
            s.partition = partition;
            dropped += crate::partial::merge_self_blame(&mut s.blame, b, now_ns)?;
        }
        Ok(dropped)
    }

    /// Forgets the journeys of revoked `partitions` (their new owner rebuilds them).
    pub fn revoke(&mut self, partitions: &[i32], dropped: &mut BTreeSet<Arc<str>>) {
        self.deps.retain(|_, d| {
            let keep = !partitions.contains(&d.partition);
            if !keep {
                dropped.insert(d.journey.name.clone());
            }
            keep
        });
        self.selfs.retain(|_, s| !partitions.contains(&s.partition));
    }

    /// After a reload: keeps the journeys still configured, pointing at their new
    /// definitions (`find`: the new definition of an old one).
    pub fn retain(&mut self, find: &dyn Fn(&JourneyInfo) -> Option<Arc<JourneyInfo>>) {
        self.deps.retain(|_, d| match find(&d.journey) {
            Some(j) => {
                d.journey = j;
                true
            }
            None => false,
        });
        self.selfs.retain(|_, s| match find(&s.journey) {
            Some(j) => {
                s.journey = j;
                true
            }
            None => false,
        });
    }

    /// The dependency series and self blame of the journeys of `caught_up` partitions at
    /// `now_ns`, as a worker's trace assembly hands them to the deriver (a partition still
    /// being re-read shows none, as its series show none); those idle for `ttl_ns` expire
    /// first.
    pub fn snapshot(
        &mut self,
        caught_up: &BTreeSet<i32>,
        now_ns: u64,
        ttl_ns: u64,
    ) -> (Vec<DependencySnap>, Vec<SelfBlameSnap>) {
        let idle = |last: u64| now_ns.saturating_sub(last) >= ttl_ns;
        self.deps
            .retain(|_, d| !idle(d.calls.last_update_unix_ns.max(d.blame.last_unix_ns)));
        self.selfs.retain(|_, s| !idle(s.blame.last_unix_ns));
        let deps = self
            .deps
            .values()
            .filter(|d| caught_up.contains(&d.partition))
            .map(|d| DependencySnap {
                journey: d.journey.clone(),
                name: d.name.clone(),
                overflow: d.overflow,
                totals: d.calls.totals,
                duration_sum_s: d.calls.duration_sum_s,
                buckets: d.calls.buckets.clone(),
                created_unix_ns: d.calls.created_unix_ns,
                blamed_total: d.blame.total,
                windows: (0..d.calls.windows.len())
                    .map(|w| {
                        let (counts, hists) = d.calls.windows[w].live_counts_and_hists(now_ns);
                        DependencyWindow {
                            counts,
                            hists,
                            blamed: d.blame.window(w, now_ns),
                        }
                    })
                    .collect(),
            })
            .collect();
        let selfs = self
            .selfs
            .values()
            .filter(|s| caught_up.contains(&s.partition))
            .map(|s| SelfBlameSnap {
                journey: s.journey.clone(),
                total: s.blame.total,
                created_unix_ns: s.blame.created_unix_ns,
                windows: (0..s.blame.windows.len())
                    .map(|w| s.blame.window(w, now_ns))
                    .collect(),
            })
            .collect();
        (deps, selfs)
    }
}
