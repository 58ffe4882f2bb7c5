//! The OTLP-metrics input layer every metric-fed figure shares (operational signals
//! and request counts from histograms and counters), one job per module:
//!
//! - this file walks a decoded metrics request point by point ([`for_each_point`]) and
//!   lets the rule language read a point ([`PointView`]: data point attributes first,
//!   then resource attributes, as spans read span then resource);
//! - [`matcher`]: which inputs a point feeds, by metric name, then a condition;
//! - [`streams`]: cumulative to delta per stream, with resets, baselines, a bound and
//!   expiry;
//! - [`refusal`]: the rules that refuse a bad point, with their reasons;
//! - [`histogram`]: a histogram point (explicit or exponential) checked and laid onto
//!   a journey's latency threshold and bucket bounds.
//!
//! Nothing here allocates per point: a point borrows from the request, and stream
//! identities are hashes.

pub mod histogram;
pub mod matcher;
pub mod refusal;
pub mod streams;

use crate::decode::{find, service_name};
use crate::span::{AttrValue, SpanView};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
};
use std::hash::{BuildHasher, Hash, Hasher};

/// `AggregationTemporality` numbers of the OTLP protocol.
const CUMULATIVE: i32 = 2;
/// `DataPointFlags.NO_RECORDED_VALUE`: the point says "no value", not zero.
pub const NO_RECORDED_VALUE: u32 = 1;

/// What kind of point it is, as far as an input cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    Gauge,
    Sum {
        monotonic: bool,
        cumulative: bool,
    },
    /// Histogram, exponential histogram or summary: no single number.
    Distribution,
}

/// One data point with everything around it, borrowed from the request.
pub struct Point<'a> {
    pub resource: &'a [KeyValue],
    pub service: &'a str,
    /// Hash of the resource attributes and the scope, computed once per scope.
    pub origin_hash: u64,
    pub metric: &'a str,
    pub unit: &'a str,
    pub kind: PointKind,
    pub attributes: &'a [KeyValue],
    pub start_ns: u64,
    pub time_ns: u64,
    /// The number of a gauge or sum point; `None` for distributions.
    pub value: Option<f64>,
    pub flags: u32,
    /// The histogram itself, for inputs that read its buckets.
    pub dist: Option<Dist<'a>>,
}

/// A histogram point, as sent, and whether its stream is cumulative.
#[derive(Clone, Copy)]
pub enum Dist<'a> {
    Histogram(&'a HistogramDataPoint, bool),
    Exponential(&'a ExponentialHistogramDataPoint, bool),
}

impl Point<'_> {
    /// The stream this point belongs to: resource + scope + metric name + attributes.
    pub fn stream_id(&self) -> u64 {
        let mut h = hasher().build_hasher();
        self.origin_hash.hash(&mut h);
        self.metric.hash(&mut h);
        attrs_hash(self.attributes).hash(&mut h);
        h.finish()
    }
}

fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(11, 12, 13, 14)
}

/// An order-independent hash of an attribute list: senders may reorder attributes
/// between exports of one stream, and sorting would allocate.
fn attrs_hash(attrs: &[KeyValue]) -> u64 {
    let st = hasher();
    attrs.iter().fold(0u64, |acc, kv| {
        let mut h = st.build_hasher();
        kv.key.hash(&mut h);
        hash_any(kv.value.as_ref(), &mut h);
        acc.wrapping_add(h.finish())
    })
}

fn hash_any(v: Option<&AnyValue>, h: &mut impl Hasher) {
    match v.and_then(|v| v.value.as_ref()) {
        None => 0u8.hash(h),
        Some(any_value::Value::StringValue(s)) => (1u8, s).hash(h),
        Some(any_value::Value::StringValueStrindex(i)) => (8u8, i).hash(h),
        Some(any_value::Value::BoolValue(b)) => (2u8, b).hash(h),
        Some(any_value::Value::IntValue(i)) => (3u8, i).hash(h),
        Some(any_value::Value::DoubleValue(d)) => (4u8, d.to_bits()).hash(h),
        Some(any_value::Value::BytesValue(b)) => (5u8, b).hash(h),
        Some(any_value::Value::ArrayValue(a)) => {
            6u8.hash(h);
            for x in &a.values {
                hash_any(Some(x), h);
            }
        }
        Some(any_value::Value::KvlistValue(l)) => (7u8, attrs_hash(&l.values)).hash(h),
    }
}

fn number(p: &NumberDataPoint) -> Option<f64> {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        // A point without a value is NaN to the checks: refused where it is used.
        None => Some(f64::NAN),
    }
}

/// Calls `f` with every data point of the request, in order.
pub fn for_each_point(req: &ExportMetricsServiceRequest, mut f: impl FnMut(&Point<'_>)) {
    let st = hasher();
    for rm in &req.resource_metrics {
        let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let service = service_name(resource);
        let resource_hash = attrs_hash(resource);
        for sm in &rm.scope_metrics {
            let origin_hash = match &sm.scope {
                Some(s) => st.hash_one((resource_hash, &s.name, &s.version)),
                None => st.hash_one((resource_hash, "", "")),
            };
            for m in &sm.metrics {
                let mut point = |kind, attributes, start_ns, time_ns, value, flags, dist| {
                    f(&Point {
                        resource,
                        service,
                        origin_hash,
                        metric: &m.name,
                        unit: &m.unit,
                        kind,
                        attributes,
                        start_ns,
                        time_ns,
                        value,
                        flags,
                        dist,
                    })
                };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let (a, s, t) =
                                (&p.attributes[..], p.start_time_unix_nano, p.time_unix_nano);
                            point(PointKind::Gauge, a, s, t, number(p), p.flags, None);
                        }
                    }
                    Some(metric::Data::Sum(sum)) => {
                        let kind = PointKind::Sum {
                            monotonic: sum.is_monotonic,
                            cumulative: sum.aggregation_temporality == CUMULATIVE,
                        };
                        for p in &sum.data_points {
                            let (a, s, t) =
                                (&p.attributes[..], p.start_time_unix_nano, p.time_unix_nano);
                            point(kind, a, s, t, number(p), p.flags, None);
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        let cumulative = h.aggregation_temporality == CUMULATIVE;
                        for p in &h.data_points {
                            let (a, s, t) =
                                (&p.attributes[..], p.start_time_unix_nano, p.time_unix_nano);
                            let d = Some(Dist::Histogram(p, cumulative));
                            point(PointKind::Distribution, a, s, t, None, p.flags, d);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        let cumulative = h.aggregation_temporality == CUMULATIVE;
                        for p in &h.data_points {
                            let (a, s, t) =
                                (&p.attributes[..], p.start_time_unix_nano, p.time_unix_nano);
                            let d = Some(Dist::Exponential(p, cumulative));
                            point(PointKind::Distribution, a, s, t, None, p.flags, d);
                        }
                    }
                    Some(metric::Data::Summary(h)) => {
                        for p in &h.data_points {
                            let (a, s, t) =
                                (&p.attributes[..], p.start_time_unix_nano, p.time_unix_nano);
                            point(PointKind::Distribution, a, s, t, None, p.flags, None);
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

/// A point as the rule language sees it: the metric name is its `span_name`, data
/// point attributes are its own attributes, the resource is the resource.
pub struct PointView<'p, 'a>(pub &'p Point<'a>);

impl SpanView for PointView<'_, '_> {
    fn service_name(&self) -> &str {
        self.0.service
    }
    fn name(&self) -> &str {
        self.0.metric
    }
    fn kind(&self) -> i32 {
        0
    }
    fn status_code(&self) -> i32 {
        0
    }
    fn start_ns(&self) -> u64 {
        self.0.start_ns
    }
    fn end_ns(&self) -> u64 {
        self.0.time_ns
    }
    fn span_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        find(self.0.attributes, key)
    }
    fn resource_attr(&self, key: &str) -> Option<AttrValue<'_>> {
        find(self.0.resource, key)
    }
    fn any_event(&self, _test: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_stream_identity_ignores_attribute_order_and_sees_every_value() {
        let ab = [kv("a", "1"), kv("b", "2")];
        let ba = [kv("b", "2"), kv("a", "1")];
        let other = [kv("a", "1"), kv("b", "3")];
        assert_eq!(attrs_hash(&ab), attrs_hash(&ba));
        assert_ne!(attrs_hash(&ab), attrs_hash(&other));
        // A key moved into the value is another stream.
        assert_ne!(attrs_hash(&[kv("a", "b")]), attrs_hash(&[kv("b", "a")]));
    }
}
