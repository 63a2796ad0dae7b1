//! How answers are written: the native JSON API and its server-sent events, or OpenAI's
//! shapes. One handler serves both; only this choice differs.

use bytes::Bytes;
use serde_json::{json, Value};

use domain::stream::StreamEvent;

use crate::answered::{Answered, StreamMeta};
use crate::error::ApiError;
use crate::openai::{self, ChunkWriter, OpenAiOptions};
use crate::sse::sse_event;

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
    let mut answer = json!({
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
    });
    // Converse's shape, when a tier was asked for: the tier Bedrock served.
    if let Some(tier) = answered.answer.service_tier {
        answer["serviceTier"] = json!({"type": tier.as_str()});
    }
    if let Some(latency) = answered.answer.latency {
        answer["performanceConfig"] = json!({"latency": latency.as_str()});
    }
    // The model a prompt router chose (`modelId` stays the router, whose answer this is).
    if let Some(invoked) = &answered.answer.invoked_model {
        answer["invokedModelId"] = json!(invoked);
    }
    answer
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
                StreamEvent::Started
                | StreamEvent::Stopped { .. }
                | StreamEvent::Usage(_)
                | StreamEvent::Served { .. } => None,
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
