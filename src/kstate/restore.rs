//! A new owner's restore of the changelog on partition assignment, and what of a
//! journey's record it puts back.
//!
//! The owners' group rebuilds a newly assigned partition's journeys by re-reading its
//! partials from the partition's start (`src/owners.rs`), and the deriver's SLO tracker
//! counts the growth of each series' totals from its first tick: the budget and burn
//! rings of a new owner are therefore rebuilt exactly from the re-read. Putting the
//! record's rings back on top would count that traffic twice, so the SLO part of a
//! record is NOT restored. Nor are the alert states (`active`, `last_true_ns`): they are
//! recomputed at each tick from the burn rings the re-read rebuilds; what is lost is
//! only the `slo.clear_after` hysteresis of an alert that had just stopped firing on
//! the old owner (the new one sees it clear one `clear_after` sooner).
//!
//! What the re-read cannot rebuild is restored: the incidents (the open one with its
//! start, peak and time to detect; the recent closed ones; totals and recovery
//! histograms) and the deployments. Without them a new owner would reopen the incident
//! at its own first tick, with a new start and a total counted twice.
//!
//! [`Restorer`] is the owners' [`StateSource`]: it runs on their consumer thread when
//! partitions are assigned, before any of their partials is merged. [`crate::owners`]
//! holds the records and the partitions' journeys back until the partitions are
//! re-read to where they ended at assignment, then hands both to the deriver in one
//! snapshot, and [`apply`] puts the records in before that snapshot is evaluated: a
//! restored open incident meets the re-read figures that keep its alert firing, never
//! a tick of the oldest partials alone (which would close it), and no tick derives the
//! journeys without it (which would open a second one). A partition revoked before its
//! re-read ends drops its records, counted (`revoked`): its next owner reads them.

use super::{changelog, KState};
use crate::deployments::DeploymentTracker;
use crate::incidents::IncidentTracker;
use crate::internal_events::{InternalEvent, KafkaError, KafkaStateRefused, StateRefusal};
use crate::owners::{StateRecords, StateSource};
use crate::receiver::kafka::config::KafkaReceiver;
use crate::telemetry::Telemetry;
use std::sync::Arc;

/// Reads the changelog of newly assigned partitions (see the module's header).
pub struct Restorer {
    kafka: KafkaReceiver,
    cfg: KState,
    tel: Arc<Telemetry>,
}

impl Restorer {
    pub fn new(kafka: &KafkaReceiver, cfg: &KState, tel: Arc<Telemetry>) -> Restorer {
        Restorer {
            kafka: kafka.clone(),
            cfg: cfg.clone(),
            tel,
        }
    }
}

impl StateSource for Restorer {
    fn read(&self, partitions: &[i32]) -> StateRecords {
        // `read` counts a timeout itself and returns what it read by then.
        match changelog::read(&self.kafka, &self.cfg, partitions, &self.tel) {
            Ok(r) => {
                tracing::info!(
                    ?partitions,
                    journeys = r.records.len(),
                    complete = r.complete,
                    "Read the changelog of the assigned partitions."
                );
                r.records
            }
            Err(e) => {
                KafkaError {
                    detail: &format!("cannot restore the changelog: {e}"),
                }
                .emit(&self.tel);
                StateRecords::new()
            }
        }
    }
}

/// Puts the records of the journeys of newly re-read partitions into the trackers
/// (incidents and deployments only: see the header); a record that does not decode is
/// refused whole, counted and logged. Returns the journeys restored.
pub fn apply(
    records: StateRecords,
    incidents: &mut IncidentTracker,
    deployments: &mut DeploymentTracker,
    tel: &Telemetry,
) -> usize {
    let mut n = 0;
    for (journey, (_, value)) in records {
        match changelog::JourneyRecord::decode(&value) {
            Ok(r) => {
                incidents.restore_journey(&journey, r.incidents);
                deployments.restore_journey(&journey, r.deployments);
                n += 1;
            }
            Err(e) => KafkaStateRefused {
                reason: StateRefusal::Invalid,
                journey: &journey,
                detail: &e,
            }
            .emit(tel),
        }
    }
    if n > 0 {
        tracing::info!(
            journeys = n,
            "Restored the incidents and deployments of newly owned journeys from the changelog."
        );
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::slo::SloTracker;
    use crate::telemetry::AddRelaxed;

    /// An empty journey's record, as an owner with no incident writes it.
    fn record(cfg: &Config) -> Vec<u8> {
        let slo = SloTracker::new(&cfg.slo);
        let inc = IncidentTracker::new(&cfg.incidents);
        let dep = DeploymentTracker::new(&cfg.deployments);
        changelog::JourneyRecord::of("a", &slo, &inc, &dep)
            .encode()
            .expect("encode")
    }

    /// Each decodable record is restored; an undecodable one is refused whole and
    /// counted (invalid: 1), never applied in part.
    #[test]
    fn records_are_applied_and_junk_is_refused_and_counted() {
        let cfg = Config::default();
        let tel = Telemetry::default();
        let (mut inc, mut dep) = (
            IncidentTracker::new(&cfg.incidents),
            DeploymentTracker::new(&cfg.deployments),
        );
        let records = StateRecords::from([
            ("a".to_string(), (0, record(&cfg))),
            ("b".to_string(), (1, b"junk".to_vec())),
            ("c".to_string(), (2, record(&cfg))),
        ]);
        // a and c: 2 restored; b: 1 refused as invalid.
        assert_eq!(apply(records, &mut inc, &mut dep, &tel), 2);
        let refused: Vec<u64> = tel.kafka.state_refused.iter().map(|c| c.get()).collect();
        assert_eq!(refused, [0, 1, 0, 0]);
    }
}
