//! The live web view, served on the metrics port (so with its TLS):
//!
//! - `/`: the overall score per window with its trend over the last hour, and the
//!   journeys sorted by error budget remaining, worst first, with their open incidents;
//! - `/journey?name=..`: one journey: every window, its cohorts worst first, its error
//!   budget over the SLO period and its burn rates over the last hour, its dependencies
//!   and what its failures are blamed on, its incidents and deployments;
//! - `/ui/app.js`, `/ui/style.css`: the page's code, embedded in the binary;
//! - `/api/v1/stream[?journey=..]`: server-sent events, one `snapshot` event with the
//!   document the page renders at connection and after every evaluation;
//! - `/api/v1/ui[?journey=..]`: the same document once, as JSON.
//!
//! It only formats: the figures are what the deriver published ([`Shared::eval`]) and
//! the trend is the deriver's history ring ([`Shared::history`]). The overview document
//! is formatted once per evaluation and shared by every stream. Streams are bounded by
//! `ui.max_stream_clients`; refusals and failed authentication are counted.

pub mod config;

use crate::internal_events::{InternalEvent, UiRequestRefused};
use crate::published::Shared;
use crate::score::{Evaluation, JourneyView};
use crate::telemetry::UiRefusal;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use config::{Ui, UiAuth};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Cohort rows the overview carries for its cohort filter; the worst are kept.
pub const MAX_OVERVIEW_COHORTS: usize = 1000;

/// Everything the handlers share.
pub struct UiState {
    shared: Arc<Shared>,
    auth: Option<UiAuth>,
    max_clients: usize,
    clients: AtomicUsize,
    interval_ms: u64,
    stop: CancellationToken,
    /// The overview document of the last evaluation formatted, by tick.
    overview: Mutex<Option<(u64, Arc<str>)>>,
}

/// The web view's routes, or none when `ui.enabled` is false. `stop` ends every open
/// stream, so the listener can shut down gracefully.
pub fn router(
    shared: Arc<Shared>,
    cfg: &Ui,
    evaluation_interval: Duration,
    stop: CancellationToken,
) -> axum::Router {
    if !cfg.enabled {
        return axum::Router::new();
    }
    let st = Arc::new(UiState {
        shared,
        auth: cfg.auth.clone(),
        max_clients: cfg.max_stream_clients,
        clients: AtomicUsize::new(0),
        interval_ms: evaluation_interval.as_millis() as u64,
        stop,
        overview: Mutex::new(None),
    });
    axum::Router::new()
        .route("/", get(page))
        .route("/journey", get(page))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
        // Browsers ask for it on their own; no content, rather than a 404 in their console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/v1/ui", get(document))
        .route("/api/v1/stream", get(stream))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            authenticate,
        ))
        .with_state(st)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the `Authorization` header carries what `auth` asks for.
pub fn authorized(auth: &UiAuth, header: Option<&[u8]>) -> bool {
    let Some(h) = header else { return false };
    let (scheme, rest) = match h.iter().position(|b| *b == b' ') {
        Some(i) => (&h[..i], h[i + 1..].trim_ascii()),
        None => return false,
    };
    match auth {
        UiAuth::Bearer { token } => {
            scheme.eq_ignore_ascii_case(b"bearer") && constant_time_eq(rest, token.as_bytes())
        }
        UiAuth::Basic { username, password } => {
            use base64::Engine;
            if !scheme.eq_ignore_ascii_case(b"basic") {
                return false;
            }
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            let expected = format!("{username}:{password}");
            constant_time_eq(&decoded, expected.as_bytes())
        }
    }
}

async fn authenticate(State(st): State<Arc<UiState>>, req: Request, next: Next) -> Response {
    if let Some(auth) = &st.auth {
        let h = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !authorized(auth, h) {
            UiRequestRefused {
                reason: UiRefusal::Unauthenticated,
            }
            .emit(&st.shared.tel);
            // A browser asks for basic credentials itself and then sends them with
            // every request of the page, the event stream included.
            let challenge = match auth {
                UiAuth::Basic { .. } => "Basic realm=\"cerflow\", charset=\"UTF-8\"",
                UiAuth::Bearer { .. } => "Bearer realm=\"cerflow\"",
            };
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                "authentication required\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Everything the page needs comes from this origin; nothing inline, no CDN.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    (h, body).into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocQuery {
    pub journey: Option<String>,
}

async fn document(
    State(st): State<Arc<UiState>>,
    q: Result<Query<DocQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        st.doc(q.journey.as_deref()).to_string(),
    )
        .into_response()
}

/// Gives back a stream's place when the stream ends, however it ends.
struct ClientSlot(Arc<UiState>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let n = self.0.clients.fetch_sub(1, Relaxed).saturating_sub(1);
        self.0.shared.tel.ui_stream_clients.store(n as u64, Relaxed);
    }
}

async fn stream(
    State(st): State<Arc<UiState>>,
    q: Result<Query<DocQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let taken = st
        .clients
        .fetch_update(Relaxed, Relaxed, |n| (n < st.max_clients).then_some(n + 1));
    let n = match taken {
        Ok(before) => before + 1,
        Err(_) => {
            UiRequestRefused {
                reason: UiRefusal::StreamLimit,
            }
            .emit(&st.shared.tel);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "too many live streams (ui.max_stream_clients)\n",
            )
                .into_response();
        }
    };
    st.shared.tel.ui_stream_clients.store(n as u64, Relaxed);
    let slot = ClientSlot(st.clone());
    let ticks = st.shared.ticks.subscribe();
    let journey = q.journey;
    // The first event is the state now; then one per evaluation. A slow reader skips
    // evaluations (the watch keeps only the newest), it never builds a backlog.
    let events =
        futures_util::stream::unfold((ticks, slot, true), move |(mut ticks, slot, first)| {
            let journey = journey.clone();
            async move {
                if !first {
                    let stop = slot.0.stop.clone();
                    tokio::select! {
                        changed = ticks.changed() => changed.ok()?,
                        _ = stop.cancelled() => return None,
                    }
                }
                ticks.borrow_and_update();
                let doc = slot.0.doc(journey.as_deref());
                let ev = Event::default().event("snapshot").data(&*doc);
                Some((Ok::<_, std::convert::Infallible>(ev), (ticks, slot, false)))
            }
        });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies must not hold the events back.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// A journey or cohort row as the page shows it.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    view: &'a JourneyView,
    /// `failing` (a page alert is active), `warning` (a ticket alert), `exhausted` (no
    /// alert, but the period's budget is spent) or `ok`.
    status: &'static str,
    /// The lowest budget remaining over the SLIs: the sort key, worst first.
    budget_min: Option<f64>,
    currency: Option<&'a str>,
}

fn status(j: &JourneyView) -> &'static str {
    if j.alerts.iter().any(|a| a.severity == "page") {
        "failing"
    } else if !j.alerts.is_empty() {
        "warning"
    } else if j.budget_remaining.values().any(|b| *b <= 0.0) {
        "exhausted"
    } else {
        "ok"
    }
}

fn row<'a>(eval: &'a Evaluation, i: usize) -> Row<'a> {
    let view = &eval.view.journeys[i];
    Row {
        view,
        status: status(view),
        budget_min: view.budget_remaining.values().copied().reduce(f64::min),
        currency: eval
            .infos
            .get(i)
            .and_then(|info| info.value.as_ref())
            .and_then(|v| v.currency.as_deref()),
    }
}

/// Worst budget first, then by name (and cohort), so the order is stable.
fn worst_first(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let ka = a.budget_min.unwrap_or(f64::INFINITY);
        let kb = b.budget_min.unwrap_or(f64::INFINITY);
        ka.total_cmp(&kb)
            .then_with(|| a.view.journey.cmp(&b.view.journey))
            .then_with(|| a.view.cohort.cmp(&b.view.cohort))
    });
}

#[derive(Serialize)]
struct Head<'a> {
    kind: &'static str,
    time_unix_ms: u64,
    version: &'a str,
    interval_ms: u64,
    windows: &'a [String],
    burn_windows: &'a [String],
    overall: &'a [crate::score::OverallScore],
    trend: Vec<crate::history::TrendPoint>,
    trend_slot_seconds: u64,
}

#[derive(Serialize)]
struct Overview<'a> {
    #[serde(flatten)]
    head: Head<'a>,
    journeys: Vec<Row<'a>>,
    cohorts: Vec<Row<'a>>,
    cohorts_omitted: usize,
    /// The incidents open now, oldest first: a journey's row says it has one.
    open_incidents: Vec<&'a crate::incidents::Incident>,
}

#[derive(Serialize)]
struct JourneyDoc<'a> {
    #[serde(flatten)]
    head: Head<'a>,
    name: &'a str,
    journey: Option<Row<'a>>,
    cohorts: Vec<Row<'a>>,
    /// (SLO window, SLI) of each value in `burn_trend`'s points.
    burn_keys: &'a [(String, String)],
    score_trend: Vec<crate::history::TrendPoint>,
    burn_trend: Vec<crate::history::TrendPoint>,
    budget: &'a [crate::history::BudgetPoint],
    /// The journey's dependencies from assembled traces, most failed calls in the first
    /// window first; what `cer_dependency_*` expose for it.
    dependencies: Vec<DependencyRow>,
    /// The journey's incidents, open first, then recent ones newest first (as
    /// `/api/v1/incidents` lists them).
    incidents: Vec<&'a crate::incidents::Incident>,
}

/// One dependency of the journey on its page.
#[derive(Serialize)]
struct DependencyRow {
    /// The dependency, or `otel_metric_overflow` for the journey's overflow series.
    dependency: String,
    overflow: bool,
    windows: Vec<DependencyWindow>,
}

#[derive(Serialize)]
struct DependencyWindow {
    window: String,
    /// In sampling units (the dependency counts), written as calls.
    #[serde(with = "crate::sampling::as_requests")]
    calls: u64,
    #[serde(with = "crate::sampling::as_requests")]
    errors: u64,
    availability: Option<f64>,
    /// Seconds, at [`crate::snapshot::QUANTILES`] (p50, p90, p95, p99).
    latency_s: Vec<Option<f64>>,
}

/// The journey's dependency series, shaped for its page.
fn dependency_rows(snap: &crate::sli::Snapshot, name: &str) -> Vec<DependencyRow> {
    let windows: Vec<String> = snap
        .windows
        .iter()
        .map(|w| crate::duration::format_duration(*w))
        .collect();
    let mut rows: Vec<DependencyRow> = snap
        .dependencies
        .iter()
        .filter(|d| &*d.journey.name == name)
        .map(|d| DependencyRow {
            dependency: if d.overflow {
                "otel_metric_overflow".to_string()
            } else {
                d.name.to_string()
            },
            overflow: d.overflow,
            windows: d
                .windows
                .iter()
                .zip(&windows)
                .map(|(s, w)| DependencyWindow {
                    window: w.clone(),
                    calls: s.counts.requests,
                    errors: s.counts.errors,
                    availability: s.availability,
                    latency_s: s.quantiles_s.clone(),
                })
                .collect(),
        })
        .collect();
    // The one to look at first: most failed calls in the shortest window, then by name.
    let errors = |r: &DependencyRow| r.windows.first().map_or(0, |w| w.errors);
    rows.sort_by(|a, b| {
        errors(b)
            .cmp(&errors(a))
            .then_with(|| a.dependency.cmp(&b.dependency))
    });
    rows
}

impl UiState {
    /// The document for the overview (`journey` = None) or one journey's page.
    fn doc(&self, journey: Option<&str>) -> Arc<str> {
        match journey {
            None => {
                let tick = *self.shared.ticks.borrow();
                let mut cache = self.overview.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((t, doc)) = cache.as_ref() {
                    if *t == tick {
                        return doc.clone();
                    }
                }
                let doc: Arc<str> = Arc::from(overview(&self.shared, self.interval_ms));
                *cache = Some((tick, doc.clone()));
                doc
            }
            Some(name) => Arc::from(journey_doc(&self.shared, self.interval_ms, name)),
        }
    }
}

fn head<'a>(
    eval: &'a Evaluation,
    version: &'a str,
    interval_ms: u64,
    trend: Vec<crate::history::TrendPoint>,
) -> Head<'a> {
    Head {
        kind: "",
        time_unix_ms: eval.view.time_unix_nano / 1_000_000,
        version,
        interval_ms,
        windows: &eval.view.windows,
        burn_windows: &eval.burn_windows,
        overall: &eval.view.overall,
        trend,
        trend_slot_seconds: crate::history::SLOT.as_secs(),
    }
}

/// The overview: journeys and cohorts worst budget first, the overall trend.
pub fn overview(shared: &Shared, interval_ms: u64) -> String {
    let eval = shared.eval.load();
    let version = shared.version.load();
    let trend = shared
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .overall();
    let mut journeys = Vec::new();
    let mut cohorts = Vec::new();
    for i in 0..eval.view.journeys.len() {
        let r = row(&eval, i);
        if r.view.cohort.is_empty() {
            journeys.push(r);
        } else {
            cohorts.push(r);
        }
    }
    worst_first(&mut journeys);
    worst_first(&mut cohorts);
    let cohorts_omitted = cohorts.len().saturating_sub(MAX_OVERVIEW_COHORTS);
    cohorts.truncate(MAX_OVERVIEW_COHORTS);
    let mut head = head(&eval, &version, interval_ms, trend);
    head.kind = "overview";
    let open_incidents = eval
        .incidents
        .iter()
        .filter(|i| i.end_unix_nano.is_none())
        .collect();
    serde_json::to_string(&Overview {
        head,
        journeys,
        cohorts,
        cohorts_omitted,
        open_incidents,
    })
    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// One journey's page: its row, its cohorts worst first, its trends and budget.
pub fn journey_doc(shared: &Shared, interval_ms: u64, name: &str) -> String {
    let eval = shared.eval.load();
    let version = shared.version.load();
    let history = shared.history.lock().unwrap_or_else(|p| p.into_inner());
    let mut journey = None;
    let mut cohorts = Vec::new();
    for (i, j) in eval.view.journeys.iter().enumerate() {
        if j.journey != name {
            continue;
        }
        if j.cohort.is_empty() {
            journey = Some(row(&eval, i));
        } else {
            cohorts.push(row(&eval, i));
        }
    }
    worst_first(&mut cohorts);
    let trend = history.journey(name);
    let mut head = head(&eval, &version, interval_ms, history.overall());
    head.kind = "journey";
    let (score_trend, burn_trend) = trend.map(|t| (t.scores, t.burn)).unwrap_or_default();
    let dependencies = dependency_rows(&shared.snapshot.load(), name);
    let incidents = eval
        .incidents
        .iter()
        .filter(|i| i.journey == name)
        .collect();
    serde_json::to_string(&JourneyDoc {
        head,
        name,
        journey,
        cohorts,
        burn_keys: history.burn_keys(),
        score_trend,
        burn_trend,
        budget: history.budget(name).unwrap_or(&[]),
        dependencies,
        incidents,
    })
    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_per_scheme() {
        let basic = UiAuth::Basic {
            username: "oncall".into(),
            password: "s3cret".into(),
        };
        // base64("oncall:s3cret") = b25jYWxsOnMzY3JldA==
        assert!(authorized(&basic, Some(b"Basic b25jYWxsOnMzY3JldA==")));
        assert!(authorized(&basic, Some(b"basic  b25jYWxsOnMzY3JldA==")));
        // base64("oncall:wrong") = b25jYWxsOndyb25n
        assert!(!authorized(&basic, Some(b"Basic b25jYWxsOndyb25n")));
        assert!(!authorized(&basic, Some(b"Basic !!!")));
        assert!(!authorized(&basic, Some(b"Bearer s3cret")));
        assert!(!authorized(&basic, None));
        let bearer = UiAuth::Bearer {
            token: "t0ken".into(),
        };
        assert!(authorized(&bearer, Some(b"Bearer t0ken")));
        assert!(!authorized(&bearer, Some(b"Bearer t0ken2")));
        assert!(!authorized(&bearer, Some(b"Basic t0ken")));
        assert!(!authorized(&bearer, Some(b"Bearer")));
    }

    #[test]
    fn status_follows_alerts_then_budget() {
        let mut j = JourneyView::default();
        j.budget_remaining.insert("availability".into(), 0.5);
        assert_eq!(status(&j), "ok");
        j.budget_remaining.insert("latency".into(), -0.25);
        assert_eq!(status(&j), "exhausted");
        j.alerts.push(crate::score::AlertView {
            sli: "availability".into(),
            severity: "ticket".into(),
        });
        assert_eq!(status(&j), "warning");
        j.alerts.push(crate::score::AlertView {
            sli: "availability".into(),
            severity: "page".into(),
        });
        assert_eq!(status(&j), "failing");
    }
}
