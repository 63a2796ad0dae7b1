#![allow(clippy::expect_used, clippy::unwrap_used)]
//! batch-submit and batch-status against the local stack: the batch bucket and registry on
//! moto, Bedrock's batch API on the emulator, batch ends announced on moto's EventBridge.

use domain::batch::{Announcement, BatchStatus};
use integration_tests::batch::{announcements, BatchHarness};
use integration_tests::invoke::{unique, HAIKU};
use integration_tests::Emulator;
use serde_json::{json, Value};
use shared::batch::Invocation;

/// Emulator jobs that move every few milliseconds.
async fn fast_emulator() -> Emulator {
    let emulator = Emulator::reset().await;
    emulator.configure(json!({"batchStepMs": 10})).await;
    emulator
}

fn records(count: usize, label: &str) -> Vec<Value> {
    let run = unique(label);
    (0..count)
        .map(|i| json!({"recordId": format!("rec-{i:05}"), "prompt": format!("{run}: question {i}")}))
        .collect()
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["recordId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_hundred_fifty_records_become_one_job_and_come_back_in_input_order() {
    let emulator = fast_emulator().await;
    // No state-change events at all: the schedule alone brings the batch to its end.
    emulator.configure(json!({"eventsEnabled": false})).await;
    let harness = BatchHarness::new(&[]).await;
    let input = records(250, "api batch");
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(reply.body["jobs"][0]["status"], "Submitted");
    let batch_id = reply.body["batchId"].as_str().unwrap().to_owned();

    let batch = harness.schedule_until_ended(&batch_id).await;
    assert_eq!(batch.status, BatchStatus::Completed);
    let lines = harness.results(&batch).await;
    assert_eq!(
        ids(&lines),
        ids(&input),
        "every record once, in input order"
    );
    assert!(lines
        .iter()
        .all(|l| l["text"].is_string() && l["usage"]["outputTokens"].as_u64() > Some(0)));
    let summary = batch.summary.unwrap();
    assert_eq!(
        (summary.total, summary.succeeded, summary.failed),
        (250, 250, 0)
    );
    assert!((summary.cost_usd - summary.on_demand_cost_usd * 0.5).abs() < 1e-9);

    // Its end was announced once on the stack's bus (moto's EventBridge), for subscribers.
    let announced = announcements(&batch_id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["source"], "bedrock-toolkit.batch");
    assert_eq!(announced[0]["detail-type"], "Batch Ended");
    assert_eq!(announced[0]["detail"]["status"], "Completed");
    assert!(announced[0]["detail"]["resultsKey"]
        .as_str()
        .unwrap()
        .ends_with("results.jsonl"));
    assert_eq!(
        harness.batch(&batch_id).await.announcement,
        Some(Announcement::Announced)
    );

    let status = harness.get(&batch_id).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["status"], "Completed");
    assert_eq!(status.body["records"]["succeeded"], 250);
    assert!(status.body["results"]
        .as_str()
        .unwrap()
        .ends_with("/results.jsonl"));
}

#[tokio::test]
async fn a_batch_under_the_minimum_is_answered_directly_in_the_same_format() {
    let emulator = fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let input = records(40, "direct batch");
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["direct"], true);
    assert_eq!(
        reply.body["status"], "Queued",
        "answered later, by batch-status"
    );
    assert_eq!(emulator.calls(HAIKU).await, 0);
    let batch = harness
        .schedule_until_ended(reply.body["batchId"].as_str().unwrap())
        .await;
    assert_eq!(batch.status, BatchStatus::Completed);
    let lines = harness.results(&batch).await;
    assert_eq!(ids(&lines), ids(&input));
    assert!(lines
        .iter()
        .all(|l| l["text"].is_string() && l["stopReason"] == "end_turn"));
    assert_eq!(
        emulator.calls(HAIKU).await,
        40,
        "one on-demand call a record"
    );

    let refusing = BatchHarness::new(&[("BATCH_SMALL_POLICY", "reject")]).await;
    let reply = refusing
        .submit(&json!({"modelId": HAIKU, "records": records(40, "refused")}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["code"], "TooFewRecords");
}

#[tokio::test]
async fn one_bad_record_refuses_the_whole_batch_naming_it() {
    let emulator = fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let mut input = records(150, "bad batch");
    input[7] = json!({"recordId": "rec-00007", "messages": [{"role": "assistant", "content": [{"text": "hi"}]}]});
    input[9] = json!({"recordId": "rec-00001", "prompt": "a duplicate id"});
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.body["error"];
    assert_eq!(error["code"], "InvalidRecords");
    assert_eq!(error["problemCount"], 2);
    assert_eq!(error["problems"][0]["position"], 7);
    assert!(error["problems"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("duplicate"));
    assert!(error["message"].as_str().unwrap().contains("records[7]"));
    assert_eq!(emulator.calls(HAIKU).await, 0, "nothing submitted");
}

#[tokio::test]
async fn the_same_request_twice_makes_one_batch_and_one_job() {
    fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let body = json!({"modelId": HAIKU, "records": records(120, "twice")});
    let first = harness.submit(&body).await;
    let second = harness.submit(&body).await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(first.body["batchId"], second.body["batchId"]);
    assert_eq!(
        first.body["jobs"][0]["jobArn"],
        second.body["jobs"][0]["jobArn"]
    );
}

#[tokio::test]
async fn per_record_failures_show_in_results_and_counts() {
    let emulator = fast_emulator().await;
    emulator
        .configure(json!({"batchRecordErrorRate": 0.1}))
        .await;
    let harness = BatchHarness::new(&[]).await;
    let input = records(200, "failing records");
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    let batch_id = reply.body["batchId"].as_str().unwrap().to_owned();
    let batch = harness.schedule_until_ended(&batch_id).await;
    assert_eq!(batch.status, BatchStatus::PartiallyCompleted);
    let lines = harness.results(&batch).await;
    assert_eq!(ids(&lines), ids(&input));
    let failed = lines.iter().filter(|l| l["error"].is_object()).count();
    assert_eq!(failed, 20);
    let summary = batch.summary.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (180, 20));
    let status = harness.get(&batch_id).await;
    assert_eq!(status.body["records"]["failed"], 20);
}

#[tokio::test]
async fn a_batch_above_the_job_maximum_is_split_and_merged_back_in_order() {
    let emulator = fast_emulator().await;
    emulator.configure(json!({"batchMinRecords": 10})).await;
    let harness = BatchHarness::new(&[
        ("BATCH_MIN_RECORDS", "10"),
        ("BATCH_MAX_RECORDS", "100"),
        ("BATCH_MAX_BATCH_RECORDS", "10000"),
    ])
    .await;
    let input = records(250, "split batch");
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let sizes: Vec<u64> = reply.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["recordCount"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![84, 83, 83]);
    let batch = harness
        .schedule_until_ended(reply.body["batchId"].as_str().unwrap())
        .await;
    assert_eq!(batch.status, BatchStatus::Completed);
    assert_eq!(
        ids(&harness.results(&batch).await),
        ids(&input),
        "one merged result, in order"
    );
}

#[tokio::test]
async fn with_the_quota_at_one_a_second_batch_waits_queued_then_runs() {
    let emulator = fast_emulator().await;
    emulator
        .configure(json!({"batchConcurrentJobQuota": 1}))
        .await;
    let harness = BatchHarness::new(&[]).await;
    let first = harness
        .submit(&json!({"modelId": HAIKU, "records": records(120, "first")}))
        .await;
    let second = harness
        .submit(&json!({"modelId": HAIKU, "records": records(120, "second")}))
        .await;
    assert_eq!(
        first.body["jobs"][0]["status"], "Submitted",
        "{}",
        first.body
    );
    assert_eq!(second.status, 202, "{}", second.body);
    assert_eq!(second.body["status"], "Queued");
    assert_eq!(
        second.body["jobs"][0]["jobArn"],
        Value::Null,
        "not submitted, not lost"
    );

    let first = harness
        .schedule_until_ended(first.body["batchId"].as_str().unwrap())
        .await;
    assert_eq!(first.status, BatchStatus::Completed);
    let second = harness
        .schedule_until_ended(second.body["batchId"].as_str().unwrap())
        .await;
    assert_eq!(second.status, BatchStatus::Completed);
    assert_eq!(harness.results(&second).await.len(), 120);
}

/// Bedrock's state-change events alone (as the EventBridge rule delivers them) bring a batch
/// to its end.
#[tokio::test]
async fn job_state_change_events_advance_the_batch() {
    let emulator = fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": records(150, "events")}))
        .await;
    let batch_id = reply.body["batchId"].as_str().unwrap().to_owned();
    let mut delivered = 0;
    for _ in 0..600 {
        let events: Value = emulator
            .http()
            .get(emulator.url("/_emulator/events"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = events["events"].as_array().cloned().unwrap_or_default();
        for event in &events[delivered.min(events.len())..] {
            assert_eq!(event["detail-type"], "Batch Inference Job State Change");
            harness.status.on_event(event.clone()).await.unwrap();
        }
        delivered = events.len();
        if harness.batch(&batch_id).await.status.is_final() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let batch = harness.batch(&batch_id).await;
    assert_eq!(batch.status, BatchStatus::Completed, "{batch:?}");
    assert!(
        delivered >= 4,
        "Submitted, Validating, Scheduled, InProgress, Completed…"
    );
    // The event that ended it announced it, once.
    assert_eq!(batch.announcement, Some(Announcement::Announced));
    let announced = announcements(&batch_id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["detail"]["status"], "Completed");
}

/// EventBridge refusing the announcement (here: a bus that does not exist) neither holds back
/// the merge nor the results; the batch records its announcement as pending, and the first
/// schedule run that reaches EventBridge announces it, once.
#[tokio::test]
async fn a_failed_announcement_never_holds_back_the_results_and_a_later_run_sends_it() {
    fast_emulator().await;
    let unreachable = BatchHarness::new(&[("BATCH_EVENT_BUS", "no-such-bus")]).await;
    let input = records(120, "unannounced");
    let reply = unreachable
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let batch_id = reply.body["batchId"].as_str().unwrap().to_owned();

    let batch = unreachable.schedule_until_ended(&batch_id).await;
    assert_eq!(batch.status, BatchStatus::Completed);
    assert_eq!(batch.announcement, Some(Announcement::Pending));
    assert_eq!(ids(&unreachable.results(&batch).await), ids(&input));
    let status = unreachable.get(&batch_id).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["status"], "Completed");
    assert_eq!(status.body["announcement"], "Pending");
    let results = unreachable
        .route("GET", &format!("/v1/batches/{batch_id}/results"))
        .await;
    assert_eq!(results.status, 200, "{}", results.body);
    assert!(announcements(&batch_id).await.is_empty());

    // Every schedule run tries again; while EventBridge refuses, the batch stays as it is.
    let version = batch.version;
    let sweep = unreachable
        .status
        .on_schedule(&Invocation::longest())
        .await
        .unwrap();
    assert!(sweep.unannounced >= 1, "{sweep:?}");
    let still = unreachable.batch(&batch_id).await;
    assert_eq!(
        (still.announcement, still.version),
        (Some(Announcement::Pending), version)
    );

    // The bus reachable again: the next run announces it, once, and records it.
    let reachable = BatchHarness::new(&[]).await;
    reachable
        .status
        .on_schedule(&Invocation::longest())
        .await
        .unwrap();
    let announced = announcements(&batch_id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["detail"]["status"], "Completed");
    assert_eq!(
        announced[0]["detail"]["resultsKey"].as_str(),
        batch.results_key.as_deref()
    );
    let after = reachable.batch(&batch_id).await;
    assert_eq!(after.announcement, Some(Announcement::Announced));
    assert_eq!(
        after.updated_at, batch.updated_at,
        "the batch still ended when it ended"
    );
    reachable
        .status
        .on_schedule(&Invocation::longest())
        .await
        .unwrap();
    assert_eq!(announcements(&batch_id).await.len(), 1, "announced once");
}

/// A key that no other test uses under the upload prefix of the harness's caller (the role
/// of the HTTP API fixture), so its batches are that caller's to read.
fn upload_key(label: &str) -> String {
    format!(
        "batch-input/role/123456789012/app-team/{}.jsonl",
        unique(label).replace([' ', ':', '#'], "-")
    )
}

fn jsonl(lines: &[Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn an_upload_overwritten_before_its_event_is_handled_is_read_as_it_was() {
    fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let key = upload_key("overwritten");
    let first = harness
        .put_upload(&key, jsonl(&records(120, "first")), Some(HAIKU))
        .await;
    let second = harness
        .put_upload(&key, jsonl(&records(150, "second")), Some(HAIKU))
        .await;
    let answer = harness.submit.on_event(first).await.unwrap();
    let batch = harness
        .batch(answer["batches"][0]["batchId"].as_str().unwrap())
        .await;
    assert_eq!(batch.record_count, 120, "the version its event named");
    let answer = harness.submit.on_event(second).await.unwrap();
    let newer = harness
        .batch(answer["batches"][0]["batchId"].as_str().unwrap())
        .await;
    assert_eq!(newer.record_count, 150);
    assert_ne!(newer.batch_id, batch.batch_id);
}

#[tokio::test]
async fn the_same_upload_event_three_times_makes_one_batch() {
    fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let input = records(130, "uploaded");
    let key = upload_key("upload");
    let batch_ids = harness.upload(&key, jsonl(&input), Some(HAIKU), 3).await;
    assert!(batch_ids.windows(2).all(|w| w[0] == w[1]), "{batch_ids:?}");
    let batch = harness.schedule_until_ended(&batch_ids[0]).await;
    assert_eq!(batch.status, BatchStatus::Completed);
    assert_eq!(batch.jobs.len(), 1, "one job, not three");
    assert!(batch.source.ends_with(&key));
    assert_eq!(ids(&harness.results(&batch).await), ids(&input));
}

#[tokio::test]
async fn an_upload_with_a_malformed_line_7_is_rejected_naming_line_7() {
    let emulator = fast_emulator().await;
    let harness = BatchHarness::new(&[("BATCH_DEFAULT_MODEL", HAIKU)]).await;
    let mut body = jsonl(&records(150, "malformed"));
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let mut broken = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i == 6 {
            broken.extend_from_slice(b"{\"recordId\": \"rec-00006\", \"prompt\": ");
        } else {
            broken.extend_from_slice(line);
        }
        broken.push(b'\n');
    }
    body = broken;
    let key = upload_key("malformed");
    let batch_ids = harness.upload(&key, body, None, 1).await;
    let batch = harness.batch(&batch_ids[0]).await;
    assert_eq!(batch.status, BatchStatus::Rejected);
    let rejection = batch.rejection.clone().unwrap();
    assert_eq!(rejection.problem_count, 1);
    assert_eq!(
        rejection.problems[0].position, 7,
        "line numbers count from 1"
    );
    assert!(rejection.problems[0].reason.contains("not JSON"));
    assert!(batch.jobs.is_empty(), "nothing submitted");
    let status = harness.get(&batch_ids[0]).await;
    assert_eq!(status.body["status"], "Rejected");
    assert_eq!(status.body["rejection"]["problems"][0]["position"], 7);
    let stats: Value = emulator
        .http()
        .get(emulator.url("/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["batchJobs"]
            .as_object()
            .is_none_or(|jobs| jobs.values().all(|n| n == 0)),
        "{stats}"
    );
}

#[tokio::test]
async fn a_stopped_batch_says_so() {
    let emulator = Emulator::reset().await;
    // Slow enough that the job is still validating when the stop arrives.
    emulator.configure(json!({"batchStepMs": 60000})).await;
    let harness = BatchHarness::new(&[]).await;
    let input = records(150, "stopped");
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": input}))
        .await;
    let batch_id = reply.body["batchId"].as_str().unwrap().to_owned();
    let stopped = harness.stop(&batch_id).await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    emulator.configure(json!({"batchStepMs": 10})).await;
    let batch = harness.schedule_until_ended(&batch_id).await;
    assert_eq!(batch.status, BatchStatus::Stopped);
    let lines = harness.results(&batch).await;
    assert_eq!(ids(&lines), ids(&input), "every record still appears once");
    assert!(lines.iter().all(|l| l["error"]["code"] == "NotProcessed"));
    assert_eq!(harness.get(&batch_id).await.body["status"], "Stopped");
}

#[tokio::test]
async fn batches_are_listed_newest_first_and_results_fetched_by_url() {
    let emulator = fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let reply = harness
        .submit(&json!({"modelId": HAIKU, "records": records(30, "listed")}))
        .await;
    let batch_id = reply.body["batchId"].as_str().unwrap().to_owned();
    // A small batch: batch-status answers it (here, the schedule's run).
    harness.schedule_until_ended(&batch_id).await;
    let page = harness.route("GET", "/v1/batches?limit=1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["batches"].as_array().unwrap().len(), 1);
    let next = page.body["nextToken"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let second = harness
        .route("GET", &format!("/v1/batches?limit=100&nextToken={next}"))
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(
        harness.route("GET", "/v1/batches?limit=0").await.status,
        400
    );
    assert_eq!(
        harness
            .route("GET", "/v1/batches?nextToken=bogus")
            .await
            .status,
        400
    );

    let results = harness
        .route("GET", &format!("/v1/batches/{batch_id}/results"))
        .await;
    assert_eq!(results.status, 200, "{}", results.body);
    let url = results.body["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature"), "{url}");
    let text = emulator
        .http()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 30);

    // A batch whose jobs are still running has no results yet.
    emulator.configure(json!({"batchStepMs": 60000})).await;
    let running = harness
        .submit(&json!({"modelId": HAIKU, "records": records(120, "running")}))
        .await;
    let running_id = running.body["batchId"].as_str().unwrap();
    let early = harness
        .route("GET", &format!("/v1/batches/{running_id}/results"))
        .await;
    assert_eq!(
        (early.status, early.body["error"]["code"].as_str()),
        (409, Some("ResultsNotReady"))
    );
    assert_eq!(
        harness
            .route("GET", "/v1/batches/nope/elsewhere")
            .await
            .status,
        404
    );
    assert_eq!(
        harness
            .route("POST", &format!("/v1/batches/{running_id}"))
            .await
            .status,
        405
    );
}

/// 120,000 uploaded records: three jobs of 40,000 under the per-job maximum, one merged result.
#[tokio::test]
async fn a_120000_record_upload_becomes_three_jobs_and_one_result() {
    fast_emulator().await;
    let harness = BatchHarness::new(&[]).await;
    let input = records(120_000, "large upload");
    let key = upload_key("large");
    let batch_ids = harness.upload(&key, jsonl(&input), Some(HAIKU), 1).await;
    let batch = harness.batch(&batch_ids[0]).await;
    let sizes: Vec<u64> = batch.jobs.iter().map(|j| j.record_count).collect();
    assert_eq!(sizes, vec![40_000, 40_000, 40_000]);
    let batch = harness.schedule_until_ended(&batch_ids[0]).await;
    assert_eq!(batch.status, BatchStatus::Completed);
    let lines = harness.results(&batch).await;
    assert_eq!(lines.len(), 120_000);
    assert!(ids(&lines)
        .iter()
        .zip(&input)
        .all(|(id, record)| record["recordId"] == id.as_str()));
}

#[tokio::test]
async fn a_small_upload_is_answered_directly() {
    let emulator = fast_emulator().await;
    let harness = BatchHarness::new(&[("BATCH_DEFAULT_MODEL", HAIKU)]).await;
    let input = records(20, "small upload");
    let key = upload_key("small");
    let batch_ids = harness.upload(&key, jsonl(&input), None, 1).await;
    let batch = harness.schedule_until_ended(&batch_ids[0]).await;
    assert_eq!((batch.status, batch.direct), (BatchStatus::Completed, true));
    assert_eq!(ids(&harness.results(&batch).await), ids(&input));
    assert_eq!(emulator.calls(HAIKU).await, 20);
}

/// The S3 adapter's multipart calls as moto answers them: parts of at least 5 MiB but the last,
/// nothing at the key before completion, and an aborted upload leaves neither object nor parts.
#[tokio::test]
async fn results_written_in_parts_appear_whole_on_completion_and_an_aborted_upload_leaves_nothing()
{
    use domain::ports::{ObjectStore, MIN_PART_BYTES};

    let harness = BatchHarness::new(&[]).await;
    let store = &harness.status.store;
    let key = format!(
        "batch-results/{}/results.jsonl",
        unique("parts").replace([' ', ':', '#'], "-")
    );
    let first = vec![b'a'; MIN_PART_BYTES];
    let upload = store.create_upload(&key).await.expect("create");
    let parts = vec![
        store
            .upload_part(&upload, 1, first.clone())
            .await
            .expect("part 1"),
        store
            .upload_part(&upload, 2, b"last\n".to_vec())
            .await
            .expect("part 2"),
    ];
    assert_eq!(
        store.get(&key).await.expect("S3"),
        None,
        "not before completion"
    );
    store
        .complete_upload(&upload, &parts)
        .await
        .expect("complete");
    let whole = store.get(&key).await.expect("S3").expect("the object");
    assert_eq!(whole.len(), MIN_PART_BYTES + 5);
    assert!(whole.starts_with(&first) && whole.ends_with(b"last\n"));

    let dropped = format!("{key}.dropped");
    let upload = store.create_upload(&dropped).await.expect("create");
    store.upload_part(&upload, 1, first).await.expect("part 1");
    store.abort_upload(&upload).await.expect("abort");
    assert_eq!(store.get(&dropped).await.expect("S3"), None);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&integration_tests::sdk_config().await)
            .force_path_style(true)
            .build(),
    );
    let open = s3
        .list_multipart_uploads()
        .bucket(integration_tests::stack_var("BATCH_BUCKET_NAME"))
        .prefix(&dropped)
        .send()
        .await
        .expect("ListMultipartUploads");
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}
