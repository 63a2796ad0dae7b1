//! `CountTokens` (`POST /model/{modelId}/count-tokens`): the input tokens a Converse or
//! InvokeModel request would count, as the emulator counts them when it answers one.
//!
//! The input (botocore's `CountTokensInput` union) is `{"converse": {messages, system?,
//! toolConfig?, additionalModelRequestFields?}}` or `{"invokeModel": {"body": <base64 of the
//! InvokeModel body>}}`. It is checked as that call would be (same model resolution, same
//! `ValidationException`s) and answered `{"inputTokens": N}`, N being exactly the `inputTokens`
//! of the call's `usage` without a prompt cache (cache points count no tokens of their own).
//! `additionalModelRequestFields` counts nothing, as in Converse. Calls are counted per model
//! as `countTokensCalls` in `/_emulator/stats`, not as model calls; faults and latencies do
//! not apply.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::checks::{full_match, invalid};
use crate::converse::check_value;
use crate::error::BedrockError;
use crate::invoke::check_body;
use crate::runtime::RuntimeState;
use crate::tier::missing;

/// botocore's `FoundationModelVersionIdentifier` pattern (CountTokens' `modelId`).
const MODEL_ID_PATTERN: &str = r"[a-zA-Z_\.\-/0-9:]+";

fn malformed(detail: impl std::fmt::Display) -> BedrockError {
    BedrockError::validation(format!("Malformed input request: {detail}"))
}

pub async fn count_tokens(
    State(state): State<Arc<RuntimeState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, BedrockError> {
    state.record_count_tokens(&model_id);
    let tokens = count(&state, &model_id, &body)?;
    Ok(Json(json!({ "inputTokens": tokens })))
}

/// The input tokens of a CountTokens request's input, or the `ValidationException` (or the
/// model's error) Bedrock answers.
pub fn count(state: &RuntimeState, model_id: &str, body: &[u8]) -> Result<u32, BedrockError> {
    if model_id.chars().count() > 256 {
        return Err(invalid(
            model_id,
            "modelId",
            "have length less than or equal to 256",
        ));
    }
    if !full_match(MODEL_ID_PATTERN, model_id) {
        return Err(invalid(
            model_id,
            "modelId",
            &format!("satisfy regular expression pattern: {MODEL_ID_PATTERN}"),
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(malformed)?;
    let Some(input) = request.get("input").filter(|v| !v.is_null()) else {
        return Err(missing("input"));
    };
    let input = input
        .as_object()
        .ok_or_else(|| malformed("input: expected a structure"))?;
    let member = |name: &str| input.get(name).filter(|v| !v.is_null());
    match (member("converse"), member("invokeModel")) {
        (Some(converse), None) => {
            let converse = converse
                .as_object()
                .ok_or_else(|| malformed("input.converse: expected a structure"))?;
            // Only what Converse counts: the rest of a Converse request has no place here.
            let mut request = Map::new();
            for key in ["messages", "system", "toolConfig"] {
                if let Some(value) = converse.get(key).filter(|v| !v.is_null()) {
                    request.insert(key.to_owned(), value.clone());
                }
            }
            Ok(check_value(state, model_id, Value::Object(request))?.input_tokens)
        }
        (None, Some(invoke)) => {
            let Some(body) = invoke.get("body").filter(|v| !v.is_null()) else {
                return Err(missing("input.invokeModel.body"));
            };
            let encoded = body
                .as_str()
                .ok_or_else(|| malformed("input.invokeModel.body: expected a base64 string"))?;
            let decoded = aws_smithy_types::base64::decode(encoded)
                .map_err(|e| malformed(format!("input.invokeModel.body is not base64: {e}")))?;
            let body: Value = serde_json::from_slice(&decoded)
                .map_err(|e| malformed(format!("input.invokeModel.body is not JSON: {e}")))?;
            Ok(check_body(state, model_id, &body)?.1.input_tokens)
        }
        (None, None) => Err(BedrockError::validation(
            "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have exactly one of its members set: converse, invokeModel",
        )),
        (Some(_), Some(_)) => Err(BedrockError::validation(
            "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have exactly one of its members set: converse, invokeModel; it has both",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn run(model_id: &str, body: Value) -> Result<u32, BedrockError> {
        count(
            &RuntimeState::for_tests(),
            model_id,
            body.to_string().as_bytes(),
        )
    }

    fn converse() -> Value {
        json!({
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "Hello there, emulator"}]}],
        })
    }

    #[test]
    fn counts_as_converse_counts_its_input() {
        let state = RuntimeState::for_tests();
        let expected = check_value(&state, HAIKU, converse()).unwrap().input_tokens;
        assert_eq!(
            run(HAIKU, json!({"input": {"converse": converse()}})).unwrap(),
            expected
        );
        assert_eq!(expected, 8);
    }

    #[test]
    fn counts_an_invoke_model_body_as_invoke_model_counts_it() {
        let body = json!({
            "anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hello there, emulator"}],
        });
        let encoded = aws_smithy_types::base64::encode(body.to_string());
        assert_eq!(
            run(HAIKU, json!({"input": {"invokeModel": {"body": encoded}}})).unwrap(),
            6
        );
    }

    #[test]
    fn refuses_what_bedrock_refuses() {
        let cases = [
            (HAIKU, json!({}), "Value null at 'input'"),
            (HAIKU, json!({"input": {}}), "exactly one of its members"),
            (
                HAIKU,
                json!({"input": {"converse": converse(), "invokeModel": {"body": "e30="}}}),
                "exactly one of its members",
            ),
            (
                HAIKU,
                json!({"input": {"converse": {"messages": []}}}),
                "A conversation must start with a user message",
            ),
            (
                HAIKU,
                json!({"input": {"invokeModel": {"body": "not base64!"}}}),
                "not base64",
            ),
            (
                HAIKU,
                json!({"input": {"invokeModel": {"body": aws_smithy_types::base64::encode("{}")}}}),
                "required key [messages] not found",
            ),
            (
                "openai.gpt-9",
                json!({"input": {"converse": converse()}}),
                "The provided model identifier is invalid.",
            ),
            (
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                json!({"input": {"converse": converse()}}),
                "on-demand throughput isn't supported",
            ),
            (
                "bad model id",
                json!({"input": {"converse": converse()}}),
                "at 'modelId' failed to satisfy constraint",
            ),
        ];
        for (model_id, body, expected) in cases {
            let error = run(model_id, body.clone()).unwrap_err();
            assert_eq!(error.error_type, "ValidationException", "{body}");
            assert!(
                error.message.contains(expected),
                "{body}: {}",
                error.message
            );
        }
    }
}
