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
//! [`Restorer`] runs on the owners' consumer thread (the [`OwnershipListener`]); the
//! trackers live in the deriver. The records read go over a bounded channel and wait in
//! [`Pending`] until the owners have re-read their partition's partials to where it
//! ended at assignment (`caught_up`): applied earlier, an open incident would be closed
//! by a tick whose SLO state holds only the oldest partials, where the alert is not yet
//! firing. The deriver takes the hand-overs before it snapshots the owners, so a
//! partition reported caught up is in that tick's figures. A partition revoked before
//! then drops its pending records.

use super::{changelog, KState};
use crate::deployments::DeploymentTracker;
use crate::incidents::IncidentTracker;
use crate::internal_events::{InternalEvent, KafkaError, KafkaStateRefused, StateRefusal};
use crate::owners::OwnershipListener;
use crate::receiver::kafka::config::KafkaReceiver;
use crate::telemetry::Telemetry;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Hand-overs in flight between the consumer thread and the deriver; the deriver takes
/// them all at each tick, so more than a few means it is stuck.
const CHANNEL: usize = 16;

/// What the consumer thread hands to the deriver.
pub enum Handover {
    /// The latest changelog record of each journey of the assigned partitions, with its
    /// partition.
    Assigned(BTreeMap<String, (i32, Vec<u8>)>),
    CaughtUp(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Reads the changelog of newly assigned partitions (see the module's header).
pub struct Restorer {
    kafka: KafkaReceiver,
    cfg: KState,
    tx: Sender<Handover>,
    tel: Arc<Telemetry>,
}

/// Makes the two ends: the listener for the owners and the deriver's [`Pending`].
pub fn channel(kafka: &KafkaReceiver, cfg: &KState, tel: Arc<Telemetry>) -> (Restorer, Pending) {
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL);
    (
        Restorer {
            kafka: kafka.clone(),
            cfg: cfg.clone(),
            tx,
            tel: tel.clone(),
        },
        Pending {
            rx,
            records: BTreeMap::new(),
            caught_up: BTreeSet::new(),
            tel,
        },
    )
}

impl Restorer {
    fn hand_over(&self, h: Handover) {
        // Waits at most as long as a read may take: the deriver drains every tick.
        if self.tx.send_timeout(h, self.cfg.restore_timeout).is_err() {
            KafkaError {
                detail: "the deriver did not take the restored changelog records: they are dropped",
            }
            .emit(&self.tel);
        }
    }
}

impl OwnershipListener for Restorer {
    fn assigned(&self, partitions: &[i32]) {
        // `read` counts a timeout itself and returns what it read by then.
        match changelog::read(&self.kafka, &self.cfg, partitions, &self.tel) {
            Ok(r) => {
                tracing::info!(
                    ?partitions,
                    journeys = r.records.len(),
                    complete = r.complete,
                    "Read the changelog of the assigned partitions."
                );
                let records = r
                    .records
                    .into_iter()
                    .filter_map(|(j, v)| Some((r.partition_of.get(&j).copied()?, j, v)))
                    .map(|(p, j, v)| (j, (p, v)))
                    .collect();
                self.hand_over(Handover::Assigned(records))
            }
            Err(e) => KafkaError {
                detail: &format!("cannot restore the changelog: {e}"),
            }
            .emit(&self.tel),
        }
    }

    fn revoked(&self, partitions: &[i32]) {
        self.hand_over(Handover::Revoked(partitions.to_vec()));
    }

    fn caught_up(&self, partitions: &[i32]) {
        self.hand_over(Handover::CaughtUp(partitions.to_vec()));
    }
}

/// The deriver's end: records waiting for their partition to be caught up.
pub struct Pending {
    rx: Receiver<Handover>,
    /// Journey -> (its partition, its record).
    records: BTreeMap<String, (i32, Vec<u8>)>,
    /// Owned partitions whose partials are re-read since their assignment.
    caught_up: BTreeSet<i32>,
    tel: Arc<Telemetry>,
}

impl Pending {
    /// Takes what the consumer handed over; called before the owners are snapshotted.
    pub fn receive(&mut self) {
        // Bounded: the channel holds at most CHANNEL hand-overs.
        while let Ok(h) = self.rx.try_recv() {
            match h {
                Handover::Assigned(records) => {
                    for (j, (p, v)) in records {
                        // A partition assigned again is re-read again.
                        self.caught_up.remove(&p);
                        self.records.insert(j, (p, v));
                    }
                }
                Handover::CaughtUp(ps) => self.caught_up.extend(ps),
                Handover::Revoked(gone) => {
                    self.records.retain(|_, (p, _)| !gone.contains(p));
                    for p in &gone {
                        self.caught_up.remove(p);
                    }
                }
            }
        }
    }

    /// Puts the records of the caught-up partitions into the trackers (incidents and
    /// deployments only: see the header). Returns the journeys restored.
    pub fn apply(
        &mut self,
        incidents: &mut IncidentTracker,
        deployments: &mut DeploymentTracker,
    ) -> usize {
        if self.records.is_empty() {
            return 0;
        }
        let ready: Vec<String> = self
            .records
            .iter()
            .filter(|(_, (p, _))| self.caught_up.contains(p))
            .map(|(j, _)| j.clone())
            .collect();
        let mut n = 0;
        for journey in ready {
            let Some((_, value)) = self.records.remove(&journey) else {
                continue;
            };
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
                .emit(&self.tel),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::slo::SloTracker;
    use crate::telemetry::AddRelaxed;

    fn kafka() -> KafkaReceiver {
        let yaml = "receivers:\n  kafka:\n    brokers: [127.0.0.1:9]\njourneys:\n  - name: a\n    match: { span_name: a }\n";
        let cfg = Config::parse(yaml, "t", &|_| None).expect("config");
        cfg.receivers.kafka.expect("kafka")
    }

    /// An empty journey's record, as an owner with no incident writes it.
    fn record(cfg: &Config) -> Vec<u8> {
        let slo = SloTracker::new(&cfg.slo);
        let inc = IncidentTracker::new(&cfg.incidents);
        let dep = DeploymentTracker::new(&cfg.deployments);
        changelog::JourneyRecord::of("a", &slo, &inc, &dep)
            .encode()
            .expect("encode")
    }

    #[test]
    fn records_wait_for_their_partition_to_be_re_read_and_go_with_a_revoke() {
        let cfg = Config::default();
        let tel = Arc::new(Telemetry::default());
        let (r, mut pending) = channel(&kafka(), &KState::default(), tel.clone());
        let (mut inc, mut dep) = (
            IncidentTracker::new(&cfg.incidents),
            DeploymentTracker::new(&cfg.deployments),
        );
        let assigned = |recs: &[(&str, i32, Vec<u8>)]| {
            Handover::Assigned(
                recs.iter()
                    .map(|(j, p, v)| (j.to_string(), (*p, v.clone())))
                    .collect(),
            )
        };
        // a on partition 0, b on 1 (undecodable), c on 2.
        r.hand_over(assigned(&[
            ("a", 0, record(&cfg)),
            ("b", 1, b"junk".to_vec()),
            ("c", 2, record(&cfg)),
        ]));
        pending.receive();
        // Nothing re-read yet: nothing applied, nothing refused.
        assert_eq!(pending.apply(&mut inc, &mut dep), 0);
        r.hand_over(Handover::CaughtUp(vec![0]));
        r.hand_over(Handover::Revoked(vec![2]));
        pending.receive();
        // a only: c's partition went before it was re-read.
        assert_eq!(pending.apply(&mut inc, &mut dep), 1);
        assert_eq!(pending.apply(&mut inc, &mut dep), 0, "applied once");
        r.hand_over(Handover::CaughtUp(vec![1, 2]));
        pending.receive();
        // b is refused whole (invalid: 1), c is gone.
        assert_eq!(pending.apply(&mut inc, &mut dep), 0);
        let refused: Vec<u64> = tel.kafka.state_refused.iter().map(|c| c.get()).collect();
        assert_eq!(refused, [0, 1, 0]);
        // Assigned again: partition 2 waits for its new re-read, not the old one.
        r.hand_over(assigned(&[("c", 2, record(&cfg))]));
        pending.receive();
        assert_eq!(pending.apply(&mut inc, &mut dep), 0);
        r.hand_over(Handover::CaughtUp(vec![2]));
        pending.receive();
        assert_eq!(pending.apply(&mut inc, &mut dep), 1);
    }
}
