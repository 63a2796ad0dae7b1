//! The batch control plane and job lifecycle against in-memory storage. (Batch's settings as
//! `/_emulator/config` checks and shows them are tested with the services composed, in
//! `state`.)

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde_json::{json, Value};

use super::storage::MemoryStorage;
use super::*;
use crate::runtime::RuntimeState;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

struct Fixture {
    state: Arc<BatchState>,
    storage: Arc<MemoryStorage>,
}

fn fixture() -> Fixture {
    let storage = Arc::new(MemoryStorage::default());
    storage.create_bucket("batch-in");
    storage.create_bucket("batch-out");
    let runtime = Arc::new(RuntimeState::for_tests());
    let state = BatchState::new(runtime, BatchSettings::default(), Identity::default())
        .with_storage(storage.clone());
    let fixture = Fixture {
        state: Arc::new(state),
        storage,
    };
    fixture.configure(json!({"batchStepMs": 1}));
    fixture
}

fn converse_record(i: usize) -> Value {
    json!({
        "recordId": format!("rec-{i:04}"),
        "modelInput": {"messages": [{"role": "user", "content": [{"text": format!("Question number {i}")}]}]},
    })
}

fn jsonl(records: impl IntoIterator<Item = Value>) -> String {
    records.into_iter().map(|r| r.to_string() + "\n").collect()
}

impl Fixture {
    /// Applies batch's fields of a `/_emulator/config` body.
    fn configure(&self, patch: Value) {
        let patch: BatchPatch = serde_json::from_value(patch).unwrap();
        self.state.apply(&patch).unwrap();
    }

    async fn upload(&self, key: &str, body: String) {
        self.state.storage.put("batch-in", key, body).await.unwrap();
    }

    fn request(&self, name: &str, input_key: &str, invocation_type: &str) -> Value {
        json!({
            "jobName": name,
            "roleArn": "arn:aws:iam::123456789012:role/BatchRole",
            "modelId": HAIKU,
            "modelInvocationType": invocation_type,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": format!("s3://batch-in/{input_key}")}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://batch-out/results/"}},
        })
    }

    async fn create(&self, body: Value) -> Result<String, BedrockError> {
        let answer = create(State(self.state.clone()), Bytes::from(body.to_string())).await?;
        Ok(answer.0["jobArn"].as_str().unwrap().to_owned())
    }

    async fn get(&self, identifier: &str) -> Result<Value, BedrockError> {
        get(State(self.state.clone()), Path(identifier.to_owned()))
            .await
            .map(|j| j.0)
    }

    /// Polls the job until it ends (bounded).
    async fn ended(&self, arn: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let job = self.get(arn).await.unwrap();
            let status = Status::parse(job["status"].as_str().unwrap()).unwrap();
            if status.is_ended() {
                return job;
            }
            assert!(Instant::now() < deadline, "job never ended: {job}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn list(&self, query: &[(&str, &str)]) -> Result<Value, BedrockError> {
        let params: HashMap<String, String> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        list(State(self.state.clone()), Ok(Query(params)))
            .await
            .map(|j| j.0)
    }

    fn output_lines(&self, key: &str) -> Vec<Value> {
        self.storage
            .object("batch-out", key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.storage.keys("batch-out")))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn statuses(&self, arn: &str) -> Vec<String> {
        self.state
            .events
            .recent()
            .iter()
            .filter(|e| e["resources"][0] == arn)
            .map(|e| e["detail"]["status"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

#[tokio::test]
async fn a_converse_job_completes_with_shuffled_output_manifest_and_events() {
    let f = fixture();
    f.upload("batch/input.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("converse-job", "batch/input.jsonl", "Converse"))
        .await
        .unwrap();
    assert!(full_match(
        r"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/[a-z0-9]{12}",
        &arn
    ));
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "Completed", "{job}");
    for (field, value) in [
        ("totalRecordCount", 150),
        ("processedRecordCount", 150),
        ("successRecordCount", 150),
        ("errorRecordCount", 0),
    ] {
        assert_eq!(job[field], value, "{field}");
    }
    assert!(job["endTime"].is_string() && job["submitTime"].is_string());
    assert_eq!(job["modelInvocationType"], "Converse");

    let id = job_id(&arn);
    let lines = f.output_lines(&format!("results/{id}/input.jsonl.out"));
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["recordId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!((ids.len(), unique.len()), (150, 150));
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_ne!(ids, sorted, "output lines must not be in input order");
    let line = &lines[0];
    assert!(line["modelOutput"]["output"]["message"]["content"][0]["text"].is_string());
    assert_eq!(line["modelOutput"]["stopReason"], "end_turn");
    assert!(line["modelInput"]["messages"].is_array());

    // The same text as a synchronous Converse of the same body.
    let record = converse_record(7);
    let (sync, ..) = run::answer(
        &f.state.runtime,
        HAIKU,
        job::InvocationType::Converse,
        &record["modelInput"],
    )
    .unwrap();
    let batch = lines.iter().find(|l| l["recordId"] == "rec-0007").unwrap();
    assert_eq!(batch["modelOutput"]["output"], sync["output"]);

    let manifest: Value = serde_json::from_str(
        &f.storage
            .object("batch-out", &format!("results/{id}/manifest.json.out"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["totalRecordCount"], 150);
    assert_eq!(manifest["successRecordCount"], 150);
    assert_eq!(manifest["errorRecordCount"], 0);
    assert!(manifest["inputTokenCount"].as_u64().unwrap() > 0);
    assert!(manifest["outputTokenCount"].as_u64().unwrap() > 0);

    assert_eq!(
        f.statuses(&arn),
        [
            "Submitted",
            "Validating",
            "Scheduled",
            "InProgress",
            "Completed"
        ]
    );
    let event = f.state.events.recent().pop().unwrap();
    assert_eq!(event["detail-type"], "Batch Inference Job State Change");
    assert_eq!(event["source"], "aws.bedrock");
    assert_eq!(event["detail"]["batchJobArn"], arn.as_str());
    assert_eq!(event["detail"]["batchModelId"], HAIKU);
    assert_eq!(event["detail"]["processedRecordCount"], 150);
}

#[tokio::test]
async fn an_invoke_model_job_answers_in_the_models_own_shape_and_reports_bad_records() {
    let f = fixture();
    f.configure(json!({"batchMinRecords": 2}));
    let good = json!({"recordId": "good", "modelInput": {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}]}});
    let bad = json!({"recordId": "bad", "modelInput": {
        "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}});
    f.upload("two.jsonl", jsonl([good, bad])).await;
    let arn = f
        .create(f.request("invoke-job", "two.jsonl", "InvokeModel"))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "PartiallyCompleted", "{job}");
    let lines = f.output_lines(&format!("results/{}/two.jsonl.out", job_id(&arn)));
    let good = lines.iter().find(|l| l["recordId"] == "good").unwrap();
    assert_eq!(good["modelOutput"]["type"], "message");
    assert!(good["modelOutput"]["content"][0]["text"].is_string());
    let bad = lines.iter().find(|l| l["recordId"] == "bad").unwrap();
    assert_eq!(bad["error"]["errorCode"], 400);
    assert!(bad["error"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("anthropic_version"));
    assert!(bad.get("modelOutput").is_none());
}

#[tokio::test]
async fn too_few_records_or_unreadable_input_fail_the_job_with_a_message() {
    let f = fixture();
    f.upload("small.jsonl", jsonl((0..12).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("small", "small.jsonl", "Converse"))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "Failed");
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .contains("12 records, fewer than the minimum of 100"),
        "{job}"
    );
    assert_eq!(f.statuses(&arn).last().unwrap(), "Failed");
    let event = f.state.events.recent().pop().unwrap();
    assert_eq!(event["detail"]["failureMessage"], job["message"]);

    f.configure(json!({"batchMaxRecords": 10, "batchMinRecords": 1}));
    let arn = f
        .create(f.request("large", "small.jsonl", "Converse"))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert!(job["message"]
        .as_str()
        .unwrap()
        .contains("more than the maximum of 10"));

    let mut missing = f.request("missing", "x.jsonl", "Converse");
    missing["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] = json!("s3://nobucket/x.jsonl");
    let job = f.ended(&f.create(missing).await.unwrap()).await;
    assert_eq!(job["status"], "Failed");
    assert!(job["message"]
        .as_str()
        .unwrap()
        .starts_with("Unable to read the input data at s3://nobucket/x.jsonl"));

    f.upload(
        "broken.jsonl",
        "{\"modelInput\": {}}\nnot json\n".to_owned(),
    )
    .await;
    let job = f
        .ended(
            &f.create(f.request("broken", "broken.jsonl", "Converse"))
                .await
                .unwrap(),
        )
        .await;
    assert!(job["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JSON on line 2 of broken.jsonl"));
}

#[tokio::test]
async fn a_prefix_reads_every_jsonl_file_and_writes_one_output_each() {
    let f = fixture();
    f.upload("folder/a.jsonl", jsonl((0..60).map(converse_record)))
        .await;
    f.upload("folder/b.jsonl", jsonl((60..120).map(converse_record)))
        .await;
    f.upload("folder/readme.txt", "not input".to_owned()).await;
    let arn = f
        .create(f.request("folder-job", "folder/", "Converse"))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(job["totalRecordCount"], 120);
    let id = job_id(&arn);
    assert_eq!(
        f.output_lines(&format!("results/{id}/a.jsonl.out")).len(),
        60
    );
    assert_eq!(
        f.output_lines(&format!("results/{id}/b.jsonl.out")).len(),
        60
    );
    // Without the trailing slash the URI names the folder too.
    let job = f
        .ended(
            &f.create(f.request("folder-job-2", "folder", "Converse"))
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(job["totalRecordCount"], 120);
}

#[tokio::test]
async fn the_record_error_rate_spreads_errors_and_all_errors_fail_the_job() {
    let f = fixture();
    f.configure(json!({"batchRecordErrorRate": 0.1}));
    f.upload("input.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("partial", "input.jsonl", "Converse"))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "PartiallyCompleted", "{job}");
    assert_eq!(job["errorRecordCount"], 15);
    assert_eq!(job["successRecordCount"], 135);
    let lines = f.output_lines(&format!("results/{}/input.jsonl.out", job_id(&arn)));
    let errors: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(errors.len(), 15);
    assert_eq!(errors[0]["error"]["errorCode"], 400);
    assert_eq!(
        errors[0]["error"]["errorMessage"],
        run::INJECTED_RECORD_ERROR
    );

    f.configure(json!({"batchRecordErrorRate": 1}));
    let job = f
        .ended(
            &f.create(f.request("all-fail", "input.jsonl", "Converse"))
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["errorRecordCount"], 150);
}

#[tokio::test]
async fn a_stopped_job_goes_through_stopping_to_stopped() {
    let f = fixture();
    f.configure(json!({"batchStepMs": 30}));
    f.upload("input.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("to-stop", "input.jsonl", "Converse"))
        .await
        .unwrap();
    let _ = stop(State(f.state.clone()), Path(arn.clone()))
        .await
        .unwrap();
    assert_eq!(f.get(&arn).await.unwrap()["status"], "Stopping");
    // Stopping again is fine.
    let _ = stop(State(f.state.clone()), Path(job_id(&arn).to_owned()))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "Stopped");
    assert_eq!(f.statuses(&arn), ["Submitted", "Stopping", "Stopped"]);
    assert!(f.storage.keys("batch-out").is_empty());
    let error = stop(State(f.state.clone()), Path(arn.clone()))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "ValidationException");
}

#[tokio::test]
async fn a_job_stopped_in_progress_writes_what_it_answered() {
    let f = fixture();
    f.configure(json!({"batchStepMs": 40}));
    f.upload("input.jsonl", jsonl((0..200).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("stop-midway", "input.jsonl", "Converse"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.get(&arn).await.unwrap()["processedRecordCount"] != 50 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = stop(State(f.state.clone()), Path(arn.clone()))
        .await
        .unwrap();
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "Stopped");
    let processed = job["processedRecordCount"].as_u64().unwrap();
    assert!((50..200).contains(&processed), "{job}");
    let lines = f.output_lines(&format!("results/{}/input.jsonl.out", job_id(&arn)));
    assert_eq!(lines.len() as u64, processed);
}

#[test]
fn in_progress_takes_a_step_per_slice_and_batch_record_ms_per_record() {
    let fast = BatchSettings {
        batch_step_ms: 20,
        ..BatchSettings::default()
    };
    let slow = BatchSettings {
        batch_record_ms: 10,
        ..fast.clone()
    };
    // 150 records: four slices (38, 38, 38, 36), a step each, and 10 ms per record.
    assert_eq!(
        run::in_progress_duration(&fast, 150),
        Duration::from_millis(4 * 20)
    );
    assert_eq!(
        run::in_progress_duration(&slow, 150),
        Duration::from_millis(4 * 20 + 1500)
    );
    assert_eq!(
        run::slice_duration(&slow, 38),
        Duration::from_millis(20 + 380)
    );
    // Fewer records than slices make fewer slices: 5 records are answered 2, 2, 1.
    assert_eq!(
        run::in_progress_duration(&slow, 5),
        Duration::from_millis(3 * 20 + 50)
    );
    assert_eq!(run::in_progress_duration(&slow, 0), Duration::ZERO);
    // Large values saturate rather than overflow.
    let huge = BatchSettings {
        batch_step_ms: u64::MAX,
        batch_record_ms: 60_000,
        ..BatchSettings::default()
    };
    assert_eq!(
        run::slice_duration(&huge, usize::MAX),
        Duration::from_millis(u64::MAX)
    );
}

#[tokio::test]
async fn batch_record_ms_holds_a_job_in_progress_until_lowered() {
    let f = fixture();
    // The first slice waits 1 ms + 38 records × 60 s: the job sits in InProgress.
    f.configure(json!({"batchRecordMs": 60000}));
    f.upload("input.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("slow-records", "input.jsonl", "Converse"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        let job = f.get(&arn).await.unwrap();
        if job["status"] == "InProgress" {
            break job;
        }
        assert!(Instant::now() < deadline, "never InProgress: {job}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(job["processedRecordCount"], 0, "{job}");
    // Lowered at run time, it applies to the slice already waiting.
    f.configure(json!({"batchRecordMs": 0}));
    let job = f.ended(&arn).await;
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(job["processedRecordCount"], 150);
}

#[tokio::test]
async fn tokens_names_and_quota_are_enforced() {
    let f = fixture();
    f.configure(json!({"batchStepMs": 60000}));
    let mut body = f.request("first", "input.jsonl", "Converse");
    body["clientRequestToken"] = json!("token-1");
    let arn = f.create(body.clone()).await.unwrap();
    assert_eq!(f.create(body.clone()).await.unwrap(), arn);
    assert_eq!(
        f.list(&[]).await.unwrap()["invocationJobSummaries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(f.get(&arn).await.unwrap()["clientRequestToken"], "token-1");

    body["clientRequestToken"] = json!("token-2");
    let conflict = f.create(body.clone()).await.unwrap_err();
    assert_eq!(
        (conflict.error_type, conflict.status.as_u16()),
        ("ConflictException", 400)
    );

    f.configure(json!({"batchConcurrentJobQuota": 1}));
    let quota = f
        .create(f.request("second", "input.jsonl", "Converse"))
        .await
        .unwrap_err();
    assert_eq!(
        (quota.error_type, quota.status.as_u16()),
        ("ServiceQuotaExceededException", 400)
    );
    // Another model has its own quota.
    let mut other = f.request("third", "input.jsonl", "Converse");
    other["modelId"] = json!("anthropic.claude-3-sonnet-20240229-v1:0");
    assert!(f.create(other).await.is_ok());
    // An ended job neither counts nor holds its name.
    let _ = stop(State(f.state.clone()), Path(arn.clone()))
        .await
        .unwrap();
    f.configure(json!({"batchStepMs": 1}));
    f.ended(&arn).await;
    body["clientRequestToken"] = json!("token-3");
    assert!(f.create(body).await.is_ok());
}

#[tokio::test]
async fn unknown_and_malformed_job_identifiers() {
    let f = fixture();
    let missing = f.get("abcdefghijkl").await.unwrap_err();
    assert_eq!(
        (missing.error_type, missing.status.as_u16()),
        ("ResourceNotFoundException", 404)
    );
    let malformed = f.get("Not-An-Id").await.unwrap_err();
    assert_eq!(malformed.error_type, "ValidationException");
    f.configure(json!({"batchStepMs": 60000}));
    let arn = f
        .create(f.request("lookup", "input.jsonl", "Converse"))
        .await
        .unwrap();
    assert_eq!(f.get(job_id(&arn)).await.unwrap()["jobArn"], arn.as_str());
    let other_account = arn.replace("123456789012", "210987654321");
    assert_eq!(
        f.get(&other_account).await.unwrap_err().error_type,
        "ResourceNotFoundException"
    );
    let stop_missing = stop(State(f.state.clone()), Path("abcdefghijkl".to_owned()))
        .await
        .unwrap_err();
    assert_eq!(stop_missing.error_type, "ResourceNotFoundException");
    f.state.reset();
    assert_eq!(
        f.get(&arn).await.unwrap_err().error_type,
        "ResourceNotFoundException"
    );
    assert!(f.state.events.recent().is_empty());
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let f = fixture();
    f.configure(json!({"batchStepMs": 60000}));
    let mut arns = Vec::new();
    for name in ["alpha-1", "alpha-2", "beta-1", "alpha-3", "beta-2"] {
        arns.push(
            f.create(f.request(name, "input.jsonl", "Converse"))
                .await
                .unwrap(),
        );
    }
    let _ = stop(State(f.state.clone()), Path(arns[1].clone()))
        .await
        .unwrap();
    let names = |page: &Value| -> Vec<String> {
        page["invocationJobSummaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["jobName"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = f.list(&[]).await.unwrap();
    assert_eq!(
        names(&all),
        ["beta-2", "alpha-3", "beta-1", "alpha-2", "alpha-1"]
    );
    assert!(all.get("nextToken").is_none());
    let alpha = f
        .list(&[("nameContains", "alpha"), ("sortOrder", "Ascending")])
        .await
        .unwrap();
    assert_eq!(names(&alpha), ["alpha-1", "alpha-2", "alpha-3"]);
    let stopping = f.list(&[("statusEquals", "Stopping")]).await.unwrap();
    assert_eq!(names(&stopping), ["alpha-2"]);

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("maxResults", "2"), ("sortBy", "CreationTime")];
        if let Some(t) = &token {
            query.push(("nextToken", t.as_str()));
        }
        let page = f.list(&query).await.unwrap();
        assert!(names(&page).len() <= 2);
        seen.extend(names(&page));
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, names(&all));

    let submitted = f.get(&arns[2]).await.unwrap()["submitTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let later = f
        .list(&[("submitTimeAfter", "2000-01-01T00:00:00Z")])
        .await
        .unwrap();
    assert_eq!(names(&later).len(), 5);
    let none = f
        .list(&[("submitTimeBefore", "2000-01-01T00:00:00Z")])
        .await
        .unwrap();
    assert!(names(&none).is_empty());
    let before = f.list(&[("submitTimeBefore", &submitted)]).await.unwrap();
    assert!(names(&before).len() <= 2);

    for bad in [
        ("maxResults", "0"),
        ("maxResults", "1001"),
        ("statusEquals", "Running"),
        ("sortOrder", "Up"),
        ("sortBy", "Name"),
        ("nextToken", "garbage"),
        ("submitTimeAfter", "yesterday"),
    ] {
        let error = f.list(&[bad]).await.unwrap_err();
        assert_eq!(error.error_type, "ValidationException", "{bad:?}");
    }
}

#[tokio::test]
async fn events_can_be_switched_off() {
    let f = fixture();
    f.configure(json!({"eventsEnabled": false, "batchMinRecords": 1}));
    f.upload("input.jsonl", jsonl((0..3).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("quiet", "input.jsonl", "Converse"))
        .await
        .unwrap();
    assert_eq!(f.ended(&arn).await["status"], "Completed");
    assert!(f.state.events.recent().is_empty());
}

#[tokio::test]
async fn events_are_posted_to_the_target_in_order_and_a_dead_target_blocks_nothing() {
    use std::sync::Mutex;

    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |axum::Json(event): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(event);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let f = fixture();
    f.configure(json!({"batchMinRecords": 1, "eventTarget": format!("http://{address}/events")}));
    f.upload("input.jsonl", jsonl((0..3).map(converse_record)))
        .await;
    let arn = f
        .create(f.request("delivered", "input.jsonl", "Converse"))
        .await
        .unwrap();
    assert_eq!(f.ended(&arn).await["status"], "Completed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "events not delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let statuses: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["detail"]["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            "Submitted",
            "Validating",
            "Scheduled",
            "InProgress",
            "Completed"
        ]
    );
    assert_eq!(received.lock().unwrap()[0], f.state.events.recent()[0]);

    // Nothing listens on port 9 (discard): delivery fails, is logged, and the job goes on.
    f.configure(json!({"eventTarget": "http://127.0.0.1:9/events"}));
    let arn = f
        .create(f.request("undelivered", "input.jsonl", "Converse"))
        .await
        .unwrap();
    assert_eq!(f.ended(&arn).await["status"], "Completed");
}
