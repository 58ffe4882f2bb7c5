//! `cerflow loadgen`: sends realistic OTLP spans to any OTLP endpoint (cerflow, rotel,
//! an OpenTelemetry Collector) over gRPC, HTTP/protobuf or HTTP/JSON, optionally gzip-compressed,
//! at a fixed rate or as fast as the endpoint takes them, with scenario phases that
//! degrade chosen journeys in chosen cohorts.
//!
//! Request bodies are built before the run: a pool of encoded requests per phase,
//! re-stamped (every span's start and end moved to "now", in place) and re-framed once
//! a second by a background thread. An uncompressed send copies its body and gives its
//! traces ids of their own (a memcpy and a write per trace), so no two requests share a
//! trace, as with a real SDK. A gzip body cannot be edited once compressed, so a gzip
//! send edits a copy of the stamped body and compresses it (fast level, ~1 ms of the
//! loadgen's CPU a 1000-span request): re-sending one compressed body would hand the
//! receiver the same spans, ids and all, hundreds of times a second, which no sender
//! does and which costs a trace-assembling receiver more than fresh traces would.
//! Progress goes to stderr once a second; the final summary to stdout and, with
//! `--summary-json`, to a file.

pub mod client;
pub mod payload;
pub mod scenario;

use crate::rng::Rng;
use arc_swap::ArcSwap;
use bytes::Bytes;
use client::{Client, Outcome, Protocol};
use hdrhistogram::Histogram;
use payload::{Behaviour, CohortSpec, JourneySpec, Template};
use scenario::{parse_duration, Phase, Scenario};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    Grpc,
    Http,
    HttpJson,
}

/// Send OTLP trace load to an endpoint and report what it accepted.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// OTLP endpoint, host:port or URL [default: 127.0.0.1:4317 for grpc, 127.0.0.1:4318 for http].
    #[arg(long)]
    pub endpoint: Option<String>,
    /// OTLP transport: grpc, http (protobuf POST to /v1/traces), or http-json (OTLP/JSON
    /// POST to /v1/traces: hex ids, integer enums, 64-bit integers as strings).
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: ProtocolArg,
    /// gzip-compress request bodies (each send compressed anew, with trace ids of its own).
    #[arg(long)]
    pub gzip: bool,
    /// Spans per second to send; 0 sends as fast as the endpoint answers.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// How long to send, e.g. 30s or 2m [default: 10s, or the scenario's length].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many spans (rounded up to whole requests).
    #[arg(long)]
    pub spans: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// gRPC connections (HTTP/2) the requests are spread over; HTTP uses one per request in flight.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Spans in each request.
    #[arg(long, default_value_t = 1000)]
    pub spans_per_request: usize,
    /// Distinct journeys (span names such as "POST /checkout", one service each).
    #[arg(long, default_value_t = 3)]
    pub journeys: usize,
    /// Distinct cohorts: combinations of cloud.region (resource) and app.plan.tier (span).
    #[arg(long, default_value_t = 6)]
    pub cohorts: usize,
    /// Calls each request makes (0-32) to dependencies (payments, inventory, postgresql,
    /// redis, ... 8 in all, in turn: 19 makes traces of 20 spans): CLIENT spans in the
    /// request's trace with peer.service; scenario faults with `dependency:` make the
    /// calls to one fail.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub dependencies: u8,
    /// Share of spans that fail (status ERROR, HTTP 5xx). The default, none, keeps a
    /// healthy phase within the default 99.9% availability objective: errors are drawn
    /// at random into a pool of a few thousand spans, so even 0.05% can put one error in
    /// a small cohort's share and burn its budget faster than 1.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Median span duration in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub latency_ms: f64,
    /// Spread of span durations: sigma of a log-normal. The default 0.25 puts p99 at
    /// 1.8 x the median (180 ms) and about 6 spans in a million over the printed
    /// config's 300 ms threshold, well inside the default 99% latency objective.
    #[arg(long, default_value_t = 0.25)]
    pub latency_spread: f64,
    /// Distinct users a minute: each span names one in `enduser.id` (`u` and 10 digits),
    /// drawn at random, once a second per span of the pool, from a fixed population of
    /// this many users split evenly among the cohorts (a user keeps one region and
    /// plan). 0, the default, names no user. Each second the pool's spans are given new
    /// draws, so a minute names about min(this, pool x spans per request x 60) users.
    #[arg(long, default_value_t = 0)]
    pub users: u64,
    /// Each span carries an order value in `app.order.value` (a double in EUR,
    /// log-normal with median 40); `--print-config` then gives each journey
    /// `value: { attribute: app.order.value, currency: EUR }`.
    #[arg(long)]
    pub order_value: bool,
    /// YAML file of phases with their own rate and faults (see `cerflow loadgen --help-scenario`).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Exit with status 1 when more requests than this were refused, failed or partly rejected.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Also write the final summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Time limit for each request.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Distinct pre-built request bodies per phase.
    #[arg(long, default_value_t = 8)]
    pub pool: usize,
    /// Seed for the generated spans (ids, journeys, cohorts, latencies, errors).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads of the sending runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// No progress lines, only the final summary.
    #[arg(long)]
    pub quiet: bool,
    /// Freshness probe: halfway through, send one span of a new cohort and poll this
    /// Prometheus URL until the cohort shows up; reports the delay.
    #[arg(long)]
    pub probe_metrics: Option<String>,
    /// Print a cerflow config whose journeys and cohorts match the generated spans, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Print the scenario file format, and exit.
    #[arg(long)]
    pub help_scenario: bool,
}

const SCENARIO_HELP: &str = r#"A scenario is a YAML file of phases, run one after the other:

phases:
  - name: healthy
    duration: 60s
  - name: checkout-eu-degraded
    duration: 30s
    rate: 20000              # spans/s for this phase (else --rate)
    error_rate: 0.01         # for every journey in this phase (else --error-rate)
    latency_ms: 100          # median (else --latency-ms)
    latency_spread: 0.25     # log-normal sigma (else --latency-spread)
    faults:                  # the first fault matching a journey x cohort applies
      - journey: checkout    # name or glob ("check*"); default "*"
        region: "eu-*"       # cloud.region glob; default "*"
        tier: "*"            # app.plan.tier glob; default "*"
        error_rate: 0.2
        latency_factor: 2    # every latency times 2: p50 and p99 double
        # latency_ms / latency_spread: set them instead of scaling
      - dependency: payments # with --dependencies: calls to payments fail at
        error_rate: 0.3      # error_rate and fail their request (blame moves there)
  - name: rollout
    duration: 60s
    version: 1.43.0          # service.version of the phase's spans (a deployment to
                             # cerflow); default the previous phase's, at first 1.42.0

Journeys are, in order: checkout, cart, login, search, product, payment, orders,
profile, recommendations, shipping, then journey-N. Regions are us-east-1, eu-west-1,
ap-southeast-1, us-west-2, eu-central-1, sa-east-1, ap-northeast-1, ca-central-1,
eu-north-1, af-south-1; tiers free, pro, team, business, enterprise.
"#;

/// A cerflow config matching what the generator sends; with `order_value`, each
/// journey reads the spans' order values. Users need nothing: `enduser.id` is one of
/// the default `users.keys`.
pub fn matching_config(journeys: &[JourneySpec], order_value: bool) -> String {
    let mut s = String::from(
        "# Generated by `cerflow loadgen --print-config`: one journey per generated span name.\n\
         version: loadgen\n\
         cohorts:\n  keys: [cloud.region, app.plan.tier]\n\
         journeys:\n",
    );
    for j in journeys {
        s.push_str(&format!(
            "  - name: {}\n    latency_threshold: 300ms\n    match: {{ span_name: \"{} {}\", kind: server }}\n",
            j.name, j.method, j.route
        ));
        if order_value {
            s.push_str("    value: { attribute: app.order.value, currency: EUR }\n");
        }
    }
    s
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    partial: AtomicU64,
    spans_sent: AtomicU64,
    spans_accepted: AtomicU64,
    spans_refused: AtomicU64,
    spans_failed: AtomicU64,
    bytes: AtomicU64,
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

struct Latency {
    interval: Histogram<u64>,
    total: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 us to 10 minutes, 3 significant digits; these bounds are valid.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

struct Shared {
    counters: Counters,
    latency: Mutex<Latency>,
    errors: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
    reserved: AtomicU64,
}

impl Shared {
    fn record(&self, spans: u64, wire: usize, took: Duration, outcome: Outcome) {
        let c = &self.counters;
        add(&c.requests, 1);
        add(&c.spans_sent, spans);
        add(&c.bytes, wire as u64);
        match outcome {
            Outcome::Ok { rejected } => {
                add(&c.ok, 1);
                let rejected = rejected.min(spans);
                add(&c.spans_accepted, spans - rejected);
                if rejected > 0 {
                    add(&c.partial, 1);
                    add(&c.spans_refused, rejected);
                    self.error("partial success: spans rejected".into());
                }
            }
            Outcome::Refused(msg) => {
                add(&c.refused, 1);
                add(&c.spans_refused, spans);
                self.error(msg);
            }
            Outcome::Failed(msg) => {
                add(&c.failed, 1);
                add(&c.spans_failed, spans);
                self.error(msg);
            }
        }
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.interval.saturating_record(us.max(1));
        l.total.saturating_record(us.max(1));
    }

    fn error(&self, msg: String) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let key = if e.len() < 20 || e.contains_key(&msg) {
            msg
        } else {
            "(other errors)".to_string()
        };
        *e.entry(key).or_default() += 1;
    }
}

/// Schedules sends for a target rate; catches up at most 50 ms of lag.
struct Pacer {
    next: Mutex<Instant>,
}

impl Pacer {
    fn slot(&self, interval: Duration) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let floor = now.checked_sub(Duration::from_millis(50)).unwrap_or(now);
        let t = (*next).max(floor);
        *next = t + interval;
        t
    }
}

struct Plan {
    phases: Vec<Phase>,
    /// Start of each phase, from the start of the run.
    starts: Vec<Duration>,
    /// When to stop; `None` when only `--spans` bounds the run.
    deadline: Option<Duration>,
}

impl Plan {
    fn phase_at(&self, t: Duration) -> usize {
        self.starts.iter().rposition(|s| *s <= t).unwrap_or(0)
    }
}

/// One stamping's bodies, in the order of their phase's templates.
#[derive(Default)]
struct Stamped {
    phase: usize,
    bodies: Vec<Bytes>,
    /// With gzip: the stamped bodies before compression, for each send to edit.
    plain: Vec<Vec<u8>>,
}

/// The bodies senders pick from, refreshed by the stamping thread.
struct Pools {
    templates: Vec<Vec<Template>>,
    current: ArcSwap<Stamped>,
    protocol: Protocol,
    gzip: bool,
    /// Whose spans these are, when spans name users; drawn anew at each stamping.
    users: Option<(payload::UserPool, Mutex<Rng>)>,
    /// Stampings so far: each gives the bodies' traces new ids.
    generation: AtomicU64,
}

impl Pools {
    fn stamp(&self, phase: usize) -> Arc<Stamped> {
        let now = crate::clock::now_unix_ns();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let list = self.templates.get(phase).map_or(&[][..], |t| &t[..]);
        let mut plain = Vec::new();
        let bodies: Vec<Bytes> = list
            .iter()
            .map(|t| {
                let mut body = t.body.clone();
                t.stamp(&mut body, now);
                t.renew_traces(&mut body, generation);
                if let Some((pool, rng)) = &self.users {
                    let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                    t.draw_users(&mut body, pool, &mut rng);
                }
                let framed = client::frame(self.protocol, self.gzip, &body);
                if self.gzip {
                    plain.push(body);
                }
                framed
            })
            .collect();
        Arc::new(Stamped {
            phase,
            bodies,
            plain,
        })
    }

    /// The `i`th body of `stamped` for send number `send`, with fresh trace ids (send
    /// numbers are unique in a run, and the template's random low bytes keep the bodies
    /// apart); a gzip body is compressed anew from its stamped copy.
    fn body_for(&self, stamped: &Stamped, i: usize, send: u64) -> Option<Bytes> {
        let body = stamped.bodies.get(i)?;
        let Some(t) = self.templates.get(stamped.phase).and_then(|l| l.get(i)) else {
            return Some(body.clone());
        };
        if self.gzip {
            let mut copy = stamped.plain.get(i)?.clone();
            t.renew_traces(&mut copy, send | 1 << 63);
            return Some(client::frame(self.protocol, true, &copy));
        }
        let mut copy = body.to_vec();
        let at = match self.protocol {
            Protocol::Grpc => GRPC_FRAME_HEADER,
            Protocol::Http | Protocol::HttpJson => 0,
        };
        // The stamping generations count from 0 too; the top bit keeps a send's ids
        // apart from every stamping's.
        t.renew_traces(copy.get_mut(at..)?, send | 1 << 63);
        Some(Bytes::from(copy))
    }
}

/// A gRPC message's prefix: the compressed flag and the length.
const GRPC_FRAME_HEADER: usize = 5;

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub endpoint: String,
    pub protocol: String,
    pub gzip: bool,
    pub spans_per_request: usize,
    pub concurrency: usize,
    pub target_rate: f64,
    pub journeys: usize,
    pub cohorts: usize,
    pub phases: Vec<String>,
    pub elapsed_s: f64,
    pub requests: u64,
    pub requests_ok: u64,
    pub requests_refused: u64,
    pub requests_failed: u64,
    pub requests_partially_rejected: u64,
    pub spans_sent: u64,
    pub spans_accepted: u64,
    pub spans_refused: u64,
    pub spans_failed: u64,
    pub spans_per_second: f64,
    pub bytes_sent: u64,
    pub body_bytes_per_span: f64,
    pub wire_bytes_per_span: f64,
    pub rpc_latency: LatencySummary,
    pub freshness_ms: Option<f64>,
    pub freshness_error: Option<String>,
    pub errors: BTreeMap<String, u64>,
    pub error_requests: u64,
    pub max_errors: u64,
    pub passed: bool,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `cerflow loadgen`; returns the process exit code.
pub fn run(args: Args) -> u8 {
    if args.help_scenario {
        print!("{SCENARIO_HELP}");
        return 0;
    }
    let journeys = payload::journeys(args.journeys);
    let cohorts = payload::cohorts(args.cohorts);
    if args.print_config {
        print!("{}", matching_config(&journeys, args.order_value));
        return 0;
    }
    match check(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    }
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the async runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(drive(args, plan, journeys, cohorts))
}

fn check(a: &Args) -> Result<(), String> {
    if a.concurrency == 0 || a.spans_per_request == 0 || a.pool == 0 {
        return Err("--concurrency, --spans-per-request and --pool must be at least 1".into());
    }
    if !(a.rate.is_finite() && a.rate >= 0.0) {
        return Err("--rate must be 0 (unlimited) or a positive number of spans per second".into());
    }
    if !(0.0..=1.0).contains(&a.error_rate) {
        return Err("--error-rate is a share between 0 and 1".into());
    }
    if !(a.latency_ms.is_finite()
        && a.latency_ms >= 0.0
        && a.latency_spread.is_finite()
        && a.latency_spread >= 0.0)
    {
        return Err("--latency-ms and --latency-spread must be non-negative".into());
    }
    if a.spans == Some(0) {
        return Err("--spans must be at least 1".into());
    }
    Ok(())
}

fn plan(a: &Args) -> Result<Plan, String> {
    let (phases, deadline) = match &a.scenario {
        Some(path) => {
            let s = Scenario::load(path)?;
            let total = s.total();
            (s.phases, Some(a.duration.map_or(total, |d| d.min(total))))
        }
        None => {
            let deadline = match (a.duration, a.spans) {
                (Some(d), _) => Some(d),
                (None, Some(_)) => None,
                (None, None) => Some(Duration::from_secs(10)),
            };
            (
                vec![Phase::plain("load", deadline.unwrap_or(Duration::MAX))],
                deadline,
            )
        }
    };
    let mut starts = Vec::with_capacity(phases.len());
    let mut t = Duration::ZERO;
    for p in &phases {
        starts.push(t);
        t = t.saturating_add(p.duration);
    }
    Ok(Plan {
        phases,
        starts,
        deadline,
    })
}

/// The template as the protocol sends it: OTLP/JSON for http-json.
fn json_if(protocol: Protocol, t: Template) -> Template {
    if protocol != Protocol::HttpJson {
        return t;
    }
    match t.to_json() {
        Ok(j) => j,
        // The templates are built here, so this is a bug, not bad input: say so and go on.
        Err(e) => {
            eprintln!("loadgen: cannot write the request as JSON ({e}); sending protobuf");
            t
        }
    }
}

fn build_pools(
    a: &Args,
    plan: &Plan,
    js: &[JourneySpec],
    cs: &[CohortSpec],
    spr: usize,
    protocol: Protocol,
) -> Pools {
    let base = Behaviour {
        error_rate: a.error_rate,
        latency_ms: a.latency_ms,
        spread: a.latency_spread,
        dependency_fault: None,
    };
    let mut rng = Rng::new(a.seed);
    let templates = plan
        .phases
        .iter()
        .map(|phase| {
            let table: Vec<Vec<Behaviour>> = js
                .iter()
                .map(|j| cs.iter().map(|c| phase.behaviour(base, j, c)).collect())
                .collect();
            let behave = |j: usize, c: usize| table[j][c];
            let shape = payload::Shape {
                dependencies: usize::from(a.dependencies),
                journeys: js,
                cohorts: cs,
                behaviour: &behave,
                users: a.users > 0,
                order_value: a.order_value,
                version: &phase.version,
            };
            (0..a.pool)
                .map(|_| json_if(protocol, payload::build(&shape, spr, &mut rng)))
                .collect()
        })
        .collect();
    Pools {
        templates,
        current: ArcSwap::from_pointee(Stamped::default()),
        protocol,
        gzip: a.gzip,
        users: (a.users > 0).then(|| {
            (
                payload::UserPool::new(a.users, cs.len()),
                Mutex::new(Rng::new(a.seed ^ 0x05e5_0001)),
            )
        }),
        generation: AtomicU64::new(0),
    }
}

async fn drive(args: Args, plan: Plan, journeys: Vec<JourneySpec>, cohorts: Vec<CohortSpec>) -> u8 {
    let protocol = match args.protocol {
        ProtocolArg::Grpc => Protocol::Grpc,
        ProtocolArg::Http => Protocol::Http,
        ProtocolArg::HttpJson => Protocol::HttpJson,
    };
    let endpoint = args.endpoint.clone().unwrap_or_else(|| {
        match protocol {
            Protocol::Grpc => "127.0.0.1:4317",
            Protocol::Http | Protocol::HttpJson => "127.0.0.1:4318",
        }
        .to_string()
    });
    let spr = match args.spans {
        Some(n) => args
            .spans_per_request
            .min(n.min(usize::MAX as u64) as usize),
        None => args.spans_per_request,
    };
    let budget = args.spans.map(|n| n.div_ceil(spr as u64));
    let pools = Arc::new(build_pools(
        &args, &plan, &journeys, &cohorts, spr, protocol,
    ));
    let body_bytes_per_span = pools
        .templates
        .first()
        .and_then(|t| t.first())
        .map_or(0.0, |t| t.body.len() as f64 / t.spans.max(1) as f64);
    pools.current.store(pools.stamp(0));

    let client = match Client::connect(
        protocol,
        &endpoint,
        args.gzip,
        args.connections,
        args.timeout,
    )
    .await
    {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        latency: Mutex::new(Latency {
            interval: histogram(),
            total: histogram(),
        }),
        errors: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
        reserved: AtomicU64::new(0),
    });
    let start = Instant::now();

    // Re-stamps the current phase's bodies once a second and at each phase change.
    let stamper = {
        let pools = pools.clone();
        let plan = plan.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("loadgen-stamp".into())
            .spawn(move || {
                let mut last = Instant::now();
                let mut phase = 0;
                while !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    let t = start.elapsed();
                    let p = plan.phase_at(t);
                    if p != phase || last.elapsed() >= Duration::from_secs(1) {
                        pools.current.store(pools.stamp(p));
                        phase = p;
                        last = Instant::now();
                    }
                }
            })
    };
    let stamper = match stamper {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("loadgen: cannot start the stamping thread ({e}); bodies keep their first timestamps");
            None
        }
    };

    let pacer = Arc::new(Pacer {
        next: Mutex::new(Instant::now()),
    });
    let mut senders = Vec::new();
    for i in 0..args.concurrency {
        let client = client.clone();
        let shared = shared.clone();
        let plan = plan.clone();
        let pools = pools.clone();
        let pacer = pacer.clone();
        let base_rate = args.rate;
        let timeout = args.timeout;
        let lane = i % args.connections.max(1);
        senders.push(tokio::spawn(async move {
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = start.elapsed();
                if plan.deadline.is_some_and(|d| t >= d) {
                    break;
                }
                let k = shared.reserved.fetch_add(1, Ordering::Relaxed);
                if budget.is_some_and(|b| k >= b) {
                    break;
                }
                let phase = plan.phases.get(plan.phase_at(t));
                let rate = phase.and_then(|p| p.rate).unwrap_or(base_rate);
                if rate > 0.0 {
                    let at = pacer.slot(Duration::from_secs_f64(spr as f64 / rate));
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    if plan.deadline.is_some_and(|d| start.elapsed() >= d)
                        || shared.stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                }
                let stamped = pools.current.load();
                let i = k as usize % stamped.bodies.len().max(1);
                let Some(body) = pools.body_for(&stamped, i, k) else {
                    break;
                };
                let wire = body.len();
                let t0 = Instant::now();
                let outcome = client.send(body, lane, timeout).await;
                shared.record(spr as u64, wire, t0.elapsed(), outcome);
            }
        }));
    }

    let probe = args.probe_metrics.clone().map(|url| {
        let client = client.clone();
        let plan = plan.clone();
        let journey = journeys.first().cloned();
        let timeout = args.timeout;
        let seed = args.seed;
        tokio::spawn(async move {
            let wait = plan.deadline.map_or(Duration::from_secs(1), |d| d / 2);
            tokio::time::sleep(wait).await;
            let journey = journey.ok_or_else(|| "no journey".to_string())?;
            // The phase's own version: another would be a deployment to cerflow.
            let version = plan
                .phases
                .get(plan.phase_at(wait))
                .map_or(payload::DEFAULT_VERSION, |p| p.version.as_str());
            freshness(&client, &url, &journey, version, seed, protocol, timeout).await
        })
    });

    let progress = (!args.quiet).then(|| {
        let shared = shared.clone();
        let plan = plan.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut prev = (0u64, 0u64, 0u64, 0u64);
            loop {
                tick.tick().await;
                let c = &shared.counters;
                let now = (get(&c.spans_sent), get(&c.spans_accepted), get(&c.spans_refused), get(&c.spans_failed));
                let (p50, p99) = {
                    let mut l = shared.latency.lock().unwrap_or_else(|e| e.into_inner());
                    let r = (ms(&l.interval, 0.5), ms(&l.interval, 0.99));
                    l.interval.reset();
                    r
                };
                let t = start.elapsed();
                let phase = plan.phases.get(plan.phase_at(t)).map_or("", |p| p.name.as_str());
                eprintln!(
                    "[{:>5.0}s] sent {:>9} spans/s | accepted {:>9} | refused {:>7} | failed {:>7} | rpc p50 {:>7.2} ms p99 {:>7.2} ms | {}",
                    t.as_secs_f64(),
                    now.0 - prev.0,
                    now.1 - prev.1,
                    now.2 - prev.2,
                    now.3 - prev.3,
                    p50,
                    p99,
                    phase
                );
                prev = now;
            }
        })
    });

    let interrupted = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("loadgen: interrupted; finishing the requests in flight.");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    for s in senders {
        let _ = s.await;
    }
    let elapsed = start.elapsed();
    let (freshness_ms, freshness_error) = match probe {
        Some(p) => match p.await {
            Ok(Ok(ms)) => (Some(ms), None),
            Ok(Err(e)) => (None, Some(e)),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    shared.stop.store(true, Ordering::Relaxed);
    interrupted.abort();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(h) = stamper {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }

    let c = &shared.counters;
    let lat = shared.latency.lock().unwrap_or_else(|e| e.into_inner());
    let error_requests = get(&c.refused) + get(&c.failed) + get(&c.partial);
    let spans_sent = get(&c.spans_sent);
    let summary = Summary {
        endpoint: client::normalize(&endpoint),
        protocol: match protocol {
            Protocol::Grpc => "grpc".into(),
            Protocol::Http => "http".into(),
            Protocol::HttpJson => "http-json".into(),
        },
        gzip: args.gzip,
        spans_per_request: spr,
        concurrency: args.concurrency,
        target_rate: args.rate,
        journeys: journeys.len(),
        cohorts: cohorts.len(),
        phases: plan
            .phases
            .iter()
            .map(|p| format!("{} ({:?})", p.name, p.duration))
            .collect(),
        elapsed_s: elapsed.as_secs_f64(),
        requests: get(&c.requests),
        requests_ok: get(&c.ok),
        requests_refused: get(&c.refused),
        requests_failed: get(&c.failed),
        requests_partially_rejected: get(&c.partial),
        spans_sent,
        spans_accepted: get(&c.spans_accepted),
        spans_refused: get(&c.spans_refused),
        spans_failed: get(&c.spans_failed),
        spans_per_second: spans_sent as f64 / elapsed.as_secs_f64().max(1e-9),
        bytes_sent: get(&c.bytes),
        body_bytes_per_span,
        wire_bytes_per_span: get(&c.bytes) as f64 / spans_sent.max(1) as f64,
        rpc_latency: LatencySummary {
            p50_ms: ms(&lat.total, 0.5),
            p90_ms: ms(&lat.total, 0.9),
            p99_ms: ms(&lat.total, 0.99),
            max_ms: if lat.total.is_empty() {
                0.0
            } else {
                lat.total.max() as f64 / 1000.0
            },
            mean_ms: lat.total.mean() / 1000.0,
        },
        freshness_ms,
        freshness_error,
        errors: shared
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        error_requests,
        max_errors: args.max_errors,
        passed: error_requests <= args.max_errors,
    };
    print_summary(&summary);
    if let Some(path) = &args.summary_json {
        match serde_json::to_string_pretty(&summary) {
            Ok(j) => {
                if let Err(e) = std::fs::write(path, j + "\n") {
                    eprintln!("loadgen: cannot write {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("loadgen: cannot encode the summary: {e}"),
        }
    }
    if summary.passed {
        0
    } else {
        eprintln!(
            "loadgen: {} requests were refused, failed or partly rejected (--max-errors {}).",
            error_requests, args.max_errors
        );
        1
    }
}

fn print_summary(s: &Summary) {
    println!(
        "loadgen: {} spans in {:.1} s to {} ({}{}), {} spans per request, {} in flight",
        s.spans_sent,
        s.elapsed_s,
        s.endpoint,
        s.protocol,
        if s.gzip { ", gzip" } else { "" },
        s.spans_per_request,
        s.concurrency
    );
    println!(
        "  requests  {} sent: {} ok, {} refused, {} failed, {} partly rejected",
        s.requests,
        s.requests_ok,
        s.requests_refused,
        s.requests_failed,
        s.requests_partially_rejected
    );
    println!(
        "  spans     {} sent ({:.0}/s): {} accepted, {} refused, {} failed",
        s.spans_sent, s.spans_per_second, s.spans_accepted, s.spans_refused, s.spans_failed
    );
    println!(
        "  bytes     {} on the wire ({:.0} per span; {:.0} per span uncompressed)",
        s.bytes_sent, s.wire_bytes_per_span, s.body_bytes_per_span
    );
    let l = &s.rpc_latency;
    println!(
        "  rpc       p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    if let Some(f) = s.freshness_ms {
        println!(
            "  freshness {f:.0} ms from sending a span of a new cohort to seeing it on /metrics"
        );
    }
    if let Some(e) = &s.freshness_error {
        println!("  freshness probe failed: {e}");
    }
    for (msg, n) in &s.errors {
        println!("  error     {n} x {msg}");
    }
}

/// Sends one span of a cohort never seen before and polls `url` until it shows up.
async fn freshness(
    client: &Client,
    url: &str,
    journey: &JourneySpec,
    version: &str,
    seed: u64,
    protocol: Protocol,
    timeout: Duration,
) -> Result<f64, String> {
    let mut rng = Rng::new(seed ^ crate::clock::now_unix_ns());
    let region = format!("probe-{:012x}", rng.next_u64() >> 16);
    let t = json_if(
        protocol,
        payload::probe(journey, &region, "probe", version, &mut rng),
    );
    let uri: http::Uri = client::normalize(url)
        .parse()
        .map_err(|e| format!("invalid --probe-metrics URL: {e}"))?;
    let http = client::http_client();
    let mut body = t.body.clone();
    t.stamp(&mut body, crate::clock::now_unix_ns());
    let gzip = matches!(
        client,
        Client::Grpc { gzip: true, .. } | Client::Http { gzip: true, .. }
    );
    let framed = client::frame(protocol, gzip, &body);
    let t0 = Instant::now();
    match client.send(framed, 0, timeout).await {
        Outcome::Ok { rejected: 0 } => {}
        other => return Err(format!("the probe span was not accepted: {other:?}")),
    }
    let limit = Duration::from_secs(15);
    while t0.elapsed() < limit {
        if let Ok(text) = client::get_text(&http, &uri, Duration::from_secs(2)).await {
            if text.contains(&region) {
                return Ok(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "cohort {region} did not show up on {url} within {limit:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_config_is_valid_and_matches_the_spans() {
        let js = payload::journeys(3);
        let text = matching_config(&js, false);
        let cfg =
            crate::config::Config::parse(&text, "loadgen.yaml", &|_| None).expect("a valid config");
        assert_eq!(cfg.journeys.len(), 3);
        assert!(cfg.journeys.iter().all(|j| j.value.is_none()));
        let valued = matching_config(&js, true);
        let cfg = crate::config::Config::parse(&valued, "loadgen.yaml", &|_| None)
            .expect("a valid config with values");
        assert_eq!(cfg.journeys.len(), 3);
        assert!(cfg.journeys.iter().all(|j| j.value.is_some()));
        assert_eq!(
            cfg.cohorts.keys,
            vec!["cloud.region".to_string(), "app.plan.tier".to_string()]
        );
    }

    #[test]
    fn phases_follow_each_other() {
        let p = Plan {
            phases: vec![
                Phase::plain("a", Duration::from_secs(2)),
                Phase::plain("b", Duration::from_secs(3)),
            ],
            starts: vec![Duration::ZERO, Duration::from_secs(2)],
            deadline: Some(Duration::from_secs(5)),
        };
        assert_eq!(p.phase_at(Duration::from_millis(1999)), 0);
        assert_eq!(p.phase_at(Duration::from_secs(2)), 1);
        assert_eq!(p.phase_at(Duration::from_secs(9)), 1);
    }

    /// The `service.version` of every resource in every body of each phase's pool.
    fn versions_per_phase(scenario: &str) -> Vec<Vec<String>> {
        use crate::span::{AttrValue, SpanView};
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let a = <Cli as clap::Parser>::parse_from(["loadgen", "--pool", "3"]).a;
        let phases = Scenario::parse(scenario).expect("a valid scenario").phases;
        let plan = Plan {
            starts: vec![Duration::ZERO; phases.len()],
            phases,
            deadline: None,
        };
        let (js, cs) = (payload::journeys(3), payload::cohorts(6));
        let pools = build_pools(&a, &plan, &js, &cs, 100, Protocol::Grpc);
        pools
            .templates
            .iter()
            .map(|bodies| {
                let mut seen = Vec::new();
                for t in bodies {
                    let req = crate::decode::lazy::decode_traces(&t.body).expect("a valid body");
                    for s in req.spans() {
                        match s.resource_attr("service.version") {
                            Some(AttrValue::Str(v)) => seen.push(v.to_string()),
                            other => panic!("service.version is {other:?}"),
                        }
                    }
                }
                seen.sort();
                seen.dedup();
                seen
            })
            .collect()
    }

    #[test]
    fn each_phase_sends_its_version() {
        // Phase 1 names none (the default), 2 a new one, 3 none (keeps 2's), 4 rolls back.
        let got = versions_per_phase(
            "phases:\n\
             \x20 - duration: 1s\n\
             \x20 - duration: 1s\n    version: 1.43.0\n\
             \x20 - duration: 1s\n\
             \x20 - duration: 1s\n    version: \"1.42.0\"\n",
        );
        let one = |v: &str| vec![v.to_string()];
        assert_eq!(
            got,
            vec![one("1.42.0"), one("1.43.0"), one("1.43.0"), one("1.42.0")]
        );
    }

    /// The trace ids of a gRPC-framed body, in span order.
    /// The trace ids of a gRPC-framed body, inflated first when its flag says gzip.
    fn trace_ids(framed: &[u8]) -> Vec<Vec<u8>> {
        let mut body = framed[GRPC_FRAME_HEADER..].to_vec();
        if framed[0] == 1 {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
                .expect("a gzip body");
            body = plain;
        }
        let req = crate::decode::lazy::decode_traces(&body).expect("a valid body");
        req.spans().map(|s| s.trace_id().to_vec()).collect()
    }

    #[test]
    fn every_uncompressed_send_has_traces_of_its_own() {
        every_send_has_traces_of_its_own(&[]);
    }

    #[test]
    fn every_gzip_send_has_traces_of_its_own() {
        every_send_has_traces_of_its_own(&["--gzip"]);
    }

    fn every_send_has_traces_of_its_own(extra: &[&str]) {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let argv = ["loadgen", "--pool", "2"].iter().chain(extra);
        let a = <Cli as clap::Parser>::parse_from(argv).a;
        let plan = Plan {
            starts: vec![Duration::ZERO],
            phases: vec![Phase::plain("a", Duration::from_secs(1))],
            deadline: None,
        };
        let (js, cs) = (payload::journeys(3), payload::cohorts(6));
        let pools = build_pools(&a, &plan, &js, &cs, 100, Protocol::Grpc);
        let stamped = pools.stamp(0);
        let as_stamped = trace_ids(&stamped.bodies[0]);
        let first = trace_ids(&pools.body_for(&stamped, 0, 7).expect("a body"));
        let again = trace_ids(&pools.body_for(&stamped, 0, 8).expect("a body"));
        // The same 100 spans in the same traces, each send under ids of its own.
        let traces = |ids: &[Vec<u8>]| ids.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert_eq!(first.len(), 100);
        assert_eq!(traces(&first), traces(&as_stamped));
        assert_eq!(traces(&again), traces(&as_stamped));
        assert!(first
            .iter()
            .all(|id| !again.contains(id) && !as_stamped.contains(id)));
        // Only the first 8 bytes change: the template's random low half stays.
        for (x, y) in first.iter().zip(&again) {
            assert_eq!(x[..8], (7u64 | 1 << 63).to_be_bytes());
            assert_eq!(y[..8], (8u64 | 1 << 63).to_be_bytes());
            assert_eq!(x[8..], y[8..]);
        }
    }
}
