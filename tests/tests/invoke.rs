//! invoke-with-cache against the local stack: DynamoDB on moto, Bedrock on the emulator.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use domain::cache::CacheKey;
use domain::metrics::Outcome;
use integration_tests::invoke::{noon, unique, Harness, HAIKU, OPUS, PT_ARN, SONNET};
use integration_tests::Emulator;
use serde_json::{json, Value};

#[tokio::test]
async fn a_miss_then_a_hit_calls_bedrock_once() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let body = json!({"prompt": unique("What does a cache TTL do?")});

    let first = harness.invoke(body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.cache(), "MISS");
    assert_eq!(first.headers["x-cache"], "MISS");
    assert_eq!(first.body["route"], "on-demand");
    assert_eq!(first.body["tier"], "simple");
    assert_eq!(first.body["modelId"], HAIKU);
    assert!(first.body["costUsd"].as_f64().unwrap() > 0.0);
    let usage = &first.body["usage"];
    assert_eq!(
        usage["totalTokens"].as_u64(),
        Some(usage["inputTokens"].as_u64().unwrap() + usage["outputTokens"].as_u64().unwrap())
    );

    let second = harness.invoke(body.clone()).await;
    assert_eq!(second.cache(), "HIT");
    assert_eq!(second.headers["x-cache"], "HIT");
    assert_eq!(second.body["text"], first.body["text"]);
    assert_eq!(second.body["costUsd"], 0.0);
    assert_eq!(second.body["savedUsd"], first.body["costUsd"]);
    assert_eq!(emulator.calls(HAIKU).await, 1);

    // A new instance (cold in-process cache) hits DynamoDB.
    let cold = Harness::new(&[]).await;
    assert_eq!(cold.invoke(body).await.cache(), "HIT");
    assert_eq!(emulator.calls(HAIKU).await, 1);
}

#[tokio::test]
async fn whatever_changes_the_answer_changes_the_key() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let prompt = unique("Name three colours");
    let base = json!({"prompt": prompt, "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 100}});
    assert_eq!(harness.invoke(base.clone()).await.cache(), "MISS");
    // Same content, other field order and whitespace: a hit.
    let reordered = format!(
        r#"{{ "inferenceConfig" : {{ "maxTokens" : 100 }},
             "system" : [ {{ "text" : "Be brief." }} ], "prompt" : {} }}"#,
        Value::String(prompt.clone())
    );
    let reply = harness
        .send("POST", Some("application/json"), &reordered)
        .await;
    assert_eq!(reply.cache(), "HIT");

    let variants = [
        json!({"prompt": prompt, "system": [{"text": "Be verbose."}], "inferenceConfig": {"maxTokens": 100}}),
        json!({"prompt": prompt, "inferenceConfig": {"maxTokens": 100}}),
        json!({"prompt": prompt, "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 101}}),
        json!({"prompt": prompt, "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 100, "temperature": 0.2}}),
        json!({"prompt": prompt, "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 100}, "modelId": SONNET}),
    ];
    for variant in variants {
        assert_eq!(
            harness.invoke(variant.clone()).await.cache(),
            "MISS",
            "{variant}"
        );
    }

    // Another namespace does not see the entry.
    let other_namespace = Harness::new(&[("CACHE_NAMESPACE", "team-b")]).await;
    assert_eq!(other_namespace.invoke(base).await.cache(), "MISS");
    assert_eq!(emulator.calls(HAIKU).await, 6);
    assert_eq!(emulator.calls(SONNET).await, 1);
}

#[tokio::test]
async fn bypass_neither_reads_nor_writes_and_refresh_overwrites() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[
        ("MEMORY_CACHE_ENTRIES", "0"),
        ("SHARED_CACHE_ALLOW_REFRESH", "true"),
    ])
    .await;
    let prompt = unique("Tell me about bypass");

    let bypass = harness
        .invoke(json!({"prompt": prompt, "cache": {"mode": "bypass"}}))
        .await;
    assert_eq!((bypass.status, bypass.cache()), (200, "BYPASS"));
    assert_eq!(bypass.headers["x-cache"], "BYPASS");
    // Nothing was written.
    assert_eq!(
        harness.invoke(json!({"prompt": prompt})).await.cache(),
        "MISS"
    );
    // Bypass does not read either.
    assert_eq!(
        harness
            .invoke(json!({"prompt": prompt, "cache": {"mode": "bypass"}}))
            .await
            .cache(),
        "BYPASS"
    );
    assert_eq!(emulator.calls(HAIKU).await, 3);

    let refresh = harness
        .invoke(json!({"prompt": prompt, "cache": {"mode": "refresh", "ttlSeconds": 60}}))
        .await;
    assert_eq!(refresh.cache(), "REFRESH");
    assert_eq!(emulator.calls(HAIKU).await, 4);
    // The refreshed entry carries the new TTL: live at 59 s, gone at 60 s.
    harness.clock.advance(Duration::seconds(59));
    assert_eq!(
        harness.invoke(json!({"prompt": prompt})).await.cache(),
        "HIT"
    );
    harness.clock.advance(Duration::seconds(1));
    assert_eq!(
        harness.invoke(json!({"prompt": prompt})).await.cache(),
        "MISS"
    );
}

#[tokio::test]
async fn an_expired_item_is_a_miss_even_before_dynamodb_deletes_it() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[("CACHE_TTL_SECONDS", "300")]).await;
    let body = json!({"prompt": unique("Expiring question")});
    assert_eq!(harness.invoke(body.clone()).await.cache(), "MISS");
    harness.clock.advance(Duration::seconds(299));
    assert_eq!(harness.invoke(body.clone()).await.cache(), "HIT");
    harness.clock.advance(Duration::seconds(1));

    // The DynamoDB item is still there (moto, like DynamoDB, deletes expired items lazily)…
    let request = invoke_with_cache::request::parse(body.to_string().as_bytes()).unwrap();
    let key = CacheKey::for_request("shared:shared", HAIKU, &request.conversation).unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&integration_tests::sdk_config().await);
    let item = dynamodb
        .get_item()
        .table_name(integration_tests::stack_var("CACHE_TABLE_NAME"))
        .key("pk", AttributeValue::S(key.as_str().to_owned()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the expired item is still stored");
    let expires_at = (noon() + Duration::seconds(300)).timestamp().to_string();
    assert_eq!(item.get("expiresAt"), Some(&AttributeValue::N(expires_at)));

    // …yet past its TTL it is a miss, in the in-process cache and in DynamoDB alike.
    assert_eq!(harness.invoke(body.clone()).await.cache(), "MISS");
    assert_eq!(emulator.calls(HAIKU).await, 2);
    let cold = Harness::new(&[("CACHE_TTL_SECONDS", "300"), ("MEMORY_CACHE_ENTRIES", "0")]).await;
    cold.clock.set(noon() + Duration::seconds(900));
    assert_eq!(cold.invoke(body).await.cache(), "MISS");
    assert_eq!(emulator.calls(HAIKU).await, 3);
}

#[tokio::test]
async fn ttl_seconds_is_capped_by_configuration() {
    Emulator::reset().await;
    let harness = Harness::new(&[
        ("CACHE_TTL_SECONDS", "60"),
        ("CACHE_MAX_TTL_SECONDS", "3600"),
        ("MEMORY_CACHE_ENTRIES", "0"),
        ("SHARED_CACHE_ALLOW_TTL", "true"),
    ])
    .await;
    let body = json!({"prompt": unique("Cap my TTL"), "cache": {"ttlSeconds": 999999}});
    assert_eq!(harness.invoke(body.clone()).await.cache(), "MISS");
    // Longer than the default TTL (the request's ttlSeconds counts)…
    harness.clock.advance(Duration::seconds(3599));
    assert_eq!(harness.invoke(body.clone()).await.cache(), "HIT");
    // …but no longer than the cap.
    harness.clock.advance(Duration::seconds(1));
    assert_eq!(harness.invoke(body).await.cache(), "MISS");
}

#[tokio::test]
async fn with_the_cache_table_gone_the_request_still_answers() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[("CACHE_TABLE_NAME", "no-such-table")]).await;
    let reply = harness
        .invoke(json!({"prompt": unique("Is the cache there?")}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.cache(), "BYPASS");
    assert_eq!(reply.headers["x-cache"], "BYPASS");
    assert!(reply.body["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(emulator.calls(HAIKU).await, 1);
}

/// A Provisioned Throughput of Haiku, created through the emulator's control plane and in
/// service (created at once: `provisioned.createMs` 0).
async fn haiku_pt(emulator: &Emulator) -> String {
    emulator
        .configure(json!({"provisioned": {"createMs": 0}}))
        .await;
    emulator.create_provisioned("haiku-pt", HAIKU, 1).await
}

#[tokio::test]
async fn a_throttled_provisioned_route_spills_over_to_on_demand() {
    let emulator = Emulator::reset().await;
    let pt = haiku_pt(&emulator).await;
    let spec = format!("{HAIKU}={pt}");
    let harness = Harness::new(&[("PROVISIONED_THROUGHPUT", spec.as_str())]).await;

    let served = harness
        .invoke(json!({"prompt": unique("Provisioned please")}))
        .await;
    assert_eq!(served.body["route"], "provisioned", "{}", served.body);
    assert_eq!(emulator.calls(&pt).await, 1);
    assert_eq!(emulator.calls(HAIKU).await, 0);

    emulator
        .configure(json!({"models": {pt.as_str(): {"throttleRate": 1.0}}}))
        .await;
    let full = json!({"prompt": unique("Provisioned is full")});
    let spilled = harness.invoke(full.clone()).await;
    assert_eq!(spilled.status, 200, "{}", spilled.body);
    assert_eq!(spilled.body["route"], "on-demand");
    assert_eq!(spilled.body["modelId"], HAIKU);
    assert_eq!(emulator.calls(&pt).await, 2);
    assert_eq!(emulator.calls(HAIKU).await, 1);

    // The cache key uses the base model: with the provisioned route back, the answer that
    // came on-demand is a hit.
    emulator
        .configure(json!({"models": {pt.as_str(): null}}))
        .await;
    let cold = Harness::new(&[("PROVISIONED_THROUGHPUT", spec.as_str())]).await;
    assert_eq!(cold.invoke(full).await.cache(), "HIT");
    assert_eq!(emulator.calls(&pt).await, 2);
}

/// Load beyond the Provisioned Throughput's tokens per minute is throttled by the emulator and
/// spills over to on-demand; what fits is served by the provisioned capacity.
#[tokio::test]
async fn load_beyond_the_provisioned_tokens_per_minute_spills_over_to_on_demand() {
    let emulator = Emulator::reset().await;
    emulator
        .configure(json!({"provisioned": {"tokensPerMinuteByModel": {HAIKU: 300}}}))
        .await;
    let pt = haiku_pt(&emulator).await;
    let spec = format!("{HAIKU}={pt}");
    let harness = Harness::new(&[("PROVISIONED_THROUGHPUT", spec.as_str())]).await;
    let mut provisioned = 0;
    let mut spilled = 0;
    for i in 0..15 {
        let reply = harness
            .invoke(json!({"prompt": unique(&format!("load {i}")), "cache": {"mode": "bypass"}}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        match reply.body["route"].as_str() {
            Some("provisioned") => {
                assert_eq!(reply.body["spilledOver"], false);
                provisioned += 1;
            }
            _ => {
                assert_eq!(reply.body["route"], "on-demand", "{}", reply.body);
                assert_eq!(reply.body["spilledOver"], true, "{}", reply.body);
                spilled += 1;
            }
        }
    }
    assert!(
        provisioned > 0 && spilled > 0,
        "{provisioned} provisioned, {spilled} spilled"
    );
    assert_eq!(emulator.calls(HAIKU).await, spilled);
    let stats: Value = emulator
        .http()
        .get(emulator.url("/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let capacity = &stats["provisionedThroughputs"][&pt];
    assert_eq!(capacity["capacityThrottled"], spilled);
    assert_eq!(capacity["served"], provisioned);
    assert!(capacity["tokensLastMinute"].as_u64().unwrap() <= 300);
}

#[tokio::test]
async fn the_schedule_policy_routes_by_the_injected_clock() {
    let emulator = Emulator::reset().await;
    let pt = haiku_pt(&emulator).await;
    let spec = format!("{HAIKU}={pt}");
    let harness = Harness::new(&[
        ("PROVISIONED_THROUGHPUT", spec.as_str()),
        ("ROUTING_POLICY", "schedule"),
        ("PROVISIONED_SCHEDULE", "09:00-17:00"),
        ("PROVISIONED_TIMEZONE", "Asia/Tokyo"),
    ])
    .await;
    let ask = || json!({"prompt": unique("What time is it?"), "cache": {"mode": "bypass"}});

    // 12:00 UTC is 21:00 in Tokyo: outside the window.
    let evening = harness.invoke(ask()).await;
    assert_eq!(evening.body["route"], "on-demand", "{}", evening.body);
    // 01:00 UTC is 10:00 in Tokyo: inside.
    harness.clock.set(noon() - Duration::hours(11));
    let morning = harness.invoke(ask()).await;
    assert_eq!(morning.body["route"], "provisioned");
    // 08:00 UTC is 17:00 in Tokyo: the end is excluded.
    harness.clock.set(noon() - Duration::hours(4));
    assert_eq!(harness.invoke(ask()).await.body["route"], "on-demand");
    assert_eq!(emulator.calls(&pt).await, 1);
    assert_eq!(emulator.calls(HAIKU).await, 2);
}

#[tokio::test]
async fn the_model_is_chosen_by_complexity_when_absent() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let short = harness.invoke(json!({"prompt": unique("Hi")})).await;
    assert_eq!(
        (short.body["tier"].as_str(), short.body["modelId"].as_str()),
        (Some("simple"), Some(HAIKU))
    );
    let keyword = harness
        .invoke(json!({"prompt": unique("この契約書を詳しく説明してください")}))
        .await;
    assert_eq!(
        (
            keyword.body["tier"].as_str(),
            keyword.body["modelId"].as_str()
        ),
        (Some("moderate"), Some(SONNET))
    );
    let long = harness
        .invoke(json!({"prompt": unique(&"word ".repeat(250))}))
        .await;
    assert_eq!(
        (long.body["tier"].as_str(), long.body["modelId"].as_str()),
        (Some("complex"), Some(OPUS))
    );
    let explicit = harness
        .invoke(json!({"prompt": unique("Hi"), "modelId": OPUS}))
        .await;
    assert_eq!(explicit.body["tier"], Value::Null);
    assert_eq!(emulator.calls(OPUS).await, 2);
    // Metrics were published per request, by model, without text.
    let metrics = harness.metrics.0.lock().unwrap();
    assert_eq!(metrics.len(), 4);
    assert_eq!(metrics[2].model_id.as_deref(), Some(OPUS));
}

#[tokio::test]
async fn bedrock_faults_become_the_specified_errors() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[("BEDROCK_READ_TIMEOUT_MS", "300")]).await;
    let cases = [
        (json!({"throttleRate": 1.0}), 429, "Throttled"),
        (
            json!({"throttleRate": 0.0, "modelNotReadyRate": 1.0}),
            503,
            "ModelNotReady",
        ),
        (
            json!({"modelNotReadyRate": 0.0, "serviceUnavailableRate": 1.0}),
            503,
            "ServiceUnavailable",
        ),
        (
            json!({"serviceUnavailableRate": 0.0, "ttftMs": 3000}),
            504,
            "Timeout",
        ),
    ];
    for (config, status, code) in cases {
        emulator.configure(config.clone()).await;
        let reply = harness.invoke(json!({"prompt": unique("fault")})).await;
        assert_eq!(reply.status, status, "{config}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], code);
        assert_eq!(reply.body["error"]["requestId"], "Bf3xJgAAoAMEbXw=");
        if status == 429 {
            assert_eq!(reply.headers["retry-after"], "2");
        }
    }
}

/// At least 40 bad requests, each with its status and error code, none reaching Bedrock
/// except the last, which Bedrock itself refuses.
#[tokio::test]
async fn bad_requests_get_the_specified_4xx_json_errors() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[("MAX_BODY_BYTES", "4096")]).await;
    let user = |text: &str| json!({"role": "user", "content": [{"text": text}]});
    let assistant = |text: &str| json!({"role": "assistant", "content": [{"text": text}]});
    let json_cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "ValidationError", "messages"),
        (json!(null), "ValidationError", "body"),
        (json!([]), "ValidationError", "body"),
        (json!("prompt"), "ValidationError", "body"),
        (json!(42), "ValidationError", "body"),
        (json!({"prompt": ""}), "ValidationError", "prompt"),
        (json!({"prompt": "   \n"}), "ValidationError", "prompt"),
        (json!({"prompt": 5}), "ValidationError", "prompt"),
        (
            json!({"prompt": "a", "messages": [user("b")]}),
            "ValidationError",
            "prompt",
        ),
        (json!({"messages": []}), "ValidationError", "messages"),
        (json!({"messages": {}}), "ValidationError", "messages"),
        (
            json!({"messages": [assistant("hi")]}),
            "ValidationError",
            "messages[0].role",
        ),
        (
            json!({"messages": [user("a"), user("b")]}),
            "ValidationError",
            "messages[1].role",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}),
            "ValidationError",
            "messages[0].role",
        ),
        (
            json!({"messages": [{"content": [{"text": "x"}]}]}),
            "ValidationError",
            "messages[0]",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "ValidationError",
            "messages[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": []}]}),
            "ValidationError",
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "ValidationError",
            "messages[0].content",
        ),
        (
            json!({"messages": [user("")]}),
            "ValidationError",
            "messages[0].content[0].text",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"image": {}}]}]}),
            "UnknownField",
            "messages[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a"}], "extra": 1}]}),
            "UnknownField",
            "messages[0]",
        ),
        (
            json!({"prompt": "a", "system": "be brief"}),
            "ValidationError",
            "system",
        ),
        (
            json!({"prompt": "a", "system": [{"text": " "}]}),
            "ValidationError",
            "system[0].text",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"maxTokens": 0}}),
            "ValidationError",
            "inferenceConfig.maxTokens",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"maxTokens": -5}}),
            "ValidationError",
            "inferenceConfig.maxTokens",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"maxTokens": "ten"}}),
            "ValidationError",
            "inferenceConfig.maxTokens",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"maxTokens": 1_000_000}}),
            "ValidationError",
            "inferenceConfig.maxTokens",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"temperature": 1.5}}),
            "ValidationError",
            "inferenceConfig.temperature",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"temperature": -0.1}}),
            "ValidationError",
            "inferenceConfig.temperature",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"topP": 2}}),
            "ValidationError",
            "inferenceConfig.topP",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"stopSequences": "END"}}),
            "ValidationError",
            "inferenceConfig.stopSequences",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"stopSequences": [""]}}),
            "ValidationError",
            "inferenceConfig.stopSequences[0]",
        ),
        (
            json!({"prompt": "a", "inferenceConfig": {"topK": 5}}),
            "UnknownField",
            "inferenceConfig",
        ),
        (
            json!({"prompt": "a", "modelId": ""}),
            "ValidationError",
            "modelId",
        ),
        (
            json!({"prompt": "a", "modelId": 7}),
            "ValidationError",
            "modelId",
        ),
        (
            json!({"prompt": "a", "modelId": "openai.gpt-9"}),
            "ValidationError",
            "modelId",
        ),
        (
            json!({"prompt": "a", "cache": {"mode": "sometimes"}}),
            "ValidationError",
            "cache.mode",
        ),
        (
            json!({"prompt": "a", "cache": {"ttlSeconds": 0}}),
            "ValidationError",
            "cache.ttlSeconds",
        ),
        (
            json!({"prompt": "a", "cache": {"ttlSeconds": "1h"}}),
            "ValidationError",
            "cache.ttlSeconds",
        ),
        (
            json!({"prompt": "a", "cache": {"ttl": 5}}),
            "UnknownField",
            "cache",
        ),
        (
            json!({"prompt": "a", "cache": true}),
            "ValidationError",
            "cache",
        ),
        (
            json!({"prompt": "a", "optimizePrompt": "yes"}),
            "ValidationError",
            "optimizePrompt",
        ),
        (
            json!({"prompt": "a", "contextLimitChars": 0}),
            "ValidationError",
            "contextLimitChars",
        ),
        (
            json!({"prompt": "a", "contextLimitChars": -1}),
            "ValidationError",
            "contextLimitChars",
        ),
        (
            json!({"prompt": "a", "additionalModelRequestFields": [1]}),
            "ValidationError",
            "additionalModelRequestFields",
        ),
        (
            json!({"prompt": "a", "temperature": 0.5}),
            "UnknownField",
            "temperature",
        ),
    ];
    let mut checked = 0;
    for (body, code, field) in &json_cases {
        let reply = harness.invoke(body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], *code, "{body}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{body}: message {message:?} should name {field}"
        );
        assert_eq!(reply.body["error"]["requestId"], "Bf3xJgAAoAMEbXw=");
        checked += 1;
    }

    let raw_cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "POST",
            Some("application/json"),
            "{\"prompt\": ".into(),
            400,
            "InvalidJson",
        ),
        (
            "POST",
            Some("application/json"),
            "not json at all".into(),
            400,
            "InvalidJson",
        ),
        (
            "POST",
            Some("application/json"),
            String::new(),
            400,
            "ValidationError",
        ),
        (
            "POST",
            Some("application/json"),
            "{\"prompt\": \"a\", \"prompt\": \"b\"}".into(),
            400,
            "ValidationError",
        ),
        (
            "POST",
            Some("application/json"),
            "{\"prompt\": \"a\"} {\"prompt\": \"b\"}".into(),
            400,
            "InvalidJson",
        ),
        (
            "POST",
            Some("text/plain"),
            "{\"prompt\": \"a\"}".into(),
            415,
            "UnsupportedMediaType",
        ),
        (
            "POST",
            Some("application/x-www-form-urlencoded"),
            "prompt=a".into(),
            415,
            "UnsupportedMediaType",
        ),
        (
            "POST",
            Some("application/json"),
            json!({"prompt": "x".repeat(5000)}).to_string(),
            413,
            "PayloadTooLarge",
        ),
        ("GET", None, String::new(), 405, "MethodNotAllowed"),
        (
            "PUT",
            Some("application/json"),
            "{\"prompt\": \"a\"}".into(),
            405,
            "MethodNotAllowed",
        ),
    ];
    for (method, content_type, body, status, code) in &raw_cases {
        let reply = harness.send(method, *content_type, body).await;
        assert_eq!(
            reply.status, *status,
            "{method} {content_type:?} {body:.60}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], *code, "{body:.60}");
        assert!(reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        checked += 1;
    }
    assert_eq!(
        emulator.calls(HAIKU).await,
        0,
        "no bad request reaches Bedrock"
    );

    // Within this API's bounds but beyond the model's: Bedrock refuses it, still a 400.
    let reply = harness
        .invoke(json!({"prompt": "a", "inferenceConfig": {"maxTokens": 100_000}}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "ModelValidationError");
    checked += 1;
    assert!(checked >= 40, "only {checked} bad requests");
}

/// Twenty identical requests at once through four instances sharing the table, with a model
/// that takes 300 ms: one Bedrock call, twenty identical answers.
#[tokio::test]
async fn identical_misses_at_once_cost_one_bedrock_call() {
    let emulator = Emulator::reset().await;
    emulator.configure(json!({"ttftMs": 300})).await;
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(Harness::new(&[("CACHE_LEASE_POLL_MS", "20")]).await);
    }
    let body = json!({"prompt": unique("Everyone asks this at once")});
    let requests = (0..20).map(|i| instances[i % 4].invoke(body.clone()));
    let replies = futures_util::future::join_all(requests).await;
    assert_eq!(emulator.calls(HAIKU).await, 1);
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["text"], replies[0].body["text"]);
    }
    let misses = replies.iter().filter(|r| r.cache() == "MISS").count();
    assert_eq!(
        misses, 1,
        "one request called Bedrock, the others waited for its answer"
    );
}

/// Every way a Provisioned Throughput can be unusable, injected on the wire, spills over.
#[tokio::test]
async fn an_unusable_provisioned_throughput_spills_over_on_the_wire() {
    let emulator = Emulator::reset().await;
    let pt = haiku_pt(&emulator).await;
    let spec = format!("{HAIKU}={pt}");
    let harness = Harness::new(&[("PROVISIONED_THROUGHPUT", spec.as_str())]).await;
    let faults = [
        "accessDeniedRate",
        "resourceNotFoundRate",
        "modelTimeoutRate",
        "modelErrorRate",
        "internalServerRate",
        "serviceUnavailableRate",
        "modelNotReadyRate",
    ];
    for fault in faults {
        emulator
            .configure(json!({"models": {pt.as_str(): {fault: 1.0}}}))
            .await;
        let reply = harness.invoke(json!({"prompt": unique(fault)})).await;
        assert_eq!(reply.status, 200, "{fault}: {}", reply.body);
        assert_eq!(reply.body["route"], "on-demand", "{fault}");
        assert_eq!(reply.body["spilledOver"], true, "{fault}");
        emulator
            .configure(json!({"models": {pt.as_str(): null}}))
            .await;
    }
    assert_eq!(emulator.calls(HAIKU).await, faults.len() as u64);
    let spilled = harness
        .metrics
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.spilled_over)
        .count();
    assert_eq!(spilled, faults.len());

    // A request Bedrock refuses is refused on any capacity: no spillover.
    let refused = harness
        .invoke(json!({"prompt": "a", "inferenceConfig": {"maxTokens": 100_000}}))
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["code"], "ModelValidationError");
    assert_eq!(emulator.calls(HAIKU).await, faults.len() as u64);
}

#[tokio::test]
async fn a_slow_provisioned_throughput_leaves_time_for_on_demand() {
    let emulator = Emulator::reset().await;
    let pt = haiku_pt(&emulator).await;
    emulator
        .configure(json!({"models": {pt.as_str(): {"ttftMs": 5000}}}))
        .await;
    let spec = format!("{HAIKU}={pt}");
    let harness = Harness::new(&[
        ("PROVISIONED_THROUGHPUT", spec.as_str()),
        ("BEDROCK_OPERATION_TIMEOUT_MS", "3000"),
        ("BEDROCK_PROVISIONED_TIMEOUT_MS", "300"),
    ])
    .await;
    let reply = harness
        .invoke(json!({"prompt": unique("Provisioned is slow")}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["route"], "on-demand");
    assert_eq!(reply.body["spilledOver"], true);
}

#[tokio::test]
async fn filtered_and_refused_answers_are_never_cached() {
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    for stop_reason in ["content_filtered", "guardrail_intervened"] {
        emulator.configure(json!({"stopReason": stop_reason})).await;
        let body = json!({"prompt": unique(stop_reason)});
        for _ in 0..2 {
            let reply = harness.invoke(body.clone()).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(reply.body["stopReason"], stop_reason);
            assert_eq!(reply.cache(), "BYPASS", "{stop_reason}");
        }
    }
    assert_eq!(emulator.calls(HAIKU).await, 4);
    // Back to normal answers, the same request is stored.
    emulator.configure(json!({"stopReason": null})).await;
    let body = json!({"prompt": unique("a normal end")});
    assert_eq!(harness.invoke(body.clone()).await.cache(), "MISS");
    assert_eq!(harness.invoke(body).await.cache(), "HIT");
}

#[tokio::test]
async fn an_unreachable_bedrock_has_its_own_error_and_does_not_spill_over() {
    let spec = format!("{HAIKU}={PT_ARN}");
    // Nothing listens on port 1 of the loopback address.
    let harness = Harness::with_bedrock_at(
        &[("PROVISIONED_THROUGHPUT", spec.as_str())],
        "http://127.0.0.1:1",
    )
    .await;
    let reply = harness
        .invoke(json!({"prompt": unique("anyone there?")}))
        .await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "BedrockUnreachable");
    let metrics = harness.metrics.0.lock().unwrap();
    assert_eq!(metrics[0].outcome, Outcome::ServerError);
    assert!(!metrics[0].spilled_over);
}

#[tokio::test]
async fn current_models_answer_through_inference_profiles() {
    const PROFILE: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    const BARE: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[("MODEL_SIMPLE", PROFILE), ("ALLOWED_MODELS", BARE)]).await;
    let reply = harness.invoke(json!({"prompt": unique("Hi")})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["modelId"], PROFILE);
    // Priced as the model behind the profile: $0.001 in and $0.005 out per 1,000 tokens.
    let usage = &reply.body["usage"];
    let expected = usage["inputTokens"].as_f64().unwrap() * 0.001 / 1000.0
        + usage["outputTokens"].as_f64().unwrap() * 0.005 / 1000.0;
    assert!((reply.body["costUsd"].as_f64().unwrap() - expected).abs() < 1e-9);
    assert_eq!(emulator.calls(PROFILE).await, 1);
    // The bare model id is refused on-demand, as Bedrock refuses it.
    let bare = harness
        .invoke(json!({"prompt": unique("Hi"), "modelId": BARE}))
        .await;
    assert_eq!(bare.status, 400, "{}", bare.body);
    assert_eq!(bare.body["error"]["code"], "ModelValidationError");
    assert!(bare.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("inference profile"));
}

/// Bedrock's prompt cache through `/v1/invoke`: a cache point after a long system prompt writes
/// the cache, the next question with the same prefix reads it, each priced at its own rate, and
/// the first request without its cache point is the same response-cache entry.
#[tokio::test]
async fn a_cache_point_writes_then_reads_the_prompt_cache_and_keeps_one_response_entry() {
    let emulator = Emulator::reset().await;
    emulator
        .configure(json!({"promptCacheMinTokens": 100}))
        .await;
    let harness = Harness::new(&[]).await;
    let policy = unique("Refund policy. ") + &"Refunds within 30 days of purchase. ".repeat(40);
    let ask = |question: &str, marked: bool| {
        let mut system = vec![json!({"text": policy})];
        if marked {
            system.push(json!({"cachePoint": {"type": "default"}}));
        }
        json!({"modelId": HAIKU, "system": system, "prompt": question})
    };
    // Claude 3 Haiku: $0.00025 input, $0.00125 output per 1,000 tokens; the prompt cache reads
    // at a tenth of the input price and writes at a quarter more.
    let priced = |usage: &Value| {
        let tokens = |field: &str| usage[field].as_f64().unwrap_or(0.0) / 1000.0;
        tokens("inputTokens") * 0.00025
            + tokens("outputTokens") * 0.00125
            + tokens("cacheReadInputTokens") * 0.000025
            + tokens("cacheWriteInputTokens") * 0.0003125
    };

    let first = harness.invoke(ask("May I return shoes?", true)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let usage = &first.body["usage"];
    let written = usage["cacheWriteInputTokens"].as_u64().unwrap_or(0);
    assert!(written >= 100, "{usage}");
    assert_eq!(usage.get("cacheReadInputTokens"), None, "{usage}");
    let cost = first.body["costUsd"].as_f64().unwrap();
    assert!((cost - priced(usage)).abs() < 1e-9, "{cost} for {usage}");

    let second = harness.invoke(ask("May I return a hat?", true)).await;
    assert_eq!(second.cache(), "MISS");
    let usage = &second.body["usage"];
    assert_eq!(
        usage["cacheReadInputTokens"].as_u64(),
        Some(written),
        "{usage}"
    );
    let cost = second.body["costUsd"].as_f64().unwrap();
    assert!((cost - priced(usage)).abs() < 1e-9, "{cost} for {usage}");
    assert!(cost < first.body["costUsd"].as_f64().unwrap());
    let metrics = harness.metrics.last();
    assert_eq!(u64::from(metrics.prompt_cache_read_tokens), written);
    assert!(metrics.prompt_cache_saved_usd > 0.0, "{metrics:?}");

    // The cache point changes what a call costs, not its answer: one response-cache entry.
    let plain = harness.invoke(ask("May I return shoes?", false)).await;
    assert_eq!(plain.cache(), "HIT");
    assert_eq!(plain.body["text"], first.body["text"]);
    assert_eq!(emulator.calls(HAIKU).await, 2);
    let metrics = harness.metrics.last();
    assert_eq!(metrics.prompt_cache_read_tokens, 0, "a hit reads nothing");
}

/// Bedrock's service tiers through `/v1/invoke`: flex is served and priced as flex (half the
/// default price), and a flex call Bedrock throttles is answered on the default tier, counted.
#[tokio::test]
async fn a_flex_request_is_served_and_priced_on_flex_and_a_throttled_one_falls_back_to_default() {
    use domain::routing::ServiceTier;
    let emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let ask = |tier: &str, label: &str| json!({"modelId": HAIKU, "prompt": unique(label), "serviceTier": {"type": tier}});
    // Claude 3 Haiku's default price: $0.00025 input, $0.00125 output per 1,000 tokens.
    let default_price = |usage: &Value| {
        usage["inputTokens"].as_f64().unwrap() / 1000.0 * 0.00025
            + usage["outputTokens"].as_f64().unwrap() / 1000.0 * 0.00125
    };

    let flex = harness
        .invoke(ask("flex", "Summarise a refund policy"))
        .await;
    assert_eq!(flex.status, 200, "{}", flex.body);
    assert_eq!(flex.body["serviceTier"], json!({"type": "flex"}));
    let cost = flex.body["costUsd"].as_f64().unwrap();
    let expected = default_price(&flex.body["usage"]) * 0.5;
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    let metrics = harness.metrics.last();
    assert_eq!(
        (metrics.service_tier, metrics.tier_fallback),
        (Some(ServiceTier::Flex), false)
    );

    emulator.configure(json!({"flexThrottleRate": 1.0})).await;
    let fell_back = harness
        .invoke(ask("flex", "Summarise a returns policy"))
        .await;
    assert_eq!(fell_back.status, 200, "{}", fell_back.body);
    assert_eq!(fell_back.body["serviceTier"], json!({"type": "default"}));
    let cost = fell_back.body["costUsd"].as_f64().unwrap();
    let expected = default_price(&fell_back.body["usage"]);
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    let metrics = harness.metrics.last();
    assert_eq!(
        (metrics.service_tier, metrics.tier_fallback),
        (Some(ServiceTier::Default), true)
    );
}

/// `PROMPT_CACHE_AUTO`: a long system prompt gets a cache point of its own, so the second
/// question reads what the first wrote; a caller's cache point before too short a prefix is
/// counted (Bedrock would ignore it without a word).
#[tokio::test]
async fn automatic_cache_points_cache_a_long_system_prompt_and_short_ones_are_counted() {
    let _emulator = Emulator::reset().await;
    let harness = Harness::new(&[("PROMPT_CACHE_AUTO", "true")]).await;
    // Over Claude 3 Haiku's 2,048 tokens (about 4 characters a token).
    let policy = unique("Refund policy. ") + &"Refunds within 30 days of purchase. ".repeat(300);
    let ask = |question: &str| json!({"modelId": HAIKU, "system": [{"text": policy}], "prompt": question});
    let first = harness.invoke(ask("May I return shoes?")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let written = first.body["usage"]["cacheWriteInputTokens"]
        .as_u64()
        .unwrap_or(0);
    assert!(written >= 2048, "{}", first.body["usage"]);
    let second = harness.invoke(ask("May I return a hat?")).await;
    assert_eq!(
        second.body["usage"]["cacheReadInputTokens"].as_u64(),
        Some(written),
        "{}",
        second.body["usage"]
    );
    assert_eq!(harness.metrics.last().prompt_cache_points_too_small, 0);

    let short = json!({"modelId": HAIKU, "prompt": unique("short"),
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}]});
    let reply = harness.invoke(short).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["usage"].get("cacheWriteInputTokens"), None);
    assert_eq!(harness.metrics.last().prompt_cache_points_too_small, 1);
}

/// A deployment guardrail through `/v1/invoke`: an intervention is answered (200, Bedrock's stop
/// reason), never cached and counted; an answer it lets through is cached as any other.
#[tokio::test]
async fn a_guardrail_intervention_is_answered_not_cached_and_counted() {
    let emulator = Emulator::reset().await;
    emulator
        .configure(
            json!({"guardrails": {"gr1abc": {"blockedWords": ["password"],
            "blockedInputMessage": "I cannot help with credentials."}}}),
        )
        .await;
    let harness = Harness::new(&[("GUARDRAIL_ID", "gr1abc"), ("GUARDRAIL_VERSION", "DRAFT")]).await;
    let blocked = json!({"modelId": HAIKU, "prompt": unique("What is the admin password?")});
    for _ in 0..2 {
        let reply = harness.invoke(blocked.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["stopReason"], "guardrail_intervened");
        assert_eq!(reply.body["text"], "I cannot help with credentials.");
        assert_eq!(
            reply.cache(),
            "BYPASS",
            "never stored, never served from the cache"
        );
        assert!(harness.metrics.last().guardrail_intervened);
    }
    let allowed = json!({"modelId": HAIKU, "prompt": unique("What is a refund?")});
    assert_eq!(harness.invoke(allowed.clone()).await.cache(), "MISS");
    assert_eq!(harness.invoke(allowed).await.cache(), "HIT");
    assert!(!harness.metrics.last().guardrail_intervened);
}

/// A prompt router as the model: the answer names the model it invoked, is priced at that
/// model's price, and is cached under the router.
#[tokio::test]
async fn a_prompt_routers_answer_reports_and_is_priced_by_the_model_it_invoked() {
    const ROUTER: &str =
        "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    let _emulator = Emulator::reset().await;
    let harness = Harness::new(&[
        ("ALLOWED_MODELS", ROUTER),
        ("MODEL_PRICES", &format!("{ROUTER}=0.003/0.015")),
    ])
    .await;
    let body = json!({"modelId": ROUTER, "prompt": unique("A short question")});
    let first = harness.invoke(body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["modelId"], ROUTER);
    assert_eq!(
        first.body["invokedModelId"],
        format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}")
    );
    // Claude 3 Haiku's price, not the router's (Sonnet's).
    let usage = &first.body["usage"];
    let haiku_price = usage["inputTokens"].as_f64().unwrap() / 1000.0 * 0.00025
        + usage["outputTokens"].as_f64().unwrap() / 1000.0 * 0.00125;
    let cost = first.body["costUsd"].as_f64().unwrap();
    assert!((cost - haiku_price).abs() < 1e-9, "{cost} != {haiku_price}");
    let again = harness.invoke(body).await;
    assert_eq!(again.cache(), "HIT");
    assert_eq!(again.body["invokedModelId"], first.body["invokedModelId"]);
}

/// `performanceConfig.latency` passes through, comes back as Bedrock served it, and is priced at
/// the optimized factor (1.25 by default).
#[tokio::test]
async fn latency_optimized_inference_is_echoed_and_priced_as_bedrock_bills_it() {
    let _emulator = Emulator::reset().await;
    let harness = Harness::new(&[]).await;
    let reply = harness
        .invoke(json!({"modelId": HAIKU, "prompt": unique("Be quick"),
            "performanceConfig": {"latency": "optimized"}}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["performanceConfig"],
        json!({"latency": "optimized"})
    );
    let usage = &reply.body["usage"];
    let standard = usage["inputTokens"].as_f64().unwrap() / 1000.0 * 0.00025
        + usage["outputTokens"].as_f64().unwrap() / 1000.0 * 0.00125;
    let cost = reply.body["costUsd"].as_f64().unwrap();
    assert!(
        (cost - 1.25 * standard).abs() < 1e-9,
        "{cost} != 1.25 × {standard}"
    );
}
