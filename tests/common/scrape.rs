//! `/metrics` parsed into exact samples, and the values cerflow's histogram reports
//! for given latencies, so tests compare exact numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Labels of one sample, sorted by name.
pub type Labels = Vec<(String, String)>;

/// A parsed Prometheus text exposition: (name, sorted labels) -> value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<(String, Labels), f64>,
}

fn sorted(labels: &[(&str, &str)]) -> Labels {
    let mut v: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `{a="x",b="y"}` starting at `s[0] == '{'`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut chars = s.char_indices().skip(1).peekable();
    loop {
        // Skip separators.
        while let Some(&(_, c)) = chars.peek() {
            if c == ',' || c == ' ' {
                chars.next();
            } else {
                break;
            }
        }
        let Some(&(i, c)) = chars.peek() else {
            return Err("unterminated label set".into());
        };
        if c == '}' {
            labels.sort();
            return Ok((labels, &s[i + 1..]));
        }
        let mut name = String::new();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        match chars.next() {
            Some((_, '"')) => {}
            _ => return Err(format!("label {name} has no quoted value")),
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some((_, '"')) => break,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated value of label {name}")),
            }
        }
        labels.push((name.trim().to_string(), value));
    }
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("line {}: no value: {line}", n + 1));
            let name = line[..name_end].to_string();
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])
                    .unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1))
            } else {
                (Vec::new(), &line[name_end..])
            };
            let v = rest
                .split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("line {}: no value: {line}", n + 1));
            let v =
                parse_value(v).unwrap_or_else(|| panic!("line {}: bad value {v:?}: {line}", n + 1));
            if samples.insert((name, labels), v).is_some() {
                panic!("line {}: duplicate sample: {line}\n{text}", n + 1);
            }
        }
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    pub fn key_text(name: &str, labels: &[(&str, &str)]) -> String {
        let mut s = name.to_string();
        if !labels.is_empty() {
            s.push('{');
            for (i, (k, v)) in sorted(labels).iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{k}=\"{v}\"");
            }
            s.push('}');
        }
        s
    }

    /// The sample with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .get(&(name.to_string(), sorted(labels)))
            .copied()
    }

    /// The sample with exactly these labels; panics with the whole scrape if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {} in /metrics:\n{}",
                Scrape::key_text(name, labels),
                self.text
            )
        })
    }

    /// Asserts `name{labels} == want` exactly, showing the scrape when it is not.
    #[track_caller]
    pub fn assert(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let got = self.value(name, labels);
        assert!(
            got == want,
            "{} is {got}, expected {want}\n--- /metrics ---\n{}",
            Scrape::key_text(name, labels),
            self.text
        );
    }

    /// Asserts there is no sample `name{labels}`.
    #[track_caller]
    pub fn assert_absent(&self, name: &str, labels: &[(&str, &str)]) {
        if let Some(v) = self.get(name, labels) {
            panic!(
                "{} = {v} should not be exported\n--- /metrics ---\n{}",
                Scrape::key_text(name, labels),
                self.text
            );
        }
    }

    /// Every sample of `name` whose labels include all of `subset`.
    pub fn matching(&self, name: &str, subset: &[(&str, &str)]) -> Vec<(Labels, f64)> {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && subset
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }

    /// The sum of every sample of `name` whose labels include all of `subset`.
    pub fn sum(&self, name: &str, subset: &[(&str, &str)]) -> f64 {
        self.matching(name, subset).iter().map(|(_, v)| v).sum()
    }
}

/// The value cerflow reports for a latency of `us` microseconds: the middle of its
/// HDR bin (exact below 2048 us, then 1024 bins per power of two).
pub fn hdr_mid_us(us: u64) -> u64 {
    if us < 2048 {
        return us;
    }
    let shift = 63 - us.leading_zeros() - 10;
    let low = (us >> shift) << shift;
    let high = low + (1u64 << shift) - 1;
    low + (high - low).div_ceil(2)
}

/// The quantile `q` of `durations` as cerflow reports it, in seconds.
pub fn expected_quantile(durations: &[Duration], q: f64) -> f64 {
    let mut us: Vec<u64> = durations.iter().map(|d| d.as_micros() as u64).collect();
    us.sort_unstable();
    let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
    let v = hdr_mid_us(us[rank - 1]) as f64 / 1e6;
    let exact = us[rank - 1] as f64 / 1e6;
    assert!(
        (v - exact).abs() <= exact / 1024.0,
        "the bin middle stays within HDR precision"
    );
    v
}
