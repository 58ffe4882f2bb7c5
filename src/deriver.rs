//! Derive, once per tick: merges the worker snapshots, derives SLIs, updates the SLO
//! state, evaluates scores, publishes the result for every reader, and checkpoints.
//! Also applies config reloads, since it owns the pipeline handle.

use crate::clock::now_unix_ns;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::internal_events::InternalEvent;
use crate::journey::Journeys;
use crate::pipeline::Pipeline;
use crate::published::Shared;
use crate::score;
use crate::sli::Snapshot;
use crate::slo::SloTracker;
use std::sync::Arc;

/// The deriver thread, its inbox, and the signal that the last snapshot is out.
pub type Spawned = (
    std::thread::JoinHandle<()>,
    crossbeam_channel::Sender<DeriverMsg>,
    tokio::sync::oneshot::Receiver<()>,
);

pub enum DeriverMsg {
    Stop,
    /// A validated new config; the reply lists what only a restart will apply.
    Reload(Box<Config>, tokio::sync::oneshot::Sender<Vec<String>>),
}

/// Where pending attempts are checkpointed: beside the SLO checkpoint.
pub fn attempts_path(slo_checkpoint: &std::path::Path) -> std::path::PathBuf {
    slo_checkpoint.with_extension("attempts")
}

/// Brings back the pending attempts of the last run, if checkpoints are on.
pub fn restore_attempts(cfg: &Config, ingest: &Ingest) {
    let Some(cp) = &cfg.slo.checkpoint else {
        return;
    };
    let path = attempts_path(&cp.path);
    if !path.exists() {
        return;
    }
    match ingest.completions.load(&path) {
        Ok(n) => {
            tracing::info!(path = %path.display(), attempts = n, "Restored the pending attempts.")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot restore the pending attempts; starting without them.")
        }
    }
}

/// A tracker for `cfg.slo`, with the state of its checkpoint when there is one, and
/// the derived journeys of that state put back into `journeys`.
pub fn restore_slo_state(cfg: &Config, journeys: &Journeys) -> SloTracker {
    // The SLO state survives restarts through its checkpoint.
    let mut tracker = SloTracker::new(&cfg.slo);
    if let Some(cp) = &cfg.slo.checkpoint {
        if cp.path.exists() {
            match tracker.load(&cp.path) {
                Ok(n) => {
                    tracing::info!(path = %cp.path.display(), keys = n, "Restored the SLO state.")
                }
                Err(e) => tracing::warn!(
                    path = %cp.path.display(),
                    error = %e,
                    "Cannot restore the SLO state; starting with fresh error budgets."
                ),
            }
        } else {
            tracing::info!(path = %cp.path.display(), "No SLO checkpoint yet; starting with fresh error budgets.");
        }
    }
    // Derived journeys come back before any span does: they count towards
    // `auto_journeys.max` and are shown with their budgets until their traffic returns.
    let journeys_restored = tracker
        .restored()
        .filter(|(k, _)| k.cohort.is_none())
        .filter_map(|(k, origin)| journeys.restore(&k.journey, origin))
        .count();
    if journeys_restored > 0 {
        tracing::info!(
            journeys = journeys_restored,
            "Journeys with restored SLO state are shown until their traffic returns."
        );
    }

    tracker
}

/// The incident state kept beside the SLO checkpoint, when there is one.
fn restore_incidents(cfg: &Config) -> crate::incidents::IncidentTracker {
    let mut t = crate::incidents::IncidentTracker::new(&cfg.incidents);
    if let Some(cp) = &cfg.slo.checkpoint {
        let path = crate::incidents::checkpoint_path(&cp.path);
        if path.exists() {
            match t.load(&path) {
                Ok(n) => {
                    tracing::info!(path = %path.display(), journeys = n, "Restored the incidents.")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot restore the incidents; starting without.")
                }
            }
        }
    }
    t
}

/// The deployment state kept beside the SLO checkpoint, when there is one.
fn restore_deployments(cfg: &Config) -> crate::deployments::DeploymentTracker {
    let mut t = crate::deployments::DeploymentTracker::new(&cfg.deployments);
    if let Some(cp) = &cfg.slo.checkpoint {
        let path = crate::deployments::checkpoint_path(&cp.path);
        if path.exists() {
            match t.load(&path) {
                Ok(n) => {
                    tracing::info!(path = %path.display(), journeys = n, "Restored the deployments.")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot restore the deployments; starting without.")
                }
            }
        }
    }
    t
}

/// Starts the deriver thread. It owns the pipeline from here: ticks, reloads, and the
/// final drain; `final_rx` resolves once the last snapshot is published.
pub fn spawn(
    cfg: &Config,
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    tracker: SloTracker,
    pipeline: Pipeline,
    owners: Option<Arc<crate::owners::Owners>>,
    owner_state: Option<crate::kstate::OwnerState>,
) -> Result<Spawned, String> {
    // The deriver ticks on its own thread: it blocks on worker replies.
    let (deriver_tx, deriver_rx) = crossbeam_channel::bounded::<DeriverMsg>(4);
    let (final_tx, final_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = {
        let interval = cfg.pipeline.evaluation_interval;
        let grace = cfg.pipeline.shutdown_timeout;
        let cfg_ttl = cfg.windows.series_ttl;
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("cerflow-deriver".into())
            .spawn(move || {
                let incidents = restore_incidents(&cfg);
                let deployments = restore_deployments(&cfg);
                let mut deriver = Deriver {
                    incidents,
                    deployments,
                    cfg,
                    shared,
                    ingest,
                    tracker,
                    last_checkpoint: now_unix_ns(),
                    partial: PartialTicks::default(),
                    restored_until: now_unix_ns().saturating_add(cfg_ttl.as_nanos() as u64),
                    owners,
                    owner_state,
                };
                // The first evaluation is made at once, so restored budgets are on
                // /metrics from the start.
                let mut next = std::time::Instant::now();
                loop {
                    match deriver_rx.recv_deadline(next) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            next = std::time::Instant::now() + interval;
                            let shards = pipeline.snapshot(interval);
                            if deriver.complete_or_due(shards.len(), pipeline.workers()) {
                                deriver.tick(shards, false);
                            }
                        }
                        Ok(DeriverMsg::Reload(new, reply)) => {
                            let notes = deriver.reload(*new, &pipeline);
                            // Evaluate at once, then show the new version: a scrape that
                            // sees the new version sees the new journeys too.
                            deriver.tick(pipeline.snapshot(interval), false);
                            deriver
                                .shared
                                .version
                                .store(Arc::new(deriver.cfg.version.clone()));
                            let _ = reply.send(notes);
                        }
                        Ok(DeriverMsg::Stop)
                        | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
                let shards = pipeline.shutdown(grace);
                deriver.tick(shards, true);
                let _ = final_tx.send(());
            })
            .map_err(|e| format!("cannot start the deriver thread: {e}"))?
    };
    Ok((handle, deriver_tx, final_rx))
}

/// Merges worker snapshots, updates the SLO state, evaluates scores, checkpoints.
struct Deriver {
    cfg: Config,
    incidents: crate::incidents::IncidentTracker,
    deployments: crate::deployments::DeploymentTracker,
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    tracker: SloTracker,
    last_checkpoint: u64,
    /// Until then, SLO keys restored from the checkpoint are shown without traffic;
    /// 0 once they have been forgotten.
    restored_until: u64,
    partial: PartialTicks,
    /// Kafka stage 2: the owned journeys' state, the only source of journey series
    /// (see [`crate::owners`]).
    owners: Option<Arc<crate::owners::Owners>>,
    /// Kafka stage 2: the owned journeys' changelog records and snapshots, each tick.
    owner_state: Option<crate::kstate::OwnerState>,
}

/// Incomplete ticks skipped in a row before one is published without the silent worker.
const MAX_SKIPPED_TICKS: u32 = 2;

/// What to do with a tick at which some worker did not answer. Publishing it would show
/// every counter of the missing worker's series falling for one tick (a counter reset to
/// Prometheus), so it is skipped and the next complete tick takes in the growth; a
/// worker silent for longer is left out rather than freezing everyone's figures.
#[derive(Default)]
struct PartialTicks {
    skipped: u32,
}

impl PartialTicks {
    /// `None` for a complete tick; for an incomplete one, whether it is published.
    fn admit(&mut self, answered: usize, workers: usize) -> Option<bool> {
        if answered >= workers {
            self.skipped = 0;
            return None;
        }
        let published = self.skipped >= MAX_SKIPPED_TICKS;
        self.skipped = if published { 0 } else { self.skipped + 1 };
        Some(published)
    }
}

impl Deriver {
    /// Applies what a running cerflow can change: journeys, cohorts, rules, objectives,
    /// alerts, scores, the version. Journeys whose definition did not change keep their
    /// window state. Returns notes on settings that need a restart.
    fn reload(&mut self, mut new: Config, pipeline: &Pipeline) -> Vec<String> {
        let old = &self.cfg;
        let mut notes = Vec::new();
        let mut restart = |what: &str, changed: bool| {
            if changed {
                notes.push(format!("{what} changed; it takes effect after a restart"));
            }
        };
        restart("receivers", old.receivers != new.receivers);
        restart("exporters", old.exporters != new.exporters);
        restart("pipeline", old.pipeline != new.pipeline);
        restart("windows", old.windows != new.windows);
        restart(
            "histogram.buckets",
            old.histogram_buckets != new.histogram_buckets,
        );
        restart("limits", old.limits != new.limits);
        restart("signals", old.signals != new.signals);
        restart("traces", old.traces != new.traces);
        restart("dependencies", old.dependencies != new.dependencies);
        restart("slo.checkpoint", old.slo.checkpoint != new.slo.checkpoint);
        restart(
            "deployments.version_key",
            old.deployments.version_key != new.deployments.version_key,
        );
        restart(
            "deployments.max_versions",
            old.deployments.max_versions != new.deployments.max_versions,
        );
        // The journeys carry the version key to ingest: keep the running one, so versions
        // of another attribute never pose as a deployment before the restart.
        new.deployments.version_key = old.deployments.version_key.clone();
        self.incidents.reconfigure(&new.incidents);
        self.deployments.reconfigure(&new.deployments);
        if let Err(e) = self.tracker.reconfigure(&new.slo) {
            notes.push(e.to_string());
        }
        let (journeys, remap) = Journeys::reload(&new, &self.shared.journeys.load());
        let journeys = Arc::new(journeys);
        let kept = remap.iter().filter(|r| r.is_some()).count();
        // Workers first: from now on they translate batches classified with the old ids.
        let plan = Arc::new(crate::pipeline::Reload {
            journeys: journeys.clone(),
            remap,
        });
        if !pipeline.reload(plan, new.pipeline.shutdown_timeout) {
            notes.push("a worker did not take the new journeys in time".into());
        }
        self.ingest.set_journeys(journeys.clone());
        if let Some(o) = &self.owners {
            o.set_journeys(journeys.clone());
        }
        self.ingest.signals.reload(&new, &journeys);
        self.ingest.requests.reload(&new, &journeys);
        self.shared.journeys.store(journeys);
        tracing::debug!(kept, "Journeys whose window state carried over.");
        let mut merged = new;
        merged.receivers = old.receivers.clone();
        merged.exporters = old.exporters.clone();
        merged.pipeline = old.pipeline.clone();
        merged.windows = old.windows.clone();
        merged.histogram_buckets = old.histogram_buckets.clone();
        merged.limits = old.limits.clone();
        merged.signals = old.signals.clone();
        merged.traces = old.traces.clone();
        merged.dependencies = old.dependencies.clone();
        merged.slo.checkpoint = old.slo.checkpoint.clone();
        merged.deployments.version_key = old.deployments.version_key.clone();
        merged.deployments.max_versions = old.deployments.max_versions;
        self.cfg = merged;
        notes
    }

    /// Whether a tick with `answered` of `workers` snapshots is published; see
    /// [`PartialTicks`].
    fn complete_or_due(&mut self, answered: usize, workers: usize) -> bool {
        let Some(published) = self.partial.admit(answered, workers) else {
            return true;
        };
        crate::internal_events::SnapshotIncomplete {
            answered,
            workers,
            published,
        }
        .emit(&self.ingest.tel);
        published
    }

    fn tick(&mut self, mut shards: Vec<crate::snapshot::ShardSnapshot>, last: bool) {
        let now = now_unix_ns();
        // Kafka stage 2: the journeys this instance owns now, and only those are derived
        // and published.
        let mut owned: Option<std::collections::BTreeSet<Arc<str>>> = None;
        // The owned journeys whose versions this instance holds (see `keep_owned`).
        let mut versioned = std::collections::BTreeSet::new();
        let mut restored_state = crate::owners::StateRecords::new();
        if let Some(o) = &self.owners {
            // The workers' journey series hold only this instance's spans since the last
            // barrier, which are on their way to their owners as partials: counting them
            // here too would count them twice. The owned journeys come from the partials.
            // Likewise the dependency calls and blame of the traces they assembled, and
            // the requests per version the deployments compare, and the coverage, which
            // only the owner of the coverage partition derives.
            for s in shards.iter_mut() {
                s.series.clear();
                s.dependencies.clear();
                s.self_blame.clear();
                s.versions.clear();
                s.coverage.clear();
            }
            // A journey whose partition went away (and may be back, rebuilt from the
            // partition's start with new series) starts its SLO counts again: its rebuilt
            // totals are then counted once, not on top of what was counted before.
            // Its incidents and deployments are handed over, not closed: the new owner
            // restores them from the changelog, and this instance no longer exports them.
            let dropped = o.take_dropped();
            let mut open_incidents = 0;
            for j in &dropped {
                self.tracker.forget_journey(j);
                self.tracker.forget_seen(j);
                open_incidents += usize::from(self.incidents.hand_over(j));
                self.deployments.restore_journey(j, None);
            }
            let names: Vec<&str> = dropped.iter().map(|j| &**j).collect();
            crate::internal_events::KafkaJourneysHandedOver {
                journeys: &names,
                open_incidents,
            }
            .emit(&self.ingest.tel);
            let mine = o.snapshot(now);
            owned = Some(
                mine.shard
                    .series
                    .iter()
                    .map(|s| s.journey.name.clone())
                    .collect(),
            );
            versioned = mine
                .shard
                .versions
                .iter()
                .map(|v| v.journey.name.clone())
                .collect();
            restored_state = mine.restored;
            shards.push(mine.shard);
        }
        // The journeys' metric-fed series join the workers' as one more shard.
        shards.push(self.ingest.requests.snapshot(now, &self.ingest.tel));
        let mut snap = Snapshot::merge(now, self.cfg.windows.sizes.clone(), shards);
        snap.operations = self.ingest.signals.snapshot(now, &self.ingest.tel);
        let completions = &self.ingest.completions;
        completions.sweep(now);
        snap.journey_attempts = completions.stats(now);
        let journeys = self.shared.journeys.load();
        self.tracker.update(&snap, &journeys, now);
        if self.restored_until != 0 && now >= self.restored_until {
            self.tracker.forget_restored();
            self.restored_until = 0;
        }
        let restored: Vec<_> = self
            .tracker
            .restored()
            .filter_map(|(k, origin)| journeys.restore(&k.journey, origin).map(|j| (k.clone(), j)))
            .collect();
        // A new owner's restored incidents and deployments go in before this tick
        // updates them, so an open incident carries on rather than opening again.
        if let Some(st) = &mut self.owner_state {
            st.apply_restored(restored_state, &mut self.incidents, &mut self.deployments);
        }
        let incident_changed = self.incidents.update(&self.tracker, &snap, now);
        let score_cfg = &self.cfg.score;
        let version_score = |c: &crate::window::Counts, j: &crate::journey::JourneyInfo| {
            // Versions have requests only: the operations SLI (time slices) is left out.
            let slices = crate::signals::SliceCounts::default();
            score::window_score(c, slices, &j.objectives, j.has_correctness, score_cfg).2
        };
        let deployment_changed = self.deployments.update(&snap.versions, &version_score, now);
        let mut eval = score::evaluate(
            &snap,
            &self.tracker,
            &journeys,
            &restored,
            &self.cfg.score,
            &self.cfg.version,
        );
        self.shared
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&eval, &self.tracker, now);
        eval.incidents = self.incidents.incidents();
        eval.incident_stats = self.incidents.stats();
        eval.set_deployments(
            self.deployments.deployments(),
            self.deployments.stats(),
            &self.cfg.deployments.version_key,
        );
        if let Some(owned) = &owned {
            keep_owned(&mut eval, owned, &versioned);
            eval.view.instance = self
                .cfg
                .receivers
                .kafka
                .as_ref()
                .and_then(|k| k.aggregates.as_ref())
                .map(|a| a.instance.clone());
            if let Some(st) = &mut self.owner_state {
                st.tick(
                    &eval.view,
                    owned,
                    &self.tracker,
                    &self.incidents,
                    &self.deployments,
                );
                if last {
                    st.flush(self.cfg.pipeline.shutdown_timeout);
                }
            }
        }
        self.shared.snapshot.store(Arc::new(snap));
        self.shared.eval.store(Arc::new(eval));
        self.shared.ticks.send_modify(|t| *t += 1);
        if let Some(cp) = &self.cfg.slo.checkpoint {
            // An incident that opened or closed is written at once: a crash right after
            // must not forget it.
            let due =
                last || now.saturating_sub(self.last_checkpoint) >= cp.interval.as_nanos() as u64;
            if incident_changed || due {
                let path = crate::incidents::checkpoint_path(&cp.path);
                if let Err(e) = self.incidents.save(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot write the incidents.");
                }
            }
            // Likewise a deployment that started or was judged.
            if deployment_changed || due {
                let path = crate::deployments::checkpoint_path(&cp.path);
                if let Err(e) = self.deployments.save(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot write the deployments.");
                }
            }
            if last || now.saturating_sub(self.last_checkpoint) >= cp.interval.as_nanos() as u64 {
                self.last_checkpoint = now;
                match self.tracker.save(&cp.path, now) {
                    Ok(()) => {
                        tracing::debug!(path = %cp.path.display(), "Wrote the SLO checkpoint.")
                    }
                    Err(e) => {
                        tracing::warn!(path = %cp.path.display(), error = %e, "Cannot write the SLO checkpoint.")
                    }
                }
                let path = attempts_path(&cp.path);
                if let Err(e) = self.ingest.completions.save(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot write the attempts checkpoint.")
                }
            }
        }
    }
}

/// Kafka stage 2: an instance exports only the journeys it owns. Configured journeys
/// with no data here are another instance's: their empty budgets, alerts and scores
/// would clash with the owner's series.
fn keep_owned(
    eval: &mut score::Evaluation,
    owned: &std::collections::BTreeSet<Arc<str>>,
    versioned: &std::collections::BTreeSet<Arc<str>>,
) {
    let keep: Vec<bool> = eval
        .view
        .journeys
        .iter()
        .map(|j| owned.contains(j.journey.as_str()))
        .collect();
    let mut i = 0;
    eval.view.journeys.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    if eval.infos.len() == keep.len() {
        let mut i = 0;
        eval.infos.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    eval.incidents
        .retain(|x| owned.contains(x.journey.as_str()));
    eval.incident_stats
        .retain(|x| owned.contains(x.journey.as_str()));
    // A journey's versions outlive its series (neither a worker nor an owner expires
    // them by time): while the owner holds them, it shows the journey's deployments, as
    // one instance shows them after the series went quiet.
    let deploying = |j: &str| owned.contains(j) || versioned.contains(j);
    eval.deployments.retain(|x| deploying(&x.journey));
    eval.deployment_stats.retain(|x| deploying(&x.journey));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stage 2: an owned journey with series keeps everything; one whose series expired
    /// but whose versions the owner still holds keeps its deployments only; one with
    /// neither (another instance's) keeps nothing.
    #[test]
    fn an_owner_shows_the_deployments_of_journeys_it_holds_versions_of() {
        use crate::deployments::{Deployment, DeploymentStats, Outcome};
        let deployment = |journey: &str| Deployment {
            journey: journey.into(),
            version: "2.0".into(),
            previous_version: "1.0".into(),
            result: Outcome::Regressed,
            start_unix_nano: 0,
            end_unix_nano: Some(1),
            figures: Default::default(),
            previous_figures: Default::default(),
            baseline: "same_span".into(),
            score_drop: None,
        };
        let stats = |journey: &str| DeploymentStats {
            journey: journey.into(),
            ok: 0,
            regressed: 1,
        };
        let names = ["checkout", "quiet", "theirs"];
        let mut eval = score::Evaluation {
            deployments: names.iter().map(|j| deployment(j)).collect(),
            deployment_stats: names.iter().map(|j| stats(j)).collect(),
            ..Default::default()
        };
        let set = |l: &[&str]| l.iter().map(|&j| Arc::<str>::from(j)).collect();
        keep_owned(&mut eval, &set(&["checkout"]), &set(&["checkout", "quiet"]));
        let kept: Vec<&str> = eval
            .deployments
            .iter()
            .map(|d| d.journey.as_str())
            .collect();
        assert_eq!(kept, ["checkout", "quiet"]);
        let kept: Vec<&str> = eval
            .deployment_stats
            .iter()
            .map(|d| d.journey.as_str())
            .collect();
        assert_eq!(kept, ["checkout", "quiet"]);
    }

    #[test]
    fn two_incomplete_ticks_are_skipped_and_the_third_is_published() {
        let mut p = PartialTicks::default();
        assert_eq!(p.admit(2, 2), None);
        assert_eq!(p.admit(1, 2), Some(false));
        assert_eq!(p.admit(1, 2), Some(false));
        assert_eq!(p.admit(1, 2), Some(true));
        // The count starts again after a publication, and after a complete tick.
        assert_eq!(p.admit(1, 2), Some(false));
        assert_eq!(p.admit(2, 2), None);
        assert_eq!(p.admit(0, 2), Some(false));
    }
}
