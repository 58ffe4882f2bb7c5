//! Request-body buffers the OTLP receivers (HTTP and gRPC) reuse from request to
//! request, and how a body's frames are gathered into them.
//!
//! A 1,000-span OTLP/JSON body is about 1 MB: above glibc's mmap threshold, so a fresh
//! buffer per request was mapped, page-faulted in, zeroed and unmapped each time (a
//! quarter of the CPU of the JSON path, BENCHMARKS.md "OTLP/HTTP JSON"). Buffers taken
//! from here keep their pages between requests instead.
//!
//! Bounded as every [`crate::pool::Pool`] is (8 buffers of at most 2 MiB).

use crate::pool::{Pool, Pooled, Reusable};
use bytes::Bytes;

pub type BodyPool = Pool<Vec<u8>>;
/// A buffer on loan from a [`BodyPool`].
pub type PooledBuf<'p> = Pooled<'p, Vec<u8>>;

impl Reusable for Vec<u8> {
    fn held(&self) -> usize {
        self.capacity()
    }
    fn reset(&mut self) {
        self.clear();
    }
}

/// Adds one DATA frame of a request body to those before it. The first frame is kept
/// as it came (`first`), so a body of one frame is read in place; from the second on,
/// every frame is appended to `out` (reused), which first reserves what
/// `expected(first frame)` says the whole body will take.
pub fn add_frame(
    first: &mut Option<Bytes>,
    out: &mut Vec<u8>,
    data: Bytes,
    expected: impl FnOnce(&[u8]) -> usize,
) {
    if data.is_empty() {
        return;
    }
    match first.take() {
        None if out.is_empty() => *first = Some(data),
        held => {
            if let Some(f) = held {
                out.reserve(expected(&f).max(f.len() + data.len()));
                out.extend_from_slice(&f);
            }
            out.extend_from_slice(&data);
        }
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
            b.item.extend_from_slice(&[7u8; 1000]);
            b.item.as_ptr()
        };
        assert_eq!(pool.kept().len(), 1);
        let b = pool.take();
        assert!(b.item.is_empty());
        assert!(b.item.capacity() >= 1000);
        assert_eq!(b.item.as_ptr(), ptr, "the same allocation, not a new one");
        assert!(pool.kept().is_empty());
    }

    #[test]
    fn the_pool_keeps_at_most_eight_buffers_of_at_most_two_mib() {
        let pool = BodyPool::default();
        {
            // 10 buffers out at once: 8 come back to the pool, 2 are freed.
            let mut out: Vec<PooledBuf<'_>> = (0..10).map(|_| pool.take()).collect();
            for b in &mut out {
                b.item.reserve(64);
            }
        }
        assert_eq!(pool.kept().len(), 8);
        let mut big = pool.take();
        // 2 MiB + 1 byte is over the limit: freed on return, so 7 stay.
        big.item = Vec::with_capacity((2 << 20) + 1);
        drop(big);
        assert_eq!(pool.kept().len(), 7);
        // An unused (never allocated) buffer is not kept either: taking one leaves 6,
        // and giving back an empty Vec keeps 6.
        let mut none = pool.take();
        none.item = Vec::new();
        drop(none);
        assert_eq!(pool.kept().len(), 6);
    }
}
