//! The `score` section: how burn rates become the CER score.

use crate::config::decode::Ctx;
use crate::config::yaml::Node;
use crate::slo::config::{per_sli, PerSli};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoData {
    /// Left out of the overall score.
    Exclude,
    /// Counts as a perfect score.
    Good,
    /// Counts as a score of 0.
    Bad,
}

/// What multiplies a journey's weight in the overall score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightBy {
    /// The configured weight alone.
    Weight,
    /// Weight x requests in the window.
    Traffic,
    /// Weight x distinct users in the window.
    Users,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub floor_burn_rate: f64,
    pub sli_weights: PerSli,
    pub weight_by: WeightBy,
    pub no_data: NoData,
}

pub fn decode_score(ctx: &mut Ctx, node: &Node, out: &mut Score) {
    let Some(m) = ctx.map(
        node,
        "score",
        &[
            "floor_burn_rate",
            "sli_weights",
            "weight_by",
            "weight_by_traffic",
            "no_data",
        ],
    ) else {
        return;
    };
    if let Some(n) = m.get("floor_burn_rate") {
        match ctx.f64(n, "score.floor_burn_rate") {
            Some(v) if v > 1.0 => out.floor_burn_rate = v,
            Some(v) => ctx.error(
                n.mark,
                "score.floor_burn_rate",
                format!("must be greater than 1, got {v}"),
            ),
            None => {}
        }
    }
    if let Some(n) = m.get("sli_weights") {
        out.sli_weights = per_sli(
            ctx,
            n,
            "score.sli_weights",
            out.sli_weights,
            |v| v >= 0.0,
            "must be 0 or more",
        );
        if out.sli_weights.0.iter().sum::<f64>() <= 0.0 {
            ctx.error(
                n.mark,
                "score.sli_weights",
                "at least one weight must be greater than 0",
            );
        }
    }
    if let Some(n) = m.get("weight_by") {
        if let Some(s) = ctx.string(n, "score.weight_by") {
            match s.as_str() {
                "weight" => out.weight_by = WeightBy::Weight,
                "traffic" => out.weight_by = WeightBy::Traffic,
                "users" => out.weight_by = WeightBy::Users,
                _ => ctx.error(
                    n.mark,
                    "score.weight_by",
                    format!("unknown weighting \"{s}\" (expected weight, traffic or users)"),
                ),
            }
        }
    }
    // The boolean this key replaced still works; with both, weight_by decides.
    if let Some(n) = m.get("weight_by_traffic") {
        if let Some(b) = ctx.bool(n, "score.weight_by_traffic") {
            if m.get("weight_by").is_some() {
                ctx.error(
                    n.mark,
                    "score.weight_by_traffic",
                    "is the old spelling of score.weight_by; give only one",
                );
            } else if b {
                out.weight_by = WeightBy::Traffic;
            }
        }
    }
    if let Some(n) = m.get("no_data") {
        if let Some(s) = ctx.string(n, "score.no_data") {
            match s.as_str() {
                "exclude" => out.no_data = NoData::Exclude,
                "good" => out.no_data = NoData::Good,
                "bad" => out.no_data = NoData::Bad,
                _ => ctx.error(
                    n.mark,
                    "score.no_data",
                    format!("unknown policy \"{s}\" (expected exclude, good or bad)"),
                ),
            }
        }
    }
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!(cfg.score.floor_burn_rate, 4.0);
        assert_eq!(cfg.score.no_data, NoData::Exclude);
        assert_eq!(cfg.score.weight_by, WeightBy::Users);
    }

    #[test]
    fn weight_by_traffic_is_an_alias_of_weight_by_traffic() {
        let cfg = Config::parse("score: { weight_by_traffic: true }", "t", &|_| None).unwrap();
        assert_eq!(cfg.score.weight_by, WeightBy::Traffic);
        let cfg = Config::parse("score: { weight_by_traffic: false }", "t", &|_| None).unwrap();
        assert_eq!(cfg.score.weight_by, WeightBy::Weight);
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:20: score.floor_burn_rate: must be greater than 1, got 0.5",
                "3:12: score.no_data: unknown policy \"maybe\" (expected exclude, good or bad)",
                "4:14: score.weight_by: unknown weighting \"money\" (expected weight, traffic or users)",
                "5:22: score.weight_by_traffic: is the old spelling of score.weight_by; give only one",
            ]
        );
    }
}
