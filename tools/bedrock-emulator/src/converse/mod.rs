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
//!
//! Guardrails (`guardrailConfig`) assess the input and the answer as [`crate::guardrail`]
//! describes; a `modelId` that is a prompt router's ARN is served by the model the router picks
//! ([`crate::prompt_router`]). Either may add a `trace` to the answer (the Converse response,
//! the stream's `metadata` event).

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
use crate::guardrail::GuardrailUse;
use crate::prompt_cache::{CachePoint, CacheUse};
use crate::prompt_routing::{self, Target};
use crate::runtime::{Admission, RuntimeState};
use crate::tier::{Latency, ServiceTier};
use check::check;
pub use check::{check_value, input_chars};
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
    /// What the guardrail the request named did, if it named one.
    pub guardrail: Option<GuardrailUse>,
    /// The ARN of the model a prompt router picked, when the call named a router.
    pub invoked_model_arn: Option<String>,
}

impl Checked {
    /// Whether a guardrail replaced the answer.
    pub fn guardrail_intervened(&self) -> bool {
        self.guardrail
            .as_ref()
            .is_some_and(GuardrailUse::intervened)
    }

    /// The answer's `trace` (botocore's `ConverseTrace`): the guardrail's assessment when the
    /// request asked for it, the prompt router's invoked model when a router served it.
    fn trace(&self) -> Option<Value> {
        let guardrail = self.guardrail.as_ref().and_then(GuardrailUse::trace);
        if guardrail.is_none() && self.invoked_model_arn.is_none() {
            return None;
        }
        let mut trace = json!({});
        if let Some(guardrail) = guardrail {
            trace["guardrail"] = guardrail;
        }
        if let Some(arn) = &self.invoked_model_arn {
            trace["promptRouter"] = json!({ "invokedModelId": arn });
        }
        Some(trace)
    }
}

/// The model a Converse or ConverseStream call is served by (a prompt router's pick for a
/// router's ARN).
fn target(state: &RuntimeState, model_id: &str, body: &[u8]) -> Result<Target, BedrockError> {
    prompt_routing::target(state, model_id, body, input_chars)
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
    // A guardrail's answer stands whatever stop reason is configured.
    if let Some(reason) = admission
        .behaviour
        .stop_reason
        .filter(|_| !checked.guardrail_intervened())
    {
        checked.answer = checked.answer.stopped_by(reason);
    }
    if let Some(arn) = provisioned {
        let tokens = u64::from(checked.input_tokens) + u64::from(checked.answer.output_tokens);
        state.charge_provisioned(&arn, tokens)?;
    }
    if checked.guardrail_intervened() {
        state.record_guardrail_intervention(model_id);
    }
    // Only a call that will be answered, by the model, reads or writes the cache (a blocked
    // input never reaches the model).
    let model_ran = !checked
        .guardrail
        .as_ref()
        .is_some_and(GuardrailUse::input_blocked);
    if model_ran {
        checked.cache =
            state.use_prompt_cache(model_id, &checked.cache_points, &admission.behaviour);
    }
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
/// request: the tier that served it and its `performanceConfig`, when the request named them,
/// and its `trace` (a guardrail's, when asked for; a prompt router's).
fn echo_request(checked: &Checked, answer: &mut Value) {
    if let Some(tier) = checked.service_tier {
        answer["serviceTier"] = tier.echo();
    }
    if let Some(latency) = checked.latency {
        answer["performanceConfig"] = latency.echo();
    }
    if let Some(trace) = checked.trace() {
        answer["trace"] = trace;
    }
}

pub async fn converse(
    State(state): State<Arc<RuntimeState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let started = Instant::now();
    let Target {
        model_id,
        invoked_model_arn,
    } = target(&state, &model_id, &body)?;
    let (mut checked, admission) =
        admit_checked(&state, &model_id, || check(&state, &model_id, &body))?;
    checked.invoked_model_arn = invoked_model_arn;
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
