//! Request-body buffers the OTLP/HTTP receiver reuses from request to request.
//!
//! A 1,000-span OTLP/JSON body is about 1 MB: above glibc's mmap threshold, so a fresh
//! buffer per request was mapped, page-faulted in, zeroed and unmapped each time (a
//! quarter of the CPU of the JSON path, BENCHMARKS.md "OTLP/HTTP JSON"). Buffers taken
//! from here keep their pages between requests instead.
//!
//! Bounded twice: at most [`BodyPool::MAX_KEPT`] buffers wait in the pool, and a buffer
//! that grew past [`BodyPool::MAX_KEPT_BYTES`] (a rare large request) is freed rather than
//! kept, so a pool holds at most `MAX_KEPT * MAX_KEPT_BYTES` (16 MiB) however large
//! requests are. A miss only costs the allocation the receiver made before.

use std::sync::Mutex;

pub struct BodyPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Default for BodyPool {
    fn default() -> Self {
        BodyPool {
            free: Mutex::new(Vec::with_capacity(Self::MAX_KEPT)),
        }
    }
}

impl BodyPool {
    /// Enough for the requests in flight on a few connections; more requests in flight
    /// than that allocate as before.
    pub const MAX_KEPT: usize = 8;
    /// Twice the 1 MB of a 1,000-span JSON request.
    pub const MAX_KEPT_BYTES: usize = 2 << 20;

    /// An empty buffer, with the capacity of an earlier request's when one is free.
    pub fn take(&self) -> PooledBuf<'_> {
        let buf = self
            .free
            .lock()
            .map(|mut f| f.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        PooledBuf { pool: self, buf }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > Self::MAX_KEPT_BYTES {
            return;
        }
        buf.clear();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < Self::MAX_KEPT {
                free.push(buf);
            }
        }
    }

    #[cfg(test)]
    fn kept(&self) -> Vec<usize> {
        self.free
            .lock()
            .map(|f| f.iter().map(|b| b.capacity()).collect())
            .unwrap_or_default()
    }
}

/// A buffer on loan from a [`BodyPool`]; it goes back when dropped.
pub struct PooledBuf<'p> {
    pool: &'p BodyPool,
    pub buf: Vec<u8>,
}

impl Drop for PooledBuf<'_> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_empty_with_its_capacity() {
        let pool = BodyPool::default();
        let ptr = {
            let mut b = pool.take();
            b.buf.extend_from_slice(&[7u8; 1000]);
            b.buf.as_ptr()
        };
        assert_eq!(pool.kept().len(), 1);
        let b = pool.take();
        assert!(b.buf.is_empty());
        assert!(b.buf.capacity() >= 1000);
        assert_eq!(b.buf.as_ptr(), ptr, "the same allocation, not a new one");
        assert!(pool.kept().is_empty());
    }

    #[test]
    fn the_pool_keeps_at_most_eight_buffers_of_at_most_two_mib() {
        let pool = BodyPool::default();
        {
            // 10 buffers out at once: 8 come back to the pool, 2 are freed.
            let mut out: Vec<PooledBuf<'_>> = (0..10).map(|_| pool.take()).collect();
            for b in &mut out {
                b.buf.reserve(64);
            }
        }
        assert_eq!(pool.kept().len(), 8);
        let mut big = pool.take();
        // 2 MiB + 1 byte is over the limit: freed on return, so 7 stay.
        big.buf = Vec::with_capacity((2 << 20) + 1);
        drop(big);
        assert_eq!(pool.kept().len(), 7);
        // An unused (never allocated) buffer is not kept either: taking one leaves 6,
        // and giving back an empty Vec keeps 6.
        let mut none = pool.take();
        none.buf = Vec::new();
        drop(none);
        assert_eq!(pool.kept().len(), 6);
    }
}
