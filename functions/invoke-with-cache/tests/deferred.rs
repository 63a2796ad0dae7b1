//! `POST /v1/deferred` and `GET /v1/deferred/{id}` through the handler, with real API Gateway
//! events and in-memory ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{build, build_with_tenancy, http_event, read, FakeModel, MemoryStore, HAIKU};
use domain::deferred::{DeferredStatus, Placement};
use domain::ports::{Clock, DeferredStore, TenantKeyStore};
use domain::tenancy::{issue_key, month_of};
use serde_json::{json, Value};
use shared::adapters::memory_tenancy::InMemoryTenancy;
use test_support::events::{iam_authorizer, ApiEvent};

const SONNET: &str = "anthropic.claude-3-sonnet-20240229-v1:0";

fn deferred(body: Value) -> lambda_http::Request {
    http_event("POST", "/v1/deferred", None, &body)
}

#[tokio::test]
async fn a_deferred_request_is_accepted_at_once_and_read_back_by_its_owner_only() {
    let model = FakeModel::answering();
    let (app, _) = build(&[], MemoryStore::default(), model.clone());
    let (status, _, accepted) = read(
        app.handle(deferred(
            json!({"prompt": "Summarise the report", "within": "PT24H"}),
        ))
        .await,
    );
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["modelId"], HAIKU);
    assert_eq!(accepted["deadline"], "2026-11-24T12:00:00+00:00");
    assert!(
        model.calls().is_empty(),
        "nothing is asked of the model now"
    );
    let id = accepted["id"].as_str().unwrap();

    let (status, _, read_back) = read(
        app.handle(http_event(
            "GET",
            &format!("/v1/deferred/{id}"),
            None,
            &json!(null),
        ))
        .await,
    );
    assert_eq!(status, 200);
    assert_eq!(read_back["status"], "queued");
    assert_eq!(read_back["answer"], Value::Null);

    // Another principal: as if there were no such request.
    let other = ApiEvent::http("GET", &format!("/v1/deferred/{id}"))
        .authorizer(iam_authorizer(
            "arn:aws:iam::123456789012:user/mallory",
            None,
        ))
        .request();
    let (status, _, refused) = read(app.handle(other).await);
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["error"]["code"], "NotFound");
}

#[tokio::test]
async fn the_same_client_token_is_the_same_request_and_another_body_with_it_a_conflict() {
    let (app, _) = build(&[], MemoryStore::default(), FakeModel::answering());
    let body = json!({"prompt": "Classify this", "within": "PT1H", "clientToken": "job-42"});
    let (_, _, first) = read(app.handle(deferred(body.clone())).await);
    let (status, _, again) = read(app.handle(deferred(body)).await);
    assert_eq!(status, 202);
    assert_eq!(first["id"], again["id"]);
    let (status, _, conflict) = read(
        app.handle(deferred(
            json!({"prompt": "Something else", "within": "PT1H", "clientToken": "job-42"}),
        ))
        .await,
    );
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "IdempotencyConflict");
}

#[tokio::test]
async fn an_answer_already_cached_answers_at_once_for_nothing() {
    let model = FakeModel::answering();
    let (app, _) = build(&[], MemoryStore::default(), model.clone());
    let invoke = json!({"prompt": "What is a TTL?"});
    let (status, _, _) = read(
        app.handle(http_event("POST", "/v1/invoke", None, &invoke))
            .await,
    );
    assert_eq!(status, 200);
    let (status, _, accepted) = read(
        app.handle(deferred(
            json!({"prompt": "What is a TTL?", "within": "PT24H"}),
        ))
        .await,
    );
    assert_eq!(status, 202);
    assert_eq!(accepted["status"], "answered");
    assert_eq!(accepted["placement"], "cache");
    let id = accepted["id"].as_str().unwrap();
    let (_, _, answered) = read(
        app.handle(http_event(
            "GET",
            &format!("/v1/deferred/{id}"),
            None,
            &json!(null),
        ))
        .await,
    );
    assert_eq!(answered["answer"]["text"], "secret answer text");
    assert_eq!(answered["answer"]["cache"], "HIT");
    assert_eq!(answered["costUsd"], 0.0);
    assert!(answered["savedUsd"].as_f64().unwrap() > 0.0);
    assert_eq!(
        model.calls().len(),
        1,
        "only the first invoke asked the model"
    );
}

#[tokio::test]
async fn bad_deferred_requests_are_refused_with_what_to_do() {
    let (app, _) = build(&[], MemoryStore::default(), FakeModel::answering());
    for (body, field) in [
        (json!({"prompt": "x"}), "deadline"),
        (json!({"prompt": "x", "within": "tomorrow"}), "deadline"),
        (json!({"prompt": "x", "within": "PT1M"}), "deadline"),
        (json!({"prompt": "x", "within": "P30D"}), "deadline"),
        (
            json!({"prompt": "x", "within": "PT1H", "deadline": "2026-11-24T12:00:00Z"}),
            "deadline",
        ),
        (
            json!({"prompt": "x", "within": "PT1H", "stream": true}),
            "stream",
        ),
        (
            json!({"prompt": "x", "within": "PT1H", "serviceTier": {"type": "flex"}}),
            "serviceTier",
        ),
        (
            json!({"prompt": "x", "within": "PT1H", "clientToken": "a b"}),
            "clientToken",
        ),
        (json!({"within": "PT1H"}), "messages"),
    ] {
        let (status, _, refused) = read(app.handle(deferred(body.clone())).await);
        assert_eq!(status, 400, "{body} → {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body} → {message}");
    }
    let (status, _, _) = read(
        app.handle(http_event(
            "GET",
            "/v1/deferred/not-an-id",
            None,
            &json!(null),
        ))
        .await,
    );
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_tenant_key_defers_only_its_models_and_reserves_its_budget_until_the_deadline() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let issued = issue_key(
        "acme",
        vec![HAIKU.into()],
        Some(10.0),
        None,
        common::clock().now(),
    )
    .unwrap();
    tenancy.create(&issued.record).await.unwrap();
    let (app, _) = build_with_tenancy(
        &[("ALLOWED_MODELS", &format!("{HAIKU},{SONNET}"))],
        FakeModel::answering(),
        tenancy.clone(),
    );
    let keyed = |body: Value| http_event("POST", "/v1/deferred", Some(&issued.key), &body);
    let (status, _, refused) = read(
        app.handle(keyed(
            json!({"prompt": "x", "modelId": SONNET, "within": "PT2H"}),
        ))
        .await,
    );
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "ModelNotAllowed");

    let (status, _, accepted) = read(
        app.handle(keyed(
            json!({"prompt": "x", "modelId": HAIKU, "within": "PT2H"}),
        ))
        .await,
    );
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let month = month_of(common::clock().now());
    let held = tenancy.reservations("acme", &month);
    assert_eq!(
        held.len(),
        1,
        "reserved at acceptance, kept after the response"
    );
    assert_eq!(held[0].id, id);
    assert_eq!(
        held[0].expires_at,
        common::clock().now().timestamp() + 2 * 3600 + 24 * 3600
    );
    // The key's owner reads it with the key; IAM callers do not see it.
    let (status, _, mine) = read(
        app.handle(http_event(
            "GET",
            &format!("/v1/deferred/{id}"),
            Some(&issued.key),
            &json!(null),
        ))
        .await,
    );
    assert_eq!((status, mine["status"].as_str()), (200, Some("queued")));
    let (status, _, _) = read(
        app.handle(http_event(
            "GET",
            &format!("/v1/deferred/{id}"),
            None,
            &json!(null),
        ))
        .await,
    );
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_answered_request_reads_as_an_invoke_answer_with_its_placement_and_savings() {
    let (app, _) = build(&[], MemoryStore::default(), FakeModel::answering());
    let (_, _, accepted) = read(
        app.handle(deferred(json!({"prompt": "Summarise", "within": "PT24H"})))
            .await,
    );
    let id = accepted["id"].as_str().unwrap();
    // What the schedule writes once a batch answered it.
    let store = app.deferred_store().unwrap();
    let mut request = store.get(id).await.unwrap().unwrap();
    request.status = DeferredStatus::Answered;
    request.placement = Some(Placement::Batch);
    request.answer = Some(domain::conversation::ModelAnswer {
        message: domain::conversation::Message::assistant_text("the summary"),
        stop_reason: "end_turn".into(),
        usage: domain::conversation::Usage::new(1000, 100),
        service_tier: None,
        invoked_model: None,
        latency: None,
    });
    request.on_demand_usd = 0.000375;
    request.cost_usd = 0.0001875;
    request.answered_at = Some(request.accepted_at + 3600);
    request.version += 1;
    assert!(store.update(&request).await.unwrap());

    let (status, _, answered) = read(
        app.handle(http_event(
            "GET",
            &format!("/v1/deferred/{id}"),
            None,
            &json!(null),
        ))
        .await,
    );
    assert_eq!(status, 200);
    assert_eq!(answered["status"], "answered");
    assert_eq!(answered["placement"], "batch");
    assert_eq!(answered["answer"]["text"], "the summary");
    assert_eq!(answered["answer"]["usage"]["inputTokens"], 1000);
    assert_eq!(answered["answer"]["costUsd"], 0.0001875);
    assert_eq!(answered["savedUsd"], 0.0001875);
    assert_eq!(answered["answeredAt"], "2026-11-23T13:00:00+00:00");
}
