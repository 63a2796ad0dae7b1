//! The checks Bedrock makes on a Converse request, and the answer a checked request gets.

use serde::Deserialize;
use serde_json::Value;

use super::cache::{cache_point_of, cache_points, without_cache_points};
use super::Checked;
use crate::error::BedrockError;
use crate::generate::{generate, tokens_for, Generated};
use crate::guardrail;
use crate::runtime::RuntimeState;
use crate::tier::{requested_latency, requested_tier};
use crate::tools::{self, ToolConfig};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    messages: Option<Vec<Message>>,
    #[serde(default)]
    system: Vec<Value>,
    #[serde(default)]
    inference_config: InferenceConfig,
    #[serde(default)]
    tool_config: Option<ToolConfig>,
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

/// Characters a content or system block counts for.
pub(super) fn characters_of(block: &Value) -> usize {
    match block.get("text").and_then(Value::as_str) {
        Some(text) => text.chars().count(),
        // A cache point is a marker, not content.
        None if cache_point_of(block).is_some() => 0,
        // Images, documents and tool blocks: their serialised size stands in for their text.
        None => block.to_string().len(),
    }
}

fn blocks(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Characters a Converse request's input counts for (what its input tokens are counted from,
/// and what a prompt router measures): its `system` and message blocks (`characters_of`)
/// and its tool definitions.
pub fn input_chars(request: &Value) -> usize {
    let system: usize = blocks(request.get("system"))
        .iter()
        .map(characters_of)
        .sum();
    let messages: usize = blocks(request.get("messages"))
        .iter()
        .flat_map(|m| blocks(m.get("content")))
        .map(characters_of)
        .sum();
    system + messages + tools::definition_chars(request)
}

/// Parses and checks a Converse body the way Bedrock does.
pub(super) fn check(
    state: &RuntimeState,
    model_id: &str,
    body: &[u8],
) -> Result<Checked, BedrockError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BedrockError::validation(format!("Malformed input request: {e}")))?;
    check_value(state, model_id, value)
}

/// Checks a parsed Converse-shaped request (InvokeModel bodies are translated to this shape).
pub fn check_value(
    state: &RuntimeState,
    model_id: &str,
    value: Value,
) -> Result<Checked, BedrockError> {
    let request: ConverseRequest = serde_json::from_value(value.clone())
        .map_err(|e| BedrockError::validation(format!("Malformed input request: {e}")))?;
    // A Provisioned Throughput ARN has its base model's limit.
    let limit = state.max_output_tokens(model_id)?;
    let service_tier = requested_tier(&value)?;
    let latency = requested_latency(&value)?;
    let cache_points = cache_points(model_id, &value)?;
    let guardrail = guardrail::requested(&value, |id| state.guardrail(id), state.identity())?;

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
        check_message_text(i, &message.content)?;
        expected = if expected == "user" {
            "assistant"
        } else {
            "user"
        };
    }

    check_system_text(&request.system)?;

    if let Some(tool_config) = &request.tool_config {
        tool_config.check()?;
    }
    let conversation: Vec<(&str, &[Value])> = messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_slice()))
        .collect();
    tools::check_messages(&conversation, request.tool_config.as_ref())?;

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

    let input_chars = input_chars(&value);
    let guarded_input = guardrail.as_ref().map(|_| guardrail::input_text(&value));
    let fingerprint = fingerprint(model_id, value);
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or(&[][..], |m| m.content.as_slice());
    let tool_call = request
        .tool_config
        .as_ref()
        .and_then(|tools| tools.call(last_user, &fingerprint));
    let answer = match tool_call {
        Some(call) => Generated::tool_call(call, max_tokens),
        None => generate(&fingerprint, max_tokens, &config.stop_sequences),
    };
    let (answer, guardrail) = match guardrail {
        Some(request) => {
            let (answer, used) =
                request.apply(guarded_input.as_deref().unwrap_or_default(), answer);
            (answer, Some(used))
        }
        None => (answer, None),
    };
    Ok(Checked {
        input_tokens: tokens_for(input_chars),
        answer,
        cache_points,
        cache: None,
        service_tier,
        latency,
        guardrail,
        invoked_model_arn: None,
    })
}

fn text_of(block: &Value) -> Option<&str> {
    block.get("text").and_then(Value::as_str)
}

/// Bedrock refuses an empty text block itself; the model refuses a whitespace-only one
/// (Anthropic's wording, which Bedrock passes on).
fn check_message_text(i: usize, content: &[Value]) -> Result<(), BedrockError> {
    for (j, text) in content
        .iter()
        .enumerate()
        .filter_map(|(j, b)| Some((j, text_of(b)?)))
    {
        if text.is_empty() {
            return Err(BedrockError::validation(format!(
                "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
            )));
        }
        if text.trim().is_empty() {
            return Err(BedrockError::validation(
                "The model returned the following errors: messages: text content blocks must contain non-whitespace text",
            ));
        }
    }
    Ok(())
}

/// An empty system text fails the API's length constraint; a whitespace-only one the model.
fn check_system_text(system: &[Value]) -> Result<(), BedrockError> {
    for (i, text) in system
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Some((i, text_of(b)?)))
    {
        if text.is_empty() {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value at 'system.{}.member.text' failed to satisfy constraint: Member must have length greater than or equal to 1",
                i + 1
            )));
        }
        if text.trim().is_empty() {
            return Err(BedrockError::validation(
                "The model returned the following errors: system: text content blocks must contain non-whitespace text",
            ));
        }
    }
    Ok(())
}

/// What the answer's text derives from: the model and the request, but not `maxTokens` or
/// `stopSequences`, which only cut the answer (as at temperature 0, a tighter limit gives a
/// prefix of the same answer), nor cache points, `serviceTier`, `performanceConfig` or
/// `guardrailConfig`, which change how the prompt is served or guarded, not what the model says.
fn fingerprint(model_id: &str, mut request: Value) -> Vec<u8> {
    without_cache_points(&mut request);
    if let Some(request) = request.as_object_mut() {
        request.remove("serviceTier");
        request.remove("performanceConfig");
        request.remove("guardrailConfig");
        let config = request
            .get_mut("inferenceConfig")
            .and_then(Value::as_object_mut);
        if let Some(config) = config {
            config.remove("maxTokens");
            config.remove("stopSequences");
            if config.is_empty() {
                request.remove("inferenceConfig");
            }
        }
    }
    let mut fingerprint = model_id.as_bytes().to_vec();
    fingerprint.push(0);
    write_canonical(&request, &mut fingerprint);
    fingerprint
}

/// `value` as JSON with every object's keys sorted: the same request gives the same bytes
/// whatever order its client wrote the keys in (the AWS SDK writes a tool schema from a hash
/// map) and whether serde_json keeps insertion order (its `preserve_order` feature) or not.
pub(super) fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            out.push(b'{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::fingerprint;

    #[test]
    fn a_request_has_one_fingerprint_whatever_the_order_of_its_keys() {
        let written: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":"é"}],"x":"s"}}"#).unwrap();
        let reordered: Value =
            serde_json::from_str(r#"{"a":{"x":"s","y":[1,{"p":"é","q":2}]},"b":1}"#).unwrap();
        assert_eq!(fingerprint("m", written), fingerprint("m", reordered));
        assert_eq!(
            fingerprint("m", json!({"b": 1, "a": [true, null]})),
            b"m\0{\"a\":[true,null],\"b\":1}".to_vec()
        );
        assert_ne!(
            fingerprint("m", json!({"a": 1})),
            fingerprint("m", json!({"a": 2}))
        );
    }
}
