//! The two OTLP transports the load generator speaks, sending pre-encoded bodies as
//! they are: gRPC (raw frames over a tonic `Channel`, so a body is never re-encoded
//! or re-compressed per request) and OTLP/HTTP, protobuf or JSON (`POST /v1/traces`
//! over hyper).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

/// What became of one request.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Accepted; `rejected` spans were refused in a partial success.
    Ok { rejected: u64 },
    /// The endpoint answered with an error status.
    Refused(String),
    /// No answer: connection error or timeout.
    Failed(String),
}

pub enum Client {
    Grpc {
        channels: Vec<Channel>,
        gzip: bool,
    },
    Http {
        client: Box<HyperClient<HttpConnector, Full<Bytes>>>,
        uri: Uri,
        gzip: bool,
        json: bool,
    },
}

/// `host:port` or a URL; a missing scheme means `http://`.
pub fn normalize(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

impl Client {
    pub async fn connect(
        protocol: Protocol,
        endpoint: &str,
        gzip: bool,
        connections: usize,
        timeout: Duration,
    ) -> Result<Client, String> {
        let url = normalize(endpoint);
        match protocol {
            Protocol::Grpc => {
                let ep = Endpoint::from_shared(url.clone())
                    .map_err(|e| format!("invalid endpoint \"{url}\": {e}"))?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true)
                    .initial_stream_window_size(Some(4 << 20))
                    .initial_connection_window_size(Some(8 << 20));
                let mut channels = Vec::new();
                for _ in 0..connections.max(1) {
                    let ch = ep
                        .connect()
                        .await
                        .map_err(|e| format!("cannot connect to {url}: {}", chain(&e)))?;
                    channels.push(ch);
                }
                Ok(Client::Grpc { channels, gzip })
            }
            Protocol::Http | Protocol::HttpJson => {
                let full = if url.ends_with("/v1/traces") {
                    url.clone()
                } else {
                    format!("{url}/v1/traces")
                };
                let uri: Uri = full
                    .parse()
                    .map_err(|e| format!("invalid endpoint \"{full}\": {e}"))?;
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(timeout));
                let client = HyperClient::builder(TokioExecutor::new()).build(connector);
                Ok(Client::Http {
                    client: Box::new(client),
                    uri,
                    gzip,
                    json: protocol == Protocol::HttpJson,
                })
            }
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Client::Grpc { .. } => Protocol::Grpc,
            Client::Http { json: false, .. } => Protocol::Http,
            Client::Http { json: true, .. } => Protocol::HttpJson,
        }
    }

    /// Sends one body, as framed by [`frame`], on connection `lane`.
    pub async fn send(&self, body: Bytes, lane: usize, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, self.send_inner(body, lane)).await {
            Ok(o) => o,
            Err(_) => Outcome::Failed(format!("no answer within {timeout:?}")),
        }
    }

    async fn send_inner(&self, body: Bytes, lane: usize) -> Outcome {
        match self {
            Client::Grpc { channels, gzip } => {
                let Some(ch) = channels.get(lane % channels.len().max(1)) else {
                    return Outcome::Failed("no gRPC connection".into());
                };
                let mut ch = ch.clone();
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri(GRPC_PATH)
                    .header(http::header::CONTENT_TYPE, "application/grpc")
                    .header(http::header::TE, "trailers");
                if *gzip {
                    req = req.header("grpc-encoding", "gzip");
                }
                let req = match req.body(tonic::body::Body::new(Full::new(body))) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(format!("cannot build the request: {e}")),
                };
                if let Err(e) = std::future::poll_fn(|cx| ch.poll_ready(cx)).await {
                    return Outcome::Failed(format!("connection: {}", chain(&e)));
                }
                let resp = match ch.call(req).await {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(format!("transport: {}", chain(&e))),
                };
                let (parts, body) = resp.into_parts();
                if !parts.status.is_success() {
                    return Outcome::Refused(format!(
                        "HTTP {} on a gRPC call",
                        parts.status.as_u16()
                    ));
                }
                if let Some(o) = grpc_status(&parts.headers) {
                    return o;
                }
                let collected = match body.collect().await {
                    Ok(c) => c,
                    Err(e) => return Outcome::Failed(format!("reading the response: {e}")),
                };
                let trailers = collected.trailers().cloned();
                let data = collected.to_bytes();
                if let Some(o) = trailers.as_ref().and_then(grpc_status) {
                    return o;
                }
                // grpc-status 0, or no status at all (the body alone says nothing is wrong).
                let msg = data.get(5..).unwrap_or_default();
                Outcome::Ok {
                    rejected: rejected_spans(msg),
                }
            }
            Client::Http {
                client,
                uri,
                gzip,
                json,
            } => {
                let ct = if *json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri(uri.clone())
                    .header(http::header::CONTENT_TYPE, ct);
                if *gzip {
                    req = req.header(http::header::CONTENT_ENCODING, "gzip");
                }
                let req = match req.body(Full::new(body)) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(format!("cannot build the request: {e}")),
                };
                let resp = match client.request(req).await {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(format!("transport: {}", chain(&e))),
                };
                let status = resp.status();
                let data = match resp.into_body().collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(e) => return Outcome::Failed(format!("reading the response: {e}")),
                };
                match (status.is_success(), *json) {
                    (true, false) => Outcome::Ok {
                        rejected: rejected_spans(&data),
                    },
                    (true, true) => Outcome::Ok {
                        rejected: json_rejected_spans(&data),
                    },
                    (false, false) => Outcome::Refused(format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        rpc_status_message(&data)
                    )),
                    (false, true) => Outcome::Refused(format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        json_status_message(&data)
                    )),
                }
            }
        }
    }
}

/// The error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn grpc_status(h: &http::HeaderMap) -> Option<Outcome> {
    let code = h
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    if code == 0 {
        return None;
    }
    let msg = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let name = tonic::Code::from_i32(code);
    Some(Outcome::Refused(format!("{name:?}: {msg}")))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rejected_spans(body: &[u8]) -> u64 {
    ExportTraceServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

/// `partialSuccess.rejectedSpans` of an OTLP/JSON response (an int64: string or number).
fn json_rejected_spans(body: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match &v["partialSuccess"]["rejectedSpans"] {
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        n => n.as_u64().unwrap_or(0),
    }
}

/// The `message` of a JSON `google.rpc.Status`, or the body as text when it is not one.
fn json_status_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match v["message"].as_str() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// `google.rpc.Status.message`, or the body as text when it is not one.
fn rpc_status_message(body: &[u8]) -> String {
    match tonic_types::Status::decode(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// Frames an OTLP body for the wire: gzip when asked, and the 5-byte gRPC message
/// prefix (compressed flag, big-endian length) for gRPC.
pub fn frame(protocol: Protocol, gzip: bool, body: &[u8]) -> Bytes {
    use std::io::Write;
    let payload: Vec<u8> = if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(body);
        enc.finish().unwrap_or_default()
    } else {
        body.to_vec()
    };
    match protocol {
        Protocol::Http | Protocol::HttpJson => Bytes::from(payload),
        Protocol::Grpc => {
            let mut out = Vec::with_capacity(payload.len() + 5);
            out.push(u8::from(gzip));
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&payload);
            Bytes::from(out)
        }
    }
}

/// GETs `url` and returns the body as text (for the freshness probe).
pub async fn get_text(
    client: &HyperClient<HttpConnector, Full<Bytes>>,
    url: &Uri,
    timeout: Duration,
) -> Result<String, String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(url.clone())
        .header(http::header::ACCEPT, HeaderValue::from_static("text/plain"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| chain(&e))?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

pub fn http_client() -> HyperClient<HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_grpc_messages() {
        let f = frame(Protocol::Grpc, false, b"abc");
        assert_eq!(&f[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let g = frame(Protocol::Grpc, true, b"abcabcabcabc");
        assert_eq!(g[0], 1);
        assert_eq!(
            u32::from_be_bytes([g[1], g[2], g[3], g[4]]) as usize,
            g.len() - 5
        );
        assert_eq!(&frame(Protocol::Http, false, b"abc")[..], b"abc");
    }

    #[test]
    fn decodes_grpc_messages() {
        assert_eq!(percent_decode("queues%20are%20full"), "queues are full");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(normalize("127.0.0.1:4317"), "http://127.0.0.1:4317");
        assert_eq!(normalize("http://h:1/"), "http://h:1");
    }
}
