//! The owner's changelog: each owned journey's long-lived state (SLO rings and alert
//! states, incidents, deployments), one record per journey in a compacted topic keyed by
//! journey, written at a tick when its bytes changed. A new owner reads the records of
//! its partitions to their end and restores their incidents and deployments (the SLO
//! part is rebuilt from the re-read partials instead: see [`super::restore`]).
//!
//! A record's value is the journey's state in the checkpoint encoding
//! ([`crate::checkpoint::encode`], kind `journey`): a header with a length and a CRC, then
//! JSON, so a corrupt or foreign record is refused whole, counted, never half restored.

use super::{base_config, KState};
use crate::deployments::DeploymentTracker;
use crate::incidents::IncidentTracker;
use crate::internal_events::{
    InternalEvent, KafkaChangelogWritten, KafkaError, KafkaStateRefused, StateRefusal,
};
use crate::receiver::kafka::config::KafkaReceiver;
use crate::slo::{JourneySlo, SloTracker};
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIND: &str = "journey";
/// The layout of a record; a change to it takes the next number.
const FORMAT: u32 = 1;

/// One journey's long-lived state: the value of its changelog record.
#[derive(Serialize, Deserialize)]
pub struct JourneyRecord {
    pub slo: JourneySlo,
    pub incidents: Option<crate::incidents::JourneyState>,
    pub deployments: Option<crate::deployments::JourneyState>,
}

impl JourneyRecord {
    pub fn of(
        journey: &str,
        slo: &SloTracker,
        incidents: &IncidentTracker,
        deployments: &DeploymentTracker,
    ) -> JourneyRecord {
        JourneyRecord {
            slo: slo.journey_state(journey),
            incidents: incidents.journey_state(journey),
            deployments: deployments.journey_state(journey),
        }
    }

    pub fn encode(&self) -> std::io::Result<Vec<u8>> {
        crate::checkpoint::encode(KIND, FORMAT, self)
    }

    pub fn decode(value: &[u8]) -> Result<JourneyRecord, String> {
        crate::checkpoint::decode(value, KIND, FORMAT)
    }

    /// Puts the state into the trackers in place of what they held for `journey`;
    /// returns the SLO series restored.
    pub fn restore(
        self,
        journey: &str,
        slo: &mut SloTracker,
        incidents: &mut IncidentTracker,
        deployments: &mut DeploymentTracker,
    ) -> Result<usize, String> {
        let n = slo.restore_journey(journey, self.slo)?;
        incidents.restore_journey(journey, self.incidents);
        deployments.restore_journey(journey, self.deployments);
        Ok(n)
    }
}

/// Reports failed deliveries; the writer then writes every journey again.
struct Delivery {
    tel: Arc<Telemetry>,
    failed: Arc<AtomicBool>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.failed.store(true, Relaxed);
            KafkaError {
                detail: &format!("changelog record not delivered: {e}"),
            }
            .emit(&self.tel);
        }
    }
}

/// Writes owned journeys' records, each only when its bytes changed.
pub struct ChangelogWriter {
    producer: ThreadedProducer<Delivery>,
    topic: String,
    max_bytes: usize,
    /// CRC32 of each journey's last written record.
    last: HashMap<String, u32>,
    failed: Arc<AtomicBool>,
    tel: Arc<Telemetry>,
}

/// What [`ChangelogWriter::write`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Unchanged,
    Sent,
    /// Over `max_record_bytes`: not written (the previous record stays), counted.
    TooLarge(usize),
}

impl ChangelogWriter {
    pub fn new(kafka: &KafkaReceiver, cfg: &KState, tel: Arc<Telemetry>) -> Result<Self, String> {
        let failed = Arc::new(AtomicBool::new(false));
        let producer = base_config(kafka)
            // One record per journey per tick, in order: a retry must not reorder two
            // records of a journey, or compaction would keep the older.
            .set("enable.idempotence", "true")
            .set(
                "message.max.bytes",
                (cfg.max_record_bytes + 4096).to_string(),
            )
            .create_with_context(Delivery {
                tel: tel.clone(),
                failed: failed.clone(),
            })
            .map_err(|e| format!("cannot create the changelog producer: {e}"))?;
        Ok(ChangelogWriter {
            producer,
            topic: cfg.changelog_topic.clone(),
            max_bytes: cfg.max_record_bytes,
            last: HashMap::new(),
            failed,
            tel,
        })
    }

    /// Writes `record` as `journey`'s record unless it is what was last written.
    pub fn write(&mut self, journey: &str, record: &JourneyRecord) -> Result<Written, String> {
        if self.failed.swap(false, Relaxed) {
            // Which one failed is not known here: write them all again.
            self.last.clear();
        }
        let value = record
            .encode()
            .map_err(|e| format!("cannot encode the state of {journey}: {e}"))?;
        if value.len() > self.max_bytes {
            KafkaStateRefused {
                reason: StateRefusal::TooLarge,
                journey,
                detail: &format!("{} bytes, limit {}", value.len(), self.max_bytes),
            }
            .emit(&self.tel);
            return Ok(Written::TooLarge(value.len()));
        }
        let crc = crc32fast::hash(&value);
        if self.last.get(journey) == Some(&crc) {
            return Ok(Written::Unchanged);
        }
        self.producer
            .send(BaseRecord::to(&self.topic).key(journey).payload(&value))
            .map_err(|(e, _)| format!("cannot queue the changelog record of {journey}: {e}"))?;
        self.last.insert(journey.to_string(), crc);
        KafkaChangelogWritten { journey }.emit(&self.tel);
        Ok(Written::Sent)
    }

    /// The journey went to another owner: its next record here (if it comes back) is
    /// written whatever it holds.
    pub fn forget(&mut self, journey: &str) {
        self.last.remove(journey);
    }

    /// Waits until every queued record is delivered (at shutdown, before a revoke).
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.producer
            .flush(timeout)
            .map_err(|e| format!("changelog records not delivered in {timeout:?}: {e}"))
    }
}

/// What a new owner read from the changelog.
#[derive(Debug, Default)]
pub struct Restored {
    /// The latest value of each journey (a tombstone removes it), with the changelog
    /// partition it was read from: that of the journey's partials too.
    pub records: crate::owners::StateRecords,
    /// False when the time limit came first: the journeys not yet read start empty.
    pub complete: bool,
}

/// Reads `partitions` of the changelog from their beginning to their end (what a new
/// owner of the same partitions of the aggregates topic owns: both topics are keyed by
/// journey and have as many partitions), within `cfg.restore_timeout`.
pub fn read(
    kafka: &KafkaReceiver,
    cfg: &KState,
    partitions: &[i32],
    tel: &Telemetry,
) -> Result<Restored, String> {
    let consumer: BaseConsumer = base_config(kafka)
        .set("group.id", format!("{}-restore", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| format!("cannot create the changelog reader: {e}"))?;
    let deadline = Instant::now() + cfg.restore_timeout;
    let topic = cfg.changelog_topic.as_str();
    let timed_out = |open: usize| {
        KafkaStateRefused {
            reason: StateRefusal::RestoreTimeout,
            journey: "",
            detail: &format!(
                "{open} of {} partitions not read to their end in {:?}",
                partitions.len(),
                cfg.restore_timeout
            ),
        }
        .emit(tel);
    };
    let mut list = TopicPartitionList::new();
    // Each partition's end when the read began: records written after it (the old owner
    // may still be writing) are not waited for, or a busy changelog would never end.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for &p in partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        let (low, high) = match consumer.fetch_watermarks(topic, p, left) {
            Ok(w) => w,
            Err(_) if Instant::now() >= deadline => {
                timed_out(partitions.len());
                return Ok(Restored::default());
            }
            Err(e) => return Err(format!("cannot read the end of {topic}[{p}]: {e}")),
        };
        if high > low {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
            ends.insert(p, high);
        }
    }
    let mut open = list.count();
    let mut out = Restored::default();
    if open == 0 {
        out.complete = true;
        return Ok(out);
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    // Bounded by the deadline: each poll waits at most 100 ms.
    while open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out(open);
            return Ok(out);
        }
        // A partition is read when the consumer's position passed its end: also where the
        // last offsets are transaction markers, which are never delivered.
        let mut passed = |p: i32, next: i64, open: &mut usize| {
            if ends.get(&p).is_some_and(|end| next >= *end) {
                ends.remove(&p);
                *open -= 1;
            }
        };
        match consumer.poll(left.min(Duration::from_millis(100))) {
            None => {
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(next) = e.offset() {
                            passed(e.partition(), next, &mut open);
                        }
                    }
                }
            }
            Some(Err(RdError::PartitionEOF(p))) => passed(p, i64::MAX, &mut open),
            Some(Err(e)) => KafkaError {
                detail: &e.to_string(),
            }
            .emit(tel),
            Some(Ok(m)) => {
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    KafkaStateRefused {
                        reason: StateRefusal::Invalid,
                        journey: "",
                        detail: &format!("a record at offset {} has no journey key", m.offset()),
                    }
                    .emit(tel);
                    passed(m.partition(), m.offset() + 1, &mut open);
                    continue;
                };
                match m.payload() {
                    Some(v) => out
                        .records
                        .insert(key.to_string(), (m.partition(), v.to_vec())),
                    None => out.records.remove(key),
                };
                passed(m.partition(), m.offset() + 1, &mut open);
            }
        }
    }
    out.complete = true;
    Ok(out)
}

/// Puts each read record into the trackers; a record that does not decode is refused
/// whole (its journey starts empty), counted and logged. Returns the journeys restored.
pub fn restore(
    restored: &Restored,
    slo: &mut SloTracker,
    incidents: &mut IncidentTracker,
    deployments: &mut DeploymentTracker,
    tel: &Telemetry,
) -> usize {
    let mut n = 0;
    for (journey, (_, value)) in &restored.records {
        let done = JourneyRecord::decode(value)
            .and_then(|r| r.restore(journey, slo, incidents, deployments));
        match done {
            Ok(_) => n += 1,
            Err(e) => KafkaStateRefused {
                reason: StateRefusal::Invalid,
                journey,
                detail: &e,
            }
            .emit(tel),
        }
    }
    n
}
