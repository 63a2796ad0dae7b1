//! `InvokeModel` with the Anthropic Messages body and the legacy `prompt`/`completion` body.
//! Both are translated to the Converse shape so that they are checked and answered alike.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::converse::{admit_checked, check_value, Checked};
use crate::error::BedrockError;
use crate::generate::StopReason;
use crate::runtime::RuntimeState;

pub(crate) enum Dialect {
    Messages,
    Completion,
}

fn malformed(detail: &str) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: {detail}, please reformat your input and try again."
    ))
}

fn text_block(text: &str) -> Value {
    json!({ "text": text })
}

/// Anthropic content: a string or a list of `{"type":"text","text":...}` blocks.
fn anthropic_content(content: &Value) -> Result<Value, BedrockError> {
    match content {
        Value::String(text) => Ok(json!([text_block(text)])),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block
                    .get("text")
                    .and_then(Value::as_str)
                    .map(text_block)
                    .ok_or_else(|| malformed("#/messages/content/text: expected type: String")),
                _ => Ok(block.clone()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(malformed(
            "#/messages/content: expected type: String or Array",
        )),
    }
}

fn inference_config(body: &Map<String, Value>, max_tokens_key: &str) -> Value {
    let mut config = Map::new();
    for (from, to) in [
        (max_tokens_key, "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop_sequences", "stopSequences"),
    ] {
        if let Some(v) = body.get(from) {
            config.insert(to.to_owned(), v.clone());
        }
    }
    Value::Object(config)
}

/// Translates an InvokeModel body to the Converse shape.
fn to_converse(body: &Map<String, Value>) -> Result<(Dialect, Value), BedrockError> {
    if let Some(messages) = body.get("messages") {
        if !body.contains_key("anthropic_version") {
            return Err(malformed("#: required key [anthropic_version] not found"));
        }
        if !body.contains_key("max_tokens") {
            return Err(malformed("#: required key [max_tokens] not found"));
        }
        let messages = messages
            .as_array()
            .ok_or_else(|| malformed("#/messages: expected type: JSONArray"))?
            .iter()
            .map(|m| {
                let content = anthropic_content(m.get("content").unwrap_or(&Value::Null))?;
                Ok(json!({ "role": m.get("role").cloned().unwrap_or(Value::Null), "content": content }))
            })
            .collect::<Result<Vec<_>, BedrockError>>()?;
        let mut converse = json!({
            "messages": messages,
            "inferenceConfig": inference_config(body, "max_tokens"),
        });
        match body.get("system") {
            Some(Value::String(system)) => converse["system"] = json!([text_block(system)]),
            Some(Value::Array(blocks)) => {
                converse["system"] = anthropic_content(&Value::Array(blocks.clone()))?
            }
            _ => {}
        }
        return Ok((Dialect::Messages, converse));
    }
    if let Some(prompt) = body.get("prompt") {
        let prompt = prompt
            .as_str()
            .ok_or_else(|| malformed("#/prompt: expected type: String"))?;
        if !body.contains_key("max_tokens_to_sample") {
            return Err(malformed(
                "#: required key [max_tokens_to_sample] not found",
            ));
        }
        if !prompt.starts_with("\n\nHuman:") || !prompt.contains("\n\nAssistant:") {
            return Err(BedrockError::validation(
                "Invalid prompt: prompt must start with \"\n\nHuman:\" turn after an optional system prompt, and end with \"\n\nAssistant:\"",
            ));
        }
        let converse = json!({
            "messages": [{"role": "user", "content": [text_block(prompt)]}],
            "inferenceConfig": inference_config(body, "max_tokens_to_sample"),
        });
        return Ok((Dialect::Completion, converse));
    }
    Err(malformed("#: required key [messages] not found"))
}

/// Parses an InvokeModel body and checks it as Bedrock does (also a batch record's
/// `modelInput` for `modelInvocationType: InvokeModel`).
pub(crate) fn check_body(
    state: &RuntimeState,
    model_id: &str,
    value: &Value,
) -> Result<(Dialect, Checked), BedrockError> {
    let object = value
        .as_object()
        .ok_or_else(|| malformed("#: expected type: JSONObject"))?;
    let (dialect, converse) = to_converse(object)?;
    Ok((dialect, check_value(state, model_id, converse)?))
}

/// The model's native answer, as InvokeModel returns it in its body.
pub(crate) fn response_body(dialect: &Dialect, model_id: &str, checked: &Checked) -> Value {
    let answer = &checked.answer;
    let mut body = match dialect {
        Dialect::Messages => json!({
            "id": format!("msg_emulator_{:016x}", answer.text.len() as u64 * 7919 + u64::from(checked.input_tokens)),
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": answer.stop_reason.anthropic(),
            "stop_sequence": answer.stop_sequence,
            "usage": {"input_tokens": checked.input_tokens, "output_tokens": answer.output_tokens},
        }),
        Dialect::Completion => json!({
            "completion": format!(" {}", answer.text),
            "stop_reason": if answer.stop_reason == StopReason::MaxTokens { "max_tokens" } else { "stop_sequence" },
            "stop": answer.stop_sequence.clone().unwrap_or_else(|| "\n\nHuman:".to_owned()),
        }),
    };
    if answer.stop_reason == StopReason::GuardrailIntervened {
        // Bedrock marks an InvokeModel answer its guardrail replaced.
        body["amazon-bedrock-guardrailAction"] = json!("INTERVENED");
    }
    body
}

pub async fn invoke_model(
    State(state): State<Arc<RuntimeState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let started = Instant::now();
    let mut dialect = Dialect::Messages;
    let (checked, admission) = admit_checked(&state, &model_id, || {
        let value: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e.to_string()))?;
        let (found, checked) = check_body(&state, &model_id, &value)?;
        dialect = found;
        Ok(checked)
    })?;
    admission
        .wait_for_answer(checked.answer.output_tokens)
        .await;
    state.record_served(&model_id, None);

    let answer = &checked.answer;
    let body = response_body(&dialect, &model_id, &checked);
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "x-amzn-bedrock-input-token-count",
            u64::from(checked.input_tokens),
        ),
        (
            "x-amzn-bedrock-output-token-count",
            u64::from(answer.output_tokens),
        ),
        (
            "x-amzn-bedrock-invocation-latency",
            started.elapsed().as_millis() as u64,
        ),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, BedrockError> {
        to_converse(body.as_object().unwrap()).map(|(_, v)| v)
    }

    #[test]
    fn translates_messages_body() {
        let converse = translate(json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .unwrap();
        assert_eq!(converse["messages"][0]["content"][0]["text"], "hi");
        assert_eq!(converse["system"][0]["text"], "be brief");
        assert_eq!(converse["inferenceConfig"]["maxTokens"], 100);
    }

    #[test]
    fn checks_required_keys_and_prompt_shape() {
        assert!(translate(json!({"messages": []})).is_err());
        assert!(translate(json!({"prompt": "hi", "max_tokens_to_sample": 10})).is_err());
        assert!(translate(json!({"prompt": "\n\nHuman: hi\n\nAssistant:"})).is_err());
        assert!(translate(
            json!({"prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 10})
        )
        .is_ok());
        assert!(translate(json!({"input": "x"})).is_err());
    }
}
