#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Prompt caching, service tiers and `performanceConfig` through the AWS SDK for Rust (the
//! emulator in-process, one per test). The prompt cache's clock is moved through the admin API
//! (`promptCacheNow`), never by sleeping.

mod common;

use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, CacheTtl, ContentBlock, ConversationRole,
    ConverseStreamOutput, Message, PerformanceConfigLatency, PerformanceConfiguration, ServiceTier,
    ServiceTierType, SystemContentBlock, TokenUsage,
};
use aws_sdk_bedrockruntime::Client;
use common::Emulator;
use serde_json::{json, Value};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET_4_5: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn client(emulator: &Emulator) -> Client {
    Client::new(&emulator.sdk_config())
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("message")
}

fn cache_point(ttl: Option<CacheTtl>) -> CachePointBlock {
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .set_ttl(ttl)
        .build()
        .expect("cache point")
}

/// 6000 characters: 1500 tokens, over Claude Sonnet 4.5's minimum of 1024.
fn long_system() -> String {
    "You are a careful assistant. ".repeat(207)[..6000].to_owned()
}

/// A Converse call to Sonnet 4.5 with a cached system prompt.
async fn converse_cached(client: &Client, question: &str, ttl: Option<CacheTtl>) -> ConverseOutput {
    client
        .converse()
        .model_id(SONNET_4_5)
        .system(SystemContentBlock::Text(long_system()))
        .system(SystemContentBlock::CachePoint(cache_point(ttl)))
        .messages(user(question))
        .send()
        .await
        .expect("converse")
}

fn cache_tokens(usage: &TokenUsage) -> (Option<i32>, Option<i32>) {
    (
        usage.cache_read_input_tokens(),
        usage.cache_write_input_tokens(),
    )
}

#[tokio::test]
async fn a_cached_prefix_is_written_read_and_written_again_once_expired() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    emulator
        .configure(json!({"promptCacheNow": "2030-06-01T12:00:00Z"}))
        .await;

    // 6000 + 12 characters: 1503 tokens, 1500 of them before the cache point.
    let first = converse_cached(&client, "What is up?!", None).await;
    let usage = first.usage().expect("usage");
    assert_eq!(cache_tokens(usage), (Some(0), Some(1500)));
    assert_eq!(usage.input_tokens(), 3);
    assert_eq!(
        usage.total_tokens(),
        usage.input_tokens() + usage.output_tokens() + 1500
    );
    let details = usage.cache_details();
    assert_eq!(details.len(), 1);
    assert_eq!(
        (details[0].ttl(), details[0].input_tokens()),
        (&CacheTtl::FiveMinutes, 1500)
    );

    emulator
        .configure(json!({"promptCacheNow": "2030-06-01T12:04:59Z"}))
        .await;
    let second = converse_cached(&client, "And now, what?", None).await;
    let usage = second.usage().expect("usage");
    assert_eq!(cache_tokens(usage), (Some(1500), Some(0)));
    assert!(usage.cache_details().is_empty());
    // The cache point changes the bill, not the answer.
    let uncached = client
        .converse()
        .model_id(SONNET_4_5)
        .system(SystemContentBlock::Text(long_system()))
        .messages(user("And now, what?"))
        .send()
        .await
        .expect("converse");
    assert_eq!(uncached.output(), second.output());
    assert_eq!(
        uncached.usage().expect("usage").cache_read_input_tokens(),
        None
    );

    // Read at 12:04:59, the prefix expires at 12:09:59.
    emulator
        .configure(json!({"promptCacheNow": "2030-06-01T12:09:59Z"}))
        .await;
    let third = converse_cached(&client, "Later on?", None).await;
    assert_eq!(
        cache_tokens(third.usage().expect("usage")),
        (Some(0), Some(1500))
    );

    let stats = emulator.stats().await;
    assert_eq!(stats["models"][SONNET_4_5]["cacheReadTokens"], 1500);
    assert_eq!(stats["models"][SONNET_4_5]["cacheWriteTokens"], 3000);

    // A reset forgets the cache.
    emulator.reset().await;
    emulator
        .configure(json!({"promptCacheNow": "2030-06-01T12:10:00Z"}))
        .await;
    let after_reset = converse_cached(&client, "Later on?", None).await;
    assert_eq!(
        cache_tokens(after_reset.usage().expect("usage")),
        (Some(0), Some(1500))
    );
}

#[tokio::test]
async fn under_the_minimum_there_are_no_cache_fields() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let output = client
        .converse()
        .model_id(HAIKU)
        .system(SystemContentBlock::Text(long_system()))
        .system(SystemContentBlock::CachePoint(cache_point(Some(
            CacheTtl::OneHour,
        ))))
        .messages(user("Hello"))
        .send()
        .await
        .expect("converse");
    // 1500 tokens: under Claude 3 Haiku's 2048.
    let usage = output.usage().expect("usage");
    assert_eq!(cache_tokens(usage), (None, None));
    assert!(usage.cache_details().is_empty());
    assert_eq!(usage.input_tokens(), 1502);
    let stats = emulator.stats().await;
    assert_eq!(stats["models"][HAIKU]["cacheWriteTokens"], 0);
}

#[tokio::test]
async fn a_bad_cache_point_is_a_validation_exception() {
    let emulator = Emulator::start().await;
    let error = client(&emulator)
        .converse()
        .model_id(HAIKU)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Hello".to_owned()))
                .content(ContentBlock::CachePoint(
                    CachePointBlock::builder()
                        .r#type(CachePointType::from("ephemeral"))
                        .build()
                        .expect("cache point"),
                ))
                .build()
                .expect("message"),
        )
        .send()
        .await
        .expect_err("refused")
        .into_service_error();
    let ConverseError::ValidationException(exception) = error else {
        panic!("{error:?}");
    };
    assert_eq!(
        exception.message(),
        Some("1 validation error detected: Value 'ephemeral' at 'messages.1.member.content.2.member.cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]")
    );
}

#[tokio::test]
async fn the_stream_metadata_carries_the_same_usage_tier_and_performance_config() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    emulator
        .configure(json!({"promptCacheNow": "2030-06-01T12:00:00Z"}))
        .await;
    let tier = ServiceTier::builder()
        .r#type(ServiceTierType::Priority)
        .build()
        .expect("tier");
    let performance = PerformanceConfiguration::builder()
        .latency(PerformanceConfigLatency::Optimized)
        .build();
    let mut stream = client
        .converse_stream()
        .model_id(SONNET_4_5)
        .system(SystemContentBlock::Text(long_system()))
        .system(SystemContentBlock::CachePoint(cache_point(None)))
        .messages(user("Stream it"))
        .service_tier(tier.clone())
        .performance_config(performance.clone())
        .send()
        .await
        .expect("converse stream")
        .stream;
    let mut metadata = None;
    while let Some(event) = stream.recv().await.expect("stream event") {
        if let ConverseStreamOutput::Metadata(event) = event {
            metadata = Some(event);
        }
    }
    let metadata = metadata.expect("a metadata event");
    let streamed = metadata.usage().expect("usage");
    assert_eq!(cache_tokens(streamed), (Some(0), Some(1500)));
    assert_eq!(streamed.cache_details()[0].input_tokens(), 1500);
    assert_eq!(metadata.service_tier(), Some(&tier));
    assert_eq!(metadata.performance_config(), Some(&performance));

    // The same request through Converse: the same tokens, read this time.
    let output = client
        .converse()
        .model_id(SONNET_4_5)
        .system(SystemContentBlock::Text(long_system()))
        .system(SystemContentBlock::CachePoint(cache_point(None)))
        .messages(user("Stream it"))
        .service_tier(tier.clone())
        .performance_config(performance.clone())
        .send()
        .await
        .expect("converse");
    let usage = output.usage().expect("usage");
    assert_eq!(cache_tokens(usage), (Some(1500), Some(0)));
    assert_eq!(
        (
            usage.input_tokens(),
            usage.output_tokens(),
            usage.total_tokens()
        ),
        (
            streamed.input_tokens(),
            streamed.output_tokens(),
            streamed.total_tokens()
        )
    );
    assert_eq!(output.service_tier(), Some(&tier));
    assert_eq!(output.performance_config(), Some(&performance));
}

async fn converse_in(
    client: &Client,
    tier: ServiceTierType,
) -> Result<ConverseOutput, ConverseError> {
    client
        .converse()
        .model_id(HAIKU)
        .messages(user("Hello"))
        .service_tier(ServiceTier::builder().r#type(tier).build().expect("tier"))
        .send()
        .await
        .map_err(|e| e.into_service_error())
}

#[tokio::test]
async fn tiers_are_echoed_flex_is_throttled_at_its_rate_and_bad_tiers_refused() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let plain = client
        .converse()
        .model_id(HAIKU)
        .messages(user("Hello"))
        .send()
        .await
        .expect("converse");
    assert_eq!(plain.service_tier(), None);
    assert_eq!(plain.performance_config(), None);
    for tier in [
        ServiceTierType::Priority,
        ServiceTierType::Default,
        ServiceTierType::Flex,
    ] {
        let output = converse_in(&client, tier.clone()).await.expect("served");
        assert_eq!(output.service_tier().map(ServiceTier::r#type), Some(&tier));
    }

    emulator.configure(json!({"flexThrottleRate": 1})).await;
    let error = converse_in(&client, ServiceTierType::Flex)
        .await
        .expect_err("throttled");
    assert!(
        matches!(error, ConverseError::ThrottlingException(_)),
        "{error:?}"
    );
    converse_in(&client, ServiceTierType::Priority)
        .await
        .expect("only flex is throttled");

    for tier in [ServiceTierType::Reserved, ServiceTierType::from("platinum")] {
        let error = converse_in(&client, tier).await.expect_err("refused");
        assert!(
            matches!(error, ConverseError::ValidationException(_)),
            "{error:?}"
        );
    }

    let stats = emulator.stats().await;
    let model = &stats["models"][HAIKU];
    assert_eq!(
        model["tiers"],
        json!({"priority": 2, "default": 1, "flex": 1})
    );
    assert_eq!(model["flexThrottled"], 1);
    assert_eq!(model["throttled"], 1);
    assert_eq!(model["validationErrors"], 2);
}

#[tokio::test]
async fn the_settings_are_shown_checked_and_reset() {
    let emulator = Emulator::start().await;
    let config = emulator.config().await;
    assert_eq!(config["promptCacheMinTokens"], Value::Null);
    assert_eq!(config["promptCacheNow"], Value::Null);
    assert_eq!(config["flexThrottleRate"], 0.0);
    assert_eq!(config["flexLatencyFactor"], 2.0);
    assert_eq!(config["priorityLatencyFactor"], 0.5);

    emulator
        .configure(
            json!({"promptCacheMinTokens": 1, "promptCacheNow": "2030-01-01T00:00:00Z",
                          "models": {HAIKU: {"flexLatencyFactor": 4}}}),
        )
        .await;
    let config = emulator.config().await;
    assert_eq!(config["promptCacheMinTokens"], 1);
    assert_eq!(config["promptCacheNow"], "2030-01-01T00:00:00.000Z");
    assert_eq!(config["models"][HAIKU]["flexLatencyFactor"], 4.0);
    assert_eq!(config["models"][HAIKU]["promptCacheMinTokens"], 1);

    for bad in [
        json!({"flexThrottleRate": 2}),
        json!({"priorityLatencyFactor": -0.5}),
        json!({"promptCacheNow": "whenever"}),
        json!({"models": {HAIKU: {"promptCacheNow": "2030-01-01T00:00:00Z"}}}),
        json!({"promptCacheMinTokens": -1}),
    ] {
        let status = emulator
            .http()
            .post(emulator.url("/_emulator/config"))
            .json(&bad)
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!(status.as_u16(), 400, "{bad}");
    }

    emulator.reset().await;
    let config = emulator.config().await;
    assert_eq!(config["promptCacheMinTokens"], Value::Null);
    assert_eq!(config["promptCacheNow"], Value::Null);
}
