//! Strict decoding helpers: every problem is collected with its place, none stops the walk.

use super::yaml::{Kind, Mark, Node};
use std::fmt;
use std::time::Duration;

/// One problem in a config file, with the path of keys that leads to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.mark.line, self.mark.col, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.mark.line, self.mark.col, self.path, self.message
            )
        }
    }
}

#[derive(Default)]
pub struct Ctx {
    pub problems: Vec<Problem>,
}

impl Ctx {
    pub fn error(&mut self, node_mark: Mark, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            mark: node_mark,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Opens a mapping and reports every key not in `allowed`.
    pub fn map<'a>(&mut self, node: &'a Node, path: &str, allowed: &[&str]) -> Option<MapView<'a>> {
        match &node.kind {
            Kind::Map(entries) => {
                let mut seen: Vec<&str> = Vec::new();
                for (k, _) in entries {
                    let key = match &k.kind {
                        Kind::Scalar(s, _) => s.as_str(),
                        _ => {
                            self.error(k.mark, path, "mapping keys must be strings");
                            continue;
                        }
                    };
                    if !allowed.contains(&key) {
                        self.error(
                            k.mark,
                            path,
                            format!(
                                "unknown key \"{key}\" (expected one of: {})",
                                allowed.join(", ")
                            ),
                        );
                    } else if seen.contains(&key) {
                        self.error(k.mark, path, format!("duplicate key \"{key}\""));
                    }
                    seen.push(key);
                }
                Some(MapView {
                    entries,
                    mark: node.mark,
                })
            }
            Kind::Null => Some(MapView {
                entries: &[],
                mark: node.mark,
            }),
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected a mapping, got {}", node.describe()),
                );
                None
            }
        }
    }

    pub fn seq<'a>(&mut self, node: &'a Node, path: &str) -> Option<&'a [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            Kind::Null => Some(&[]),
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected a list, got {}", node.describe()),
                );
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar(s, _) => Some(s.clone()),
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected a string, got {}", node.describe()),
                );
                None
            }
        }
    }

    pub fn non_empty_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            self.error(node.mark, path, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn f64(&mut self, node: &Node, path: &str) -> Option<f64> {
        match &node.kind {
            Kind::Scalar(s, false) => match s.parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    self.error(node.mark, path, format!("expected a number, got \"{s}\""));
                    None
                }
            },
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected a number, got {}", node.describe()),
                );
                None
            }
        }
    }

    pub fn u64(&mut self, node: &Node, path: &str) -> Option<u64> {
        match &node.kind {
            Kind::Scalar(s, false) => match s.replace('_', "").parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    self.error(
                        node.mark,
                        path,
                        format!("expected a whole number >= 0, got \"{s}\""),
                    );
                    None
                }
            },
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected a whole number, got {}", node.describe()),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            Kind::Scalar(s, false) if s == "true" => Some(true),
            Kind::Scalar(s, false) if s == "false" => Some(false),
            _ => {
                self.error(node.mark, path, "expected true or false");
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let s = self.string(node, path)?;
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node.mark, path, e);
                None
            }
        }
    }

    pub fn positive_duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let d = self.duration(node, path)?;
        if d.is_zero() {
            self.error(node.mark, path, "must be greater than 0");
            return None;
        }
        Some(d)
    }
}

pub struct MapView<'a> {
    pub entries: &'a [(Node, Node)],
    pub mark: Mark,
}

impl<'a> MapView<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s, _) if s == key))
            .map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.entries.iter().filter_map(|(k, _)| match &k.kind {
            Kind::Scalar(s, _) => Some(s.as_str()),
            _ => None,
        })
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Parses Go-style durations as the Collector does (`500ms`, `1m30s`), plus `d` for days.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration \"{s}\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)"
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: f64 = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        let part = (number * unit_ns).round();
        if !part.is_finite() || part > u64::MAX as f64 {
            return Err(bad());
        }
        total = total.checked_add(part as u128).ok_or_else(bad)?;
    }
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| bad())
}

/// Renders a duration the way users write it in config (`5m`, `1h`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let units: [(u128, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, unit) in units {
        if ns >= size && ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_format_to_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
