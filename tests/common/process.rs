//! The real `cerflow` binary: started on free loopback ports with a temporary config,
//! asked for readiness, scraped, stopped (SIGTERM, then SIGKILL) even when a test
//! fails; and one-shot CLI commands run with a time limit.

use super::scrape::Scrape;
use cerflow::proto::score_service_client::ScoreServiceClient;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// An SLO checkpoint file in a temp folder of its own, which outlives the runs of a
/// restart test (each cerflow has its own working folder) and goes when this is dropped.
pub struct Checkpoint {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Checkpoint {
    pub fn new() -> Checkpoint {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let path = dir.path().join("slo.ckpt");
        Checkpoint { _dir: dir, path }
    }

    /// The `checkpoint:` block of `slo:` (indented by 2), saving here every second.
    pub fn slo_yaml(&self) -> String {
        format!(
            "  checkpoint:\n    path: {}\n    interval: 1s\n",
            self.path.display()
        )
    }

    /// A file cerflow writes beside the checkpoint (`slo.incidents`, `slo.attempts`).
    pub fn beside(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint::new()
    }
}

/// Calls `check` every `every` until it gives `Ok`, for at most `limit`; the panic names
/// `what` and the last `Err` (what was seen instead). The tests' one wait loop, so
/// every wait is bounded and says what it waited for.
#[track_caller]
pub fn poll<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {limit:?} waiting for {what}\n{last}")
            }
            Err(_) => std::thread::sleep(every),
        }
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

    /// cerflow on fresh listeners (OTLP gRPC and HTTP in, Prometheus out) followed by
    /// `config` (pipeline, windows, journeys, ...): the start most tests share.
    pub fn start_with(config: &str) -> Cerflow {
        Cerflow::start(|p| format!("{}{config}", p.listeners_yaml("")))
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

    /// `http://127.0.0.1:PORT{path}` on the metrics port (metrics, score API, web view).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.prom)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// `cerflow gate --endpoint <this cerflow> ARGS`, run in its directory with a 30 s
    /// limit: (exit code, -1 when killed; stdout and stderr together).
    pub fn gate(&self, args: &[&str]) -> (i32, String) {
        let endpoint = self.admin_url("");
        let mut all = vec!["gate", "--endpoint", endpoint.as_str()];
        all.extend_from_slice(args);
        let (status, out, err) = run_cli(&all, self.dir.path(), Duration::from_secs(30));
        (status.code().unwrap_or(-1), format!("{out}{err}"))
    }

    /// One call to the gRPC score API on a fresh connection; `what` names it in a panic.
    fn score_api<R, F>(
        &self,
        what: &str,
        call: impl FnOnce(ScoreServiceClient<tonic::transport::Channel>) -> F,
    ) -> R
    where
        F: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let endpoint = self.grpc_endpoint();
        runtime().block_on(async move {
            let client = ScoreServiceClient::connect(endpoint)
                .await
                .expect("connecting to the score API");
            call(client)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .into_inner()
        })
    }

    /// The gRPC score API's `GetScores` for `journeys` over `window`.
    pub fn grpc_scores(&self, journeys: &[&str], window: &str) -> cerflow::proto::ScoreSnapshot {
        let req = cerflow::proto::GetScoresRequest {
            journeys: journeys.iter().map(|j| j.to_string()).collect(),
            window: window.into(),
            ..Default::default()
        };
        self.score_api("GetScores", |mut c| async move { c.get_scores(req).await })
    }

    /// The gRPC score API's `GetScores` for any request (scope, cohort, ...), with the
    /// status it refused it with, if it did.
    pub fn try_grpc_scores(
        &self,
        req: cerflow::proto::GetScoresRequest,
    ) -> Result<cerflow::proto::ScoreSnapshot, tonic::Status> {
        let endpoint = self.grpc_endpoint();
        runtime().block_on(async move {
            let mut client = ScoreServiceClient::connect(endpoint)
                .await
                .expect("connecting to the score API");
            client
                .get_scores(req)
                .await
                .map(tonic::Response::into_inner)
        })
    }

    /// The gRPC score API's `GetIncidents` for `journeys`.
    pub fn grpc_incidents(&self, journeys: &[&str]) -> cerflow::proto::IncidentList {
        let req = cerflow::proto::GetIncidentsRequest {
            journeys: journeys.iter().map(|j| j.to_string()).collect(),
        };
        self.score_api(
            "GetIncidents",
            |mut c| async move { c.get_incidents(req).await },
        )
    }

    /// POSTs a trace body to `/v1/traces` with `content_type` (`application/x-protobuf`
    /// or `application/json`); returns the HTTP status.
    pub fn post_traces(&self, body: Vec<u8>, content_type: &str) -> u16 {
        let url = self.http_url("/v1/traces");
        self.http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
            .status()
            .as_u16()
    }

    /// POSTs a metrics request as OTLP/HTTP protobuf (answered 200); returns the partial
    /// success it was answered with: rejected data points and the message.
    pub fn post_metrics(
        &self,
        req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    ) -> (i64, String) {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
        use prost::Message;
        let url = self.http_url("/v1/metrics");
        let r = self
            .http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(r.status(), 200);
        let body = r.bytes().expect("a response body");
        let resp = ExportMetricsServiceResponse::decode(&body[..]).expect("an OTLP response");
        resp.partial_success.map_or((0, String::new()), |p| {
            (p.rejected_data_points, p.error_message)
        })
    }

    /// GET of a JSON document on the metrics port (`/api/v1/scores`).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}{path}", self.ports.prom);
        let text = self
            .http
            .get(&url)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
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
        self.wait_until_within(what, DEADLINE, ok)
    }

    /// [`Cerflow::wait_until`] for at most `limit` (a Kafka group rejoining takes longer).
    pub fn wait_until_within(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        poll(what, limit, Duration::from_millis(50), || {
            match self.try_scrape() {
                Ok(s) if ok(&s) => Ok(s),
                Ok(s) => Err(format!("--- last /metrics ---\n{}", s.text)),
                Err(e) => Err(format!("--- last /metrics ---\n{e}")),
            }
        })
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

    /// SIGKILL: no shutdown, no flush, no commit (a crash); waits for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let mut child = self.child.take().expect("cerflow is running");
        let _ = child.kill();
        let status = child.wait().expect("waiting for cerflow after SIGKILL");
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
