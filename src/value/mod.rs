//! Match: the money a request carries, for value at risk. Read where the span is
//! matched and carried in the record as one `f64`, like the user hash.

pub mod config;

pub use config::{Source, ValueRule};

use crate::span::SpanView;

/// The value of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// The span carries no value attribute.
    None,
    Valid(f64),
    /// Present but not a number, negative or not finite: ignored for value, counted.
    Invalid,
}

impl ValueRule {
    pub fn read<S: SpanView + ?Sized>(&self, span: &S) -> Value {
        match &self.source {
            Source::PerRequest(v) => Value::Valid(*v),
            Source::Attribute(key) => match span.attr(key) {
                None => Value::None,
                Some(a) => match a.as_f64() {
                    Some(v) if v.is_finite() && v >= 0.0 => Value::Valid(v),
                    _ => Value::Invalid,
                },
            },
        }
    }
}
