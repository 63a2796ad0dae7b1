//! The handler with real API Gateway events and in-memory ports: no AWS, no stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{build, event, read, FakeModel, MemoryStore, V1_EVENT, V2_EVENT};
use serde_json::{json, Value};
use shared::domain::error::ModelError;

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
    assert_eq!(first["modelId"], "anthropic.claude-3-haiku-20240307-v1:0");
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
    // Alice (HTTP API, IAM) does not see Bob's (REST API, IAM) entry.
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
async fn model_errors_become_json_errors_with_the_gateway_request_id() {
    let cases = [
        (ModelError::Throttled, 429, "Throttled", true),
        (ModelError::ModelNotReady, 503, "ModelNotReady", true),
        (
            ModelError::ServiceUnavailable,
            503,
            "ServiceUnavailable",
            true,
        ),
        (ModelError::Timeout, 504, "Timeout", false),
        (
            ModelError::AccessDenied("role arn:aws:iam::1:role/x".into()),
            502,
            "BedrockAccessDenied",
            false,
        ),
        (
            ModelError::ModelFailure("boom".into()),
            502,
            "BedrockError",
            false,
        ),
        (
            ModelError::Validation("too many tokens".into()),
            400,
            "ModelValidationError",
            false,
        ),
        (
            ModelError::Unexpected("panic in dispatch at src/x.rs:1".into()),
            500,
            "InternalError",
            false,
        ),
    ];
    for (error, status, code, retry_after) in cases {
        let (app, _) = build(&[], MemoryStore::default(), FakeModel::failing(error));
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
            !message.contains("src/") && !message.contains("arn:aws:iam"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn provisioned_throttling_spills_over_to_on_demand() {
    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt1";
    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
    let model = FakeModel::failing(ModelError::Throttled);
    let spec = format!("{HAIKU}={ARN}");
    let (app, _) = build(
        &[("PROVISIONED_THROUGHPUT", spec.as_str())],
        MemoryStore::default(),
        model.clone(),
    );
    // Both routes fail here: the answer is the on-demand failure, after one spill-over.
    let (status, _, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await);
    assert_eq!(status, 429);
    assert_eq!(model.calls(), vec![ARN.to_owned(), HAIKU.to_owned()]);

    // A validation error is not a capacity problem: no spill-over.
    let model = FakeModel::failing(ModelError::Validation("bad".into()));
    let (app, _) = build(
        &[("PROVISIONED_THROUGHPUT", spec.as_str())],
        MemoryStore::default(),
        model.clone(),
    );
    let (status, _, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "hi"}))).await);
    assert_eq!(status, 400);
    assert_eq!(model.calls(), vec![ARN.to_owned()]);
}

#[tokio::test]
async fn an_answer_too_large_to_cache_is_answered_and_counted() {
    let store = MemoryStore {
        refuses_as_too_large: true,
        ..MemoryStore::default()
    };
    let (app, metrics) = build(&[], store, FakeModel::answering());
    for _ in 0..2 {
        let (status, cache, _) = read(app.handle(event(V2_EVENT, &json!({"prompt": "big"}))).await);
        assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    }
    let recorded = metrics.0.lock().unwrap();
    assert!(recorded.iter().all(|m| m.too_large_to_cache));
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
