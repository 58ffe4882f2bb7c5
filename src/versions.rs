//! Record: the requests of each version of each journey (`deployments.version_key`),
//! since cerflow started, as one worker saw them. A version is not a series (it does not
//! split the windows or the exposition); these counters only feed the deployments, which
//! derive compares. Each journey keeps at most `deployments.max_versions` versions per
//! worker: a new one past that pushes out the least recently seen, counted in
//! `cerflow_deployment_versions_evicted_total`.
//!
//! In Kafka stage 2 the counts an evicted version recorded since the last barrier are
//! not yet with its owner: they are held ([`VersionTable::take_partials`] publishes them
//! at the next barrier), at most `deployments.max_versions` held versions per journey;
//! past that one is lost, counted in `cerflow_deployment_version_requests_lost_total`.

use crate::internal_events::{InternalEvent, VersionDeltaLost, VersionEvicted};
use crate::journey::Journeys;
use crate::proto::aggregates as pb;
use crate::snapshot::VersionSnap;
use crate::span_record::JourneyId;
#[cfg(test)]
use crate::telemetry::AddRelaxed;
use crate::telemetry::Telemetry;
use crate::window::Counts;
use std::collections::HashMap;

struct Entry {
    version: Box<str>,
    counts: Counts,
    /// What Kafka stage 2 already published of `counts` ([`VersionTable::take_partials`]).
    published: Counts,
    first_seen_ns: u64,
    last_seen_ns: u64,
}

/// What an evicted version recorded since the last barrier, held for the next one.
struct Held {
    version: Box<str>,
    delta: Counts,
    first_seen_ns: u64,
    last_seen_ns: u64,
}

pub struct VersionTable {
    max_per_journey: usize,
    /// Kafka stage 2: evicted versions' unpublished counts are held for the next take.
    hold_evicted: bool,
    held: HashMap<JourneyId, Vec<Held>, ahash::RandomState>,
    /// Each journey's versions, in the order the journeys came.
    lists: Vec<(JourneyId, Vec<Entry>)>,
    /// Where a journey's list is in `lists`: hashed by a multiply ([`JourneyHash`]), not
    /// SipHash (~150 instructions a span) nor ahash (~25); journey ids are not chosen by
    /// senders.
    index: HashMap<JourneyId, u32, JourneyHash>,
    /// The place of the version a journey last recorded, by journey id modulo [`MEMO`]:
    /// a journey's spans mostly carry the version its spans before carried, and a hit
    /// skips the table and the scan (~120 instructions a span down to ~25). A place is
    /// only trusted after the journey and the version compare equal, and a version is in
    /// a journey's list at most once, so a stale place (after an eviction moved entries)
    /// is a miss, never a wrong entry; `remap`, which moves the lists, clears them.
    memo: [Memo; MEMO],
}

/// Places remembered by [`VersionTable::record`]: a journey id's low bits pick one.
const MEMO: usize = 8;

#[derive(Clone, Copy)]
struct Memo {
    /// `NO_MEMO` when empty.
    journey: JourneyId,
    list: u32,
    entry: u32,
}

const NO_MEMO: Memo = Memo {
    journey: JourneyId::MAX,
    list: u32::MAX,
    entry: u32::MAX,
};

/// Hashing for maps keyed by journey id: small dense numbers that senders do not
/// choose, so one multiply spreads them (the table takes its tag from the high bits,
/// its bucket from the low ones: both come out mixed).
#[derive(Default, Clone, Copy)]
pub struct JourneyHash;

impl std::hash::BuildHasher for JourneyHash {
    type Hasher = JourneyHasher;
    fn build_hasher(&self) -> JourneyHasher {
        JourneyHasher(0)
    }
}

pub struct JourneyHasher(u64);

impl std::hash::Hasher for JourneyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u32 keys are hashed here; anything else still gets every byte mixed in.
        self.0 = crate::mix::mix_bytes(self.0, bytes);
    }
    fn write_u32(&mut self, n: u32) {
        let x = (self.0 ^ u64::from(n)).wrapping_mul(crate::mix::GOLDEN);
        // The high half mixed down as well: the low bits of a product depend only on the
        // low bits of the id.
        self.0 = x ^ (x >> 32);
    }
}

/// The [`VersionTable`] memo slot of a journey's last version.
#[inline(always)]
fn memo_slot(journey: JourneyId) -> usize {
    journey as usize % MEMO
}

impl VersionTable {
    /// `publishes`: Kafka stage 2, where [`VersionTable::take_partials`] is called at
    /// each barrier (and an evicted version's unpublished counts must wait for it).
    pub fn new(max_per_journey: usize, publishes: bool) -> VersionTable {
        VersionTable {
            max_per_journey: max_per_journey.max(1),
            hold_evicted: publishes,
            held: HashMap::default(),
            lists: Vec::new(),
            index: HashMap::default(),
            memo: [NO_MEMO; MEMO],
        }
    }

    /// Counts one span of `version` (`weight`: its adjusted count in units): the place
    /// the journey's last version had, else a linear scan over a handful of versions, and
    /// an allocation only for a version this worker has not seen.
    #[inline]
    pub fn record(
        &mut self,
        journey: JourneyId,
        version: &str,
        flags: u8,
        weight: u64,
        now: u64,
        tel: &Telemetry,
    ) {
        let slot = memo_slot(journey);
        let m = self.memo[slot];
        if m.journey == journey {
            let hit = self
                .lists
                .get_mut(m.list as usize)
                .and_then(|(_, list)| list.get_mut(m.entry as usize))
                .filter(|e| crate::span::same(e.version.as_bytes(), version.as_bytes()));
            if let Some(entry) = hit {
                entry.counts.add_weighted(flags, weight);
                entry.last_seen_ns = now;
                return;
            }
        }
        self.record_slow(journey, version, flags, weight, now, tel);
    }

    /// [`VersionTable::record`] past its remembered place: apart, so that the common
    /// path is a small function (its frame set-up alone cost ~15 instructions a span).
    #[inline(never)]
    fn record_slow(
        &mut self,
        journey: JourneyId,
        version: &str,
        flags: u8,
        weight: u64,
        now: u64,
        tel: &Telemetry,
    ) {
        let slot = memo_slot(journey);
        let at = match self.index.get(&journey) {
            Some(&at) => at as usize,
            None => {
                self.lists.push((journey, Vec::new()));
                let at = self.lists.len() - 1;
                self.index.insert(journey, at as u32);
                at
            }
        };
        let Some((_, list)) = self.lists.get_mut(at) else {
            return;
        };
        // Compared inline (`same`): versions are short, and a `memcmp` call cost more.
        let i = match list
            .iter()
            .position(|e| crate::span::same(e.version.as_bytes(), version.as_bytes()))
        {
            Some(i) => i,
            None => {
                if list.len() >= self.max_per_journey {
                    if let Some((oldest, _)) =
                        list.iter().enumerate().min_by_key(|(_, e)| e.last_seen_ns)
                    {
                        let gone = list.swap_remove(oldest);
                        VersionEvicted {
                            journey,
                            version: &gone.version,
                        }
                        .emit(tel);
                        if self.hold_evicted && gone.counts != gone.published {
                            let held = self.held.entry(journey).or_default();
                            hold(held, gone, self.max_per_journey, journey, tel);
                        }
                    }
                }
                list.push(Entry {
                    version: version.into(),
                    counts: Counts::default(),
                    published: Counts::default(),
                    first_seen_ns: now,
                    last_seen_ns: now,
                });
                list.len() - 1
            }
        };
        if let Some(entry) = list.get_mut(i) {
            entry.counts.add_weighted(flags, weight);
            entry.last_seen_ns = now;
            self.memo[slot] = Memo {
                journey,
                list: at as u32,
                entry: i as u32,
            };
        }
    }

    /// Carries the counts over a config reload; journeys that went are dropped.
    pub fn remap(&mut self, map: &dyn Fn(JourneyId) -> Option<JourneyId>) {
        self.memo = [NO_MEMO; MEMO];
        self.index.clear();
        let old = std::mem::take(&mut self.lists);
        for (id, list) in old {
            let Some(new) = map(id) else {
                continue;
            };
            // Two journeys mapped to one id: the later list wins, as a map's insert did.
            match self.index.get(&new) {
                Some(&at) => {
                    if let Some(slot) = self.lists.get_mut(at as usize) {
                        slot.1 = list;
                    }
                }
                None => {
                    self.index.insert(new, self.lists.len() as u32);
                    self.lists.push((new, list));
                }
            }
        }
        self.held = std::mem::take(&mut self.held)
            .into_iter()
            .filter_map(|(id, list)| map(id).map(|new| (new, list)))
            .collect();
    }

    /// Kafka stage 2: what each version recorded since the last take, as partials for
    /// the journey's owner; the local counts stay (deltas are taken against what was
    /// published). The held deltas of versions evicted since the last take go too: the
    /// owner adds them like any other, so an eviction loses none of the requests this
    /// instance accepted (the owner's own `max_versions` bounds what it remembers).
    pub fn take_partials(&mut self, out: &mut Vec<(JourneyId, pb::VersionPartial)>) {
        for (id, list) in self.held.drain() {
            for h in list {
                out.push((
                    id,
                    pb::VersionPartial {
                        version: h.version.into(),
                        counts: Some(crate::partial::encode_counts(&h.delta)),
                        first_seen_unix_ns: h.first_seen_ns,
                        last_seen_unix_ns: h.last_seen_ns,
                    },
                ));
            }
        }
        for (id, list) in &mut self.lists {
            for e in list.iter_mut() {
                if e.counts == e.published {
                    continue;
                }
                let mut delta = e.counts;
                crate::partial::sub_counts(&mut delta, &e.published);
                e.published = e.counts;
                out.push((
                    *id,
                    pb::VersionPartial {
                        version: e.version.to_string(),
                        counts: Some(crate::partial::encode_counts(&delta)),
                        first_seen_unix_ns: e.first_seen_ns,
                        last_seen_unix_ns: e.last_seen_ns,
                    },
                ));
            }
        }
    }

    /// The versions of `journey` (for tests).
    #[cfg(test)]
    fn list(&self, journey: JourneyId) -> &[Entry] {
        self.index
            .get(&journey)
            .and_then(|&at| self.lists.get(at as usize))
            .map_or(&[][..], |(_, list)| list)
    }

    /// Versions held for the next take (for tests and the bound).
    #[cfg(test)]
    fn held_len(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    pub fn snapshot(&self, journeys: &Journeys, out: &mut Vec<VersionSnap>) {
        for (id, list) in &self.lists {
            let Some(journey) = journeys.get(*id) else {
                continue;
            };
            for e in list {
                out.push(VersionSnap {
                    journey: journey.clone(),
                    version: e.version.as_ref().into(),
                    counts: e.counts,
                    first_seen_ns: e.first_seen_ns,
                    last_seen_ns: e.last_seen_ns,
                });
            }
        }
    }
}

/// Holds what `gone` recorded since the last take: added to the version's held entry if
/// it was evicted before (a version can come back and go again between barriers), else
/// a new entry while the journey holds fewer than `max`; past that the delta is lost
/// and counted (a burst of more new versions than `max` in one interval).
fn hold(held: &mut Vec<Held>, gone: Entry, max: usize, journey: JourneyId, tel: &Telemetry) {
    let mut delta = gone.counts;
    crate::partial::sub_counts(&mut delta, &gone.published);
    if let Some(h) = held.iter_mut().find(|h| h.version == gone.version) {
        h.delta.add(&delta);
        h.first_seen_ns = h.first_seen_ns.min(gone.first_seen_ns);
        h.last_seen_ns = h.last_seen_ns.max(gone.last_seen_ns);
    } else if held.len() < max {
        held.push(Held {
            version: gone.version,
            delta,
            first_seen_ns: gone.first_seen_ns,
            last_seen_ns: gone.last_seen_ns,
        });
    } else {
        VersionDeltaLost {
            journey,
            version: &gone.version,
            requests: delta.requests,
        }
        .emit(tel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::UNIT;
    use crate::span_record::flag;

    #[test]
    fn past_the_limit_the_least_recently_seen_version_goes_and_is_counted() {
        let tel = Telemetry::default();
        let mut t = VersionTable::new(2, false);
        t.record(0, "1.0", 0, UNIT, 10, &tel);
        t.record(0, "1.1", flag::ERROR, UNIT, 20, &tel);
        t.record(0, "1.0", flag::SLOW, UNIT, 30, &tel);
        // 1.1 was seen last at 20, 1.0 at 30: 1.1 goes.
        t.record(0, "1.2", 0, UNIT, 40, &tel);
        assert_eq!(tel.deployment_versions_evicted.get(), 1);
        let list = t.list(0);
        let mut seen: Vec<(&str, u64, u64, u64)> = list
            .iter()
            .map(|e| {
                (
                    &*e.version,
                    e.counts.requests,
                    e.counts.slow,
                    e.first_seen_ns,
                )
            })
            .collect();
        seen.sort();
        assert_eq!(seen, [("1.0", 2 * UNIT, UNIT, 10), ("1.2", UNIT, 0, 40)]);
        // One instance publishes nothing: nothing is held for a barrier.
        assert_eq!(t.held_len(), 0);
    }

    /// The remembered place is a shortcut only: journeys that share a memo slot (0 and
    /// 8), versions that alternate, an eviction that moves entries and a remap all count
    /// as the scan alone would.
    #[test]
    fn remembered_places_count_as_the_scan_does() {
        let tel = Telemetry::default();
        let mut t = VersionTable::new(2, false);
        for (j, v, at) in [
            (0, "1.0", 10),
            (8, "1.0", 11),
            (0, "1.0", 12),
            (0, "1.1", 13),
            (8, "2.0", 14),
            (0, "1.0", 15),
            (0, "1.1", 16),
            (8, "1.0", 17),
        ] {
            t.record(j, v, 0, UNIT, at, &tel);
        }
        let counts = |t: &VersionTable, j| {
            let mut c: Vec<(String, u64, u64)> = t
                .list(j)
                .iter()
                .map(|e| {
                    (
                        e.version.to_string(),
                        e.counts.requests / UNIT,
                        e.last_seen_ns,
                    )
                })
                .collect();
            c.sort();
            c
        };
        assert_eq!(
            counts(&t, 0),
            [("1.0".to_string(), 3, 15), ("1.1".to_string(), 2, 16)]
        );
        assert_eq!(
            counts(&t, 8),
            [("1.0".to_string(), 2, 17), ("2.0".to_string(), 1, 14)]
        );
        // 1.0 (seen at 15) goes; 1.1 is swapped into its place while remembered at its own.
        t.record(0, "1.1", 0, UNIT, 18, &tel);
        t.record(0, "1.2", 0, UNIT, 19, &tel);
        t.record(0, "1.1", 0, UNIT, 20, &tel);
        t.record(0, "1.2", 0, UNIT, 21, &tel);
        assert_eq!(tel.deployment_versions_evicted.get(), 1);
        assert_eq!(
            counts(&t, 0),
            [("1.1".to_string(), 4, 20), ("1.2".to_string(), 2, 21)]
        );
        // Journey 0 goes, 8 becomes 0: the remembered places must not follow the ids.
        t.remap(&|j| (j == 8).then_some(0));
        t.record(0, "1.0", 0, UNIT, 22, &tel);
        t.record(8, "1.0", 0, UNIT, 23, &tel);
        assert_eq!(
            counts(&t, 0),
            [("1.0".to_string(), 3, 22), ("2.0".to_string(), 1, 14)]
        );
        assert_eq!(counts(&t, 8), [("1.0".to_string(), 1, 23)]);
    }

    /// The take of `t`, as (version, requests, errors) in whole requests, sorted.
    fn take(t: &mut VersionTable) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        t.take_partials(&mut out);
        let mut seen: Vec<(String, u64, u64)> = out
            .into_iter()
            .map(|(_, v)| {
                let c = crate::partial::decode_counts(v.counts.as_ref());
                (v.version, c.requests / UNIT, c.errors / UNIT)
            })
            .collect();
        seen.sort();
        seen
    }

    /// Stage 2, 2 versions kept: an evicted version's counts since the last take are
    /// held for the next one. By hand (version@time, * = failed):
    /// - taken first: 1.0@10*,11,12 and 1.1@13,14: 1.0 3/1, 1.1 2/0.
    /// - then 1.0@20,21 and 1.1@22; 1.2@30 evicts 1.0 (last seen 21): held 1.0 2/0;
    ///   1.0@31* evicts 1.1 (22): held 1.1 1/0; 1.1@32 evicts 1.2 (30) with 1 request,
    ///   but 2 versions are held already: lost, counted; 1.2@40 evicts 1.0 (31) with
    ///   1/1, added to its held 2/0: 3/1.
    /// - taken: held 1.0 3/1 and 1.1 1/0, live 1.1 1/0 (since 32) and 1.2 1/0 (since 40):
    ///   6 of the 7 requests recorded since the first take, and the 7th counted lost;
    ///   4 evictions.
    #[test]
    fn an_evicted_versions_unpublished_counts_wait_for_the_next_take() {
        let tel = Telemetry::default();
        let mut t = VersionTable::new(2, true);
        t.record(0, "1.0", flag::ERROR, UNIT, 10, &tel);
        t.record(0, "1.0", 0, UNIT, 11, &tel);
        t.record(0, "1.0", 0, UNIT, 12, &tel);
        t.record(0, "1.1", 0, UNIT, 13, &tel);
        t.record(0, "1.1", 0, UNIT, 14, &tel);
        assert_eq!(take(&mut t), [("1.0".into(), 3, 1), ("1.1".into(), 2, 0)]);
        t.record(0, "1.0", 0, UNIT, 20, &tel);
        t.record(0, "1.0", 0, UNIT, 21, &tel);
        t.record(0, "1.1", 0, UNIT, 22, &tel);
        t.record(0, "1.2", 0, UNIT, 30, &tel);
        t.record(0, "1.0", flag::ERROR, UNIT, 31, &tel);
        assert_eq!(t.held_len(), 2);
        t.record(0, "1.1", 0, UNIT, 32, &tel);
        assert_eq!(tel.deployment_version_requests_lost.get(), UNIT);
        t.record(0, "1.2", 0, UNIT, 40, &tel);
        assert_eq!(t.held_len(), 2);
        assert_eq!(tel.deployment_versions_evicted.get(), 4);
        assert_eq!(
            take(&mut t),
            [
                ("1.0".into(), 3, 1),
                ("1.1".into(), 1, 0),
                ("1.1".into(), 1, 0),
                ("1.2".into(), 1, 0)
            ]
        );
        assert_eq!(t.held_len(), 0);
        assert_eq!(take(&mut t), []);
        assert_eq!(tel.deployment_version_requests_lost.get(), UNIT);
    }

    /// Stage 2 publishes deltas: by hand, 3 spans of 1.0 (1 error), taken: 1.0 3/1;
    /// then 1 more of 1.0 and 2 of 1.1 (both slow), taken: 1.0 1/0, 1.1 2 slow; then
    /// nothing new, taken: nothing. The local counts stay whole (1.0 4 requests).
    #[test]
    fn partials_carry_what_was_recorded_since_the_last_take() {
        let tel = Telemetry::default();
        let mut t = VersionTable::new(4, true);
        let take = |t: &mut VersionTable| {
            let mut out = Vec::new();
            t.take_partials(&mut out);
            let mut seen: Vec<(String, u64, u64, u64)> = out
                .into_iter()
                .map(|(_, v)| {
                    let c = crate::partial::decode_counts(v.counts.as_ref());
                    (v.version, c.requests, c.errors, c.slow)
                })
                .collect();
            seen.sort();
            seen
        };
        t.record(0, "1.0", flag::ERROR, UNIT, 10, &tel);
        t.record(0, "1.0", 0, UNIT, 11, &tel);
        t.record(0, "1.0", 0, UNIT, 12, &tel);
        assert_eq!(take(&mut t), [("1.0".into(), 3 * UNIT, UNIT, 0)]);
        t.record(0, "1.0", 0, UNIT, 13, &tel);
        t.record(0, "1.1", flag::SLOW, UNIT, 14, &tel);
        t.record(0, "1.1", flag::SLOW, UNIT, 15, &tel);
        assert_eq!(
            take(&mut t),
            [
                ("1.0".into(), UNIT, 0, 0),
                ("1.1".into(), 2 * UNIT, 0, 2 * UNIT)
            ]
        );
        assert_eq!(take(&mut t), []);
        assert_eq!(t.list(0)[0].counts.requests, 4 * UNIT);
    }
}
