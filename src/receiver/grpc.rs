//! OTLP/gRPC receiver: TraceService, MetricsService and LogsService `Export`.
//!
//! Requests arrive as raw bytes (a pass-through codec) and are decoded here, so a
//! malformed body gets INVALID_ARGUMENT, the permanent error OTLP asks for, instead of
//! the INTERNAL that tonic's generated servers return for decode failures.

use super::auth::{Auth, Tenant};
use super::consumer::{Accepted, Consumer, Format, Refused};
use super::layers::{
    cause, AuthLayer, AuthService, BodyLimit, BodyLimitLayer, LengthLimitError, RequestTimeout,
    RequestTimeoutLayer, TimedOut, Verdict,
};
use crate::internal_events::{InternalEvent, RequestRefused, SpansReceived};
use crate::telemetry::{Reason, Transport};
use bytes::{Buf, BufMut, Bytes};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
    EncodeBuf, Encoder,
};
use tonic::server::NamedService;
use tonic::Status;

/// Requests as raw bytes, responses as bytes already encoded. `buffer` is the size
/// tonic's receive buffer starts at: the server sizes it for the message it expects,
/// since from 8 KiB tonic grows it as frames arrive and once more to the length in the
/// message header, each time a `realloc` that copies what is buffered (a whole
/// 1000-span message: ~1.3% of the CPU; BENCHMARKS.md, issue 9, ninth step).
#[derive(Clone, Copy)]
pub struct RawCodec {
    pub buffer: usize,
}

impl Default for RawCodec {
    fn default() -> Self {
        RawCodec {
            buffer: DEFAULT_BUFFER,
        }
    }
}

pub struct RawEncoder;
pub struct RawDecoder {
    buffer: usize,
}

/// tonic's own starting size, for a call whose size is not known.
const DEFAULT_BUFFER: usize = 8 * 1024;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
    fn buffer_settings(&self) -> BufferSettings {
        // The yield threshold is tonic's default; it only paces streamed responses.
        BufferSettings::new(self.buffer, 32 * 1024)
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder {
            buffer: self.buffer,
        }
    }
}

/// The receive buffer for the next uncompressed call after one of `body` bytes. tonic
/// reserves the message's length beyond what it holds when it reads the header, and the
/// first frame may hold the whole message (frames of up to 1 MiB), so the buffer takes
/// twice the message and its header, and an eighth more for senders' requests that vary
/// in size; short of that, the reserve copies the buffered message to a new buffer.
fn buffer_after(body: usize) -> usize {
    2 * (body + body / 8 + GRPC_HEADER)
}

/// One OTLP signal's gRPC service.
pub trait Signal: Send + Sync + 'static {
    const NAME: &'static str;
    fn handle(ingest: &dyn Consumer, body: &[u8], tenant: &Tenant) -> Result<Vec<u8>, Status>;
    /// Spans in a body that is refused before it is processed, for the refusal counter.
    fn spans_in(_ingest: &dyn Consumer, _body: &[u8]) -> u64 {
        0
    }
}

fn to_status(r: Refused) -> Status {
    match r {
        Refused::Malformed(msg) => Status::invalid_argument(msg),
        Refused::TooLarge(msg) => Status::resource_exhausted(msg),
        Refused::Unavailable => {
            super::unavailable_with_retry("cerflow's pipeline queues are full; retry later")
        }
    }
}

pub struct Traces;
pub struct Metrics;
pub struct Logs;

impl Signal for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    fn handle(ingest: &dyn Consumer, body: &[u8], tenant: &Tenant) -> Result<Vec<u8>, Status> {
        let Accepted { rejected, message } = ingest
            .traces(body, Format::Protobuf, Transport::Grpc, tenant.as_deref())
            .map_err(to_status)?;
        let partial_success = (rejected > 0).then_some(ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: message,
        });
        Ok(ExportTraceServiceResponse { partial_success }.encode_to_vec())
    }
    fn spans_in(ingest: &dyn Consumer, body: &[u8]) -> u64 {
        ingest.spans_in(body, Format::Protobuf)
    }
}

impl Signal for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    fn handle(ingest: &dyn Consumer, body: &[u8], _tenant: &Tenant) -> Result<Vec<u8>, Status> {
        let Accepted { rejected, message } = ingest
            .metrics(body, Format::Protobuf, Transport::Grpc)
            .map_err(to_status)?;
        let partial_success = (rejected > 0).then_some(ExportMetricsPartialSuccess {
            rejected_data_points: rejected as i64,
            error_message: message,
        });
        Ok(ExportMetricsServiceResponse { partial_success }.encode_to_vec())
    }
}

impl Signal for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    fn handle(ingest: &dyn Consumer, body: &[u8], _tenant: &Tenant) -> Result<Vec<u8>, Status> {
        ingest
            .logs(body, Format::Protobuf, Transport::Grpc)
            .map_err(to_status)?;
        Ok(ExportLogsServiceResponse {
            partial_success: None,
        }
        .encode_to_vec())
    }
}

pub struct GrpcService<S> {
    ingest: Arc<dyn Consumer>,
    /// (uncompressed, decompressed) message limits.
    limits: (usize, usize),
    /// The receive buffer the last uncompressed call would have fitted in
    /// ([`buffer_after`]); 0 before the first.
    expected: Arc<AtomicUsize>,
    _signal: PhantomData<fn() -> S>,
}

impl<S> Clone for GrpcService<S> {
    fn clone(&self) -> Self {
        GrpcService {
            ingest: self.ingest.clone(),
            limits: self.limits,
            expected: self.expected.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: Signal> NamedService for GrpcService<S> {
    const NAME: &'static str = S::NAME;
}

struct Unary<S> {
    ingest: Arc<dyn Consumer>,
    /// Where an uncompressed call leaves its size for the next one's buffer; `None` for
    /// a compressed call, whose message is larger than what tonic buffers.
    expected: Option<Arc<AtomicUsize>>,
    _signal: PhantomData<fn() -> S>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S: Signal> tonic::server::UnaryService<Bytes> for Unary<S> {
    type Response = Vec<u8>;
    type Future = BoxFuture<Result<tonic::Response<Vec<u8>>, Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        let Verdict(verdict) = Verdict::of(request.extensions());
        let expected = self.expected.clone();
        Box::pin(async move {
            let body = request.into_inner();
            if let Some(e) = expected {
                e.store(buffer_after(body.len()), Ordering::Relaxed);
            }
            let tenant = match verdict {
                Ok(t) => t,
                Err(why) => {
                    // Received and refused, so received = processed + refused still holds.
                    let spans = S::spans_in(&*ingest, &body);
                    SpansReceived {
                        transport: Transport::Grpc,
                        spans,
                    }
                    .emit(ingest.telemetry());
                    RequestRefused {
                        transport: Transport::Grpc,
                        reason: Reason::Unauthenticated,
                        spans,
                        detail: why,
                    }
                    .emit(ingest.telemetry());
                    return Err(Status::unauthenticated(why));
                }
            };
            S::handle(&*ingest, &body, &tenant).map(tonic::Response::new)
        })
    }
}

impl<S: Signal, B> tower::Service<http::Request<B>> for GrpcService<S>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The shared layers fail the body; tonic would read their errors as UNKNOWN, and
        // a CANCELLED one as the end of the request, so they become statuses here: too
        // large is counted below by its code, a timeout answers as tonic's own timeout.
        let timed_out = Arc::new(AtomicBool::new(false));
        let seen = timed_out.clone();
        let req = req.map(move |body| {
            body.map_err(move |e| {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                if cause::<LengthLimitError>(&*e).is_some() {
                    Status::resource_exhausted("request larger than max_request_bytes")
                } else if cause::<TimedOut>(&*e).is_some() {
                    seen.store(true, Ordering::Relaxed);
                    Status::deadline_exceeded(e.to_string())
                } else {
                    Status::from_error(e)
                }
            })
        });
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(S::NAME))
            == Some("/Export");
        let ingest = self.ingest.clone();
        // The body-limit layer bounds the wire; only tonic sees a message inflated, so the
        // decompressed limit stays tonic's (max_decompressed_bytes for a compressed
        // message). An uncompressed one keeps max_request_bytes, so tonic refuses it by its
        // length prefix before the rest arrives.
        let compressed = req
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity");
        let max = if compressed {
            self.limits.1
        } else {
            self.limits.0
        };
        let expected = (!compressed).then(|| self.expected.clone());
        // At most a largest message and its header: one large call does not make every
        // later one reserve twice the limit.
        let buffer = match &expected {
            Some(e) => e.load(Ordering::Relaxed).clamp(
                DEFAULT_BUFFER,
                max.saturating_add(GRPC_HEADER).max(DEFAULT_BUFFER),
            ),
            None => DEFAULT_BUFFER,
        };
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec { buffer })
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            let unary = Unary::<S> {
                ingest: ingest.clone(),
                expected,
                _signal: PhantomData,
            };
            let mut response = grpc.unary(unary, req).await;
            if timed_out.load(Ordering::Relaxed) {
                let msg = "the request did not arrive within request_timeout";
                RequestRefused {
                    transport: Transport::Grpc,
                    reason: Reason::Timeout,
                    spans: 0,
                    detail: msg,
                }
                .emit(ingest.telemetry());
                // What tonic's server timeout answered when it bounded the call.
                return Ok(Status::cancelled("Timeout expired").into_http());
            }
            // tonic refuses oversized and undecompressable messages before the handler
            // runs; count those here so no refusal goes unrecorded.
            let code: Option<i32> = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            match code {
                // OUT_OF_RANGE (an uncompressed message over the limit) is retryable in
                // OTLP; a request that can never fit must not be resent, so it becomes
                // RESOURCE_EXHAUSTED without RetryInfo, which OTLP clients do not retry.
                Some(8) | Some(11) => {
                    RequestRefused {
                        transport: Transport::Grpc,
                        reason: Reason::TooLarge,
                        spans: 0,
                        detail: "message larger than the limit",
                    }
                    .emit(ingest.telemetry());
                    response
                        .headers_mut()
                        .insert("grpc-status", http::HeaderValue::from_static("8"));
                }
                // UNIMPLEMENTED from tonic here is an unsupported grpc-encoding (e.g. br).
                Some(12) => RequestRefused {
                    transport: Transport::Grpc,
                    reason: Reason::BadEncoding,
                    spans: 0,
                    detail: "unsupported grpc-encoding",
                }
                .emit(ingest.telemetry()),
                Some(13) => RequestRefused {
                    transport: Transport::Grpc,
                    reason: Reason::BadEncoding,
                    spans: 0,
                    detail: "message could not be decoded from its framing or compression",
                }
                .emit(ingest.telemetry()),
                _ => {}
            }
            Ok(response)
        })
    }
}

/// The gRPC message header (compression flag and length) before each message.
const GRPC_HEADER: usize = 5;

/// One signal's service behind the shared layers: authentication, the request timeout
/// and the wire limit (one message of `max_request_bytes` and its header; a unary call
/// carries one message).
pub fn service<S: Signal>(
    ingest: Arc<dyn Consumer>,
    opts: &GrpcOptions,
) -> AuthService<RequestTimeout<BodyLimit<GrpcService<S>>>> {
    tower::ServiceBuilder::new()
        .layer(AuthLayer::new(opts.auth.clone()))
        .layer(RequestTimeoutLayer::new(opts.timeout))
        .layer(BodyLimitLayer::new(opts.max_request + GRPC_HEADER))
        .service(GrpcService {
            ingest,
            limits: (opts.max_request, opts.max_inflated),
            expected: Arc::default(),
            _signal: PhantomData,
        })
}

/// Bounds a whole call of a gRPC service served beside the receivers (the score API)
/// and answers as tonic's server timeout did, CANCELLED "Timeout expired". The
/// receivers' own services take the shared `RequestTimeoutLayer` instead, which bounds
/// the body and is counted; tonic's server-wide timeout is off so the two cannot race.
#[derive(Clone)]
pub struct CallTimeout<S> {
    timeout: std::time::Duration,
    inner: S,
}

impl<S> CallTimeout<S> {
    pub fn new(inner: S, timeout: std::time::Duration) -> CallTimeout<S> {
        CallTimeout { timeout, inner }
    }
}

impl<S: NamedService> NamedService for CallTimeout<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, R> tower::Service<R> for CallTimeout<S>
where
    S: tower::Service<R, Response = http::Response<tonic::body::Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let call = tokio::time::timeout(self.timeout, self.inner.call(req));
        Box::pin(async move {
            match call.await {
                Ok(response) => response,
                Err(_) => Ok(Status::cancelled("Timeout expired").into_http()),
            }
        })
    }
}

/// What the OTLP/gRPC server needs besides its listener.
pub struct GrpcOptions {
    /// Largest uncompressed message (`max_request_bytes`).
    pub max_request: usize,
    /// Largest message after decompression (`max_decompressed_bytes`).
    pub max_inflated: usize,
    pub auth: Arc<Auth>,
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    pub timeout: std::time::Duration,
}

/// Serves the three OTLP services, and `extra` (the score API), until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<dyn Consumer>,
    opts: GrpcOptions,
    extra: tonic::service::Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::debug!(?addr, "Starting the OTLP/gRPC server.");
    let routes = extra
        .add_service(service::<Traces>(ingest.clone(), &opts))
        .add_service(service::<Metrics>(ingest.clone(), &opts))
        .add_service(service::<Logs>(ingest, &opts));
    // Large frames and no Nagle delay: measured, they cut RPC p99 from 46 ms to 5 ms and
    // lift throughput by half on 1000-span requests (BENCHMARKS.md). Flow-control windows
    // as the loadgen's client sets them: with hyper's 1 MiB connection window, four
    // 430 KB requests in flight on one connection waited for WINDOW_UPDATEs, ~20% more
    // context switches (BENCHMARKS.md, tenth step). A peer can buffer at most 8 MiB here.
    let mut builder = tonic::transport::Server::builder()
        .max_frame_size(Some(1 << 20))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    if let Some(tls) = opts.tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_call_past_the_timeout_is_cancelled_as_tonic_cancelled_it() {
        let never = tower::service_fn(|_: ()| {
            std::future::pending::<Result<http::Response<tonic::body::Body>, Infallible>>()
        });
        let r = CallTimeout::new(never, std::time::Duration::from_millis(50))
            .oneshot(())
            .await
            .unwrap();
        let status = Status::from_header_map(r.headers()).expect("a grpc-status");
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert_eq!(status.message(), "Timeout expired");

        let answers = tower::service_fn(|_: ()| async {
            Ok::<_, Infallible>(Status::not_found("no such journey").into_http())
        });
        let r = CallTimeout::new(answers, std::time::Duration::from_millis(50))
            .oneshot(())
            .await
            .unwrap();
        let status = Status::from_header_map(r.headers()).expect("a grpc-status");
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
}
