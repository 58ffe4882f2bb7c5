//! Kafka stage 2's long-lived state, beside the owners of journeys: the changelog
//! ([`changelog`]) a new owner restores incidents and deployments from ([`restore`]
//! hands its read to the deriver), and the snapshots ([`snapshots`]) every instance
//! reads so any score API answers for all journeys. Both topics are compacted and keyed
//! by journey; [`ensure_topics`] makes them so when they are absent.

pub mod changelog;
pub mod config;
pub mod restore;
pub mod snapshots;

pub use config::KState;

use crate::receiver::kafka::config::KafkaReceiver;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// The receiver's connection settings (brokers, TLS, SASL), for the producers, readers
/// and admin client of this module.
pub(crate) fn base_config(kafka: &KafkaReceiver) -> ClientConfig {
    crate::receiver::kafka::connection_config(kafka)
}

/// Creates the changelog and snapshots topics, compacted, with `partitions` (those of
/// the aggregates topic: a journey's changelog record then sits in the partition of the
/// same number as its partials, which its owner is assigned) and `replication`. A topic
/// that exists is left as it is.
pub async fn ensure_topics(
    kafka: &KafkaReceiver,
    cfg: &KState,
    partitions: i32,
    replication: i32,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = base_config(kafka)
        .create()
        .map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
    let topics: Vec<NewTopic<'_>> = [&cfg.changelog_topic, &cfg.snapshots_topic]
        .into_iter()
        .map(|t| {
            NewTopic::new(t, partitions, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "compact")
        })
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .map_err(|e| format!("cannot create the state topics: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("cannot create topic {t}: {e}")),
        }
    }
    Ok(())
}

/// What an owner does with its state at each tick: its owned journeys' changelog records
/// (when changed) and their snapshots.
pub struct OwnerState {
    changelog: changelog::ChangelogWriter,
    snapshots: snapshots::SnapshotPublisher,
    instance: String,
    owned: std::collections::BTreeSet<std::sync::Arc<str>>,
    /// Until [`OwnerState::take_restorer`] gives it to the owners.
    restorer: Option<restore::Restorer>,
    tel: std::sync::Arc<crate::telemetry::Telemetry>,
}

impl OwnerState {
    pub fn new(
        kafka: &KafkaReceiver,
        state: &KState,
        instance: &str,
        tel: std::sync::Arc<crate::telemetry::Telemetry>,
    ) -> Result<OwnerState, String> {
        Ok(OwnerState {
            restorer: Some(restore::Restorer::new(kafka, state, tel.clone())),
            changelog: changelog::ChangelogWriter::new(kafka, state, tel.clone())?,
            snapshots: snapshots::SnapshotPublisher::new(kafka, state, tel.clone())?,
            instance: instance.to_string(),
            owned: Default::default(),
            tel,
        })
    }

    /// The state source to give the owners before their consumer starts: it reads the
    /// changelog of each assigned partition for [`OwnerState::apply_restored`].
    pub fn take_restorer(&mut self) -> Option<restore::Restorer> {
        self.restorer.take()
    }

    /// Before the tick's incidents and deployments are updated: the records the owners'
    /// snapshot handed over with their newly re-read journeys (see [`restore`]).
    /// Returns the journeys restored.
    pub fn apply_restored(
        &mut self,
        records: crate::owners::StateRecords,
        incidents: &mut crate::incidents::IncidentTracker,
        deployments: &mut crate::deployments::DeploymentTracker,
    ) -> usize {
        restore::apply(records, incidents, deployments, &self.tel)
    }

    /// After the owner's evaluation: `view` holds only the `owned` journeys.
    pub fn tick(
        &mut self,
        view: &crate::score::ScoreView,
        owned: &std::collections::BTreeSet<std::sync::Arc<str>>,
        slo: &crate::slo::SloTracker,
        incidents: &crate::incidents::IncidentTracker,
        deployments: &crate::deployments::DeploymentTracker,
    ) {
        use crate::internal_events::{InternalEvent, KafkaError};
        for gone in self.owned.difference(owned) {
            self.changelog.forget(gone);
        }
        self.owned.clone_from(owned);
        self.snapshots
            .publish(&snapshots::of_view(view, &self.instance));
        for j in owned {
            let record = changelog::JourneyRecord::of(j, slo, incidents, deployments);
            if let Err(e) = self.changelog.write(j, &record) {
                KafkaError { detail: &e }.emit(&self.tel);
            }
        }
    }

    /// At shutdown: what was queued is delivered, within `timeout`.
    pub fn flush(&self, timeout: std::time::Duration) {
        use crate::internal_events::{InternalEvent, KafkaError};
        for r in [self.changelog.flush(timeout), self.snapshots.flush(timeout)] {
            if let Err(e) = r {
                KafkaError { detail: &e }.emit(&self.tel);
            }
        }
    }
}

/// How long start-up waits for the aggregates topic to show partitions.
const TOPIC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// At start-up: the state topics with the aggregates topic's partition count and the
/// brokers' default replication, when they are absent (see [`ensure_topics`]).
pub async fn ensure_topics_beside(
    kafka: &KafkaReceiver,
    state: &KState,
    aggregates_topic: &str,
) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = base_config(kafka)
        .create()
        .map_err(|e| format!("cannot create a Kafka metadata client: {e}"))?;
    // A topic created just before cerflow starts (a deploy script, a test) can be missing
    // from the brokers' metadata for a moment: look again for a bounded while before
    // refusing to start.
    let deadline = std::time::Instant::now() + TOPIC_WAIT;
    let partitions = loop {
        let md = probe
            .fetch_metadata(Some(aggregates_topic), std::time::Duration::from_secs(10))
            .map_err(|e| format!("cannot read the metadata of {aggregates_topic}: {e}"))?;
        let seen = md
            .topics()
            .iter()
            .find(|t| t.name() == aggregates_topic)
            .map_or(0, |t| t.partitions().len());
        if seen > 0 {
            break seen;
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "the aggregates topic {aggregates_topic} has no partitions after {} s: \
                 create it first",
                TOPIC_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    // -1: the brokers' default replication factor.
    ensure_topics(kafka, state, partitions as i32, -1).await
}
