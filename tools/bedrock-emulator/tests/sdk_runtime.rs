#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The Bedrock emulator through the AWS SDK for Rust, as the functions use it (the emulator
//! in-process, one per test).

mod common;

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration, Message,
    StopReason, SystemContentBlock,
};
use aws_sdk_bedrockruntime::Client;
use common::Emulator;
use serde_json::{json, Value};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("message")
}

fn client(emulator: &Emulator) -> Client {
    Client::new(&emulator.sdk_config())
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
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let (text, input_tokens, output_tokens) =
        converse_text(&client, "Explain caching in one line").await;
    assert!(!text.is_empty());
    // 27 characters, about four a token.
    assert_eq!(input_tokens, 7);
    assert!(output_tokens > 0);
}

#[tokio::test]
async fn the_same_request_gives_the_same_text() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let first = converse_text(&client, "What is a TTL?").await;
    let second = converse_text(&client, "What is a TTL?").await;
    let other = converse_text(&client, "What is an LRU?").await;
    assert_eq!(first, second);
    assert_ne!(first.0, other.0);
}

#[tokio::test]
async fn max_tokens_is_respected() {
    let emulator = Emulator::start().await;
    let output = client(&emulator)
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
    let emulator = Emulator::start().await;
    let client = client(&emulator);
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
    let emulator = Emulator::start().await;
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}],
    });
    let output = client(&emulator)
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
    let emulator = Emulator::start().await;
    emulator.configure(json!({"throttleRate": 0.3})).await;
    let client = client(&emulator);
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
    let emulator = Emulator::start().await;
    let client = client(&emulator);
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
    let emulator = Emulator::start().await;
    let error = client(&emulator)
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
    let emulator = Emulator::start().await;
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
        let (got, got_type, answer) = post_raw(&emulator, &url, body).await;
        assert_eq!(got, status, "{url} {body}");
        assert_eq!(got_type.as_deref(), Some(error_type), "{url} {body}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// A raw JSON POST: the status, the `x-amzn-errortype` header and the JSON body.
async fn post_raw(emulator: &Emulator, url: &str, body: &str) -> (u16, Option<String>, Value) {
    let response = emulator
        .http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("answer, not a hang");
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, error_type, body)
}

async fn converse_error(client: &Client, model_id: &str, message: Message) -> ConverseError {
    client
        .converse()
        .model_id(model_id)
        .messages(message)
        .send()
        .await
        .expect_err("the call must fail")
        .into_service_error()
}

#[tokio::test]
async fn per_model_faults_answer_bedrocks_exceptions() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    type IsFault = fn(&ConverseError) -> bool;
    let faults: [(&str, u16, &str, IsFault); 5] = [
        (
            "accessDeniedRate",
            403,
            "AccessDeniedException",
            ConverseError::is_access_denied_exception,
        ),
        (
            "resourceNotFoundRate",
            404,
            "ResourceNotFoundException",
            ConverseError::is_resource_not_found_exception,
        ),
        (
            "modelTimeoutRate",
            408,
            "ModelTimeoutException",
            ConverseError::is_model_timeout_exception,
        ),
        (
            "modelErrorRate",
            424,
            "ModelErrorException",
            ConverseError::is_model_error_exception,
        ),
        (
            "internalServerRate",
            500,
            "InternalServerException",
            ConverseError::is_internal_server_exception,
        ),
    ];
    let raw = emulator.url(&format!("/model/{HAIKU}/converse"));
    for (field, status, error_type, is_fault) in faults {
        emulator
            .configure(json!({"models": {HAIKU: {field: 1.0}}}))
            .await;
        let error = converse_error(&client, HAIKU, user("fault me")).await;
        assert!(is_fault(&error), "{field}: {error:?}");
        let body = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        let (got, got_type, _) = post_raw(&emulator, &raw, body).await;
        assert_eq!(got, status, "{field}");
        assert_eq!(got_type.as_deref(), Some(error_type), "{field}");
        // Other models are untouched.
        let sonnet = client
            .converse()
            .model_id("anthropic.claude-3-sonnet-20240229-v1:0")
            .messages(user("not me"))
            .send()
            .await;
        assert!(sonnet.is_ok(), "{field}: {sonnet:?}");
        emulator.configure(json!({"models": {HAIKU: null}})).await;
    }
    let stats = emulator.stats().await;
    for counter in [
        "accessDenied",
        "resourceNotFound",
        "modelTimeout",
        "modelError",
        "internalServer",
    ] {
        assert_eq!(stats["models"][HAIKU][counter], 2, "{counter}: {stats}");
    }
}

#[tokio::test]
async fn a_chosen_stop_reason_reaches_converse_stream_and_invoke_model() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    emulator
        .configure(json!({"stopReason": "content_filtered"}))
        .await;
    let output = client
        .converse()
        .model_id(HAIKU)
        .messages(user("say something risky"))
        .send()
        .await
        .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::ContentFiltered);
    let text = output
        .output()
        .and_then(|o| o.as_message().ok())
        .and_then(|m| m.content().first())
        .and_then(|c| c.as_text().ok());
    assert_eq!(text.map(String::as_str), Some(""));

    let mut stream = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("say something risky"))
        .send()
        .await
        .expect("converse stream")
        .stream;
    let mut stop = None;
    while let Some(event) = stream.recv().await.expect("stream event") {
        if let ConverseStreamOutput::MessageStop(event) = event {
            stop = Some(event.stop_reason().clone());
        }
    }
    assert_eq!(stop, Some(StopReason::ContentFiltered));

    emulator
        .configure(json!({"stopReason": "guardrail_intervened"}))
        .await;
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "say something risky"}],
    });
    let answer = client
        .invoke_model()
        .model_id(HAIKU)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .expect("invoke model");
    let answer: Value = serde_json::from_slice(answer.body().as_ref()).expect("json");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["amazon-bedrock-guardrailAction"], "INTERVENED");
    assert_eq!(
        answer["content"][0]["text"],
        "Sorry, the model cannot answer this question."
    );

    emulator.configure(json!({"stopReason": null})).await;
    let output = client
        .converse()
        .model_id(HAIKU)
        .messages(user("say something risky"))
        .send()
        .await
        .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::EndTurn);
}

/// Receives a stream up to its error: the deltas' text and the error.
async fn stream_until_error(client: &Client) -> (Vec<String>, ConverseStreamOutputError) {
    let mut stream = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Stream me a long answer"))
        .send()
        .await
        .expect("the stream starts")
        .stream;
    let mut deltas = Vec::new();
    loop {
        match stream.recv().await {
            Ok(Some(ConverseStreamOutput::MessageStart(_))) => {}
            Ok(Some(ConverseStreamOutput::ContentBlockDelta(delta))) => deltas.push(
                delta
                    .delta()
                    .and_then(|d| d.as_text().ok())
                    .cloned()
                    .unwrap_or_default(),
            ),
            Ok(Some(other)) => panic!("unexpected event after {deltas:?}: {other:?}"),
            Ok(None) => panic!("the stream ended without its error after {deltas:?}"),
            Err(error) => return (deltas, error.into_service_error()),
        }
    }
}

#[tokio::test]
async fn a_mid_stream_exception_arrives_after_the_deltas_as_a_typed_error() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    emulator
        .configure(json!({"streamError": {"exception": "throttlingException", "afterDeltas": 2}}))
        .await;
    let (deltas, error) = stream_until_error(&client).await;
    assert_eq!(deltas.len(), 2, "{deltas:?}");
    assert!(deltas.iter().all(|d| !d.is_empty()));
    match error {
        ConverseStreamOutputError::ThrottlingException(e) => {
            assert!(e.message().is_some_and(|m| !m.is_empty()));
        }
        other => panic!("expected ThrottlingException, got {other:?}"),
    }

    emulator
        .configure(
            json!({"streamError": {"exception": "modelStreamErrorException", "afterDeltas": 1}}),
        )
        .await;
    let (deltas, error) = stream_until_error(&client).await;
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    match error {
        ConverseStreamOutputError::ModelStreamErrorException(e) => {
            assert_eq!(e.original_status_code(), Some(500));
            assert!(e.original_message().is_some());
        }
        other => panic!("expected ModelStreamErrorException, got {other:?}"),
    }

    let stats = emulator.stats().await;
    assert_eq!(stats["models"][HAIKU]["streamErrors"], 2, "{stats}");
}

#[tokio::test]
async fn a_stop_sequence_is_reported_only_when_it_cut_the_answer() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let ask = |max_tokens: Option<i32>, stop: &str| {
        client
            .converse()
            .model_id(HAIKU)
            .messages(user("Tell me about stop sequences"))
            .inference_config(
                InferenceConfiguration::builder()
                    .set_max_tokens(max_tokens)
                    .stop_sequences(stop)
                    .build(),
            )
            .send()
    };
    let text_of = |output: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput| {
        output
            .output()
            .and_then(|o| o.as_message().ok())
            .and_then(|m| m.content().first())
            .and_then(|c| c.as_text().ok())
            .cloned()
            .expect("text")
    };
    let full = ask(None, "never-said").await.expect("converse");
    assert_eq!(full.stop_reason(), &StopReason::EndTurn);
    assert!(full.additional_model_response_fields().is_none());
    let full = text_of(&full);

    // A word that starts within a budget of whole tokens (four characters each) but would end
    // past it: max_tokens stops the answer before the stop sequence is written.
    let mut start = 0;
    let mut straddling = None;
    for word in full.split(' ') {
        let budget = start / 4 + 1;
        if full.find(word) == Some(start) && budget * 4 < start + word.len() {
            straddling = Some((budget, word.to_owned()));
            break;
        }
        start += word.len() + 1;
    }
    let (budget, word) = straddling.expect("a word across a token boundary");
    let capped = ask(Some(i32::try_from(budget).unwrap()), &word)
        .await
        .expect("converse");
    assert_eq!(capped.stop_reason(), &StopReason::MaxTokens);
    assert!(capped.additional_model_response_fields().is_none());
    assert_eq!(text_of(&capped), full[..budget * 4]);

    let cut = ask(None, &word).await.expect("converse");
    assert_eq!(cut.stop_reason(), &StopReason::StopSequence);
    let reported = cut
        .additional_model_response_fields()
        .and_then(|f| f.as_object())
        .and_then(|f| f.get("stop_sequence"))
        .and_then(|s| s.as_string());
    assert_eq!(reported, Some(word.as_str()));
    assert_eq!(text_of(&cut), full[..full.find(&word).unwrap()]);
}

#[tokio::test]
async fn whitespace_only_text_is_a_validation_exception() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let error = converse_error(&client, HAIKU, user("   \n")).await;
    assert!(error.is_validation_exception(), "{error:?}");
    assert!(error
        .message()
        .unwrap_or_default()
        .contains("non-whitespace"));

    let error = client
        .converse()
        .model_id(HAIKU)
        .system(SystemContentBlock::Text(" \n\t".to_owned()))
        .messages(user("hi"))
        .send()
        .await
        .expect_err("a blank system prompt must fail")
        .into_service_error();
    assert!(error.is_validation_exception(), "{error:?}");
}

#[tokio::test]
async fn profile_only_models_are_served_through_inference_profiles_only() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    const SONNET_4_5: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    for on_demand in [
        SONNET_4_5.to_owned(),
        format!("arn:aws:bedrock:us-east-1::foundation-model/{SONNET_4_5}"),
    ] {
        let error = converse_error(&client, &on_demand, user("hi")).await;
        assert!(error.is_validation_exception(), "{on_demand}: {error:?}");
        assert_eq!(
            error.message(),
            Some(
                "Invocation of model ID anthropic.claude-sonnet-4-5-20250929-v1:0 with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
            ),
            "{on_demand}"
        );
    }
    for profile in [
        format!("us.{SONNET_4_5}"),
        format!("global.{SONNET_4_5}"),
        format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{SONNET_4_5}"),
    ] {
        let output = client
            .converse()
            .model_id(&profile)
            .messages(user("hi"))
            .inference_config(InferenceConfiguration::builder().max_tokens(64000).build())
            .send()
            .await;
        assert!(output.is_ok(), "{profile}: {output:?}");
    }
}
