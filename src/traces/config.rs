//! The `traces` section (bounded trace assembly) and the `dependencies` section (which
//! span attributes name a dependency, and how many a journey may have).

use crate::config::decode::{index, Ctx};
use crate::config::yaml::Node;
use std::time::Duration;

/// OpenTelemetry's semantic conventions for the peer of a call, most specific first.
pub const DEFAULT_DEPENDENCY_KEYS: &[&str] = &[
    "peer.service",
    "server.address",
    "db.system.name",
    "db.system",
    "rpc.service",
    "messaging.destination.name",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Traces {
    /// Off turns off assembly and everything that needs it (dependencies, blame).
    pub enabled: bool,
    /// A trace is complete this long after its last span arrived.
    pub wait: Duration,
    /// Bytes of buffered spans over all workers; past it, the oldest traces complete early.
    pub max_bytes: usize,
    /// Spans one trace may buffer; a trace that reaches it completes at once.
    pub max_spans_per_trace: usize,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            enabled: true,
            wait: Duration::from_secs(10),
            max_bytes: 48 << 20,
            max_spans_per_trace: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dependencies {
    /// Span attributes naming a dependency; the first present wins.
    pub keys: Vec<String>,
    /// Dependency series per journey; past it, calls go to the journey's overflow series.
    pub max_per_journey: usize,
}

impl Default for Dependencies {
    fn default() -> Self {
        Dependencies {
            keys: DEFAULT_DEPENDENCY_KEYS
                .iter()
                .map(|k| k.to_string())
                .collect(),
            max_per_journey: 100,
        }
    }
}

pub fn decode_traces(ctx: &mut Ctx, node: &Node, out: &mut Traces) {
    let Some(m) = ctx.map(
        node,
        "traces",
        &["enabled", "wait", "max_bytes", "max_spans_per_trace"],
    ) else {
        return;
    };
    if let Some(n) = m.get("enabled") {
        if let Some(v) = ctx.bool(n, "traces.enabled") {
            out.enabled = v;
        }
    }
    if let Some(n) = m.get("wait") {
        if let Some(v) = ctx.positive_duration(n, "traces.wait") {
            out.wait = v;
        }
    }
    if let Some(n) = m.get("max_bytes") {
        match ctx.u64(n, "traces.max_bytes") {
            Some(v) if v >= 1 << 20 => out.max_bytes = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "traces.max_bytes",
                "must be at least 1048576 (1 MiB)",
            ),
            None => {}
        }
    }
    if let Some(n) = m.get("max_spans_per_trace") {
        match ctx.u64(n, "traces.max_spans_per_trace") {
            Some(v) if (1..=1_000_000).contains(&v) => out.max_spans_per_trace = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "traces.max_spans_per_trace",
                "must be between 1 and 1000000",
            ),
            None => {}
        }
    }
}

pub fn decode_dependencies(ctx: &mut Ctx, node: &Node, out: &mut Dependencies) {
    let Some(m) = ctx.map(node, "dependencies", &["keys", "max_per_journey"]) else {
        return;
    };
    if let Some(n) = m.get("keys") {
        if let Some(items) = ctx.seq(n, "dependencies.keys") {
            if items.is_empty() {
                ctx.error(n.mark, "dependencies.keys", "must list at least one key");
            }
            let mut keys: Vec<String> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = index("dependencies.keys", i);
                if let Some(k) = ctx.non_empty_string(item, &p) {
                    if keys.contains(&k) {
                        ctx.error(item.mark, &p, format!("key \"{k}\" is listed twice"));
                    } else {
                        keys.push(k);
                    }
                }
            }
            if !items.is_empty() {
                out.keys = keys;
            }
        }
    }
    if let Some(n) = m.get("max_per_journey") {
        match ctx.u64(n, "dependencies.max_per_journey") {
            Some(v) if v >= 1 => out.max_per_journey = v as usize,
            Some(_) => ctx.error(n.mark, "dependencies.max_per_journey", "must be at least 1"),
            None => {}
        }
    }
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let cfg = Config::parse("{}", "t", &|_| None).unwrap();
        assert_eq!(cfg.traces, Traces::default());
        assert!(cfg.traces.enabled);
        assert_eq!(cfg.traces.wait, Duration::from_secs(10));
        assert_eq!(cfg.traces.max_bytes, 50_331_648);
        assert_eq!(cfg.traces.max_spans_per_trace, 10_000);
        assert_eq!(cfg.dependencies.keys[0], "peer.service");
        assert_eq!(cfg.dependencies.keys.len(), 6);
    }

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!(
            cfg.traces,
            Traces {
                enabled: false,
                wait: Duration::from_secs(2),
                max_bytes: 2 << 20,
                max_spans_per_trace: 50,
            }
        );
        assert_eq!(cfg.dependencies.keys, ["peer.service", "db.system.name"]);
        assert_eq!(cfg.dependencies.max_per_journey, 3);
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:9: traces.wait: must be greater than 0",
                "3:14: traces.max_bytes: must be at least 1048576 (1 MiB)",
                "4:24: traces.max_spans_per_trace: must be between 1 and 1000000",
                "5:3: traces: unknown key \"linger\" (expected one of: enabled, wait, max_bytes, max_spans_per_trace)",
                "7:24: dependencies.keys[1]: key \"peer.service\" is listed twice",
                "8:20: dependencies.max_per_journey: must be at least 1",
            ]
        );
    }
}
