//! The `receivers` section: listeners, TLS, bearer tokens and request limits,
//! validated here beside the receivers that use them.

use crate::config::decode::{index, join, Ctx};
use crate::config::listener::{existing_file, extra_key, listener, TlsFiles};
use crate::config::yaml::Node;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Receivers {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub grpc_tls: Option<TlsFiles>,
    pub http_tls: Option<TlsFiles>,
    /// Bearer tokens; when any is set, both receivers require one.
    pub tokens: Vec<BearerToken>,
    /// Longest a request body may take to arrive.
    pub request_timeout: Duration,
    /// Span attributes read per span; later ones are ignored by rules and cohorts.
    pub max_attributes_per_span: usize,
    /// Spans one request may hold.
    pub max_spans_per_request: usize,
    /// Largest request body accepted, compressed or not.
    pub max_request_bytes: usize,
    /// Largest body after gzip inflation; a bomb stops here.
    pub max_decompressed_bytes: usize,
    /// CORS on the OTLP/HTTP receiver; `None` sends no CORS header at all.
    pub http_cors: Option<Cors>,
    /// Spans (and log records) per second each client address may send with a public
    /// token.
    pub public_rate_limit: f64,
}

/// `receivers.otlp.protocols.http.cors`, as the Collector's HTTP server reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cors {
    /// Exact origins (`https://shop.example.com`), patterns with one `*`
    /// (`https://*.example.com`), or `*` for any origin. Lower case.
    pub allowed_origins: Vec<String>,
    /// Request headers allowed besides the safe defaults; `*` allows any. Lower case.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer; `None` sends no `Max-Age`.
    pub max_age: Option<u64>,
}

/// Spans per second a client address may send with a public token, by default.
pub const DEFAULT_PUBLIC_RATE_LIMIT: f64 = 100.0;

#[derive(Clone, PartialEq)]
pub struct BearerToken {
    pub token: String,
    /// Exposed to rules and cohorts as the attribute `cerflow.tenant`.
    pub tenant: Option<String>,
    /// A token a web page carries and so cannot keep secret: valid only with an
    /// `Origin` in `allowed_origins`, and rate-limited per client address.
    pub public: bool,
    /// Origin patterns (as in [`Cors::allowed_origins`]) a public token is valid from.
    pub allowed_origins: Vec<String>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug dump.
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("public", &self.public)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

pub fn bearer_tokens(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<BearerToken> {
    let mut out = Vec::new();
    let problems_before = ctx.problems.len();
    let Some(items) = ctx.seq(node, path) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let keys = ["token", "token_file", "tenant", "public", "allowed_origins"];
        let Some(m) = ctx.map(item, &p, &keys) else {
            continue;
        };
        let token = match (m.get("token"), m.get("token_file")) {
            (Some(t), None) => ctx.non_empty_string(t, &join(&p, "token")),
            (None, Some(f)) => existing_file(ctx, f, &join(&p, "token_file")).and_then(|file| {
                match std::fs::read_to_string(&file) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                    Ok(_) => {
                        ctx.error(f.mark, &join(&p, "token_file"), "the token file is empty");
                        None
                    }
                    Err(e) => {
                        ctx.error(f.mark, &join(&p, "token_file"), format!("cannot read: {e}"));
                        None
                    }
                }
            }),
            _ => {
                ctx.error(m.mark, &p, "give exactly one of: token, token_file");
                None
            }
        };
        let tenant = m
            .get("tenant")
            .and_then(|t| ctx.non_empty_string(t, &join(&p, "tenant")));
        let public = m
            .get("public")
            .and_then(|n| ctx.bool(n, &join(&p, "public")))
            .unwrap_or(false);
        let allowed_origins = match m.get("allowed_origins") {
            Some(n) => origins(ctx, n, &join(&p, "allowed_origins")),
            None => Vec::new(),
        };
        match (public, allowed_origins.is_empty(), m.get("allowed_origins")) {
            (true, true, None) => ctx.error(
                m.mark,
                &p,
                "a public token needs allowed_origins (the pages that may use it)",
            ),
            (false, _, Some(n)) => ctx.error(
                n.mark,
                &join(&p, "allowed_origins"),
                "allowed_origins is for public tokens: add public: true",
            ),
            _ => {}
        }
        if let Some(token) = token {
            if out.iter().any(|t: &BearerToken| t.token == token) {
                ctx.error(m.mark, &p, "the same token is listed twice");
            } else {
                out.push(BearerToken {
                    token,
                    tenant,
                    public,
                    allowed_origins,
                });
            }
        }
    }
    if out.is_empty() && ctx.problems.len() == problems_before {
        ctx.error(
            node.mark,
            path,
            "list at least one token, or leave auth out",
        );
    }
    out
}

/// A list of origin patterns: `*`, or `scheme://host[:port]` with at most one `*`.
fn origins(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(items) = ctx.seq(node, path) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(s) = ctx.non_empty_string(item, &p) else {
            continue;
        };
        let ok = s == "*"
            || (s.matches('*').count() <= 1
                && s.split_once("://")
                    .is_some_and(|(scheme, host)| !scheme.is_empty() && !host.is_empty())
                && !s.ends_with('/'));
        if ok {
            out.push(s.to_ascii_lowercase());
        } else {
            ctx.error(
                item.mark,
                &p,
                format!("invalid origin \"{s}\" (expected * or scheme://host[:port] with at most one *, e.g. https://*.example.com)"),
            );
        }
    }
    if out.is_empty() && items.is_empty() {
        ctx.error(node.mark, path, "list at least one origin");
    }
    out
}

fn cors(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Cors> {
    let m = ctx.map(
        node,
        path,
        &["allowed_origins", "allowed_headers", "max_age"],
    )?;
    let mut c = Cors::default();
    match m.get("allowed_origins") {
        Some(n) => c.allowed_origins = origins(ctx, n, &join(path, "allowed_origins")),
        None => ctx.error(m.mark, path, "missing required key \"allowed_origins\""),
    }
    if let Some(n) = m.get("allowed_headers") {
        let p = join(path, "allowed_headers");
        if let Some(items) = ctx.seq(n, &p) {
            for (i, item) in items.iter().enumerate() {
                let ip = index(&p, i);
                if let Some(h) = ctx.non_empty_string(item, &ip) {
                    if h == "*" || http::HeaderName::from_bytes(h.as_bytes()).is_ok() {
                        c.allowed_headers.push(h.to_ascii_lowercase());
                    } else {
                        ctx.error(item.mark, &ip, format!("invalid header name \"{h}\""));
                    }
                }
            }
        }
    }
    if let Some(n) = m.get("max_age") {
        // Seconds, as the Collector's `max_age`.
        c.max_age = ctx.u64(n, &join(path, "max_age"));
    }
    Some(c)
}

pub fn decode_receivers(ctx: &mut Ctx, node: &Node, out: &mut Receivers) {
    let Some(m) = ctx.map(node, "receivers", &["otlp"]) else {
        return;
    };
    let Some(otlp) = m.get("otlp") else { return };
    let keys = [
        "protocols",
        "max_request_bytes",
        "max_decompressed_bytes",
        "max_attributes_per_span",
        "max_spans_per_request",
        "request_timeout",
        "auth",
        "public_rate_limit",
    ];
    let Some(o) = ctx.map(otlp, "receivers.otlp", &keys) else {
        return;
    };
    if let Some(p) = o.get("protocols") {
        if let Some(pm) = ctx.map(p, "receivers.otlp.protocols", &["grpc", "http"]) {
            (out.grpc, out.grpc_tls) = match pm.get("grpc") {
                Some(n) => listener(ctx, n, "receivers.otlp.protocols.grpc", &[]),
                None => (None, None),
            };
            (out.http, out.http_tls) = match pm.get("http") {
                Some(n) => {
                    let path = "receivers.otlp.protocols.http";
                    out.http_cors =
                        extra_key(n, "cors").and_then(|c| cors(ctx, c, &join(path, "cors")));
                    listener(ctx, n, path, &["cors"])
                }
                None => (None, None),
            };
            if pm.entries.is_empty() {
                ctx.error(
                    p.mark,
                    "receivers.otlp.protocols",
                    "must specify at least one protocol (grpc, http)",
                );
            }
        }
    }
    for (key, slot) in [
        ("max_request_bytes", &mut out.max_request_bytes),
        ("max_decompressed_bytes", &mut out.max_decompressed_bytes),
    ] {
        if let Some(n) = o.get(key) {
            let p = join("receivers.otlp", key);
            match ctx.u64(n, &p) {
                Some(v) if v >= 1024 => *slot = v as usize,
                Some(_) => ctx.error(n.mark, &p, "must be at least 1024"),
                None => {}
            }
        }
    }
    if let Some(n) = o.get("max_attributes_per_span") {
        match ctx.u64(n, "receivers.otlp.max_attributes_per_span") {
            Some(v) if v >= 1 => out.max_attributes_per_span = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "receivers.otlp.max_attributes_per_span",
                "must be at least 1",
            ),
            None => {}
        }
    }
    if let Some(n) = o.get("max_spans_per_request") {
        match ctx.u64(n, "receivers.otlp.max_spans_per_request") {
            Some(v) if v >= 1 => out.max_spans_per_request = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "receivers.otlp.max_spans_per_request",
                "must be at least 1",
            ),
            None => {}
        }
    }
    if let Some(n) = o.get("request_timeout") {
        if let Some(d) = ctx.positive_duration(n, "receivers.otlp.request_timeout") {
            out.request_timeout = d;
        }
    }
    if let Some(n) = o.get("public_rate_limit") {
        let p = "receivers.otlp.public_rate_limit";
        match ctx.f64(n, p) {
            Some(v) if v > 0.0 && v.is_finite() => out.public_rate_limit = v,
            Some(_) => ctx.error(n.mark, p, "must be a number of spans per second above 0"),
            None => {}
        }
    }
    if let Some(n) = o.get("auth") {
        if let Some(a) = ctx.map(n, "receivers.otlp.auth", &["bearer_tokens"]) {
            match a.get("bearer_tokens") {
                Some(t) => {
                    out.tokens = bearer_tokens(ctx, t, "receivers.otlp.auth.bearer_tokens");
                    // A browser reaches the receiver only through CORS.
                    if out.tokens.iter().any(|t| t.public) && out.http_cors.is_none() {
                        ctx.error(
                            t.mark,
                            "receivers.otlp.auth.bearer_tokens",
                            "public tokens are for web pages: configure receivers.otlp.protocols.http.cors too",
                        );
                    }
                }
                None => ctx.error(
                    a.mark,
                    "receivers.otlp.auth",
                    "missing required key \"bearer_tokens\"",
                ),
            }
        }
    }
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        let r = &cfg.receivers;
        assert_eq!(r.grpc, Some("127.0.0.1:5317".parse().unwrap()));
        assert_eq!(r.max_request_bytes, 1 << 20);
        assert_eq!(r.request_timeout, Duration::from_secs(5));
        assert_eq!(r.tokens.len(), 2);
        assert_eq!(r.tokens[0].tenant.as_deref(), Some("shop"));
        assert!(!r.tokens[0].public);
        assert!(r.tokens[1].public);
        assert_eq!(r.tokens[1].allowed_origins, ["https://shop.example.com"]);
        assert_eq!(r.public_rate_limit, 50.0);
        assert_eq!(
            r.http_cors,
            Some(Cors {
                allowed_origins: vec![
                    "https://shop.example.com".into(),
                    "https://*.example.org".into()
                ],
                allowed_headers: vec!["authorization".into()],
                max_age: Some(600),
            })
        );
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "5:19: receivers.otlp.protocols.grpc.endpoint: invalid endpoint \"not-an-address\" (expected host:port, e.g. 127.0.0.1:4317)",
                "9:29: receivers.otlp.protocols.http.cors.allowed_origins[0]: invalid origin \"shop.example.com\" (expected * or scheme://host[:port] with at most one *, e.g. https://*.example.com)",
                "9:47: receivers.otlp.protocols.http.cors.allowed_origins[1]: invalid origin \"https://*.*.example.org\" (expected * or scheme://host[:port] with at most one *, e.g. https://*.example.com)",
                "10:29: receivers.otlp.protocols.http.cors.allowed_headers[0]: invalid header name \"bad header\"",
                "11:11: receivers.otlp.protocols.http.cors: unknown key \"colour\" (expected one of: allowed_origins, allowed_headers, max_age)",
                "12:24: receivers.otlp.max_request_bytes: must be at least 1024",
                "13:22: receivers.otlp.request_timeout: invalid duration \"soon\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)",
                "14:24: receivers.otlp.public_rate_limit: must be a number of spans per second above 0",
                "17:13: receivers.otlp.auth.bearer_tokens[0]: a public token needs allowed_origins (the pages that may use it)",
                "18:40: receivers.otlp.auth.bearer_tokens[1].allowed_origins: allowed_origins is for public tokens: add public: true",
            ]
        );
    }
}
