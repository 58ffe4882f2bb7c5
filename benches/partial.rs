//! Kafka stage 2's aggregates: one journey x cohort series' partial for one evaluation
//! interval (1 s, the default), taken and encoded by a stage-1 instance ("publish") and
//! decoded and merged by the journey's owner ("merge"), at three loads. Windows and
//! histogram bounds are the defaults (1m, 5m, 1h in 12 sub-buckets each). The bytes of
//! each partial are printed once: they are measured, not estimated; so are those of a
//! dependency entry (one journey x dependency's calls and blame in the interval), which
//! a journey's message carries beside its series.
//!
//! Run: `cargo bench --bench partial`; BENCHMARKS.md "Stage 2: aggregates per second".

use cerflow::config::Config;
use cerflow::partial::{decode, encode_journey, merge_series, take_dependency, take_series, Entry};
use cerflow::receiver::kafka::config::DEFAULT_MAX_MESSAGE_BYTES;
use cerflow::sampling::UNIT;
use cerflow::span_record::{flag, Record};
use cerflow::window::{Blame, SeriesState};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;

/// (name, requests in the interval, distinct users among them).
const LOADS: [(&str, u64, u64); 3] = [
    ("quiet-10req", 10, 10),
    ("busy-1000req-500users", 1_000, 500),
    ("heavy-20000req-10000users", 20_000, 10_000),
];

struct Layout {
    windows_ns: Vec<u64>,
    sub_buckets: u32,
    bounds_ns: Vec<u64>,
}

fn layout() -> Layout {
    let cfg = Config::default();
    Layout {
        windows_ns: cfg.windows_ns(),
        sub_buckets: cfg.windows.sub_buckets,
        bounds_ns: cfg.bounds_ns(),
    }
}

/// A series that recorded `requests` in the second before `now`: 1 in 20 failed,
/// durations spread over the histogram, users drawn from `users` well-mixed hashes (none
/// with 0: a dependency's calls).
fn filled(l: &Layout, requests: u64, users: u64, now: u64) -> SeriesState {
    let mut s = SeriesState::new(&l.windows_ns, l.sub_buckets, l.bounds_ns.len(), now - S);
    for i in 0..requests {
        let r = Record {
            hash: 0,
            has_version: false,
            journey: 0,
            first_value: 0,
            n_values: 0,
            flags: if users > 0 { flag::USER } else { 0 }
                | if i % 20 == 0 { flag::ERROR } else { 0 },
            end_ns: now - S + i * S / requests,
            duration_ns: (i % 97 + 1) * 10_000_000,
            user: (i % users.max(1) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            value: 0.0,
            trace_id: [0; 16],
            span_id: [0; 8],
            event: 0,
            weight: UNIT,
        };
        s.record(&r, &l.bounds_ns, now);
    }
    s
}

fn bench(c: &mut Criterion) {
    let l = layout();
    let now = T0 + 3600 * S;
    let mut g = c.benchmark_group("partial");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    for (name, requests, users) in LOADS {
        let msgs = {
            let mut s = filled(&l, requests, users, now);
            let p = take_series(&mut s, &[], false, false).expect("a partial");
            let (msgs, too_large) = encode_journey(
                "checkout",
                "",
                "a",
                1,
                vec![Entry::Series(p)],
                DEFAULT_MAX_MESSAGE_BYTES,
            );
            assert!(too_large.is_empty());
            msgs
        };
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        eprintln!("partial {name}: {} message(s), {bytes} bytes", msgs.len());
        // The same calls as a dependency's (no users), the failed ones blamed on it.
        let dependency = {
            let mut calls = filled(&l, requests, 0, now);
            let mut blame = Blame::new(&l.windows_ns, l.sub_buckets, now - S);
            for i in (0..requests).step_by(20) {
                blame.add(now - S + i * S / requests, now);
            }
            let d = take_dependency("payments", false, &mut calls, &mut blame, None);
            let e = Entry::Dependency(Box::new(d.expect("a dependency partial")));
            let (m, _) = encode_journey("checkout", "", "a", 1, vec![e], DEFAULT_MAX_MESSAGE_BYTES);
            m.iter().map(Vec::len).sum::<usize>()
        };
        eprintln!("dependency entry {name}: {dependency} bytes (a message of it alone)");
        g.bench_function(format!("publish/{name}"), |b| {
            b.iter_batched(
                || filled(&l, requests, users, now),
                |mut s| {
                    let p = take_series(&mut s, &[], false, false);
                    let p = p.into_iter().map(Entry::Series).collect();
                    black_box(encode_journey(
                        "checkout",
                        "",
                        "a",
                        1,
                        p,
                        DEFAULT_MAX_MESSAGE_BYTES,
                    ))
                },
                BatchSize::SmallInput,
            )
        });
        let owner = filled(&l, requests, users, now);
        g.bench_function(format!("merge/{name}"), |b| {
            b.iter_batched(
                || owner.clone(),
                |mut o| {
                    for m in &msgs {
                        let d = decode(m).expect("decodes");
                        for s in &d.series {
                            merge_series(&mut o, s, now).expect("merges");
                        }
                    }
                    black_box(o.totals.requests)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
