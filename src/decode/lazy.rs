//! Lazy OTLP trace decoding: one pass over the `ExportTraceServiceRequest` bytes that
//! extracts what the pipeline reads (resource attributes and service name; span name,
//! kind, status code, timestamps, trace and span ids, attributes; event names) as
//! slices borrowed from the request buffer. Nothing is allocated per span: spans,
//! attributes and event names go to a handful of vectors per request.
//!
//! The walk still checks everything the prost decoder checks, so the two accept and
//! reject the same requests: truncated fields, invalid wire types or field numbers,
//! varints longer than 10 bytes or past 64 bits, lengths that run past their message,
//! known fields with the wrong wire type, unbalanced groups, nesting past prost's
//! recursion limit, and invalid UTF-8 in every string field of the schema (read or
//! not). Repeated and merged fields follow protobuf semantics as prost applies them:
//! the last scalar wins, message fields merge (a second `status` keeps the first's code
//! unless it sets its own), repeated fields append. `tests/lazy_decoder.rs` checks the
//! agreement with prost property by property.
//! Kept for speed (measured, BENCHMARKS.md): 219 ns per span against prost's 1.52 µs.
//! The hot messages (span, `KeyValue`, `AnyValue`) dispatch on the raw one-byte key of
//! their usual fields, which needs no key or wire-type check; every other key takes the
//! general path with all the checks, so both paths accept and refuse the same bytes.

pub(super) use crate::span::key_bit;
use crate::span::{same, AttrKey, AttrValue, SpanView};
use std::cell::Cell;

/// prost's recursion limit; nesting deeper than this is rejected by both decoders.
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const I32: u8 = 5;

/// The error of a request with more spans than the decoder was allowed to read.
pub const TOO_MANY_SPANS: &str = "more spans than max_spans_per_request";

/// Why a request could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub what: &'static str,
    /// Byte offset in the request body.
    pub offset: usize,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// The walk's error: zero-sized, so results stay in registers on the hot path; the
/// details go to a thread-local on the (cold) failure path.
#[derive(Debug, Clone, Copy)]
struct Fail;

type R<T> = Result<T, Fail>;

thread_local! {
    static WHY: Cell<(&'static str, usize)> = const { Cell::new(("", 0)) };
}

#[cold]
#[inline(never)]
fn fail(what: &'static str, offset: usize) -> Fail {
    WHY.with(|w| w.set((what, offset)));
    Fail
}

/// One attribute, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attr<'a> {
    pub key: &'a str,
    pub value: AttrValue<'a>,
}

impl Attr<'_> {
    /// What a `KeyValue` with no fields reads as.
    pub(super) const EMPTY: Attr<'static> = Attr {
        key: "",
        value: AttrValue::Other,
    };
}

const EMPTY_KEY_BIT: u64 = key_bit("");

#[derive(Debug, Clone, Copy)]
pub(super) struct ResourceRec<'a> {
    pub(super) service: &'a str,
    pub(super) attrs: (u32, u32),
    /// A filter of the attributes' keys ([`key_bit`]).
    pub(super) keys: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SpanRec<'a> {
    pub(super) name: &'a str,
    pub(super) trace_id: &'a [u8],
    pub(super) span_id: &'a [u8],
    pub(super) parent_span_id: &'a [u8],
    pub(super) trace_state: &'a str,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
    pub(super) kind: i32,
    pub(super) status: i32,
    pub(super) resource: u32,
    pub(super) attrs: (u32, u32),
    pub(super) events: (u32, u32),
    /// A filter of the attributes' keys ([`key_bit`]).
    pub(super) keys: u64,
    /// The bits of `keys` that more than one attribute set (one key twice, or two keys
    /// on one bit): a key whose bit is clear here is on the span at most once, so a
    /// remembered position that holds it is its first ([`Hints::span`]).
    pub(super) dups: u64,
}

impl SpanRec<'_> {
    /// A span with no fields yet, of `resource`, whose attributes and events start at
    /// those positions of the request's lists.
    pub(super) fn empty(resource: u32, first_attr: u32, first_event: u32) -> Self {
        SpanRec {
            name: "",
            trace_id: &[],
            span_id: &[],
            parent_span_id: &[],
            trace_state: "",
            start_ns: 0,
            end_ns: 0,
            kind: 0,
            status: 0,
            resource,
            attrs: (first_attr, first_attr),
            events: (first_event, first_event),
            keys: 0,
            dups: 0,
        }
    }
}

/// A decoded trace request: the spans, in request order, and what they reference.
#[derive(Debug, Default)]
pub struct TraceRequest<'a> {
    pub(super) resources: Vec<ResourceRec<'a>>,
    pub(super) spans: Vec<SpanRec<'a>>,
    pub(super) span_attrs: Vec<Attr<'a>>,
    pub(super) resource_attrs: Vec<Attr<'a>>,
    pub(super) events: Vec<&'a str>,
    /// Attributes kept per span; the rest are checked but not stored or read by rules.
    pub(super) max_attrs: usize,
    /// Spans a request may hold.
    pub(super) max_spans: usize,
    /// The key and string value last seen at each attribute position of a span: spans
    /// of one request mostly repeat them, and comparing bytes with a string already
    /// checked is cheaper than checking UTF-8 again.
    pub(super) seen: Seen<'a>,
    /// What the resources' lookups by key found, for their next spans.
    hints: Hints,
}

/// What attribute lookups by an [`AttrKey`] found, remembered per key slot (the
/// number of the key's [`key_bit`]). Cells: lookups read through `&` references.
#[derive(Debug)]
struct Hints {
    /// The spans of a resource look up the same cohort, version and rule keys among
    /// the same attributes, so the scan (a key at the end of seven, or one absent that
    /// the resource's filter cannot rule out) is done once per resource and key. Keyed
    /// by the key's id and the resource's index, so a key sharing the slot only evicts
    /// the entry.
    resource: [Cell<Memo>; 64],
    /// Where a key was among the attributes of the last span it was found in: SDKs
    /// write a span's attributes in the same order span after span, so one compare at
    /// that position mostly replaces the scan (~75 instructions for a key ten
    /// attributes in). Trusted only where it holds the key and the span's `dups` say
    /// the key is there once: the scan returns the first of a key.
    span: [Cell<SpanMemo>; 64],
}

/// A span attribute's position, as [`Hints::span`] remembers it.
#[derive(Debug, Clone, Copy, Default)]
struct SpanMemo {
    /// [`AttrKey::id`]; 0: empty.
    key: u64,
    at: u32,
    /// Where the bytes of the key last found there are: the decoders hand a key that
    /// repeats the one at its position in the span before out as that same slice, so
    /// the same address and length are the same key without comparing its bytes (the
    /// request's body does not change while it is read).
    addr: usize,
}

/// The [`Hints`] slot of a key: the number of its one filter bit.
#[inline(always)]
fn slot(bit: u64) -> usize {
    bit.trailing_zeros() as usize & 63
}

#[derive(Debug, Clone, Copy, Default)]
struct Memo {
    /// [`AttrKey::id`]; 0: empty.
    key: u64,
    resource: u32,
    /// The attribute's index among the resource's, or [`ABSENT`].
    at: u32,
}

const ABSENT: u32 = u32::MAX;

impl Default for Hints {
    fn default() -> Self {
        Hints {
            resource: std::array::from_fn(|_| Cell::new(Memo::default())),
            span: std::array::from_fn(|_| Cell::new(SpanMemo::default())),
        }
    }
}

const SEEN: usize = 16;

#[derive(Debug, Default)]
pub(super) struct Seen<'a> {
    attrs: [SeenAttr<'a>; SEEN],
    /// The span name last read: one per journey, repeated span after span.
    name: &'a str,
}

/// What the attribute at one position of the last span held: its key, the key's
/// [`key_bit`] (so the span's key filter is built as the keys are read, not in a second
/// pass over the attributes) and its string value.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeenAttr<'a> {
    key: &'a str,
    bit: u64,
    value: &'a str,
}

impl Default for SeenAttr<'_> {
    fn default() -> Self {
        SeenAttr {
            key: "",
            bit: key_bit(""),
            value: "",
        }
    }
}

/// The lists a decoded request fills (spans, attributes, resources, event names),
/// empty, with the capacity of an earlier request's: [`TraceRequest::into_lists`] gives
/// them back and a [`super::arena::ListPool`] keeps them, so a request's ~0.6 MB of
/// lists (1,000 JSON spans) is not allocated, page-faulted in and freed each time.
/// Held as `'static` while empty, since no request's borrow outlives it.
#[derive(Debug, Default)]
pub struct Lists {
    resources: Vec<ResourceRec<'static>>,
    spans: Vec<SpanRec<'static>>,
    span_attrs: Vec<Attr<'static>>,
    resource_attrs: Vec<Attr<'static>>,
    events: Vec<&'static str>,
}

impl Lists {
    /// Where the spans and the span attributes are kept (tests of the reuse).
    #[cfg(test)]
    pub(super) fn spans_ptr(&self) -> usize {
        self.spans.as_ptr() as usize
    }
    #[cfg(test)]
    pub(super) fn span_attrs_ptr(&self) -> usize {
        self.span_attrs.as_ptr() as usize
    }

    /// The heap bytes the lists hold.
    pub fn held(&self) -> usize {
        use std::mem::size_of;
        self.resources.capacity() * size_of::<ResourceRec<'_>>()
            + self.spans.capacity() * size_of::<SpanRec<'_>>()
            + (self.span_attrs.capacity() + self.resource_attrs.capacity()) * size_of::<Attr<'_>>()
            + self.events.capacity() * size_of::<&str>()
    }
}

/// Pushes `x` and returns it in its place, for reading straight into it
/// (`Vec::push_mut` is Rust 1.95, past the crate's MSRV). The index is in bounds.
#[inline(always)]
fn push_slot<T>(v: &mut Vec<T>, x: T) -> &mut T {
    let at = v.len();
    v.push(x);
    &mut v[at]
}

/// An emptied vector as one of the same layout and a longer borrow: collecting an
/// empty `IntoIter` into a vector of an element of the same size and alignment reuses
/// its allocation (std's in-place collection), so the capacity is kept without
/// `unsafe`. `lists_keep_their_memory_between_requests` checks the pointer stays.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl<'a> TraceRequest<'a> {
    /// An empty request filling `lists`, each with room reserved for a body of
    /// `body_len` bytes at `bytes_per_span` and `bytes_per_attr` (the vectors double
    /// from there if needed).
    pub(super) fn with_lists(
        lists: Lists,
        max_attrs: usize,
        max_spans: usize,
        body_len: usize,
        bytes_per_span: usize,
        bytes_per_attr: usize,
    ) -> TraceRequest<'a> {
        let Lists {
            resources,
            mut spans,
            mut span_attrs,
            resource_attrs,
            events,
        } = lists;
        spans.reserve(body_len / bytes_per_span);
        span_attrs.reserve(body_len / bytes_per_attr);
        TraceRequest {
            max_attrs,
            max_spans,
            resources,
            spans,
            span_attrs,
            resource_attrs,
            events,
            seen: Seen::default(),
            hints: Hints::default(),
        }
    }

    /// The request's lists, emptied, for the next request.
    pub fn into_lists(self) -> Lists {
        Lists {
            resources: recycle(self.resources),
            spans: recycle(self.spans),
            span_attrs: recycle(self.span_attrs),
            resource_attrs: recycle(self.resource_attrs),
            events: recycle(self.events),
        }
    }
}

/// Decodes an OTLP `ExportTraceServiceRequest` from protobuf bytes.
pub fn decode_traces(body: &[u8]) -> Result<TraceRequest<'_>, DecodeError> {
    decode_traces_limited(body, usize::MAX, usize::MAX)
}

/// As [`decode_traces`], keeping at most `max_attrs` attributes per span (the first
/// ones), and refusing a request of more than `max_spans` spans with [`TOO_MANY_SPANS`].
pub fn decode_traces_limited(
    body: &[u8],
    max_attrs: usize,
    max_spans: usize,
) -> Result<TraceRequest<'_>, DecodeError> {
    decode_traces_in(body, Lists::default(), max_attrs, max_spans)
}

/// As [`decode_traces_limited`], filling `lists` (from a [`super::arena::ListPool`]).
pub fn decode_traces_in(
    body: &[u8],
    lists: Lists,
    max_attrs: usize,
    max_spans: usize,
) -> Result<TraceRequest<'_>, DecodeError> {
    // A realistic span is 200-500 bytes, an attribute 20-60.
    let mut out = TraceRequest::with_lists(lists, max_attrs, max_spans, body.len(), 512, 64);
    match out.request(body) {
        Ok(()) => {
            // The spans' key filters were built as their attributes were read.
            out.index_resource_keys();
            Ok(out)
        }
        Err(Fail) => {
            let (what, offset) = WHY.with(|w| w.get());
            Err(DecodeError { what, offset })
        }
    }
}

impl<'a> TraceRequest<'a> {
    /// Fills each resource's key filter, once the attributes are all read. Rules,
    /// cohorts and user keys look up ~8 keys per span that are mostly absent
    /// (`http.status_code`, four user keys, ...); the filter answers most of those
    /// without comparing a key, where a scan of 17 attributes did (BENCHMARKS.md).
    /// Both decoders build the spans' filters as they read the attributes.
    pub(super) fn index_resource_keys(&mut self) {
        for r in &mut self.resources {
            r.keys = self
                .resource_attrs
                .get(r.attrs.0 as usize..r.attrs.1 as usize)
                .unwrap_or_default()
                .iter()
                .fold(0, |m, at| m | key_bit(at.key));
        }
    }

    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// The number of `ResourceSpans` entries.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Every span, in request order.
    pub fn spans(&self) -> impl ExactSizeIterator<Item = LazySpan<'_, 'a>> + '_ {
        self.spans
            .iter()
            .map(move |rec| LazySpan { req: self, rec })
    }

    fn request(&mut self, body: &'a [u8]) -> R<()> {
        let mut c = Cur {
            rest: body,
            end: body.len(),
        };
        let ctx = RECURSION_LIMIT;
        while c.more() {
            let (tag, wt) = c.key()?;
            match tag {
                1 => {
                    let sub = c.message(wt, ctx)?;
                    self.resource_spans(sub, ctx - 1)?;
                }
                _ => c.skip(wt, tag, ctx)?,
            }
        }
        Ok(())
    }

    fn resource_spans(&mut self, mut c: Cur<'a>, ctx: u32) -> R<()> {
        let index = self.resources.len() as u32;
        let first_attr = self.resource_attrs.len() as u32;
        self.resources.push(ResourceRec {
            service: UNKNOWN_SERVICE,
            attrs: (first_attr, first_attr),
            keys: 0,
        });
        while c.more() {
            let (tag, wt) = c.key()?;
            match tag {
                1 => {
                    let sub = c.message(wt, ctx)?;
                    self.resource(sub, ctx - 1)?;
                }
                2 => {
                    let sub = c.message(wt, ctx)?;
                    self.scope_spans(sub, ctx - 1, index)?;
                }
                3 => {
                    c.string(wt)?;
                }
                _ => c.skip(wt, tag, ctx)?,
            }
        }
        self.finish_resource(index, first_attr);
        Ok(())
    }

    /// Sets resource `index`'s attributes (those pushed since `first_attr`) and service.
    pub(super) fn finish_resource(&mut self, index: u32, first_attr: u32) {
        let attrs = (first_attr, self.resource_attrs.len() as u32);
        let own = self
            .resource_attrs
            .get(attrs.0 as usize..attrs.1 as usize)
            .unwrap_or_default();
        // As prost's path reads it: the first `service.name`, if it is a string.
        let service = match own.iter().find(|a| a.key == SERVICE_NAME) {
            Some(Attr {
                value: AttrValue::Str(s),
                ..
            }) => s,
            _ => UNKNOWN_SERVICE,
        };
        if let Some(r) = self.resources.get_mut(index as usize) {
            *r = ResourceRec {
                service,
                attrs,
                keys: 0,
            };
        }
    }

    fn resource(&mut self, mut c: Cur<'a>, ctx: u32) -> R<()> {
        while c.more() {
            let (tag, wt) = c.key()?;
            match tag {
                1 => {
                    let sub = c.message(wt, ctx)?;
                    let slot = push_slot(&mut self.resource_attrs, Attr::EMPTY);
                    key_value(sub, ctx - 1, &mut SeenAttr::default(), slot)?;
                }
                2 => {
                    c.varint_field(wt)?;
                }
                3 => {
                    let sub = c.message(wt, ctx)?;
                    entity_ref(sub, ctx - 1)?;
                }
                _ => c.skip(wt, tag, ctx)?,
            }
        }
        Ok(())
    }

    fn scope_spans(&mut self, c: Cur<'a>, ctx: u32, resource: u32) -> R<()> {
        // Held apart from `self` while the spans are read, so each span is written in its
        // slot: a `SpanRec` built on the stack and pushed was a 136-byte `memcpy` per span,
        // reading fields just stored (store-forwarding stalls).
        let mut spans = std::mem::take(&mut self.spans);
        let read = self.scope_spans_into(&mut spans, c, ctx, resource);
        self.spans = spans;
        read
    }

    fn scope_spans_into(
        &mut self,
        spans: &mut Vec<SpanRec<'a>>,
        mut c: Cur<'a>,
        ctx: u32,
        resource: u32,
    ) -> R<()> {
        while c.more() {
            if let Some((&0x12, tail)) = c.rest.split_first() {
                // A span (field 2, length-delimited): the one field per span here.
                c.rest = tail;
                let sub = c.message_body(ctx)?;
                self.span(spans, sub, ctx - 1, resource)?;
                continue;
            }
            let (tag, wt) = c.key()?;
            match tag {
                1 => {
                    let sub = c.message(wt, ctx)?;
                    scope(sub, ctx - 1)?;
                }
                2 => {
                    let sub = c.message(wt, ctx)?;
                    self.span(spans, sub, ctx - 1, resource)?;
                }
                3 => {
                    c.string(wt)?;
                }
                _ => c.skip(wt, tag, ctx)?,
            }
        }
        Ok(())
    }

    /// One span, read into a new record at the end of `spans` (the request's, held
    /// apart by [`TraceRequest::scope_spans`]).
    fn span(
        &mut self,
        spans: &mut Vec<SpanRec<'a>>,
        mut c: Cur<'a>,
        ctx: u32,
        resource: u32,
    ) -> R<()> {
        // An empty span is 2 bytes on the wire but a record of ~100 here: the cap keeps
        // a small request from becoming gigabytes of records.
        if spans.len() >= self.max_spans {
            return Err(c.fail(TOO_MANY_SPANS));
        }
        let first_attr = self.span_attrs.len() as u32;
        let first_event = self.events.len() as u32;
        let s = push_slot(spans, SpanRec::empty(resource, first_attr, first_event));
        // Attributes read so far, kept or not: the position in `seen`.
        let mut n_attrs = 0usize;
        while let Some((&k, tail)) = c.rest.split_first() {
            // The span's fields by their one-byte key (field number and wire type, as
            // encoders write them): a known byte needs neither the key's checks nor the
            // wire type's. Any other key, a longer encoding of the same field included,
            // takes the general path, which checks everything.
            match k {
                0x4a => {
                    c.rest = tail;
                    self.span_attr(&mut c, ctx, s, &mut n_attrs)?;
                }
                0x0a => {
                    c.rest = tail;
                    s.trace_id = c.len_prefixed()?;
                }
                0x12 => {
                    c.rest = tail;
                    s.span_id = c.len_prefixed()?;
                }
                0x22 => {
                    c.rest = tail;
                    s.parent_span_id = c.len_prefixed()?;
                }
                0x2a => {
                    c.rest = tail;
                    s.name = c.str_seen(&mut self.seen.name)?;
                }
                0x30 => {
                    c.rest = tail;
                    s.kind = c.varint()? as i32;
                }
                0x39 => {
                    c.rest = tail;
                    s.start_ns = c.le64()?;
                }
                0x41 => {
                    c.rest = tail;
                    s.end_ns = c.le64()?;
                }
                _ => self.span_field(&mut c, ctx, s, &mut n_attrs)?,
            }
        }
        s.attrs.1 = self.span_attrs.len() as u32;
        s.events.1 = self.events.len() as u32;
        Ok(())
    }

    /// One span attribute (its key already read), kept if the span has room; its key
    /// enters the span's key filter.
    #[inline(always)]
    fn span_attr(
        &mut self,
        c: &mut Cur<'a>,
        ctx: u32,
        s: &mut SpanRec<'a>,
        n_attrs: &mut usize,
    ) -> R<()> {
        let sub = c.message_body(ctx)?;
        let seen = &mut self.seen.attrs[*n_attrs % SEEN];
        *n_attrs += 1;
        if self.span_attrs.len() - (s.attrs.0 as usize) < self.max_attrs {
            // Read straight into its place in the list: an `Attr` returned by value went
            // through misaligned stack copies that stalled on store forwarding
            // (BENCHMARKS.md, ninth step). A failed read fails the whole request.
            let slot = push_slot(&mut self.span_attrs, Attr::EMPTY);
            let bit = key_value(sub, ctx - 1, seen, slot)?;
            s.dups |= s.keys & bit;
            s.keys |= bit;
        } else {
            let mut dropped = Attr::EMPTY;
            key_value(sub, ctx - 1, seen, &mut dropped)?;
        }
        Ok(())
    }

    /// A span field by its general key: every field, with every check.
    #[inline(never)]
    fn span_field(
        &mut self,
        c: &mut Cur<'a>,
        ctx: u32,
        s: &mut SpanRec<'a>,
        n_attrs: &mut usize,
    ) -> R<()> {
        let (tag, wt) = c.key()?;
        match tag {
            9 => {
                c.want(wt, LEN)?;
                self.span_attr(c, ctx, s, n_attrs)?;
            }
            1 => s.trace_id = c.bytes(wt)?,
            2 => s.span_id = c.bytes(wt)?,
            3 => s.trace_state = c.string(wt)?,
            4 => s.parent_span_id = c.bytes(wt)?,
            5 => {
                c.want(wt, LEN)?;
                s.name = c.str_seen(&mut self.seen.name)?;
            }
            6 => s.kind = c.varint_field(wt)? as i32,
            7 => s.start_ns = c.fixed64(wt)?,
            8 => s.end_ns = c.fixed64(wt)?,
            10 | 12 | 14 => {
                c.varint_field(wt)?;
            }
            11 => {
                let sub = c.message(wt, ctx)?;
                let name = event(sub, ctx - 1)?;
                self.events.push(name);
            }
            13 => {
                let sub = c.message(wt, ctx)?;
                link(sub, ctx - 1)?;
            }
            15 => {
                let sub = c.message(wt, ctx)?;
                status(sub, ctx - 1, &mut s.status)?;
            }
            16 => c.fixed32(wt)?,
            _ => c.skip(wt, tag, ctx)?,
        }
        Ok(())
    }
}

pub(super) const SERVICE_NAME: &str = "service.name";
pub(super) const UNKNOWN_SERVICE: &str = "unknown_service";

/// A `KeyValue`, with its `AnyValue` read in the same loop (the hot path: ten or more
/// per span), and the key's [`key_bit`]. Repeated `value` fields merge and the last
/// field of the oneof wins, as in prost; arrays, maps and bytes are checked and read as
/// [`AttrValue::Other`]. `seen` is what the attribute at this position held before.
#[inline(always)]
fn key_value<'a>(mut c: Cur<'a>, ctx: u32, seen: &mut SeenAttr<'a>, out: &mut Attr<'a>) -> R<u64> {
    // No `key` field reads as "", no `value` field (or one that sets nothing) as
    // `Other`, as through prost: `out` starts as [`Attr::EMPTY`].
    let mut bit = EMPTY_KEY_BIT;
    while let Some((&k, tail)) = c.rest.split_first() {
        // As in `span`: the two fields by their one-byte keys first.
        match k {
            0x0a => {
                c.rest = tail;
                (out.key, bit) = c.key_seen(seen)?;
            }
            0x12 => {
                c.rest = tail;
                let v = c.message_body(ctx)?;
                any_value(v, ctx - 1, &mut seen.value, &mut out.value)?;
            }
            _ => {
                let (tag, wt) = c.key()?;
                match tag {
                    1 => {
                        c.want(wt, LEN)?;
                        (out.key, bit) = c.key_seen(seen)?;
                    }
                    2 => {
                        let v = c.message(wt, ctx)?;
                        any_value(v, ctx - 1, &mut seen.value, &mut out.value)?;
                    }
                    3 => {
                        c.varint_field(wt)?;
                    }
                    _ => c.skip(wt, tag, ctx)?,
                }
            }
        }
    }
    Ok(bit)
}

/// The fields of one `AnyValue` message into `value` (merged into what an earlier
/// `value` field of the same attribute set: the last field of the oneof wins).
#[inline(always)]
fn any_value<'a>(mut v: Cur<'a>, ctx: u32, seen: &mut &'a str, value: &mut AttrValue<'a>) -> R<()> {
    while let Some((&k, tail)) = v.rest.split_first() {
        match k {
            0x0a => {
                v.rest = tail;
                *value = AttrValue::Str(v.str_seen(seen)?);
            }
            0x18 => {
                v.rest = tail;
                *value = AttrValue::Int(v.varint()? as i64);
            }
            _ => any_value_field(&mut v, ctx, seen, value)?,
        }
    }
    Ok(())
}

/// An `AnyValue` field by its general key.
#[inline(never)]
fn any_value_field<'a>(
    v: &mut Cur<'a>,
    ctx: u32,
    seen: &mut &'a str,
    value: &mut AttrValue<'a>,
) -> R<()> {
    let (tag, wt) = v.key()?;
    match tag {
        1 => {
            v.want(wt, LEN)?;
            *value = AttrValue::Str(v.str_seen(seen)?);
        }
        2 => {
            *value = AttrValue::Bool(v.varint_field(wt)? != 0);
        }
        3 => {
            *value = AttrValue::Int(v.varint_field(wt)? as i64);
        }
        4 => {
            *value = AttrValue::Double(f64::from_bits(v.fixed64(wt)?));
        }
        5 | 6 => {
            let sub = v.message(wt, ctx)?;
            list(sub, ctx - 1, tag == 6)?;
            *value = AttrValue::Other;
        }
        7 => {
            v.bytes(wt)?;
            *value = AttrValue::Other;
        }
        8 => {
            v.varint_field(wt)?;
            *value = AttrValue::Other;
        }
        _ => v.skip(wt, tag, ctx)?,
    }
    Ok(())
}

/// Checks a nested `KeyValue` (in a list, or where nothing reads it).
#[inline(never)]
fn check_key_value(c: Cur<'_>, ctx: u32) -> R<()> {
    let mut unread = Attr::EMPTY;
    key_value(c, ctx, &mut SeenAttr::default(), &mut unread).map(|_| ())
}

/// `ArrayValue` (repeated AnyValue) or `KeyValueList` (repeated KeyValue), checked only.
#[inline(never)]
fn list(mut c: Cur<'_>, ctx: u32, kv: bool) -> R<()> {
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            1 => {
                let sub = c.message(wt, ctx)?;
                if kv {
                    check_key_value(sub, ctx - 1)?;
                } else {
                    check_any_value(sub, ctx - 1)?;
                }
            }
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(())
}

fn check_any_value(mut c: Cur<'_>, ctx: u32) -> R<()> {
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            1 => {
                c.string(wt)?;
            }
            2 | 3 | 8 => {
                c.varint_field(wt)?;
            }
            4 => {
                c.fixed64(wt)?;
            }
            5 | 6 => {
                let sub = c.message(wt, ctx)?;
                list(sub, ctx - 1, tag == 6)?;
            }
            7 => {
                c.bytes(wt)?;
            }
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(())
}

fn entity_ref(mut c: Cur<'_>, ctx: u32) -> R<()> {
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            1..=4 => {
                c.string(wt)?;
            }
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(())
}

fn scope(mut c: Cur<'_>, ctx: u32) -> R<()> {
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            1 | 2 => {
                c.string(wt)?;
            }
            3 => {
                let sub = c.message(wt, ctx)?;
                check_key_value(sub, ctx - 1)?;
            }
            4 => {
                c.varint_field(wt)?;
            }
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(())
}

fn event<'a>(mut c: Cur<'a>, ctx: u32) -> R<&'a str> {
    let mut name = "";
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            1 => {
                c.fixed64(wt)?;
            }
            2 => name = c.string(wt)?,
            3 => {
                let sub = c.message(wt, ctx)?;
                check_key_value(sub, ctx - 1)?;
            }
            4 => {
                c.varint_field(wt)?;
            }
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(name)
}

fn link(mut c: Cur<'_>, ctx: u32) -> R<()> {
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            1 | 2 => {
                c.bytes(wt)?;
            }
            3 => {
                c.string(wt)?;
            }
            4 => {
                let sub = c.message(wt, ctx)?;
                check_key_value(sub, ctx - 1)?;
            }
            5 => {
                c.varint_field(wt)?;
            }
            6 => c.fixed32(wt)?,
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(())
}

/// Merges one `Status` into the span's: a code it sets replaces the earlier one.
fn status(mut c: Cur<'_>, ctx: u32, code: &mut i32) -> R<()> {
    while c.more() {
        let (tag, wt) = c.key()?;
        match tag {
            2 => {
                c.string(wt)?;
            }
            3 => *code = c.varint_field(wt)? as i32,
            _ => c.skip(wt, tag, ctx)?,
        }
    }
    Ok(())
}

/// A cursor over one message: the bytes of it not read yet, which end at offset `end`
/// of the request (errors say where they are from it). Kept as the slice that is left,
/// so reading a byte or a field is one length check and one slice update.
#[derive(Clone, Copy)]
struct Cur<'a> {
    rest: &'a [u8],
    end: usize,
}

impl<'a> Cur<'a> {
    #[inline(always)]
    fn more(&self) -> bool {
        !self.rest.is_empty()
    }

    #[cold]
    #[inline(never)]
    fn fail(&self, what: &'static str) -> Fail {
        fail(what, self.end - self.rest.len())
    }

    #[inline(always)]
    fn varint(&mut self) -> R<u64> {
        match self.rest.split_first() {
            Some((&x, tail)) if x < 0x80 => {
                self.rest = tail;
                Ok(u64::from(x))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> R<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&x) = self.rest.get(i) else {
                return Err(self.fail("truncated varint"));
            };
            value |= u64::from(x & 0x7f) << (7 * i);
            if x < 0x80 {
                if i == 9 && x > 1 {
                    return Err(self.fail("varint overflows 64 bits"));
                }
                self.rest = self.rest.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err(self.fail("varint longer than 10 bytes"))
    }

    #[inline(always)]
    fn key(&mut self) -> R<(u32, u8)> {
        let key = self.varint()?;
        let wt = (key & 7) as u8;
        if key > u64::from(u32::MAX) || wt > I32 || key < 8 {
            return Err(self.bad_key(key));
        }
        Ok(((key as u32) >> 3, wt))
    }

    #[cold]
    #[inline(never)]
    fn bad_key(&self, key: u64) -> Fail {
        if key > u64::from(u32::MAX) {
            self.fail("invalid field key")
        } else if key & 7 > u64::from(I32) {
            self.fail("invalid wire type")
        } else {
            self.fail("invalid field number 0")
        }
    }

    #[inline(always)]
    fn want(&self, wt: u8, expected: u8) -> R<()> {
        if wt == expected {
            Ok(())
        } else {
            Err(self.fail("unexpected wire type for a known field"))
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        match self.rest.split_at_checked(n) {
            Some((s, tail)) => {
                self.rest = tail;
                Ok(s)
            }
            None => Err(self.fail("field runs past the end of its message")),
        }
    }

    #[inline(always)]
    fn len_prefixed(&mut self) -> R<&'a [u8]> {
        let len = self.varint()?;
        match usize::try_from(len)
            .ok()
            .and_then(|n| self.rest.split_at_checked(n))
        {
            Some((s, tail)) => {
                self.rest = tail;
                Ok(s)
            }
            None => Err(self.fail("length runs past the end of its message")),
        }
    }

    #[inline(always)]
    fn bytes(&mut self, wt: u8) -> R<&'a [u8]> {
        self.want(wt, LEN)?;
        self.len_prefixed()
    }

    #[inline(always)]
    fn string(&mut self, wt: u8) -> R<&'a str> {
        self.want(wt, LEN)?;
        let b = self.len_prefixed()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s),
            Err(_) => Err(self.fail("invalid UTF-8 in a string field")),
        }
    }

    /// A string field's bytes (its key read); when they equal `seen` (a string already
    /// checked), `seen` is returned without checking UTF-8 again, else the new string
    /// becomes `seen`.
    #[inline(always)]
    fn str_seen(&mut self, seen: &mut &'a str) -> R<&'a str> {
        let b = self.len_prefixed()?;
        if same(seen.as_bytes(), b) {
            return Ok(seen);
        }
        self.new_str(b, seen)
    }

    #[inline(never)]
    fn new_str(&self, b: &'a [u8], seen: &mut &'a str) -> R<&'a str> {
        match std::str::from_utf8(b) {
            Ok(s) => {
                *seen = s;
                Ok(s)
            }
            Err(_) => Err(self.fail("invalid UTF-8 in a string field")),
        }
    }

    /// An attribute key's bytes (its field key read), with the key's [`key_bit`]: as
    /// [`Cur::str_seen`], the bit is computed only for a key not seen at this position.
    #[inline(always)]
    fn key_seen(&mut self, seen: &mut SeenAttr<'a>) -> R<(&'a str, u64)> {
        let b = self.len_prefixed()?;
        if same(seen.key.as_bytes(), b) {
            return Ok((seen.key, seen.bit));
        }
        let key = self.new_str(b, &mut seen.key)?;
        seen.bit = key_bit(key);
        Ok((key, seen.bit))
    }

    #[inline(always)]
    fn varint_field(&mut self, wt: u8) -> R<u64> {
        self.want(wt, VARINT)?;
        self.varint()
    }

    #[inline(always)]
    fn fixed64(&mut self, wt: u8) -> R<u64> {
        self.want(wt, I64)?;
        self.le64()
    }

    /// A fixed64 field's value (its key read).
    #[inline(always)]
    fn le64(&mut self) -> R<u64> {
        match self.rest.split_first_chunk::<8>() {
            Some((a, tail)) => {
                self.rest = tail;
                Ok(u64::from_le_bytes(*a))
            }
            None => Err(self.fail("field runs past the end of its message")),
        }
    }

    #[inline(always)]
    fn fixed32(&mut self, wt: u8) -> R<()> {
        self.want(wt, I32)?;
        self.take(4).map(|_| ())
    }

    /// A nested message field: checks the wire type and the recursion limit as prost
    /// does, and returns a cursor over the message; its fields use `ctx - 1`.
    #[inline(always)]
    fn message(&mut self, wt: u8, ctx: u32) -> R<Cur<'a>> {
        self.want(wt, LEN)?;
        self.message_body(ctx)
    }

    /// A nested message whose key (of the right wire type) was read.
    #[inline(always)]
    fn message_body(&mut self, ctx: u32) -> R<Cur<'a>> {
        if ctx == 0 {
            return Err(self.fail("messages nested too deeply"));
        }
        let rest = self.len_prefixed()?;
        Ok(Cur {
            rest,
            end: self.end - self.rest.len(),
        })
    }

    /// Skips an unknown field as prost does, groups included.
    #[inline(never)]
    fn skip(&mut self, wt: u8, tag: u32, ctx: u32) -> R<()> {
        if ctx == 0 {
            return Err(self.fail("messages nested too deeply"));
        }
        match wt {
            VARINT => {
                self.varint()?;
            }
            I64 => {
                self.take(8)?;
            }
            LEN => {
                self.len_prefixed()?;
            }
            I32 => {
                self.take(4)?;
            }
            START_GROUP => loop {
                if !self.more() {
                    return Err(self.fail("unterminated group"));
                }
                let (inner, iwt) = self.key()?;
                if iwt == END_GROUP {
                    if inner != tag {
                        return Err(self.fail("unexpected end group tag"));
                    }
                    break;
                }
                self.skip(iwt, inner, ctx - 1)?;
            },
            _ => return Err(self.fail("unexpected end group tag")),
        }
        Ok(())
    }
}

/// One span of a [`TraceRequest`], read through [`SpanView`].
#[derive(Clone, Copy)]
pub struct LazySpan<'r, 'a> {
    req: &'r TraceRequest<'a>,
    rec: &'r SpanRec<'a>,
}

impl<'r, 'a> LazySpan<'r, 'a> {
    pub fn trace_id(&self) -> &'a [u8] {
        self.rec.trace_id
    }

    pub fn span_id(&self) -> &'a [u8] {
        self.rec.span_id
    }

    /// Why the span cannot be used, as [`super::invalid_reason`] says for prost spans.
    pub fn invalid_reason(&self) -> Option<&'static str> {
        super::invalid_parts(
            self.rec.trace_id,
            self.rec.span_id,
            self.rec.start_ns,
            self.rec.end_ns,
        )
    }

    pub fn span_attrs(&self) -> &'r [Attr<'a>] {
        let (a, b) = self.rec.attrs;
        self.req
            .span_attrs
            .get(a as usize..b as usize)
            .unwrap_or_default()
    }

    pub fn resource_attrs(&self) -> &'r [Attr<'a>] {
        match self.req.resources.get(self.rec.resource as usize) {
            Some(r) => self
                .req
                .resource_attrs
                .get(r.attrs.0 as usize..r.attrs.1 as usize)
                .unwrap_or_default(),
            None => &[],
        }
    }

    fn resource(&self) -> Option<&'r ResourceRec<'a>> {
        self.req.resources.get(self.rec.resource as usize)
    }

    /// The span's attribute `key` (whose [`key_bit`] is `bit`), checked against the
    /// span's key filter first: an absent key costs a test and a branch.
    #[inline(always)]
    fn span_attr_in(&self, key: &str, bit: u64) -> Option<AttrValue<'a>> {
        if self.rec.keys & bit == 0 {
            return None;
        }
        scan(self.span_attrs(), key)
    }

    /// The resource's attributes and their key filter.
    #[inline(always)]
    fn resource_list(&self) -> (&'r [Attr<'a>], u64) {
        match self.resource() {
            Some(r) => (
                self.req
                    .resource_attrs
                    .get(r.attrs.0 as usize..r.attrs.1 as usize)
                    .unwrap_or_default(),
                r.keys,
            ),
            None => (&[], 0),
        }
    }

    /// The span's attribute `key`, at the position [`Hints::span`] remembers for it
    /// when that is sure to be its first, else by a scan that it then remembers.
    /// Inlined: a hit is a few loads and one key compare.
    #[inline(always)]
    fn span_attr_memo(&self, key: &AttrKey) -> Option<AttrValue<'a>> {
        let bit = key.bit();
        if self.rec.keys & bit == 0 {
            return None;
        }
        let attrs = self.span_attrs();
        let cell = &self.req.hints.span[slot(bit)];
        let memo = cell.get();
        if memo.key == key.id() && self.rec.dups & bit == 0 {
            if let Some(a) = attrs.get(memo.at as usize) {
                let addr = a.key.as_ptr() as usize;
                if addr == memo.addr && a.key.len() == key.len() {
                    return Some(a.value);
                }
                if same(a.key.as_bytes(), key.as_bytes()) {
                    cell.set(SpanMemo { addr, ..memo });
                    return Some(a.value);
                }
            }
        }
        scan_remember(attrs, key, cell)
    }

    /// The resource's attribute `key`, as [`Hints`] remembers it for this resource or
    /// by a scan that it then remembers. Inlined: a hit is a few loads and compares.
    #[inline(always)]
    fn resource_attr_memo(&self, key: &AttrKey) -> Option<AttrValue<'a>> {
        let (attrs, keys) = self.resource_list();
        if keys & key.bit() == 0 {
            return None;
        }
        let cell = &self.req.hints.resource[slot(key.bit())];
        let memo = cell.get();
        let at = if memo.key == key.id() && memo.resource == self.rec.resource {
            memo.at
        } else {
            remember_resource_attr(attrs, key, self.rec.resource, cell)
        };
        attrs.get(at as usize).map(|a| a.value)
    }

    pub fn event_names(&self) -> &'r [&'a str] {
        let (a, b) = self.rec.events;
        self.req
            .events
            .get(a as usize..b as usize)
            .unwrap_or_default()
    }
}

/// The value of `key` among `attrs` (the first, as prost's lists are read), once their
/// key filter said it may be there. Keys of different lengths differ at the first
/// compare, so most attributes cost a length compare.
#[inline(never)]
fn scan<'a>(attrs: &[Attr<'a>], key: &str) -> Option<AttrValue<'a>> {
    let key = key.as_bytes();
    attrs
        .iter()
        .find(|a| same(a.key.as_bytes(), key))
        .map(|a| a.value)
}

/// [`scan`] for [`LazySpan::span_attr_memo`], remembering where the key was. Out of
/// line: the lookups that inline the memo's hit stay small.
#[inline(never)]
fn scan_remember<'a>(
    attrs: &[Attr<'a>],
    key: &AttrKey,
    cell: &Cell<SpanMemo>,
) -> Option<AttrValue<'a>> {
    let name = key.as_bytes();
    let at = attrs.iter().position(|a| same(a.key.as_bytes(), name))?;
    let a = attrs.get(at)?;
    if let Ok(at) = u32::try_from(at) {
        cell.set(SpanMemo {
            key: key.id(),
            at,
            addr: a.key.as_ptr() as usize,
        });
    }
    Some(a.value)
}

/// Where `key` is among resource `resource`'s attributes ([`ABSENT`] if nowhere), by
/// a scan, remembered in `cell` for the resource's next spans. Out of line, as
/// [`scan_remember`].
#[inline(never)]
fn remember_resource_attr(
    attrs: &[Attr<'_>],
    key: &AttrKey,
    resource: u32,
    cell: &Cell<Memo>,
) -> u32 {
    let name = key.as_bytes();
    let at = attrs
        .iter()
        .position(|a| same(a.key.as_bytes(), name))
        .and_then(|at| u32::try_from(at).ok())
        .unwrap_or(ABSENT);
    cell.set(Memo {
        key: key.id(),
        resource,
        at,
    });
    at
}

impl SpanView for LazySpan<'_, '_> {
    fn service_name(&self) -> &str {
        self.req
            .resources
            .get(self.rec.resource as usize)
            .map_or(UNKNOWN_SERVICE, |r| r.service)
    }
    fn name(&self) -> &str {
        self.rec.name
    }
    fn kind(&self) -> i32 {
        self.rec.kind
    }
    fn status_code(&self) -> i32 {
        self.rec.status
    }
    fn start_ns(&self) -> u64 {
        self.rec.start_ns
    }
    fn end_ns(&self) -> u64 {
        self.rec.end_ns
    }
    fn span_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        self.span_attr_in(key, key_bit(key))
    }
    fn resource_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        let (attrs, keys) = self.resource_list();
        if keys & key_bit(key) == 0 {
            return None;
        }
        scan(attrs, key)
    }
    fn key_filter(&self) -> u64 {
        self.rec.keys | self.resource().map_or(0, |r| r.keys)
    }
    #[inline]
    fn span_attr_key(&self, key: &AttrKey) -> Option<AttrValue<'_>> {
        self.span_attr_memo(key)
    }
    #[inline]
    fn resource_attr_key(&self, key: &AttrKey) -> Option<AttrValue<'_>> {
        self.resource_attr_memo(key)
    }
    #[inline]
    fn attr_key(&self, key: &AttrKey) -> Option<AttrValue<'_>> {
        match self.span_attr_memo(key) {
            Some(v) => Some(v),
            None => self.resource_attr_memo(key),
        }
    }
    fn any_event(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
        self.event_names().iter().any(|n| test(n))
    }
    fn trace_id(&self) -> &[u8] {
        self.rec.trace_id
    }
    fn span_id(&self) -> &[u8] {
        self.rec.span_id
    }
    fn parent_span_id(&self) -> &[u8] {
        self.rec.parent_span_id
    }
    fn trace_state(&self) -> &str {
        self.rec.trace_state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span, status, ResourceSpans, ScopeSpans, Span, Status,
    };
    use prost::Message;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "POST /checkout".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![
                kv("http.response.status_code", any_value::Value::IntValue(503)),
                kv("app.plan.tier", any_value::Value::StringValue("pro".into())),
            ],
            events: vec![span::Event {
                name: "exception".into(),
                ..Default::default()
            }],
            status: Some(Status {
                code: status::StatusCode::Error as i32,
                message: "boom".into(),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", any_value::Value::StringValue("shop".into())),
                        kv(
                            "cloud.region",
                            any_value::Value::StringValue("eu-west-1".into()),
                        ),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(), span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn reads_what_the_pipeline_needs() {
        let bytes = request().encode_to_vec();
        let req = decode_traces(&bytes).expect("valid request");
        assert_eq!(req.span_count(), 2);
        let s = req.spans().next().expect("a span");
        assert_eq!(s.service_name(), "shop");
        assert_eq!(s.name(), "POST /checkout");
        assert_eq!(s.kind(), 2);
        assert_eq!(s.status_code(), 2);
        assert_eq!((s.start_ns(), s.end_ns()), (10, 20));
        assert_eq!(
            s.attr("http.response.status_code"),
            Some(AttrValue::Int(503))
        );
        assert_eq!(s.attr("cloud.region"), Some(AttrValue::Str("eu-west-1")));
        assert_eq!(s.attr("app.plan.tier"), Some(AttrValue::Str("pro")));
        assert_eq!(s.attr("missing"), None);
        assert!(s.any_event(&mut |n| n == "exception"));
        assert_eq!(s.invalid_reason(), None);
    }

    #[test]
    fn rejects_truncation_and_bad_wire_types() {
        let bytes = request().encode_to_vec();
        for n in 1..bytes.len() {
            assert!(
                decode_traces(&bytes[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
        // Field 1 of the request as a varint.
        assert!(decode_traces(&[0x08, 0x01]).is_err());
        // An 11-byte varint.
        assert!(decode_traces(&[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err());
        // Wire type 7.
        assert!(decode_traces(&[0x0f]).is_err());
        // Invalid UTF-8 in a span name.
        let mut r = request();
        r.resource_spans[0].scope_spans[0].spans[0].name = "\u{e9}".into();
        let mut bytes = r.encode_to_vec();
        let at = bytes
            .iter()
            .position(|b| *b == 0xc3)
            .expect("the encoded e-acute");
        bytes[at] = 0xff;
        assert!(decode_traces(&bytes).is_err());
        assert!(ExportTraceServiceRequest::decode(&bytes[..]).is_err());
    }

    /// Lookups by key read the first of a repeated key, as prost's lists do, and a
    /// resource's remembered lookups are its own: the next resource, with the key
    /// elsewhere or without it, gets its own answer.
    #[test]
    fn keyed_lookups_take_the_first_of_a_key_and_each_resource_its_own() {
        let mut r = request();
        let spans = &mut r.resource_spans[0].scope_spans[0].spans;
        spans[1].attributes.reverse();
        spans[1].attributes.push(kv(
            "app.plan.tier",
            any_value::Value::StringValue("team".into()),
        ));
        let mut other = r.resource_spans[0].clone();
        let attrs = &mut other.resource.as_mut().expect("a resource").attributes;
        attrs.reverse();
        attrs.insert(
            0,
            kv("host.name", any_value::Value::StringValue("h".into())),
        );
        let mut third = other.clone();
        let mut bare = r.resource_spans[0].clone();
        bare.resource
            .as_mut()
            .expect("a resource")
            .attributes
            .truncate(1);
        // The region after the service here, and another region.
        let attrs = &mut third.resource.as_mut().expect("a resource").attributes;
        attrs.swap(1, 2);
        attrs[2] = kv(
            "cloud.region",
            any_value::Value::StringValue("us-east-1".into()),
        );
        r.resource_spans.extend([other, bare, third]);
        let bytes = r.encode_to_vec();
        let req = decode_traces(&bytes).expect("valid request");
        let (tier, region) = (AttrKey::new("app.plan.tier"), AttrKey::new("cloud.region"));
        let got: Vec<String> = req
            .spans()
            .map(|s| format!("{:?} {:?}", s.attr_key(&tier), s.attr_key(&region)))
            .collect();
        let (pro, eu, us) = (
            "Some(Str(\"pro\"))",
            "Some(Str(\"eu-west-1\"))",
            "Some(Str(\"us-east-1\"))",
        );
        // Two spans a resource; the second span of each has "pro" first, "team" after.
        let want: Vec<String> = [eu, eu, eu, eu, "None", "None", us, us]
            .iter()
            .map(|region| format!("{pro} {region}"))
            .collect();
        assert_eq!(got, want);
    }

    /// A request of one span per list of `(key, int value)` attributes.
    fn spans_with(lists: &[&[(&str, i64)]]) -> Vec<u8> {
        let mut r = request();
        let first = r.resource_spans[0].scope_spans[0].spans[0].clone();
        r.resource_spans[0].scope_spans[0].spans = lists
            .iter()
            .map(|attrs| Span {
                attributes: attrs
                    .iter()
                    .map(|(k, v)| kv(k, any_value::Value::IntValue(*v)))
                    .collect(),
                ..first.clone()
            })
            .collect();
        r.encode_to_vec()
    }

    #[test]
    fn the_span_memo_is_trusted_only_where_it_finds_the_first_of_its_key() {
        let bytes = spans_with(&[
            &[("a", 1), ("b", 2), ("c", 3)],
            // A hit: the key where it was, the same bytes of the body.
            &[("a", 1), ("b", 2), ("c", 4)],
            // Absent: the key filter answers, the memo stays. The next span's key is
            // read anew (another key was at its position here), so a hit compares it.
            &[("a", 1), ("b", 2), ("d", 0)],
            &[("a", 1), ("b", 2), ("c", 11)],
            // A miss: another order, `b` where `c` was.
            &[("c", 5), ("a", 1), ("b", 2)],
            // Absent, then present again elsewhere.
            &[("a", 1), ("b", 2)],
            &[("a", 1), ("b", 2), ("c", 6)],
            // The remembered position holds the key, but a copy before it is the first.
            &[("a", 1), ("c", 7), ("c", 8)],
            // And a duplicate after the first.
            &[("a", 1), ("b", 2), ("c", 9), ("c", 10)],
        ]);
        let req = decode_traces(&bytes).expect("valid request");
        let c = AttrKey::new("c");
        let memo = || req.hints.span[slot(c.bit())].get();
        let mut got = Vec::new();
        let mut at = Vec::new();
        let mut addr = Vec::new();
        for s in req.spans() {
            let v = s.attr_key(&c);
            // The scan by name agrees, and so does the span-only lookup.
            assert_eq!(v, s.attr("c"));
            assert_eq!(s.span_attr_key(&c), v);
            got.push(match v {
                Some(AttrValue::Int(i)) => Some(i),
                _ => None,
            });
            at.push((memo().key == c.id()).then_some(memo().at));
            addr.push(memo().addr);
        }
        assert_eq!(
            got,
            [
                Some(3),
                Some(4),
                None,
                Some(11),
                Some(5),
                None,
                Some(6),
                Some(7),
                Some(9)
            ]
        );
        assert_eq!(
            at,
            [
                Some(2),
                Some(2),
                Some(2),
                Some(2),
                Some(0),
                Some(0),
                Some(2),
                Some(1),
                Some(2)
            ]
        );
        assert_eq!(
            addr[1], addr[0],
            "the second span's key is the first's slice"
        );
        assert_ne!(
            addr[3], addr[1],
            "a key read anew moves the remembered address"
        );
        let dups: Vec<bool> = req.spans.iter().map(|r| r.dups & c.bit() != 0).collect();
        let mut want = [false; 9];
        want[7..].fill(true);
        assert_eq!(dups, want);
    }

    #[test]
    fn the_empty_request_is_valid() {
        let req = decode_traces(&[]).expect("empty is valid");
        assert_eq!(req.span_count(), 0);
    }
}
