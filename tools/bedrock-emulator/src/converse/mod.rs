//! `Converse` and `ConverseStream`: request checks as Bedrock makes them, deterministic answers.
//!
//! Tool use (`toolConfig`, `toolUse` and `toolResult` blocks) is checked and answered as
//! [`crate::tools`] describes: a tool call answers `[{toolUse: …}]` with `stopReason: tool_use`,
//! and streams `contentBlockStart {start: {toolUse: {toolUseId, name}}}`, then
//! `contentBlockDelta {delta: {toolUse: {input}}}` events whose inputs, concatenated, are the
//! input's JSON text.
//!
//! Prompt caching: `cachePoint` blocks are checked and read as [`crate::prompt_cache`]
//! describes; when one counts, `usage` reports the tokens read from the cache or written to it
//! apart from `inputTokens` (`cacheReadInputTokens`, `cacheWriteInputTokens`, `cacheDetails`).
//! `serviceTier` and `performanceConfig` are checked and echoed as [`crate::tier`] describes.

mod cache;
mod check;
mod stream;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::BedrockError;
use crate::generate::Generated;
use crate::prompt_cache::{CachePoint, CacheUse};
use crate::runtime::{Admission, RuntimeState};
use crate::tier::{Latency, ServiceTier};
use check::check;
pub use check::check_value;
pub use stream::converse_stream;

/// A request that passed every check, ready to be answered.
pub struct Checked {
    /// Every input token, those of a cached prefix included.
    pub input_tokens: u32,
    pub answer: Generated,
    /// The request's cache points, in order.
    pub cache_points: Vec<CachePoint>,
    /// What the call read from the prompt cache or wrote to it, once admitted; `None` when no
    /// cache point counts (and for batch records, which do not use the cache).
    pub cache: Option<CacheUse>,
    /// The tier the request asked for, if it named one.
    pub service_tier: Option<ServiceTier>,
    /// The latency its `performanceConfig` asked for, if it had one.
    pub latency: Option<Latency>,
}

/// Checks, counts and admits a call; a configured fault or a bad request ends it here.
pub fn admit_checked(
    state: &RuntimeState,
    model_id: &str,
    checked: impl FnOnce() -> Result<Checked, BedrockError>,
) -> Result<(Checked, Admission), BedrockError> {
    // A Provisioned Throughput ARN is served only by one that exists and serves.
    let provisioned = state.provisioned_gate(model_id)?;
    let mut checked = match checked() {
        Ok(checked) => checked,
        Err(e) => {
            state.record_validation_error(model_id);
            return Err(e);
        }
    };
    let admission = state.admit_tier(model_id, checked.service_tier)?;
    if let Some(reason) = admission.behaviour.stop_reason {
        checked.answer = checked.answer.stopped_by(reason);
    }
    if let Some(arn) = provisioned {
        let tokens = u64::from(checked.input_tokens) + u64::from(checked.answer.output_tokens);
        state.charge_provisioned(&arn, tokens)?;
    }
    // Only a call that will be answered reads or writes the cache.
    checked.cache = state.use_prompt_cache(model_id, &checked.cache_points, &admission.behaviour);
    Ok((checked, admission))
}

/// The answer's `usage`; the cache fields only when a cache point counted.
fn usage(checked: &Checked) -> Value {
    match &checked.cache {
        Some(cache) => cache.usage(checked.input_tokens, checked.answer.output_tokens),
        None => json!({
            "inputTokens": checked.input_tokens,
            "outputTokens": checked.answer.output_tokens,
            "totalTokens": checked.input_tokens + checked.answer.output_tokens,
        }),
    }
}

/// What an answer (the Converse response, the stream's `metadata` event) echoes from its
/// request: the tier that served it and its `performanceConfig`, when the request named them.
fn echo_request(checked: &Checked, answer: &mut Value) {
    if let Some(tier) = checked.service_tier {
        answer["serviceTier"] = tier.echo();
    }
    if let Some(latency) = checked.latency {
        answer["performanceConfig"] = latency.echo();
    }
}

pub async fn converse(
    State(state): State<Arc<RuntimeState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let started = Instant::now();
    let (checked, admission) =
        admit_checked(&state, &model_id, || check(&state, &model_id, &body))?;
    admission
        .wait_for_answer(checked.answer.output_tokens)
        .await;
    state.record_served(&model_id, checked.service_tier);
    Ok(Json(output(&checked, started.elapsed().as_millis() as u64)))
}

/// The Converse response body for a checked request (also a batch record's `modelOutput`).
pub fn output(checked: &Checked, latency_ms: u64) -> Value {
    let content = match &checked.answer.tool_use {
        Some(call) => json!([{ "toolUse": call.block() }]),
        None => json!([{ "text": checked.answer.text }]),
    };
    let mut output = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": checked.answer.stop_reason,
        "usage": usage(checked),
        "metrics": {"latencyMs": latency_ms},
    });
    if let Some(sequence) = &checked.answer.stop_sequence {
        output["additionalModelResponseFields"] = json!({ "stop_sequence": sequence });
    }
    echo_request(checked, &mut output);
    output
}

#[cfg(test)]
mod tests;
