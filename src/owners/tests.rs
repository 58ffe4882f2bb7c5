use super::*;
use crate::sampling::UNIT;
use crate::span_record::{flag, Record};
use crate::telemetry::AddRelaxed;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const WINDOWS: [u64; 1] = [60 * S];
const BOUNDS: [u64; 1] = [100 * MS];

/// 30 s ago, on a whole second: the consumer's path merges at the clock's now, so the
/// requests must sit in the 60 s window of now.
fn t0() -> u64 {
    crate::clock::now_unix_ns() / S * S - 30 * S
}

fn owners() -> Owners {
    let cfg = crate::config::Config::parse(
        "journeys:\n  - name: checkout\n    match:\n      span_name: POST /checkout\n",
        "t",
        &|_| None,
    )
    .expect("a valid config");
    Owners::new(
        Layout {
            window_ns: WINDOWS.to_vec(),
            sub_buckets: 6,
            n_bounds: BOUNDS.len(),
            ttl_ns: 600 * S,
        },
        Arc::new(Journeys::new(&cfg)),
        Arc::new(Telemetry::default()),
    )
}

/// A message of `n` requests of `journey` ending at T0 + i s, every third failed.
fn message(journey: &str, n: u64) -> Vec<u8> {
    let t0 = t0();
    let mut st = SeriesState::new(&WINDOWS, 6, BOUNDS.len(), t0);
    for i in 0..n {
        let r = Record {
            hash: 0,
            has_version: false,
            journey: 0,
            first_value: 0,
            n_values: 0,
            flags: if i.is_multiple_of(3) { flag::ERROR } else { 0 },
            end_ns: t0 + i * S,
            duration_ns: 50 * MS,
            user: 0,
            value: 0.0,
            trace_id: [0; 16],
            span_id: [0; 8],
            event: 0,
            weight: UNIT,
        };
        st.record(&r, &BOUNDS, t0 + 30 * S);
    }
    let p = crate::partial::take_series(&mut st, &[], false, false).expect("a delta");
    crate::partial::encode_journey(journey, "a", 1, vec![p], 1_000_000)
        .0
        .remove(0)
}

fn requests(o: &Owners) -> (u64, u64) {
    let snap = o.snapshot(crate::clock::now_unix_ns());
    snap.series.iter().fold((0, 0), |(r, e), s| {
        // The window holds every request: they ended 30 s to 16 s ago.
        assert_eq!(s.windows[0].counts.requests, s.totals.requests);
        (r + s.totals.requests, e + s.totals.errors)
    })
}

/// Partials merge only on an owned partition; a revoke forgets the partition's
/// journeys and a new assignment starts from nothing (the partition is read again).
/// By hand: 10 requests, errors at 0, 3, 6, 9: 4; then 5 more, errors at 0, 3: 2.
#[test]
fn an_owner_merges_only_its_partitions_and_forgets_them_on_revoke() {
    let o = owners();
    assert!(o
        .merge(0, &message("checkout", 10), crate::clock::now_unix_ns())
        .is_err());
    o.assigned(&[0, 2]);
    o.partial(0, &message("checkout", 10));
    o.partial(0, &message("checkout", 5));
    assert_eq!(requests(&o), (15 * UNIT, 6 * UNIT));
    assert_eq!(o.owned_partitions(), BTreeSet::from([0, 2]));
    assert_eq!(
        o.owned_journeys().into_iter().collect::<Vec<_>>(),
        vec![Arc::<str>::from("checkout")]
    );
    assert_eq!(o.tel.kafka.owned_partitions.get(), 2);
    assert!(o.take_dropped().is_empty());
    o.revoked(&[0]);
    assert_eq!(requests(&o), (0, 0));
    assert_eq!(o.owned_partitions(), BTreeSet::from([2]));
    // The deriver hears once that checkout's counts must start again.
    assert_eq!(
        o.take_dropped(),
        BTreeSet::from([Arc::<str>::from("checkout")])
    );
    assert!(o.take_dropped().is_empty());
    // Unknown journeys and garbage are refused and counted, never merged.
    o.partial(2, &message("search", 3));
    o.partial(2, b"\xff\x01");
    assert_eq!(requests(&o), (0, 0));
    assert_eq!(o.tel.kafka.partials_merged.get(), 2);
    assert_eq!(o.tel.kafka.partials_refused.get(), 2);
}

/// Listeners hear every ownership change, with the partitions that changed.
#[test]
fn listeners_follow_ownership() {
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl OwnershipListener for Log {
        fn assigned(&self, p: &[i32]) {
            lock(&self.0).push(format!("+{p:?}"));
        }
        fn revoked(&self, p: &[i32]) {
            lock(&self.0).push(format!("-{p:?}"));
        }
    }
    let o = owners();
    let log = Arc::new(Log::default());
    o.listen(log.clone());
    o.assigned(&[1, 3]);
    o.revoked(&[3]);
    assert_eq!(*lock(&log.0), vec!["+[1, 3]", "-[3]"]);
}
