//! A real single-node Apache Kafka broker (KRaft: broker and controller in one JVM) on
//! free loopback ports, from the jars `scripts/kafka.sh` fetches with Maven; topics made
//! and OTLP bodies produced with rdkafka, the client cerflow itself uses.
//!
//! [`shared`] is one broker per test binary (a JVM start is ~10 s); [`Kafka::start`] is a
//! private one for a test that stops and restarts it. Either dies with the test process:
//! the JVM is started with a parent-death signal from a thread that lives as long as the
//! process, and [`Kafka`]'s drop stops a private one at once. Its data directory goes
//! with it: a private one's on drop, and any one's (the shared broker lives in a static,
//! which is never dropped) by a watcher process that removes it once the test process
//! has ended, however it ended (see [`remove_when_process_ends`]).
//!
//! [`KafkaTee`] is the feed of the exactness tests: an OTLP/gRPC endpoint that hands
//! every request unchanged to one cerflow and, split into one message per trace id as
//! the Collector's `kafka` exporter does with `partition_traces_by_id`, to a topic.

use super::process::{free_ports, stop};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a broker may take to answer after its JVM starts (a busy 2-core machine).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// The folder of the broker jars: `$CERFLOW_KAFKA_LIBS` (set by scripts/test.sh), else
/// what `scripts/kafka.sh` prints (it fetches them once, then answers from its cache).
fn libs() -> PathBuf {
    if let Ok(dir) = std::env::var("CERFLOW_KAFKA_LIBS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/kafka.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh failed: it needs java and mvn"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A running broker; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Kafka {
    child: Mutex<Option<Child>>,
    pub port: u16,
    controller_port: u16,
    dir: tempfile::TempDir,
    libs: PathBuf,
}

/// The broker every test of this binary shares; each test uses its own topics and groups.
pub fn shared() -> &'static Kafka {
    static BROKER: OnceLock<Kafka> = OnceLock::new();
    BROKER.get_or_init(Kafka::start)
}

impl Kafka {
    /// Formats a fresh log directory and starts the broker; returns once it answers.
    pub fn start() -> Kafka {
        let libs = libs();
        let ports = free_ports(2);
        let dir = tempfile::Builder::new()
            .prefix("cerflow-kafka-")
            .tempdir()
            .expect("temp dir for the broker");
        remove_when_process_ends(dir.path());
        let k = Kafka {
            child: Mutex::new(None),
            port: ports[0],
            controller_port: ports[1],
            dir,
            libs,
        };
        std::fs::write(k.dir.path().join("server.properties"), k.properties())
            .expect("writing server.properties");
        std::fs::write(k.dir.path().join("log4j.properties"), LOG4J).expect("log4j config");
        let out = Command::new("java")
            .arg("-cp")
            .arg(k.classpath())
            .args(["kafka.tools.StorageTool", "format", "--standalone", "-t"])
            // The cluster id is 16 bytes in URL-safe base64; each test dir is its own cluster.
            .arg({
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0x5a_u8; 16])
            })
            .arg("-c")
            .arg(k.dir.path().join("server.properties"))
            .output()
            .expect("running java (kafka.tools.StorageTool)");
        assert!(
            out.status.success(),
            "formatting the Kafka log dir failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        k.launch();
        k
    }

    fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }

    fn properties(&self) -> String {
        let (p, c, d) = (self.port, self.controller_port, self.dir.path().display());
        format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.bootstrap.servers=127.0.0.1:{c}\n\
             listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{p}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={d}/data\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             group.initial.rebalance.delay.ms=0\n\
             auto.create.topics.enable=false\n"
        )
    }

    /// Starts the JVM on the formatted directory and waits until the broker answers.
    fn launch(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let mut cmd = Command::new("java");
        cmd.arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j.configuration=file:{}",
                self.dir.path().join("log4j.properties").display()
            ))
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        *self.child.lock().expect("broker lock") = Some(spawn_tied_to_process(cmd));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let client: Result<ThreadedProducer<DefaultProducerContext>, _> =
                self.client_config().create();
            if let Ok(p) = client {
                if let Ok(md) = p.client().fetch_metadata(None, Duration::from_secs(2)) {
                    if !md.brokers().is_empty() {
                        return;
                    }
                }
            }
            if let Some(status) = self.try_wait() {
                panic!("the Kafka broker exited with {status}:\n{}", self.logs());
            }
            if Instant::now() > deadline {
                panic!(
                    "the Kafka broker did not answer within {START_DEADLINE:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn try_wait(&self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.lock().expect("broker lock");
        c.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The broker's log, for a failing test's message.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`, for `receivers.kafka.brokers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    /// Stops the JVM (SIGTERM, then SIGKILL); [`Kafka::restart`] brings it back with its
    /// data, on the same ports.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().expect("broker lock").take() {
            stop(&mut c, Duration::from_secs(20));
        }
    }

    pub fn restart(&self) {
        self.launch();
    }

    /// The value of a topic's config entry (`cleanup.policy`), as the broker reports it.
    pub fn topic_config(&self, topic: &str, key: &str) -> Option<String> {
        use rdkafka::admin::ResourceSpecifier;
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let results = rt
            .block_on(admin.describe_configs(
                &[ResourceSpecifier::Topic(topic)],
                &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
            ))
            .expect("describe_configs");
        let resource = results.into_iter().next()?.ok()?;
        resource.get(key).and_then(|e| e.value.clone())
    }

    /// Creates `topic` with `partitions` partitions and waits until it is there.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let results = rt
            .block_on(admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            ))
            .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        // The broker answers before its metadata shows the new partitions with a leader;
        // a cerflow started at once (stage 2 reads the aggregates topic's partition count
        // at start-up) could see none. Wait until a client sees them all.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics().iter().find(|t| t.name() == topic).map(|t| {
                        t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "topic {topic}: {partitions} partitions with a leader not seen in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sum over `topic`'s `partitions` partitions of the offsets `group` has committed
    /// (one offset per message: the messages the group has taken for good).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        let c: BaseConsumer = self
            .client_config()
            .set("group.id", group)
            .create()
            .expect("consumer for committed offsets");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(10)) else {
            return 0;
        };
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    }

    /// Sum over `topic`'s `partitions` partitions of their end offsets (high watermarks):
    /// the messages produced to it, compared with [`Kafka::committed`] for a group's lag.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> i64 {
        let c: BaseConsumer = self
            .client_config()
            .create()
            .expect("consumer for watermarks");
        (0..partitions)
            .map(|p| {
                c.fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                    .1
            })
            .sum()
    }

    /// Waits until `group` has committed every message of `topic` (lag 0), within
    /// `limit`; returns the number of messages.
    #[track_caller]
    pub fn wait_drained(&self, group: &str, topic: &str, partitions: i32, limit: Duration) -> i64 {
        let what = format!("group {group} to drain {topic}");
        super::process::poll(&what, limit, Duration::from_millis(250), || {
            let end = self.end_offsets(topic, partitions);
            match self.committed(group, topic, partitions) {
                committed if committed == end => Ok(end),
                committed => Err(format!("{committed} of {end} messages committed")),
            }
        })
    }

    /// A producer whose messages with one key land in one partition (the Collector's
    /// exporter keys by trace id with `partition_traces_by_id`).
    pub fn producer(&self) -> KafkaProducer {
        let p = self
            .client_config()
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        KafkaProducer(p)
    }
}

impl Kafka {
    /// Writes `payloads` to `topic[partition]` in one transaction (transactional id
    /// `id`) and aborts it: the messages and the abort marker take offsets that no
    /// `read_committed` reader is ever given.
    pub fn abort_transaction(&self, id: &str, topic: &str, partition: i32, payloads: &[Vec<u8>]) {
        use rdkafka::producer::BaseProducer;
        let timeout = Duration::from_secs(30);
        let p: BaseProducer = self
            .client_config()
            .set("transactional.id", id)
            .create()
            .expect("transactional producer");
        p.init_transactions(timeout).expect("init_transactions");
        p.begin_transaction().expect("begin_transaction");
        for payload in payloads {
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .partition(partition)
                .key(b"aborted".as_slice())
                .payload(payload.as_slice());
            p.send(record)
                .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
        }
        p.flush(timeout).expect("flushing the transaction");
        p.abort_transaction(timeout).expect("abort_transaction");
    }

    /// Every committed message of `topic` (`read_committed`: what open or aborted
    /// transactions wrote is left out), read from the start to the end of each partition.
    pub fn read_committed(&self, topic: &str, partitions: i32) -> Vec<Vec<u8>> {
        use rdkafka::message::Message;
        let c: BaseConsumer = self
            .client_config()
            .set("group.id", format!("reader-{}", std::process::id()))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .expect("read_committed consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition offset");
        }
        c.assign(&tpl).expect("assigning the partitions");
        let (mut out, mut at_end) = (Vec::new(), 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while at_end < partitions {
            assert!(Instant::now() < deadline, "reading {topic} took over 60 s");
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => at_end += 1,
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    }
}

pub struct KafkaProducer(ThreadedProducer<DefaultProducerContext>);

impl KafkaProducer {
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.0.send(record) {
                Ok(()) => return,
                Err((e, r)) if Instant::now() < deadline => {
                    // A full local queue: wait for deliveries, then offer it again.
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }

    /// Waits until every message sent is acknowledged by the broker.
    pub fn flush(&self) {
        self.0
            .flush(Duration::from_secs(30))
            .expect("flushing the producer");
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- Kafka broker log (tail) ---");
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A command to start, and where to send the started child.
type SpawnRequest = (Command, mpsc::Sender<Child>);

/// Spawns `cmd` from a thread that lives as long as the test process, with SIGKILL as
/// its parent-death signal: the JVM cannot outlive the tests, even on a panic or abort
/// (the signal fires when the spawning thread exits, so that thread never does).
fn spawn_tied_to_process(cmd: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                use std::os::unix::process::CommandExt;
                // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        rustix::process::set_parent_process_death_signal(Some(
                            rustix::process::Signal::KILL,
                        ))
                        .map_err(std::io::Error::from)
                    });
                }
                let child = cmd.spawn().expect("starting java (kafka.Kafka)");
                let _ = reply.send(child);
            }
        });
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .expect("spawner lock")
        .send((cmd, reply_tx))
        .expect("spawner thread");
    reply_rx.recv().expect("spawned broker")
}

const LOG4J: &str = "log4j.rootLogger=WARN, stdout\n\
log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n\
log4j.logger.kafka.server.KafkaServer=INFO\n\
log4j.logger.kafka.server.KafkaRaftServer=INFO\n";

/// Removes `dir` once this test process has ended, whichever way (return, panic, abort,
/// SIGKILL): a watcher in its own session, a child of init (it exits by itself), waits
/// for the process (`tail --pid`), gives
/// the JVM, killed by its parent-death signal at that moment, a little time to go, then
/// removes the directory. The shared broker lives in a static that is never dropped, so
/// no destructor could do this.
pub fn remove_when_process_ends(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            "( tail --pid=\"$1\" -f /dev/null 2>/dev/null; \
               for _ in 1 2 3 4 5 6 7 8 9 10; do \
                 sleep 1; rm -rf \"$2\" 2>/dev/null; [ -e \"$2\" ] || exit 0; \
               done ) &",
        )
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec. Its
    // own session keeps a Ctrl-C to the test's process group from killing the watcher.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    // The shell starts the watcher in the background and exits at once (reaped here), so
    // the watcher belongs to init and no zombie waits for this process to end.
    let status = cmd.status().expect("starting the broker dir watcher (sh)");
    assert!(
        status.success(),
        "the broker dir watcher did not start: {status}"
    );
}

/// `req` split into one request per trace id, each keyed by its trace id's bytes, in the
/// order the traces first appear; every span keeps its resource and scope. This is what
/// the Collector's `kafka` exporter sends with `partition_traces_by_id: true`, so all
/// spans of a trace land in one partition.
pub fn split_by_trace(
    req: &ExportTraceServiceRequest,
) -> Vec<(Vec<u8>, ExportTraceServiceRequest)> {
    let mut out: Vec<(Vec<u8>, ExportTraceServiceRequest)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for rs in &req.resource_spans {
        // Per trace: where this resource's copy sits in that trace's request.
        let mut resource_at: HashMap<usize, usize> = HashMap::new();
        for ss in &rs.scope_spans {
            let mut scope_at: HashMap<usize, usize> = HashMap::new();
            for span in &ss.spans {
                let t = *index.entry(span.trace_id.clone()).or_insert_with(|| {
                    out.push((span.trace_id.clone(), ExportTraceServiceRequest::default()));
                    out.len() - 1
                });
                let trace_req = &mut out[t].1;
                let r = *resource_at.entry(t).or_insert_with(|| {
                    trace_req.resource_spans.push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    });
                    trace_req.resource_spans.len() - 1
                });
                let rcopy = &mut trace_req.resource_spans[r];
                let sc = *scope_at.entry(t).or_insert_with(|| {
                    rcopy.scope_spans.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    });
                    rcopy.scope_spans.len() - 1
                });
                rcopy.scope_spans[sc].spans.push(span.clone());
            }
        }
    }
    out
}

/// What a [`KafkaTee`] passed on so far.
#[derive(Debug, Default)]
pub struct TeeCounts {
    pub requests: AtomicU64,
    pub spans: AtomicU64,
    /// Kafka messages: one per trace of each request.
    pub messages: AtomicU64,
    /// Requests the single cerflow refused (answered to the sender; nothing produced).
    pub refused: AtomicU64,
}

#[derive(Clone)]
struct TeeService {
    single: TraceServiceClient<tonic::transport::Channel>,
    producer: Arc<KafkaProducer>,
    topic: String,
    counts: Arc<TeeCounts>,
}

#[tonic::async_trait]
impl TraceService for TeeService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        // The single instance first: what it refuses goes to neither side, so both sides
        // see exactly the same spans, and the sender hears of the refusal.
        let answer = self.single.clone().export(req.clone()).await;
        if let Err(status) = &answer {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            return Err(status.clone());
        }
        let spans: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let parts = split_by_trace(&req);
        for (key, part) in &parts {
            self.producer.send(&self.topic, key, &part.encode_to_vec());
        }
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        self.counts.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.counts
            .messages
            .fetch_add(parts.len() as u64, Ordering::Relaxed);
        answer
    }
}

/// An OTLP/gRPC endpoint on a free loopback port that sends every trace request it is
/// given both to one cerflow (over OTLP/gRPC, unchanged) and to a Kafka topic (one
/// message per trace id, keyed by it): the same spans into a single instance and into a
/// consumer group, for the exactness tests. Stopped when dropped.
pub struct KafkaTee {
    pub port: u16,
    pub counts: Arc<TeeCounts>,
    producer: Arc<KafkaProducer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Runs the server and the forwarding client for as long as the tee lives.
    _rt: tokio::runtime::Runtime,
}

impl KafkaTee {
    /// Serves on a free port; `single` is the gRPC endpoint of the single cerflow
    /// (`http://127.0.0.1:PORT`).
    pub fn start(k: &Kafka, topic: &str, single: &str) -> KafkaTee {
        let rt = super::process::runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .expect("binding the tee on 127.0.0.1:0");
        let port = listener.local_addr().expect("tee address").port();
        // A lazy channel spawns its connection task on the current runtime.
        let _in_runtime = rt.enter();
        let channel = tonic::transport::Endpoint::from_shared(single.to_string())
            .expect("the single cerflow's endpoint")
            .connect_lazy();
        let counts = Arc::new(TeeCounts::default());
        let producer = Arc::new(k.producer());
        let service = TeeService {
            single: TraceServiceClient::new(channel),
            producer: producer.clone(),
            topic: topic.to_string(),
            counts: counts.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = rx.await;
                },
            );
        rt.spawn(async move {
            if let Err(e) = server.await {
                eprintln!("the Kafka tee failed: {e}");
            }
        });
        KafkaTee {
            port,
            counts,
            producer,
            stop: Some(tx),
            _rt: rt,
        }
    }

    /// `127.0.0.1:PORT`, for `cerflow loadgen --endpoint`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until every message produced so far is acknowledged by the broker.
    pub fn flush(&self) {
        self.producer.flush();
    }

    pub fn spans(&self) -> u64 {
        self.counts.spans.load(Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.counts.messages.load(Ordering::Relaxed)
    }
}

impl Drop for KafkaTee {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
