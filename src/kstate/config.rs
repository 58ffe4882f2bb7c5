//! The keys of `receivers.kafka.aggregates` that the owners' long-lived state reads:
//! the changelog and snapshots topics, the restore time limit, how long a snapshot
//! lives without news from its owner and how many are held. Decoded from the same
//! mapping as the stage-2 publisher's keys ([`KEYS`] is what it adds to its own).

use crate::config::decode::{join, Ctx, MapView};
use std::time::Duration;

/// The keys decoded here, beside the publisher's `topic`, `instance`, `max_message_bytes`.
pub const KEYS: [&str; 6] = [
    "changelog_topic",
    "snapshots_topic",
    "restore_timeout",
    "snapshot_ttl",
    "max_snapshots",
    "max_record_bytes",
];

#[derive(Debug, Clone, PartialEq)]
pub struct KState {
    /// Compacted, key = journey: each owned journey's SLO period, incidents and
    /// deployments. Default `cerflow-changelog`.
    pub changelog_topic: String,
    /// Compacted, key = journey: each owner's latest derived figures of a journey.
    /// Default `cerflow-snapshots`.
    pub snapshots_topic: String,
    /// The longest a new owner reads the changelog before deriving (default 30 s); past it
    /// the journeys not yet read start empty, counted and logged. Also the longest it
    /// holds a partition's journeys back while it re-reads their partials.
    pub restore_timeout: Duration,
    /// A snapshot older than this (its owner gone) is dropped (default 2 min).
    pub snapshot_ttl: Duration,
    /// At most this many journeys' snapshots are held (default 10,000).
    pub max_snapshots: usize,
    /// The largest changelog or snapshot record written (default 1,000,000 bytes, under
    /// Kafka's default 1 MiB `message.max.bytes`); a larger one is not written, counted.
    pub max_record_bytes: usize,
}

impl Default for KState {
    fn default() -> Self {
        KState {
            changelog_topic: "cerflow-changelog".into(),
            snapshots_topic: "cerflow-snapshots".into(),
            restore_timeout: Duration::from_secs(30),
            snapshot_ttl: Duration::from_secs(120),
            max_snapshots: 10_000,
            max_record_bytes: 1_000_000,
        }
    }
}

/// The smallest record limit: a journey with a few cohorts and its incidents fits.
const MIN_RECORD_BYTES: u64 = 65_536;

/// Reads [`KEYS`] from the already opened `receivers.kafka.aggregates` mapping at `path`;
/// every problem is reported with its place.
pub fn decode(ctx: &mut Ctx, m: &MapView<'_>, path: &str) -> Option<KState> {
    let before = ctx.problems.len();
    let mut out = KState::default();
    for (key, slot) in [
        ("changelog_topic", &mut out.changelog_topic),
        ("snapshots_topic", &mut out.snapshots_topic),
    ] {
        if let Some(v) = m
            .get(key)
            .and_then(|n| ctx.non_empty_string(n, &join(path, key)))
        {
            *slot = v;
        }
    }
    for (key, slot) in [
        ("restore_timeout", &mut out.restore_timeout),
        ("snapshot_ttl", &mut out.snapshot_ttl),
    ] {
        if let Some(v) = m
            .get(key)
            .and_then(|n| ctx.positive_duration(n, &join(path, key)))
        {
            *slot = v;
        }
    }
    if let Some(n) = m.get("max_snapshots") {
        let p = join(path, "max_snapshots");
        match ctx.u64(n, &p) {
            Some(0) => ctx.error(n.mark, &p, "must be at least 1"),
            Some(v) => out.max_snapshots = usize::try_from(v).unwrap_or(usize::MAX),
            None => {}
        }
    }
    if let Some(n) = m.get("max_record_bytes") {
        let p = join(path, "max_record_bytes");
        match ctx.u64(n, &p) {
            Some(v) if v < MIN_RECORD_BYTES => {
                ctx.error(n.mark, &p, format!("must be at least {MIN_RECORD_BYTES}"))
            }
            Some(v) => out.max_record_bytes = usize::try_from(v).unwrap_or(usize::MAX),
            None => {}
        }
    }
    if out.changelog_topic == out.snapshots_topic {
        ctx.error(
            m.mark,
            path,
            format!(
                "changelog_topic and snapshots_topic are both \"{}\": give each its own topic",
                out.changelog_topic
            ),
        );
    }
    (ctx.problems.len() == before).then_some(out)
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    /// The problems of the `aggregates` mapping of a testdata file (the publisher's own
    /// keys allowed beside [`KEYS`]).
    fn decoded(text: &str) -> Result<KState, Vec<String>> {
        let doc = yaml::parse(text).expect("testdata is YAML");
        let mut ctx = Ctx::default();
        let mut node = &doc;
        let mut path = String::new();
        for key in ["receivers", "kafka", "aggregates"] {
            path = join(&path, key);
            let m = ctx.map(node, &path, &[key]).expect("a mapping");
            node = m.get(key).expect("the key");
        }
        let path = "receivers.kafka.aggregates";
        let mut allowed = vec!["topic", "instance", "max_message_bytes"];
        allowed.extend(KEYS);
        let got = ctx
            .map(node, path, &allowed)
            .and_then(|m| decode(&mut ctx, &m, path));
        match got {
            Some(k) if ctx.problems.is_empty() => Ok(k),
            _ => Err(ctx.problems.iter().map(|p| p.to_string()).collect()),
        }
    }

    #[test]
    fn the_valid_case_decodes() {
        assert_eq!(
            decoded(include_str!("testdata/valid.yaml")),
            Ok(KState {
                changelog_topic: "state".into(),
                snapshots_topic: "figures".into(),
                restore_timeout: Duration::from_secs(10),
                snapshot_ttl: Duration::from_secs(90),
                max_snapshots: 500,
                max_record_bytes: 200_000,
            })
        );
    }

    #[test]
    fn the_defaults_hold_without_keys() {
        assert_eq!(
            decoded("receivers:\n  kafka:\n    aggregates: { topic: aggs }\n"),
            Ok(KState::default())
        );
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            decoded(include_str!("testdata/invalid.yaml")),
            Err(vec![
                // Unknown keys come first: the mapping is opened before its keys are read.
                "9:7: receivers.kafka.aggregates: unknown key \"snapshot_topic\" (expected one of: topic, instance, max_message_bytes, changelog_topic, snapshots_topic, restore_timeout, snapshot_ttl, max_snapshots, max_record_bytes)".to_string(),
                "5:24: receivers.kafka.aggregates.snapshots_topic: must not be empty".into(),
                "6:24: receivers.kafka.aggregates.restore_timeout: must be greater than 0".into(),
                "7:22: receivers.kafka.aggregates.max_snapshots: must be at least 1".into(),
                "8:25: receivers.kafka.aggregates.max_record_bytes: must be at least 65536".into(),
            ])
        );
    }

    #[test]
    fn one_topic_for_both_is_refused() {
        assert_eq!(
            decoded("receivers:\n  kafka:\n    aggregates:\n      changelog_topic: t\n      snapshots_topic: t\n"),
            Err(vec!["4:7: receivers.kafka.aggregates: changelog_topic and snapshots_topic are both \"t\": give each its own topic".to_string()])
        );
    }
}
