//! The `pipeline` and `limits` sections: workers, queues, evaluation interval, and the
//! bounds on series and window memory the workers enforce.

use crate::config::decode::Ctx;
use crate::config::yaml::Node;
use std::time::Duration;

/// Bounds on the state cerflow keeps, whatever its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Cohort series per journey; past it, spans go to one overflow series per journey.
    pub max_series_per_journey: usize,
    /// Heap bytes of window state over all workers; past it, new series overflow too.
    pub max_window_state_bytes: usize,
    /// Attempts (`journeys[].completion`) waiting for completion; past it, new ones are
    /// not tracked and are counted.
    pub max_pending_attempts: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub workers: usize,
    /// Batches each worker's queue holds before receivers refuse with "retry later".
    pub queue_size: usize,
    /// Heap bytes of the batches each worker's queue holds before receivers refuse with
    /// "retry later": a batch's size follows its request's, so a count of batches alone
    /// does not bound the memory a backlog takes.
    pub queue_bytes: usize,
    pub evaluation_interval: Duration,
    pub shutdown_timeout: Duration,
}

/// Below one 1,000-span request's batch for a worker (~100 KB), nearly every request
/// would find the queue "full" until it is empty.
const MIN_QUEUE_BYTES: u64 = 64 << 10;

pub fn decode_pipeline(ctx: &mut Ctx, node: &Node, out: &mut Pipeline) {
    let Some(m) = ctx.map(
        node,
        "pipeline",
        &[
            "workers",
            "queue_size",
            "queue_bytes",
            "evaluation_interval",
            "shutdown_timeout",
        ],
    ) else {
        return;
    };
    if let Some(n) = m.get("workers") {
        match ctx.u64(n, "pipeline.workers") {
            Some(v) if (1..=256).contains(&v) => out.workers = v as usize,
            Some(_) => ctx.error(n.mark, "pipeline.workers", "must be between 1 and 256"),
            None => {}
        }
    }
    if let Some(n) = m.get("queue_size") {
        match ctx.u64(n, "pipeline.queue_size") {
            Some(v) if v >= 1 => out.queue_size = v as usize,
            Some(_) => ctx.error(n.mark, "pipeline.queue_size", "must be at least 1"),
            None => {}
        }
    }
    if let Some(n) = m.get("queue_bytes") {
        match ctx.u64(n, "pipeline.queue_bytes") {
            Some(v) if v >= MIN_QUEUE_BYTES => out.queue_bytes = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "pipeline.queue_bytes",
                "must be at least 65536 (64 KiB)",
            ),
            None => {}
        }
    }
    if let Some(n) = m.get("evaluation_interval") {
        if let Some(d) = ctx.positive_duration(n, "pipeline.evaluation_interval") {
            if d < Duration::from_millis(100) {
                ctx.error(
                    n.mark,
                    "pipeline.evaluation_interval",
                    "must be at least 100ms",
                );
            } else {
                out.evaluation_interval = d;
            }
        }
    }
    if let Some(n) = m.get("shutdown_timeout") {
        if let Some(d) = ctx.positive_duration(n, "pipeline.shutdown_timeout") {
            out.shutdown_timeout = d;
        }
    }
}

pub fn decode_limits(ctx: &mut Ctx, n: &Node, out: &mut Limits) {
    if let Some(l) = ctx.map(
        n,
        "limits",
        &[
            "max_series_per_journey",
            "max_window_state_bytes",
            "max_pending_attempts",
        ],
    ) {
        if let Some(x) = l.get("max_pending_attempts") {
            match ctx.u64(x, "limits.max_pending_attempts") {
                Some(v) if v >= 1 => out.max_pending_attempts = v as usize,
                Some(_) => ctx.error(x.mark, "limits.max_pending_attempts", "must be at least 1"),
                None => {}
            }
        }
        if let Some(x) = l.get("max_series_per_journey") {
            match ctx.u64(x, "limits.max_series_per_journey") {
                Some(v) if v >= 1 => out.max_series_per_journey = v as usize,
                Some(_) => ctx.error(
                    x.mark,
                    "limits.max_series_per_journey",
                    "must be at least 1",
                ),
                None => {}
            }
        }
        if let Some(x) = l.get("max_window_state_bytes") {
            match ctx.u64(x, "limits.max_window_state_bytes") {
                Some(v) if v >= 1 << 20 => out.max_window_state_bytes = v as usize,
                Some(_) => ctx.error(
                    x.mark,
                    "limits.max_window_state_bytes",
                    "must be at least 1048576 (1 MiB)",
                ),
                None => {}
            }
        }
    }
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!((cfg.pipeline.workers, cfg.pipeline.queue_size), (4, 64));
        assert_eq!(cfg.pipeline.queue_bytes, 1 << 20);
        assert_eq!(cfg.limits.max_series_per_journey, 10);
        assert_eq!(cfg.pipeline.evaluation_interval, Duration::from_secs(1));
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:12: pipeline.workers: must be between 1 and 256",
                "3:16: pipeline.queue_bytes: must be at least 65536 (64 KiB)",
                "4:24: pipeline.evaluation_interval: must be greater than 0",
                "6:27: limits.max_window_state_bytes: must be at least 1048576 (1 MiB)",
            ]
        );
    }
}
