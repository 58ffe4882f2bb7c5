//! Configuration: strict decoding, `${env:VAR}` expansion and validation in one pass
//! that reports every problem at once, each with its line, column and key path.

pub mod decode;
pub mod yaml;

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
    pub defaults: Defaults,
    pub auto_journeys: AutoJourneys,
    pub slo: Slo,
    pub score: Score,
    pub limits: Limits,
    pub journeys: Vec<JourneyConfig>,
}

/// Bounds on the state cerflow keeps, whatever its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Cohort series per journey; past it, spans go to one overflow series per journey.
    pub max_series_per_journey: usize,
    /// Heap bytes of window state over all workers; past it, new series overflow too.
    pub max_window_state_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Receivers {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub grpc_tls: Option<TlsFiles>,
    pub http_tls: Option<TlsFiles>,
    /// Bearer tokens; when any is set, both receivers require one.
    pub tokens: Vec<BearerToken>,
    /// Longest a request may take to arrive and be handled.
    pub request_timeout: Duration,
    /// Span attributes read per span; later ones are ignored by rules and cohorts.
    pub max_attributes_per_span: usize,
    /// Spans one request may hold.
    pub max_spans_per_request: usize,
    /// Largest request body accepted, compressed or not.
    pub max_request_bytes: usize,
    /// Largest body after gzip inflation; a bomb stops here.
    pub max_decompressed_bytes: usize,
}

/// PEM files for a TLS listener; with `client_ca_file`, clients must present a
/// certificate signed by that CA (mutual TLS).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub client_ca_file: Option<std::path::PathBuf>,
}

#[derive(Clone, PartialEq)]
pub struct BearerToken {
    pub token: String,
    /// Exposed to rules and cohorts as the attribute `cerflow.tenant`.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug dump.
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("tenant", &self.tenant)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exporters {
    pub prometheus: Option<SocketAddr>,
    pub prometheus_tls: Option<TlsFiles>,
    pub otlp: Option<OtlpExporter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExporter {
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Export requests held while the endpoint fails; past it the oldest is dropped.
    pub queue_size: usize,
    pub retry: OtlpRetry,
}

/// Exponential backoff with jitter for the OTLP exporter's retryable failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpRetry {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// A request older than this is dropped instead of retried.
    pub max_elapsed_time: Duration,
}

impl Default for OtlpRetry {
    fn default() -> Self {
        OtlpRetry {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub workers: usize,
    /// Batches each worker's queue holds before receivers refuse with "retry later".
    pub queue_size: usize,
    pub evaluation_interval: Duration,
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub sizes: Vec<Duration>,
    pub sub_buckets: u32,
    pub max_clock_skew: Duration,
    pub series_ttl: Duration,
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
}

/// The SLIs cerflow derives, in the order every per-SLI array uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SliKind {
    Availability = 0,
    Latency = 1,
    Correctness = 2,
}

pub const SLIS: [SliKind; 3] = [
    SliKind::Availability,
    SliKind::Latency,
    SliKind::Correctness,
];

impl SliKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SliKind::Availability => "availability",
            SliKind::Latency => "latency",
            SliKind::Correctness => "correctness",
        }
    }
}

/// One value per SLI, indexed by [`SliKind`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerSli(pub [f64; 3]);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoData {
    /// Left out of the overall score.
    Exclude,
    /// Counts as a perfect score.
    Good,
    /// Counts as a score of 0.
    Bad,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub floor_burn_rate: f64,
    pub sli_weights: PerSli,
    pub weight_by_traffic: bool,
    pub no_data: NoData,
}

pub const DEFAULT_OBJECTIVES: PerSli = PerSli([0.999, 0.99, 0.999]);

/// The SRE Workbook's multiwindow, multi-burn-rate table as shares of a period's budget.
pub const DEFAULT_ALERTS: [(Severity, u64, u64, f64); 4] = [
    (Severity::Page, 3600, 300, 0.02),
    (Severity::Page, 6 * 3600, 1800, 0.05),
    (Severity::Ticket, 86400, 2 * 3600, 0.10),
    (Severity::Ticket, 3 * 86400, 6 * 3600, 0.10),
];

impl Slo {
    fn default_with_period(period: Duration) -> Slo {
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
            },
            exporters: Exporters {
                prometheus: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
                prometheus_tls: None,
                otlp: None,
            },
            pipeline: Pipeline {
                workers: 2,
                queue_size: 1024,
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
                sli_weights: PerSli([0.5, 0.3, 0.2]),
                weight_by_traffic: false,
                no_data: NoData::Exclude,
            },
            limits: Limits {
                max_series_per_journey: 1000,
                max_window_state_bytes: 256 << 20,
            },
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
    "defaults",
    "auto_journeys",
    "slo",
    "score",
    "limits",
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
        if let Some(l) = ctx.map(
            n,
            "limits",
            &["max_series_per_journey", "max_window_state_bytes"],
        ) {
            if let Some(x) = l.get("max_series_per_journey") {
                match ctx.u64(x, "limits.max_series_per_journey") {
                    Some(v) if v >= 1 => cfg.limits.max_series_per_journey = v as usize,
                    Some(_) => ctx.error(
                        x.mark,
                        "limits.max_series_per_journey",
                        "must be at least 1",
                    ),
                    None => {}
                }
            }
            if let Some(x) = l.get("max_window_state_bytes") {
                match ctx.u64(x, "limits.max_window_state_bytes") {
                    Some(v) if v >= 1 << 20 => cfg.limits.max_window_state_bytes = v as usize,
                    Some(_) => ctx.error(
                        x.mark,
                        "limits.max_window_state_bytes",
                        "must be at least 1048576 (1 MiB)",
                    ),
                    None => {}
                }
            }
        }
    }
    if let Some(n) = m.get("score") {
        decode_score(ctx, n, &mut cfg.score);
    }
    if let Some(n) = m.get("journeys") {
        cfg.journeys = decode_journeys(ctx, n, &cfg);
    }
    // Auto-derived journeys are the default only while no journey is defined.
    cfg.auto_journeys.enabled = auto_enabled.unwrap_or(cfg.journeys.is_empty());
    cfg
}

/// `{endpoint: host:port, tls: {...}}`.
fn listener(ctx: &mut Ctx, node: &Node, path: &str) -> (Option<SocketAddr>, Option<TlsFiles>) {
    let Some(m) = ctx.map(node, path, &["endpoint", "tls"]) else {
        return (None, None);
    };
    let tls = m
        .get("tls")
        .and_then(|t| tls_files(ctx, t, &join(path, "tls")));
    let p = join(path, "endpoint");
    let Some(e) = m.get("endpoint") else {
        ctx.error(m.mark, path, "missing required key \"endpoint\"");
        return (None, tls);
    };
    let Some(s) = ctx.string(e, &p) else {
        return (None, tls);
    };
    match resolve_addr(&s) {
        Some(a) => (Some(a), tls),
        None => {
            ctx.error(
                e.mark,
                &p,
                format!("invalid endpoint \"{s}\" (expected host:port, e.g. 127.0.0.1:4317)"),
            );
            (None, tls)
        }
    }
}

/// A PEM file that must exist when the config is loaded.
fn existing_file(ctx: &mut Ctx, node: &Node, path: &str) -> Option<std::path::PathBuf> {
    let s = ctx.non_empty_string(node, path)?;
    let p = std::path::PathBuf::from(&s);
    if !p.is_file() {
        ctx.error(
            node.mark,
            path,
            format!("file \"{s}\" does not exist or is not a file"),
        );
        return None;
    }
    Some(p)
}

fn tls_files(ctx: &mut Ctx, node: &Node, path: &str) -> Option<TlsFiles> {
    let m = ctx.map(node, path, &["cert_file", "key_file", "client_ca_file"])?;
    let mut need = |key: &str| match m.get(key) {
        Some(n) => existing_file(ctx, n, &join(path, key)),
        None => {
            ctx.error(m.mark, path, format!("missing required key \"{key}\""));
            None
        }
    };
    let cert_file = need("cert_file");
    let key_file = need("key_file");
    let client_ca_file = match m.get("client_ca_file") {
        Some(n) => Some(existing_file(ctx, n, &join(path, "client_ca_file"))?),
        None => None,
    };
    Some(TlsFiles {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file,
    })
}

fn bearer_tokens(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<BearerToken> {
    let mut out = Vec::new();
    let problems_before = ctx.problems.len();
    let Some(items) = ctx.seq(node, path) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(m) = ctx.map(item, &p, &["token", "token_file", "tenant"]) else {
            continue;
        };
        let token = match (m.get("token"), m.get("token_file")) {
            (Some(t), None) => ctx.non_empty_string(t, &join(&p, "token")),
            (None, Some(f)) => existing_file(ctx, f, &join(&p, "token_file")).and_then(|file| {
                match std::fs::read_to_string(&file) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                    Ok(_) => {
                        ctx.error(f.mark, &join(&p, "token_file"), "the token file is empty");
                        None
                    }
                    Err(e) => {
                        ctx.error(f.mark, &join(&p, "token_file"), format!("cannot read: {e}"));
                        None
                    }
                }
            }),
            _ => {
                ctx.error(m.mark, &p, "give exactly one of: token, token_file");
                None
            }
        };
        let tenant = m
            .get("tenant")
            .and_then(|t| ctx.non_empty_string(t, &join(&p, "tenant")));
        if let Some(token) = token {
            if out.iter().any(|t: &BearerToken| t.token == token) {
                ctx.error(m.mark, &p, "the same token is listed twice");
            } else {
                out.push(BearerToken { token, tenant });
            }
        }
    }
    if out.is_empty() && ctx.problems.len() == problems_before {
        ctx.error(
            node.mark,
            path,
            "list at least one token, or leave auth out",
        );
    }
    out
}

fn resolve_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()?
        .next()
}

fn decode_receivers(ctx: &mut Ctx, node: &Node, out: &mut Receivers) {
    let Some(m) = ctx.map(node, "receivers", &["otlp"]) else {
        return;
    };
    let Some(otlp) = m.get("otlp") else { return };
    let keys = [
        "protocols",
        "max_request_bytes",
        "max_decompressed_bytes",
        "max_attributes_per_span",
        "max_spans_per_request",
        "request_timeout",
        "auth",
    ];
    let Some(o) = ctx.map(otlp, "receivers.otlp", &keys) else {
        return;
    };
    if let Some(p) = o.get("protocols") {
        if let Some(pm) = ctx.map(p, "receivers.otlp.protocols", &["grpc", "http"]) {
            (out.grpc, out.grpc_tls) = match pm.get("grpc") {
                Some(n) => listener(ctx, n, "receivers.otlp.protocols.grpc"),
                None => (None, None),
            };
            (out.http, out.http_tls) = match pm.get("http") {
                Some(n) => listener(ctx, n, "receivers.otlp.protocols.http"),
                None => (None, None),
            };
            if pm.entries.is_empty() {
                ctx.error(
                    p.mark,
                    "receivers.otlp.protocols",
                    "must specify at least one protocol (grpc, http)",
                );
            }
        }
    }
    for (key, slot) in [
        ("max_request_bytes", &mut out.max_request_bytes),
        ("max_decompressed_bytes", &mut out.max_decompressed_bytes),
    ] {
        if let Some(n) = o.get(key) {
            let p = join("receivers.otlp", key);
            match ctx.u64(n, &p) {
                Some(v) if v >= 1024 => *slot = v as usize,
                Some(_) => ctx.error(n.mark, &p, "must be at least 1024"),
                None => {}
            }
        }
    }
    if let Some(n) = o.get("max_attributes_per_span") {
        match ctx.u64(n, "receivers.otlp.max_attributes_per_span") {
            Some(v) if v >= 1 => out.max_attributes_per_span = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "receivers.otlp.max_attributes_per_span",
                "must be at least 1",
            ),
            None => {}
        }
    }
    if let Some(n) = o.get("max_spans_per_request") {
        match ctx.u64(n, "receivers.otlp.max_spans_per_request") {
            Some(v) if v >= 1 => out.max_spans_per_request = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "receivers.otlp.max_spans_per_request",
                "must be at least 1",
            ),
            None => {}
        }
    }
    if let Some(n) = o.get("request_timeout") {
        if let Some(d) = ctx.positive_duration(n, "receivers.otlp.request_timeout") {
            out.request_timeout = d;
        }
    }
    if let Some(n) = o.get("auth") {
        if let Some(a) = ctx.map(n, "receivers.otlp.auth", &["bearer_tokens"]) {
            match a.get("bearer_tokens") {
                Some(t) => out.tokens = bearer_tokens(ctx, t, "receivers.otlp.auth.bearer_tokens"),
                None => ctx.error(
                    a.mark,
                    "receivers.otlp.auth",
                    "missing required key \"bearer_tokens\"",
                ),
            }
        }
    }
}

fn decode_exporters(ctx: &mut Ctx, node: &Node, out: &mut Exporters) {
    let Some(m) = ctx.map(node, "exporters", &["prometheus", "otlp"]) else {
        return;
    };
    if let Some(n) = m.get("prometheus") {
        (out.prometheus, out.prometheus_tls) = listener(ctx, n, "exporters.prometheus");
    }
    if let Some(n) = m.get("otlp") {
        let path = "exporters.otlp";
        let Some(o) = ctx.map(
            n,
            path,
            &["endpoint", "interval", "timeout", "queue_size", "retry"],
        ) else {
            return;
        };
        let endpoint = match o.get("endpoint") {
            Some(e) => ctx
                .non_empty_string(e, "exporters.otlp.endpoint")
                .and_then(|s| {
                    let url = if s.contains("://") {
                        s
                    } else {
                        format!("http://{s}")
                    };
                    if url.starts_with("http://") || url.starts_with("https://") {
                        Some(url)
                    } else {
                        ctx.error(
                            e.mark,
                            "exporters.otlp.endpoint",
                            format!("unsupported scheme in \"{url}\" (use http:// or https://)"),
                        );
                        None
                    }
                }),
            None => {
                ctx.error(o.mark, path, "missing required key \"endpoint\"");
                None
            }
        };
        let interval = o
            .get("interval")
            .and_then(|i| ctx.positive_duration(i, "exporters.otlp.interval"));
        let timeout = o
            .get("timeout")
            .and_then(|i| ctx.positive_duration(i, "exporters.otlp.timeout"));
        let mut queue_size = 16;
        if let Some(q) = o.get("queue_size") {
            match ctx.u64(q, "exporters.otlp.queue_size") {
                Some(v) if (1..=100_000).contains(&v) => queue_size = v as usize,
                Some(_) => ctx.error(
                    q.mark,
                    "exporters.otlp.queue_size",
                    "must be between 1 and 100000",
                ),
                None => {}
            }
        }
        let retry = o
            .get("retry")
            .map(|r| decode_otlp_retry(ctx, r))
            .unwrap_or_default();
        if let Some(endpoint) = endpoint {
            out.otlp = Some(OtlpExporter {
                endpoint,
                interval: interval.unwrap_or(Duration::from_secs(10)),
                timeout: timeout.unwrap_or(Duration::from_secs(5)),
                queue_size,
                retry,
            });
        }
    }
}

fn decode_otlp_retry(ctx: &mut Ctx, node: &Node) -> OtlpRetry {
    let path = "exporters.otlp.retry";
    let mut out = OtlpRetry::default();
    let Some(m) = ctx.map(
        node,
        path,
        &["initial_interval", "max_interval", "max_elapsed_time"],
    ) else {
        return out;
    };
    for (key, slot) in [
        ("initial_interval", &mut out.initial_interval),
        ("max_interval", &mut out.max_interval),
        ("max_elapsed_time", &mut out.max_elapsed_time),
    ] {
        if let Some(d) = m
            .get(key)
            .and_then(|n| ctx.positive_duration(n, &join(path, key)))
        {
            *slot = d;
        }
    }
    if out.max_interval < out.initial_interval {
        // Point at the key the user wrote: max_interval if given, else initial_interval.
        let key = if m.get("max_interval").is_some() {
            "max_interval"
        } else {
            "initial_interval"
        };
        ctx.error(
            m.get(key).map_or(m.mark, |n| n.mark),
            &join(path, key),
            format!(
                "max_interval ({}) must not be shorter than initial_interval ({})",
                crate::duration::format_duration(out.max_interval),
                crate::duration::format_duration(out.initial_interval)
            ),
        );
    }
    out
}

fn decode_pipeline(ctx: &mut Ctx, node: &Node, out: &mut Pipeline) {
    let Some(m) = ctx.map(
        node,
        "pipeline",
        &[
            "workers",
            "queue_size",
            "evaluation_interval",
            "shutdown_timeout",
        ],
    ) else {
        return;
    };
    if let Some(n) = m.get("workers") {
        match ctx.u64(n, "pipeline.workers") {
            Some(v) if (1..=256).contains(&v) => out.workers = v as usize,
            Some(_) => ctx.error(n.mark, "pipeline.workers", "must be between 1 and 256"),
            None => {}
        }
    }
    if let Some(n) = m.get("queue_size") {
        match ctx.u64(n, "pipeline.queue_size") {
            Some(v) if v >= 1 => out.queue_size = v as usize,
            Some(_) => ctx.error(n.mark, "pipeline.queue_size", "must be at least 1"),
            None => {}
        }
    }
    if let Some(n) = m.get("evaluation_interval") {
        if let Some(d) = ctx.positive_duration(n, "pipeline.evaluation_interval") {
            if d < Duration::from_millis(100) {
                ctx.error(
                    n.mark,
                    "pipeline.evaluation_interval",
                    "must be at least 100ms",
                );
            } else {
                out.evaluation_interval = d;
            }
        }
    }
    if let Some(n) = m.get("shutdown_timeout") {
        if let Some(d) = ctx.positive_duration(n, "pipeline.shutdown_timeout") {
            out.shutdown_timeout = d;
        }
    }
}

fn decode_windows(ctx: &mut Ctx, node: &Node, out: &mut Windows) {
    let Some(m) = ctx.map(
        node,
        "windows",
        &["sizes", "sub_buckets", "max_clock_skew", "series_ttl"],
    ) else {
        return;
    };
    if let Some(n) = m.get("sizes") {
        if let Some(items) = ctx.seq(n, "windows.sizes") {
            if items.is_empty() {
                ctx.error(n.mark, "windows.sizes", "must list at least one window");
            }
            let mut sizes = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = index("windows.sizes", i);
                if let Some(d) = ctx.positive_duration(item, &p) {
                    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
                        ctx.error(
                            item.mark,
                            &p,
                            "must be a whole number of seconds, at least 1s",
                        );
                    } else if sizes.contains(&d) {
                        ctx.error(
                            item.mark,
                            &p,
                            format!("duplicate window {}", crate::duration::format_duration(d)),
                        );
                    } else {
                        sizes.push(d);
                    }
                }
            }
            if !sizes.is_empty() {
                sizes.sort();
                out.sizes = sizes;
            }
        }
    }
    if let Some(n) = m.get("sub_buckets") {
        match ctx.u64(n, "windows.sub_buckets") {
            Some(v) if (2..=600).contains(&v) => out.sub_buckets = v as u32,
            Some(_) => ctx.error(n.mark, "windows.sub_buckets", "must be between 2 and 600"),
            None => {}
        }
    }
    if let Some(n) = m.get("max_clock_skew") {
        if let Some(d) = ctx.duration(n, "windows.max_clock_skew") {
            out.max_clock_skew = d;
        }
    }
    if let Some(n) = m.get("series_ttl") {
        if let Some(d) = ctx.positive_duration(n, "windows.series_ttl") {
            out.series_ttl = d;
        }
    }
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
];

/// `{availability: x, latency: y, correctness: z}`, each optional, over `base`.
fn per_sli(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    base: PerSli,
    check: fn(f64) -> bool,
    rule: &str,
) -> PerSli {
    let mut out = base;
    let Some(m) = ctx.map(node, path, &["availability", "latency", "correctness"]) else {
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

fn objective_ok(v: f64) -> bool {
    v > 0.0 && v < 1.0
}

const SLO_KEYS: &[&str] = &[
    "period",
    "objectives",
    "burn_windows",
    "alerts",
    "min_events",
    "clear_after",
    "checkpoint",
];

fn decode_slo(ctx: &mut Ctx, node: &Node, out: &mut Slo) {
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

fn decode_alert(ctx: &mut Ctx, node: &Node, path: &str, period: Duration) -> Option<AlertRule> {
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

fn decode_score(ctx: &mut Ctx, node: &Node, out: &mut Score) {
    let Some(m) = ctx.map(
        node,
        "score",
        &[
            "floor_burn_rate",
            "sli_weights",
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
    if let Some(n) = m.get("weight_by_traffic") {
        if let Some(b) = ctx.bool(n, "score.weight_by_traffic") {
            out.weight_by_traffic = b;
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
            None => {
                ctx.error(item.mark, &path, "missing required key \"match\"");
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
        if let (
            Some(name),
            Some(weight),
            Some(matcher),
            Some(failure),
            Some(incorrect),
            Some(lt),
            Some(cohorts),
        ) = (
            name,
            weight,
            matcher,
            failure,
            incorrect,
            latency_threshold,
            cohorts,
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
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
