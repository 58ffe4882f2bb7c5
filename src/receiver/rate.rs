//! The rate limit on public tokens: spans (or log records, or data points) per second
//! per client address, a token bucket each, in a table of bounded size.
//!
//! A public token sits in a web page, so anyone can read it and send with it; the
//! limit keeps one address from flooding cerflow with it. The bucket holds one
//! second's allowance. A request is let through when the bucket holds its size or is
//! full (so a request larger than a second's allowance is not refused forever) and
//! takes its size, possibly into debt; the client then waits for the debt to refill.

use crate::internal_events::{InternalEvent, PublicClientsOverflow};
use crate::telemetry::Telemetry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client addresses tracked at once; past it, new addresses share one bucket.
pub const MAX_CLIENTS: usize = 100_000;

/// The address every client past [`MAX_CLIENTS`] is counted under.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    max_clients: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_sec: f64) -> RateLimiter {
        RateLimiter::with_capacity(per_sec, MAX_CLIENTS)
    }

    fn with_capacity(per_sec: f64, max_clients: usize) -> RateLimiter {
        RateLimiter {
            per_sec,
            max_clients,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` from `client`'s allowance at `now`, or says how long to wait.
    pub fn take(
        &self,
        client: IpAddr,
        n: u64,
        now: Instant,
        tel: &Telemetry,
    ) -> Result<(), Duration> {
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let cap = self.per_sec;
        let mut key = client;
        if !map.contains_key(&client) && map.len() >= self.max_clients {
            // A bucket that has refilled is the same as no bucket: forget those first.
            let per_sec = self.per_sec;
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < cap
            });
            if map.len() >= self.max_clients {
                PublicClientsOverflow {
                    max_clients: self.max_clients,
                }
                .emit(tel);
                key = OVERFLOW;
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens =
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_sec).min(cap);
        b.at = now;
        let n = n as f64;
        if b.tokens >= n || b.tokens >= cap {
            b.tokens -= n;
            return Ok(());
        }
        let short = n.min(cap) - b.tokens;
        Err(Duration::from_secs_f64(short / self.per_sec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn each_address_gets_its_allowance_per_second() {
        let tel = Telemetry::default();
        let r = RateLimiter::new(10.0);
        let t0 = Instant::now();
        // 6 + 4 = the 10 of the first second; 1 more waits 0.1 s for one to refill.
        assert_eq!(r.take(ip(1), 6, t0, &tel), Ok(()));
        assert_eq!(r.take(ip(1), 4, t0, &tel), Ok(()));
        assert_eq!(r.take(ip(1), 1, t0, &tel), Err(Duration::from_millis(100)));
        // Another address has its own bucket.
        assert_eq!(r.take(ip(2), 10, t0, &tel), Ok(()));
        // Half a second later 5 have refilled.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.take(ip(1), 5, t1, &tel), Ok(()));
        assert_eq!(r.take(ip(1), 1, t1, &tel), Err(Duration::from_millis(100)));
    }

    #[test]
    fn a_request_above_the_allowance_passes_a_full_bucket_and_leaves_a_debt() {
        let tel = Telemetry::default();
        let r = RateLimiter::new(10.0);
        let t0 = Instant::now();
        assert_eq!(r.take(ip(1), 25, t0, &tel), Ok(()));
        // The bucket is at -15: a request of 1 waits until it is at 1, 1.6 s.
        assert_eq!(r.take(ip(1), 1, t0, &tel), Err(Duration::from_millis(1600)));
        // A request of 25 again waits until the bucket is full: 2.5 s.
        assert_eq!(
            r.take(ip(1), 25, t0, &tel),
            Err(Duration::from_millis(2500))
        );
    }

    #[test]
    fn past_the_table_size_new_addresses_share_one_bucket_and_are_counted() {
        let tel = Telemetry::default();
        let r = RateLimiter::with_capacity(10.0, 2);
        let t0 = Instant::now();
        assert_eq!(r.take(ip(1), 10, t0, &tel), Ok(()));
        assert_eq!(r.take(ip(2), 10, t0, &tel), Ok(()));
        assert_eq!(r.take(ip(3), 10, t0, &tel), Ok(()));
        assert_eq!(r.take(ip(4), 1, t0, &tel), Err(Duration::from_millis(100)));
        assert_eq!(
            tel.public_clients_overflow
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        // Two seconds later every bucket has refilled, so the table has room again.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(r.take(ip(5), 10, t1, &tel), Ok(()));
        assert_eq!(
            tel.public_clients_overflow
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
