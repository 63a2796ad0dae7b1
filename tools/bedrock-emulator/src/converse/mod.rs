//! `Converse` and `ConverseStream`: request checks as Bedrock makes them, deterministic answers.
//!
//! Tool use (`toolConfig`, `toolUse` and `toolResult` blocks) is checked and answered as
//! [`crate::tools`] describes: a tool call answers `[{toolUse: …}]` with `stopReason: tool_use`,
//! and streams `contentBlockStart {start: {toolUse: {toolUseId, name}}}`, then
//! `contentBlockDelta {delta: {toolUse: {input}}}` events whose inputs, concatenated, are the
//! input's JSON text.

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
use crate::runtime::{Admission, RuntimeState};
use check::check;
pub use check::check_value;
pub use stream::converse_stream;

/// A request that passed every check, ready to be answered.
pub struct Checked {
    pub input_tokens: u32,
    pub answer: Generated,
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
    let admission = state.admit(model_id)?;
    if let Some(reason) = admission.behaviour.stop_reason {
        checked.answer = checked.answer.stopped_by(reason);
    }
    if let Some(arn) = provisioned {
        let tokens = u64::from(checked.input_tokens) + u64::from(checked.answer.output_tokens);
        state.charge_provisioned(&arn, tokens)?;
    }
    Ok((checked, admission))
}

fn usage(checked: &Checked) -> Value {
    json!({
        "inputTokens": checked.input_tokens,
        "outputTokens": checked.answer.output_tokens,
        "totalTokens": checked.input_tokens + checked.answer.output_tokens,
    })
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
    state.record_served(&model_id);
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
    output
}

#[cfg(test)]
mod tests;
