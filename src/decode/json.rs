//! Lazy OTLP/JSON trace decoding: one serde pass over the request text that fills the
//! same [`TraceRequest`] the lazy protobuf decoder fills, reading only what the
//! pipeline needs (resource attributes and service name; span name, kind, status code,
//! timestamps, trace and span ids, attributes; event names). Strings are borrowed from
//! the request; only strings with escapes (rare) and decoded ids go to a per-request
//! arena, so nothing is allocated per span beyond a few bytes of bump memory. Values
//! nobody reads are checked and skipped, never built.
//!
//! It accepts and refuses what the full decoder ([`super::traces`], serde into prost
//! structs) accepts and refuses, and reads the same values; `tests/json_decoder.rs` and
//! the fuzz oracle check that property. Both take the Collector's forms: enum fields as
//! numbers or names (`"SPAN_KIND_SERVER"`, `"STATUS_CODE_ERROR"`), 64-bit integers as
//! numbers or strings, ids as hex (anything else is refused). Semantics copied from the
//! full decoder: a known field given twice is refused; a `null` member is the field's
//! default; `null` in an array is refused; unknown fields are skipped; a `KeyValue`
//! needs its `key`, an array or kvlist value its `values`.
//!
//! Known differences, outside OTLP/JSON as any SDK writes it: messages written as JSON
//! arrays (serde's positional form for structs) are refused here; an `AnyValue` that
//! sets two value fields keeps the last in the text (the full decoder's slow path, taken
//! for bodies with `null`s or enum names, keeps the alphabetically last); and that slow
//! path also refuses a key repeated inside an `AnyValue` or an unknown field.

use super::lazy::{Attr, ResourceRec, SpanRec, TraceRequest, TOO_MANY_SPANS, UNKNOWN_SERVICE};
use crate::span::AttrValue;
/// The arena callers lend the decoder (re-exported so they need not name bumpalo).
pub use bumpalo::Bump;
use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use std::fmt;

/// Why a JSON request could not be decoded.
#[derive(Debug)]
pub enum JsonError {
    /// More spans than the decoder was allowed to read.
    TooManySpans,
    /// Not OTLP/JSON; the message says what and where (line and column).
    Invalid(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooManySpans => f.write_str(TOO_MANY_SPANS),
            JsonError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for JsonError {}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`; `arena` holds unescaped strings
/// and decoded ids for as long as the request is read.
pub fn decode_traces<'a>(body: &'a [u8], arena: &'a Bump) -> Result<TraceRequest<'a>, JsonError> {
    decode_traces_limited(body, arena, usize::MAX, usize::MAX)
}

/// As [`decode_traces`], keeping at most `max_attrs` attributes per span (the first
/// ones), and refusing a request of more than `max_spans` spans.
pub fn decode_traces_limited<'a>(
    body: &'a [u8],
    arena: &'a Bump,
    max_attrs: usize,
    max_spans: usize,
) -> Result<TraceRequest<'a>, JsonError> {
    // One check of the whole text lets serde skip the per-string UTF-8 check, and makes
    // skipped values as strictly UTF-8 as read ones (JSON text is UTF-8, RFC 8259).
    let text = super::json_text(body).map_err(JsonError::Invalid)?;
    let mut st = St {
        out: TraceRequest {
            max_attrs,
            max_spans,
            // A realistic span is ~1 KB of JSON; the vectors double from here if needed.
            spans: Vec::with_capacity(body.len() / 1024),
            span_attrs: Vec::with_capacity(body.len() / 100),
            ..TraceRequest::default()
        },
        arena,
        too_many: false,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let walked = Request(&mut st)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match walked {
        Ok(()) => Ok(st.out),
        Err(_) if st.too_many => Err(JsonError::TooManySpans),
        Err(e) => Err(JsonError::Invalid(format!("invalid OTLP JSON: {e}"))),
    }
}

/// The walk's state: the request being filled and where escaped strings go.
struct St<'a> {
    out: TraceRequest<'a>,
    arena: &'a Bump,
    too_many: bool,
}

// ------------------------------------------------------------------ field names

/// A field number per message; 0 is "unknown".
type FieldOf = fn(&str) -> u8;

struct Key(FieldOf);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = u8;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u8, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Key {
    type Value = u8;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<u8, E> {
        Ok((self.0)(s))
    }
}

/// Field numbers (from 1, in `$names` order), the names, and the lookup of one message.
macro_rules! fields {
    ($lookup:ident, $names:ident { $($name:literal => $num:ident),* $(,)? }) => {
        fields!(@consts 1u8, $($num),*);
        // For error messages; `AnyValue` has none (a repeated key there keeps the last).
        #[allow(dead_code)]
        const $names: &[&str] = &[$($name),*];
        fn $lookup(s: &str) -> u8 {
            match s {
                $($name => $num,)*
                _ => 0,
            }
        }
    };
    (@consts $n:expr, $first:ident $(, $rest:ident)*) => {
        const $first: u8 = $n;
        fields!(@consts $n + 1, $($rest),*);
    };
    (@consts $n:expr,) => {};
    (@consts $n:expr) => {};
}

fields!(request_field, REQUEST { "resourceSpans" => RQ_RESOURCE_SPANS });
fields!(resource_spans_field, RESOURCE_SPANS {
    "resource" => RS_RESOURCE,
    "scopeSpans" => RS_SCOPE_SPANS,
    "schemaUrl" => RS_SCHEMA_URL,
});
fields!(resource_field, RESOURCE {
    "attributes" => R_ATTRIBUTES,
    "droppedAttributesCount" => R_DROPPED,
    "entityRefs" => R_ENTITY_REFS,
});
fields!(scope_spans_field, SCOPE_SPANS {
    "scope" => SS_SCOPE,
    "spans" => SS_SPANS,
    "schemaUrl" => SS_SCHEMA_URL,
});
fields!(span_field, SPAN {
    "traceId" => S_TRACE_ID,
    "spanId" => S_SPAN_ID,
    "traceState" => S_TRACE_STATE,
    "parentSpanId" => S_PARENT,
    "flags" => S_FLAGS,
    "name" => S_NAME,
    "kind" => S_KIND,
    "startTimeUnixNano" => S_START,
    "endTimeUnixNano" => S_END,
    "attributes" => S_ATTRIBUTES,
    "droppedAttributesCount" => S_DROPPED_ATTRS,
    "events" => S_EVENTS,
    "droppedEventsCount" => S_DROPPED_EVENTS,
    "links" => S_LINKS,
    "droppedLinksCount" => S_DROPPED_LINKS,
    "status" => S_STATUS,
});
fields!(key_value_field, KEY_VALUE {
    "key" => KV_KEY,
    "value" => KV_VALUE,
    "keyStrindex" => KV_STRINDEX,
});
fields!(any_value_field, ANY_VALUE {
    "stringValue" => AV_STRING,
    "boolValue" => AV_BOOL,
    "intValue" => AV_INT,
    "doubleValue" => AV_DOUBLE,
    "arrayValue" => AV_ARRAY,
    "kvlistValue" => AV_KVLIST,
    "bytesValue" => AV_BYTES,
});
fields!(values_field, LIST { "values" => LV_VALUES });
fields!(scope_field, SCOPE {
    "name" => SC_NAME,
    "version" => SC_VERSION,
    "attributes" => SC_ATTRIBUTES,
    "droppedAttributesCount" => SC_DROPPED,
});
fields!(event_field, EVENT {
    "timeUnixNano" => E_TIME,
    "name" => E_NAME,
    "attributes" => E_ATTRIBUTES,
    "droppedAttributesCount" => E_DROPPED,
});
fields!(link_field, LINK {
    "traceId" => L_TRACE_ID,
    "spanId" => L_SPAN_ID,
    "traceState" => L_TRACE_STATE,
    "attributes" => L_ATTRIBUTES,
    "droppedAttributesCount" => L_DROPPED,
    "flags" => L_FLAGS,
});
fields!(status_field, STATUS {
    "message" => ST_MESSAGE,
    "code" => ST_CODE,
});
fields!(entity_ref_field, ENTITY_REF {
    "schemaUrl" => ER_SCHEMA_URL,
    "type" => ER_TYPE,
    "idKeys" => ER_ID_KEYS,
    "descriptionKeys" => ER_DESCRIPTION_KEYS,
});

/// Known fields of one object seen so far: a known field given twice is refused, as
/// serde's derive refuses it (and Go's protojson).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    #[inline(always)]
    fn first<E: de::Error>(&mut self, k: u8, names: &[&'static str]) -> Result<(), E> {
        let bit = 1u32 << k;
        if self.0 & bit != 0 {
            let name = names.get(usize::from(k) - 1).copied().unwrap_or("?");
            return Err(E::duplicate_field(name));
        }
        self.0 |= bit;
        Ok(())
    }

    fn has(&self, k: u8) -> bool {
        self.0 & (1u32 << k) != 0
    }
}

/// The next key of an object, its known-field number (0: unknown) checked for repeats.
#[inline(always)]
fn next_field<'de, A: MapAccess<'de>>(
    m: &mut A,
    seen: &mut Seen,
    lookup: FieldOf,
    names: &[&'static str],
) -> Result<Option<u8>, A::Error> {
    match m.next_key_seed(Key(lookup))? {
        Some(0) => Ok(Some(0)),
        Some(k) => seen.first(k, names).map(|()| Some(k)),
        None => Ok(None),
    }
}

// ------------------------------------------------------------------ scalar seeds

/// `null` as `None`, anything else through the inner seed.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A string kept for the pipeline: borrowed from the request, or unescaped into the arena.
#[derive(Clone, Copy)]
struct Text<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for Text<'a> {
    type Value = &'a str;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<&'a str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for Text<'a> {
    type Value = &'a str;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'a str) -> Result<&'a str, E> {
        Ok(s)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<&'a str, E> {
        Ok(self.0.alloc_str(s))
    }
}

/// A string field nobody reads: its type is checked, its text is not kept.
struct AnyStr;

impl<'de> DeserializeSeed<'de> for AnyStr {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for AnyStr {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// An array of strings (`EntityRef` keys), checked only.
struct StrList;

impl<'de> DeserializeSeed<'de> for StrList {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for StrList {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(AnyStr)?.is_some() {}
        Ok(())
    }
}

/// A 64-bit unsigned integer (timestamps): a number or a decimal string.
struct U64;

impl<'de> DeserializeSeed<'de> for U64 {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for U64 {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a u64 integer or a string containing a u64 integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range for u64")))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        s.parse().map_err(E::custom)
    }
}

/// A 64-bit signed integer (`intValue`): a number or a decimal string.
struct I64;

impl<'de> DeserializeSeed<'de> for I64 {
    type Value = i64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for I64 {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an i64 integer or a string containing an i64 integer")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range for i64")))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
        s.parse().map_err(E::custom)
    }
}

/// An OTLP enum: its number, or its name in the family `names` (index = number).
struct Enum(&'static [&'static str]);

pub(super) const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

pub(super) const STATUS_CODES: &[&str] =
    &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

impl<'de> DeserializeSeed<'de> for Enum {
    type Value = i32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i32, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Enum {
    type Value = i32;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an i32 or one of {}", self.0.join(", "))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| E::custom(format!("{v} is out of range for i32")))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| E::custom(format!("{v} is out of range for i32")))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<i32, E> {
        match self.0.iter().position(|n| *n == s) {
            Some(i) => Ok(i as i32),
            None => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
        }
    }
}

/// A hex id, decoded into the arena as the full decoder decodes it (`const_hex`: even
/// length, either case, an optional `0x`).
struct Hex<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for Hex<'a> {
    type Value = &'a [u8];
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<&'a [u8], D::Error> {
        d.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for Hex<'a> {
    type Value = &'a [u8];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id as a string of hex digits")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<&'a [u8], E> {
        let b = s.as_bytes();
        if !b.len().is_multiple_of(2) {
            return Err(E::custom(format!(
                "an id must be hex digits (got \"{}\", an odd number of characters)",
                crate::span::clip(s, 64)
            )));
        }
        let digits = match b {
            [b'0', b'x' | b'X', rest @ ..] => rest,
            _ => b,
        };
        let out = self.0.alloc_slice_fill_copy(digits.len() / 2, 0u8);
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => *o = (h << 4) | l,
                _ => {
                    return Err(E::custom(format!(
                        "an id must be hex digits (got \"{}\")",
                        crate::span::clip(s, 64)
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[inline(always)]
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `bytesValue`: standard base64 with padding, as the full decoder reads it.
struct Base64;

impl<'de> DeserializeSeed<'de> for Base64 {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Base64 {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|_| ())
            .map_err(E::custom)
    }
}

/// Any JSON value, read in full (strings unescaped, numbers in range) and dropped: what
/// the full decoder does with unknown fields inside an `AnyValue`, which serde buffers.
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_key_seed(Checked)?.is_some() {
            m.next_value_seed(Checked)?;
        }
        Ok(())
    }
}

/// Skips an unknown field's value: as strictly inside an `AnyValue` as serde's
/// buffering is, elsewhere as serde's derive skips it.
fn skip<'de, A: MapAccess<'de>>(m: &mut A, deep: bool) -> Result<(), A::Error> {
    if deep {
        m.next_value_seed(Checked)
    } else {
        m.next_value::<IgnoredAny>().map(|_| ())
    }
}

/// A `u32` field nobody reads (counts, flags): a number in range, or `null`.
fn check_u32<'de, A: MapAccess<'de>>(m: &mut A) -> Result<(), A::Error> {
    m.next_value::<Option<u32>>().map(|_| ())
}

// ------------------------------------------------------------------ messages

/// A JSON array whose elements each go through `one`.
fn each<'de, A: SeqAccess<'de>, S: DeserializeSeed<'de, Value = ()>>(
    mut a: A,
    mut one: impl FnMut() -> S,
) -> Result<(), A::Error> {
    while a.next_element_seed(one())?.is_some() {}
    Ok(())
}

macro_rules! seq_seed {
    ($name:ident, $what:literal, |$this:ident, $a:ident| $body:expr) => {
        impl<'de> DeserializeSeed<'de> for $name<'_, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de> Visitor<'de> for $name<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, $a: A) -> Result<(), A::Error> {
                let $this = self;
                $body
            }
        }
    };
}

macro_rules! map_seed {
    ($name:ident, $what:literal, $value:ty, |$this:ident, $m:ident| $body:expr) => {
        impl<'de> DeserializeSeed<'de> for $name<'_, 'de> {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for $name<'_, 'de> {
            type Value = $value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut $m: A) -> Result<$value, A::Error> {
                let $this = self;
                $body
            }
        }
    };
}

struct Request<'s, 'a>(&'s mut St<'a>);

map_seed!(
    Request,
    "an ExportTraceServiceRequest object",
    (),
    |this, m| {
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, request_field, REQUEST)? {
            if k == RQ_RESOURCE_SPANS {
                m.next_value_seed(Nullable(ResourceSpansList(&mut *this.0)))?;
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
);

struct ResourceSpansList<'s, 'a>(&'s mut St<'a>);

seq_seed!(ResourceSpansList, "an array of ResourceSpans", |this, a| {
    let mut a = a;
    while a.next_element_seed(ResourceSpans(&mut *this.0))?.is_some() {}
    Ok(())
});

struct ResourceSpans<'s, 'a>(&'s mut St<'a>);

map_seed!(ResourceSpans, "a ResourceSpans object", (), |this, m| {
    let st = this.0;
    let index = st.out.resources.len() as u32;
    let first_attr = st.out.resource_attrs.len() as u32;
    st.out.resources.push(ResourceRec {
        service: UNKNOWN_SERVICE,
        attrs: (first_attr, first_attr),
    });
    let mut seen = Seen::default();
    while let Some(k) = next_field(&mut m, &mut seen, resource_spans_field, RESOURCE_SPANS)? {
        match k {
            RS_RESOURCE => {
                m.next_value_seed(Nullable(Resource(&mut *st)))?;
            }
            RS_SCOPE_SPANS => {
                m.next_value_seed(Nullable(ScopeSpansList(&mut *st, index)))?;
            }
            RS_SCHEMA_URL => {
                m.next_value_seed(Nullable(AnyStr))?;
            }
            _ => {
                m.next_value::<IgnoredAny>()?;
            }
        }
    }
    st.out.finish_resource(index, first_attr);
    Ok(())
});

struct Resource<'s, 'a>(&'s mut St<'a>);

map_seed!(Resource, "a Resource object", (), |this, m| {
    let st = this.0;
    let mut seen = Seen::default();
    while let Some(k) = next_field(&mut m, &mut seen, resource_field, RESOURCE)? {
        match k {
            R_ATTRIBUTES => {
                m.next_value_seed(Nullable(Attrs {
                    st: &mut *st,
                    into: Dest::Resource,
                }))?;
            }
            R_DROPPED => check_u32(&mut m)?,
            R_ENTITY_REFS => {
                m.next_value_seed(Nullable(EntityRefs))?;
            }
            _ => {
                m.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
});

/// Where a list of attributes goes.
#[derive(Clone, Copy, PartialEq)]
enum Dest {
    Resource,
    /// The span's: the first `max_attrs` are kept, counted from this index.
    Span(u32),
}

struct Attrs<'s, 'a> {
    st: &'s mut St<'a>,
    into: Dest,
}

seq_seed!(Attrs, "an array of KeyValue", |this, a| {
    let mut a = a;
    let arena = this.st.arena;
    while let Some(kv) = a.next_element_seed(KeyValue { arena, deep: false })? {
        let out = &mut this.st.out;
        match this.into {
            Dest::Resource => out.resource_attrs.push(kv),
            Dest::Span(first) => {
                if out.span_attrs.len() - (first as usize) < out.max_attrs {
                    out.span_attrs.push(kv);
                }
            }
        }
    }
    Ok(())
});

struct EntityRefs;

impl<'de> DeserializeSeed<'de> for EntityRefs {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntityRefs {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of EntityRef")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<(), A::Error> {
        each(a, || EntityRef)
    }
}

struct EntityRef;

impl<'de> DeserializeSeed<'de> for EntityRef {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntityRef {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an EntityRef object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        // The full decoder's EntityRef has no defaults: every field is required.
        let mut present = Seen::default();
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, entity_ref_field, ENTITY_REF)? {
            let here = match k {
                ER_SCHEMA_URL | ER_TYPE => m.next_value_seed(Nullable(AnyStr))?.is_some(),
                ER_ID_KEYS | ER_DESCRIPTION_KEYS => m.next_value_seed(Nullable(StrList))?.is_some(),
                _ => {
                    m.next_value::<IgnoredAny>()?;
                    false
                }
            };
            if here {
                present.0 |= 1 << k;
            }
        }
        for k in [ER_SCHEMA_URL, ER_TYPE, ER_ID_KEYS, ER_DESCRIPTION_KEYS] {
            if !present.has(k) {
                return Err(A::Error::missing_field(ENTITY_REF[usize::from(k) - 1]));
            }
        }
        Ok(())
    }
}

struct ScopeSpansList<'s, 'a>(&'s mut St<'a>, u32);

seq_seed!(ScopeSpansList, "an array of ScopeSpans", |this, a| {
    let resource = this.1;
    let mut a = a;
    while a
        .next_element_seed(ScopeSpans(&mut *this.0, resource))?
        .is_some()
    {}
    Ok(())
});

struct ScopeSpans<'s, 'a>(&'s mut St<'a>, u32);

map_seed!(ScopeSpans, "a ScopeSpans object", (), |this, m| {
    let (st, resource) = (this.0, this.1);
    let mut seen = Seen::default();
    while let Some(k) = next_field(&mut m, &mut seen, scope_spans_field, SCOPE_SPANS)? {
        match k {
            SS_SCOPE => {
                m.next_value_seed(Nullable(Scope(st.arena)))?;
            }
            SS_SPANS => {
                m.next_value_seed(Nullable(Spans(&mut *st, resource)))?;
            }
            SS_SCHEMA_URL => {
                m.next_value_seed(Nullable(AnyStr))?;
            }
            _ => {
                m.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
});

struct Scope<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for Scope<'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for Scope<'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an InstrumentationScope object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut m: A) -> Result<(), A::Error> {
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, scope_field, SCOPE)? {
            match k {
                SC_NAME | SC_VERSION => {
                    m.next_value_seed(Nullable(AnyStr))?;
                }
                SC_ATTRIBUTES => {
                    m.next_value_seed(Nullable(CheckAttrs(self.0)))?;
                }
                SC_DROPPED => check_u32(&mut m)?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Attributes nobody reads (scope, event, link), checked as the full decoder checks them.
struct CheckAttrs<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for CheckAttrs<'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'a> Visitor<'a> for CheckAttrs<'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of KeyValue")
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut a: A) -> Result<(), A::Error> {
        let arena = self.0;
        while a
            .next_element_seed(KeyValue { arena, deep: false })?
            .is_some()
        {}
        Ok(())
    }
}

struct Spans<'s, 'a>(&'s mut St<'a>, u32);

seq_seed!(Spans, "an array of Span", |this, a| {
    let resource = this.1;
    let mut a = a;
    while a.next_element_seed(Span(&mut *this.0, resource))?.is_some() {}
    Ok(())
});

struct Span<'s, 'a>(&'s mut St<'a>, u32);

map_seed!(Span, "a Span object", (), |this, m| {
    let (st, resource) = (this.0, this.1);
    if st.out.spans.len() >= st.out.max_spans {
        st.too_many = true;
        return Err(A::Error::custom(TOO_MANY_SPANS));
    }
    let arena = st.arena;
    let first_attr = st.out.span_attrs.len() as u32;
    let first_event = st.out.events.len() as u32;
    let mut s = SpanRec {
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
    };
    let mut seen = Seen::default();
    while let Some(k) = next_field(&mut m, &mut seen, span_field, SPAN)? {
        match k {
            S_ATTRIBUTES => {
                m.next_value_seed(Nullable(Attrs {
                    st: &mut *st,
                    into: Dest::Span(first_attr),
                }))?;
            }
            S_TRACE_ID => s.trace_id = m.next_value_seed(Nullable(Hex(arena)))?.unwrap_or(&[]),
            S_SPAN_ID => s.span_id = m.next_value_seed(Nullable(Hex(arena)))?.unwrap_or(&[]),
            S_PARENT => s.parent_span_id = m.next_value_seed(Nullable(Hex(arena)))?.unwrap_or(&[]),
            S_TRACE_STATE => {
                s.trace_state = m.next_value_seed(Nullable(Text(arena)))?.unwrap_or("")
            }
            S_NAME => s.name = m.next_value_seed(Nullable(Text(arena)))?.unwrap_or(""),
            S_KIND => s.kind = m.next_value_seed(Nullable(Enum(SPAN_KINDS)))?.unwrap_or(0),
            S_START => s.start_ns = m.next_value_seed(Nullable(U64))?.unwrap_or(0),
            S_END => s.end_ns = m.next_value_seed(Nullable(U64))?.unwrap_or(0),
            S_FLAGS | S_DROPPED_ATTRS | S_DROPPED_EVENTS | S_DROPPED_LINKS => check_u32(&mut m)?,
            S_EVENTS => {
                m.next_value_seed(Nullable(Events(&mut *st)))?;
            }
            S_LINKS => {
                m.next_value_seed(Nullable(Links(arena)))?;
            }
            S_STATUS => s.status = m.next_value_seed(Nullable(Status))?.unwrap_or(0),
            _ => {
                m.next_value::<IgnoredAny>()?;
            }
        }
    }
    s.attrs.1 = st.out.span_attrs.len() as u32;
    s.events.1 = st.out.events.len() as u32;
    st.out.spans.push(s);
    Ok(())
});

struct Events<'s, 'a>(&'s mut St<'a>);

seq_seed!(Events, "an array of Event", |this, a| {
    let mut a = a;
    let arena = this.0.arena;
    while let Some(name) = a.next_element_seed(Event(arena))? {
        this.0.out.events.push(name);
    }
    Ok(())
});

struct Event<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for Event<'a> {
    type Value = &'a str;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<&'a str, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for Event<'a> {
    type Value = &'a str;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an Event object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut m: A) -> Result<&'a str, A::Error> {
        let mut name = "";
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, event_field, EVENT)? {
            match k {
                E_TIME => {
                    m.next_value_seed(Nullable(U64))?;
                }
                E_NAME => name = m.next_value_seed(Nullable(Text(self.0)))?.unwrap_or(""),
                E_ATTRIBUTES => {
                    m.next_value_seed(Nullable(CheckAttrs(self.0)))?;
                }
                E_DROPPED => check_u32(&mut m)?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(name)
    }
}

struct Links<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for Links<'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'a> Visitor<'a> for Links<'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Link")
    }
    fn visit_seq<A: SeqAccess<'a>>(self, a: A) -> Result<(), A::Error> {
        each(a, || Link(self.0))
    }
}

struct Link<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for Link<'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for Link<'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Link object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut m: A) -> Result<(), A::Error> {
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, link_field, LINK)? {
            match k {
                L_TRACE_ID | L_SPAN_ID => {
                    m.next_value_seed(Nullable(Hex(self.0)))?;
                }
                L_TRACE_STATE => {
                    m.next_value_seed(Nullable(AnyStr))?;
                }
                L_ATTRIBUTES => {
                    m.next_value_seed(Nullable(CheckAttrs(self.0)))?;
                }
                L_DROPPED | L_FLAGS => check_u32(&mut m)?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Status;

impl<'de> DeserializeSeed<'de> for Status {
    type Value = i32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i32, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Status {
    type Value = i32;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Status object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<i32, A::Error> {
        let mut code = 0;
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, status_field, STATUS)? {
            match k {
                ST_MESSAGE => {
                    m.next_value_seed(Nullable(AnyStr))?;
                }
                ST_CODE => {
                    code = m
                        .next_value_seed(Nullable(Enum(STATUS_CODES)))?
                        .unwrap_or(0)
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(code)
    }
}

/// A `KeyValue`. `deep`: inside an `AnyValue`, where unknown fields are read in full.
#[derive(Clone, Copy)]
struct KeyValue<'a> {
    arena: &'a Bump,
    deep: bool,
}

impl<'a> DeserializeSeed<'a> for KeyValue<'a> {
    type Value = Attr<'a>;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Attr<'a>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for KeyValue<'a> {
    type Value = Attr<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a KeyValue object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut m: A) -> Result<Attr<'a>, A::Error> {
        let mut key = None;
        let mut value = AttrValue::Other;
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, key_value_field, KEY_VALUE)? {
            match k {
                KV_KEY => key = m.next_value_seed(Nullable(Text(self.arena)))?,
                KV_VALUE => {
                    value = m
                        .next_value_seed(Nullable(AnyValue(self.arena)))?
                        .unwrap_or(AttrValue::Other)
                }
                KV_STRINDEX => {
                    m.next_value::<Option<i32>>()?;
                }
                _ => skip(&mut m, self.deep)?,
            }
        }
        match key {
            Some(key) => Ok(Attr { key, value }),
            None => Err(A::Error::missing_field("key")),
        }
    }
}

/// An `AnyValue`, read as [`AttrValue`]: arrays, kvlists, bytes and the empty value are
/// checked and read as [`AttrValue::Other`].
#[derive(Clone, Copy)]
struct AnyValue<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for AnyValue<'a> {
    type Value = AttrValue<'a>;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<AttrValue<'a>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for AnyValue<'a> {
    type Value = AttrValue<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut m: A) -> Result<AttrValue<'a>, A::Error> {
        let mut v = AttrValue::Other;
        // A `null` member leaves the value as it was, as in the full decoder.
        while let Some(k) = m.next_key_seed(Key(any_value_field))? {
            match k {
                AV_STRING => {
                    if let Some(s) = m.next_value_seed(Nullable(Text(self.0)))? {
                        v = AttrValue::Str(s);
                    }
                }
                AV_BOOL => {
                    if let Some(b) = m.next_value::<Option<bool>>()? {
                        v = AttrValue::Bool(b);
                    }
                }
                AV_INT => {
                    if let Some(i) = m.next_value_seed(Nullable(I64))? {
                        v = AttrValue::Int(i);
                    }
                }
                AV_DOUBLE => {
                    if let Some(d) = m.next_value::<Option<f64>>()? {
                        v = AttrValue::Double(d);
                    }
                }
                AV_ARRAY | AV_KVLIST => {
                    let list = List {
                        arena: self.0,
                        kv: k == AV_KVLIST,
                    };
                    if m.next_value_seed(Nullable(list))?.is_some() {
                        v = AttrValue::Other;
                    }
                }
                AV_BYTES => {
                    if m.next_value_seed(Nullable(Base64))?.is_some() {
                        v = AttrValue::Other;
                    }
                }
                _ => m.next_value_seed(Checked)?,
            }
        }
        Ok(v)
    }
}

/// `ArrayValue` or `KeyValueList`: `{"values": [...]}`, `values` required; checked only.
#[derive(Clone, Copy)]
struct List<'a> {
    arena: &'a Bump,
    kv: bool,
}

impl<'a> DeserializeSeed<'a> for List<'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for List<'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ArrayValue or KeyValueList object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut m: A) -> Result<(), A::Error> {
        let mut values = false;
        let mut seen = Seen::default();
        while let Some(k) = next_field(&mut m, &mut seen, values_field, LIST)? {
            if k == LV_VALUES {
                values = m.next_value_seed(Nullable(ListValues(self)))?.is_some();
            } else {
                m.next_value_seed(Checked)?;
            }
        }
        if values {
            Ok(())
        } else {
            Err(A::Error::missing_field("values"))
        }
    }
}

struct ListValues<'a>(List<'a>);

impl<'a> DeserializeSeed<'a> for ListValues<'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'a> Visitor<'a> for ListValues<'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut a: A) -> Result<(), A::Error> {
        let arena = self.0.arena;
        if self.0.kv {
            while a
                .next_element_seed(KeyValue { arena, deep: true })?
                .is_some()
            {}
        } else {
            while a.next_element_seed(AnyValue(arena))?.is_some() {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanView;

    const BODY: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"shop"}},
        {"key":"cloud.region","value":{"stringValue":"eu-west-1"}}]},
      "scopeSpans":[{"scope":{"name":"s"},"spans":[
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
         "name":"POST /checkout","kind":"SPAN_KIND_SERVER",
         "startTimeUnixNano":"10","endTimeUnixNano":20,
         "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},
                       {"key":"app.plan.tier","value":{"stringValue":"pr\u006f"}}],
         "events":[{"name":"exception","timeUnixNano":"15"}],
         "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;

    #[test]
    fn reads_what_the_pipeline_needs() {
        let arena = Bump::new();
        let req = decode_traces(BODY.as_bytes(), &arena).expect("valid request");
        assert_eq!(req.span_count(), 1);
        let s = req.spans().next().expect("a span");
        assert_eq!(s.service_name(), "shop");
        assert_eq!(s.name(), "POST /checkout");
        assert_eq!((s.kind(), s.status_code()), (2, 2));
        assert_eq!((s.start_ns(), s.end_ns()), (10, 20));
        assert_eq!(s.trace_id(), (1..=16).collect::<Vec<u8>>());
        assert_eq!(s.span_id(), (1..=8).collect::<Vec<u8>>());
        assert_eq!(
            s.attr("http.response.status_code"),
            Some(AttrValue::Int(503))
        );
        assert_eq!(s.attr("app.plan.tier"), Some(AttrValue::Str("pro")));
        assert_eq!(s.attr("cloud.region"), Some(AttrValue::Str("eu-west-1")));
        assert!(s.any_event(&mut |n| n == "exception"));
        assert_eq!(s.invalid_reason(), None);
    }

    #[test]
    fn refuses_what_is_not_otlp_json() {
        let arena = Bump::new();
        for bad in [
            &BODY.replace(
                "0102030405060708090a0b0c0d0e0f10",
                "AQIDBAUGBwgJCgsMDQ4PEA==",
            )[..],
            &BODY.replace("SPAN_KIND_SERVER", "SERVER"),
            &BODY.replace(r#""endTimeUnixNano":20"#, r#""endTimeUnixNano":2.5"#),
            &BODY.replace(r#"{"key":"cloud.region","#, "{"),
            &BODY[..BODY.len() - 1],
            "[]",
        ] {
            match decode_traces(bad.as_bytes(), &arena) {
                Err(JsonError::Invalid(m)) => assert!(m.starts_with("invalid OTLP JSON: ")),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            decode_traces_limited(BODY.as_bytes(), &arena, 16, 0),
            Err(JsonError::TooManySpans)
        ));
    }

    #[test]
    fn keeps_the_first_attributes_up_to_the_limit() {
        let arena = Bump::new();
        let req = decode_traces_limited(BODY.as_bytes(), &arena, 1, 10).expect("valid");
        let s = req.spans().next().expect("a span");
        assert_eq!(s.span_attrs().len(), 1);
        assert_eq!(s.attr("app.plan.tier"), None);
    }
}
