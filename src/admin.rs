//! The admin listener's routes: `/metrics` (Prometheus text, or OpenMetrics when the
//! `Accept` header asks for it), `/api/v1/scores`, `/api/v1/incidents`,
//! `/api/v1/deployments`, `/healthz` and `/readyz`, and the web view's (`ui`) unless
//! `ui.enabled` is false.

use crate::export;
use crate::published::Shared;
use axum::routing::get;
use std::sync::Arc;

/// `stop` ends the web view's live streams when the listener shuts down.
pub fn router(
    shared: Arc<Shared>,
    ui: &crate::ui::config::Ui,
    evaluation_interval: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) -> axum::Router {
    let web = crate::ui::router(shared.clone(), ui, evaluation_interval, stop);
    let sh = shared.clone();
    let ready = shared.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let sh = sh.clone();
                async move {
                    let om = headers
                        .get_all(axum::http::header::ACCEPT)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(export::prometheus::wants_openmetrics);
                    let content_type = if om {
                        export::prometheus::OPENMETRICS_CONTENT_TYPE
                    } else {
                        export::prometheus::TEXT_CONTENT_TYPE
                    };
                    (
                        [(axum::http::header::CONTENT_TYPE, content_type)],
                        export::prometheus::render_as(&sh, om),
                    )
                }
            }),
        )
        .route(
            "/api/v1/scores",
            get(crate::api::scores_json).with_state(shared.clone()),
        )
        .route(
            "/api/v1/incidents",
            get(crate::api::incidents_json).with_state(shared.clone()),
        )
        .route(
            "/api/v1/deployments",
            get(crate::api::deployments_json).with_state(shared.clone()),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                // A Kafka-fed instance without a broker serves stale figures: not ready.
                let ready = ready.ready.load(std::sync::atomic::Ordering::Relaxed)
                    && ready.tel.kafka.ready();
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ready\n")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .merge(web)
}
