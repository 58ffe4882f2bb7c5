//! The exposition at `/metrics`, rendered from the latest snapshot: the Prometheus
//! text format, or OpenMetrics 1.0 when the scraper asks for it (`Accept`), which adds
//! exemplars (the trace and span ids of example requests) to the journey histogram's
//! buckets and to the failed, slow and incorrect counters.

use crate::catalogue::{self, Metric};
use crate::duration::format_duration;
use crate::experience::{INVALID_EVENTS, VITALS};
use crate::published::Shared;
use crate::sampling;
use crate::sli::UserRow;
use crate::snapshot::{SeriesSnap, QUANTILES};
use crate::telemetry::{AddRelaxed, Transport, EVICTS, EXPORT_DROPS, POINT_REASONS, REASONS};
use crate::window::exemplars::{Exemplar, Exemplars};
use crate::window::VITAL_QUANTILES;
use std::fmt::Write;

/// The text format's content type.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics 1.0's content type.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// True when an `Accept` header prefers OpenMetrics to the text format: it lists
/// `application/openmetrics-text` with a quality above 0 and at least that of any
/// `text/plain` (Prometheus sends OpenMetrics at q=1 and text at q=0.5).
pub fn wants_openmetrics(accept: &str) -> bool {
    let (mut om, mut text) = (0.0f64, 0.0f64);
    for part in accept.split(',') {
        let mut params = part.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

/// The exposition being written, and in which format.
pub struct Out {
    text: String,
    openmetrics: bool,
}

impl std::ops::Deref for Out {
    type Target = String;
    fn deref(&self) -> &String {
        &self.text
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

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

fn header(out: &mut Out, m: &Metric) {
    let (mut name, help, kind) = (m.prom, m.help, m.kind.prom());
    if out.openmetrics && m.kind == crate::catalogue::Kind::Counter {
        // An OpenMetrics family is named without the `_total` of its counter sample.
        name = name.strip_suffix("_total").unwrap_or(name);
    }
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

fn sample(out: &mut Out, name: &str, labels: &str, value: f64) {
    sample_with(out, name, labels, value, None);
}

/// A counter with one `reason` label: its header, then a sample per reason in `reasons`'
/// order (every reason, at 0 too, so a rate over it never starts from nothing).
fn by_reason<R: Copy>(
    out: &mut Out,
    m: &Metric,
    reasons: &[R],
    name: impl Fn(R) -> &'static str,
    value: impl Fn(R) -> f64,
) {
    header(out, m);
    for &r in reasons {
        sample(out, m.prom, &format!("reason=\"{}\"", name(r)), value(r));
    }
}

/// A sample with an exemplar of `value`, written in OpenMetrics only (the text format
/// has no exemplars): ` # {trace_id="..",span_id=".."} value timestamp`.
fn sample_with(out: &mut Out, name: &str, labels: &str, value: f64, ex: Option<(&Exemplar, f64)>) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    fmt_f64(value, out);
    if let Some((e, v)) = ex.filter(|_| out.openmetrics) {
        let (trace, span) = (e.trace_hex(), e.span_hex());
        let _ = write!(out, " # {{trace_id=\"{trace}\",span_id=\"{span}\"}} ");
        fmt_f64(v, out);
        let (secs, nanos) = (e.end_ns / 1_000_000_000, e.end_ns % 1_000_000_000);
        let _ = write!(out, " {secs}.{nanos:09}");
    }
    out.push('\n');
}

pub fn render(sh: &Shared) -> String {
    render_as(sh, false)
}

/// The exposition in the text format, or in OpenMetrics 1.0 (with exemplars and `# EOF`).
pub fn render_as(sh: &Shared, openmetrics: bool) -> String {
    let snap = sh.snapshot.load();
    let mut out = Out {
        text: String::with_capacity(4096 + snap.series.len() * 2048),
        openmetrics,
    };
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

    // The bad-request counters carry their newest example request, counting 1.
    for ((m, get), kind) in super::REQUEST_COUNTERS {
        header(&mut out, m);
        let name = m.prom;
        for (s, l) in snap.series.iter().zip(&labels) {
            let ex = kind
                .zip(s.exemplars.as_deref())
                .and_then(|(k, x)| x.latest(k))
                .map(|e| (e, 1.0));
            sample_with(&mut out, name, l, sampling::to_requests(get(s)), ex);
        }
    }

    let duration = &catalogue::CER_JOURNEY_DURATION_SECONDS;
    header(&mut out, duration);
    let names = histogram_names(duration);
    for (s, l) in snap.series.iter().zip(&labels) {
        let (sum, n) = (s.duration_sum_s, s.totals.requests);
        histogram(
            &mut out,
            &names,
            l,
            &s.buckets,
            &sh.histogram_bounds,
            sum,
            (n, sampling::UNIT),
            s.exemplars.as_deref(),
        );
    }

    let slis = &snap.slis;
    for (m, get) in super::SLI_RATIOS {
        header(&mut out, m);
        let name = m.prom;
        for (per_window, l) in slis.iter().zip(&labels) {
            for (sli, w) in per_window.iter().zip(&windows) {
                if let Some(v) = get(sli) {
                    sample(&mut out, name, &format!("{l},window=\"{w}\""), v);
                }
            }
        }
    }

    render_operations(&snap, &windows, &mut out);

    header(&mut out, &catalogue::CER_JOURNEY_LATENCY_SECONDS);
    for (s, l) in snap.series.iter().zip(&labels) {
        for (ws, w) in s.windows.iter().zip(&windows) {
            for (q, v) in QUANTILES.iter().zip(&ws.quantiles_s) {
                if let Some(v) = v {
                    sample(
                        &mut out,
                        catalogue::CER_JOURNEY_LATENCY_SECONDS.prom,
                        &format!("{l},window=\"{w}\",quantile=\"{q}\""),
                        *v,
                    );
                }
            }
        }
    }

    header(&mut out, &catalogue::CER_JOURNEY_WEB_VITAL);
    for (s, l) in snap.series.iter().zip(&labels) {
        for (ws, w) in s.windows.iter().zip(&windows) {
            for (name, qs) in VITALS.iter().zip(&ws.vitals.quantiles) {
                for (q, v) in VITAL_QUANTILES.iter().zip(qs) {
                    if let Some(v) = v {
                        sample(
                            &mut out,
                            catalogue::CER_JOURNEY_WEB_VITAL.prom,
                            &format!("{l},window=\"{w}\",name=\"{name}\",quantile=\"{q}\""),
                            *v,
                        );
                    }
                }
            }
        }
    }

    header(&mut out, &catalogue::CER_JOURNEY_FRUSTRATIONS_TOTAL);
    for f in &snap.journey_frustrations {
        for (event, n) in f.journey.frustration_events.iter().zip(&f.frustrations) {
            let mut l = String::from("journey=\"");
            escape(&f.journey.name, &mut l);
            l.push_str("\",event=\"");
            escape(event, &mut l);
            l.push('"');
            sample(
                &mut out,
                catalogue::CER_JOURNEY_FRUSTRATIONS_TOTAL.prom,
                &l,
                *n as f64,
            );
        }
    }

    header(&mut out, &catalogue::CER_JOURNEY_ABANDONMENT_RATIO);
    for a in &snap.journey_attempts {
        let mut l = String::from("journey=\"");
        escape(&a.journey, &mut l);
        l.push('"');
        for (o, w) in a.windows.iter().zip(&windows) {
            if let Some(r) = o.abandonment_ratio() {
                sample(
                    &mut out,
                    catalogue::CER_JOURNEY_ABANDONMENT_RATIO.prom,
                    &format!("{l},window=\"{w}\""),
                    r,
                );
            }
        }
    }
    header(&mut out, &catalogue::CER_JOURNEY_ATTEMPTS_TOTAL);
    for a in &snap.journey_attempts {
        let mut l = String::from("journey=\"");
        escape(&a.journey, &mut l);
        l.push('"');
        for (outcome, n) in [
            ("completed", a.totals.completed),
            ("abandoned", a.totals.abandoned),
        ] {
            sample(
                &mut out,
                catalogue::CER_JOURNEY_ATTEMPTS_TOTAL.prom,
                &format!("{l},outcome=\"{outcome}\""),
                n as f64,
            );
        }
    }

    header(&mut out, &catalogue::CER_JOURNEY_REQUESTS_PER_SECOND);
    for (per_window, l) in slis.iter().zip(&labels) {
        for (sli, w) in per_window.iter().zip(&windows) {
            sample(
                &mut out,
                catalogue::CER_JOURNEY_REQUESTS_PER_SECOND.prom,
                &format!("{l},window=\"{w}\""),
                sli.requests_per_second,
            );
        }
    }

    // Series rows take their labels from `labels`; journey rows carry the journey only.
    let row_labels: Vec<String> = snap
        .user_rows()
        .map(|(row, _)| match row {
            UserRow::Series(_) => String::new(),
            UserRow::Journey(j) => {
                let mut l = String::from("journey=\"");
                escape(&j.name, &mut l);
                l.push('"');
                l
            }
        })
        .collect();
    for (m, get) in super::USER_GAUGES {
        header(&mut out, m);
        for (i, ((_, per_window), own)) in snap.user_rows().zip(&row_labels).enumerate() {
            let l = labels.get(i).unwrap_or(own);
            for (u, w) in per_window.iter().zip(&windows) {
                if let Some(v) = get(u) {
                    sample(&mut out, m.prom, &format!("{l},window=\"{w}\""), v);
                }
            }
        }
    }

    // Value at risk: only journeys with a value rule; `currency` only where one is set.
    let currency = |j: &crate::journey::JourneyInfo| {
        let mut l = String::new();
        if let Some(c) = j.value.as_ref().and_then(|v| v.currency.as_deref()) {
            l.push_str(",currency=\"");
            escape(c, &mut l);
            l.push('"');
        }
        l
    };
    for (m, get) in super::VALUE_COUNTERS {
        header(&mut out, m);
        for v in &snap.journey_values {
            let mut l = String::from("journey=\"");
            escape(&v.journey.name, &mut l);
            l.push('"');
            l.push_str(&currency(&v.journey));
            sample(&mut out, m.prom, &l, get(v));
        }
    }
    header(&mut out, &catalogue::CER_JOURNEY_VALUE_AT_RISK);
    for (s, l) in snap.series.iter().zip(&labels) {
        if s.journey.value.is_none() {
            continue;
        }
        let c = currency(&s.journey);
        for (ws, w) in s.windows.iter().zip(&windows) {
            sample(
                &mut out,
                catalogue::CER_JOURNEY_VALUE_AT_RISK.prom,
                &format!("{l},window=\"{w}\"{c}"),
                ws.value_at_risk,
            );
        }
    }

    render_dependencies(sh, &snap, &windows, &mut out);

    header(&mut out, &catalogue::CER_TELEMETRY_COVERAGE_RATIO);
    for (i, w) in windows.iter().enumerate() {
        if let Some(v) = snap.coverage_ratio(i) {
            sample(
                &mut out,
                catalogue::CER_TELEMETRY_COVERAGE_RATIO.prom,
                &format!("window=\"{w}\""),
                v,
            );
        }
    }

    header(&mut out, &catalogue::CER_JOURNEY_COVERAGE_RATIO);
    for c in &snap.journey_coverage {
        let mut jl = String::from("journey=\"");
        escape(&c.journey.name, &mut jl);
        jl.push('"');
        for (v, w) in c.windows.iter().zip(&windows) {
            if let Some(v) = v {
                sample(
                    &mut out,
                    catalogue::CER_JOURNEY_COVERAGE_RATIO.prom,
                    &format!("{jl},window=\"{w}\""),
                    *v,
                );
            }
        }
    }

    header(&mut out, &catalogue::CER_DEFINITION_INFO);
    let mut vl = String::from("version=\"");
    escape(&sh.version.load(), &mut vl);
    vl.push('"');
    sample(&mut out, catalogue::CER_DEFINITION_INFO.prom, &vl, 1.0);

    render_scores(sh, &mut out);
    render_incidents(sh, &mut out);
    render_deployments(sh, &mut out);
    render_self(sh, &mut out, snap.series.len(), snap.state_bytes);
    header(&mut out, &catalogue::CERFLOW_TRACE_BUFFER_BYTES);
    sample(
        &mut out,
        catalogue::CERFLOW_TRACE_BUFFER_BYTES.prom,
        "",
        snap.trace_bytes as f64,
    );
    if out.openmetrics {
        out.push_str("# EOF\n");
    }
    match &sh.instance_label {
        Some(instance) => with_instance(&out.text, instance),
        None => out.text,
    }
}

/// Kafka stage 2: every sample with a `journey` label gets `instance="..."` first, so
/// the owners' series of one journey never clash across instances (`sum by (journey)`
/// reads the whole picture); so does the telemetry coverage, which only the owner of
/// its partition exports. One pass over the finished text, once per scrape.
fn with_instance(text: &str, instance: &str) -> String {
    let mut label = String::from("instance=\"");
    escape(instance, &mut label);
    label.push_str("\",");
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        match line.find('{') {
            Some(i)
                if !line.starts_with('#')
                    && (line[i..].starts_with("{journey=\"")
                        || line.contains(",journey=\"")
                        || line[..i] == *catalogue::CER_TELEMETRY_COVERAGE_RATIO.prom) =>
            {
                out.push_str(&line[..=i]);
                out.push_str(&label);
                out.push_str(&line[i + 1..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// The `_bucket`, `_sum` and `_count` series names of a histogram.
fn histogram_names(m: &Metric) -> [String; 3] {
    ["bucket", "sum", "count"].map(|x| format!("{}_{x}", m.prom))
}

/// One histogram series: cumulative buckets up to `+Inf` (a bucket missing from `buckets`
/// counts 0), each with its slowest recent request as exemplar where one is kept, then
/// its sum and count. Buckets and count `n` are in `unit`s (the sampling unit for
/// requests, 1 for whole events), written as whole ones.
#[allow(clippy::too_many_arguments)]
fn histogram(
    out: &mut Out,
    [bucket, sum, count]: &[String; 3],
    l: &str,
    buckets: &[u64],
    bounds: &[f64],
    total: f64,
    (n, unit): (u64, u64),
    exemplars: Option<&Exemplars>,
) {
    let whole = |c: u64| c as f64 / unit as f64;
    let mut cumulative = 0u64;
    for i in 0..buckets.len().max(bounds.len() + 1) {
        cumulative = cumulative.saturating_add(buckets.get(i).copied().unwrap_or(0));
        let mut bl = String::with_capacity(l.len() + 16);
        bl.push_str(l);
        bl.push_str(",le=\"");
        match bounds.get(i) {
            Some(b) => fmt_f64(*b, &mut bl),
            None => bl.push_str("+Inf"),
        }
        bl.push('"');
        let ex = exemplars
            .and_then(|x| x.bucket(i))
            .map(|e| (e, e.duration_ns as f64 / 1e9));
        sample_with(out, bucket, &bl, whole(cumulative), ex);
    }
    sample(out, sum, l, total);
    sample(out, count, l, whole(n));
}

/// `journey="...",dependency="..."`; an overflow series has `otel_metric_overflow` instead
/// of a dependency, as a journey's overflow series has it instead of cohort labels.
fn dependency_labels(journey: &str, dependency: &str, overflow: bool) -> String {
    let mut l = String::from("journey=\"");
    escape(journey, &mut l);
    if overflow {
        l.push_str("\",otel_metric_overflow=\"true\"");
    } else {
        l.push_str("\",dependency=\"");
        escape(dependency, &mut l);
        l.push('"');
    }
    l
}

/// Journey x dependency series and the blame of failed requests, from assembled traces.
fn render_dependencies(
    sh: &Shared,
    snap: &crate::sli::Snapshot,
    windows: &[String],
    out: &mut Out,
) {
    let labels: Vec<String> = snap
        .dependencies
        .iter()
        .map(|d| dependency_labels(&d.journey.name, &d.name, d.overflow))
        .collect();
    for (m, errors) in [
        (&catalogue::CER_DEPENDENCY_REQUESTS_TOTAL, false),
        (&catalogue::CER_DEPENDENCY_ERRORS_TOTAL, true),
    ] {
        header(out, m);
        for (d, l) in snap.dependencies.iter().zip(&labels) {
            let v = if errors {
                d.totals.errors
            } else {
                d.totals.requests
            };
            sample(out, m.prom, l, sampling::to_requests(v));
        }
    }
    let duration = &catalogue::CER_DEPENDENCY_DURATION_SECONDS;
    header(out, duration);
    let names = histogram_names(duration);
    for (d, l) in snap.dependencies.iter().zip(&labels) {
        let (sum, n) = (d.duration_sum_s, d.totals.requests);
        histogram(
            out,
            &names,
            l,
            &d.buckets,
            &sh.histogram_bounds,
            sum,
            (n, sampling::UNIT),
            None,
        );
    }
    header(out, &catalogue::CER_DEPENDENCY_AVAILABILITY_RATIO);
    for (d, l) in snap.dependencies.iter().zip(&labels) {
        for (ws, w) in d.windows.iter().zip(windows) {
            if let Some(v) = ws.availability {
                sample(
                    out,
                    catalogue::CER_DEPENDENCY_AVAILABILITY_RATIO.prom,
                    &format!("{l},window=\"{w}\""),
                    v,
                );
            }
        }
    }
    header(out, &catalogue::CER_DEPENDENCY_LATENCY_SECONDS);
    for (d, l) in snap.dependencies.iter().zip(&labels) {
        for (ws, w) in d.windows.iter().zip(windows) {
            for (q, v) in QUANTILES.iter().zip(&ws.quantiles_s) {
                if let Some(v) = v {
                    sample(
                        out,
                        catalogue::CER_DEPENDENCY_LATENCY_SECONDS.prom,
                        &format!("{l},window=\"{w}\",quantile=\"{q}\""),
                        *v,
                    );
                }
            }
        }
    }
    header(out, &catalogue::CER_JOURNEY_FAILURES_ATTRIBUTED_TOTAL);
    for b in &snap.blame {
        sample(
            out,
            catalogue::CER_JOURNEY_FAILURES_ATTRIBUTED_TOTAL.prom,
            &dependency_labels(&b.journey.name, &b.dependency, b.overflow),
            b.total as f64,
        );
    }
}

/// Incident series, from the incident state of the same tick.
fn render_incidents(sh: &Shared, out: &mut Out) {
    let eval = sh.eval.load();
    let journey = |name: &str| {
        let mut l = String::from("journey=\"");
        escape(name, &mut l);
        l.push('"');
        l
    };
    header(out, &catalogue::CER_JOURNEY_INCIDENT_OPEN);
    for st in &eval.incident_stats {
        let v = if st.open { 1.0 } else { 0.0 };
        sample(
            out,
            catalogue::CER_JOURNEY_INCIDENT_OPEN.prom,
            &journey(&st.journey),
            v,
        );
    }
    header(out, &catalogue::CER_JOURNEY_INCIDENTS_TOTAL);
    for st in &eval.incident_stats {
        sample(
            out,
            catalogue::CER_JOURNEY_INCIDENTS_TOTAL.prom,
            &journey(&st.journey),
            st.total as f64,
        );
    }
    type Hist = fn(&crate::incidents::IncidentStats) -> (&[u64], f64, u64);
    let hists: [(&Metric, Hist); 2] = [
        (&catalogue::CER_JOURNEY_TIME_TO_RECOVERY_SECONDS, |st| {
            (&st.recovery_buckets, st.recovery_sum_s, st.recovery_count)
        }),
        (&catalogue::CER_JOURNEY_TIME_TO_DETECT_SECONDS, |st| {
            (&st.detect_buckets, st.detect_sum_s, st.detect_count)
        }),
    ];
    for (m, get) in hists {
        header(out, m);
        let names = histogram_names(m);
        for st in &eval.incident_stats {
            let l = journey(&st.journey);
            let (buckets, total, n) = get(st);
            let bounds = crate::incidents::RECOVERY_BUCKETS_S;
            // Incidents are whole events, not sampled requests.
            histogram(out, &names, &l, buckets, bounds, total, (n, 1), None);
        }
    }
}

/// Deployment series, from the deployment state of the same tick.
fn render_deployments(sh: &Shared, out: &mut Out) {
    let eval = sh.eval.load();
    let label = |out: &mut String, key: &str, value: &str| {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape(value, out);
        out.push('"');
    };
    header(out, &catalogue::CER_DEPLOYMENTS_TOTAL);
    for st in &eval.deployment_stats {
        for (result, n) in [("ok", st.ok), ("regressed", st.regressed)] {
            let mut l = String::new();
            label(&mut l, "journey", &st.journey);
            label(&mut l, "result", result);
            sample(out, catalogue::CER_DEPLOYMENTS_TOTAL.prom, &l, n as f64);
        }
    }
    header(out, &catalogue::CER_DEPLOYMENT_INFO);
    for d in &eval.deployments {
        let mut l = String::new();
        label(&mut l, "journey", &d.journey);
        label(&mut l, "version", &d.version);
        label(&mut l, "previous_version", &d.previous_version);
        label(&mut l, "result", d.result.as_str());
        sample(out, catalogue::CER_DEPLOYMENT_INFO.prom, &l, 1.0);
    }
}

/// The operations SLI and its signals, for the journeys with signals.
fn render_operations(snap: &crate::sli::Snapshot, windows: &[String], out: &mut Out) {
    let journey = |j: &crate::journey::JourneyInfo| {
        let mut l = String::from("journey=\"");
        escape(&j.name, &mut l);
        l.push('"');
        l
    };
    header(out, &catalogue::CER_SLI_OPERATIONS_RATIO);
    for ops in &snap.operations {
        let l = journey(&ops.journey);
        for (c, w) in ops.windows.iter().zip(windows) {
            if let Some(v) = c.ratio() {
                let name = catalogue::CER_SLI_OPERATIONS_RATIO.prom;
                sample(out, name, &format!("{l},window=\"{w}\""), v);
            }
        }
    }
    let with_signal = |l: &str, s: &crate::signals::SignalSnap| {
        let mut x = format!("{l},signal=\"");
        escape(&s.name, &mut x);
        x.push('"');
        x
    };
    header(out, &catalogue::CER_SIGNAL_VALUE);
    for ops in &snap.operations {
        let l = journey(&ops.journey);
        for s in &ops.signals {
            let ls = with_signal(&l, s);
            for (v, w) in s.last.iter().zip(windows) {
                if let Some(v) = v {
                    let name = catalogue::CER_SIGNAL_VALUE.prom;
                    sample(out, name, &format!("{ls},window=\"{w}\""), *v);
                }
            }
        }
    }
    header(out, &catalogue::CER_SIGNAL_OK);
    for ops in &snap.operations {
        let l = journey(&ops.journey);
        for s in &ops.signals {
            if let Some(ok) = s.ok {
                let v = if ok { 1.0 } else { 0.0 };
                sample(out, catalogue::CER_SIGNAL_OK.prom, &with_signal(&l, s), v);
            }
        }
    }
}

/// SLO and score series, from the evaluation of the same tick.
fn render_scores(sh: &Shared, out: &mut Out) {
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

    header(out, &catalogue::CER_SLO_OBJECTIVE_RATIO);
    for (i, j) in v
        .journeys
        .iter()
        .enumerate()
        .filter(|(i, _)| journey_level(*i))
    {
        for (sli, o) in &j.objectives {
            sample(
                out,
                catalogue::CER_SLO_OBJECTIVE_RATIO.prom,
                &format!("{},sli=\"{sli}\"", labels[i]),
                *o,
            );
        }
    }
    header(out, &catalogue::CER_SLO_ERROR_BUDGET_REMAINING_RATIO);
    for (i, j) in v.journeys.iter().enumerate() {
        for (sli, r) in &j.budget_remaining {
            sample(
                out,
                catalogue::CER_SLO_ERROR_BUDGET_REMAINING_RATIO.prom,
                &format!("{},sli=\"{sli}\"", labels[i]),
                *r,
            );
        }
    }
    header(out, &catalogue::CER_SLO_VALUE_LOST);
    for (i, j) in v.journeys.iter().enumerate() {
        if let Some(lost) = j.value_lost_period {
            let mut l = labels[i].clone();
            if let Some(c) = &j.currency {
                l.push_str(",currency=\"");
                escape(c, &mut l);
                l.push('"');
            }
            sample(out, catalogue::CER_SLO_VALUE_LOST.prom, &l, lost);
        }
    }
    header(out, &catalogue::CER_SLO_BURN_RATE);
    for (i, j) in v.journeys.iter().enumerate() {
        for w in &eval.burn_windows {
            if let Some(m) = j.burn_rates.get(w) {
                for (sli, b) in m {
                    sample(
                        out,
                        catalogue::CER_SLO_BURN_RATE.prom,
                        &format!("{},sli=\"{sli}\",window=\"{w}\"", labels[i]),
                        *b,
                    );
                }
            }
        }
    }
    header(out, &catalogue::CER_SLO_ALERT_ACTIVE);
    for (i, j) in v.journeys.iter().enumerate() {
        // Operations only where the journey has it (its budget is listed).
        let ops = j.budget_remaining.contains_key("operations");
        let slis = crate::config::SLIS.map(crate::config::SliKind::as_str);
        for sli in slis.into_iter().filter(|s| *s != "operations" || ops) {
            for sev in ["page", "ticket"] {
                let on = j.alerts.iter().any(|a| a.sli == sli && a.severity == sev);
                let l = format!("{},sli=\"{sli}\",severity=\"{sev}\"", labels[i]);
                sample(
                    out,
                    catalogue::CER_SLO_ALERT_ACTIVE.prom,
                    &l,
                    if on { 1.0 } else { 0.0 },
                );
            }
        }
    }
    header(out, &catalogue::CER_JOURNEY_DATA_PRESENT);
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
                catalogue::CER_JOURNEY_DATA_PRESENT.prom,
                &format!("{},window=\"{}\"", labels[i], w.window),
                present,
            );
        }
    }
    header(out, &catalogue::CER_JOURNEY_SCORE);
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
                    catalogue::CER_JOURNEY_SCORE.prom,
                    &format!("{},window=\"{}\"", labels[i], w.window),
                    s,
                );
            }
        }
    }
    header(out, &catalogue::CER_COHORT_SCORE);
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
                    catalogue::CER_COHORT_SCORE.prom,
                    &format!("{},window=\"{}\"", labels[i], w.window),
                    s,
                );
            }
        }
    }
    header(out, &catalogue::CER_SCORE);
    for o in &v.overall {
        if let Some(s) = o.score {
            sample(
                out,
                catalogue::CER_SCORE.prom,
                &format!("window=\"{}\"", o.window),
                s,
            );
        }
    }
}

/// Each worker queue's depth in batches and its heap bytes (the two bounds a request
/// is refused at).
fn render_queues(input: &crate::pipeline::PipelineInput, out: &mut Out) {
    header(out, &catalogue::CERFLOW_QUEUE_DEPTH);
    for (i, d) in input.queue_depths().iter().enumerate() {
        sample(
            out,
            catalogue::CERFLOW_QUEUE_DEPTH.prom,
            &format!("worker=\"{i}\""),
            *d as f64,
        );
    }
    header(out, &catalogue::CERFLOW_QUEUE_BYTES);
    for (i, b) in input.queue_bytes().iter().enumerate() {
        sample(
            out,
            catalogue::CERFLOW_QUEUE_BYTES.prom,
            &format!("worker=\"{i}\""),
            *b as f64,
        );
    }
}

fn render_self(sh: &Shared, out: &mut Out, series: usize, state_bytes: usize) {
    let tel = &sh.tel;
    header(out, &catalogue::CERFLOW_BUILD_INFO);
    sample(
        out,
        catalogue::CERFLOW_BUILD_INFO.prom,
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1.0,
    );
    header(out, &catalogue::CERFLOW_RECEIVED_SPANS_TOTAL);
    let kafka = tel.kafka.enabled.load(std::sync::atomic::Ordering::Relaxed);
    // The kafka transport shows only where it can be non-zero, so the single-process
    // exposition stays as it was.
    let transports: &[Transport] = if kafka {
        &[Transport::Grpc, Transport::Http, Transport::Kafka]
    } else {
        &[Transport::Grpc, Transport::Http]
    };
    for &t in transports {
        sample(
            out,
            catalogue::CERFLOW_RECEIVED_SPANS_TOTAL.prom,
            &format!("transport=\"{}\"", t.as_str()),
            tel.received_spans(t) as f64,
        );
    }
    header(out, &catalogue::CERFLOW_KAFKA_CONNECTED);
    header(out, &catalogue::CERFLOW_KAFKA_PARTITIONS);
    header(out, &catalogue::CERFLOW_KAFKA_ERRORS_TOTAL);
    if kafka {
        let k = &tel.kafka;
        let connected = k.connected.load(std::sync::atomic::Ordering::Relaxed);
        sample(
            out,
            catalogue::CERFLOW_KAFKA_CONNECTED.prom,
            "",
            f64::from(u8::from(connected)),
        );
        sample(
            out,
            catalogue::CERFLOW_KAFKA_PARTITIONS.prom,
            "",
            k.partitions_assigned.get() as f64,
        );
        sample(
            out,
            catalogue::CERFLOW_KAFKA_ERRORS_TOTAL.prom,
            "",
            k.errors_reported.get() as f64,
        );
    }
    header(out, &catalogue::CERFLOW_KAFKA_AGGREGATES_PUBLISHED_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_TRANSACTIONS_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_PARTIALS_TOO_LARGE_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_OWNED_PARTITIONS);
    header(out, &catalogue::CERFLOW_KAFKA_PARTIALS_TOTAL);
    header(
        out,
        &catalogue::CERFLOW_KAFKA_PARTIAL_SUB_BUCKETS_DROPPED_TOTAL,
    );
    header(out, &catalogue::CERFLOW_KAFKA_JOURNEYS_NOT_ADOPTED_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_JOURNEYS_HANDED_OVER_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_CHANGELOG_RECORDS_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_STATE_REFUSED_TOTAL);
    header(out, &catalogue::CERFLOW_KAFKA_SNAPSHOTS);
    header(out, &catalogue::CERFLOW_KAFKA_SNAPSHOTS_DROPPED_TOTAL);
    if tel
        .kafka
        .aggregates
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        let k = &tel.kafka;
        sample(
            out,
            catalogue::CERFLOW_KAFKA_AGGREGATES_PUBLISHED_TOTAL.prom,
            "",
            k.aggregates_published.get() as f64,
        );
        for (outcome, n) in [
            ("committed", &k.transactions_committed),
            ("aborted", &k.transactions_aborted),
        ] {
            sample(
                out,
                catalogue::CERFLOW_KAFKA_TRANSACTIONS_TOTAL.prom,
                &format!("outcome=\"{outcome}\""),
                n.get() as f64,
            );
        }
        sample(
            out,
            catalogue::CERFLOW_KAFKA_PARTIALS_TOO_LARGE_TOTAL.prom,
            "",
            k.partials_too_large.get() as f64,
        );
        sample(
            out,
            catalogue::CERFLOW_KAFKA_OWNED_PARTITIONS.prom,
            "",
            k.owned_partitions.get() as f64,
        );
        for (outcome, n) in [
            ("merged", &k.partials_merged),
            ("refused", &k.partials_refused),
        ] {
            sample(
                out,
                catalogue::CERFLOW_KAFKA_PARTIALS_TOTAL.prom,
                &format!("outcome=\"{outcome}\""),
                n.get() as f64,
            );
        }
        sample(
            out,
            catalogue::CERFLOW_KAFKA_PARTIAL_SUB_BUCKETS_DROPPED_TOTAL.prom,
            "",
            k.partial_sub_buckets_dropped.get() as f64,
        );
        sample(
            out,
            catalogue::CERFLOW_KAFKA_JOURNEYS_NOT_ADOPTED_TOTAL.prom,
            "",
            k.journeys_not_adopted.get() as f64,
        );
        sample(
            out,
            catalogue::CERFLOW_KAFKA_JOURNEYS_HANDED_OVER_TOTAL.prom,
            "",
            k.journeys_handed_over.get() as f64,
        );
        sample(
            out,
            catalogue::CERFLOW_KAFKA_CHANGELOG_RECORDS_TOTAL.prom,
            "",
            k.changelog_written.get() as f64,
        );
        for r in crate::internal_events::STATE_REFUSALS {
            sample(
                out,
                catalogue::CERFLOW_KAFKA_STATE_REFUSED_TOTAL.prom,
                &format!("reason=\"{}\"", r.as_str()),
                k.state_refused[r as usize].get() as f64,
            );
        }
        sample(
            out,
            catalogue::CERFLOW_KAFKA_SNAPSHOTS.prom,
            "",
            k.snapshots_held.get() as f64,
        );
        for d in crate::internal_events::SNAPSHOT_DROPS {
            sample(
                out,
                catalogue::CERFLOW_KAFKA_SNAPSHOTS_DROPPED_TOTAL.prom,
                &format!("reason=\"{}\"", d.as_str()),
                k.snapshots_dropped[d as usize].get() as f64,
            );
        }
    }
    by_reason(
        out,
        &catalogue::CERFLOW_REFUSED_SPANS_TOTAL,
        &REASONS,
        |r| r.as_str(),
        |r| tel.refused_spans(r) as f64,
    );
    by_reason(
        out,
        &catalogue::CERFLOW_REFUSED_REQUESTS_TOTAL,
        &REASONS,
        |r| r.as_str(),
        |r| tel.refused_requests(r) as f64,
    );
    by_reason(
        out,
        &catalogue::CERFLOW_REFUSED_DATA_POINTS_TOTAL,
        &POINT_REASONS,
        |r| r.as_str(),
        |r| tel.refused_data_points(r) as f64,
    );
    header(out, &catalogue::CERFLOW_INVALID_EVENTS_TOTAL);
    for (r, c) in INVALID_EVENTS.iter().zip(&tel.invalid_events) {
        sample(
            out,
            catalogue::CERFLOW_INVALID_EVENTS_TOTAL.prom,
            &format!("reason=\"{}\"", r.as_str()),
            c.get() as f64,
        );
    }
    let plain: [(&Metric, u64); 17] = [
        (
            &catalogue::CERFLOW_VITAL_IDS_OVERFLOW_TOTAL,
            tel.vital_ids_overflow.get(),
        ),
        (
            &catalogue::CERFLOW_ATTEMPTS_OVERFLOW_TOTAL,
            tel.attempts_overflow.get(),
        ),
        (
            &catalogue::CERFLOW_PROCESSED_SPANS_TOTAL,
            tel.processed_spans.get(),
        ),
        (
            &catalogue::CERFLOW_UNMATCHED_SPANS_TOTAL,
            tel.unmatched_spans.get(),
        ),
        (&catalogue::CERFLOW_LATE_SPANS_TOTAL, tel.late_spans.get()),
        (
            &catalogue::CERFLOW_CLAMPED_SPANS_TOTAL,
            tel.clamped_spans.get(),
        ),
        (
            &catalogue::CERFLOW_INVALID_SAMPLING_THRESHOLDS_TOTAL,
            tel.invalid_sampling_thresholds.get(),
        ),
        (
            &catalogue::CERFLOW_RECEIVED_DATA_POINTS_TOTAL,
            tel.received_data_points.get(),
        ),
        (
            &catalogue::CERFLOW_RECEIVED_LOG_RECORDS_TOTAL,
            tel.received_log_records.get(),
        ),
        (
            &catalogue::CERFLOW_PUBLIC_CLIENTS_OVERFLOW_TOTAL,
            tel.public_clients_overflow.get(),
        ),
        (
            &catalogue::CERFLOW_SERIES_EXPIRED_TOTAL,
            tel.series_expired.get(),
        ),
        (
            &catalogue::CERFLOW_SNAPSHOTS_INCOMPLETE_TOTAL,
            tel.snapshots_incomplete.get(),
        ),
        (
            &catalogue::CERFLOW_CONFIG_RELOADS_TOTAL,
            tel.config_reloads.get(),
        ),
        (
            &catalogue::CERFLOW_CONFIG_RELOAD_FAILURES_TOTAL,
            tel.config_reload_failures.get(),
        ),
        (
            &catalogue::CERFLOW_CARDINALITY_OVERFLOW_TOTAL,
            tel.cardinality_overflow.get(),
        ),
        (
            &catalogue::CERFLOW_OTLP_EXPORTS_TOTAL,
            tel.otlp_exports_ok.get(),
        ),
        (
            &catalogue::CERFLOW_OTLP_EXPORT_FAILURES_TOTAL,
            tel.otlp_exports_failed.get(),
        ),
    ];
    for (m, v) in plain {
        header(out, m);
        sample(out, m.prom, "", v as f64);
    }
    by_reason(
        out,
        &catalogue::CERFLOW_TRACES_EVICTED_TOTAL,
        &EVICTS,
        |e| e.as_str(),
        |e| tel.traces_evicted[e as usize].get() as f64,
    );
    header(out, &catalogue::CERFLOW_ORPHAN_SPANS_TOTAL);
    sample(
        out,
        catalogue::CERFLOW_ORPHAN_SPANS_TOTAL.prom,
        "",
        tel.orphan_spans.get() as f64,
    );
    header(out, &catalogue::CERFLOW_DEPLOYMENT_VERSIONS_EVICTED_TOTAL);
    sample(
        out,
        catalogue::CERFLOW_DEPLOYMENT_VERSIONS_EVICTED_TOTAL.prom,
        "",
        tel.deployment_versions_evicted.get() as f64,
    );
    header(
        out,
        &catalogue::CERFLOW_DEPLOYMENT_VERSION_REQUESTS_LOST_TOTAL,
    );
    sample(
        out,
        catalogue::CERFLOW_DEPLOYMENT_VERSION_REQUESTS_LOST_TOTAL.prom,
        "",
        crate::sampling::to_requests(tel.deployment_version_requests_lost.get()),
    );
    header(out, &catalogue::CERFLOW_INVALID_VALUES_TOTAL);
    for (journey, n) in tel.invalid_values() {
        let mut l = String::from("journey=\"");
        escape(&journey, &mut l);
        l.push('"');
        sample(
            out,
            catalogue::CERFLOW_INVALID_VALUES_TOTAL.prom,
            &l,
            n as f64,
        );
    }
    header(out, &catalogue::CERFLOW_OTLP_EXPORT_RETRIES_TOTAL);
    sample(
        out,
        catalogue::CERFLOW_OTLP_EXPORT_RETRIES_TOTAL.prom,
        "",
        tel.otlp_export_retries.get() as f64,
    );
    by_reason(
        out,
        &catalogue::CERFLOW_OTLP_EXPORT_DROPPED_TOTAL,
        &EXPORT_DROPS,
        |d| d.as_str(),
        |d| tel.otlp_dropped(d) as f64,
    );
    header(out, &catalogue::CERFLOW_OTLP_EXPORT_QUEUE_DEPTH);
    sample(
        out,
        catalogue::CERFLOW_OTLP_EXPORT_QUEUE_DEPTH.prom,
        "",
        tel.otlp_export_queue_depth.get() as f64,
    );
    render_queues(&sh.input, out);
    header(out, &catalogue::CERFLOW_QUEUE_CAPACITY);
    sample(
        out,
        catalogue::CERFLOW_QUEUE_CAPACITY.prom,
        "",
        sh.input.capacity() as f64,
    );
    header(out, &catalogue::CERFLOW_SERIES);
    sample(out, catalogue::CERFLOW_SERIES.prom, "", series as f64);
    header(out, &catalogue::CERFLOW_AUTO_JOURNEYS);
    sample(
        out,
        catalogue::CERFLOW_AUTO_JOURNEYS.prom,
        "",
        sh.journeys.load().auto_count() as f64,
    );
    header(out, &catalogue::CERFLOW_WINDOW_STATE_LIMIT_BYTES);
    sample(
        out,
        catalogue::CERFLOW_WINDOW_STATE_LIMIT_BYTES.prom,
        "",
        sh.state_limit_bytes as f64,
    );
    header(out, &catalogue::CERFLOW_WINDOW_STATE_BYTES);
    sample(
        out,
        catalogue::CERFLOW_WINDOW_STATE_BYTES.prom,
        "",
        state_bytes as f64,
    );
    header(out, &catalogue::CERFLOW_UI_REFUSED_TOTAL);
    for r in crate::telemetry::UI_REFUSALS {
        sample(
            out,
            catalogue::CERFLOW_UI_REFUSED_TOTAL.prom,
            &format!("reason=\"{}\"", r.as_str()),
            tel.ui_refused[r as usize].get() as f64,
        );
    }
    header(out, &catalogue::CERFLOW_UI_STREAM_CLIENTS);
    sample(
        out,
        catalogue::CERFLOW_UI_STREAM_CLIENTS.prom,
        "",
        tel.ui_stream_clients.get() as f64,
    );
    let history_bytes = sh
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .heap_bytes();
    header(out, &catalogue::CERFLOW_UI_HISTORY_BYTES);
    sample(
        out,
        catalogue::CERFLOW_UI_HISTORY_BYTES.prom,
        "",
        history_bytes as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_chosen_only_when_the_accept_header_prefers_it() {
        // What Prometheus 2.42 sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prom));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics(
            "text/plain, application/openmetrics-text;q=0.5"
        ));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        assert!(wants_openmetrics(
            "Application/OpenMetrics-Text; version=1.0.0"
        ));
    }

    #[test]
    fn each_worker_queue_shows_its_batches_and_their_heap_bytes() {
        use crate::pipeline::{BatchBuilder, PipelineInput};
        let (input, _queues) = PipelineInput::unread(2, 1 << 20);
        // A request for worker 1 only: 5,000 unmatched entry times, 8 bytes each.
        let request = |entries: usize| {
            let mut b = BatchBuilder::new(2);
            b.batches[1].unmatched_entry = Vec::with_capacity(entries);
            b.batches[1].unmatched_entry.push(1);
            b
        };
        assert!(input.submit(&mut request(5_000)).is_ok());
        assert!(input.submit(&mut request(1_000)).is_ok());
        let mut out = Out {
            text: String::new(),
            openmetrics: false,
        };
        render_queues(&input, &mut out);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        // Worker 1 holds 2 batches of 5,000 x 8 + 1,000 x 8 = 40,000 + 8,000 = 48,000
        // bytes; worker 0 nothing.
        assert_eq!(
            samples,
            [
                "cerflow_queue_depth{worker=\"0\"} 0",
                "cerflow_queue_depth{worker=\"1\"} 2",
                "cerflow_queue_bytes{worker=\"0\"} 0",
                "cerflow_queue_bytes{worker=\"1\"} 48000",
            ]
        );
    }

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

    /// Stage 2: journey samples and the telemetry coverage (its owner's alone) are named
    /// by instance; other samples, and metadata lines, are not.
    #[test]
    fn the_instance_label_goes_on_journey_samples_and_the_coverage() {
        let text = "# TYPE cer_telemetry_coverage_ratio gauge\n\
                    cer_telemetry_coverage_ratio{window=\"5m\"} 0.75\n\
                    cer_journey_requests_total{journey=\"a\"} 3\n\
                    cer_sli_availability_ratio{window=\"5m\",journey=\"a\"} 1\n\
                    cerflow_processed_spans_total 4\n\
                    cer_definition_info{version=\"v\"} 1\n";
        assert_eq!(
            with_instance(text, "i\"1"),
            "# TYPE cer_telemetry_coverage_ratio gauge\n\
             cer_telemetry_coverage_ratio{instance=\"i\\\"1\",window=\"5m\"} 0.75\n\
             cer_journey_requests_total{instance=\"i\\\"1\",journey=\"a\"} 3\n\
             cer_sli_availability_ratio{instance=\"i\\\"1\",window=\"5m\",journey=\"a\"} 1\n\
             cerflow_processed_spans_total 4\n\
             cer_definition_info{version=\"v\"} 1\n"
        );
    }
}
