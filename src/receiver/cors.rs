//! CORS on the OTLP/HTTP receiver, so web pages on other origins can send their
//! telemetry (as the Collector's HTTP server `cors` settings do), and the origin
//! patterns public tokens are checked against.
//!
//! Only requests with an `Origin` header are concerned, and only when `cors` is
//! configured: servers, SDKs and Collectors send no `Origin` and see no difference, and
//! without `cors` no CORS header is ever sent. A request from an origin that is not
//! allowed (preflight or not) is refused with 403 and no `Access-Control-Allow-Origin`,
//! so the browser blocks it, and counted in `cerflow_refused_requests_total{reason="cors"}`.

use super::consumer::Consumer;
use crate::config::Cors;
use crate::internal_events::{InternalEvent, RequestRefused};
use crate::telemetry::{Reason, Transport};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Request headers a page may always send: the CORS-safelisted ones, as the Collector
/// allows them implicitly.
const SAFE_HEADERS: [&str; 4] = [
    "accept",
    "accept-language",
    "content-type",
    "content-language",
];

/// Origin patterns: exact origins, patterns with one `*`, or `*` for any.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    /// (before the `*`, after it); an exact origin has no `*` and an empty suffix.
    patterns: Vec<(String, Option<String>)>,
}

impl Origins {
    pub fn new(list: &[String]) -> Origins {
        let mut o = Origins::default();
        for p in list {
            if p == "*" {
                o.any = true;
            } else if let Some((pre, post)) = p.split_once('*') {
                o.patterns.push((pre.to_string(), Some(post.to_string())));
            } else {
                o.patterns.push((p.clone(), None));
            }
        }
        o
    }

    /// Whether `origin` (an `Origin` header value) is allowed; case does not matter.
    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.any {
            return true;
        }
        self.patterns.iter().any(|(pre, post)| match post {
            None => origin.eq_ignore_ascii_case(pre.as_bytes()),
            // The `*` stands for at least one character: `https://*.example.com` does
            // not allow `https://.example.com`.
            Some(post) => {
                origin.len() > pre.len() + post.len()
                    && origin[..pre.len()].eq_ignore_ascii_case(pre.as_bytes())
                    && origin[origin.len() - post.len()..].eq_ignore_ascii_case(post.as_bytes())
            }
        })
    }
}

/// The receiver's CORS policy and where its refusals are counted.
#[derive(Clone)]
pub struct CorsPolicy {
    origins: Origins,
    any_header: bool,
    headers: Vec<String>,
    max_age: Option<HeaderValue>,
    ingest: Arc<dyn Consumer>,
}

impl CorsPolicy {
    pub fn new(cfg: &Cors, ingest: Arc<dyn Consumer>) -> CorsPolicy {
        CorsPolicy {
            origins: Origins::new(&cfg.allowed_origins),
            any_header: cfg.allowed_headers.iter().any(|h| h == "*"),
            headers: SAFE_HEADERS
                .iter()
                .map(|h| h.to_string())
                .chain(cfg.allowed_headers.iter().cloned())
                .collect(),
            max_age: cfg.max_age.map(HeaderValue::from),
            ingest,
        }
    }

    fn header_allowed(&self, name: &str) -> bool {
        self.any_header || self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Refuses a request whose origin (or preflight) is not allowed: 403, counted and
    /// logged, and no CORS header, so the browser blocks the page from the answer.
    fn refuse(&self, why: String) -> Response {
        RequestRefused {
            transport: Transport::Http,
            reason: Reason::Cors,
            spans: 0,
            detail: &why,
        }
        .emit(self.ingest.telemetry());
        (
            StatusCode::FORBIDDEN,
            [
                (header::CONTENT_TYPE, "application/json"),
                // The body of a refused request is never read.
                (header::CONNECTION, "close"),
            ],
            serde_json::json!({ "code": 7, "message": why }).to_string(),
        )
            .into_response()
    }
}

/// The axum middleware: answers preflights, refuses origins that are not allowed and
/// marks the answers to allowed ones.
pub async fn cors(State(policy): State<Arc<CorsPolicy>>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    if !policy.origins.allows(origin.as_bytes()) {
        return policy.refuse(format!("origin \"{shown}\" is not in cors.allowed_origins"));
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let method = req.headers()[header::ACCESS_CONTROL_REQUEST_METHOD].as_bytes();
        if method != b"POST" {
            return policy.refuse(format!(
                "origin \"{shown}\" asked for method {}; the receiver takes POST only",
                String::from_utf8_lossy(method)
            ));
        }
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        if let Some(asked) = &asked {
            let text = asked.to_str().unwrap_or("");
            if let Some(bad) = text
                .split(',')
                .map(str::trim)
                .find(|h| !h.is_empty() && !policy.header_allowed(h))
            {
                return policy.refuse(format!(
                    "origin \"{shown}\" asked to send header \"{bad}\", not in cors.allowed_headers"
                ));
            }
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        if let Some(asked) = asked {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        }
        if let Some(age) = &policy.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        h.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        return r;
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    // A page reads how long to back off from a 429 or 503 only if it is exposed.
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_one_wildcard() {
        let o = Origins::new(&[
            "https://shop.example.com".into(),
            "https://*.example.org".into(),
            "http://127.0.0.1:*".into(),
        ]);
        assert!(o.allows(b"https://shop.example.com"));
        assert!(
            o.allows(b"HTTPS://Shop.Example.com"),
            "case does not matter"
        );
        assert!(!o.allows(b"https://shop.example.com.evil.net"));
        assert!(!o.allows(b"http://shop.example.com"), "the scheme counts");
        assert!(o.allows(b"https://a.b.example.org"));
        assert!(
            !o.allows(b"https://.example.org"),
            "* is at least one character"
        );
        assert!(!o.allows(b"https://example.org"));
        assert!(o.allows(b"http://127.0.0.1:8080"));
        assert!(!o.allows(b"http://127.0.0.2:8080"));
        assert!(Origins::new(&["*".into()]).allows(b"null"));
        assert!(!Origins::new(&[]).allows(b"https://shop.example.com"));
    }
}
