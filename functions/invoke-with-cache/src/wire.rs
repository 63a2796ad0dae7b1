//! How answers are written: the native JSON API and its server-sent events, or OpenAI's
//! shapes. One handler serves both; only this choice differs.

use bytes::Bytes;
use serde_json::{json, Value};

use domain::cache::CacheState;
use domain::conversation::ModelAnswer;
use domain::routing::Route;
use domain::stream::StreamEvent;
use domain::tiers::Tier;

use crate::error::ApiError;
use crate::openai::{self, ChunkWriter, OpenAiOptions};

/// What is known of an answer when it starts: the first event of a stream, and the headers.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMeta {
    pub request_id: String,
    /// Epoch seconds (OpenAI's `created`).
    pub created: i64,
    pub cache: CacheState,
    pub model_id: Option<String>,
    pub route: Option<Route>,
    pub tier: Option<Tier>,
    pub spilled_over: bool,
}

impl StreamMeta {
    pub fn completion_id(&self) -> String {
        format!("chatcmpl-{}", self.request_id)
    }

    #[cfg(test)]
    pub fn for_tests(request_id: &str) -> Self {
        Self {
            request_id: request_id.into(),
            created: 0,
            cache: CacheState::Miss,
            model_id: Some("m".into()),
            route: None,
            tier: None,
            spilled_over: false,
        }
    }
}

/// A whole answer with its figures.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub answer: &'a ModelAnswer,
    pub meta: &'a StreamMeta,
    pub cost_usd: f64,
    pub saved_usd: f64,
    pub on_demand_equivalent_usd: f64,
    pub latency_ms: u64,
}

/// One server-sent event without a name (OpenAI's chunks).
pub fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One named server-sent event. JSON text has no raw newline, so one `data` line holds it.
pub fn sse_event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// Which API a request came through, and so how its answer is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    Native,
    OpenAi(OpenAiOptions),
}

impl Wire {
    pub fn answer_body(&self, answered: &Answered<'_>) -> Value {
        match self {
            Self::Native => native_answer(answered),
            Self::OpenAi(_) => openai::completion(answered),
        }
    }

    pub fn error_body(&self, error: &ApiError, request_id: &str) -> Value {
        match self {
            Self::Native => error.body(request_id),
            Self::OpenAi(_) => openai::error_body(error),
        }
    }

    pub fn writer(&self, meta: &StreamMeta) -> StreamWriter {
        match self {
            Self::Native => StreamWriter::Native,
            Self::OpenAi(options) => StreamWriter::OpenAi(ChunkWriter::new(meta, options.clone())),
        }
    }
}

fn native_answer(answered: &Answered<'_>) -> Value {
    let meta = answered.meta;
    json!({
        "text": answered.answer.text(),
        "message": answered.answer.message,
        "stopReason": answered.answer.stop_reason,
        "modelId": meta.model_id,
        "route": meta.route,
        "spilledOver": meta.spilled_over,
        "tier": meta.tier,
        "cache": meta.cache,
        "usage": answered.answer.usage,
        "costUsd": answered.cost_usd,
        "onDemandEquivalentUsd": answered.on_demand_equivalent_usd,
        "savedUsd": answered.saved_usd,
        "latencyMs": answered.latency_ms,
    })
}

/// Writes one streamed answer, event by event.
#[derive(Debug)]
pub enum StreamWriter {
    /// `start`, then `text` / `toolUse` / `toolInput`, then `end` (or `error`).
    Native,
    OpenAi(ChunkWriter),
}

impl StreamWriter {
    pub fn opening(&self, meta: &StreamMeta) -> Bytes {
        match self {
            Self::Native => sse_event(
                "start",
                &json!({
                    "requestId": meta.request_id,
                    "cache": meta.cache,
                    "modelId": meta.model_id,
                    "route": meta.route,
                    "tier": meta.tier,
                    "spilledOver": meta.spilled_over,
                }),
            ),
            Self::OpenAi(writer) => writer.opening(),
        }
    }

    pub fn event(&mut self, event: &StreamEvent) -> Option<Bytes> {
        match self {
            Self::Native => match event {
                StreamEvent::Text { index, text } => {
                    Some(sse_event("text", &json!({"index": index, "text": text})))
                }
                StreamEvent::ToolUseStart {
                    index,
                    tool_use_id,
                    name,
                } => Some(sse_event(
                    "toolUse",
                    &json!({"index": index, "toolUseId": tool_use_id, "name": name}),
                )),
                StreamEvent::ToolInput { index, input } => Some(sse_event(
                    "toolInput",
                    &json!({"index": index, "input": input}),
                )),
                // Folded into `end`.
                StreamEvent::Started | StreamEvent::Stopped { .. } | StreamEvent::Usage(_) => None,
            },
            Self::OpenAi(writer) => writer.event(event),
        }
    }

    pub fn closing(&self, answered: &Answered<'_>) -> Bytes {
        match self {
            Self::Native => sse_event(
                "end",
                &json!({
                    "stopReason": answered.answer.stop_reason,
                    "usage": answered.answer.usage,
                    "cache": answered.meta.cache,
                    "costUsd": answered.cost_usd,
                    "onDemandEquivalentUsd": answered.on_demand_equivalent_usd,
                    "savedUsd": answered.saved_usd,
                    "latencyMs": answered.latency_ms,
                }),
            ),
            Self::OpenAi(writer) => writer.closing(),
        }
    }

    pub fn failure(&self, error: &ApiError, request_id: &str) -> Bytes {
        match self {
            Self::Native => sse_event("error", &error.body(request_id)),
            Self::OpenAi(writer) => writer.failure(error),
        }
    }
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
