//! `cerflow export prometheus-rules`: cerflow's SLO alert table as Prometheus recording
//! and alerting rules over its counters, for teams that route alerts through Alertmanager.
//!
//! The rules reproduce what `slo.rs` evaluates for each journey as a whole: the burn rate
//! of every SLI over every burn window, and per severity an alert that fires while any of
//! that severity's rules has its long and its short window above the threshold, with at
//! least `slo.min_events` requests in the long window, and that clears `slo.clear_after`
//! later (`keep_firing_for`). Thresholds come from the validated config, so a
//! `budget_consumed` is already scaled to `slo.period`. Journey x cohort alerts stay in
//! cerflow (`cer_slo_alert_active` with cohort labels): one rule per cohort value cannot
//! be written ahead of the data.

use crate::catalogue;
use crate::config::{Config, JourneyConfig, Objectives, Severity, SliKind};
use crate::slo::config::REQUEST_SLIS;
use std::fmt::Write;
use std::time::Duration;

/// The counter of bad events behind an SLI, which Prometheus can rate against
/// [`REQUESTS`]: the request SLIs ([`REQUEST_SLIS`]) each have one. Operations (time
/// slices) and experience (web vital measurements) have none: both exporters publish them
/// only as ratios (`cer_sli_operations_ratio`, `cer_sli_experience_ratio`), so their SLOs
/// stay in cerflow and the rules and OpenSLO documents leave them out.
pub fn bad_counter(sli: SliKind) -> Option<&'static str> {
    match sli {
        SliKind::Availability => Some(catalogue::CER_JOURNEY_ERRORS_TOTAL.prom),
        SliKind::Latency => Some(catalogue::CER_JOURNEY_SLOW_TOTAL.prom),
        SliKind::Correctness => Some(catalogue::CER_JOURNEY_INCORRECT_TOTAL.prom),
        SliKind::Operations | SliKind::Experience => None,
    }
}

pub const REQUESTS: &str = catalogue::CER_JOURNEY_REQUESTS_TOTAL.prom;

/// A duration in Prometheus' syntax, in the largest unit that divides it (`1d`, `90m`).
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

/// A float without binary noise: 14.399999999999999 prints as 14.4.
pub fn number(x: f64) -> String {
    let r = (x * 1e9).round() / 1e9;
    format!("{r}")
}

/// The share of events an objective allows to be bad, rounded as `slo::burn_rate` does.
pub fn budget(objective: f64) -> f64 {
    ((1.0 - objective) * 1e12).round() / 1e12
}

/// A PromQL double-quoted string literal.
pub fn promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A YAML double-quoted scalar (JSON's escaping is a subset YAML reads).
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn ratio_record(w: Duration) -> String {
    format!("journey_sli:cer_bad_ratio:rate{}", prom_duration(w))
}

fn requests_record(w: Duration) -> String {
    format!("journey:cer_requests:increase{}", prom_duration(w))
}

/// Which journeys one alert rule covers: a configured one by name, or every journey cerflow
/// derives by itself (auto journeys), which get `slo.objectives`.
enum Target<'a> {
    Journey(&'a JourneyConfig),
    Others(&'a [JourneyConfig]),
}

impl Target<'_> {
    fn matcher(&self) -> String {
        match self {
            Target::Journey(j) => format!("journey={}", promql_string(&j.name)),
            Target::Others([]) => "journey!=\"\"".to_string(),
            Target::Others(named) => {
                let names: Vec<String> = named.iter().map(|j| regex::escape(&j.name)).collect();
                format!("journey!~{}", promql_string(&names.join("|")))
            }
        }
    }

    fn objectives<'c>(&'c self, cfg: &'c Config) -> &'c Objectives {
        match self {
            Target::Journey(j) => &j.objectives,
            Target::Others(_) => &cfg.slo.objectives,
        }
    }

    /// Auto journeys have no correctness rule, so no correctness SLI.
    fn slis(&self) -> &'static [SliKind] {
        match self {
            Target::Journey(j) if j.incorrect.is_some() => &REQUEST_SLIS,
            _ => &REQUEST_SLIS[..2],
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Journey(j) => format!("journey {}", j.name),
            Target::Others(_) => "auto-derived journeys".to_string(),
        }
    }
}

/// The rules file for `cfg`, as YAML.
pub fn render(cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by `cerflow export prometheus-rules` from config version {}: do not edit,\n\
         # regenerate. Recording rules: the bad-event ratio of each SLI per journey over every\n\
         # burn window, and requests per alert long window. Alerts: cerflow's own burn-rate table\n\
         # (slo.alerts, min_events {}, clear_after {}) per journey, SLI and severity.\n\
         # Check with: promtool check rules FILE",
        yaml_string(&cfg.version),
        cfg.slo.min_events,
        prom_duration(cfg.slo.clear_after),
    );
    out.push_str("groups:\n  - name: cerflow-slo-recording\n    rules:\n");
    let mut long_windows: Vec<Duration> = cfg.slo.alerts.iter().map(|a| a.long_window).collect();
    long_windows.sort();
    long_windows.dedup();
    for &w in &cfg.slo.burn_windows {
        let pw = prom_duration(w);
        if long_windows.contains(&w) {
            let _ = writeln!(
                out,
                "      - record: {}\n        expr: sum by (journey) (increase({REQUESTS}[{pw}]))",
                requests_record(w)
            );
        }
        // Every request SLI has its counter (a unit test pins it): none is skipped here.
        for (sli, bad) in REQUEST_SLIS
            .iter()
            .filter_map(|&s| Some((s, bad_counter(s)?)))
        {
            let _ = writeln!(
                out,
                "      - record: {}\n        expr: sum by (journey) (rate({bad}[{pw}])) / sum by (journey) (rate({REQUESTS}[{pw}]))\n        labels:\n          sli: {}",
                ratio_record(w),
                sli.as_str()
            );
        }
    }
    let mut targets: Vec<Target> = cfg.journeys.iter().map(Target::Journey).collect();
    if cfg.auto_journeys.enabled {
        targets.push(Target::Others(&cfg.journeys));
    }
    out.push_str("  - name: cerflow-slo-alerts\n    rules:\n");
    if cfg.slo.alerts.is_empty() || targets.is_empty() {
        out.push_str("      []\n");
        return out;
    }
    for t in &targets {
        for &sli in t.slis() {
            for sev in [Severity::Page, Severity::Ticket] {
                alert(&mut out, cfg, t, sli, sev);
            }
        }
    }
    out
}

fn alert(out: &mut String, cfg: &Config, t: &Target, sli: SliKind, sev: Severity) {
    let rules: Vec<_> = cfg
        .slo
        .alerts
        .iter()
        .filter(|a| a.severity == sev)
        .collect();
    if rules.is_empty() {
        return;
    }
    let objective = t.objectives(cfg).get(sli);
    let budget = number(budget(objective));
    let sel = format!("{{{},sli=\"{}\"}}", t.matcher(), sli.as_str());
    let _ = writeln!(
        out,
        "      - alert: CerJourneyErrorBudgetBurn\n        expr: |"
    );
    for (i, r) in rules.iter().enumerate() {
        let burn = number(r.burn_rate);
        if i > 0 {
            out.push_str("          or\n");
        }
        let _ = writeln!(
            out,
            "          (\n            {long}{sel} / {budget} > {burn}\n            and on (journey, sli) {short}{sel} / {budget} > {burn}",
            long = ratio_record(r.long_window),
            short = ratio_record(r.short_window),
        );
        if cfg.slo.min_events > 0 {
            let _ = writeln!(
                out,
                "            and on (journey) {}{{{}}} >= {}",
                requests_record(r.long_window),
                t.matcher(),
                cfg.slo.min_events
            );
        }
        out.push_str("          )\n");
    }
    let windows: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "{} over {} and {}",
                number(r.burn_rate),
                prom_duration(r.long_window),
                prom_duration(r.short_window)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "        keep_firing_for: {}\n        labels:\n          severity: {}\n          sli: {}{}\n        annotations:\n          summary: {}\n          description: {}",
        prom_duration(cfg.slo.clear_after),
        sev.as_str(),
        sli.as_str(),
        // The series carry `journey` already; naming it keeps each rule's labels unique.
        match t {
            Target::Journey(j) => format!("\n          journey: {}", yaml_string(&j.name)),
            Target::Others(_) => String::new(),
        },
        yaml_string(&format!(
            "{{{{ $labels.journey }}}}: {} error budget is burning (burn rate {{{{ $value | humanize }}}})",
            sli.as_str()
        )),
        yaml_string(&format!(
            "{}, {} objective {}: burn rate above {} (and at least {} requests in the long window).",
            t.describe(),
            sli.as_str(),
            number(objective),
            windows.join(", or "),
            cfg.slo.min_events
        )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, "test.yaml", &|_| None).expect("valid test config")
    }

    #[test]
    fn each_request_sli_rates_its_bad_counter_and_the_others_have_none() {
        use crate::slo::config::SLIS;
        let got: Vec<(&str, Option<&str>)> =
            SLIS.iter().map(|&s| (s.as_str(), bad_counter(s))).collect();
        assert_eq!(
            got,
            [
                ("availability", Some("cer_journey_errors_total")),
                ("latency", Some("cer_journey_slow_total")),
                ("correctness", Some("cer_journey_incorrect_total")),
                ("operations", None),
                ("experience", None),
            ]
        );
        // Each is a counter both exporters publish from the catalogue.
        for name in got.iter().filter_map(|(_, c)| *c) {
            let m = catalogue::ALL.iter().find(|m| m.prom == name);
            assert!(
                m.is_some_and(|m| m.kind == catalogue::Kind::Counter && m.otlp.is_some()),
                "{name}"
            );
        }
        // The rules hold a ratio for each request SLI and nothing for the other two:
        // 7 burn windows x 3 SLIs.
        let text = render(&config(
            "journeys:\n  - name: pay\n    match: { span_name: pay }\n",
        ));
        assert_eq!(text.matches("rate(cer_journey_errors_total[").count(), 7);
        assert_eq!(text.matches("rate(cer_journey_slow_total[").count(), 7);
        assert_eq!(text.matches("rate(cer_journey_incorrect_total[").count(), 7);
        assert!(!text.contains("rate([") && !text.contains("sli: operations"));
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        let s = Duration::from_secs;
        assert_eq!(prom_duration(s(300)), "5m");
        assert_eq!(prom_duration(s(3 * 86400)), "3d");
        assert_eq!(prom_duration(s(5400)), "90m");
        assert_eq!(prom_duration(s(7200)), "2h");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn names_are_escaped_for_promql() {
        assert_eq!(promql_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }

    #[test]
    fn a_7_day_period_scales_the_thresholds_and_objectives_are_per_journey() {
        let cfg = config(
            "slo:\n  period: 7d\n  min_events: 20\n  clear_after: 10m\n  alerts:\n    - { severity: page, long_window: 1h, short_window: 5m, budget_consumed: 0.02 }\n\
             journeys:\n  - name: pay\n    objectives: { availability: 0.9995 }\n    match: { span_name: pay }\n",
        );
        let text = render(&cfg);
        // 0.02 x 168h / 1h = 3.36; availability budget 1 - 0.9995 = 0.0005.
        assert!(
            text.contains(
                "journey_sli:cer_bad_ratio:rate1h{journey=\"pay\",sli=\"availability\"} / 0.0005 > 3.36\n            and on (journey, sli) journey_sli:cer_bad_ratio:rate5m{journey=\"pay\",sli=\"availability\"} / 0.0005 > 3.36\n            and on (journey) journey:cer_requests:increase1h{journey=\"pay\"} >= 20\n"
            ),
            "{text}"
        );
        // Latency keeps the default objective 0.99.
        assert!(
            text.contains("{journey=\"pay\",sli=\"latency\"} / 0.01 > 3.36"),
            "{text}"
        );
        // No correctness rule: no correctness alert; no ticket rule: no ticket alert.
        assert!(!text.contains("sli=\"correctness\"}"), "{text}");
        assert!(!text.contains("severity: ticket"), "{text}");
        assert_eq!(text.matches("- alert:").count(), 2, "{text}");
        assert!(text.contains("keep_firing_for: 10m"), "{text}");
    }

    #[test]
    fn auto_journeys_get_the_default_objectives() {
        let text = render(&Config::embedded_default());
        // Four rules: two page, two ticket, for availability and latency.
        assert_eq!(text.matches("- alert:").count(), 4, "{text}");
        assert!(
            text.contains("journey_sli:cer_bad_ratio:rate1h{journey!=\"\",sli=\"availability\"} / 0.001 > 14.4"),
            "{text}"
        );
        assert!(
            text.contains(
                "journey_sli:cer_bad_ratio:rate3d{journey!=\"\",sli=\"latency\"} / 0.01 > 1\n"
            ),
            "{text}"
        );
    }

    /// examples/prometheus-rules.yaml and the compose stack's rules are this command's
    /// output for their configs, so they cannot drift apart. Regenerate with
    /// `cerflow export prometheus-rules --config CONFIG > RULES`.
    #[test]
    fn the_committed_rules_are_the_output_for_their_configs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (config, rules) in [
            ("examples/shop.yaml", "examples/prometheus-rules.yaml"),
            ("docker/cerflow.yaml", "docker/prometheus/rules.yaml"),
        ] {
            let text = std::fs::read_to_string(root.join(config)).expect("config");
            let cfg = Config::parse(&text, config, &|_| None).expect("valid");
            let committed = std::fs::read_to_string(root.join(rules)).expect("rules");
            assert!(
                committed == render(&cfg),
                "{rules} is stale: regenerate it with \
                 `cerflow export prometheus-rules --config {config} > {rules}`"
            );
        }
    }
}
