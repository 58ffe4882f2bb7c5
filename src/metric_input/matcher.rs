//! Which inputs a metric data point feeds: inputs are found by metric name (one hash
//! lookup per point, no allocation), then each one's condition is evaluated on the
//! point through [`PointView`] with the one rule language journeys use for spans.

use super::{Point, PointView};
use crate::predicate::Cond;
use std::collections::HashMap;

/// Inputs of type `T` (a journey's signal, later a journey's metric input), by metric.
pub struct Matcher<T> {
    by_metric: HashMap<Box<str>, Vec<(Option<Cond>, T)>>,
}

impl<T> Default for Matcher<T> {
    fn default() -> Self {
        Matcher {
            by_metric: HashMap::new(),
        }
    }
}

impl<T> Matcher<T> {
    /// Adds an input of metric `name`, taking the points `cond` holds for (all without one).
    pub fn add(&mut self, name: &str, cond: Option<Cond>, input: T) {
        self.by_metric
            .entry(name.into())
            .or_default()
            .push((cond, input));
    }

    /// Whether any input reads metric `name`: points of other metrics can be skipped
    /// before anything else is looked at.
    pub fn wants(&self, name: &str) -> bool {
        self.by_metric.contains_key(name)
    }

    /// Calls `f` with every input the point feeds, in the order they were added.
    pub fn each_match(&self, p: &Point<'_>, mut f: impl FnMut(&T)) {
        let Some(inputs) = self.by_metric.get(p.metric) else {
            return;
        };
        let view = PointView(p);
        for (cond, input) in inputs {
            if cond.as_ref().is_none_or(|c| c.eval(&view)) {
                f(input);
            }
        }
    }

    /// Whether the point feeds any input.
    pub fn any_match(&self, p: &Point<'_>) -> bool {
        let mut any = false;
        self.each_match(p, |_| any = true);
        any
    }
}
