//! Budgets that hold: each request reserves its maximum cost with one conditional write and
//! settles what it cost when it ends, so concurrent requests against a nearly spent budget end
//! within the documented bound (here 0: every request gives `maxTokens`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    build_with_tenancy, clock, event_names, http_event, read, read_stream, FakeModel, HAIKU,
};
use domain::conversation::{ContentBlock, Conversation, Message, ModelAnswer, Role, Usage};
use domain::error::ModelError;
use domain::ports::{Clock, ModelInvoker, ModelStream, SpendLedger, TenantKeyStore};
use domain::pricing::PriceTable;
use domain::routing::Target;
use domain::stream::replay;
use domain::tenancy::{issue_key, month_of};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::json;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use tokio::sync::{Notify, Semaphore};

/// A model that answers `maxTokens` output tokens for 10 input tokens (never more than a
/// request's estimate), each call waiting at a gate the test opens.
#[derive(Clone)]
struct Metered {
    entered: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    stream_gate: Arc<Notify>,
}

impl Default for Metered {
    /// The gate of buffered calls open.
    fn default() -> Self {
        Self {
            entered: Arc::default(),
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            stream_gate: Arc::default(),
        }
    }
}

impl Metered {
    fn answer(conversation: &Conversation) -> ModelAnswer {
        let output = conversation
            .inference_config
            .max_tokens
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(50);
        ModelAnswer {
            latency: None,
            invoked_model: None,
            service_tier: None,
            message: Message {
                role: Role::Assistant,
                content: vec![ContentBlock::text("one two three")],
            },
            stop_reason: "max_tokens".into(),
            usage: Usage::new(10, output),
        }
    }
}

impl ModelInvoker for Metered {
    async fn converse(
        &self,
        _target: &Target,
        conversation: &Conversation,
        _timeout: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.expect("gate open");
        Ok(Self::answer(conversation))
    }

    async fn converse_stream(
        &self,
        _target: &Target,
        conversation: &Conversation,
        _timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let mut events = replay(&Self::answer(conversation));
        let rest = events.split_off(2);
        let gate = self.stream_gate.clone();
        let later = futures_util::stream::once(async move { gate.notified().await })
            .flat_map(move |()| futures_util::stream::iter(rest.clone().into_iter().map(Ok)));
        Ok(Box::pin(
            futures_util::stream::iter(events.into_iter().map(Ok)).chain(later),
        ))
    }

    /// Bedrock's count of the input: the 10 tokens it answers for.
    async fn count_tokens(
        &self,
        _target: &Target,
        _conversation: &Conversation,
    ) -> Result<u64, ModelError> {
        Ok(10)
    }
}

async fn tenant(tenancy: &InMemoryTenancy, budget: f64) -> String {
    let issued = issue_key("acme", vec![], Some(budget), None, clock().now()).unwrap();
    tenancy.create(&issued.record).await.unwrap();
    issued.key
}

fn month() -> String {
    month_of(clock().now())
}

#[tokio::test]
async fn concurrent_requests_against_a_nearly_spent_budget_end_within_the_bound() {
    const N: usize = 20;
    const BUDGET: f64 = 0.01;
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, BUDGET).await;
    // $0.001 left; each answer costs 10 × $0.00025/1k + 100 × $0.00125/1k = $0.0001275, so
    // without reservations all 20 would be served (20 × 0.0001275 = $0.00255 more).
    tenancy.add("acme", &month(), BUDGET - 0.001).await.unwrap();
    let model = Metered {
        gate: Arc::new(Semaphore::new(0)),
        ..Metered::default()
    };
    let (app, _) = build_with_tenancy(&[], model.clone(), tenancy.clone());

    let finished = Arc::new(AtomicUsize::new(0));
    let mut requests = Vec::new();
    for i in 0..N {
        let app = Arc::clone(&app);
        let finished = Arc::clone(&finished);
        let event = http_event(
            "POST",
            "/v1/invoke",
            Some(&key),
            &json!({"prompt": format!("question {i}"), "inferenceConfig": {"maxTokens": 100}}),
        );
        requests.push(tokio::spawn(async move {
            let response = app.handle(event).await;
            finished.fetch_add(1, Ordering::SeqCst);
            read(response).0
        }));
    }
    // Every request is either at the model (admitted, waiting at the gate) or answered
    // (refused): all were admitted or refused against the same spend.
    while model.entered.load(Ordering::SeqCst) + finished.load(Ordering::SeqCst) < N {
        tokio::task::yield_now().await;
    }
    model.gate.add_permits(N);
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(served + refused, N, "{statuses:?}");
    assert!(served > 0 && refused > 0, "{statuses:?}");

    let spent = tenancy.spent("acme", &month()).await.unwrap();
    // The documented bound: budget + what answers without maxTokens wrote beyond
    // RESERVE_MAX_TOKENS; every request here gives maxTokens, so the bound is the budget.
    let bound = BUDGET;
    assert!(
        spent <= bound + 1e-12,
        "spent {spent} > {bound} with {served} served"
    );
    let per_answer = PriceTable::default()
        .cost(HAIKU, &Usage::new(10, 100))
        .unwrap();
    assert!((spent - (BUDGET - 0.001 + served as f64 * per_answer)).abs() < 1e-9);
    assert!(
        tenancy.reservations("acme", &month()).is_empty(),
        "every reservation settled"
    );
}

#[tokio::test]
async fn a_stream_settles_its_reservation_before_its_body_ends_and_a_client_gone_is_charged() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, 1.0).await;
    let model = Metered::default();
    let (app, _) = build_with_tenancy(&[], model.clone(), tenancy.clone());
    let body = json!({"prompt": "tell me", "stream": true, "inferenceConfig": {"maxTokens": 40}});
    let cost = PriceTable::default()
        .cost(HAIKU, &Usage::new(10, 40))
        .unwrap();

    // Read to its end: by then the reservation is settled to what the answer cost.
    let response = app
        .handle(http_event("POST", "/v1/invoke", Some(&key), &body))
        .await;
    let mut stream = response.into_body();
    stream.frame().await.unwrap().unwrap();
    assert_eq!(tenancy.reservations("acme", &month()).len(), 1);
    model.stream_gate.notify_one();
    while stream.frame().await.is_some() {}
    assert!(tenancy.reservations("acme", &month()).is_empty());
    let spent = tenancy.spent("acme", &month()).await.unwrap();
    assert!((spent - cost).abs() < 1e-12, "{spent}");

    // The client leaves mid-stream: the answer is read to its end and charged by the stream's
    // own task, which ends the body only after it.
    let mut other = body.clone();
    other["prompt"] = json!("tell me again");
    let response = app
        .handle(http_event("POST", "/v1/invoke", Some(&key), &other))
        .await;
    let mut stream = response.into_body();
    stream.frame().await.unwrap().unwrap();
    drop(stream);
    model.stream_gate.notify_one();
    let mut turns = 0;
    while !tenancy.reservations("acme", &month()).is_empty() {
        turns += 1;
        assert!(turns < 10_000, "the stream's task never settled");
        tokio::task::yield_now().await;
    }
    let spent = tenancy.spent("acme", &month()).await.unwrap();
    assert!((spent - 2.0 * cost).abs() < 1e-12, "{spent}");
}

/// tokio's clock paused: the runtime moves it to the next timer whenever every task waits.
#[tokio::test(start_paused = true)]
async fn a_stream_that_outlasts_its_limit_ends_with_an_error_event_and_its_tokens_charged() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, 1.0).await;
    // The stream's gate never opens: the model never stops on its own, and its idle timeout
    // (BEDROCK_READ_TIMEOUT_MS, 60 s) is later than the stream's limit (60 - 5 s).
    let (app, _) = build_with_tenancy(
        &[
            ("STREAM_MAX_SECONDS", "60"),
            ("STREAM_END_MARGIN_SECONDS", "5"),
        ],
        Metered::default(),
        tenancy.clone(),
    );
    let body =
        json!({"prompt": "never ending", "stream": true, "inferenceConfig": {"maxTokens": 40}});
    let (status, _, events) = read_stream(
        app.handle(http_event("POST", "/v1/invoke", Some(&key), &body))
            .await,
    )
    .await;
    assert_eq!(status, 200, "the stream had begun");
    assert_eq!(event_names(&events).last(), Some(&"error"), "{events:?}");
    let error = events.last().unwrap().json();
    assert_eq!(error["error"]["code"], "StreamTimeLimit", "{error}");

    // Bedrock never reported usage: the stream is charged upper bounds (its input's bytes, a
    // token a byte streamed), within what it reserved, and the reservation is settled.
    assert!(tenancy.reservations("acme", &month()).is_empty());
    let spent = tenancy.spent("acme", &month()).await.unwrap();
    let text_alone = PriceTable::default()
        .cost(HAIKU, &Usage::new(0, 3))
        .unwrap();
    assert!(spent > text_alone, "{spent}");
}

#[tokio::test]
async fn a_reservation_no_ledger_takes_is_held_within_the_grace_and_refused_past_it() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, 1.0).await;
    let ask = |i: usize| {
        http_event(
            "POST",
            "/v1/invoke",
            Some(&key),
            &json!({"prompt": format!("q{i}"), "inferenceConfig": {"maxTokens": 10}}),
        )
    };
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy.clone());
    assert_eq!(read(app.handle(ask(0)).await).0, 200);
    tenancy.set_spend_unwritable(true);
    // Known within the grace: held by the instance, the cost owed.
    assert_eq!(read(app.handle(ask(1)).await).0, 200);

    // Never known (or past the grace): money is at stake, 503.
    let (fresh, _) = build_with_tenancy(
        &[("SPEND_READ_GRACE_SECONDS", "0")],
        FakeModel::answering(),
        tenancy.clone(),
    );
    let (status, _, answer) = read(fresh.handle(ask(2)).await);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "SpendUnavailable");

    // Back: the owed cost is added with the next settlement.
    tenancy.set_spend_unwritable(false);
    assert_eq!(read(app.handle(ask(3)).await).0, 200);
    let spent = tenancy.spent("acme", &month()).await.unwrap();
    assert!((spent - 3.0 * 0.0015).abs() < 1e-12, "{spent}");
}

#[tokio::test]
async fn with_count_tokens_a_long_prompt_is_reserved_at_its_counted_size_not_its_bytes() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant(&tenancy, 0.01).await;
    // $0.001 left. 40,000 bytes of prompt bound the input at 40,000 tokens ($0.01 at Claude 3
    // Haiku's price): more than is left. Counted, it is 10 tokens.
    tenancy.add("acme", &month(), 0.009).await.unwrap();
    let body = json!({"modelId": HAIKU, "prompt": "word ".repeat(8_000), "inferenceConfig": {"maxTokens": 100}});
    let request = || http_event("POST", "/v1/invoke", Some(&key), &body);

    let (bounded, _) = build_with_tenancy(&[], Metered::default(), tenancy.clone());
    assert_eq!(
        read(bounded.handle(request()).await).0,
        429,
        "the bytes' bound does not fit"
    );

    let (counted, _) = build_with_tenancy(
        &[("COUNT_TOKENS", "true")],
        Metered::default(),
        tenancy.clone(),
    );
    assert_eq!(
        read(counted.handle(request()).await).0,
        200,
        "the counted size fits"
    );
    assert!(tenancy.reservations("acme", &month()).is_empty());
}
