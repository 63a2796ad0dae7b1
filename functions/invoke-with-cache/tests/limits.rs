//! Tenants' limits through the handler, over the in-memory limiter: concurrency (streams
//! included), requests and tokens per minute, OpenAI's `x-ratelimit-*` headers, the fail mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use common::{build_with_limiter, clock, http_event, read, FakeModel, GatedModel};
use domain::limits::{window_start, TenantLimits};
use domain::ports::{Clock, TenantKeyStore};
use domain::tenancy::issue_key;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::memory_limits::InMemoryLimiter;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use tokio::sync::Notify;

const COMPLETIONS: &str = "/openai/v1/chat/completions";

async fn tenant(tenancy: &InMemoryTenancy, name: &str, limits: TenantLimits) -> String {
    let mut issued = issue_key(name, vec![], None, None, clock().now()).unwrap();
    issued.record.set_limits(limits);
    tenancy.create(&issued.record).await.unwrap();
    issued.key
}

fn chat(question: &str, stream: bool) -> Value {
    json!({
        "model": "auto",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 10,
        "stream": stream,
    })
}

fn header(
    response: &http::Response<invoke_with_cache::ResponseBody>,
    name: &str,
) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_tenant_at_its_concurrency_limit_gets_429_while_another_tenant_is_served() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let one = TenantLimits {
        concurrent_requests: Some(1),
        ..TenantLimits::default()
    };
    let a = tenant(&tenancy, "team-a", one).await;
    let b = tenant(&tenancy, "team-b", one).await;
    let limiter = Arc::new(InMemoryLimiter::default());
    let gate = Arc::new(Notify::new());
    let (app, _) = build_with_limiter(
        &[],
        GatedModel {
            gate: gate.clone(),
            model: FakeModel::answering(),
        },
        tenancy,
        limiter.clone(),
        clock(),
    );

    // A's stream is open: it holds A's one slot.
    let streaming = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("long story", true),
        ))
        .await;
    assert_eq!(streaming.status(), 200);
    let mut body = streaming.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(limiter.leases_held("team-a"), 1);

    let refused = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("another", false),
        ))
        .await;
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    let (status, _, answer) = read(refused);
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "ConcurrentRequestsExceeded");
    assert_eq!(answer["error"]["type"], "rate_limit_error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1 concurrent requests"),
        "{answer}"
    );

    // B is served meanwhile, and its slot is free again once its answer is out.
    let served = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&b),
            &chat("another", false),
        ))
        .await;
    assert_eq!(read(served).0, 200);
    assert_eq!(limiter.leases_held("team-b"), 0);

    // The stream ends: its slot is free by the time its body ends.
    gate.notify_one();
    while body.frame().await.is_some() {}
    assert_eq!(limiter.leases_held("team-a"), 0);
    let again = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("another", false),
        ))
        .await;
    assert_eq!(read(again).0, 200);
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_frees_its_slot_and_its_tokens_count_before_the_body_ends() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let limits = TenantLimits {
        tokens_per_minute: Some(100_000),
        concurrent_requests: Some(1),
        ..TenantLimits::default()
    };
    let a = tenant(&tenancy, "team-a", limits).await;
    let limiter = Arc::new(InMemoryLimiter::default());
    let gate = Arc::new(Notify::new());
    let clock = clock();
    let (app, _) = build_with_limiter(
        &[],
        GatedModel {
            gate: gate.clone(),
            model: FakeModel::answering(),
        },
        tenancy,
        limiter.clone(),
        clock.clone(),
    );
    let response = app
        .handle(http_event(
            "POST",
            "/v1/invoke",
            Some(&a),
            &json!({"prompt": "bye", "stream": true, "inferenceConfig": {"maxTokens": 10}}),
        ))
        .await;
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    let window = window_start(clock.now().timestamp());
    let (_, reserved) = limiter.window("team-a", window);
    assert!(
        reserved > 10,
        "the prompt's bytes and the output cap: {reserved}"
    );
    // The client leaves; the model goes on to its end.
    gate.notify_one();
    while body.frame().await.is_some() {}
    assert_eq!(limiter.leases_held("team-a"), 0);
    assert_eq!(
        limiter.window("team-a", window),
        (1, 2000),
        "the reservation became the tokens the model reported"
    );
}

#[tokio::test]
async fn requests_per_minute_run_out_with_openai_headers_and_renew_with_the_minute() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let limits = TenantLimits {
        requests_per_minute: Some(2),
        ..TenantLimits::default()
    };
    let a = tenant(&tenancy, "team-a", limits).await;
    let b = tenant(&tenancy, "team-b", limits).await;
    let clock = clock();
    let (app, _) = build_with_limiter(
        &[],
        FakeModel::answering(),
        tenancy,
        Arc::default(),
        clock.clone(),
    );
    for (i, remaining) in ["1", "0"].into_iter().enumerate() {
        let response = app
            .handle(http_event(
                "POST",
                COMPLETIONS,
                Some(&a),
                &chat(&format!("q{i}"), false),
            ))
            .await;
        assert_eq!(
            header(&response, "x-ratelimit-limit-requests").as_deref(),
            Some("2")
        );
        assert_eq!(
            header(&response, "x-ratelimit-remaining-requests").as_deref(),
            Some(remaining)
        );
        assert_eq!(
            header(&response, "x-ratelimit-reset-requests").as_deref(),
            Some("1m0s")
        );
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), None);
        assert_eq!(response.status(), 200);
    }
    clock.advance(TimeDelta::seconds(48));
    let refused = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("q3", false),
        ))
        .await;
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("12"));
    assert_eq!(
        header(&refused, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&refused, "x-ratelimit-reset-requests").as_deref(),
        Some("12s")
    );
    let (status, _, answer) = read(refused);
    assert_eq!(status, 429);
    assert_eq!(answer["error"]["code"], "RequestsPerMinuteExceeded");

    // The native API refuses in its own shape, and another tenant counts apart.
    let native = app
        .handle(http_event(
            "POST",
            "/v1/invoke",
            Some(&a),
            &json!({"prompt": "q4"}),
        ))
        .await;
    assert_eq!(header(&native, "x-ratelimit-limit-requests"), None);
    let (status, _, answer) = read(native);
    assert_eq!(status, 429);
    assert_eq!(answer["error"]["code"], "RequestsPerMinuteExceeded");
    assert!(answer["error"]["requestId"].is_string(), "{answer}");
    let other = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&b),
            &chat("q5", false),
        ))
        .await;
    assert_eq!(read(other).0, 200);

    clock.advance(TimeDelta::seconds(12));
    let renewed = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("q6", false),
        ))
        .await;
    assert_eq!(read(renewed).0, 200);
}

#[tokio::test]
async fn tokens_per_minute_count_what_answers_used_and_refuse_past_the_limit() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    // Each answer uses 2,000 tokens (the fake's usage); a request reserves its bytes + 10.
    let limits = TenantLimits {
        tokens_per_minute: Some(4100),
        ..TenantLimits::default()
    };
    let a = tenant(&tenancy, "team-a", limits).await;
    let (app, _) = build_with_limiter(
        &[],
        FakeModel::answering(),
        tenancy,
        Arc::default(),
        clock(),
    );
    let first = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("q1", false),
        ))
        .await;
    assert_eq!(
        header(&first, "x-ratelimit-limit-tokens").as_deref(),
        Some("4100")
    );
    let remaining: u64 = header(&first, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining < 4100 && remaining > 3900, "{remaining}");
    assert_eq!(read(first).0, 200);
    assert_eq!(
        read(
            app.handle(http_event(
                "POST",
                COMPLETIONS,
                Some(&a),
                &chat("q2", false)
            ))
            .await
        )
        .0,
        200
    );
    // 4,000 used: no room for another reservation.
    let refused = app
        .handle(http_event(
            "POST",
            COMPLETIONS,
            Some(&a),
            &chat("q3", false),
        ))
        .await;
    assert_eq!(
        header(&refused, "x-ratelimit-remaining-tokens").as_deref(),
        Some("0")
    );
    assert!(header(&refused, "retry-after").is_some());
    let (status, _, answer) = read(refused);
    assert_eq!(status, 429);
    assert_eq!(answer["error"]["code"], "TokensPerMinuteExceeded");

    // A request that could never fit says what to change.
    let mut huge = chat("q4", false);
    huge["max_tokens"] = json!(5000);
    let (status, _, answer) = read(
        app.handle(http_event("POST", COMPLETIONS, Some(&a), &huge))
            .await,
    );
    assert_eq!(status, 429);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_unreachable_limiter_admits_for_the_fail_open_time_then_refuses_with_503() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let limits = TenantLimits {
        requests_per_minute: Some(100),
        concurrent_requests: Some(5),
        ..TenantLimits::default()
    };
    let a = tenant(&tenancy, "team-a", limits).await;
    let unlimited = tenant(&tenancy, "team-free", TenantLimits::default()).await;
    let limiter = Arc::new(InMemoryLimiter::default());
    limiter.set_unavailable(true);
    let (open, _) = build_with_limiter(
        &[],
        FakeModel::answering(),
        tenancy.clone(),
        limiter.clone(),
        clock(),
    );
    let ask = |key: &str| http_event("POST", COMPLETIONS, Some(key), &chat("q", false));
    assert_eq!(read(open.handle(ask(&a)).await).0, 200);

    let (closed, _) = build_with_limiter(
        &[("LIMITER_FAIL_OPEN_SECONDS", "0")],
        FakeModel::answering(),
        tenancy,
        limiter.clone(),
        clock(),
    );
    let refused = closed.handle(ask(&a)).await;
    assert!(header(&refused, "retry-after").is_some());
    let (status, _, answer) = read(refused);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "LimiterUnavailable");
    // A tenant without limits never asks the limiter.
    assert_eq!(read(closed.handle(ask(&unlimited)).await).0, 200);
    limiter.set_unavailable(false);
    assert_eq!(read(closed.handle(ask(&a)).await).0, 200);
}
