//! `journeys[].metrics[]`: the OTLP metrics a journey takes its request counts from
//! (which metric, which points, what makes a point's requests failed or incorrect, and
//! for a counter which count it is), with their validation.

use crate::config::decode::{index, join, Ctx};
use crate::config::yaml::Node;
use crate::predicate::{self, Cond};

/// Which count a monotonic Sum input adds to. Histogram inputs give every count at
/// once and take no role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requests,
    Errors,
    Incorrect,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requests => "requests",
            Role::Errors => "errors",
            Role::Incorrect => "incorrect",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricInputConfig {
    /// The metric name.
    pub name: String,
    /// On data point attributes, then resource attributes; `None` takes every point.
    pub matcher: Option<Cond>,
    /// The requests of a point this holds for are failed; by default the span rule's
    /// default (`http.response.status_code` >= 500 and the like).
    pub failure: Cond,
    /// The requests of a point this holds for are incorrect.
    pub incorrect: Option<Cond>,
    /// `None` for a histogram input (or a counter of requests).
    pub role: Option<Role>,
}

impl MetricInputConfig {
    /// Whether the input can say a request was incorrect: the journey's correctness SLI
    /// has data only then.
    pub fn has_correctness(&self) -> bool {
        self.incorrect.is_some() || self.role == Some(Role::Incorrect)
    }
}

/// The bucket bounds (seconds) OpenTelemetry's semantic conventions give
/// `http.server.request.duration` and the SDKs use for it.
pub const SEMCONV_BOUNDS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// What `validate` says of a journey's metric inputs: where its counts come from, and a
/// warning when its latency threshold is not a bound of the conventional duration
/// histogram (the slow count is then the bucket holding it, an overcount, unless the
/// sender's histogram has that bound).
pub fn describe(
    journey: &str,
    threshold: std::time::Duration,
    metrics_only: bool,
    inputs: &[MetricInputConfig],
) -> Vec<String> {
    if inputs.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = inputs.iter().map(|m| m.name.as_str()).collect();
    let mut out = vec![format!(
        "  journey {journey}: request counts from metrics {}{}",
        names.join(", "),
        if metrics_only {
            " (no spans)"
        } else {
            " (spans give users, value and coverage)"
        }
    )];
    let t = threshold.as_secs_f64();
    if !SEMCONV_BOUNDS_S.iter().any(|b| (b - t).abs() < 1e-12) {
        out.push(format!(
            "  warning: journey {journey}: latency_threshold {} is not a bucket bound of the \
             conventional duration histogram; unless the histograms have a bound there, the \
             bucket holding it counts as slow",
            crate::duration::format_duration(threshold)
        ));
    }
    out
}

/// `journeys[i].metrics`; `None` when a problem was reported.
pub fn decode_journey_metrics(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
) -> Option<Vec<MetricInputConfig>> {
    let items = ctx.seq(node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    if items.is_empty() {
        ctx.error(
            node.mark,
            path,
            "give at least one metric input, or leave the key out",
        );
        return None;
    }
    for (i, item) in items.iter().enumerate() {
        match decode_input(ctx, item, &index(path, i)) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_input(ctx: &mut Ctx, node: &Node, path: &str) -> Option<MetricInputConfig> {
    let m = ctx.map(
        node,
        path,
        &["name", "match", "failure", "incorrect", "role"],
    )?;
    let name = match m.get("name") {
        Some(n) => ctx.non_empty_string(n, &join(path, "name")),
        None => {
            ctx.error(node.mark, path, "missing required key \"name\"");
            None
        }
    };
    let cond = |ctx: &mut Ctx, key: &str| -> Option<Option<Cond>> {
        match m.get(key) {
            Some(n) => predicate::compile(ctx, n, &join(path, key)).map(Some),
            None => Some(None),
        }
    };
    let matcher = cond(ctx, "match");
    let failure = cond(ctx, "failure");
    let incorrect = cond(ctx, "incorrect");
    let role = match m.get("role") {
        None => Some(None),
        Some(n) => {
            let p = join(path, "role");
            match ctx.string(n, &p).as_deref() {
                Some("requests") => Some(Some(Role::Requests)),
                Some("errors") => Some(Some(Role::Errors)),
                Some("incorrect") => Some(Some(Role::Incorrect)),
                Some(other) => {
                    ctx.error(
                        n.mark,
                        &p,
                        format!(
                            "unknown role \"{other}\" (expected requests, errors or incorrect)"
                        ),
                    );
                    None
                }
                None => None,
            }
        }
    };
    Some(MetricInputConfig {
        name: name?,
        matcher: matcher?,
        failure: failure?.unwrap_or_else(Cond::default_failure),
        incorrect: incorrect?,
        role: role?,
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
        let m = &cfg.journeys[0].metrics;
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].name, "http.server.request.duration");
        assert!(m[0].matcher.is_some() && m[0].incorrect.is_some());
        assert_eq!(m[0].failure, Cond::default_failure());
        assert_eq!(m[0].role, None);
        assert_eq!(
            (m[1].role, m[2].role),
            (Some(Role::Requests), Some(Role::Errors))
        );
        assert_ne!(m[1].failure, Cond::default_failure());
        // A journey with metrics and no match is measured from metrics alone.
        assert!(cfg.journeys[1].metrics.len() == 1);
        assert!(cfg.journeys[2].metrics.is_empty());
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "4:11: journeys[0].metrics[0]: missing required key \"name\"",
                "5:42: journeys[0].metrics[1].role: unknown role \"latency\" (expected requests, errors or incorrect)",
                "6:20: journeys[0].metrics[2]: unknown key \"unit\" (expected one of: name, match, failure, incorrect, role)",
                "7:5: journeys[1]: missing required key \"match\" (or \"metrics\")",
                "9:14: journeys[2].metrics: give at least one metric input, or leave the key out",
            ]
        );
    }
}
