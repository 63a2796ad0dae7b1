//! `POST /openai/v1/chat/completions` read into the function's request: messages, tools and
//! inference settings mapped to Converse's, and every field that would change the answer
//! unnoticed refused by name.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use domain::cache::CacheMode;
use domain::conversation::{
    check_inference, check_messages, check_system, check_tools, CachePoint, CacheTtl, ContentBlock,
    Conversation, InferenceConfig, InputSchema, Message, Role, SystemBlock, Tool, ToolChoice,
    ToolConfig, ToolResult, ToolResultContent, ToolSpec, ToolUse,
};
use domain::routing::ServiceTier;

use crate::error::ApiError;
use crate::request::InvokeRequest;

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
    "service_tier",
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
    service_tier: Option<String>,
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
    /// Anthropic's and LiteLLM's prompt-cache mark on a whole message: a cache point after it.
    #[serde(default)]
    cache_control: Option<Value>,
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

/// A message's `content` as Bedrock blocks: its text (a string, or `{"type": "text"}` parts
/// joined), with a cache point after each part marked `cache_control` (Anthropic's and
/// LiteLLM's prompt-cache mark) and after the whole message when `message_mark` is given.
/// `None` when there is no content.
fn pieces_of(
    content: Option<&Value>,
    message_mark: Option<&Value>,
    param: &str,
) -> Result<Option<Vec<Piece>>, ApiError> {
    let mut pieces = Vec::new();
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => pieces.push(Piece::Text(text.clone())),
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
                if let Some(mark) = part.get("cache_control") {
                    let point = cache_point(mark, &format!("{param}[{j}].cache_control"))?;
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                    pieces.push(Piece::CachePoint(point));
                }
            }
            if !text.is_empty() || pieces.is_empty() {
                pieces.push(Piece::Text(text));
            }
        }
        Some(_) => return Err(bad(param, "must be a string or an array of text parts")),
    }
    if let Some(mark) = message_mark {
        let field = param.strip_suffix(".content").unwrap_or(param);
        let point = cache_point(mark, &format!("{field}.cache_control"))?;
        if pieces.is_empty() {
            return Err(bad(
                &format!("{field}.cache_control"),
                "marks a message without content",
            ));
        }
        pieces.push(Piece::CachePoint(point));
    }
    Ok((!pieces.is_empty()).then_some(pieces))
}

/// A piece of a message's content.
enum Piece {
    Text(String),
    CachePoint(CachePoint),
}

impl Piece {
    fn into_block(self) -> ContentBlock {
        match self {
            Self::Text(text) => ContentBlock::Text(text),
            Self::CachePoint(point) => ContentBlock::CachePoint(point),
        }
    }
}

/// OpenAI's `service_tier`: `auto` (or none) leaves the tier to the deployment (`SERVICE_TIER`);
/// `default`, `flex` and `priority` are Bedrock's tiers of the same names.
fn read_service_tier(tier: Option<&str>) -> Result<Option<ServiceTier>, ApiError> {
    match tier {
        None | Some("auto") => Ok(None),
        Some(tier) => tier.parse().map(Some).map_err(|_| {
            bad(
                "service_tier",
                format!("{tier:?} is not offered by Bedrock; use auto, default, flex or priority"),
            )
        }),
    }
}

/// `{"type": "ephemeral", "ttl"?: "5m" | "1h"}` as a cache point.
fn cache_point(mark: &Value, param: &str) -> Result<CachePoint, ApiError> {
    if mark.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return Err(bad(
            &format!("{param}.type"),
            "must be \"ephemeral\", the one kind of prompt-cache mark",
        ));
    }
    let ttl = match mark.get("ttl") {
        None | Some(Value::Null) => None,
        Some(ttl) if ttl == "5m" => Some(CacheTtl::FiveMinutes),
        Some(ttl) if ttl == "1h" => Some(CacheTtl::OneHour),
        Some(other) => {
            return Err(bad(
                &format!("{param}.ttl"),
                format!("{other} is not \"5m\" or \"1h\""),
            ))
        }
    };
    Ok(CachePoint {
        ttl,
        ..CachePoint::DEFAULT
    })
}

/// The text of pieces, for messages that take text only (tool results).
fn joined_text(pieces: Option<Vec<Piece>>) -> (String, Option<CachePoint>) {
    let mut text = String::new();
    let mut point = None;
    for piece in pieces.into_iter().flatten() {
        match piece {
            Piece::Text(part) => text.push_str(&part),
            Piece::CachePoint(p) => point = Some(p),
        }
    }
    (text, point)
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

fn read_messages(chat: Vec<ChatMessage>) -> Result<(Vec<SystemBlock>, Vec<Message>), ApiError> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, message) in chat.into_iter().enumerate() {
        let param = format!("messages[{i}].content");
        match message.role.as_str() {
            "system" | "developer" => {
                let pieces = pieces_of(
                    message.content.as_ref(),
                    message.cache_control.as_ref(),
                    &param,
                )?;
                system.extend(pieces.into_iter().flatten().map(|piece| match piece {
                    Piece::Text(text) => SystemBlock::Text(text),
                    Piece::CachePoint(point) => SystemBlock::CachePoint(point),
                }));
            }
            "user" => {
                let pieces = pieces_of(
                    message.content.as_ref(),
                    message.cache_control.as_ref(),
                    &param,
                )?
                .unwrap_or_else(|| vec![Piece::Text(String::new())]);
                push(
                    &mut messages,
                    Role::User,
                    pieces.into_iter().map(Piece::into_block).collect(),
                );
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let pieces = pieces_of(
                    message.content.as_ref(),
                    message.cache_control.as_ref(),
                    &param,
                )?;
                for piece in pieces.into_iter().flatten() {
                    match piece {
                        Piece::Text(text) if text.trim().is_empty() => {}
                        piece => blocks.push(piece.into_block()),
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
                let (text, point) = joined_text(pieces_of(
                    message.content.as_ref(),
                    message.cache_control.as_ref(),
                    &param,
                )?);
                // Bedrock refuses blank text: an empty result is sent as an empty JSON object.
                let content = if text.trim().is_empty() {
                    ToolResultContent::Json(json!({}))
                } else {
                    ToolResultContent::Text(text)
                };
                let mut blocks = vec![ContentBlock::ToolResult(ToolResult {
                    tool_use_id,
                    content: vec![content],
                    status: None,
                })];
                blocks.extend(point.map(ContentBlock::CachePoint));
                push(&mut messages, Role::User, blocks);
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

/// The body's fields this gateway serves: OpenAI fields it ignores are dropped, those at their
/// neutral value too; any other is refused by name.
fn served_fields(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
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
                    format!("unknown field {name:?}; see docs/api-openai.md for the fields served"),
                ))
            }
            None => {}
        }
        known.insert(name, value);
    }
    Ok(known)
}

/// Reads a chat completion request. The model is returned as given (`auto` included): which
/// names are served is the handler's decision.
pub fn parse(body: &[u8]) -> Result<(InvokeRequest, String, OpenAiOptions), ApiError> {
    let known = served_fields(body)?;
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
        .and_then(|()| check_system(&system))
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
        service_tier: read_service_tier(chat.service_tier.as_deref())?,
        latency: None,
    };
    let options = OpenAiOptions {
        include_usage: chat.stream_options.is_some_and(|o| o.include_usage),
    };
    Ok((request, chat.model, options))
}
