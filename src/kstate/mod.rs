//! Kafka stage 2's long-lived state, beside the owners of journeys: the changelog
//! ([`changelog`]) a new owner restores budgets, incidents and deployments from, and the
//! snapshots ([`snapshots`]) every instance reads so any score API answers for all
//! journeys. Both topics are compacted and keyed by journey; [`ensure_topics`] makes
//! them so when they are absent.

pub mod changelog;
pub mod config;
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
