//! Stage 2's second consumer (issue 13): every instance with `receivers.kafka.aggregates`
//! also reads the aggregates topic, `read_committed`, as a member of the group
//! `<group_id>-owners`. Kafka gives each aggregates partition to one member; partials are
//! keyed by journey, so that member owns the partition's journeys and is the only one
//! that merges, derives and exports them. This module only moves messages and
//! ownership changes to a [`PartialSink`] (the owner state, wired in by the app); what a
//! partial means is [`crate::partial`]'s.
//!
//! The owners' group never commits offsets: a member that is given a partition reads it
//! from the start of what the topic retains (`auto.offset.reset=earliest`), so a new
//! owner after a rebalance or a crash rebuilds the partition's journeys from every
//! committed partial, exactly as the previous owner had merged them. What it costs: the
//! restore reads the partition's retained log, so the topic's `retention.ms` bounds both
//! the restore time and how far back counters since the series began reach (set it
//! above the longest window; the compacted changelog of long-lived state is the answer
//! for the SLO period).

use super::config::{Aggregates, KafkaReceiver};
use crate::internal_events::{InternalEvent, KafkaError, KafkaStateRefused, StateRefusal};
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one poll waits, so a stop request is seen within it.
const POLL: Duration = Duration::from_millis(100);

/// Where the owners' consumer hands what it reads. Called on the consumer's thread; a
/// partition's messages arrive in order, after its `assigned` and before its `revoked`.
pub trait PartialSink: Send + Sync {
    /// These aggregates partitions are now this instance's (read from their start).
    fn assigned(&self, partitions: &[i32]);
    /// These are no longer: their journeys' state must go, the new owner rebuilds it.
    fn revoked(&self, partitions: &[i32]);
    /// One committed message of the aggregates topic (keyed by journey).
    fn partial(&self, partition: i32, bytes: &[u8]);
    /// These assigned partitions are read to where they ended when they were assigned
    /// (or could not be within the time limit): their journeys are rebuilt. Comes once
    /// per assignment, after its `assigned`, before its `revoked`.
    fn caught_up(&self, _partitions: &[i32]) {}
}

struct OwnersContext {
    tel: Arc<Telemetry>,
    sink: Arc<dyn PartialSink>,
    topic: String,
    /// Each assigned partition not yet read to its end at assignment, with that end and
    /// when to stop waiting for it.
    ends: std::sync::Mutex<std::collections::HashMap<i32, (i64, Instant)>>,
    /// How long a partition's re-read may take before it is reported caught up anyway:
    /// the owner state holds its journeys back until then, so it must come.
    catch_up_limit: Duration,
}

impl OwnersContext {
    fn ends(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i32, (i64, Instant)>> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports the partitions whose position passed their end at assignment, and those
    /// past their time limit (counted as a restore cut short). The position moves past
    /// what `read_committed` never delivers, also at a partition's end: transaction
    /// markers, and an aborted transaction's messages with its abort marker
    /// (tests/kstate.rs `a_new_owner_re_reads_to_the_end_past_an_aborted_transaction_without_waiting`,
    /// against the bundled librdkafka), so such an end is no wait for `restore_timeout`.
    fn check_caught_up(&self, kafka: &BaseConsumer<OwnersContext>) {
        if self.ends().is_empty() {
            return;
        }
        let pos = kafka.position().ok();
        let now = Instant::now();
        let (mut done, mut late) = (Vec::new(), Vec::new());
        {
            let mut ends = self.ends();
            for e in pos.iter().flat_map(|p| p.elements()) {
                if let rdkafka::Offset::Offset(next) = e.offset() {
                    if ends
                        .get(&e.partition())
                        .is_some_and(|(end, _)| next >= *end)
                    {
                        ends.remove(&e.partition());
                        done.push(e.partition());
                    }
                }
            }
            ends.retain(|&p, (_, limit)| {
                let keep = now < *limit;
                if !keep {
                    late.push(p);
                }
                keep
            });
        }
        if !late.is_empty() {
            KafkaStateRefused {
                reason: StateRefusal::RestoreTimeout,
                journey: "",
                detail: &format!(
                    "{}{late:?} not re-read to its end at assignment in {:?}: its journeys are derived from what was read",
                    self.topic, self.catch_up_limit
                ),
            }
            .emit(&self.tel);
            done.extend(late);
        }
        if !done.is_empty() {
            self.sink.caught_up(&done);
        }
    }
}

impl ClientContext for OwnersContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let _ = error;
        KafkaError { detail: reason }.emit(&self.tel);
    }
}

impl OwnersContext {
    fn partitions(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ConsumerContext for OwnersContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let gone = self.partitions(tpl);
            self.ends().retain(|p, _| !gone.contains(p));
            self.sink.revoked(&gone);
        }
    }

    fn post_rebalance(&self, kafka: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                let got = self.partitions(tpl);
                let mut now_done = Vec::new();
                let limit = Instant::now() + self.catch_up_limit;
                for &p in &got {
                    match kafka.fetch_watermarks(&self.topic, p, Duration::from_secs(10)) {
                        Ok((low, high)) if high > low => {
                            self.ends().insert(p, (high, limit));
                        }
                        Ok(_) => now_done.push(p),
                        // Nothing to wait for: its journeys are derived from what is
                        // read, and a restored incident may see a tick of partial
                        // figures.
                        Err(e) => {
                            KafkaError {
                                detail: &format!(
                                    "cannot read the end of {}[{p}]: {e}; its journeys are derived without waiting for their re-read",
                                    self.topic
                                ),
                            }
                            .emit(&self.tel);
                            now_done.push(p);
                        }
                    }
                }
                self.sink.assigned(&got);
                if !now_done.is_empty() {
                    self.sink.caught_up(&now_done);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => KafkaError {
                detail: &e.to_string(),
            }
            .emit(&self.tel),
        }
    }
}

/// The owners' group: `<group_id>-owners`.
pub fn owners_group(cfg: &KafkaReceiver) -> String {
    format!("{}-owners", cfg.group_id)
}

/// librdkafka's settings for the owners' consumer of `agg.topic`.
pub fn owners_config(cfg: &KafkaReceiver) -> rdkafka::config::ClientConfig {
    let mut c = super::connection_config(cfg);
    c.set("group.id", owners_group(cfg))
        // Only what the publishers' transactions committed: an aborted barrier's
        // partials are never merged.
        .set("isolation.level", "read_committed")
        // No commits: a new owner reads its partitions from the start (see the module).
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "65536");
    c
}

/// A running owners' consumer; dropping it asks it to stop.
pub struct OwnersHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OwnersHandle {
    /// Leaves the owners' group (its partitions move at once) and waits up to `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.stop.store(true, Relaxed);
        let deadline = std::time::Instant::now() + grace;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for OwnersHandle {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Joins the owners' group and starts reading `agg.topic` on a thread of its own.
pub fn start(
    cfg: &KafkaReceiver,
    agg: &Aggregates,
    sink: Arc<dyn PartialSink>,
    tel: Arc<Telemetry>,
) -> Result<OwnersHandle, String> {
    let context = OwnersContext {
        tel: tel.clone(),
        sink: sink.clone(),
        topic: agg.topic.clone(),
        ends: Default::default(),
        catch_up_limit: agg.state.restore_timeout,
    };
    let kafka: BaseConsumer<OwnersContext> = owners_config(cfg)
        .create_with_context(context)
        .map_err(|e| {
            format!("receivers.kafka.aggregates: cannot create the owners' consumer: {e}")
        })?;
    kafka.subscribe(&[&agg.topic]).map_err(|e| {
        format!(
            "receivers.kafka.aggregates: cannot subscribe to {}: {e}",
            agg.topic
        )
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("kafka-owners".into())
            .spawn(move || {
                while !stop.load(Relaxed) {
                    match kafka.poll(POLL) {
                        None => {}
                        Some(Err(e)) => KafkaError {
                            detail: &e.to_string(),
                        }
                        .emit(&tel),
                        Some(Ok(m)) => sink.partial(m.partition(), m.payload().unwrap_or_default()),
                    }
                    kafka.context().check_caught_up(&kafka);
                }
                // Leaving the group revokes (and so forgets) every partition.
                kafka.unsubscribe();
                let _ = kafka.poll(Duration::ZERO);
            })
            .map_err(|e| format!("cannot start the Kafka owners thread: {e}"))?
    };
    Ok(OwnersHandle {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_read_committed_in_their_own_group_from_the_start() {
        let r = KafkaReceiver {
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "otlp_spans".into(),
            group_id: "cerflow".into(),
            client_id: "c1".into(),
            encoding: super::super::config::Encoding::OtlpProto,
            initial_offset: super::super::config::InitialOffset::Latest,
            tls: None,
            sasl: None,
            aggregates: None,
        };
        let c = owners_config(&r);
        assert_eq!(c.get("group.id"), Some("cerflow-owners"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
    }
}
