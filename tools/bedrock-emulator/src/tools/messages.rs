//! The `toolUse` and `toolResult` blocks of a conversation, checked as Bedrock checks them.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::{check_name, constraint, ToolConfig};
use crate::error::BedrockError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseBlock {
    tool_use_id: String,
    name: String,
    /// Required; its value plays no part.
    #[serde(rename = "input")]
    _input: IgnoredAny,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolResultBlock {
    tool_use_id: String,
    content: Vec<Value>,
    #[serde(default)]
    status: Option<String>,
}

fn malformed(i: usize, j: usize, member: &str, e: &serde_json::Error) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: messages.{i}.content.{j}.{member}: {e}"
    ))
}

/// The `toolUseId`s of a message's `toolUse` blocks and of its `toolResult` blocks, in order.
struct ToolBlocks {
    uses: Vec<String>,
    results: Vec<String>,
}

fn tool_blocks(i: usize, role: &str, content: &[Value]) -> Result<ToolBlocks, BedrockError> {
    let mut blocks = ToolBlocks {
        uses: Vec::new(),
        results: Vec::new(),
    };
    for (j, block) in content.iter().enumerate() {
        if let Some(tool_use) = block.get("toolUse") {
            let tool_use: ToolUseBlock = serde_json::from_value(tool_use.clone())
                .map_err(|e| malformed(i, j, "toolUse", &e))?;
            check_name(
                &tool_use.name,
                &format!(
                    "messages.{}.member.content.{}.member.toolUse.name",
                    i + 1,
                    j + 1
                ),
            )?;
            if role != "assistant" {
                return Err(BedrockError::validation(format!(
                    "The model returned the following errors: messages.{i}.content.{j}: toolUse blocks can only be in assistant messages."
                )));
            }
            blocks.uses.push(tool_use.tool_use_id);
        }
        if let Some(result) = block.get("toolResult") {
            let result: ToolResultBlock = serde_json::from_value(result.clone())
                .map_err(|e| malformed(i, j, "toolResult", &e))?;
            if role != "user" {
                return Err(BedrockError::validation(format!(
                    "The model returned the following errors: messages.{i}.content.{j}: toolResult blocks can only be in user messages."
                )));
            }
            match result.status.as_deref() {
                None | Some("success") => {}
                Some("error") if result.content.is_empty() => {
                    return Err(BedrockError::validation(format!(
                        "The content field at messages.{i}.content.{j}.toolResult cannot be empty when status value is error."
                    )))
                }
                Some("error") => {}
                Some(other) => {
                    return Err(constraint(
                        other,
                        &format!(
                            "messages.{}.member.content.{}.member.toolResult.status",
                            i + 1,
                            j + 1
                        ),
                        "satisfy enum value set: [success, error]",
                    ))
                }
            }
            blocks.results.push(result.tool_use_id);
        }
    }
    Ok(blocks)
}

/// The checks Bedrock makes on the tool blocks of a conversation (`(role, content)` per
/// message, roles already checked to alternate from `user`).
pub fn check_messages(
    messages: &[(&str, &[Value])],
    config: Option<&ToolConfig>,
) -> Result<(), BedrockError> {
    let mut previous_uses: Vec<String> = Vec::new();
    for (i, (role, content)) in messages.iter().enumerate() {
        let blocks = tool_blocks(i, role, content)?;
        if config.is_none() && !(blocks.uses.is_empty() && blocks.results.is_empty()) {
            return Err(BedrockError::validation(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            ));
        }
        if *role == "user" {
            if blocks.results.len() > previous_uses.len() {
                return Err(BedrockError::validation(format!(
                    "The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
                )));
            }
            let unanswered: Vec<&str> = previous_uses
                .iter()
                .filter(|id| !blocks.results.contains(id))
                .map(String::as_str)
                .collect();
            if !unanswered.is_empty() {
                return Err(BedrockError::validation(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    unanswered.join(", ")
                )));
            }
        }
        previous_uses = blocks.uses;
    }
    Ok(())
}
