//! Every owner's latest figures of each journey it owns, in the compacted snapshots
//! topic (key = journey), and the bounded map of them that every instance reads, so the
//! score API of any instance can answer for all journeys (`?scope=all`), computing the
//! overall score from the per-journey figures as the deriver does.
//!
//! A snapshot whose owner stopped writing (gone, and its journeys not yet taken over)
//! ages out `snapshot_ttl` after its evaluation time, counted.

use super::{base_config, KState};
use crate::config::Score;
use crate::internal_events::{InternalEvent, KafkaError, KafkaSnapshotDropped, SnapshotDrop};
use crate::receiver::kafka::config::KafkaReceiver;
use crate::score::{overall_of, JourneyView, ScoreView};
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One journey's figures as its owner derived them: the score API's entries of the
/// journey (the journey as a whole, then its cohorts).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneySnapshot {
    pub journey: String,
    /// The owner's `aggregates.instance`.
    pub instance: String,
    pub time_unix_nano: u64,
    pub definition_version: String,
    pub windows: Vec<String>,
    pub views: Vec<JourneyView>,
}

/// The owner's snapshots of `view`'s journeys (those it owns: the journeys it derives).
pub fn of_view(view: &ScoreView, instance: &str) -> Vec<JourneySnapshot> {
    let mut by_journey: BTreeMap<&str, Vec<JourneyView>> = BTreeMap::new();
    for j in &view.journeys {
        by_journey.entry(&j.journey).or_default().push(j.clone());
    }
    by_journey
        .into_iter()
        .map(|(journey, views)| JourneySnapshot {
            journey: journey.to_string(),
            instance: instance.to_string(),
            time_unix_nano: view.time_unix_nano,
            definition_version: view.definition_version.clone(),
            windows: view.windows.clone(),
            views,
        })
        .collect()
}

/// Publishes an owner's snapshots each tick.
pub struct SnapshotPublisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    max_bytes: usize,
    tel: Arc<Telemetry>,
}

impl SnapshotPublisher {
    pub fn new(kafka: &KafkaReceiver, cfg: &KState, tel: Arc<Telemetry>) -> Result<Self, String> {
        let producer = base_config(kafka)
            .set(
                "message.max.bytes",
                (cfg.max_record_bytes + 4096).to_string(),
            )
            .create()
            .map_err(|e| format!("cannot create the snapshots producer: {e}"))?;
        Ok(SnapshotPublisher {
            producer,
            topic: cfg.snapshots_topic.clone(),
            max_bytes: cfg.max_record_bytes,
            tel,
        })
    }

    /// Queues each snapshot; returns how many were queued (a too large one is counted).
    pub fn publish(&self, snaps: &[JourneySnapshot]) -> usize {
        let mut sent = 0;
        for s in snaps {
            let value = match serde_json::to_vec(s) {
                Ok(v) => v,
                Err(e) => {
                    KafkaError {
                        detail: &format!("cannot encode the snapshot of {}: {e}", s.journey),
                    }
                    .emit(&self.tel);
                    continue;
                }
            };
            if value.len() > self.max_bytes {
                KafkaSnapshotDropped {
                    reason: SnapshotDrop::TooLarge,
                    journey: &s.journey,
                }
                .emit(&self.tel);
                continue;
            }
            match self
                .producer
                .send(BaseRecord::to(&self.topic).key(&s.journey).payload(&value))
            {
                Ok(()) => sent += 1,
                Err((e, _)) => KafkaError {
                    detail: &format!("cannot queue the snapshot of {}: {e}", s.journey),
                }
                .emit(&self.tel),
            }
        }
        sent
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.producer
            .flush(timeout)
            .map_err(|e| format!("snapshots not delivered in {timeout:?}: {e}"))
    }
}

/// The latest snapshot of each journey, at most `max` journeys.
pub struct SnapshotStore {
    map: Mutex<HashMap<String, JourneySnapshot>>,
    max: usize,
    ttl_ns: u64,
    tel: Arc<Telemetry>,
}

impl SnapshotStore {
    pub fn new(cfg: &KState, tel: Arc<Telemetry>) -> SnapshotStore {
        SnapshotStore {
            map: Mutex::new(HashMap::new()),
            max: cfg.max_snapshots,
            ttl_ns: u64::try_from(cfg.snapshot_ttl.as_nanos()).unwrap_or(u64::MAX),
            tel,
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, JourneySnapshot>> {
        // A reader that panicked holding the lock left whole entries: keep serving them.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `s` if it is newer than what is held for its journey; a new journey past
    /// the bound is dropped, counted.
    pub fn insert(&self, s: JourneySnapshot) {
        let mut map = self.locked();
        let full = map.len() >= self.max;
        match map.get_mut(&s.journey) {
            Some(old) if old.time_unix_nano > s.time_unix_nano => {}
            Some(old) => *old = s,
            None if full => {
                drop(map);
                KafkaSnapshotDropped {
                    reason: SnapshotDrop::Full,
                    journey: &s.journey,
                }
                .emit(&self.tel);
                return;
            }
            None => {
                map.insert(s.journey.clone(), s);
            }
        }
        let n = map.len() as u64;
        drop(map);
        self.tel.kafka.snapshots_held.store(n, Relaxed);
    }

    /// A tombstone: the journey is gone.
    pub fn remove(&self, journey: &str) {
        let mut map = self.locked();
        map.remove(journey);
        self.tel
            .kafka
            .snapshots_held
            .store(map.len() as u64, Relaxed);
    }

    /// The snapshots younger than the ttl at `now_ns`, by journey; older ones are dropped
    /// here, counted.
    pub fn live(&self, now_ns: u64) -> Vec<JourneySnapshot> {
        let mut map = self.locked();
        let mut stale = Vec::new();
        map.retain(|j, s| {
            let fresh = now_ns.saturating_sub(s.time_unix_nano) <= self.ttl_ns;
            if !fresh {
                stale.push(j.clone());
            }
            fresh
        });
        let mut out: Vec<JourneySnapshot> = map.values().cloned().collect();
        self.tel
            .kafka
            .snapshots_held
            .store(map.len() as u64, Relaxed);
        drop(map);
        for j in stale {
            KafkaSnapshotDropped {
                reason: SnapshotDrop::Stale,
                journey: &j,
            }
            .emit(&self.tel);
        }
        out.sort_by(|a, b| a.journey.cmp(&b.journey));
        out
    }
}

/// The score view of every journey in `snaps`: their entries, and the overall score
/// computed from them under `cfg` (the deriver's policy). The windows and version are
/// the newest snapshot's.
pub fn all_view(snaps: &[JourneySnapshot], cfg: &Score) -> ScoreView {
    let newest = snaps.iter().max_by_key(|s| s.time_unix_nano);
    let windows = newest.map(|s| s.windows.clone()).unwrap_or_default();
    let journeys: Vec<JourneyView> = snaps.iter().flat_map(|s| s.views.clone()).collect();
    ScoreView {
        time_unix_nano: newest.map_or(0, |s| s.time_unix_nano),
        definition_version: newest
            .map(|s| s.definition_version.clone())
            .unwrap_or_default(),
        overall: overall_of(cfg, &windows, &journeys),
        windows,
        journeys,
        // Several owners answer: each snapshot names its own.
        instance: None,
    }
}

/// The thread that reads the snapshots topic into a [`SnapshotStore`]; stops on drop.
pub struct SnapshotReader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SnapshotReader {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often the reader looks for partitions added to the topic.
const REFRESH: Duration = Duration::from_secs(30);

/// Reads every partition of the snapshots topic from its beginning, with no group (each
/// instance reads all), into `store`.
pub fn start_reader(
    kafka: &KafkaReceiver,
    cfg: &KState,
    store: Arc<SnapshotStore>,
    tel: Arc<Telemetry>,
) -> Result<SnapshotReader, String> {
    let consumer: BaseConsumer = base_config(kafka)
        .set("group.id", format!("{}-snapshots", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set(
            "message.max.bytes",
            (cfg.max_record_bytes + 4096).to_string(),
        )
        .create()
        .map_err(|e| format!("cannot create the snapshots reader: {e}"))?;
    let topic = cfg.snapshots_topic.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("kafka-snapshots".into())
            .spawn(move || read_loop(&consumer, &topic, &store, &tel, &stop))
            .map_err(|e| format!("cannot start the snapshots reader thread: {e}"))?
    };
    Ok(SnapshotReader {
        stop,
        thread: Some(thread),
    })
}

fn read_loop(
    consumer: &BaseConsumer,
    topic: &str,
    store: &SnapshotStore,
    tel: &Telemetry,
    stop: &AtomicBool,
) {
    let mut assigned = 0;
    let mut next_refresh = std::time::Instant::now();
    while !stop.load(Relaxed) {
        if std::time::Instant::now() >= next_refresh {
            next_refresh = std::time::Instant::now() + REFRESH;
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => {
                    let n = md
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map_or(0, |t| t.partitions().len());
                    if n > assigned {
                        // Partitions already read go on from where they are.
                        let mut list = TopicPartitionList::new();
                        for p in 0..n {
                            let at = match consumer.position().ok().and_then(|pos| {
                                pos.find_partition(topic, p as i32).map(|e| e.offset())
                            }) {
                                Some(o @ Offset::Offset(_)) => o,
                                _ => Offset::Beginning,
                            };
                            let _ = list.add_partition_offset(topic, p as i32, at);
                        }
                        match consumer.assign(&list) {
                            Ok(()) => assigned = n,
                            Err(e) => KafkaError {
                                detail: &e.to_string(),
                            }
                            .emit(tel),
                        }
                    }
                }
                Err(e) => {
                    KafkaError {
                        detail: &format!("snapshots topic {topic}: {e}"),
                    }
                    .emit(tel);
                    // Sooner than the usual refresh: nothing is read until it answers.
                    next_refresh = std::time::Instant::now() + Duration::from_secs(1);
                }
            }
        }
        if assigned == 0 {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => KafkaError {
                detail: &e.to_string(),
            }
            .emit(tel),
            Some(Ok(m)) => {
                let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
                let parsed = m.payload().map(serde_json::from_slice::<JourneySnapshot>);
                match (key, parsed) {
                    (Some(k), None) => store.remove(k),
                    (Some(k), Some(Ok(s))) if s.journey == k => store.insert(s),
                    (k, _) => KafkaSnapshotDropped {
                        reason: SnapshotDrop::Invalid,
                        journey: k.unwrap_or(""),
                    }
                    .emit(tel),
                }
            }
        }
    }
}
