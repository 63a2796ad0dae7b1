//! Server-sent events: written for streamed answers, and read back by clients and tests.

use bytes::Bytes;
use serde_json::Value;

/// One server-sent event without a name (OpenAI's chunks).
pub fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One named server-sent event. JSON text has no raw newline, so one `data` line holds it.
pub fn sse_event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// A server-sent event read back: its name (`None` for OpenAI's unnamed chunks) and data.
/// For clients of the function and its tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub event: Option<String>,
    pub data: String,
}

impl Sse {
    /// The data as JSON (`Null` for `[DONE]` and anything that is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Splits an event stream into its events.
pub fn parse_events(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(line) = line.strip_prefix("data: ") {
                    data.push_str(line);
                }
            }
            Sse { event, data }
        })
        .collect()
}

/// The names of a native stream's events, runs of one name counted once (`start`, `text`, `end`).
pub fn event_names(events: &[Sse]) -> Vec<&str> {
    let mut names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    names.dedup();
    names
}

/// The text deltas of a native stream, in order.
pub fn text_deltas(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("text"))
        .filter_map(|e| e.json()["text"].as_str().map(str::to_owned))
        .collect()
}
