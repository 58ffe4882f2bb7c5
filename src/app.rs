//! Wiring: builds the pipeline from a validated config, starts the listeners, and
//! stops in order on SIGINT/SIGTERM: receivers first, then the queues are drained,
//! the last snapshot derived and pushed, and the metrics endpoint closed last.

use crate::clock::now_unix_ns;
use crate::config::Config;
use crate::export;
use crate::ingest::Ingest;
use crate::journey::Journeys;
use crate::pipeline::Pipeline;
use crate::published::Shared;
use crate::receiver;
use crate::receiver::consumer::Consumer;
use crate::score::Evaluation;
use crate::sli::Snapshot;
use crate::telemetry::Telemetry;
use arc_swap::ArcSwap;
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

/// Stage 2's barrier: the workers' partials, grouped by journey and encoded as the
/// messages of the aggregates topic, keyed by journey name.
struct PublishPartials {
    taker: crate::pipeline::PartialTaker,
    instance: String,
    max_message_bytes: usize,
    sequence: std::sync::atomic::AtomicU64,
    tel: Arc<Telemetry>,
}

impl receiver::kafka::transactions::Barrier for PublishPartials {
    fn take(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        use crate::internal_events::{InternalEvent, KafkaPartialTooLarge};
        let parts = self
            .taker
            .take(Duration::from_secs(10))
            .ok_or("a worker did not hand over its partials in 10 s")?;
        let sequence = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut by_journey: std::collections::BTreeMap<Arc<str>, (Arc<_>, Vec<_>)> =
            Default::default();
        for (journey, p) in parts.journeys {
            by_journey
                .entry(journey.name.clone())
                .or_insert_with(|| (journey.clone(), Vec::new()))
                .1
                .push(p);
        }
        // Coverage belongs to no journey: its messages name none and share one key, so
        // one owner merges all of it (see `crate::partial`).
        let coverage: Vec<_> = parts
            .coverage
            .into_iter()
            .map(crate::partial::Entry::Coverage)
            .collect();
        let groups = by_journey
            .into_iter()
            .map(|(journey, (info, entries))| {
                let service = info.derived_service().unwrap_or("").to_string();
                (journey.to_string(), journey.to_string(), service, entries)
            })
            .chain((!coverage.is_empty()).then(|| {
                let key = crate::partial::COVERAGE_KEY.to_string();
                (key, String::new(), String::new(), coverage)
            }));
        let mut out = Vec::new();
        for (key, journey, service, entries) in groups {
            let (messages, too_large) = crate::partial::encode_journey(
                &journey,
                &service,
                &self.instance,
                sequence,
                entries,
                self.max_message_bytes,
            );
            for t in too_large {
                KafkaPartialTooLarge {
                    journey: &t.journey,
                    bytes: t.bytes,
                }
                .emit(&self.tel);
            }
            out.extend(messages.into_iter().map(|m| (key.clone(), m)));
        }
        Ok(out)
    }
}

/// Runs cerflow until SIGINT or SIGTERM. With `config_path`, SIGHUP or a change of the
/// file reloads it.
pub async fn run(cfg: Config, config_path: Option<std::path::PathBuf>) -> Result<(), String> {
    let tel = Arc::new(Telemetry::default());
    let journeys = Arc::new(Journeys::new(&cfg));
    let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
    let input = pipeline.input();
    let partial_taker = pipeline.partial_taker();
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

    let stage2_instance = cfg
        .receivers
        .kafka
        .as_ref()
        .and_then(|k| k.aggregates.as_ref())
        .map(|a| a.instance.clone());
    // Stage 2: the owned journeys' state, fed by the owners' consumer started below.
    let owners = stage2_instance.as_ref().map(|_| {
        Arc::new(crate::owners::Owners::new(
            crate::owners::Layout {
                window_ns: cfg.windows_ns(),
                sub_buckets: cfg.windows.sub_buckets,
                n_bounds: cfg.histogram_buckets.len(),
                ttl_ns: cfg.windows.series_ttl.as_nanos() as u64,
                max_dependencies: cfg.dependencies.max_per_journey,
                max_versions: cfg.deployments.max_versions,
            },
            journeys.clone(),
            tel.clone(),
        ))
    });
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(Snapshot {
            windows: cfg.windows.sizes.clone(),
            ..Default::default()
        }),
        eval: ArcSwap::from_pointee(Evaluation::default()),
        history: Default::default(),
        ticks: tokio::sync::watch::channel(0).0,
        tel: tel.clone(),
        input,
        journeys: ArcSwap::new(journeys.clone()),
        version: ArcSwap::from_pointee(cfg.version.clone()),
        histogram_bounds: cfg.histogram_buckets.clone(),
        state_limit_bytes: cfg.limits.max_window_state_bytes,
        ready: std::sync::atomic::AtomicBool::new(false),
        // Stage 2 names the instance in its exports: the OTLP resource's
        // `service.instance.id` and the `instance` label of the journeys it owns.
        instance_id: stage2_instance.clone().unwrap_or_else(instance_id),
        start_unix_ns: now_unix_ns(),
        instance_label: stage2_instance,
        all_snapshots: Default::default(),
    });

    let tracker = crate::deriver::restore_slo_state(&cfg, &journeys);
    crate::deriver::restore_attempts(&cfg, &ingest);
    let owner_state = match cfg
        .receivers
        .kafka
        .as_ref()
        .and_then(|k| Some((k, k.aggregates.as_ref()?)))
    {
        Some((k, a)) => {
            // The changelog and snapshots topics are compacted; made here when absent.
            crate::kstate::ensure_topics_beside(k, &a.state, &a.topic).await?;
            let mut st = crate::kstate::OwnerState::new(k, &a.state, &a.instance, tel.clone())?;
            // Given before the owners' consumer starts: its first assignment too
            // restores the changelog.
            if let (Some(o), Some(r)) = (&owners, st.take_restorer()) {
                o.restore_from(Arc::new(r));
            }
            Some(st)
        }
        None => None,
    };
    let (deriver, deriver_tx, final_rx) = crate::deriver::spawn(
        &cfg,
        shared.clone(),
        ingest.clone(),
        tracker,
        pipeline,
        owners.clone(),
        owner_state,
    )?;

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
        let ingest: Arc<dyn Consumer> = ingest.clone();
        let opts = receiver::grpc::GrpcOptions {
            max_request: cfg.receivers.max_request_bytes,
            max_inflated: cfg.receivers.max_decompressed_bytes,
            auth: auth.clone(),
            tls: grpc_tls,
            timeout: cfg.receivers.request_timeout,
        };
        let score_shared = shared.clone();
        let timeout = cfg.receivers.request_timeout;
        receiver_tasks.push(tokio::spawn(async move {
            let routes = tonic::service::Routes::new(receiver::grpc::CallTimeout::new(
                crate::api::grpc_service(score_shared),
                timeout,
            ));
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
            cors: cfg.receivers.http_cors.clone(),
            public_rate: Arc::new(receiver::rate::RateLimiter::new(
                cfg.receivers.public_rate_limit,
            )),
        };
        let router = receiver::http::router(ingest.clone() as Arc<dyn Consumer>, opts);
        receiver_tasks.push(tokio::spawn(serve_http(
            l,
            router,
            http_tls,
            receivers_stop.clone(),
            "OTLP/HTTP receiver",
        )));
    }
    let kafka = match &cfg.receivers.kafka {
        Some(k) => {
            let stage2 = k.aggregates.as_ref().map(|a| receiver::kafka::Stage2 {
                barrier: Arc::new(PublishPartials {
                    taker: partial_taker.clone(),
                    instance: a.instance.clone(),
                    max_message_bytes: a.max_message_bytes,
                    sequence: std::sync::atomic::AtomicU64::new(0),
                    tel: tel.clone(),
                }),
                interval: cfg.pipeline.evaluation_interval,
            });
            let h = receiver::kafka::start(
                k,
                ingest.clone() as Arc<dyn Consumer>,
                tel.clone(),
                stage2,
            )?;
            tracing::info!(brokers = %k.brokers.join(","), topic = %k.topic, group_id = %k.group_id, "Kafka receiver consuming.");
            let o = match (&k.aggregates, &owners) {
                (Some(a), Some(o)) => {
                    let sink: Arc<dyn receiver::kafka::owners::PartialSink> = o.clone();
                    let h = receiver::kafka::owners::start(k, a, sink, tel.clone())?;
                    tracing::info!(topic = %a.topic, group_id = %receiver::kafka::owners::owners_group(k), instance = %a.instance, "Owning the journeys of the aggregates partitions Kafka assigns.");
                    Some(h)
                }
                _ => None,
            };
            Some((h, o))
        }
        None => None,
    };
    // Every instance reads the owners' snapshots, so its score API answers `scope=all`;
    // the reader stops when dropped, at the end of run.
    let _snapshot_reader = match cfg
        .receivers
        .kafka
        .as_ref()
        .and_then(|k| Some((k, k.aggregates.as_ref()?)))
    {
        Some((k, a)) => {
            let store = Arc::new(crate::kstate::snapshots::SnapshotStore::new(
                &a.state,
                tel.clone(),
            ));
            let reader =
                crate::kstate::snapshots::start_reader(k, &a.state, store.clone(), tel.clone())?;
            let _ = shared.all_snapshots.set(store);
            Some(reader)
        }
        None => None,
    };
    let admin_stop = CancellationToken::new();
    let admin_task = prom.map(|l| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(endpoint = %a, tls = prom_tls.is_some(), "Prometheus endpoint listening on /metrics.");
            if cfg.ui.enabled {
                let scheme = if prom_tls.is_some() { "https" } else { "http" };
                tracing::info!(url = %format!("{scheme}://{a}/"), auth = cfg.ui.auth.is_some(), "Web view listening.");
            }
        }
        let router = crate::admin::router(
            shared.clone(),
            &cfg.ui,
            cfg.pipeline.evaluation_interval,
            admin_stop.clone(),
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
        tokio::spawn(crate::reload::watch_config(
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
    if let Some((k, owners_consumer)) = kafka {
        // Leaving the owners' group first moves the owned journeys to the other
        // instances at once, rather than after the session timeout.
        if let Some(o) = owners_consumer {
            let _ = tokio::task::spawn_blocking(move || o.stop(grace)).await;
        }
        // It commits what was taken and leaves the group, so the partitions move at once.
        // Not a blocking task: without a broker that can hang, and the runtime would wait
        // for it at exit; a plain thread still stuck after the grace ends with the process.
        k.request_stop();
        let deadline = tokio::time::Instant::now() + grace;
        while !k.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !k.is_finished() {
            tracing::warn!(
                ?grace,
                "The Kafka receiver did not commit and leave the group within the shutdown timeout; the next owner reads its uncommitted messages again."
            );
        }
    }
    reload_stop.cancel();
    if let Some(t) = reload_task {
        let _ = t.await;
    }
    let _ = deriver_tx.send(crate::deriver::DeriverMsg::Stop);
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
            // The client address, for the rate limit on public tokens.
            let svc = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            if let Err(e) = axum::serve(l, svc)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, what, "A listener stopped with an error.");
            }
        }
    }
}
