//! The lazy OTLP/JSON trace decoder (`cerflow::decode::json`, what ingest runs) against
//! the full one (`cerflow::decode::traces(_, Json)`, serde into prost structs, the
//! reference), in every form the OpenTelemetry Collector accepts:
//!
//! - property: a random request written as OTLP/JSON in random forms (enums as numbers
//!   or names, 64-bit integers as numbers or strings, ids in either case, `null` for
//!   unset fields, unknown fields, escaped strings, any field order and whitespace) is
//!   accepted by both, and both read exactly the model's values;
//! - property: the same text damaged (cut, bytes changed or inserted), or with an id
//!   that is not hex, is refused by both or accepted by both with the same spans;
//! - the real binary: a body written as Python protobuf's `MessageToDict` writes it
//!   (enum names, int64 as strings) and the same spans with integers give the same
//!   figures on `/metrics`; ids that are not hex get a 400 that says so.
//!
//! The field-by-field comparison of the two decoders is `fuzz/oracle.rs`'s, so the fuzz
//! targets and these tests check the same thing.

#[path = "../fuzz/oracle.rs"]
mod oracle;

mod common;

use cerflow::decode::json::{self, Bump, JsonError};
use cerflow::decode::{self, Format};
use cerflow::span::{AttrValue, SpanView};
use common::*;
use oracle::Outcome;
use proptest::prelude::*;
use std::fmt::Write as _;

// ------------------------------------------------------------------- the model

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// An array of strings: read as `AttrValue::Other`.
    Array(Vec<String>),
    /// Base64 bytes: read as `AttrValue::Other`.
    Bytes(Vec<u8>),
    /// `{}`: no value set.
    Empty,
}

#[derive(Debug, Clone)]
struct MSpan {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Option<Vec<u8>>,
    name: String,
    kind: i32,
    start: u64,
    end: u64,
    attrs: Vec<(String, Val)>,
    events: Vec<String>,
    status: Option<i32>,
    flags: Option<u32>,
}

#[derive(Debug, Clone)]
struct MResource {
    attrs: Vec<(String, Val)>,
    scopes: Vec<Vec<MSpan>>,
}

/// How the text is written; `seed` drives the per-field choices.
#[derive(Debug, Clone, Copy)]
struct Form {
    enum_names: bool,
    int64_strings: bool,
    upper_hex: bool,
    nulls: bool,
    unknown: bool,
    escapes: bool,
    spaced: bool,
    seed: u64,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 /._-]{0,12}",
        1 => "[a-z\"\\\\\n\t\u{e9}\u{4e2d}\u{1F600}/ ]{0,8}",
    ]
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => text().prop_map(Val::Str),
        2 => any::<i64>().prop_map(Val::Int),
        1 => prop_oneof![
            any::<i32>().prop_map(f64::from),
            (-1e300f64..1e300),
            Just(0.1),
            Just(-0.0)
        ]
        .prop_map(Val::Double),
        1 => any::<bool>().prop_map(Val::Bool),
        1 => prop::collection::vec(text(), 0..3).prop_map(Val::Array),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Val::Bytes),
        1 => Just(Val::Empty),
    ]
}

/// Distinct keys, as the pipeline's lookups assume nothing about repeats.
fn attrs(max: usize) -> impl Strategy<Value = Vec<(String, Val)>> {
    prop::collection::vec(("[a-z.]{1,8}", val()), 0..=max).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|(k, _)| seen.insert(k.clone()));
        v
    })
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), len),
        1 => Just(vec![0; len]),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn a_span() -> impl Strategy<Value = MSpan> {
    (
        (id(16), id(8), prop::option::of(id(8)), text(), -1i32..7),
        (any::<u64>(), any::<u64>(), attrs(5)),
        (
            prop::collection::vec(text(), 0..3),
            prop::option::of(-1i32..4),
            prop::option::of(any::<u32>()),
        ),
    )
        .prop_map(
            |((trace_id, span_id, parent, name, kind), (a, b, attrs), (events, status, flags))| {
                MSpan {
                    trace_id,
                    span_id,
                    parent,
                    name,
                    kind,
                    start: a.min(b),
                    end: a.max(b),
                    attrs,
                    events,
                    status,
                    flags,
                }
            },
        )
}

fn a_request() -> impl Strategy<Value = Vec<MResource>> {
    prop::collection::vec(
        (
            prop_oneof![
                3 => attrs(3).prop_map(|mut a| {
                    a.insert(0, ("service.name".into(), Val::Str("shop".into())));
                    a
                }),
                1 => attrs(3),
            ],
            prop::collection::vec(prop::collection::vec(a_span(), 0..4), 0..3),
        )
            .prop_map(|(attrs, scopes)| MResource { attrs, scopes }),
        0..3,
    )
}

fn form() -> impl Strategy<Value = Form> {
    (any::<[bool; 7]>(), any::<u64>()).prop_map(|(b, seed)| Form {
        enum_names: b[0],
        int64_strings: b[1],
        upper_hex: b[2],
        nulls: b[3],
        unknown: b[4],
        escapes: b[5],
        spaced: b[6],
        seed,
    })
}

// ------------------------------------------------------------------- the writer

/// Writes the model as OTLP/JSON text in `form`.
struct Writer {
    form: Form,
    rng: u64,
    out: String,
}

impl Writer {
    fn coin(&mut self) -> bool {
        // xorshift64: the per-field choices, reproducible from the form's seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng & 1 == 1
    }

    fn gap(&mut self) {
        if self.form.spaced && self.coin() {
            self.out.push_str("\n  ");
        }
    }

    fn string(&mut self, s: &str) {
        if self.form.escapes && self.coin() {
            // Every character as a \u escape: the decoder must unescape, not borrow.
            self.out.push('"');
            for u in s.encode_utf16() {
                let _ = write!(self.out, "\\u{u:04x}");
            }
            self.out.push('"');
        } else {
            self.out
                .push_str(&serde_json::to_string(s).expect("a string serializes"));
        }
    }

    fn key(&mut self, k: &str) {
        self.gap();
        self.string(k);
        self.out.push(':');
        self.gap();
    }

    fn hex(&mut self, b: &[u8]) {
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let h = if self.form.upper_hex {
            h.to_uppercase()
        } else {
            h
        };
        self.string(&h);
    }

    fn int64(&mut self, v: impl std::fmt::Display) {
        if self.form.int64_strings && self.coin() {
            let _ = write!(self.out, "\"{v}\"");
        } else {
            let _ = write!(self.out, "{v}");
        }
    }

    fn enumeration(&mut self, v: i32, names: &[&str]) {
        match names.get(v as usize) {
            Some(n) if v >= 0 && self.form.enum_names => self.string(n),
            _ => {
                let _ = write!(self.out, "{v}");
            }
        }
    }

    fn unknown(&mut self) {
        if self.form.unknown && self.coin() {
            self.key("bogusField");
            self.out
                .push_str(r#"{"x":[1,-2.5e3,"\u00e9",null,true,{"y":{}}],"traceId":"zz"}"#);
            self.out.push(',');
        }
    }

    /// `"key":null,` for an unset field, sometimes, when the form has nulls.
    fn null(&mut self, key: &str) {
        if self.form.nulls && self.coin() {
            self.key(key);
            self.out.push_str("null,");
        }
    }

    fn value(&mut self, v: &Val) {
        self.out.push('{');
        match v {
            Val::Str(s) => {
                self.key("stringValue");
                self.string(s);
            }
            Val::Int(i) => {
                self.key("intValue");
                self.int64(i);
            }
            Val::Double(d) => {
                self.key("doubleValue");
                self.out
                    .push_str(&serde_json::to_string(d).expect("finite doubles serialize"));
            }
            Val::Bool(b) => {
                self.key("boolValue");
                let _ = write!(self.out, "{b}");
            }
            Val::Array(a) => {
                self.key("arrayValue");
                self.out.push_str(r#"{"values":["#);
                for (i, s) in a.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.out.push_str(r#"{"stringValue":"#);
                    self.string(s);
                    self.out.push('}');
                }
                self.out.push_str("]}");
            }
            Val::Bytes(b) => {
                use base64::Engine as _;
                self.key("bytesValue");
                let b64 = base64::engine::general_purpose::STANDARD.encode(b);
                self.string(&b64);
            }
            Val::Empty => {}
        }
        self.out.push('}');
    }

    fn attrs(&mut self, attrs: &[(String, Val)]) {
        self.out.push('[');
        for (i, (k, v)) in attrs.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push('{');
            self.unknown();
            self.key("key");
            self.string(k);
            self.out.push(',');
            self.key("value");
            self.value(v);
            self.out.push('}');
        }
        self.out.push(']');
    }

    /// The members of a span, each a closure's worth of text, in a shuffled order.
    fn span(&mut self, s: &MSpan) {
        let mut parts: Vec<String> = Vec::new();
        let mut part = |w: &mut Writer, f: &dyn Fn(&mut Writer)| {
            let saved = std::mem::take(&mut w.out);
            f(w);
            parts.push(std::mem::replace(&mut w.out, saved));
        };
        part(self, &|w| {
            w.key("traceId");
            w.hex(&s.trace_id);
        });
        part(self, &|w| {
            w.key("spanId");
            w.hex(&s.span_id);
        });
        if let Some(p) = &s.parent {
            part(self, &|w| {
                w.key("parentSpanId");
                w.hex(p);
            });
        }
        part(self, &|w| {
            w.key("name");
            w.string(&s.name);
        });
        part(self, &|w| {
            w.key("kind");
            w.enumeration(s.kind, json_names::SPAN_KINDS);
        });
        part(self, &|w| {
            w.key("startTimeUnixNano");
            w.int64(s.start);
        });
        part(self, &|w| {
            w.key("endTimeUnixNano");
            w.int64(s.end);
        });
        part(self, &|w| {
            w.key("attributes");
            w.attrs(&s.attrs);
        });
        part(self, &|w| {
            w.key("events");
            w.out.push('[');
            for (i, e) in s.events.iter().enumerate() {
                if i > 0 {
                    w.out.push(',');
                }
                w.out.push('{');
                w.key("timeUnixNano");
                w.int64(s.start);
                w.out.push(',');
                w.key("name");
                w.string(e);
                w.out.push('}');
            }
            w.out.push(']');
        });
        if let Some(code) = s.status {
            part(self, &|w| {
                w.key("status");
                w.out.push('{');
                w.key("message");
                w.string("m");
                w.out.push(',');
                w.key("code");
                w.enumeration(code, json_names::STATUS_CODES);
                w.out.push('}');
            });
        }
        if let Some(f) = s.flags {
            part(self, &|w| {
                w.key("flags");
                let _ = write!(w.out, "{f}");
            });
        }
        // Rotate by a seeded amount and sometimes reverse: any order must do.
        let n = parts.len();
        let by = (self.form.seed as usize) % n.max(1);
        parts.rotate_left(by);
        if self.coin() {
            parts.reverse();
        }
        self.out.push('{');
        self.unknown();
        for key in ["traceState", "droppedAttributesCount", "links"] {
            self.null(key);
        }
        if s.status.is_none() {
            self.null("status");
        }
        self.out.push_str(&parts.join(","));
        self.out.push('}');
    }

    fn request(mut self, req: &[MResource]) -> String {
        self.out.push('{');
        self.unknown();
        self.key("resourceSpans");
        self.out.push('[');
        for (i, r) in req.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push('{');
            self.null("schemaUrl");
            self.key("resource");
            self.out.push('{');
            self.key("attributes");
            self.attrs(&r.attrs);
            self.out.push_str("},");
            self.key("scopeSpans");
            self.out.push('[');
            for (j, spans) in r.scopes.iter().enumerate() {
                if j > 0 {
                    self.out.push(',');
                }
                self.out.push('{');
                self.unknown();
                self.key("scope");
                self.out.push_str(r#"{"name":"s","version":"1"},"#);
                self.key("spans");
                self.out.push('[');
                for (k, s) in spans.iter().enumerate() {
                    if k > 0 {
                        self.out.push(',');
                    }
                    self.span(s);
                }
                self.out.push_str("]}");
            }
            self.out.push_str("]}");
        }
        self.gap();
        self.out.push_str("]}");
        self.out
    }
}

/// The enum names, as the Collector and Python's `MessageToDict` write them.
mod json_names {
    pub const SPAN_KINDS: &[&str] = &[
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ];
    pub const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
}

fn write(req: &[MResource], form: Form) -> String {
    Writer {
        form,
        rng: form.seed | 1,
        out: String::new(),
    }
    .request(req)
}

fn model_value(v: &Val) -> AttrValue<'_> {
    match v {
        Val::Str(s) => AttrValue::Str(s),
        Val::Int(i) => AttrValue::Int(*i),
        Val::Double(d) => AttrValue::Double(*d),
        Val::Bool(b) => AttrValue::Bool(*b),
        Val::Array(_) | Val::Bytes(_) | Val::Empty => AttrValue::Other,
    }
}

fn same_value(a: AttrValue<'_>, b: AttrValue<'_>) -> bool {
    match (a, b) {
        (AttrValue::Double(x), AttrValue::Double(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    }
}

/// The lazy decoder reads exactly the model's values, span by span.
fn reads_the_model(body: &[u8], req: &[MResource]) -> Result<(), TestCaseError> {
    let arena = Bump::new();
    let got = json::decode_traces(body, &arena)
        .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
    let want: Vec<(&MResource, &MSpan)> = req
        .iter()
        .flat_map(|r| r.scopes.iter().flatten().map(move |s| (r, s)))
        .collect();
    prop_assert_eq!(got.span_count(), want.len());
    for (g, (r, s)) in got.spans().zip(want) {
        let service = match r.attrs.iter().find(|(k, _)| k == "service.name") {
            Some((_, Val::Str(v))) => v.as_str(),
            _ => "unknown_service",
        };
        prop_assert_eq!(g.service_name(), service);
        prop_assert_eq!(g.name(), s.name.as_str());
        prop_assert_eq!(g.kind(), s.kind);
        prop_assert_eq!(g.status_code(), s.status.unwrap_or(0));
        prop_assert_eq!((g.start_ns(), g.end_ns()), (s.start, s.end));
        prop_assert_eq!(g.trace_id(), &s.trace_id[..]);
        prop_assert_eq!(g.span_id(), &s.span_id[..]);
        prop_assert_eq!(g.event_names().len(), s.events.len());
        for (a, b) in g.event_names().iter().zip(&s.events) {
            prop_assert_eq!(*a, b.as_str());
        }
        prop_assert_eq!(g.span_attrs().len(), s.attrs.len());
        for (a, (k, v)) in g.span_attrs().iter().zip(&s.attrs) {
            prop_assert_eq!(a.key, k.as_str());
            prop_assert!(
                same_value(a.value, model_value(v)),
                "{:?} vs {:?}",
                a.value,
                v
            );
        }
        prop_assert_eq!(g.resource_attrs().len(), r.attrs.len());
        for (a, (k, v)) in g.resource_attrs().iter().zip(&r.attrs) {
            prop_assert_eq!(a.key, k.as_str());
            prop_assert!(
                same_value(a.value, model_value(v)),
                "{:?} vs {:?}",
                a.value,
                v
            );
        }
        // The lookups rules and cohorts make (through the decoder's key filter), for
        // every key present and a few absent: the first match, span before resource.
        fn first<'m>(list: &'m [(String, Val)], key: &str) -> Option<AttrValue<'m>> {
            list.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| model_value(v))
        }
        let same_opt = |a: Option<AttrValue<'_>>, b: Option<AttrValue<'_>>| match (a, b) {
            (Some(a), Some(b)) => same_value(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        let probes = ["absent", "", "service.name", "http.route"];
        for key in s
            .attrs
            .iter()
            .chain(&r.attrs)
            .map(|(k, _)| k.as_str())
            .chain(probes)
        {
            let (span, resource) = (first(&s.attrs, key), first(&r.attrs, key));
            prop_assert!(same_opt(g.span_attr(key), span), "span_attr({key:?})");
            prop_assert!(
                same_opt(g.resource_attr(key), resource),
                "resource_attr({key:?})"
            );
            prop_assert!(same_opt(g.attr(key), span.or(resource)), "attr({key:?})");
        }
    }
    Ok(())
}

fn span_total(req: &[MResource]) -> usize {
    req.iter().flat_map(|r| r.scopes.iter().flatten()).count()
}

/// Damage to JSON text: cut, change or insert bytes that matter to JSON.
#[derive(Debug, Clone)]
enum Damage {
    Cut(usize),
    Set(usize, u8),
    Insert(usize, &'static str),
    Delete(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop::sample::select(&b"\"{}[],:0-9ex\\n \xff"[..]);
    let piece = prop::sample::select(
        &[
            "null",
            "\"",
            "{}",
            "[]",
            ",",
            "\"kind\":2,",
            "\\u00",
            "1e999",
            "\"name\":\"x\",",
        ][..],
    );
    prop_oneof![
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), byte).prop_map(|(i, b)| Damage::Set(i, b)),
        (any::<usize>(), piece).prop_map(|(i, p)| Damage::Insert(i, p)),
        (any::<usize>(), 1usize..6).prop_map(|(i, n)| Damage::Delete(i, n)),
    ]
}

fn apply(mut b: Vec<u8>, d: &Damage) -> Vec<u8> {
    let n = b.len();
    match d {
        Damage::Cut(i) if n > 0 => b.truncate(i % n),
        Damage::Set(i, v) if n > 0 => b[i % n] = *v,
        Damage::Insert(i, p) => {
            let at = i % (n + 1);
            b.splice(at..at, p.bytes());
        }
        Damage::Delete(i, k) if n > 0 => {
            let at = i % n;
            b.drain(at..(at + k).min(n));
        }
        _ => {}
    }
    b
}

/// An `AnyValue` holding `levels` arrays, one inside the other: each level opens three
/// containers the decoders read (`{` of the value, `{` of the `arrayValue`, `[` of its
/// `values`), and the innermost value one more. serde_json reads at most 127 nested
/// containers: as a span attribute's value (inside 9: request, `resourceSpans`,
/// resource spans, `scopeSpans`, scope spans, `spans`, span, `attributes`, key-value)
/// 39 levels make 9 + 3 * 39 + 1 = 127, the deepest accepted, and 40 make 130; as a
/// resource attribute's (inside 6) 40 levels make 127 and 41 make 130.
fn nested_value(levels: usize) -> String {
    format!(
        "{}{{\"intValue\":1}}{}",
        r#"{"arrayValue":{"values":["#.repeat(levels),
        "]}}".repeat(levels)
    )
}

/// Values on the edges of the rules the two decoders must share: which numbers are
/// integers, floats or out of range (`-0` is a float to serde_json, an integer past 64
/// bits too), 64-bit integers as strings, escapes and surrogates (a lone surrogate is
/// refused where a string is read, let through where it is skipped), enum names,
/// wrong types, and nesting on both sides of the recursion limit.
fn edge_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "-0",
        "0",
        "-1",
        "1.0",
        "1e2",
        "-0.0",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "4294967295",
        "4294967296",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "00",
        "-",
        "1.",
        "1e",
        "\"-0\"",
        "\"+5\"",
        "\"0042\"",
        "\"\"",
        "\" 1\"",
        "\"18446744073709551616\"",
        "\"-9223372036854775808\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\\u0041\"",
        "\"\\u0041b\"",
        "\"a\\/b\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"a\u{1}b\"",
        "\"\u{7f}\u{e9}\"",
        "true",
        "false",
        "null",
        "nul",
        "[]",
        "{}",
        "[null]",
        "[1,]",
        "{\"a\":1,}",
        "[[[[1]]]]",
        "\"SPAN_KIND_SERVER\"",
        "\"STATUS_CODE_ERROR\"",
        "\"SPAN_KIND_SERVERX\"",
        "\"0x0102\"",
        "\"0X0a\"",
        "\"ab\"",
        "\"0102030405060708\"",
        "{\"x\":\"\\ud800\",\"y\":[1e999,-0]}",
        "{\"stringValue\":\"\\ud800\"}",
        "{\"intValue\":\"-0\"}",
        "{\"intValue\":-0}",
        "{\"doubleValue\":-0}",
        "{\"doubleValue\":\"1.5\"}",
        "{\"boolValue\":1}",
        "{\"bytesValue\":\"AQ==\"}",
        "{\"bytesValue\":\"AQ\"}",
        "{\"other\":1e999}",
        "{\"other\":\"\\udc00\"}",
        "{\"kvlistValue\":{\"values\":[{\"key\":\"a\",\"x\":\"\\ud800\"}]}}",
        "{\"kvlistValue\":{\"values\":[{\"key\":\"a\",\"x\":1e999}]}}",
        "{\"arrayValue\":{}}",
        "{\"arrayValue\":{\"values\":null}}",
        "{\"arrayValue\":{\"values\":[],\"values\":[]}}",
        "{\"code\":\"STATUS_CODE_OK\",\"message\":\"\\ud800\"}",
        "[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\"},\"keyStrindex\":-1}]",
        "[{\"key\":\"k\",\"keyStrindex\":2147483648}]",
        "[{\"traceId\":\"0102\",\"spanId\":\"0x01\",\"traceState\":\"s\",\"flags\":1}]",
        "[{\"name\":\"e\",\"timeUnixNano\":\"-1\"}]",
        "[{\"schemaUrl\":\"\",\"type\":\"t\",\"idKeys\":[],\"descriptionKeys\":[\"a\"]}]",
        "[{\"type\":\"t\"}]",
        // The fast paths for the forms SDKs write: 19-digit timestamps, 32- and
        // 16-digit ids, and whole attributes, each next to forms just outside them.
        "\"1796268837431336198\"",
        "\"0000000000000000001\"",
        "\"9999999999999999999\"",
        "\"179626883743133619x\"",
        "\"17962688374313361980\"",
        "\"0102030405060708090A0b0C0d0E0f10\"",
        "\"0x0102030405060708090a0b0c0d0e0f\"",
        "\"0x01020304050607\"",
        "\"0102030405060708090a0b0c0d0e0f1:\"",
        "\"010203040506070`\"",
        "\"010203040506070G\"",
        "\"/10203040506070f\"",
        "\"01020304050607@8\"",
        "[{\"key\":\"k\",\"value\":{\"intValue\":007}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":\"007\"}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":0}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":123456789012345678}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":1234567890123456789}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":\"1234567890123456789\"}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":1.5}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":1e3}}]",
        "[{\"key\":\"k\",\"value\":{\"intValue\":\"1\"x}}]",
        "[{\"key\":\"k\",\"value\":{\"boolValue\":true}},{\"key\":\"j\",\"value\":{\"boolValue\":false}}]",
        "[{\"key\":\"k\",\"value\":{\"boolValue\":tru}}]",
        "[{\"key\":\"k\",\"value\":{\"stringValue\":\"a\u{1}\"}}]",
        "[{\"key\":\"k\\u0041\",\"value\":{\"stringValue\":\"v\\n\"}}]",
        "[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\"},\"value\":{}}]",
        "[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\",\"intValue\":\"1\"}}]",
        "[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\"} }]",
        "[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\"}}}]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("[{}1{}]", "[".repeat(200), "]".repeat(200)));
    v.push(format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200)));
    for levels in [39, 40, 41, 42] {
        v.push(nested_value(levels));
    }
    v
}

/// Members to add at the start of an object: known fields of other messages, repeats,
/// escaped names, and messages the generator does not write (links, entity refs).
fn edge_members() -> Vec<&'static str> {
    vec![
        r#""n\u0061me":"x","#,
        r#""name":"x","#,
        r#""kind":2,"#,
        r#""attributes":[],"#,
        r#""attributes":[{"key":"k","value":{"intValue":"7"}}],"#,
        r#""links":[{"traceId":"0102","spanId":"0x01","traceState":"\ud800"}],"#,
        r#""links":[{"attributes":[{"key":"k","value":{"kvlistValue":{"values":[{"key":"a","value":{"boolValue":true}}]}}}],"flags":4294967296}],"#,
        r#""entityRefs":[{"schemaUrl":"","type":"t","idKeys":[],"descriptionKeys":["a"]}],"#,
        r#""entityRefs":[{"schemaUrl":"","type":"t","idKeys":null,"descriptionKeys":[]}],"#,
        r#""droppedAttributesCount":4294967295,"#,
        r#""droppedAttributesCount":-1,"#,
        r#""bogus":{"x":"\ud800","y":[1e999,-0,{"z":[]}]},"#,
        r#""bogus":"\u00"#,
        "\"bogus\"\r\n\t:\t1 ,",
    ]
}

/// Where the values (after a `:` outside strings) and the objects (a `{` outside
/// strings) of a JSON text start, and where each value ends.
fn value_spans(b: &[u8]) -> (Vec<(usize, usize)>, Vec<usize>) {
    let (mut values, mut objects) = (Vec::new(), Vec::new());
    let mut i = 0;
    let end_of = |mut j: usize| -> usize {
        let (mut depth, mut in_str) = (0i32, false);
        while j < b.len() {
            let c = b[j];
            if in_str {
                match c {
                    b'\\' => j += 1,
                    b'"' => {
                        in_str = false;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => return j,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    b',' if depth == 0 => return j,
                    _ => {}
                }
            }
            j += 1;
        }
        j
    };
    let mut in_str = false;
    while i < b.len() {
        match (in_str, b[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'{') => objects.push(i + 1),
            (false, b':') => {
                let start = i + 1;
                values.push((start, end_of(start)));
            }
            _ => {}
        }
        i += 1;
    }
    (values, objects)
}

/// The documented difference (src/decode/json.rs): a body with enum names or `null`s
/// takes the full decoder's slow path, which reads unknown fields in full and so
/// refuses, inside them only, what its fast path and the lazy decoder skip (numbers
/// out of range, lone surrogates, nesting past the limit, repeated keys). True when
/// that is why the two disagree: the lazy decoder accepts, the fast path could not
/// have (it fails on this body), and the slow path's refusal is of one of those kinds.
fn slow_path_strictness(body: &[u8]) -> bool {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let arena = Bump::new();
    let lazy_accepts = json::decode_traces(body, &arena).is_ok();
    let fast_path_fails = serde_json::from_slice::<ExportTraceServiceRequest>(body).is_err();
    let why = match decode::traces(body, Format::Json) {
        Ok(_) => return false,
        Err(e) => e,
    };
    lazy_accepts
        && fast_path_fails
        && [
            "number out of range",
            "surrogate",
            "unexpected end of hex escape",
            "recursion limit exceeded",
            "duplicate field",
        ]
        .iter()
        .any(|k| why.contains(k))
}

/// One edit at the edges: a value replaced, or a member added to an object.
#[derive(Debug, Clone)]
enum Edge {
    Value(usize, usize),
    Member(usize, usize),
}

fn edge() -> impl Strategy<Value = Edge> {
    prop_oneof![
        3 => (any::<usize>(), any::<usize>()).prop_map(|(at, v)| Edge::Value(at, v)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(at, m)| Edge::Member(at, m)),
    ]
}

fn apply_edge(b: Vec<u8>, e: &Edge) -> Vec<u8> {
    let (values, objects) = value_spans(&b);
    let mut b = b;
    match e {
        Edge::Value(at, v) if !values.is_empty() => {
            let (start, end) = values[at % values.len()];
            let edges = edge_values();
            let with = &edges[v % edges.len()];
            b.splice(start..end, with.bytes());
        }
        Edge::Member(at, m) if !objects.is_empty() => {
            let at = objects[at % objects.len()];
            let members = edge_members();
            b.splice(at..at, members[m % members.len()].bytes());
        }
        _ => {}
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every form the Collector accepts: both decoders accept, agree field by field
    /// (the oracle), and read exactly the model.
    #[test]
    fn every_accepted_form_reads_the_same(req in a_request(), form in form()) {
        let body = write(&req, form);
        prop_assert_eq!(
            oracle::check_json(body.as_bytes()),
            Ok(Outcome::Accepted { spans: span_total(&req) }),
            "body: {}", body
        );
        reads_the_model(body.as_bytes(), &req)?;
    }

    /// Damaged text: both refuse, or both accept and agree on every span.
    #[test]
    fn damaged_text_is_refused_by_both_or_read_alike(
        req in a_request(),
        form in form(),
        d in prop::collection::vec(damage(), 1..3),
    ) {
        let body = d.iter().fold(write(&req, form).into_bytes(), apply);
        let checked = oracle::check_json(&body);
        prop_assert!(checked.is_ok(), "{:?}\nbody: {}", checked, String::from_utf8_lossy(&body));
    }

    /// Values and members on the edges of the JSON rules, anywhere in a request: both
    /// refuse, or both accept and agree on every span. The generator alone seldom
    /// writes these; the scanner's own reading of numbers, strings and nesting is where
    /// it could part from serde_json's.
    #[test]
    fn edge_values_are_refused_by_both_or_read_alike(
        req in a_request(),
        form in form(),
        edits in prop::collection::vec(edge(), 1..4),
    ) {
        let body = edits.iter().fold(write(&req, form).into_bytes(), apply_edge);
        let checked = oracle::check_json(&body);
        prop_assert!(
            checked.is_ok() || slow_path_strictness(&body),
            "{:?}\nbody: {}", checked, String::from_utf8_lossy(&body)
        );
    }

    /// An id that is not hex (base64 as `MessageToDict` writes it, odd length, other
    /// characters) is refused by both, and the lazy decoder's message says "id".
    #[test]
    fn ids_that_are_not_hex_are_refused(
        mut req in a_request(),
        form in form(),
        bad in prop_oneof![
            Just("AQIDBAUGBwgJCgsMDQ4PEA==".to_string()),
            "[0-9a-f]{31}",
            "[0-9a-f]{10}[g-z][0-9a-f]{5}",
        ],
    ) {
        let Some(first) = req.iter_mut().flat_map(|r| r.scopes.iter_mut().flatten()).next() else {
            return Ok(());
        };
        first.trace_id = vec![0xab; 16];
        let form = Form { upper_hex: false, escapes: false, ..form };
        let body = write(&req, form).replacen(&"ab".repeat(16), &bad, 1);
        prop_assert_eq!(oracle::check_json(body.as_bytes()), Ok(Outcome::Rejected));
        let arena = Bump::new();
        match json::decode_traces(body.as_bytes(), &arena) {
            Err(JsonError::Invalid(m)) => prop_assert!(m.contains("an id must be hex digits"), "{}", m),
            other => prop_assert!(false, "{:?}", other.map(|r| r.span_count())),
        }
    }
}

// --------------------------------------------------------------- worked examples

/// One span with the given fields inside the usual envelope.
fn one_span(fields: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop"}}}}]}},"scopeSpans":[{{"spans":[{{{fields}}}]}}]}}]}}"#
    )
}

const IDS: &str = r#""traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174""#;

/// Both decoders on `body`: `None` when both refuse, else the lazy decoder's
/// (kind, status, start, end) of the first span, the oracle having checked they agree.
fn both(body: &str) -> Option<(i32, i32, u64, u64)> {
    match oracle::check_json(body.as_bytes()) {
        Ok(Outcome::Rejected) => None,
        Ok(Outcome::Accepted { .. }) => {
            let arena = Bump::new();
            let req = json::decode_traces(body.as_bytes(), &arena).expect("accepted");
            let s = req.spans().next().expect("one span");
            Some((s.kind(), s.status_code(), s.start_ns(), s.end_ns()))
        }
        Err(e) => panic!("the decoders disagree on {body}: {e}"),
    }
}

/// Each edge value as each span field the fast paths read (ids, times, enums, counts,
/// attributes), with the other fields as SDKs write them, so every value meets the
/// fast path first: both decoders refuse it, or read it alike (`both` asks the oracle).
#[test]
fn fast_path_edges_read_alike_in_every_field() {
    let fields = [
        ("traceId", r#""5b8efff798038103d269b633813fc60c""#),
        ("spanId", r#""eee19b7ec3c1b174""#),
        ("parentSpanId", r#""eee19b7ec3c1b175""#),
        ("flags", "769"),
        ("name", r#""POST /login""#),
        ("kind", "2"),
        ("startTimeUnixNano", r#""1700000000000000000""#),
        ("endTimeUnixNano", r#""1700000000250000000""#),
        (
            "attributes",
            r#"[{"key":"http.route","value":{"stringValue":"/login"}},{"key":"server.port","value":{"intValue":"443"}}]"#,
        ),
        ("droppedAttributesCount", "0"),
        ("events", "[]"),
    ];
    let (mut accepted, mut refused) = (0, 0);
    for edited in 0..fields.len() {
        for v in edge_values() {
            let body = one_span(
                &fields
                    .iter()
                    .enumerate()
                    .map(|(i, (k, d))| {
                        format!(r#""{k}":{}"#, if i == edited { v.as_str() } else { d })
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            );
            match both(&body) {
                Some(_) => accepted += 1,
                None => refused += 1,
            }
        }
    }
    // Both outcomes occur: the edges straddle the fast paths' limits.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

/// A span with all 16 fields in the order SDKs write them (the loadgen's, with a
/// status): the decoder reads it in straight-line code, and must hand over to the
/// general walk at any member, in any state. Each field in turn is given each edge
/// value, is dropped, has each edge member (unknown, repeated, escaped, spaced) put
/// before it, or sits after whitespace; and the attributes change form part way through
/// the list. Both decoders refuse each body, or read it alike (`both` asks the oracle).
#[test]
fn sdk_order_hands_over_to_the_general_walk_at_every_member() {
    let fields = [
        ("traceId", r#""5b8efff798038103d269b633813fc60c""#),
        ("spanId", r#""eee19b7ec3c1b174""#),
        ("traceState", r#""""#),
        ("parentSpanId", r#""eee19b7ec3c1b175""#),
        ("flags", "769"),
        ("name", r#""POST /login""#),
        ("kind", "2"),
        ("startTimeUnixNano", r#""1700000000000000000""#),
        ("endTimeUnixNano", r#""1700000000250000000""#),
        (
            "attributes",
            r#"[{"key":"http.route","value":{"stringValue":"/login"}},{"key":"server.port","value":{"intValue":"443"}}]"#,
        ),
        ("droppedAttributesCount", "0"),
        ("events", "[]"),
        ("droppedEventsCount", "0"),
        ("links", "[]"),
        ("droppedLinksCount", "0"),
        ("status", r#"{"code":2}"#),
    ];
    let body_of = |parts: Vec<String>| one_span(&parts.join(","));
    let sdk: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!(r#""{k}":{v}"#))
        .collect();
    // As written: kind 2, status 2, both times; the whole path taken.
    let want = Some((2, 2, 1_700_000_000_000_000_000, 1_700_000_000_250_000_000));
    assert_eq!(both(&body_of(sdk.clone())), want);
    let mut bodies = Vec::new();
    for at in 0..fields.len() {
        for v in edge_values() {
            let mut p = sdk.clone();
            p[at] = format!(r#""{}":{v}"#, fields[at].0);
            bodies.push(body_of(p));
        }
        let mut p = sdk.clone();
        p.remove(at);
        bodies.push(body_of(p));
        for m in edge_members() {
            let mut p = sdk.clone();
            // The edge members end in a comma: put one before this field.
            p[at] = format!("{}{}", m, p[at]);
            bodies.push(body_of(p));
        }
        let mut p = sdk.clone();
        p[at] = format!(" {}", p[at]);
        bodies.push(body_of(p));
        // The same field again right after itself: refused by both.
        let mut p = sdk.clone();
        p.insert(at + 1, sdk[at].clone());
        bodies.push(body_of(p));
    }
    let plain = r#"{"key":"a","value":{"stringValue":"x"}}"#;
    for attrs in [
        format!(r#"[{plain},{{"key":"d","value":{{"doubleValue":1.5}}}},{plain}]"#),
        format!(r#"[ {plain} , {plain}, {plain} ]"#),
        format!("[{plain},\n{plain}]"),
        format!("[{plain},]"),
        format!("[{plain}{plain}]"),
        format!("[{plain},null]"),
        format!("[,{plain}]"),
        format!(r#"[{plain},{{"value":{{"stringValue":"x"}},"key":"b"}},{plain}]"#),
        format!(r#"[{plain},{{"key":"a\u0062","value":{{"stringValue":"x"}}}}]"#),
        format!(r#"[{plain},{{"key":"b","value":{{"stringValue":"x"}},"bogus":1}}]"#),
        // The list loop's own hand-overs: after an element, a space before `]` or `,`;
        // the list cut after an element or a comma; an int and a bool element between
        // plain ones; a string value with an escape, a key with a control character,
        // and a value member spaced inside the literal the loop compares at once.
        format!("[{plain} ]"),
        format!("[{plain} ,{plain}]"),
        format!("[{plain},{plain}"),
        format!("[{plain},"),
        format!(
            r#"[{plain},{{"key":"i","value":{{"intValue":"7"}}}},{{"key":"b","value":{{"boolValue":true}}}},{plain}]"#
        ),
        format!(r#"[{plain},{{"key":"b","value":{{"stringValue":"x\"y"}}}},{plain}]"#),
        format!("[{plain},{{\"key\":\"b\u{1}\",\"value\":{{\"stringValue\":\"x\"}}}}]"),
        format!(r#"[{plain},{{"key":"b","value":{{"stringValue" :"x"}}}},{plain}]"#),
        format!(r#"[{plain},{{"key":"b","value":{{"stringValue":"x"}} }},{plain}]"#),
        "[]".to_string(),
        "[ ]".to_string(),
    ] {
        let mut p = sdk.clone();
        p[9] = format!(r#""attributes":{attrs}"#);
        bodies.push(body_of(p));
    }
    let (mut accepted, mut refused) = (0, 0);
    for body in &bodies {
        match both(body) {
            Some(_) => accepted += 1,
            None => refused += 1,
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
    // The attributes of the plain, spaced and mixed forms read alike: three kept.
    for attrs in [
        format!(r#"[{plain},{{"key":"d","value":{{"doubleValue":1.5}}}},{plain}]"#),
        format!(r#"[ {plain} , {plain}, {plain} ]"#),
        format!(r#"[{plain},{{"key":"b","value":{{"stringValue":"x\"y"}}}},{plain}]"#),
        format!("[{plain} ,{plain},{plain}]"),
    ] {
        let mut p = sdk.clone();
        p[9] = format!(r#""attributes":{attrs}"#);
        let body = body_of(p);
        let arena = Bump::new();
        let req = json::decode_traces(body.as_bytes(), &arena).expect("accepted");
        let s = req.spans().next().expect("one span");
        assert_eq!(s.span_attrs().len(), 3, "{body}");
    }
}

/// The decoder compares each span's attribute keys and string values with those read
/// at the same position of the span before, and its name with the name before (8
/// bytes or longer), a word at a time, before scanning them. Spans whose key, value or
/// name differs from the one before in its last byte, its middle word or its length (a
/// prefix, a longer string), or has an escape or a control character in it or after it:
/// both decoders refuse the body or read it alike, and the strings read are exactly
/// those written.
#[test]
fn strings_like_the_last_at_their_position_read_as_written() {
    let first = "http.request.method";
    let like = [
        "http.request.method",
        "http.request.methoe",
        "http.reXuest.method",
        "http.request.metho",
        "http.request.methodd",
        "http.request.method.x",
        "http.req",
        "http.request",
        "http.request.method",
    ];
    let span = |name: &str, key: &str, value: &str| {
        format!(
            r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"{name}","attributes":[{{"key":"{key}","value":{value}}},{{"key":"server.address","value":{{"stringValue":"a"}}}}]}}"#
        )
    };
    let string = |v: &str| format!(r#"{{"stringValue":"{v}"}}"#);
    let body_of = |spans: &[String]| {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        )
    };
    // Each string like the first, as a key, a value and a name, right after a span
    // with the first in all three places: 3 x 9 x 2 = 54 spans, each read as written.
    let mut spans = Vec::new();
    let mut want = Vec::new();
    for l in like {
        for (name, key, value) in [(first, first, l), (first, l, first), (l, first, first)] {
            spans.push(span(first, first, &string(first)));
            want.push((first, first, first));
            spans.push(span(name, key, &string(value)));
            want.push((name, key, value));
        }
    }
    let body = body_of(&spans);
    assert!(matches!(
        oracle::check_json(body.as_bytes()),
        Ok(Outcome::Accepted { .. })
    ));
    let arena = Bump::new();
    let req = json::decode_traces(body.as_bytes(), &arena).expect("accepted");
    let mut read = 0;
    for (s, (name, key, value)) in req.spans().zip(&want) {
        let a = s.span_attrs()[0];
        assert_eq!((s.name(), a.key), (*name, *key));
        assert!(
            matches!(a.value, AttrValue::Str(v) if v == *value),
            "{value}"
        );
        read += 1;
    }
    assert_eq!(read, 54);
    // The first string again, or one like it, with what the scan must see: an escape
    // in it (`metho\u0064` reads as the first string) or after it, a control
    // character after it (refused), a value in another form, a space before the
    // value; as a key, a value and a name: both decoders agree on each.
    let base = span(first, first, &string(first));
    let (mut accepted, mut refused) = (0, 0);
    for tail in [r"metho\u0064", r"method\u0064", "method\u{1}"] {
        let odd = format!("http.request.{tail}");
        for second in [
            span(first, &odd, &string(first)),
            span(first, first, &string(&odd)),
            span(&odd, first, &string(first)),
            span(first, first, r#"{"intValue":"7"}"#),
            span(first, first, &format!(" {}", string(first))),
        ] {
            let body = body_of(&[base.clone(), second]);
            match oracle::check_json(body.as_bytes()) {
                Ok(Outcome::Accepted { .. }) => accepted += 1,
                Ok(Outcome::Rejected) => refused += 1,
                Err(e) => panic!("the decoders disagree on {body}: {e}"),
            }
        }
    }
    // Refused: the control character in each of the three places (3 bodies); the
    // other 12 accepted.
    assert_eq!((accepted, refused), (12, 3));
    let escaped = format!("http.request.{}", r"metho\u0064");
    let body = body_of(&[base.clone(), span(&escaped, &escaped, &string(&escaped))]);
    let arena = Bump::new();
    let req = json::decode_traces(body.as_bytes(), &arena).expect("accepted");
    let s = req.spans().nth(1).expect("two spans");
    let a = s.span_attrs()[0];
    assert_eq!((s.name(), a.key), (first, first));
    assert!(matches!(a.value, AttrValue::Str(v) if v == first));
}

#[test]
fn enum_names_and_numbers_read_the_same() {
    let names = one_span(&format!(
        r#"{IDS},"kind":"SPAN_KIND_CONSUMER","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000","status":{{"code":"STATUS_CODE_ERROR"}}"#
    ));
    let numbers = one_span(&format!(
        r#"{IDS},"kind":5,"startTimeUnixNano":1700000000000000000,"endTimeUnixNano":1700000000250000000,"status":{{"code":2}}"#
    ));
    let want = Some((5, 2, 1_700_000_000_000_000_000, 1_700_000_000_250_000_000));
    assert_eq!(both(&names), want);
    assert_eq!(both(&numbers), want);
}

#[test]
fn refusals_both_decoders_share() {
    for (what, fields) in [
        ("an unknown enum name", r#""kind":"SERVER""#),
        ("a status name used as a kind", r#""kind":"STATUS_CODE_OK""#),
        ("a kind past i32", r#""kind":4294967296"#),
        ("a repeated field", r#""name":"a","name":"b""#),
        ("a repeated field, one null", r#""name":"a","name":null"#),
        ("a null in an array", r#""attributes":[null]"#),
        (
            "a KeyValue without its key",
            r#""attributes":[{"value":{"intValue":1}}]"#,
        ),
        (
            "an arrayValue without values",
            r#""attributes":[{"key":"k","value":{"arrayValue":{}}}]"#,
        ),
        ("a time with a fraction", r#""endTimeUnixNano":1.5"#),
        ("a negative time", r#""endTimeUnixNano":"-1""#),
        (
            "an intValue past i64",
            r#""attributes":[{"key":"k","value":{"intValue":"9223372036854775808"}}]"#,
        ),
        (
            "bytes that are not base64",
            r#""attributes":[{"key":"k","value":{"bytesValue":"!!"}}]"#,
        ),
        (
            "a link id that is not hex",
            r#""links":[{"traceId":"xyz0"}]"#,
        ),
    ] {
        assert_eq!(both(&one_span(&format!("{IDS},{fields}"))), None, "{what}");
    }
}

#[test]
fn what_both_decoders_accept() {
    // Nulls are defaults, enum numbers outside the enum are kept (open enums), and an
    // `AnyValue`'s null member leaves the value unset.
    let body = one_span(&format!(
        r#"{IDS},"name":null,"kind":7,"status":null,"flags":null,"startTimeUnixNano":"0042","endTimeUnixNano":50,"attributes":[{{"key":"k","value":{{"stringValue":null}}}}]"#
    ));
    assert_eq!(both(&body), Some((7, 0, 42, 50)));
    let arena = Bump::new();
    let req = json::decode_traces(body.as_bytes(), &arena).expect("accepted");
    let s = req.spans().next().expect("one span");
    assert_eq!((s.name(), s.attr("k")), ("", Some(AttrValue::Other)));
}

/// serde_json reads at most 127 nested arrays and objects, and the scanner counts the
/// same ones: a span attribute's value nested 39 levels deep opens 9 + 3 * 39 + 1 = 127
/// (see `nested_value`), accepted by both; 40 levels open 130, refused by both. Inside
/// an unknown field nothing is counted, so 200 levels there are accepted by both.
#[test]
fn nesting_is_limited_where_both_decoders_read() {
    let attr = |levels: usize| {
        one_span(&format!(
            r#"{IDS},"endTimeUnixNano":2,"startTimeUnixNano":1,"attributes":[{{"key":"k","value":{}}}]"#,
            nested_value(levels)
        ))
    };
    assert_eq!(both(&attr(39)), Some((0, 0, 1, 2)));
    assert_eq!(both(&attr(40)), None);
    let arena = Bump::new();
    match json::decode_traces(attr(40).as_bytes(), &arena) {
        Err(JsonError::Invalid(m)) => assert!(m.contains("recursion limit"), "{m}"),
        other => panic!("{:?}", other.map(|r| r.span_count())),
    }
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        both(&one_span(&format!(
            r#"{IDS},"endTimeUnixNano":2,"startTimeUnixNano":1,"bogus":{deep}"#
        ))),
        Some((0, 0, 1, 2))
    );
}

/// The one form the full decoder takes and the lazy one refuses: serde's positional
/// array for a message, which no OTLP writer produces.
#[test]
fn messages_as_arrays_are_the_known_difference() {
    assert!(decode::traces(b"[[]]", Format::Json).is_ok());
    let arena = Bump::new();
    assert!(json::decode_traces(b"[[]]", &arena).is_err());
}

// ------------------------------------------------------------------ the binary

const CHECKOUT: &str = r#"
pipeline:
  evaluation_interval: 100ms
windows:
  sizes: [1m]
cohorts:
  keys: [cloud.region, app.plan.tier]
journeys:
  - name: checkout
    match:
      service: shop-api
      span_name: POST /checkout
      kind: server
    latency_threshold: 300ms
"#;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// One span as `MessageToDict` writes it (camelCase, enum names, int64 as strings,
/// unset fields left out), ids as hex as OTLP/JSON requires (`MessageToDict` itself
/// writes bytes as base64: refused, see below).
fn dict_span(n: u8, kind: &str, ms: u64, error: bool, end: u64) -> String {
    let status = if error {
        r#","status":{"code":"STATUS_CODE_ERROR"}"#
    } else {
        ""
    };
    format!(
        r#"{{"traceId":"5b8efff798038103d269b633813fc6{n:02x}","spanId":"eee19b7ec3c1b1{n:02x}","name":"POST /checkout","kind":"{kind}","startTimeUnixNano":"{}","endTimeUnixNano":"{end}","attributes":[{{"key":"app.plan.tier","value":{{"stringValue":"gold"}}}},{{"key":"http.response.status_code","value":{{"intValue":"{}"}}}}]{status}}}"#,
        end - ms * 1_000_000,
        if error { 503 } else { 200 }
    )
}

/// The same span with integers (enums and 64-bit integers as numbers).
fn int_span(n: u8, kind: i32, ms: u64, error: bool, end: u64) -> String {
    let status = if error { r#","status":{"code":2}"# } else { "" };
    format!(
        r#"{{"traceId":"5b8efff798038103d269b633813fc6{n:02x}","spanId":"eee19b7ec3c1b1{n:02x}","name":"POST /checkout","kind":{kind},"startTimeUnixNano":{},"endTimeUnixNano":{end},"attributes":[{{"key":"app.plan.tier","value":{{"stringValue":"gold"}}}},{{"key":"http.response.status_code","value":{{"intValue":{}}}}}]{status}}}"#,
        end - ms * 1_000_000,
        if error { 503 } else { 200 }
    )
}

fn envelope(region: &str, spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop-api"}}}},{{"key":"cloud.region","value":{{"stringValue":"{region}"}}}}]}},"scopeSpans":[{{"scope":{{"name":"manual"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn post_json(c: &Cerflow, body: String) -> (reqwest::StatusCode, String) {
    let r = c
        .client()
        .post(c.http_url("/v1/traces"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("POST /v1/traces");
    let status = r.status();
    (status, r.text().unwrap_or_default())
}

/// Five spans, written both ways, one region each: 3 fast OK SERVER spans (50, 100,
/// 200 ms), 1 ERROR (80 ms), 1 slow (900 ms > 300 ms), and 1 CLIENT span that no
/// journey matches. Each series: 5 requests, 1 error, 1 slow; 2 unmatched in all.
#[test]
fn message_to_dict_names_and_integers_give_the_same_figures() {
    let cerflow =
        Cerflow::start(|p| format!("version: json-forms\n{}{CHECKOUT}", p.listeners_yaml("")));
    let end = now_ns() - 2_000_000_000;
    let shape: [(u8, u64, bool); 5] = [
        (1, 50, false),
        (2, 100, false),
        (3, 200, false),
        (4, 80, true),
        (5, 900, false),
    ];
    let mut dict: Vec<String> = shape
        .iter()
        .map(|&(n, ms, e)| dict_span(n, "SPAN_KIND_SERVER", ms, e, end))
        .collect();
    dict.push(dict_span(6, "SPAN_KIND_CLIENT", 10, false, end));
    let mut ints: Vec<String> = shape
        .iter()
        .map(|&(n, ms, e)| int_span(n, 2, ms, e, end))
        .collect();
    ints.push(int_span(6, 3, 10, false, end));

    for (region, body) in [
        ("eu-west-1", envelope("eu-west-1", &dict)),
        ("us-east-1", envelope("us-east-1", &ints)),
    ] {
        let (status, text) = post_json(&cerflow, body);
        assert_eq!(status, reqwest::StatusCode::OK, "{region}: {text}");
        assert!(!text.contains("rejected"), "{region}: {text}");
    }

    let series = |region| {
        [
            ("journey", "checkout"),
            ("cloud_region", region),
            ("app_plan_tier", "gold"),
        ]
    };
    let s = cerflow.wait_until("both series recorded", |s| {
        ["eu-west-1", "us-east-1"]
            .iter()
            .all(|r| s.get("cer_journey_requests_total", &series(r)) == Some(5.0))
    });
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        12.0,
    );
    s.assert("cerflow_unmatched_spans_total", &[], 2.0);
    s.assert("cerflow_processed_spans_total", &[], 12.0);
    let durations: Vec<std::time::Duration> = shape
        .iter()
        .map(|&(_, ms, _)| std::time::Duration::from_millis(ms))
        .collect();
    for region in ["eu-west-1", "us-east-1"] {
        let labels = [
            ("journey", "checkout"),
            ("cloud_region", region),
            ("app_plan_tier", "gold"),
        ];
        s.assert("cer_journey_requests_total", &labels, 5.0);
        s.assert("cer_journey_errors_total", &labels, 1.0);
        s.assert("cer_journey_slow_total", &labels, 1.0);
        let mut q = labels.to_vec();
        q.extend([("window", "1m"), ("quantile", "0.5")]);
        s.assert(
            "cer_journey_latency_seconds",
            &q,
            expected_quantile(&durations, 0.5),
        );
    }
}

/// `MessageToDict`'s own ids (base64) and other non-hex ids: 400, counted as
/// malformed, with a message that names the problem; nothing of the body is counted.
#[test]
fn ids_that_are_not_hex_get_a_400_that_says_so() {
    let cerflow =
        Cerflow::start(|p| format!("version: json-ids\n{}{CHECKOUT}", p.listeners_yaml("")));
    let end = now_ns() - 2_000_000_000;
    let good = dict_span(1, "SPAN_KIND_SERVER", 50, false, end);
    for bad in [
        "W47/95gDgQPSabYzgT/GDA==",
        "5b8efff798038103d269b633813fc60",
        "5b8efff798038103d269b633813fc6zz",
    ] {
        let span = good.replacen("5b8efff798038103d269b633813fc601", bad, 1);
        let (status, text) = post_json(&cerflow, envelope("eu-west-1", &[span]));
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{bad}: {text}");
        assert!(text.contains("an id must be hex digits"), "{bad}: {text}");
        assert!(text.contains(bad), "the message quotes the id: {text}");
    }
    let (status, text) = post_json(
        &cerflow,
        envelope("eu-west-1", &[good.replace("SPAN_KIND_SERVER", "SERVER")]),
    );
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("SERVER") && text.contains("SPAN_KIND_SERVER"),
        "{text}"
    );
    let s = cerflow.wait_for(
        "cerflow_refused_requests_total",
        &[("reason", "malformed")],
        4.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        0.0,
    );
}
