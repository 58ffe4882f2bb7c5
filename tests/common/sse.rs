//! Server-sent events read from a live HTTP response: the web view's `/api/v1/stream`.

use std::io::{BufRead, BufReader, Read};

/// One event: its `event:` name and its `data:` lines joined by newlines.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Reads events off a streaming body, one at a time; comments (keep-alives) are skipped.
pub struct SseReader<R: Read> {
    lines: BufReader<R>,
}

impl<R: Read> SseReader<R> {
    pub fn new(body: R) -> SseReader<R> {
        SseReader {
            lines: BufReader::new(body),
        }
    }

    /// The next event, or `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent {
            event: "message".into(),
            data: String::new(),
        };
        let mut has_data = false;
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if has_data {
                    return Some(ev);
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                ev.event = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if has_data {
                    ev.data.push('\n');
                }
                ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                has_data = true;
            }
        }
    }

    /// The next event's data as JSON; panics when the stream ends first.
    pub fn next_json(&mut self) -> serde_json::Value {
        let ev = self
            .next_event()
            .expect("the stream ended before the next event");
        assert_eq!(ev.event, "snapshot");
        serde_json::from_str(&ev.data).expect("an event's data is JSON")
    }
}
