//! `Converse` and `ConverseStream`: request checks as Bedrock makes them, deterministic answers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::BedrockError;
use crate::eventstream::event_frame;
use crate::generate::{generate, tokens_for, Generated};
use crate::state::{Admission, EmulatorState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    messages: Option<Vec<Message>>,
    #[serde(default)]
    system: Vec<Value>,
    #[serde(default)]
    inference_config: InferenceConfig,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(default)]
    stop_sequences: Vec<String>,
}

/// A request that passed every check, ready to be answered.
pub struct Checked {
    pub input_tokens: u32,
    pub answer: Generated,
}

fn characters_of(block: &Value) -> usize {
    match block.get("text").and_then(Value::as_str) {
        Some(text) => text.chars().count(),
        // Images, documents and tool blocks: their serialised size stands in for their text.
        None => block.to_string().len(),
    }
}

/// Parses and checks a Converse body the way Bedrock does.
fn check(state: &EmulatorState, model_id: &str, body: &[u8]) -> Result<Checked, BedrockError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BedrockError::validation(format!("Malformed input request: {e}")))?;
    check_value(state, model_id, value)
}

/// Checks a parsed Converse-shaped request (InvokeModel bodies are translated to this shape).
pub fn check_value(
    state: &EmulatorState,
    model_id: &str,
    value: Value,
) -> Result<Checked, BedrockError> {
    let request: ConverseRequest = serde_json::from_value(value.clone())
        .map_err(|e| BedrockError::validation(format!("Malformed input request: {e}")))?;
    let limit = state
        .catalog
        .max_output_tokens(model_id)
        .ok_or_else(|| BedrockError::validation("The provided model identifier is invalid."))?;

    let messages = request.messages.unwrap_or_default();
    if messages.is_empty() {
        return Err(BedrockError::validation(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        ));
    }
    let mut expected = "user";
    for (i, message) in messages.iter().enumerate() {
        if message.role != "user" && message.role != "assistant" {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{}' at 'messages.{}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                message.role,
                i + 1
            )));
        }
        if message.role != expected {
            return Err(BedrockError::validation(if i == 0 {
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.".to_owned()
            } else {
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".to_owned()
            }));
        }
        if message.content.is_empty() {
            return Err(BedrockError::validation(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            )));
        }
        if message
            .content
            .iter()
            .any(|b| b.get("text").and_then(Value::as_str) == Some(""))
        {
            return Err(BedrockError::validation(format!(
                "The text field in the ContentBlock object at messages.{i}.content is blank. Add text to the text field, and try again."
            )));
        }
        expected = if expected == "user" {
            "assistant"
        } else {
            "user"
        };
    }

    let config = &request.inference_config;
    let max_tokens = match config.max_tokens {
        None => limit,
        Some(n) if n < 1 => {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{n}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )))
        }
        Some(n) if n > i64::from(limit) => {
            return Err(BedrockError::validation(format!(
                "The maximum tokens you requested exceeds the model limit of {limit}. Try again with a maximum tokens value that is lower than {limit}."
            )))
        }
        Some(n) => u32::try_from(n).unwrap_or(limit),
    };
    for (name, value) in [("temperature", config.temperature), ("topP", config.top_p)] {
        if let Some(v) = value {
            if !(0.0..=1.0).contains(&v) {
                return Err(BedrockError::validation(format!(
                    "1 validation error detected: Value '{v}' at 'inferenceConfig.{name}' failed to satisfy constraint: Member must have value between 0 and 1"
                )));
            }
        }
    }

    let input_chars: usize = request.system.iter().map(characters_of).sum::<usize>()
        + messages
            .iter()
            .flat_map(|m| m.content.iter())
            .map(characters_of)
            .sum::<usize>();
    let mut fingerprint = model_id.as_bytes().to_vec();
    fingerprint.push(0);
    fingerprint.extend_from_slice(value.to_string().as_bytes());
    Ok(Checked {
        input_tokens: tokens_for(input_chars),
        answer: generate(&fingerprint, max_tokens, &config.stop_sequences),
    })
}

/// Checks, counts and admits a call; a configured fault or a bad request ends it here.
pub fn admit_checked(
    state: &EmulatorState,
    model_id: &str,
    checked: impl FnOnce() -> Result<Checked, BedrockError>,
) -> Result<(Checked, Admission), BedrockError> {
    let checked = match checked() {
        Ok(checked) => checked,
        Err(e) => {
            state.record_validation_error(model_id);
            return Err(e);
        }
    };
    let admission = state.admit(model_id)?;
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
    State(state): State<Arc<EmulatorState>>,
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
    let mut output = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": checked.answer.text}]}},
        "stopReason": checked.answer.stop_reason,
        "usage": usage(&checked),
        "metrics": {"latencyMs": started.elapsed().as_millis() as u64},
    });
    if let Some(sequence) = &checked.answer.stop_sequence {
        output["additionalModelResponseFields"] = json!({ "stop_sequence": sequence });
    }
    Ok(Json(output))
}

/// Splits the answer into deltas of a few words, as Bedrock streams them.
fn deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        current.push_str(word);
        if i % 3 == 2 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

pub async fn converse_stream(
    State(state): State<Arc<EmulatorState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let started = Instant::now();
    let (checked, admission) =
        admit_checked(&state, &model_id, || check(&state, &model_id, &body))?;
    state.record_served(&model_id);

    let mut events: Vec<(&'static str, Value, u32)> =
        vec![("messageStart", json!({"role": "assistant"}), 0)];
    for delta in deltas(&checked.answer.text) {
        let tokens = tokens_for(delta.len());
        events.push((
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": delta}}),
            tokens,
        ));
    }
    events.push(("contentBlockStop", json!({"contentBlockIndex": 0}), 0));
    events.push((
        "messageStop",
        json!({"stopReason": checked.answer.stop_reason}),
        0,
    ));
    let usage = usage(&checked);

    let first_token = admission.first_token_delay();
    let per_token = admission.per_token_delay();
    let frames = stream::iter(events.into_iter().enumerate())
        .then(move |(i, (event_type, payload, tokens))| async move {
            let delay = if i == 1 {
                first_token
            } else {
                per_token * tokens
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            event_frame(event_type, &payload)
        })
        .chain(stream::once(async move {
            let metadata = json!({
                "usage": usage,
                "metrics": {"latencyMs": started.elapsed().as_millis() as u64},
            });
            event_frame("metadata", &metadata)
        }));

    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")],
        Body::from_stream(frames),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::state::RuntimeConfig;

    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn run(body: Value) -> Result<Checked, BedrockError> {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        check(&state, HAIKU, body.to_string().as_bytes())
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    #[test]
    fn answers_a_valid_conversation_with_usage() {
        let checked = run(json!({"messages": [user("Hello there, emulator")]})).unwrap();
        assert_eq!(checked.input_tokens, 6);
        assert!(checked.answer.output_tokens > 0);
    }

    #[test]
    fn refuses_what_bedrock_refuses() {
        let cases = [
            json!({}),
            json!({"messages": []}),
            json!({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}),
            json!({"messages": [user("a"), user("b")]}),
            json!({"messages": [{"role": "system", "content": [{"text": "hi"}]}]}),
            json!({"messages": [{"role": "user", "content": []}]}),
            json!({"messages": [user("")]}),
            json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 0}}),
            json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 4097}}),
            json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}),
            json!({"messages": [user("a")], "inferenceConfig": {"topP": -0.1}}),
            json!({"messages": "not a list"}),
        ];
        for case in cases {
            let err = run(case.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {case}"));
            assert_eq!(err.error_type, "ValidationException", "{case}");
        }
    }

    #[test]
    fn deltas_rebuild_the_text() {
        let text = "one two three four five six seven";
        assert_eq!(deltas(text).concat(), text);
        assert_eq!(deltas(text).len(), 3);
    }
}
