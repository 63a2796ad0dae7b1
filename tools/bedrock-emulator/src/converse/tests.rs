//! Converse checks, answers, streamed events and tool use.

use super::stream::{answer_events, deltas};
use super::*;
use crate::fault::{StreamError, StreamException};
use crate::generate::StopReason;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn run(body: Value) -> Result<Checked, BedrockError> {
    let state = RuntimeState::for_tests();
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
    let state = RuntimeState::for_tests();
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
    let state = RuntimeState::for_tests();
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
        run(json!({"messages": [user("What is the weather in Paris? Use get_weather.")]})).unwrap();
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
    let state = RuntimeState::for_tests();
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
