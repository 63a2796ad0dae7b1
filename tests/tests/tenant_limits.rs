//! Tenants' limits and budgets through invoke-with-cache against the local stack: the limiter's
//! and the ledger's items in moto's spend table, the answers from the emulator's Bedrock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::limits::TenantLimits;
use std::sync::Arc;

use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::issue_key;
use http_body_util::BodyExt;
use integration_tests::invoke::{unique, Harness, HAIKU};
use integration_tests::{sdk_config, stack_var, Emulator};
use serde_json::{json, Value};
use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};

async fn keys() -> DynamoDbTenantKeys {
    DynamoDbTenantKeys::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        stack_var("TENANT_KEYS_TABLE_NAME"),
    )
}

/// A key of a tenant no other test uses.
async fn new_key(label: &str, budget: Option<f64>, limits: TenantLimits) -> String {
    let tenant = format!(
        "it-{label}-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let mut issued = issue_key(&tenant, vec![], budget, None, chrono::Utc::now()).unwrap();
    issued.record.set_limits(limits);
    keys().await.create(&issued.record).await.unwrap();
    issued.key
}

async fn harness(extra: &[(&str, &str)]) -> Harness {
    let keys_table = stack_var("TENANT_KEYS_TABLE_NAME");
    let spend_table = stack_var("SPEND_TABLE_NAME");
    let mut vars = vec![
        ("TENANT_KEYS_TABLE_NAME", keys_table.as_str()),
        ("SPEND_TABLE_NAME", spend_table.as_str()),
    ];
    vars.extend_from_slice(extra);
    Harness::new(&vars).await
}

async fn status_and_body(
    response: lambda_http::http::Response<invoke_with_cache::ResponseBody>,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_tenant_holding_its_one_slot_with_an_open_stream_gets_429_while_another_is_served() {
    let emulator = Emulator::reset().await;
    // About 4 s of answer: the stream is open while the other requests come and go.
    emulator
        .configure(json!({"models": {HAIKU: {"msPerToken": 30}}}))
        .await;
    let one = TenantLimits {
        concurrent_requests: Some(1),
        ..TenantLimits::default()
    };
    let a = new_key("conc-a", None, one).await;
    let b = new_key("conc-b", None, one).await;
    let harness = harness(&[]).await;

    let streaming = harness
        .request(
            "POST",
            "/v1/invoke",
            Some(&a),
            &json!({"prompt": unique("a long story"), "inferenceConfig": {"maxTokens": 150}, "stream": true}),
        )
        .await;
    assert_eq!(streaming.status(), 200);
    let mut body = streaming.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"event: start"));

    let quick = || json!({"prompt": unique("quick"), "inferenceConfig": {"maxTokens": 5}});
    let refused = harness
        .request("POST", "/v1/invoke", Some(&a), &quick())
        .await;
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("1".to_owned())
    );
    let (status, answer) = status_and_body(refused).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "ConcurrentRequestsExceeded");

    let (status, answer) = status_and_body(
        harness
            .request("POST", "/v1/invoke", Some(&b), &quick())
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // The stream read to its end gives the slot back.
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
    emulator.configure(json!({"models": {HAIKU: null}})).await;
    let (status, answer) = status_and_body(
        harness
            .request("POST", "/v1/invoke", Some(&a), &quick())
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn requests_per_minute_are_counted_across_instances() {
    Emulator::reset().await;
    let limits = TenantLimits {
        requests_per_minute: Some(2),
        ..TenantLimits::default()
    };
    let a = new_key("rpm", None, limits).await;
    // Two instances of the function, one table of counts.
    let first = harness(&[]).await;
    let second = harness(&[]).await;
    let ask = || json!({"model": "auto", "messages": [{"role": "user", "content": unique("hi")}], "max_tokens": 5});
    let path = "/openai/v1/chat/completions";
    let response = first.request("POST", path, Some(&a), &ask()).await;
    assert_eq!(
        response
            .headers()
            .get("x-ratelimit-remaining-requests")
            .unwrap(),
        "1"
    );
    assert_eq!(status_and_body(response).await.0, 200);
    assert_eq!(
        status_and_body(second.request("POST", path, Some(&a), &ask()).await)
            .await
            .0,
        200
    );
    let refused = first.request("POST", path, Some(&a), &ask()).await;
    assert_eq!(
        refused
            .headers()
            .get("x-ratelimit-remaining-requests")
            .unwrap(),
        "0"
    );
    let (status, answer) = status_and_body(refused).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "RequestsPerMinuteExceeded");
    assert_eq!(answer["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn concurrent_requests_against_a_nearly_spent_budget_end_within_the_bound_on_dynamodb() {
    const N: usize = 10;
    const BUDGET: f64 = 0.01;
    let emulator = Emulator::reset().await;
    // Answers take a while, so the requests are in flight together.
    emulator
        .configure(json!({"models": {HAIKU: {"msPerToken": 5}}}))
        .await;
    let key = new_key("budget", Some(BUDGET), TenantLimits::default()).await;
    let tenant = key_tenant(&key).await;
    let harness = Arc::new(harness(&[]).await);
    let month = domain::tenancy::month_of(integration_tests::invoke::noon());
    let ledger = DynamoDbSpendLedger::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        stack_var("SPEND_TABLE_NAME"),
    );
    // $0.0003 left: room for about three reservations of 50 output tokens (~$0.00009 each).
    ledger.add(&tenant, &month, BUDGET - 0.0003).await.unwrap();

    let requests: Vec<_> = (0..N)
        .map(|i| {
            let harness = Arc::clone(&harness);
            let key = key.clone();
            tokio::spawn(async move {
                let body = json!({"prompt": unique(&format!("budget {i}")), "inferenceConfig": {"maxTokens": 50}});
                status_and_body(harness.request("POST", "/v1/invoke", Some(&key), &body).await)
                    .await
            })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for request in requests {
        let (status, answer) = request.await.unwrap();
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(answer["error"]["code"], "BudgetExceeded", "{answer}");
                refused += 1;
            }
            other => panic!("{other}: {answer}"),
        }
    }
    emulator.configure(json!({"models": {HAIKU: null}})).await;
    let spent = ledger.spent(&tenant, &month).await.unwrap();
    println!("served {served}, refused {refused}, spent {spent} of {BUDGET}");
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    // The documented bound: every request gives maxTokens, so no more than the budget.
    assert!(spent <= BUDGET + 1e-9, "spent {spent} of {BUDGET}");
}

async fn key_tenant(key: &str) -> String {
    let key_id = domain::tenancy::key_id_of(key).unwrap();
    keys().await.get(key_id).await.unwrap().unwrap().tenant
}
