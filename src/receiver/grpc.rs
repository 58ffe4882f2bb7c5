//! OTLP/gRPC receiver: TraceService, MetricsService and LogsService `Export`.
//!
//! The unary call's framing (the 5-byte message header, `grpc-encoding: gzip`) is read
//! here from the HTTP/2 body, not by tonic's codec: a message that arrives in one DATA
//! frame is decoded where hyper put it, one of several frames is copied once into a
//! reused buffer, and a compressed one is inflated into another. tonic's codec copied
//! every message into a fresh buffer (BENCHMARKS.md, issue 9, tenth step). Framing
//! errors are answered with the statuses tonic gave them. The message is decoded here
//! too, so a malformed body gets INVALID_ARGUMENT, the permanent error OTLP asks for,
//! instead of the INTERNAL that tonic's generated servers return for decode failures.

use super::auth::{Auth, Tenant};
use super::body_pool::{add_frame, BodyPool};
use super::consumer::{Accepted, Consumer, Format, Refused};
use super::inflate::{inflate, Inflate};
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::Status;

/// Messages as raw bytes both ways, for clients that send a body already encoded
/// (tests that send what no SDK would).
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

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
        RawDecoder
    }
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
    /// Messages of more than one DATA frame, joined; and inflated messages. Two pools,
    /// as over HTTP: a compressed message is a tenth of its inflated size.
    wire: Arc<BodyPool>,
    inflated: Arc<BodyPool>,
    _signal: PhantomData<fn() -> S>,
}

impl<S> Clone for GrpcService<S> {
    fn clone(&self) -> Self {
        GrpcService {
            ingest: self.ingest.clone(),
            limits: self.limits,
            wire: self.wire.clone(),
            inflated: self.inflated.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: Signal> NamedService for GrpcService<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The request's `grpc-encoding`: gzip or none; any other is refused before the body is
/// read, as tonic did, with the encodings accepted.
fn request_gzip(headers: &http::HeaderMap) -> Result<bool, Status> {
    match headers.get("grpc-encoding").map(|v| v.as_bytes()) {
        None | Some(b"identity") => Ok(false),
        Some(b"gzip") => Ok(true),
        Some(other) => {
            let mut status = Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                String::from_utf8_lossy(other)
            ));
            status.metadata_mut().insert(
                "grpc-accept-encoding",
                tonic::metadata::MetadataValue::from_static("gzip"),
            );
            Err(status)
        }
    }
}

/// The message header's compression flag and length, once `got` holds the header. The
/// length is checked against `max` as soon as the header arrives, so an oversized
/// message is refused before the rest of it is read.
fn message_header(got: &[u8], gzip: bool, max: usize) -> Result<Option<(bool, usize)>, Status> {
    let Some(&[flag, a, b, c, d]) = got.first_chunk::<GRPC_HEADER>() else {
        return Ok(None);
    };
    let compressed = match flag {
        0 => false,
        // https://grpc.github.io/grpc/core/md_doc_compression.html: INTERNAL.
        1 if gzip => true,
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ))
        }
        f => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {f} (valid flags are 0 and 1)"
            )))
        }
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > max {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {max} bytes"
        )));
    }
    Ok(Some((compressed, len)))
}

/// Reads a unary call's body. One DATA frame comes back as that frame, untouched; the
/// frames of a longer body are appended to `out` (reused) and `None` comes back. The
/// message header is checked as soon as it has arrived. A body cancelled by the sender
/// ends it, as in tonic.
async fn read_call<B>(
    body: B,
    gzip: bool,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<Option<Bytes>, Status>
where
    B: http_body::Body<Data = Bytes, Error = Status>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut header_seen = false;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(status) if status.code() == tonic::Code::Cancelled => break,
            Err(status) => return Err(status),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no message bytes
        };
        // The whole message, once: its header (checked below when it arrived whole in
        // the first frame) says how long it is.
        add_frame(&mut first, out, data, |f| {
            message_header(f, gzip, max)
                .ok()
                .flatten()
                .map_or(0, |(_, n)| n.saturating_add(GRPC_HEADER))
        });
        if !header_seen {
            header_seen = message_header(first.as_deref().unwrap_or(out), gzip, max)?.is_some();
        }
    }
    Ok(first)
}

/// The one message in `got` (a whole unary body): its bytes and whether they are
/// compressed. What tonic refused is refused with its status; a second message, which
/// tonic dropped unread, is refused too (INTERNAL, as grpc-java answers it).
fn the_message(got: &[u8], gzip: bool, max: usize) -> Result<(bool, &[u8]), Status> {
    if got.is_empty() {
        return Err(Status::internal("Missing request message."));
    }
    let eof = || Status::internal("Unexpected EOF decoding stream.");
    let (compressed, len) = message_header(got, gzip, max)?.ok_or_else(eof)?;
    let rest = &got[GRPC_HEADER..];
    let message = rest.get(..len).ok_or_else(eof)?;
    if rest.len() > len {
        return Err(Status::internal(format!(
            "a unary call carries one message; {} more bytes follow it",
            rest.len() - len
        )));
    }
    Ok((compressed, message))
}

/// A successful call's answer: the response message in one frame, then `grpc-status: 0`
/// in the trailers.
fn reply(message: &[u8]) -> http::Response<tonic::body::Body> {
    let mut framed = Vec::with_capacity(GRPC_HEADER + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from(framed))
        .map_err(|never: Infallible| match never {})
        .with_trailers(std::future::ready(Some(Ok::<_, Status>(trailers))));
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Reads, checks and handles one Export call; a refusal comes back as the status to
/// answer with.
async fn export<S: Signal, B>(
    ingest: &dyn Consumer,
    verdict: Result<Tenant, &'static str>,
    body: B,
    gzip: bool,
    max: usize,
    pools: (&BodyPool, &BodyPool),
) -> Result<Vec<u8>, Status>
where
    B: http_body::Body<Data = Bytes, Error = Status>,
{
    let mut wire = pools.0.take();
    let one_frame = read_call(body, gzip, max, &mut wire.item).await?;
    let (compressed, message) = the_message(one_frame.as_deref().unwrap_or(&wire.item), gzip, max)?;
    let mut inflated;
    let message: &[u8] = if compressed {
        inflated = pools.1.take();
        match inflate(message, max, &mut inflated.item) {
            Ok(()) => &inflated.item,
            Err(Inflate::TooLarge) => {
                return Err(Status::resource_exhausted(format!(
                    "Error decompressing: size limit, of {max} bytes, exceeded while decompressing message"
                )))
            }
            Err(Inflate::Corrupt(e)) => {
                return Err(Status::internal(format!("Error decompressing: {e}")))
            }
        }
    } else {
        message
    };
    let tenant = match verdict {
        Ok(t) => t,
        Err(why) => {
            // Received and refused, so received = processed + refused still holds.
            let spans = S::spans_in(ingest, message);
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
    S::handle(ingest, message, &tenant)
}

impl<S: Signal, B> tower::Service<http::Request<B>> for GrpcService<S>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The shared layers fail the body; they become statuses here: too large is
        // counted below by its code, a timeout answers as tonic's own timeout did.
        let timed_out = Arc::new(AtomicBool::new(false));
        let seen = timed_out.clone();
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(S::NAME))
            == Some("/Export");
        let ingest = self.ingest.clone();
        let gzip = request_gzip(req.headers());
        // The body-limit layer bounds the wire; only here is a message inflated, so a
        // compressed message is held to max_decompressed_bytes (its length prefix and
        // what it inflates to). An uncompressed one keeps max_request_bytes, refused by
        // its length prefix before the rest arrives.
        let max = if matches!(gzip, Ok(true)) {
            self.limits.1
        } else {
            self.limits.0
        };
        let Verdict(verdict) = Verdict::of(req.extensions());
        let body = req.into_body().map_err(move |e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            if cause::<LengthLimitError>(&*e).is_some() {
                Status::resource_exhausted("request larger than max_request_bytes")
            } else if cause::<TimedOut>(&*e).is_some() {
                seen.store(true, Ordering::Relaxed);
                Status::deadline_exceeded(e.to_string())
            } else {
                Status::from_error(e)
            }
        });
        let (wire, inflated) = (self.wire.clone(), self.inflated.clone());
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let answer = match gzip {
                Ok(gzip) => {
                    export::<S, _>(&*ingest, verdict, body, gzip, max, (&wire, &inflated)).await
                }
                Err(status) => Err(status),
            };
            let mut response = match answer {
                Ok(message) => return Ok(reply(&message)),
                Err(status) => status.into_http(),
            };
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
            // Oversized, undecompressable and badly framed messages are refused before
            // the handler runs; count those here so no refusal goes unrecorded.
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
            wire: Arc::default(),
            inflated: Arc::default(),
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

    type Chunk = Result<http_body::Frame<Bytes>, Status>;

    fn body(
        chunks: Vec<Chunk>,
    ) -> http_body_util::StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Chunk>>> {
        http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
    }

    fn data(b: &[u8]) -> Chunk {
        Ok(http_body::Frame::data(Bytes::copy_from_slice(b)))
    }

    fn framed(flag: u8, msg: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        f.extend_from_slice(msg);
        f
    }

    #[tokio::test]
    async fn one_frame_is_read_in_place_and_more_are_joined_once() {
        let call = framed(0, b"twelve bytes");
        let mut out = Vec::new();
        let one = read_call(body(vec![data(&call)]), false, 100, &mut out)
            .await
            .expect("readable");
        assert_eq!(one.as_deref(), Some(&call[..]));
        assert!(out.is_empty(), "nothing copied");
        assert_eq!(
            the_message(&call, false, 100).expect("one message"),
            (false, &b"twelve bytes"[..])
        );

        // The header itself split over frames (2 + 3 bytes), then the message in two.
        let split = vec![
            data(&call[..2]),
            data(&call[2..5]),
            data(&call[5..9]),
            data(&call[9..]),
        ];
        let one = read_call(body(split), false, 100, &mut out)
            .await
            .expect("readable");
        assert_eq!(one, None);
        assert_eq!(out, call);
        // Reserved once for the whole message its header announced.
        assert!(out.capacity() >= call.len());
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_the_rest_is_read() {
        let mut header = vec![0u8];
        header.extend_from_slice(&101u32.to_be_bytes());
        // Were the second chunk read, the call would fail with its UNKNOWN instead.
        let chunks = vec![data(&header), Err(Status::unknown("read past the header"))];
        let mut out = Vec::new();
        let e = read_call(body(chunks), false, 100, &mut out)
            .await
            .expect_err("over the limit");
        assert_eq!(e.code(), tonic::Code::OutOfRange);
        assert_eq!(
            e.message(),
            "Error, decoded message length too large: found 101 bytes, the limit is: 100 bytes"
        );
    }

    #[tokio::test]
    async fn a_cancelled_body_ends_the_call_and_other_errors_fail_it() {
        let call = framed(0, b"abc");
        let mut out = Vec::new();
        let chunks = vec![data(&call), Err(Status::cancelled("reset by the client"))];
        let one = read_call(body(chunks), false, 100, &mut out)
            .await
            .expect("ended");
        assert_eq!(one.as_deref(), Some(&call[..]));
        let chunks = vec![data(&call), Err(Status::deadline_exceeded("slow"))];
        let e = read_call(body(chunks), false, 100, &mut out)
            .await
            .expect_err("failed");
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
    }

    #[test]
    fn framing_is_refused_with_the_statuses_tonic_gave() {
        let internal = |got: &[u8], gzip: bool| {
            let e = the_message(got, gzip, 100).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::Internal, "{got:?}");
            e.message().to_string()
        };
        assert_eq!(internal(b"", false), "Missing request message.");
        assert_eq!(
            internal(&[0, 0, 0], false),
            "Unexpected EOF decoding stream."
        );
        assert_eq!(
            internal(&framed(0, b"abcdef")[..8], false),
            "Unexpected EOF decoding stream."
        );
        assert!(
            internal(&framed(1, b"abc"), false).contains("compressed-flag but no grpc-encoding")
        );
        assert!(internal(&framed(2, b"abc"), false).contains("invalid compression flag: 2"));
        // A second message (here 3 + 8 bytes after the first) is refused, not dropped.
        let two = [framed(0, b"abc"), framed(0, b"def")].concat();
        assert_eq!(
            internal(&two, false),
            "a unary call carries one message; 8 more bytes follow it"
        );
        // The compressed flag with gzip announced is a compressed message.
        assert_eq!(
            the_message(&framed(1, b"gz"), true, 100).expect("one message"),
            (true, &b"gz"[..])
        );
        // An empty message is a message: an empty request.
        assert_eq!(
            the_message(&framed(0, b""), false, 100).expect("one message"),
            (false, &b""[..])
        );
    }

    #[test]
    fn only_gzip_and_identity_are_accepted_encodings() {
        let mut h = http::HeaderMap::new();
        assert!(!request_gzip(&h).expect("none"));
        h.insert("grpc-encoding", http::HeaderValue::from_static("identity"));
        assert!(!request_gzip(&h).expect("identity"));
        h.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        assert!(request_gzip(&h).expect("gzip"));
        h.insert("grpc-encoding", http::HeaderValue::from_static("br"));
        let e = request_gzip(&h).expect_err("br");
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert_eq!(
            e.metadata()
                .get("grpc-accept-encoding")
                .and_then(|v| v.to_str().ok()),
            Some("gzip")
        );
    }

    #[tokio::test]
    async fn a_reply_is_one_framed_message_then_grpc_status_0() {
        let r = reply(b"ok");
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/grpc")
        );
        let collected = r.into_body().collect().await.expect("a body");
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(
            trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
            Some("0")
        );
        assert_eq!(&collected.to_bytes()[..], &framed(0, b"ok")[..]);
    }

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
