//! Checked edits of config text: a variant of a base config must never fall back to the
//! defaults silently because the text it edits has changed.

/// `text` with the one occurrence of `pattern` replaced by `with`; panics when `pattern`
/// occurs zero or several times.
#[track_caller]
pub fn replace_once(text: &str, pattern: &str, with: &str) -> String {
    let n = text.matches(pattern).count();
    assert!(
        n == 1,
        "{pattern:?} occurs {n} times, want once, in:\n{text}"
    );
    text.replacen(pattern, with, 1)
}

/// `yaml` with `settings` (indented by 4) added under `receivers.otlp`.
#[track_caller]
pub fn with_otlp_receiver_settings(yaml: &str, settings: &str) -> String {
    replace_once(
        yaml,
        "receivers:\n  otlp:\n",
        &format!("receivers:\n  otlp:\n{settings}"),
    )
}

/// `yaml` (from [`super::Ports::listeners_yaml`]) with a `receivers.kafka` section
/// reading `topic` as consumer group `group` from `bootstrap`, from the earliest offset
/// (a test produces before or after the group forms), plus `settings` (indented by 4).
#[track_caller]
pub fn with_kafka_receiver(
    yaml: &str,
    bootstrap: &str,
    topic: &str,
    group: &str,
    settings: &str,
) -> String {
    replace_once(
        yaml,
        "receivers:\n",
        &format!(
            "receivers:\n  kafka:\n    brokers: [\"{bootstrap}\"]\n    topic: {topic}\n    group_id: {group}\n    initial_offset: earliest\n{settings}"
        ),
    )
}
