//! The conversation sent to a model and the answer it gives, in Converse's shape.

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: Vec<TextBlock>,
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
    pub system: Vec<TextBlock>,
    pub messages: Vec<Message>,
    pub inference_config: InferenceConfig,
    /// Model-specific fields passed through to Bedrock (`additionalModelRequestFields`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<serde_json::Value>,
}

impl Conversation {
    /// The text of every message, for the complexity rule.
    pub fn message_texts(&self) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .flat_map(|m| m.content.iter().map(|b| b.text.as_str()))
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
                "must hold at least one text block",
            ));
        }
        check_texts(&format!("messages[{i}].content"), &message.content)?;
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelAnswer {
    /// The output message (role `assistant`, text blocks).
    pub message: Message,
    pub stop_reason: String,
    pub usage: Usage,
}

impl ModelAnswer {
    /// The text blocks of the answer, joined.
    pub fn text(&self) -> String {
        self.message
            .content
            .iter()
            .map(|b| b.text.as_str())
            .collect()
    }
}
