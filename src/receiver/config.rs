//! The `receivers` section: listeners, TLS, bearer tokens and request limits,
//! validated here beside the receivers that use them.

use crate::config::decode::{index, join, Ctx};
use crate::config::listener::{existing_file, listener, TlsFiles};
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
    /// Spans read from a Kafka topic by a consumer group, beside or instead of OTLP.
    pub kafka: Option<crate::receiver::kafka::config::KafkaReceiver>,
}

#[derive(Clone, PartialEq)]
pub struct BearerToken {
    pub token: String,
    /// Exposed to rules and cohorts as the attribute `cerflow.tenant`.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug dump.
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("tenant", &self.tenant)
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
        let Some(m) = ctx.map(item, &p, &["token", "token_file", "tenant"]) else {
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
        if let Some(token) = token {
            if out.iter().any(|t: &BearerToken| t.token == token) {
                ctx.error(m.mark, &p, "the same token is listed twice");
            } else {
                out.push(BearerToken { token, tenant });
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

pub fn decode_receivers(ctx: &mut Ctx, node: &Node, out: &mut Receivers) {
    let Some(m) = ctx.map(node, "receivers", &["otlp", "kafka"]) else {
        return;
    };
    if let Some(k) = m.get("kafka") {
        out.kafka = crate::receiver::kafka::config::decode_kafka(ctx, k);
    }
    let Some(otlp) = m.get("otlp") else { return };
    let keys = [
        "protocols",
        "max_request_bytes",
        "max_decompressed_bytes",
        "max_attributes_per_span",
        "max_spans_per_request",
        "request_timeout",
        "auth",
    ];
    let Some(o) = ctx.map(otlp, "receivers.otlp", &keys) else {
        return;
    };
    if let Some(p) = o.get("protocols") {
        if let Some(pm) = ctx.map(p, "receivers.otlp.protocols", &["grpc", "http"]) {
            (out.grpc, out.grpc_tls) = match pm.get("grpc") {
                Some(n) => listener(ctx, n, "receivers.otlp.protocols.grpc"),
                None => (None, None),
            };
            (out.http, out.http_tls) = match pm.get("http") {
                Some(n) => listener(ctx, n, "receivers.otlp.protocols.http"),
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
    if let Some(n) = o.get("auth") {
        if let Some(a) = ctx.map(n, "receivers.otlp.auth", &["bearer_tokens"]) {
            match a.get("bearer_tokens") {
                Some(t) => out.tokens = bearer_tokens(ctx, t, "receivers.otlp.auth.bearer_tokens"),
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
        assert_eq!(r.tokens.len(), 1);
        assert_eq!(r.tokens[0].tenant.as_deref(), Some("shop"));
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "5:19: receivers.otlp.protocols.grpc.endpoint: invalid endpoint \"not-an-address\" (expected host:port, e.g. 127.0.0.1:4317)",
                "6:24: receivers.otlp.max_request_bytes: must be at least 1024",
                "7:22: receivers.otlp.request_timeout: invalid duration \"soon\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)",
            ]
        );
    }
}
