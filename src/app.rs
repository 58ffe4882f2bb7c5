//! Wiring: builds the pipeline from a validated config, starts the listeners, and
//! stops in order on SIGINT/SIGTERM: receivers first, then the queues are drained,
//! the last snapshot derived and pushed, and the metrics endpoint closed last.

use crate::config::Config;
use crate::export::{self, Shared};
use crate::ingest::Ingest;
use crate::journey::Journeys;
use crate::pipeline::{now_unix_ns, Pipeline};
use crate::receiver;
use crate::score::{self, Evaluation};
use crate::sli::Snapshot;
use crate::slo::SloTracker;
use crate::telemetry::Telemetry;
use arc_swap::ArcSwap;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for {what}: {e}"))
}

fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_unix_ns());
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{:016x}{:016x}", a, h.finish())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Received SIGINT; shutting down."),
        _ = term => tracing::info!("Received SIGTERM; shutting down."),
    }
}

/// Runs cerflow until SIGINT or SIGTERM. With `config_path`, SIGHUP or a change of the
/// file reloads it.
pub async fn run(cfg: Config, config_path: Option<std::path::PathBuf>) -> Result<(), String> {
    let tel = Arc::new(Telemetry::default());
    let journeys = Arc::new(Journeys::new(&cfg));
    let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
    let input = pipeline.input();
    let ingest = Arc::new(Ingest::new(
        &cfg,
        journeys.clone(),
        input.clone(),
        tel.clone(),
    ));

    let grpc = match cfg.receivers.grpc {
        Some(a) => Some(bind(a, "OTLP/gRPC").await?),
        None => None,
    };
    let http = match cfg.receivers.http {
        Some(a) => Some(bind(a, "OTLP/HTTP").await?),
        None => None,
    };
    let prom = match cfg.exporters.prometheus {
        Some(a) => Some(bind(a, "Prometheus metrics").await?),
        None => None,
    };

    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(Snapshot {
            windows: cfg.windows.sizes.clone(),
            ..Default::default()
        }),
        eval: ArcSwap::from_pointee(Evaluation::default()),
        ticks: tokio::sync::watch::channel(0).0,
        tel: tel.clone(),
        input,
        journeys: ArcSwap::new(journeys.clone()),
        version: ArcSwap::from_pointee(cfg.version.clone()),
        histogram_bounds: cfg.histogram_buckets.clone(),
        state_limit_bytes: cfg.limits.max_window_state_bytes,
        ready: std::sync::atomic::AtomicBool::new(false),
        instance_id: instance_id(),
        start_unix_ns: now_unix_ns(),
    });

    // The SLO state survives restarts through its checkpoint.
    let mut tracker = SloTracker::new(&cfg.slo);
    if let Some(cp) = &cfg.slo.checkpoint {
        if cp.path.exists() {
            match tracker.load(&cp.path) {
                Ok(n) => {
                    tracing::info!(path = %cp.path.display(), keys = n, "Restored the SLO state.")
                }
                Err(e) => tracing::warn!(
                    path = %cp.path.display(),
                    error = %e,
                    "Cannot restore the SLO state; starting with fresh error budgets."
                ),
            }
        } else {
            tracing::info!(path = %cp.path.display(), "No SLO checkpoint yet; starting with fresh error budgets.");
        }
    }
    // Derived journeys come back before any span does: they count towards
    // `auto_journeys.max` and are shown with their budgets until their traffic returns.
    let journeys_restored = tracker
        .restored()
        .filter(|(k, _)| k.cohort.is_none())
        .filter_map(|(k, origin)| journeys.restore(&k.journey, origin))
        .count();
    if journeys_restored > 0 {
        tracing::info!(
            journeys = journeys_restored,
            "Journeys with restored SLO state are shown until their traffic returns."
        );
    }

    // The deriver ticks on its own thread: it blocks on worker replies.
    let (deriver_tx, deriver_rx) = crossbeam_channel::bounded::<DeriverMsg>(4);
    let (final_tx, final_rx) = tokio::sync::oneshot::channel::<()>();
    let deriver = {
        let shared = shared.clone();
        let interval = cfg.pipeline.evaluation_interval;
        let grace = cfg.pipeline.shutdown_timeout;
        let cfg_ttl = cfg.windows.series_ttl;
        let cfg = cfg.clone();
        let ingest = ingest.clone();
        std::thread::Builder::new()
            .name("cerflow-deriver".into())
            .spawn(move || {
                let mut deriver = Deriver {
                    cfg,
                    shared,
                    ingest,
                    tracker,
                    last_checkpoint: now_unix_ns(),
                    restored_until: now_unix_ns().saturating_add(cfg_ttl.as_nanos() as u64),
                };
                // The first evaluation is made at once, so restored budgets are on
                // /metrics from the start.
                let mut next = std::time::Instant::now();
                loop {
                    match deriver_rx.recv_deadline(next) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            next = std::time::Instant::now() + interval;
                            let shards = pipeline.snapshot(interval);
                            deriver.tick(shards, false);
                        }
                        Ok(DeriverMsg::Reload(new, reply)) => {
                            let notes = deriver.reload(*new, &pipeline);
                            // Evaluate at once, then show the new version: a scrape that
                            // sees the new version sees the new journeys too.
                            deriver.tick(pipeline.snapshot(interval), false);
                            deriver
                                .shared
                                .version
                                .store(Arc::new(deriver.cfg.version.clone()));
                            let _ = reply.send(notes);
                        }
                        Ok(DeriverMsg::Stop)
                        | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
                let shards = pipeline.shutdown(grace);
                deriver.tick(shards, true);
                let _ = final_tx.send(());
            })
            .map_err(|e| format!("cannot start the deriver thread: {e}"))?
    };

    // TLS files are parsed now, so a bad certificate stops start-up with a clear message.
    let grpc_tls = cfg
        .receivers
        .grpc_tls
        .as_ref()
        .map(crate::tls::tonic_config)
        .transpose()?;
    let http_tls = cfg
        .receivers
        .http_tls
        .as_ref()
        .map(|f| crate::tls::rustls_config(f, &[b"h2", b"http/1.1"]))
        .transpose()?;
    let prom_tls = cfg
        .exporters
        .prometheus_tls
        .as_ref()
        .map(|f| crate::tls::rustls_config(f, &[b"h2", b"http/1.1"]))
        .transpose()?;
    let auth = Arc::new(receiver::auth::Auth::new(&cfg.receivers.tokens));

    let receivers_stop = CancellationToken::new();
    let mut receiver_tasks = Vec::new();
    if let Some(l) = grpc {
        let tls = grpc_tls.is_some();
        tracing::info!(endpoint = %l.local_addr().map_err(|e| e.to_string())?, tls, auth = auth.enabled(), "OTLP/gRPC receiver listening.");
        let stop = receivers_stop.clone();
        let ingest = ingest.clone();
        let opts = receiver::grpc::GrpcOptions {
            max_request: cfg.receivers.max_request_bytes,
            max_inflated: cfg.receivers.max_decompressed_bytes,
            auth: auth.clone(),
            tls: grpc_tls,
            timeout: cfg.receivers.request_timeout,
        };
        let score_shared = shared.clone();
        receiver_tasks.push(tokio::spawn(async move {
            let routes = tonic::service::Routes::new(crate::api::grpc_service(score_shared));
            if let Err(e) =
                receiver::grpc::serve(l, ingest, opts, routes, stop.cancelled_owned()).await
            {
                tracing::error!(error = %e, "The OTLP/gRPC receiver stopped with an error.");
            }
        }));
    }
    if let Some(l) = http {
        tracing::info!(endpoint = %l.local_addr().map_err(|e| e.to_string())?, tls = http_tls.is_some(), auth = auth.enabled(), "OTLP/HTTP receiver listening.");
        let opts = receiver::http::HttpOptions {
            max_request: cfg.receivers.max_request_bytes,
            max_inflated: cfg.receivers.max_decompressed_bytes,
            auth: auth.clone(),
            timeout: cfg.receivers.request_timeout,
        };
        let router = receiver::http::router(ingest.clone(), opts);
        receiver_tasks.push(tokio::spawn(serve_http(
            l,
            router,
            http_tls,
            receivers_stop.clone(),
            "OTLP/HTTP receiver",
        )));
    }
    let admin_stop = CancellationToken::new();
    let admin_task = prom.map(|l| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(endpoint = %a, tls = prom_tls.is_some(), "Prometheus endpoint listening on /metrics.");
        }
        let sh = shared.clone();
        let ready = shared.clone();
        let router = axum::Router::new()
            .route(
                "/metrics",
                get(move || {
                    let sh = sh.clone();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                            export::prometheus::render(&sh),
                        )
                    }
                }),
            )
            .route("/api/v1/scores", get(crate::api::scores_json).with_state(shared.clone()))
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = ready.ready.load(std::sync::atomic::Ordering::Relaxed);
                    async move {
                        if ready {
                            (axum::http::StatusCode::OK, "ready\n")
                        } else {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    }
                }),
            );
        tokio::spawn(serve_http(l, router, prom_tls, admin_stop.clone(), "metrics endpoint"))
    });
    let otlp_stop = CancellationToken::new();
    let otlp_task = cfg.exporters.otlp.clone().map(|o| {
        tracing::info!(endpoint = %o.endpoint, interval = ?o.interval, "OTLP metric push enabled.");
        tokio::spawn(export::otlp::run(
            shared.clone(),
            o,
            otlp_stop.clone(),
            final_rx,
            cfg.pipeline.shutdown_timeout,
        ))
    });

    tracing::info!(
        version = %cfg.version,
        journeys = cfg.journeys.len(),
        auto_journeys = cfg.auto_journeys.enabled,
        workers = cfg.pipeline.workers,
        "cerflow is running."
    );
    let reload_stop = CancellationToken::new();
    let reload_task = config_path.map(|path| {
        tokio::spawn(watch_config(
            path,
            deriver_tx.clone(),
            tel.clone(),
            reload_stop.clone(),
        ))
    });
    shared
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    shutdown_signal().await;
    shared
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);

    let grace = cfg.pipeline.shutdown_timeout;
    receivers_stop.cancel();
    let stopping = futures_util::future::join_all(receiver_tasks);
    if tokio::time::timeout(grace, stopping).await.is_err() {
        tracing::warn!(
            ?grace,
            "Receivers did not stop within the shutdown timeout."
        );
    }
    reload_stop.cancel();
    if let Some(t) = reload_task {
        let _ = t.await;
    }
    let _ = deriver_tx.send(DeriverMsg::Stop);
    let joined = tokio::task::spawn_blocking(move || deriver.join());
    if tokio::time::timeout(grace, joined).await.is_err() {
        tracing::warn!("The pipeline did not drain within the shutdown timeout.");
    }
    otlp_stop.cancel();
    if let Some(t) = otlp_task {
        let _ = tokio::time::timeout(grace, t).await;
    }
    admin_stop.cancel();
    if let Some(t) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!(
        processed = tel
            .processed_spans
            .load(std::sync::atomic::Ordering::Relaxed),
        "cerflow stopped."
    );
    Ok(())
}

/// Serves a router over plain TCP or TLS until `stop` is cancelled.
async fn serve_http(
    l: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
    what: &'static str,
) {
    match tls {
        Some(cfg) => crate::tls::serve(l, router, cfg, stop).await,
        None => {
            // No Nagle delay on responses, as on the gRPC listener.
            let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(l, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, what, "A listener stopped with an error.");
            }
        }
    }
}

enum DeriverMsg {
    Stop,
    /// A validated new config; the reply lists what only a restart will apply.
    Reload(Box<Config>, tokio::sync::oneshot::Sender<Vec<String>>),
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the config on SIGHUP and when the file changes (checked every second).
async fn watch_config(
    path: std::path::PathBuf,
    deriver: crossbeam_channel::Sender<DeriverMsg>,
    tel: Arc<Telemetry>,
    stop: CancellationToken,
) {
    use crate::telemetry::AddRelaxed;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last = modified(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let trigger = tokio::select! {
            _ = hangup => "SIGHUP",
            _ = tick.tick() => {
                let now = modified(&path);
                if now == last {
                    continue;
                }
                "the config file changed"
            }
            _ = stop.cancelled() => return,
        };
        last = modified(&path);
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Config::load_file(&path)).await
        };
        match loaded {
            Ok(Ok(cfg)) => {
                let version = cfg.version.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                if deriver.send(DeriverMsg::Reload(Box::new(cfg), tx)).is_err() {
                    return;
                }
                match rx.await {
                    Ok(notes) => {
                        tel.config_reloads.add(1);
                        tracing::info!(trigger, %version, "Reloaded the config.");
                        for note in notes {
                            tracing::warn!(trigger, "{note}");
                        }
                    }
                    Err(_) => return,
                }
            }
            Ok(Err(e)) => {
                tel.config_reload_failures.add(1);
                tracing::error!(trigger, problems = %e, "Refused the new config; the running one stays in force.");
            }
            Err(e) => tracing::error!(error = %e, "The config reload task failed."),
        }
    }
}

/// Merges worker snapshots, updates the SLO state, evaluates scores, checkpoints.
struct Deriver {
    cfg: Config,
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    tracker: SloTracker,
    last_checkpoint: u64,
    /// Until then, SLO keys restored from the checkpoint are shown without traffic;
    /// 0 once they have been forgotten.
    restored_until: u64,
}

impl Deriver {
    /// Applies what a running cerflow can change: journeys, cohorts, rules, objectives,
    /// alerts, scores, the version. Journeys whose definition did not change keep their
    /// window state. Returns notes on settings that need a restart.
    fn reload(&mut self, new: Config, pipeline: &Pipeline) -> Vec<String> {
        let old = &self.cfg;
        let mut notes = Vec::new();
        let mut restart = |what: &str, changed: bool| {
            if changed {
                notes.push(format!("{what} changed; it takes effect after a restart"));
            }
        };
        restart(
            "receivers",
            format!("{:?}", old.receivers) != format!("{:?}", new.receivers)
                || old.receivers.tokens != new.receivers.tokens,
        );
        restart(
            "exporters",
            format!("{:?}", old.exporters) != format!("{:?}", new.exporters),
        );
        restart(
            "pipeline",
            format!("{:?}", old.pipeline) != format!("{:?}", new.pipeline),
        );
        restart(
            "windows",
            format!("{:?}", old.windows) != format!("{:?}", new.windows),
        );
        restart(
            "histogram.buckets",
            old.histogram_buckets != new.histogram_buckets,
        );
        restart(
            "limits",
            format!("{:?}", old.limits) != format!("{:?}", new.limits),
        );
        restart(
            "slo.checkpoint",
            format!("{:?}", old.slo.checkpoint) != format!("{:?}", new.slo.checkpoint),
        );
        if let Err(e) = self.tracker.reconfigure(&new.slo) {
            notes.push(e.to_string());
        }
        let (journeys, remap) = Journeys::reload(&new, &self.shared.journeys.load());
        let journeys = Arc::new(journeys);
        let kept = remap.iter().filter(|r| r.is_some()).count();
        // Workers first: from now on they translate batches classified with the old ids.
        let plan = Arc::new(crate::pipeline::Reload {
            journeys: journeys.clone(),
            remap,
        });
        if !pipeline.reload(plan, new.pipeline.shutdown_timeout) {
            notes.push("a worker did not take the new journeys in time".into());
        }
        self.ingest.set_journeys(journeys.clone());
        self.shared.journeys.store(journeys);
        tracing::debug!(kept, "Journeys whose window state carried over.");
        let mut merged = new;
        merged.receivers = old.receivers.clone();
        merged.exporters = old.exporters.clone();
        merged.pipeline = old.pipeline.clone();
        merged.windows = old.windows.clone();
        merged.histogram_buckets = old.histogram_buckets.clone();
        merged.limits = old.limits.clone();
        merged.slo.checkpoint = old.slo.checkpoint.clone();
        self.cfg = merged;
        notes
    }

    fn tick(&mut self, shards: Vec<crate::pipeline::ShardSnapshot>, last: bool) {
        let now = now_unix_ns();
        let snap = Snapshot::merge(now, self.cfg.windows.sizes.clone(), shards);
        let journeys = self.shared.journeys.load();
        self.tracker.update(&snap, &journeys, now);
        if self.restored_until != 0 && now >= self.restored_until {
            self.tracker.forget_restored();
            self.restored_until = 0;
        }
        let restored: Vec<_> = self
            .tracker
            .restored()
            .filter_map(|(k, origin)| journeys.restore(&k.journey, origin).map(|j| (k.clone(), j)))
            .collect();
        let eval = score::evaluate(
            &snap,
            &self.tracker,
            &journeys,
            &restored,
            &self.cfg.score,
            &self.cfg.version,
        );
        self.shared.snapshot.store(Arc::new(snap));
        self.shared.eval.store(Arc::new(eval));
        self.shared.ticks.send_modify(|t| *t += 1);
        if let Some(cp) = &self.cfg.slo.checkpoint {
            if last || now.saturating_sub(self.last_checkpoint) >= cp.interval.as_nanos() as u64 {
                self.last_checkpoint = now;
                match self.tracker.save(&cp.path, now) {
                    Ok(()) => {
                        tracing::debug!(path = %cp.path.display(), "Wrote the SLO checkpoint.")
                    }
                    Err(e) => {
                        tracing::warn!(path = %cp.path.display(), error = %e, "Cannot write the SLO checkpoint.")
                    }
                }
            }
        }
    }
}
