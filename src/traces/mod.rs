//! Trace assembly, and what only a whole trace tells: which dependency calls a journey
//! request made, and whose fault a failed request was.
//!
//! Receivers turn every span into a fixed-size [`TraceSpan`] and route it by trace id
//! ([`worker_of`]), so each trace is assembled on one worker, without locks, in that
//! worker's [`Assembler`]. Entry spans are recorded into the journey series at once as
//! before; only the attribution of children waits. A trace is complete `traces.wait`
//! after its last span arrived; the buffer is bounded in bytes (oldest traces complete
//! first) and in spans per trace, each early completion counted by reason. A trace of
//! one span so far (nearly every trace at a high rate) waits in a ring in arrival order,
//! found through a compact index of one cache line a lookup; its second span moves it
//! to the table, slab and arrival queue that hold larger traces.
//!
//! On completion each span takes the journey of its nearest claimed ancestor. Calls
//! (CLIENT, PRODUCER, or any span with `db.system.name`/`db.system`) under a journey are
//! recorded into journey x dependency series ([`Dependencies`]); a failed journey
//! request is blamed on each distinct dependency whose call under it failed, or on
//! `self` when none did. Spans of a trace in which no journey claimed a span are orphans.
//!
//! Kafka stage 2 ([`Assembler::take_partials`]): each barrier moves the dependency
//! series' deltas out, after attributing every trace still in assembly as if it were
//! complete; a trace that gets spans after that is attributed again from all its spans
//! and only the difference is recorded, what no longer holds as a retraction. Without
//! Kafka stage 2 nothing is attributed before completion.

pub mod config;

use crate::internal_events::{InternalEvent, OrphanSpans, TracesEvicted};
use crate::journey::Journeys;
use crate::snapshot::{DependencySnap, DependencyWindow, SelfBlameSnap};
use crate::span::{clip, kind, status, AttrValue, SpanView, MAX_LABEL_VALUE_BYTES};
use crate::span_record::{flag, JourneyId, Record};
use crate::telemetry::{Evict, Telemetry};
use crate::window::{Blame, SeriesState};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// No journey claimed the span.
pub const NO_JOURNEY: JourneyId = JourneyId::MAX;

/// What a [`TraceSpan`] says about its span.
pub mod tflag {
    /// Failed: a claimed span by its journey's failure rule, any other by its status.
    pub const ERROR: u8 = 1;
    /// A call to a dependency; its name is in the text.
    pub const DEPENDENCY: u8 = 2;
}

/// One span as trace assembly keeps it: 64 bytes; a dependency's name lives in the
/// batch's (later the trace's) text.
#[derive(Debug, Clone, Copy)]
pub struct TraceSpan {
    pub trace: u128,
    pub span: u64,
    /// 0 for a root (or a parent id that is not 8 bytes).
    pub parent: u64,
    pub end_ns: u64,
    pub duration_ns: u64,
    /// The journey that claimed the span, or [`NO_JOURNEY`].
    pub journey: JourneyId,
    pub flags: u8,
    pub name: (u32, u32),
}

/// Bytes a buffered span costs: its node in the worker's slab.
const NODE_BYTES: usize = std::mem::size_of::<Node>();
/// A buffered trace's fixed cost in what the buffer holds: its table entry (key and
/// [`Trace`], 48 bytes) counted twice, since a hash table grows by doubling and so may
/// hold as much again in room. The room itself is counted by capacity ([`table_bytes`]).
const TRACE_BYTES: usize = 2 * std::mem::size_of::<(u128, Trace)>();
/// Bytes a bucket of the trace table takes: an entry and its control byte.
const BUCKET_BYTES: usize = std::mem::size_of::<(u128, Trace)>() + 1;

/// Bytes the trace table reserves once it has had room for `cap` traces: the standard
/// table (hashbrown) keeps a power of two of buckets, at most 7/8 of them in use (all
/// of them below 8), each an entry and a control byte, plus 16 control bytes more for
/// its group probes; it never gives them back when traces complete.
fn table_bytes(cap: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    let buckets = if cap < 8 { cap + 1 } else { cap * 8 / 7 }.next_power_of_two();
    buckets * BUCKET_BYTES + 16
}

/// What the table's capacity becomes when it outgrows `cap`: twice the buckets.
fn grown_capacity(cap: usize) -> usize {
    let buckets = if cap == 0 {
        2
    } else if cap < 8 {
        cap + 1
    } else {
        cap * 8 / 7
    }
    .next_power_of_two()
        * 2;
    if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    }
}
/// An arrival-order entry: one per trace and batch that brought it spans, until it
/// reaches the front of the queue (so a trace fed by many batches costs more).
const ORDER_BYTES: usize = std::mem::size_of::<(u64, u128)>();
/// The heap header of a trace's dependency names, made at its first call.
const NAMES_BYTES: usize = std::mem::size_of::<String>();
/// The end of a slab list.
const NIL: u32 = u32::MAX;

/// A trace's first span, in the lone-trace ring (arrival order) until a second span
/// moves it to the table or it completes. At a high rate nearly every trace is one
/// span: written and popped in order, it costs no cache miss where the table, the slab
/// and their free lists cost four (an insert, a free node, and at completion a removal
/// and the node's read, all at random places in megabytes).
#[derive(Debug, Clone, Copy)]
struct Lone {
    trace: u128,
    node: Node,
    arrival: u64,
    /// [`LIVE`], [`PUBLISHED`] or [`DEAD`].
    state: u8,
}

/// In the ring, not yet attributed.
const LIVE: u8 = 0;
/// Attributed into partials by a barrier ([`Assembler::take_partials`]): its completion
/// has nothing left to record.
const PUBLISHED: u8 = 1;
/// Moved to the table or completed early: its pop does nothing.
const DEAD: u8 = 2;
/// A ring record: 80 bytes.
const LONE_SIZE: usize = std::mem::size_of::<Lone>();
/// Index slots kept per ring record or table entry of room: a bucket is 8 slots, so
/// at most an eighth of them are in use (one trace a bucket on average), and a new
/// trace finds its bucket full (completing the bucket's oldest lone trace early) about
/// once in 100,000 (Poisson with mean 1: P(8 or more) = 1.0e-5). With 4 slots a record
/// (mean 2) it was once in 900.
const SLOTS_PER_RECORD: usize = 8;
/// The ring's least growth, in records: 64 (5,120 bytes and 4,096 of index), not the
/// slab's 1024, which with its index took 147,456 bytes of a 1 MiB buffer for one span.
const RING_STEP: usize = 64;
/// Slots in an index bucket: one 64-byte cache line.
const SLOTS: usize = 8;
/// Bytes a lone trace holds: its ring record and its share of the index.
const LONE_BYTES: usize = LONE_SIZE + SLOTS_PER_RECORD * 8;
/// Spans whose index buckets `add` reads together before handling them: the buckets'
/// cache misses overlap instead of following each other.
const LOOKAHEAD: usize = 16;

/// One cache line of the index: up to 8 lone traces, each `fingerprint << 32 | ring
/// sequence` (its low 32 bits); 0 is free. Traces in the table are not in it: 8 slots
/// a table entry of room took more memory than the entry (a third of the traces fit in
/// `tests/traces.rs`'s 1 MiB buffer), and with lone traces, where speed matters, the
/// table is empty and not looked at.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Bucket([u64; SLOTS]);

/// The index's hash of a trace id: its bucket is bits 32 and up, its fingerprint bits 1
/// to 31. The halves are folded first, so ids that differ by the same bits in both
/// halves hash alike: harmless (a fingerprint is confirmed by the full id, and a bucket
/// full of such ids completes its oldest lone trace early, counted), and the tests use
/// it to make collisions.
fn trace_hash(trace: u128, key: u64) -> u64 {
    let mut h = ((trace as u64) ^ ((trace >> 64) as u64) ^ key).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^= h >> 32;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// A trace's fingerprint in the index: 31 bits, never 0 (a free slot).
fn fingerprint(h: u64) -> u64 {
    u64::from(((h as u32) >> 1) | 1)
}

/// The fingerprint an index slot holds.
fn slot_fingerprint(e: u64) -> u64 {
    (e >> 32) & 0x7FFF_FFFF
}

/// A trace's bucket among `buckets` (a power of two, not 0).
fn bucket_of(h: u64, buckets: usize) -> usize {
    (h >> 32) as usize & (buckets - 1)
}

/// Bytes of the index for room for `records` ring records and table entries: a power
/// of two of 64-byte buckets, [`SLOTS_PER_RECORD`] slots a record.
fn index_bytes(records: usize) -> usize {
    if records == 0 {
        return 0;
    }
    (records * SLOTS_PER_RECORD)
        .div_ceil(SLOTS)
        .next_power_of_two()
        * std::mem::size_of::<Bucket>()
}

/// Where the index found a trace.
enum Place {
    /// In the ring at this position; its slot is (bucket, slot).
    Ring(usize, usize, usize),
    Map,
    New,
}

fn id_u64(b: &[u8]) -> u64 {
    b.try_into().map_or(0, u64::from_be_bytes)
}

fn id_u128(b: &[u8]) -> u128 {
    b.try_into().map_or(0, u128::from_be_bytes)
}

/// The trace id of a span as a number (0 when it is not 16 bytes).
pub fn trace_id_of<S: SpanView + ?Sized>(span: &S) -> u128 {
    id_u128(span.trace_id())
}

/// The worker that assembles a trace. The ids of W3C traces are random in their low
/// bytes, but hand-made ones often are not: both halves are mixed in. The mixed word is
/// scaled onto `0..workers` by a multiply-shift rather than a `%`: a 64-bit division
/// was a tenth of `push_trace`. It takes the product's high bits, the best mixed ones.
/// No workers gives worker 0, as before.
pub fn worker_of(trace: u128, workers: usize) -> usize {
    let mixed = ((trace as u64) ^ ((trace >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(mixed) * workers as u128) >> 64) as usize
}

/// Writes the name of the dependency `span` calls into `out` and returns true, or
/// returns false when the span is not a call. `db.*` keys name `db.system.name/db.namespace`.
pub fn dependency_name<S: SpanView + ?Sized>(span: &S, keys: &[String], out: &mut String) -> bool {
    let db = span
        .span_attr("db.system.name")
        .or_else(|| span.span_attr("db.system"));
    if !matches!(span.kind(), kind::CLIENT | kind::PRODUCER) && db.is_none() {
        return false;
    }
    let start = out.len();
    for key in keys {
        let Some(v) = span.span_attr(key) else {
            continue;
        };
        if matches!(v, AttrValue::Other) {
            continue;
        }
        v.write_to(out);
        if key.starts_with("db.system") {
            let ns = span
                .span_attr("db.namespace")
                .or_else(|| span.span_attr("db.name"));
            if let Some(ns) = ns {
                out.push('/');
                ns.write_to(out);
            }
        }
        if out.len() > start {
            let kept = clip(&out[start..], MAX_LABEL_VALUE_BYTES).len();
            out.truncate(start + kept);
            return true;
        }
    }
    out.push_str(UNKNOWN_DEPENDENCY);
    true
}

/// The name of a call none of `dependencies.keys` names.
pub const UNKNOWN_DEPENDENCY: &str = "unknown";
/// The blame of a failed request with no failed call under it.
pub const SELF: &str = "self";

/// The trace record of a span; `journey` and `failed` come from classification.
/// Appends the dependency name, if any, to `text`.
pub fn trace_span<S: SpanView + ?Sized>(
    span: &S,
    journey: Option<(JourneyId, bool)>,
    end_ns: u64,
    keys: &[String],
    text: &mut String,
) -> TraceSpan {
    let (journey, failed) = match journey {
        Some((j, failed)) => (j, failed),
        None => (NO_JOURNEY, span.status_code() == status::ERROR),
    };
    let mut flags = if failed { tflag::ERROR } else { 0 };
    let start = text.len() as u32;
    // A claimed span is a journey request, never a call of its own journey.
    if journey == NO_JOURNEY && dependency_name(span, keys, text) {
        flags |= tflag::DEPENDENCY;
    }
    TraceSpan {
        trace: trace_id_of(span),
        span: id_u64(span.span_id()),
        parent: id_u64(span.parent_span_id()),
        end_ns,
        duration_ns: span.end_ns().saturating_sub(span.start_ns()),
        journey,
        flags,
        name: (start, text.len() as u32),
    }
}

/// A call as its dependency series records it.
fn call_record(journey: JourneyId, s: &Node) -> Record {
    Record {
        hash: 0,
        has_version: false,
        journey,
        first_value: 0,
        n_values: 0,
        flags: if s.flags & tflag::ERROR != 0 {
            flag::ERROR
        } else {
            0
        },
        end_ns: s.end_ns,
        duration_ns: s.duration_ns,
        user: 0,
        value: 0.0,
        // Dependency series keep no exemplars.
        trace_id: [0; 16],
        span_id: [0; 8],
        event: 0,
        // Calls count as one each: the trace buffer keeps no trace state per span.
        weight: crate::sampling::UNIT,
    }
}

/// The figures of the assembly buffer, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub wait_ns: u64,
    /// This worker's share of `traces.max_bytes`.
    pub max_bytes: usize,
    pub max_spans: usize,
    pub max_dependencies: usize,
    pub window_ns: Vec<u64>,
    pub sub_buckets: u32,
    pub bounds_ns: Vec<u64>,
    pub ttl_ns: u64,
}

/// A buffered span: a [`TraceSpan`] without its trace id (the key of its trace), in the
/// worker's slab, linked to the next span of its trace. 48 bytes instead of 64, and no
/// vector per trace: most traces at a high rate are one entry span, which then costs a
/// table entry, a node and an order entry, and no allocation.
#[derive(Debug, Clone, Copy)]
struct Node {
    span: u64,
    parent: u64,
    end_ns: u64,
    duration_ns: u64,
    journey: JourneyId,
    /// The next span of the trace, or the next free node; [`NIL`] at the end.
    next: u32,
    /// The dependency name in the trace's names: start and length (at most
    /// [`MAX_LABEL_VALUE_BYTES`]).
    name_start: u32,
    name_len: u16,
    flags: u8,
}

impl Node {
    fn name<'a>(&self, names: &'a str) -> &'a str {
        let start = self.name_start as usize;
        names
            .get(start..start + self.name_len as usize)
            .unwrap_or("")
    }
}

/// A trace in assembly: its spans are a list in the slab, in arrival order.
#[derive(Debug)]
struct Trace {
    head: u32,
    tail: u32,
    len: u32,
    /// Spans already attributed into partials ([`Assembler::take_partials`]): the first
    /// `published` of the list, 0 until then (always 0 without Kafka stage 2).
    published: u32,
    last_arrival: u64,
    /// Names of its dependency calls; most traces at a high rate have none. Boxed: 8
    /// bytes in the table entry instead of a String's 24, paid only by traces with calls.
    #[allow(clippy::box_collection)]
    names: Option<Box<String>>,
}

impl Trace {
    /// Heap bytes of the names: what the string holds (capacity, since it grows by
    /// doubling and the buffer's bound is about memory) and its header.
    fn names_bytes(&self) -> usize {
        self.names
            .as_ref()
            .map_or(0, |n| NAMES_BYTES + n.capacity())
    }
}

struct DepSeries {
    journey: JourneyId,
    seed: u64,
    name: Arc<str>,
    key: u64,
    state: SeriesState,
    blame: Blame,
}

impl DepSeries {
    fn idle(&self, now: u64, ttl: u64) -> bool {
        let last = self.state.last_update_unix_ns.max(self.blame.last_unix_ns);
        now.saturating_sub(last) >= ttl
    }
}

/// One thing attribution found in a trace; indexes are into the trace's spans.
#[derive(Debug, Clone, Copy)]
enum Contrib {
    /// A call (span `call`) under a request of `journey`.
    Call { journey: JourneyId, call: u32 },
    /// Failed request `req` blamed on the dependency of its failed call `call`.
    Blame {
        journey: JourneyId,
        req: u32,
        call: u32,
    },
    /// Failed request `req` with no failed call under it.
    SelfBlame { journey: JourneyId, req: u32 },
}

impl Contrib {
    /// Equal for the same finding in two attributions of one trace's first spans.
    fn key<'a>(&self, spans: &[Node], names: &'a str) -> (u8, JourneyId, u32, &'a str) {
        match *self {
            Contrib::Call { journey, call } => (0, journey, call, ""),
            Contrib::Blame { journey, req, call } => {
                (1, journey, req, spans[call as usize].name(names))
            }
            Contrib::SelfBlame { journey, req } => (2, journey, req, ""),
        }
    }
}

/// What this worker took back since the last take, for one dependency series (or, with
/// `self_blame`, for the journey's own blame): calls and blame published for a trace
/// whose attribution changed when more of its spans came (Kafka stage 2).
struct Minus {
    journey: JourneyId,
    name: Arc<str>,
    overflow: bool,
    self_blame: bool,
    calls: SeriesState,
    blame: Blame,
}

/// Admission of dependency series, shared by the workers: a dependency of a journey
/// may be held by several workers, and takes one of the journey's slots while any does.
#[derive(Default)]
pub struct DependencyAdmission {
    /// (journey seed, name) key -> workers holding it.
    holders: dashmap::DashMap<u64, usize>,
    /// Journey seed -> distinct dependencies admitted.
    per_journey: dashmap::DashMap<u64, usize>,
}

impl DependencyAdmission {
    fn admit(&self, seed: u64, key: u64, max: usize) -> bool {
        if let Some(mut h) = self.holders.get_mut(&key) {
            *h += 1;
            return true;
        }
        let mut count = self.per_journey.entry(seed).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        drop(count);
        *self.holders.entry(key).or_insert(0) += 1;
        true
    }

    fn release(&self, seed: u64, key: u64) {
        let gone = match self.holders.get_mut(&key) {
            Some(mut h) => {
                *h = h.saturating_sub(1);
                *h == 0
            }
            None => false,
        };
        if gone {
            self.holders.remove(&key);
            if let Some(mut c) = self.per_journey.get_mut(&seed) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

/// One worker's traces in assembly and the dependency state they feed.
pub struct Assembler {
    settings: Arc<Settings>,
    admission: Arc<DependencyAdmission>,
    tel: Arc<Telemetry>,
    traces: HashMap<u128, Trace, ahash::RandomState>,
    /// The table's largest capacity yet: what it reserves (its `capacity()` drops below
    /// that while removed entries leave tombstones, its buckets do not).
    table_cap: usize,
    /// The spans of every trace in assembly, and free nodes (a list from `free`).
    nodes: Vec<Node>,
    free: u32,
    /// (last arrival, trace) in arrival order; entries of traces that got more spans
    /// since are stale and skipped.
    order: VecDeque<(u64, u128)>,
    /// Lone traces in arrival order; the front's sequence number is `ring_head`.
    ring: VecDeque<Lone>,
    ring_head: u64,
    /// The ring could not grow once: the room only shrinks (nothing gives its
    /// capacity back), so it never will, and a full ring pops at once without working
    /// that out again for every new trace.
    ring_bounded: bool,
    /// Trace id -> ring record: see [`Bucket`]. A slot whose sequence is
    /// before `ring_head` is free, so popping the ring needs no index write.
    lookup: Vec<Bucket>,
    /// Whether a new trace starts in the ring (the last batch brought more new traces
    /// than spans of known ones) or in the table. Where traces have several spans, a
    /// first span in the ring is moved to the table at the second, and every later span
    /// reads an index bucket before the table: both wasted. Set at the end of each batch.
    lone_first: bool,
    /// Mixed into [`trace_hash`]; random per assembler.
    key: u64,
    bytes: usize,
    hasher: ahash::RandomState,
    deps: HashMap<u64, Vec<DepSeries>>,
    overflow: HashMap<JourneyId, DepSeries>,
    self_blame: HashMap<JourneyId, (u64, Blame)>,
    /// Retractions since the last take; bounded by the dependency series (one per series
    /// and one per journey's own blame).
    minus: Vec<Minus>,
    /// When [`Assembler::take_partials`] last ran (the arrival clock).
    last_take: u64,
    // Scratch of the completion, reused.
    spans: Vec<Node>,
    contribs: Vec<Contrib>,
    old: Vec<Contrib>,
    index: Vec<(u64, u32)>,
    owner: Vec<u32>,
    path: Vec<u32>,
    failed: Vec<(u32, u32)>,
}

const UNSET: u32 = u32::MAX;
const NONE: u32 = u32::MAX - 1;

impl Assembler {
    pub fn new(
        settings: Arc<Settings>,
        admission: Arc<DependencyAdmission>,
        tel: Arc<Telemetry>,
    ) -> Assembler {
        Assembler {
            settings,
            admission,
            tel,
            traces: HashMap::with_hasher(ahash::RandomState::new()),
            table_cap: 0,
            nodes: Vec::new(),
            free: NIL,
            order: VecDeque::new(),
            ring: VecDeque::new(),
            ring_head: 0,
            ring_bounded: false,
            lookup: Vec::new(),
            lone_first: true,
            key: ahash::RandomState::new().hash_one(0u64),
            bytes: 0,
            hasher: ahash::RandomState::with_seeds(3, 5, 7, 9),
            deps: HashMap::new(),
            overflow: HashMap::new(),
            self_blame: HashMap::new(),
            minus: Vec::new(),
            last_take: 0,
            spans: Vec::new(),
            contribs: Vec::new(),
            old: Vec::new(),
            index: Vec::new(),
            owner: Vec::new(),
            path: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Bytes of spans buffered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Buffers the spans of one batch (names in `text`); completes traces that reach
    /// the span limit, the oldest when the slab, the ring or the arrival queue needs
    /// room it does not have, then the oldest while the buffer is over its bytes.
    pub fn add(&mut self, spans: &[TraceSpan], text: &str, journeys: &Journeys, now: u64) {
        let mut evicted = 0u64;
        // Spans of new traces and of known ones in this batch: see `lone_first`.
        let (mut fresh, mut known) = (0usize, 0usize);
        for chunk in spans.chunks(LOOKAHEAD) {
            self.touch(chunk);
            for s in chunk {
                let h = trace_hash(s.trace, self.key);
                let name = text.get(s.name.0 as usize..s.name.1 as usize).unwrap_or("");
                let node = Node {
                    span: s.span,
                    parent: s.parent,
                    end_ns: s.end_ns,
                    duration_ns: s.duration_ns,
                    journey: s.journey,
                    next: NIL,
                    name_start: 0,
                    name_len: 0,
                    flags: s.flags,
                };
                match self.locate(s.trace, h) {
                    Place::New => {
                        fresh += 1;
                        // A call's name needs the table's per-trace names; a limit of one
                        // span completes the trace at once.
                        if self.lone_first
                            && name.is_empty()
                            && self.settings.max_spans > 1
                            && self.push_lone(s.trace, node, h, journeys, now, &mut evicted)
                        {
                            continue;
                        }
                    }
                    Place::Ring(bucket, slot, pos) => {
                        known += 1;
                        // Its second span: the first moves to the table and the trace goes
                        // on there. Taken out of the ring before anything can evict.
                        self.lookup[bucket].0[slot] = 0;
                        let first = if pos + 1 == self.ring.len() {
                            // Most often the span before in the same batch: no dead record.
                            self.bytes = self.bytes.saturating_sub(LONE_BYTES);
                            self.ring.pop_back()
                        } else {
                            self.ring.get_mut(pos).map(|r| {
                                let first = *r;
                                r.state = DEAD;
                                first
                            })
                        };
                        if let Some(r) = first {
                            self.add_to_map(r.trace, r.node, "", journeys, now, &mut evicted);
                            if r.state == PUBLISHED {
                                if let Some(t) = self.traces.get_mut(&r.trace) {
                                    t.published = 1;
                                }
                            }
                        }
                    }
                    Place::Map => known += 1,
                }
                self.add_to_map(s.trace, node, name, journeys, now, &mut evicted);
            }
        }
        if fresh + known > 0 {
            self.lone_first = fresh > known;
        }
        // Bounded by the queue and the ring: each turn removes one entry.
        while self.bytes > self.settings.max_bytes {
            match self.pop_oldest(journeys, now) {
                Some(done) => evicted += u64::from(done),
                None => break,
            }
        }
        if evicted > 0 {
            TracesEvicted {
                reason: Evict::Memory,
                traces: evicted,
            }
            .emit(&self.tel);
        }
    }

    /// Reads the index buckets of a chunk of spans one after the other before any is
    /// used, so their cache misses overlap instead of each stalling its span in turn.
    /// A plain read, not `_mm_prefetch` (it still needs `unsafe`, which the crate
    /// forbids); read span by span, 8 spans ahead, the read stalled like the lookup it
    /// was meant to hide (91% of `add`'s samples on it).
    #[inline]
    fn touch(&self, chunk: &[TraceSpan]) {
        // An empty ring (traces of several spans: see `lone_first`) has no live slot.
        if self.lookup.is_empty() || self.ring.is_empty() {
            return;
        }
        let n = self.lookup.len();
        let mut x = 0u64;
        for s in chunk {
            x ^= self.lookup[bucket_of(trace_hash(s.trace, self.key), n)].0[0];
        }
        std::hint::black_box(x);
    }

    /// Where trace `trace` (hash `h`) is: one bucket read, and the ring record of a
    /// matching fingerprint to confirm it (a miss only for a trace's second span); the
    /// table is probed only when it holds traces.
    fn locate(&self, trace: u128, h: u64) -> Place {
        if !self.lookup.is_empty() && !self.ring.is_empty() {
            let bucket = bucket_of(h, self.lookup.len());
            let fp = fingerprint(h);
            for (slot, &e) in self.lookup[bucket].0.iter().enumerate() {
                if slot_fingerprint(e) != fp {
                    continue;
                }
                let pos = (e as u32).wrapping_sub(self.ring_head as u32) as usize;
                if let Some(r) = self.ring.get(pos) {
                    if r.state != DEAD && r.trace == trace {
                        return Place::Ring(bucket, slot, pos);
                    }
                }
            }
        }
        // Not indexed: 8 slots a table entry of room came to more than the entry, and
        // with lone traces (the case that matters for speed) the table is empty.
        if !self.traces.is_empty() && self.traces.contains_key(&trace) {
            Place::Map
        } else {
            Place::New
        }
    }

    /// Puts the index slot `e` of hash `h` in its bucket: in a free slot, else in one
    /// whose ring record is gone, else in that of the bucket's oldest lone trace, which
    /// completes early (counted in `evicted`). False when there is no index yet.
    fn index_put(
        &mut self,
        h: u64,
        e: u64,
        journeys: &Journeys,
        now: u64,
        evicted: &mut u64,
    ) -> bool {
        if self.lookup.is_empty() {
            return false;
        }
        let bucket = bucket_of(h, self.lookup.len());
        let head = self.ring_head as u32;
        let len = self.ring.len() as u32;
        // Free, or before the ring's head: no ring read.
        let b = &mut self.lookup[bucket].0;
        if let Some(slot) = b
            .iter_mut()
            .find(|old| **old == 0 || (**old as u32).wrapping_sub(head) >= len)
        {
            *slot = e;
            return true;
        }
        // Full: a slot that names a record of another fingerprint (a sequence number
        // 2^32 pushes old) or a dead one is free too; else the oldest lone trace goes.
        let mut oldest: Option<(usize, usize)> = None;
        for slot in 0..SLOTS {
            let old = self.lookup[bucket].0[slot];
            let pos = (old as u32).wrapping_sub(head) as usize;
            let Some(r) = self.ring.get(pos) else {
                continue;
            };
            if r.state == DEAD
                || fingerprint(trace_hash(r.trace, self.key)) != slot_fingerprint(old)
            {
                self.lookup[bucket].0[slot] = e;
                return true;
            }
            if oldest.is_none_or(|(_, p)| pos < p) {
                oldest = Some((slot, pos));
            }
        }
        let Some((slot, pos)) = oldest else {
            return false;
        };
        if let Some(r) = self.ring.get_mut(pos) {
            let gone = *r;
            r.state = DEAD;
            self.finish_lone(&gone, journeys, now);
            *evicted += 1;
        }
        self.lookup[bucket].0[slot] = e;
        true
    }

    /// Appends a new trace's first span to the ring and the index; false (nothing
    /// done) when the index has no slot for it.
    fn push_lone(
        &mut self,
        trace: u128,
        node: Node,
        h: u64,
        journeys: &Journeys,
        now: u64,
        evicted: &mut u64,
    ) -> bool {
        if self.ring.len() == self.ring.capacity() {
            // Once the ring is bounded (at an unlimited rate, for nearly every new trace)
            // the common turn is one completion that frees a place: done here, without
            // the call and the growth arithmetic of `grow_ring`, which takes every other
            // case (the oldest arrival was in the queue, or nothing was left to complete).
            let popped = if self.ring_bounded {
                self.pop_oldest(journeys, now)
            } else {
                None
            };
            if let Some(done) = popped {
                *evicted += u64::from(done);
            }
            if self.ring.len() == self.ring.capacity() {
                self.grow_ring(journeys, now, evicted);
            }
        }
        let seq = self.ring_head + self.ring.len() as u64;
        let e = (fingerprint(h) << 32) | u64::from(seq as u32);
        if !self.index_put(h, e, journeys, now, evicted) {
            return false;
        }
        self.ring.push_back(Lone {
            trace,
            node,
            arrival: now,
            state: LIVE,
        });
        self.bytes += LONE_BYTES;
        true
    }

    /// The ring is full: grows it (and the index with it) by doubling as long as the
    /// room allows, in steps of at least [`RING_STEP`] records, else completes the oldest traces
    /// until one leaves the ring; past the bound only when nothing is left to complete.
    /// Not cold: at an unlimited rate the ring is full and every new trace comes here.
    #[inline(never)]
    fn grow_ring(&mut self, journeys: &Journeys, now: u64, evicted: &mut u64) {
        let cap = self.ring.capacity();
        let cost = |step: usize| {
            step * LONE_SIZE
                + index_bytes(cap + step)
                    .saturating_sub(self.lookup.len() * std::mem::size_of::<Bucket>())
        };
        let mut step = 0;
        if !self.ring_bounded {
            let room = self.room();
            step = self.ring.len().max(RING_STEP);
            while step >= RING_STEP && cost(step) > room {
                step /= 2;
            }
            self.ring_bounded = step < RING_STEP;
        }
        if step < RING_STEP {
            // Bounded by the ring and the queue: each turn removes one entry.
            while self.ring.len() == self.ring.capacity() {
                match self.pop_oldest(journeys, now) {
                    Some(done) => *evicted += u64::from(done),
                    None => {
                        step = RING_STEP;
                        break;
                    }
                }
            }
            if step < RING_STEP {
                return;
            }
        }
        self.ring.reserve_exact(step);
        self.ensure_index(journeys, now, evicted);
    }

    /// Rebuilds the index larger when the ring outgrew it.
    fn ensure_index(&mut self, journeys: &Journeys, now: u64, evicted: &mut u64) {
        let want = index_bytes(self.ring.capacity()) / std::mem::size_of::<Bucket>();
        if want <= self.lookup.len() {
            return;
        }
        self.lookup = vec![Bucket([0; SLOTS]); want];
        for pos in 0..self.ring.len() {
            let Some(r) = self.ring.get(pos).copied() else {
                break;
            };
            if r.state == DEAD {
                continue;
            }
            let h = trace_hash(r.trace, self.key);
            let seq = self.ring_head + pos as u64;
            // A full bucket completes its oldest: a slot is always found.
            self.index_put(
                h,
                (fingerprint(h) << 32) | u64::from(seq as u32),
                journeys,
                now,
                evicted,
            );
        }
    }

    /// What a lone span records when its trace completes: what `attribute` does with
    /// one span, without a scratch slice. A claimed span is never a call of its own, so
    /// it can only blame itself; a published one has nothing left to record.
    fn finish_lone(&mut self, r: &Lone, journeys: &Journeys, now: u64) {
        if r.state != LIVE {
            return;
        }
        if r.node.journey == NO_JOURNEY {
            OrphanSpans { spans: 1 }.emit(&self.tel);
        } else if r.node.flags & tflag::ERROR != 0 {
            self.blame_self(r.node.journey, r.node.end_ns, journeys, now);
        }
    }

    /// Pops the ring's oldest record and completes its trace if it was still there
    /// (true); None when the ring is empty.
    fn pop_lone(&mut self, journeys: &Journeys, now: u64) -> Option<bool> {
        let r = self.ring.pop_front()?;
        self.ring_head += 1;
        self.bytes = self.bytes.saturating_sub(LONE_BYTES);
        self.finish_lone(&r, journeys, now);
        Some(r.state != DEAD)
    }

    /// Buffers one span in the table.
    #[inline]
    fn add_to_map(
        &mut self,
        trace: u128,
        node: Node,
        name: &str,
        journeys: &Journeys,
        now: u64,
        evicted: &mut u64,
    ) {
        let node = self.alloc(node, journeys, now, evicted);
        self.bytes += NODE_BYTES;
        if self.traces.len() >= self.traces.capacity() && !self.traces.contains_key(&trace) {
            self.grow_table(journeys, now, evicted);
        }
        let (t, fresh) = match self.traces.entry(trace) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let t = e.into_mut();
                self.nodes[t.tail as usize].next = node;
                t.tail = node;
                t.len += 1;
                (t, false)
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                self.bytes += TRACE_BYTES;
                let t = e.insert(Trace {
                    head: node,
                    tail: node,
                    len: 1,
                    published: 0,
                    last_arrival: now,
                    names: None,
                });
                (t, true)
            }
        };
        if !name.is_empty() {
            let held = t.names_bytes();
            let names = t.names.get_or_insert_with(Box::default);
            let n = &mut self.nodes[node as usize];
            n.name_start = names.len() as u32;
            // Names are clipped to MAX_LABEL_VALUE_BYTES when made.
            n.name_len = name.len().min(u16::MAX as usize) as u16;
            names.push_str(name);
            self.bytes += t.names_bytes() - held;
        }
        let arrived = t.last_arrival != now || fresh;
        if arrived {
            t.last_arrival = now;
        }
        let full = t.len as usize >= self.settings.max_spans;
        if fresh {
            // Its largest capacity is what it reserves: see `table_cap`.
            self.table_cap = self.table_cap.max(self.traces.capacity());
        }
        if arrived {
            // Cannot complete this trace: its older entries are stale now.
            self.push_order(now, trace, journeys, evicted);
            self.bytes += ORDER_BYTES;
        }
        if full && self.complete(trace, journeys, now) {
            TracesEvicted {
                reason: Evict::MaxSpans,
                traces: 1,
            }
            .emit(&self.tel);
        }
    }

    /// Completes every trace whose last span arrived `traces.wait` ago or more.
    pub fn tick(&mut self, journeys: &Journeys, now: u64) {
        while let Some(r) = self.ring.front() {
            if r.arrival.saturating_add(self.settings.wait_ns) > now {
                break;
            }
            self.pop_lone(journeys, now);
        }
        while let Some(&(at, id)) = self.order.front() {
            if at.saturating_add(self.settings.wait_ns) > now {
                break;
            }
            self.order.pop_front();
            self.bytes = self.bytes.saturating_sub(ORDER_BYTES);
            self.complete_if_last(id, at, journeys, now);
        }
    }

    /// Completes every trace: at shutdown nothing buffered is lost.
    pub fn flush(&mut self, journeys: &Journeys, now: u64) {
        // Bounded by the ring: each turn pops one record.
        while self.pop_lone(journeys, now).is_some() {}
        let ids: Vec<u128> = self.traces.keys().copied().collect();
        for id in ids {
            self.complete(id, journeys, now);
        }
        self.bytes = self.bytes.saturating_sub(self.order.len() * ORDER_BYTES);
        self.order.clear();
        self.lookup.fill(Bucket([0; SLOTS]));
    }

    /// Journey ids after a config reload: buffered spans of journeys that went become
    /// unclaimed, dependency state of such journeys is dropped.
    pub fn remap(&mut self, map: &dyn Fn(JourneyId) -> Option<JourneyId>) {
        for r in self.ring.iter_mut() {
            if r.node.journey != NO_JOURNEY {
                r.node.journey = map(r.node.journey).unwrap_or(NO_JOURNEY);
            }
        }
        for t in self.traces.values() {
            let mut at = t.head;
            // Bounded by the trace's length: its list has no cycle.
            for _ in 0..t.len {
                let Some(s) = self.nodes.get_mut(at as usize) else {
                    break;
                };
                if s.journey != NO_JOURNEY {
                    s.journey = map(s.journey).unwrap_or(NO_JOURNEY);
                }
                at = s.next;
            }
        }
        let admission = &self.admission;
        self.deps.retain(|_, list| {
            list.retain_mut(|d| match map(d.journey) {
                Some(new) => {
                    d.journey = new;
                    true
                }
                None => {
                    admission.release(d.seed, d.key);
                    false
                }
            });
            !list.is_empty()
        });
        self.overflow = std::mem::take(&mut self.overflow)
            .into_values()
            .filter_map(|mut d| {
                map(d.journey).map(|new| {
                    d.journey = new;
                    (new, d)
                })
            })
            .collect();
        self.self_blame = std::mem::take(&mut self.self_blame)
            .into_iter()
            .filter_map(|(j, b)| map(j).map(|new| (new, b)))
            .collect();
    }

    /// A node for a new span: a free one, else a new one at the slab's end, which may
    /// first complete the oldest traces (counted in `evicted`) to stay within the room.
    fn alloc(&mut self, n: Node, journeys: &Journeys, now: u64, evicted: &mut u64) -> u32 {
        if self.free == NIL && self.nodes.len() == self.nodes.capacity() {
            self.grow_nodes(journeys, now, evicted);
        }
        if let Some(slot) = self.nodes.get_mut(self.free as usize) {
            let at = self.free;
            self.free = slot.next;
            *slot = n;
            return at;
        }
        let len = self.nodes.len();
        self.nodes.push(n);
        len as u32
    }

    /// Bytes of `traces.max_bytes` that growing the slab or the arrival queue may still
    /// take. Both keep their room after the traces in them complete (a node goes to the
    /// free list, a popped entry leaves a hole in the ring), so the process's memory
    /// follows their largest size, not what they hold now: counting only what they hold,
    /// a run whose traces went from many spans (a full slab) to many batches each (a full
    /// queue) held the bound in each, 1.5 times it in all. The trace table is counted by
    /// its buckets for the same reason: with lone traces (a new trace id in each request)
    /// it doubled past what twice its entries came to.
    fn room(&self) -> usize {
        let held = self.nodes.capacity() * NODE_BYTES
            + self.order.capacity() * ORDER_BYTES
            + table_bytes(self.table_cap)
            + self.ring.capacity() * LONE_SIZE
            + self.lookup.len() * std::mem::size_of::<Bucket>();
        self.settings.max_bytes.saturating_sub(held)
    }

    /// A new trace is about to fill the table's room: it would double (all entries moved
    /// to a new table while the old one still exists) unless half of its room or less is
    /// in use, when it only clears its tombstones in place. Lets it double when the new
    /// table fits in the room beside the old one, else completes the oldest traces until
    /// the new one fits without either.
    #[cold]
    #[inline(never)]
    fn grow_table(&mut self, journeys: &Journeys, now: u64, evicted: &mut u64) {
        self.table_cap = self.table_cap.max(self.traces.capacity());
        if self.traces.len() < self.table_cap / 2
            || table_bytes(grown_capacity(self.table_cap)) <= self.room()
        {
            return;
        }
        // Bounded by the arrival queue: each turn removes one entry.
        while self.traces.len() >= self.traces.capacity() && self.traces.len() >= self.table_cap / 2
        {
            match self.pop_oldest(journeys, now) {
                Some(done) => *evicted += u64::from(done),
                None => return,
            }
        }
    }

    /// The slab is full and nothing is free: grows it by doubling as long as the room
    /// allows (in steps of at least 1024 nodes), else completes the oldest traces until
    /// one frees a node. Grows by 1024 past the bound only when nothing is left to
    /// complete (one trace larger than the bound).
    #[cold]
    #[inline(never)]
    fn grow_nodes(&mut self, journeys: &Journeys, now: u64, evicted: &mut u64) {
        let len = self.nodes.len();
        let step = len.max(1024).min(self.room() / NODE_BYTES);
        if step >= 1024 {
            self.nodes.reserve_exact(step);
            return;
        }
        // Bounded by the arrival queue: each turn removes one entry.
        while self.free == NIL {
            match self.pop_oldest(journeys, now) {
                Some(done) => *evicted += u64::from(done),
                None => {
                    self.nodes.reserve_exact(1024);
                    return;
                }
            }
        }
    }

    /// Appends an arrival, growing the queue as [`Assembler::grow_nodes`] grows the slab;
    /// when the room is taken the oldest entry makes way (its trace completes if that
    /// was its latest arrival).
    fn push_order(&mut self, at: u64, id: u128, journeys: &Journeys, evicted: &mut u64) {
        if self.order.len() == self.order.capacity() {
            let step = self.order.len().max(1024).min(self.room() / ORDER_BYTES);
            if step >= 1024 {
                self.order.reserve_exact(step);
            } else if let Some(done) = self.pop_oldest(journeys, at) {
                *evicted += u64::from(done);
            }
        }
        self.order.push_back((at, id));
    }

    /// Removes the oldest arrival and completes its trace when that was the trace's
    /// latest (true); None when the queue is empty.
    fn pop_oldest(&mut self, journeys: &Journeys, now: u64) -> Option<bool> {
        let ring_first = match (self.ring.front(), self.order.front()) {
            (Some(r), Some(o)) => r.arrival <= o.0,
            (r, _) => r.is_some(),
        };
        if ring_first {
            return self.pop_lone(journeys, now);
        }
        let (at, id) = self.order.pop_front()?;
        self.bytes = self.bytes.saturating_sub(ORDER_BYTES);
        Some(self.complete_if_last(id, at, journeys, now))
    }

    /// Completes trace `id`; false when it is not buffered.
    fn complete(&mut self, id: u128, journeys: &Journeys, now: u64) -> bool {
        let Some(t) = self.traces.remove(&id) else {
            return false;
        };
        self.finish(t, journeys, now);
        true
    }

    /// Completes trace `id` when the order entry `at` is its latest (else the entry is
    /// stale: the trace got spans since and has a later entry). One probe of the table:
    /// at an unlimited rate every lone trace is evicted here, from a table larger than
    /// the cache, so a lookup then a removal paid the hashing and probing twice. A stale
    /// entry's trace is put back (a second probe, only for traces fed by several
    /// batches). Not `entry()`: a second caller of it made the compiler stop inlining
    /// it into `add`, which cost every span more than the probe saved.
    fn complete_if_last(&mut self, id: u128, at: u64, journeys: &Journeys, now: u64) -> bool {
        let Some(t) = self.traces.remove(&id) else {
            return false;
        };
        if t.last_arrival != at {
            self.traces.insert(id, t);
            return false;
        }
        self.finish(t, journeys, now);
        true
    }

    fn finish(&mut self, t: Trace, journeys: &Journeys, now: u64) {
        self.bytes = self
            .bytes
            .saturating_sub(TRACE_BYTES + t.names_bytes() + t.len as usize * NODE_BYTES);
        if t.len == 1 && t.published == 0 {
            // A lone span (nearly every trace at a high rate) not yet attributed into
            // partials: what `attribute` does with one span, without copying it to the
            // scratch slice or scanning that. A claimed span is never a call of its own,
            // so it can only blame itself. (A published one has nothing left to record.)
            let Some(n) = self.nodes.get_mut(t.head as usize) else {
                return;
            };
            let s = *n;
            n.next = self.free;
            self.free = t.head;
            if s.journey == NO_JOURNEY {
                OrphanSpans { spans: 1 }.emit(&self.tel);
            } else if s.flags & tflag::ERROR != 0 {
                self.blame_self(s.journey, s.end_ns, journeys, now);
            }
            return;
        }
        // The spans move to a scratch slice (attribution indexes them) and their nodes
        // back to the free list.
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        let mut at = t.head;
        for _ in 0..t.len {
            let Some(n) = self.nodes.get_mut(at as usize) else {
                break;
            };
            spans.push(*n);
            let next = n.next;
            n.next = self.free;
            self.free = at;
            at = next;
        }
        let names = t.names.as_deref().map_or("", |n| n.as_str());
        let published = (t.published as usize).min(spans.len());
        if published == 0 {
            self.attribute(&spans, names, journeys, now);
        } else if published < spans.len() {
            self.reattribute(&spans, published, names, journeys, now);
        }
        // All of it published already: nothing changed since.
        self.spans = spans;
    }

    /// Kafka stage 2, at each barrier: attributes every trace that got spans since its
    /// last attribution as if it were complete now, so its calls and blame travel in this
    /// barrier's partials with the offsets of its spans, and a crash after the commit
    /// loses none of them. The trace stays buffered; when it completes, or gets more spans
    /// before the next barrier, only the difference is recorded (a retraction for what no
    /// longer holds). A trace no journey claimed yet is left for later: it may never be.
    fn attribute_pending(&mut self, journeys: &Journeys, now: u64) {
        // Only traces that got spans since the last take can have anything new: their
        // arrivals are the tail of the arrival queue, so a take costs what arrived, not
        // what is buffered.
        let since = std::mem::replace(&mut self.last_take, now);
        // Lone traces: a claimed one is published as a trace of one span.
        for pos in (0..self.ring.len()).rev() {
            let Some(r) = self.ring.get_mut(pos) else {
                break;
            };
            if r.arrival < since {
                break;
            }
            if r.state != LIVE || r.node.journey == NO_JOURNEY {
                continue;
            }
            r.state = PUBLISHED;
            let node = r.node;
            self.attribute(std::slice::from_ref(&node), "", journeys, now);
        }
        let mut ids: Vec<u128> = self
            .order
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .map(|(_, id)| *id)
            .filter(|id| self.traces.get(id).is_some_and(|t| t.len > t.published))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut spans = std::mem::take(&mut self.spans);
        for id in ids {
            let Some(t) = self.traces.get_mut(&id) else {
                continue;
            };
            spans.clear();
            let mut at = t.head;
            for _ in 0..t.len {
                let Some(n) = self.nodes.get(at as usize) else {
                    break;
                };
                spans.push(*n);
                at = n.next;
            }
            if !spans.iter().any(|s| s.journey != NO_JOURNEY) {
                continue;
            }
            let published = (t.published as usize).min(spans.len());
            t.published = spans.len() as u32;
            // Taken out for the attribution (which borrows the assembler) and put back.
            let names = t.names.take();
            let text = names.as_deref().map_or("", |n| n.as_str());
            if published == 0 {
                self.attribute(&spans, text, journeys, now);
            } else {
                self.reattribute(&spans, published, text, journeys, now);
            }
            if let Some(t) = self.traces.get_mut(&id) {
                t.names = names;
            }
        }
        self.spans = spans;
    }

    /// Records the difference between the attribution of all `spans` and that of their
    /// first `published`, recorded before: what is new is added, what no longer holds
    /// (a call whose nearest journey changed, a self blame now on a failed call) is
    /// recorded as a retraction.
    fn reattribute(
        &mut self,
        spans: &[Node],
        published: usize,
        names: &str,
        journeys: &Journeys,
        now: u64,
    ) {
        self.find(&spans[..published], names);
        let mut old = std::mem::replace(&mut self.contribs, std::mem::take(&mut self.old));
        self.find(spans, names);
        let mut new = std::mem::take(&mut self.contribs);
        old.sort_unstable_by(|a, b| a.key(spans, names).cmp(&b.key(spans, names)));
        new.sort_unstable_by(|a, b| a.key(spans, names).cmp(&b.key(spans, names)));
        let (mut i, mut k) = (0, 0);
        // Each turn moves i or k (or both) forward: bounded by the two lengths.
        while i < old.len() || k < new.len() {
            let ord = match (old.get(i), new.get(k)) {
                (Some(a), Some(b)) => a.key(spans, names).cmp(&b.key(spans, names)),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    self.apply(old[i], spans, names, journeys, now, true);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.apply(new[k], spans, names, journeys, now, false);
                    k += 1;
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    k += 1;
                }
            }
        }
        old.clear();
        new.clear();
        self.old = old;
        self.contribs = new;
    }

    /// The nearest claimed strict ancestor of span `i`, or [`NONE`]. Walks up at most
    /// as many steps as the trace has spans (a cycle of ids cannot spin), and remembers
    /// the answer for every span on the way.
    fn owner_of(&mut self, spans: &[Node], i: usize) -> u32 {
        let n = spans.len();
        if self.owner[i] != UNSET {
            return self.owner[i];
        }
        self.path.clear();
        let mut cur = i;
        let mut result = NONE;
        for _ in 0..=n {
            if cur != i {
                if spans[cur].journey != NO_JOURNEY {
                    result = cur as u32;
                    break;
                }
                if self.owner[cur] != UNSET {
                    result = self.owner[cur];
                    break;
                }
            }
            self.path.push(cur as u32);
            let p = spans[cur].parent;
            if p == 0 {
                break;
            }
            match self.index.binary_search_by_key(&p, |e| e.0) {
                Ok(k) => cur = self.index[k].1 as usize,
                Err(_) => break,
            }
        }
        for &k in &self.path {
            self.owner[k as usize] = result;
        }
        result
    }

    fn attribute(&mut self, spans: &[Node], names: &str, journeys: &Journeys, now: u64) {
        if !spans.iter().any(|s| s.journey != NO_JOURNEY) {
            OrphanSpans {
                spans: spans.len() as u64,
            }
            .emit(&self.tel);
            return;
        }
        self.find(spans, names);
        let found = std::mem::take(&mut self.contribs);
        for c in &found {
            self.apply(*c, spans, names, journeys, now, false);
        }
        self.contribs = found;
        self.contribs.clear();
    }

    /// Records one finding of attribution, or with `retract` takes it back.
    fn apply(
        &mut self,
        c: Contrib,
        spans: &[Node],
        names: &str,
        journeys: &Journeys,
        now: u64,
        retract: bool,
    ) {
        match c {
            Contrib::Call { journey, call } => {
                let s = &spans[call as usize];
                let r = call_record(journey, s);
                // An Arc, not the bounds: nothing is allocated per call.
                let settings = self.settings.clone();
                let bounds = &settings.bounds_ns;
                if retract {
                    if let Some(m) = self.minus_of(journey, s.name(names), false, journeys, now) {
                        m.calls.record(&r, bounds, now);
                    }
                } else if let Some(d) = self.series(journey, s.name(names), journeys, now) {
                    d.state.record(&r, bounds, now);
                }
            }
            Contrib::Blame { journey, req, call } => {
                let at = spans[req as usize].end_ns;
                let name = spans[call as usize].name(names);
                if retract {
                    if let Some(m) = self.minus_of(journey, name, false, journeys, now) {
                        m.blame.add(at, now);
                    }
                } else if let Some(d) = self.series(journey, name, journeys, now) {
                    d.blame.add(at, now);
                }
            }
            Contrib::SelfBlame { journey, req } => {
                let at = spans[req as usize].end_ns;
                if retract {
                    if let Some(m) = self.minus_of(journey, "", true, journeys, now) {
                        m.blame.add(at, now);
                    }
                } else {
                    self.blame_self(journey, at, journeys, now);
                }
            }
        }
    }

    /// The retractions of the series a call to `name` of `journey` went to (its named
    /// series if this worker holds one, else the journey's overflow series), or of the
    /// journey's own blame.
    fn minus_of(
        &mut self,
        journey: JourneyId,
        name: &str,
        self_blame: bool,
        journeys: &Journeys,
        now: u64,
    ) -> Option<&mut Minus> {
        let seed = journeys.get(journey)?.seed;
        let named = !self_blame && {
            use std::hash::{BuildHasher, Hasher};
            let mut h = self.hasher.build_hasher();
            h.write_u64(seed);
            h.write(name.as_bytes());
            self.deps.get(&h.finish()).is_some_and(|list| {
                list.iter()
                    .any(|d| d.journey == journey && &*d.name == name)
            })
        };
        let overflow = !self_blame && !named;
        let name = if named { name } else { "" };
        let pos = self.minus.iter().position(|m| {
            m.journey == journey
                && m.self_blame == self_blame
                && m.overflow == overflow
                && &*m.name == name
        });
        let at = match pos {
            Some(p) => p,
            None => {
                let s = &self.settings;
                self.minus.push(Minus {
                    journey,
                    name: Arc::from(name),
                    overflow,
                    self_blame,
                    calls: SeriesState::new(&s.window_ns, s.sub_buckets, s.bounds_ns.len(), now),
                    blame: Blame::new(&s.window_ns, s.sub_buckets, now),
                });
                self.minus.len() - 1
            }
        };
        self.minus.get_mut(at)
    }

    /// Finds what a trace's spans attribute (into `self.contribs`): each call under a
    /// journey request, and the blame of each failed request.
    fn find(&mut self, spans: &[Node], names: &str) {
        self.contribs.clear();
        let n = spans.len();
        if !spans.iter().any(|s| s.flags & tflag::DEPENDENCY != 0) {
            // No calls (a lone entry span, most traces at a high rate): only the failed
            // requests' blame on themselves, without indexing the trace.
            for (i, req) in spans.iter().enumerate() {
                if req.journey != NO_JOURNEY && req.flags & tflag::ERROR != 0 {
                    self.contribs.push(Contrib::SelfBlame {
                        journey: req.journey,
                        req: i as u32,
                    });
                }
            }
            return;
        }
        self.index.clear();
        self.index
            .extend(spans.iter().enumerate().map(|(i, s)| (s.span, i as u32)));
        self.index.sort_unstable();
        self.owner.clear();
        self.owner.resize(n, UNSET);
        self.failed.clear();
        for i in 0..n {
            let s = spans[i];
            if s.flags & tflag::DEPENDENCY == 0 {
                continue;
            }
            let o = self.owner_of(spans, i);
            if o == NONE {
                continue;
            }
            let req = spans[o as usize];
            self.contribs.push(Contrib::Call {
                journey: req.journey,
                call: i as u32,
            });
            if s.flags & tflag::ERROR != 0 && req.flags & tflag::ERROR != 0 {
                self.failed.push((o, i as u32));
            }
        }
        // Each distinct failed dependency of a failed request once. Keyed by the
        // request's span id, not its place: a span sent twice (an export retried) is
        // counted twice as a request, and each copy has the calls under it.
        let mut failed = std::mem::take(&mut self.failed);
        let owner_id = |f: &(u32, u32)| spans[f.0 as usize].span;
        let call_name = |f: &(u32, u32)| spans[f.1 as usize].name(names);
        failed.sort_unstable_by(|a, b| {
            owner_id(a)
                .cmp(&owner_id(b))
                .then_with(|| call_name(a).cmp(call_name(b)))
        });
        failed.dedup_by(|a, b| owner_id(a) == owner_id(b) && call_name(a) == call_name(b));
        for (r, req) in spans.iter().enumerate() {
            if req.journey == NO_JOURNEY || req.flags & tflag::ERROR == 0 {
                continue;
            }
            let first = failed.partition_point(|f| owner_id(f) < req.span);
            let mine = failed[first..]
                .iter()
                .take_while(|f| owner_id(f) == req.span)
                .count();
            if mine == 0 {
                self.contribs.push(Contrib::SelfBlame {
                    journey: req.journey,
                    req: r as u32,
                });
            }
            for f in &failed[first..first + mine] {
                self.contribs.push(Contrib::Blame {
                    journey: req.journey,
                    req: r as u32,
                    call: f.1,
                });
            }
        }
        self.failed = failed;
    }

    fn blame_self(&mut self, journey: JourneyId, at: u64, journeys: &Journeys, now: u64) {
        let settings = &self.settings;
        let (_, b) = self.self_blame.entry(journey).or_insert_with(|| {
            (
                journeys.get(journey).map_or(0, |j| j.seed),
                Blame::new(&settings.window_ns, settings.sub_buckets, now),
            )
        });
        b.add(at, now);
    }

    /// The series of the journey's dependency `name`, made when new and admitted, else
    /// the journey's overflow series.
    fn series(
        &mut self,
        journey: JourneyId,
        name: &str,
        journeys: &Journeys,
        now: u64,
    ) -> Option<&mut DepSeries> {
        use std::hash::{BuildHasher, Hasher};
        let seed = journeys.get(journey)?.seed;
        let mut h = self.hasher.build_hasher();
        h.write_u64(seed);
        h.write(name.as_bytes());
        let key = h.finish();
        let settings = &self.settings;
        let fresh = |name: Arc<str>| DepSeries {
            journey,
            seed,
            name,
            key,
            state: SeriesState::new(
                &settings.window_ns,
                settings.sub_buckets,
                settings.bounds_ns.len(),
                now,
            ),
            blame: Blame::new(&settings.window_ns, settings.sub_buckets, now),
        };
        let pos = self.deps.get(&key).and_then(|list| {
            list.iter()
                .position(|d| d.journey == journey && &*d.name == name)
        });
        if let Some(p) = pos {
            return self.deps.get_mut(&key).map(|list| &mut list[p]);
        }
        if self.admission.admit(seed, key, settings.max_dependencies) {
            let list = self.deps.entry(key).or_default();
            list.push(fresh(Arc::from(name)));
            return list.last_mut();
        }
        Some(
            self.overflow
                .entry(journey)
                .or_insert_with(|| fresh(Arc::from(""))),
        )
    }

    /// Dependency series and blame at `now`; idle ones (past `series_ttl`) are dropped first.
    pub fn snapshot(
        &mut self,
        journeys: &Journeys,
        now: u64,
        expire: bool,
    ) -> (Vec<DependencySnap>, Vec<SelfBlameSnap>) {
        let ttl = self.settings.ttl_ns;
        if expire {
            let admission = &self.admission;
            self.deps.retain(|_, list| {
                list.retain(|d| {
                    let idle = d.idle(now, ttl);
                    if idle {
                        admission.release(d.seed, d.key);
                    }
                    !idle
                });
                !list.is_empty()
            });
            self.overflow.retain(|_, d| !d.idle(now, ttl));
            self.self_blame
                .retain(|_, (_, b)| now.saturating_sub(b.last_unix_ns) < ttl);
        }
        let n_windows = self.settings.window_ns.len();
        let mut deps = Vec::new();
        let normal = self.deps.values().flatten().map(|d| (d, false));
        let overflow = self.overflow.values().map(|d| (d, true));
        for (d, is_overflow) in normal.chain(overflow) {
            let Some(journey) = journeys.get(d.journey) else {
                continue;
            };
            let windows = (0..n_windows)
                .map(|w| {
                    let (counts, hists) = d.state.windows[w].live_counts_and_hists(now);
                    DependencyWindow {
                        counts,
                        hists,
                        blamed: d.blame.window(w, now),
                    }
                })
                .collect();
            deps.push(DependencySnap {
                journey,
                name: d.name.clone(),
                overflow: is_overflow,
                totals: d.state.totals,
                duration_sum_s: d.state.duration_sum_s,
                buckets: d.state.buckets.clone(),
                created_unix_ns: d.state.created_unix_ns,
                blamed_total: d.blame.total,
                windows,
            });
        }
        let selfs = self
            .self_blame
            .iter()
            .filter_map(|(j, (_, b))| {
                Some(SelfBlameSnap {
                    journey: journeys.get(*j)?,
                    total: b.total,
                    created_unix_ns: b.created_unix_ns,
                    windows: (0..n_windows).map(|w| b.window(w, now)).collect(),
                })
            })
            .collect();
        (deps, selfs)
    }
}

impl Assembler {
    /// Kafka stage 2's barrier: attributes the pending traces' new spans
    /// ([`Assembler::attribute_pending`]) and moves out what every dependency series and
    /// every journey's own blame recorded since the last take, with the retractions
    /// ([`crate::partial::take_dependency`]), leaving them empty.
    pub fn take_partials(
        &mut self,
        journeys: &Journeys,
        now: u64,
    ) -> Vec<(JourneyId, crate::partial::Entry)> {
        use crate::partial::{take_dependency, take_self_blame, Entry};
        self.attribute_pending(journeys, now);
        let mut minus = std::mem::take(&mut self.minus);
        let mut out = Vec::new();
        let mut take_minus = |journey: JourneyId, name: &str, overflow: bool, self_blame: bool| {
            minus
                .iter()
                .position(|m| {
                    m.journey == journey
                        && m.self_blame == self_blame
                        && m.overflow == overflow
                        && &*m.name == name
                })
                .map(|i| minus.swap_remove(i))
        };
        let normal = self.deps.values_mut().flatten().map(|d| (d, false));
        let overflow = self.overflow.values_mut().map(|d| (d, true));
        for (d, is_overflow) in normal.chain(overflow) {
            let name = if is_overflow { "" } else { &*d.name };
            let mut m = take_minus(d.journey, name, is_overflow, false);
            let retracted = m.as_mut().map(|m| (&mut m.calls, &mut m.blame));
            if let Some(p) =
                take_dependency(name, is_overflow, &mut d.state, &mut d.blame, retracted)
            {
                out.push((d.journey, Entry::Dependency(Box::new(p))));
            }
        }
        for (j, (_, b)) in self.self_blame.iter_mut() {
            let mut m = take_minus(*j, "", false, true);
            if let Some(p) = take_self_blame(b, m.as_mut().map(|m| &mut m.blame)) {
                out.push((*j, Entry::SelfBlame(p)));
            }
        }
        // Retractions of a series that expired since (idle past `series_ttl`, so long
        // after its trace): sent alone.
        for mut m in minus {
            let s = &self.settings;
            let entry = if m.self_blame {
                let mut none = Blame::new(&s.window_ns, s.sub_buckets, now);
                take_self_blame(&mut none, Some(&mut m.blame)).map(Entry::SelfBlame)
            } else {
                let mut calls =
                    SeriesState::new(&s.window_ns, s.sub_buckets, s.bounds_ns.len(), now);
                let mut blame = Blame::new(&s.window_ns, s.sub_buckets, now);
                take_dependency(
                    &m.name,
                    m.overflow,
                    &mut calls,
                    &mut blame,
                    Some((&mut m.calls, &mut m.blame)),
                )
                .map(|p| Entry::Dependency(Box::new(p)))
            };
            out.extend(entry.map(|e| (m.journey, e)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_of_is_in_range_and_spreads_sequential_ids() {
        assert_eq!(worker_of(12345, 0), 0);
        assert_eq!(worker_of(u128::MAX, 1), 0);
        for workers in [2usize, 3, 7, 8] {
            let mut counts = vec![0usize; workers];
            // Hand-made ids: counting up in the low half, then in the high half.
            for i in 0..4096u128 {
                for id in [i, i << 64] {
                    let w = worker_of(id, workers);
                    assert_eq!(w, worker_of(id, workers));
                    counts[w] += 1;
                }
            }
            let even = 2 * 4096 / workers;
            assert!(
                counts.iter().all(|&c| c > even * 3 / 4 && c < even * 5 / 4),
                "{workers} workers: {counts:?}"
            );
        }
    }
    use crate::config::Config;
    use crate::telemetry::AddRelaxed;

    const S: u64 = 1_000_000_000;

    fn setup(max_deps: usize, max_spans: usize) -> (Assembler, Journeys, Arc<Telemetry>) {
        let cfg = Config::parse(
            "journeys:\n  - name: checkout\n    match: { span_name: c }\n  - name: login\n    match: { span_name: l }\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let journeys = Journeys::new(&cfg);
        let tel = Arc::new(Telemetry::default());
        let settings = Arc::new(Settings {
            wait_ns: 10 * S,
            max_bytes: 1 << 20,
            max_spans,
            max_dependencies: max_deps,
            window_ns: vec![60 * S],
            sub_buckets: 6,
            bounds_ns: vec![S / 10],
            ttl_ns: 900 * S,
        });
        let mut a = Assembler::new(settings, Arc::default(), tel.clone());
        // Buckets and early completions the same in every run.
        a.key = 0;
        (a, journeys, tel)
    }

    /// A span of trace 1; `journey` claims it, `dep` makes it a call to that name.
    fn span(
        id: u64,
        parent: u64,
        journey: JourneyId,
        error: bool,
        dep: Option<&str>,
        text: &mut String,
    ) -> TraceSpan {
        let start = text.len() as u32;
        let mut flags = if error { tflag::ERROR } else { 0 };
        if let Some(d) = dep {
            text.push_str(d);
            flags |= tflag::DEPENDENCY;
        }
        TraceSpan {
            trace: 1,
            span: id,
            parent,
            end_ns: 100 * S,
            duration_ns: S / 100,
            journey,
            flags,
            name: (start, text.len() as u32),
        }
    }

    fn calls(a: &mut Assembler, j: &Journeys) -> Vec<(String, String, u64, u64, u64)> {
        let (deps, selfs) = a.snapshot(j, 100 * S, false);
        let mut out: Vec<_> = deps
            .iter()
            .map(|d| {
                let name = if d.overflow {
                    "(overflow)".into()
                } else {
                    d.name.to_string()
                };
                (
                    d.journey.name.to_string(),
                    name,
                    d.totals.requests / crate::sampling::UNIT,
                    d.totals.errors / crate::sampling::UNIT,
                    d.blamed_total,
                )
            })
            .chain(
                selfs
                    .iter()
                    .map(|s| (s.journey.name.to_string(), SELF.into(), 0, 0, s.total)),
            )
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_cycle_of_parent_ids_ends_and_belongs_to_no_journey() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // 1 claimed root; 2 -> 3 -> 2 a cycle with a call in it; 4 a call under 1.
        let spans = vec![
            span(1, 0, 0, false, None, &mut text),
            span(2, 3, NO_JOURNEY, false, Some("x"), &mut text),
            span(3, 2, NO_JOURNEY, false, Some("y"), &mut text),
            span(4, 1, NO_JOURNEY, false, Some("db"), &mut text),
        ];
        a.add(&spans, &text, &j, 100 * S);
        a.flush(&j, 100 * S);
        assert_eq!(
            calls(&mut a, &j),
            [("checkout".into(), "db".into(), 1, 0, 0)]
        );
        assert_eq!(tel.orphan_spans.get(), 0, "the trace has a claimed span");
        assert_eq!(a.bytes(), 0);
    }

    #[test]
    fn a_deep_chain_is_attributed_to_its_root_and_a_nested_journey_takes_its_own_calls() {
        let (mut a, j, _) = setup(10, 10_000);
        let mut text = String::new();
        // checkout 1 (failed) -> 2000 INTERNAL spans in a chain -> a failed call "deep";
        // then a login (failed) under the chain's end with a good call "ldap".
        let mut spans = vec![span(1, 0, 0, true, None, &mut text)];
        for id in 2..2002 {
            spans.push(span(id, id - 1, NO_JOURNEY, false, None, &mut text));
        }
        spans.push(span(5000, 2001, NO_JOURNEY, true, Some("deep"), &mut text));
        spans.push(span(6000, 2001, 1, true, None, &mut text));
        spans.push(span(6001, 6000, NO_JOURNEY, false, Some("ldap"), &mut text));
        a.add(&spans, &text, &j, 100 * S);
        a.flush(&j, 100 * S);
        assert_eq!(
            calls(&mut a, &j),
            [
                ("checkout".into(), "deep".into(), 1, 1, 1),
                ("login".into(), "ldap".into(), 1, 0, 0),
                ("login".into(), SELF.into(), 0, 0, 1),
            ]
        );
    }

    #[test]
    fn past_the_limit_a_journeys_new_dependencies_share_its_overflow_series() {
        let (mut a, j, _) = setup(2, 100);
        let mut text = String::new();
        // A failed checkout calling a, b (the limit is 2), then c and d, all failing: c and
        // d share the overflow series (2 calls); blame is per distinct name, so a and b
        // get 1 each and the overflow series 2 (c and d).
        let mut spans = vec![span(1, 0, 0, true, None, &mut text)];
        for (i, d) in ["a", "b", "c", "d"].iter().enumerate() {
            spans.push(span(10 + i as u64, 1, NO_JOURNEY, true, Some(d), &mut text));
        }
        a.add(&spans, &text, &j, 100 * S);
        a.flush(&j, 100 * S);
        assert_eq!(
            calls(&mut a, &j),
            [
                ("checkout".into(), "(overflow)".into(), 2, 2, 2),
                ("checkout".into(), "a".into(), 1, 1, 1),
                ("checkout".into(), "b".into(), 1, 1, 1),
            ]
        );
    }

    #[test]
    fn traces_complete_after_the_wait_and_not_before() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        let spans = vec![span(2, 1, NO_JOURNEY, false, Some("x"), &mut text)];
        a.add(&spans, &text, &j, 100 * S);
        // A node (48), the trace (its 48-byte table entry counted twice: 96), its order
        // entry (32), and its names: a string header (24) holding room for 8 bytes.
        assert_eq!(a.bytes(), 48 + 96 + 32 + 24 + 8);
        a.tick(&j, 110 * S - 1);
        assert_eq!(
            tel.orphan_spans.get(),
            0,
            "not complete 1 ns before the wait"
        );
        a.tick(&j, 110 * S);
        assert_eq!(tel.orphan_spans.get(), 1);
        assert_eq!(a.bytes(), 0);
    }

    #[test]
    fn a_request_sent_twice_is_blamed_twice_on_its_failed_call() {
        let (mut a, j, _) = setup(10, 100);
        let mut text = String::new();
        // An export retried: the failed checkout 1 arrives twice, its failed call once.
        // Journey SLIs count 2 failed requests, so the blame counts 2 as well.
        let spans = vec![
            span(1, 0, 0, true, None, &mut text),
            span(1, 0, 0, true, None, &mut text),
            span(2, 1, NO_JOURNEY, true, Some("pay"), &mut text),
        ];
        a.add(&spans, &text, &j, 100 * S);
        a.flush(&j, 100 * S);
        assert_eq!(
            calls(&mut a, &j),
            [("checkout".into(), "pay".into(), 1, 1, 2)]
        );
    }

    /// Merges taken partials as an owner would: (journey, dependency or self) ->
    /// (calls, errors, blamed), whole since the series began.
    fn merged(
        takes: &[Vec<(JourneyId, crate::partial::Entry)>],
        j: &Journeys,
    ) -> Vec<(String, String, u64, u64, u64)> {
        use crate::partial::{merge_dependency, merge_self_blame, Entry};
        let mut owner: std::collections::BTreeMap<(String, String), (SeriesState, Blame)> =
            Default::default();
        let now = 100 * S;
        for take in takes {
            for (journey, e) in take {
                let name = match e {
                    Entry::Dependency(d) => d.name.clone(),
                    _ => SELF.to_string(),
                };
                let journey = j.get(*journey).unwrap().name.to_string();
                let (c, b) = owner.entry((journey, name)).or_insert_with(|| {
                    (
                        SeriesState::new(&[60 * S], 6, 1, now),
                        Blame::new(&[60 * S], 6, now),
                    )
                });
                match e {
                    Entry::Dependency(d) => merge_dependency(c, b, d, now).map(drop).unwrap(),
                    Entry::SelfBlame(p) => merge_self_blame(b, p, now).map(drop).unwrap(),
                    Entry::Series(_) | Entry::Version(_) | Entry::Coverage(_) => {
                        unreachable!("the assembler takes no journey series, versions or coverage")
                    }
                }
            }
        }
        owner
            .into_iter()
            .map(|((j, n), (c, b))| {
                let unit = crate::sampling::UNIT;
                (
                    j,
                    n,
                    c.totals.requests / unit,
                    c.totals.errors / unit,
                    b.total,
                )
            })
            .collect()
    }

    #[test]
    fn a_barrier_publishes_a_trace_in_assembly_and_later_spans_correct_it() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // Barrier 1: a failed checkout alone, blamed on itself so far.
        let first = vec![span(1, 0, 0, true, None, &mut text)];
        a.add(&first, &text, &j, 100 * S);
        let t1 = a.take_partials(&j, 100 * S);
        assert_eq!(
            merged(std::slice::from_ref(&t1), &j),
            [("checkout".into(), SELF.into(), 0, 0, 1)]
        );
        // Its failed call to pay arrives: the blame moves to pay (self taken back), the
        // call is counted. A barrier, then completion, then one more barrier.
        let second = vec![span(2, 1, NO_JOURNEY, true, Some("pay"), &mut text)];
        a.add(&second, &text, &j, 101 * S);
        let t2 = a.take_partials(&j, 101 * S);
        a.tick(&j, 120 * S);
        let t3 = a.take_partials(&j, 120 * S);
        assert!(t3.is_empty(), "completion found nothing new: {t3:?}");
        // Owner: self 1 - 1 = 0; pay 1 call, 1 error, 1 blamed: what one instance that
        // completed the whole trace counts (the test below).
        assert_eq!(
            merged(&[t1, t2], &j),
            [
                ("checkout".into(), "pay".into(), 1, 1, 1),
                ("checkout".into(), SELF.into(), 0, 0, 0),
            ]
        );
        assert_eq!((a.bytes(), tel.orphan_spans.get()), (0, 0));
        let (mut one, _, _) = setup(10, 100);
        one.add(&first, &text, &j, 100 * S);
        one.add(&second, &text, &j, 101 * S);
        one.flush(&j, 101 * S);
        assert_eq!(
            calls(&mut one, &j),
            [("checkout".into(), "pay".into(), 1, 1, 1)]
        );
    }

    #[test]
    fn a_published_lone_span_is_not_counted_again_when_it_completes() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // A failed checkout alone: the barrier publishes its self blame (1); its
        // completion (the one-span path) has nothing left to record, so the next barrier
        // is empty and the merged blame stays 1, not 2.
        let lone = vec![span(1, 0, 0, true, None, &mut text)];
        a.add(&lone, &text, &j, 100 * S);
        let t1 = a.take_partials(&j, 100 * S);
        a.tick(&j, 120 * S);
        let t2 = a.take_partials(&j, 120 * S);
        assert!(t2.is_empty(), "completion found nothing new: {t2:?}");
        assert_eq!(
            merged(&[t1, t2], &j),
            [("checkout".into(), SELF.into(), 0, 0, 1)]
        );
        // A lone unclaimed span, never published (no journey claimed it): an orphan, once.
        let orphan = vec![TraceSpan {
            trace: 2,
            ..span(9, 0, NO_JOURNEY, false, None, &mut text)
        }];
        a.add(&orphan, &text, &j, 121 * S);
        a.tick(&j, 140 * S);
        assert_eq!((a.bytes(), tel.orphan_spans.get()), (0, 1));
    }

    #[test]
    fn a_trace_whose_calls_change_journey_is_corrected_when_it_completes() {
        let (mut a, j, _) = setup(10, 100);
        let mut text = String::new();
        // Checkout 1 with a call x under span 5, whose parent 5 is not there yet: the
        // call is nobody's at the barrier (nearest claimed ancestor: none). Then span 5
        // arrives, a login under checkout: x is login's. Then completion.
        let first = vec![
            span(1, 0, 0, false, None, &mut text),
            span(6, 5, NO_JOURNEY, false, Some("x"), &mut text),
            span(7, 1, NO_JOURNEY, false, Some("y"), &mut text),
        ];
        a.add(&first, &text, &j, 100 * S);
        let t1 = a.take_partials(&j, 100 * S);
        assert_eq!(
            merged(std::slice::from_ref(&t1), &j),
            [("checkout".into(), "y".into(), 1, 0, 0)]
        );
        let second = vec![span(5, 1, 1, false, None, &mut text)];
        a.add(&second, &text, &j, 101 * S);
        a.tick(&j, 120 * S);
        let t2 = a.take_partials(&j, 120 * S);
        assert_eq!(
            merged(&[t1, t2], &j),
            [
                ("checkout".into(), "y".into(), 1, 0, 0),
                ("login".into(), "x".into(), 1, 0, 0),
            ]
        );
    }

    #[test]
    fn a_buffered_span_is_48_bytes_and_a_trace_128() {
        // README's accounting (48 bytes a span, 128 a trace that arrived in one batch,
        // 24 more for the header of its names, 144 a lone trace: an 80-byte ring record
        // and 8 index slots of 8 bytes) and the eviction tests' arithmetic rely on
        // these; a TraceSpan (the hand-off between threads) stays 64.
        assert_eq!(std::mem::size_of::<TraceSpan>(), 64);
        assert_eq!(NODE_BYTES, 48);
        assert_eq!(TRACE_BYTES + ORDER_BYTES, 128);
        assert_eq!(NAMES_BYTES, 24);
        assert_eq!((LONE_SIZE, LONE_BYTES), (80, 144));
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
    }

    #[test]
    fn the_slab_and_the_arrival_queue_grow_only_within_the_bound() {
        // One trace fed by one span per batch, each batch a nanosecond after the last, in
        // a 1 MiB buffer (1,048,576 bytes). Its first span takes the ring's first 64
        // records (5,120 bytes) and an index for them (64 buckets, 4,096); the second
        // moves it to the table (4 buckets x 49 + 16 = 212 bytes). The slab (48 a node)
        // and the queue (32 an entry) both double 1024 -> 8192, which then hold
        // 8192 x 80 = 655,360 bytes: 664,788 in all. Node 8193 grows the slab by the
        // room left, 383,788 / 48 = 7995 nodes (to 16,187: 383,760 bytes), which leaves
        // 28: from then on each arrival pops the oldest entry (stale, the trace got
        // spans since), so the queue stays at 8192. Span 16,188 finds no free node and
        // no room: the pops reach the trace's latest entry and complete it (16,187
        // orphans, one eviction), and the span starts a new trace in the table (it was
        // found there, so it does not go to the ring): 96 + 48 + 32.
        let (mut a, j, tel) = setup(10, usize::MAX);
        let text = String::new();
        let one = [span(1, 0, NO_JOURNEY, false, None, &mut String::new())];
        for k in 0..16_187u64 {
            a.add(&one, &text, &j, 100 * S + k);
        }
        assert_eq!((a.nodes.capacity(), a.order.capacity()), (16_187, 8192));
        assert_eq!((a.ring.capacity(), a.lookup.len()), (64, 64));
        assert_eq!((a.table_cap, table_bytes(a.table_cap)), (3, 212));
        assert_eq!(1_048_576 - a.room(), 1_048_548);
        assert_eq!(a.bytes(), 96 + 16_187 * 48 + 8192 * 32);
        assert_eq!(tel.traces_evicted[0].get(), 0);
        a.add(&one, &text, &j, 100 * S + 16_187);
        assert_eq!((a.nodes.capacity(), a.order.capacity()), (16_187, 8192));
        assert_eq!(
            (tel.traces_evicted[0].get(), tel.orphan_spans.get()),
            (1, 16_187)
        );
        assert_eq!(a.bytes(), 96 + 48 + 32);
    }

    #[test]
    fn the_trace_table_is_counted_by_its_buckets() {
        // hashbrown: 4 buckets for up to 3 entries, 8 for 7, then 7/8 of a power of two;
        // a bucket is a 48-byte entry and a control byte, plus 16 control bytes a table.
        assert_eq!(table_bytes(0), 0);
        assert_eq!(table_bytes(3), 4 * 49 + 16);
        assert_eq!(table_bytes(7), 8 * 49 + 16);
        // 114,688 = 131,072 x 7/8: 6,422,528 + 16.
        assert_eq!(table_bytes(114_688), 6_422_544);
        assert_eq!(table_bytes(114_689), 262_144 * 49 + 16);
        let grown: Vec<usize> = [0, 3, 7, 14, 114_688].map(grown_capacity).into();
        assert_eq!(grown, [3, 7, 14, 28, 229_376]);
        // The standard table keeps to that: 100,000 traces take 131,072 buckets, and the
        // 114,689th doubles them.
        let mut m: HashMap<u128, Trace, ahash::RandomState> = HashMap::default();
        let t = || Trace {
            head: 0,
            tail: 0,
            len: 1,
            published: 0,
            last_arrival: 0,
            names: None,
        };
        for id in 0..100_000u128 {
            m.insert(id, t());
        }
        assert_eq!(m.capacity(), 114_688);
        for id in 100_000..114_689u128 {
            m.insert(id, t());
        }
        assert_eq!(m.capacity(), grown_capacity(114_688));
    }

    #[test]
    fn with_a_new_trace_in_each_batch_the_ring_stays_within_the_bound() {
        // One lone span a trace, each trace in its own batch a nanosecond after the last,
        // in a 1 MiB buffer (1,048,576 bytes): all of them go to the ring, none to the
        // table. A ring record is 80 bytes, the index a power of two of 64-byte buckets,
        // one a record of room. The ring doubles 64 -> ... -> 4096 (327,680 bytes, and
        // 4096 buckets: 262,144; 589,824 in all). At 4096 doubling would cost 327,680 +
        // 524,288 - 262,144 = 589,824 with 458,752 left; half of it, 2048 records
        // (163,840) and the index at 8192 buckets (+262,144), is 425,984 and fits: 6144
        // records, 1,015,808 bytes in all, 32,768 left. At 6144 the step halves from
        // 6144 until it fits: 384 records (30,720; the index's 8192 buckets have room for
        // them) -> 6528, 2,048 left, and 48 more would be under the least step (64).
        // Held bytes, 144 a trace, stay under the bound (6528 x 144 = 940,032), so from
        // trace 6529 on each new one pops the ring's oldest, which completes:
        // 7000 - 6528 = 472 evicted, all orphans.
        let (mut a, j, tel) = setup(10, usize::MAX);
        let text = String::new();
        let mut one = [span(1, 0, NO_JOURNEY, false, None, &mut String::new())];
        for k in 0..7000u64 {
            one[0].trace = u128::from(k) + 1;
            a.add(&one, &text, &j, 100 * S + k);
        }
        assert_eq!((a.ring.capacity(), a.lookup.len()), (6528, 8192));
        assert_eq!(6528 * 80 + 8192 * 64, 1_046_528);
        assert_eq!(1_048_576 - a.room(), 1_046_528);
        assert_eq!(
            (a.nodes.capacity(), a.order.capacity(), a.table_cap),
            (0, 0, 0)
        );
        assert_eq!((a.ring.len(), a.bytes()), (6528, 6528 * 144));
        assert_eq!(
            (tel.traces_evicted[0].get(), tel.orphan_spans.get()),
            (472, 472)
        );
        a.flush(&j, 200 * S);
        assert_eq!((a.bytes(), tel.orphan_spans.get()), (0, 7000));
    }

    #[test]
    fn each_batch_that_feeds_a_trace_costs_an_order_entry_until_it_is_popped() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        let one = vec![span(2, 1, NO_JOURNEY, false, None, &mut text)];
        let two = vec![span(3, 1, NO_JOURNEY, false, None, &mut text)];
        let three = vec![span(4, 1, NO_JOURNEY, false, None, &mut text)];
        a.add(&one, &text, &j, 100 * S);
        // A lone trace: its ring record and index share.
        assert_eq!(a.bytes(), 144);
        a.add(&two, &text, &j, 101 * S);
        a.add(&three, &text, &j, 102 * S);
        // Its second span moved it to the table (the ring record, the last one, went):
        // 96 (the trace) + 3 spans (3 x 48; no names) + 2 x 32 (an order entry per
        // batch since: 101 s and 102 s).
        assert_eq!(a.bytes(), 96 + 3 * 48 + 2 * 32);
        // The first entry is stale at 111 s (the trace's last arrival is 102 s): popped,
        // not completed.
        a.tick(&j, 111 * S);
        assert_eq!(a.bytes(), 96 + 3 * 48 + 32);
        a.tick(&j, 112 * S);
        assert_eq!((a.bytes(), tel.orphan_spans.get()), (0, 3));
    }

    /// A span of trace `(k << 64) | k`: the halves fold to 0 whatever `k`, so every such
    /// trace has the same hash: one bucket, one fingerprint.
    fn colliding(k: u64, s: TraceSpan) -> TraceSpan {
        TraceSpan {
            trace: (u128::from(k) << 64) | u128::from(k),
            ..s
        }
    }

    #[test]
    fn a_second_span_moves_a_lone_trace_to_the_table_and_is_attributed_as_before() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // A failed checkout alone (trace 1), then in one batch a lone orphan (trace 2)
        // and checkout's failed call to pay: trace 1's ring record is not the last, so it
        // stays in the ring, dead, until popped. Blame moves from self to pay, as when
        // both spans come in one batch.
        a.add(&[span(1, 0, 0, true, None, &mut text)], &text, &j, 100 * S);
        assert_eq!((a.ring.len(), a.traces.len(), a.bytes()), (1, 0, 144));
        let orphan = TraceSpan {
            trace: 2,
            ..span(9, 0, NO_JOURNEY, false, None, &mut text)
        };
        let call = span(2, 1, NO_JOURNEY, true, Some("pay"), &mut text);
        a.add(&[orphan, call], &text, &j, 101 * S);
        // 2 ring records (one dead) + trace 1 in the table: 96 + 2 x 48 + 32 (one order
        // entry, at 101 s) + names (24 + 8).
        assert_eq!((a.ring.len(), a.traces.len()), (2, 1));
        assert_eq!(a.bytes(), 2 * 144 + 96 + 2 * 48 + 32 + 24 + 8);
        a.tick(&j, 111 * S);
        assert_eq!(
            calls(&mut a, &j),
            [("checkout".into(), "pay".into(), 1, 1, 1)]
        );
        assert_eq!((a.bytes(), tel.orphan_spans.get()), (0, 1));
        assert_eq!(tel.traces_evicted[0].get(), 0);
    }

    #[test]
    fn after_a_batch_mostly_of_known_traces_new_traces_start_in_the_table() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        let of = |t: u128, id: u64, text: &mut String| TraceSpan {
            trace: t,
            ..span(id, 0, NO_JOURNEY, false, None, text)
        };
        // Traces 1 and 2, one span each: the first batch, so both start in the ring.
        let b = [of(1, 1, &mut text), of(2, 2, &mut text)];
        a.add(&b, &text, &j, 100 * S);
        assert_eq!((a.ring.len(), a.traces.len()), (2, 0));
        // A second span of each (trace 1's record stays, dead; trace 2's was the last and
        // goes) and a new trace 3, which still starts in the ring: the batch before
        // brought 2 new traces and no known one.
        let b = [
            of(1, 11, &mut text),
            of(2, 12, &mut text),
            of(3, 3, &mut text),
        ];
        a.add(&b, &text, &j, 101 * S);
        assert_eq!((a.ring.len(), a.traces.len()), (2, 2));
        // That batch brought 2 spans of known traces against 1 new: trace 4 starts in the
        // table.
        a.add(&[of(4, 4, &mut text)], &text, &j, 102 * S);
        assert_eq!((a.ring.len(), a.traces.len()), (2, 3));
        // That one brought only a new trace: trace 5 starts in the ring again.
        a.add(&[of(5, 5, &mut text)], &text, &j, 103 * S);
        assert_eq!((a.ring.len(), a.traces.len()), (3, 3));
        // Nothing is lost either way: 2 + 2 + 1 + 1 + 1 orphan spans.
        a.flush(&j, 104 * S);
        assert_eq!(
            (
                tel.orphan_spans.get(),
                a.bytes(),
                a.ring.len(),
                a.traces.len()
            ),
            (7, 0, 0, 0)
        );
    }

    #[test]
    fn lone_traces_complete_after_the_wait_and_at_flush() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // A failed checkout alone at 100 s, a lone orphan at 105 s, another at 120 s.
        a.add(&[span(1, 0, 0, true, None, &mut text)], &text, &j, 100 * S);
        let orphan = |t: u128, text: &mut String| TraceSpan {
            trace: t,
            ..span(9, 0, NO_JOURNEY, false, None, text)
        };
        a.add(&[orphan(2, &mut text)], &text, &j, 105 * S);
        a.tick(&j, 110 * S - 1);
        assert_eq!(calls(&mut a, &j), []);
        a.tick(&j, 110 * S);
        assert_eq!(
            calls(&mut a, &j),
            [("checkout".into(), SELF.into(), 0, 0, 1)]
        );
        assert_eq!((tel.orphan_spans.get(), a.bytes()), (0, 144));
        a.tick(&j, 115 * S);
        assert_eq!((tel.orphan_spans.get(), a.bytes()), (1, 0));
        a.add(&[orphan(3, &mut text)], &text, &j, 120 * S);
        a.flush(&j, 120 * S);
        assert_eq!((tel.orphan_spans.get(), a.bytes(), a.ring.len()), (2, 0, 0));
    }

    #[test]
    fn a_lone_span_of_a_journey_that_went_is_an_orphan() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // A failed login alone; the reload drops login: no blame, an orphan.
        a.add(&[span(1, 0, 1, true, None, &mut text)], &text, &j, 100 * S);
        a.remap(&|id| (id == 0).then_some(0));
        a.flush(&j, 100 * S);
        assert_eq!(calls(&mut a, &j), []);
        assert_eq!(tel.orphan_spans.get(), 1);
    }

    #[test]
    fn a_full_bucket_completes_its_oldest_lone_trace_and_counts_it() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        let s = span(1, 0, NO_JOURNEY, false, None, &mut text);
        // Nine traces of one bucket, one a batch: eight fill its slots, the ninth
        // completes the first (an orphan, evicted for memory), whose record stays in the
        // ring, dead, until popped.
        for k in 1..=9 {
            a.add(&[colliding(k, s)], &text, &j, 100 * S + k);
        }
        assert_eq!(
            (tel.traces_evicted[0].get(), tel.orphan_spans.get()),
            (1, 1)
        );
        assert_eq!((a.ring.len(), a.bytes()), (9, 9 * 144));
        // The eight others complete after the wait: 9 orphans in all, none twice.
        a.tick(&j, 111 * S);
        assert_eq!((tel.orphan_spans.get(), a.bytes()), (9, 0));
    }

    #[test]
    fn a_slot_whose_ring_record_was_popped_is_free() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        let s = span(1, 0, NO_JOURNEY, false, None, &mut text);
        // Eight traces fill one bucket and complete at 110 s; their slots keep their
        // old sequence numbers, before the ring's head now. Eight more of the bucket
        // take them without completing anything early.
        for k in 1..=8 {
            a.add(&[colliding(k, s)], &text, &j, 100 * S);
        }
        a.tick(&j, 110 * S);
        assert_eq!((tel.orphan_spans.get(), a.ring.len()), (8, 0));
        let b = bucket_of(trace_hash(colliding(1, s).trace, a.key), a.lookup.len());
        assert!(a.lookup[b].0.iter().all(|&e| e != 0), "stale, not cleared");
        for k in 9..=16 {
            a.add(&[colliding(k, s)], &text, &j, 111 * S);
        }
        assert_eq!((tel.traces_evicted[0].get(), a.ring.len()), (0, 8));
        a.flush(&j, 111 * S);
        assert_eq!(tel.orphan_spans.get(), 16);
    }

    #[test]
    fn traces_of_one_fingerprint_are_told_apart_by_their_ids() {
        let (mut a, j, tel) = setup(10, 100);
        let mut text = String::new();
        // A failed checkout (trace A) and a failed unclaimed span under it but of trace
        // B, whose id hashes like A's. Taken for A's, B's span would make A's trace
        // claimed and B no orphan; apart, A blames itself and B is an orphan.
        let req = colliding(1, span(1, 0, 0, true, None, &mut text));
        let other = colliding(2, span(2, 1, NO_JOURNEY, true, None, &mut text));
        assert_eq!(trace_hash(req.trace, a.key), trace_hash(other.trace, a.key));
        assert_ne!(req.trace, other.trace);
        a.add(&[req], &text, &j, 100 * S);
        a.add(&[other], &text, &j, 100 * S);
        assert_eq!((a.ring.len(), a.traces.len()), (2, 0));
        // A call of a third such trace goes to the table (it has a name); then A's
        // second span finds A in the ring, not the table trace of the same fingerprint.
        let call = colliding(3, span(3, 0, NO_JOURNEY, true, Some("db"), &mut text));
        a.add(&[call], &text, &j, 100 * S);
        let a2 = colliding(1, span(4, 1, NO_JOURNEY, false, None, &mut text));
        a.add(&[a2], &text, &j, 101 * S);
        assert_eq!(a.traces.len(), 2);
        a.flush(&j, 101 * S);
        assert_eq!(
            calls(&mut a, &j),
            [("checkout".into(), SELF.into(), 0, 0, 1)]
        );
        // B's span and the call's trace (no journey): 2 orphan spans.
        assert_eq!((tel.orphan_spans.get(), a.bytes()), (2, 0));
    }
}
