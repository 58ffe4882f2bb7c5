//! Decode arenas reused from request to request.
//!
//! The OTLP/JSON decoder keeps in a [`Bump`] what it cannot lend from the body
//! (unescaped strings, decoded ids). A fresh arena per request allocated its chunks
//! anew each time, and a chunk of a 1,000-span request's size is above glibc's mmap
//! threshold, so it was mapped, page-faulted in and unmapped per request. An arena taken
//! from here is reset instead and keeps its largest chunk.
//!
//! Bounded twice, like the receivers' body buffers: at most [`ArenaPool::MAX_KEPT`]
//! arenas wait in the pool, and an arena that grew past [`ArenaPool::MAX_KEPT_BYTES`]
//! (a rare huge request) is freed rather than kept, so the pool holds at most 16 MiB
//! however large requests are. An arena never used (the protobuf path allocates nothing
//! in it) is not kept: it holds nothing worth keeping.

use bumpalo::Bump;
use std::sync::Mutex;

pub struct ArenaPool {
    free: Mutex<Vec<Bump>>,
}

impl Default for ArenaPool {
    fn default() -> Self {
        ArenaPool {
            free: Mutex::new(Vec::with_capacity(Self::MAX_KEPT)),
        }
    }
}

impl ArenaPool {
    /// Enough for the requests decoded at once on the runtime's threads; more than that
    /// allocate as before.
    pub const MAX_KEPT: usize = 8;
    /// A 1,000-span JSON request puts well under 1 MiB in its arena; twice that is kept.
    pub const MAX_KEPT_BYTES: usize = 2 << 20;

    /// An empty arena, with the chunk of an earlier request's when one is free.
    pub fn take(&self) -> PooledArena<'_> {
        let arena = self
            .free
            .lock()
            .map(|mut f| f.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        PooledArena { pool: self, arena }
    }

    fn give_back(&self, mut arena: Bump) {
        let held = arena.allocated_bytes();
        if held == 0 || held > Self::MAX_KEPT_BYTES {
            return;
        }
        // Keeps only the last (largest) chunk, so a reused arena is one block.
        arena.reset();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < Self::MAX_KEPT {
                free.push(arena);
            }
        }
    }

    #[cfg(test)]
    fn kept(&self) -> Vec<usize> {
        self.free
            .lock()
            .map(|f| f.iter().map(|a| a.allocated_bytes()).collect())
            .unwrap_or_default()
    }
}

/// An arena on loan from an [`ArenaPool`]; it goes back, reset, when dropped.
pub struct PooledArena<'p> {
    pool: &'p ArenaPool,
    arena: Bump,
}

impl std::ops::Deref for PooledArena<'_> {
    type Target = Bump;
    fn deref(&self) -> &Bump {
        &self.arena
    }
}

impl Drop for PooledArena<'_> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.arena));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_arena_is_reused_reset_with_its_chunk() {
        let pool = ArenaPool::default();
        let first = {
            let a = pool.take();
            let s: &mut [u8] = a.alloc_slice_fill_copy(100_000, 7u8);
            s.as_ptr() as usize
        };
        assert_eq!(pool.kept().len(), 1);
        let a = pool.take();
        assert!(pool.kept().is_empty());
        // Reset keeps the chunk: the same allocation comes back for the same size,
        // and nothing of the earlier request is counted as in use.
        assert!(a.allocated_bytes() >= 100_000);
        let again: &mut [u8] = a.alloc_slice_fill_copy(100_000, 9u8);
        assert_eq!(
            again.as_ptr() as usize,
            first,
            "the same chunk, not a new one"
        );
    }

    #[test]
    fn the_pool_keeps_at_most_eight_arenas_of_at_most_two_mib() {
        let pool = ArenaPool::default();
        {
            // 10 arenas out at once, each used: 8 come back to the pool, 2 are freed.
            let out: Vec<PooledArena<'_>> = (0..10).map(|_| pool.take()).collect();
            for a in &out {
                a.alloc(1u64);
            }
        }
        assert_eq!(pool.kept().len(), 8);
        // Past 2 MiB (2,097,152 bytes) in one request: freed on return, so 7 stay.
        let big = pool.take();
        big.alloc_slice_fill_copy((2 << 20) + 1, 0u8);
        drop(big);
        assert_eq!(pool.kept().len(), 7);
        // An arena nothing was put in (a protobuf request) is not kept: 6 stay.
        let mut unused = pool.take();
        unused.arena = Bump::new();
        drop(unused);
        assert_eq!(pool.kept().len(), 6);
    }
}
