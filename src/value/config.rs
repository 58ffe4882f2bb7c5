//! `journeys[].value`: `{ attribute: KEY }` or `{ per_request: N }`, with an optional
//! `currency`.

use crate::config::decode::{join, Ctx};
use crate::config::yaml::Node;

/// Where a journey's request value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A numeric span (then resource) attribute; a string holding a number counts.
    Attribute(String),
    /// The same value for every request.
    PerRequest(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueRule {
    pub source: Source,
    /// ISO 4217 code or any label; `None` leaves the `currency` label out.
    pub currency: Option<String>,
}

impl std::fmt::Display for ValueRule {
    /// As `cerflow validate` lists it: `attribute app.order.value, currency EUR`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Attribute(key) => write!(f, "attribute {key}")?,
            Source::PerRequest(v) => write!(f, "{v} per request")?,
        }
        match &self.currency {
            Some(c) => write!(f, ", currency {c}"),
            None => write!(f, ", no currency"),
        }
    }
}

/// `None` with the problems reported when the section is invalid.
pub fn decode_value(ctx: &mut Ctx, node: &Node, path: &str) -> Option<ValueRule> {
    let m = ctx.map(node, path, &["attribute", "per_request", "currency"])?;
    let source = match (m.get("attribute"), m.get("per_request")) {
        (Some(a), None) => ctx
            .non_empty_string(a, &join(path, "attribute"))
            .map(Source::Attribute),
        (None, Some(p)) => match ctx.f64(p, &join(path, "per_request")) {
            Some(v) if v.is_finite() && v >= 0.0 => Some(Source::PerRequest(v)),
            Some(v) => {
                ctx.error(
                    p.mark,
                    &join(path, "per_request"),
                    format!("must be 0 or more, got {v}"),
                );
                None
            }
            None => None,
        },
        _ => {
            ctx.error(
                node.mark,
                path,
                "give exactly one of attribute or per_request",
            );
            None
        }
    };
    let currency = match m.get("currency") {
        Some(c) => Some(ctx.non_empty_string(c, &join(path, "currency"))?),
        None => None,
    };
    Some(ValueRule {
        source: source?,
        currency,
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
        assert_eq!(
            cfg.journeys[0].value,
            Some(ValueRule {
                source: Source::Attribute("app.order.value".into()),
                currency: Some("EUR".into()),
            })
        );
        assert_eq!(
            cfg.journeys[1].value,
            Some(ValueRule {
                source: Source::PerRequest(12.5),
                currency: None,
            })
        );
        assert_eq!(cfg.journeys[2].value, None);
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "4:14: journeys[0].value: give exactly one of attribute or per_request",
                "7:27: journeys[1].value.per_request: must be 0 or more, got -1",
            ]
        );
    }
}
