//! Answers in OpenAI's shapes: a chat completion, streamed chunks, the model list, errors.

use bytes::Bytes;
use serde_json::{json, Value};

use domain::conversation::{ModelAnswer, Usage};
use domain::stream::StreamEvent;

use super::request::{OpenAiOptions, AUTO_MODEL};
use crate::answered::{Answered, StreamMeta};
use crate::error::ApiError;
use crate::sse::sse_data;

/// OpenAI's names for why an answer ended.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's usage: `prompt_tokens` counts every input token, cached or not, and
/// `prompt_tokens_details.cached_tokens` those read from the prompt cache (present when the
/// request used it, as OpenAI sends it).
pub(super) fn usage_json(usage: &Usage) -> Value {
    let prompt_tokens = usage.prompt_tokens();
    let mut json = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt_tokens.saturating_add(usage.output_tokens),
    });
    if usage.cache_read_input_tokens > 0 || usage.cache_write_input_tokens > 0 {
        json["prompt_tokens_details"] = json!({"cached_tokens": usage.cache_read_input_tokens});
    }
    json
}

fn tool_calls(answer: &ModelAnswer) -> Vec<Value> {
    answer
        .tool_uses()
        .map(|call| {
            json!({
                "id": call.tool_use_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.input.to_string()},
            })
        })
        .collect()
}

/// A buffered answer: `chat.completion`.
pub fn completion(answered: &Answered<'_>) -> Value {
    let answer = answered.answer;
    let text = answer.text();
    let calls = tool_calls(answer);
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut completion = json!({
        "id": answered.meta.completion_id(),
        "object": "chat.completion",
        "created": answered.meta.created,
        "model": answered.meta.model_id,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&answer.stop_reason),
        }],
        // No `system_fingerprint`: OpenAI's document types it as a string, never null, and
        // there is no fingerprint to give.
        "usage": usage_json(&answer.usage),
    });
    // The tier Bedrock served, when one was asked for (OpenAI's document: a string or absent).
    if let Some(tier) = answer.service_tier {
        completion["service_tier"] = json!(tier.as_str());
    }
    completion
}

/// OpenAI's error shape; `type` follows the status as OpenAI's own errors do.
pub fn error_body(error: &ApiError) -> Value {
    let kind = match error.status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 if error.code == "BudgetExceeded" => "insufficient_quota",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    json!({"error": {
        "message": error.message,
        "type": kind,
        "param": error.param,
        "code": error.code,
    }})
}

/// `GET /openai/v1/models`.
pub fn models<'a>(names: impl Iterator<Item = &'a str>, created: i64) -> Value {
    let data: Vec<Value> = std::iter::once(AUTO_MODEL)
        .chain(names)
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "bedrock"}))
        .collect();
    json!({"object": "list", "data": data})
}

/// Writes a streamed answer as `chat.completion.chunk` events, then `[DONE]`.
#[derive(Debug)]
pub struct ChunkWriter {
    id: String,
    created: i64,
    model: String,
    options: OpenAiOptions,
    /// Content block index of each tool call, in order: its position is OpenAI's `index`.
    tool_blocks: Vec<u32>,
}

impl ChunkWriter {
    pub fn new(meta: &StreamMeta, options: OpenAiOptions) -> Self {
        Self {
            id: meta.completion_id(),
            created: meta.created,
            model: meta.model_id.clone().unwrap_or_default(),
            options,
            tool_blocks: Vec::new(),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        sse_data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        }))
    }

    /// The first chunk carries the role.
    pub fn opening(&self) -> Bytes {
        self.chunk(json!({"role": "assistant", "content": ""}), None)
    }

    fn tool_index(&self, block: u32) -> usize {
        self.tool_blocks
            .iter()
            .position(|b| *b == block)
            .unwrap_or(0)
    }

    pub fn event(&mut self, event: &StreamEvent) -> Option<Bytes> {
        match event {
            StreamEvent::Started | StreamEvent::Served { .. } => None,
            StreamEvent::Text { text, .. } => Some(self.chunk(json!({"content": text}), None)),
            StreamEvent::ToolUseStart {
                index,
                tool_use_id,
                name,
            } => {
                self.tool_blocks.push(*index);
                let call = json!({
                    "index": self.tool_index(*index),
                    "id": tool_use_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                });
                Some(self.chunk(json!({"tool_calls": [call]}), None))
            }
            StreamEvent::ToolInput { index, input } => {
                let call =
                    json!({"index": self.tool_index(*index), "function": {"arguments": input}});
                Some(self.chunk(json!({"tool_calls": [call]}), None))
            }
            StreamEvent::Stopped { stop_reason } => {
                Some(self.chunk(json!({}), Some(finish_reason(stop_reason))))
            }
            StreamEvent::Usage(usage) => self.options.include_usage.then(|| {
                sse_data(&json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_json(usage),
                }))
            }),
        }
    }

    pub fn closing(&self) -> Bytes {
        Bytes::from_static(b"data: [DONE]\n\n")
    }

    /// A failure after the stream began: an `error` object, which the SDKs raise.
    pub fn failure(&self, error: &ApiError) -> Bytes {
        sse_data(&error_body(error))
    }
}
