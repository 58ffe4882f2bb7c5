//! Cumulative streams to deltas. A stream is one resource + scope + metric name +
//! point attributes ([`super::Point::stream_id`]); the table keeps its last point so
//! the next one becomes an increment.
//!
//! - A reset (the start time changed, or the value went down) counts the new value
//!   whole: the counter started again from zero at its new start.
//! - The first point of a stream that started before cerflow did is a baseline: what
//!   it counts happened before cerflow could see it, so it is not counted. A stream that
//!   started after cerflow counts its first value whole.
//! - A point no newer than the last one (a retry, a duplicate) counts nothing.
//! - The table holds at most `max` streams; a new stream past it is refused (the
//!   caller counts it). Streams not seen for `ttl` are forgotten, so a stream that
//!   comes back starts over with a baseline or a whole first value.
//!
//! A stream may carry several numbers that move together (a histogram's count, sum and
//! bucket counts, [`StreamTable::cumulative_many`]): a reset is any of them going down,
//! and the increment is taken number by number. Their count is the caller's bound (a
//! journey's histogram layout), never the sender's.
//!
//! Delta streams need no memory and do not pass through here.

use std::collections::HashMap;

#[derive(Debug, Clone)]
struct Stream {
    start_ns: u64,
    time_ns: u64,
    /// Allocated when the stream is new; later points of the same shape reuse it.
    values: Box<[f64]>,
    /// Arrival time of its last point, for expiry.
    seen_ns: u64,
}

/// What a cumulative point adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Increment {
    /// This much since the stream's previous point (or since its start).
    By(f64),
    /// Nothing: a baseline, or a point no newer than the last.
    Nothing,
}

/// The table is full and the point opens a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Stream ids are already hashes: no need to hash them again.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type BuildId = std::hash::BuildHasherDefault<IdHasher>;

pub struct StreamTable {
    streams: HashMap<u64, Stream, BuildId>,
    max: usize,
    ttl_ns: u64,
    /// When cerflow started: streams that started before are baselined.
    started_ns: u64,
}

impl StreamTable {
    pub fn new(max: usize, ttl_ns: u64, started_ns: u64) -> StreamTable {
        StreamTable {
            streams: HashMap::default(),
            max,
            ttl_ns,
            started_ns,
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The increment of a cumulative point of stream `id`, arriving at `now`.
    pub fn cumulative(
        &mut self,
        id: u64,
        start_ns: u64,
        time_ns: u64,
        value: f64,
        now: u64,
    ) -> Result<Increment, Full> {
        let mut inc = [0.0];
        Ok(
            if self.cumulative_many(id, start_ns, time_ns, &[value], now, &mut inc)? {
                Increment::By(inc[0])
            } else {
                Increment::Nothing
            },
        )
    }

    /// [`StreamTable::cumulative`] for a point of several numbers: writes their increments
    /// into `inc` (as long as `values`) and returns whether anything counts (`false` for a
    /// baseline or a point no newer than the last).
    pub fn cumulative_many(
        &mut self,
        id: u64,
        start_ns: u64,
        time_ns: u64,
        values: &[f64],
        now: u64,
        inc: &mut [f64],
    ) -> Result<bool, Full> {
        let Some(s) = self.streams.get_mut(&id) else {
            if self.streams.len() >= self.max {
                return Err(Full);
            }
            self.streams.insert(
                id,
                Stream {
                    start_ns,
                    time_ns,
                    values: values.into(),
                    seen_ns: now,
                },
            );
            // An unknown start (0) cannot be shown to be after ours: a baseline.
            let counts = start_ns != 0 && start_ns >= self.started_ns;
            if counts {
                inc.copy_from_slice(values);
            }
            return Ok(counts);
        };
        s.seen_ns = now;
        let restarted = start_ns != s.start_ns || s.values.len() != values.len();
        if !restarted && time_ns <= s.time_ns {
            return Ok(false);
        }
        let reset = restarted || values.iter().zip(s.values.iter()).any(|(v, old)| v < old);
        for ((i, v), old) in inc.iter_mut().zip(values).zip(s.values.iter()) {
            *i = if reset { *v } else { v - old };
        }
        if s.values.len() == values.len() {
            s.values.copy_from_slice(values);
        } else {
            s.values = values.into();
        }
        s.start_ns = start_ns;
        s.time_ns = time_ns;
        Ok(true)
    }

    /// Forgets streams not seen for the ttl; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.streams.len();
        let ttl = self.ttl_ns;
        self.streams
            .retain(|_, s| now.saturating_sub(s.seen_ns) < ttl);
        before - self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const STARTED: u64 = 1000 * S;

    #[test]
    fn a_stream_older_than_cerflow_is_a_baseline_then_counts_increments() {
        let mut t = StreamTable::new(10, 60 * S, STARTED);
        // Started before cerflow: its 40 happened unseen.
        assert_eq!(
            t.cumulative(1, 500 * S, 1010 * S, 40.0, 1010 * S),
            Ok(Increment::Nothing)
        );
        // 40 -> 43: 3 restarts.
        assert_eq!(
            t.cumulative(1, 500 * S, 1020 * S, 43.0, 1020 * S),
            Ok(Increment::By(3.0))
        );
        // The same point again (a retry) adds nothing.
        assert_eq!(
            t.cumulative(1, 500 * S, 1020 * S, 43.0, 1021 * S),
            Ok(Increment::Nothing)
        );
    }

    #[test]
    fn a_stream_younger_than_cerflow_counts_its_first_value_whole() {
        let mut t = StreamTable::new(10, 60 * S, STARTED);
        assert_eq!(
            t.cumulative(1, 1005 * S, 1010 * S, 2.0, 1010 * S),
            Ok(Increment::By(2.0))
        );
        // Unknown start: a baseline.
        assert_eq!(
            t.cumulative(2, 0, 1010 * S, 9.0, 1010 * S),
            Ok(Increment::Nothing)
        );
    }

    #[test]
    fn a_reset_counts_the_new_value_whole() {
        let mut t = StreamTable::new(10, 60 * S, STARTED);
        t.cumulative(1, 500 * S, 1010 * S, 40.0, 1010 * S).unwrap();
        // The value went down with the same start (a sender that reuses its start): 5 since.
        assert_eq!(
            t.cumulative(1, 500 * S, 1020 * S, 5.0, 1020 * S),
            Ok(Increment::By(5.0))
        );
        // A new start time: the process restarted; its 7 all happened since.
        assert_eq!(
            t.cumulative(1, 1025 * S, 1030 * S, 7.0, 1030 * S),
            Ok(Increment::By(7.0))
        );
        // Then 7 -> 9.
        assert_eq!(
            t.cumulative(1, 1025 * S, 1040 * S, 9.0, 1040 * S),
            Ok(Increment::By(2.0))
        );
    }

    #[test]
    fn several_numbers_reset_together_when_any_goes_down() {
        let mut t = StreamTable::new(10, 60 * S, STARTED);
        let mut inc = [0.0; 3];
        // Count, sum, one bucket: started after cerflow, counted whole.
        let first = t.cumulative_many(1, 1005 * S, 1010 * S, &[4.0, 2.0, 1.0], 1010 * S, &mut inc);
        assert_eq!((first, inc), (Ok(true), [4.0, 2.0, 1.0]));
        // 4 -> 6, 2 -> 2.5, 1 -> 1.
        let next = t.cumulative_many(1, 1005 * S, 1020 * S, &[6.0, 2.5, 1.0], 1020 * S, &mut inc);
        assert_eq!((next, inc), (Ok(true), [2.0, 0.5, 0.0]));
        // Only the bucket went down (6 -> 7, 1 -> 0): a reset, every number counts whole.
        let reset = t.cumulative_many(1, 1005 * S, 1030 * S, &[7.0, 3.0, 0.0], 1030 * S, &mut inc);
        assert_eq!((reset, inc), (Ok(true), [7.0, 3.0, 0.0]));
        // The same time again: nothing.
        let dup = t.cumulative_many(1, 1005 * S, 1030 * S, &[7.0, 3.0, 0.0], 1031 * S, &mut inc);
        assert_eq!(dup, Ok(false));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_idle_streams() {
        let mut t = StreamTable::new(2, 60 * S, STARTED);
        t.cumulative(1, 0, 1010 * S, 1.0, 1010 * S).unwrap();
        t.cumulative(2, 0, 1010 * S, 1.0, 1040 * S).unwrap();
        assert_eq!(t.cumulative(3, 0, 1010 * S, 1.0, 1040 * S), Err(Full));
        // Stream 1 was last seen at 1010 s: 60 s later it is gone, stream 2 stays.
        assert_eq!(t.expire(1070 * S), 1);
        assert_eq!(t.len(), 1);
        // Back after expiry: a baseline again (unknown start), then increments.
        assert_eq!(
            t.cumulative(1, 0, 1080 * S, 5.0, 1080 * S),
            Ok(Increment::Nothing)
        );
        assert_eq!(
            t.cumulative(1, 0, 1090 * S, 6.0, 1090 * S),
            Ok(Increment::By(1.0))
        );
    }
}
