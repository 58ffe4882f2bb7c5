//! Match: who the customer behind a span is, as a 64-bit hash of the user id.
//!
//! The hash is taken where the span is matched and travels in the record, so no user
//! id is copied or allocated per span; the workers' sketches only ever see hashes.

pub mod config;

use crate::span::{attr_keys, AttrKey, AttrValue, SpanView};
use std::hash::{BuildHasher, Hasher};

/// Fixed seeds: a checkpointed sketch must hash the same user to the same value after
/// a restart of the same build.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004)
}

/// Reads the user id of spans by the configured keys.
#[derive(Debug, Clone)]
pub struct UserKeys {
    keys: Box<[AttrKey]>,
    /// The keys' filter bits ORed: most spans carry no user key at all, and a span
    /// whose key filter shares no bit with this is answered without a lookup.
    bits: u64,
    hasher: ahash::RandomState,
}

impl UserKeys {
    pub fn new(keys: &[String]) -> UserKeys {
        let keys = attr_keys(keys);
        UserKeys {
            bits: keys.iter().fold(0, |m, k| m | k.bit()),
            keys,
            hasher: hasher(),
        }
    }

    /// The hash of the first present key's value (span attribute, then resource), or
    /// `None` when the span names no user. An empty string names no one.
    #[inline]
    pub fn user_hash<S: SpanView + ?Sized>(&self, span: &S) -> Option<u64> {
        if span.key_filter() & self.bits == 0 {
            return None;
        }
        for k in self.keys.iter() {
            let Some(v) = span.attr_key(k) else { continue };
            let mut h = self.hasher.build_hasher();
            match v {
                AttrValue::Str("") | AttrValue::Other => continue,
                AttrValue::Str(s) => h.write(s.as_bytes()),
                AttrValue::Int(i) => h.write_i64(i),
                AttrValue::Double(d) => h.write_u64(d.to_bits()),
                AttrValue::Bool(b) => h.write_u8(b as u8),
            }
            return Some(h.finish());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Span and resource attributes, all strings: all a user lookup reads.
    #[derive(Default)]
    struct Attrs {
        span: Vec<(&'static str, &'static str)>,
        resource: Vec<(&'static str, &'static str)>,
        /// Answer [`SpanView::key_filter`] from the keys, as the lazy decoders do.
        filtered: bool,
    }

    fn find<'a>(kv: &'a [(&str, &'static str)], key: &str) -> Option<AttrValue<'a>> {
        kv.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| AttrValue::Str(v))
    }

    impl SpanView for Attrs {
        fn service_name(&self) -> &str {
            ""
        }
        fn name(&self) -> &str {
            ""
        }
        fn kind(&self) -> i32 {
            0
        }
        fn status_code(&self) -> i32 {
            0
        }
        fn start_ns(&self) -> u64 {
            0
        }
        fn end_ns(&self) -> u64 {
            0
        }
        fn span_attr(&self, key: &str) -> Option<AttrValue<'_>> {
            find(&self.span, key)
        }
        fn resource_attr(&self, key: &str) -> Option<AttrValue<'_>> {
            find(&self.resource, key)
        }
        fn any_event(&self, _: &mut dyn FnMut(&str) -> bool) -> bool {
            false
        }
        fn key_filter(&self) -> u64 {
            if !self.filtered {
                return crate::span::ANY_KEY;
            }
            self.span
                .iter()
                .chain(&self.resource)
                .fold(0, |m, (k, _)| m | crate::span::key_bit(k))
        }
    }

    /// Most spans name no user: their key filter answers without a lookup, and a span
    /// that names one is found whether its view keeps a filter or not.
    #[test]
    fn the_key_filter_answers_for_absent_user_keys_and_keeps_present_ones() {
        let keys = UserKeys::new(&["enduser.id".into(), "session.id".into()]);
        let mut s = Attrs {
            filtered: true,
            ..Attrs::default()
        };
        s.span.push(("http.route", "/cart"));
        s.resource.push(("cloud.region", "eu-west-1"));
        // Different lengths from both user keys: their bits are not the filter's.
        assert_eq!(s.key_filter() & keys.bits, 0);
        assert_eq!(keys.user_hash(&s), None);
        s.resource.push(("session.id", "s1"));
        let filtered = keys.user_hash(&s);
        s.filtered = false;
        assert!(filtered.is_some());
        assert_eq!(filtered, keys.user_hash(&s));
    }

    #[test]
    fn the_first_present_key_wins_and_span_attributes_come_before_the_resource() {
        let keys = UserKeys::new(&["enduser.id".into(), "session.id".into()]);
        let mut s = Attrs::default();
        assert_eq!(keys.user_hash(&s), None, "no key: a request but no user");
        s.span.push(("enduser.id", ""));
        assert_eq!(keys.user_hash(&s), None, "an empty id names no one");
        s.span.clear();
        s.resource.push(("session.id", "s1"));
        let by_session = keys.user_hash(&s).unwrap();
        s.resource.push(("enduser.id", "u1"));
        let by_resource_user = keys.user_hash(&s).unwrap();
        assert_ne!(by_resource_user, by_session, "enduser.id comes first");
        s.span.push(("enduser.id", "u1"));
        assert_eq!(
            keys.user_hash(&s),
            Some(by_resource_user),
            "same id, same user"
        );
        s.span[0].1 = "u2";
        assert_ne!(
            keys.user_hash(&s),
            Some(by_resource_user),
            "the span's own attribute wins"
        );
    }
}
