//! A bounded pool of request-sized scratch memory (body buffers, decode arenas) lent to
//! one request at a time and given back when the loan is dropped.
//!
//! Bounded twice: at most [`MAX_KEPT`] items wait in a pool, and an item that grew past
//! [`MAX_KEPT_BYTES`] (a rare huge request) is freed rather than kept, so one pool holds
//! at most 16 MiB however large requests are. A miss only costs the allocation the
//! caller would have made without the pool.

use std::sync::Mutex;

/// Enough for the requests in flight on a few connections; more than that allocate.
pub const MAX_KEPT: usize = 8;
/// Twice the ~1 MB of a 1,000-span OTLP/JSON request.
pub const MAX_KEPT_BYTES: usize = 2 << 20;

/// Scratch memory a pool can keep between requests.
pub trait Reusable: Default {
    /// Heap bytes it holds; 0 means nothing worth keeping.
    fn held(&self) -> usize;
    /// Empties it for the next request, keeping its memory.
    fn reset(&mut self);
}

pub struct Pool<T> {
    free: Mutex<Vec<T>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            free: Mutex::new(Vec::with_capacity(MAX_KEPT)),
        }
    }
}

impl<T: Reusable> Pool<T> {
    /// An empty item, with the memory of an earlier request's when one is free.
    pub fn take(&self) -> Pooled<'_, T> {
        let item = self
            .free
            .lock()
            .map(|mut f| f.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        Pooled { pool: self, item }
    }

    fn give_back(&self, mut item: T) {
        let held = item.held();
        if held == 0 || held > MAX_KEPT_BYTES {
            return;
        }
        item.reset();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < MAX_KEPT {
                free.push(item);
            }
        }
    }

    /// The bytes each kept item holds (tests of the pools' users).
    #[cfg(test)]
    pub fn kept(&self) -> Vec<usize> {
        self.free
            .lock()
            .map(|f| f.iter().map(Reusable::held).collect())
            .unwrap_or_default()
    }
}

/// An item on loan from a [`Pool`]; it goes back, reset, when dropped.
pub struct Pooled<'p, T: Reusable> {
    pool: &'p Pool<T>,
    pub item: T,
}

impl<T: Reusable> std::ops::Deref for Pooled<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T: Reusable> Drop for Pooled<'_, T> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.item));
    }
}
