//! The score API: `GET /api/v1/scores`, `GET /api/v1/incidents` and
//! `GET /api/v1/deployments` (JSON, on the metrics port) and the gRPC
//! `cerflow.v1.ScoreService` (on the OTLP gRPC port), both reading the latest evaluation.

use crate::proto;
use crate::proto::score_service_server::{ScoreService, ScoreServiceServer};
use crate::published::Shared;
use crate::sampling::whole_requests;
use crate::score::{filtered, Filter, ScoreView};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

/// Percent-decodes one query component (`+` is a space).
fn unescape(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: &str) -> Result<Filter, String> {
    let pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(p), String::new()),
        })
        .collect();
    Filter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Which journeys the score API answers for: `own` (default) the journeys this
/// instance derives (all of them without Kafka stage 2, the ones it owns with it), `all`
/// every journey from the owners' snapshots (Kafka stage 2 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Own,
    All,
}

/// Splits the `scope` parameter off a query string; the rest is the filter's.
pub fn split_scope(q: &str) -> Result<(Scope, String), String> {
    let mut scope = Scope::Own;
    let mut rest = Vec::new();
    for p in q.split('&').filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("scope", "own")) => scope = Scope::Own,
            Some(("scope", "all")) => scope = Scope::All,
            Some(("scope", other)) => {
                return Err(format!(
                    "unknown scope \"{}\" (use own or all)",
                    unescape(other)
                ))
            }
            _ => rest.push(p),
        }
    }
    Ok((scope, rest.join("&")))
}

fn bad_request(e: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": e })),
    )
        .into_response()
}

pub async fn scores_json(State(sh): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let (scope, q) = match split_scope(q.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let filter = match parse_query(&q) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    match answer(&sh, scope, &filter) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => bad_request(e.message().into()),
    }
}

/// Why the score API cannot answer `scope=all`: one wording for both APIs, a status
/// for each (HTTP says 400 for all three; gRPC tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllRefusal {
    /// This instance has no owners' snapshots to read.
    NoStage2,
    /// Cohort entries are not in the snapshots' overall view (users cannot be summed).
    CohortFilter,
    /// The overall score needs the score policy of the first evaluation.
    NoEvaluation,
}

impl AllRefusal {
    pub fn message(self) -> &'static str {
        match self {
            AllRefusal::NoStage2 => "scope=all needs Kafka stage 2 (receivers.kafka.aggregates)",
            AllRefusal::CohortFilter => "a cohort filter is not supported with scope=all",
            AllRefusal::NoEvaluation => "no evaluation yet: try again after the first tick",
        }
    }

    fn status(self) -> tonic::Status {
        match self {
            AllRefusal::NoStage2 => tonic::Status::failed_precondition(self.message()),
            AllRefusal::CohortFilter => tonic::Status::invalid_argument(self.message()),
            AllRefusal::NoEvaluation => tonic::Status::unavailable(self.message()),
        }
    }
}

/// What the score API answers for `scope` and `filter`, over HTTP and gRPC alike.
fn answer(sh: &Shared, scope: Scope, filter: &Filter) -> Result<ScoreView, AllRefusal> {
    let eval = sh.eval.load();
    match scope {
        Scope::Own => Ok(filtered(&eval, filter)),
        Scope::All => all_scores(sh, &eval, filter),
    }
}

/// Every journey's figures from the owners' snapshots, the overall score computed from
/// them under this instance's score policy (the same config on every instance).
fn all_scores(
    sh: &Shared,
    eval: &crate::score::Evaluation,
    filter: &Filter,
) -> Result<ScoreView, AllRefusal> {
    let store = sh.all_snapshots.get().ok_or(AllRefusal::NoStage2)?;
    if !filter.cohort.is_empty() {
        return Err(AllRefusal::CohortFilter);
    }
    let cfg = eval.score_cfg.clone().ok_or(AllRefusal::NoEvaluation)?;
    let all = crate::kstate::snapshots::all_view(&store.live(crate::clock::now_unix_ns()), &cfg);
    let all = crate::score::Evaluation {
        view: all,
        score_cfg: Some(cfg),
        ..Default::default()
    };
    Ok(filtered(&all, filter))
}

pub fn incidents_proto(
    list: &[crate::incidents::Incident],
    journeys: &[String],
) -> proto::IncidentList {
    proto::IncidentList {
        incidents: list
            .iter()
            .filter(|i| journeys.is_empty() || journeys.contains(&i.journey))
            .map(|i| proto::Incident {
                journey: i.journey.clone(),
                start_unix_nano: i.start_unix_nano,
                end_unix_nano: i.end_unix_nano,
                duration_seconds: i.duration_seconds,
                peak_burn_rate: i.peak_burn_rate,
                users_affected: i.users_affected,
                value_at_risk: i.value_at_risk,
                time_to_detect_seconds: i.time_to_detect_seconds,
            })
            .collect(),
    }
}

/// `GET /api/v1/incidents`: open incidents (oldest first), then closed ones (newest first).
pub async fn incidents_json(State(sh): State<Arc<Shared>>) -> Response {
    let eval = sh.eval.load();
    axum::Json(serde_json::json!({ "incidents": eval.incidents })).into_response()
}

/// `GET /api/v1/deployments`: pending deployments, then judged ones, newest first, with
/// the attribute that names versions (the gate checks its `--compare` key against it).
pub async fn deployments_json(State(sh): State<Arc<Shared>>) -> Response {
    let eval = sh.eval.load();
    axum::Json(serde_json::json!({
        "version_key": eval.version_key,
        "deployments": eval.deployments,
    }))
    .into_response()
}

fn figures_proto(f: &crate::deployments::Figures) -> proto::DeploymentFigures {
    proto::DeploymentFigures {
        requests: whole_requests(f.requests),
        errors: whole_requests(f.errors),
        slow: whole_requests(f.slow),
        incorrect: whole_requests(f.incorrect),
        availability: f.availability,
        latency: f.latency,
        correctness: f.correctness,
        score: f.score,
    }
}

fn deployment_proto(d: &crate::deployments::Deployment) -> proto::Deployment {
    proto::Deployment {
        version: d.version.clone(),
        previous_version: d.previous_version.clone(),
        result: d.result.as_str().to_string(),
        start_unix_nano: d.start_unix_nano,
        end_unix_nano: d.end_unix_nano,
        figures: Some(figures_proto(&d.figures)),
        previous_figures: Some(figures_proto(&d.previous_figures)),
        baseline: d.baseline.clone(),
        score_drop: d.score_drop,
    }
}

pub fn to_proto(v: &ScoreView) -> proto::ScoreSnapshot {
    proto::ScoreSnapshot {
        time_unix_nano: v.time_unix_nano,
        definition_version: v.definition_version.clone(),
        overall: v
            .overall
            .iter()
            .map(|o| proto::WindowScore {
                window: o.window.clone(),
                score: o.score,
            })
            .collect(),
        journeys: v
            .journeys
            .iter()
            .map(|j| proto::JourneyScore {
                journey: j.journey.clone(),
                weight: j.weight,
                cohort: j.cohort.clone().into_iter().collect(),
                windows: j
                    .windows
                    .iter()
                    .map(|w| proto::WindowDetail {
                        window: w.window.clone(),
                        requests: whole_requests(w.requests),
                        errors: whole_requests(w.errors),
                        slow: whole_requests(w.slow),
                        incorrect: whole_requests(w.incorrect),
                        score: w.score,
                        availability: w.availability,
                        latency: w.latency,
                        correctness: w.correctness,
                        burn_rate: w.burn_rate.clone().into_iter().collect(),
                        users: w.users,
                        users_affected: w.users_affected,
                        users_affected_ratio: w.users_affected_ratio,
                        operations: w.operations,
                        slices: w.slices,
                        bad_slices: w.bad_slices,
                        value_at_risk: w.value_at_risk,
                        blame: w
                            .blame
                            .iter()
                            .map(|b| proto::Blame {
                                dependency: b.dependency.clone(),
                                failures: b.failures,
                                share: b.share,
                            })
                            .collect(),
                        exemplars: w
                            .exemplars
                            .iter()
                            .map(|e| proto::Exemplar {
                                kind: e.kind.clone(),
                                trace_id: e.trace_id.clone(),
                                span_id: e.span_id.clone(),
                                time_unix_nano: e.time_unix_nano,
                                duration_seconds: e.duration_seconds,
                            })
                            .collect(),
                        vitals: w.vitals,
                        vitals_bad: w.vitals_bad,
                        experience: w.experience,
                    })
                    .collect(),
                alerts: j
                    .alerts
                    .iter()
                    .map(|a| proto::Alert {
                        sli: a.sli.clone(),
                        severity: a.severity.clone(),
                    })
                    .collect(),
                objectives: j.objectives.clone().into_iter().collect(),
                budget_remaining: j.budget_remaining.clone().into_iter().collect(),
                slo_burn_rates: j
                    .burn_rates
                    .iter()
                    .map(|(w, m)| proto::SloBurn {
                        window: w.clone(),
                        burn_rate: m.clone().into_iter().collect(),
                    })
                    .collect(),
                currency: j.currency.clone(),
                value_total: j.value_total,
                value_failed_total: j.value_failed_total,
                value_lost_period: j.value_lost_period,
                deployments: j.deployments.iter().map(deployment_proto).collect(),
            })
            .collect(),
        instance: v.instance.clone(),
    }
}

/// The request's scope; an unknown number (a newer client's) is refused, not read as
/// `own`, so a client never mistakes one instance's journeys for all of them.
fn scope_of(r: &proto::GetScoresRequest) -> Result<Scope, tonic::Status> {
    match proto::Scope::try_from(r.scope) {
        Ok(proto::Scope::Unspecified | proto::Scope::Own) => Ok(Scope::Own),
        Ok(proto::Scope::All) => Ok(Scope::All),
        Err(_) => Err(tonic::Status::invalid_argument(format!(
            "unknown scope {} (use SCOPE_OWN or SCOPE_ALL)",
            r.scope
        ))),
    }
}

fn filter_of(r: &proto::GetScoresRequest) -> Filter {
    Filter {
        journeys: r.journeys.clone(),
        window: (!r.window.is_empty()).then(|| r.window.clone()),
        cohort: r
            .cohort
            .iter()
            .map(|(k, v)| (crate::labels::sanitize_label(k), v.clone()))
            .collect(),
    }
}

pub struct ScoreApi {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl ScoreService for ScoreApi {
    async fn get_scores(
        &self,
        request: tonic::Request<proto::GetScoresRequest>,
    ) -> Result<tonic::Response<proto::ScoreSnapshot>, tonic::Status> {
        let scope = scope_of(request.get_ref())?;
        let f = filter_of(request.get_ref());
        let view = answer(&self.shared, scope, &f).map_err(AllRefusal::status)?;
        Ok(tonic::Response::new(to_proto(&view)))
    }

    async fn get_incidents(
        &self,
        request: tonic::Request<proto::GetIncidentsRequest>,
    ) -> Result<tonic::Response<proto::IncidentList>, tonic::Status> {
        let eval = self.shared.eval.load();
        Ok(tonic::Response::new(incidents_proto(
            &eval.incidents,
            &request.get_ref().journeys,
        )))
    }

    type WatchScoresStream = ReceiverStream<Result<proto::ScoreSnapshot, tonic::Status>>;

    async fn watch_scores(
        &self,
        request: tonic::Request<proto::GetScoresRequest>,
    ) -> Result<tonic::Response<Self::WatchScoresStream>, tonic::Status> {
        let scope = scope_of(request.get_ref())?;
        let f = filter_of(request.get_ref());
        // Refused at once rather than as the stream's first item.
        answer(&self.shared, scope, &f).map_err(AllRefusal::status)?;
        let mut ticks = self.shared.ticks.subscribe();
        let shared = self.shared.clone();
        // A slow reader gets the newest snapshot, not a growing backlog.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let snap = answer(&shared, scope, &f)
                    .map(|v| to_proto(&v))
                    .map_err(AllRefusal::status);
                if tx.send(snap).await.is_err() {
                    return;
                }
                if ticks.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

pub fn grpc_service(shared: Arc<Shared>) -> ScoreServiceServer<ScoreApi> {
    ScoreServiceServer::new(ScoreApi { shared })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journeys_deployments_are_field_13_of_its_score() {
        use crate::deployments::{Deployment, Figures, Outcome};
        // Figures count in sampling units; the gRPC figures are whole requests.
        let u = crate::sampling::UNIT;
        let figures = |requests: u64, errors: u64, score| Figures {
            requests: requests * u,
            errors: errors * u,
            availability: Some(1.0 - errors as f64 / requests as f64),
            score: Some(score),
            ..Default::default()
        };
        let view = ScoreView {
            journeys: vec![crate::score::JourneyView {
                journey: "checkout".into(),
                deployments: vec![Deployment {
                    journey: "checkout".into(),
                    version: "2.0".into(),
                    previous_version: "1.0".into(),
                    result: Outcome::Regressed,
                    start_unix_nano: 5,
                    end_unix_nano: Some(9),
                    figures: figures(100, 30, 0.75),
                    previous_figures: figures(100, 0, 1.0),
                    baseline: "same_span".into(),
                    score_drop: Some(0.25),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = to_proto(&view);
        let d = &p.journeys[0].deployments[0];
        assert_eq!(
            (
                d.version.as_str(),
                d.previous_version.as_str(),
                d.result.as_str()
            ),
            ("2.0", "1.0", "regressed")
        );
        assert_eq!((d.start_unix_nano, d.end_unix_nano), (5, Some(9)));
        assert_eq!(
            (d.baseline.as_str(), d.score_drop),
            ("same_span", Some(0.25))
        );
        let f = d.figures.as_ref().expect("the new version's figures");
        assert_eq!((f.requests, f.errors, f.score), (100, 30, Some(0.75)));
        assert_eq!(f.availability, Some(0.7));
        let b = d.previous_figures.as_ref().expect("the previous version's");
        assert_eq!((b.requests, b.errors, b.score), (100, 0, Some(1.0)));
    }

    #[test]
    fn queries_decode() {
        let f =
            parse_query("journey=shop-api%3APOST+%2Fcheckout&window=5m&cohort=cloud.region%3Aeu")
                .unwrap();
        assert_eq!(f.journeys, vec!["shop-api:POST /checkout"]);
        assert_eq!(f.window.as_deref(), Some("5m"));
        assert_eq!(f.cohort.get("cloud_region").map(String::as_str), Some("eu"));
    }

    #[test]
    fn the_scope_is_split_off_the_filter() {
        assert_eq!(
            split_scope("journey=a&scope=all&window=5m"),
            Ok((Scope::All, "journey=a&window=5m".to_string()))
        );
        assert_eq!(split_scope(""), Ok((Scope::Own, String::new())));
        assert_eq!(
            split_scope("scope=every"),
            Err("unknown scope \"every\" (use own or all)".to_string())
        );
    }
}
