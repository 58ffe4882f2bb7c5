use super::*;
use crate::receiver::kafka::config::DEFAULT_MAX_MESSAGE_BYTES;
use crate::sampling::UNIT;
use crate::span_record::{event, flag, Record};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// Windows of 60 s and 300 s in 6 sub-buckets (10 s and 50 s each); bounds 100, 500 ms.
const WINDOWS: [u64; 2] = [60 * S, 300 * S];
const BOUNDS: [u64; 2] = [100 * MS, 500 * MS];
const T0: u64 = 1_700_000_000 * S;

fn state() -> SeriesState {
    SeriesState::new(&WINDOWS, 6, BOUNDS.len(), T0)
}

fn rec(i: u64, users: u64) -> Record {
    let error = i.is_multiple_of(10);
    Record {
        hash: 0,
        has_version: false,
        journey: 0,
        first_value: 0,
        n_values: 0,
        flags: flag::USER | if error { flag::ERROR } else { 0 },
        end_ns: T0 + i * 100 * MS,
        duration_ns: (i % 7 + 1) * 50 * MS,
        // A well-mixed hash per user, as the users stage makes.
        user: (i % users + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        value: 0.0,
        trace_id: [0; 16],
        span_id: [0; 8],
        event: 0,
        weight: UNIT,
    }
}

fn frustration(i: u64) -> Record {
    Record {
        flags: flag::EVENT,
        event: event::FRUSTRATION | 1,
        duration_ns: 0,
        ..rec(i, 1)
    }
}

/// Everything a derive reads of a series at `now`, for comparing two of them.
fn figures(s: &SeriesState, now: u64) -> Vec<String> {
    let mut out = vec![
        format!("{:?}", s.totals),
        format!("{:?}", s.buckets),
        format!("{:?}", s.frustrations),
    ];
    let (mut scratch, mut q) = (Vec::new(), Vec::new());
    for w in 0..s.windows.len() {
        let st = s.window_stats(w, now, &crate::snapshot::QUANTILES, &mut scratch, &mut q);
        out.push(format!(
            "{:?} {:?} {:?} {}",
            st.counts, st.users, st.quantiles_s, st.start_ns
        ));
    }
    out
}

/// Sends every partial of `from` through the wire into `owner`, in `max_bytes` messages.
fn ship(from: &mut SeriesState, owner: &mut SeriesState, max_bytes: usize, now: u64) -> usize {
    let Some(p) = take_series(from, &[], false, false) else {
        return 0;
    };
    let (msgs, too_large) = encode_journey(
        "checkout",
        "",
        "a",
        1,
        vec![crate::partial::Entry::Series(p)],
        max_bytes,
    );
    assert!(too_large.is_empty());
    for m in &msgs {
        assert!(m.len() <= max_bytes, "{} > {max_bytes}", m.len());
        let d = decode(m).unwrap();
        for s in &d.series {
            merge_series(owner, s, now).unwrap();
        }
    }
    msgs.len()
}

/// 300 requests over 30 s, split round robin between two instances that publish three
/// times; the owner's merge equals one instance that saw them all.
/// By hand: errors at i % 10 == 0: 30. Durations (i % 7 + 1) x 50 ms; i % 7 in {0, 1}
/// (50, 100 ms) land in the first bucket (<= 100 ms): 300 = 42 x 7 + 6, so residues 0..5
/// occur 43 times and 6 occurs 42 times: 43 + 43 = 86; residues 2..6 (150..350 ms) in the
/// second: 4 x 43 + 42 = 214; none over 500 ms. 40 users, of whom i % 40 in {0, 10, 20,
/// 30} have errors: 4 affected. The last request ends at T0 + 29.9 s; at now = T0 + 40 s
/// the 60 s window holds the sub-buckets from T0 - 10 s on: all 300.
#[test]
fn partials_from_two_instances_merge_to_one_instance_figures() {
    let now = T0 + 40 * S;
    let (mut one, mut a, mut b, mut owner) = (state(), state(), state(), state());
    for i in 0..300 {
        one.record(&rec(i, 40), &BOUNDS, now);
        let on = if i % 2 == 0 { &mut a } else { &mut b };
        on.record(&rec(i, 40), &BOUNDS, now);
        if i % 100 == 99 {
            ship(&mut a, &mut owner, DEFAULT_MAX_MESSAGE_BYTES, now);
            ship(&mut b, &mut owner, DEFAULT_MAX_MESSAGE_BYTES, now);
        }
    }
    for i in [3, 7] {
        one.record(&frustration(i), &BOUNDS, now);
        a.record(&frustration(i), &BOUNDS, now);
    }
    ship(&mut a, &mut owner, DEFAULT_MAX_MESSAGE_BYTES, now);
    assert_eq!(owner.totals.requests, 300 * UNIT);
    assert_eq!(owner.totals.errors, 30 * UNIT);
    assert_eq!(owner.buckets, vec![86 * UNIT, 214 * UNIT, 0]);
    assert_eq!(owner.frustrations, vec![0, 2]);
    let st = owner.window_stats(0, now, &[0.5], &mut Vec::new(), &mut Vec::new());
    assert_eq!(st.counts.requests, 300 * UNIT);
    assert_eq!((st.users.all.count(), st.users.affected.count()), (40, 4));
    assert_eq!(figures(&owner, now), figures(&one, now));
    // Taking left the instances empty: a second take has nothing, nothing is sent twice.
    assert!(take_series(&mut a, &[], false, false).is_none());
    assert_eq!(a.totals, Counts::default());
}

/// 6000 distinct users turn the sketch dense (more than SPARSE_MAX = 4095 registers set
/// of 16384); the owner's merged sketch is bit-identical to one instance's, and the
/// 95% quantile too. A 20 KB message limit cuts the dense sub-buckets (two sketches of
/// 16 KiB each would not fit together) into several messages, each under the limit.
#[test]
fn dense_sketches_merge_bit_identical_through_cut_messages() {
    let now = T0 + 40 * S;
    let (mut one, mut a, mut b, mut owner) = (state(), state(), state(), state());
    for i in 0..6000u64 {
        let r = Record {
            end_ns: T0 + (i % 300) * 100 * MS,
            ..rec(i, 6000)
        };
        one.record(&r, &BOUNDS, now);
        let on = if i % 3 == 0 { &mut a } else { &mut b };
        on.record(&r, &BOUNDS, now);
    }
    let st = one.window_stats(1, now, &[0.5], &mut Vec::new(), &mut Vec::new());
    assert!(matches!(st.users.all, Distinct::Dense(_)));
    let messages = ship(&mut a, &mut owner, 20_000, now) + ship(&mut b, &mut owner, 20_000, now);
    assert!(messages > 2, "{messages} messages");
    assert_eq!(owner.totals.requests, 6000 * UNIT);
    assert_eq!(figures(&owner, now), figures(&one, now));
}

/// A sub-bucket larger than the limit on its own cannot be cut: it is reported, and the
/// series' totals still go out.
#[test]
fn a_sub_bucket_over_the_limit_is_reported_not_sent() {
    let now = T0 + 40 * S;
    let mut a = state();
    // All at T0: one sub-bucket a window, each with a dense sketch of 16 KiB.
    for i in 0..6000u64 {
        let r = Record {
            end_ns: T0,
            ..rec(i, 6000)
        };
        a.record(&r, &BOUNDS, now);
    }
    let p = take_series(&mut a, &[], false, false).unwrap();
    let (msgs, too_large) = encode_journey(
        "checkout",
        "",
        "a",
        1,
        vec![crate::partial::Entry::Series(p)],
        4_000,
    );
    // Two windows' sub-buckets, each over the limit.
    assert_eq!(too_large.len(), 2);
    assert!(too_large
        .iter()
        .all(|t| t.bytes > 16_384 && t.journey == "checkout"));
    let first = decode(&msgs[0]).unwrap();
    assert_eq!(first.parts as usize, msgs.len());
    assert_eq!(
        decode_counts(first.series[0].totals.as_ref()).requests,
        6000 * UNIT
    );
}

/// A partial from a later format, or with a broken histogram, is refused whole: the
/// owner's state is unchanged (no half-merged partial).
#[test]
fn a_bad_partial_is_refused_whole() {
    let now = T0 + 40 * S;
    let (mut a, mut owner) = (state(), state());
    for i in 0..10 {
        a.record(&rec(i, 5), &BOUNDS, now);
    }
    let mut p = take_series(&mut a, &[], false, false).unwrap();
    let mut m = pb::JourneyPartial {
        version: VERSION + 1,
        ..Default::default()
    };
    assert!(decode(&m.encode_to_vec())
        .unwrap_err()
        .contains("version 2"));
    m.version = VERSION;
    assert!(decode(&m.encode_to_vec()).is_ok());
    assert!(decode(b"\xff\xff\xff").is_err());
    // Bins out of order in the 300 s window's only sub-bucket.
    let sb = &mut p.windows[1].sub_buckets[0];
    sb.hist_bins.reverse();
    let before = figures(&owner, now);
    assert!(merge_series(&mut owner, &p, now).is_err());
    assert_eq!(figures(&owner, now), before);
    p.windows.pop();
    let err = merge_series(&mut owner, &p, now).unwrap_err();
    assert!(err.contains("1 windows, this instance 2"), "{err}");
}

/// A sub-bucket that slid out of the owner's window before its partial arrived is
/// dropped and counted, as one instance drops a late span.
#[test]
fn a_partial_older_than_the_window_is_counted_late() {
    let (mut a, mut owner) = (state(), state());
    a.record(&rec(0, 1), &BOUNDS, T0);
    let p = take_series(&mut a, &[], false, false).unwrap();
    // At T0 + 70 s the 60 s window starts at T0 + 20 s: its sub-bucket is gone; the
    // 300 s window still holds it.
    let m = merge_series(&mut owner, &p, T0 + 70 * S).unwrap();
    assert_eq!(
        m,
        Merged {
            sub_buckets: 2,
            late: 1,
            future: 0
        }
    );
    assert_eq!(owner.totals.requests, UNIT);
    // Seen from 20 s before T0, the sub-buckets (10 s and 50 s long) start in the future:
    // the 10 s one more than a sub-bucket ahead (dropped), the 50 s one not.
    let m = merge_series(&mut state(), &p, T0 - 20 * S).unwrap();
    assert_eq!((m.future, m.late), (1, 0));
}

/// Sampled spans carry their adjusted counts in units through the wire as integers:
/// 40 requests, every fourth kept at p = 1/4 (`th:c`, 4 units-requests) and every
/// fifth at a threshold whose adjusted count is not a whole number (1.5 requests plus
/// one unit), split between two instances that publish twice.
/// By hand: i % 4 == 3 for 10 of 0..40 (4 x UNIT each); of the other 30, i % 5 == 0
/// for i in {0, 5, 10, 15, 20, 25, 30, 35} minus those with i % 4 == 3 (15, 35): 6
/// (UNIT * 3 / 2 + 1 each); 24 at UNIT. Requests: 10 x 4 UNIT + 6 x (1.5 UNIT + 1) +
/// 24 UNIT = 40 UNIT + 9 UNIT + 6 + 24 UNIT = 73 UNIT + 6. Errors are i % 10 == 0:
/// i = 0, 10, 20, 30, all with i % 5 == 0 and none with i % 4 == 3: 4 x (1.5 UNIT + 1)
/// = 6 UNIT + 4.
#[test]
fn weighted_counts_merge_as_integers() {
    let now = T0 + 40 * S;
    let (mut one, mut a, mut b, mut owner) = (state(), state(), state(), state());
    for i in 0..40u64 {
        let weight = if i % 4 == 3 {
            4 * UNIT
        } else if i.is_multiple_of(5) {
            UNIT * 3 / 2 + 1
        } else {
            UNIT
        };
        let r = Record {
            weight,
            ..rec(i, 9)
        };
        one.record(&r, &BOUNDS, now);
        a.record(&r, &BOUNDS, now);
        std::mem::swap(&mut a, &mut b);
        if i == 19 {
            ship(&mut b, &mut owner, DEFAULT_MAX_MESSAGE_BYTES, now);
        }
    }
    ship(&mut a, &mut owner, DEFAULT_MAX_MESSAGE_BYTES, now);
    ship(&mut b, &mut owner, DEFAULT_MAX_MESSAGE_BYTES, now);
    assert_eq!(owner.totals.requests, 73 * UNIT + 6);
    assert_eq!(owner.totals.errors, 6 * UNIT + 4);
    assert_eq!(owner.buckets.iter().sum::<u64>(), 73 * UNIT + 6);
    assert_eq!(figures(&owner, now), figures(&one, now));
}

#[test]
fn counts_encode_through_one_function_and_back() {
    let c = Counts {
        requests: 7,
        errors: 1,
        slow: 2,
        incorrect: 3,
        vitals: 4,
        vitals_bad: 5,
    };
    assert_eq!(decode_counts(Some(&encode_counts(&c))), c);
    assert_eq!(decode_counts(None), Counts::default());
}

/// The aggregates topic is input: any bytes, and any corruption of a real partial,
/// are refused or merged, never a panic (debug builds check overflow too).
mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn real() -> Vec<u8> {
        let now = T0 + 40 * S;
        let mut a = state();
        for i in 0..50 {
            a.record(&rec(i, 7), &BOUNDS, now);
        }
        a.record(&frustration(3), &BOUNDS, now);
        let p = take_series(&mut a, &[], false, false).unwrap();
        encode_journey(
            "checkout",
            "",
            "a",
            1,
            vec![crate::partial::Entry::Series(p)],
            1_000_000,
        )
        .0
        .remove(0)
    }

    fn merge_all(bytes: &[u8]) {
        let mut owner = state();
        if let Ok(m) = decode(bytes) {
            for s in &m.series {
                // Twice: a second merge adds to what the first left.
                let _ = merge_series(&mut owner, s, T0 + 40 * S);
                let _ = merge_series(&mut owner, s, T0 + 40 * S);
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            merge_all(&bytes);
        }

        #[test]
        fn a_real_partial_corrupted(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = real();
            for (at, b) in edits {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            merge_all(&bytes);
        }
    }

    #[test]
    fn counts_at_the_top_saturate() {
        let mut p = decode(&real()).unwrap().series.remove(0);
        p.totals = Some(encode_counts(&Counts {
            requests: u64::MAX,
            ..Default::default()
        }));
        let mut owner = state();
        merge_series(&mut owner, &p, T0 + 40 * S).unwrap();
        merge_series(&mut owner, &p, T0 + 40 * S).unwrap();
        assert_eq!(owner.totals.requests, u64::MAX);
        p.value_total = f64::NAN;
        assert!(merge_series(&mut owner, &p, T0 + 40 * S).is_err());
    }
}

/// A call to a dependency at `T0 + i s` lasting 50 ms, failed or not, as trace assembly
/// records it (no user, no value).
fn call(i: u64, error: bool) -> Record {
    Record {
        flags: if error { flag::ERROR } else { 0 },
        end_ns: T0 + i * S,
        duration_ns: 50 * MS,
        user: 0,
        ..rec(1, 1)
    }
}

/// A publisher's dependency series with `calls` calls, the first `errors` failed, and
/// `blamed` failed requests blamed on it; taken as one partial.
fn dependency_partial(calls: u64, errors: u64, blamed: u64) -> pb::DependencyPartial {
    let mut c = state();
    let mut b = Blame::new(&WINDOWS, 6, T0);
    for i in 0..calls {
        c.record(&call(i, i < errors), &BOUNDS, T0 + 10 * S);
    }
    for i in 0..blamed {
        b.add(T0 + i * S, T0 + 10 * S);
    }
    take_dependency("payments", false, &mut c, &mut b, None).unwrap()
}

/// Calls, errors and blamed requests of an owner's dependency state, whole and in
/// the 60 s window.
fn dependency_figures(c: &SeriesState, b: &Blame, now: u64) -> (u64, u64, u64, u64, u64, u64) {
    let w: Counts = c.windows[0].live(now).fold(Counts::default(), |mut a, s| {
        a.add(&s.counts);
        a
    });
    (
        c.totals.requests / UNIT,
        c.totals.errors / UNIT,
        b.total,
        w.requests / UNIT,
        w.errors / UNIT,
        b.window(0, now),
    )
}

#[test]
fn two_partials_of_a_dependency_merge_to_their_sum_in_either_order() {
    // 3 calls with 1 error and 1 blamed request, then 2 calls with no error and none
    // blamed: 5 calls, 1 error, 1 blamed, in the totals and in the 60 s window (all
    // calls end within 3 s of T0), whichever partial arrives first.
    let a = dependency_partial(3, 1, 1);
    let b = dependency_partial(2, 0, 0);
    let now = T0 + 20 * S;
    let mut results = Vec::new();
    for order in [[&a, &b], [&b, &a]] {
        let mut c = state();
        let mut bl = Blame::new(&WINDOWS, 6, T0);
        for p in order {
            // Through the wire: the encoding keeps every field.
            let (msgs, too_large) = encode_journey(
                "checkout",
                "",
                "i0",
                1,
                vec![Entry::Dependency(Box::new(p.clone()))],
                DEFAULT_MAX_MESSAGE_BYTES,
            );
            assert!(too_large.is_empty());
            let m = decode(&msgs[0]).unwrap();
            assert_eq!(
                merge_dependency(&mut c, &mut bl, &m.dependencies[0], now),
                Ok(0)
            );
        }
        // Latency: 5 calls of 50 ms, all in the first bucket (<= 100 ms).
        assert_eq!(c.buckets, [5 * UNIT, 0, 0]);
        results.push(dependency_figures(&c, &bl, now));
    }
    assert_eq!(results, [(5, 1, 1, 5, 1, 1), (5, 1, 1, 5, 1, 1)]);
}

#[test]
fn a_retraction_takes_back_what_an_earlier_partial_added() {
    // The publisher added 2 failed calls and 2 blamed requests, then retracted 1 call
    // and 1 blame (a trace whose calls went to another journey once more spans came):
    // 2 - 1 = 1 call, 1 error, 1 blamed; the 60 s window likewise; a bucket empties.
    let now = T0 + 20 * S;
    let mut c = state();
    let mut bl = Blame::new(&WINDOWS, 6, T0);
    let added = dependency_partial(2, 2, 2);
    merge_dependency(&mut c, &mut bl, &added, now).unwrap();
    let mut gone = state();
    let mut gone_blame = Blame::new(&WINDOWS, 6, T0);
    gone.record(&call(0, true), &BOUNDS, T0 + 10 * S);
    gone_blame.add(T0, T0 + 10 * S);
    let mut none = state();
    let mut none_blame = Blame::new(&WINDOWS, 6, T0);
    let retraction = take_dependency(
        "payments",
        false,
        &mut none,
        &mut none_blame,
        Some((&mut gone, &mut gone_blame)),
    )
    .unwrap();
    assert!(retraction.calls.is_none() && retraction.blamed.is_none());
    merge_dependency(&mut c, &mut bl, &retraction, now).unwrap();
    assert_eq!(dependency_figures(&c, &bl, now), (1, 1, 1, 1, 1, 1));
    assert_eq!(c.buckets, [UNIT, 0, 0]);
    // The sub-bucket [T0, T0 + 10 s) kept one 50 ms call: one bin of count 1.
    let bins: Vec<u32> = c.windows[0]
        .live(now)
        .flat_map(|s| s.hist.bins().iter().map(|b| b.1))
        .collect();
    assert_eq!(bins, [1]);
}

#[test]
fn self_blame_partials_add_and_a_bad_one_is_refused_whole() {
    let now = T0 + 20 * S;
    let mut b = Blame::new(&WINDOWS, 6, T0);
    // 3 blamed at T0 + 0, 1, 2 s, then 4 more: 7 in total and in the window.
    for n in [3, 4] {
        let mut from = Blame::new(&WINDOWS, 6, T0);
        for i in 0..n {
            from.add(T0 + i * S, T0 + 10 * S);
        }
        let p = take_self_blame(&mut from, None).unwrap();
        assert!(
            take_self_blame(&mut from, None).is_none(),
            "a take empties it"
        );
        assert_eq!(merge_self_blame(&mut b, &p, now), Ok(0));
    }
    assert_eq!((b.total, b.window(0, now), b.window(1, now)), (7, 7, 7));
    // One window instead of two: a config that differs.
    let bad = pb::SelfBlamePartial {
        blamed: Some(pb::BlamePartial {
            total: 1,
            created_unix_ns: T0,
            windows: vec![pb::BlameWindow::default()],
        }),
        retracted: None,
    };
    assert!(merge_self_blame(&mut b, &bad, now).is_err());
    assert_eq!(b.total, 7);
}

/// Coverage rings of one publisher: `entry` entry-point spans ending at T0 + i s, the
/// first `matched` of them claimed by a journey.
fn coverage_rings(entry: u64, matched: u64) -> Vec<Ring<Coverage>> {
    let mut rings: Vec<Ring<Coverage>> = WINDOWS.iter().map(|&w| Ring::new(w, 6)).collect();
    for i in 0..entry {
        for ring in rings.iter_mut() {
            let c = ring.slot_mut(T0 + i * S, T0 + 10 * S).unwrap();
            c.entry += 1;
            c.matched += u64::from(i < matched);
        }
    }
    rings
}

fn live(rings: &[Ring<Coverage>], now: u64) -> Vec<(u64, u64)> {
    rings
        .iter()
        .map(|r| {
            let mut c = Coverage::default();
            r.live(now).for_each(|x| c.add(x));
            (c.entry, c.matched)
        })
        .collect()
}

/// Two publishers' coverage adds at the owner in either order, and equals what one
/// instance counting all the spans holds. By hand: 8 entry spans (6 matched) ending at
/// T0 to T0 + 7 s and 5 (2 matched) at T0 to T0 + 4 s: 8 + 5 = 13 entry, 6 + 2 = 8
/// matched, in both windows (T0 is a whole multiple of 10 s and of 50 s, so every span
/// is in the first sub-bucket of each).
#[test]
fn coverage_partials_add_in_any_order_to_one_instances_counts() {
    let now = T0 + 20 * S;
    let take = |entry, matched| {
        let mut r = coverage_rings(entry, matched);
        let p = take_coverage(&mut r).expect("a delta");
        assert!(take_coverage(&mut r).is_none(), "a take empties the rings");
        p
    };
    let (a, b) = (take(8, 6), take(5, 2));
    // One 10 s (and one 50 s) sub-bucket: T0 is a whole multiple of both.
    assert_eq!(a.windows[0].start_ns, vec![T0]);
    assert_eq!((a.windows[0].entry[0], a.windows[0].matched[0]), (8, 6));
    for order in [[&a, &b], [&b, &a]] {
        let mut owner: Vec<Ring<Coverage>> = WINDOWS.iter().map(|&w| Ring::new(w, 6)).collect();
        for p in order {
            assert_eq!(merge_coverage(&mut owner, p, now), Ok(0));
        }
        assert_eq!(live(&owner, now), vec![(13, 8), (13, 8)]);
    }
    // One instance counting the same 13 spans: the same figures.
    let mut one = coverage_rings(8, 6);
    for i in 0..5 {
        for ring in one.iter_mut() {
            let c = ring.slot_mut(T0 + i * S, T0 + 10 * S).unwrap();
            c.entry += 1;
            c.matched += u64::from(i < 2);
        }
    }
    assert_eq!(live(&one, now), vec![(13, 8), (13, 8)]);
    // It goes through a message of its own: no journey, the coverage entries only.
    let (msgs, too_large) = encode_journey(
        "",
        "",
        "i0",
        3,
        vec![Entry::Coverage(a.clone()), Entry::Coverage(b.clone())],
        DEFAULT_MAX_MESSAGE_BYTES,
    );
    assert!(too_large.is_empty());
    let m = decode(&msgs[0]).unwrap();
    assert_eq!((m.journey.as_str(), m.coverage.len()), ("", 2));
    assert!(m.series.is_empty());
    assert_eq!(m.coverage[0], a);
}

/// A coverage partial of another window layout, or with counts missing, is refused
/// whole; one whose sub-bucket slid out of the owner's window is dropped and counted.
#[test]
fn a_bad_or_late_coverage_partial_adds_nothing() {
    let now = T0 + 20 * S;
    let mut owner: Vec<Ring<Coverage>> = WINDOWS.iter().map(|&w| Ring::new(w, 6)).collect();
    let one_window = pb::CoveragePartial {
        windows: vec![pb::CoverageWindow {
            start_ns: vec![T0],
            entry: vec![1],
            matched: vec![1],
        }],
    };
    assert!(merge_coverage(&mut owner, &one_window, now).is_err());
    let short = pb::CoveragePartial {
        windows: vec![
            pb::CoverageWindow {
                start_ns: vec![T0],
                entry: vec![1],
                matched: vec![],
            },
            pb::CoverageWindow::default(),
        ],
    };
    assert!(merge_coverage(&mut owner, &short, now).is_err());
    assert_eq!(live(&owner, now), vec![(0, 0), (0, 0)]);
    // At T0 + 100 s the 60 s window starts at T0 + 50 s: the T0 sub-bucket is late
    // there (dropped: 1) but still in the 300 s window.
    let mut rings = coverage_rings(3, 1);
    let p = take_coverage(&mut rings).unwrap();
    let later = T0 + 100 * S;
    assert_eq!(merge_coverage(&mut owner, &p, later), Ok(1));
    assert_eq!(live(&owner, later), vec![(0, 0), (3, 1)]);
}
