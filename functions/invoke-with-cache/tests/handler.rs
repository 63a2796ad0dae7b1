//! The handler with real API Gateway events and in-memory ports: no AWS, no stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    build, build_with_clock, clock, event, event_with_authorizer, read, FakeModel, MemoryStore,
    ARN, HAIKU, V1_EVENT, V2_EVENT,
};
use domain::cache::{CacheKey, Lease, StoredRecord};
use domain::error::ModelErrorKind;
use domain::metrics::Outcome;
use domain::ports::Clock;
use serde_json::{json, Value};
use test_support::events::{iam_authorizer as iam, jwt_authorizer as jwt};

#[tokio::test]
async fn http_api_event_misses_then_hits() {
    let model = FakeModel::answering();
    let (app, metrics) = build(&[], MemoryStore::default(), model.clone());
    let body = json!({"prompt": "What does a cache TTL do?"});
    let (status, cache, first) = read(app.handle(event(V2_EVENT, &body)).await);
    assert_eq!((status, cache.as_deref()), (200, Some("MISS")), "{first}");
    assert_eq!(first["cache"], "MISS");
    assert_eq!(first["tier"], "simple");
    assert_eq!(first["route"], "on-demand");
    assert_eq!(first["modelId"], HAIKU);
    assert_eq!(first["usage"]["totalTokens"], 2000);
    // 1000 input tokens at 0.00025 and 1000 output at 0.00125 per 1,000.
    assert!((first["costUsd"].as_f64().unwrap() - 0.0015).abs() < 1e-12);

    let (status, cache, second) = read(app.handle(event(V2_EVENT, &body)).await);
    assert_eq!((status, cache.as_deref()), (200, Some("HIT")));
    assert_eq!(second["text"], first["text"]);
    assert_eq!(second["costUsd"], 0.0);
    assert_eq!(second["savedUsd"], first["costUsd"]);
    assert_eq!(model.calls().len(), 1);

    let recorded = metrics.0.lock().unwrap();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1].input_tokens, 0, "a hit processes no tokens");
}

#[tokio::test]
async fn rest_api_event_is_served_and_callers_get_their_own_namespace() {
    let (app, _) = build(
        &[("CACHE_SCOPE", "caller")],
        MemoryStore::default(),
        FakeModel::answering(),
    );
    let body = json!({"prompt": "shared question"});
    let (status, cache, _) = read(app.handle(event(V1_EVENT, &body)).await);
    assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    // Alice (HTTP API, a role) does not see Bob's (REST API, an IAM user) entry.
    let (_, cache, _) = read(app.handle(event(V2_EVENT, &body)).await);
    assert_eq!(cache.as_deref(), Some("MISS"));
    let (_, cache, _) = read(app.handle(event(V1_EVENT, &body)).await);
    assert_eq!(cache.as_deref(), Some("HIT"));

    // Without an identity, a per-caller cache cannot be used.
    let mut anonymous: Value = serde_json::from_str(V2_EVENT).unwrap();
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, _, body) = read(app.handle(event(&anonymous.to_string(), &body)).await);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "MissingCallerIdentity");
}

#[tokio::test]
async fn namespaces_follow_stable_principals_not_session_names() {
    let (app, _) = build(
        &[("CACHE_SCOPE", "caller")],
        MemoryStore::default(),
        FakeModel::answering(),
    );
    let body = json!({"prompt": "per-caller question"});
    let cache_of = |authorizer: Value| {
        let app = &app;
        let body = &body;
        async move {
            let (status, cache, _) =
                read(app.handle(event_with_authorizer(authorizer, body)).await);
            assert_eq!(status, 200);
            cache.unwrap()
        }
    };
    let role = "arn:aws:sts::123456789012:assumed-role/app-team";
    assert_eq!(cache_of(iam(&format!("{role}/alice"), None)).await, "MISS");
    // Another session of the same role is the same principal, whatever name it picks...
    assert_eq!(
        cache_of(iam(&format!("{role}/any-name"), None)).await,
        "HIT"
    );
    // ...but another role, or the same role name in another account, is not.
    let other = "arn:aws:sts::123456789012:assumed-role/other-team/alice";
    assert_eq!(cache_of(iam(other, None)).await, "MISS");
    let elsewhere = "arn:aws:sts::999999999999:assumed-role/app-team/alice";
    assert_eq!(cache_of(iam(elsewhere, None)).await, "MISS");
    // Identity-pool callers share the pool's role session; their identities keep them apart.
    let pool = "arn:aws:sts::123456789012:assumed-role/Cognito_Auth/CognitoIdentityCredentials";
    assert_eq!(cache_of(iam(pool, Some("us-east-1:aaaa"))).await, "MISS");
    assert_eq!(cache_of(iam(pool, Some("us-east-1:bbbb"))).await, "MISS");
    assert_eq!(cache_of(iam(pool, Some("us-east-1:aaaa"))).await, "HIT");
    // A JWT subject is unique only within its issuer.
    assert_eq!(cache_of(jwt("https://idp-a.example", "42")).await, "MISS");
    assert_eq!(cache_of(jwt("https://idp-b.example", "42")).await, "MISS");
    assert_eq!(cache_of(jwt("https://idp-a.example", "42")).await, "HIT");
}

#[tokio::test]
async fn shared_entries_are_refreshed_or_stretched_only_where_the_deployment_allows() {
    let model = FakeModel::answering();
    let (app, _) = build(&[], MemoryStore::default(), model.clone());
    let refused = [
        (
            json!({"prompt": "q", "cache": {"mode": "refresh"}}),
            "SHARED_CACHE_ALLOW_REFRESH",
        ),
        (
            json!({"prompt": "q", "cache": {"ttlSeconds": 86400}}),
            "SHARED_CACHE_ALLOW_TTL",
        ),
    ];
    for (body, setting) in &refused {
        let (status, _, answer) = read(app.handle(event(V2_EVENT, body)).await);
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"]["code"], "CacheControlNotAllowed");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(setting),
            "{answer}"
        );
    }
    assert!(model.calls().is_empty(), "a refused request costs nothing");
    // A shorter TTL and bypass stay open to everyone.
    for body in [
        json!({"prompt": "q", "cache": {"ttlSeconds": 60}}),
        json!({"prompt": "q", "cache": {"mode": "bypass"}}),
    ] {
        assert_eq!(read(app.handle(event(V2_EVENT, &body)).await).0, 200);
    }
    let (allowed, _) = build(
        &[
            ("SHARED_CACHE_ALLOW_REFRESH", "true"),
            ("SHARED_CACHE_ALLOW_TTL", "true"),
        ],
        MemoryStore::default(),
        FakeModel::answering(),
    );
    let (per_caller, _) = build(
        &[("CACHE_SCOPE", "caller")],
        MemoryStore::default(),
        FakeModel::answering(),
    );
    for app in [&allowed, &per_caller] {
        for (body, _) in &refused {
            assert_eq!(
                read(app.handle(event(V2_EVENT, body)).await).0,
                200,
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn a_broken_cache_still_answers_with_bypass() {
    let store = MemoryStore {
        broken: true,
        ..MemoryStore::default()
    };
    let (app, _) = build(&[], store, FakeModel::answering());
    let (status, cache, body) = read(app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await);
    assert_eq!((status, cache.as_deref()), (200, Some("BYPASS")), "{body}");
}

#[tokio::test]
async fn model_errors_become_json_errors_with_the_gateway_request_id_and_metrics_by_class() {
    use ModelErrorKind::*;
    let cases = [
        (Throttled, 429, "Throttled", true, Outcome::Throttled),
        (
            ModelNotReady,
            503,
            "ModelNotReady",
            true,
            Outcome::ServerError,
        ),
        (
            ServiceUnavailable,
            503,
            "ServiceUnavailable",
            true,
            Outcome::ServerError,
        ),
        (Timeout, 504, "Timeout", false, Outcome::Timeout),
        (
            AccessDenied,
            502,
            "BedrockAccessDenied",
            false,
            Outcome::ServerError,
        ),
        (NotFound, 502, "ModelNotFound", false, Outcome::ServerError),
        (
            ModelFailure,
            502,
            "BedrockError",
            false,
            Outcome::ServerError,
        ),
        (
            Unreachable,
            502,
            "BedrockUnreachable",
            true,
            Outcome::ServerError,
        ),
        (
            Credentials,
            500,
            "BedrockCredentialsError",
            false,
            Outcome::ServerError,
        ),
        (
            Validation,
            400,
            "ModelValidationError",
            false,
            Outcome::ClientError,
        ),
        (
            Unexpected,
            500,
            "InternalError",
            false,
            Outcome::ServerError,
        ),
    ];
    for (kind, status, code, retry_after, outcome) in cases {
        let (app, metrics) = build(&[], MemoryStore::default(), FakeModel::failing(kind));
        let response = app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await;
        assert_eq!(
            response.headers().contains_key("retry-after"),
            retry_after,
            "{code}"
        );
        let (got, _, body) = read(response);
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(body["error"]["requestId"], "Bf3xJgAAoAMEbXw=");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("from the fake") || kind == Validation,
            "{message}"
        );
        let recorded = metrics.last();
        assert_eq!(recorded.outcome, outcome, "{code}");
        assert_eq!(recorded.model_id.as_deref(), Some(HAIKU), "{code}");
    }
    // Refused before any model was chosen: counted all the same.
    let (app, metrics) = build(&[], MemoryStore::default(), FakeModel::answering());
    let (status, _, _) = read(app.handle(event(V2_EVENT, &json!({"nope": 1}))).await);
    assert_eq!(status, 400);
    assert_eq!(metrics.last().outcome, Outcome::ClientError);
    assert_eq!(metrics.last().model_id, None);
}

fn provisioned(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let spec: &'static str = Box::leak(format!("{HAIKU}={ARN}").into_boxed_str());
    let mut vars = vec![("PROVISIONED_THROUGHPUT", spec)];
    vars.extend_from_slice(extra);
    vars
}

#[tokio::test]
async fn an_unusable_provisioned_throughput_spills_over_a_refused_request_does_not() {
    use ModelErrorKind::*;
    for kind in [
        Throttled,
        ModelNotReady,
        ServiceUnavailable,
        Timeout,
        AccessDenied,
        NotFound,
        ModelFailure,
    ] {
        let model = FakeModel::answering().failing_on(ARN, kind);
        let (app, metrics) = build(&provisioned(&[]), MemoryStore::default(), model.clone());
        let (status, _, body) = read(app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await);
        assert_eq!(
            (status, body["route"].as_str()),
            (200, Some("on-demand")),
            "{kind:?}: {body}"
        );
        assert_eq!(body["spilledOver"], true);
        assert_eq!(
            model.calls(),
            vec![ARN.to_owned(), HAIKU.to_owned()],
            "{kind:?}"
        );
        assert!(metrics.last().spilled_over);
    }
    for (kind, status) in [(Validation, 400), (Unreachable, 502), (Credentials, 500)] {
        let model = FakeModel::failing(kind);
        let (app, metrics) = build(&provisioned(&[]), MemoryStore::default(), model.clone());
        let (got, _, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await);
        assert_eq!(got, status, "{kind:?}");
        assert_eq!(
            model.calls(),
            vec![ARN.to_owned()],
            "{kind:?}: no spillover"
        );
        assert!(!metrics.last().spilled_over);
    }
}

#[tokio::test]
async fn the_provisioned_attempt_gets_a_share_of_the_budget_and_spillover_the_rest() {
    let model = FakeModel::answering().failing_on(ARN, ModelErrorKind::Timeout);
    let vars = provisioned(&[
        ("BEDROCK_OPERATION_TIMEOUT_MS", "3000"),
        ("BEDROCK_PROVISIONED_TIMEOUT_MS", "1000"),
    ]);
    let (app, _) = build(&vars, MemoryStore::default(), model.clone());
    let (status, _, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await);
    assert_eq!(status, 200);
    let timeouts = model.timeouts();
    assert_eq!(timeouts[0], Some(Duration::from_millis(1000)));
    let spillover = timeouts[1].unwrap();
    assert!(
        spillover <= Duration::from_millis(3000) && spillover > Duration::from_millis(1000),
        "the on-demand call gets what is left of the budget: {spillover:?}"
    );
}

#[tokio::test]
async fn provisioned_answers_cost_nothing_more_and_report_their_on_demand_equivalent() {
    let (app, metrics) = build(
        &provisioned(&[]),
        MemoryStore::default(),
        FakeModel::answering(),
    );
    let (status, _, body) = read(app.handle(event(V2_EVENT, &json!({"prompt": "pt"}))).await);
    assert_eq!((status, body["route"].as_str()), (200, Some("provisioned")));
    assert_eq!(body["costUsd"], 0.0);
    assert!((body["onDemandEquivalentUsd"].as_f64().unwrap() - 0.0015).abs() < 1e-12);
    let recorded = metrics.last();
    assert_eq!(recorded.cost_usd, 0.0);
    assert!((recorded.on_demand_equivalent_usd - 0.0015).abs() < 1e-12);
    // A hit saves what the tokens cost on-demand.
    let (_, cache, hit) = read(app.handle(event(V2_EVENT, &json!({"prompt": "pt"}))).await);
    assert_eq!(cache.as_deref(), Some("HIT"));
    assert!((hit["savedUsd"].as_f64().unwrap() - 0.0015).abs() < 1e-12);
}

#[tokio::test]
async fn a_custom_model_is_cached_apart_and_falls_back_only_where_configured() {
    const CUSTOM: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/custom";
    let spec: &str = &format!("support-bot={CUSTOM}>{HAIKU},legal-bot={CUSTOM}");
    let store = MemoryStore::default();
    let model = FakeModel::answering();
    let (app, _) = build(&[("CUSTOM_MODELS", spec)], store.clone(), model.clone());
    let ask = |model_id: &str| json!({"prompt": "same words", "modelId": model_id});
    let (_, cache, body) = read(app.handle(event(V2_EVENT, &ask("support-bot"))).await);
    assert_eq!(
        (cache.as_deref(), body["modelId"].as_str()),
        (Some("MISS"), Some("support-bot"))
    );
    assert_eq!(body["route"], "provisioned");
    // The base model does not get the custom model's answer, nor the reverse.
    let (_, cache, _) = read(app.handle(event(V2_EVENT, &ask(HAIKU))).await);
    assert_eq!(cache.as_deref(), Some("MISS"));
    assert_eq!(model.calls(), vec![CUSTOM.to_owned(), HAIKU.to_owned()]);

    // Unusable: support-bot falls back to its base model, legal-bot has no fallback.
    let failing = FakeModel::answering().failing_on(CUSTOM, ModelErrorKind::NotFound);
    let (app, _) = build(
        &[("CUSTOM_MODELS", spec)],
        MemoryStore::default(),
        failing.clone(),
    );
    let (status, _, body) = read(app.handle(event(V2_EVENT, &ask("support-bot"))).await);
    assert_eq!(
        (status, body["modelId"].as_str()),
        (200, Some(HAIKU)),
        "{body}"
    );
    let (status, _, _) = read(app.handle(event(V2_EVENT, &ask("legal-bot"))).await);
    assert_eq!(status, 502);
    assert_eq!(
        failing.calls(),
        vec![CUSTOM.to_owned(), HAIKU.to_owned(), CUSTOM.to_owned()]
    );
    // The fallback's answer is cached as the base model's.
    let (_, cache, _) = read(app.handle(event(V2_EVENT, &ask(HAIKU))).await);
    assert_eq!(cache.as_deref(), Some("HIT"));
}

#[tokio::test]
async fn only_answers_worth_repeating_are_stored() {
    for (stop_reason, text) in [
        ("content_filtered", "partial"),
        (
            "guardrail_intervened",
            "Sorry, the model cannot answer this.",
        ),
        ("max_tokens", "cut"),
        ("end_turn", "   "),
    ] {
        let store = MemoryStore::default();
        let model = FakeModel::answering().ending(stop_reason, text);
        let (app, _) = build(&[], store.clone(), model.clone());
        for _ in 0..2 {
            let (status, cache, _) =
                read(app.handle(event(V2_EVENT, &json!({"prompt": "q"}))).await);
            assert_eq!(
                (status, cache.as_deref()),
                (200, Some("BYPASS")),
                "{stop_reason}"
            );
        }
        assert_eq!(
            model.calls().len(),
            2,
            "{stop_reason}: never served from the cache"
        );
        assert_eq!((store.answers(), store.leases()), (0, 0), "{stop_reason}");
    }
    let model = FakeModel::answering().ending("max_tokens", "cut");
    let (app, _) = build(
        &[("CACHE_MAX_TOKENS_ANSWERS", "true")],
        MemoryStore::default(),
        model,
    );
    read(app.handle(event(V2_EVENT, &json!({"prompt": "q"}))).await);
    let (_, cache, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "q"}))).await);
    assert_eq!(cache.as_deref(), Some("HIT"));
}

#[tokio::test]
async fn sampled_requests_follow_the_setting() {
    let sampled = json!({"prompt": "q", "inferenceConfig": {"temperature": 0.8}});
    let (caching, _) = build(&[], MemoryStore::default(), FakeModel::answering());
    read(caching.handle(event(V2_EVENT, &sampled)).await);
    assert_eq!(
        read(caching.handle(event(V2_EVENT, &sampled)).await)
            .1
            .as_deref(),
        Some("HIT")
    );
    let (bypassing, _) = build(
        &[("CACHE_SAMPLED_REQUESTS", "bypass")],
        MemoryStore::default(),
        FakeModel::answering(),
    );
    for _ in 0..2 {
        let (_, cache, _) = read(bypassing.handle(event(V2_EVENT, &sampled)).await);
        assert_eq!(cache.as_deref(), Some("BYPASS"));
    }
    let greedy = json!({"prompt": "q", "inferenceConfig": {"temperature": 0}});
    read(bypassing.handle(event(V2_EVENT, &greedy)).await);
    assert_eq!(
        read(bypassing.handle(event(V2_EVENT, &greedy)).await)
            .1
            .as_deref(),
        Some("HIT")
    );
}

/// Identical misses at once through four instances sharing one store: one model call.
#[tokio::test(start_paused = true)]
async fn identical_misses_at_once_cost_one_model_call() {
    let store = MemoryStore::default();
    let model = FakeModel::answering().taking(Duration::from_millis(300));
    let clock = clock();
    let apps: Vec<_> = (0..4)
        .map(|_| build_with_clock(&[], store.clone(), model.clone(), clock.clone()).0)
        .collect();
    let body = json!({"prompt": "the same question at the same time"});
    let requests = (0..20).map(|i| apps[i % 4].handle(event(V2_EVENT, &body)));
    let answers: Vec<_> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(read)
        .collect();
    assert_eq!(model.calls().len(), 1);
    assert!(answers
        .iter()
        .all(|(status, _, body)| *status == 200 && body["text"] == answers[0].2["text"]));
    let misses = answers
        .iter()
        .filter(|(_, cache, _)| cache.as_deref() == Some("MISS"))
        .count();
    assert_eq!(misses, 1);
    assert_eq!(
        (store.answers(), store.leases()),
        (1, 0),
        "the lease became the answer"
    );
}

fn lease_on(store: &MemoryStore, body: &Value, until_ms: i64) {
    // The key the function computes for the body under the shared scope.
    let request = invoke_with_cache::request::parse(body.to_string().as_bytes()).unwrap();
    let key = CacheKey::for_request("shared:shared", HAIKU, &request.conversation).unwrap();
    store.items.lock().unwrap().insert(
        key,
        StoredRecord::Lease(Lease {
            owner: "a request that died".into(),
            until_ms,
        }),
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_died_blocks_no_one_past_its_lease_or_the_wait() {
    let noon_ms = clock().now().timestamp_millis();
    let body = json!({"prompt": "asked by a request that died"});

    // Its lease has lapsed: the next request takes the key over at once.
    let store = MemoryStore::default();
    lease_on(&store, &body, noon_ms - 1);
    let model = FakeModel::answering();
    let (app, _) = build(
        &[("CACHE_LEASE_WAIT_MS", "600000")],
        store.clone(),
        model.clone(),
    );
    let (status, cache, _) = read(app.handle(event(V2_EVENT, &body)).await);
    assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    assert_eq!(model.calls().len(), 1);
    assert_eq!((store.answers(), store.leases()), (1, 0));

    // Its lease is still live: waiting ends after CACHE_LEASE_WAIT_MS, then the model answers.
    let store = MemoryStore::default();
    lease_on(&store, &body, noon_ms + 60_000);
    let model = FakeModel::answering();
    let (app, _) = build(
        &[("CACHE_LEASE_WAIT_MS", "500")],
        store.clone(),
        model.clone(),
    );
    let started = tokio::time::Instant::now();
    let (status, cache, _) = read(app.handle(event(V2_EVENT, &body)).await);
    assert_eq!(
        (status, cache.as_deref()),
        (200, Some("MISS")),
        "a lease is never an answer"
    );
    assert_eq!(model.calls().len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it waited for the holder first"
    );
}

#[tokio::test]
async fn a_failed_call_gives_the_key_back() {
    let store = MemoryStore::default();
    let (app, _) = build(
        &[],
        store.clone(),
        FakeModel::failing(ModelErrorKind::ModelFailure),
    );
    let (status, _, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "q"}))).await);
    assert_eq!(status, 502);
    assert_eq!((store.answers(), store.leases()), (0, 0));
    // With leases off, nothing is leased at all.
    let store = MemoryStore::default();
    let model = FakeModel::answering();
    let (app, _) = build(&[("CACHE_LEASE_MS", "0")], store.clone(), model);
    read(app.handle(event(V2_EVENT, &json!({"prompt": "q"}))).await);
    assert_eq!((store.answers(), store.leases()), (1, 0));
}

#[tokio::test]
async fn an_answer_too_large_to_cache_is_answered_and_counted() {
    let store = MemoryStore {
        refuses_as_too_large: true,
        ..MemoryStore::default()
    };
    let (app, metrics) = build(&[], store.clone(), FakeModel::answering());
    for _ in 0..2 {
        let (status, cache, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "big"}))).await);
        assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    }
    let recorded = metrics.0.lock().unwrap();
    assert!(recorded.iter().all(|m| m.too_large_to_cache));
    assert_eq!(store.leases(), 0, "the lease is given back");
}

/// Whatever the body, the answer is a JSON 4xx error: never a panic, a hang or an Err.
#[tokio::test]
async fn no_body_of_any_shape_breaks_the_handler() {
    let (app, _) = build(
        &[("MAX_BODY_BYTES", "65536")],
        MemoryStore::default(),
        FakeModel::answering(),
    );
    let valid = json!({
        "messages": [
            {"role": "user", "content": [{"text": "Compare 分析 and \"quotes\""}]},
            {"role": "assistant", "content": [{"text": "ok"}]},
            {"role": "user", "content": [{"text": "go on"}]}
        ],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
        "cache": {"mode": "refresh", "ttlSeconds": 60},
        "optimizePrompt": true,
        "contextLimitChars": 10,
        "additionalModelRequestFields": {"top_k": 3}
    })
    .to_string();
    let mut bodies: Vec<Vec<u8>> = (0..valid.len())
        .filter(|&i| valid.is_char_boundary(i))
        .map(|i| valid.as_bytes()[..i].to_vec())
        .collect();
    // Arbitrary bytes, including invalid UTF-8, from a fixed-seed xorshift.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in 1..200 {
        let mut body = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(x.to_le_bytes()[0]);
        }
        bodies.push(body);
    }
    bodies.push("[".repeat(100_000).into_bytes());
    bodies.push(format!("{{\"prompt\": \"{}\"}}", "x".repeat(70_000)).into_bytes());
    bodies.push(br#"{"prompt": "a", "inferenceConfig": {"maxTokens": 1e400}}"#.to_vec());
    bodies.push(br#"{"prompt": "\ud800"}"#.to_vec());

    let template: Value = serde_json::from_str(V2_EVENT).unwrap();
    for body in bodies {
        let mut event = template.clone();
        let base64 = lambda_http::aws_lambda_events::encodings::Body::Binary(body.clone());
        event["body"] = serde_json::to_value(&base64).unwrap();
        event["isBase64Encoded"] = Value::Bool(true);
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = app.handle(request).await;
        let status = response.status().as_u16();
        let (_, _, json) = read(response);
        assert!(
            [400, 413].contains(&status) && json["error"]["code"].is_string(),
            "{status} {json} for {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}
