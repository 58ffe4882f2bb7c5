//! Stage 2's read-process-write (issue 13): with `receivers.kafka.aggregates` set, the
//! receiver publishes what its spans added to the window state as partial aggregates
//! ([`crate::partial`], keyed by journey) and commits its input offsets in the same
//! Kafka transaction, once per evaluation interval and before it gives up partitions.
//!
//! Why a span is counted exactly once, even under SIGKILL:
//! - A barrier runs on the receiver's own thread, so no message is handed on during it.
//!   The [`Barrier`] drains every worker queue and moves the deltas out of the workers
//!   ([`crate::pipeline::PartialTaker`]): every message taken since the last commit is
//!   in the partials, and no message taken after it is.
//! - Those partials and the offsets just past the last message taken from each input
//!   partition are one transaction: `read_committed` readers see the partials exactly
//!   when the group sees the offsets. A crash before the commit aborts both (the broker
//!   aborts an open transaction after `transaction.timeout.ms`), and the next owner of
//!   the partitions reads the messages again from the last committed offsets.
//! - A barrier that fails (no answer from a worker, a send, the offsets or the commit
//!   refused) aborts; the deltas it took are dropped, and the receiver seeks its
//!   partitions back to the first message taken since the last commit, so those spans are
//!   recorded again: dropped once, counted once. A revoked partition cannot be sought:
//!   its new owner starts from the committed offset, which is the same place.
//! - An instance that lost its partitions but still commits (a stalled "zombie") is
//!   fenced: the offsets carry its group generation (`send_offsets_to_transaction` with
//!   the consumer's group metadata, KIP-447) and the broker refuses a stale one.
//!
//! What a partial covers today: the journey x cohort series (counts, latency buckets
//! and histograms, users, values, frustrations, web vitals), the journey x dependency
//! series with the blame (calls, errors, latency, failed requests blamed), each
//! journey's requests per version, and the telemetry coverage (entry-point spans seen
//! and claimed, in messages of its own under [`crate::partial::COVERAGE_KEY`]).
//! An entry span is recorded into its journey series when it is handed on, before the
//! barrier; the barrier attributes every trace still in assembly as if complete, so its
//! calls and blame are in the same transaction as its spans' offsets, and later spans
//! of the trace only publish the difference ([`crate::traces`]). A failed barrier cannot
//! have spans that came over OTLP (on an instance that also listens) sent again.

use super::config::{Aggregates, KafkaReceiver};
use crate::internal_events::{
    InternalEvent, KafkaAggregatesPublished, KafkaError, KafkaTransactionAborted,
};
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a transaction step (init, offsets, commit, abort) may wait for the broker.
const STEP: Duration = Duration::from_secs(10);
/// The broker aborts a transaction left open this long: what a SIGKILLed instance's open
/// transaction holds up `read_committed` readers and its partitions' offsets.
const TRANSACTION_TIMEOUT_MS: &str = "15000";
/// Sends offered again on a full local queue before the barrier gives up.
const MAX_SEND_TRIES: u32 = 600;

/// What the wiring gives the receiver: the messages of one barrier, as (key, value).
pub trait Barrier: Send + Sync {
    /// Runs with the receiver stopped; every message it handed on is in the result. An
    /// error means partials may have been taken and dropped: the receiver rewinds.
    fn take(&self) -> Result<Vec<(String, Vec<u8>)>, String>;
}

/// The transactional producer and the input offsets taken since the last commit.
pub struct Transactions {
    producer: Mutex<Option<BaseProducer>>,
    config: rdkafka::config::ClientConfig,
    barrier: Arc<dyn Barrier>,
    topic: String,
    input_topic: String,
    /// Per input partition: the first offset taken since the last commit, and the next
    /// offset to commit (one past the last taken).
    pending: Mutex<BTreeMap<i32, (i64, i64)>>,
    tel: Arc<Telemetry>,
}

impl Transactions {
    pub fn new(
        cfg: &KafkaReceiver,
        agg: &Aggregates,
        barrier: Arc<dyn Barrier>,
        tel: Arc<Telemetry>,
    ) -> Transactions {
        let mut config = super::connection_config(cfg);
        config
            .set(
                "transactional.id",
                format!("{}-{}", cfg.group_id, agg.instance),
            )
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
            .set(
                "message.max.bytes",
                (agg.max_message_bytes + 4096).to_string(),
            )
            .set("linger.ms", "5");
        Transactions {
            producer: Mutex::new(None),
            config,
            barrier,
            topic: agg.topic.clone(),
            input_topic: cfg.topic.clone(),
            pending: Mutex::new(BTreeMap::new()),
            tel,
        }
    }

    /// Notes that the message at `offset` of input `partition` was taken (or refused
    /// for good): the next commit moves the group past it.
    pub fn taken(&self, partition: i32, offset: i64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.entry(partition)
            .and_modify(|e| e.1 = offset + 1)
            .or_insert((offset, offset + 1));
    }

    /// The barrier: publishes the partials and commits the offsets in one transaction,
    /// or aborts and rewinds `consumer` to the first message taken since the last commit.
    pub fn commit<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if pending.is_empty() {
            return;
        }
        let mut slot = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            // Before anything is taken: without a producer the deltas stay in the
            // workers and the offsets pending, for the next barrier.
            match self.start_producer() {
                Ok(p) => *slot = Some(p),
                Err(e) => {
                    KafkaError { detail: &e }.emit(&self.tel);
                    return;
                }
            }
        }
        let Some(producer) = slot.as_ref() else {
            return;
        };
        match self.publish(producer, consumer, &pending) {
            Ok(messages) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                KafkaAggregatesPublished { messages }.emit(&self.tel);
            }
            Err((e, fatal)) => {
                if fatal {
                    // A fenced or broken producer cannot abort: a new one with the same
                    // transactional id aborts what the old one left open.
                    *slot = None;
                } else if let Err(a) = producer.abort_transaction(STEP) {
                    KafkaError {
                        detail: &a.to_string(),
                    }
                    .emit(&self.tel);
                    *slot = None;
                }
                KafkaTransactionAborted { detail: &e }.emit(&self.tel);
                self.rewind(consumer, &pending);
            }
        }
    }

    fn start_producer(&self) -> Result<BaseProducer, String> {
        let p: BaseProducer = self
            .config
            .create()
            .map_err(|e| format!("cannot create the aggregates producer: {e}"))?;
        p.init_transactions(STEP)
            .map_err(|e| format!("cannot start Kafka transactions: {e}"))?;
        Ok(p)
    }

    /// One transaction; the error says why and whether the producer is unusable.
    fn publish<C: ConsumerContext>(
        &self,
        producer: &BaseProducer,
        consumer: &BaseConsumer<C>,
        pending: &BTreeMap<i32, (i64, i64)>,
    ) -> Result<u64, (String, bool)> {
        let fatal = |e: &RdError| match e {
            RdError::Transaction(t) => t.is_fatal(),
            _ => false,
        };
        let fail = |what: &str, e: RdError| (format!("{what}: {e}"), fatal(&e));
        producer.begin_transaction().map_err(|e| fail("begin", e))?;
        let messages = self
            .barrier
            .take()
            .map_err(|e| (format!("taking the partials: {e}"), false))?;
        for (key, value) in &messages {
            let mut record = BaseRecord::to(&self.topic).key(key).payload(value);
            let mut tries = 0;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((RdError::MessageProduction(code), r))
                        if code == rdkafka::types::RDKafkaErrorCode::QueueFull
                            && tries < MAX_SEND_TRIES =>
                    {
                        tries += 1;
                        producer.poll(Duration::from_millis(50));
                        record = r;
                    }
                    Err((e, _)) => return Err(fail("sending a partial", e)),
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &(_, next)) in pending {
            offsets
                .add_partition_offset(&self.input_topic, partition, Offset::Offset(next))
                .map_err(|e| fail("offsets", e))?;
        }
        let group = consumer
            .group_metadata()
            .ok_or_else(|| ("the consumer has no group metadata".to_string(), false))?;
        producer
            .send_offsets_to_transaction(&offsets, &group, STEP)
            .map_err(|e| fail("committing the input offsets", e))?;
        // A commit that timed out may still complete: librdkafka asks for it again.
        let mut tries = 0;
        loop {
            match producer.commit_transaction(STEP) {
                Ok(()) => return Ok(messages.len() as u64),
                Err(RdError::Transaction(t)) if t.is_retriable() && tries < 3 => tries += 1,
                Err(e) => return Err(fail("commit", e)),
            }
        }
    }

    /// Seeks each partition back to its first message since the last commit, so the
    /// spans whose deltas were dropped are recorded again.
    fn rewind<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        pending: &BTreeMap<i32, (i64, i64)>,
    ) {
        for (&partition, &(first, _)) in pending {
            // A partition no longer assigned is read again by its new owner from the
            // committed offset, which is this same offset.
            let _ = consumer.seek(
                &self.input_topic,
                partition,
                Offset::Offset(first),
                Duration::from_secs(5),
            );
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Forgets the offsets taken since the last commit without committing them (revoked
    /// partitions after a failed barrier): their new owner reads them again.
    pub fn forget(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
