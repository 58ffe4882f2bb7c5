//! What the pipeline reads of a span, independent of how it was decoded.
//!
//! Rules, cohorts and classification only ever see a [`SpanView`], so a decoder that
//! reads straight from request bytes can replace the prost one without touching them.
//! The keys they read are [`AttrKey`]s, made at config load with their [`key_bit`], so
//! a view that keeps key filters answers for an absent key without reading attributes.

/// OTLP SpanKind numbers.
pub mod kind {
    pub const UNSPECIFIED: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const SERVER: i32 = 2;
    pub const CLIENT: i32 = 3;
    pub const PRODUCER: i32 = 4;
    pub const CONSUMER: i32 = 5;
}

/// OTLP Status.code numbers.
pub mod status {
    pub const UNSET: i32 = 0;
    pub const OK: i32 = 1;
    pub const ERROR: i32 = 2;
}

/// `repr(C, u8)`: every payload at offset 8, so a value moves as aligned words. With
/// Rust's layout `Bool` sat at offset 1 and each move copied bytes 1..24 through a
/// misaligned 16-byte load that stalled on store forwarding (BENCHMARKS.md, issue 9,
/// ninth step).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, u8)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes: they exist, but no rule compares them.
    Other,
}

impl AttrValue<'_> {
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            AttrValue::Int(i) => Some(i as f64),
            AttrValue::Double(d) => Some(d),
            AttrValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Writes the value as a label value would show it.
    /// Writes the value as a label value: as [`AttrValue::write_to`], clipped to
    /// [`MAX_LABEL_VALUE_BYTES`]. Returns the bytes kept.
    #[inline]
    pub fn write_label_to(&self, out: &mut String) -> usize {
        let start = out.len();
        self.write_to(out);
        let kept = clip(&out[start..], MAX_LABEL_VALUE_BYTES).len();
        out.truncate(start + kept);
        kept
    }

    pub fn write_to(&self, out: &mut String) {
        use std::fmt::Write;
        match *self {
            AttrValue::Str(s) => out.push_str(s),
            AttrValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            AttrValue::Double(d) => {
                let _ = write!(out, "{d}");
            }
            AttrValue::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            AttrValue::Other => {}
        }
    }
}

/// One bit of a 64-bit filter of attribute keys, from a key's length, first and last
/// byte (keys share namespaces such as `http.` at the start, so the end tells more).
/// The lazy decoders OR the bits of a span's keys (and of its resource's) into a filter
/// as they read them; a key whose bit is not in a list's filter is not in the list.
#[inline]
pub const fn key_bit(key: &str) -> u64 {
    let b = key.as_bytes();
    let (first, last) = match b.len() {
        0 => (0, 0),
        n => (b[0], b[n - 1]),
    };
    let x = (b.len() as u64) << 16 | (first as u64) << 8 | last as u64;
    1 << (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// A filter that rules nothing out: what a view without key filters answers.
pub const ANY_KEY: u64 = !0;

/// An attribute key a rule, cohort or user lookup reads, with its [`key_bit`] worked out
/// once at config load rather than on every span it is looked up in.
#[derive(Clone)]
pub struct AttrKey {
    name: Box<str>,
    bit: u64,
    /// Unique to this key and its clones for the life of the process (never 0): views
    /// may remember a lookup's outcome by it (a resource's, for its spans).
    id: u64,
}

/// The next [`AttrKey::id`].
static NEXT_KEY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl AttrKey {
    pub fn new(name: &str) -> AttrKey {
        AttrKey {
            name: name.into(),
            bit: key_bit(name),
            id: NEXT_KEY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn bit(&self) -> u64 {
        self.bit
    }
}

/// Keys are equal when their names are (what a config reload compares).
impl PartialEq for AttrKey {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}

impl Eq for AttrKey {}

/// Printed as its name, so configs compared by their `Debug` text (reload
/// fingerprints) read the same as with plain strings.
impl std::fmt::Debug for AttrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.name, f)
    }
}

impl std::ops::Deref for AttrKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl From<&str> for AttrKey {
    fn from(name: &str) -> AttrKey {
        AttrKey::new(name)
    }
}

/// The keys of `names`, each with its filter bit.
pub fn attr_keys(names: &[String]) -> Box<[AttrKey]> {
    names.iter().map(|n| AttrKey::new(n)).collect()
}

/// Whether two byte strings are equal, compared a word at a time inline: attribute keys
/// and values are ~3-30 bytes, for which a call to `memcmp` costs more than the compare
/// (~19 instructions a call, several calls a span).
#[inline(always)]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n > 32 {
        return a == b;
    }
    // In bounds for the lengths each is used at; both slices have the same length, so
    // a word is missing from both or from neither.
    let word = |s: &[u8], at: usize| {
        s.get(at..)
            .and_then(|s| s.first_chunk::<8>())
            .map_or(0, |w| u64::from_le_bytes(*w))
    };
    let differ = |at: usize| word(a, at) ^ word(b, at);
    if n > 16 {
        // Two words from each end (overlapping in the middle).
        return (differ(0) | differ(8) | differ(n - 16) | differ(n - 8)) == 0;
    }
    if n >= 8 {
        return (differ(0) | differ(n - 8)) == 0;
    }
    if n >= 4 {
        let half = |s: &[u8]| {
            let first = s.first_chunk::<4>().map_or(0, |w| u32::from_le_bytes(*w));
            let last = s.last_chunk::<4>().map_or(0, |w| u32::from_le_bytes(*w));
            (u64::from(first) << 32) | u64::from(last)
        };
        return half(a) == half(b);
    }
    // 0 to 3 bytes: the first, middle and last cover them all.
    a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last()
}

pub trait SpanView {
    fn service_name(&self) -> &str;
    fn name(&self) -> &str;
    fn kind(&self) -> i32;
    fn status_code(&self) -> i32;
    fn start_ns(&self) -> u64;
    fn end_ns(&self) -> u64;
    fn span_attr(&self, key: &str) -> Option<AttrValue<'_>>;
    fn resource_attr(&self, key: &str) -> Option<AttrValue<'_>>;
    /// True when any event's name satisfies `test`.
    fn any_event(&self, test: &mut dyn FnMut(&str) -> bool) -> bool;

    /// The event name of a log record seen through this view; spans have none.
    fn event_name(&self) -> Option<&str> {
        None
    }

    /// Span attribute first, then the resource: the lookup rules and cohorts use.
    fn attr(&self, key: &str) -> Option<AttrValue<'_>> {
        self.span_attr(key).or_else(|| self.resource_attr(key))
    }

    /// The [`key_bit`]s of every attribute key of the span and of its resource, ORed:
    /// a key whose bit is clear is on neither. Views that keep no filter rule nothing out.
    fn key_filter(&self) -> u64 {
        ANY_KEY
    }

    /// [`SpanView::span_attr`] by a key whose filter bit is known: views with key
    /// filters answer an absent key without reading its attributes.
    fn span_attr_key(&self, key: &AttrKey) -> Option<AttrValue<'_>> {
        self.span_attr(key)
    }

    /// [`SpanView::resource_attr`] by a key whose filter bit is known.
    fn resource_attr_key(&self, key: &AttrKey) -> Option<AttrValue<'_>> {
        self.resource_attr(key)
    }

    /// [`SpanView::attr`] by a key whose filter bit is known.
    fn attr_key(&self, key: &AttrKey) -> Option<AttrValue<'_>> {
        self.span_attr_key(key)
            .or_else(|| self.resource_attr_key(key))
    }

    fn is_entry_point(&self) -> bool {
        matches!(self.kind(), kind::SERVER | kind::CONSUMER)
    }

    /// The trace, span and parent ids as sent (16, 8 and 0 or 8 bytes), and the W3C
    /// trace state. Views built without them (rule tests) belong to no trace.
    fn trace_id(&self) -> &[u8] {
        &[]
    }
    fn span_id(&self) -> &[u8] {
        &[]
    }
    fn parent_span_id(&self) -> &[u8] {
        &[]
    }
    fn trace_state(&self) -> &str {
        ""
    }
}

/// Longest label value cerflow makes from span data (cohort values, derived journey
/// names' parts). Longer values are cut, so one sender cannot make every scrape huge.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("aé", 2), "a", "é is two bytes and does not fit");
    }

    #[test]
    fn same_agrees_with_slice_equality() {
        // Every length through each of `same`'s branches (0-3, 4-7, 8-32, past 32):
        // equal, one byte changed at each position, and one byte longer.
        for n in 0..=40u8 {
            let a: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert!(same(&a, &a.clone()), "length {n}");
            for i in 0..usize::from(n) {
                let mut b = a.clone();
                b[i] ^= 0x40;
                assert!(!same(&a, &b), "length {n}, byte {i}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same(&a, &longer), "length {n} against {}", n + 1);
        }
    }
}
