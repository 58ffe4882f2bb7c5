//! The `receivers.kafka` section: brokers, topic, consumer group, encoding, TLS and SASL,
//! in the shape of the OpenTelemetry Collector's Kafka receiver, validated here beside the
//! receiver that uses it.

use crate::config::decode::{index, join, Ctx};
use crate::config::listener::existing_file;
use crate::config::yaml::Node;
use std::path::PathBuf;

const PATH: &str = "receivers.kafka";

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaReceiver {
    /// `host:port` of the bootstrap brokers.
    pub brokers: Vec<String>,
    pub topic: String,
    pub group_id: String,
    pub client_id: String,
    /// How message values are encoded: `otlp_proto` (the Collector's Kafka exporter's
    /// default) or `otlp_json`.
    pub encoding: Encoding,
    /// Where a group with no committed offset starts: the Collector's default is `latest`.
    pub initial_offset: InitialOffset,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<Sasl>,
    /// Stage 2 (opt-in): publish partial aggregates in Kafka transactions.
    pub aggregates: Option<Aggregates>,
}

/// `receivers.kafka.aggregates`: where the partial aggregates go, and who publishes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregates {
    /// Default `cerflow-aggregates`; keyed by journey.
    pub topic: String,
    /// Names this instance in its transactional id (`<group_id>-<instance>`) and in its
    /// partials; default the host name and the process id.
    pub instance: String,
    /// The largest message published; a journey's partials over it are split. Default
    /// 1,000,000 bytes, under Kafka's default `message.max.bytes` of 1 MiB.
    pub max_message_bytes: usize,
    /// The owners' long-lived state: changelog and snapshots topics (see `kstate`).
    pub state: crate::kstate::config::KState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    OtlpProto,
    OtlpJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialOffset {
    Earliest,
    Latest,
}

impl InitialOffset {
    pub fn as_str(self) -> &'static str {
        match self {
            InitialOffset::Earliest => "earliest",
            InitialOffset::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct KafkaTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

#[derive(Clone, PartialEq)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, as librdkafka names them.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug dump.
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

pub fn decode_kafka(ctx: &mut Ctx, node: &Node) -> Option<KafkaReceiver> {
    let keys = [
        "brokers",
        "topic",
        "group_id",
        "client_id",
        "encoding",
        "initial_offset",
        "tls",
        "auth",
        "aggregates",
    ];
    let m = ctx.map(node, PATH, &keys)?;
    let problems_before = ctx.problems.len();
    let mut brokers = Vec::new();
    match m.get("brokers") {
        Some(b) => {
            let p = join(PATH, "brokers");
            if let Some(items) = ctx.seq(b, &p) {
                for (i, item) in items.iter().enumerate() {
                    let ip = index(&p, i);
                    if let Some(s) = ctx.non_empty_string(item, &ip) {
                        match s.rsplit_once(':') {
                            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                                brokers.push(s)
                            }
                            _ => ctx.error(
                                item.mark,
                                &ip,
                                format!("invalid broker \"{s}\" (expected host:port, e.g. 127.0.0.1:9092)"),
                            ),
                        }
                    }
                }
                if items.is_empty() {
                    ctx.error(b.mark, &p, "list at least one broker");
                }
            }
        }
        None => ctx.error(m.mark, PATH, "missing required key \"brokers\""),
    }
    let mut text = |key: &str, default: &str| match m.get(key) {
        Some(n) => ctx.non_empty_string(n, &join(PATH, key)),
        None => Some(default.to_string()),
    };
    let topic = text("topic", "otlp_spans");
    let group_id = text("group_id", "cerflow");
    let client_id = text("client_id", "cerflow");
    let encoding = match m.get("encoding") {
        None => Some(Encoding::OtlpProto),
        Some(n) => match ctx.string(n, &join(PATH, "encoding")).as_deref() {
            Some("otlp_proto") => Some(Encoding::OtlpProto),
            Some("otlp_json") => Some(Encoding::OtlpJson),
            Some(other) => {
                ctx.error(
                    n.mark,
                    &join(PATH, "encoding"),
                    format!("unknown encoding \"{other}\" (use otlp_proto or otlp_json)"),
                );
                None
            }
            None => None,
        },
    };
    let initial_offset = match m.get("initial_offset") {
        None => Some(InitialOffset::Latest),
        Some(n) => match ctx.string(n, &join(PATH, "initial_offset")).as_deref() {
            Some("latest") => Some(InitialOffset::Latest),
            Some("earliest") => Some(InitialOffset::Earliest),
            Some(other) => {
                ctx.error(
                    n.mark,
                    &join(PATH, "initial_offset"),
                    format!("unknown initial_offset \"{other}\" (use latest or earliest)"),
                );
                None
            }
            None => None,
        },
    };
    let tls = m.get("tls").and_then(|n| decode_tls(ctx, n));
    let sasl = m.get("auth").and_then(|n| decode_auth(ctx, n));
    let aggregates = m.get("aggregates").and_then(|n| decode_aggregates(ctx, n));
    if ctx.problems.len() != problems_before {
        return None;
    }
    Some(KafkaReceiver {
        brokers,
        topic: topic?,
        group_id: group_id?,
        client_id: client_id?,
        encoding: encoding?,
        initial_offset: initial_offset?,
        tls,
        sasl,
        aggregates,
    })
}

/// Kafka's default `message.max.bytes` (1 MiB) less room for the key, headers and the
/// record batch framing: the default largest partial message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// The smallest message limit: room for one sub-bucket with a dense user sketch pair.
const MIN_MESSAGE_BYTES: u64 = 65_536;

fn decode_aggregates(ctx: &mut Ctx, node: &Node) -> Option<Aggregates> {
    let p = join(PATH, "aggregates");
    let mut keys = vec!["topic", "instance", "max_message_bytes"];
    keys.extend(crate::kstate::config::KEYS);
    let m = ctx.map(node, &p, &keys)?;
    let state = crate::kstate::config::decode(ctx, &m, &p);
    let topic = match m.get("topic") {
        Some(n) => ctx.non_empty_string(n, &join(&p, "topic")),
        None => Some("cerflow-aggregates".to_string()),
    };
    let instance = match m.get("instance") {
        Some(n) => ctx.non_empty_string(n, &join(&p, "instance")),
        None => Some(default_instance()),
    };
    let max_message_bytes = match m.get("max_message_bytes") {
        None => Some(DEFAULT_MAX_MESSAGE_BYTES as u64),
        Some(n) => ctx.u64(n, &join(&p, "max_message_bytes")).and_then(|v| {
            if v < MIN_MESSAGE_BYTES {
                ctx.error(
                    n.mark,
                    &join(&p, "max_message_bytes"),
                    format!("must be at least {MIN_MESSAGE_BYTES}: one sub-bucket with dense user sketches takes 33 KB"),
                );
                return None;
            }
            Some(v)
        }),
    };
    let (topic, instance, max_message_bytes) = (topic?, instance?, max_message_bytes?);
    let state = state?;
    if state.changelog_topic == topic || state.snapshots_topic == topic {
        ctx.error(
            m.mark,
            &p,
            format!(
                "the aggregates topic \"{topic}\" cannot also be the changelog or snapshots topic"
            ),
        );
        return None;
    }
    Some(Aggregates {
        topic,
        instance,
        max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
        state,
    })
}

/// The host name and process id: unique among running instances, which is what a
/// transactional id needs (a restarted instance's old transactions are aborted by the
/// broker's transaction timeout, and its input partitions fenced by the group).
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "cerflow".into()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

fn decode_tls(ctx: &mut Ctx, node: &Node) -> Option<KafkaTls> {
    let p = join(PATH, "tls");
    let m = ctx.map(
        node,
        &p,
        &["ca_file", "cert_file", "key_file", "insecure_skip_verify"],
    )?;
    let mut tls = KafkaTls::default();
    for (key, slot) in [
        ("ca_file", &mut tls.ca_file),
        ("cert_file", &mut tls.cert_file),
        ("key_file", &mut tls.key_file),
    ] {
        if let Some(n) = m.get(key) {
            *slot = existing_file(ctx, n, &join(&p, key));
        }
    }
    if let Some(n) = m.get("insecure_skip_verify") {
        tls.insecure_skip_verify = ctx.bool(n, &join(&p, "insecure_skip_verify"))?;
    }
    if m.get("cert_file").is_some() != m.get("key_file").is_some() {
        ctx.error(m.mark, &p, "give both cert_file and key_file, or neither");
    }
    Some(tls)
}

fn decode_auth(ctx: &mut Ctx, node: &Node) -> Option<Sasl> {
    let p = join(PATH, "auth");
    let a = ctx.map(node, &p, &["sasl"])?;
    let Some(s) = a.get("sasl") else {
        ctx.error(a.mark, &p, "missing required key \"sasl\"");
        return None;
    };
    let p = join(&p, "sasl");
    let m = ctx.map(s, &p, &["mechanism", "username", "password"])?;
    let mut need = |key: &str| match m.get(key) {
        Some(n) => ctx.non_empty_string(n, &join(&p, key)),
        None => {
            ctx.error(m.mark, &p, format!("missing required key \"{key}\""));
            None
        }
    };
    let (mechanism, username, password) = (need("mechanism"), need("username"), need("password"));
    let mechanism = mechanism?;
    if !MECHANISMS.contains(&mechanism.as_str()) {
        let n = m.get("mechanism")?;
        ctx.error(
            n.mark,
            &join(&p, "mechanism"),
            format!(
                "unknown mechanism \"{mechanism}\" (use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            ),
        );
        return None;
    }
    Some(Sasl {
        mechanism,
        username: username?,
        password: password?,
    })
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        let k = cfg.receivers.kafka.expect("receivers.kafka");
        assert_eq!(k.brokers, ["127.0.0.1:9092", "kafka-2:9092"]);
        assert_eq!(k.topic, "spans");
        assert_eq!(k.group_id, "cerflow");
        assert_eq!(k.client_id, "cerflow");
        assert_eq!(k.encoding, Encoding::OtlpJson);
        assert_eq!(k.initial_offset, InitialOffset::Earliest);
        let sasl = k.sasl.expect("sasl");
        assert_eq!(sasl.mechanism, "SCRAM-SHA-512");
        assert_eq!(sasl.username, "cerflow");
        assert!(!format!("{sasl:?}").contains("s3cret"));
        assert_eq!(
            k.aggregates,
            Some(Aggregates {
                topic: "cerflow-aggregates".into(),
                instance: "eu-1".into(),
                max_message_bytes: 500_000,
                state: crate::kstate::config::KState::default(),
            })
        );
        assert_eq!(
            k.tls,
            Some(KafkaTls {
                insecure_skip_verify: true,
                ..Default::default()
            })
        );
    }

    #[test]
    fn the_defaults_are_the_collectors() {
        let cfg = Config::parse(
            "receivers:\n  kafka:\n    brokers: [127.0.0.1:9092]\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let k = cfg.receivers.kafka.expect("receivers.kafka");
        assert_eq!(
            (
                k.topic.as_str(),
                k.group_id.as_str(),
                k.encoding,
                k.initial_offset
            ),
            (
                "otlp_spans",
                "cerflow",
                Encoding::OtlpProto,
                InitialOffset::Latest
            )
        );
        assert_eq!((k.tls, k.sasl, k.aggregates), (None, None, None));
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "4:9: receivers.kafka.brokers[0]: invalid broker \"no-port\" (expected host:port, e.g. 127.0.0.1:9092)",
                "5:12: receivers.kafka.topic: must not be empty",
                "6:15: receivers.kafka.encoding: unknown encoding \"zipkin_proto\" (use otlp_proto or otlp_json)",
                "7:21: receivers.kafka.initial_offset: unknown initial_offset \"middle\" (use latest or earliest)",
                "9:7: receivers.kafka.tls: unknown key \"verify\" (expected one of: ca_file, cert_file, key_file, insecure_skip_verify)",
                "13:20: receivers.kafka.auth.sasl.mechanism: unknown mechanism \"GSSAPI\" (use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                "17:17: receivers.kafka.aggregates.instance: must not be empty",
                "18:26: receivers.kafka.aggregates.max_message_bytes: must be at least 65536: one sub-bucket with dense user sketches takes 33 KB",
                "19:7: receivers.kafka.aggregates: unknown key \"interval\" (expected one of: topic, instance, max_message_bytes, changelog_topic, snapshots_topic, restore_timeout, snapshot_ttl, max_snapshots, max_record_bytes)",
            ]
        );
    }
}
