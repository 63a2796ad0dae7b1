//! batch-submit's handler with real trigger events (API Gateway, S3) and test-support's
//! in-memory ports: no AWS, no stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use batch_submit::SubmitApp;
use chrono::{TimeZone, Utc};
use domain::batch::BatchStatus;
use domain::error::{JobError, RegistryError};
use domain::identity::tenant_owner;
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::issue_key;
use serde_json::{json, Value};
use shared::adapters::clock::ManualClock;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use shared::batch::{direct_input_key, BatchError, BatchSettings, LedgerBudgets};
use shared::config::Env;
use test_support::batch::{job_arn, Bucket, Jobs, Queue, Registry, BUCKET};
use test_support::events::{
    iam_authorizer, s3_object_created, scheduled_event, ApiEvent, HTTP_API_V2_IAM_OWNER,
};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/bedrock-batch";
/// API Gateway's request id in the HTTP API fixture.
const GATEWAY_REQUEST_ID: &str = "Bf3xJgAAoAMEbXw=";
/// Noon UTC on a Monday.
const NOW: i64 = 1_795_435_200;

type App = SubmitApp<Bucket, Registry, Jobs, ManualClock, Queue>;

/// The function over fakes, and clones of the fakes to look at what it did.
struct World {
    app: App,
    bucket: Bucket,
    registry: Registry,
    jobs: Jobs,
    /// Where small batches are handed to batch-status.
    queue: Queue,
}

/// The function with `BATCH_ROLE_ARN` and `vars`; no `BATCH_DEFAULT_MODEL`.
fn world(vars: &[(&str, &str)]) -> World {
    let env = Env::from_pairs(
        [("ALLOWED_MODELS", HAIKU)]
            .into_iter()
            .chain(vars.iter().copied())
            .chain([("BATCH_ROLE_ARN", ROLE)]),
    );
    let (bucket, registry, jobs) = (Bucket::default(), Registry::default(), Jobs::default());
    let queue = Queue::default();
    World {
        app: SubmitApp {
            settings: BatchSettings::from_env(&env).unwrap(),
            default_model: None,
            store: bucket.clone(),
            registry: registry.clone(),
            jobs: jobs.clone(),
            clock: ManualClock::at(Utc.timestamp_opt(NOW, 0).unwrap()),
            queue: Some(queue.clone()),
            budgets: None,
        },
        bucket,
        registry,
        jobs,
        queue,
    }
}

/// Jobs from two records up: three records make a job, not a direct answer.
const SMALL_JOBS: &[(&str, &str)] = &[("BATCH_MIN_RECORDS", "2")];

fn records(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| json!({"recordId": format!("q{i}"), "prompt": format!("question {i}")}))
        .collect()
}

fn post(body: &Value) -> Value {
    ApiEvent::http("POST", "/v1/batches").body(body).json()
}

/// The status and JSON body of a gateway answer.
async fn answer(app: &App, event: Value) -> (u16, Value) {
    let answer = app
        .on_event(event)
        .await
        .expect("an HTTP request gets a response");
    let status = u16::try_from(answer["statusCode"].as_u64().unwrap()).unwrap();
    let body = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    (status, body)
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_valid_submission_is_accepted_with_its_batch_registered_and_job_input_written() {
    let w = world(SMALL_JOBS);
    let request = json!({"modelId": HAIKU, "name": "nightly", "records": records(3)});
    let (status, body) = answer(&w.app, post(&request)).await;

    assert_eq!(status, 202, "{body}");
    let batch_id = body["batchId"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "InProgress");
    assert_eq!(body["recordCount"], 3);
    assert_eq!(body["direct"], false);
    let name = format!("b{batch_id}-0");
    assert_eq!(
        body["jobs"],
        json!([{"name": name, "jobArn": job_arn(&name), "status": "Submitted", "recordCount": 3}])
    );

    // Registered, then updated once with the job's state.
    let stored = w.registry.stored(&batch_id);
    assert_eq!(stored.status, BatchStatus::InProgress);
    assert_eq!(
        (
            stored.name.as_deref(),
            stored.model_id.as_str(),
            stored.source.as_str()
        ),
        (Some("nightly"), HAIKU, "api")
    );
    assert_eq!((stored.version, stored.created_at), (1, NOW));
    assert_eq!(w.registry.writes().len(), 1);

    // The job's input, in input order, in Bedrock's record form.
    let input_key = format!("batch-jobs/{batch_id}/part-0000.jsonl");
    assert_eq!(w.bucket.keys(), std::slice::from_ref(&input_key));
    let input = lines(&w.bucket.object(&input_key).unwrap());
    let ids: Vec<&str> = input
        .iter()
        .map(|l| l["recordId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["q1", "q2", "q3"]);
    assert_eq!(
        input[0]["modelInput"]["messages"][0]["content"][0]["text"],
        "question 1"
    );

    // One job, named for the batch, its token its name, reading and writing the bucket.
    let created = w.jobs.created();
    assert_eq!(created.len(), 1);
    let job = &created[0];
    assert_eq!(
        (job.name.as_str(), job.client_request_token.as_str()),
        (name.as_str(), name.as_str())
    );
    assert_eq!(
        (job.model_id.as_str(), job.role_arn.as_str()),
        (HAIKU, ROLE)
    );
    assert_eq!(job.input_uri, format!("s3://{BUCKET}/{input_key}"));
    assert_eq!(
        job.output_uri,
        format!("s3://{BUCKET}/batch-output/{batch_id}/")
    );
    assert_eq!(job.timeout_hours, 24);
    assert!(
        w.queue.sent().is_empty(),
        "a batch of jobs is not handed out"
    );

    // The same request again is the same batch: 202, and no second job.
    let (status, again) = answer(&w.app, post(&request)).await;
    assert_eq!((status, &again["batchId"]), (202, &body["batchId"]));
    assert_eq!(w.jobs.created().len(), 1);
    assert_eq!(w.registry.all().len(), 1);
}

#[tokio::test]
async fn a_rest_api_submission_is_accepted_as_the_http_apis_is() {
    let w = world(SMALL_JOBS);
    let event = ApiEvent::rest("POST", "/v1/batches")
        .body(&json!({"modelId": HAIKU, "records": records(2)}))
        .json();
    let (status, body) = answer(&w.app, event).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["recordCount"], 2);
    assert_eq!(w.jobs.created().len(), 1);
}

#[tokio::test]
async fn a_batch_under_the_minimum_is_registered_and_handed_to_batch_status_at_once() {
    let w = world(&[]);
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": HAIKU, "records": records(2)})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["direct"], &body["status"]),
        (&json!(true), &json!("Queued"))
    );
    assert_eq!(body["jobs"], json!([]));
    assert!(w.jobs.created().is_empty());

    // Registered with its records written, handed to the queue, not yet answered.
    let batch_id = body["batchId"].as_str().unwrap();
    let stored = w.registry.stored(batch_id);
    assert_eq!((stored.status, stored.direct), (BatchStatus::Queued, true));
    assert_eq!(stored.results_key, None);
    let input = lines(&w.bucket.object(&direct_input_key(batch_id)).unwrap());
    assert_eq!(input.len(), 2);
    assert_eq!(input[1]["recordId"], "q2");
    assert_eq!(w.queue.sent(), [batch_id]);

    // The same request again is the same batch, handed out once.
    let (_, again) = answer(
        &w.app,
        post(&json!({"modelId": HAIKU, "records": records(2)})),
    )
    .await;
    assert_eq!(again["batchId"], batch_id);
    assert_eq!(w.queue.sent(), [batch_id]);
}

#[tokio::test]
async fn a_small_batch_the_queue_refuses_is_still_registered_for_the_schedule() {
    let w = world(&[]);
    w.queue.unreachable();
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": HAIKU, "records": records(2)})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let stored = w.registry.stored(body["batchId"].as_str().unwrap());
    assert!(stored.is_open(), "the schedule's scan finds it");
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field_and_nothing_is_stored() {
    let w = world(SMALL_JOBS);
    let cases = [
        (
            json!({"records": records(2)}),
            400,
            "ValidationError",
            "modelId: ",
        ),
        (
            json!({"modelId": " ", "records": records(2)}),
            400,
            "ValidationError",
            "modelId: ",
        ),
        (
            json!({"modelId": HAIKU}),
            400,
            "ValidationError",
            "records: ",
        ),
        (
            json!({"modelId": HAIKU, "records": {}}),
            400,
            "ValidationError",
            "records: ",
        ),
        (
            json!({"modelId": HAIKU, "records": []}),
            400,
            "ValidationError",
            "records: must hold at least one record",
        ),
        (
            json!({"modelId": HAIKU, "name": 7, "records": records(2)}),
            400,
            "ValidationError",
            "name: ",
        ),
        (
            json!({"modelId": HAIKU, "records": records(2), "model": HAIKU}),
            400,
            "UnknownField",
            "model: unknown field",
        ),
        (json!([1, 2]), 400, "ValidationError", "body: "),
    ];
    for (request, want_status, code, message) in cases {
        let (status, body) = answer(&w.app, post(&request)).await;
        assert_eq!(status, want_status, "{request}: {body}");
        assert_eq!(body["error"]["code"], code, "{request}: {body}");
        let said = body["error"]["message"].as_str().unwrap();
        assert!(said.starts_with(message), "{request}: {said}");
        assert_eq!(body["error"]["requestId"], GATEWAY_REQUEST_ID);
    }

    let not_json = ApiEvent::http("POST", "/v1/batches")
        .raw_body(Some("{\"modelId\":"))
        .json();
    let (status, body) = answer(&w.app, not_json).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("InvalidJson"))
    );

    let get = ApiEvent::http("GET", "/v1/batches").json();
    let (status, body) = answer(&w.app, get).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (405, &json!("MethodNotAllowed"))
    );

    assert!(w.registry.all().is_empty());
    assert!(w.bucket.keys().is_empty());
    assert!(w.jobs.created().is_empty());
}

#[tokio::test]
async fn one_invalid_record_refuses_the_batch_naming_the_record() {
    let w = world(SMALL_JOBS);
    let mut sent = records(3);
    sent[1] = json!({"recordId": "q2"});
    sent[2] = json!({"recordId": "q1", "prompt": "a second q1"});
    let (status, body) = answer(&w.app, post(&json!({"modelId": HAIKU, "records": sent}))).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "InvalidRecords");
    assert_eq!(error["problemCount"], 2);
    assert_eq!(
        error["problems"][0],
        json!({"position": 1, "recordId": "q2", "reason": "messages or prompt is required"})
    );
    assert_eq!(error["problems"][1]["position"], 2);
    assert!(
        error["problems"][1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("duplicate recordId"),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("records[1]: messages or prompt is required"),
        "{error}"
    );
    assert!(w.registry.all().is_empty() && w.bucket.keys().is_empty());
}

#[tokio::test]
async fn too_few_records_under_the_reject_policy_is_a_400() {
    let w = world(&[("BATCH_SMALL_POLICY", "reject")]);
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": HAIKU, "records": records(2)})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "TooFewRecords");
    assert!(w.queue.sent().is_empty());
    assert!(w.registry.all().is_empty());
}

#[tokio::test]
async fn a_failing_store_or_registry_is_answered_503_not_an_error() {
    let w = world(SMALL_JOBS);
    w.bucket.fail("SlowDown: reduce your request rate");
    let request = json!({"modelId": HAIKU, "records": records(3)});
    let (status, body) = answer(&w.app, post(&request)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "BatchUnavailable");
    assert_eq!(body["error"]["requestId"], GATEWAY_REQUEST_ID);
    let said = body["error"]["message"].as_str().unwrap();
    assert!(
        !said.contains("SlowDown"),
        "the cause is for the log only: {said}"
    );
    assert!(w.registry.all().is_empty(), "nothing registered");
    assert!(w.jobs.created().is_empty());

    let w = world(SMALL_JOBS);
    w.registry
        .fail(RegistryError::Unavailable("table not found".into()));
    let (status, body) = answer(&w.app, post(&request)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("BatchUnavailable"))
    );
}

#[tokio::test]
async fn a_job_over_the_quota_stays_queued_for_the_schedule() {
    let w = world(SMALL_JOBS);
    w.jobs
        .fail(JobError::QuotaExceeded("too many jobs in progress".into()));
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": HAIKU, "records": records(3)})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "Queued");
    assert_eq!(body["jobs"][0]["status"], "Queued");
    assert_eq!(body["jobs"][0]["jobArn"], Value::Null);
    let stored = w.registry.stored(body["batchId"].as_str().unwrap());
    assert_eq!(stored.status, BatchStatus::Queued);
}

/// `lines` JSONL records of the invoke form, `q1`…
fn upload(lines: usize) -> Vec<u8> {
    records(lines)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn the_same_records_from_two_callers_are_two_batches_each_its_owners() {
    let w = world(SMALL_JOBS);
    let request = json!({"modelId": HAIKU, "records": records(3)});
    let (status, alice) = answer(&w.app, post(&request)).await;
    assert_eq!(status, 202, "{alice}");
    let from_bob = ApiEvent::http("POST", "/v1/batches")
        .authorizer(iam_authorizer(
            "arn:aws:sts::123456789012:assumed-role/other-team/bob",
            None,
        ))
        .body(&request)
        .json();
    let (status, bob) = answer(&w.app, from_bob).await;
    assert_eq!(status, 202, "{bob}");
    assert_ne!(alice["batchId"], bob["batchId"]);
    let owner = |body: &Value| w.registry.stored(body["batchId"].as_str().unwrap()).owner;
    assert_eq!(owner(&alice), HTTP_API_V2_IAM_OWNER);
    assert_eq!(owner(&bob), r#"role:"123456789012"/"other-team""#);
    assert_eq!(w.jobs.created().len(), 2);

    // The same caller again: the same batch. With a new client token: a new one, on purpose.
    let (_, again) = answer(&w.app, post(&request)).await;
    assert_eq!(again["batchId"], alice["batchId"]);
    let mut resubmitted = request.clone();
    resubmitted["clientToken"] = json!("retry-2");
    let (status, fresh) = answer(&w.app, post(&resubmitted)).await;
    assert_eq!(status, 202, "{fresh}");
    assert_ne!(fresh["batchId"], alice["batchId"]);
    assert_eq!(w.jobs.created().len(), 3);
}

#[tokio::test]
async fn a_submission_without_a_caller_or_with_a_bad_client_token_is_refused() {
    let w = world(SMALL_JOBS);
    let request = json!({"modelId": HAIKU, "records": records(3)});
    let anonymous = ApiEvent::http("POST", "/v1/batches")
        .without_authorizer()
        .body(&request)
        .json();
    let (status, body) = answer(&w.app, anonymous).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("MissingCallerIdentity"))
    );
    for token in [json!(""), json!("a b"), json!(7), json!("x".repeat(65))] {
        let mut bad = request.clone();
        bad["clientToken"] = token.clone();
        let (status, body) = answer(&w.app, post(&bad)).await;
        assert_eq!(status, 400, "{token}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("clientToken: "));
    }
    assert!(w.registry.all().is_empty());
}

#[tokio::test]
async fn an_upload_becomes_a_batch_once_whatever_the_redeliveries() {
    let w = world(SMALL_JOBS);
    let key = "batch-input/tenant/team-a/my questions.jsonl";
    let body = upload(3);
    let size = body.len() as u64;
    w.bucket
        .put_with_metadata(key, body, &[("model-id", HAIKU)]);
    // S3 sends the key URL-encoded, a space as `+`.
    let event = w.bucket.created_event(key);
    assert_eq!(
        event["Records"][0]["s3"]["object"]["key"],
        "batch-input/tenant/team-a/my+questions.jsonl"
    );
    assert_eq!(event["Records"][0]["s3"]["object"]["size"], size);

    let answer = w.app.on_event(event.clone()).await.unwrap();
    let started = answer["batches"].as_array().unwrap();
    assert_eq!(started.len(), 1, "{answer}");
    assert_eq!(started[0]["status"], "InProgress");
    let batch_id = started[0]["batchId"].as_str().unwrap();
    let stored = w.registry.stored(batch_id);
    assert_eq!(stored.source, format!("s3://{BUCKET}/{key}"));
    assert_eq!(
        stored.owner,
        tenant_owner("team-a"),
        "the tenant its prefix names"
    );
    assert_eq!(stored.name.as_deref(), Some("my questions.jsonl"));
    assert_eq!((stored.model_id.as_str(), stored.record_count), (HAIKU, 3));
    let input = lines(
        &w.bucket
            .object(&format!("batch-jobs/{batch_id}/part-0000.jsonl"))
            .unwrap(),
    );
    assert_eq!(input.len(), 3);
    assert_eq!(w.jobs.created().len(), 1);

    // S3 delivers the event again: the same batch, no second job.
    let again = w.app.on_event(event).await.unwrap();
    assert_eq!(again["batches"][0]["batchId"], batch_id);
    assert_eq!(w.jobs.created().len(), 1);
    assert_eq!(w.registry.all().len(), 1);
}

#[tokio::test]
async fn an_upload_is_read_at_the_version_its_event_names_whatever_is_written_over_it() {
    let w = world(SMALL_JOBS);
    let key = "batch-input/tenant/team-a/q.jsonl";
    w.bucket
        .put_with_metadata(key, upload(3), &[("model-id", HAIKU)]);
    let first = w.bucket.created_event(key);
    // Overwritten before the first event is handled: five other records.
    w.bucket
        .put_with_metadata(key, upload(5), &[("model-id", HAIKU)]);
    let second = w.bucket.created_event(key);

    let answer = w.app.on_event(first.clone()).await.unwrap();
    let batch = w
        .registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap());
    assert_eq!(batch.record_count, 3, "the version the event named");
    let input = lines(
        &w.bucket
            .object(&format!("batch-jobs/{}/part-0000.jsonl", batch.batch_id))
            .unwrap(),
    );
    assert_eq!(input.len(), 3);
    let answer = w.app.on_event(second).await.unwrap();
    let newer = w
        .registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap());
    assert_eq!(newer.record_count, 5, "the overwrite is a batch of its own");

    // An unversioned bucket names an ETag: once overwritten, that upload is not read at all
    // (its overwrite's event makes the batch).
    let mut unversioned = first;
    let object = &mut unversioned["Records"][0]["s3"]["object"];
    object.as_object_mut().unwrap().remove("versionId");
    object["eTag"] = json!("\"etag-1\"");
    assert_eq!(
        w.app.on_event(unversioned).await.unwrap(),
        json!({"batches": []})
    );
    assert_eq!(w.registry.all().len(), 2);
}

#[tokio::test]
async fn an_upload_with_a_bad_line_or_no_model_is_a_rejected_batch_and_nothing_is_submitted() {
    let w = world(SMALL_JOBS);
    let mut body = upload(3);
    body.extend_from_slice(b"{not json\n");
    w.bucket.put_with_metadata(
        "batch-input/tenant/team-a/bad.jsonl",
        body,
        &[("model-id", HAIKU)],
    );
    let answer = w
        .app
        .on_event(
            w.bucket
                .created_event("batch-input/tenant/team-a/bad.jsonl"),
        )
        .await
        .unwrap();
    assert_eq!(answer["batches"][0]["status"], "Rejected", "{answer}");
    let stored = w
        .registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap());
    let rejection = stored.rejection.unwrap();
    assert_eq!(rejection.problem_count, 1);
    assert_eq!(rejection.problems[0].position, 4, "lines count from 1");
    assert!(rejection.problems[0].reason.starts_with("not JSON"));

    // No x-amz-meta-model-id and no BATCH_DEFAULT_MODEL.
    let body = upload(3);
    w.bucket
        .put_with_metadata("batch-input/tenant/team-a/anon.jsonl", body, &[]);
    let answer = w
        .app
        .on_event(
            w.bucket
                .created_event("batch-input/tenant/team-a/anon.jsonl"),
        )
        .await
        .unwrap();
    let stored = w
        .registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap());
    assert_eq!(stored.status, BatchStatus::Rejected);
    assert!(stored.rejection.unwrap().problems[0]
        .reason
        .contains("x-amz-meta-model-id"),);

    assert!(w.jobs.created().is_empty());
    assert!(w
        .bucket
        .keys()
        .iter()
        .all(|k| k.starts_with("batch-input/")));
}

/// The batch an upload of `body` under team-a's prefix became, with `vars` set.
async fn uploaded(vars: &[(&str, &str)], name: &str, body: Vec<u8>) -> domain::batch::Batch {
    let w = world(vars);
    let key = format!("batch-input/tenant/team-a/{name}");
    w.bucket
        .put_with_metadata(&key, body, &[("model-id", HAIKU)]);
    let answer = w
        .app
        .on_event(w.bucket.created_event(&key))
        .await
        .expect("an upload over a limit is a batch, not an error");
    assert!(w.jobs.created().is_empty(), "nothing submitted");
    w.registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap())
}

fn first_reason(batch: &domain::batch::Batch) -> String {
    assert_eq!(batch.status, BatchStatus::Rejected);
    batch.rejection.clone().unwrap().problems[0].reason.clone()
}

#[tokio::test]
async fn an_upload_over_a_limit_is_a_rejected_batch_naming_the_limit() {
    let mut limits = SMALL_JOBS.to_vec();
    limits.extend([
        ("BATCH_MAX_UPLOAD_BYTES", "2000"),
        ("BATCH_MAX_LINE_BYTES", "200"),
        ("BATCH_MAX_BATCH_RECORDS", "5"),
    ]);
    let big = upload(3).repeat(40);
    assert!(first_reason(&uploaded(&limits, "big.jsonl", big).await)
        .contains("at most 2000 (BATCH_MAX_UPLOAD_BYTES)"));

    let mut long_line = upload(2);
    long_line.extend(format!("{}\n", json!({"prompt": "q".repeat(300)})).bytes());
    let batch = uploaded(&limits, "long.jsonl", long_line).await;
    assert!(first_reason(&batch).contains("over 200 bytes (BATCH_MAX_LINE_BYTES)"));
    assert_eq!(batch.rejection.unwrap().problems[0].position, 3);

    let many = uploaded(&limits, "many.jsonl", upload(9)).await;
    assert!(first_reason(&many).contains("more than 5 records (BATCH_MAX_BATCH_RECORDS)"));

    let empty = uploaded(&limits, "empty.jsonl", b"\n\n  \n".to_vec()).await;
    assert!(first_reason(&empty).contains("holds no records"));
}

#[tokio::test]
async fn an_upload_of_huge_record_ids_is_rejected_and_its_registry_item_stays_small() {
    let lines: String = (0..20)
        .map(|i| {
            format!(
                "{}\n",
                json!({"recordId": format!("{i}{}", "x".repeat(30_000)), "prompt": "q"})
            )
        })
        .collect();
    let batch = uploaded(SMALL_JOBS, "ids.jsonl", lines.into_bytes()).await;
    assert!(first_reason(&batch).contains("at most 256"));
    assert_eq!(batch.rejection.as_ref().unwrap().problem_count, 20);
    // DynamoDB refuses items over 400 KB: the stored batch is a few kilobytes.
    let item = serde_json::to_vec(&batch).unwrap();
    assert!(item.len() < 20_000, "{} bytes", item.len());
}

#[tokio::test]
async fn more_records_than_a_batch_may_hold_is_a_400_naming_the_limit() {
    let w = world(&[("BATCH_MIN_RECORDS", "2"), ("BATCH_MAX_BATCH_RECORDS", "3")]);
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": HAIKU, "records": records(4)})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("TooManyRecords"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("BATCH_MAX_BATCH_RECORDS"));
    assert!(w.registry.all().is_empty());
}

#[tokio::test]
async fn a_batch_runs_only_on_a_model_v1_invoke_allows() {
    let w = world(SMALL_JOBS);
    let other = "anthropic.claude-3-opus-20240229-v1:0";
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": other, "records": records(3)})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("modelId: ") && message.contains("not enabled"),
        "{message}"
    );
    // A tier model is allowed without being listed.
    let tier = domain::tiers::DEFAULT_SIMPLE_MODEL;
    let (status, body) = answer(
        &w.app,
        post(&json!({"modelId": tier, "records": records(3)})),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let key = "batch-input/tenant/team-a/opus.jsonl";
    w.bucket
        .put_with_metadata(key, upload(3), &[("model-id", other)]);
    let answer = w.app.on_event(w.bucket.created_event(key)).await.unwrap();
    let batch = w
        .registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap());
    assert!(first_reason(&batch).contains("not enabled here"));
    assert_eq!(w.jobs.created().len(), 1, "only the tier model's batch");

    let env = Env::from_pairs([("BATCH_ROLE_ARN", ROLE), ("BATCH_DEFAULT_MODEL", other)]);
    let settings = BatchSettings::from_env(&env).unwrap();
    assert_eq!(
        batch_submit::default_model(&env, &settings)
            .unwrap_err()
            .variable,
        "BATCH_DEFAULT_MODEL"
    );
}

#[tokio::test]
async fn objects_that_are_not_uploads_or_are_gone_are_ignored() {
    let w = world(SMALL_JOBS);
    for key in [
        "reports/q.jsonl",
        "batch-input/q.jsonl",
        "batch-input/tenant/q.jsonl",
    ] {
        w.bucket
            .put_with_metadata(key, upload(3), &[("model-id", HAIKU)]);
    }
    for key in [
        "reports/q.jsonl",
        "batch-input/tenant/team-a/q.csv",
        "batch-input/tenant/team-a/deleted.jsonl",
        // Readable batch uploads, but under no owner's prefix: nobody's, never everyone's.
        "batch-input/q.jsonl",
        "batch-input/tenant/q.jsonl",
    ] {
        let answer = w
            .app
            .on_event(s3_object_created(BUCKET, key, 10, "e"))
            .await
            .unwrap();
        assert_eq!(answer, json!({"batches": []}), "{key}");
    }
    assert!(w.registry.all().is_empty());
}

#[tokio::test]
async fn an_upload_the_bucket_cannot_read_is_an_error_so_s3_delivers_it_again() {
    let w = world(SMALL_JOBS);
    w.bucket.put_with_metadata(
        "batch-input/tenant/team-a/q.jsonl",
        upload(3),
        &[("model-id", HAIKU)],
    );
    w.bucket.fail("InternalError");
    let error = w
        .app
        .on_event(s3_object_created(
            BUCKET,
            "batch-input/tenant/team-a/q.jsonl",
            10,
            "e",
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, BatchError::Store(_)), "{error}");
    assert!(w.registry.all().is_empty());
}

#[tokio::test]
async fn an_event_of_another_shape_is_answered_400() {
    let w = world(&[]);
    let (status, body) = answer(&w.app, scheduled_event()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidRequest");
}

/// The tenant keys and the spend ledger, in memory: both are the one store.
type Budgets = LedgerBudgets<Arc<InMemoryTenancy>, Arc<InMemoryTenancy>>;

/// The function over the world's fakes, with tenants' budgets in `tenancy` (as deployed:
/// TENANT_KEYS_TABLE_NAME and SPEND_TABLE_NAME set).
fn budgeted(
    w: &World,
    vars: &[(&str, &str)],
    tenancy: &Arc<InMemoryTenancy>,
) -> SubmitApp<Bucket, Registry, Jobs, ManualClock, Queue, Budgets> {
    let env = Env::from_pairs(
        [("ALLOWED_MODELS", HAIKU)]
            .into_iter()
            .chain(vars.iter().copied())
            .chain([("BATCH_ROLE_ARN", ROLE)]),
    );
    SubmitApp {
        settings: BatchSettings::from_env(&env).unwrap(),
        default_model: None,
        store: w.bucket.clone(),
        registry: w.registry.clone(),
        jobs: w.jobs.clone(),
        clock: ManualClock::at(Utc.timestamp_opt(NOW, 0).unwrap()),
        queue: Some(w.queue.clone()),
        budgets: Some(LedgerBudgets {
            keys: tenancy.clone(),
            ledger: tenancy.clone(),
        }),
    }
}

async fn issue(tenancy: &InMemoryTenancy, tenant: &str, budget: Option<f64>) {
    let issued = issue_key(
        tenant,
        vec![],
        budget,
        None,
        Utc.timestamp_opt(NOW, 0).unwrap(),
    )
    .unwrap();
    tenancy.create(&issued.record).await.unwrap();
}

/// Uploads `records` records at `key` and hands its event to `app`; the batch it made.
async fn upload_to<B: domain::ports::BatchBudgets>(
    w: &World,
    app: &SubmitApp<Bucket, Registry, Jobs, ManualClock, Queue, B>,
    key: &str,
    records: usize,
) -> domain::batch::Batch {
    w.bucket
        .put_with_metadata(key, upload(records), &[("model-id", HAIKU)]);
    let answer = app.on_event(w.bucket.created_event(key)).await.unwrap();
    w.registry
        .stored(answer["batches"][0]["batchId"].as_str().unwrap())
}

#[tokio::test]
async fn a_tenants_upload_reserves_its_most_against_the_budget_or_is_rejected_naming_it() {
    let w = world(SMALL_JOBS);
    let tenancy = Arc::new(InMemoryTenancy::default());
    issue(&tenancy, "team-a", Some(1.0)).await;
    let app = budgeted(&w, SMALL_JOBS, &tenancy);

    let batch = upload_to(&w, &app, "batch-input/tenant/team-a/q.jsonl", 3).await;
    assert_eq!(batch.status, BatchStatus::InProgress);
    let hold = batch.budget.clone().expect("a budget hold");
    assert_eq!((hold.tenant.as_str(), hold.settled), ("team-a", false));
    assert_eq!(
        tenancy.reservations("team-a", &hold.month),
        vec![hold.reservation(&batch.batch_id)]
    );
    // Three records without maxTokens: RESERVE_MAX_TOKENS (4,096) each, at the batch price.
    let outputs_alone = 3.0 * 4096.0 / 1000.0 * 0.00125 * 0.5;
    assert!(hold.reserved_usd > outputs_alone, "{hold:?}");
    assert!(hold.reserved_usd < 2.0 * outputs_alone, "{hold:?}");

    // The budget nearly spent: the next upload is a Rejected batch naming it; nothing runs.
    tenancy.add("team-a", &hold.month, 0.999).await.unwrap();
    let refused = upload_to(&w, &app, "batch-input/tenant/team-a/more.jsonl", 3).await;
    assert_eq!(refused.status, BatchStatus::Rejected);
    let reason = &refused.rejection.unwrap().problems[0].reason;
    assert!(reason.contains("monthly budget of $1.00"), "{reason}");
    assert_eq!(w.jobs.created().len(), 1);
    assert_eq!(tenancy.reservations("team-a", &hold.month).len(), 1);

    // A tenant without a live key may spend nothing; an IAM role's upload has no budget.
    let keyless = upload_to(&w, &app, "batch-input/tenant/team-b/q.jsonl", 3).await;
    assert_eq!(keyless.status, BatchStatus::Rejected);
    let reason = &keyless.rejection.unwrap().problems[0].reason;
    assert!(reason.contains("no live key"), "{reason}");
    let role = upload_to(
        &w,
        &app,
        "batch-input/role/123456789012/app-team/q.jsonl",
        3,
    )
    .await;
    assert_eq!((role.status, role.budget), (BatchStatus::InProgress, None));
}

#[tokio::test]
async fn a_tenants_small_upload_holds_its_estimate_until_batch_status_answers_it() {
    // Under BATCH_MIN_RECORDS (100): answered by batch-status, which settles the hold.
    let w = world(&[]);
    let tenancy = Arc::new(InMemoryTenancy::default());
    issue(&tenancy, "team-a", Some(5.0)).await;
    let app = budgeted(&w, &[], &tenancy);

    let batch = upload_to(&w, &app, "batch-input/tenant/team-a/few.jsonl", 3).await;
    assert_eq!((batch.status, batch.direct), (BatchStatus::Queued, true));
    let hold = batch.budget.clone().expect("a budget hold");
    assert!(!hold.settled, "{hold:?}");
    assert_eq!(tenancy.reservations("team-a", &hold.month).len(), 1);
    assert_eq!(w.queue.sent(), [batch.batch_id.as_str()]);
    let input = lines(&w.bucket.object(&direct_input_key(&batch.batch_id)).unwrap());
    assert_eq!(input.len(), 3);
}
