//! The OpenAI-compatible API: `POST /openai/v1/chat/completions` read into the function's
//! request, and answers, chunks and errors written in OpenAI's shapes, so the `openai` SDKs
//! work unchanged.

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use domain::cache::CacheMode;
use domain::conversation::{
    check_inference, check_messages, check_texts, check_tools, ContentBlock, Conversation,
    InferenceConfig, InputSchema, Message, ModelAnswer, Role, TextBlock, Tool, ToolChoice,
    ToolConfig, ToolResult, ToolResultContent, ToolSpec, ToolUse, Usage,
};
use domain::stream::StreamEvent;

use crate::error::ApiError;
use crate::request::InvokeRequest;
use crate::wire::{sse_data, Answered, StreamMeta};

/// The model name that chooses by complexity tier, as `/v1/invoke` does without `modelId`.
pub const AUTO_MODEL: &str = "auto";

/// What the OpenAI request asks of the answer's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenAiOptions {
    /// `stream_options.include_usage`: a last chunk with `usage` and no choices.
    pub include_usage: bool,
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_param(param)
}

/// Fields OpenAI defines that Bedrock cannot honour: refused unless at their neutral value,
/// since dropping them would change the answer unnoticed.
fn neutral(name: &str, value: &Value) -> Option<bool> {
    Some(match name {
        "n" => value.is_null() || value.as_u64() == Some(1),
        "presence_penalty" | "frequency_penalty" => value.is_null() || value.as_f64() == Some(0.0),
        "logprobs" => value.is_null() || value == &Value::Bool(false),
        // One tool call at a time cannot be asked of Bedrock's Converse.
        "parallel_tool_calls" => value.is_null() || value == &Value::Bool(true),
        "response_format" => value.is_null() || value.get("type") == Some(&json!("text")),
        "modalities" => value.is_null() || value == &json!(["text"]),
        "seed" | "logit_bias" | "top_logprobs" | "reasoning_effort" | "audio" | "prediction"
        | "web_search_options" | "functions" | "function_call" | "verbosity" => value.is_null(),
        _ => return None,
    })
}

/// Fields that do not change the answer: accepted and not used.
const IGNORED: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
];

/// The fields read into [`ChatBody`].
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
];

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<Stop>,
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ChatTool {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionSpec {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    /// Schema-exact arguments: Bedrock cannot promise them, so `true` is refused.
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<ChatToolCall>>,
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatToolCall {
    id: String,
    function: CalledFunction,
}

#[derive(Debug, Deserialize)]
struct CalledFunction {
    name: String,
    arguments: String,
}

/// The text of a message's `content`: a string, or an array of `{"type": "text"}` parts.
fn text_of(content: Option<&Value>, param: &str) -> Result<Option<String>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default())
                    }
                    other => {
                        return Err(bad(
                            &format!("{param}[{j}].type"),
                            format!(
                                "content parts of type {:?} are not supported; send text",
                                other.unwrap_or("none")
                            ),
                        ))
                    }
                }
            }
            Ok(Some(text))
        }
        Some(_) => Err(bad(param, "must be a string or an array of text parts")),
    }
}

/// Appends blocks to the last message when it has the same role: Bedrock wants roles to
/// alternate, OpenAI clients send consecutive user (or tool) messages.
fn push(messages: &mut Vec<Message>, role: Role, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(Message {
            role,
            content: blocks,
        }),
    }
}

fn read_messages(chat: Vec<ChatMessage>) -> Result<(Vec<TextBlock>, Vec<Message>), ApiError> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, message) in chat.into_iter().enumerate() {
        let param = format!("messages[{i}].content");
        match message.role.as_str() {
            "system" | "developer" => {
                if let Some(text) = text_of(message.content.as_ref(), &param)? {
                    system.push(TextBlock::new(text));
                }
            }
            "user" => {
                let text = text_of(message.content.as_ref(), &param)?.unwrap_or_default();
                push(&mut messages, Role::User, vec![ContentBlock::Text(text)]);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                if let Some(text) = text_of(message.content.as_ref(), &param)? {
                    if !text.trim().is_empty() {
                        blocks.push(ContentBlock::Text(text));
                    }
                }
                for (j, call) in message
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    let input = serde_json::from_str(&call.function.arguments).map_err(|e| {
                        bad(
                            &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            format!("is not JSON: {e}"),
                        )
                    })?;
                    blocks.push(ContentBlock::ToolUse(ToolUse {
                        tool_use_id: call.id,
                        name: call.function.name,
                        input,
                    }));
                }
                if blocks.is_empty() {
                    return Err(bad(
                        &param,
                        "an assistant message needs content or tool_calls",
                    ));
                }
                push(&mut messages, Role::Assistant, blocks);
            }
            "tool" => {
                let tool_use_id = message.tool_call_id.ok_or_else(|| {
                    bad(
                        &format!("messages[{i}].tool_call_id"),
                        "is required on a tool message",
                    )
                })?;
                let text = text_of(message.content.as_ref(), &param)?.unwrap_or_default();
                // Bedrock refuses blank text: an empty result is sent as an empty JSON object.
                let content = if text.trim().is_empty() {
                    ToolResultContent::Json(json!({}))
                } else {
                    ToolResultContent::Text(text)
                };
                push(
                    &mut messages,
                    Role::User,
                    vec![ContentBlock::ToolResult(ToolResult {
                        tool_use_id,
                        content: vec![content],
                        status: None,
                    })],
                );
            }
            other => {
                return Err(bad(
                    &format!("messages[{i}].role"),
                    format!("{other:?} is not one of system, developer, user, assistant, tool"),
                ))
            }
        }
    }
    Ok((system, messages))
}

fn read_tools(
    tools: Option<Vec<ChatTool>>,
    choice: Option<&Value>,
    messages: &[Message],
) -> Result<Option<ToolConfig>, ApiError> {
    let Some(tools) = tools.filter(|t| !t.is_empty()) else {
        if choice.is_some_and(|c| c != "none" && !c.is_null()) {
            return Err(bad(
                "tool_choice",
                "names a tool choice but no tools are given",
            ));
        }
        return Ok(None);
    };
    let mut specs = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        if tool.function.strict == Some(true) {
            return Err(bad(
                &format!("tools[{i}].function.strict"),
                "strict function calling is not supported by this Bedrock gateway; remove it",
            ));
        }
        if tool.kind != "function" {
            return Err(bad(
                &format!("tools[{i}].type"),
                format!("{:?} is not supported; only function tools are", tool.kind),
            ));
        }
        specs.push(Tool::ToolSpec(ToolSpec {
            name: tool.function.name,
            description: tool.function.description,
            input_schema: InputSchema {
                json: tool
                    .function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            },
        }));
    }
    let history_has_tools = messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)));
    let tool_choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Some(ToolChoice::Auto {}),
            "required" => Some(ToolChoice::Any {}),
            // Bedrock has no "none": without tool history the tools are left out; with it they
            // must stay (Bedrock reads the history with them), and the model could call one.
            "none" if !history_has_tools => return Ok(None),
            "none" => {
                return Err(bad(
                    "tool_choice",
                    "\"none\" is not supported once the conversation holds tool calls (Bedrock needs the tools to read them); use \"auto\" or leave the tools out of the history",
                ))
            }
            other => {
                return Err(bad(
                    "tool_choice",
                    format!("{other:?} is not auto, required, none or a named function"),
                ))
            }
        },
        Some(named) => match named.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(ToolChoice::Tool {
                name: name.to_owned(),
            }),
            None => return Err(bad("tool_choice", "a named choice needs function.name")),
        },
    };
    Ok(Some(ToolConfig {
        tools: specs,
        tool_choice,
    }))
}

/// Names the OpenAI field behind a domain check's field.
fn openai_param(field: &str) -> String {
    field
        .replace("inferenceConfig.maxTokens", "max_completion_tokens")
        .replace("inferenceConfig.temperature", "temperature")
        .replace("inferenceConfig.topP", "top_p")
        .replace("inferenceConfig.stopSequences", "stop")
        .replace("toolConfig.tools", "tools")
        .replace(".toolSpec.name", ".function.name")
        .replace("toolConfig.toolChoice.tool.name", "tool_choice")
        .replace("toolConfig", "tools")
}

/// Reads a chat completion request. The model is returned as given (`auto` included): which
/// names are served is the handler's decision.
pub fn parse(body: &[u8]) -> Result<(InvokeRequest, String, OpenAiOptions), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad("body", format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("body", "must be a JSON object"));
    };
    let mut known = Map::new();
    for (name, value) in fields {
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        match neutral(&name, &value) {
            Some(true) => continue,
            Some(false) => {
                return Err(bad(
                    &name,
                    format!("{name} is not supported by this Bedrock gateway; remove it"),
                ))
            }
            None if !FIELDS.contains(&name.as_str()) => {
                return Err(bad(
                    &name,
                    format!("unknown field {name:?}; see the README for the fields served"),
                ))
            }
            None => {}
        }
        known.insert(name, value);
    }
    let chat: ChatBody = serde_path_to_error::deserialize(Value::Object(known)).map_err(|e| {
        let path = e.path().to_string();
        bad(&path, format!("{path}: {}", e.into_inner()))
    })?;
    if chat.stream_options.is_some() && !chat.stream {
        return Err(bad("stream_options", "is only allowed with stream: true"));
    }
    let (system, messages) = read_messages(chat.messages)?;
    let tool_config = read_tools(chat.tools, chat.tool_choice.as_ref(), &messages)?;
    let inference_config = InferenceConfig {
        max_tokens: chat.max_completion_tokens.or(chat.max_tokens),
        temperature: chat.temperature,
        top_p: chat.top_p,
        stop_sequences: match chat.stop {
            None => vec![],
            Some(Stop::One(stop)) => vec![stop],
            Some(Stop::Many(stops)) => stops,
        },
    };
    check_messages(&messages)
        .and_then(|()| check_texts("system", &system))
        .and_then(|()| check_inference(&inference_config))
        .and_then(|()| check_tools(tool_config.as_ref(), &messages))
        .map_err(|invalid| {
            let param = openai_param(&invalid.field);
            bad(&param, format!("{param}: {}", invalid.reason))
        })?;
    let request = InvokeRequest {
        conversation: Conversation {
            system,
            messages,
            inference_config,
            additional_model_request_fields: None,
            tool_config,
        },
        model_id: None,
        cache_mode: CacheMode::Use,
        ttl_seconds: None,
        stream: chat.stream,
    };
    let options = OpenAiOptions {
        include_usage: chat.stream_options.is_some_and(|o| o.include_usage),
    };
    Ok((request, chat.model, options))
}

/// OpenAI's names for why an answer ended.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    })
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
    json!({
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
        "usage": usage_json(&answer.usage),
        "system_fingerprint": null,
    })
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
            StreamEvent::Started => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(body: Value) -> (InvokeRequest, String, OpenAiOptions) {
        parse(body.to_string().as_bytes()).unwrap()
    }

    fn parse_err(body: Value) -> ApiError {
        parse(body.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn maps_messages_and_inference_settings_to_converse() {
        let (request, model, options) = parse_ok(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "in French"}]},
                {"role": "user", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "n": 1,
            "user": "u-1",
        }));
        assert_eq!(model, "auto");
        assert!(request.stream);
        assert!(options.include_usage);
        let c = &request.conversation;
        assert_eq!(
            c.system,
            vec![TextBlock::new("be brief"), TextBlock::new("in French")]
        );
        assert_eq!(c.messages.len(), 1, "consecutive user messages merge");
        assert_eq!(c.messages[0].content.len(), 2);
        assert_eq!(c.inference_config.max_tokens, Some(20));
        assert_eq!(c.inference_config.temperature, Some(0.5));
        assert_eq!(c.inference_config.top_p, Some(0.9));
        assert_eq!(c.inference_config.stop_sequences, vec!["END".to_owned()]);
    }

    #[test]
    fn maps_tools_and_a_tool_round_trip() {
        let (request, _, _) = parse_ok(json!({
            "model": "auto",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }));
        let c = &request.conversation;
        let config = c.tool_config.as_ref().unwrap();
        assert_eq!(
            config.tool_choice,
            Some(ToolChoice::Tool {
                name: "get_weather".into()
            })
        );
        assert_eq!(
            c.messages[1].content,
            vec![ContentBlock::ToolUse(ToolUse {
                tool_use_id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"}),
            })]
        );
        assert!(
            matches!(&c.messages[2].content[0], ContentBlock::ToolResult(r) if r.tool_use_id == "call_1")
        );
    }

    #[test]
    fn tool_choice_none_without_history_leaves_the_tools_out() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (choice, expected) in [
            (json!("auto"), Some(ToolChoice::Auto {})),
            (json!("required"), Some(ToolChoice::Any {})),
        ] {
            let (request, _, _) = parse_ok(
                json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            );
            assert_eq!(
                request.conversation.tool_config.unwrap().tool_choice,
                expected
            );
        }
        let (request, _, _) = parse_ok(
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "none"}),
        );
        assert_eq!(request.conversation.tool_config, None);
    }

    #[test]
    fn fields_that_would_change_the_answer_are_refused_by_name() {
        let base = || json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]});
        for (field, value) in [
            ("seed", json!(7)),
            ("n", json!(2)),
            ("logit_bias", json!({"50256": -100})),
            ("presence_penalty", json!(0.5)),
            ("response_format", json!({"type": "json_object"})),
            ("logprobs", json!(true)),
            ("parallel_tool_calls", json!(false)),
            ("colour", json!("blue")),
        ] {
            let mut body = base();
            body[field] = value;
            let error = parse_err(body);
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert_eq!(error.param.as_deref(), Some(field), "{error:?}");
            assert!(error.message.contains(field), "{error:?}");
        }
        let mut body = base();
        body["temperature"] = json!(1.5);
        assert_eq!(parse_err(body).param.as_deref(), Some("temperature"));
        let mut body = base();
        body["messages"] = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]);
        assert_eq!(
            parse_err(body).param.as_deref(),
            Some("messages[0].content[0].type")
        );
    }

    #[test]
    fn finish_reasons_follow_openai() {
        assert_eq!(finish_reason("end_turn"), "stop");
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("tool_use"), "tool_calls");
        assert_eq!(finish_reason("content_filtered"), "content_filter");
    }

    #[test]
    fn chunks_number_tool_calls_from_zero() {
        let meta = StreamMeta::for_tests("chatcmpl-x");
        let mut writer = ChunkWriter::new(
            &meta,
            OpenAiOptions {
                include_usage: true,
            },
        );
        let start = writer
            .event(&StreamEvent::ToolUseStart {
                index: 1,
                tool_use_id: "t".into(),
                name: "f".into(),
            })
            .unwrap();
        let text = String::from_utf8(start.to_vec()).unwrap();
        let chunk: Value = serde_json::from_str(text.trim().trim_start_matches("data: ")).unwrap();
        assert_eq!(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let usage = writer.event(&StreamEvent::Usage(Usage::default())).unwrap();
        let usage: Value = serde_json::from_str(
            String::from_utf8(usage.to_vec())
                .unwrap()
                .trim()
                .trim_start_matches("data: "),
        )
        .unwrap();
        assert_eq!(usage["choices"], json!([]));
    }
}
