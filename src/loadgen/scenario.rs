//! Scenario files: phases of load, each with its own rate and faults, so a team can
//! check that alerts and scores react when one journey in one cohort degrades.
//!
//! ```yaml
//! phases:
//!   - name: healthy
//!     duration: 60s
//!   - name: checkout-eu-degraded
//!     duration: 30s
//!     rate: 20000              # spans/s; optional, else --rate
//!     faults:
//!       - journey: checkout      # journey name, or a glob such as "check*"; default "*"
//!         region: "eu-*"         # cloud.region glob; default "*"
//!         tier: "*"              # app.plan.tier glob; default "*"
//!         error_rate: 0.2        # share of failing spans
//!         latency_factor: 2      # every latency (so p50 and p99) times 2
//!       - dependency: payments   # with --dependencies: calls to it fail at this rate,
//!         error_rate: 0.3        # and fail their request (blame moves to it)
//!   - name: rollout
//!     duration: 60s
//!     version: 1.43.0            # service.version of its spans; default the previous
//!                                # phase's, the first phase's 1.42.0
//! ```
//!
//! A phase may also set `error_rate`, `latency_ms` and `latency_spread` for every
//! journey; a fault may set `latency_ms` and `latency_spread` instead of a factor. A new
//! `version` is a deployment to cerflow, so a scenario can exercise the deployment tracker.

use super::payload::{Behaviour, CohortSpec, JourneySpec, DEFAULT_VERSION, DEPENDENCIES};
use std::time::Duration;
use yaml_rust2::Yaml;

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    pub rate: Option<f64>,
    pub error_rate: Option<f64>,
    pub latency_ms: Option<f64>,
    pub latency_spread: Option<f64>,
    /// The resource's `service.version` of the phase's spans (resolved at parse time:
    /// a phase without one keeps the previous phase's).
    pub version: String,
    pub faults: Vec<Fault>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// A dependency name (or glob): the fault's `error_rate` applies to calls to it.
    pub dependency: Option<String>,
    pub journey: String,
    pub region: String,
    pub tier: String,
    pub error_rate: Option<f64>,
    pub latency_factor: f64,
    pub latency_ms: Option<f64>,
    pub latency_spread: Option<f64>,
}

impl Phase {
    /// A phase that applies the command-line settings unchanged.
    pub fn plain(name: &str, duration: Duration) -> Phase {
        Phase {
            name: name.into(),
            duration,
            rate: None,
            error_rate: None,
            latency_ms: None,
            latency_spread: None,
            version: DEFAULT_VERSION.into(),
            faults: Vec::new(),
        }
    }

    /// How journey `j` behaves in cohort `c` during this phase, from `base` (the
    /// command-line settings), the phase's own settings and its first matching fault.
    pub fn behaviour(&self, base: Behaviour, j: &JourneySpec, c: &CohortSpec) -> Behaviour {
        let mut b = Behaviour {
            error_rate: self.error_rate.unwrap_or(base.error_rate),
            latency_ms: self.latency_ms.unwrap_or(base.latency_ms),
            spread: self.latency_spread.unwrap_or(base.spread),
            dependency_fault: None,
        };
        let here = |f: &&Fault| {
            glob(&f.journey, &j.name) && glob(&f.region, &c.region) && glob(&f.tier, &c.tier)
        };
        if let Some(f) = self
            .faults
            .iter()
            .filter(here)
            .find(|f| f.dependency.is_some())
        {
            let dep = f.dependency.as_deref().unwrap_or("*");
            if let Some(i) = DEPENDENCIES.iter().position(|d| glob(dep, d)) {
                b.dependency_fault = Some((i, f.error_rate.unwrap_or(1.0)));
            }
        }
        if let Some(f) = self
            .faults
            .iter()
            .filter(here)
            .find(|f| f.dependency.is_none())
        {
            if let Some(e) = f.error_rate {
                b.error_rate = e;
            }
            b.latency_ms = f.latency_ms.unwrap_or(b.latency_ms * f.latency_factor);
            if let Some(s) = f.latency_spread {
                b.spread = s;
            }
        }
        b
    }
}

/// `*` matches anything; a pattern with a trailing `*` matches by prefix; else equality.
pub fn glob(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// `250ms`, `30s`, `2m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration \"{s}\" (e.g. 500ms, 30s, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in \"{s}\" (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration \"{s}\""));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Scenario {
    pub fn load(path: &std::path::Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Scenario, String> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text)
            .map_err(|e| format!("invalid YAML: {e}"))?;
        let Some(root) = docs.first() else {
            return Err("the scenario is empty".into());
        };
        let m = map(root, "scenario", &["phases"])?;
        let Some(Yaml::Array(list)) = m.iter().find(|(k, _)| *k == "phases").map(|(_, v)| v) else {
            return Err("\"phases\" must be a list of phases".into());
        };
        let mut phases: Vec<Phase> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let version = phases
                .last()
                .map_or(DEFAULT_VERSION, |p| p.version.as_str());
            let p = phase(p, i, version).map_err(|e| format!("phases[{i}]: {e}"))?;
            phases.push(p);
        }
        if phases.is_empty() {
            return Err("\"phases\" is empty".into());
        }
        Ok(Scenario { phases })
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }
}

fn map<'a>(node: &'a Yaml, what: &str, keys: &[&str]) -> Result<Vec<(&'a str, &'a Yaml)>, String> {
    let Yaml::Hash(h) = node else {
        return Err(format!("{what} must be a mapping"));
    };
    let mut out = Vec::new();
    for (k, v) in h {
        let Some(k) = k.as_str() else {
            return Err(format!("{what} has a key that is not a string"));
        };
        if !keys.contains(&k) {
            return Err(format!(
                "unknown key \"{k}\" in {what} (expected one of: {})",
                keys.join(", ")
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn number(v: &Yaml, key: &str) -> Result<f64, String> {
    let x = match v {
        Yaml::Integer(i) => *i as f64,
        Yaml::Real(_) => v
            .as_f64()
            .ok_or_else(|| format!("\"{key}\" is not a number"))?,
        _ => return Err(format!("\"{key}\" must be a number")),
    };
    if !x.is_finite() || x < 0.0 {
        return Err(format!("\"{key}\" must be a non-negative number"));
    }
    Ok(x)
}

fn share(v: &Yaml, key: &str) -> Result<f64, String> {
    let x = number(v, key)?;
    if x > 1.0 {
        return Err(format!("\"{key}\" is a share between 0 and 1"));
    }
    Ok(x)
}

fn text(v: &Yaml, key: &str) -> Result<String, String> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Real(r) => Ok(r.clone()),
        _ => Err(format!("\"{key}\" must be a string")),
    }
}

/// Phase `i` of a scenario; `version` is the previous phase's, kept when it names none.
fn phase(node: &Yaml, i: usize, version: &str) -> Result<Phase, String> {
    let keys = [
        "name",
        "duration",
        "rate",
        "error_rate",
        "latency_ms",
        "latency_spread",
        "version",
        "faults",
    ];
    let m = map(node, "a phase", &keys)?;
    let mut p = Phase::plain(&format!("phase-{}", i + 1), Duration::ZERO);
    p.version = version.into();
    let mut has_duration = false;
    for (k, v) in m {
        match k {
            "name" => p.name = text(v, k)?,
            "duration" => {
                p.duration = match v {
                    Yaml::Integer(s) if *s >= 0 => Duration::from_secs(*s as u64),
                    _ => parse_duration(&text(v, k)?)?,
                };
                has_duration = true;
            }
            "rate" => p.rate = Some(number(v, k)?),
            "error_rate" => p.error_rate = Some(share(v, k)?),
            "latency_ms" => p.latency_ms = Some(number(v, k)?),
            "latency_spread" => p.latency_spread = Some(number(v, k)?),
            "version" => {
                p.version = text(v, k)?;
                if p.version.is_empty() {
                    return Err("\"version\" must not be empty".into());
                }
            }
            _ => {
                let Yaml::Array(list) = v else {
                    return Err("\"faults\" must be a list".into());
                };
                for (fi, f) in list.iter().enumerate() {
                    p.faults
                        .push(fault(f).map_err(|e| format!("faults[{fi}]: {e}"))?);
                }
            }
        }
    }
    if !has_duration || p.duration.is_zero() {
        return Err("every phase needs a positive \"duration\"".into());
    }
    Ok(p)
}

fn fault(node: &Yaml) -> Result<Fault, String> {
    let keys = [
        "dependency",
        "journey",
        "region",
        "tier",
        "error_rate",
        "latency_factor",
        "latency_ms",
        "latency_spread",
    ];
    let m = map(node, "a fault", &keys)?;
    let mut f = Fault {
        dependency: None,
        journey: "*".into(),
        region: "*".into(),
        tier: "*".into(),
        error_rate: None,
        latency_factor: 1.0,
        latency_ms: None,
        latency_spread: None,
    };
    for (k, v) in m {
        match k {
            "dependency" => f.dependency = Some(text(v, k)?),
            "journey" => f.journey = text(v, k)?,
            "region" => f.region = text(v, k)?,
            "tier" => f.tier = text(v, k)?,
            "error_rate" => f.error_rate = Some(share(v, k)?),
            "latency_factor" => f.latency_factor = number(v, k)?,
            "latency_ms" => f.latency_ms = Some(number(v, k)?),
            _ => f.latency_spread = Some(number(v, k)?),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::payload::{cohorts, journeys};

    const EXAMPLE: &str = r#"
phases:
  - name: healthy
    duration: 60s
  - name: checkout-eu-degraded
    duration: 30s
    rate: 2000
    faults:
      - journey: checkout
        region: "eu-*"
        error_rate: 0.2
        latency_factor: 2
"#;

    #[test]
    fn parses_the_documented_example() {
        let s = Scenario::parse(EXAMPLE).expect("valid");
        assert_eq!(s.phases.len(), 2);
        assert_eq!(s.total(), Duration::from_secs(90));
        assert_eq!(s.phases[1].rate, Some(2000.0));
        let base = Behaviour {
            error_rate: 0.01,
            latency_ms: 100.0,
            spread: 0.5,
            dependency_fault: None,
        };
        let js = journeys(3);
        let cs = cohorts(6);
        let eu = cs
            .iter()
            .find(|c| c.region == "eu-west-1")
            .expect("an eu cohort");
        let us = cs
            .iter()
            .find(|c| c.region == "us-east-1")
            .expect("a us cohort");
        let degraded = s.phases[1].behaviour(base, &js[0], eu);
        assert_eq!(
            degraded,
            Behaviour {
                error_rate: 0.2,
                latency_ms: 200.0,
                spread: 0.5,
                dependency_fault: None,
            }
        );
        assert_eq!(s.phases[1].behaviour(base, &js[0], us), base);
        assert_eq!(s.phases[1].behaviour(base, &js[1], eu), base);
        assert_eq!(s.phases[0].behaviour(base, &js[0], eu), base);
    }

    #[test]
    fn the_shipped_example_parses() {
        let s = Scenario::parse(include_str!(
            "../../benches/scenarios/checkout-eu-degraded.yaml"
        ))
        .expect("the example scenario is valid");
        assert_eq!(s.total(), Duration::from_secs(120));
        assert_eq!(s.phases[1].faults[0].error_rate, Some(0.2));
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        assert!(Scenario::parse("phases:\n  - duration: 5s\n    eror_rate: 0.1\n").is_err());
        assert!(Scenario::parse("phases:\n  - name: x\n").is_err());
        assert!(Scenario::parse("phases:\n  - duration: 5s\n    error_rate: 2\n").is_err());
        assert!(Scenario::parse("phases: []\n").is_err());
        assert!(Scenario::parse("phase: []\n").is_err());
        assert!(Scenario::parse("phases:\n  - duration: 5s\n    version: \"\"\n").is_err());
        assert!(Scenario::parse("phases:\n  - duration: 5s\n    version: [1]\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
