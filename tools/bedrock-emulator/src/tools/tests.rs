//! Tool configurations, calls and the tool blocks of conversations.

use serde_json::{json, Value};

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
    let named =
        config(json!({"tools": [weather(), second], "toolChoice": {"tool": {"name": "Lookup-2"}}}));
    assert_eq!(
        named.call(&text("get_weather"), b"f").unwrap().name,
        "Lookup-2"
    );

    let answered = vec![json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}})];
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
    let bad_name = with(json!({"toolUse": {"toolUseId": "a", "name": "get weather", "input": {}}}));
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
