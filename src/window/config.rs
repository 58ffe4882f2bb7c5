//! The `windows` section: window sizes, sub-buckets, clock skew and series TTL.

use crate::config::decode::{index, Ctx};
use crate::config::yaml::Node;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub sizes: Vec<Duration>,
    pub sub_buckets: u32,
    pub max_clock_skew: Duration,
    pub series_ttl: Duration,
}

pub fn decode_windows(ctx: &mut Ctx, node: &Node, out: &mut Windows) {
    let Some(m) = ctx.map(
        node,
        "windows",
        &["sizes", "sub_buckets", "max_clock_skew", "series_ttl"],
    ) else {
        return;
    };
    if let Some(n) = m.get("sizes") {
        if let Some(items) = ctx.seq(n, "windows.sizes") {
            if items.is_empty() {
                ctx.error(n.mark, "windows.sizes", "must list at least one window");
            }
            let mut sizes = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = index("windows.sizes", i);
                if let Some(d) = ctx.positive_duration(item, &p) {
                    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
                        ctx.error(
                            item.mark,
                            &p,
                            "must be a whole number of seconds, at least 1s",
                        );
                    } else if sizes.contains(&d) {
                        ctx.error(
                            item.mark,
                            &p,
                            format!("duplicate window {}", crate::duration::format_duration(d)),
                        );
                    } else {
                        sizes.push(d);
                    }
                }
            }
            if !sizes.is_empty() {
                sizes.sort();
                out.sizes = sizes;
            }
        }
    }
    if let Some(n) = m.get("sub_buckets") {
        match ctx.u64(n, "windows.sub_buckets") {
            Some(v) if (2..=600).contains(&v) => out.sub_buckets = v as u32,
            Some(_) => ctx.error(n.mark, "windows.sub_buckets", "must be between 2 and 600"),
            None => {}
        }
    }
    if let Some(n) = m.get("max_clock_skew") {
        if let Some(d) = ctx.duration(n, "windows.max_clock_skew") {
            out.max_clock_skew = d;
        }
    }
    if let Some(n) = m.get("series_ttl") {
        if let Some(d) = ctx.positive_duration(n, "windows.series_ttl") {
            out.series_ttl = d;
        }
    }
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!(
            cfg.windows.sizes,
            [Duration::from_secs(30), Duration::from_secs(600)]
        );
        assert_eq!(cfg.windows.sub_buckets, 6);
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:15: windows.sizes[1]: duplicate window 1m",
                "3:16: windows.sub_buckets: must be between 2 and 600",
            ]
        );
    }
}
