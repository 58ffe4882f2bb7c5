//! Record: the requests of each version of each journey (`deployments.version_key`),
//! since cerflow started, as one worker saw them. A version is not a series (it does not
//! split the windows or the exposition); these counters only feed the deployments, which
//! derive compares. Each journey keeps at most `deployments.max_versions` versions per
//! worker: a new one past that pushes out the least recently seen, counted in
//! `cerflow_deployment_versions_evicted_total`.

use crate::internal_events::{InternalEvent, VersionEvicted};
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

pub struct VersionTable {
    max_per_journey: usize,
    /// Looked up once per span: ahash, not the default SipHash (~150 instructions a
    /// span for a 2-byte key); journey ids are not chosen by senders.
    journeys: HashMap<JourneyId, Vec<Entry>, ahash::RandomState>,
}

impl VersionTable {
    pub fn new(max_per_journey: usize) -> VersionTable {
        VersionTable {
            max_per_journey: max_per_journey.max(1),
            journeys: HashMap::default(),
        }
    }

    /// Counts one span of `version` (`weight`: its adjusted count in units); a linear scan over a handful of versions, and an
    /// allocation only for a version this worker has not seen.
    pub fn record(
        &mut self,
        journey: JourneyId,
        version: &str,
        flags: u8,
        weight: u64,
        now: u64,
        tel: &Telemetry,
    ) {
        let list = self.journeys.entry(journey).or_default();
        let entry = match list.iter().position(|e| &*e.version == version) {
            Some(i) => &mut list[i],
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
                    }
                }
                list.push(Entry {
                    version: version.into(),
                    counts: Counts::default(),
                    published: Counts::default(),
                    first_seen_ns: now,
                    last_seen_ns: now,
                });
                let last = list.len() - 1;
                &mut list[last]
            }
        };
        entry.counts.add_weighted(flags, weight);
        entry.last_seen_ns = now;
    }

    /// Carries the counts over a config reload; journeys that went are dropped.
    pub fn remap(&mut self, map: &dyn Fn(JourneyId) -> Option<JourneyId>) {
        self.journeys = std::mem::take(&mut self.journeys)
            .into_iter()
            .filter_map(|(id, list)| map(id).map(|new| (new, list)))
            .collect();
    }

    /// Kafka stage 2: what each version recorded since the last take, as partials for
    /// the journey's owner; the local counts stay (deltas are taken against what was
    /// published). A version evicted before its delta was taken loses that delta, as
    /// an eviction loses its counts on one instance (counted there).
    pub fn take_partials(&mut self, out: &mut Vec<(JourneyId, pb::VersionPartial)>) {
        for (id, list) in &mut self.journeys {
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

    pub fn snapshot(&self, journeys: &Journeys, out: &mut Vec<VersionSnap>) {
        for (id, list) in &self.journeys {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::UNIT;
    use crate::span_record::flag;

    #[test]
    fn past_the_limit_the_least_recently_seen_version_goes_and_is_counted() {
        let tel = Telemetry::default();
        let mut t = VersionTable::new(2);
        t.record(0, "1.0", 0, UNIT, 10, &tel);
        t.record(0, "1.1", flag::ERROR, UNIT, 20, &tel);
        t.record(0, "1.0", flag::SLOW, UNIT, 30, &tel);
        // 1.1 was seen last at 20, 1.0 at 30: 1.1 goes.
        t.record(0, "1.2", 0, UNIT, 40, &tel);
        assert_eq!(tel.deployment_versions_evicted.get(), 1);
        let list = &t.journeys[&0];
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
    }

    /// Stage 2 publishes deltas: by hand, 3 spans of 1.0 (1 error), taken: 1.0 3/1;
    /// then 1 more of 1.0 and 2 of 1.1 (both slow), taken: 1.0 1/0, 1.1 2 slow; then
    /// nothing new, taken: nothing. The local counts stay whole (1.0 4 requests).
    #[test]
    fn partials_carry_what_was_recorded_since_the_last_take() {
        let tel = Telemetry::default();
        let mut t = VersionTable::new(4);
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
        assert_eq!(t.journeys[&0][0].counts.requests, 4 * UNIT);
    }
}
