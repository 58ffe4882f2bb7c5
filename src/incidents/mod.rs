//! Incidents and time to recovery, derived once per tick from the SLO alerts.
//!
//! An incident of a journey opens at the tick where one of its alerts (of any SLI or
//! cohort) of `incidents.severity` is active, and closes at the first tick where none
//! is, so its duration is exact to the evaluation interval (the alerts' own
//! `slo.clear_after` hysteresis included). Its time to detect runs from the start of the
//! first sub-bucket whose burn exceeded a firing alert's rate ([`SloTracker::onset`]) to
//! the evaluation that opened it. While open it keeps the peak burn rate, the
//! most affected users seen in the shortest window, and the value put at risk since it
//! opened. [`IncidentTracker`] owns the open and recent incidents and the per-journey
//! counts, and writes them beside the SLO checkpoint so a restart keeps them.

pub mod config;

use crate::sli::Snapshot;
use crate::slo::config::SLIS;
use crate::slo::{alert_active, SloTracker};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// Bounds (seconds) of `cer_journey_time_to_recovery_seconds`: seconds to a day.
pub const RECOVERY_BUCKETS_S: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// One incident, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incident {
    pub journey: String,
    pub start_unix_nano: u64,
    /// `None` while open.
    pub end_unix_nano: Option<u64>,
    /// Start to end, or to the last evaluation while open.
    pub duration_seconds: f64,
    /// Highest burn rate of the journey (any SLI, burn window or cohort) while open.
    pub peak_burn_rate: Option<f64>,
    /// Most users affected in the shortest window at any tick while open.
    pub users_affected: Option<u64>,
    /// Value of the failed or incorrect requests since it opened (journeys with `value`).
    pub value_at_risk: Option<f64>,
    /// From the start of the first sub-bucket whose burn exceeded the alert's rate to
    /// the alert firing.
    #[serde(default)]
    pub time_to_detect_seconds: Option<f64>,
}

/// The per-journey figures of the exposition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IncidentStats {
    pub journey: String,
    pub open: bool,
    pub total: u64,
    /// Closed incidents per [`RECOVERY_BUCKETS_S`] bound, non-cumulative; the last is +Inf.
    pub recovery_buckets: Vec<u64>,
    pub recovery_sum_s: f64,
    pub recovery_count: u64,
    /// Times to detect per [`RECOVERY_BUCKETS_S`] bound, non-cumulative; the last is +Inf.
    #[serde(default)]
    pub detect_buckets: Vec<u64>,
    #[serde(default)]
    pub detect_sum_s: f64,
    #[serde(default)]
    pub detect_count: u64,
}

fn observe(buckets: &mut Vec<u64>, sum: &mut f64, count: &mut u64, v: f64) {
    buckets.resize(RECOVERY_BUCKETS_S.len() + 1, 0);
    let b = RECOVERY_BUCKETS_S.partition_point(|&bound| bound < v);
    if let Some(slot) = buckets.get_mut(b) {
        *slot += 1;
    }
    *sum += v;
    *count += 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    incident: Incident,
    /// The journey's failed value counter when the incident opened.
    value_failed_at_start: Option<f64>,
}

/// One journey's open incident, recent ones and figures: what its checkpoint keeps, and what the
/// owner of the journey writes to the Kafka changelog (see `kstate`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneyState {
    open: Option<Open>,
    recent: VecDeque<Incident>,
    stats: IncidentStats,
}

const CHECKPOINT_KIND: &str = "incidents";
/// The layout of the journeys' state in the checkpoint; a change to it takes the next number.
const CHECKPOINT_FORMAT: u32 = 1;

pub struct IncidentTracker {
    cfg: crate::config::Incidents,
    journeys: BTreeMap<String, JourneyState>,
}

impl IncidentTracker {
    pub fn new(cfg: &crate::config::Incidents) -> IncidentTracker {
        IncidentTracker {
            cfg: cfg.clone(),
            journeys: BTreeMap::new(),
        }
    }

    pub fn reconfigure(&mut self, cfg: &crate::config::Incidents) {
        self.cfg = cfg.clone();
    }

    /// Opens, updates and closes incidents from the alerts of this tick; true when an
    /// incident opened or closed (worth a checkpoint at once).
    pub fn update(&mut self, slo: &SloTracker, snap: &Snapshot, now: u64) -> bool {
        let severity = self.cfg.severity;
        let mut active: BTreeSet<&str> = BTreeSet::new();
        let mut peak: BTreeMap<&str, f64> = BTreeMap::new();
        for (key, e) in slo.evals() {
            if SLIS.iter().any(|s| alert_active(e, *s, severity)) {
                active.insert(&key.journey);
            }
            let top = e
                .burn
                .iter()
                .flat_map(|per_sli| per_sli.iter().flatten())
                .fold(f64::NAN, |a, b| a.max(*b));
            if !top.is_nan() {
                let p = peak.entry(&key.journey).or_insert(top);
                *p = p.max(top);
            }
        }
        let mut changed = false;
        for j in &active {
            let st = self
                .journeys
                .entry(j.to_string())
                .or_insert_with(|| JourneyState {
                    open: None,
                    recent: VecDeque::new(),
                    stats: IncidentStats {
                        journey: j.to_string(),
                        recovery_buckets: vec![0; RECOVERY_BUCKETS_S.len() + 1],
                        detect_buckets: vec![0; RECOVERY_BUCKETS_S.len() + 1],
                        ..Default::default()
                    },
                });
            if st.open.is_none() {
                let detect = slo
                    .onset(j, severity, now)
                    .map(|t| now.saturating_sub(t) as f64 / 1e9);
                if let Some(d) = detect {
                    let x = &mut st.stats;
                    observe(
                        &mut x.detect_buckets,
                        &mut x.detect_sum_s,
                        &mut x.detect_count,
                        d,
                    );
                }
                st.open = Some(Open {
                    incident: Incident {
                        journey: j.to_string(),
                        start_unix_nano: now,
                        end_unix_nano: None,
                        duration_seconds: 0.0,
                        peak_burn_rate: None,
                        users_affected: None,
                        value_at_risk: None,
                        time_to_detect_seconds: detect,
                    },
                    value_failed_at_start: value_failed(snap, j),
                });
                st.stats.total += 1;
                st.stats.open = true;
                changed = true;
                tracing::warn!(journey = %j, "An incident opened: an alert of the journey fired.");
            }
        }
        let max_recent = self.cfg.max_recent;
        for (name, st) in self.journeys.iter_mut() {
            let Some(open) = st.open.as_mut() else {
                continue;
            };
            let i = &mut open.incident;
            i.duration_seconds = now.saturating_sub(i.start_unix_nano) as f64 / 1e9;
            if let Some(p) = peak.get(name.as_str()) {
                i.peak_burn_rate = Some(i.peak_burn_rate.map_or(*p, |x| x.max(*p)));
            }
            // A journey whose spans name no user has no user figures, not zero affected.
            if let Some(u) = snap.journey_user_counts(name, 0).filter(|u| u.users > 0) {
                i.users_affected = Some(i.users_affected.unwrap_or(0).max(u.affected));
            }
            if let (Some(start), Some(v)) = (open.value_failed_at_start, value_failed(snap, name)) {
                i.value_at_risk = Some((v - start).max(0.0));
            }
            if active.contains(name.as_str()) {
                continue;
            }
            let Some(open) = st.open.take() else {
                continue;
            };
            let mut done = open.incident;
            done.end_unix_nano = Some(now);
            let d = done.duration_seconds;
            let x = &mut st.stats;
            observe(
                &mut x.recovery_buckets,
                &mut x.recovery_sum_s,
                &mut x.recovery_count,
                d,
            );
            st.stats.open = false;
            tracing::info!(journey = %name, duration_seconds = d, "An incident closed: no alert of the journey is active.");
            st.recent.push_front(done);
            st.recent.truncate(max_recent);
            changed = true;
        }
        changed
    }

    /// Open incidents first (oldest first), then closed ones, newest first.
    pub fn incidents(&self) -> Vec<Incident> {
        let mut open: Vec<Incident> = self
            .journeys
            .values()
            .filter_map(|s| s.open.as_ref().map(|o| o.incident.clone()))
            .collect();
        open.sort_by_key(|i| i.start_unix_nano);
        let mut closed: Vec<Incident> = self
            .journeys
            .values()
            .flat_map(|s| s.recent.iter().cloned())
            .collect();
        closed.sort_by_key(|i| std::cmp::Reverse(i.end_unix_nano));
        open.extend(closed);
        open
    }

    pub fn stats(&self) -> Vec<IncidentStats> {
        self.journeys.values().map(|s| s.stats.clone()).collect()
    }

    /// One journey's state, for the owner's changelog record of it.
    pub fn journey_state(&self, journey: &str) -> Option<JourneyState> {
        self.journeys.get(journey).cloned()
    }

    /// Kafka stage 2: the journey went to another owner, which restores its state from
    /// the changelog and carries its incident on. Forgets it here without closing
    /// anything (a close would log, and count a recovery, that never happened); true when
    /// an incident was open.
    pub fn hand_over(&mut self, journey: &str) -> bool {
        self.journeys
            .remove(journey)
            .is_some_and(|s| s.open.is_some())
    }

    /// Replaces a journey's state with its changelog record (none: the journey had no
    /// state), when a new owner takes it over.
    pub fn restore_journey(&mut self, journey: &str, state: Option<JourneyState>) {
        match state {
            Some(s) => {
                self.journeys.insert(journey.to_string(), s);
            }
            None => {
                self.journeys.remove(journey);
            }
        }
    }

    /// Writes the state next to the SLO checkpoint (see [`crate::checkpoint`]).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::checkpoint::write(path, CHECKPOINT_KIND, CHECKPOINT_FORMAT, &self.journeys)
    }

    /// Reads a checkpoint; a problem is an error for the caller to log, never a panic.
    pub fn load(&mut self, path: &Path) -> Result<usize, String> {
        self.journeys = crate::checkpoint::read(path, CHECKPOINT_KIND, CHECKPOINT_FORMAT)?;
        Ok(self.journeys.len())
    }
}

/// Where the incidents are kept: the SLO checkpoint's path with the extension `incidents`.
pub fn checkpoint_path(slo_checkpoint: &Path) -> std::path::PathBuf {
    slo_checkpoint.with_extension("incidents")
}

fn value_failed(snap: &Snapshot, journey: &str) -> Option<f64> {
    snap.journey_values
        .iter()
        .find(|v| &*v.journey.name == journey)
        .map(|v| v.failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_state(journey: &str, start: u64) -> JourneyState {
        JourneyState {
            open: Some(Open {
                incident: Incident {
                    journey: journey.to_string(),
                    start_unix_nano: start,
                    end_unix_nano: None,
                    duration_seconds: 0.0,
                    peak_burn_rate: Some(50.0),
                    users_affected: None,
                    value_at_risk: None,
                    time_to_detect_seconds: Some(1.0),
                },
                value_failed_at_start: None,
            }),
            recent: VecDeque::new(),
            stats: IncidentStats {
                journey: journey.to_string(),
                open: true,
                total: 1,
                ..Default::default()
            },
        }
    }

    /// A journey handed over to another owner leaves with its open incident: no
    /// recovery is counted, no closed incident is listed, and a tick after it closes
    /// nothing. The one that stays is untouched.
    #[test]
    fn a_journey_handed_over_is_forgotten_without_closing_its_incident() {
        let cfg = crate::config::Config::default();
        let mut t = IncidentTracker::new(&cfg.incidents);
        t.restore_journey("checkout", Some(open_state("checkout", 5)));
        t.restore_journey("login", Some(open_state("login", 7)));
        assert!(t.hand_over("checkout"));
        assert!(!t.hand_over("checkout"), "already gone");
        assert!(!t.hand_over("search"), "never here");
        // No alert is active: only login's incident could close, and it does, as before.
        let slo = SloTracker::new(&cfg.slo);
        assert!(t.update(&slo, &Snapshot::default(), 10));
        let stats = t.stats();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].journey, "login");
        assert_eq!(stats[0].recovery_count, 1);
        let list = t.incidents();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].journey.as_str(), list[0].end_unix_nano),
            ("login", Some(10))
        );
    }
}
