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

// ---------------------------------------------------------------------------------------------
// Prompt caching, service tiers and performanceConfig, through the handlers

mod caching_and_tiers {
    use std::sync::Arc;

    use aws_smithy_eventstream::frame::read_message_from;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use bytes::Buf;

    use super::*;
    use crate::generate::tokens_for;
    use crate::runtime::RuntimePatch;

    /// 9000 characters: 2250 tokens, over Claude 3 Haiku's minimum of 2048.
    fn long_system() -> String {
        "cache me ".repeat(1000)
    }

    fn cached(system: &str, question: &str) -> Value {
        json!({
            "system": [{"text": system}, {"cachePoint": {"type": "default"}}],
            "messages": [user(question)],
        })
    }

    fn state() -> Arc<RuntimeState> {
        Arc::new(RuntimeState::for_tests())
    }

    fn configure(state: &RuntimeState, patch: Value) {
        let patch: RuntimePatch = serde_json::from_value(patch).unwrap();
        state.apply(&patch).unwrap();
    }

    async fn call(state: &Arc<RuntimeState>, body: &Value) -> Result<Value, BedrockError> {
        let response = converse(
            State(state.clone()),
            Path(HAIKU.to_owned()),
            Bytes::from(body.to_string()),
        )
        .await?;
        Ok(response.0)
    }

    async fn usage_of(state: &Arc<RuntimeState>, body: &Value) -> Value {
        call(state, body).await.unwrap()["usage"].clone()
    }

    /// The events of a ConverseStream answer, by type, with their payloads.
    async fn stream_events(state: &Arc<RuntimeState>, body: &Value) -> Vec<(String, Value)> {
        let response = converse_stream(
            State(state.clone()),
            Path(HAIKU.to_owned()),
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let mut events = Vec::new();
        while bytes.has_remaining() {
            let message = read_message_from(&mut bytes).unwrap();
            let kind = message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
                .unwrap();
            events.push((kind, serde_json::from_slice(message.payload()).unwrap()));
        }
        events
    }

    #[tokio::test]
    async fn a_prefix_is_written_then_read_within_its_ttl_and_written_again_after() {
        let state = state();
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:00:00Z"}));
        let system = long_system();
        // 9000 + 15 characters: 2254 tokens, 2250 of them before the cache point.
        let first = usage_of(&state, &cached(&system, "What is cached?")).await;
        let output = first["outputTokens"].as_u64().unwrap();
        assert_eq!(
            first,
            json!({"inputTokens": 4, "outputTokens": output, "totalTokens": 2254 + output,
                   "cacheReadInputTokens": 0, "cacheWriteInputTokens": 2250,
                   "cacheDetails": [{"ttl": "5m", "inputTokens": 2250}]})
        );

        // Another question after the same prefix, four minutes later: read.
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:04:00Z"}));
        let second = usage_of(&state, &cached(&system, "And what is not?")).await;
        assert_eq!(second["cacheReadInputTokens"], 2250);
        assert_eq!(second["cacheWriteInputTokens"], 0);
        assert!(second.get("cacheDetails").is_none(), "{second}");
        assert_eq!(second["inputTokens"], 4);

        // The read kept it until 00:09:00; at 00:09:00 it is gone.
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:08:59Z"}));
        assert_eq!(
            usage_of(&state, &cached(&system, "Still there?")).await["cacheReadInputTokens"],
            2250
        );
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:13:59Z"}));
        let expired = usage_of(&state, &cached(&system, "Still there?")).await;
        assert_eq!(
            (
                &expired["cacheReadInputTokens"],
                &expired["cacheWriteInputTokens"]
            ),
            (&json!(0), &json!(2250))
        );

        let stats = serde_json::to_value(&state.stats()[HAIKU]).unwrap();
        assert_eq!(stats["cacheWriteTokens"], 4500);
        assert_eq!(stats["cacheReadTokens"], 4500);
        state.reset();
        assert_eq!(state.prompt_cache_len(), 0);
    }

    #[tokio::test]
    async fn an_hour_ttl_keeps_the_prefix_an_hour() {
        let state = state();
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:00:00Z"}));
        let mut body = cached(&long_system(), "Hello");
        body["system"][1]["cachePoint"]["ttl"] = json!("1h");
        let written = usage_of(&state, &body).await;
        assert_eq!(
            written["cacheDetails"],
            json!([{"ttl": "1h", "inputTokens": 2250}])
        );
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:59:00Z"}));
        assert_eq!(usage_of(&state, &body).await["cacheReadInputTokens"], 2250);
    }

    #[tokio::test]
    async fn under_the_minimum_a_cache_point_is_ignored_and_changes_nothing() {
        let state = state();
        let plain = json!({"system": [{"text": "Be brief."}], "messages": [user("Hi")]});
        let marked = cached("Be brief.", "Hi");
        let without = call(&state, &plain).await.unwrap();
        let with = call(&state, &marked).await.unwrap();
        // The same answer and usage, byte for byte: no cache fields.
        assert_eq!(with, without);
        assert_eq!(
            with["usage"].as_object().unwrap().len(),
            3,
            "{}",
            with["usage"]
        );
        // 8188 characters are 2047 tokens, one under Claude 3 Haiku's minimum; 8189 are 2048.
        let under = cached(&"x".repeat(8188), "Hi");
        assert!(usage_of(&state, &under)
            .await
            .get("cacheWriteInputTokens")
            .is_none());
        let at = cached(&"x".repeat(8189), "Hi");
        assert_eq!(usage_of(&state, &at).await["cacheWriteInputTokens"], 2048);

        // A lower minimum for this model makes the short prefix count.
        configure(
            &state,
            json!({"models": {HAIKU: {"promptCacheMinTokens": 1}}}),
        );
        assert_eq!(usage_of(&state, &marked).await["cacheWriteInputTokens"], 3);
        configure(
            &state,
            json!({"models": {HAIKU: {"promptCacheMinTokens": null}}}),
        );
        assert!(usage_of(&state, &marked)
            .await
            .get("cacheReadInputTokens")
            .is_none());
    }

    #[tokio::test]
    async fn the_longest_usable_prefix_counts_and_tools_come_first() {
        let state = state();
        let tools = json!({"tools": [
            {"toolSpec": {"name": "lookup", "description": "d".repeat(9000), "inputSchema": {"json": {"type": "object"}}}},
            {"cachePoint": {"type": "default"}},
        ]});
        let body = json!({
            "toolConfig": tools,
            "system": [{"text": long_system()}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "Hi"}, {"cachePoint": {"type": "default"}}]}],
        });
        let usage = usage_of(&state, &body).await;
        let tool_chars = body["toolConfig"]["tools"][0].to_string().len();
        let longest = tokens_for(tool_chars + 9000 + 2);
        assert_eq!(usage["cacheWriteInputTokens"], longest);
        assert_eq!(usage["inputTokens"], 0);
        let output = usage["outputTokens"].as_u64().unwrap();
        assert_eq!(usage["totalTokens"], u64::from(longest) + output);
        // The prefix of the tools alone is another entry: a request that only shares the tools
        // writes it.
        let mut tools_only = body.clone();
        tools_only["system"] = json!([{"text": "short"}]);
        tools_only["messages"] = json!([user("Hi")]);
        let usage = usage_of(&state, &tools_only).await;
        assert_eq!(usage["cacheWriteInputTokens"], tokens_for(tool_chars));
    }

    #[tokio::test]
    async fn a_bad_cache_point_is_a_validation_exception() {
        let state = state();
        let mut body = cached("Be brief.", "Hi");
        body["system"][1]["cachePoint"]["type"] = json!("ephemeral");
        let error = call(&state, &body).await.unwrap_err();
        assert_eq!(error.error_type, "ValidationException");
        assert!(
            error.message.contains("system.2.member.cachePoint.type"),
            "{error:?}"
        );
        body["system"][1]["cachePoint"] = json!({"type": "default", "ttl": "1d"});
        assert!(call(&state, &body).await.is_err());
        assert_eq!(state.stats()[HAIKU].validation_errors, 2);
    }

    #[tokio::test]
    async fn the_stream_metadata_carries_the_same_usage_and_echoes() {
        let state = state();
        configure(&state, json!({"promptCacheNow": "2030-01-01T00:00:00Z"}));
        let mut body = cached(&long_system(), "Stream it");
        body["serviceTier"] = json!({"type": "priority"});
        body["performanceConfig"] = json!({"latency": "optimized"});
        let events = stream_events(&state, &body).await;
        let (kind, metadata) = events.last().unwrap();
        assert_eq!(kind, "metadata");
        assert_eq!(metadata["usage"]["cacheWriteInputTokens"], 2250);
        assert_eq!(metadata["serviceTier"], json!({"type": "priority"}));
        assert_eq!(
            metadata["performanceConfig"],
            json!({"latency": "optimized"})
        );
        // The same request through Converse reads what the stream wrote, and says the same.
        let answer = call(&state, &body).await.unwrap();
        let mut expected = metadata["usage"].clone();
        expected["cacheReadInputTokens"] = expected["cacheWriteInputTokens"].clone();
        expected["cacheWriteInputTokens"] = json!(0);
        expected.as_object_mut().unwrap().remove("cacheDetails");
        assert_eq!(answer["usage"], expected);
        assert_eq!(answer["serviceTier"], metadata["serviceTier"]);
        assert_eq!(answer["performanceConfig"], metadata["performanceConfig"]);

        // Without them, the metadata holds usage and metrics only.
        let plain = stream_events(&state, &json!({"messages": [user("Stream it")]})).await;
        let metadata = &plain.last().unwrap().1;
        let mut keys: Vec<_> = metadata.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["metrics", "usage"]);
        assert_eq!(metadata["usage"].as_object().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn tiers_are_echoed_counted_and_flex_is_throttled_at_its_rate() {
        let state = state();
        let ask = |tier: &str| json!({"messages": [user("Hi")], "serviceTier": {"type": tier}});
        let plain = call(&state, &json!({"messages": [user("Hi")]}))
            .await
            .unwrap();
        assert!(plain.get("serviceTier").is_none() && plain.get("performanceConfig").is_none());
        for tier in ["priority", "default", "flex"] {
            let answer = call(&state, &ask(tier)).await.unwrap();
            assert_eq!(answer["serviceTier"], json!({"type": tier}));
            // The tier does not change what the model says.
            assert_eq!(answer["output"], plain["output"]);
        }
        for bad in ["reserved", "gold"] {
            let error = call(&state, &ask(bad)).await.unwrap_err();
            assert_eq!(error.error_type, "ValidationException", "{bad}");
        }

        configure(&state, json!({"flexThrottleRate": 1}));
        let throttled = call(&state, &ask("flex")).await.unwrap_err();
        assert_eq!(
            (throttled.error_type, throttled.status.as_u16()),
            ("ThrottlingException", 429)
        );
        assert!(call(&state, &ask("default")).await.is_ok());
        assert!(call(&state, &json!({"messages": [user("Hi")]}))
            .await
            .is_ok());
        configure(&state, json!({"flexThrottleRate": 0.5}));
        let mut served = 0;
        for _ in 0..4 {
            served += usize::from(call(&state, &ask("flex")).await.is_ok());
        }
        assert_eq!(served, 2);

        let stats = serde_json::to_value(&state.stats()[HAIKU]).unwrap();
        assert_eq!(
            stats["tiers"],
            json!({"priority": 1, "default": 2, "flex": 3})
        );
        assert_eq!(stats["flexThrottled"], 3);
        assert_eq!(stats["throttled"], 3);
        assert_eq!(stats["validationErrors"], 2);
    }

    #[test]
    fn tiers_set_the_pace() {
        let state = RuntimeState::for_tests();
        configure(&state, json!({"ttftMs": 100, "msPerToken": 10}));
        let delays = |tier| {
            let admission = state.admit_tier(HAIKU, tier).unwrap();
            (
                admission.first_token_delay().as_millis(),
                admission.per_token_delay().as_millis(),
            )
        };
        assert_eq!(delays(None), (100, 10));
        assert_eq!(delays(Some(ServiceTier::Default)), (100, 10));
        assert_eq!(delays(Some(ServiceTier::Flex)), (200, 20));
        assert_eq!(delays(Some(ServiceTier::Priority)), (50, 5));
        configure(
            &state,
            json!({"flexLatencyFactor": 3, "priorityLatencyFactor": 0.1}),
        );
        assert_eq!(delays(Some(ServiceTier::Flex)), (300, 30));
        assert_eq!(delays(Some(ServiceTier::Priority)), (10, 1));
        for bad in [
            json!({"flexLatencyFactor": -1}),
            json!({"priorityLatencyFactor": 101}),
            json!({"flexThrottleRate": 1.5}),
            json!({"promptCacheNow": "soon"}),
        ] {
            let patch: RuntimePatch = serde_json::from_value(bad.clone()).unwrap();
            assert!(state.apply(&patch).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn performance_config_is_echoed_and_checked() {
        let state = state();
        let ask = |config: Value| json!({"messages": [user("Hi")], "performanceConfig": config});
        let optimized = call(&state, &ask(json!({"latency": "optimized"})))
            .await
            .unwrap();
        assert_eq!(
            optimized["performanceConfig"],
            json!({"latency": "optimized"})
        );
        let standard = call(&state, &ask(json!({}))).await.unwrap();
        assert_eq!(
            standard["performanceConfig"],
            json!({"latency": "standard"})
        );
        assert!(standard.get("serviceTier").is_none());
        let error = call(&state, &ask(json!({"latency": "fast"})))
            .await
            .unwrap_err();
        assert_eq!(error.error_type, "ValidationException");
    }
}

// ---------------------------------------------------------------------------------------------
// Guardrails and prompt routers, through the handlers

mod guardrails_and_routers {
    use std::sync::Arc;

    use aws_smithy_eventstream::frame::read_message_from;
    use axum::extract::{Path, State};
    use bytes::Buf;

    use super::*;
    use crate::generate::{tokens_for, GUARDRAIL_BLOCKED_MESSAGE};
    use crate::guardrail::NOT_FOUND_MESSAGE;
    use crate::prompt_router::{default_router_arn, DEFAULT_LONG_MODEL, DEFAULT_SHORT_MODEL};
    use crate::runtime::RuntimePatch;

    fn state() -> Arc<RuntimeState> {
        let state = Arc::new(RuntimeState::for_tests());
        configure(
            &state,
            json!({"guardrails": {"gr1": {
                "blockedWords": ["password"],
                "blockedInputMessage": "I can't discuss that.",
                "blockedOutputMessage": "The answer was withheld.",
            }}}),
        );
        state
    }

    fn configure(state: &RuntimeState, patch: Value) {
        let patch: RuntimePatch = serde_json::from_value(patch).unwrap();
        state.apply(&patch).unwrap();
    }

    fn guarded(text: &str, config: Value) -> Value {
        json!({"messages": [user(text)], "guardrailConfig": config})
    }

    fn traced() -> Value {
        json!({"guardrailIdentifier": "gr1", "guardrailVersion": "DRAFT", "trace": "enabled"})
    }

    async fn call_as(
        state: &Arc<RuntimeState>,
        model_id: &str,
        body: &Value,
    ) -> Result<Value, BedrockError> {
        let response = converse(
            State(state.clone()),
            Path(model_id.to_owned()),
            Bytes::from(body.to_string()),
        )
        .await?;
        Ok(response.0)
    }

    async fn call(state: &Arc<RuntimeState>, body: &Value) -> Result<Value, BedrockError> {
        call_as(state, HAIKU, body).await
    }

    async fn stream_as(
        state: &Arc<RuntimeState>,
        model_id: &str,
        body: &Value,
    ) -> Vec<(String, Value)> {
        let response = converse_stream(
            State(state.clone()),
            Path(model_id.to_owned()),
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
        let mut bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let mut events = Vec::new();
        while bytes.has_remaining() {
            let message = read_message_from(&mut bytes).unwrap();
            let kind = message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
                .unwrap();
            events.push((kind, serde_json::from_slice(message.payload()).unwrap()));
        }
        events
    }

    fn streamed_text(events: &[(String, Value)]) -> String {
        events
            .iter()
            .filter(|(kind, _)| kind == "contentBlockDelta")
            .filter_map(|(_, e)| e["delta"]["text"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_blocked_word_in_the_input_intervenes_with_a_trace() {
        let state = state();
        let plain = call(&state, &json!({"messages": [user("What is my Password?")]}))
            .await
            .unwrap();
        let answer = call(&state, &guarded("What is my Password?", traced()))
            .await
            .unwrap();
        assert_eq!(answer["stopReason"], "guardrail_intervened");
        assert_eq!(
            answer["output"]["message"]["content"],
            json!([{"text": "I can't discuss that."}])
        );
        assert_eq!(
            answer["usage"]["outputTokens"],
            tokens_for("I can't discuss that.".len())
        );
        assert_eq!(
            answer["usage"]["inputTokens"],
            plain["usage"]["inputTokens"]
        );
        let assessment = &answer["trace"]["guardrail"]["inputAssessment"]["gr1"];
        assert_eq!(
            assessment["wordPolicy"],
            json!({"customWords": [{"match": "password", "action": "BLOCKED", "detected": true}], "managedWordLists": []})
        );
        assert!(answer["trace"]["guardrail"]
            .get("outputAssessments")
            .is_none());
        assert!(answer["trace"].get("promptRouter").is_none());

        // Without a trace, the same intervention and no trace; a passing request is unchanged.
        let quiet = guarded(
            "password",
            json!({"guardrailIdentifier": "gr1", "guardrailVersion": "1"}),
        );
        let answer = call(&state, &quiet).await.unwrap();
        assert_eq!(answer["stopReason"], "guardrail_intervened");
        assert!(answer.get("trace").is_none());
        let passing = call(&state, &guarded("passwords", traced())).await.unwrap();
        let unguarded = call(&state, &json!({"messages": [user("passwords")]}))
            .await
            .unwrap();
        assert_eq!(passing["output"], unguarded["output"]);
        assert_eq!(passing["stopReason"], unguarded["stopReason"]);
        assert!(passing["trace"]["guardrail"]["outputAssessments"]["gr1"].is_array());

        let stats = &state.stats()[HAIKU];
        assert_eq!((stats.guardrail_interventions, stats.served), (2, 5));
    }

    #[tokio::test]
    async fn a_blocked_input_never_reaches_the_model_or_the_cache() {
        let state = state();
        configure(&state, json!({"stopReason": "max_tokens"}));
        let body = json!({
            "system": [{"text": "cache me ".repeat(1000)}, {"cachePoint": {"type": "default"}}],
            "messages": [user("password please")],
            "guardrailConfig": traced(),
        });
        let answer = call(&state, &body).await.unwrap();
        // The guardrail's answer stands whatever stop reason is configured.
        assert_eq!(answer["stopReason"], "guardrail_intervened");
        assert!(answer["usage"].get("cacheWriteInputTokens").is_none());
        assert_eq!(state.prompt_cache_len(), 0);
    }

    #[tokio::test]
    async fn a_blocked_word_in_the_answer_is_replaced() {
        let state = state();
        let ask = |config: Option<Value>| {
            let mut body = json!({"messages": [user("Tell me a story")]});
            if let Some(config) = config {
                body["guardrailConfig"] = config;
            }
            body
        };
        let plain = call(&state, &ask(None)).await.unwrap();
        let text = plain["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let word = text
            .trim_end_matches('.')
            .split(' ')
            .nth(1)
            .unwrap()
            .to_owned();
        configure(
            &state,
            json!({"guardrails": {"gr1": {"blockedOutputWords": [word]}}}),
        );
        let answer = call(&state, &ask(Some(traced()))).await.unwrap();
        assert_eq!(answer["stopReason"], "guardrail_intervened");
        assert_eq!(
            answer["output"]["message"]["content"][0]["text"],
            "The answer was withheld."
        );
        let trace = &answer["trace"]["guardrail"];
        assert_eq!(trace["modelOutput"], json!([text]));
        assert_eq!(
            trace["outputAssessments"]["gr1"][0]["wordPolicy"]["customWords"][0]["match"],
            json!(word)
        );
        assert!(trace["inputAssessment"]["gr1"].get("wordPolicy").is_none());

        // Streamed, in either processing mode, the replacement is the stream's text.
        for mode in ["sync", "async"] {
            let mut config = traced();
            config["streamProcessingMode"] = json!(mode);
            let events = stream_as(&state, HAIKU, &ask(Some(config))).await;
            assert_eq!(streamed_text(&events), "The answer was withheld.");
            let stop = events
                .iter()
                .find(|(kind, _)| kind == "messageStop")
                .unwrap();
            assert_eq!(stop.1["stopReason"], "guardrail_intervened");
            let metadata = &events.last().unwrap().1;
            assert_eq!(metadata["trace"]["guardrail"]["modelOutput"], json!([text]));
        }
        assert_eq!(state.stats()[HAIKU].guardrail_interventions, 3);
    }

    #[tokio::test]
    async fn a_blocked_input_streams_the_blocked_message() {
        let state = state();
        let events = stream_as(&state, HAIKU, &guarded("my password", traced())).await;
        assert_eq!(streamed_text(&events), "I can't discuss that.");
        let stop = events
            .iter()
            .find(|(kind, _)| kind == "messageStop")
            .unwrap();
        assert_eq!(stop.1["stopReason"], "guardrail_intervened");
        let metadata = &events.last().unwrap().1;
        assert_eq!(
            metadata["trace"]["guardrail"]["inputAssessment"]["gr1"]["wordPolicy"]["customWords"]
                [0]["match"],
            "password"
        );
    }

    #[tokio::test]
    async fn an_unknown_guardrail_is_refused_and_counted() {
        let state = state();
        for config in [
            json!({"guardrailIdentifier": "nope", "guardrailVersion": "DRAFT"}),
            json!({"guardrailIdentifier": "gr1", "guardrailVersion": "2"}),
        ] {
            let error = call(&state, &guarded("hi", config)).await.unwrap_err();
            assert_eq!(
                (error.error_type, error.message.as_str()),
                ("ValidationException", NOT_FOUND_MESSAGE)
            );
        }
        configure(&state, json!({"guardrails": {"gr1": null}}));
        let error = call(&state, &guarded("hi", traced())).await.unwrap_err();
        assert_eq!(error.message, NOT_FOUND_MESSAGE);
        assert_eq!(state.stats()[HAIKU].validation_errors, 3);
        // A configured stop reason still says what Bedrock's default guardrail message says.
        configure(&state, json!({"stopReason": "guardrail_intervened"}));
        let answer = call(&state, &json!({"messages": [user("hi")]}))
            .await
            .unwrap();
        assert_eq!(
            answer["output"]["message"]["content"][0]["text"],
            GUARDRAIL_BLOCKED_MESSAGE
        );
    }

    #[tokio::test]
    async fn the_default_router_picks_by_prompt_length() {
        let state = state();
        let router = default_router_arn(state.identity());
        let short = json!({"messages": [user("A short question?")]});
        let long = json!({"messages": [user(&"x".repeat(2000))]});

        let answer = call_as(&state, &router, &short).await.unwrap();
        assert_eq!(
            answer["trace"],
            json!({"promptRouter": {"invokedModelId": format!("arn:aws:bedrock:us-east-1::foundation-model/{DEFAULT_SHORT_MODEL}")}})
        );
        // Answered as that model answers.
        let direct = call_as(&state, DEFAULT_SHORT_MODEL, &short).await.unwrap();
        assert_eq!(answer["output"], direct["output"]);
        assert_eq!(answer["usage"], direct["usage"]);

        let answer = call_as(&state, &router, &long).await.unwrap();
        assert_eq!(
            answer["trace"]["promptRouter"]["invokedModelId"],
            format!("arn:aws:bedrock:us-east-1::foundation-model/{DEFAULT_LONG_MODEL}")
        );
        let events = stream_as(&state, &router, &long).await;
        let metadata = &events.last().unwrap().1;
        assert_eq!(metadata["trace"], answer["trace"]);

        // A guardrail's trace sits beside the router's.
        let mut body = guarded("password", traced());
        body["messages"][0]["content"][0]["text"] = json!("password");
        let both = call_as(&state, &router, &body).await.unwrap();
        assert!(both["trace"]["guardrail"]["inputAssessment"]["gr1"].is_object());
        assert!(both["trace"]["promptRouter"]["invokedModelId"].is_string());

        let stats = state.stats();
        assert!(!stats.contains_key(&router));
        assert_eq!(stats[DEFAULT_SHORT_MODEL].calls, 3);
        assert_eq!(stats[DEFAULT_LONG_MODEL].calls, 2);
    }

    #[tokio::test]
    async fn configured_routers_serve_and_unknown_ones_are_refused() {
        let state = state();
        let arn = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/abcdef123456";
        configure(
            &state,
            json!({"promptRouters": {arn: {"models": ["amazon.nova-micro-v1:0", "us.amazon.nova-pro-v1:0"], "thresholdChars": 10}}}),
        );
        let answer = call_as(&state, arn, &json!({"messages": [user("0123456789")]}))
            .await
            .unwrap();
        assert_eq!(
            answer["trace"]["promptRouter"]["invokedModelId"],
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0"
        );
        let unknown = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/missing";
        let error = call_as(&state, unknown, &json!({"messages": [user("hi")]}))
            .await
            .unwrap_err();
        assert_eq!(
            (error.error_type, error.message.as_str()),
            (
                "ValidationException",
                "The provided model identifier is invalid."
            )
        );
        let error = call_as(&state, arn, &json!("{")).await.unwrap_err();
        assert_eq!(error.error_type, "ValidationException");
        assert_eq!(state.stats()[unknown].validation_errors, 1);
        // A body that is JSON but not a request is the picked model's to refuse.
        assert_eq!(state.stats()["amazon.nova-micro-v1:0"].validation_errors, 1);
    }
}
