//! The `deployments` section: which attribute names a journey's version, how many events
//! of a new version are needed before it is judged, the score drop that marks it
//! regressed, and how many versions each journey remembers.

use crate::config::decode::Ctx;
use crate::config::yaml::Node;

#[derive(Debug, Clone, PartialEq)]
pub struct Deployments {
    /// Span attribute (then resource attribute) naming the version a span ran on.
    pub version_key: String,
    /// Events of a new version before it is compared with the previous one.
    pub min_events: u64,
    /// The new version is regressed when its score is below the previous version's by
    /// more than this (the gate's `--max-drop` rule).
    pub max_drop: f64,
    /// Versions (and deployments) remembered per journey; older ones are forgotten and
    /// counted in `cerflow_deployment_versions_evicted_total`.
    pub max_versions: usize,
}

impl Default for Deployments {
    fn default() -> Self {
        Deployments {
            version_key: "service.version".into(),
            min_events: 100,
            max_drop: 0.02,
            max_versions: 10,
        }
    }
}

impl std::fmt::Display for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version from {}, judged after {} events, regressed past a score drop of {}, {} versions kept per journey",
            self.version_key, self.min_events, self.max_drop, self.max_versions
        )
    }
}

pub fn decode_deployments(ctx: &mut Ctx, node: &Node, out: &mut Deployments) {
    let keys = ["version_key", "min_events", "max_drop", "max_versions"];
    let Some(m) = ctx.map(node, "deployments", &keys) else {
        return;
    };
    if let Some(n) = m.get("version_key") {
        if let Some(v) = ctx.non_empty_string(n, "deployments.version_key") {
            out.version_key = v;
        }
    }
    if let Some(n) = m.get("min_events") {
        match ctx.u64(n, "deployments.min_events") {
            Some(v) if v >= 1 => out.min_events = v,
            Some(_) => ctx.error(n.mark, "deployments.min_events", "must be at least 1"),
            None => {}
        }
    }
    if let Some(n) = m.get("max_drop") {
        match ctx.f64(n, "deployments.max_drop") {
            Some(v) if (0.0..=1.0).contains(&v) => out.max_drop = v,
            Some(v) => ctx.error(
                n.mark,
                "deployments.max_drop",
                format!("must be between 0 and 1 (a score drop), got {v}"),
            ),
            None => {}
        }
    }
    if let Some(n) = m.get("max_versions") {
        match ctx.u64(n, "deployments.max_versions") {
            Some(v) if (2..=1000).contains(&v) => out.max_versions = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "deployments.max_versions",
                "must be between 2 and 1000 (a deployment compares two versions)",
            ),
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
    fn the_defaults_follow_the_gate() {
        let cfg = Config::parse("{}", "t", &|_| None).unwrap();
        assert_eq!(cfg.deployments, Deployments::default());
        assert_eq!(cfg.deployments.version_key, "service.version");
        assert_eq!(cfg.deployments.min_events, 100);
        assert_eq!(cfg.deployments.max_drop, 0.02);
    }

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!(
            cfg.deployments,
            Deployments {
                version_key: "deployment.version".into(),
                min_events: 50,
                max_drop: 0.05,
                max_versions: 4,
            }
        );
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:16: deployments.version_key: must not be empty",
                "3:15: deployments.min_events: must be at least 1",
                "4:13: deployments.max_drop: must be between 0 and 1 (a score drop), got 1.5",
                "5:17: deployments.max_versions: must be between 2 and 1000 \
                 (a deployment compares two versions)",
                "6:3: deployments: unknown key \"rollback\" \
                 (expected one of: version_key, min_events, max_drop, max_versions)",
            ]
        );
    }
}
