//! Configuration: strict decoding, `${env:VAR}` expansion and validation in one pass
//! that reports every problem at once, each with its line, column and key path.

pub mod decode;
pub mod listener;
pub mod yaml;

// Each component's section lives beside the component; the root assembles them.
use crate::deployments::config::decode_deployments;
pub use crate::deployments::config::Deployments;
use crate::export::config::decode_exporters;
pub use crate::export::config::{Exporters, OtlpExporter, OtlpRetry};
use crate::incidents::config::decode_incidents;
pub use crate::incidents::config::Incidents;
use crate::pipeline::config::{decode_limits, decode_pipeline};
pub use crate::pipeline::config::{Limits, Pipeline};
use crate::receiver::config::decode_receivers;
pub use crate::receiver::config::{BearerToken, Cors, Receivers};
use crate::score::config::decode_score;
pub use crate::score::config::{NoData, Score, WeightBy};
use crate::signals::config::{check_slice, decode_journey_signals, decode_signals_section};
pub use crate::signals::config::{SignalConfig, SignalsSection};
use crate::slo::config::{decode_slo, objective_ok, per_sli};
pub use crate::slo::config::{
    AlertRule, Checkpoint, Objectives, PerSli, Severity, SliKind, Slo, DEFAULT_ALERTS,
    DEFAULT_OBJECTIVES, REQUEST_SLIS, SLIS,
};
use crate::traces::config::{decode_dependencies, decode_traces};
pub use crate::traces::config::{Dependencies, Traces};
use crate::ui::config::decode_ui;
pub use crate::ui::config::{Ui, UiAuth};
use crate::users::config::decode_users;
pub use crate::users::config::Users;
use crate::window::config::decode_windows;
pub use crate::window::config::Windows;
pub use listener::TlsFiles;

use crate::predicate::{self, Cond};
use decode::{index, join, Ctx, Problem};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use yaml::{Kind, Mark, Node};

/// The configuration cerflow runs with when no file is given: every default below.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

pub const DEFAULT_LATENCY_THRESHOLD: Duration = Duration::from_secs(1);
pub const DEFAULT_COHORT_MISSING: &str = "unknown";
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Free text naming this set of definitions; exported as `cer_definition_info{version}`.
    pub version: String,
    pub receivers: Receivers,
    pub exporters: Exporters,
    pub pipeline: Pipeline,
    pub windows: Windows,
    pub histogram_buckets: Vec<f64>,
    pub cohorts: Cohorts,
    pub users: Users,
    pub defaults: Defaults,
    pub auto_journeys: AutoJourneys,
    pub slo: Slo,
    pub score: Score,
    pub limits: Limits,
    pub signals: SignalsSection,
    pub ui: Ui,
    pub traces: Traces,
    pub dependencies: Dependencies,
    pub incidents: Incidents,
    pub deployments: Deployments,
    pub journeys: Vec<JourneyConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cohorts {
    pub keys: Vec<String>,
    pub missing_value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub latency_threshold: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoJourneys {
    pub enabled: bool,
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JourneyConfig {
    pub name: String,
    pub weight: f64,
    pub matcher: Cond,
    pub failure: Cond,
    pub incorrect: Option<Cond>,
    pub latency_threshold: Duration,
    pub cohorts: Vec<String>,
    pub objectives: Objectives,
    /// What a request is worth, for value at risk.
    pub value: Option<crate::value::config::ValueRule>,
    /// Web vital thresholds and frustration events.
    pub experience: crate::experience::config::ExperienceConfig,
    /// Attempts that start and should complete: abandonment.
    pub completion: Option<crate::completion::config::CompletionConfig>,
    /// Operational signals read from OTLP metrics, for the operations SLI.
    pub signals: Vec<SignalConfig>,
    /// OTLP metrics the journey takes its request counts from ([`crate::metric_requests`]).
    pub metrics: Vec<crate::metric_requests::config::MetricInputConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: "default".into(),
            receivers: Receivers {
                grpc: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
                http: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
                grpc_tls: None,
                http_tls: None,
                tokens: Vec::new(),
                request_timeout: Duration::from_secs(30),
                max_attributes_per_span: 128,
                max_spans_per_request: 100_000,
                max_request_bytes: 16 << 20,
                max_decompressed_bytes: 64 << 20,
                http_cors: None,
                public_rate_limit: crate::receiver::config::DEFAULT_PUBLIC_RATE_LIMIT,
                kafka: None,
            },
            exporters: Exporters {
                prometheus: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
                prometheus_tls: None,
                otlp: None,
            },
            pipeline: Pipeline {
                workers: 2,
                queue_size: 1024,
                queue_bytes: 4 << 20,
                evaluation_interval: Duration::from_secs(1),
                shutdown_timeout: Duration::from_secs(10),
            },
            windows: Windows {
                sizes: vec![
                    Duration::from_secs(60),
                    Duration::from_secs(300),
                    Duration::from_secs(3600),
                ],
                sub_buckets: 12,
                max_clock_skew: Duration::from_secs(30),
                series_ttl: Duration::from_secs(15 * 60),
            },
            histogram_buckets: DEFAULT_BUCKETS.to_vec(),
            users: Users::default(),
            cohorts: Cohorts {
                keys: Vec::new(),
                missing_value: DEFAULT_COHORT_MISSING.into(),
            },
            defaults: Defaults {
                latency_threshold: DEFAULT_LATENCY_THRESHOLD,
            },
            auto_journeys: AutoJourneys {
                enabled: true,
                max: 500,
            },
            slo: Slo::default_with_period(Duration::from_secs(30 * 86400)),
            score: Score {
                floor_burn_rate: 10.0,
                // Operations is opt-in: a weight of 0 leaves existing scores as they were.
                // Experience weighs 0.2 but is left out of a window without vitals.
                sli_weights: PerSli([0.5, 0.3, 0.2, 0.0, 0.2]),
                weight_by: crate::score::config::WeightBy::Weight,
                no_data: NoData::Exclude,
            },
            limits: Limits {
                max_series_per_journey: 1000,
                max_window_state_bytes: 256 << 20,
                max_pending_attempts: 1_000_000,
            },
            signals: SignalsSection::default(),
            ui: Ui::default(),
            traces: Traces::default(),
            dependencies: Dependencies::default(),
            incidents: Incidents::default(),
            deployments: Deployments::default(),
            journeys: Vec::new(),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug)]
pub struct ConfigErrors {
    pub source: String,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}:",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {}:{p}", self.source)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source: source.clone(),
            problems: vec![Problem {
                mark: Mark { line: 0, col: 0 },
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::parse(&text, &source, &|k| std::env::var(k).ok())
    }

    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_CONFIG_YAML, "<embedded default>", &|_| None)
            .expect("the embedded default configuration is valid (checked by a test)")
    }

    /// Parses and validates `text`; `env` resolves `${env:NAME}` references.
    pub fn parse(
        text: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let fail = |problems| ConfigErrors {
            source: source.to_string(),
            problems,
        };
        let mut root = yaml::parse(text).map_err(|(mark, msg)| {
            fail(vec![Problem {
                mark,
                path: String::new(),
                message: format!("invalid YAML: {msg}"),
            }])
        })?;
        let mut ctx = Ctx::default();
        expand_env(&mut root, env, &mut ctx);
        let cfg = decode_root(&mut ctx, &root);
        if ctx.problems.is_empty() {
            Ok(cfg)
        } else {
            ctx.problems.sort_by_key(|p| (p.mark.line, p.mark.col));
            Err(fail(ctx.problems))
        }
    }

    /// The window sizes in nanoseconds, as every window ring is laid out.
    pub fn windows_ns(&self) -> Vec<u64> {
        self.windows
            .sizes
            .iter()
            .map(|d| d.as_nanos() as u64)
            .collect()
    }

    /// The latency histogram's bounds in nanoseconds, rounded to the nearest one (a bound
    /// such as 0.3 s is not exact in binary), so every stage bins a duration alike.
    pub fn bounds_ns(&self) -> Vec<u64> {
        self.histogram_buckets
            .iter()
            .map(|s| (s * 1e9).round() as u64)
            .collect()
    }

    pub fn longest_window(&self) -> Duration {
        self.windows
            .sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(Duration::from_secs(3600))
    }
}

/// Expands `${env:NAME}` and `${env:NAME:-default}` in every scalar; `$$` is a literal `$`.
fn expand_env(node: &mut Node, env: &dyn Fn(&str) -> Option<String>, ctx: &mut Ctx) {
    match &mut node.kind {
        Kind::Scalar(s, _) if s.contains('$') => match expand_str(s, env) {
            Ok(v) => *s = v,
            Err(msg) => ctx.error(node.mark, "", msg),
        },
        Kind::Seq(items) => items.iter_mut().for_each(|n| expand_env(n, env, ctx)),
        Kind::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, v)| expand_env(v, env, ctx)),
        _ => {}
    }
}

pub fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${env:") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated \"${{env:\" in \"{s}\""))?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name \"{name}\""));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable \"{name}\" is not set (give a default with ${{env:{name}:-value}})")),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

const ROOT_KEYS: &[&str] = &[
    "version",
    "receivers",
    "exporters",
    "pipeline",
    "windows",
    "histogram",
    "cohorts",
    "users",
    "defaults",
    "auto_journeys",
    "slo",
    "score",
    "limits",
    "signals",
    "ui",
    "traces",
    "dependencies",
    "incidents",
    "deployments",
    "journeys",
];

fn decode_root(ctx: &mut Ctx, root: &Node) -> Config {
    let mut cfg = Config::default();
    let Some(m) = ctx.map(root, "", ROOT_KEYS) else {
        return cfg;
    };
    if let Some(n) = m.get("version") {
        if let Some(v) = ctx.non_empty_string(n, "version") {
            cfg.version = v;
        }
    }
    if let Some(n) = m.get("receivers") {
        decode_receivers(ctx, n, &mut cfg.receivers);
    }
    if let Some(n) = m.get("exporters") {
        decode_exporters(ctx, n, &mut cfg.exporters);
    }
    if let Some(n) = m.get("pipeline") {
        decode_pipeline(ctx, n, &mut cfg.pipeline);
    }
    if let Some(n) = m.get("windows") {
        decode_windows(ctx, n, &mut cfg.windows);
    }
    if let Some(n) = m.get("histogram") {
        if let Some(h) = ctx.map(n, "histogram", &["buckets"]) {
            if let Some(b) = h.get("buckets") {
                if let Some(v) = decode_buckets(ctx, b, "histogram.buckets") {
                    cfg.histogram_buckets = v;
                }
            }
        }
    }
    if let Some(n) = m.get("cohorts") {
        decode_cohorts(ctx, n, &mut cfg.cohorts);
    }
    if let Some(n) = m.get("users") {
        decode_users(ctx, n, &mut cfg.users);
    }
    if let Some(n) = m.get("defaults") {
        if let Some(d) = ctx.map(n, "defaults", &["latency_threshold"]) {
            if let Some(t) = d.get("latency_threshold") {
                if let Some(v) = ctx.positive_duration(t, "defaults.latency_threshold") {
                    cfg.defaults.latency_threshold = v;
                }
            }
        }
    }
    let mut auto_enabled: Option<bool> = None;
    if let Some(n) = m.get("auto_journeys") {
        if let Some(a) = ctx.map(n, "auto_journeys", &["enabled", "max"]) {
            if let Some(e) = a.get("enabled") {
                auto_enabled = ctx.bool(e, "auto_journeys.enabled");
            }
            if let Some(x) = a.get("max") {
                match ctx.u64(x, "auto_journeys.max") {
                    Some(0) => ctx.error(x.mark, "auto_journeys.max", "must be at least 1"),
                    Some(v) => cfg.auto_journeys.max = v as usize,
                    None => {}
                }
            }
        }
    }
    if let Some(n) = m.get("slo") {
        decode_slo(ctx, n, &mut cfg.slo);
    }
    if let Some(n) = m.get("limits") {
        decode_limits(ctx, n, &mut cfg.limits);
    }
    if let Some(n) = m.get("ui") {
        decode_ui(ctx, n, &mut cfg.ui);
    }
    if let Some(n) = m.get("score") {
        decode_score(ctx, n, &mut cfg.score);
    }
    if let Some(n) = m.get("signals") {
        decode_signals_section(ctx, n, &mut cfg.signals);
    }
    if let Some(n) = m.get("traces") {
        decode_traces(ctx, n, &mut cfg.traces);
    }
    if let Some(n) = m.get("dependencies") {
        decode_dependencies(ctx, n, &mut cfg.dependencies);
    }
    if let Some(n) = m.get("incidents") {
        decode_incidents(ctx, n, &mut cfg.incidents);
    }
    if let Some(n) = m.get("deployments") {
        decode_deployments(ctx, n, &mut cfg.deployments);
    }
    if let Some(n) = m.get("journeys") {
        cfg.journeys = decode_journeys(ctx, n, &cfg);
    }
    if m.get("signals").is_some() || cfg.journeys.iter().any(|j| !j.signals.is_empty()) {
        let at = m.get("signals").or(m.get("journeys"));
        check_slice(ctx, at, cfg.signals.slice, &cfg.windows.sizes);
    }
    // Auto-derived journeys are the default only while no journey is defined.
    cfg.auto_journeys.enabled = auto_enabled.unwrap_or(cfg.journeys.is_empty());
    cfg
}

fn decode_buckets(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<f64>> {
    let items = ctx.seq(node, path)?;
    if items.is_empty() {
        ctx.error(node.mark, path, "must list at least one bucket bound");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        // Bounds may be given as seconds (0.25) or as durations (250ms).
        let v = match &item.kind {
            Kind::Scalar(s, _) if s.parse::<f64>().is_err() => {
                ctx.duration(item, &p).map(|d| d.as_secs_f64())
            }
            _ => ctx.f64(item, &p),
        };
        match v {
            Some(v) if v > 0.0 && out.last().is_none_or(|last| v > *last) => out.push(v),
            Some(_) => {
                ctx.error(
                    item.mark,
                    &p,
                    "bucket bounds must be positive and strictly increasing",
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn cohort_keys(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = ctx.seq(node, path)?;
    let mut keys = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        if let Some(k) = ctx.non_empty_string(item, &p) {
            let label = crate::labels::sanitize_label(&k);
            if crate::labels::RESERVED.contains(&label.as_str()) {
                ctx.error(
                    item.mark,
                    &p,
                    format!("cohort key \"{k}\" would clash with the label \"{label}\""),
                );
            } else if labels.contains(&label) {
                ctx.error(
                    item.mark,
                    &p,
                    format!("cohort key \"{k}\" repeats the label \"{label}\""),
                );
            } else {
                labels.push(label);
                keys.push(k);
            }
        }
    }
    Some(keys)
}

fn decode_cohorts(ctx: &mut Ctx, node: &Node, out: &mut Cohorts) {
    let Some(m) = ctx.map(node, "cohorts", &["keys", "missing_value"]) else {
        return;
    };
    if let Some(n) = m.get("keys") {
        if let Some(k) = cohort_keys(ctx, n, "cohorts.keys") {
            out.keys = k;
        }
    }
    if let Some(n) = m.get("missing_value") {
        if let Some(v) = ctx.non_empty_string(n, "cohorts.missing_value") {
            out.missing_value = v;
        }
    }
}

const JOURNEY_KEYS: &[&str] = &[
    "name",
    "weight",
    "match",
    "failure",
    "incorrect",
    "latency_threshold",
    "cohorts",
    "objectives",
    "value",
    "experience",
    "completion",
    "signals",
    "metrics",
];

fn decode_journeys(ctx: &mut Ctx, node: &Node, cfg: &Config) -> Vec<JourneyConfig> {
    let Some(items) = ctx.seq(node, "journeys") else {
        return Vec::new();
    };
    let mut out: Vec<JourneyConfig> = Vec::new();
    let mut names: Vec<(String, Mark)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("journeys", i);
        let Some(m) = ctx.map(item, &path, JOURNEY_KEYS) else {
            continue;
        };
        let name = match m.get("name") {
            Some(n) => ctx
                .non_empty_string(n, &join(&path, "name"))
                .and_then(|name| {
                    if let Some((_, first)) = names.iter().find(|(existing, _)| *existing == name) {
                        ctx.error(
                            n.mark,
                            &join(&path, "name"),
                            format!(
                                "duplicate journey name \"{name}\" (first defined at line {})",
                                first.line
                            ),
                        );
                        None
                    } else {
                        names.push((name.clone(), n.mark));
                        Some(name)
                    }
                }),
            None => {
                ctx.error(item.mark, &path, "missing required key \"name\"");
                None
            }
        };
        let weight = match m.get("weight") {
            Some(n) => match ctx.f64(n, &join(&path, "weight")) {
                Some(w) if w > 0.0 => Some(w),
                Some(w) => {
                    ctx.error(
                        n.mark,
                        &join(&path, "weight"),
                        format!("must be greater than 0, got {w}"),
                    );
                    None
                }
                None => None,
            },
            None => Some(1.0),
        };
        let matcher = match m.get("match") {
            Some(n) => predicate::compile(ctx, n, &join(&path, "match")),
            // Measured from metrics alone: an empty `any` matches no span.
            None if m.get("metrics").is_some() => Some(Cond::Any(Vec::new())),
            None => {
                ctx.error(
                    item.mark,
                    &path,
                    "missing required key \"match\" (or \"metrics\")",
                );
                None
            }
        };
        let failure = match m.get("failure") {
            Some(n) => predicate::compile(ctx, n, &join(&path, "failure")),
            None => Some(Cond::default_failure()),
        };
        let incorrect = match m.get("incorrect") {
            Some(n) => predicate::compile(ctx, n, &join(&path, "incorrect")).map(Some),
            None => Some(None),
        };
        let latency_threshold = match m.get("latency_threshold") {
            Some(n) => ctx.positive_duration(n, &join(&path, "latency_threshold")),
            None => Some(cfg.defaults.latency_threshold),
        };
        let cohorts = match m.get("cohorts") {
            Some(n) => cohort_keys(ctx, n, &join(&path, "cohorts")),
            None => Some(cfg.cohorts.keys.clone()),
        };
        let objectives = match m.get("objectives") {
            Some(n) => per_sli(
                ctx,
                n,
                &join(&path, "objectives"),
                cfg.slo.objectives,
                objective_ok,
                "must be between 0 and 1 (exclusive)",
            ),
            None => cfg.slo.objectives,
        };
        // `Some(None)`: no value rule; `None`: an invalid one (reported).
        let value = match m.get("value") {
            Some(n) => crate::value::config::decode_value(ctx, n, &join(&path, "value")).map(Some),
            None => Some(None),
        };
        let experience = match m.get("experience") {
            Some(n) => {
                crate::experience::config::decode_experience(ctx, n, &join(&path, "experience"))
            }
            None => Some(Default::default()),
        };
        let completion = match m.get("completion") {
            Some(n) => {
                crate::completion::config::decode_completion(ctx, n, &join(&path, "completion"))
                    .map(Some)
            }
            None => Some(None),
        };
        let signals = match m.get("signals") {
            Some(n) => decode_journey_signals(ctx, n, &join(&path, "signals")),
            None => Some(Vec::new()),
        };
        let metrics = match m.get("metrics") {
            Some(n) => crate::metric_requests::config::decode_journey_metrics(
                ctx,
                n,
                &join(&path, "metrics"),
            ),
            None => Some(Vec::new()),
        };
        if let (
            Some(name),
            Some(weight),
            Some(matcher),
            Some(failure),
            Some(incorrect),
            Some(lt),
            Some(cohorts),
            Some(value),
            Some(experience),
            Some(completion),
            Some(signals),
            Some(metrics),
        ) = (
            name,
            weight,
            matcher,
            failure,
            incorrect,
            latency_threshold,
            cohorts,
            value,
            experience,
            completion,
            signals,
            metrics,
        ) {
            out.push(JourneyConfig {
                name,
                weight,
                matcher,
                failure,
                incorrect,
                latency_threshold: lt,
                cohorts,
                objectives,
                value,
                experience,
                completion,
                signals,
                metrics,
            });
        }
    }
    out
}

/// The problems a component's `testdata/*.yaml` case reports, as `line:col: path: message`.
#[cfg(test)]
pub(crate) fn testdata_problems(text: &str) -> Vec<String> {
    match Config::parse(text, "testdata.yaml", &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests;
