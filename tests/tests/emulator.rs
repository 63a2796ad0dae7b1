#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The Bedrock emulator through the AWS SDK for Rust, as the functions use it.

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration, Message,
};
use aws_sdk_bedrockruntime::Client;
use integration_tests::{sdk_config, Emulator};
use serde_json::{json, Value};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("message")
}

async fn client() -> Client {
    Client::new(&sdk_config().await)
}

async fn converse_text(client: &Client, prompt: &str) -> (String, i32, i32) {
    let output = client
        .converse()
        .model_id(HAIKU)
        .messages(user(prompt))
        .send()
        .await
        .expect("converse");
    let text = output
        .output()
        .and_then(|o| o.as_message().ok())
        .and_then(|m| m.content().first())
        .and_then(|c| c.as_text().ok())
        .cloned()
        .expect("text answer");
    let usage = output.usage().expect("usage");
    (text, usage.input_tokens(), usage.output_tokens())
}

#[tokio::test]
async fn converse_round_trips_with_usage() {
    Emulator::reset().await;
    let client = client().await;
    let (text, input_tokens, output_tokens) =
        converse_text(&client, "Explain caching in one line").await;
    assert!(!text.is_empty());
    // 27 characters, about four a token.
    assert_eq!(input_tokens, 7);
    assert!(output_tokens > 0);
}

#[tokio::test]
async fn the_same_request_gives_the_same_text() {
    Emulator::reset().await;
    let client = client().await;
    let first = converse_text(&client, "What is a TTL?").await;
    let second = converse_text(&client, "What is a TTL?").await;
    let other = converse_text(&client, "What is an LRU?").await;
    assert_eq!(first, second);
    assert_ne!(first.0, other.0);
}

#[tokio::test]
async fn max_tokens_is_respected() {
    Emulator::reset().await;
    let output = client()
        .await
        .converse()
        .model_id(HAIKU)
        .messages(user("Write a long essay"))
        .inference_config(InferenceConfiguration::builder().max_tokens(3).build())
        .send()
        .await
        .expect("converse");
    assert!(output.usage().expect("usage").output_tokens() <= 3);
    assert_eq!(output.stop_reason().as_str(), "max_tokens");
}

#[tokio::test]
async fn converse_stream_round_trips_with_usage() {
    Emulator::reset().await;
    let client = client().await;
    let (expected_text, expected_input, expected_output) =
        converse_text(&client, "Stream me an answer").await;

    let mut stream = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Stream me an answer"))
        .send()
        .await
        .expect("converse stream")
        .stream;
    let mut text = String::new();
    let mut events = Vec::new();
    let mut usage = None;
    while let Some(event) = stream.recv().await.expect("stream event") {
        match &event {
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                if let Some(chunk) = delta.delta().and_then(|d| d.as_text().ok()) {
                    text.push_str(chunk);
                }
                events.push("contentBlockDelta");
            }
            ConverseStreamOutput::MessageStart(_) => events.push("messageStart"),
            ConverseStreamOutput::ContentBlockStop(_) => events.push("contentBlockStop"),
            ConverseStreamOutput::MessageStop(stop) => {
                assert_eq!(stop.stop_reason().as_str(), "end_turn");
                events.push("messageStop");
            }
            ConverseStreamOutput::Metadata(metadata) => {
                usage = metadata
                    .usage()
                    .map(|u| (u.input_tokens(), u.output_tokens(), u.total_tokens()));
                events.push("metadata");
            }
            _ => events.push("other"),
        }
    }
    assert_eq!(events.first(), Some(&"messageStart"));
    assert!(events.len() >= 5, "{events:?}");
    assert_eq!(
        &events[events.len() - 3..],
        &["contentBlockStop", "messageStop", "metadata"]
    );
    assert_eq!(text, expected_text);
    assert_eq!(
        usage,
        Some((
            expected_input,
            expected_output,
            expected_input + expected_output
        ))
    );
}

#[tokio::test]
async fn invoke_model_answers_the_anthropic_messages_body() {
    Emulator::reset().await;
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}],
    });
    let output = client()
        .await
        .invoke_model()
        .model_id(HAIKU)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .expect("invoke model");
    let answer: Value = serde_json::from_slice(output.body().as_ref()).expect("json");
    assert_eq!(answer["type"], "message");
    assert!(answer["content"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(answer["usage"]["input_tokens"], 2);
}

#[tokio::test]
async fn a_throttle_rate_throttles_about_that_share_of_calls() {
    let emulator = Emulator::reset().await;
    emulator.configure(json!({"throttleRate": 0.3})).await;
    let client = client().await;
    let mut throttled = 0;
    for i in 0..40 {
        match client
            .converse()
            .model_id(HAIKU)
            .messages(user(&format!("call {i}")))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => match e.into_service_error() {
                ConverseError::ThrottlingException(_) => throttled += 1,
                other => panic!("unexpected error: {other:?}"),
            },
        }
    }
    assert!(
        (10..=14).contains(&throttled),
        "{throttled} of 40 throttled"
    );
    assert_eq!(emulator.calls(HAIKU).await, 40);
}

#[tokio::test]
async fn the_call_counter_counts_each_model() {
    let emulator = Emulator::reset().await;
    let client = client().await;
    for _ in 0..3 {
        converse_text(&client, "count me").await;
    }
    assert_eq!(emulator.calls(HAIKU).await, 3);
    assert_eq!(
        emulator
            .calls("anthropic.claude-3-opus-20240229-v1:0")
            .await,
        0
    );
}

#[tokio::test]
async fn an_unknown_model_is_a_validation_exception() {
    Emulator::reset().await;
    let error = client()
        .await
        .converse()
        .model_id("vendor.no-such-model-v1")
        .messages(user("hi"))
        .send()
        .await
        .expect_err("unknown model must fail")
        .into_service_error();
    assert!(error.is_validation_exception(), "{error:?}");
    assert!(error
        .message()
        .unwrap_or_default()
        .contains("model identifier"));
}

/// Raw HTTP: what no SDK would send still gets Bedrock's error shape.
#[tokio::test]
async fn bad_requests_get_bedrocks_error_shape() {
    let emulator = Emulator::reset().await;
    let converse = emulator.url(&format!("/model/{HAIKU}/converse"));
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (converse.clone(), "{not json", 400, "ValidationException"),
        (converse.clone(), "{}", 400, "ValidationException"),
        (
            converse.clone(),
            r#"{"messages": []}"#,
            400,
            "ValidationException",
        ),
        (
            converse.clone(),
            r#"{"messages": "x"}"#,
            400,
            "ValidationException",
        ),
        (
            emulator.url("/model/vendor.unknown/converse"),
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
            400,
            "ValidationException",
        ),
        (
            emulator.url(&format!("/model/{HAIKU}/invoke")),
            "[1,2,3]",
            400,
            "ValidationException",
        ),
        (
            emulator.url("/no/such/operation"),
            "{}",
            404,
            "UnknownOperationException",
        ),
    ];
    for (url, body, status, error_type) in cases {
        let response = emulator
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answer, not a hang");
        assert_eq!(response.status().as_u16(), status, "{url} {body}");
        assert_eq!(
            response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok()),
            Some(error_type),
            "{url} {body}"
        );
        let body: Value = response.json().await.expect("json error body");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}
