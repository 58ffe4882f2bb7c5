//! The `slo` section and the SLI vocabulary every stage shares: objectives per SLI,
//! the SLO period, burn-rate alerts and the checkpoint.

use crate::config::decode::{index, join, Ctx};
use crate::config::yaml::Node;
use std::time::Duration;

/// The SLIs cerflow derives, in the order every per-SLI array uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SliKind {
    Availability = 0,
    Latency = 1,
    Correctness = 2,
    /// Time slices of a journey's operational signals ([`crate::signals`]) within bounds.
    Operations = 3,
    /// Web vitals at or under their thresholds; its events are vital measurements.
    Experience = 4,
}

/// How many SLIs there are: the length of every per-SLI array.
pub const N_SLIS: usize = 5;

pub const SLIS: [SliKind; N_SLIS] = [
    SliKind::Availability,
    SliKind::Latency,
    SliKind::Correctness,
    SliKind::Operations,
    SliKind::Experience,
];

/// The SLIs judged over requests, which counters can reproduce (Prometheus rules,
/// OpenSLO ratio metrics); operations is judged over time slices and experience over
/// web vital measurements: their SLOs stay in cerflow.
pub const REQUEST_SLIS: [SliKind; 3] = [
    SliKind::Availability,
    SliKind::Latency,
    SliKind::Correctness,
];

/// The SLIs a journey has: correctness needs a rule, operations needs signals. Experience
/// is always evaluated; without web vitals it has no events, so no burn and no alert.
pub fn slis_for(has_correctness: bool, has_operations: bool) -> impl Iterator<Item = SliKind> {
    SLIS.into_iter().filter(move |s| match s {
        SliKind::Correctness => has_correctness,
        SliKind::Operations => has_operations,
        _ => true,
    })
}

impl SliKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SliKind::Availability => "availability",
            SliKind::Latency => "latency",
            SliKind::Correctness => "correctness",
            SliKind::Operations => "operations",
            SliKind::Experience => "experience",
        }
    }
}

/// One value per SLI, indexed by [`SliKind`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerSli(pub [f64; N_SLIS]);

impl PerSli {
    pub fn get(&self, s: SliKind) -> f64 {
        self.0[s as usize]
    }
}

pub type Objectives = PerSli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "page" => Some(Severity::Page),
            "ticket" => Some(Severity::Ticket),
            _ => None,
        }
    }
}

/// Fire when the burn rate exceeds `burn_rate` over both windows.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub severity: Severity,
    pub long_window: Duration,
    pub short_window: Duration,
    pub burn_rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub period: Duration,
    pub objectives: Objectives,
    /// Windows a burn rate is exported for: the configured ones plus every alert window.
    pub burn_windows: Vec<Duration>,
    pub alerts: Vec<AlertRule>,
    pub min_events: u64,
    pub clear_after: Duration,
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub path: std::path::PathBuf,
    pub interval: Duration,
}

pub const DEFAULT_OBJECTIVES: PerSli = PerSli([0.999, 0.99, 0.999, 0.99, 0.75]);

/// The SRE Workbook's multiwindow, multi-burn-rate table as shares of a period's budget.
pub const DEFAULT_ALERTS: [(Severity, u64, u64, f64); 4] = [
    (Severity::Page, 3600, 300, 0.02),
    (Severity::Page, 6 * 3600, 1800, 0.05),
    (Severity::Ticket, 86400, 2 * 3600, 0.10),
    (Severity::Ticket, 3 * 86400, 6 * 3600, 0.10),
];

impl Slo {
    pub fn default_with_period(period: Duration) -> Slo {
        let alerts: Vec<AlertRule> = DEFAULT_ALERTS
            .iter()
            .map(|&(severity, long, short, share)| AlertRule {
                severity,
                long_window: Duration::from_secs(long),
                short_window: Duration::from_secs(short),
                burn_rate: share * period.as_secs_f64() / long as f64,
            })
            .collect();
        let mut burn_windows = Vec::new();
        for a in &alerts {
            burn_windows.push(a.long_window);
            burn_windows.push(a.short_window);
        }
        burn_windows.sort();
        burn_windows.dedup();
        Slo {
            period,
            objectives: DEFAULT_OBJECTIVES,
            burn_windows,
            alerts,
            min_events: 10,
            clear_after: Duration::from_secs(300),
            checkpoint: Some(Checkpoint {
                path: std::path::PathBuf::from("cerflow-data/slo.ckpt"),
                interval: Duration::from_secs(60),
            }),
        }
    }
}

/// `{availability, latency, correctness, operations, experience}`, each optional, over
/// `base`.
pub fn per_sli(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    base: PerSli,
    check: fn(f64) -> bool,
    rule: &str,
) -> PerSli {
    let mut out = base;
    let names = SLIS.map(SliKind::as_str);
    let Some(m) = ctx.map(node, path, &names) else {
        return out;
    };
    for s in SLIS {
        if let Some(n) = m.get(s.as_str()) {
            let p = join(path, s.as_str());
            match ctx.f64(n, &p) {
                Some(v) if check(v) => out.0[s as usize] = v,
                Some(v) => ctx.error(n.mark, &p, format!("{rule}, got {v}")),
                None => {}
            }
        }
    }
    out
}

pub fn objective_ok(v: f64) -> bool {
    v > 0.0 && v < 1.0
}

pub const SLO_KEYS: &[&str] = &[
    "period",
    "objectives",
    "burn_windows",
    "alerts",
    "min_events",
    "clear_after",
    "checkpoint",
];

pub fn decode_slo(ctx: &mut Ctx, node: &Node, out: &mut Slo) {
    let Some(m) = ctx.map(node, "slo", SLO_KEYS) else {
        return;
    };
    if let Some(n) = m.get("period") {
        if let Some(p) = ctx.positive_duration(n, "slo.period") {
            if p < Duration::from_secs(3600) {
                ctx.error(n.mark, "slo.period", "must be at least 1h");
            } else {
                // The default alert table scales with the period.
                let checkpoint = out.checkpoint.clone();
                *out = Slo {
                    checkpoint,
                    ..Slo::default_with_period(p)
                };
            }
        }
    }
    if let Some(n) = m.get("objectives") {
        out.objectives = per_sli(
            ctx,
            n,
            "slo.objectives",
            out.objectives,
            objective_ok,
            "must be between 0 and 1 (exclusive)",
        );
    }
    let mut extra_windows = Vec::new();
    if let Some(n) = m.get("burn_windows") {
        if let Some(items) = ctx.seq(n, "slo.burn_windows") {
            for (i, item) in items.iter().enumerate() {
                if let Some(d) = ctx.positive_duration(item, &index("slo.burn_windows", i)) {
                    extra_windows.push(d);
                }
            }
        }
    } else {
        extra_windows = out.burn_windows.clone();
    }
    if let Some(n) = m.get("alerts") {
        if let Some(items) = ctx.seq(n, "slo.alerts") {
            let mut rules = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = index("slo.alerts", i);
                if let Some(r) = decode_alert(ctx, item, &p, out.period) {
                    rules.push(r);
                }
            }
            out.alerts = rules;
        }
    }
    let mut windows = extra_windows;
    for a in &out.alerts {
        windows.push(a.long_window);
        windows.push(a.short_window);
    }
    windows.sort();
    windows.dedup();
    out.burn_windows = windows;
    if let Some(n) = m.get("min_events") {
        if let Some(v) = ctx.u64(n, "slo.min_events") {
            out.min_events = v;
        }
    }
    if let Some(n) = m.get("clear_after") {
        if let Some(d) = ctx.duration(n, "slo.clear_after") {
            out.clear_after = d;
        }
    }
    if let Some(n) = m.get("checkpoint") {
        let Some(c) = ctx.map(n, "slo.checkpoint", &["enabled", "path", "interval"]) else {
            return;
        };
        let mut cp = out.checkpoint.clone().unwrap_or(Checkpoint {
            path: "cerflow-data/slo.ckpt".into(),
            interval: Duration::from_secs(60),
        });
        let mut enabled = true;
        if let Some(e) = c.get("enabled") {
            enabled = ctx.bool(e, "slo.checkpoint.enabled").unwrap_or(true);
        }
        if let Some(p) = c.get("path") {
            if let Some(s) = ctx.non_empty_string(p, "slo.checkpoint.path") {
                cp.path = s.into();
            }
        }
        if let Some(i) = c.get("interval") {
            if let Some(d) = ctx.positive_duration(i, "slo.checkpoint.interval") {
                cp.interval = d;
            }
        }
        out.checkpoint = enabled.then_some(cp);
    }
}

pub fn decode_alert(ctx: &mut Ctx, node: &Node, path: &str, period: Duration) -> Option<AlertRule> {
    let m = ctx.map(
        node,
        path,
        &[
            "severity",
            "long_window",
            "short_window",
            "burn_rate",
            "budget_consumed",
        ],
    )?;
    let need = |ctx: &mut Ctx, key: &str| {
        let n = m.get(key);
        if n.is_none() {
            ctx.error(m.mark, path, format!("missing required key \"{key}\""));
        }
        n
    };
    let severity = need(ctx, "severity").and_then(|n| {
        let s = ctx.string(n, &join(path, "severity"))?;
        let v = Severity::parse(&s);
        if v.is_none() {
            ctx.error(
                n.mark,
                &join(path, "severity"),
                format!("unknown severity \"{s}\" (expected page or ticket)"),
            );
        }
        v
    });
    let long =
        need(ctx, "long_window").and_then(|n| ctx.positive_duration(n, &join(path, "long_window")));
    let short = need(ctx, "short_window")
        .and_then(|n| ctx.positive_duration(n, &join(path, "short_window")));
    if let (Some(l), Some(s)) = (long, short) {
        if s >= l {
            ctx.error(
                m.mark,
                path,
                "short_window must be shorter than long_window",
            );
            return None;
        }
    }
    let burn = match (m.get("burn_rate"), m.get("budget_consumed")) {
        (Some(b), None) => match ctx.f64(b, &join(path, "burn_rate")) {
            Some(v) if v > 0.0 => Some(v),
            Some(v) => {
                ctx.error(
                    b.mark,
                    &join(path, "burn_rate"),
                    format!("must be greater than 0, got {v}"),
                );
                None
            }
            None => None,
        },
        (None, Some(c)) => match ctx.f64(c, &join(path, "budget_consumed")) {
            Some(v) if v > 0.0 && v <= 1.0 => {
                long.map(|l| v * period.as_secs_f64() / l.as_secs_f64())
            }
            Some(v) => {
                ctx.error(
                    c.mark,
                    &join(path, "budget_consumed"),
                    format!("must be in (0, 1], got {v}"),
                );
                None
            }
            None => None,
        },
        _ => {
            ctx.error(
                m.mark,
                path,
                "give exactly one of: burn_rate, budget_consumed",
            );
            None
        }
    };
    Some(AlertRule {
        severity: severity?,
        long_window: long?,
        short_window: short?,
        burn_rate: burn?,
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
        assert_eq!(cfg.slo.period, Duration::from_secs(7 * 86400));
        assert_eq!(cfg.slo.objectives.get(SliKind::Availability), 0.99);
        assert_eq!(cfg.slo.objectives.get(SliKind::Latency), 0.99);
        assert!(cfg.slo.checkpoint.is_none());
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "3:31: slo.objectives.availability: must be between 0 and 1 (exclusive), got 1.5",
                "5:19: slo.alerts[0].severity: unknown severity \"urgent\" (expected page or ticket)",
            ]
        );
    }
}
