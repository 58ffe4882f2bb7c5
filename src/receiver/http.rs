//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf or JSON,
//! optionally gzip-compressed, with fixed or chunked bodies.

use super::consumer::{Accepted, Consumer, Format, Refused};
use crate::internal_events::{InternalEvent, RequestRefused, SpansReceived};
use crate::telemetry::{Reason, Transport};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;
use std::sync::Arc;

/// What the OTLP/HTTP receiver needs besides its listener.
#[derive(Clone)]
pub struct HttpOptions {
    pub max_request: usize,
    pub max_inflated: usize,
    pub auth: Arc<Auth>,
    /// Longest a request body may take to arrive.
    pub timeout: std::time::Duration,
    /// CORS for web pages; `None` sends no CORS header.
    pub cors: Option<crate::config::Cors>,
    /// The allowance of each client address sending with a public token.
    pub public_rate: Arc<RateLimiter>,
}

#[derive(Clone)]
struct HttpState {
    ingest: Arc<dyn Consumer>,
    opts: HttpOptions,
    /// Bodies as they arrive, and as gzip inflates them: two pools, since a gzip body
    /// is a tenth of its inflated size and a buffer of one would not fit the other.
    bodies: Arc<BodyPool>,
    inflated: Arc<BodyPool>,
}

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

use super::auth::{Auth, PublicClient};
use super::body_pool::{add_frame, BodyPool};
use super::cors::{cors, CorsPolicy};
use super::inflate::{inflate, Inflate};
use super::layers::{
    cause, AuthLayer, BodyLimitLayer, LengthLimitError, RequestTimeoutLayer, TimedOut, Verdict,
};
use super::rate::RateLimiter;
use axum::extract::ConnectInfo;
use std::net::SocketAddr;

pub fn router(ingest: Arc<dyn Consumer>, opts: HttpOptions) -> Router {
    let auth = opts.auth.clone();
    let (max_request, timeout) = (opts.max_request, opts.timeout);
    let policy = opts
        .cors
        .as_ref()
        .map(|c| Arc::new(CorsPolicy::new(c, ingest.clone())));
    let state = HttpState {
        ingest,
        opts,
        bodies: Arc::default(),
        inflated: Arc::default(),
    };
    let router = Router::new()
        .route(
            "/v1/traces",
            post(|s: State<HttpState>, r: Request| handle(s, r, Signal::Traces)),
        )
        .route(
            "/v1/metrics",
            post(|s: State<HttpState>, r: Request| handle(s, r, Signal::Metrics)),
        )
        .route(
            "/v1/logs",
            post(|s: State<HttpState>, r: Request| handle(s, r, Signal::Logs)),
        )
        .with_state(state)
        .layer(BodyLimitLayer::new(max_request))
        .layer(RequestTimeoutLayer::new(timeout))
        .layer(AuthLayer::new(auth));
    // Outermost: a preflight carries no token and is answered before anything else.
    match policy {
        Some(p) => router.layer(axum::middleware::from_fn_with_state(p, cors)),
        None => router,
    }
}

fn media_format(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
        "application/json" => Some(Format::Json),
        _ => None,
    }
}

/// An error sent before the body was read in full: the connection is closed after it,
/// since the unread rest of the body would otherwise be taken for the next request.
fn early_error(format: Format, status: StatusCode, grpc_code: i32, message: String) -> Response {
    let mut r = error(format, status, grpc_code, message);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn error(format: Format, status: StatusCode, grpc_code: i32, message: String) -> Response {
    let (ct, body) = match format {
        Format::Protobuf => (
            "application/x-protobuf",
            tonic_types::Status {
                code: grpc_code,
                message,
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
        Format::Json => (
            "application/json",
            serde_json::json!({ "code": grpc_code, "message": message })
                .to_string()
                .into_bytes(),
        ),
    };
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

async fn handle(State(st): State<HttpState>, req: Request, signal: Signal) -> Response {
    let t = Transport::Http;
    let tel = st.ingest.telemetry();
    let Some(format) = media_format(req.headers()) else {
        let got = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let msg = format!(
            "unsupported Content-Type \"{got}\" (use application/x-protobuf or application/json)"
        );
        RequestRefused {
            transport: t,
            reason: Reason::UnsupportedMediaType,
            spans: 0,
            detail: &msg,
        }
        .emit(tel);
        return early_error(Format::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, msg);
    };
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    if !matches!(encoding.as_str(), "identity" | "gzip" | "") {
        let msg = format!("unsupported Content-Encoding \"{encoding}\" (use gzip or none)");
        RequestRefused {
            transport: t,
            reason: Reason::BadEncoding,
            spans: 0,
            detail: &msg,
        }
        .emit(tel);
        return early_error(format, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, msg);
    }
    let Verdict(verdict) = Verdict::of(req.extensions());
    // A sender without a known address (no listener in front) shares one allowance.
    let public_client = req.extensions().get::<PublicClient>().map(|_| {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip())
    });
    let max_request = st.opts.max_request;
    // The body comes through the shared limit and timeout layers (layers.rs); their
    // errors are answered here, in this protocol. A body that arrives as one frame is
    // read where hyper put it; one of several frames is copied into a reused buffer: no
    // fresh megabyte mapped, faulted in and unmapped per request.
    let mut body = st.bodies.take();
    // The limit layer refuses longer bodies, so this never reserves past it.
    let expected = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |len| len.min(max_request));
    let one_frame = match read_body(req.into_body(), expected, &mut body.item).await {
        Ok(one_frame) => one_frame,
        Err(e) => {
            let (reason, status, grpc_code, msg) = if cause::<TimedOut>(&e).is_some() {
                (
                    Reason::Timeout,
                    StatusCode::REQUEST_TIMEOUT,
                    4,
                    e.to_string(),
                )
            } else if cause::<LengthLimitError>(&e).is_some() {
                (
                    Reason::TooLarge,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    3,
                    format!("request body is larger than {max_request} bytes"),
                )
            } else {
                (
                    Reason::Malformed,
                    StatusCode::BAD_REQUEST,
                    3,
                    format!("cannot read the request body: {e}"),
                )
            };
            RequestRefused {
                transport: t,
                reason,
                spans: 0,
                detail: &msg,
            }
            .emit(tel);
            return early_error(format, status, grpc_code, msg);
        }
    };
    let wire: &[u8] = one_frame.as_deref().unwrap_or(&body.item);
    let mut inflated;
    let bytes: &[u8] = if encoding == "gzip" {
        inflated = st.inflated.take();
        match inflate(wire, st.opts.max_inflated, &mut inflated.item) {
            Ok(()) => &inflated.item,
            Err(Inflate::TooLarge) => {
                let msg = format!(
                    "gzip body inflates to more than {} bytes",
                    st.opts.max_inflated
                );
                RequestRefused {
                    transport: t,
                    reason: Reason::TooLarge,
                    spans: 0,
                    detail: &msg,
                }
                .emit(tel);
                return error(format, StatusCode::PAYLOAD_TOO_LARGE, 3, msg);
            }
            Err(Inflate::Corrupt(e)) => {
                let msg = format!("invalid gzip body: {e}");
                RequestRefused {
                    transport: t,
                    reason: Reason::BadEncoding,
                    spans: 0,
                    detail: &msg,
                }
                .emit(tel);
                return error(format, StatusCode::BAD_REQUEST, 3, msg);
            }
        }
    } else {
        wire
    };
    // Decoded JSON takes many times its text in memory, so inflated JSON is held to the
    // wire limit; protobuf is read in place and may use the whole inflated limit.
    if format == Format::Json && bytes.len() > st.opts.max_request {
        let msg = format!(
            "JSON body inflates to more than {} bytes (max_request_bytes)",
            st.opts.max_request
        );
        RequestRefused {
            transport: t,
            reason: Reason::TooLarge,
            spans: 0,
            detail: &msg,
        }
        .emit(tel);
        return error(format, StatusCode::PAYLOAD_TOO_LARGE, 8, msg);
    }
    let ingest = &st.ingest;
    let tenant = match verdict {
        Ok(tenant) => tenant,
        Err(why) => {
            // The spans are counted so the refusal shows how much was turned away.
            let spans = match signal {
                Signal::Traces => ingest.spans_in(bytes, format),
                _ => 0,
            };
            // Received and refused, so received = processed + refused still holds.
            SpansReceived {
                transport: t,
                spans,
            }
            .emit(tel);
            RequestRefused {
                transport: t,
                reason: Reason::Unauthenticated,
                spans,
                detail: why,
            }
            .emit(tel);
            let mut r = error(format, StatusCode::UNAUTHORIZED, 16, why.to_string());
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    if let Some(ip) = public_client {
        let (items, spans) = match signal {
            Signal::Traces => {
                let n = ingest.spans_in(bytes, format);
                (n, n)
            }
            Signal::Logs => (ingest.log_records_in(bytes, format), 0),
            Signal::Metrics => (ingest.data_points_in(bytes, format), 0),
        };
        let now = std::time::Instant::now();
        if let Err(wait) = st.opts.public_rate.take(ip, items, now, tel) {
            // Received and refused, so received = processed + refused still holds.
            SpansReceived {
                transport: t,
                spans,
            }
            .emit(tel);
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let msg = format!("client {ip} is over the public rate limit; retry in {secs} s");
            RequestRefused {
                transport: t,
                reason: Reason::RateLimited,
                spans,
                detail: &msg,
            }
            .emit(tel);
            let mut r = error(format, StatusCode::TOO_MANY_REQUESTS, 8, msg);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
    }
    let result = match signal {
        Signal::Traces => ingest.traces(bytes, format, t, tenant.as_deref()),
        Signal::Metrics => ingest.metrics(bytes, format, t),
        Signal::Logs => ingest.logs(bytes, format, t),
    };
    match result {
        Ok(accepted) => success(format, signal, accepted),
        Err(Refused::Malformed(msg)) => error(format, StatusCode::BAD_REQUEST, 3, msg),
        Err(Refused::TooLarge(msg)) => error(format, StatusCode::PAYLOAD_TOO_LARGE, 8, msg),
        Err(Refused::Unavailable) => {
            let mut r = error(
                format,
                StatusCode::SERVICE_UNAVAILABLE,
                14,
                "cerflow's pipeline queues are full; retry later".into(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

fn success(format: Format, signal: Signal, a: Accepted) -> Response {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let body: Vec<u8> = match format {
        Format::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: (a.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: a.rejected as i64,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: (a.rejected > 0).then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: a.rejected as i64,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: None,
            }
            .encode_to_vec(),
        },
        Format::Json => {
            // OTLP names the count after the signal.
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            let v = if a.rejected > 0 {
                serde_json::json!({ "partialSuccess": { field: a.rejected.to_string(), "errorMessage": a.message } })
            } else {
                serde_json::json!({})
            };
            v.to_string().into_bytes()
        }
    };
    let ct = match format {
        Format::Protobuf => "application/x-protobuf",
        Format::Json => "application/json",
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, ct)],
        Body::from(body),
    )
        .into_response()
}

/// Reads the body: a body of one data frame comes back as that frame, untouched; the
/// frames of a longer one are appended to `out` (reserving `expected` bytes, its
/// content-length, once a second frame shows the copy is needed) and `None` comes back.
/// The limit and timeout layers' errors come through as the body's errors.
async fn read_body(
    mut body: Body,
    expected: usize,
    out: &mut Vec<u8>,
) -> Result<Option<Bytes>, axum::Error> {
    let mut first: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            add_frame(&mut first, out, data, |_| expected);
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn one_frame_is_used_in_place_and_more_are_joined() {
        let mut out = Vec::new();
        let one = read_body(frames(&[b"{\"resourceSpans\":[]}"]), 20, &mut out)
            .await
            .expect("readable");
        assert_eq!(one.as_deref(), Some(&b"{\"resourceSpans\":[]}"[..]));
        assert!(out.is_empty(), "nothing copied");
        // Three frames, one of them empty: 3 + 4 + 0 + 2 = 9 bytes, in order.
        let one = read_body(frames(&[b"abc", b"defg", b"", b"hi"]), 9, &mut out)
            .await
            .expect("readable");
        assert_eq!(one, None);
        assert_eq!(out, b"abcdefghi");
        assert!(out.capacity() >= 9);
        // An empty frame before the only data frame still leaves it in place.
        out.clear();
        let one = read_body(frames(&[b"", b"xyz"]), 3, &mut out)
            .await
            .expect("readable");
        assert_eq!(one.as_deref(), Some(&b"xyz"[..]));
        assert!(out.is_empty());
    }
}
