//! Config reload: SIGHUP or a changed file loads and validates the config again and
//! hands it to the deriver, which applies what can change while running.

use crate::config::Config;
use crate::deriver::DeriverMsg;
use crate::internal_events::{ConfigReloadFailed, ConfigReloaded, InternalEvent};
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the config on SIGHUP and when the file changes (checked every second).
pub async fn watch_config(
    path: std::path::PathBuf,
    deriver: crossbeam_channel::Sender<DeriverMsg>,
    tel: Arc<Telemetry>,
    stop: CancellationToken,
) {
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
                    Ok(notes) => ConfigReloaded {
                        trigger,
                        version: &version,
                        notes: &notes,
                    }
                    .emit(&tel),
                    Err(_) => return,
                }
            }
            Ok(Err(e)) => {
                ConfigReloadFailed {
                    trigger,
                    problems: &e,
                }
                .emit(&tel);
            }
            Err(e) => tracing::error!(error = %e, "The config reload task failed."),
        }
    }
}
