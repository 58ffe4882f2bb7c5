//! The hand-over from receivers to the workers that own the window state.
//!
//! A receiver classifies the spans of one request and splits them into one [`Batch`]
//! per worker, by a hash of journey and cohort values, so a series always lands on
//! the same worker and no lock guards its state. Queues are bounded: when a worker's
//! queue is full the whole request is refused as retryable before anything is sent.
//! Each queue is bounded twice, in batches (`pipeline.queue_size`) and in the heap bytes
//! of the batches it holds (`pipeline.queue_bytes`): a batch's size follows its request's,
//! so only the second bounds the memory a backlog takes.
//! The deriver asks every worker for a snapshot on each evaluation tick over a
//! separate control channel, so a full data queue never delays it.
//!
//! With trace assembly on, every span also travels as a [`TraceSpan`] to the worker its
//! trace id routes to ([`crate::traces::worker_of`]), which assembles the trace in its
//! own [`Assembler`]; completion is checked at each snapshot.

pub mod config;

use crate::clock::now_unix_ns;
use crate::config::Config;
use crate::internal_events::{
    CardinalityOverflow, InternalEvent, SeriesExpired, SpansRecorded, VitalIdsOverflow,
};
use crate::journey::{Classified, Journeys};
use crate::snapshot::{SeriesSnap, ShardSnapshot, QUANTILES};
use crate::span::{clip, same, AttrKey, AttrValue, SpanView, MAX_LABEL_VALUE_BYTES};
use crate::span_record::{flag, JourneyId, Record};
use crate::telemetry::Telemetry;
use crate::traces::{Assembler, DependencyAdmission, TraceSpan};
use crate::value::Value;
use crate::window::{Coverage, Ring, SeriesState};
use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Batch {
    pub text: String,
    pub values: Vec<(u32, u32)>,
    pub records: Vec<Record>,
    /// End times of entry-point spans no journey claimed (for coverage).
    pub unmatched_entry: Vec<u64>,
    /// The [`Journeys::generation`] whose ids the records carry.
    pub generation: u64,
    /// Spans of the traces this worker assembles; dependency names live in `text`.
    pub trace_spans: Vec<TraceSpan>,
    /// What [`Batch::heap_bytes`] said when it was queued: the worker takes exactly this
    /// off its queue's byte count.
    pub queued_bytes: usize,
}

impl Batch {
    pub fn value(&self, i: usize) -> &str {
        let (a, b) = self.values[i];
        &self.text[a as usize..b as usize]
    }

    /// [`Batch::value`] as bytes, for compares: no char-boundary checks (~30
    /// instructions a span for a two-value cohort). Out of range gives the empty slice.
    fn value_bytes(&self, i: usize) -> &[u8] {
        let (a, b) = self.values.get(i).copied().unwrap_or_default();
        self.text
            .as_bytes()
            .get(a as usize..b as usize)
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.unmatched_entry.is_empty() && self.trace_spans.is_empty()
    }

    /// The heap the batch holds while it waits in a queue (capacities, not lengths: the
    /// builder reserves ahead).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.text.capacity()
            + self.values.capacity() * size_of::<(u32, u32)>()
            + self.records.capacity() * size_of::<Record>()
            + self.unmatched_entry.capacity() * size_of::<u64>()
            + self.trace_spans.capacity() * size_of::<TraceSpan>()
    }

    /// Records of spans, not of log events.
    pub fn span_count(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.flags & flag::EVENT == 0)
            .count() as u64
    }
}

/// Cohort keys whose values [`BatchBuilder::push_cohort`] keeps on the stack while it
/// hashes them; journeys with more take the path through the scratch buffer.
const PIECES: usize = 4;

/// One cohort value while its series is hashed: text the span (or the missing-value
/// label) holds, or a range of the builder's scratch buffer where a number was written.
#[derive(Clone, Copy)]
enum Piece<'s> {
    Text(&'s str),
    Scratch(u32, u32),
}

/// Builds one batch per worker from classified spans, reusing a scratch buffer.
pub struct BatchBuilder {
    pub batches: Vec<Batch>,
    /// Stamped on every batch at submit: the generation of the journeys that classified it.
    pub generation: u64,
    scratch: String,
    scratch_ends: Vec<u32>,
    hasher: ahash::RandomState,
}

impl BatchBuilder {
    pub fn new(workers: usize) -> BatchBuilder {
        BatchBuilder {
            batches: (0..workers).map(|_| Batch::default()).collect(),
            generation: 0,
            scratch: String::new(),
            scratch_ends: Vec::new(),
            hasher: ahash::RandomState::with_seeds(7, 11, 13, 17),
        }
    }

    /// A builder for a request of `spans` spans, its batches sized for an even share
    /// each: batches grown by doubling cost ~48 reallocations (and their copies) per
    /// 1000-span request. Trace spans are routed by random trace ids, so their share is
    /// even; series are fewer and may be uneven, and a batch that gets more grows once.
    pub fn with_capacity(workers: usize, spans: usize, traces: bool) -> BatchBuilder {
        let mut b = BatchBuilder::new(workers);
        let share = spans.div_ceil(workers.max(1));
        // A quarter more than the even share, so a small imbalance does not double it.
        let records = share + share / 4;
        for batch in b.batches.iter_mut() {
            batch.records.reserve_exact(records);
            // Cohort values and a version per record: ~3 of each, ~8 bytes apiece.
            batch.values.reserve_exact(3 * records);
            batch.text.reserve_exact(24 * records);
            if traces {
                batch.trace_spans.reserve_exact(records);
            }
        }
        b
    }

    /// Queues a classified span for the worker that owns its series. The series hash
    /// uses the journey's identity seed, not its id, so a series stays on the same worker
    /// across config reloads. `weight` is the requests the span stands for, in
    /// [`crate::sampling::UNIT`]s (its sampling threshold's adjusted count).
    #[allow(clippy::too_many_arguments)]
    pub fn push<S: SpanView + ?Sized>(
        &mut self,
        span: &S,
        c: &Classified<'_>,
        missing: &str,
        version_key: &AttrKey,
        end_ns: u64,
        weight: u64,
    ) {
        let mut flags = c.flags;
        let value = match c.value {
            Value::Valid(v) => {
                flags |= flag::VALUE;
                v
            }
            Value::None | Value::Invalid => 0.0,
        };
        self.push_record(
            span,
            c,
            flags,
            value,
            (0, 0),
            missing,
            Some(version_key),
            (end_ns, weight),
        );
    }

    /// Queues a log event of a journey: `event` and `value` say what it counts for
    /// ([`crate::span_record::event`]).
    #[allow(clippy::too_many_arguments)]
    pub fn push_event<S: SpanView + ?Sized>(
        &mut self,
        view: &S,
        c: &Classified<'_>,
        event: u16,
        value: f64,
        id: u64,
        missing: &str,
        end_ns: u64,
    ) {
        let flags = c.flags | flag::EVENT;
        // A log event is no request and carries no sampling threshold.
        let one = crate::sampling::UNIT;
        self.push_record(
            view,
            c,
            flags,
            value,
            (event, id),
            missing,
            None,
            (end_ns, one),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn push_record<S: SpanView + ?Sized>(
        &mut self,
        span: &S,
        c: &Classified<'_>,
        flags: u8,
        value: f64,
        (event, id): (u16, u64),
        missing: &str,
        version_key: Option<&AttrKey>,
        (end_ns, weight): (u64, u64),
    ) {
        let (journey, cohort_keys) = (c.journey, c.cohort_keys);
        let flags = flags | if c.user.is_some() { flag::USER } else { 0 };
        // The shard comes back with the hash: a second `%` (a 64-bit division) per span
        // cost ~20 instructions.
        let (hash, shard, first_value) = if cohort_keys.len() <= PIECES {
            self.push_cohort(span, c.seed, cohort_keys, missing)
        } else {
            self.push_cohort_via_scratch(span, c.seed, cohort_keys, missing)
        };
        let batch = &mut self.batches[shard];
        // The version is not part of the series: it rides along for the deployments,
        // written straight into the batch's text (no allocation per span).
        let has_version = match version_key.and_then(|k| span.attr_key(k)) {
            Some(v) => {
                let start = batch.text.len();
                let kept = v.write_label_to(&mut batch.text);
                if kept > 0 {
                    batch.values.push((start as u32, batch.text.len() as u32));
                }
                kept > 0
            }
            None => false,
        };
        batch.records.push(Record {
            hash,
            journey,
            first_value,
            n_values: cohort_keys.len() as u16,
            flags,
            has_version,
            end_ns,
            duration_ns: if flags & flag::EVENT != 0 {
                id
            } else {
                span.end_ns().saturating_sub(span.start_ns())
            },
            user: c.user.unwrap_or(0),
            value,
            trace_id: span.trace_id().try_into().unwrap_or([0; 16]),
            span_id: span.span_id().try_into().unwrap_or([0; 8]),
            event,
            weight,
        });
    }

    /// The series hash of a span's cohort values, which go once into the text of the
    /// batch it picks: string values are hashed where the span holds them, only others
    /// (numbers, booleans) are written out to `scratch` first. Returns the hash, the
    /// batch it picks and the index of the first value in that batch. At most [`PIECES`] keys.
    fn push_cohort<S: SpanView + ?Sized>(
        &mut self,
        span: &S,
        seed: u64,
        cohort_keys: &[AttrKey],
        missing: &str,
    ) -> (u64, usize, u32) {
        use std::hash::{BuildHasher, Hasher};
        self.scratch.clear();
        let mut pieces = [Piece::Text(""); PIECES];
        let mut h = self.hasher.build_hasher();
        h.write_u64(seed);
        for (key, piece) in cohort_keys.iter().zip(pieces.iter_mut()) {
            let text = match span.attr_key(key) {
                Some(AttrValue::Str(v)) => v,
                None => missing,
                Some(v) => {
                    let start = self.scratch.len();
                    v.write_label_to(&mut self.scratch);
                    *piece = Piece::Scratch(start as u32, self.scratch.len() as u32);
                    h.write(&self.scratch.as_bytes()[start..]);
                    h.write_u8(0xff);
                    continue;
                }
            };
            let text = clip(text, MAX_LABEL_VALUE_BYTES);
            *piece = Piece::Text(text);
            h.write(text.as_bytes());
            h.write_u8(0xff);
        }
        let hash = h.finish();
        let shard = (hash % self.batches.len() as u64) as usize;
        let batch = &mut self.batches[shard];
        let first_value = batch.values.len() as u32;
        for piece in &pieces[..cohort_keys.len()] {
            let text = match *piece {
                Piece::Text(t) => t,
                Piece::Scratch(a, b) => self.scratch.get(a as usize..b as usize).unwrap_or(""),
            };
            let start = batch.text.len() as u32;
            batch.text.push_str(text);
            batch.values.push((start, batch.text.len() as u32));
        }
        (hash, shard, first_value)
    }

    /// As [`BatchBuilder::push_cohort`], for any number of keys: every value is written to
    /// `scratch`, hashed there and copied into the batch.
    #[cold]
    #[inline(never)]
    fn push_cohort_via_scratch<S: SpanView + ?Sized>(
        &mut self,
        span: &S,
        seed: u64,
        cohort_keys: &[AttrKey],
        missing: &str,
    ) -> (u64, usize, u32) {
        use std::hash::{BuildHasher, Hasher};
        self.scratch.clear();
        self.scratch_ends.clear();
        for key in cohort_keys {
            let start = self.scratch.len();
            match span.attr_key(key) {
                Some(v) => v.write_to(&mut self.scratch),
                None => self.scratch.push_str(missing),
            }
            let kept = clip(&self.scratch[start..], MAX_LABEL_VALUE_BYTES).len();
            self.scratch.truncate(start + kept);
            self.scratch_ends.push(self.scratch.len() as u32);
        }
        let mut h = self.hasher.build_hasher();
        h.write_u64(seed);
        let mut start = 0usize;
        for &end in &self.scratch_ends {
            h.write(&self.scratch.as_bytes()[start..end as usize]);
            h.write_u8(0xff);
            start = end as usize;
        }
        let hash = h.finish();
        let shard = (hash % self.batches.len() as u64) as usize;
        let batch = &mut self.batches[shard];
        let base = batch.text.len() as u32;
        batch.text.push_str(&self.scratch);
        let first_value = batch.values.len() as u32;
        let mut start = 0u32;
        for &end in &self.scratch_ends {
            batch.values.push((base + start, base + end));
            start = end;
        }
        (hash, shard, first_value)
    }

    /// Queues a span for the worker that assembles its trace; `journey` is the claiming
    /// journey and whether its rules call the span failed.
    pub fn push_trace<S: SpanView + ?Sized>(
        &mut self,
        span: &S,
        journey: Option<(JourneyId, bool)>,
        end_ns: u64,
        keys: &[String],
    ) {
        let trace = crate::traces::trace_id_of(span);
        let worker = crate::traces::worker_of(trace, self.batches.len());
        let batch = &mut self.batches[worker];
        let ts = crate::traces::trace_span(span, journey, end_ns, keys, &mut batch.text);
        batch.trace_spans.push(ts);
    }

    pub fn push_unmatched_entry(&mut self, end_ns: u64) {
        self.batches[0].unmatched_entry.push(end_ns);
    }

    pub fn span_count(&self) -> u64 {
        self.batches.iter().map(|b| b.span_count()).sum()
    }
}

/// How long a request whose queue filled mid-submit waits for room.
const RACE_WAIT: Duration = Duration::from_millis(250);

/// The receivers' side of the pipeline.
pub struct PipelineInput {
    senders: Vec<Sender<Batch>>,
    capacity: usize,
    /// Heap bytes of the batches in each worker's queue, and their bound.
    queued: Arc<[AtomicUsize]>,
    max_bytes: usize,
    /// The workers' admission, which metric-fed series share for the memory limit.
    admission: Arc<Admission>,
}

pub enum SubmitError {
    /// Nothing was queued: the sender should retry later.
    Full,
    /// Some batches were queued, these spans were not (a queue filled between check and send).
    Partial(u64),
}

impl PipelineInput {
    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    pub fn admission(&self) -> Arc<Admission> {
        self.admission.clone()
    }

    pub fn submit(&self, builder: &mut BatchBuilder) -> Result<(), SubmitError> {
        let full = builder
            .batches
            .iter()
            .zip(&self.senders)
            .zip(self.queued.iter())
            .any(|((b, s), q)| {
                !b.is_empty() && (s.len() >= self.capacity || self.over_bytes(q, b.heap_bytes()))
            });
        if full {
            return Err(SubmitError::Full);
        }
        let mut lost = 0;
        for (i, batch) in builder.batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let mut b = std::mem::take(batch);
            b.generation = builder.generation;
            b.queued_bytes = b.heap_bytes();
            let n = b.span_count();
            // Counted before the send, so the worker never takes off more than was added.
            let bytes = b.queued_bytes;
            self.queued[i].fetch_add(bytes, Ordering::Relaxed);
            match self.senders[i].try_send(b) {
                Ok(()) => {}
                // Another request filled the queue between the check above and now. Part
                // of this request is already queued, so refusing the rest would lose it;
                // waiting a moment for the worker keeps the request whole.
                Err(TrySendError::Full(b)) => {
                    if self.senders[i].send_timeout(b, RACE_WAIT).is_err() {
                        self.queued[i].fetch_sub(bytes, Ordering::Relaxed);
                        lost += n;
                    }
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.queued[i].fetch_sub(bytes, Ordering::Relaxed);
                    lost += n;
                }
            }
        }
        if lost > 0 {
            Err(SubmitError::Partial(lost))
        } else {
            Ok(())
        }
    }

    /// Whether a batch of `bytes` would take a queue past `pipeline.queue_bytes`. An empty
    /// queue takes any batch, so a request larger than the bound is still accepted when the
    /// worker has caught up. The check and the add are not one step: requests submitted at
    /// the same moment may each pass, so the bound can be exceeded by one batch per
    /// concurrent request.
    fn over_bytes(&self, queued: &AtomicUsize, bytes: usize) -> bool {
        let q = queued.load(Ordering::Relaxed);
        q > 0 && q + bytes > self.max_bytes
    }

    /// Whether some worker's queue is at one of its bounds, so that nearly any request
    /// would be refused at submit. Checked before a request is classified, so an
    /// overloaded pipeline does not spend the work of classifying spans it then refuses.
    pub fn is_full(&self) -> bool {
        self.senders
            .iter()
            .zip(self.queued.iter())
            .any(|(s, q)| s.len() >= self.capacity || q.load(Ordering::Relaxed) >= self.max_bytes)
    }

    /// Heap bytes of the batches in each worker's queue.
    pub fn queue_bytes(&self) -> Vec<usize> {
        self.queued
            .iter()
            .map(|q| q.load(Ordering::Relaxed))
            .collect()
    }

    pub fn queue_depths(&self) -> Vec<usize> {
        self.senders.iter().map(|s| s.len()).collect()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An input over `workers` queues of 1024 batches that nobody reads, bounded at
    /// `max_bytes`: for tests of what reads or fills the queues.
    #[cfg(test)]
    pub(crate) fn unread(
        workers: usize,
        max_bytes: usize,
    ) -> (PipelineInput, Vec<Receiver<Batch>>) {
        let (senders, receivers) = (0..workers).map(|_| bounded(1024)).unzip();
        let admission = Arc::new(Admission {
            per_journey: Default::default(),
            max_per_journey: 1,
            worker_bytes: Vec::new(),
            metric_bytes: Default::default(),
            max_bytes: usize::MAX,
        });
        let input = PipelineInput {
            senders,
            capacity: 1024,
            queued: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            max_bytes,
            admission,
        };
        (input, receivers)
    }
}

enum Ctl {
    Snapshot(Sender<ShardSnapshot>),
    TakePartials(Sender<Partials>),
    Shutdown(Sender<ShardSnapshot>),
    Reload(Arc<Reload>, Sender<ShardSnapshot>),
}

/// The journeys of a reloaded config, and where each old journey id's state goes.
pub struct Reload {
    pub journeys: Arc<Journeys>,
    /// Old id -> new id; `None` drops the journey's series.
    pub remap: Vec<Option<JourneyId>>,
}

struct Series {
    journey: JourneyId,
    /// The journey's identity seed: its admission count.
    seed: u64,
    cohort: Arc<[Box<str>]>,
    state: SeriesState,
}

/// Admission of new series, shared by all workers: a count per journey (keyed by the
/// journey's identity seed, so it survives reloads) and the heap bytes each worker last
/// measured, plus those of the journeys' metric-fed series ([`crate::metric_requests`]):
/// `limits.max_window_state_bytes` bounds them all together.
pub struct Admission {
    per_journey: dashmap::DashMap<u64, usize>,
    max_per_journey: usize,
    worker_bytes: Vec<std::sync::atomic::AtomicUsize>,
    metric_bytes: std::sync::atomic::AtomicUsize,
    max_bytes: usize,
}

impl Admission {
    pub fn new(cfg: &Config, workers: usize) -> Admission {
        Admission {
            per_journey: dashmap::DashMap::new(),
            max_per_journey: cfg.limits.max_series_per_journey,
            worker_bytes: (0..workers).map(|_| Default::default()).collect(),
            metric_bytes: Default::default(),
            max_bytes: cfg.limits.max_window_state_bytes,
        }
    }

    /// Whether the window state has reached `limits.max_window_state_bytes`: new series,
    /// span-fed or metric-fed, then go to their journey's overflow series.
    pub fn over_memory(&self) -> bool {
        self.state_bytes() >= self.max_bytes
    }

    /// What the metric-fed series hold now.
    pub fn set_metric_bytes(&self, bytes: usize) {
        self.metric_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes a series slot for the journey, or says no (over the cardinality or memory limit).
    fn admit(&self, seed: u64) -> bool {
        if self.over_memory() {
            return false;
        }
        let mut count = self.per_journey.entry(seed).or_insert(0);
        if *count >= self.max_per_journey {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, seed: u64) {
        if let Some(mut c) = self.per_journey.get_mut(&seed) {
            *c = c.saturating_sub(1);
        }
    }

    pub fn state_bytes(&self) -> usize {
        self.worker_bytes
            .iter()
            .chain(std::iter::once(&self.metric_bytes))
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

struct WorkerSettings {
    /// Trace assembly is on.
    traces: bool,
    /// Fixed heap cost of a new series, before its histograms grow.
    series_bytes: usize,
    window_ns: Vec<u64>,
    sub_buckets: u32,
    bounds_ns: Vec<u64>,
    ttl_ns: u64,
    drain_limit: usize,
}

struct Worker {
    index: usize,
    /// The generation of `journeys`, and the remap from the one before, for batches
    /// that were classified just before a reload.
    generation: u64,
    last_remap: Vec<Option<JourneyId>>,
    admission: Arc<Admission>,
    /// Per journey, the series that takes spans of cohorts refused admission.
    overflow: HashMap<JourneyId, Series>,
    /// Heap bytes at the last snapshot plus an estimate for series created since.
    bytes: usize,
    data: Receiver<Batch>,
    /// The byte count of this worker's queue, shared with [`PipelineInput`].
    queued: Arc<[AtomicUsize]>,
    ctl: Receiver<Ctl>,
    series: HashMap<u64, Vec<Series>, PreHashed>,
    coverage: Vec<Ring<Coverage>>,
    settings: Arc<WorkerSettings>,
    journeys: Arc<Journeys>,
    tel: Arc<Telemetry>,
    scratch: Vec<(u32, u32)>,
    qout: Vec<Option<u64>>,
    assembler: Assembler,
    /// Requests per journey and version, for the deployments.
    versions: crate::versions::VersionTable,
}

impl Worker {
    fn run(mut self) {
        loop {
            select! {
                recv(self.data) -> msg => match msg {
                    Ok(batch) => self.record(batch),
                    Err(_) => return,
                },
                recv(self.ctl) -> msg => match msg {
                    Ok(Ctl::Snapshot(reply)) => {
                        self.drain(self.settings.drain_limit);
                        let _ = reply.send(self.snapshot(true));
                    }
                    Ok(Ctl::TakePartials(reply)) => {
                        // The Kafka receiver waits on this: everything it handed on is
                        // queued, so all of it is recorded before the take.
                        self.drain(usize::MAX);
                        let _ = reply.send(self.take_partials());
                    }
                    Ok(Ctl::Reload(plan, reply)) => {
                        // Batches queued before the reload carry old ids: record them first.
                        self.drain(self.settings.drain_limit);
                        self.reload(&plan);
                        let _ = reply.send(ShardSnapshot::default());
                    }
                    Ok(Ctl::Shutdown(reply)) => {
                        // Receivers have stopped: everything still queued is recorded,
                        // and every trace in assembly is completed.
                        self.drain(usize::MAX);
                        self.assembler.flush(&self.journeys, now_unix_ns());
                        let _ = reply.send(self.snapshot(false));
                        return;
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Records what is queued, at most `limit` batches, so a snapshot reflects every
    /// span that arrived before it was asked for.
    fn drain(&mut self, limit: usize) {
        for _ in 0..limit {
            match self.data.try_recv() {
                Ok(b) => self.record(b),
                Err(_) => return,
            }
        }
    }

    fn reload(&mut self, plan: &Reload) {
        let map = |id: JourneyId| plan.remap.get(id as usize).copied().flatten();
        let admission = &self.admission;
        self.series.retain(|_, list| {
            list.retain_mut(|s| match map(s.journey) {
                Some(new) => {
                    s.journey = new;
                    true
                }
                None => {
                    admission.release(s.seed);
                    false
                }
            });
            !list.is_empty()
        });
        self.overflow = std::mem::take(&mut self.overflow)
            .into_values()
            .filter_map(|mut s| {
                map(s.journey).map(|new| {
                    s.journey = new;
                    (new, s)
                })
            })
            .collect();
        self.assembler.remap(&map);
        self.versions.remap(&map);
        self.journeys = plan.journeys.clone();
        self.generation = plan.journeys.generation;
        self.last_remap = plan.remap.clone();
    }

    fn record(&mut self, batch: Batch) {
        let bytes = batch.queued_bytes;
        self.record_batch(batch);
        // Taken off once the batch is recorded and freed, so the count bounds what the
        // queue and the batch in hand hold together.
        self.queued[self.index].fetch_sub(bytes, Ordering::Relaxed);
    }

    fn record_batch(&mut self, mut batch: Batch) {
        // Every span handed over is processed, recorded or not.
        SpansRecorded {
            spans: batch.span_count(),
        }
        .emit(&self.tel);
        if batch.generation != self.generation {
            // Classified with the journeys before the last reload: translate the ids;
            // spans of journeys that went are processed but not recorded.
            let current = batch.generation + 1 == self.generation;
            let remap = &self.last_remap;
            batch
                .records
                .retain_mut(|r| match remap.get(r.journey as usize).copied().flatten() {
                    Some(new) if current => {
                        r.journey = new;
                        true
                    }
                    _ => false,
                });
            for t in batch.trace_spans.iter_mut() {
                if t.journey != crate::traces::NO_JOURNEY {
                    t.journey = match remap.get(t.journey as usize).copied().flatten() {
                        Some(new) if current => new,
                        _ => crate::traces::NO_JOURNEY,
                    };
                }
            }
        }
        let now = now_unix_ns();
        if !batch.trace_spans.is_empty() {
            self.assembler
                .add(&batch.trace_spans, &batch.text, &self.journeys, now);
        }
        let settings = &self.settings;
        for &end in &batch.unmatched_entry {
            for ring in self.coverage.iter_mut() {
                if let Some(c) = ring.slot_mut(end, now) {
                    c.entry += 1;
                }
            }
        }
        for r in &batch.records {
            if let Some(at) = r.version_index() {
                let version = batch.value(at);
                self.versions
                    .record(r.journey, version, r.flags, r.weight, now, &self.tel);
            }
            if r.flags & flag::ENTRY != 0 {
                for ring in self.coverage.iter_mut() {
                    if let Some(c) = ring.slot_mut(r.end_ns, now) {
                        c.entry += 1;
                        c.matched += 1;
                    }
                }
            }
            let values = r.first_value as usize..r.first_value as usize + r.n_values as usize;
            let list = self.series.entry(r.hash).or_default();
            // Compared inline (`same`): a `memcmp` call per cohort value cost more than
            // the compare of these short values.
            let pos = list.iter().position(|s| {
                s.journey == r.journey
                    && s.cohort.len() == values.len()
                    && s.cohort
                        .iter()
                        .zip(values.clone())
                        .all(|(a, i)| same(a.as_bytes(), batch.value_bytes(i)))
            });
            let seed = match pos {
                Some(_) => 0,
                None => self.journeys.get(r.journey).map_or(0, |j| j.seed),
            };
            let admitted = pos.is_some() || self.admission.admit(seed);
            if !admitted {
                CardinalityOverflow { journey: r.journey }.emit(&self.tel);
                let overflow = self.overflow.entry(r.journey).or_insert_with(|| Series {
                    journey: r.journey,
                    seed,
                    cohort: Arc::from(Vec::<Box<str>>::new()),
                    state: SeriesState::new(
                        &settings.window_ns,
                        settings.sub_buckets,
                        settings.bounds_ns.len(),
                        now,
                    ),
                });
                if !overflow.state.record(r, &settings.bounds_ns, now) {
                    VitalIdsOverflow.emit(&self.tel);
                }
                continue;
            }
            let series = match pos {
                Some(p) => &mut list[p],
                None => {
                    self.bytes += settings.series_bytes;
                    self.admission.worker_bytes[self.index]
                        .store(self.bytes, std::sync::atomic::Ordering::Relaxed);
                    let cohort: Arc<[Box<str>]> =
                        values.clone().map(|i| Box::from(batch.value(i))).collect();
                    list.push(Series {
                        journey: r.journey,
                        seed,
                        cohort,
                        state: SeriesState::new(
                            &settings.window_ns,
                            settings.sub_buckets,
                            settings.bounds_ns.len(),
                            now,
                        ),
                    });
                    let last = list.len() - 1;
                    &mut list[last]
                }
            };
            if !series.state.record(r, &settings.bounds_ns, now) {
                VitalIdsOverflow.emit(&self.tel);
            }
        }
    }

    /// Moves out every series' delta since the last take ([`crate::partial`]), and the
    /// coverage counted since then.
    fn take_partials(&mut self) -> Partials {
        let normal = self.series.values_mut().flatten().map(|s| (s, false));
        let overflow = self.overflow.values_mut().map(|s| (s, true));
        let mut out = Vec::new();
        for (s, is_overflow) in normal.chain(overflow) {
            let Some(journey) = self.journeys.get(s.journey) else {
                continue;
            };
            if let Some(p) =
                crate::partial::take_series(&mut s.state, &s.cohort, is_overflow, false)
            {
                out.push((journey, crate::partial::Entry::Series(p)));
            }
        }
        // Dependency calls and blame of the traces assembled here, including those still
        // in assembly: their spans' offsets are committed with this take.
        let now = now_unix_ns();
        for (id, e) in self.assembler.take_partials(&self.journeys, now) {
            if let Some(journey) = self.journeys.get(id) {
                out.push((journey, e));
            }
        }
        let mut versions = Vec::new();
        self.versions.take_partials(&mut versions);
        for (id, v) in versions {
            if let Some(journey) = self.journeys.get(id) {
                out.push((journey, crate::partial::Entry::Version(v)));
            }
        }
        Partials {
            journeys: out,
            coverage: crate::partial::take_coverage(&mut self.coverage)
                .into_iter()
                .collect(),
        }
    }

    fn snapshot(&mut self, expire: bool) -> ShardSnapshot {
        let now = now_unix_ns();
        if self.settings.traces {
            self.assembler.tick(&self.journeys, now);
        }
        let (dependencies, self_blame) = self.assembler.snapshot(&self.journeys, now, expire);
        if expire {
            let ttl = self.settings.ttl_ns;
            let mut expired = 0;
            let admission = &self.admission;
            self.series.retain(|_, list| {
                list.retain(|s| {
                    let keep = now.saturating_sub(s.state.last_update_unix_ns) < ttl;
                    if !keep {
                        admission.release(s.seed);
                        expired += 1;
                    }
                    keep
                });
                !list.is_empty()
            });
            self.overflow.retain(|_, s| {
                let keep = now.saturating_sub(s.state.last_update_unix_ns) < ttl;
                expired += usize::from(!keep);
                keep
            });
            SeriesExpired {
                count: expired as u64,
            }
            .emit(&self.tel);
        }
        let mut out = ShardSnapshot {
            coverage: self
                .coverage
                .iter()
                .map(|ring| {
                    let mut c = Coverage::default();
                    ring.live(now).for_each(|x| c.add(x));
                    c
                })
                .collect(),
            dependencies,
            self_blame,
            trace_bytes: self.assembler.bytes(),
            ..Default::default()
        };
        self.versions.snapshot(&self.journeys, &mut out.versions);
        let normal = self.series.values().flatten().map(|s| (s, false));
        let overflow = self.overflow.values().map(|s| (s, true));
        for (s, is_overflow) in normal.chain(overflow) {
            let Some(journey) = self.journeys.get(s.journey) else {
                continue;
            };
            let windows = (0..s.state.windows.len())
                .map(|w| {
                    s.state
                        .window_stats(w, now, &QUANTILES, &mut self.scratch, &mut self.qout)
                })
                .collect();
            out.state_bytes += s.state.heap_bytes();
            out.series.push(SeriesSnap {
                journey,
                cohort: s.cohort.clone(),
                overflow: is_overflow,
                from_metrics: false,
                totals: s.state.totals,
                duration_sum_s: s.state.duration_sum_s,
                value_total: s.state.value_total,
                value_failed: s.state.value_failed,
                buckets: s.state.buckets.clone(),
                created_unix_ns: s.state.created_unix_ns,
                windows,
                exemplars: s.state.exemplars.clone(),
                frustrations: s.state.frustrations.clone(),
            });
        }
        self.bytes = out.state_bytes;
        self.admission.worker_bytes[self.index]
            .store(self.bytes, std::sync::atomic::Ordering::Relaxed);
        out
    }
}

/// Hashing for the series map, whose keys are already hashes ([`Record::hash`], ahash of
/// journey and cohort): hashing them again with SipHash cost a SipHash per span.
#[derive(Default, Clone, Copy)]
struct PreHashed;

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHashedKey;
    fn build_hasher(&self) -> PreHashedKey {
        PreHashedKey(0)
    }
}

struct PreHashedKey(u64);

impl std::hash::Hasher for PreHashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else still gets every byte mixed in.
        self.0 = crate::mix::mix_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        // The low bits chose the worker (`hash % workers`) and are alike on one worker;
        // the table indexes by the low bits, so they come from the high half.
        self.0 = n.rotate_left(32);
    }
}

/// One entry of a journey's partial aggregates, with its journey.
pub type JourneyPartial = (Arc<crate::journey::JourneyInfo>, crate::partial::Entry);

/// What a barrier takes from the workers: each journey's partials, and each worker's
/// coverage, which belongs to no journey (they add).
#[derive(Debug, Default)]
pub struct Partials {
    pub journeys: Vec<JourneyPartial>,
    pub coverage: Vec<crate::proto::aggregates::CoveragePartial>,
}

/// Takes the partial aggregates of every worker: see [`Pipeline::partial_taker`].
#[derive(Clone)]
pub struct PartialTaker {
    ctl: Vec<Sender<Ctl>>,
}

impl PartialTaker {
    /// Every worker's partials; `None` when a worker did not answer within `timeout`.
    /// Partials taken but not returned are gone: the caller must then have the spans
    /// read again (the Kafka receiver rewinds to its last committed offsets).
    pub fn take(&self, timeout: Duration) -> Option<Partials> {
        let (tx, rx) = bounded(self.ctl.len());
        for c in &self.ctl {
            c.send_timeout(Ctl::TakePartials(tx.clone()), timeout)
                .ok()?;
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Partials::default();
        for _ in 0..self.ctl.len() {
            let p = rx.recv_deadline(deadline).ok()?;
            out.journeys.extend(p.journeys);
            out.coverage.extend(p.coverage);
        }
        Some(out)
    }
}

/// Owns the worker threads; the deriver holds it.
pub struct Pipeline {
    input: Arc<PipelineInput>,
    ctl: Vec<Sender<Ctl>>,
    handles: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub fn start(cfg: &Config, journeys: Arc<Journeys>, tel: Arc<Telemetry>) -> Pipeline {
        let admission = Arc::new(Admission::new(cfg, cfg.pipeline.workers));
        let windows = cfg.windows.sizes.len();
        let workers = cfg.pipeline.workers.max(1);
        let trace_settings = Arc::new(crate::traces::Settings {
            wait_ns: cfg.traces.wait.as_nanos() as u64,
            max_bytes: cfg.traces.max_bytes / workers,
            max_spans: cfg.traces.max_spans_per_trace,
            max_dependencies: cfg.dependencies.max_per_journey,
            window_ns: cfg.windows_ns(),
            sub_buckets: cfg.windows.sub_buckets,
            bounds_ns: cfg.bounds_ns(),
            ttl_ns: cfg.windows.series_ttl.as_nanos() as u64,
        });
        let dep_admission = Arc::new(DependencyAdmission::default());
        let settings = Arc::new(WorkerSettings {
            traces: cfg.traces.enabled,
            series_bytes: std::mem::size_of::<SeriesState>()
                + windows
                    * cfg.windows.sub_buckets as usize
                    * (std::mem::size_of::<crate::window::Slot>() + 8)
                + (cfg.histogram_buckets.len() + 1) * 8
                // Exemplars: nearly every series has spans with trace ids.
                + crate::window::exemplars::Exemplars::new(cfg.histogram_buckets.len() + 1, 0)
                    .heap_bytes()
                + 128,
            window_ns: cfg.windows_ns(),
            sub_buckets: cfg.windows.sub_buckets,
            bounds_ns: cfg.bounds_ns(),
            ttl_ns: cfg.windows.series_ttl.as_nanos() as u64,
            drain_limit: cfg.pipeline.queue_size,
        });
        let mut senders = Vec::new();
        let mut ctl = Vec::new();
        let mut handles = Vec::new();
        let queued: Arc<[AtomicUsize]> = (0..cfg.pipeline.workers)
            .map(|_| AtomicUsize::new(0))
            .collect();
        for i in 0..cfg.pipeline.workers {
            let (tx, rx) = bounded(cfg.pipeline.queue_size);
            let (ctx, crx) = bounded(4);
            let worker = Worker {
                index: i,
                generation: journeys.generation,
                last_remap: Vec::new(),
                admission: admission.clone(),
                overflow: HashMap::new(),
                bytes: 0,
                data: rx,
                queued: queued.clone(),
                ctl: crx,
                series: HashMap::default(),
                coverage: settings
                    .window_ns
                    .iter()
                    .map(|&w| Ring::new(w, settings.sub_buckets))
                    .collect(),
                settings: settings.clone(),
                journeys: journeys.clone(),
                tel: tel.clone(),
                scratch: Vec::new(),
                qout: Vec::new(),
                assembler: Assembler::new(
                    trace_settings.clone(),
                    dep_admission.clone(),
                    tel.clone(),
                ),
                versions: crate::versions::VersionTable::new(
                    cfg.deployments.max_versions,
                    cfg.receivers
                        .kafka
                        .as_ref()
                        .is_some_and(|k| k.aggregates.is_some()),
                ),
            };
            let handle = std::thread::Builder::new()
                .name(format!("cerflow-worker-{i}"))
                .spawn(move || worker.run())
                .expect("spawning a worker thread at start-up");
            senders.push(tx);
            ctl.push(ctx);
            handles.push(handle);
        }
        Pipeline {
            input: Arc::new(PipelineInput {
                senders,
                capacity: cfg.pipeline.queue_size,
                queued,
                max_bytes: cfg.pipeline.queue_bytes,
                admission,
            }),
            ctl,
            handles,
        }
    }

    pub fn input(&self) -> Arc<PipelineInput> {
        self.input.clone()
    }

    pub fn workers(&self) -> usize {
        self.ctl.len()
    }

    /// Gathers every worker's snapshot; a worker that does not answer in time is skipped.
    pub fn snapshot(&self, timeout: Duration) -> Vec<ShardSnapshot> {
        self.ask(timeout, Ctl::Snapshot)
    }

    fn ask(
        &self,
        timeout: Duration,
        make: impl Fn(Sender<ShardSnapshot>) -> Ctl,
    ) -> Vec<ShardSnapshot> {
        let (tx, rx) = bounded(self.ctl.len());
        let mut asked = 0;
        for c in &self.ctl {
            if c.send_timeout(make(tx.clone()), timeout).is_ok() {
                asked += 1;
            }
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::with_capacity(asked);
        for _ in 0..asked {
            match rx.recv_deadline(deadline) {
                Ok(s) => out.push(s),
                // The caller sees the short answer and decides what a partial tick means.
                Err(_) => break,
            }
        }
        out
    }

    /// A handle that takes the workers' partial aggregates, for the Kafka receiver's
    /// transactions (it runs on the receiver's thread, the pipeline on the deriver's).
    pub fn partial_taker(&self) -> PartialTaker {
        PartialTaker {
            ctl: self.ctl.clone(),
        }
    }

    /// Hands every worker the journeys of a reloaded config; returns once all have them.
    pub fn reload(&self, plan: Arc<Reload>, timeout: Duration) -> bool {
        // Every worker must have switched: one that did not would record with old ids.
        self.ask(timeout, |reply| Ctl::Reload(plan.clone(), reply))
            .len()
            == self.ctl.len()
    }

    /// Drains every queue, returns the final snapshots and stops the workers.
    pub fn shutdown(mut self, timeout: Duration) -> Vec<ShardSnapshot> {
        let out = self.ask(timeout, Ctl::Shutdown);
        // A worker that did not answer may still be busy; it is left to the process exit
        // rather than joined, so shutdown keeps its time limit.
        if out.len() == self.handles.len() {
            for h in self.handles.drain(..) {
                let _ = h.join();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input over one worker queue that nobody reads, bounded at `max_bytes`.
    fn input(max_bytes: usize) -> (PipelineInput, Receiver<Batch>) {
        let (input, mut rx) = PipelineInput::unread(1, max_bytes);
        (input, rx.remove(0))
    }

    /// A request whose one batch holds `entries` unmatched entry times: 8 bytes each.
    fn request(entries: usize) -> BatchBuilder {
        let mut b = BatchBuilder::new(1);
        b.batches[0].unmatched_entry = Vec::with_capacity(entries);
        b.batches[0].unmatched_entry.push(1);
        b
    }

    #[test]
    fn a_queue_refuses_past_its_bytes_and_takes_any_batch_when_empty() {
        let (input, rx) = input(65_536);
        // 5,000 x 8 = 40,000 bytes into an empty queue.
        assert!(input.submit(&mut request(5_000)).is_ok());
        assert_eq!(input.queue_bytes(), [40_000]);
        // 40,000 + 40,000 = 80,000 > 65,536: refused whole, nothing queued.
        assert!(matches!(
            input.submit(&mut request(5_000)),
            Err(SubmitError::Full)
        ));
        assert_eq!((rx.len(), input.queue_bytes()[0]), (1, 40_000));
        // 40,000 + 1,000 x 8 = 48,000 <= 65,536: queued.
        assert!(input.submit(&mut request(1_000)).is_ok());
        assert_eq!((rx.len(), input.queue_bytes()[0]), (2, 48_000));
        // Under the bound, the early check lets requests in to be sized at submit.
        assert!(!input.is_full());
        // The worker's part: take a batch, then its bytes off the count (48,000 - 40,000).
        let taken = rx.recv().unwrap();
        assert_eq!(taken.queued_bytes, 40_000);
        input.queued[0].fetch_sub(taken.queued_bytes, Ordering::Relaxed);
        assert_eq!(input.queue_bytes(), [8_000]);
        // 8,000 + 40,000 = 48,000: the refused request now fits.
        assert!(input.submit(&mut request(5_000)).is_ok());
        for b in rx.try_iter() {
            input.queued[0].fetch_sub(b.queued_bytes, Ordering::Relaxed);
        }
        // A batch larger than the bound (10,000 x 8 = 80,000) still goes into an empty
        // queue, so a large request is delayed, never refused forever.
        assert_eq!(input.queue_bytes(), [0]);
        assert!(input.submit(&mut request(10_000)).is_ok());
        assert_eq!(input.queue_bytes(), [80_000]);
        // 80,000 >= 65,536: any request is refused before it is classified.
        assert!(input.is_full());
    }

    /// Cohort values go into the batch's text as before whichever path they take (up to
    /// [`PIECES`] keys hashed where the span holds them, more through the scratch
    /// buffer): clipped, numbers written out, the missing-value label for an absent key,
    /// and the series hash is that of the values' bytes, each followed by 0xff.
    #[test]
    fn cohort_values_and_their_hash_are_the_same_on_both_paths() {
        use crate::decode::ProstSpan;
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::trace::v1::Span;
        use std::hash::{BuildHasher, Hasher};
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let long = "é".repeat(MAX_LABEL_VALUE_BYTES);
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            end_time_unix_nano: 5,
            attributes: vec![
                kv("tier", any_value::Value::StringValue("pro".into())),
                kv("code", any_value::Value::IntValue(503)),
                kv("long", any_value::Value::StringValue(long.clone())),
                kv("ok", any_value::Value::BoolValue(true)),
            ],
            ..Default::default()
        };
        let view = ProstSpan {
            resource: &[],
            service: "shop",
            span: &span,
        };
        let clipped = clip(&long, MAX_LABEL_VALUE_BYTES);
        for names in [
            &["tier", "code", "absent", "long"][..],
            &[
                "tier", "ok", "code", "absent", "long", "tier", "code", "ok", "absent",
            ][..],
        ] {
            let keys: Vec<AttrKey> = names.iter().map(|n| AttrKey::new(n)).collect();
            let want: Vec<&str> = names
                .iter()
                .map(|n| match *n {
                    "tier" => "pro",
                    "code" => "503",
                    "ok" => "true",
                    "long" => clipped,
                    _ => "n/a",
                })
                .collect();
            let c = Classified {
                journey: 0,
                seed: 42,
                cohort_keys: &keys,
                flags: 0,
                user: None,
                value: Value::None,
                attempt: None,
            };
            let mut b = BatchBuilder::new(3);
            // Twice: the same values give the same hash, and the second span's values
            // follow the first's in the batch.
            for _ in 0..2 {
                b.push(&view, &c, "n/a", &AttrKey::new("version"), 5, 1);
            }
            let mut h = b.hasher.build_hasher();
            h.write_u64(42);
            for v in &want {
                h.write(v.as_bytes());
                h.write_u8(0xff);
            }
            let hash = h.finish();
            let batch = &b.batches[(hash % 3) as usize];
            assert_eq!(batch.records.len(), 2, "{names:?}");
            for r in &batch.records {
                assert_eq!(r.hash, hash, "{names:?}");
                let at = r.first_value as usize;
                let got: Vec<&str> = (at..at + r.n_values as usize)
                    .map(|i| batch.value(i))
                    .collect();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn a_batch_counts_the_capacity_it_holds() {
        let b = Batch {
            text: String::with_capacity(100),
            values: Vec::with_capacity(10),
            records: Vec::with_capacity(3),
            unmatched_entry: Vec::with_capacity(2),
            trace_spans: Vec::with_capacity(4),
            ..Default::default()
        };
        // 100 + 10 x 8 + 3 x 88 + 2 x 8 + 4 x 64 = 100 + 80 + 264 + 16 + 256 = 716.
        assert_eq!(b.heap_bytes(), 716);
    }
}
