//! Match: who the customer behind a span is, as a 64-bit hash of the user id.
//!
//! The hash is taken where the span is matched and travels in the record, so no user
//! id is copied or allocated per span; the workers' sketches only ever see hashes.

pub mod config;

use crate::span::{AttrValue, SpanView};
use std::hash::{BuildHasher, Hasher};

/// Fixed seeds: a checkpointed sketch must hash the same user to the same value after
/// a restart of the same build.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004)
}

/// Reads the user id of spans by the configured keys.
#[derive(Debug, Clone)]
pub struct UserKeys {
    keys: Box<[Box<str>]>,
    hasher: ahash::RandomState,
}

impl UserKeys {
    pub fn new(keys: &[String]) -> UserKeys {
        UserKeys {
            keys: keys.iter().map(|k| k.as_str().into()).collect(),
            hasher: hasher(),
        }
    }

    /// The hash of the first present key's value (span attribute, then resource), or
    /// `None` when the span names no user. An empty string names no one.
    pub fn user_hash<S: SpanView + ?Sized>(&self, span: &S) -> Option<u64> {
        for k in self.keys.iter() {
            let Some(v) = span.attr(k) else { continue };
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
