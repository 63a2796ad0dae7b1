#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Each of the five functions from its real `main` (the debug binaries `make integration-test`
//! builds), under the Runtime API stand-in, with a clean environment: the variables the
//! template gives the function (resolved to the local stack's names by
//! `scripts/template_env.py`) and the stack's endpoints. What a harness wires differently from
//! a `main` shows up here.

use std::time::Duration;

use domain::ports::TenantKeyStore;
use domain::tenancy::issue_key;
use integration_tests::functions::{
    batch_records, binary, function_env, http_api, rest_invoke, rest_route, s3_created_event,
    scheduled_event, sqs_events,
};
use integration_tests::invoke::{unique, HAIKU};
use integration_tests::{stack_var, Emulator};
use lambda_standin::{Behaviour, Function, Outcome, OutcomeKind, RuntimeApi};
use serde_json::{json, Value};
use shared::adapters::dynamo_tenancy::DynamoDbTenantKeys;

const WITHIN: Duration = Duration::from_secs(60);

async fn start(name: &str, overrides: &[(&str, &str)]) -> (RuntimeApi, Function) {
    let api = RuntimeApi::start(Behaviour::default()).await.unwrap();
    let mut env = function_env(name);
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let function = api.spawn(&binary(name, "debug"), name, env).unwrap();
    (api, function)
}

async fn invoke(api: &RuntimeApi, function: &Function, event: &Value) -> Outcome {
    let outcome = api
        .invoke(function, event.to_string(), WITHIN)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcome.kind,
        OutcomeKind::Response,
        "{}\nlog:\n{}",
        String::from_utf8_lossy(&outcome.body),
        function.log()
    );
    outcome
}

/// The socket of `pid` whose local port is `port`, as its descriptor number in that process.
fn socket_fd(pid: u32, port: u16) -> i32 {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let inode = table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port).then(|| fields[9].to_owned())
        })
        .unwrap_or_else(|| panic!("no socket on local port {port} in process {pid}"));
    let link = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .find(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy() == link)
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("process {pid} holds no descriptor of {link}"))
}

#[tokio::test]
async fn invoke_with_cache_streamed_a_miss_then_a_hit_on_a_connection_without_nagle() {
    Emulator::reset().await;
    let (api, function) = start("invoke-with-cache", &[("RESPONSE_MODE", "streaming")]).await;
    let request = json!({"prompt": unique("mains streamed")});

    let miss = invoke(&api, &function, &rest_invoke(&request)).await;
    assert!(miss.streamed, "streamed mode answers as a stream");
    let answer = miss.http().unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-cache"), Some("MISS"));
    let hit = invoke(&api, &function, &rest_invoke(&request))
        .await
        .http()
        .unwrap();
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.json().unwrap()["text"], answer.json().unwrap()["text"]);

    // A stream's first byte.
    let stream = invoke(
        &api,
        &function,
        &rest_invoke(&json!({"prompt": unique("mains stream"), "stream": true})),
    )
    .await;
    let events = String::from_utf8_lossy(&stream.http().unwrap().body).into_owned();
    assert!(
        events.contains("event: start") && events.contains("event: end"),
        "{events}"
    );

    // A streamed response is several small writes: with Nagle's algorithm on, the second waits
    // for the Runtime API's delayed ACK (40 ms). The function's connection has it off.
    let pid = function.pid().unwrap();
    let clients = api.client_addresses();
    assert!(!clients.is_empty());
    for client in clients {
        let fd = socket_fd(pid, client.port());
        assert!(
            shared::runtime_nodelay::process_socket_has_nodelay(pid, fd).unwrap(),
            "the Runtime API connection from port {} has Nagle's algorithm on",
            client.port()
        );
    }
}

#[tokio::test]
async fn deferred_requests_accepted_by_invoke_with_cache_are_answered_by_batch_status_on_flex() {
    let emulator = Emulator::reset().await;
    let (invoke_api, invoke_fn) =
        start("invoke-with-cache", &[("RESPONSE_MODE", "buffered")]).await;
    let run = unique("mains deferred");
    // The template's simple tier, which a prompt without modelId goes to.
    let model = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"prompt": format!("{run}: {i}"), "within": "PT1H"});
        let accepted = invoke(
            &invoke_api,
            &invoke_fn,
            &rest_route("POST", "/v1/deferred", &body),
        )
        .await
        .http()
        .unwrap();
        assert_eq!(accepted.status, 202, "{:?}", accepted.body);
        let body: Value = serde_json::from_slice(&accepted.body).unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        emulator.calls(model).await,
        0,
        "nothing asked at acceptance"
    );

    // The schedule's run places them: due within the hour, on flex.
    let (status_api, status_fn) = start("batch-status", &[]).await;
    let outcome = invoke(&status_api, &status_fn, &scheduled_event()).await;
    let answer: Value = serde_json::from_slice(&outcome.body).unwrap();
    assert_eq!(answer["deferred"]["answered"]["flex"], 3, "{answer}");
    assert_eq!(emulator.calls(model).await, 3);

    for id in &ids {
        let read = invoke(
            &invoke_api,
            &invoke_fn,
            &rest_route("GET", &format!("/v1/deferred/{id}"), &Value::Null),
        )
        .await
        .http()
        .unwrap();
        assert_eq!(read.status, 200, "{:?}", read.body);
        let body: Value = serde_json::from_slice(&read.body).unwrap();
        assert_eq!(body["status"], "answered", "{body}");
        assert_eq!(body["placement"], "flex");
        assert_eq!(body["deadlineMissed"], false);
    }
    // Its placement metrics, as EMF on stdout.
    assert!(
        status_fn
            .log_lines()
            .iter()
            .any(|l| l.contains("\"DeferredRequests\":3") && l.contains("\"Placement\":\"flex\"")),
        "{}",
        status_fn.log()
    );
}

#[tokio::test]
async fn invoke_with_cache_buffered_a_miss_then_a_hit() {
    Emulator::reset().await;
    let (api, function) = start("invoke-with-cache", &[("RESPONSE_MODE", "buffered")]).await;
    let request = json!({"prompt": unique("mains buffered")});
    let miss = invoke(&api, &function, &rest_invoke(&request)).await;
    assert!(!miss.streamed);
    let answer = miss.http().unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-cache"), Some("MISS"));
    let hit = invoke(&api, &function, &rest_invoke(&request))
        .await
        .http()
        .unwrap();
    assert_eq!(hit.header("x-cache"), Some("HIT"));

    // The invocation's X-Ray trace id is on its metric record and on its log lines.
    let lines: Vec<Value> = function
        .log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let records: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert!(
        records
            .iter()
            .any(|r| r["xrayTraceId"] == miss.trace_id.as_str()),
        "no EMF record carries {}: {records:?}",
        miss.trace_id
    );
    for line in lines.iter().filter(|l| l.get("span").is_some()) {
        assert!(
            line["span"]["xrayTraceId"]
                .as_str()
                .is_some_and(|id| id.starts_with("Root=")),
            "a request's log line without its trace id: {line}"
        );
    }
}

#[tokio::test]
async fn batch_submit_and_batch_status_take_250_records_to_merged_results_and_an_upload() {
    let emulator = Emulator::reset().await;
    emulator
        .configure(json!({"batchStepMs": 10, "eventsEnabled": false}))
        .await;
    let (submit_api, submit) = start("batch-submit", &[("ALLOWED_MODELS", HAIKU)]).await;
    let (status_api, status) = start("batch-status", &[]).await;

    let input = batch_records(250, "mains batch");
    let body = json!({"modelId": HAIKU, "records": input}).to_string();
    let reply = invoke(
        &submit_api,
        &submit,
        &http_api("POST", "/v1/batches", &body),
    )
    .await
    .http()
    .unwrap();
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let batch_id = reply.json().unwrap()["batchId"]
        .as_str()
        .unwrap()
        .to_owned();

    // The schedule alone brings it to its end (the emulator sends no job events here): as the
    // template wires it, each run hands the open batches to the work queue, and each message is
    // an invocation of its own.
    let work_queue = function_env("batch-status")
        .into_iter()
        .find(|(name, _)| name == "BATCH_WORK_QUEUE_URL")
        .map(|(_, url)| url)
        .expect("the template gives batch-status BATCH_WORK_QUEUE_URL");
    let path = format!("/v1/batches/{batch_id}");
    let mut state = Value::Null;
    for _ in 0..400 {
        let run = invoke(&status_api, &status, &scheduled_event())
            .await
            .json()
            .unwrap();
        assert!(run["queued"].as_u64() >= Some(1), "{run}");
        // Other tests' batches may be queued too; this one's state is what counts.
        for message in sqs_events(&work_queue).await {
            let advanced = invoke(&status_api, &status, &message).await.json().unwrap();
            assert!(advanced["batchItemFailures"].is_array(), "{advanced}");
        }
        state = invoke(&status_api, &status, &http_api("GET", &path, ""))
            .await
            .http()
            .unwrap()
            .json()
            .unwrap();
        if state["status"] != "Submitted" && state["status"] != "InProgress" {
            break;
        }
    }
    assert_eq!(
        state["status"],
        "Completed",
        "{state}\nlog:\n{}",
        status.log()
    );
    assert_eq!(state["records"]["succeeded"], 250, "{state}");

    // Another team's role, through the same binaries: A's batch does not exist for it.
    let from_b = |method: &str, path: &str, body: &str| {
        let mut event = http_api(method, path, body);
        event["requestContext"]["authorizer"]["iam"]["userArn"] =
            json!("arn:aws:sts::123456789012:assumed-role/other-team/bob");
        event
    };
    let listed = invoke(&status_api, &status, &from_b("GET", "/v1/batches", ""))
        .await
        .http()
        .unwrap();
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(
        listed.json().unwrap()["batches"],
        json!([]),
        "B lists A's batch"
    );
    for (method, path) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/results")),
        ("DELETE", path.clone()),
    ] {
        let refused = invoke(&status_api, &status, &from_b(method, &path, ""))
            .await
            .http()
            .unwrap();
        assert_eq!(refused.status, 404, "{method} {path}: {:?}", refused.body);
    }
    let b_submits = invoke(&submit_api, &submit, &from_b("POST", "/v1/batches", &body))
        .await
        .http()
        .unwrap();
    assert_eq!(b_submits.status, 202, "{:?}", b_submits.body);
    assert_ne!(
        b_submits.json().unwrap()["batchId"],
        json!(batch_id),
        "the same records from B are B's own batch"
    );
    let mine = invoke(
        &status_api,
        &status,
        &http_api("GET", "/v1/batches?limit=100", ""),
    )
    .await
    .http()
    .unwrap()
    .json()
    .unwrap();
    let listed_ids: Vec<&Value> = mine["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["batchId"])
        .collect();
    assert!(listed_ids.contains(&&json!(batch_id)), "{mine}");

    // The merged results, through the presigned URL batch-status hands out.
    let results = invoke(
        &status_api,
        &status,
        &http_api("GET", &format!("{path}/results"), ""),
    )
    .await
    .http()
    .unwrap();
    assert_eq!(results.status, 200, "{:?}", results.body);
    let url = results.json().unwrap()["url"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| results.header("location").map(str::to_owned))
        .unwrap_or_else(|| panic!("no results URL: {:?}", results.body));
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["recordId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = input
        .iter()
        .map(|r| r["recordId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected, "every record once, in input order");

    // A small batch (under BATCH_MIN_RECORDS): batch-submit answers 202 at once, having only
    // registered it and handed it to the work queue; batch-status answers it from the queue's
    // message within its invocation's time (the deadline the Runtime API gives).
    let calls_before = emulator.calls(HAIKU).await;
    let small = json!({"modelId": HAIKU, "records": batch_records(5, "mains small")}).to_string();
    let queued = invoke(
        &submit_api,
        &submit,
        &http_api("POST", "/v1/batches", &small),
    )
    .await
    .http()
    .unwrap();
    assert_eq!(queued.status, 202, "{:?}", queued.body);
    let queued = queued.json().unwrap();
    assert_eq!(
        (&queued["status"], &queued["direct"]),
        (&json!("Queued"), &json!(true))
    );
    assert_eq!(
        emulator.calls(HAIKU).await,
        calls_before,
        "no model call before 202"
    );
    let messages = sqs_events(&work_queue).await;
    assert!(
        !messages.is_empty(),
        "batch-submit hands the small batch to the work queue"
    );
    for message in messages {
        let advanced = invoke(&status_api, &status, &message).await.json().unwrap();
        assert_eq!(advanced["batchItemFailures"], json!([]), "{advanced}");
    }
    let small_state = invoke(
        &status_api,
        &status,
        &http_api(
            "GET",
            &format!("/v1/batches/{}", queued["batchId"].as_str().unwrap()),
            "",
        ),
    )
    .await
    .http()
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(
        small_state["status"],
        "Completed",
        "{small_state}\nlog:\n{}",
        status.log()
    );
    assert_eq!(small_state["records"]["succeeded"], 5, "{small_state}");
    assert_eq!(
        emulator.calls(HAIKU).await,
        calls_before + 5,
        "one call a record"
    );

    // An S3 upload becomes a batch too, counted against its tenant's budget (the template gives
    // batch-submit the keys and spend tables): within a $5 budget it runs, within $0.000001 it
    // is a Rejected batch.
    let keys = DynamoDbTenantKeys::new(
        aws_sdk_dynamodb::Client::new(&integration_tests::sdk_config().await),
        stack_var("TENANT_KEYS_TABLE_NAME"),
    );
    let tenant = format!(
        "team-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    for (tenant, budget) in [(tenant.clone(), 5.0), (format!("{tenant}-poor"), 0.000_001)] {
        let issued = issue_key(&tenant, vec![], Some(budget), None, chrono::Utc::now()).unwrap();
        keys.create(&issued.record).await.unwrap();
    }
    let bucket = stack_var("BATCH_BUCKET_NAME");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&integration_tests::sdk_config().await)
            .force_path_style(true)
            .build(),
    );
    for (tenant, within_budget) in [(tenant.clone(), true), (format!("{tenant}-poor"), false)] {
        let key = format!("batch-input/tenant/{tenant}/upload.jsonl");
        let lines: String = batch_records(120, "mains upload")
            .iter()
            .map(|r| format!("{r}\n"))
            .collect();
        let size = lines.len();
        let put = s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .metadata("model-id", HAIKU)
            .body(lines.into_bytes().into())
            .send()
            .await
            .unwrap();
        let event = s3_created_event(&bucket, &key, size, put.e_tag(), put.version_id());
        let started = invoke(&submit_api, &submit, &event).await.json().unwrap();
        let batches = started["batches"].as_array().unwrap();
        assert_eq!(batches.len(), 1, "{started}");
        let rejected = batches[0]["status"] == "Rejected";
        assert_eq!(
            rejected,
            !within_budget,
            "{started}\nlog:\n{}",
            submit.log()
        );
    }
}

#[tokio::test]
async fn capacity_runs_on_its_schedule_and_answers_get_capacity() {
    Emulator::reset().await;
    let (api, function) = start("capacity", &[]).await;
    let report = invoke(&api, &function, &scheduled_event())
        .await
        .json()
        .unwrap();
    assert!(report.is_object(), "{report}");
    let answer = invoke(&api, &function, &http_api("GET", "/v1/capacity", ""))
        .await
        .http()
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(
        answer.json().unwrap()["capacities"].is_array(),
        "{:?}",
        answer.body
    );
}

#[tokio::test]
async fn metrics_publisher_runs_on_its_schedule() {
    Emulator::reset().await;
    let (api, function) = start("metrics-publisher", &[]).await;
    let summary = invoke(&api, &function, &scheduled_event())
        .await
        .json()
        .unwrap();
    assert!(summary.is_object(), "{summary}\nlog:\n{}", function.log());
}
