//! Spans sent the way applications send them: the real OpenTelemetry SDK and its OTLP
//! exporters (gRPC, HTTP protobuf, HTTP JSON), with explicit start and end times.

use opentelemetry::trace::{Span as _, SpanKind, Status, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::{Duration, SystemTime};

/// One span to emit: its end is `ends_ago` before the moment it is emitted.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub name: &'static str,
    pub kind: SpanKind,
    pub duration: Duration,
    pub ends_ago: Duration,
    pub error: bool,
    pub attrs: Vec<KeyValue>,
    pub events: Vec<&'static str>,
    /// End before start: an invalid span.
    pub backwards: bool,
    /// End in the future by `ends_ago` instead of in the past.
    pub future: bool,
    /// Spans emitted as this one's children (same trace, parent = this span).
    pub children: Vec<SpanSpec>,
    /// The W3C trace state of an upstream (remote) parent, which the SDK's default
    /// sampler hands on to the span: how a sampled request arrives (`ot=th:8`).
    pub trace_state: Option<&'static str>,
}

pub fn span(name: &'static str, kind: SpanKind, millis: u64) -> SpanSpec {
    SpanSpec {
        name,
        kind,
        duration: Duration::from_millis(millis),
        ends_ago: Duration::from_secs(2),
        error: false,
        attrs: Vec::new(),
        events: Vec::new(),
        backwards: false,
        future: false,
        children: Vec::new(),
        trace_state: None,
    }
}

pub fn server(name: &'static str, millis: u64) -> SpanSpec {
    span(name, SpanKind::Server, millis)
}

impl SpanSpec {
    pub fn attr(mut self, kv: KeyValue) -> SpanSpec {
        self.attrs.push(kv);
        self
    }
    pub fn tier(self, tier: &'static str) -> SpanSpec {
        self.attr(KeyValue::new("app.plan.tier", tier))
    }
    pub fn child(mut self, c: SpanSpec) -> SpanSpec {
        self.children.push(c);
        self
    }
    pub fn error(mut self) -> SpanSpec {
        self.error = true;
        self
    }
    pub fn event(mut self, name: &'static str) -> SpanSpec {
        self.events.push(name);
        self
    }
    pub fn ended_ago(mut self, d: Duration) -> SpanSpec {
        self.ends_ago = d;
        self
    }
    pub fn backwards(mut self) -> SpanSpec {
        self.backwards = true;
        self
    }
    /// A remote parent with this W3C trace state (`ot=th:c`): the span inherits it.
    pub fn trace_state(mut self, ts: &'static str) -> SpanSpec {
        self.trace_state = Some(ts);
        self
    }
    pub fn ending_in(mut self, d: Duration) -> SpanSpec {
        self.ends_ago = d;
        self.future = true;
        self
    }
}

/// A resource with `service.name` and the given extra attributes.
pub fn resource(service: &'static str, attrs: &[(&'static str, &'static str)]) -> Resource {
    Resource::builder_empty()
        .with_service_name(service)
        .with_attributes(attrs.iter().map(|(k, v)| KeyValue::new(*k, *v)))
        .build()
}

/// A tracer provider exporting over OTLP/gRPC (tonic). The tonic channel needs a Tokio
/// runtime, so it is built inside `rt`; the SDK's batch thread drives the exports.
pub fn grpc_provider(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    res: Resource,
    gzip: bool,
) -> SdkTracerProvider {
    let endpoint = endpoint.to_string();
    rt.block_on(async move {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5));
        if gzip {
            b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        let exporter = b.build().expect("building the OTLP/gRPC span exporter");
        SdkTracerProvider::builder()
            .with_resource(res)
            .with_batch_exporter(exporter)
            .build()
    })
}

/// A tracer provider exporting over OTLP/HTTP (protobuf or JSON) with the blocking
/// reqwest client. Must not be called from inside a Tokio runtime.
pub fn http_provider(url: &str, res: Resource, protocol: Protocol) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_protocol(protocol)
        .with_timeout(Duration::from_secs(5))
        .build()
        .expect("building the OTLP/HTTP span exporter");
    SdkTracerProvider::builder()
        .with_resource(res)
        .with_batch_exporter(exporter)
        .build()
}

impl super::process::Cerflow {
    /// Sends `spans` from resource `res` to this cerflow over OTLP/gRPC (uncompressed),
    /// flushed before it returns.
    pub fn send_grpc(&self, rt: &tokio::runtime::Runtime, res: Resource, spans: &[SpanSpec]) {
        send(grpc_provider(rt, &self.grpc_endpoint(), res, false), spans);
    }
}

/// Emits every span (and its children, in its context) with explicit start and end
/// times, flushes and shuts the provider down.
pub fn send(provider: SdkTracerProvider, spans: &[SpanSpec]) {
    let tracer = provider.tracer("cerflow-integration-tests");
    let now = SystemTime::now();
    for s in spans {
        emit(&tracer, s, now, None);
    }
    provider.force_flush().expect("flushing the span exporter");
    provider
        .shutdown()
        .expect("shutting the tracer provider down");
}

fn emit<T: opentelemetry::trace::Tracer>(
    tracer: &T,
    s: &SpanSpec,
    now: SystemTime,
    parent: Option<&opentelemetry::Context>,
) where
    T::Span: Send + Sync + 'static,
{
    use opentelemetry::trace::TraceContextExt as _;
    {
        let end = if s.future {
            now + s.ends_ago
        } else {
            now - s.ends_ago
        };
        let start = if s.backwards {
            end + s.duration
        } else {
            end - s.duration
        };
        let builder = tracer
            .span_builder(s.name)
            .with_kind(s.kind.clone())
            .with_start_time(start)
            .with_attributes(s.attrs.clone());
        let upstream = s.trace_state.map(remote_parent);
        let mut span = match parent.or(upstream.as_ref()) {
            Some(cx) => builder.start_with_context(tracer, cx),
            None => builder.start(tracer),
        };
        for e in &s.events {
            span.add_event_with_timestamp(
                *e,
                start,
                vec![KeyValue::new("detail", "from the test")],
            );
        }
        if s.error {
            span.set_status(Status::error("failed on purpose"));
        } else {
            span.set_status(Status::Ok);
        }
        if !s.children.is_empty() {
            let cx =
                opentelemetry::Context::new().with_remote_span_context(span.span_context().clone());
            for c in &s.children {
                emit(tracer, c, now, Some(&cx));
            }
        }
        span.end_with_timestamp(end);
    }
}

/// The context of a sampled remote parent (a new trace) carrying `trace_state`.
fn remote_parent(trace_state: &str) -> opentelemetry::Context {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let state = trace_state
        .parse()
        .unwrap_or_else(|e| panic!("trace state {trace_state:?}: {e}"));
    let sc = SpanContext::new(
        TraceId::from(u128::from(n) << 64 | 0xfeed),
        SpanId::from(n),
        TraceFlags::SAMPLED,
        true,
        state,
    );
    opentelemetry::Context::new().with_remote_span_context(sc)
}

/// `shop-api` checkouts in eu-west-1 over gRPC: 50 ms, 100 ms, 200 ms failed, 400 ms.
pub fn send_checkouts(rt: &tokio::runtime::Runtime, grpc_endpoint: &str) {
    let spans = vec![
        server("POST /checkout", 50),
        server("POST /checkout", 100),
        server("POST /checkout", 200).error(),
        server("POST /checkout", 400),
    ];
    send(
        grpc_provider(
            rt,
            grpc_endpoint,
            resource("shop-api", &[("cloud.region", "eu-west-1")]),
            false,
        ),
        &spans,
    );
}
