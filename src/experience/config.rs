//! `journeys[].experience`: web vital thresholds and frustration event names.

use crate::config::decode::{index, join, Ctx};
use crate::config::yaml::{Kind, Node};

pub const VITAL_COUNT: usize = 5;

/// The vitals cerflow knows, lower case as the semantic conventions name them; the
/// order is the index used everywhere (records, windows, exports).
pub const VITALS: [&str; VITAL_COUNT] = ["lcp", "inp", "cls", "fcp", "ttfb"];

/// The web's published "good" thresholds (web.dev): lcp 2.5 s, inp 200 ms, cls 0.1,
/// fcp 1.8 s, ttfb 800 ms; milliseconds for the time vitals, unitless for cls.
pub const DEFAULT_THRESHOLDS: [f64; VITAL_COUNT] = [2500.0, 200.0, 0.1, 1800.0, 800.0];

/// Most frustration event names a journey may list.
pub const MAX_FRUSTRATION_EVENTS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct ExperienceConfig {
    /// The "good" threshold of each vital (in [`VITALS`] order) the journey counts;
    /// `None` for a vital it does not count.
    pub thresholds: [Option<f64>; VITAL_COUNT],
    /// Event names that count as a frustration (`app.rage_click`, ...).
    pub frustration_events: Vec<String>,
}

impl Default for ExperienceConfig {
    /// lcp, inp and cls at their published thresholds, no frustration events: what a
    /// journey without `experience` counts.
    fn default() -> Self {
        let mut thresholds = [None; VITAL_COUNT];
        for (t, d) in thresholds.iter_mut().zip(DEFAULT_THRESHOLDS).take(3) {
            *t = Some(d);
        }
        ExperienceConfig {
            thresholds,
            frustration_events: Vec::new(),
        }
    }
}

/// `None` with the problems reported when the section is invalid.
pub fn decode_experience(ctx: &mut Ctx, node: &Node, path: &str) -> Option<ExperienceConfig> {
    let m = ctx.map(node, path, &["web_vitals", "frustration_events"])?;
    let mut out = ExperienceConfig::default();
    let mut ok = true;
    if let Some(n) = m.get("web_vitals") {
        let p = join(path, "web_vitals");
        let v = ctx.map(n, &p, &VITALS)?;
        out.thresholds = [None; VITAL_COUNT];
        for (i, name) in VITALS.iter().enumerate() {
            let Some(t) = v.get(name) else { continue };
            let tp = join(&p, name);
            out.thresholds[i] = match &t.kind {
                // `fcp:` with no value: the published threshold.
                Kind::Null => Some(DEFAULT_THRESHOLDS[i]),
                _ if *name == "cls" => match ctx.f64(t, &tp) {
                    Some(x) if x > 0.0 && x.is_finite() => Some(x),
                    Some(_) => {
                        ctx.error(t.mark, &tp, "must be a number above 0 (cls has no unit)");
                        None
                    }
                    None => None,
                },
                _ => ctx
                    .positive_duration(t, &tp)
                    .map(|d| d.as_secs_f64() * 1000.0),
            };
            ok &= out.thresholds[i].is_some();
        }
        if v.entries.is_empty() {
            ctx.error(n.mark, &p, "list at least one of lcp, inp, cls, fcp, ttfb");
            ok = false;
        }
    }
    if let Some(n) = m.get("frustration_events") {
        let p = join(path, "frustration_events");
        let items = ctx.seq(n, &p)?;
        for (i, item) in items.iter().enumerate() {
            let ip = index(&p, i);
            match ctx.non_empty_string(item, &ip) {
                Some(e) if out.frustration_events.contains(&e) => {
                    ctx.error(item.mark, &ip, format!("\"{e}\" is listed twice"));
                    ok = false;
                }
                Some(e) => out.frustration_events.push(e),
                None => ok = false,
            }
        }
        if out.frustration_events.len() > MAX_FRUSTRATION_EVENTS {
            ctx.error(
                n.mark,
                &p,
                format!("at most {MAX_FRUSTRATION_EVENTS} event names"),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        let e = &cfg.journeys[0].experience;
        // lcp 3 s and cls 0.25 as given, fcp at its default, the others not counted.
        assert_eq!(
            e.thresholds,
            [Some(3000.0), None, Some(0.25), Some(1800.0), None]
        );
        assert_eq!(e.frustration_events, ["app.rage_click", "app.dead_click"]);
        assert_eq!(cfg.journeys[1].experience, Default::default());
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "5:21: journeys[0].experience.web_vitals: unknown key \"fid\" (expected one of: lcp, inp, cls, fcp, ttfb)",
                "5:35: journeys[0].experience.web_vitals.cls: must be a number above 0 (cls has no unit)",
                "5:44: journeys[0].experience.web_vitals.inp: invalid duration \"fast\" (use a number and a unit: ms, s, m, h, d, e.g. 30s or 1h30m)",
                "6:44: journeys[0].experience.frustration_events[1]: \"app.rage_click\" is listed twice",
            ]
        );
    }
}
