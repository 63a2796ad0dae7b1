//! The conversation sent to a model and the answer it gives, in Converse's shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A text content block, `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextBlock {
    pub text: String,
}

impl TextBlock {
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }
}

/// A block of a message, in Converse's shape: `{"text"}`, `{"toolUse"}`, `{"toolResult"}` or
/// `{"cachePoint"}`. A text block serialises exactly as a [`TextBlock`], so text-only cache keys
/// are unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    Text(String),
    ToolUse(ToolUse),
    ToolResult(ToolResult),
    CachePoint(CachePoint),
}

/// Bedrock's prompt cache: what comes before this point (tools, then system, then messages) may
/// be cached by the model and read again by a later request with the same prefix, at a lower
/// price. It changes what a request costs, never its answer, so it is not part of the
/// response-cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePoint {
    /// Bedrock's one kind of cache point.
    #[serde(rename = "type")]
    pub kind: CachePointKind,
    /// How long the cached prefix lives (Bedrock's default: 5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<CacheTtl>,
}

impl CachePoint {
    /// A cache point of Bedrock's default kind and time to live.
    pub const DEFAULT: Self = Self {
        kind: CachePointKind::Default,
        ttl: None,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePointKind {
    Default,
}

/// A cached prefix's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheTtl {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

/// A block of the system prompt: `{"text"}` or `{"cachePoint"}`. A text block serialises
/// exactly as a [`TextBlock`], so the cache keys of system prompts without cache points are
/// those of before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemBlock {
    Text(String),
    CachePoint(CachePoint),
}

impl SystemBlock {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// The model asks for a tool to be run with `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolUse {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
}

/// The caller's answer to a [`ToolUse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolResult {
    pub tool_use_id: String,
    pub content: Vec<ToolResultContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ToolResultStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent {
    Text(String),
    Json(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultStatus {
    Success,
    Error,
}

/// The tools a model may call (Converse `toolConfig`). Part of the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolConfig {
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    ToolSpec(ToolSpec),
    /// The tool definitions before it may be cached ([`CachePoint`]).
    CachePoint(CachePoint),
}

impl Tool {
    /// The tool's definition; `None` for a cache point.
    pub fn spec(&self) -> Option<&ToolSpec> {
        match self {
            Self::ToolSpec(spec) => Some(spec),
            Self::CachePoint(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: InputSchema,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSchema {
    pub json: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    Auto {},
    Any {},
    Tool { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::text(text)],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
}

/// Everything that is sent to the model and so changes the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub system: Vec<SystemBlock>,
    pub messages: Vec<Message>,
    pub inference_config: InferenceConfig,
    /// Model-specific fields passed through to Bedrock (`additionalModelRequestFields`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<serde_json::Value>,
    /// Absent for text-only conversations, so their cache keys are those of before tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
}

impl Conversation {
    /// The conversation as it changes the answer: without its cache points, which change only
    /// what it costs (the response cache's key is made of this).
    pub fn without_cache_points(&self) -> Self {
        let mut plain = self.clone();
        plain
            .system
            .retain(|block| !matches!(block, SystemBlock::CachePoint(_)));
        for message in &mut plain.messages {
            message
                .content
                .retain(|block| !matches!(block, ContentBlock::CachePoint(_)));
        }
        if let Some(config) = &mut plain.tool_config {
            config
                .tools
                .retain(|tool| !matches!(tool, Tool::CachePoint(_)));
        }
        plain
    }

    /// Whether any block is a cache point.
    pub fn has_cache_points(&self) -> bool {
        self.system
            .iter()
            .any(|b| matches!(b, SystemBlock::CachePoint(_)))
            || self
                .messages
                .iter()
                .flat_map(|m| &m.content)
                .any(|b| matches!(b, ContentBlock::CachePoint(_)))
            || self.tool_config.as_ref().is_some_and(|config| {
                config
                    .tools
                    .iter()
                    .any(|t| matches!(t, Tool::CachePoint(_)))
            })
    }

    /// The text of every message, for the complexity rule.
    pub fn message_texts(&self) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .flat_map(|m| m.content.iter().filter_map(ContentBlock::as_text))
    }
}

/// Upper bound for `inferenceConfig.maxTokens`; each model's own limit is Bedrock's to check.
pub const MAX_TOKENS_LIMIT: i64 = 200_000;
const MAX_STOP_SEQUENCES: usize = 64;

/// A field of a conversation that Bedrock would refuse, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

pub fn check_texts(field: &str, blocks: &[TextBlock]) -> Result<(), Invalid> {
    for (i, block) in blocks.iter().enumerate() {
        if block.text.trim().is_empty() {
            return Err(Invalid::new(
                format!("{field}[{i}].text"),
                "must not be empty or only whitespace",
            ));
        }
    }
    Ok(())
}

/// The system prompt's rules: no empty text, and a cache point only after text (Bedrock
/// caches what comes before it).
pub fn check_system(blocks: &[SystemBlock]) -> Result<(), Invalid> {
    for (i, block) in blocks.iter().enumerate() {
        match block {
            SystemBlock::Text(text) if text.trim().is_empty() => {
                return Err(Invalid::new(
                    format!("system[{i}].text"),
                    "must not be empty or only whitespace",
                ))
            }
            SystemBlock::CachePoint(_) if i == 0 => {
                return Err(Invalid::new(
                    format!("system[{i}].cachePoint"),
                    "must follow a text block: it caches what comes before it",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn check_messages(messages: &[Message]) -> Result<(), Invalid> {
    if messages.is_empty() {
        return Err(Invalid::new("messages", "must hold at least one message"));
    }
    for (i, message) in messages.iter().enumerate() {
        let expected = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if message.role != expected {
            let why = if i == 0 {
                "the conversation must start with a user message"
            } else {
                "roles must alternate between user and assistant"
            };
            return Err(Invalid::new(format!("messages[{i}].role"), why));
        }
        if message.content.is_empty() {
            return Err(Invalid::new(
                format!("messages[{i}].content"),
                "must hold at least one content block",
            ));
        }
        check_blocks(i, message)?;
    }
    Ok(())
}

fn check_blocks(i: usize, message: &Message) -> Result<(), Invalid> {
    for (j, block) in message.content.iter().enumerate() {
        let field = format!("messages[{i}].content[{j}]");
        match (block, message.role) {
            (ContentBlock::Text(text), _) if text.trim().is_empty() => {
                return Err(Invalid::new(
                    format!("{field}.text"),
                    "must not be empty or only whitespace",
                ))
            }
            (ContentBlock::ToolUse(_), Role::User) => {
                return Err(Invalid::new(
                    format!("{field}.toolUse"),
                    "only assistant messages hold toolUse blocks",
                ))
            }
            (ContentBlock::ToolResult(_), Role::Assistant) => {
                return Err(Invalid::new(
                    format!("{field}.toolResult"),
                    "only user messages hold toolResult blocks",
                ))
            }
            (ContentBlock::CachePoint(_), _) if j == 0 => {
                return Err(Invalid::new(
                    format!("{field}.cachePoint"),
                    "must follow another block of the message: it caches what comes before it",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn has_tool_blocks(messages: &[Message]) -> bool {
    messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)))
    })
}

/// Bedrock's rules for tools: names it accepts, a choice among them, and no tool blocks in a
/// conversation without tools.
pub fn check_tools(tool_config: Option<&ToolConfig>, messages: &[Message]) -> Result<(), Invalid> {
    let Some(config) = tool_config else {
        if has_tool_blocks(messages) {
            return Err(Invalid::new(
                "toolConfig",
                "is required when messages hold toolUse or toolResult blocks",
            ));
        }
        return Ok(());
    };
    if config.tools.is_empty() {
        return Err(Invalid::new(
            "toolConfig.tools",
            "must hold at least one tool",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, tool) in config.tools.iter().enumerate() {
        let Some(spec) = tool.spec() else {
            if i == 0 {
                return Err(Invalid::new(
                    format!("toolConfig.tools[{i}].cachePoint"),
                    "must follow a tool: it caches the tools before it",
                ));
            }
            continue;
        };
        let name = &spec.name;
        let valid = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Invalid::new(
                format!("toolConfig.tools[{i}].toolSpec.name"),
                "must be 1 to 64 letters, digits, '_' or '-'",
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(Invalid::new(
                format!("toolConfig.tools[{i}].toolSpec.name"),
                format!("{name:?} is defined twice"),
            ));
        }
        if !spec.input_schema.json.is_object() {
            return Err(Invalid::new(
                format!("toolConfig.tools[{i}].toolSpec.inputSchema.json"),
                "must be a JSON schema object",
            ));
        }
    }
    if let Some(ToolChoice::Tool { name }) = &config.tool_choice {
        if !names.contains(name.as_str()) {
            return Err(Invalid::new(
                "toolConfig.toolChoice.tool.name",
                format!("{name:?} is not one of the tools"),
            ));
        }
    }
    Ok(())
}

pub fn check_inference(config: &InferenceConfig) -> Result<(), Invalid> {
    if let Some(n) = config.max_tokens {
        if !(1..=MAX_TOKENS_LIMIT).contains(&n) {
            return Err(Invalid::new(
                "inferenceConfig.maxTokens",
                format!("must be between 1 and {MAX_TOKENS_LIMIT}, got {n}"),
            ));
        }
    }
    for (name, value) in [("temperature", config.temperature), ("topP", config.top_p)] {
        if let Some(v) = value {
            if !(0.0..=1.0).contains(&v) {
                return Err(Invalid::new(
                    format!("inferenceConfig.{name}"),
                    format!("must be between 0 and 1, got {v}"),
                ));
            }
        }
    }
    if config.stop_sequences.len() > MAX_STOP_SEQUENCES {
        return Err(Invalid::new(
            "inferenceConfig.stopSequences",
            format!("must hold at most {MAX_STOP_SEQUENCES} sequences"),
        ));
    }
    if let Some(i) = config.stop_sequences.iter().position(String::is_empty) {
        return Err(Invalid::new(
            format!("inferenceConfig.stopSequences[{i}]"),
            "must not be empty",
        ));
    }
    Ok(())
}

/// A call's tokens, as Bedrock counts them: `input_tokens` excludes the prompt-cache tokens,
/// which are counted (and priced) apart; `total_tokens` includes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
    /// Input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_input_tokens: u32,
    /// Input tokens written to the prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u32,
}

fn is_zero(tokens: &u32) -> bool {
    *tokens == 0
}

impl Usage {
    /// Input and output tokens, without prompt-cache tokens.
    pub fn new(input_tokens: u32, output_tokens: u32) -> Self {
        Self {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            ..Self::default()
        }
    }

    /// Every input token of the call, cached or not (what OpenAI calls `prompt_tokens`).
    pub fn prompt_tokens(&self) -> u32 {
        self.input_tokens
            .saturating_add(self.cache_read_input_tokens)
            .saturating_add(self.cache_write_input_tokens)
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelAnswer {
    /// The output message (role `assistant`, text blocks).
    pub message: Message,
    pub stop_reason: String,
    pub usage: Usage,
    /// The service tier Bedrock served the call on, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<crate::routing::ServiceTier>,
    /// The model a prompt router chose to answer (Bedrock's `trace.promptRouter.invokedModelId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoked_model: Option<String>,
    /// The latency Bedrock served the call with (`performanceConfig`), when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<crate::routing::Latency>,
}

impl ModelAnswer {
    /// The text blocks of the answer, joined.
    pub fn text(&self) -> String {
        self.message
            .content
            .iter()
            .filter_map(ContentBlock::as_text)
            .collect()
    }

    /// The tools the model asks to be run, in order.
    pub fn tool_uses(&self) -> impl Iterator<Item = &ToolUse> {
        self.message.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse(tool_use) => Some(tool_use),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools(names: &[&str], choice: Option<ToolChoice>) -> ToolConfig {
        ToolConfig {
            tools: names
                .iter()
                .map(|name| {
                    Tool::ToolSpec(ToolSpec {
                        name: (*name).into(),
                        description: None,
                        input_schema: InputSchema {
                            json: json!({"type": "object"}),
                        },
                    })
                })
                .collect(),
            tool_choice: choice,
        }
    }

    fn round_trip() -> Vec<Message> {
        serde_json::from_value(json!([
            {"role": "user", "content": [{"text": "weather in Paris?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"celsius": 21}}], "status": "success"}}]}
        ]))
        .unwrap()
    }

    #[test]
    fn a_tool_round_trip_is_a_valid_conversation() {
        let messages = round_trip();
        assert_eq!(check_messages(&messages), Ok(()));
        assert_eq!(
            check_tools(Some(&tools(&["get_weather"], None)), &messages),
            Ok(())
        );
    }

    #[test]
    fn tool_blocks_need_tools_and_the_right_role() {
        let messages = round_trip();
        assert_eq!(
            check_tools(None, &messages).unwrap_err().field,
            "toolConfig"
        );
        let mut wrong = messages.clone();
        let tool_use = wrong[1].content[0].clone();
        wrong[0].content.push(tool_use);
        assert_eq!(
            check_messages(&wrong).unwrap_err().field,
            "messages[0].content[1].toolUse"
        );
    }

    #[test]
    fn tool_definitions_are_checked_as_bedrock_does() {
        let none: &[Message] = &[];
        let cases = [
            (tools(&[], None), "toolConfig.tools"),
            (
                tools(&["has space"], None),
                "toolConfig.tools[0].toolSpec.name",
            ),
            (
                tools(&["a", "a"], None),
                "toolConfig.tools[1].toolSpec.name",
            ),
            (
                tools(&["a"], Some(ToolChoice::Tool { name: "b".into() })),
                "toolConfig.toolChoice.tool.name",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(check_tools(Some(&config), none).unwrap_err().field, field);
        }
    }

    #[test]
    fn tool_choice_reads_converses_shapes() {
        let choices: Vec<ToolChoice> =
            serde_json::from_value(json!([{"auto": {}}, {"any": {}}, {"tool": {"name": "x"}}]))
                .unwrap();
        assert_eq!(
            choices,
            vec![
                ToolChoice::Auto {},
                ToolChoice::Any {},
                ToolChoice::Tool { name: "x".into() }
            ]
        );
        assert!(serde_json::from_value::<ContentBlock>(json!({"image": {}})).is_err());
    }
}
