//! The work every receiver shares: decoded request in, classified batches queued,
//! an OTLP outcome out. Transport details (status codes, headers) stay in the receivers.

use crate::clock::now_unix_ns;
use crate::completion::Completions;
use crate::config::Config;
use crate::decode::{self, invalid_reason, lazy, ProstSpan};
use crate::experience::EventUse;
use crate::internal_events::{
    DataPointsReceived, DataPointsRefused, InternalEvent, InvalidSamplingThreshold, InvalidValue,
    InvalidVital, LogRecordsReceived, RequestRefused, SpanClamped, SpansNotRecorded, SpansReceived,
    SpansRefused,
};
use crate::journey::Journeys;
use crate::metric_requests::MetricRequests;
use crate::pipeline::{BatchBuilder, PipelineInput, SubmitError};
use crate::receiver::consumer::Consumer;
use crate::signals::Signals;
use crate::span::{key_bit, AttrKey, SpanView};
use crate::span_record::event as span_event;
use crate::telemetry::{Reason, Telemetry, Transport, POINT_REASONS};
use crate::value::Value;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::Arc;

pub use crate::receiver::consumer::{Accepted, Refused};

/// A span as the ingest loop sees it: readable by the rules, and checkable.
trait Incoming: SpanView {
    fn invalid(&self) -> Option<&'static str>;
}

impl Incoming for ProstSpan<'_> {
    fn invalid(&self) -> Option<&'static str> {
        invalid_reason(self.span)
    }
}

impl Incoming for lazy::LazySpan<'_, '_> {
    fn invalid(&self) -> Option<&'static str> {
        self.invalid_reason()
    }
}

/// The attribute through which rules and cohorts see the sender's tenant.
pub const TENANT_ATTRIBUTE: &str = "cerflow.tenant";
const TENANT_BIT: u64 = key_bit(TENANT_ATTRIBUTE);

/// A span plus the tenant of the token it was sent with.
struct Tenanted<'t, S> {
    inner: S,
    tenant: Option<&'t str>,
}

impl<S: SpanView> SpanView for Tenanted<'_, S> {
    fn service_name(&self) -> &str {
        self.inner.service_name()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> i32 {
        self.inner.kind()
    }
    fn status_code(&self) -> i32 {
        self.inner.status_code()
    }
    fn start_ns(&self) -> u64 {
        self.inner.start_ns()
    }
    fn end_ns(&self) -> u64 {
        self.inner.end_ns()
    }
    fn span_attr(&self, key: &str) -> Option<crate::span::AttrValue<'_>> {
        match self.tenant {
            Some(t) if key == TENANT_ATTRIBUTE => Some(crate::span::AttrValue::Str(t)),
            _ => self.inner.span_attr(key),
        }
    }
    fn resource_attr(&self, key: &str) -> Option<crate::span::AttrValue<'_>> {
        self.inner.resource_attr(key)
    }
    fn key_filter(&self) -> u64 {
        let tenant = if self.tenant.is_some() { TENANT_BIT } else { 0 };
        self.inner.key_filter() | tenant
    }
    fn span_attr_key(&self, key: &AttrKey) -> Option<crate::span::AttrValue<'_>> {
        match self.tenant {
            Some(t) if key.bit() == TENANT_BIT && key.as_str() == TENANT_ATTRIBUTE => {
                Some(crate::span::AttrValue::Str(t))
            }
            _ => self.inner.span_attr_key(key),
        }
    }
    fn resource_attr_key(&self, key: &AttrKey) -> Option<crate::span::AttrValue<'_>> {
        self.inner.resource_attr_key(key)
    }
    fn any_event(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
        self.inner.any_event(test)
    }
    fn event_name(&self) -> Option<&str> {
        self.inner.event_name()
    }
    fn trace_id(&self) -> &[u8] {
        self.inner.trace_id()
    }
    fn span_id(&self) -> &[u8] {
        self.inner.span_id()
    }
    fn parent_span_id(&self) -> &[u8] {
        self.inner.parent_span_id()
    }
    fn trace_state(&self) -> &str {
        self.inner.trace_state()
    }
}

impl<S: Incoming> Incoming for Tenanted<'_, S> {
    fn invalid(&self) -> Option<&'static str> {
        self.inner.invalid()
    }
}

pub struct Ingest {
    journeys: arc_swap::ArcSwap<Journeys>,
    input: Arc<PipelineInput>,
    pub tel: Arc<Telemetry>,
    /// Operational signals, fed by metric data points.
    pub signals: Signals,
    /// Request counts of the journeys with metric inputs, fed by metric data points.
    pub requests: MetricRequests,
    skew_ns: u64,
    longest_ns: u64,
    max_attrs: usize,
    max_spans: usize,
    /// Pending attempts of journeys with `completion`, shared by every receiver.
    pub completions: Arc<Completions>,
    /// Hashes web vital ids, the same in every receiver.
    id_hasher: ahash::RandomState,
    /// Trace assembly is on: every span also goes to the worker of its trace.
    traces: bool,
    dependency_keys: Vec<String>,
    /// Decode arenas, reset and reused rather than allocated per request.
    arenas: decode::arena::ArenaPool,
    /// The decoders' span and attribute lists, likewise.
    lists: decode::arena::ListPool,
}

impl Ingest {
    pub fn new(
        cfg: &Config,
        journeys: Arc<Journeys>,
        input: Arc<PipelineInput>,
        tel: Arc<Telemetry>,
    ) -> Ingest {
        Ingest {
            signals: Signals::new(cfg, &journeys, now_unix_ns()),
            requests: MetricRequests::new(cfg, &journeys, now_unix_ns(), input.admission()),
            journeys: arc_swap::ArcSwap::new(journeys),
            input,
            tel,
            skew_ns: cfg.windows.max_clock_skew.as_nanos() as u64,
            longest_ns: cfg.longest_window().as_nanos() as u64,
            max_attrs: cfg.receivers.max_attributes_per_span,
            max_spans: cfg.receivers.max_spans_per_request,
            completions: Arc::new(Completions::new(
                cfg.limits.max_pending_attempts,
                &cfg.windows.sizes,
                cfg.windows.sub_buckets,
            )),
            id_hasher: ahash::RandomState::with_seeds(3, 5, 7, 9),
            traces: cfg.traces.enabled,
            dependency_keys: cfg.dependencies.keys.clone(),
            arenas: Default::default(),
            lists: Default::default(),
        }
    }

    /// Swaps in the journeys of a reloaded config.
    /// A whole request refused before any span of it was read: counted and logged once.
    fn refuse(
        &self,
        t: Transport,
        reason: Reason,
        msg: String,
        answer: fn(String) -> Refused,
    ) -> Refused {
        RequestRefused {
            transport: t,
            reason,
            spans: 0,
            detail: &msg,
        }
        .emit(&self.tel);
        answer(msg)
    }

    /// A span or event that starts or completes an attempt of its journey.
    fn attempt(
        &self,
        journeys: &Journeys,
        id: crate::span_record::JourneyId,
        step: crate::journey::AttemptStep,
        at: u64,
        now: u64,
    ) {
        if let Some(j) = journeys.get(id) {
            self.completions.observe(&j.name, step, at, now, &self.tel);
        }
    }

    pub fn set_journeys(&self, journeys: Arc<Journeys>) {
        self.journeys.store(journeys);
    }

    pub fn traces_body(
        &self,
        body: &[u8],
        format: decode::Format,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        self.traces_body_from(body, format, t, None)
    }

    /// As [`Ingest::traces_body`], for a sender whose token names a tenant.
    pub fn traces_body_from(
        &self,
        body: &[u8],
        format: decode::Format,
        t: Transport,
        tenant: Option<&str>,
    ) -> Result<Accepted, Refused> {
        // Both formats are read in place: no per-span allocation, same outcome as prost.
        let arena = self.arenas.take();
        let mut lists = self.lists.take();
        let taken = std::mem::take(&mut lists.item);
        match decode::traces_lazy(body, format, &arena, taken, self.max_attrs, self.max_spans) {
            Ok(req) => {
                let result = self.process(
                    req.span_count() as u64,
                    req.spans().map(|inner| Tenanted { inner, tenant }),
                    t,
                );
                lists.item = req.into_lists();
                result
            }
            Err(decode::Refusal::TooManySpans) => {
                let msg = format!(
                    "the request holds more than {} spans (max_spans_per_request)",
                    self.max_spans
                );
                Err(self.refuse(t, Reason::TooLarge, msg, Refused::TooLarge))
            }
            Err(decode::Refusal::Malformed(msg)) => {
                Err(self.refuse(t, Reason::Malformed, msg, Refused::Malformed))
            }
        }
    }

    /// Processes a request decoded by prost (the reference decoders).
    pub fn traces(
        &self,
        req: &ExportTraceServiceRequest,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        self.traces_from(req, t, None)
    }

    fn traces_from(
        &self,
        req: &ExportTraceServiceRequest,
        t: Transport,
        tenant: Option<&str>,
    ) -> Result<Accepted, Refused> {
        let spans = req.resource_spans.iter().flat_map(|rs| {
            let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let service = decode::service_name(resource);
            rs.scope_spans
                .iter()
                .flat_map(|ss| &ss.spans)
                .map(move |span| Tenanted {
                    inner: ProstSpan {
                        resource,
                        service,
                        span,
                    },
                    tenant,
                })
        });
        self.process(decode::span_count(req), spans, t)
    }

    /// Processes a request decoded in place by [`lazy::decode_traces`].
    pub fn traces_lazy(
        &self,
        req: &lazy::TraceRequest<'_>,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        self.process(req.span_count() as u64, req.spans(), t)
    }

    fn process<S: Incoming>(
        &self,
        total: u64,
        spans: impl Iterator<Item = S>,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        SpansReceived {
            transport: t,
            spans: total,
        }
        .emit(&self.tel);
        if self.input.is_full() {
            // Refused before any span is classified: the sender retries the whole request,
            // and classifying it first would only spend the CPU the workers lack.
            RequestRefused {
                transport: t,
                reason: Reason::QueueFull,
                spans: total,
                detail: "pipeline queues are full",
            }
            .emit(&self.tel);
            return Err(Refused::Unavailable);
        }
        let now = now_unix_ns();
        // One load per request: a reload swaps the journeys between requests, never within one.
        let journeys = self.journeys.load();
        // A request's spans are bounded (max_spans_per_request), so is this.
        let expected = (total as usize).min(self.max_spans);
        let mut builder = BatchBuilder::with_capacity(self.input.workers(), expected, self.traces);
        builder.generation = journeys.generation;
        let mut rejected = 0u64;
        let mut first_problem: Option<String> = None;
        let mut unmatched = 0u64;
        let mut late = 0u64;
        // Attempts are observed only once the request is accepted: a refused request is
        // retried by its sender, and observing it twice would count its attempts twice.
        // Empty (no allocation) unless a journey has a `completion`.
        let mut attempts = Vec::new();
        for view in spans {
            if let Some(why) = view.invalid() {
                rejected += 1;
                if first_problem.is_none() {
                    first_problem = Some(format!("span \"{}\": {why}", view.name()));
                }
                continue;
            }
            let mut end = view.end_ns();
            if end > now {
                if end - now > self.skew_ns {
                    SpanClamped {
                        ahead_ns: end - now,
                    }
                    .emit(&self.tel);
                }
                end = now;
            }
            if now - end > self.longest_ns {
                late += 1;
                continue;
            }
            match journeys.classify(&view) {
                Some(c) => {
                    if let Some(step) = c.attempt {
                        attempts.push((c.journey, step, end));
                    }
                    if c.value == Value::Invalid {
                        if let Some(j) = journeys.get(c.journey) {
                            InvalidValue { journey: &j.name }.emit(&self.tel);
                        }
                    }
                    let weight = match crate::sampling::adjusted_count(view.trace_state()) {
                        Ok(Some(w)) => w,
                        Ok(None) => crate::sampling::UNIT,
                        // Unknown probability: the span counts as itself, as an unsampled one.
                        Err(_) => {
                            InvalidSamplingThreshold {
                                trace_state: view.trace_state(),
                            }
                            .emit(&self.tel);
                            crate::sampling::UNIT
                        }
                    };
                    builder.push(
                        &view,
                        &c,
                        journeys.missing_value(),
                        journeys.version_key(),
                        end,
                        weight,
                    );
                    if self.traces {
                        let failed = c.flags & crate::span_record::flag::ERROR != 0;
                        builder.push_trace(
                            &view,
                            Some((c.journey, failed)),
                            end,
                            &self.dependency_keys,
                        );
                    }
                }
                None => {
                    if self.traces {
                        builder.push_trace(&view, None, end, &self.dependency_keys);
                    }
                    unmatched += 1;
                    if view.is_entry_point() {
                        builder.push_unmatched_entry(end);
                    }
                }
            }
        }
        if rejected > 0 {
            let msg = first_problem.as_deref().unwrap_or_default();
            SpansRefused {
                transport: t,
                reason: Reason::InvalidSpan,
                spans: rejected,
                detail: msg,
            }
            .emit(&self.tel);
        }
        let queued = builder.span_count();
        match self.input.submit(&mut builder) {
            Ok(()) => {}
            Err(SubmitError::Full) => {
                RequestRefused {
                    transport: t,
                    reason: Reason::QueueFull,
                    spans: total - rejected,
                    detail: "pipeline queues are full",
                }
                .emit(&self.tel);
                return Err(Refused::Unavailable);
            }
            Err(SubmitError::Partial(lost)) => {
                SpansRefused {
                    transport: t,
                    reason: Reason::QueueFull,
                    spans: lost,
                    detail: "a pipeline queue filled while queueing",
                }
                .emit(&self.tel);
                rejected += lost;
                first_problem.get_or_insert_with(|| "pipeline queues are full".into());
            }
        }
        for (journey, step, at) in attempts {
            self.attempt(&journeys, journey, step, at, now);
        }
        debug_assert!(queued + unmatched + late + rejected >= total);
        SpansNotRecorded { unmatched, late }.emit(&self.tel);
        let message = match first_problem {
            Some(p) if rejected > 0 => format!("{rejected} of {total} spans rejected; first: {p}"),
            _ => String::new(),
        };
        Ok(Accepted { rejected, message })
    }

    pub fn metrics_body(
        &self,
        body: &[u8],
        format: decode::Format,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        match decode::metrics(body, format) {
            Ok(req) => Ok(self.metrics(&req)),
            Err(msg) => Err(self.refuse(t, Reason::Malformed, msg, Refused::Malformed)),
        }
    }

    /// Points that feed a signal or a journey's metric input are recorded; bad ones among
    /// them are refused (OTLP partial success), all others are counted and dropped.
    pub fn metrics(&self, req: &ExportMetricsServiceRequest) -> Accepted {
        let total = decode::data_point_count(req);
        DataPointsReceived { count: total }.emit(&self.tel);
        let now = now_unix_ns();
        let mut out = self.signals.process(req, now);
        self.requests.process(req, now, &mut out, &self.tel);
        let first = out.first.as_deref().unwrap_or_default();
        for r in POINT_REASONS {
            DataPointsRefused {
                reason: r,
                points: out.refused[r as usize],
                detail: first,
            }
            .emit(&self.tel);
        }
        // A point two inputs refuse is one point.
        let rejected = out.rejected().min(total);
        let message = if rejected > 0 {
            format!("{rejected} of {total} data points rejected; first: {first}")
        } else {
            String::new()
        };
        Accepted { rejected, message }
    }

    pub fn logs_body(
        &self,
        body: &[u8],
        format: decode::Format,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        match decode::logs(body, format) {
            Ok(req) => self.logs(&req, t),
            Err(msg) => Err(self.refuse(t, Reason::Malformed, msg, Refused::Malformed)),
        }
    }

    /// Log records are counted; those with an event name feed the journey that claims
    /// them (web vitals, frustrations), the others are dropped. A request whose events
    /// cannot be queued is refused as retryable, as for spans.
    pub fn logs(&self, req: &ExportLogsServiceRequest, t: Transport) -> Result<Accepted, Refused> {
        LogRecordsReceived {
            count: decode::log_record_count(req),
        }
        .emit(&self.tel);
        let now = now_unix_ns();
        let journeys = self.journeys.load();
        let mut builder: Option<BatchBuilder> = None;
        // Observed once the request is accepted (see the spans above).
        let mut attempts = Vec::new();
        for rl in &req.resource_logs {
            let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let service = decode::service_name(resource);
            for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                let Some(event) = decode::ProstEvent::of(resource, service, record) else {
                    continue;
                };
                // As for spans: the future is now, and what the windows forgot is late.
                let at = match event.time_ns() {
                    0 => now,
                    t => t.min(now),
                };
                if now - at > self.longest_ns {
                    continue;
                }
                let Some((c, used)) = journeys.classify_event(event.name, &event) else {
                    continue;
                };
                if let Some(step) = c.attempt {
                    attempts.push((c.journey, step, at));
                }
                let (code, value) = match used {
                    EventUse::Vital { vital, value, good } => {
                        let good = if good { span_event::GOOD } else { 0 };
                        (span_event::VITAL | good | vital as u16, value)
                    }
                    EventUse::Frustration(i) => (span_event::FRUSTRATION | i as u16, 0.0),
                    EventUse::Invalid(why) => {
                        if let Some(j) = journeys.get(c.journey) {
                            InvalidVital {
                                reason: why.as_str(),
                                index: why as usize,
                                journey: &j.name,
                            }
                            .emit(&self.tel);
                        }
                        continue;
                    }
                    EventUse::Nothing => continue,
                };
                let b = builder.get_or_insert_with(|| {
                    let mut b = BatchBuilder::new(self.input.workers());
                    b.generation = journeys.generation;
                    b
                });
                // Reports of one measurement share its id: the last one counts.
                let id = match event.span_attr("browser.web_vital.id") {
                    Some(crate::span::AttrValue::Str(s)) if code & span_event::VITAL != 0 => {
                        self.id_hasher.hash_one(s) | 1
                    }
                    _ => 0,
                };
                let missing = journeys.missing_value();
                b.push_event(&event, &c, code, value, id, missing, at);
            }
        }
        if let Some(mut b) = builder {
            if let Err(SubmitError::Full) = self.input.submit(&mut b) {
                RequestRefused {
                    transport: t,
                    reason: Reason::QueueFull,
                    spans: 0,
                    detail: "pipeline queues are full",
                }
                .emit(&self.tel);
                return Err(Refused::Unavailable);
            }
        }
        for (journey, step, at) in attempts {
            self.attempt(&journeys, journey, step, at, now);
        }
        Ok(Accepted::default())
    }
}

impl Consumer for Ingest {
    fn traces(
        &self,
        body: &[u8],
        format: decode::Format,
        t: Transport,
        tenant: Option<&str>,
    ) -> Result<Accepted, Refused> {
        self.traces_body_from(body, format, t, tenant)
    }
    fn metrics(
        &self,
        body: &[u8],
        format: decode::Format,
        t: Transport,
    ) -> Result<Accepted, Refused> {
        self.metrics_body(body, format, t)
    }
    fn logs(&self, body: &[u8], format: decode::Format, t: Transport) -> Result<Accepted, Refused> {
        self.logs_body(body, format, t)
    }
    fn spans_in(&self, body: &[u8], format: decode::Format) -> u64 {
        decode::traces(body, format).map_or(0, |r| decode::span_count(&r))
    }
    fn log_records_in(&self, body: &[u8], format: decode::Format) -> u64 {
        decode::logs(body, format).map_or(0, |r| decode::log_record_count(&r))
    }
    fn data_points_in(&self, body: &[u8], format: decode::Format) -> u64 {
        decode::metrics(body, format).map_or(0, |r| decode::data_point_count(&r))
    }
    fn telemetry(&self) -> &Telemetry {
        &self.tel
    }
}
