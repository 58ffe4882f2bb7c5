//! The span path, stage by stage, in spans per second (`Throughput::Elements`):
//!
//! - `decode/{lazy,prost}/N`: an `ExportTraceServiceRequest` of N realistic spans
//!   (~430 bytes: ten semantic-convention attributes, seven resource attributes), read
//!   in place by the lazy decoder vs decoded into prost structs.
//! - `decode-json/{lazy,full}/N`: the same requests as OTLP/JSON (~1,020 bytes per span:
//!   hex ids, integer enums, 64-bit integers as strings, as `loadgen --protocol
//!   http-json` sends them), read in place by the lazy JSON decoder vs decoded by serde
//!   into prost structs (the decoder ingest used before, kept as the reference).
//! - `match/1000`: journey classification of each span (3 journeys, 2 cohort keys).
//! - `batch/1000`: classification plus the per-worker batch (cohort values, hash).
//! - `record/1000`: recording classified spans into window state (3 windows x 12 sub-buckets);
//!   `record/users+value/1000` the same spans naming one of 10,000 users and carrying a value.
//! - `ingest/N`: a whole request through `Ingest::traces_body` with a running pipeline,
//!   until the workers have recorded every span; `ingest/json-N` the same as OTLP/JSON.
//! - `ingest-traces/{on,off}/900`: requests of 100 traces of 9 spans (a SERVER span and 8
//!   CLIENT calls, `loadgen --dependencies 8`) with trace assembly on and off
//!   (`traces.enabled`): what assembly, attribution and dependency series cost per span.
//!   The same trace ids come back every iteration, so traces grow until
//!   `traces.max_spans_per_trace` and complete early, as under the loadgen.
//!
//! Times are CPU time of the whole process (all threads, `CLOCK_PROCESS_CPUTIME_ID`),
//! not wall time: on a shared, noisy machine CPU time per span is the figure that holds.
//! Set `CERFLOW_BENCH_CLOCK=wall` for wall time.
//!
//! Run: `cargo bench --bench span_path` (add `-- decode-json` to run one group).

use cerflow::clock::now_unix_ns;
use cerflow::config::Config;
use cerflow::decode::{json, lazy, Format};
use cerflow::ingest::Ingest;
use cerflow::journey::Journeys;
use cerflow::loadgen::payload::{self, Behaviour, Shape};
use cerflow::pipeline::{BatchBuilder, Pipeline};
use cerflow::rng::Rng;
use cerflow::span::SpanView;
use cerflow::span_record::{flag, Record};
use cerflow::telemetry::{Telemetry, Transport};
use cerflow::window::SeriesState;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request of `n` realistic spans ending now (3 journeys, 6 cohorts, 1% errors).
fn request(n: usize, journeys: usize, cohorts: usize) -> Vec<u8> {
    stamped(template(n, journeys, cohorts))
}

/// [`request`] as OTLP/JSON.
fn json_request(n: usize) -> Vec<u8> {
    stamped(template(n, 3, 6).to_json().expect("the template converts"))
}

fn stamped(t: payload::Template) -> Vec<u8> {
    let mut body = t.body.clone();
    t.stamp(&mut body, now_unix_ns());
    body
}

fn template(n: usize, journeys: usize, cohorts: usize) -> payload::Template {
    let js = payload::journeys(journeys);
    let cs = payload::cohorts(cohorts);
    let behave = |_: usize, _: usize| Behaviour {
        error_rate: 0.01,
        latency_ms: 120.0,
        spread: 0.5,
        dependency_fault: None,
    };
    payload::build(
        &Shape {
            journeys: &js,
            cohorts: &cs,
            behaviour: &behave,
            users: false,
            order_value: false,
            version: payload::DEFAULT_VERSION,
            dependencies: 0,
        },
        n,
        &mut Rng::new(42),
    )
}

fn config(journeys: usize) -> Config {
    let text = cerflow::loadgen::matching_config(&payload::journeys(journeys), false);
    Config::parse(&text, "bench.yaml", &|_| None).expect("the loadgen config is valid")
}

fn decode(c: &mut C) {
    let mut g = c.benchmark_group("decode");
    for n in [1usize, 100, 1000, 8192] {
        let body = request(n, 3, 6);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("lazy", n), &body, |b, body| {
            b.iter(|| {
                let req = lazy::decode_traces(black_box(body)).expect("valid");
                black_box(req.span_count())
            })
        });
        g.bench_with_input(BenchmarkId::new("prost", n), &body, |b, body| {
            b.iter(|| {
                let req = ExportTraceServiceRequest::decode(black_box(&body[..])).expect("valid");
                black_box(req.resource_spans.len())
            })
        });
    }
    g.finish();
}

fn decode_json(c: &mut C) {
    let mut g = c.benchmark_group("decode-json");
    for n in [100usize, 1000] {
        let body = json_request(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("lazy", n), &body, |b, body| {
            b.iter(|| {
                let arena = json::Bump::new();
                let req = json::decode_traces(black_box(body), &arena).expect("valid");
                black_box(req.span_count())
            })
        });
        g.bench_with_input(BenchmarkId::new("full", n), &body, |b, body| {
            b.iter(|| {
                let req = cerflow::decode::traces(black_box(body), Format::Json).expect("valid");
                black_box(req.resource_spans.len())
            })
        });
    }
    g.finish();
}

fn classify(c: &mut C) {
    let cfg = config(3);
    let journeys = Journeys::new(&cfg);
    let body = request(1000, 3, 6);
    let req = lazy::decode_traces(&body).expect("valid");
    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000", |b| {
        b.iter(|| {
            let mut matched = 0u32;
            for s in req.spans() {
                if let Some(c) = journeys.classify(&s) {
                    matched += u32::from(c.flags) + 1;
                }
            }
            black_box(matched)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::new(cfg.pipeline.workers);
            for s in req.spans() {
                if let Some(c) = journeys.classify(&s) {
                    builder.push(
                        &s,
                        &c,
                        journeys.missing_value(),
                        journeys.version_key(),
                        s.end_ns(),
                        cerflow::sampling::UNIT,
                    );
                }
            }
            black_box(builder.span_count())
        })
    });
    g.finish();
}

fn record(c: &mut C) {
    let cfg = config(3);
    let window_ns: Vec<u64> = cfg.windows_ns();
    let bounds_ns: Vec<u64> = cfg.bounds_ns();
    let now = now_unix_ns();
    // 18 series (3 journeys x 6 cohorts); spans spread over them as the loadgen does.
    let mut series: Vec<SeriesState> = (0..18)
        .map(|_| SeriesState::new(&window_ns, cfg.windows.sub_buckets, bounds_ns.len(), now))
        .collect();
    let mut rng = Rng::new(3);
    // Each span also names one of 10,000 users and carries a value, for the
    // `users+value` case; the plain case records the same spans without them.
    let spans: Vec<(usize, Record)> = (0..1000)
        .map(|_| {
            let dur = (120e6 * (0.5 * rng.normal()).exp()) as u64;
            let r = Record {
                hash: 0,
                has_version: false,
                journey: 0,
                first_value: 0,
                n_values: 0,
                flags: u8::from(rng.chance(0.01)) | flag::ENTRY,
                end_ns: now - rng.below(50_000_000) as u64,
                duration_ns: dur,
                user: (rng.below(10_000) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                value: 12.5,
                // Every span has ids, so the exemplars' cost is in the figure.
                trace_id: (u128::from(dur) + 1).to_be_bytes(),
                span_id: (dur + 1).to_be_bytes(),
                event: 0,
                weight: cerflow::sampling::UNIT,
            };
            (rng.below(18), r)
        })
        .collect();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000", |b| {
        b.iter(|| {
            for (i, r) in &spans {
                series[*i].record(r, &bounds_ns, now);
            }
        })
    });
    g.bench_function("users+value/1000", |b| {
        b.iter(|| {
            for (i, r) in &spans {
                let r = Record {
                    flags: r.flags | flag::USER | flag::VALUE,
                    ..*r
                };
                series[*i].record(&r, &bounds_ns, now);
            }
        })
    });
    g.finish();
}

fn ingest(c: &mut C) {
    let cfg = config(3);
    let tel = Arc::new(Telemetry::default());
    let journeys = Arc::new(Journeys::new(&cfg));
    let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
    let ingest = Ingest::new(&cfg, journeys, pipeline.input(), tel.clone());
    let clock = Clock { wall: wall_clock() };
    let mut g = c.benchmark_group("ingest");
    let cases = [100usize, 1000, 8192]
        .map(|n| (n.to_string(), n, request(n, 3, 6), Format::Protobuf))
        .into_iter()
        .chain([(
            "json-1000".to_string(),
            1000,
            json_request(1000),
            Format::Json,
        )]);
    for (id, n, body, format) in cases {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(id), &body, |b, body| {
            b.iter_custom(|iters| {
                let start = clock.start();
                let target = tel.processed_spans.load(Ordering::Relaxed) + iters * n as u64;
                for _ in 0..iters {
                    // A full queue is refused, as in production; wait and retry so
                    // every span is measured all the way to the window state.
                    while ingest
                        .traces_body(black_box(body), format, Transport::Grpc)
                        .is_err()
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                // Sleep, not spin: the wait must not count as CPU time.
                while tel.processed_spans.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_micros(200));
                }
                clock.end(start)
            })
        });
    }
    g.finish();
    drop(ingest);
    let _ = pipeline.shutdown(Duration::from_secs(5));
}

/// Process CPU time (all threads), or wall time with `CERFLOW_BENCH_CLOCK=wall`.
pub struct Clock {
    wall: bool,
}

fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for Clock {
    type Intermediate = (Instant, Duration);
    type Value = Duration;
    fn start(&self) -> (Instant, Duration) {
        (Instant::now(), cpu_now())
    }
    fn end(&self, (wall, cpu): (Instant, Duration)) -> Duration {
        if self.wall {
            wall.elapsed()
        } else {
            cpu_now().saturating_sub(cpu)
        }
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        const WALL: &WallTime = &WallTime;
        WALL.formatter()
    }
}

type C = Criterion<Clock>;

fn wall_clock() -> bool {
    std::env::var("CERFLOW_BENCH_CLOCK").is_ok_and(|v| v == "wall")
}

fn settings() -> C {
    Criterion::default()
        .with_measurement(Clock { wall: wall_clock() })
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// [`ingest`] with traces of 9 spans, assembly on and off.
fn ingest_traces(c: &mut C) {
    let js = payload::journeys(3);
    let cs = payload::cohorts(6);
    let behave = |_: usize, _: usize| Behaviour {
        error_rate: 0.01,
        latency_ms: 120.0,
        spread: 0.5,
        dependency_fault: Some((0, 0.01)),
    };
    let t = payload::build(
        &Shape {
            journeys: &js,
            cohorts: &cs,
            behaviour: &behave,
            dependencies: 8,
            users: false,
            order_value: false,
            version: payload::DEFAULT_VERSION,
        },
        900,
        &mut Rng::new(42),
    );
    let n = t.spans;
    let body = stamped(t);
    let clock = Clock { wall: wall_clock() };
    let mut g = c.benchmark_group("ingest-traces");
    g.throughput(Throughput::Elements(n as u64));
    for on in [true, false] {
        let mut cfg = config(3);
        cfg.traces.enabled = on;
        let tel = Arc::new(Telemetry::default());
        let journeys = Arc::new(Journeys::new(&cfg));
        let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
        let ingest = Ingest::new(&cfg, journeys, pipeline.input(), tel.clone());
        let id = format!("{}/{n}", if on { "on" } else { "off" });
        g.bench_with_input(BenchmarkId::from_parameter(id), &body, |b, body| {
            b.iter_custom(|iters| {
                let start = clock.start();
                let target = tel.processed_spans.load(Ordering::Relaxed) + iters * n as u64;
                for _ in 0..iters {
                    while ingest
                        .traces_body(black_box(body), Format::Protobuf, Transport::Grpc)
                        .is_err()
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                while tel.processed_spans.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_micros(200));
                }
                // The queues drain too: the assembly work is the workers'.
                while pipeline.input().queue_depths().iter().any(|d| *d > 0) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                clock.end(start)
            })
        });
        drop(ingest);
        let _ = pipeline.shutdown(Duration::from_secs(10));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = settings();
    targets = decode, decode_json, classify, record, ingest, ingest_traces
}
criterion_main!(benches);
