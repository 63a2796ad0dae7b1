//! Converse tool use: the checks Bedrock makes on `toolConfig`, `toolUse` and `toolResult`,
//! and the deterministic model's tool calls.
//!
//! Request side, as Bedrock takes it: `toolConfig: {tools: [{toolSpec: {name, description?,
//! inputSchema: {json: <JSON schema>}}}], toolChoice?: {auto: {}} | {any: {}} | {tool: {name}}}`
//! (other members of the `Tool` union are accepted and play no part here; a `cachePoint` is a
//! prompt-caching marker, see [`crate::prompt_cache`]);
//! `toolUse {toolUseId, name, input}` blocks in assistant messages and `toolResult {toolUseId,
//! content: [{text} | {json} | …], status?}` blocks in user messages. A violation is a
//! `ValidationException`:
//!
//! - `toolUse` or `toolResult` blocks without `toolConfig`;
//! - an empty `tools` list; a tool name outside `^[a-zA-Z0-9_-]{1,64}$`, an empty description,
//!   a name given twice; `toolChoice.tool` naming no tool of the list;
//! - a `toolUse` without `toolUseId`, `name` or `input`, or whose name breaks the same rule;
//!   a `toolUse` in a user message or a `toolResult` in an assistant message; a `toolResult`
//!   `status` other than `success` or `error`, or an `error` one with no content;
//! - more `toolResult` blocks in a user message than `toolUse` blocks in the assistant message
//!   before it, or a `toolUse` of an assistant message that the next user message does not
//!   answer with a `toolResult` of the same `toolUseId` (so a `toolResult` naming an id the
//!   previous turn did not use is refused too).
//!
//! Behaviour, deterministic: when `toolConfig` is present and the last user message carries no
//! `toolResult`, the model calls a tool if `toolChoice` is `any` (the first tool), `tool` (that
//! tool), or `auto` (the default) and the last user message's text mentions a tool's name
//! (case-insensitive; the first such tool in the list). Otherwise it answers text as without
//! tools; after a `toolResult` it concludes with text derived from the whole request, so the
//! result's content changes the answer. A call is the content
//! `[{toolUse: {toolUseId: "tooluse_…", name, input}}]` with `stopReason: tool_use`; the id is
//! derived from the request fingerprint and the input from the tool's schema (see
//! [`input_for`]).

mod config;
mod input;
mod messages;

use serde_json::{json, Value};

use crate::error::BedrockError;
pub use config::ToolConfig;
pub use input::input_for;
pub use messages::check_messages;

/// The tool call the model answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
}

/// Characters of a streamed input fragment (`contentBlockDelta.delta.toolUse.input`).
const FRAGMENT_CHARS: usize = 12;

impl ToolCall {
    /// The `toolUse` member of the answer's content block.
    pub fn block(&self) -> Value {
        json!({"toolUseId": self.tool_use_id, "name": self.name, "input": self.input})
    }

    /// The input as the JSON text a stream carries in fragments.
    pub fn input_json(&self) -> String {
        self.input.to_string()
    }

    /// The input JSON cut into fragments of a few characters; concatenated, they are
    /// [`ToolCall::input_json`].
    pub fn input_fragments(&self) -> Vec<String> {
        let json = self.input_json();
        let chars: Vec<char> = json.chars().collect();
        chars
            .chunks(FRAGMENT_CHARS)
            .map(|chunk| chunk.iter().collect())
            .collect()
    }
}

/// Characters the tool definitions of a Converse request count for: their serialised size,
/// as for other non-text blocks.
pub fn definition_chars(request: &Value) -> usize {
    request
        .get("toolConfig")
        .and_then(|c| c.get("tools"))
        .and_then(Value::as_array)
        .map_or(0, |tools| tools.iter().map(tool_chars).sum())
}

/// Characters one entry of `toolConfig.tools` counts for: its serialised size, none for a
/// cache point (a marker, not content).
pub fn tool_chars(tool: &Value) -> usize {
    if tool.get("cachePoint").is_some() {
        0
    } else {
        tool.to_string().len()
    }
}

fn constraint(value: &str, at: &str, rule: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: Member must {rule}"
    ))
}

/// Bedrock's `ToolName`: 1 to 64 characters of `[a-zA-Z0-9_-]`.
fn check_name(name: &str, at: &str) -> Result<(), BedrockError> {
    if name.is_empty() {
        return Err(constraint(
            name,
            at,
            "have length greater than or equal to 1",
        ));
    }
    if name.chars().count() > 64 {
        return Err(constraint(name, at, "have length less than or equal to 64"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(constraint(
            name,
            at,
            "satisfy regular expression pattern: [a-zA-Z0-9_-]+",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
