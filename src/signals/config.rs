//! `journeys[].signals[]` (which metric, which points, the bound, the aggregate) and the
//! `signals` section (the time slice, the stream limit), with their validation.

use crate::config::decode::{index, join, Ctx};
use crate::config::yaml::Node;
use crate::predicate::{self, Cond};
use std::time::Duration;

/// How the data points of one slice become the value compared with the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Max,
    Avg,
    Sum,
    /// The sum of the slice's counter increments divided by its length in seconds.
    Rate,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Max => "max",
            Aggregate::Avg => "avg",
            Aggregate::Sum => "sum",
            Aggregate::Rate => "rate",
        }
    }
}

/// A slice is good for a signal while its aggregate is within the bound (inclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Max(f64),
    Min(f64),
}

impl Bound {
    pub fn holds(self, v: f64) -> bool {
        match self {
            Bound::Max(b) => v <= b,
            Bound::Min(b) => v >= b,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalConfig {
    /// The metric name; also the `signal` label.
    pub name: String,
    /// On data point attributes, then resource attributes; `None` takes every point.
    pub matcher: Option<Cond>,
    pub bound: Bound,
    pub aggregate: Aggregate,
}

/// The `signals` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalsSection {
    /// Length of a time slice; divides every window.
    pub slice: Duration,
    /// Cumulative streams remembered at once; points of further streams are refused.
    pub max_streams: usize,
}

impl Default for SignalsSection {
    fn default() -> Self {
        SignalsSection {
            slice: Duration::from_secs(60),
            max_streams: 10_000,
        }
    }
}

pub fn decode_signals_section(ctx: &mut Ctx, node: &Node, out: &mut SignalsSection) {
    let Some(m) = ctx.map(node, "signals", &["slice", "max_streams"]) else {
        return;
    };
    if let Some(n) = m.get("slice") {
        if let Some(d) = ctx.positive_duration(n, "signals.slice") {
            if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
                ctx.error(
                    n.mark,
                    "signals.slice",
                    "must be a whole number of seconds, at least 1s",
                );
            } else {
                out.slice = d;
            }
        }
    }
    if let Some(n) = m.get("max_streams") {
        match ctx.u64(n, "signals.max_streams") {
            Some(0) => ctx.error(n.mark, "signals.max_streams", "must be at least 1"),
            Some(v) => out.max_streams = v as usize,
            None => {}
        }
    }
}

/// The slice must cut every window into whole slices, or a window's ratio would count
/// a part of a slice. Checked when the section is given or a journey has signals;
/// `node` is where to report.
pub fn check_slice(ctx: &mut Ctx, node: Option<&Node>, slice: Duration, windows: &[Duration]) {
    let Some(n) = node else {
        return;
    };
    for w in windows {
        if !w.as_secs().is_multiple_of(slice.as_secs().max(1)) {
            ctx.error(
                n.mark,
                "signals.slice",
                format!(
                    "{} does not divide the window {}",
                    crate::duration::format_duration(slice),
                    crate::duration::format_duration(*w)
                ),
            );
        }
    }
}

/// `journeys[i].signals`; `None` when a problem was reported.
pub fn decode_journey_signals(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<SignalConfig>> {
    let items = ctx.seq(node, path)?;
    let mut out: Vec<SignalConfig> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        match decode_signal(ctx, item, &p) {
            Some(s) if out.iter().any(|o| o.name == s.name) => {
                ctx.error(
                    item.mark,
                    &p,
                    format!(
                        "the journey already has a signal \"{}\" (the name is its label)",
                        s.name
                    ),
                );
                ok = false;
            }
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_signal(ctx: &mut Ctx, node: &Node, path: &str) -> Option<SignalConfig> {
    let m = ctx.map(node, path, &["name", "match", "max", "min", "aggregate"])?;
    let name = match m.get("name") {
        Some(n) => ctx.non_empty_string(n, &join(path, "name")),
        None => {
            ctx.error(node.mark, path, "missing required key \"name\"");
            None
        }
    };
    let matcher = match m.get("match") {
        Some(n) => predicate::compile(ctx, n, &join(path, "match")).map(Some),
        None => Some(None),
    };
    let number = |ctx: &mut Ctx, key: &str| -> Option<f64> {
        let n = m.get(key)?;
        match ctx.f64(n, &join(path, key)) {
            Some(v) if v.is_finite() => Some(v),
            Some(v) => {
                ctx.error(n.mark, &join(path, key), format!("must be finite, got {v}"));
                None
            }
            None => None,
        }
    };
    let bound = match (m.get("max").is_some(), m.get("min").is_some()) {
        (true, false) => number(ctx, "max").map(Bound::Max),
        (false, true) => number(ctx, "min").map(Bound::Min),
        _ => {
            ctx.error(node.mark, path, "give exactly one of max or min");
            None
        }
    };
    let aggregate = match m.get("aggregate") {
        None => Some(Aggregate::Max),
        Some(n) => {
            let p = join(path, "aggregate");
            match ctx.string(n, &p).as_deref() {
                Some("max") => Some(Aggregate::Max),
                Some("avg") => Some(Aggregate::Avg),
                Some("sum") => Some(Aggregate::Sum),
                Some("rate") => Some(Aggregate::Rate),
                Some(other) => {
                    ctx.error(
                        n.mark,
                        &p,
                        format!("unknown aggregate \"{other}\" (expected max, avg, sum or rate)"),
                    );
                    None
                }
                None => None,
            }
        }
    };
    Some(SignalConfig {
        name: name?,
        matcher: matcher?,
        bound: bound?,
        aggregate: aggregate?,
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
        assert_eq!(cfg.signals.slice, Duration::from_secs(30));
        assert_eq!(cfg.signals.max_streams, 500);
        let s = &cfg.journeys[0].signals;
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].name.as_str(), s[0].bound, s[0].aggregate),
            ("k8s.pod.cpu.utilization", Bound::Max(0.8), Aggregate::Max)
        );
        assert!(s[0].matcher.is_some());
        assert_eq!(
            (s[1].name.as_str(), s[1].bound, s[1].aggregate),
            ("k8s.container.restarts", Bound::Max(0.01), Aggregate::Rate)
        );
        assert_eq!(
            (s[2].bound, s[2].aggregate),
            (Bound::Min(2.0), Aggregate::Avg)
        );
        assert!(s[2].matcher.is_none());
        assert!(cfg.journeys[1].signals.is_empty());
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "3:3: signals.slice: 7s does not divide the window 1m",
                "9:33: journeys[0].signals[1].aggregate: unknown aggregate \"p99\" (expected max, avg, sum or rate)",
                "10:11: journeys[0].signals[2]: the journey already has a signal \"queue.depth\" (the name is its label)",
                "11:11: journeys[0].signals[3]: give exactly one of max or min",
                "12:11: journeys[0].signals[4]: missing required key \"name\"",
            ]
        );
    }
}
