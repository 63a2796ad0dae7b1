//! batch-status's handler with real trigger events (API Gateway, Bedrock's job state changes,
//! the schedule) and test-support's in-memory ports: no AWS, no stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use batch_status::StatusApp;
use chrono::{TimeZone, Utc};
use domain::batch::BudgetHold;
use domain::batch::{Announcement, Batch, BatchRecord, BatchStatus};
use domain::error::RegistryError;
use domain::ports::{BatchBudgets, BatchQueue, JobState, SpendLedger};
use serde_json::{json, Value};
use shared::adapters::clock::ManualClock;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use shared::batch::{
    output_prefix, prepare_jobs, submit_queued, write_direct_input, BatchSettings, Invocation,
    LedgerBudgets, NoBudgets,
};
use shared::config::Env;
use test_support::batch::{Bucket, Bus, Jobs, Queue, Registry, BUCKET};
use test_support::events::{
    batch_job_state_change, iam_authorizer, s3_object_created, scheduled_event, sqs_messages,
    ApiEvent, HTTP_API_V2_IAM_OWNER,
};
use test_support::model::FakeModel;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// Noon UTC on a Monday.
const NOW: i64 = 1_795_435_200;

type App = StatusApp<Bucket, Registry, Jobs, ManualClock, Bus, FakeModel>;

/// The function over fakes, and clones of the fakes to look at what it did.
struct World {
    app: App,
    bucket: Bucket,
    registry: Registry,
    jobs: Jobs,
    model: FakeModel,
}

fn settings() -> BatchSettings {
    BatchSettings::from_env(&Env::from_pairs([(
        "BATCH_ROLE_ARN",
        "arn:aws:iam::123456789012:role/bedrock-batch",
    )]))
    .unwrap()
}

fn world() -> World {
    let (bucket, registry, jobs) = (Bucket::default(), Registry::default(), Jobs::default());
    let model = FakeModel::answering();
    World {
        app: StatusApp {
            settings: settings(),
            store: bucket.clone(),
            registry: registry.clone(),
            jobs: jobs.clone(),
            clock: ManualClock::at(Utc.timestamp_opt(NOW, 0).unwrap()),
            events: Bus::failing(&registry, 0),
            model: model.clone(),
            queue: None,
            budgets: None,
            deferred: None,
        },
        bucket,
        registry,
        jobs,
        model,
    }
}

/// The function over the world's fakes, with a work queue (`BATCH_WORK_QUEUE_URL`) and
/// tenants' budgets (`SPEND_TABLE_NAME`) as given.
fn deployed<Q: BatchQueue, B: BatchBudgets>(
    w: &World,
    queue: Option<Q>,
    budgets: Option<B>,
) -> StatusApp<Bucket, Registry, Jobs, ManualClock, Bus, FakeModel, Q, B> {
    StatusApp {
        settings: settings(),
        store: w.bucket.clone(),
        registry: w.registry.clone(),
        jobs: w.jobs.clone(),
        clock: ManualClock::at(Utc.timestamp_opt(NOW, 0).unwrap()),
        events: Bus::failing(&w.registry, 0),
        model: w.model.clone(),
        queue,
        budgets,
        deferred: None,
    }
}

/// The function as deployed with `BATCH_WORK_QUEUE_URL`: over the world's fakes and `queue`.
fn queued(
    w: &World,
    queue: &Queue,
) -> StatusApp<Bucket, Registry, Jobs, ManualClock, Bus, FakeModel, Queue> {
    deployed(w, Some(queue.clone()), None::<NoBudgets>)
}

/// A batch of three records in one job, its input written and the job submitted, as
/// batch-submit leaves it; registered.
async fn submitted(w: &World, batch_id: &str) -> Batch {
    let records: Vec<BatchRecord> = (0..3)
        .map(|i| BatchRecord {
            record_id: format!("r{i}"),
            model_input: json!({"messages": [{"role": "user", "content": [{"text": "q"}]}]}),
        })
        .collect();
    let mut batch: Batch = serde_json::from_value(json!({
        "batchId": batch_id, "owner": HTTP_API_V2_IAM_OWNER, "modelId": HAIKU, "source": "api",
        "status": "Queued",
        "jobs": [], "recordCount": 3, "createdAt": NOW - 600, "updatedAt": NOW - 600,
        "version": 1
    }))
    .unwrap();
    prepare_jobs(&w.bucket, &mut batch, &records, 100)
        .await
        .unwrap();
    submit_queued(&w.jobs, &w.bucket, &mut batch, &settings()).await;
    batch.status = batch.status_from_jobs();
    w.registry.insert(batch.clone());
    batch
}

/// Two submitted batches, 0a1b2c and 3d4e5f, whose jobs Bedrock reports completed with every
/// record answered.
async fn two_completed_batches(w: &World) {
    for id in ["0a1b2c", "3d4e5f"] {
        let batch = submitted(w, id).await;
        job_output(w, &batch);
    }
    w.jobs.reporting(completed());
}

/// Bedrock's output of the batch's job, out of order, every record answered.
fn job_output(w: &World, batch: &Batch) {
    let out: Vec<String> = ["r2", "r0", "r1"]
        .iter()
        .map(|id| {
            json!({"recordId": id, "modelInput": {}, "modelOutput": {
                "output": {"message": {"role": "assistant", "content": [{"text": format!("answer {id}")}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}}})
            .to_string()
        })
        .collect();
    let key = format!(
        "{}{}/part-0000.jsonl.out",
        output_prefix(&batch.batch_id),
        batch.jobs[0].job_id().unwrap()
    );
    w.bucket.put_with_metadata(&key, out.join("\n"), &[]);
}

fn completed() -> JobState {
    JobState {
        status: "Completed".into(),
        message: None,
        processed: 3,
        succeeded: 3,
        failed: 0,
    }
}

/// The status and JSON body of a gateway answer.
async fn answer<Q: BatchQueue, B: BatchBudgets>(
    app: &StatusApp<Bucket, Registry, Jobs, ManualClock, Bus, FakeModel, Q, B>,
    event: Value,
) -> (u16, Value) {
    let answer = app
        .on_event(event)
        .await
        .expect("an HTTP request gets a response");
    let status = u16::try_from(answer["statusCode"].as_u64().unwrap()).unwrap();
    let body = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    (status, body)
}

fn get(path: &str) -> Value {
    ApiEvent::http("GET", path).request_id("req-1").json()
}

#[tokio::test]
async fn a_batch_is_described_and_an_unknown_one_is_404() {
    let w = world();
    let batch = submitted(&w, "0a1b2c").await;
    let (status, body) = answer(&w.app, get("/v1/batches/0a1b2c")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["batchId"], "0a1b2c");
    assert_eq!(body["status"], "InProgress");
    assert_eq!(body["records"]["total"], 3);
    assert_eq!(body["jobs"][0]["jobArn"], json!(batch.jobs[0].arn));
    assert_eq!(body["results"], Value::Null);

    let (status, body) = answer(&w.app, get("/v1/batches/nope")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "BatchNotFound");
    assert_eq!(body["error"]["requestId"], "req-1");
}

/// `method path` from another caller: a role of another team.
fn from_another_team(method: &str, path: &str) -> Value {
    ApiEvent::http(method, path)
        .authorizer(iam_authorizer(
            "arn:aws:sts::123456789012:assumed-role/other-team/mallory",
            None,
        ))
        .json()
}

#[tokio::test]
async fn another_callers_batch_is_invisible_as_if_it_did_not_exist() {
    let w = world();
    let batch = submitted(&w, "0a1b2c").await;
    job_output(&w, &batch);
    w.jobs.reporting(completed());
    w.app
        .advance("0a1b2c", &Invocation::longest())
        .await
        .unwrap();
    let (_, unknown) = answer(&w.app, get("/v1/batches/ffffff")).await;

    for (method, path) in [
        ("GET", "/v1/batches/0a1b2c"),
        ("GET", "/v1/batches/0a1b2c/results"),
        ("DELETE", "/v1/batches/0a1b2c"),
    ] {
        let (status, body) = answer(&w.app, from_another_team(method, path)).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], unknown["error"]["code"]);
        assert_eq!(
            body["error"]["message"],
            unknown["error"]["message"]
                .as_str()
                .unwrap()
                .replace("ffffff", "0a1b2c")
        );
    }
    let (status, listed) = answer(&w.app, from_another_team("GET", "/v1/batches")).await;
    assert_eq!((status, listed["batches"].clone()), (200, json!([])));
    assert!(w.jobs.stopped().is_empty(), "nothing of it was stopped");

    // Its owner, under another session name, still sees it.
    let alice_again = ApiEvent::http("GET", "/v1/batches")
        .authorizer(iam_authorizer(
            "arn:aws:sts::123456789012:assumed-role/app-team/other-session",
            None,
        ))
        .json();
    let (_, listed) = answer(&w.app, alice_again).await;
    assert_eq!(listed["batches"][0]["batchId"], "0a1b2c");
}

#[tokio::test]
async fn a_request_without_a_caller_identity_is_401_unless_make_dev_names_one() {
    let mut w = world();
    submitted(&w, "0a1b2c").await;
    let anonymous = |path: &str| ApiEvent::http("GET", path).without_authorizer().json();
    for path in ["/v1/batches", "/v1/batches/0a1b2c"] {
        let (status, body) = answer(&w.app, anonymous(path)).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "MissingCallerIdentity");
    }
    // `make dev` (cargo lambda watch sends no authorizer) names the local caller.
    w.app.settings = BatchSettings::from_env(&Env::from_pairs([
        (
            "BATCH_ROLE_ARN",
            "arn:aws:iam::123456789012:role/bedrock-batch",
        ),
        (
            "LOCAL_CALLER_ARN",
            "arn:aws:sts::123456789012:assumed-role/app-team/dev",
        ),
    ]))
    .unwrap();
    let (status, body) = answer(&w.app, anonymous("/v1/batches/0a1b2c")).await;
    assert_eq!(status, 200, "{body}");
    // A request with an identity is still its own caller's.
    let (status, _) = answer(&w.app, from_another_team("GET", "/v1/batches/0a1b2c")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn batches_are_listed_a_page_at_a_time_and_bad_paging_is_400() {
    let w = world();
    for id in ["b1", "b2", "b3"] {
        submitted(&w, id).await;
    }
    let (status, first) = answer(&w.app, get("/v1/batches?limit=2")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["batches"].as_array().unwrap().len(), 2);
    let token = first["nextToken"].as_str().unwrap();
    let (_, second) = answer(
        &w.app,
        get(&format!("/v1/batches?limit=2&nextToken={token}")),
    )
    .await;
    assert_eq!(second["batches"].as_array().unwrap().len(), 1);
    assert_eq!(second["nextToken"], Value::Null);

    for query in ["limit=0", "limit=101", "limit=x", "nextToken=abc"] {
        let (status, body) = answer(&w.app, get(&format!("/v1/batches?{query}"))).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "ValidationError", "{query}");
        let field = query.split('=').next().unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn a_job_state_change_ends_its_batch_merged_and_announced_then_results_are_a_url() {
    let w = world();
    let batch = submitted(&w, "0a1b2c").await;
    let (status, body) = answer(&w.app, get("/v1/batches/0a1b2c/results")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("ResultsNotReady"))
    );

    job_output(&w, &batch);
    w.jobs.reporting(completed());
    let job = &batch.jobs[0].name;
    let done = w
        .app
        .on_event(batch_job_state_change(job, "Completed"))
        .await
        .unwrap();
    assert_eq!(done, json!({"ok": true}));
    let stored = w.registry.stored("0a1b2c");
    assert_eq!(stored.status, BatchStatus::Completed);
    assert_eq!(stored.announcement, Some(Announcement::Announced));
    assert_eq!(stored.updated_at, NOW);
    let results = w
        .bucket
        .object(stored.results_key.as_deref().unwrap())
        .unwrap();
    let ids: Vec<String> = String::from_utf8(results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["recordId"].to_string())
        .collect();
    assert_eq!(ids, [r#""r0""#, r#""r1""#, r#""r2""#], "in input order");

    let (status, body) = answer(&w.app, get("/v1/batches/0a1b2c/results")).await;
    assert_eq!(status, 200, "{body}");
    let key = stored.results_key.unwrap();
    assert_eq!(
        body["url"],
        format!("https://{BUCKET}/{key}?X-Amz-Signature=x")
    );
    assert_eq!(body["expiresInSeconds"], 3600);
    assert_eq!(body["results"], format!("s3://{BUCKET}/{key}"));
}

#[tokio::test]
async fn the_schedule_advances_every_open_batch_and_ignores_ended_ones() {
    let w = world();
    let batch = submitted(&w, "0a1b2c").await;
    job_output(&w, &batch);
    w.jobs.reporting(completed());
    let run = w.app.on_event(scheduled_event()).await.unwrap();
    assert_eq!(
        run,
        json!({"advanced": 1, "announcementsPending": 0, "failed": 0})
    );
    assert_eq!(w.registry.stored("0a1b2c").status, BatchStatus::Completed);

    let again = w.app.on_event(scheduled_event()).await.unwrap();
    assert_eq!(again["advanced"], 0);
}

#[tokio::test]
async fn with_a_queue_the_schedule_hands_each_open_batch_out_and_advances_none_itself() {
    let w = world();
    two_completed_batches(&w).await;
    let queue = Queue::refusing(&["3d4e5f"]);
    let app = queued(&w, &queue);

    let run = app.on_event(scheduled_event()).await.unwrap();
    assert_eq!(run, json!({"queued": 1, "notQueued": 1}));
    assert_eq!(queue.sent(), ["0a1b2c"]);
    for id in ["0a1b2c", "3d4e5f"] {
        assert!(!w.registry.stored(id).status.is_final(), "{id} advanced");
    }

    queue.unreachable();
    assert!(app.on_event(scheduled_event()).await.is_err());
}

#[tokio::test]
async fn a_queued_batch_that_fails_is_delivered_again_while_the_others_advance() {
    let w = world();
    two_completed_batches(&w).await;
    w.bucket.fail_under(&output_prefix("3d4e5f"), "SlowDown");
    let queue = Queue::default();
    let app = queued(&w, &queue);
    app.on_event(scheduled_event()).await.unwrap();

    let mut event = queue.receive();
    // Messages of a batch gone and of another shape are not worth delivering again.
    let strays = sqs_messages(&[("m-gone", r#"{"batchId":"ffffff"}"#), ("m-odd", "hello")]);
    let records = event["Records"].as_array_mut().unwrap();
    records.extend(strays["Records"].as_array().unwrap().iter().cloned());
    assert_eq!(records.len(), 4);

    let answer = app.on_event(event).await.unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-3d4e5f"}]})
    );
    assert_eq!(w.registry.stored("0a1b2c").status, BatchStatus::Completed);
    assert!(!w.registry.stored("3d4e5f").status.is_final());

    // Delivered again once the bucket answers, it advances.
    w.bucket.recover();
    let again = sqs_messages(&[("m-3d4e5f", r#"{"batchId":"3d4e5f"}"#)]);
    let answer = app.on_event(again).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(w.registry.stored("3d4e5f").status, BatchStatus::Completed);
}

#[tokio::test]
async fn events_of_jobs_or_batches_this_toolkit_does_not_know_are_ignored() {
    let w = world();
    for job in ["someone-elses-job", "bunknown-0"] {
        let answer = w
            .app
            .on_event(batch_job_state_change(job, "Completed"))
            .await
            .unwrap();
        assert_eq!(answer, json!({"ok": true}), "{job}");
    }
    let s3 = s3_object_created(BUCKET, "batch-input/q.jsonl", 1, "e");
    assert_eq!(w.app.on_event(s3).await.unwrap(), json!({"ignored": true}));
    assert!(w.registry.all().is_empty());
}

#[tokio::test]
async fn delete_stops_the_batchs_running_jobs() {
    let w = world();
    let batch = submitted(&w, "0a1b2c").await;
    let delete = ApiEvent::http("DELETE", "/v1/batches/0a1b2c").json();
    let (status, body) = answer(&w.app, delete).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "Stopping");
    assert_eq!(body["jobs"][0]["status"], "Stopping");
    assert_eq!(w.jobs.stopped(), [batch.jobs[0].arn.clone().unwrap()]);
    assert_eq!(w.registry.stored("0a1b2c").status, BatchStatus::Stopping);

    let post = ApiEvent::http("POST", "/v1/batches/0a1b2c").json();
    let (status, body) = answer(&w.app, post).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (405, &json!("MethodNotAllowed"))
    );
    let (status, body) = answer(&w.app, get("/v1/batches/0a1b2c/other")).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NotFound")));
}

#[tokio::test]
async fn an_unavailable_registry_is_a_503_to_a_caller_and_an_error_to_an_event() {
    let w = world();
    submitted(&w, "0a1b2c").await;
    w.registry
        .fail(RegistryError::Unavailable("table not found".into()));
    let raw = w.app.on_event(get("/v1/batches/0a1b2c")).await.unwrap();
    assert_eq!(raw["headers"]["retry-after"], "5", "{raw}");
    let (status, body) = answer(&w.app, get("/v1/batches/0a1b2c")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "BatchUnavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("The batch registry"), "{message}");

    assert!(w.app.on_event(scheduled_event()).await.is_err());
    assert!(w
        .app
        .on_event(batch_job_state_change("b0a1b2c-0", "Completed"))
        .await
        .is_err());
}

#[tokio::test]
async fn an_empty_or_malformed_batch_id_is_a_400_before_the_registry_is_asked() {
    let w = world();
    w.registry
        .fail(RegistryError::Unavailable("table not found".into()));
    let long = "a".repeat(65);
    for path in [
        "/v1/batches//results".to_owned(),
        "/v1/batches/..%2Fx".to_owned(),
        format!("/v1/batches/{long}"),
        format!("/v1/batches/{long}/results"),
    ] {
        let (status, body) = answer(&w.app, get(&path)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "ValidationError", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("batchId: "),
            "{path}: {body}"
        );
    }
    let delete = ApiEvent::http("DELETE", &format!("/v1/batches/{long}")).json();
    let (status, _) = answer(&w.app, delete).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_tenant_batchs_budget_hold_is_settled_once_to_what_it_cost_when_it_ends() {
    let w = world();
    let tenancy = Arc::new(InMemoryTenancy::default());
    let mut batch = submitted(&w, "0a1b2c").await;
    let hold = BudgetHold {
        tenant: "acme".into(),
        month: "2026-11".into(),
        reserved_usd: 1.0,
        expires_at: NOW + 86_400,
        settled: false,
    };
    tenancy
        .reserve("acme", "2026-11", &hold.reservation("0a1b2c"), 10.0, NOW)
        .await
        .unwrap();
    batch.budget = Some(hold);
    w.registry.insert(batch.clone());
    job_output(&w, &batch);
    w.jobs.reporting(completed());
    let budgets = LedgerBudgets {
        keys: tenancy.clone(),
        ledger: tenancy.clone(),
    };
    let app = deployed(&w, None::<Queue>, Some(budgets));

    app.on_event(batch_job_state_change("b0a1b2c-0", "Completed"))
        .await
        .unwrap();
    let ended = w.registry.stored("0a1b2c");
    assert_eq!(ended.status, BatchStatus::Completed);
    assert!(ended.budget.as_ref().unwrap().settled, "{ended:?}");
    assert!(tenancy.reservations("acme", "2026-11").is_empty());
    let cost = ended.summary.as_ref().unwrap().cost_usd;
    assert!(cost > 0.0);
    let spent = tenancy.spent("acme", "2026-11").await.unwrap();
    assert!((spent - cost).abs() < 1e-12, "{spent} != {cost}");

    // Ended and settled: the schedule no longer follows it, and nothing is charged twice.
    assert!(!ended.is_open());
    app.on_event(batch_job_state_change("b0a1b2c-0", "Completed"))
        .await
        .unwrap();
    app.on_event(scheduled_event()).await.unwrap();
    assert_eq!(tenancy.spent("acme", "2026-11").await.unwrap(), spent);
}

/// A small batch of `count` records as batch-submit leaves it: registered, its records written,
/// a tenant's estimate held.
async fn small(w: &World, batch_id: &str, count: usize, hold: Option<BudgetHold>) -> Batch {
    let records: Vec<BatchRecord> = (0..count)
        .map(|i| BatchRecord {
            record_id: format!("r{i}"),
            model_input: json!({"messages": [{"role": "user", "content": [{"text": "q"}]}]}),
        })
        .collect();
    write_direct_input(&w.bucket, batch_id, &records)
        .await
        .unwrap();
    let mut batch: Batch = serde_json::from_value(json!({
        "batchId": batch_id, "owner": HTTP_API_V2_IAM_OWNER, "modelId": HAIKU, "source": "api",
        "status": "Queued", "jobs": [], "recordCount": count, "direct": true,
        "createdAt": NOW, "updatedAt": NOW, "version": 0
    }))
    .unwrap();
    batch.budget = hold;
    w.registry.insert(batch.clone());
    batch
}

#[tokio::test]
async fn a_queued_small_batch_is_answered_announced_and_its_tenant_charged_once() {
    let w = world();
    let tenancy = Arc::new(InMemoryTenancy::default());
    let hold = BudgetHold {
        tenant: "acme".into(),
        month: "2026-11".into(),
        reserved_usd: 1.0,
        expires_at: NOW + 86_400,
        settled: false,
    };
    tenancy
        .reserve("acme", "2026-11", &hold.reservation("5ab5ab"), 10.0, NOW)
        .await
        .unwrap();
    small(&w, "5ab5ab", 3, Some(hold)).await;
    let queue = Queue::default();
    let app = deployed(
        &w,
        Some(queue.clone()),
        Some(LedgerBudgets {
            keys: tenancy.clone(),
            ledger: tenancy.clone(),
        }),
    );
    let message = sqs_messages(&[("m-1", r#"{"batchId":"5ab5ab"}"#)]);

    let reply = app.on_event(message.clone()).await.unwrap();
    assert_eq!(reply, json!({"batchItemFailures": []}));
    let ended = w.registry.stored("5ab5ab");
    assert_eq!(ended.status, BatchStatus::Completed);
    assert_eq!(ended.announcement, Some(Announcement::Announced));
    assert!(ended.budget.as_ref().unwrap().settled, "{ended:?}");
    let cost = ended.summary.as_ref().unwrap().cost_usd;
    let spent = tenancy.spent("acme", "2026-11").await.unwrap();
    assert!((spent - cost).abs() < 1e-12, "{spent} != {cost}");
    assert_eq!(w.model.calls().len(), 3);

    // Delivered again (SQS delivers at least once): nothing asked, nothing charged again.
    app.on_event(message).await.unwrap();
    assert_eq!(w.model.calls().len(), 3);
    let again = tenancy.spent("acme", "2026-11").await.unwrap();
    assert!((again - spent).abs() < 1e-12);
    assert!(queue.sent().is_empty());
    let (status, body) = answer(&app, get("/v1/batches/5ab5ab/results")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(start_paused = true)]
async fn a_run_without_time_for_a_small_batch_hands_it_to_the_queue_again() {
    let w = world();
    small(&w, "5ab5ab", 2, None).await;
    let queue = Queue::default();
    let app = queued(&w, &queue);
    // Less than BATCH_DIRECT_CALL_SECONDS (30) left: no call starts.
    let run = Invocation::lasting(std::time::Duration::from_secs(20));
    let message = sqs_messages(&[("m-1", r#"{"batchId":"5ab5ab"}"#)]);

    let reply = app.on_invocation(message, &run).await.unwrap();
    assert_eq!(reply, json!({"batchItemFailures": []}));
    assert!(w.model.calls().is_empty());
    assert_eq!(queue.sent(), ["5ab5ab"]);
    let left = w.registry.stored("5ab5ab");
    assert_eq!((left.status, left.lease), (BatchStatus::InProgress, None));

    // The queue's next delivery, in a run with time, answers it.
    app.on_event(queue.receive()).await.unwrap();
    assert_eq!(w.registry.stored("5ab5ab").status, BatchStatus::Completed);
    assert_eq!(w.model.calls().len(), 2);
}

#[tokio::test]
async fn without_a_queue_the_schedule_answers_small_batches_itself() {
    let w = world();
    small(&w, "5ab5ab", 2, None).await;
    let run = w.app.on_event(scheduled_event()).await.unwrap();
    assert_eq!(run["failed"], 0, "{run}");
    let ended = w.registry.stored("5ab5ab");
    assert_eq!(ended.status, BatchStatus::Completed);
    assert_eq!(ended.announcement, Some(Announcement::Announced));
}
