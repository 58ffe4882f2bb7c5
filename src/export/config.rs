//! The `exporters` section: the Prometheus listener and the OTLP push with its retry
//! policy, validated here beside the exporters.

use crate::config::decode::{join, Ctx};
use crate::config::listener::{listener, TlsFiles};
use crate::config::yaml::Node;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Exporters {
    pub prometheus: Option<SocketAddr>,
    pub prometheus_tls: Option<TlsFiles>,
    pub otlp: Option<OtlpExporter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExporter {
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Export requests held while the endpoint fails; past it the oldest is dropped.
    pub queue_size: usize,
    pub retry: OtlpRetry,
}

/// Exponential backoff with jitter for the OTLP exporter's retryable failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpRetry {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// A request older than this is dropped instead of retried.
    pub max_elapsed_time: Duration,
}

impl Default for OtlpRetry {
    fn default() -> Self {
        OtlpRetry {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

pub fn decode_exporters(ctx: &mut Ctx, node: &Node, out: &mut Exporters) {
    let Some(m) = ctx.map(node, "exporters", &["prometheus", "otlp"]) else {
        return;
    };
    if let Some(n) = m.get("prometheus") {
        (out.prometheus, out.prometheus_tls) = listener(ctx, n, "exporters.prometheus", &[]);
    }
    if let Some(n) = m.get("otlp") {
        let path = "exporters.otlp";
        let Some(o) = ctx.map(
            n,
            path,
            &["endpoint", "interval", "timeout", "queue_size", "retry"],
        ) else {
            return;
        };
        let endpoint = match o.get("endpoint") {
            Some(e) => ctx
                .non_empty_string(e, "exporters.otlp.endpoint")
                .and_then(|s| {
                    let url = if s.contains("://") {
                        s
                    } else {
                        format!("http://{s}")
                    };
                    if url.starts_with("http://") || url.starts_with("https://") {
                        Some(url)
                    } else {
                        ctx.error(
                            e.mark,
                            "exporters.otlp.endpoint",
                            format!("unsupported scheme in \"{url}\" (use http:// or https://)"),
                        );
                        None
                    }
                }),
            None => {
                ctx.error(o.mark, path, "missing required key \"endpoint\"");
                None
            }
        };
        let interval = o
            .get("interval")
            .and_then(|i| ctx.positive_duration(i, "exporters.otlp.interval"));
        let timeout = o
            .get("timeout")
            .and_then(|i| ctx.positive_duration(i, "exporters.otlp.timeout"));
        let mut queue_size = 16;
        if let Some(q) = o.get("queue_size") {
            match ctx.u64(q, "exporters.otlp.queue_size") {
                Some(v) if (1..=100_000).contains(&v) => queue_size = v as usize,
                Some(_) => ctx.error(
                    q.mark,
                    "exporters.otlp.queue_size",
                    "must be between 1 and 100000",
                ),
                None => {}
            }
        }
        let retry = o
            .get("retry")
            .map(|r| decode_otlp_retry(ctx, r))
            .unwrap_or_default();
        if let Some(endpoint) = endpoint {
            out.otlp = Some(OtlpExporter {
                endpoint,
                interval: interval.unwrap_or(Duration::from_secs(10)),
                timeout: timeout.unwrap_or(Duration::from_secs(5)),
                queue_size,
                retry,
            });
        }
    }
}

pub fn decode_otlp_retry(ctx: &mut Ctx, node: &Node) -> OtlpRetry {
    let path = "exporters.otlp.retry";
    let mut out = OtlpRetry::default();
    let Some(m) = ctx.map(
        node,
        path,
        &["initial_interval", "max_interval", "max_elapsed_time"],
    ) else {
        return out;
    };
    for (key, slot) in [
        ("initial_interval", &mut out.initial_interval),
        ("max_interval", &mut out.max_interval),
        ("max_elapsed_time", &mut out.max_elapsed_time),
    ] {
        if let Some(d) = m
            .get(key)
            .and_then(|n| ctx.positive_duration(n, &join(path, key)))
        {
            *slot = d;
        }
    }
    if out.max_interval < out.initial_interval {
        // Point at the key the user wrote: max_interval if given, else initial_interval.
        let key = if m.get("max_interval").is_some() {
            "max_interval"
        } else {
            "initial_interval"
        };
        ctx.error(
            m.get(key).map_or(m.mark, |n| n.mark),
            &join(path, key),
            format!(
                "max_interval ({}) must not be shorter than initial_interval ({})",
                crate::duration::format_duration(out.max_interval),
                crate::duration::format_duration(out.initial_interval)
            ),
        );
    }
    out
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        let o = cfg.exporters.otlp.as_ref().unwrap();
        assert_eq!(o.endpoint, "http://127.0.0.1:4317");
        assert_eq!(o.interval, Duration::from_secs(10));
        assert_eq!(o.retry.initial_interval, Duration::from_secs(2));
        assert_eq!(o.retry.max_interval, Duration::from_secs(20));
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "3:15: exporters.prometheus.endpoint: invalid endpoint \"nowhere\" (expected host:port, e.g. 127.0.0.1:4317)",
                "5:5: exporters.otlp: missing required key \"endpoint\"",
                "8:21: exporters.otlp.retry.max_interval: max_interval (10s) must not be shorter than initial_interval (1m)",
            ]
        );
    }
}
