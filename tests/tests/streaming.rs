//! `POST /v1/invoke` with `"stream": true` against the local stack: ConverseStream on the
//! emulator, the cache on moto's DynamoDB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::metrics::Outcome;
use http_body_util::BodyExt;
use integration_tests::invoke::{unique, Harness, HAIKU};
use integration_tests::{event_names, text_deltas, Emulator};
use serde_json::{json, Value};

#[tokio::test]
async fn a_miss_streams_from_bedrock_and_a_hit_replays_it_without_bedrock() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let request = json!({"prompt": unique("Stream me"), "inferenceConfig": {"maxTokens": 120}});

    let (status, miss) = harness.stream(request.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(event_names(&miss), vec!["start", "text", "end"], "{miss:?}");
    let start = miss[0].json();
    assert_eq!(start["cache"], "MISS");
    assert_eq!(start["modelId"], HAIKU);
    assert_eq!(start["route"], "on-demand");
    let end = miss.last().unwrap().json();
    assert_eq!(end["stopReason"], "end_turn");
    assert!(end["usage"]["outputTokens"].as_u64().unwrap() > 0, "{end}");
    assert!(end["costUsd"].as_f64().unwrap() > 0.0, "{end}");
    let miss_texts = text_deltas(&miss);
    assert!(miss_texts.len() > 1, "Bedrock's deltas, as they came");

    let (_, hit) = harness.stream(request.clone()).await;
    assert_eq!(hit[0].json()["cache"], "HIT");
    let hit_texts = text_deltas(&hit);
    assert!(hit_texts.len() > 1, "a hit streams several deltas too");
    assert_eq!(hit_texts.concat(), miss_texts.concat());
    assert_eq!(hit.last().unwrap().json()["costUsd"], 0.0);
    // The buffered answer is the same text, from the same entry.
    let buffered = harness.invoke(request).await;
    assert_eq!(buffered.cache(), "HIT");
    assert_eq!(buffered.body["text"], Value::String(miss_texts.concat()));
    assert_eq!(emulator.calls(HAIKU).await, 1, "hits never reach Bedrock");
}

#[tokio::test]
async fn a_bedrock_exception_mid_stream_ends_in_an_error_event_and_nothing_is_cached() {
    let emulator = Emulator::reset().await;
    emulator
        .configure(
            json!({"streamError": {"exception": "modelStreamErrorException", "afterDeltas": 2}}),
        )
        .await;
    let harness = Harness::new(&[]).await;
    let request = json!({"prompt": unique("Cut me off"), "inferenceConfig": {"maxTokens": 120}});
    let (status, events) = harness.stream(request.clone()).await;
    assert_eq!(status, 200, "the stream had begun");
    assert_eq!(
        event_names(&events),
        vec!["start", "text", "error"],
        "{events:?}"
    );
    let error = events.last().unwrap().json();
    assert_eq!(error["error"]["code"], "BedrockError", "{error}");
    assert_eq!(
        harness.metrics.wait_for(1).await[0].outcome,
        Outcome::ServerError
    );

    emulator.configure(json!({"streamError": null})).await;
    let again = harness.invoke(request).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.cache(), "MISS", "the cut answer was not stored");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_stores_nothing() {
    let emulator = Emulator::reset().await;
    // About 3 s of answer: the client leaves long before the model stops.
    emulator
        .configure(json!({"models": {HAIKU: {"msPerToken": 20}}}))
        .await;
    let harness = Harness::new(&[]).await;
    let request = json!({"prompt": unique("I will not wait"), "inferenceConfig": {"maxTokens": 150}, "stream": true});
    let response = harness.request("POST", "/v1/invoke", None, &request).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"event: start"));
    drop(body);

    let reported = harness.metrics.wait_for(1).await;
    assert_eq!(reported[0].outcome, Outcome::ClientError);
    emulator.configure(json!({"models": {HAIKU: null}})).await;
    let mut buffered = request.clone();
    buffered["stream"] = json!(false);
    let again = harness.invoke(buffered).await;
    assert_eq!(
        again.cache(),
        "MISS",
        "nothing was stored for the abandoned stream"
    );
}

#[tokio::test]
async fn tools_round_trip_through_the_native_api() {
    Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let tools = json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
        "toolChoice": {"any": {}}});
    let question = unique("What is the weather in Paris?");
    let asked = harness
        .invoke(json!({"prompt": question, "toolConfig": tools}))
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(asked.body["stopReason"], "tool_use");
    let call = asked.body["message"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b.get("toolUse"))
        .cloned()
        .unwrap();
    assert_eq!(call["name"], "get_weather");
    assert!(call["input"]["city"].is_string(), "{call}");

    let (_, events) = harness
        .stream(json!({
            "messages": [
                {"role": "user", "content": [{"text": question}]},
                {"role": "assistant", "content": [{"toolUse": call}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": call["toolUseId"], "content": [{"json": {"celsius": 21}}]}}]},
            ],
            "toolConfig": tools,
        }))
        .await;
    let end = events.last().unwrap().json();
    assert_eq!(end["stopReason"], "end_turn", "{events:?}");
    assert!(!text_deltas(&events).concat().is_empty());
}
