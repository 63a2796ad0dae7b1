//! Streaming, the OpenAI-compatible API and tenant keys, through the handler with real
//! API Gateway events and in-memory ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    build, build_with_tenancy, bytes_of, event_names, http_event, read, read_stream, text_deltas,
    FakeModel, GatedModel, MemoryStore, Sse, HAIKU,
};
use domain::conversation::{Conversation, ModelAnswer};
use domain::error::{ModelError, ModelErrorKind};
use domain::metrics::Outcome;
use domain::ports::{Clock, ModelInvoker, ModelStream, SpendLedger, TenantKeyStore};
use domain::routing::Target;
use domain::tenancy::{issue_key, month_of};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::memory_tenancy::InMemoryTenancy;
use tokio::sync::Notify;

#[tokio::test]
async fn a_streamed_miss_is_stored_and_replayed_as_several_deltas_on_a_hit() {
    let model = FakeModel::answering().ending("end_turn", "a cache keeps answers for a while");
    let store = MemoryStore::default();
    let (app, metrics) = build(&[], store.clone(), model.clone());
    let body = json!({"prompt": "What does a cache TTL do?", "stream": true});

    let response = app
        .handle(http_event("POST", "/v1/invoke", None, &body))
        .await;
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let (status, cache, events) = read_stream(response).await;
    assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    assert_eq!(event_names(&events), vec!["start", "text", "end"]);
    let start = events[0].json();
    assert_eq!(start["cache"], "MISS");
    assert_eq!(start["modelId"], HAIKU);
    assert_eq!(start["route"], "on-demand");
    assert_eq!(start["tier"], "simple");
    let miss_texts = text_deltas(&events);
    assert!(miss_texts.len() > 1);
    assert_eq!(miss_texts.concat(), "a cache keeps answers for a while");
    let end = events.last().unwrap().json();
    assert_eq!(end["stopReason"], "end_turn");
    assert_eq!(end["usage"]["totalTokens"], 2000);
    assert!(
        (end["costUsd"].as_f64().unwrap() - 0.0015).abs() < 1e-12,
        "{end}"
    );
    assert_eq!(store.answers(), 1);
    assert_eq!(metrics.last().outcome, Outcome::Answered);

    let (_, cache, events) = read_stream(
        app.handle(http_event("POST", "/v1/invoke", None, &body))
            .await,
    )
    .await;
    assert_eq!(cache.as_deref(), Some("HIT"));
    assert_eq!(events[0].json()["cache"], "HIT");
    assert_eq!(events[0].json()["route"], Value::Null);
    assert_eq!(
        text_deltas(&events),
        miss_texts,
        "a hit streams as the miss did"
    );
    let end = events.last().unwrap().json();
    assert_eq!(end["costUsd"], 0.0);
    assert!(end["savedUsd"].as_f64().unwrap() > 0.0);
    assert_eq!(model.calls().len(), 1);
}

#[tokio::test]
async fn a_stream_cut_by_bedrock_ends_with_an_error_event_and_stores_nothing() {
    let model = FakeModel::answering()
        .ending("end_turn", "one two three four five six seven")
        .cutting_streams(ModelErrorKind::Throttled);
    let store = MemoryStore::default();
    let (app, metrics) = build(&[], store.clone(), model);
    let body = json!({"prompt": "cut me", "stream": true});
    let (status, _, events) = read_stream(
        app.handle(http_event("POST", "/v1/invoke", None, &body))
            .await,
    )
    .await;
    assert_eq!(status, 200, "the stream had begun");
    assert_eq!(event_names(&events), vec!["start", "text", "error"]);
    let error = events.last().unwrap().json();
    assert_eq!(error["error"]["code"], "Throttled");
    assert!(error["error"]["requestId"].is_string());
    assert_eq!(store.answers(), 0);
    assert_eq!(store.leases(), 0, "the key is given back");
    assert_eq!(metrics.last().outcome, Outcome::Throttled);
}

#[tokio::test]
async fn a_failure_before_the_first_event_is_a_plain_error_response() {
    let (app, _) = build(
        &[],
        MemoryStore::default(),
        FakeModel::failing(ModelErrorKind::Throttled),
    );
    let body = json!({"prompt": "x", "stream": true});
    let response = app
        .handle(http_event("POST", "/v1/invoke", None, &body))
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = serde_json::from_slice(&bytes_of(response)).unwrap();
    assert_eq!(body["error"]["code"], "Throttled");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_stores_nothing() {
    let gate = Arc::new(Notify::new());
    let store = MemoryStore::default();
    let config = invoke_with_cache::InvokeConfig::from_env(&shared::config::Env::from_pairs([
        ("CACHE_TABLE_NAME", "cache"),
        ("MODEL_SIMPLE", HAIKU),
    ]))
    .unwrap();
    let clock = common::clock();
    let memory = shared::adapters::memory_cache::MemoryCache::new(0, 60);
    let fronted =
        shared::adapters::memory_cache::MemoryFronted::new(store.clone(), memory, clock.clone());
    let metrics = common::Recorder::default();
    let app = Arc::new(invoke_with_cache::App::new(
        config,
        common::ports(
            fronted,
            GatedModel {
                gate: gate.clone(),
                model: FakeModel::answering()
                    .ending("end_turn", "one two three four five six seven eight nine"),
            },
            clock,
            metrics.clone(),
        ),
    ));
    let body = json!({"prompt": "leave early", "stream": true});
    let response = app
        .handle(http_event("POST", "/v1/invoke", None, &body))
        .await;
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(std::str::from_utf8(&first)
        .unwrap()
        .starts_with("event: start"));
    assert_eq!(store.leases(), 1, "the miss holds the key while it streams");
    drop(body);
    gate.notify_one();
    while metrics.0.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.last().outcome, Outcome::ClientError);
    assert_eq!(store.answers(), 0);
    assert_eq!(store.leases(), 0, "the key is given back");
}

// --- OpenAI-compatible API ---------------------------------------------------------------

async fn tenant(tenancy: &InMemoryTenancy, models: Vec<String>, budget: Option<f64>) -> String {
    let issued = issue_key("acme", models, budget, None, common::clock().now()).unwrap();
    tenancy.create(&issued.record).await.unwrap();
    issued.key
}

const COMPLETIONS: &str = "/openai/v1/chat/completions";

fn chat(stream: bool) -> Value {
    json!({
        "model": "auto",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What does a cache TTL do?"}],
        "stream": stream,
    })
}

#[tokio::test]
async fn openai_buffered_answers_in_chat_completion_shape() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let response = app
        .handle(http_event("POST", COMPLETIONS, Some(&key), &chat(false)))
        .await;
    assert_eq!(response.headers()["x-cache"], "MISS");
    assert_eq!(response.headers()["x-model-id"], HAIKU);
    assert!(response.headers().contains_key("x-cost-usd"));
    let (status, _, body) = read(response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], HAIKU);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "secret answer text"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 2000);
    // CreateChatCompletionResponse: message.content, message.refusal and logprobs are nullable;
    // system_fingerprint is a string when present.
    assert_nulls_only_where_openai_allows(
        &body,
        &[
            "choices.0.message.content",
            "choices.0.message.refusal",
            "choices.0.logprobs",
        ],
    );
    assert_openai_schema("CreateChatCompletionResponse", &body);

    let (_, cache, again) = read(
        app.handle(http_event("POST", COMPLETIONS, Some(&key), &chat(false)))
            .await,
    );
    assert_eq!(cache.as_deref(), Some("HIT"));
    assert_eq!(again["choices"], body["choices"]);
}

/// Holds `value` to the schema `name` of OpenAI's OpenAPI document (the extract in
/// `fixtures/openai-chat-schemas.json`, made by `scripts/openai_schemas.py`): what strictly typed
/// clients are generated from.
fn assert_openai_schema(name: &str, value: &Value) {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/openai-chat-schemas.json")).unwrap();
    let schema = json!({"$defs": fixture["$defs"], "$ref": format!("#/$defs/{name}")});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{value}");
}

/// The paths (`choices.0.logprobs`) of every `null` in `value`.
fn null_paths(value: &Value, at: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    match value {
        Value::Null => out.push(at.to_owned()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                null_paths(item, &join(&i.to_string()), out);
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                null_paths(field, &join(key), out);
            }
        }
        _ => {}
    }
}

/// Holds an answer to OpenAI's OpenAPI document on nulls: a field may be `null` only where the
/// document makes it nullable (strictly typed clients fail on any other).
fn assert_nulls_only_where_openai_allows(value: &Value, nullable: &[&str]) {
    let mut nulls = Vec::new();
    null_paths(value, "", &mut nulls);
    for path in nulls {
        assert!(
            nullable.contains(&path.as_str()),
            "{path} is null, which OpenAI's document does not allow: {value}"
        );
    }
}

fn chunks(events: &[Sse]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(Sse::json)
        .collect()
}

#[tokio::test]
async fn openai_streams_chunks_with_role_first_usage_last_and_done_on_a_miss_and_a_hit() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let model = FakeModel::answering().ending("end_turn", "a cache keeps answers for a while");
    let (app, _) = build_with_tenancy(&[], model.clone(), tenancy);
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    for expected_cache in ["MISS", "HIT"] {
        let (status, cache, events) = read_stream(
            app.handle(http_event("POST", COMPLETIONS, Some(&key), &body))
                .await,
        )
        .await;
        assert_eq!((status, cache.as_deref()), (200, Some(expected_cache)));
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let chunks = chunks(&events);
        // CreateChatCompletionStreamResponse: a choice's logprobs and finish_reason are nullable.
        for chunk in &chunks {
            assert_nulls_only_where_openai_allows(
                chunk,
                &["choices.0.logprobs", "choices.0.finish_reason"],
            );
            assert_openai_schema("CreateChatCompletionStreamResponse", chunk);
        }
        let ids: std::collections::HashSet<_> = chunks.iter().map(|c| c["id"].clone()).collect();
        assert_eq!(ids.len(), 1, "one id per response");
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "a cache keeps answers for a while");
        let content_chunks = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .count();
        assert!(
            content_chunks > 1,
            "{expected_cache} streams several chunks"
        );
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 2000);
    }
    assert_eq!(model.calls().len(), 1);
}

#[tokio::test]
async fn openai_streams_tool_calls_with_their_index() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let (app, _) = build_with_tenancy(&[], ToolModel, tenancy);
    let body = json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "stream": true,
    });
    let (_, _, events) = read_stream(
        app.handle(http_event("POST", COMPLETIONS, Some(&key), &body))
            .await,
    )
    .await;
    let chunks = chunks(&events);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "tooluse_1");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert!(calls.iter().all(|c| c["index"] == 0));
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
}

/// Asks for `get_weather` whatever it is told.
#[derive(Clone)]
struct ToolModel;

impl ModelInvoker for ToolModel {
    async fn converse(
        &self,
        _: &Target,
        _: &Conversation,
        _: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        Ok(serde_json::from_value(json!({
            "message": {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        }))
        .unwrap())
    }

    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let answer = self.converse(target, conversation, timeout).await?;
        Ok(Box::pin(futures_util::stream::iter(common::replayed(
            &answer,
        ))))
    }
}

#[tokio::test]
async fn openai_refusals_use_openais_error_shape_and_statuses() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![HAIKU.to_owned()], None).await;
    let (app, _) = build_with_tenancy(
        &[("ALLOWED_MODELS", "anthropic.claude-3-5-haiku-20241022-v1:0")],
        FakeModel::answering(),
        tenancy,
    );
    let mut seeded = chat(false);
    seeded["seed"] = json!(42);
    let mut elsewhere = chat(false);
    elsewhere["model"] = json!("anthropic.claude-3-5-haiku-20241022-v1:0");
    let mut unknown = chat(false);
    unknown["model"] = json!("gpt-4o");
    let malformed = "bgw_0123456789ab_000000000000000000000000000000000000000000000000";
    let cases = [
        (
            Some(key.as_str()),
            seeded,
            400,
            "invalid_request_error",
            Some("seed"),
        ),
        (None, chat(false), 401, "authentication_error", None),
        (
            Some("sk-not-ours"),
            chat(false),
            401,
            "authentication_error",
            None,
        ),
        (
            Some(malformed),
            chat(false),
            401,
            "authentication_error",
            None,
        ),
        (
            Some(key.as_str()),
            elsewhere,
            403,
            "permission_error",
            Some("model"),
        ),
        (
            Some(key.as_str()),
            unknown,
            404,
            "not_found_error",
            Some("model"),
        ),
    ];
    for (bearer, body, status, kind, param) in cases {
        let response = app
            .handle(http_event("POST", COMPLETIONS, bearer, &body))
            .await;
        let (got, _, answer) = read(response);
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["error"]["type"], kind, "{answer}");
        assert_eq!(answer["error"]["param"].as_str(), param, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
        assert_openai_schema("ErrorResponse", &answer);
    }
}

#[tokio::test]
async fn models_lists_auto_and_what_the_key_may_use() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![HAIKU.to_owned()], None).await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let (status, _, body) = read(
        app.handle(http_event(
            "GET",
            "/openai/v1/models",
            Some(&key),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["auto", HAIKU]);
    assert_openai_schema("ListModelsResponse", &body);
}

/// Answers from Bedrock's prompt cache, on the flex tier.
#[derive(Clone)]
struct CachedFlexModel;

impl ModelInvoker for CachedFlexModel {
    async fn converse(
        &self,
        _: &Target,
        _: &Conversation,
        _: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        Ok(serde_json::from_value(json!({
            "message": {"role": "assistant", "content": [{"text": "From the policy: yes."}]},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 6, "totalTokens": 2066,
                "cacheReadInputTokens": 2048},
            "serviceTier": "flex",
        }))
        .unwrap())
    }

    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let answer = self.converse(target, conversation, timeout).await?;
        Ok(Box::pin(futures_util::stream::iter(common::replayed(
            &answer,
        ))))
    }
}

#[tokio::test]
async fn cached_prompt_tokens_and_the_served_tier_have_openais_shapes() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let (app, _) = build_with_tenancy(&[], CachedFlexModel, tenancy);
    let mut body = chat(false);
    body["service_tier"] = json!("flex");
    let (status, _, answer) = read(
        app.handle(http_event("POST", COMPLETIONS, Some(&key), &body))
            .await,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["service_tier"], "flex");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 2060, "completion_tokens": 6, "total_tokens": 2066,
            "prompt_tokens_details": {"cached_tokens": 2048}})
    );
    assert_openai_schema("CreateChatCompletionResponse", &answer);
}

// --- Tenant keys and budgets ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_revoked_key_stops_working_within_the_key_cache_time() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let (app, _) = build_with_tenancy(
        &[("TENANT_KEY_CACHE_SECONDS", "30")],
        FakeModel::answering(),
        tenancy.clone(),
    );
    let ask = || http_event("POST", COMPLETIONS, Some(&key), &chat(false));
    assert_eq!(read(app.handle(ask()).await).0, 200);
    let key_id = domain::tenancy::key_id_of(&key).unwrap().to_owned();
    tenancy.revoke(&key_id, 1).await.unwrap();
    // Within the bounded time the instance still trusts its lookup (a hit stays a memory lookup).
    assert_eq!(read(app.handle(ask()).await).0, 200);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(read(app.handle(ask()).await).0, 401);
}

#[tokio::test]
async fn spend_is_counted_per_tenant_and_month_and_a_tenant_over_budget_gets_429() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    // Each answer costs $0.0015 (1000 + 1000 Haiku tokens): the third finds the budget spent.
    // (A request reserves its prompt's bytes and 10 output tokens, so each fits until then.)
    let key = tenant(&tenancy, vec![], Some(0.003)).await;
    let (app, _) = build_with_tenancy(
        &[("RESERVE_MAX_TOKENS", "10")],
        FakeModel::answering(),
        tenancy.clone(),
    );
    for (i, expected) in [200, 200, 429].into_iter().enumerate() {
        let mut body = chat(false);
        body["messages"][1]["content"] = json!(format!("question {i}"));
        let response = app
            .handle(http_event("POST", COMPLETIONS, Some(&key), &body))
            .await;
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, _, answer) = read(response);
        assert_eq!(status, expected, "{answer}");
        if status == 429 {
            assert_eq!(answer["error"]["code"], "BudgetExceeded");
            assert_eq!(answer["error"]["type"], "insufficient_quota");
            assert!(retry_after.is_some());
        }
    }
    let month = month_of(common::clock().now());
    let spent = tenancy.spent("acme", &month).await.unwrap();
    assert!((spent - 0.003).abs() < 1e-12, "{spent}");
}

#[tokio::test]
async fn a_tenant_over_budget_stays_refused_while_its_spend_cannot_be_read_and_no_figure_means_503()
{
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], Some(0.001)).await;
    let month = month_of(common::clock().now());
    tenancy.add("acme", &month, 0.002).await.unwrap();
    let ask = || http_event("POST", COMPLETIONS, Some(&key), &chat(false));

    // Read on every request (no spend cache), the last figure known held for the grace.
    let (app, _) = build_with_tenancy(
        &[("SPEND_CACHE_SECONDS", "0")],
        FakeModel::answering(),
        tenancy.clone(),
    );
    assert_eq!(read(app.handle(ask()).await).0, 429);
    tenancy.set_spend_unreadable(true);
    let (status, _, answer) = read(app.handle(ask()).await);
    assert_eq!(
        status, 429,
        "the outage lets no spent tenant through: {answer}"
    );

    // An instance that never read the figure, or whose grace is over, refuses: 503.
    let (fresh, _) = build_with_tenancy(
        &[
            ("SPEND_CACHE_SECONDS", "0"),
            ("SPEND_READ_GRACE_SECONDS", "0"),
        ],
        FakeModel::answering(),
        tenancy.clone(),
    );
    let response = fresh.handle(ask()).await;
    assert!(response.headers().get("retry-after").is_some());
    let (status, _, answer) = read(response);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "SpendUnavailable");

    tenancy.set_spend_unreadable(false);
    assert_eq!(read(fresh.handle(ask()).await).0, 429);
}

#[tokio::test]
async fn a_bearer_key_on_the_native_api_scopes_the_cache_to_its_tenant() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let body = json!({"prompt": "tenant scoped"});
    let (_, cache, _) = read(
        app.handle(http_event("POST", "/v1/invoke", Some(&key), &body))
            .await,
    );
    assert_eq!(cache.as_deref(), Some("MISS"));
    // The same prompt from an IAM caller of the shared scope is another namespace.
    let (_, cache, _) = read(
        app.handle(http_event("POST", "/v1/invoke", None, &body))
            .await,
    );
    assert_eq!(cache.as_deref(), Some("MISS"));
    let (_, cache, _) = read(
        app.handle(http_event("POST", "/v1/invoke", Some(&key), &body))
            .await,
    );
    assert_eq!(cache.as_deref(), Some("HIT"));
}

#[tokio::test]
async fn a_tenant_that_leaves_mid_stream_is_charged_for_what_the_model_wrote() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let gate = Arc::new(Notify::new());
    let (app, metrics) = build_with_tenancy(
        &[],
        GatedModel {
            gate: gate.clone(),
            model: FakeModel::answering()
                .ending("end_turn", "one two three four five six seven eight nine"),
        },
        tenancy.clone(),
    );
    let body = json!({"prompt": "I will leave early", "stream": true});
    let response = app
        .handle(http_event("POST", "/v1/invoke", Some(&key), &body))
        .await;
    let mut stream = response.into_body();
    stream.frame().await.unwrap().unwrap();
    drop(stream);
    gate.notify_one();
    while metrics.0.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.last().outcome, Outcome::ClientError);
    let spent = tenancy
        .spent("acme", &month_of(common::clock().now()))
        .await
        .unwrap();
    assert!(
        (spent - 0.0015).abs() < 1e-12,
        "the tokens written are charged: {spent}"
    );
    let mut buffered = body.clone();
    buffered["stream"] = json!(false);
    let (_, cache, _) = read(
        app.handle(http_event("POST", "/v1/invoke", Some(&key), &buffered))
            .await,
    );
    assert_eq!(cache.as_deref(), Some("MISS"), "nothing was stored");
}

#[tokio::test]
async fn a_bearer_jwt_on_the_native_api_is_not_taken_for_a_tenant_key() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    let (status, _, body) = read(
        app.handle(http_event(
            "POST",
            "/v1/invoke",
            Some(jwt),
            &json!({"prompt": "hi"}),
        ))
        .await,
    );
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn other_openai_paths_get_openais_not_found() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, vec![], None).await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let (status, _, body) = read(
        app.handle(http_event(
            "GET",
            "/openai/v1/models/auto/extra",
            Some(&key),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["type"], "not_found_error");
}

/// Records the targets it is called with, answering as [`FakeModel`] does.
#[derive(Clone, Default)]
struct TargetRecorder {
    targets: Arc<std::sync::Mutex<Vec<Target>>>,
}

impl ModelInvoker for TargetRecorder {
    async fn converse(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        self.targets.lock().unwrap().push(target.clone());
        FakeModel::answering()
            .converse(target, conversation, timeout)
            .await
    }

    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        self.targets.lock().unwrap().push(target.clone());
        FakeModel::answering()
            .converse_stream(target, conversation, timeout)
            .await
    }
}

#[tokio::test]
async fn a_keys_tiers_and_guardrail_apply_to_its_requests_and_a_tier_it_may_not_use_is_403() {
    use domain::routing::ServiceTier;
    use domain::tenancy::KeyLevers;
    let tenancy = Arc::new(InMemoryTenancy::default());
    let mut issued = issue_key("acme", vec![], None, None, common::clock().now()).unwrap();
    issued.record.levers = KeyLevers {
        service_tiers: Some(vec![ServiceTier::Flex, ServiceTier::Default]),
        default_service_tier: Some(ServiceTier::Flex),
        guardrail_id: Some("gr1abc".into()),
        guardrail_version: Some("2".into()),
    };
    tenancy.create(&issued.record).await.unwrap();
    let model = TargetRecorder::default();
    let (app, _) = build_with_tenancy(
        &[
            ("GUARDRAIL_ID", "deployment"),
            ("GUARDRAIL_VERSION", "DRAFT"),
        ],
        model.clone(),
        tenancy,
    );

    let (status, _, body) = read(
        app.handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&issued.key),
            &chat(false),
        ))
        .await,
    );
    assert_eq!(status, 200, "{body}");
    let target = model.targets.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        target.service_tier,
        Some(ServiceTier::Flex),
        "the key's default"
    );
    let guardrail = target.guardrail.unwrap();
    assert_eq!(
        (guardrail.identifier.as_str(), guardrail.version.as_str()),
        ("gr1abc", "2"),
        "the key's guardrail, not the deployment's"
    );

    let mut priority = chat(false);
    priority["service_tier"] = json!("priority");
    let (status, _, body) = read(
        app.handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&issued.key),
            &priority,
        ))
        .await,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["param"], "service_tier");
    assert!(body["error"]["message"].as_str().unwrap().contains("flex"));
    assert_eq!(
        model.targets.lock().unwrap().len(),
        1,
        "refused before the model"
    );
}
