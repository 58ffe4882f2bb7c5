//! One decoder, one 1,000-span OTLP/JSON request (the `loadgen --protocol http-json`
//! payload), decoded `ROUNDS` times: a fixed workload for `valgrind --tool=callgrind`,
//! whose instruction counts repeat exactly on a shared, noisy machine where CPU time
//! does not. Build the body once outside the measured part with `--toggle-collect`.
//!
//! ```text
//! cargo bench --bench json_callgrind --no-run
//! B=$(ls -t target/release/deps/json_callgrind-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --toggle-collect='json_callgrind::decode*' $B lazy   # or: full
//! ```
//!
//! Under `cargo bench` (no argument) it runs both once, as a smoke test.

use cerflow::decode::{self, json, Format};
use cerflow::loadgen::payload::{self, Behaviour, Shape};
use cerflow::rng::Rng;
use std::hint::black_box;

const ROUNDS: usize = 10;

fn body() -> Vec<u8> {
    let (js, cs) = (payload::journeys(3), payload::cohorts(6));
    let behave = |_: usize, _: usize| Behaviour {
        error_rate: 0.01,
        latency_ms: 120.0,
        spread: 0.5,
        dependency_fault: None,
    };
    let shape = Shape {
        journeys: &js,
        cohorts: &cs,
        behaviour: &behave,
        users: false,
        order_value: false,
        version: payload::DEFAULT_VERSION,
        dependencies: 0,
    };
    let t = payload::build(&shape, 1000, &mut Rng::new(42))
        .to_json()
        .expect("the template converts");
    let mut body = t.body.clone();
    t.stamp(&mut body, 1_800_000_000_000_000_000);
    body
}

#[inline(never)]
fn decode_lazy(body: &[u8]) -> usize {
    let arena = json::Bump::new();
    json::decode_traces(black_box(body), &arena)
        .expect("valid")
        .span_count()
}

#[inline(never)]
fn decode_full(body: &[u8]) -> usize {
    decode::span_count(&decode::traces(black_box(body), Format::Json).expect("valid")) as usize
}

fn main() {
    let body = body();
    let which = std::env::args().nth(1).unwrap_or_default();
    let mut spans = 0;
    for _ in 0..ROUNDS {
        if which != "full" {
            spans += decode_lazy(&body);
        }
        if which != "lazy" {
            spans += decode_full(&body);
        }
    }
    println!("{} bytes, {spans} spans decoded", body.len());
}
