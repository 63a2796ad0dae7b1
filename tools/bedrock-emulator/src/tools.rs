//! Converse tool use: the checks Bedrock makes on `toolConfig`, `toolUse` and `toolResult`,
//! and the deterministic model's tool calls.
//!
//! Request side, as Bedrock takes it: `toolConfig: {tools: [{toolSpec: {name, description?,
//! inputSchema: {json: <JSON schema>}}}], toolChoice?: {auto: {}} | {any: {}} | {tool: {name}}}`
//! (other members of the `Tool` union, such as `cachePoint`, are accepted and play no part);
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

use std::collections::HashSet;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::BedrockError;
use crate::generate::word_for;

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

/// Characters the tool definitions of a Converse request count for: their serialised size,
/// as for other non-text blocks.
pub fn definition_chars(request: &Value) -> usize {
    request
        .get("toolConfig")
        .and_then(|c| c.get("tools"))
        .and_then(Value::as_array)
        .map_or(0, |tools| tools.iter().map(|t| t.to_string().len()).sum())
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

/// The input the model gives a tool: an object with a value for each property of the schema
/// (the schema's order): the first `enum` value or the `const` if there is one, otherwise by
/// `type` (the first non-`null` one of a list): `string` → a short word derived from the
/// fingerprint and the property's path, `integer` and `number` → 1, `boolean` → true,
/// `array` → [], `null` → null, `object` (or a schema with `properties`) → the same, recursively;
/// any other schema → a word.
pub fn input_for(schema: &Value, fingerprint: &[u8]) -> Value {
    object_for(schema, fingerprint, "")
}

fn object_for(schema: &Value, fingerprint: &[u8], path: &str) -> Value {
    let mut object = Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let path = format!("{path}/{name}");
            object.insert(name.clone(), value_for(property, fingerprint, &path));
        }
    }
    Value::Object(object)
}

fn type_of(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    }
}

fn value_for(schema: &Value, fingerprint: &[u8], path: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    match type_of(schema) {
        "object" => object_for(schema, fingerprint, path),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "array" => json!([]),
        "null" => Value::Null,
        _ => {
            let mut seed = fingerprint.to_vec();
            seed.push(0);
            seed.extend_from_slice(path.as_bytes());
            json!(word_for(&seed))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: Value) -> ToolConfig {
        serde_json::from_value(value).unwrap()
    }

    fn weather() -> Value {
        json!({"toolSpec": {
            "name": "get_weather",
            "description": "The weather in a city",
            "inputSchema": {"json": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                    "detailed": {"type": "boolean"},
                    "hours": {"type": "array", "items": {"type": "integer"}},
                    "at": {"type": "object", "properties": {"lat": {"type": "number"}, "label": {"type": ["null", "string"]}}},
                },
                "required": ["city"],
            }},
        }})
    }

    fn text(t: &str) -> Vec<Value> {
        vec![json!({ "text": t })]
    }

    #[test]
    fn input_follows_the_schema() {
        let tools = config(json!({"tools": [weather()], "toolChoice": {"any": {}}}));
        let call = tools.call(&text("hello"), b"fingerprint").unwrap();
        assert_eq!(call.name, "get_weather");
        assert!(call.tool_use_id.starts_with("tooluse_"));
        assert_eq!(call.tool_use_id.len(), "tooluse_".len() + 22);
        let input = &call.input;
        let city = input["city"].as_str().unwrap();
        assert!(!city.is_empty() && city.chars().all(|c| c.is_ascii_lowercase()));
        assert_eq!(input["unit"], "celsius");
        assert_eq!(input["days"], 1);
        assert_eq!(input["detailed"], true);
        assert_eq!(input["hours"], json!([]));
        assert_eq!(input["at"]["lat"], 1);
        assert!(input["at"]["label"].is_string());
        // Deterministic, and another fingerprint gives another id.
        assert_eq!(
            tools.call(&text("hello"), b"fingerprint"),
            Some(call.clone())
        );
        let other = tools.call(&text("hello"), b"other").unwrap();
        assert_ne!(other.tool_use_id, call.tool_use_id);
    }

    #[test]
    fn fragments_rebuild_the_input() {
        let tools = config(json!({"tools": [weather()], "toolChoice": {"any": {}}}));
        let call = tools.call(&text("hello"), b"fingerprint").unwrap();
        let fragments = call.input_fragments();
        assert!(fragments.len() > 2, "{fragments:?}");
        assert_eq!(fragments.concat(), call.input_json());
        let parsed: Value = serde_json::from_str(&fragments.concat()).unwrap();
        assert_eq!(parsed, call.input);
    }

    #[test]
    fn the_choice_decides_the_call() {
        let second =
            json!({"toolSpec": {"name": "Lookup-2", "inputSchema": {"json": {"type": "object"}}}});
        let auto = config(json!({"tools": [weather(), second.clone()]}));
        assert_eq!(auto.call(&text("Tell me a story"), b"f"), None);
        let called = auto.call(&text("please use LOOKUP-2 then get_weather"), b"f");
        assert_eq!(called.unwrap().name, "get_weather");
        let called = auto.call(&text("please use lookup-2"), b"f").unwrap();
        assert_eq!(
            (called.name.as_str(), called.input),
            ("Lookup-2", json!({}))
        );

        let any = config(
            json!({"tools": [{"cachePoint": {"type": "default"}}, second.clone(), weather()], "toolChoice": {"any": {}}}),
        );
        assert_eq!(any.call(&text("anything"), b"f").unwrap().name, "Lookup-2");
        let named = config(
            json!({"tools": [weather(), second], "toolChoice": {"tool": {"name": "Lookup-2"}}}),
        );
        assert_eq!(
            named.call(&text("get_weather"), b"f").unwrap().name,
            "Lookup-2"
        );

        let answered =
            vec![json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}})];
        assert_eq!(named.call(&answered, b"f"), None);
        assert_eq!(any.call(&answered, b"f"), None);
    }

    #[test]
    fn refuses_bad_tool_configs() {
        let spec = |name: &str| json!({"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}});
        let cases = [
            (json!({"tools": []}), "at 'toolConfig.tools' failed"),
            (
                json!({"tools": [spec("has space")]}),
                "regular expression pattern",
            ),
            (json!({"tools": [spec("")]}), "greater than or equal to 1"),
            (
                json!({"tools": [spec(&"a".repeat(65))]}),
                "less than or equal to 64",
            ),
            (
                json!({"tools": [spec("a"), spec("b"), spec("a")]}),
                "Tool names must be unique",
            ),
            (
                json!({"tools": [spec("a")], "toolChoice": {"tool": {"name": "b"}}}),
                "tool_choice",
            ),
            (
                json!({"tools": [{"toolSpec": {"name": "a", "description": "", "inputSchema": {"json": {}}}}]}),
                "description",
            ),
        ];
        for (case, wanted) in cases {
            let error = config(case.clone()).check().unwrap_err();
            assert_eq!(error.error_type, "ValidationException", "{case}");
            assert!(error.message.contains(wanted), "{case}: {}", error.message);
        }
        assert!(config(json!({"tools": [spec("a_b-C9"), spec(&"z".repeat(64))], "toolChoice": {"tool": {"name": "a_b-C9"}}})).check().is_ok());
    }

    fn conversation(messages: &[Value], tools: bool) -> Result<(), BedrockError> {
        let pairs: Vec<(&str, &[Value])> = messages
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap(),
                    m["content"].as_array().unwrap().as_slice(),
                )
            })
            .collect();
        let config = config(json!({"tools": [weather()]}));
        check_messages(&pairs, tools.then_some(&config))
    }

    fn tool_use(id: &str) -> Value {
        json!({"toolUse": {"toolUseId": id, "name": "get_weather", "input": {}}})
    }

    fn tool_result(id: &str) -> Value {
        json!({"toolResult": {"toolUseId": id, "content": [{"json": {"temp": 20}}], "status": "success"}})
    }

    #[test]
    fn tool_blocks_must_pair_up() {
        let ask = json!({"role": "user", "content": [{"text": "weather?"}]});
        let call = |ids: &[&str]| json!({"role": "assistant", "content": ids.iter().map(|i| tool_use(i)).collect::<Vec<_>>()});
        let answer = |ids: &[&str]| json!({"role": "user", "content": ids.iter().map(|i| tool_result(i)).collect::<Vec<_>>()});

        assert!(conversation(&[ask.clone(), call(&["a", "b"]), answer(&["b", "a"])], true).is_ok());
        // The last assistant message may end on a call (nothing answers it yet).
        assert!(conversation(&[ask.clone(), call(&["a"])], true).is_ok());

        let cases: [(Vec<Value>, &str); 7] = [
            (
                vec![ask.clone(), call(&["a"]), answer(&["a"])],
                "The toolConfig field must be defined",
            ),
            (vec![answer(&["a"])], "exceeds the number of toolUse blocks"),
            (
                vec![ask.clone(), call(&["a"]), answer(&["a", "b"])],
                "exceeds the number of toolUse blocks",
            ),
            (
                vec![ask.clone(), call(&["a"]), answer(&["z"])],
                "for the following Ids: a",
            ),
            (
                vec![ask.clone(), call(&["a", "b"]), answer(&["a"])],
                "for the following Ids: b",
            ),
            (
                vec![ask.clone(), call(&["a"]), ask.clone()],
                "for the following Ids: a",
            ),
            (
                vec![json!({"role": "user", "content": [tool_use("a")]})],
                "only be in assistant messages",
            ),
        ];
        for (i, (messages, wanted)) in cases.iter().enumerate() {
            let tools = i != 0;
            let error = conversation(messages, tools).unwrap_err();
            assert!(
                error.message.contains(wanted),
                "case {i}: {}",
                error.message
            );
        }
    }

    #[test]
    fn tool_use_blocks_are_checked() {
        let ask = json!({"role": "user", "content": [{"text": "weather?"}]});
        let with = |block: Value| {
            let call = json!({"role": "assistant", "content": [block]});
            conversation(&[ask.clone(), call], true)
        };
        let no_input = with(json!({"toolUse": {"toolUseId": "a", "name": "get_weather"}}));
        assert!(no_input
            .unwrap_err()
            .message
            .contains("missing field `input`"));
        let bad_name =
            with(json!({"toolUse": {"toolUseId": "a", "name": "get weather", "input": {}}}));
        assert!(bad_name
            .unwrap_err()
            .message
            .contains("'messages.2.member.content.1.member.toolUse.name'"));
    }

    #[test]
    fn tool_result_status_is_checked() {
        let ask = json!({"role": "user", "content": [{"text": "weather?"}]});
        let call = json!({"role": "assistant", "content": [tool_use("a")]});
        let result = |status: &str, content: Value| json!({"role": "user", "content": [{"toolResult": {"toolUseId": "a", "content": content, "status": status}}]});
        assert!(conversation(
            &[
                ask.clone(),
                call.clone(),
                result("error", json!([{"text": "boom"}]))
            ],
            true
        )
        .is_ok());
        let empty = conversation(
            &[ask.clone(), call.clone(), result("error", json!([]))],
            true,
        );
        assert!(empty
            .unwrap_err()
            .message
            .contains("cannot be empty when status value is error"));
        let odd = conversation(&[ask, call, result("fine", json!([{"text": "x"}]))], true);
        assert!(odd.unwrap_err().message.contains("[success, error]"));
    }

    #[test]
    fn definitions_count_their_serialised_size() {
        let request = json!({"toolConfig": {"tools": [weather()]}});
        assert_eq!(definition_chars(&request), weather().to_string().len());
        assert_eq!(definition_chars(&json!({})), 0);
    }
}
