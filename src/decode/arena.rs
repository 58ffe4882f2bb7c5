//! Decode scratch memory reused from request to request: arenas and lists.
//!
//! The OTLP/JSON decoder keeps in a [`Bump`] what it cannot lend from the body
//! (unescaped strings, decoded ids). A fresh arena per request allocated its chunks
//! anew each time, and a chunk of a 1,000-span request's size is above glibc's mmap
//! threshold, so it was mapped, page-faulted in and unmapped per request. An arena taken
//! from here is reset instead and keeps its largest chunk. The same holds for the
//! lists both lazy decoders fill ([`Lists`]: spans, attributes, resources, event
//! names; ~0.6 MB for 1,000 JSON spans), which a [`ListPool`] keeps.
//!
//! Bounded as every [`crate::pool::Pool`] is (8 items of at most 2 MiB each). An arena
//! never used (the protobuf path allocates nothing in it) is not kept: it holds nothing.

use super::lazy::Lists;
use crate::pool::{Pool, Pooled, Reusable};
use bumpalo::Bump;

pub type ArenaPool = Pool<Bump>;
/// An arena on loan from an [`ArenaPool`].
pub type PooledArena<'p> = Pooled<'p, Bump>;

impl Reusable for Bump {
    fn held(&self) -> usize {
        self.allocated_bytes()
    }
    /// Keeps only the last (largest) chunk, so a reused arena is one block.
    fn reset(&mut self) {
        Bump::reset(self);
    }
}

pub type ListPool = Pool<Lists>;

impl Reusable for Lists {
    fn held(&self) -> usize {
        Lists::held(self)
    }
    /// Already empty: [`super::lazy::TraceRequest::into_lists`] empties them.
    fn reset(&mut self) {}
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
        unused.item = Bump::new();
        drop(unused);
        assert_eq!(pool.kept().len(), 6);
    }

    #[test]
    fn lists_keep_their_memory_between_requests() {
        use crate::decode::{json, lazy::TraceRequest};
        let pool = ListPool::default();
        // Two spans of three attributes each, one resource of one attribute.
        let span = |id: &str| {
            format!(
                r#"{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"{id}","name":"s","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{{"key":"a","value":{{"intValue":"1"}}}},{{"key":"b","value":{{"intValue":"2"}}}},{{"key":"c","value":{{"intValue":"3"}}}}]}}"#
            )
        };
        let body = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"web"}}}}]}},"scopeSpans":[{{"spans":[{},{}]}}]}}]}}"#,
            span("0102030405060708"),
            span("0102030405060709")
        );
        let arena = Bump::new();
        let decode = |lists| -> TraceRequest<'_> {
            json::decode_traces_in(body.as_bytes(), &arena, lists, 16, 10).expect("valid")
        };
        let (spans_at, attrs_at) = {
            let mut lists = pool.take();
            let req = decode(std::mem::take(&mut lists.item));
            assert_eq!(req.span_count(), 2);
            assert_eq!(req.spans().map(|s| s.span_attrs().len()).sum::<usize>(), 6);
            lists.item = req.into_lists();
            (lists.item.spans_ptr(), lists.item.span_attrs_ptr())
        };
        assert_eq!(pool.kept().len(), 1);
        // The second request gets the same two allocations back, empty, and reads
        // the same 2 spans and 6 attributes into them.
        let mut lists = pool.take();
        assert!(pool.kept().is_empty());
        let req = decode(std::mem::take(&mut lists.item));
        assert_eq!(req.span_count(), 2);
        assert_eq!(req.spans().map(|s| s.span_attrs().len()).sum::<usize>(), 6);
        let back = req.into_lists();
        assert_eq!(back.spans_ptr(), spans_at, "the same spans allocation");
        assert_eq!(
            back.span_attrs_ptr(),
            attrs_at,
            "the same attributes allocation"
        );
        // A request that is refused does not give its lists back: nothing is kept.
        drop(pool.take());
        assert!(pool.kept().is_empty());
    }
}
