//! `journeys[].completion`: `{ start: <condition>, complete: <condition>, key: ATTR,
//! within: DURATION }`.

use crate::config::decode::{join, Ctx};
use crate::config::yaml::Node;
use crate::predicate::{self, Cond};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct CompletionConfig {
    /// A span or event of the journey that starts an attempt.
    pub start: Cond,
    /// One that completes it.
    pub complete: Cond,
    /// The attribute (span or event, then resource) that ties them: `session.id`.
    pub key: String,
    /// How long an attempt may take before it counts as abandoned.
    pub within: Duration,
}

/// `None` with the problems reported when the section is invalid.
pub fn decode_completion(ctx: &mut Ctx, node: &Node, path: &str) -> Option<CompletionConfig> {
    let m = ctx.map(node, path, &["start", "complete", "key", "within"])?;
    let need = |ctx: &mut Ctx, key: &str| {
        let n = m.get(key);
        if n.is_none() {
            ctx.error(m.mark, path, format!("missing required key \"{key}\""));
        }
        n
    };
    let start = need(ctx, "start").and_then(|n| predicate::compile(ctx, n, &join(path, "start")));
    let complete =
        need(ctx, "complete").and_then(|n| predicate::compile(ctx, n, &join(path, "complete")));
    let key = need(ctx, "key").and_then(|n| ctx.non_empty_string(n, &join(path, "key")));
    let within = need(ctx, "within").and_then(|n| ctx.positive_duration(n, &join(path, "within")));
    Some(CompletionConfig {
        start: start?,
        complete: complete?,
        key: key?,
        within: within?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{testdata_problems, Config};
    use std::time::Duration;

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        let c = cfg.journeys[0].completion.as_ref().unwrap();
        assert_eq!(c.key, "session.id");
        assert_eq!(c.within, Duration::from_secs(900));
        assert_eq!(cfg.limits.max_pending_attempts, 5000);
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "5:7: journeys[0].completion: missing required key \"complete\"",
                "5:16: journeys[0].completion.start: unknown key \"event_nam\" (expected one of: service, span_name, kind, status, attributes, resource_attributes, event, event_name, any, all, not)",
                "5:16: journeys[0].completion.start: a condition needs at least one of: service, span_name, kind, status, attributes, resource_attributes, event, event_name, any, all, not",
                "6:12: journeys[0].completion.key: must not be empty",
                "7:15: journeys[0].completion.within: invalid duration \"soon\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)",
                "9:25: limits.max_pending_attempts: must be at least 1",
            ]
        );
    }
}
