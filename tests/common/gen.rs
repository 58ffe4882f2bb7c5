//! proptest generators of OTLP trace requests, and of the damage a network, a buggy
//! encoder or an attacker does to their bytes, shared by the decoder property tests.
//!
//! With `json`, values stay within what OTLP JSON carries back unchanged: finite doubles,
//! no `string_value_strindex`, no `key_strindex`, no entity refs.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;

/// Keys and values rules look at, awkward text, and anything.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "service.name", "http.route", "cloud.region", "app.plan.tier",
            "http.response.status_code", "POST /checkout", "exception", "eu-west-1", "pro",
            "\u{e9}t\u{e9}", "\u{1f600}", "a\"b\\c\nd", "\u{0}",
        ])
        .prop_map(String::from),
        2 => "[a-zA-Z0-9./_ -]{0,16}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Mostly the right length, sometimes all zero, sometimes the wrong length.
pub fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), len),
        1 => Just(vec![0u8; len]),
        1 => bytes(len + 2),
    ]
}

/// Finite doubles only when `json`: JSON has no NaN or infinities.
pub fn double(json: bool) -> BoxedStrategy<f64> {
    if json {
        prop_oneof![
            any::<f64>().prop_filter("finite", |d| d.is_finite()),
            Just(0.0),
            Just(-0.0)
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0)
        ]
        .boxed()
    }
}

/// Attribute values nested up to `depth`; 1 in 10 has no value.
pub fn any_value(depth: u32, json: bool) -> BoxedStrategy<AnyValue> {
    use any_value::Value as V;
    let mut leaves = vec![
        text().prop_map(V::StringValue).boxed(),
        any::<bool>().prop_map(V::BoolValue).boxed(),
        any::<i64>().prop_map(V::IntValue).boxed(),
        double(json).prop_map(V::DoubleValue).boxed(),
        bytes(7).prop_map(V::BytesValue).boxed(),
    ];
    if !json {
        leaves.push(any::<i32>().prop_map(V::StringValueStrindex).boxed());
    }
    let leaf = prop::strategy::Union::new(leaves);
    let value = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            4 => leaf,
            1 => prop::collection::vec(any_value(depth - 1, json), 0..3)
                .prop_map(|values| V::ArrayValue(ArrayValue { values })),
            1 => prop::collection::vec(key_value(depth - 1, json), 0..3)
                .prop_map(|values| V::KvlistValue(KeyValueList { values })),
        ]
        .boxed()
    };
    prop::option::weighted(0.9, value)
        .prop_map(|value| AnyValue { value })
        .boxed()
}

/// An attribute; 1 in 10 has no value, and without `json` 1 in 5 a `key_strindex`.
pub fn key_value(depth: u32, json: bool) -> BoxedStrategy<KeyValue> {
    let key_strindex = if json {
        Just(0i32).boxed()
    } else {
        prop_oneof![4 => Just(0i32), 1 => any::<i32>()].boxed()
    };
    (
        text(),
        prop::option::weighted(0.9, any_value(depth, json)),
        key_strindex,
    )
        .prop_map(|(key, value, key_strindex)| KeyValue {
            key,
            value,
            key_strindex,
        })
        .boxed()
}

pub fn attrs(max: usize, json: bool) -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(key_value(2, json), 0..=max)
}

/// (start, end): mostly ordered and plausible, sometimes anything, sometimes no end.
pub fn timestamps() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        4 => (1u64..1 << 62).prop_flat_map(|s| (Just(s), s..s + 10_000_000_000)),
        1 => (any::<u64>(), any::<u64>()),
        1 => any::<u64>().prop_map(|s| (s, 0)),
    ]
}

pub fn a_span(json: bool) -> impl Strategy<Value = Span> {
    (
        (id(16), id(8), id(8), text(), text(), any::<u32>()),
        (
            prop_oneof![4 => 0i32..6, 1 => any::<i32>()],
            timestamps(),
            attrs(5, json),
        ),
        (
            prop::collection::vec((any::<u64>(), text(), attrs(2, json)), 0..3),
            prop::collection::vec((id(16), id(8), text(), attrs(2, json), any::<u32>()), 0..2),
            prop::option::of((text(), prop_oneof![4 => 0i32..3, 1 => any::<i32>()])),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, name, flags),
                (kind, (start, end), attributes),
                (events, links, status, dropped),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped % 3,
                events: events
                    .into_iter()
                    .map(|(time_unix_nano, name, attributes)| span::Event {
                        time_unix_nano,
                        name,
                        attributes,
                        dropped_attributes_count: dropped % 2,
                    })
                    .collect(),
                dropped_events_count: dropped % 5,
                links: links
                    .into_iter()
                    .map(
                        |(trace_id, span_id, trace_state, attributes, flags)| span::Link {
                            trace_id,
                            span_id,
                            trace_state,
                            attributes,
                            dropped_attributes_count: 0,
                            flags,
                        },
                    )
                    .collect(),
                dropped_links_count: dropped % 7,
                status: status.map(|(message, code)| Status { message, code }),
            },
        )
}

/// A resource; most name their service (some twice), some do not.
pub fn a_resource(json: bool) -> impl Strategy<Value = Resource> {
    let refs = if json {
        Just(Vec::new()).boxed()
    } else {
        prop::collection::vec((text(), text(), prop::collection::vec(text(), 0..2)), 0..2).boxed()
    };
    (attrs(5, json), any::<u32>(), refs).prop_map(|(mut attributes, dropped, refs)| {
        if dropped % 3 != 0 {
            attributes.insert(
                (dropped as usize) % (attributes.len() + 1),
                KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!(
                            "svc-{}",
                            dropped % 5
                        ))),
                    }),
                    key_strindex: 0,
                },
            );
        }
        Resource {
            attributes,
            dropped_attributes_count: dropped % 4,
            entity_refs: refs
                .into_iter()
                .map(|(schema_url, r#type, id_keys)| EntityRef {
                    schema_url,
                    r#type,
                    description_keys: id_keys.clone(),
                    id_keys,
                })
                .collect(),
        }
    })
}

pub fn a_request(json: bool) -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans = (
        prop::option::of((text(), text(), attrs(2, json))),
        prop::collection::vec(a_span(json), 0..5),
        text(),
    )
        .prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope: scope.map(|(name, version, attributes)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count: 0,
            }),
            spans,
            schema_url,
        });
    let resource_spans = (
        prop::option::weighted(0.9, a_resource(json)),
        prop::collection::vec(scope_spans, 0..3),
        text(),
    )
        .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        });
    prop::collection::vec(resource_spans, 0..4)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

/// Damage to encoded bytes, the ways a network, a buggy encoder or an attacker would.
#[derive(Debug, Clone)]
pub enum Damage {
    None,
    Truncate(usize),
    SetByte(usize, u8),
    /// XOR the low three bits: turns a field key into another wire type.
    FlipWireType(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// A run of 0xff: a huge or over-long varint.
    Ff(usize, usize),
    /// Replace one ASCII letter (most likely inside a string field) with a byte that is
    /// never valid UTF-8.
    CorruptText(usize),
}

pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        2 => any::<usize>().prop_map(Damage::Truncate),
        2 => (any::<usize>(), prop_oneof![any::<u8>(), Just(0xff), Just(0x80), Just(0xc3)])
            .prop_map(|(i, b)| Damage::SetByte(i, b)),
        2 => (any::<usize>(), 1u8..8).prop_map(|(i, x)| Damage::FlipWireType(i, x)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        1 => (any::<usize>(), 1usize..5).prop_map(|(i, n)| Damage::Delete(i, n)),
        1 => (any::<usize>(), 9usize..13).prop_map(|(i, n)| Damage::Ff(i, n)),
        3 => any::<usize>().prop_map(Damage::CorruptText),
    ]
}

/// `b` with `d` done to it.
pub fn damaged(mut b: Vec<u8>, d: &Damage) -> Vec<u8> {
    let n = b.len();
    match d {
        Damage::Truncate(i) if n > 0 => b.truncate(i % n),
        Damage::SetByte(i, v) if n > 0 => b[i % n] = *v,
        Damage::FlipWireType(i, x) if n > 0 => b[i % n] ^= x,
        Damage::Insert(i, extra) => {
            let at = i % (n + 1);
            b.splice(at..at, extra.iter().copied());
        }
        Damage::Delete(i, k) if n > 0 => {
            let at = i % n;
            b.drain(at..(at + k).min(n));
        }
        Damage::Ff(i, k) => {
            let at = i % (n + 1);
            b.splice(at..at, std::iter::repeat_n(0xff, *k));
        }
        Damage::CorruptText(i) => {
            let letters: Vec<usize> = (0..n).filter(|&k| b[k].is_ascii_alphabetic()).collect();
            if !letters.is_empty() {
                b[letters[i % letters.len()]] = 0xff;
            }
        }
        _ => {}
    }
    b
}
