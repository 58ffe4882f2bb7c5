//! The `incidents` section: which alerts open an incident, and how many closed ones
//! each journey keeps for the API.

use crate::config::decode::Ctx;
use crate::config::yaml::Node;
use crate::slo::config::Severity;

#[derive(Debug, Clone, PartialEq)]
pub struct Incidents {
    /// Alerts of this severity open an incident of their journey.
    pub severity: Severity,
    /// Closed incidents kept per journey (the oldest go first).
    pub max_recent: usize,
}

impl Default for Incidents {
    fn default() -> Self {
        Incidents {
            severity: Severity::Page,
            max_recent: 20,
        }
    }
}

pub fn decode_incidents(ctx: &mut Ctx, node: &Node, out: &mut Incidents) {
    let Some(m) = ctx.map(node, "incidents", &["severity", "max_recent"]) else {
        return;
    };
    if let Some(n) = m.get("severity") {
        if let Some(s) = ctx.string(n, "incidents.severity") {
            match Severity::parse(&s) {
                Some(v) => out.severity = v,
                None => ctx.error(
                    n.mark,
                    "incidents.severity",
                    format!("must be page or ticket, got \"{s}\""),
                ),
            }
        }
    }
    if let Some(n) = m.get("max_recent") {
        match ctx.u64(n, "incidents.max_recent") {
            Some(v) if (1..=1000).contains(&v) => out.max_recent = v as usize,
            Some(_) => ctx.error(n.mark, "incidents.max_recent", "must be between 1 and 1000"),
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
    fn the_default_pages() {
        let cfg = Config::parse("{}", "t", &|_| None).unwrap();
        assert_eq!(cfg.incidents, Incidents::default());
        assert_eq!(cfg.incidents.severity, Severity::Page);
    }

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!(
            cfg.incidents,
            Incidents {
                severity: Severity::Ticket,
                max_recent: 5
            }
        );
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:13: incidents.severity: must be page or ticket, got \"sev1\"",
                "3:15: incidents.max_recent: must be between 1 and 1000",
            ]
        );
    }
}
