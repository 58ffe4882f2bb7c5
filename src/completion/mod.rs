//! Record: abandonment. An attempt starts when a span or event of a journey matches its
//! `completion.start` and names a key (`session.id`); it is completed when one with the
//! same key matches `completion.complete` within `completion.within`, else abandoned
//! when that time runs out. Pending attempts live in one table shared by the receivers
//! (keys of one attempt may reach any worker), bounded by `limits.max_pending_attempts`
//! (overflow counted), swept by the deriver on every tick and checkpointed beside the
//! SLO state. Outcomes are counted per journey in event-time rings, by the time the
//! outcome was known: the completion, or the end of the allowed time.

pub mod config;

use crate::internal_events::{AttemptsOverflow, InternalEvent};
pub use crate::journey::AttemptStep as Step;
use crate::telemetry::Telemetry;
use crate::window::{Reset, Ring};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub completed: u64,
    pub abandoned: u64,
}

impl Reset for Outcomes {
    fn reset(&mut self) {
        *self = Outcomes::default();
    }
}

impl Outcomes {
    /// abandoned / (completed + abandoned); `None` without outcomes.
    pub fn abandonment_ratio(&self) -> Option<f64> {
        let all = self.completed + self.abandoned;
        (all > 0).then(|| self.abandoned as f64 / all as f64)
    }
}

/// One journey's outcomes: totals and per-window rings.
#[derive(Debug, Clone)]
struct JourneyOutcomes {
    totals: Outcomes,
    rings: Vec<Ring<Outcomes>>,
    created_unix_ns: u64,
}

/// What the exporters show of one journey's attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptStats {
    pub journey: Arc<str>,
    pub totals: Outcomes,
    pub created_unix_ns: u64,
    /// Outcomes in each window.
    pub windows: Vec<Outcomes>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pending {
    journey: Arc<str>,
    deadline_ns: u64,
}

#[derive(Default)]
struct Table {
    /// (journey, key hash) -> attempt.
    pending: HashMap<(Arc<str>, u64), Pending>,
    /// (deadline, journey, key hash), so a sweep reads only what ran out.
    deadlines: BTreeSet<(u64, Arc<str>, u64)>,
    outcomes: HashMap<Arc<str>, JourneyOutcomes>,
}

pub struct Completions {
    table: Mutex<Table>,
    max_pending: usize,
    window_ns: Vec<u64>,
    sub_buckets: u32,
}

impl Completions {
    pub fn new(max_pending: usize, windows: &[Duration], sub_buckets: u32) -> Completions {
        Completions {
            table: Mutex::new(Table::default()),
            max_pending,
            window_ns: windows.iter().map(|w| w.as_nanos() as u64).collect(),
            sub_buckets,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    fn outcome(&self, t: &mut Table, journey: &Arc<str>, at_ns: u64, now_ns: u64, done: bool) {
        let o = t
            .outcomes
            .entry(journey.clone())
            .or_insert_with(|| JourneyOutcomes {
                totals: Outcomes::default(),
                rings: self
                    .window_ns
                    .iter()
                    .map(|&w| Ring::new(w, self.sub_buckets))
                    .collect(),
                created_unix_ns: now_ns,
            });
        let bump = |x: &mut Outcomes| {
            if done {
                x.completed += 1;
            } else {
                x.abandoned += 1;
            }
        };
        bump(&mut o.totals);
        for r in o.rings.iter_mut() {
            if let Some(slot) = r.slot_mut(at_ns, now_ns) {
                bump(slot);
            }
        }
    }

    /// Applies one span's or event's step at event time `at_ns`.
    pub fn observe(
        &self,
        journey: &Arc<str>,
        step: Step,
        at_ns: u64,
        now_ns: u64,
        tel: &Telemetry,
    ) {
        let mut t = self.lock();
        let id = (journey.clone(), step.key);
        if step.complete {
            if let Some(p) = t.pending.remove(&id) {
                t.deadlines.remove(&(p.deadline_ns, id.0.clone(), id.1));
                self.outcome(&mut t, journey, at_ns, now_ns, true);
                return;
            }
            if !step.start {
                // A completion without a pending start (started before cerflow saw it,
                // or already abandoned) is not an attempt of ours.
                return;
            }
            // Start and completion in one: completed at once.
            self.outcome(&mut t, journey, at_ns, now_ns, true);
            return;
        }
        if !step.start || t.pending.contains_key(&id) {
            return;
        }
        if t.pending.len() >= self.max_pending {
            AttemptsOverflow {
                max: self.max_pending,
            }
            .emit(tel);
            return;
        }
        let deadline_ns = at_ns.saturating_add(step.within_ns);
        t.deadlines.insert((deadline_ns, id.0.clone(), id.1));
        t.pending.insert(
            id,
            Pending {
                journey: journey.clone(),
                deadline_ns,
            },
        );
    }

    /// Counts every attempt whose time ran out by `now_ns` as abandoned, at its deadline.
    pub fn sweep(&self, now_ns: u64) {
        let mut t = self.lock();
        while let Some(first) = t.deadlines.first().cloned() {
            if first.0 > now_ns {
                break;
            }
            t.deadlines.pop_first();
            t.pending.remove(&(first.1.clone(), first.2));
            self.outcome(&mut t, &first.1, first.0, now_ns, false);
        }
    }

    /// Outcomes per journey, for the exporters.
    pub fn stats(&self, now_ns: u64) -> Vec<AttemptStats> {
        let t = self.lock();
        let mut out: Vec<AttemptStats> = t
            .outcomes
            .iter()
            .map(|(j, o)| AttemptStats {
                journey: j.clone(),
                totals: o.totals,
                created_unix_ns: o.created_unix_ns,
                windows: o
                    .rings
                    .iter()
                    .map(|r| {
                        let mut sum = Outcomes::default();
                        for s in r.live(now_ns) {
                            sum.completed += s.completed;
                            sum.abandoned += s.abandoned;
                        }
                        sum
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.journey.cmp(&b.journey));
        out
    }

    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Writes the pending attempts atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let body = {
            let t = self.lock();
            // (journey, deadline, key hash)
            let list: Vec<(&str, u64, u64)> = t
                .pending
                .iter()
                .map(|((_, k), p)| (&*p.journey, p.deadline_ns, *k))
                .collect();
            serde_json::to_vec(&list).map_err(std::io::Error::other)?
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp-attempts");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Reads pending attempts saved by [`Completions::save`]; returns how many.
    pub fn load(&self, path: &std::path::Path) -> Result<usize, String> {
        let body = std::fs::read(path).map_err(|e| e.to_string())?;
        let list: Vec<(String, u64, u64)> = serde_json::from_slice(&body)
            .map_err(|e| format!("invalid attempts checkpoint: {e}"))?;
        let mut t = self.lock();
        let mut n = 0;
        for (journey, deadline_ns, key) in list.into_iter().take(self.max_pending) {
            let journey: Arc<str> = Arc::from(journey);
            t.deadlines.insert((deadline_ns, journey.clone(), key));
            t.pending.insert(
                (journey.clone(), key),
                Pending {
                    journey,
                    deadline_ns,
                },
            );
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn step(key: u64, start: bool, complete: bool) -> Step {
        Step {
            key,
            start,
            complete,
            within_ns: 60 * S,
        }
    }

    #[test]
    fn three_starts_two_completions_one_abandoned_after_its_time() {
        let tel = Telemetry::default();
        let c = Completions::new(10, &[Duration::from_secs(300)], 10);
        let j: Arc<str> = Arc::from("checkout");
        let now = 10_000 * S;
        for k in [1, 2, 3] {
            c.observe(&j, step(k, true, false), now, now, &tel);
        }
        // A second start of 1 does not restart it; a completion of 9 was never started.
        c.observe(&j, step(1, true, false), now + S, now + S, &tel);
        c.observe(&j, step(9, false, true), now + S, now + S, &tel);
        c.observe(&j, step(1, false, true), now + 2 * S, now + 2 * S, &tel);
        c.observe(&j, step(2, false, true), now + 3 * S, now + 3 * S, &tel);
        c.sweep(now + 59 * S);
        assert_eq!(c.pending(), 1);
        c.sweep(now + 60 * S);
        assert_eq!(c.pending(), 0);
        let s = c.stats(now + 61 * S);
        let want = Outcomes {
            completed: 2,
            abandoned: 1,
        };
        assert_eq!(s[0].totals, want);
        assert_eq!(s[0].windows, [want]);
        assert_eq!(want.abandonment_ratio(), Some(1.0 / 3.0));
    }

    #[test]
    fn the_table_is_bounded_and_its_overflow_counted() {
        let tel = Telemetry::default();
        let c = Completions::new(2, &[Duration::from_secs(60)], 6);
        let j: Arc<str> = Arc::from("checkout");
        for k in 0..5 {
            c.observe(&j, step(k, true, false), 100 * S, 100 * S, &tel);
        }
        assert_eq!(c.pending(), 2);
        assert_eq!(
            tel.attempts_overflow
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn pending_attempts_survive_a_checkpoint() {
        let tel = Telemetry::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempts.ckpt");
        let c = Completions::new(10, &[Duration::from_secs(60)], 6);
        let j: Arc<str> = Arc::from("checkout");
        c.observe(&j, step(7, true, false), 100 * S, 100 * S, &tel);
        c.save(&path).unwrap();
        let back = Completions::new(10, &[Duration::from_secs(60)], 6);
        assert_eq!(back.load(&path), Ok(1));
        back.observe(&j, step(7, false, true), 101 * S, 101 * S, &tel);
        assert_eq!(back.stats(102 * S)[0].totals.completed, 1);
    }
}
