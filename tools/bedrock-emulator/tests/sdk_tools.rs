#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Converse tool use against the Bedrock emulator through the AWS SDK for Rust: a tool call and
//! its result, buffered and streamed, and the requests Bedrock refuses (the emulator
//! in-process, one per test).

mod common;

use std::collections::HashMap;

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, ConverseStreamOutput, Message,
    SpecificToolChoice, StopReason, Tool, ToolChoice, ToolConfiguration, ToolInputSchema,
    ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_sdk_bedrockruntime::Client;
use common::Emulator;
use serde_json::{json, Value};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const ASK: &str = "What is the weather in Paris? Use get_weather.";

/// JSON as the SDK's `Document`, through its `From` conversions (the type is only ever
/// inferred).
fn document<D>(value: &Value) -> D
where
    D: From<bool>
        + From<String>
        + From<u64>
        + From<i64>
        + From<f64>
        + From<Vec<D>>
        + From<HashMap<String, D>>
        + From<Option<D>>,
{
    match value {
        Value::Null => D::from(None::<D>),
        Value::Bool(b) => D::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => D::from(u),
            (None, Some(i)) => D::from(i),
            (None, None) => D::from(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => D::from(s.clone()),
        Value::Array(items) => D::from(items.iter().map(document).collect::<Vec<D>>()),
        Value::Object(map) => D::from(
            map.iter()
                .map(|(k, v)| (k.clone(), document(v)))
                .collect::<HashMap<String, D>>(),
        ),
    }
}

/// `value`, typed as `_like` is (so that `document` knows what to build).
fn like<T>(_like: &T, value: T) -> T {
    value
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("message")
}

fn message(role: ConversationRole, content: Vec<ContentBlock>) -> Message {
    Message::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .expect("message")
}

fn spec(name: &str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
            "detailed": {"type": "boolean"},
            "hours": {"type": "array", "items": {"type": "integer"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
        },
        "required": ["city"],
    });
    Tool::ToolSpec(
        ToolSpecification::builder()
            .name(name)
            .description("The current weather in a city")
            .input_schema(ToolInputSchema::Json(document(&schema)))
            .build()
            .expect("tool spec"),
    )
}

fn tools(names: &[&str], choice: Option<ToolChoice>) -> ToolConfiguration {
    ToolConfiguration::builder()
        .set_tools(Some(names.iter().map(|n| spec(n)).collect()))
        .set_tool_choice(choice)
        .build()
        .expect("tool config")
}

fn weather_tools() -> ToolConfiguration {
    tools(
        &["get_weather", "get_time"],
        Some(ToolChoice::Auto(AutoToolChoice::builder().build())),
    )
}

fn tool_use(id: &str) -> ContentBlock {
    ContentBlock::ToolUse(
        ToolUseBlock::builder()
            .tool_use_id(id)
            .name("get_weather")
            .input(document(&json!({"city": "Paris"})))
            .build()
            .expect("tool use"),
    )
}

fn tool_result(id: &str, result: &Value) -> ContentBlock {
    ContentBlock::ToolResult(
        ToolResultBlock::builder()
            .tool_use_id(id)
            .content(ToolResultContentBlock::Json(document(result)))
            .status(ToolResultStatus::Success)
            .build()
            .expect("tool result"),
    )
}

fn client(emulator: &Emulator) -> Client {
    Client::new(&emulator.sdk_config())
}

async fn converse(
    client: &Client,
    messages: Vec<Message>,
    tools: Option<ToolConfiguration>,
) -> Result<
    aws_sdk_bedrockruntime::operation::converse::ConverseOutput,
    aws_sdk_bedrockruntime::operation::converse::ConverseError,
> {
    client
        .converse()
        .model_id(HAIKU)
        .set_messages(Some(messages))
        .set_tool_config(tools)
        .send()
        .await
        .map_err(|e| e.into_service_error())
}

fn answer(output: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput) -> &Message {
    output
        .output()
        .and_then(|o| o.as_message().ok())
        .expect("a message")
}

#[tokio::test]
async fn a_tool_call_and_its_result_round_trip() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let output = converse(&client, vec![user(ASK)], Some(weather_tools()))
        .await
        .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::ToolUse);
    let call_message = answer(&output).clone();
    assert_eq!(call_message.content().len(), 1, "{call_message:?}");
    let call = call_message.content()[0]
        .as_tool_use()
        .expect("a toolUse block");
    assert_eq!(call.name(), "get_weather");
    assert!(call.tool_use_id().starts_with("tooluse_"), "{call:?}");

    // The input follows the schema: a word for the string, the first enum value, 1, true, [],
    // and the nested object likewise.
    let input = call.input();
    let city = input
        .as_object()
        .and_then(|o| o.get("city"))
        .and_then(|c| c.as_string())
        .expect("a city")
        .to_owned();
    assert!(!city.is_empty());
    let expected = json!({
        "city": city, "unit": "celsius", "days": 1, "detailed": true, "hours": [],
        "where": {"lat": 1},
    });
    assert_eq!(input, &like(input, document(&expected)));
    let usage = output.usage().expect("usage");
    assert!(usage.output_tokens() > 0);

    // The same request calls the same way.
    let again = converse(&client, vec![user(ASK)], Some(weather_tools()))
        .await
        .expect("converse");
    assert_eq!(answer(&again), &call_message);

    // The client runs the tool and sends its result: the model concludes with text.
    let conclude = |sky: &str| {
        vec![
            user(ASK),
            call_message.clone(),
            message(
                ConversationRole::User,
                vec![tool_result(call.tool_use_id(), &json!({"sky": sky}))],
            ),
        ]
    };
    let done = converse(&client, conclude("sunny"), Some(weather_tools()))
        .await
        .expect("converse with the tool result");
    assert_eq!(done.stop_reason(), &StopReason::EndTurn);
    let text = answer(&done).content()[0]
        .as_text()
        .expect("a text answer")
        .clone();
    assert!(!text.is_empty());
    // The answer depends on the result.
    let rainy = converse(&client, conclude("rainy"), Some(weather_tools()))
        .await
        .expect("converse with another result");
    assert_ne!(answer(&rainy).content()[0].as_text().ok(), Some(&text));
}

#[tokio::test]
async fn tool_choice_decides_whether_the_model_calls() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    // auto, no tool named: text.
    let output = converse(
        &client,
        vec![user("Tell me a story")],
        Some(weather_tools()),
    )
    .await
    .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::EndTurn);
    assert!(answer(&output).content()[0].is_text());
    // any: the first tool; tool: that tool.
    let any = tools(
        &["get_weather", "get_time"],
        Some(ToolChoice::Any(AnyToolChoice::builder().build())),
    );
    let output = converse(&client, vec![user("Tell me a story")], Some(any))
        .await
        .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::ToolUse);
    let called = answer(&output).content()[0].as_tool_use().expect("toolUse");
    assert_eq!(called.name(), "get_weather");
    let named = tools(
        &["get_weather", "get_time"],
        Some(ToolChoice::Tool(
            SpecificToolChoice::builder()
                .name("get_time")
                .build()
                .expect("choice"),
        )),
    );
    let output = converse(&client, vec![user("Tell me a story")], Some(named))
        .await
        .expect("converse");
    let called = answer(&output).content()[0].as_tool_use().expect("toolUse");
    assert_eq!(called.name(), "get_time");
}

#[tokio::test]
async fn a_streamed_tool_call_rebuilds_the_buffered_input() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let buffered = converse(&client, vec![user(ASK)], Some(weather_tools()))
        .await
        .expect("converse");
    let call = answer(&buffered).content()[0]
        .as_tool_use()
        .expect("toolUse")
        .clone();

    let mut stream = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user(ASK))
        .tool_config(weather_tools())
        .send()
        .await
        .expect("converse stream")
        .stream;
    let mut events = Vec::new();
    let mut started = None;
    let mut input = String::new();
    let mut fragments = 0;
    let mut stop = None;
    let mut usage = None;
    while let Some(event) = stream.recv().await.expect("stream event") {
        match &event {
            ConverseStreamOutput::MessageStart(_) => events.push("messageStart"),
            ConverseStreamOutput::ContentBlockStart(start) => {
                assert_eq!(start.content_block_index(), 0);
                let tool = start
                    .start()
                    .and_then(|s| s.as_tool_use().ok())
                    .expect("a toolUse start");
                started = Some((tool.tool_use_id().to_owned(), tool.name().to_owned()));
                events.push("contentBlockStart");
            }
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                assert_eq!(delta.content_block_index(), 0);
                let fragment = delta
                    .delta()
                    .and_then(|d| d.as_tool_use().ok())
                    .expect("a toolUse delta");
                input.push_str(fragment.input());
                fragments += 1;
                events.push("contentBlockDelta");
            }
            ConverseStreamOutput::ContentBlockStop(_) => events.push("contentBlockStop"),
            ConverseStreamOutput::MessageStop(message_stop) => {
                stop = Some(message_stop.stop_reason().clone());
                events.push("messageStop");
            }
            ConverseStreamOutput::Metadata(metadata) => {
                usage = metadata
                    .usage()
                    .map(|u| (u.input_tokens(), u.output_tokens()));
                events.push("metadata");
            }
            _ => events.push("other"),
        }
    }
    assert_eq!(&events[..2], &["messageStart", "contentBlockStart"]);
    assert_eq!(
        &events[events.len() - 3..],
        &["contentBlockStop", "messageStop", "metadata"]
    );
    assert!(fragments > 1, "{events:?}");
    assert_eq!(
        started,
        Some((call.tool_use_id().to_owned(), call.name().to_owned()))
    );
    assert_eq!(stop, Some(StopReason::ToolUse));
    let parsed: Value = serde_json::from_str(&input).expect("the fragments make JSON");
    assert_eq!(call.input(), &like(call.input(), document(&parsed)));
    let buffered_usage = buffered.usage().expect("usage");
    assert_eq!(
        usage,
        Some((
            buffered_usage.input_tokens(),
            buffered_usage.output_tokens()
        ))
    );
}

#[tokio::test]
async fn bad_tool_use_requests_are_validation_exceptions() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let ask = || user(ASK);
    let call = |ids: &[&str]| {
        message(
            ConversationRole::Assistant,
            ids.iter().map(|id| tool_use(id)).collect(),
        )
    };
    let results = |ids: &[&str]| {
        message(
            ConversationRole::User,
            ids.iter()
                .map(|id| tool_result(id, &json!({"sky": "sunny"})))
                .collect(),
        )
    };
    let unknown_choice = tools(
        &["get_weather"],
        Some(ToolChoice::Tool(
            SpecificToolChoice::builder()
                .name("get_time")
                .build()
                .expect("choice"),
        )),
    );
    let empty = ToolConfiguration::builder()
        .set_tools(Some(Vec::new()))
        .build()
        .expect("tool config");
    let cases: Vec<(&str, Vec<Message>, Option<ToolConfiguration>, &str)> = vec![
        (
            "tool blocks without toolConfig",
            vec![ask(), call(&["tooluse_a"]), results(&["tooluse_a"])],
            None,
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ),
        (
            "an empty tools list",
            vec![ask()],
            Some(empty),
            "at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ),
        (
            "a name outside the pattern",
            vec![ask()],
            Some(tools(&["get weather"], None)),
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
        ),
        (
            "a name too long",
            vec![ask()],
            Some(tools(&[&"x".repeat(65)], None)),
            "Member must have length less than or equal to 64",
        ),
        (
            "a name given twice",
            vec![ask()],
            Some(tools(&["get_weather", "get_weather"], None)),
            "Tool names must be unique",
        ),
        (
            "toolChoice naming an unknown tool",
            vec![ask()],
            Some(unknown_choice),
            "get_time",
        ),
        (
            "a toolResult for an id the previous turn did not use",
            vec![ask(), call(&["tooluse_a"]), results(&["tooluse_b"])],
            Some(weather_tools()),
            "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_a",
        ),
        (
            "more toolResults than toolUses",
            vec![ask(), call(&["tooluse_a"]), results(&["tooluse_a", "tooluse_b"])],
            Some(weather_tools()),
            "The number of toolResult blocks at messages.2.content exceeds the number of toolUse blocks of previous turn.",
        ),
        (
            "a toolResult with no toolUse before it",
            vec![results(&["tooluse_a"])],
            Some(weather_tools()),
            "exceeds the number of toolUse blocks of previous turn",
        ),
        (
            "a toolUse the next user message does not answer",
            vec![ask(), call(&["tooluse_a", "tooluse_b"]), results(&["tooluse_b"])],
            Some(weather_tools()),
            "for the following Ids: tooluse_a",
        ),
        (
            "a toolUse answered by text",
            vec![ask(), call(&["tooluse_a"]), user("and tomorrow?")],
            Some(weather_tools()),
            "for the following Ids: tooluse_a",
        ),
    ];
    let count = cases.len() as u64;
    for (what, messages, config, wanted) in cases {
        let error = converse(&client, messages.clone(), config.clone())
            .await
            .expect_err(what);
        assert!(error.is_validation_exception(), "{what}: {error:?}");
        let text = error.message().unwrap_or_default();
        assert!(text.contains(wanted), "{what}: {text}");

        // ConverseStream refuses it the same way, before the stream starts.
        let streamed = client
            .converse_stream()
            .model_id(HAIKU)
            .set_messages(Some(messages))
            .set_tool_config(config)
            .send()
            .await
            .expect_err(what)
            .into_service_error();
        assert!(streamed.is_validation_exception(), "{what}: {streamed:?}");
    }
    assert_eq!(emulator.calls(HAIKU).await, 2 * count);
}

#[tokio::test]
async fn a_tool_result_only_message_passes_the_text_checks() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    // Two calls answered in one user message made only of toolResult blocks, as parallel
    // tool use does.
    let calls = message(
        ConversationRole::Assistant,
        vec![tool_use("tooluse_1"), tool_use("tooluse_2")],
    );
    let results = message(
        ConversationRole::User,
        vec![
            tool_result("tooluse_2", &json!({"sky": "cloudy"})),
            tool_result("tooluse_1", &json!({"sky": "sunny"})),
        ],
    );
    let output = converse(
        &client,
        vec![user(ASK), calls, results],
        Some(weather_tools()),
    )
    .await
    .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::EndTurn);
}
