//! `toolConfig`: the tools a request offers, the checks Bedrock makes on them, and the tool the
//! deterministic model calls.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{check_name, constraint, input_for, ToolCall};
use crate::error::BedrockError;

/// `toolConfig`, as Bedrock's `ToolConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    tools: Vec<Tool>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
}

/// A member of Bedrock's `Tool` union (a cache point or a system tool plays no part).
#[derive(Debug, Deserialize)]
enum Tool {
    #[serde(rename = "toolSpec")]
    Spec(ToolSpec),
    #[serde(rename = "cachePoint")]
    CachePoint {},
    #[serde(rename = "systemTool")]
    System {},
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec {
    name: String,
    #[serde(default)]
    description: Option<String>,
    input_schema: InputSchema,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum InputSchema {
    Json(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoice {
    Auto {},
    Any {},
    Tool(SpecificTool),
}

#[derive(Debug, Deserialize)]
struct SpecificTool {
    name: String,
}

impl ToolConfig {
    fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().filter_map(|tool| match tool {
            Tool::Spec(spec) => Some(spec),
            Tool::CachePoint {} | Tool::System {} => None,
        })
    }

    /// The checks Bedrock makes on `toolConfig` itself.
    pub fn check(&self) -> Result<(), BedrockError> {
        if self.tools.is_empty() {
            return Err(constraint(
                "[]",
                "toolConfig.tools",
                "have length greater than or equal to 1",
            ));
        }
        let mut seen = HashSet::new();
        for (k, tool) in self.tools.iter().enumerate() {
            let Tool::Spec(spec) = tool else {
                continue;
            };
            let at = format!("toolConfig.tools.{}.member.toolSpec", k + 1);
            check_name(&spec.name, &format!("{at}.name"))?;
            if spec.description.as_deref() == Some("") {
                return Err(constraint(
                    "",
                    &format!("{at}.description"),
                    "have length greater than or equal to 1",
                ));
            }
            if !seen.insert(spec.name.as_str()) {
                return Err(BedrockError::validation(
                    "The model returned the following errors: tools: Tool names must be unique.",
                ));
            }
        }
        if let Some(ToolChoice::Tool(choice)) = &self.tool_choice {
            check_name(&choice.name, "toolConfig.toolChoice.tool.name")?;
            if !seen.contains(choice.name.as_str()) {
                return Err(BedrockError::validation(format!(
                    "The model returned the following errors: tool_choice: the tool '{}' named in toolChoice is not one of the tools in toolConfig.tools.",
                    choice.name
                )));
            }
        }
        Ok(())
    }

    /// The tool the model calls for a conversation whose last user message is
    /// `last_user`, if it calls one (see the module documentation).
    pub fn call(&self, last_user: &[Value], fingerprint: &[u8]) -> Option<ToolCall> {
        if last_user.iter().any(|b| b.get("toolResult").is_some()) {
            return None;
        }
        let spec = match &self.tool_choice {
            Some(ToolChoice::Any {}) => self.specs().next(),
            Some(ToolChoice::Tool(choice)) => self.specs().find(|s| s.name == choice.name),
            Some(ToolChoice::Auto {}) | None => {
                let text = last_user
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .to_lowercase();
                self.specs().find(|s| text.contains(&s.name.to_lowercase()))
            }
        }?;
        let InputSchema::Json(schema) = &spec.input_schema;
        Some(ToolCall {
            tool_use_id: tool_use_id(fingerprint),
            name: spec.name.clone(),
            input: input_for(schema, fingerprint),
        })
    }
}

/// `tooluse_` and 22 hexadecimal digits derived from the request fingerprint.
fn tool_use_id(fingerprint: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(fingerprint)
        .chain_update(b"\0toolUse")
        .finalize();
    let hex: String = digest[..11].iter().map(|b| format!("{b:02x}")).collect();
    format!("tooluse_{hex}")
}
