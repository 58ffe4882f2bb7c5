//! The users sketch: insert of one user id hash (exact, sparse and dense forms) and the
//! merge a window does over its sub-buckets (12 sketches into one, sparse and dense).
//!
//! Run: `cargo bench --bench distinct`.

use cerflow::distinct::Distinct;
use cerflow::rng::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let mut rng = Rng::new(7);
    let hashes: Vec<u64> = (0..100_000).map(|_| rng.next_u64()).collect();
    let mut g = c.benchmark_group("distinct");
    g.throughput(Throughput::Elements(100));
    g.bench_function("insert/exact/100", |b| {
        b.iter(|| {
            let mut d = Distinct::default();
            for &h in &hashes[..100] {
                d.insert(h);
            }
            black_box(d.count())
        })
    });
    // 2,000 users: 100 exact, then the sparse form up to ~1,900 registers.
    g.throughput(Throughput::Elements(2_000));
    g.bench_function("insert/sparse/2000", |b| {
        b.iter(|| {
            let mut d = Distinct::default();
            for &h in &hashes[..2_000] {
                d.insert(h);
            }
            black_box(d.count())
        })
    });
    let sparse: Vec<Distinct> = hashes[..12_000]
        .chunks(1_000)
        .map(|c| {
            let mut d = Distinct::default();
            c.iter().for_each(|&h| d.insert(h));
            d
        })
        .collect();
    g.throughput(Throughput::Elements(sparse.len() as u64));
    // 12 sparse sketches of 1,000 users; the union (12,000) turns dense on the way.
    g.bench_function("merge/sparse-1000/12", |b| {
        b.iter(|| {
            let mut acc = Distinct::default();
            for s in &sparse {
                acc.merge(s);
            }
            black_box(acc.count())
        })
    });
    let mut dense = Distinct::default();
    for &h in &hashes[..1000] {
        dense.insert(h);
    }
    g.throughput(Throughput::Elements(hashes.len() as u64));
    g.bench_function("insert/dense/100000", |b| {
        b.iter(|| {
            for &h in &hashes {
                dense.insert(h);
            }
        })
    });
    let slots: Vec<Distinct> = hashes
        .chunks(hashes.len() / 12)
        .map(|c| {
            let mut d = Distinct::default();
            c.iter().for_each(|&h| d.insert(h));
            d
        })
        .collect();
    g.throughput(Throughput::Elements(slots.len() as u64));
    g.bench_function("merge/dense/12", |b| {
        b.iter(|| {
            let mut acc = Distinct::default();
            for s in &slots {
                acc.merge(s);
            }
            black_box(acc.count())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
