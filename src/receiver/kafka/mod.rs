//! The Kafka receiver: a consumer-group member that reads OTLP trace bodies (one
//! `ExportTraceServiceRequest` per message, as the Collector's `kafka` exporter writes
//! them) from `receivers.kafka.topic` and hands each to the same [`Consumer`] as the OTLP
//! listeners. Kafka assigns and reassigns the partitions among the instances of a group.
//!
//! Delivery is at least once: a message's offset is stored only after the consumer has
//! taken it (or refused it for good), and stored offsets are committed every 5 s and on
//! shutdown; a crash replays at most the messages since the last commit. With
//! `receivers.kafka.aggregates` (stage 2) it is exactly once instead: offsets are
//! committed only in the transaction that publishes the partial aggregates of the spans
//! before them ([`transactions`]).

pub mod config;
pub mod owners;
pub mod transactions;

use crate::internal_events::{InternalEvent, KafkaAssigned, KafkaConnection, KafkaError};
use crate::receiver::consumer::{Consumer, Refused};
use crate::telemetry::{Telemetry, Transport};
use config::{KafkaReceiver, KafkaTls, Sasl};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Statistics};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use transactions::{Barrier, Transactions};

/// How long one poll waits for a message, so a stop request is seen within it.
const POLL: Duration = Duration::from_millis(100);
/// The longest pause between two offers of a message the queues had no room for.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// librdkafka's view of the connection and the group, turned into internal events.
struct Context {
    tel: Arc<Telemetry>,
    /// Stage 2: the transactions that commit the offsets.
    txn: Option<Arc<Transactions>>,
}

impl ClientContext for Context {
    fn stats(&self, s: Statistics) {
        // Bootstrap and group-coordinator entries are aliases of real brokers; a learned
        // broker in state UP is a live connection.
        let up = s
            .brokers
            .values()
            .any(|b| b.source != "logical" && b.state == "UP");
        KafkaConnection { connected: up }.emit(&self.tel);
    }

    fn error(&self, error: RdError, reason: &str) {
        let all_down = matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        );
        if all_down {
            KafkaConnection { connected: false }.emit(&self.tel);
        }
        KafkaError { detail: reason }.emit(&self.tel);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        // Before the partitions go: what was taken from them is published and committed
        // (or, if that fails, left uncommitted for their next owner to read again).
        if let (Some(txn), Rebalance::Revoke(_)) = (&self.txn, r) {
            txn.commit(consumer);
            txn.forget();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let partitions = match r {
            Rebalance::Assign(_) => consumer.assignment().map_or(0, |a| a.count() as u64),
            Rebalance::Revoke(_) => 0,
            Rebalance::Error(e) => {
                KafkaError {
                    detail: &e.to_string(),
                }
                .emit(&self.tel);
                return;
            }
        };
        KafkaAssigned { partitions }.emit(&self.tel);
    }
}

/// librdkafka's consumer settings for `cfg`: the Collector's knobs mapped to its names.
pub fn client_config(cfg: &KafkaReceiver) -> ClientConfig {
    let mut c = connection_config(cfg);
    c.set("group.id", &cfg.group_id)
        .set("auto.offset.reset", cfg.initial_offset.as_str())
        .set("statistics.interval.ms", "1000")
        // Fetches are bounded: at most this much is buffered ahead of the pipeline.
        .set("queued.max.messages.kbytes", "65536");
    if cfg.aggregates.is_some() {
        // Offsets are committed only inside the aggregates' transactions.
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
    } else {
        // Offsets are stored by hand once a message is taken, committed in the background.
        c.set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "5000");
    }
    c
}

/// The brokers, client id and security settings every client of `cfg` shares.
pub fn connection_config(cfg: &KafkaReceiver) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id);
    let protocol = match (&cfg.tls, &cfg.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(KafkaTls {
        ca_file,
        cert_file,
        key_file,
        insecure_skip_verify,
    }) = &cfg.tls
    {
        for (key, file) in [
            ("ssl.ca.location", ca_file),
            ("ssl.certificate.location", cert_file),
            ("ssl.key.location", key_file),
        ] {
            if let Some(f) = file {
                c.set(key, f.to_string_lossy());
            }
        }
        if *insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false");
        }
    }
    if let Some(Sasl {
        mechanism,
        username,
        password,
    }) = &cfg.sasl
    {
        c.set("sasl.mechanism", mechanism)
            .set("sasl.username", username)
            .set("sasl.password", password);
    }
    c
}

/// A running receiver. Stopping it commits the offsets of what was taken and leaves the
/// group; without a broker that can hang, so the app waits for it only as long as its
/// shutdown timeout, and a receiver thread still stuck then ends with the process (its
/// uncommitted messages are read again by the next owner: at least once).
pub struct KafkaReceiverHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl KafkaReceiverHandle {
    /// Asks the receiver to stop polling, commit and leave the group.
    pub fn request_stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// True once it has committed and left the group (or failed to).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

impl Drop for KafkaReceiverHandle {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Stage 2's part of the receiver: the barrier and how often it runs.
pub struct Stage2 {
    pub barrier: Arc<dyn Barrier>,
    /// The evaluation interval: partials are published once per interval.
    pub interval: Duration,
}

/// Creates the consumer and subscribes; the error says what librdkafka refused (an
/// option its build lacks, e.g. TLS, is reported here at start-up). `stage2` is given
/// when `cfg.aggregates` is set.
pub fn start(
    cfg: &KafkaReceiver,
    consumer: Arc<dyn Consumer>,
    tel: Arc<Telemetry>,
    stage2: Option<Stage2>,
) -> Result<KafkaReceiverHandle, String> {
    let (txn, interval) = match (&cfg.aggregates, stage2) {
        (Some(agg), Some(s)) => {
            tel.kafka.aggregates.store(true, Relaxed);
            let t = Transactions::new(cfg, agg, s.barrier, tel.clone());
            (Some(Arc::new(t)), s.interval)
        }
        (Some(_), None) => {
            return Err("receivers.kafka.aggregates needs the partial-aggregate barrier".into())
        }
        (None, _) => (None, Duration::MAX),
    };
    let context = Context {
        tel: tel.clone(),
        txn: txn.clone(),
    };
    let kafka: BaseConsumer<Context> = client_config(cfg)
        .create_with_context(context)
        .map_err(|e| format!("receivers.kafka: cannot create the Kafka consumer: {e}"))?;
    kafka
        .subscribe(&[&cfg.topic])
        .map_err(|e| format!("receivers.kafka: cannot subscribe to {}: {e}", cfg.topic))?;
    tel.kafka.enabled.store(true, Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let format = match cfg.encoding {
        config::Encoding::OtlpProto => crate::receiver::consumer::Format::Protobuf,
        config::Encoding::OtlpJson => crate::receiver::consumer::Format::Json,
    };
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("kafka-receiver".into())
            .spawn(move || run(kafka, consumer.as_ref(), format, &stop, txn, interval))
            .map_err(|e| format!("cannot start the Kafka receiver thread: {e}"))?
    };
    Ok(KafkaReceiverHandle { stop, thread })
}

fn run(
    kafka: BaseConsumer<Context>,
    consumer: &dyn Consumer,
    format: crate::receiver::consumer::Format,
    stop: &AtomicBool,
    txn: Option<Arc<Transactions>>,
    interval: Duration,
) {
    let mut last_barrier = std::time::Instant::now();
    'poll: while !stop.load(Relaxed) {
        if let Some(t) = &txn {
            if last_barrier.elapsed() >= interval {
                t.commit(&kafka);
                last_barrier = std::time::Instant::now();
            }
        }
        let msg = match kafka.poll(POLL) {
            None => continue,
            Some(Err(e)) => {
                // librdkafka reconnects and refetches by itself; the poll timeout paces this.
                KafkaError {
                    detail: &e.to_string(),
                }
                .emit(consumer.telemetry());
                continue;
            }
            Some(Ok(m)) => m,
        };
        let body = msg.payload().unwrap_or_default();
        let mut backoff = Duration::from_millis(10);
        // Offered again until taken: a full queue is back pressure, and Kafka keeps the
        // rest of the partition meanwhile. Each offer counts as received and refused, as
        // an OTLP sender's retry does, so received = processed + refused still holds.
        loop {
            match consumer.traces(body, format, Transport::Kafka, None) {
                Ok(_) | Err(Refused::Malformed(_)) | Err(Refused::TooLarge(_)) => break,
                Err(Refused::Unavailable) => {
                    if stop.load(Relaxed) {
                        // Not taken: its offset stays unstored, the next owner reads it.
                        break 'poll;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(t) = &txn {
            t.taken(msg.partition(), msg.offset());
        } else if let Err(e) = kafka.store_offset_from_message(&msg) {
            // Revoked meanwhile: the new owner reads the message again (at least once).
            KafkaError {
                detail: &e.to_string(),
            }
            .emit(consumer.telemetry());
        }
    }
    if let Some(t) = &txn {
        // Shutdown flushes: the last barrier publishes and commits what was taken.
        t.commit(&kafka);
    } else {
        commit_stored(&kafka, consumer);
    }
    kafka.unsubscribe();
    consumer
        .telemetry()
        .kafka
        .partitions_assigned
        .store(0, Relaxed);
}

fn commit_stored(kafka: &BaseConsumer<Context>, consumer: &dyn Consumer) {
    match kafka.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(RdError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => KafkaError {
            detail: &e.to_string(),
        }
        .emit(consumer.telemetry()),
    }
}

#[cfg(test)]
mod tests {
    use super::config::{Encoding, InitialOffset};
    use super::*;

    fn receiver() -> KafkaReceiver {
        KafkaReceiver {
            brokers: vec!["127.0.0.1:9092".into(), "k2:9093".into()],
            topic: "otlp_spans".into(),
            group_id: "cerflow".into(),
            client_id: "c1".into(),
            encoding: Encoding::OtlpProto,
            initial_offset: InitialOffset::Earliest,
            tls: None,
            sasl: None,
            aggregates: None,
        }
    }

    #[test]
    fn the_collector_keys_map_to_librdkafka_names() {
        let mut r = receiver();
        let c = client_config(&r);
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092,k2:9093"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        r.sasl = Some(Sasl {
            mechanism: "PLAIN".into(),
            username: "u".into(),
            password: "p".into(),
        });
        let c = client_config(&r);
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        r.tls = Some(KafkaTls {
            insecure_skip_verify: true,
            ..Default::default()
        });
        let c = client_config(&r);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("enable.ssl.certificate.verification"), Some("false"));
    }

    /// Stage 2 commits offsets only inside its transactions, never in the background.
    #[test]
    fn with_aggregates_offsets_are_not_committed_automatically() {
        let mut r = receiver();
        assert_eq!(client_config(&r).get("enable.auto.commit"), Some("true"));
        r.aggregates = Some(config::Aggregates {
            topic: "cerflow-aggregates".into(),
            instance: "a".into(),
            max_message_bytes: 1_000_000,
            state: Default::default(),
        });
        let c = client_config(&r);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), None);
        assert_eq!(c.get("group.id"), Some("cerflow"));
        assert_eq!(connection_config(&r).get("group.id"), None);
    }

    /// The default rdkafka build has no OpenSSL: TLS is refused when the consumer is
    /// made, at start-up, with librdkafka's reason, not later in a retry loop.
    #[test]
    fn tls_without_an_openssl_build_is_refused_at_start_up() {
        let mut r = receiver();
        r.tls = Some(KafkaTls::default());
        let tel = Arc::new(Telemetry::default());
        let made: Result<BaseConsumer<Context>, _> =
            client_config(&r).create_with_context(Context { tel, txn: None });
        let err = made.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("OpenSSL not available"), "{err}");
    }
}
