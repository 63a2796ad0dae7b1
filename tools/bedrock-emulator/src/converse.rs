//! `Converse` and `ConverseStream`: request checks as Bedrock makes them, deterministic answers.
//!
//! Tool use (`toolConfig`, `toolUse` and `toolResult` blocks) is checked and answered as
//! [`crate::tools`] describes: a tool call answers `[{toolUse: …}]` with `stopReason: tool_use`,
//! and streams `contentBlockStart {start: {toolUse: {toolUseId, name}}}`, then
//! `contentBlockDelta {delta: {toolUse: {input}}}` events whose inputs, concatenated, are the
//! input's JSON text.

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
use crate::eventstream::{event_frame, exception_frame};
use crate::fault::StreamError;
use crate::generate::{generate, tokens_for, Generated};
use crate::state::{Admission, EmulatorState};
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
    // A Provisioned Throughput ARN has its base model's limit.
    let limit = state.max_output_tokens(model_id)?;

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

    let input_chars: usize = request.system.iter().map(characters_of).sum::<usize>()
        + messages
            .iter()
            .flat_map(|m| m.content.iter())
            .map(characters_of)
            .sum::<usize>()
        + tools::definition_chars(&value);
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
    Ok(Checked {
        input_tokens: tokens_for(input_chars),
        answer: match tool_call {
            Some(call) => Generated::tool_call(call, max_tokens),
            None => generate(&fingerprint, max_tokens, &config.stop_sequences),
        },
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
/// prefix of the same answer).
fn fingerprint(model_id: &str, mut request: Value) -> Vec<u8> {
    if let Some(request) = request.as_object_mut() {
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
    fingerprint.extend_from_slice(request.to_string().as_bytes());
    fingerprint
}

/// Checks, counts and admits a call; a configured fault or a bad request ends it here.
pub fn admit_checked(
    state: &EmulatorState,
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

/// The events of a streamed answer, each with the output tokens it carries. A stream error
/// keeps `messageStart` (and a tool call's `contentBlockStart`) and the first `afterDeltas`
/// deltas only: its exception ends the stream.
fn answer_events(
    checked: &Checked,
    stream_error: Option<StreamError>,
) -> Vec<(&'static str, Value, u32)> {
    let mut events = vec![("messageStart", json!({"role": "assistant"}), 0)];
    let deltas: Vec<(&'static str, Value, u32)> = match &checked.answer.tool_use {
        Some(call) => {
            let start = json!({
                "contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": call.tool_use_id, "name": call.name}},
            });
            events.push(("contentBlockStart", start, 0));
            call.input_fragments()
                .into_iter()
                .map(|fragment| {
                    let tokens = tokens_for(fragment.len());
                    let delta = json!({"toolUse": {"input": fragment}});
                    let payload = json!({"contentBlockIndex": 0, "delta": delta});
                    ("contentBlockDelta", payload, tokens)
                })
                .collect()
        }
        None => deltas(&checked.answer.text)
            .into_iter()
            .map(|delta| {
                let tokens = tokens_for(delta.len());
                let payload = json!({"contentBlockIndex": 0, "delta": {"text": delta}});
                ("contentBlockDelta", payload, tokens)
            })
            .collect(),
    };
    let deltas = deltas.into_iter();
    match stream_error {
        Some(error) => {
            events.extend(deltas.take(usize::try_from(error.after_deltas).unwrap_or(usize::MAX)))
        }
        None => {
            events.extend(deltas);
            events.push(("contentBlockStop", json!({"contentBlockIndex": 0}), 0));
            let stop = json!({"stopReason": checked.answer.stop_reason});
            events.push(("messageStop", stop, 0));
        }
    }
    events
}

pub async fn converse_stream(
    State(state): State<Arc<EmulatorState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let started = Instant::now();
    let (checked, admission) =
        admit_checked(&state, &model_id, || check(&state, &model_id, &body))?;
    let stream_error = admission.behaviour.stream_error;
    if stream_error.is_some() {
        state.record_stream_error(&model_id);
    } else {
        state.record_served(&model_id);
    }

    let events = answer_events(&checked, stream_error);
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
            match stream_error {
                Some(error) => {
                    let exception = error.exception;
                    exception_frame(exception.event_type(), &exception.payload())
                }
                None => {
                    let metadata = json!({
                        "usage": usage,
                        "metrics": {"latencyMs": started.elapsed().as_millis() as u64},
                    });
                    event_frame("metadata", &metadata)
                }
            }
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
    use crate::fault::StreamException;
    use crate::generate::StopReason;
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
            json!({"messages": [user("   \n")]}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "\t "}]}]}),
            json!({"messages": [user("a")], "system": [{"text": ""}]}),
            json!({"messages": [user("a")], "system": [{"text": " \n "}]}),
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
    fn whitespace_only_text_gets_the_models_refusal() {
        let message = run(json!({"messages": [user("   \n")]}))
            .err()
            .unwrap()
            .message;
        assert!(message.contains("messages: text content blocks must contain non-whitespace text"));
        let system = run(json!({"messages": [user("a")], "system": [{"text": "  "}]}))
            .err()
            .unwrap()
            .message;
        assert!(system.contains("system: text content blocks must contain non-whitespace text"));
    }

    #[test]
    fn limits_cut_the_same_answer() {
        let full = run(json!({"messages": [user("Tell me more")]}))
            .unwrap()
            .answer;
        let capped = run(json!({
            "messages": [user("Tell me more")],
            "inferenceConfig": {"maxTokens": 3, "stopSequences": ["never-said"]},
        }))
        .unwrap()
        .answer;
        assert_eq!(capped.stop_reason, StopReason::MaxTokens);
        assert!(full.text.starts_with(&capped.text), "{capped:?} {full:?}");
    }

    #[test]
    fn a_profile_only_model_needs_a_profile() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        let body = json!({"messages": [user("hi")]}).to_string();
        let bare = "anthropic.claude-haiku-4-5-20251001-v1:0";
        let error = check(&state, bare, body.as_bytes()).err().unwrap();
        assert!(error
            .message
            .contains("with on-demand throughput isn't supported"));
        assert!(check(&state, &format!("global.{bare}"), body.as_bytes()).is_ok());
    }

    #[test]
    fn a_chosen_stop_reason_applies_to_admitted_calls() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        let patch = serde_json::from_str(r#"{"stopReason":"content_filtered"}"#).unwrap();
        state.apply(&patch).unwrap();
        let body = json!({"messages": [user("hi")]}).to_string();
        let (checked, _) =
            admit_checked(&state, HAIKU, || check(&state, HAIKU, body.as_bytes())).unwrap();
        assert_eq!(checked.answer.stop_reason, StopReason::ContentFiltered);
        assert_eq!(checked.answer.text, "");
    }

    #[test]
    fn a_stream_error_keeps_message_start_and_the_first_deltas_only() {
        let checked = run(json!({"messages": [user("Stream me")]})).unwrap();
        let complete: Vec<_> = answer_events(&checked, None)
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert!(complete.len() > 4, "{complete:?}");
        assert_eq!(complete.last(), Some(&"messageStop"));
        let error = StreamError {
            exception: StreamException::ThrottlingException,
            after_deltas: 2,
        };
        let cut: Vec<_> = answer_events(&checked, Some(error))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            cut,
            ["messageStart", "contentBlockDelta", "contentBlockDelta"]
        );
    }

    fn weather_tools(choice: Value) -> Value {
        json!({
            "tools": [{"toolSpec": {
                "name": "get_weather",
                "description": "Current weather",
                "inputSchema": {"json": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["city"],
                }},
            }}],
            "toolChoice": choice,
        })
    }

    /// The conversation after the model called the tool, with `result` as the tool's answer.
    fn answered(call: &Value, result: Value) -> Value {
        json!({
            "messages": [
                user("What is the weather in Paris? Use get_weather."),
                {"role": "assistant", "content": [{"toolUse": call}]},
                {"role": "user", "content": [{"toolResult": {
                    "toolUseId": call["toolUseId"],
                    "content": [{"json": result}],
                    "status": "success",
                }}]},
            ],
            "toolConfig": weather_tools(json!({"auto": {}})),
        })
    }

    #[test]
    fn a_tool_call_round_trip() {
        let ask = json!({
            "messages": [user("What is the weather in Paris? Use get_weather.")],
            "toolConfig": weather_tools(json!({"auto": {}})),
        });
        let checked = run(ask.clone()).unwrap();
        assert_eq!(checked.answer.stop_reason, StopReason::ToolUse);
        let body = output(&checked, 0);
        assert_eq!(body["stopReason"], "tool_use");
        let call = &body["output"]["message"]["content"][0]["toolUse"];
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["input"]["unit"], "celsius");
        assert!(call["input"]["city"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
        assert!(call["toolUseId"]
            .as_str()
            .is_some_and(|id| id.starts_with("tooluse_")));
        assert_eq!(
            body["output"]["message"]["content"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // Tool definitions count towards input tokens.
        let plain =
            run(json!({"messages": [user("What is the weather in Paris? Use get_weather.")]}))
                .unwrap();
        assert!(
            checked.input_tokens > plain.input_tokens + 20,
            "{} {}",
            checked.input_tokens,
            plain.input_tokens
        );

        // The result concludes with text, which depends on the result.
        let sunny = run(answered(call, json!({"sky": "sunny"}))).unwrap();
        assert_eq!(sunny.answer.stop_reason, StopReason::EndTurn);
        assert!(sunny.answer.tool_use.is_none() && !sunny.answer.text.is_empty());
        let rainy = run(answered(call, json!({"sky": "rainy"}))).unwrap();
        assert_ne!(sunny.answer.text, rainy.answer.text);
        let text = output(&sunny, 0);
        assert_eq!(
            text["output"]["message"]["content"][0]["text"],
            sunny.answer.text.as_str()
        );
    }

    #[test]
    fn tools_change_the_fingerprint_and_auto_needs_a_mention() {
        let without = run(json!({"messages": [user("Tell me a story")]})).unwrap();
        let with = run(json!({
            "messages": [user("Tell me a story")],
            "toolConfig": weather_tools(json!({"auto": {}})),
        }))
        .unwrap();
        assert!(with.answer.tool_use.is_none());
        assert_eq!(with.answer.stop_reason, StopReason::EndTurn);
        assert_ne!(with.answer.text, without.answer.text);
        let forced = run(json!({
            "messages": [user("Tell me a story")],
            "toolConfig": weather_tools(json!({"tool": {"name": "get_weather"}})),
        }))
        .unwrap();
        assert_eq!(forced.answer.tool_use.unwrap().name, "get_weather");
    }

    #[test]
    fn refuses_bad_tool_use_requests() {
        let call = json!({"toolUseId": "tooluse_a", "name": "get_weather", "input": {}});
        let mut no_config = answered(&call, json!({"sky": "sunny"}));
        no_config.as_object_mut().unwrap().remove("toolConfig");
        let mut wrong_id = answered(&call, json!({"sky": "sunny"}));
        wrong_id["messages"][2]["content"][0]["toolResult"]["toolUseId"] = json!("tooluse_b");
        let mut unanswered = answered(&call, json!({}));
        unanswered["messages"][2] = user("and tomorrow?");
        let cases = [
            no_config,
            wrong_id,
            unanswered,
            json!({"messages": [user("a")], "toolConfig": {"tools": []}}),
            json!({"messages": [user("a")], "toolConfig": weather_tools(json!({"tool": {"name": "nope"}}))}),
        ];
        for case in cases {
            let err = run(case.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {case}"));
            assert_eq!(err.error_type, "ValidationException", "{case}");
        }
    }

    #[test]
    fn a_tool_call_streams_its_input_in_fragments() {
        let checked = run(json!({
            "messages": [user("Weather, please")],
            "toolConfig": weather_tools(json!({"any": {}})),
        }))
        .unwrap();
        let call = checked.answer.tool_use.clone().unwrap();
        let events = answer_events(&checked, None);
        let names: Vec<_> = events.iter().map(|e| e.0).collect();
        assert_eq!(&names[..2], ["messageStart", "contentBlockStart"]);
        assert_eq!(
            &names[names.len() - 2..],
            ["contentBlockStop", "messageStop"]
        );
        assert!(
            names.iter().filter(|n| **n == "contentBlockDelta").count() > 1,
            "{names:?}"
        );
        assert_eq!(
            events[1].1["start"]["toolUse"]["toolUseId"],
            call.tool_use_id.as_str()
        );
        assert_eq!(events[1].1["start"]["toolUse"]["name"], "get_weather");
        let input: String = events
            .iter()
            .filter(|e| e.0 == "contentBlockDelta")
            .map(|e| {
                e.1["delta"]["toolUse"]["input"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&input).unwrap(), call.input);
        assert_eq!(events.last().unwrap().1["stopReason"], "tool_use");

        let error = StreamError {
            exception: StreamException::ThrottlingException,
            after_deltas: 1,
        };
        let cut: Vec<_> = answer_events(&checked, Some(error))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            cut,
            ["messageStart", "contentBlockStart", "contentBlockDelta"]
        );
    }

    #[test]
    fn a_chosen_stop_reason_applies_to_tool_calls() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        let patch = serde_json::from_str(r#"{"stopReason":"content_filtered"}"#).unwrap();
        state.apply(&patch).unwrap();
        let body = json!({
            "messages": [user("Weather, please")],
            "toolConfig": weather_tools(json!({"any": {}})),
        })
        .to_string();
        let (checked, _) =
            admit_checked(&state, HAIKU, || check(&state, HAIKU, body.as_bytes())).unwrap();
        assert_eq!(checked.answer.stop_reason, StopReason::ContentFiltered);
        assert!(checked.answer.tool_use.is_none());
        assert_eq!(
            output(&checked, 0)["output"]["message"]["content"][0]["text"],
            ""
        );
    }

    #[test]
    fn deltas_rebuild_the_text() {
        let text = "one two three four five six seven";
        assert_eq!(deltas(text).concat(), text);
        assert_eq!(deltas(text).len(), 3);
    }
}
