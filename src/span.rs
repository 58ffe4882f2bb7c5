//! What the pipeline reads of a span, independent of how it was decoded.
//!
//! Rules, cohorts and classification only ever see a [`SpanView`], so a decoder that
//! reads straight from request bytes can replace the prost one without touching them.

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

#[derive(Debug, Clone, Copy, PartialEq)]
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
}
