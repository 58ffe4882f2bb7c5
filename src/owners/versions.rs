//! The owned journeys' requests per version (Kafka stage 2), merged from the `versions`
//! entries of their partials ([`crate::partial`]), for the deployments the deriver
//! updates: the owner sees every instance's requests of a journey, where a worker's
//! [`crate::versions::VersionTable`] sees only its own.
//!
//! Counts add as integers and first/last seen merge by min/max, so any order of the
//! partials gives the same figures. Bounded like one instance: at most
//! `deployments.max_versions` versions per journey; a new one past that pushes out the
//! least recently seen, counted in `cerflow_deployment_versions_evicted_total`.

use crate::internal_events::{InternalEvent, VersionEvicted};
use crate::journey::JourneyInfo;
use crate::proto::aggregates as pb;
use crate::snapshot::VersionSnap;
use crate::telemetry::Telemetry;
use crate::window::Counts;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

struct Version {
    name: Arc<str>,
    counts: Counts,
    first_seen_ns: u64,
    last_seen_ns: u64,
}

struct Owned {
    journey: Arc<JourneyInfo>,
    /// The aggregates partition its partials come from.
    partition: i32,
    versions: Vec<Version>,
}

#[derive(Default)]
pub struct OwnedVersions {
    journeys: HashMap<Arc<str>, Owned>,
}

impl OwnedVersions {
    /// Merges the version entries of one message from `partition`.
    pub fn merge(
        &mut self,
        journey: &Arc<JourneyInfo>,
        partition: i32,
        m: &pb::JourneyPartial,
        max_versions: usize,
        tel: &Telemetry,
    ) {
        if m.versions.is_empty() {
            return;
        }
        let owned = self
            .journeys
            .entry(journey.name.clone())
            .or_insert_with(|| Owned {
                journey: journey.clone(),
                partition,
                versions: Vec::new(),
            });
        owned.partition = partition;
        let list = &mut owned.versions;
        for v in &m.versions {
            let counts = crate::partial::decode_counts(v.counts.as_ref());
            let i = match list.iter().position(|e| *e.name == *v.version) {
                Some(i) => i,
                None => {
                    if list.len() >= max_versions.max(1) {
                        if let Some((oldest, _)) =
                            list.iter().enumerate().min_by_key(|(_, e)| e.last_seen_ns)
                        {
                            let gone = list.swap_remove(oldest);
                            VersionEvicted {
                                journey: journey.id,
                                version: &gone.name,
                            }
                            .emit(tel);
                        }
                    }
                    list.push(Version {
                        name: Arc::from(v.version.as_str()),
                        counts: Counts::default(),
                        first_seen_ns: v.first_seen_unix_ns,
                        last_seen_ns: v.last_seen_unix_ns,
                    });
                    list.len() - 1
                }
            };
            let e = &mut list[i];
            crate::partial::add_counts(&mut e.counts, &counts);
            e.first_seen_ns = e.first_seen_ns.min(v.first_seen_unix_ns);
            e.last_seen_ns = e.last_seen_ns.max(v.last_seen_unix_ns);
        }
    }

    /// Forgets the journeys of revoked `partitions` (their new owner rebuilds them).
    pub fn revoke(&mut self, partitions: &[i32]) {
        self.journeys
            .retain(|_, o| !partitions.contains(&o.partition));
    }

    /// After a reload: keeps the journeys still configured, pointing at their new
    /// definitions (`find`: the new definition of an old one).
    pub fn retain(&mut self, find: &dyn Fn(&JourneyInfo) -> Option<Arc<JourneyInfo>>) {
        self.journeys.retain(|_, o| match find(&o.journey) {
            Some(j) => {
                o.journey = j;
                true
            }
            None => false,
        });
    }

    /// The versions of the journeys of `caught_up` partitions, as a worker's table
    /// hands them to the deriver.
    pub fn snapshot(&self, caught_up: &BTreeSet<i32>, out: &mut Vec<VersionSnap>) {
        for o in self
            .journeys
            .values()
            .filter(|o| caught_up.contains(&o.partition))
        {
            for v in &o.versions {
                out.push(VersionSnap {
                    journey: o.journey.clone(),
                    version: v.name.clone(),
                    counts: v.counts,
                    first_seen_ns: v.first_seen_ns,
                    last_seen_ns: v.last_seen_ns,
                });
            }
        }
    }
}
