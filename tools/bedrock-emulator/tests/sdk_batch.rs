#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The emulator's batch inference control plane through the AWS SDK for Rust (`aws-sdk-bedrock`
//! by endpoint alone), with input and output in the emulator's in-memory buckets (the emulator
//! in-process, one per test).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::operation::get_model_invocation_job::GetModelInvocationJobOutput;
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig,
    ModelInvocationJobStatus, ModelInvocationType, S3InputFormat, SortJobsBy, SortOrder,
};
use bedrock_emulator::batch::storage::Storage;
use common::Emulator;
use serde_json::{json, Value};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockBatchRole";
/// Poll interval and overall bound when waiting on a job's own status.
const POLL: Duration = Duration::from_millis(25);
const BOUND: Duration = Duration::from_secs(30);

struct Stack {
    emulator: Emulator,
    bedrock: aws_sdk_bedrock::Client,
    bucket: String,
}

/// A fresh emulator (20 ms a step) and a bucket of the test's own in its storage.
async fn stack(label: &str) -> Stack {
    let emulator = Emulator::start().await;
    emulator.configure(json!({"batchStepMs": 20})).await;
    let sdk = emulator.sdk_config();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bucket = format!("batch-{label}-{nanos}");
    emulator.storage().create_bucket(&bucket);
    Stack {
        bedrock: aws_sdk_bedrock::Client::new(&sdk),
        emulator,
        bucket,
    }
}

fn converse_record(i: usize) -> Value {
    json!({
        "recordId": format!("REC{i:08}"),
        "modelInput": {
            "messages": [{"role": "user", "content": [{"text": format!("Summarise item {i} in one line")}]}],
            "inferenceConfig": {"maxTokens": 64},
        },
    })
}

fn jsonl(records: impl IntoIterator<Item = Value>) -> String {
    records.into_iter().map(|r| r.to_string() + "\n").collect()
}

impl Stack {
    async fn upload(&self, key: &str, body: String) {
        self.emulator
            .storage()
            .put(&self.bucket, key, body)
            .await
            .unwrap();
    }

    async fn object(&self, key: &str) -> String {
        let storage = self.emulator.storage();
        storage.object(&self.bucket, key).unwrap_or_else(|| {
            let keys = storage.keys(&self.bucket);
            panic!("s3://{}/{key}: not among {keys:?}", self.bucket)
        })
    }

    fn create(
        &self,
        name: &str,
        input_key: &str,
    ) -> aws_sdk_bedrock::operation::create_model_invocation_job::builders::CreateModelInvocationJobFluentBuilder
    {
        let input = ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(format!("s3://{}/{input_key}", self.bucket))
            .s3_input_format(S3InputFormat::Jsonl)
            .build()
            .unwrap();
        let output = ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(format!("s3://{}/output/", self.bucket))
            .build()
            .unwrap();
        self.bedrock
            .create_model_invocation_job()
            .job_name(name)
            .role_arn(ROLE)
            .model_id(HAIKU)
            .model_invocation_type(ModelInvocationType::Converse)
            .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input))
            .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
                output,
            ))
    }

    async fn get(&self, arn: &str) -> GetModelInvocationJobOutput {
        self.bedrock
            .get_model_invocation_job()
            .job_identifier(arn)
            .send()
            .await
            .unwrap()
    }

    /// Polls the job's own status until it ends.
    /// Creates the job and answers its ARN.
    async fn start(&self, name: &str, key: &str) -> String {
        self.create(name, key)
            .send()
            .await
            .unwrap()
            .job_arn()
            .to_owned()
    }

    async fn ended(&self, arn: &str) -> GetModelInvocationJobOutput {
        let started = Instant::now();
        loop {
            let job = self.get(arn).await;
            match job.status() {
                Some(
                    ModelInvocationJobStatus::Submitted
                    | ModelInvocationJobStatus::Validating
                    | ModelInvocationJobStatus::Scheduled
                    | ModelInvocationJobStatus::InProgress
                    | ModelInvocationJobStatus::Stopping,
                ) => {}
                _ => return job,
            }
            assert!(started.elapsed() < BOUND, "job still running: {job:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    async fn events(&self) -> Vec<Value> {
        let events: Value = self
            .emulator
            .http()
            .get(self.emulator.url("/_emulator/events"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        events["events"].as_array().unwrap().clone()
    }
}

fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

#[tokio::test]
async fn a_converse_batch_of_150_records_completes_with_shuffled_output_and_manifest() {
    let stack = stack("complete").await;
    stack
        .upload("input/records.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = stack.start("converse-150", "input/records.jsonl").await;
    assert!(arn.starts_with("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/"));
    assert_eq!(job_id(&arn).len(), 12);

    let job = stack.ended(&arn).await;
    assert_eq!(
        job.status(),
        Some(&ModelInvocationJobStatus::Completed),
        "{job:?}"
    );
    assert_eq!(job.total_record_count(), Some(150));
    assert_eq!(job.processed_record_count(), Some(150));
    assert_eq!(job.success_record_count(), Some(150));
    assert_eq!(job.error_record_count(), Some(0));
    assert_eq!(job.model_id(), HAIKU);
    assert_eq!(job.role_arn(), ROLE);
    assert_eq!(job.job_name(), Some("converse-150"));
    assert_eq!(
        job.model_invocation_type(),
        Some(&ModelInvocationType::Converse)
    );
    assert_eq!(job.timeout_duration_in_hours(), Some(168));
    assert!(job.client_request_token().is_some(), "the SDK fills one in");
    let end = job.end_time().expect("endTime");
    assert!(end.secs() >= job.submit_time().secs());
    assert!(job.job_expiration_time().unwrap().secs() > job.submit_time().secs());
    let input = job
        .input_data_config()
        .unwrap()
        .as_s3_input_data_config()
        .unwrap();
    assert_eq!(input.s3_input_format(), Some(&S3InputFormat::Jsonl));

    let id = job_id(&arn);
    let out = stack
        .object(&format!("output/{id}/records.jsonl.out"))
        .await;
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<String> = lines
        .iter()
        .map(|l| l["recordId"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (150, 150),
        "every record exactly once"
    );
    let input_order: Vec<String> = (0..150).map(|i| format!("REC{i:08}")).collect();
    assert_ne!(ids, input_order, "output lines are not in input order");
    for line in &lines {
        let output = &line["modelOutput"];
        assert!(
            output["output"]["message"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{line}"
        );
        assert!(output["stopReason"].is_string());
        assert!(output["usage"]["outputTokens"].as_u64().unwrap() <= 64);
        assert!(line["modelInput"]["messages"].is_array());
    }

    let manifest: Value = serde_json::from_str(
        &stack
            .object(&format!("output/{id}/manifest.json.out"))
            .await,
    )
    .unwrap();
    assert_eq!(manifest["totalRecordCount"], 150);
    assert_eq!(manifest["processedRecordCount"], 150);
    assert_eq!(manifest["successRecordCount"], 150);
    assert_eq!(manifest["errorRecordCount"], 0);
    let output_tokens: u64 = lines
        .iter()
        .map(|l| l["modelOutput"]["usage"]["outputTokens"].as_u64().unwrap())
        .sum();
    assert_eq!(manifest["outputTokenCount"], output_tokens);
    assert!(manifest["inputTokenCount"].as_u64().unwrap() > 0);

    // Every state change is an EventBridge-shaped event.
    let events = stack.events().await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail"]["batchJobArn"] == arn.as_str())
        .collect();
    let statuses: Vec<&str> = mine
        .iter()
        .map(|e| e["detail"]["status"].as_str().unwrap())
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
    let last = mine.last().unwrap();
    assert_eq!(last["detail-type"], "Batch Inference Job State Change");
    assert_eq!(last["source"], "aws.bedrock");
    assert_eq!(last["resources"], json!([arn]));
    assert_eq!(last["detail"]["batchJobName"], "converse-150");
    assert_eq!(last["detail"]["batchModelId"], HAIKU);
    assert_eq!(last["detail"]["processedRecordCount"], 150);
    assert_eq!(last["detail"]["successRecordCount"], 150);
    assert_eq!(last["detail"]["errorRecordCount"], 0);
}

#[tokio::test]
async fn the_same_client_request_token_gives_the_same_job() {
    let stack = stack("token").await;
    stack
        .emulator
        .configure(json!({"batchStepMs": 60000}))
        .await;
    let first = stack
        .create("idempotent", "in.jsonl")
        .client_request_token("retry-token-1")
        .send()
        .await
        .unwrap();
    let again = stack
        .create("idempotent", "in.jsonl")
        .client_request_token("retry-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.job_arn(), again.job_arn());
    let jobs = stack
        .bedrock
        .list_model_invocation_jobs()
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.invocation_job_summaries().len(), 1);
    let job = stack.get(first.job_arn()).await;
    assert_eq!(job.client_request_token(), Some("retry-token-1"));
    // Another token for the same running name is a conflict.
    let conflict = stack
        .create("idempotent", "in.jsonl")
        .client_request_token("retry-token-2")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(conflict.is_conflict_exception(), "{conflict:?}");
}

#[tokio::test]
async fn a_job_beyond_the_concurrent_quota_is_a_service_quota_exceeded_exception() {
    let stack = stack("quota").await;
    stack
        .emulator
        .configure(json!({"batchStepMs": 60000, "batchConcurrentJobQuota": 1}))
        .await;
    stack.create("first", "in.jsonl").send().await.unwrap();
    let error = stack
        .create("second", "in.jsonl")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_service_quota_exceeded_exception(), "{error:?}");
    assert!(error.message().unwrap().contains("quota of 1"), "{error:?}");
}

#[tokio::test]
async fn too_few_records_fail_the_job_with_a_message() {
    let stack = stack("few").await;
    stack
        .upload("few.jsonl", jsonl((0..10).map(converse_record)))
        .await;
    let arn = stack.start("too-few", "few.jsonl").await;
    let job = stack.ended(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Failed));
    assert!(
        job.message()
            .unwrap()
            .contains("10 records, fewer than the minimum of 100"),
        "{job:?}"
    );
    let events = stack.events().await;
    let failed = events.last().unwrap();
    assert_eq!(failed["detail"]["status"], "Failed");
    assert_eq!(failed["detail"]["failureMessage"], job.message().unwrap());
}

#[tokio::test]
async fn a_record_error_rate_partially_completes_the_job_with_error_lines() {
    let stack = stack("partial").await;
    stack
        .emulator
        .configure(json!({"batchRecordErrorRate": 0.1}))
        .await;
    stack
        .upload("in.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = stack.start("partial", "in.jsonl").await;
    let job = stack.ended(&arn).await;
    assert_eq!(
        job.status(),
        Some(&ModelInvocationJobStatus::PartiallyCompleted)
    );
    assert_eq!(job.error_record_count(), Some(15));
    assert_eq!(job.success_record_count(), Some(135));
    let out = stack
        .object(&format!("output/{}/in.jsonl.out", job_id(&arn)))
        .await;
    let errors: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("error").is_some())
        .collect();
    assert_eq!(errors.len(), 15);
    for line in &errors {
        assert_eq!(line["error"]["errorCode"], 400);
        assert!(line["error"]["errorMessage"].is_string());
        assert!(line["recordId"].is_string() && line["modelInput"].is_object());
        assert!(line.get("modelOutput").is_none());
    }
}

#[tokio::test]
async fn a_stopped_job_ends_stopped() {
    let stack = stack("stop").await;
    stack.emulator.configure(json!({"batchStepMs": 200})).await;
    stack
        .upload("in.jsonl", jsonl((0..150).map(converse_record)))
        .await;
    let arn = stack.start("to-stop", "in.jsonl").await;
    stack
        .bedrock
        .stop_model_invocation_job()
        .job_identifier(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stack.get(&arn).await.status(),
        Some(&ModelInvocationJobStatus::Stopping)
    );
    let job = stack.ended(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Stopped));
    assert!(job.end_time().is_some());
}

#[tokio::test]
async fn unknown_jobs_are_resource_not_found_and_bad_requests_validation_errors() {
    let stack = stack("errors").await;
    let missing = stack
        .bedrock
        .get_model_invocation_job()
        .job_identifier("abcdefghijkl")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
    let by_arn = stack
        .bedrock
        .stop_model_invocation_job()
        .job_identifier("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghijkl")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(by_arn.is_resource_not_found_exception(), "{by_arn:?}");

    let provisioned = stack
        .create("pt", "in.jsonl")
        .model_id("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123def456")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(provisioned.is_validation_exception(), "{provisioned:?}");
    let bad_name = stack
        .create("bad name!", "in.jsonl")
        .timeout_duration_in_hours(12)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(bad_name.is_validation_exception(), "{bad_name:?}");
    assert!(
        bad_name
            .message()
            .unwrap()
            .starts_with("2 validation errors detected"),
        "{bad_name:?}"
    );
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let stack = stack("list").await;
    stack
        .emulator
        .configure(json!({"batchStepMs": 60000}))
        .await;
    let mut arns = Vec::new();
    for name in ["nightly-1", "nightly-2", "adhoc-1", "nightly-3", "adhoc-2"] {
        arns.push(
            stack
                .create(name, "in.jsonl")
                .send()
                .await
                .unwrap()
                .job_arn()
                .to_owned(),
        );
    }
    stack
        .bedrock
        .stop_model_invocation_job()
        .job_identifier(&arns[0])
        .send()
        .await
        .unwrap();

    let nightly = stack
        .bedrock
        .list_model_invocation_jobs()
        .name_contains("nightly")
        .sort_by(SortJobsBy::CreationTime)
        .sort_order(SortOrder::Ascending)
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = nightly
        .invocation_job_summaries()
        .iter()
        .map(|j| j.job_name())
        .collect();
    assert_eq!(names, ["nightly-1", "nightly-2", "nightly-3"]);

    let stopping = stack
        .bedrock
        .list_model_invocation_jobs()
        .status_equals(ModelInvocationJobStatus::Stopping)
        .send()
        .await
        .unwrap();
    assert_eq!(stopping.invocation_job_summaries().len(), 1);
    assert_eq!(stopping.invocation_job_summaries()[0].job_arn(), arns[0]);

    let third = stack.get(&arns[2]).await;
    let after = stack
        .bedrock
        .list_model_invocation_jobs()
        .submit_time_after(aws_sdk_bedrock::primitives::DateTime::from_secs(
            third.submit_time().secs() - 3600,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(after.invocation_job_summaries().len(), 5);
    let before = stack
        .bedrock
        .list_model_invocation_jobs()
        .submit_time_before(aws_sdk_bedrock::primitives::DateTime::from_secs(
            third.submit_time().secs() - 3600,
        ))
        .send()
        .await
        .unwrap();
    assert!(before.invocation_job_summaries().is_empty());

    // Pages of two, newest first (the default order), through the SDK's paginator.
    let mut pages = stack
        .bedrock
        .list_model_invocation_jobs()
        .max_results(2)
        .into_paginator()
        .send();
    let mut seen = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        assert!(page.invocation_job_summaries().len() <= 2);
        seen.extend(
            page.invocation_job_summaries()
                .iter()
                .map(|j| j.job_arn().to_owned()),
        );
    }
    assert_eq!(page_count, 3);
    let newest_first: Vec<String> = arns.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let error = stack
        .bedrock
        .list_model_invocation_jobs()
        .max_results(1001)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_validation_exception(), "{error:?}");
}

#[tokio::test]
async fn with_events_off_a_batch_finishes_by_polling_alone() {
    let stack = stack("quiet").await;
    stack
        .emulator
        .configure(json!({"eventsEnabled": false, "batchMinRecords": 1}))
        .await;
    stack
        .upload("in.jsonl", jsonl((0..5).map(converse_record)))
        .await;
    let arn = stack.start("quiet", "in.jsonl").await;
    let job = stack.ended(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Completed));
    assert!(stack.events().await.is_empty());
}
