//! Shared helpers for the integration tests: start the real `cerflow` binary on free
//! loopback ports with a temporary config, scrape and parse its `/metrics`, and send it
//! spans with the real OpenTelemetry SDK and OTLP exporters.
//!
//! Every test file includes this module and uses a different part of it.
#![allow(dead_code)]

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cerflow");

/// How long a derived figure may take to show up on `/metrics`.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so the kernel cannot hand one out twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// The three listening ports of one cerflow process.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
    pub prom: u16,
}

impl Ports {
    pub fn new() -> Ports {
        let p = free_ports(3);
        Ports {
            grpc: p[0],
            http: p[1],
            prom: p[2],
        }
    }

    /// The `receivers:` block and the `exporters:` block with Prometheus, plus `extra`
    /// (already indented by 2) inside `exporters:`.
    pub fn listeners_yaml(&self, extra_exporters: &str) -> String {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{}\n      http:\n        endpoint: 127.0.0.1:{}\n\
             exporters:\n  prometheus:\n    endpoint: 127.0.0.1:{}\n{extra_exporters}",
            self.grpc, self.http, self.prom
        )
    }
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new()
    }
}

/// One running cerflow; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Cerflow {
    child: Option<Child>,
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
    http: reqwest::blocking::Client,
}

impl Cerflow {
    /// Writes the YAML that `config` builds from fresh ports, starts cerflow on it and
    /// waits until `/healthz` answers.
    pub fn start(config: impl Fn(&Ports) -> String) -> Cerflow {
        // A port picked free can be taken by another test before cerflow binds it;
        // such a start is retried on fresh ports.
        let mut last = String::new();
        for _ in 0..5 {
            match Cerflow::try_start(&config) {
                Ok(c) => return c,
                Err(logs) => last = logs,
            }
        }
        panic!("cerflow could not bind free ports five times:\n{last}")
    }

    /// The running cerflow, or its log when a port it was given was taken.
    fn try_start(config: &impl Fn(&Ports) -> String) -> Result<Cerflow, String> {
        let ports = Ports::new();
        let yaml = config(&ports);
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let config_path = dir.path().join("cerflow.yaml");
        std::fs::write(&config_path, &yaml).expect("writing the config");
        let log_path = dir.path().join("cerflow.log");
        let log = std::fs::File::create(&log_path).expect("creating the log file");
        let child = Command::new(BIN)
            // The default SLO checkpoint path is relative: each run keeps its own.
            .current_dir(dir.path())
            .arg("--config")
            .arg(&config_path)
            .arg("--log-level")
            .arg("info,cerflow=debug")
            .env_remove("RUST_LOG")
            .env_remove("CERFLOW_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("building the HTTP client");
        let mut c = Cerflow {
            child: Some(child),
            ports,
            dir,
            config_path,
            log_path,
            exit: None,
            http,
        };
        if c.wait_ready(&yaml) {
            Ok(c)
        } else {
            Err(c.logs())
        }
    }

    /// False when cerflow exited because a port was taken (the caller retries).
    fn wait_ready(&mut self, yaml: &str) -> bool {
        let deadline = Instant::now() + DEADLINE;
        let url = format!("http://127.0.0.1:{}/healthz", self.ports.prom);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.exit = Some(status);
                self.child = None;
                if self.logs().contains("Address already in use") {
                    return false;
                }
                panic!("cerflow exited during start-up with {status}\n--- config ---\n{yaml}\n--- log ---\n{}", self.logs());
            }
            if let Ok(r) = self.http.get(&url).send() {
                if r.status().is_success() {
                    return true;
                }
            }
            if Instant::now() > deadline {
                panic!("cerflow did not answer {url} within {DEADLINE:?}\n--- config ---\n{yaml}\n--- log ---\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What cerflow wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT` of the OTLP/gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.grpc)
    }

    /// `http://127.0.0.1:PORT{path}` on the OTLP/HTTP receiver.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.http)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// One scrape of `/metrics`, or why it failed.
    pub fn try_scrape(&self) -> Result<Scrape, String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.ports.prom);
        let r = self
            .http
            .get(&url)
            .send()
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("GET {url}: {}", r.status()));
        }
        Ok(Scrape::parse(
            &r.text().map_err(|e| format!("reading {url}: {e}"))?,
        ))
    }

    /// One scrape of `/metrics`.
    pub fn scrape(&self) -> Scrape {
        self.try_scrape()
            .unwrap_or_else(|e| panic!("{e}\n--- log ---\n{}", self.logs()))
    }

    /// Scrapes until `ok` holds, then returns that scrape; panics with the last scrape
    /// after [`DEADLINE`]. A failed scrape is retried until then (a loaded machine).
    pub fn wait_until(&self, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = match self.try_scrape() {
                Ok(s) if ok(&s) => return s,
                Ok(s) => s.text,
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!("timed out after {DEADLINE:?} waiting for {what}\n--- last /metrics ---\n{last}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Scrapes until the sample `name{labels}` equals `value` exactly.
    pub fn wait_for(&self, name: &str, labels: &[(&str, &str)], value: f64) -> Scrape {
        let what = format!("{} == {value}", Scrape::key_text(name, labels));
        self.wait_until(&what, |s| s.get(name, labels) == Some(value))
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 15 s).
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let mut child = self.child.take().expect("cerflow is running");
        let status = stop(&mut child, Duration::from_secs(15));
        self.exit = Some(status);
        status
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait.
pub fn stop(child: &mut Child, grace: Duration) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().expect("waiting for cerflow after SIGKILL")
}

impl Drop for Cerflow {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- cerflow log ({}) ---\n{}",
                self.config_path.display(),
                self.logs()
            );
        }
    }
}

/// Labels of one sample, sorted by name.
pub type Labels = Vec<(String, String)>;

/// A parsed Prometheus text exposition: (name, sorted labels) -> value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<(String, Labels), f64>,
}

fn sorted(labels: &[(&str, &str)]) -> Labels {
    let mut v: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `{a="x",b="y"}` starting at `s[0] == '{'`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut chars = s.char_indices().skip(1).peekable();
    loop {
        // Skip separators.
        while let Some(&(_, c)) = chars.peek() {
            if c == ',' || c == ' ' {
                chars.next();
            } else {
                break;
            }
        }
        let Some(&(i, c)) = chars.peek() else {
            return Err("unterminated label set".into());
        };
        if c == '}' {
            labels.sort();
            return Ok((labels, &s[i + 1..]));
        }
        let mut name = String::new();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        match chars.next() {
            Some((_, '"')) => {}
            _ => return Err(format!("label {name} has no quoted value")),
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some((_, '"')) => break,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated value of label {name}")),
            }
        }
        labels.push((name.trim().to_string(), value));
    }
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("line {}: no value: {line}", n + 1));
            let name = line[..name_end].to_string();
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])
                    .unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1))
            } else {
                (Vec::new(), &line[name_end..])
            };
            let v = rest
                .split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("line {}: no value: {line}", n + 1));
            let v =
                parse_value(v).unwrap_or_else(|| panic!("line {}: bad value {v:?}: {line}", n + 1));
            if samples.insert((name, labels), v).is_some() {
                panic!("line {}: duplicate sample: {line}\n{text}", n + 1);
            }
        }
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    pub fn key_text(name: &str, labels: &[(&str, &str)]) -> String {
        let mut s = name.to_string();
        if !labels.is_empty() {
            s.push('{');
            for (i, (k, v)) in sorted(labels).iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{k}=\"{v}\"");
            }
            s.push('}');
        }
        s
    }

    /// The sample with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .get(&(name.to_string(), sorted(labels)))
            .copied()
    }

    /// The sample with exactly these labels; panics with the whole scrape if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {} in /metrics:\n{}",
                Scrape::key_text(name, labels),
                self.text
            )
        })
    }

    /// Asserts `name{labels} == want` exactly, showing the scrape when it is not.
    #[track_caller]
    pub fn assert(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let got = self.value(name, labels);
        assert!(
            got == want,
            "{} is {got}, expected {want}\n--- /metrics ---\n{}",
            Scrape::key_text(name, labels),
            self.text
        );
    }

    /// Asserts there is no sample `name{labels}`.
    #[track_caller]
    pub fn assert_absent(&self, name: &str, labels: &[(&str, &str)]) {
        if let Some(v) = self.get(name, labels) {
            panic!(
                "{} = {v} should not be exported\n--- /metrics ---\n{}",
                Scrape::key_text(name, labels),
                self.text
            );
        }
    }

    /// Every sample of `name` whose labels include all of `subset`.
    pub fn matching(&self, name: &str, subset: &[(&str, &str)]) -> Vec<(Labels, f64)> {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && subset
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }

    /// The sum of every sample of `name` whose labels include all of `subset`.
    pub fn sum(&self, name: &str, subset: &[(&str, &str)]) -> f64 {
        self.matching(name, subset).iter().map(|(_, v)| v).sum()
    }
}

// ---------------------------------------------------------------------------------
// Expected values computed the way cerflow's histogram bins latencies.
// ---------------------------------------------------------------------------------

/// The value cerflow reports for a latency of `us` microseconds: the middle of its
/// HDR bin (exact below 2048 us, then 1024 bins per power of two).
pub fn hdr_mid_us(us: u64) -> u64 {
    if us < 2048 {
        return us;
    }
    let shift = 63 - us.leading_zeros() - 10;
    let low = (us >> shift) << shift;
    let high = low + (1u64 << shift) - 1;
    low + (high - low).div_ceil(2)
}

/// The quantile `q` of `durations` as cerflow reports it, in seconds.
pub fn expected_quantile(durations: &[Duration], q: f64) -> f64 {
    let mut us: Vec<u64> = durations.iter().map(|d| d.as_micros() as u64).collect();
    us.sort_unstable();
    let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
    let v = hdr_mid_us(us[rank - 1]) as f64 / 1e6;
    let exact = us[rank - 1] as f64 / 1e6;
    assert!(
        (v - exact).abs() <= exact / 1024.0,
        "the bin middle stays within HDR precision"
    );
    v
}

// ---------------------------------------------------------------------------------
// Sending spans with the real OpenTelemetry SDK and OTLP exporters.
// ---------------------------------------------------------------------------------

/// One span to emit: its end is `ends_ago` before the moment it is emitted.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub name: &'static str,
    pub kind: SpanKind,
    pub duration: Duration,
    pub ends_ago: Duration,
    pub error: bool,
    pub attrs: Vec<KeyValue>,
    pub events: Vec<&'static str>,
    /// End before start: an invalid span.
    pub backwards: bool,
    /// End in the future by `ends_ago` instead of in the past.
    pub future: bool,
}

pub fn span(name: &'static str, kind: SpanKind, millis: u64) -> SpanSpec {
    SpanSpec {
        name,
        kind,
        duration: Duration::from_millis(millis),
        ends_ago: Duration::from_secs(2),
        error: false,
        attrs: Vec::new(),
        events: Vec::new(),
        backwards: false,
        future: false,
    }
}

pub fn server(name: &'static str, millis: u64) -> SpanSpec {
    span(name, SpanKind::Server, millis)
}

impl SpanSpec {
    pub fn attr(mut self, kv: KeyValue) -> SpanSpec {
        self.attrs.push(kv);
        self
    }
    pub fn tier(self, tier: &'static str) -> SpanSpec {
        self.attr(KeyValue::new("app.plan.tier", tier))
    }
    pub fn error(mut self) -> SpanSpec {
        self.error = true;
        self
    }
    pub fn event(mut self, name: &'static str) -> SpanSpec {
        self.events.push(name);
        self
    }
    pub fn ended_ago(mut self, d: Duration) -> SpanSpec {
        self.ends_ago = d;
        self
    }
    pub fn backwards(mut self) -> SpanSpec {
        self.backwards = true;
        self
    }
    pub fn ending_in(mut self, d: Duration) -> SpanSpec {
        self.ends_ago = d;
        self.future = true;
        self
    }
}

/// A resource with `service.name` and the given extra attributes.
pub fn resource(service: &'static str, attrs: &[(&'static str, &'static str)]) -> Resource {
    Resource::builder_empty()
        .with_service_name(service)
        .with_attributes(attrs.iter().map(|(k, v)| KeyValue::new(*k, *v)))
        .build()
}

/// A tracer provider exporting over OTLP/gRPC (tonic). The tonic channel needs a Tokio
/// runtime, so it is built inside `rt`; the SDK's batch thread drives the exports.
pub fn grpc_provider(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    res: Resource,
    gzip: bool,
) -> SdkTracerProvider {
    let endpoint = endpoint.to_string();
    rt.block_on(async move {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5));
        if gzip {
            b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        let exporter = b.build().expect("building the OTLP/gRPC span exporter");
        SdkTracerProvider::builder()
            .with_resource(res)
            .with_batch_exporter(exporter)
            .build()
    })
}

/// A tracer provider exporting over OTLP/HTTP (protobuf or JSON) with the blocking
/// reqwest client. Must not be called from inside a Tokio runtime.
pub fn http_provider(url: &str, res: Resource, protocol: Protocol) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_protocol(protocol)
        .with_timeout(Duration::from_secs(5))
        .build()
        .expect("building the OTLP/HTTP span exporter");
    SdkTracerProvider::builder()
        .with_resource(res)
        .with_batch_exporter(exporter)
        .build()
}

/// Emits every span with explicit start and end times, flushes and shuts the provider down.
pub fn send(provider: SdkTracerProvider, spans: &[SpanSpec]) {
    let tracer = provider.tracer("cerflow-integration-tests");
    let now = SystemTime::now();
    for s in spans {
        let end = if s.future {
            now + s.ends_ago
        } else {
            now - s.ends_ago
        };
        let start = if s.backwards {
            end + s.duration
        } else {
            end - s.duration
        };
        let mut span = tracer
            .span_builder(s.name)
            .with_kind(s.kind.clone())
            .with_start_time(start)
            .with_attributes(s.attrs.clone())
            .start(&tracer);
        for e in &s.events {
            span.add_event_with_timestamp(
                *e,
                start,
                vec![KeyValue::new("detail", "from the test")],
            );
        }
        if s.error {
            span.set_status(Status::error("failed on purpose"));
        } else {
            span.set_status(Status::Ok);
        }
        span.end_with_timestamp(end);
    }
    provider.force_flush().expect("flushing the span exporter");
    provider
        .shutdown()
        .expect("shutting the tracer provider down");
}

/// A Tokio runtime for the gRPC clients; tests stay synchronous around it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a Tokio runtime")
}

/// Runs `cerflow ARGS` to completion with a time limit; returns (status, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: &Path, timeout: Duration) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("CERFLOW_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let s = stop(&mut child, Duration::from_secs(5));
            panic!(
                "cerflow {args:?} did not exit within {timeout:?} (stopped: {s})\nstdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}
