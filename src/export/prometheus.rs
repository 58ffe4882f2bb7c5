//! The Prometheus text exposition at `/metrics`, rendered from the latest snapshot.

use crate::duration::format_duration;
use crate::published::Shared;
use crate::snapshot::{SeriesSnap, QUANTILES};
use crate::telemetry::{AddRelaxed, Transport, EXPORT_DROPS, REASONS};
use std::fmt::Write;

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn fmt_f64(v: f64, out: &mut String) {
    // The text format spells the non-finite values this way; Rust's `{}` says `inf`.
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A metric name, its help text, and how to read its value.
type Column<T, V> = (&'static str, &'static str, fn(T) -> V);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `journey="...",cloud_region="..."`, without braces.
fn series_labels(s: &SeriesSnap, out: &mut String) {
    out.push_str("journey=\"");
    escape(&s.journey.name, out);
    out.push('"');
    if s.overflow {
        out.push_str(",otel_metric_overflow=\"true\"");
        return;
    }
    for (label, value) in s.journey.cohort_labels.iter().zip(s.cohort.iter()) {
        let _ = write!(out, ",{label}=\"");
        escape(value, out);
        out.push('"');
    }
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    fmt_f64(value, out);
    out.push('\n');
}

pub fn render(sh: &Shared) -> String {
    let snap = sh.snapshot.load();
    let mut out = String::with_capacity(4096 + snap.series.len() * 2048);
    let windows: Vec<String> = snap.windows.iter().map(|w| format_duration(*w)).collect();
    let labels: Vec<String> = snap
        .series
        .iter()
        .map(|s| {
            let mut l = String::new();
            series_labels(s, &mut l);
            l
        })
        .collect();

    let counters: [Column<&SeriesSnap, u64>; 4] = [
        (
            "cer_journey_requests_total",
            "Spans recorded for the journey since the series started.",
            |s| s.totals.requests,
        ),
        (
            "cer_journey_errors_total",
            "Spans classified as failed.",
            |s| s.totals.errors,
        ),
        (
            "cer_journey_slow_total",
            "Spans slower than the journey's latency threshold.",
            |s| s.totals.slow,
        ),
        (
            "cer_journey_incorrect_total",
            "Spans classified as incorrect.",
            |s| s.totals.incorrect,
        ),
    ];
    for (name, help, get) in counters {
        header(&mut out, name, "counter", help);
        for (s, l) in snap.series.iter().zip(&labels) {
            sample(&mut out, name, l, get(s) as f64);
        }
    }

    header(
        &mut out,
        "cer_journey_duration_seconds",
        "histogram",
        "Span duration of the journey.",
    );
    for (s, l) in snap.series.iter().zip(&labels) {
        let mut cumulative = 0u64;
        for (i, count) in s.buckets.iter().enumerate() {
            cumulative += count;
            let mut bl = String::with_capacity(l.len() + 16);
            bl.push_str(l);
            bl.push_str(",le=\"");
            match sh.histogram_bounds.get(i) {
                Some(b) => fmt_f64(*b, &mut bl),
                None => bl.push_str("+Inf"),
            }
            bl.push('"');
            sample(
                &mut out,
                "cer_journey_duration_seconds_bucket",
                &bl,
                cumulative as f64,
            );
        }
        sample(
            &mut out,
            "cer_journey_duration_seconds_sum",
            l,
            s.duration_sum_s,
        );
        sample(
            &mut out,
            "cer_journey_duration_seconds_count",
            l,
            s.totals.requests as f64,
        );
    }

    let ratios: [Column<&crate::sli::Sli, Option<f64>>; 3] = [
        (
            "cer_sli_availability_ratio",
            "Share of requests in the window that did not fail.",
            |s| s.availability,
        ),
        (
            "cer_sli_latency_ratio",
            "Share of requests in the window faster than the latency threshold.",
            |s| s.latency,
        ),
        (
            "cer_sli_correctness_ratio",
            "Share of requests in the window not marked incorrect.",
            |s| s.correctness,
        ),
    ];
    let slis = &snap.slis;
    for (name, help, get) in ratios {
        header(&mut out, name, "gauge", help);
        for (per_window, l) in slis.iter().zip(&labels) {
            for (sli, w) in per_window.iter().zip(&windows) {
                if let Some(v) = get(sli) {
                    sample(&mut out, name, &format!("{l},window=\"{w}\""), v);
                }
            }
        }
    }

    header(
        &mut out,
        "cer_journey_latency_seconds",
        "gauge",
        "Latency quantiles of the journey over the window.",
    );
    for (s, l) in snap.series.iter().zip(&labels) {
        for (ws, w) in s.windows.iter().zip(&windows) {
            for (q, v) in QUANTILES.iter().zip(&ws.quantiles_s) {
                if let Some(v) = v {
                    sample(
                        &mut out,
                        "cer_journey_latency_seconds",
                        &format!("{l},window=\"{w}\",quantile=\"{q}\""),
                        *v,
                    );
                }
            }
        }
    }

    header(
        &mut out,
        "cer_journey_requests_per_second",
        "gauge",
        "Requests over the window divided by its length.",
    );
    for (per_window, l) in slis.iter().zip(&labels) {
        for (sli, w) in per_window.iter().zip(&windows) {
            sample(
                &mut out,
                "cer_journey_requests_per_second",
                &format!("{l},window=\"{w}\""),
                sli.requests_per_second,
            );
        }
    }

    header(
        &mut out,
        "cer_telemetry_coverage_ratio",
        "gauge",
        "Share of entry-point spans that matched a journey.",
    );
    for (i, w) in windows.iter().enumerate() {
        if let Some(v) = snap.coverage_ratio(i) {
            sample(
                &mut out,
                "cer_telemetry_coverage_ratio",
                &format!("window=\"{w}\""),
                v,
            );
        }
    }

    header(
        &mut out,
        "cer_definition_info",
        "gauge",
        "The version string of the journey definitions in force.",
    );
    let mut vl = String::from("version=\"");
    escape(&sh.version.load(), &mut vl);
    vl.push('"');
    sample(&mut out, "cer_definition_info", &vl, 1.0);

    render_scores(sh, &mut out);
    render_self(sh, &mut out, snap.series.len(), snap.state_bytes);
    out
}

/// SLO and score series, from the evaluation of the same tick.
fn render_scores(sh: &Shared, out: &mut String) {
    let eval = sh.eval.load();
    let v = &eval.view;
    // `journey="..."` plus cohort labels, for each entry.
    let labels: Vec<String> = v
        .journeys
        .iter()
        .map(|j| {
            let mut l = String::from("journey=\"");
            escape(&j.journey, &mut l);
            l.push('"');
            for (k, val) in &j.cohort {
                let _ = write!(l, ",{k}=\"");
                escape(val, &mut l);
                l.push('"');
            }
            l
        })
        .collect();
    let journey_level = |i: usize| v.journeys[i].cohort.is_empty();

    header(
        out,
        "cer_slo_objective_ratio",
        "gauge",
        "The SLO objective of each journey's SLI.",
    );
    for (i, j) in v
        .journeys
        .iter()
        .enumerate()
        .filter(|(i, _)| journey_level(*i))
    {
        for (sli, o) in &j.objectives {
            sample(
                out,
                "cer_slo_objective_ratio",
                &format!("{},sli=\"{sli}\"", labels[i]),
                *o,
            );
        }
    }
    header(
        out,
        "cer_slo_error_budget_remaining_ratio",
        "gauge",
        "Share of the SLO period's error budget left: 1 untouched, 0 spent, negative overspent.",
    );
    for (i, j) in v.journeys.iter().enumerate() {
        for (sli, r) in &j.budget_remaining {
            sample(
                out,
                "cer_slo_error_budget_remaining_ratio",
                &format!("{},sli=\"{sli}\"", labels[i]),
                *r,
            );
        }
    }
    header(
        out,
        "cer_slo_burn_rate",
        "gauge",
        "How fast the error budget burns over the window; 1 spends it exactly in the period.",
    );
    for (i, j) in v.journeys.iter().enumerate() {
        for w in &eval.burn_windows {
            if let Some(m) = j.burn_rates.get(w) {
                for (sli, b) in m {
                    sample(
                        out,
                        "cer_slo_burn_rate",
                        &format!("{},sli=\"{sli}\",window=\"{w}\"", labels[i]),
                        *b,
                    );
                }
            }
        }
    }
    header(
        out,
        "cer_slo_alert_active",
        "gauge",
        "1 while a multi-window burn-rate alert is active.",
    );
    for (i, j) in v.journeys.iter().enumerate() {
        for sli in ["availability", "latency", "correctness"] {
            for sev in ["page", "ticket"] {
                let on = j.alerts.iter().any(|a| a.sli == sli && a.severity == sev);
                let l = format!("{},sli=\"{sli}\",severity=\"{sev}\"", labels[i]);
                sample(out, "cer_slo_alert_active", &l, if on { 1.0 } else { 0.0 });
            }
        }
    }
    header(
        out,
        "cer_journey_data_present",
        "gauge",
        "1 when the journey had requests in the window, else 0.",
    );
    for (i, j) in v
        .journeys
        .iter()
        .enumerate()
        .filter(|(i, _)| journey_level(*i))
    {
        for w in &j.windows {
            let present = if w.requests > 0 { 1.0 } else { 0.0 };
            sample(
                out,
                "cer_journey_data_present",
                &format!("{},window=\"{}\"", labels[i], w.window),
                present,
            );
        }
    }
    header(
        out,
        "cer_journey_score",
        "gauge",
        "Customer-experience reliability score of the journey over the window, 0 to 1.",
    );
    for (i, j) in v
        .journeys
        .iter()
        .enumerate()
        .filter(|(i, _)| journey_level(*i))
    {
        for w in &j.windows {
            if let Some(s) = w.score {
                sample(
                    out,
                    "cer_journey_score",
                    &format!("{},window=\"{}\"", labels[i], w.window),
                    s,
                );
            }
        }
    }
    header(
        out,
        "cer_cohort_score",
        "gauge",
        "Customer-experience reliability score of one cohort of a journey, 0 to 1.",
    );
    for (i, j) in v
        .journeys
        .iter()
        .enumerate()
        .filter(|(i, _)| !journey_level(*i))
    {
        for w in &j.windows {
            if let Some(s) = w.score {
                sample(
                    out,
                    "cer_cohort_score",
                    &format!("{},window=\"{}\"", labels[i], w.window),
                    s,
                );
            }
        }
    }
    header(
        out,
        "cer_score",
        "gauge",
        "Overall customer-experience reliability score, journeys weighted by business impact.",
    );
    for o in &v.overall {
        if let Some(s) = o.score {
            sample(out, "cer_score", &format!("window=\"{}\"", o.window), s);
        }
    }
}

fn render_self(sh: &Shared, out: &mut String, series: usize, state_bytes: usize) {
    let tel = &sh.tel;
    header(out, "cerflow_build_info", "gauge", "cerflow's version.");
    sample(
        out,
        "cerflow_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1.0,
    );
    header(
        out,
        "cerflow_received_spans_total",
        "counter",
        "Spans received in decodable requests.",
    );
    for t in [Transport::Grpc, Transport::Http] {
        sample(
            out,
            "cerflow_received_spans_total",
            &format!("transport=\"{}\"", t.as_str()),
            tel.received_spans(t) as f64,
        );
    }
    header(
        out,
        "cerflow_refused_spans_total",
        "counter",
        "Spans refused, by reason.",
    );
    for r in REASONS {
        sample(
            out,
            "cerflow_refused_spans_total",
            &format!("reason=\"{}\"", r.as_str()),
            tel.refused_spans(r) as f64,
        );
    }
    header(
        out,
        "cerflow_refused_requests_total",
        "counter",
        "Requests refused as a whole, by reason.",
    );
    for r in REASONS {
        sample(
            out,
            "cerflow_refused_requests_total",
            &format!("reason=\"{}\"", r.as_str()),
            tel.refused_requests(r) as f64,
        );
    }
    let plain: [(&str, &str, u64); 12] = [
        (
            "cerflow_processed_spans_total",
            "Spans through the pipeline: recorded, unmatched or late.",
            tel.processed_spans.get(),
        ),
        (
            "cerflow_unmatched_spans_total",
            "Spans no journey claimed.",
            tel.unmatched_spans.get(),
        ),
        (
            "cerflow_late_spans_total",
            "Spans that ended before the longest window and were not recorded.",
            tel.late_spans.get(),
        ),
        (
            "cerflow_clamped_spans_total",
            "Spans ending further in the future than max_clock_skew, recorded as ending now.",
            tel.clamped_spans.get(),
        ),
        (
            "cerflow_received_data_points_total",
            "Metric data points received.",
            tel.received_data_points.get(),
        ),
        (
            "cerflow_received_log_records_total",
            "Log records received (counted and dropped).",
            tel.received_log_records.get(),
        ),
        (
            "cerflow_series_expired_total",
            "Journey x cohort series dropped after series_ttl without data.",
            tel.series_expired.get(),
        ),
        (
            "cerflow_config_reloads_total",
            "Config reloads applied (SIGHUP or a change of the config file).",
            tel.config_reloads.get(),
        ),
        (
            "cerflow_config_reload_failures_total",
            "Config reloads refused because the new file was invalid; the old config kept running.",
            tel.config_reload_failures.get(),
        ),
        (
            "cerflow_cardinality_overflow_total",
            "Spans recorded into a journey's overflow series (cohort or memory limit reached).",
            tel.cardinality_overflow.get(),
        ),
        (
            "cerflow_otlp_exports_total",
            "OTLP metric pushes that succeeded.",
            tel.otlp_exports_ok.get(),
        ),
        (
            "cerflow_otlp_export_failures_total",
            "OTLP metric pushes that failed.",
            tel.otlp_exports_failed.get(),
        ),
    ];
    for (name, help, v) in plain {
        header(out, name, "counter", help);
        sample(out, name, "", v as f64);
    }
    header(
        out,
        "cerflow_otlp_export_retries_total",
        "counter",
        "OTLP push attempts made while backing off after a retryable failure.",
    );
    sample(
        out,
        "cerflow_otlp_export_retries_total",
        "",
        tel.otlp_export_retries.get() as f64,
    );
    header(
        out,
        "cerflow_otlp_export_dropped_total",
        "counter",
        "OTLP export requests given up on, by reason.",
    );
    for d in EXPORT_DROPS {
        sample(
            out,
            "cerflow_otlp_export_dropped_total",
            &format!("reason=\"{}\"", d.as_str()),
            tel.otlp_dropped(d) as f64,
        );
    }
    header(
        out,
        "cerflow_otlp_export_queue_depth",
        "gauge",
        "OTLP export requests waiting to be sent, the one being sent included.",
    );
    sample(
        out,
        "cerflow_otlp_export_queue_depth",
        "",
        tel.otlp_export_queue_depth.get() as f64,
    );
    header(
        out,
        "cerflow_queue_depth",
        "gauge",
        "Batches waiting in each worker's queue.",
    );
    for (i, d) in sh.input.queue_depths().iter().enumerate() {
        sample(
            out,
            "cerflow_queue_depth",
            &format!("worker=\"{i}\""),
            *d as f64,
        );
    }
    header(
        out,
        "cerflow_queue_capacity",
        "gauge",
        "Batches each worker's queue holds.",
    );
    sample(
        out,
        "cerflow_queue_capacity",
        "",
        sh.input.capacity() as f64,
    );
    header(
        out,
        "cerflow_series",
        "gauge",
        "Journey x cohort series held.",
    );
    sample(out, "cerflow_series", "", series as f64);
    header(
        out,
        "cerflow_auto_journeys",
        "gauge",
        "Journeys derived automatically from entry-point spans.",
    );
    sample(
        out,
        "cerflow_auto_journeys",
        "",
        sh.journeys.load().auto_count() as f64,
    );
    header(
        out,
        "cerflow_window_state_limit_bytes",
        "gauge",
        "limits.max_window_state_bytes.",
    );
    sample(
        out,
        "cerflow_window_state_limit_bytes",
        "",
        sh.state_limit_bytes as f64,
    );
    header(
        out,
        "cerflow_window_state_bytes",
        "gauge",
        "Heap bytes held by window state.",
    );
    sample(out, "cerflow_window_state_bytes", "", state_bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape("a\"b\\c\nd", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn non_finite_values_use_the_text_format_spelling() {
        let mut s = String::new();
        for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 2.0, 0.25] {
            fmt_f64(v, &mut s);
            s.push(' ');
        }
        assert_eq!(s, "+Inf -Inf NaN 2 0.25 ");
    }
}
