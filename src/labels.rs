//! Label names: how an attribute key becomes a metric label, and the names the
//! exporters reserve for themselves. A leaf: it depends on nothing of cerflow's.

/// Labels the exporters set themselves; a cohort key must not turn into one of them.
pub const RESERVED: [&str; 6] = ["journey", "window", "quantile", "le", "sli", "severity"];

/// Turns an attribute key into a Prometheus label name (`cloud.region` -> `cloud_region`).
pub fn sanitize_label(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sanitised_like_the_collector() {
        assert_eq!(sanitize_label("cloud.region"), "cloud_region");
        assert_eq!(sanitize_label("app.plan-tier"), "app_plan_tier");
        assert_eq!(sanitize_label("1st"), "_1st");
    }
}
