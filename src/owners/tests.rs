use super::*;
use crate::sampling::UNIT;
use crate::span_record::{flag, Record};
use crate::telemetry::AddRelaxed;
use prost::Message as _;

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
            max_dependencies: 2,
            max_versions: 2,
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
    crate::partial::encode_journey(
        journey,
        "",
        "a",
        1,
        vec![crate::partial::Entry::Series(p)],
        1_000_000,
    )
    .0
    .remove(0)
}

fn requests(o: &Owners) -> (u64, u64) {
    let snap = o.snapshot(crate::clock::now_unix_ns()).shard;
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
    o.caught_up(&[0, 2]);
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

/// A message of checkout's dependency partials: per (name, calls, errors, blamed), calls
/// ending at T0 + i s, the first `errors` failed; and `self_blamed` blamed on checkout.
fn dependency_message(deps: &[(&str, u64, u64, u64)], self_blamed: u64) -> Vec<u8> {
    use crate::partial::{take_dependency, take_self_blame, Entry};
    use crate::window::Blame;
    let t0 = t0();
    let mut entries = Vec::new();
    for &(name, calls, errors, blamed) in deps {
        let mut st = SeriesState::new(&WINDOWS, 6, BOUNDS.len(), t0);
        let mut b = Blame::new(&WINDOWS, 6, t0);
        for i in 0..calls {
            let r = Record {
                hash: 0,
                has_version: false,
                journey: 0,
                first_value: 0,
                n_values: 0,
                flags: if i < errors { flag::ERROR } else { 0 },
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
        for i in 0..blamed {
            b.add(t0 + i * S, t0 + 30 * S);
        }
        let p = take_dependency(name, false, &mut st, &mut b, None).expect("a delta");
        entries.push(Entry::Dependency(Box::new(p)));
    }
    let mut b = Blame::new(&WINDOWS, 6, t0);
    for i in 0..self_blamed {
        b.add(t0 + i * S, t0 + 30 * S);
    }
    entries.extend(take_self_blame(&mut b, None).map(Entry::SelfBlame));
    crate::partial::encode_journey("checkout", "", "a", 1, entries, 1_000_000)
        .0
        .remove(0)
}

/// Per dependency series (name, or "(overflow)"): calls, errors, blamed, whole and in
/// the 60 s window; per journey's own blame: whole and in the window.
type DependencyFigures = (Vec<(String, [u64; 6])>, Vec<(u64, u64)>);

fn dependencies(o: &Owners) -> DependencyFigures {
    let snap = o.snapshot(crate::clock::now_unix_ns()).shard;
    let mut deps: Vec<_> = snap
        .dependencies
        .iter()
        .map(|d| {
            let name = if d.overflow {
                "(overflow)".into()
            } else {
                d.name.to_string()
            };
            let w = &d.windows[0];
            let figures = [
                d.totals.requests / UNIT,
                d.totals.errors / UNIT,
                d.blamed_total,
                w.counts.requests / UNIT,
                w.counts.errors / UNIT,
                w.blamed,
            ];
            (name, figures)
        })
        .collect();
    deps.sort();
    let selfs = snap
        .self_blame
        .iter()
        .map(|s| (s.total, s.windows[0]))
        .collect();
    (deps, selfs)
}

/// Dependency partials of two publishers add per dependency; past
/// `dependencies.max_per_journey` (2 here) a journey's further names share its overflow
/// series; a revoke forgets them with the journey's series.
#[test]
fn an_owner_adds_dependency_partials_and_bounds_their_names() {
    let o = owners();
    o.assigned(&[0]);
    o.caught_up(&[0]);
    // Publisher 1: pay 3 calls / 1 error / 1 blamed, db 2 / 0 / 0, self 2.
    // Publisher 2: pay 2 / 0 / 0, cache 1 / 1 / 1 (a third name: overflow), self 1.
    o.partial(
        0,
        &dependency_message(&[("pay", 3, 1, 1), ("db", 2, 0, 0)], 2),
    );
    o.partial(
        0,
        &dependency_message(&[("pay", 2, 0, 0), ("cache", 1, 1, 1)], 1),
    );
    assert_eq!(o.tel.kafka.partials_refused.get(), 0);
    // pay 3 + 2 = 5 calls, 1 error, 1 blamed; self 2 + 1 = 3; every call in the window.
    assert_eq!(
        dependencies(&o),
        (
            vec![
                ("(overflow)".to_string(), [1, 1, 1, 1, 1, 1]),
                ("db".to_string(), [2, 0, 0, 2, 0, 0]),
                ("pay".to_string(), [5, 1, 1, 5, 1, 1]),
            ],
            vec![(3, 3)]
        )
    );
    o.revoked(&[0]);
    assert_eq!(dependencies(&o), (vec![], vec![]));
}

/// A partition still being re-read shows no dependency or self blame, as it shows no
/// series: the new owner's dependency figures appear with its journey, complete.
/// By hand: pay 3 calls / 1 error / 1 blamed, self 2, all within the 60 s window.
#[test]
fn owned_dependencies_wait_for_the_re_read() {
    let o = owners();
    o.assigned(&[0]);
    o.partial(0, &dependency_message(&[("pay", 3, 1, 1)], 2));
    assert_eq!(dependencies(&o), (vec![], vec![]));
    o.caught_up(&[0]);
    assert_eq!(
        dependencies(&o),
        (vec![("pay".to_string(), [3, 1, 1, 3, 1, 1])], vec![(2, 2)])
    );
}

/// A source of state records: what a new owner's changelog read returns.
struct Source(StateRecords);

impl StateSource for Source {
    fn read(&self, partitions: &[i32]) -> StateRecords {
        self.0
            .iter()
            .filter(|(_, (p, _))| partitions.contains(p))
            .map(|(j, r)| (j.clone(), r.clone()))
            .collect()
    }
}

/// A newly assigned partition's journeys and their state records reach the deriver
/// together, in the first snapshot after the partition is re-read, whichever tick that
/// is; a revoke before then drops the records, counted (revoked: 1).
/// By hand: 10 requests of checkout on partition 0, errors at 0, 3, 6, 9: 4.
#[test]
fn a_partition_s_journeys_and_state_come_together_once_it_is_re_read() {
    let o = owners();
    o.restore_from(Arc::new(Source(StateRecords::from([
        ("checkout".to_string(), (0, b"c".to_vec())),
        ("search".to_string(), (1, b"s".to_vec())),
    ]))));
    let now = crate::clock::now_unix_ns;
    o.assigned(&[0, 1]);
    o.partial(0, &message("checkout", 10));
    // Merged, but the partition is not re-read yet: neither series nor record.
    let early = o.snapshot(now());
    assert!(early.shard.series.is_empty());
    assert!(early.restored.is_empty());
    o.caught_up(&[0]);
    let first = o.snapshot(now());
    assert_eq!(first.shard.series.len(), 1);
    assert_eq!(first.shard.series[0].totals.requests, 10 * UNIT);
    assert_eq!(first.shard.series[0].totals.errors, 4 * UNIT);
    assert_eq!(
        first.restored,
        StateRecords::from([("checkout".to_string(), (0, b"c".to_vec()))])
    );
    // Handed over once; the series stay.
    let second = o.snapshot(now());
    assert!(second.restored.is_empty());
    assert_eq!(second.shard.series.len(), 1);
    // Partition 1 goes before its re-read ended: search's record is dropped and counted.
    o.revoked(&[1]);
    o.caught_up(&[1]);
    assert!(o.snapshot(now()).restored.is_empty());
    let refused: Vec<u64> = o.tel.kafka.state_refused.iter().map(|c| c.get()).collect();
    assert_eq!(refused, [0, 0, 0, 1]);
    // Assigned again: hidden again until its new re-read, then its record comes again.
    o.revoked(&[0]);
    o.assigned(&[0]);
    o.partial(0, &message("checkout", 10));
    assert!(o.snapshot(now()).shard.series.is_empty());
    o.caught_up(&[0]);
    let again = o.snapshot(now());
    assert_eq!(again.shard.series[0].totals.requests, 10 * UNIT);
    assert_eq!(again.restored.len(), 1);
}

/// One publisher's version partial for checkout: per (version, spans, errors, seen at
/// s), spans recorded into a worker's table and taken as the barrier takes them.
fn version_message(versions: &[(&str, u64, u64, u64)]) -> Vec<u8> {
    let tel = Telemetry::default();
    let mut t = crate::versions::VersionTable::new(8, true);
    for &(v, spans, errors, at_s) in versions {
        for i in 0..spans {
            let flags = if i < errors { flag::ERROR } else { 0 };
            t.record(0, v, flags, UNIT, at_s * S, &tel);
        }
    }
    let mut taken = Vec::new();
    t.take_partials(&mut taken);
    let entries = taken
        .into_iter()
        .map(|(_, v)| crate::partial::Entry::Version(v))
        .collect();
    crate::partial::encode_journey("checkout", "", "a", 1, entries, 1_000_000)
        .0
        .remove(0)
}

/// (version, requests, errors, first seen s, last seen s), sorted by version.
fn versions(o: &Owners) -> Vec<(String, u64, u64, u64, u64)> {
    let mut out: Vec<_> = o
        .snapshot(crate::clock::now_unix_ns())
        .shard
        .versions
        .iter()
        .map(|v| {
            (
                v.version.to_string(),
                v.counts.requests,
                v.counts.errors,
                v.first_seen_ns / S,
                v.last_seen_ns / S,
            )
        })
        .collect();
    out.sort();
    out
}

/// Versions merge exactly in either order. By hand: publisher A saw v1 30 spans (3
/// errors, at 100 s) and v2 10 spans (1 error, at 110 s); publisher B v2 5 spans (2
/// errors, at 105 s). Merged: v1 30 requests, 3 errors, seen 100..100; v2 10 + 5 = 15
/// requests, 1 + 2 = 3 errors, seen min(110, 105) = 105 .. max(110, 105) = 110.
#[test]
fn an_owner_adds_version_partials_in_either_order() {
    let a = version_message(&[("v1", 30, 3, 100), ("v2", 10, 1, 110)]);
    let b = version_message(&[("v2", 5, 2, 105)]);
    let want = vec![
        ("v1".to_string(), 30 * UNIT, 3 * UNIT, 100, 100),
        ("v2".to_string(), 15 * UNIT, 3 * UNIT, 105, 110),
    ];
    for order in [[&a, &b], [&b, &a]] {
        let o = owners();
        o.assigned(&[0]);
        o.caught_up(&[0]);
        for m in order {
            o.partial(0, m);
        }
        assert_eq!(versions(&o), want);
        assert_eq!(o.tel.kafka.partials_refused.get(), 0);
        // Revoked, the partition's versions go with its series (the new owner re-reads).
        o.revoked(&[0]);
        assert_eq!(versions(&o), vec![]);
    }
}

/// A partition not re-read to its end shows no versions yet; past `max_versions` (2
/// here) a new version pushes out the least recently seen, counted. By hand: v1 last
/// seen at 100 s, v2 at 110 s; v3 (at 120 s) evicts v1: v2 1 request, v3 2.
#[test]
fn owned_versions_wait_for_the_re_read_and_are_bounded() {
    let o = owners();
    o.assigned(&[0]);
    o.partial(0, &version_message(&[("v1", 1, 0, 100), ("v2", 1, 0, 110)]));
    assert_eq!(versions(&o), vec![]);
    o.caught_up(&[0]);
    o.partial(0, &version_message(&[("v3", 2, 0, 120)]));
    assert_eq!(
        versions(&o),
        vec![
            ("v2".to_string(), UNIT, 0, 110, 110),
            ("v3".to_string(), 2 * UNIT, 0, 120, 120),
        ]
    );
    assert_eq!(o.tel.deployment_versions_evicted.get(), 1);
}

/// A coverage message: `entry` entry-point spans ending at T0 + i s, `matched` of them
/// claimed.
fn coverage_message(journey: &str, entry: u64, matched: u64) -> Vec<u8> {
    let t0 = t0();
    let mut rings: Vec<Ring<Coverage>> = WINDOWS.iter().map(|&w| Ring::new(w, 6)).collect();
    for i in 0..entry {
        let c = rings[0]
            .slot_mut(t0 + i * S, t0 + 30 * S)
            .expect("in the window");
        c.entry += 1;
        c.matched += u64::from(i < matched);
    }
    let p = crate::partial::take_coverage(&mut rings).expect("a delta");
    crate::partial::encode_journey(
        journey,
        "",
        "a",
        1,
        vec![crate::partial::Entry::Coverage(p)],
        1_000_000,
    )
    .0
    .remove(0)
}

fn coverage(o: &Owners) -> (u64, u64) {
    let c = o.snapshot(crate::clock::now_unix_ns()).shard.coverage;
    assert_eq!(c.len(), WINDOWS.len());
    (c[0].entry, c[0].matched)
}

/// Coverage is owned like a journey: merged only on an owned partition, shown once the
/// partition is re-read, gone with a revoke. By hand: 10 entry spans with 7 matched,
/// then 4 with 1: 14 entry, 8 matched (ratio 8 / 14). A journey's partial that carries
/// coverage, and a message without journey holding anything else, are refused.
#[test]
fn coverage_is_owned_by_the_owner_of_its_partition() {
    let o = owners();
    o.partial(1, &coverage_message("", 10, 7));
    assert_eq!(o.tel.kafka.partials_refused.get(), 1, "not owned");
    o.assigned(&[1]);
    o.partial(1, &coverage_message("", 10, 7));
    o.partial(1, &coverage_message("", 4, 1));
    assert_eq!(coverage(&o), (0, 0), "not yet re-read to its end");
    o.caught_up(&[1]);
    assert_eq!(coverage(&o), (14, 8));
    assert!(o.owned_journeys().is_empty(), "coverage is no journey");
    // Coverage under a journey's name could sit in any partition: refused whole.
    o.partial(1, &coverage_message("checkout", 5, 5));
    let mut both =
        crate::proto::aggregates::JourneyPartial::decode(&coverage_message("", 1, 1)[..])
            .expect("a partial");
    both.series
        .push(crate::proto::aggregates::SeriesPartial::default());
    o.partial(1, &both.encode_to_vec());
    assert_eq!(coverage(&o), (14, 8));
    assert!(o.owned_journeys().is_empty());
    assert_eq!(o.tel.kafka.partials_merged.get(), 2);
    assert_eq!(o.tel.kafka.partials_refused.get(), 3);
    o.revoked(&[1]);
    assert_eq!(coverage(&o), (0, 0));
    // Given back: read again from the start, so nothing is counted twice.
    o.assigned(&[1]);
    o.caught_up(&[1]);
    o.partial(1, &coverage_message("", 10, 7));
    assert_eq!(coverage(&o), (10, 7));
}

/// Through the wire: a partial of the derived journey `svc:a:POST /checkout` names its
/// service `svc:a` (proto field 12), and an owner that derived nothing adopts it with
/// that origin: 6 requests, errors at 0 and 3: 2.
#[test]
fn an_owner_adopts_a_derived_journey_of_a_service_holding_a_colon() {
    let cfg = crate::config::Config::parse("auto_journeys:\n  max: 5\n", "t", &|_| None)
        .expect("a valid config");
    let journeys = Arc::new(Journeys::new(&cfg));
    let o = Owners::new(
        Layout {
            window_ns: WINDOWS.to_vec(),
            sub_buckets: 6,
            n_bounds: BOUNDS.len(),
            ttl_ns: 600 * S,
            max_dependencies: 2,
            max_versions: 2,
        },
        journeys.clone(),
        Arc::new(Telemetry::default()),
    );
    let mut m = crate::partial::decode(&message("svc:a:POST /checkout", 6)).expect("a partial");
    m.derived_service = "svc:a".into();
    o.assigned(&[0]);
    o.caught_up(&[0]);
    o.partial(0, &m.encode_to_vec());
    assert_eq!(o.tel.kafka.partials_refused.get(), 0);
    assert_eq!(requests(&o), (6 * UNIT, 2 * UNIT));
    let snap = o.snapshot(crate::clock::now_unix_ns()).shard;
    assert_eq!(
        snap.series[0].journey.origin,
        crate::journey::Origin::Derived {
            service: "svc:a".into(),
            span: "POST /checkout".into()
        }
    );
    assert_eq!(journeys.auto_count(), 1);
}

/// Owned versions expire as one instance's do: by `deployments.max_versions` only, never
/// by time (the `deployments` section has no ttl, and a worker's
/// [`crate::versions::VersionTable`] forgets a version only at that bound). A journey's
/// series expire after `windows.series_ttl` (600 s here) without partials; its versions
/// stay, so a deployment still pending after a quiet spell is judged against the same
/// counts on the owner as on one instance. By hand: v1 4 requests (1 error) at 100 s.
#[test]
fn owned_versions_outlive_the_series_ttl_as_a_workers_do() {
    let o = owners();
    o.assigned(&[0]);
    o.caught_up(&[0]);
    o.partial(0, &message("checkout", 3));
    o.partial(0, &version_message(&[("v1", 4, 1, 100)]));
    let later = crate::clock::now_unix_ns() + 601 * S;
    let snap = o.snapshot(later).shard;
    assert!(snap.series.is_empty(), "the series expired");
    let kept: Vec<_> = snap
        .versions
        .iter()
        .map(|v| (v.version.to_string(), v.counts.requests, v.counts.errors))
        .collect();
    assert_eq!(kept, [("v1".to_string(), 4 * UNIT, UNIT)]);
}
