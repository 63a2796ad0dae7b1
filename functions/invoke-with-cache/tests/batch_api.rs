//! OpenAI's files and batches routes through the handler, with real API Gateway events and
//! in-memory ports: upload, create, the requests deferred, the output files once they ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{build_with_tenancy, bytes_of, http_event, read, FakeModel, HAIKU};
use domain::deferred::{DeferredStatus, Placement};
use domain::ports::{Clock, DeferredStore, TenantKeyStore};
use domain::tenancy::issue_key;
use serde_json::{json, Value};
use shared::adapters::memory_tenancy::InMemoryTenancy;
use test_support::events::ApiEvent;

const BOUNDARY: &str = "----bgw-test-boundary";

async fn tenant_key(tenancy: &InMemoryTenancy, tenant: &str) -> String {
    let issued = issue_key(tenant, vec![], None, None, common::clock().now()).unwrap();
    tenancy.create(&issued.record).await.unwrap();
    issued.key
}

fn upload(key: &str, purpose: &str, content: &str) -> lambda_http::Request {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"requests.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{content}\r\n--{BOUNDARY}--\r\n"
    );
    ApiEvent::http("POST", "/openai/v1/files")
        .bearer(key)
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .raw_body(Some(&body))
        .request()
}

fn lines(count: usize) -> String {
    (0..count)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": HAIKU, "messages": [{"role": "user", "content": format!("question {i}")}], "max_tokens": 50}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_batch_file_becomes_deferred_requests_and_its_answers_an_output_file() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant_key(&tenancy, "acme").await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy.clone());

    let (status, _, file) = read(app.handle(upload(&key, "batch", &lines(3))).await);
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    let file_id = file["id"].as_str().unwrap();
    let content = bytes_of(
        app.handle(http_event(
            "GET",
            &format!("/openai/v1/files/{file_id}/content"),
            Some(&key),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(String::from_utf8(content).unwrap(), lines(3));

    let (status, _, batch) = read(
        app.handle(http_event(
            "POST",
            "/openai/v1/batches",
            Some(&key),
            &json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        ))
        .await,
    );
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(batch["request_counts"]["total"], 3);
    let batch_id = batch["id"].as_str().unwrap();

    // The schedule answers them (here by hand): two answered on flex, one refused by Bedrock.
    let store = app.deferred_store().unwrap();
    let pending = store.pending(100).await.unwrap();
    assert_eq!(pending.len(), 3);
    let now = common::clock().now().timestamp();
    assert!(pending
        .iter()
        .all(|r| r.deadline == now + 24 * 3600 && r.group.as_deref() == Some(batch_id)));
    for mut request in pending {
        request.version += 1;
        if request.custom_id.as_deref() == Some("req-1") {
            request.status = DeferredStatus::Failed;
            request.error = Some(domain::batch::ResultError {
                code: "Validation".into(),
                message: "refused".into(),
            });
        } else {
            request.status = DeferredStatus::Answered;
            request.placement = Some(Placement::Flex);
            request.answered_at = Some(now + 60);
            request.answer = Some(domain::conversation::ModelAnswer {
                message: domain::conversation::Message::assistant_text("an answer"),
                stop_reason: "end_turn".into(),
                usage: domain::conversation::Usage::new(10, 5),
                service_tier: None,
                invoked_model: None,
                latency: None,
            });
        }
        assert!(store.update(&request).await.unwrap());
    }

    let retrieve = || {
        http_event(
            "GET",
            &format!("/openai/v1/batches/{batch_id}"),
            Some(&key),
            &Value::Null,
        )
    };
    let (_, _, ended) = read(app.handle(retrieve()).await);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(
        ended["request_counts"],
        json!({"total": 3, "completed": 2, "failed": 1})
    );
    let content = |id: &str| {
        let app = app.clone();
        let key = key.clone();
        let id = id.to_owned();
        async move {
            let bytes = bytes_of(
                app.handle(http_event(
                    "GET",
                    &format!("/openai/v1/files/{id}/content"),
                    Some(&key),
                    &Value::Null,
                ))
                .await,
            );
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let output = content(ended["output_file_id"].as_str().unwrap()).await;
    assert_eq!(output.len(), 2);
    assert_eq!(output[0]["custom_id"], "req-0");
    assert_eq!(output[0]["response"]["status_code"], 200);
    assert_eq!(output[0]["response"]["body"]["object"], "chat.completion");
    assert_eq!(
        output[0]["response"]["body"]["choices"][0]["message"]["content"],
        "an answer"
    );
    let errors = content(ended["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["custom_id"], "req-1");
    assert_eq!(errors[0]["error"]["code"], "Validation");

    // Listed for its owner; as absent as none for another tenant.
    let (_, _, list) = read(
        app.handle(http_event(
            "GET",
            "/openai/v1/batches",
            Some(&key),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(list["data"][0]["id"], batch_id);
    let other = tenant_key(&tenancy, "globex").await;
    let (status, _, _) = read(
        app.handle(http_event(
            "GET",
            &format!("/openai/v1/batches/{batch_id}"),
            Some(&other),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(status, 404);
    let (status, _, _) = read(
        app.handle(http_event(
            "GET",
            &format!("/openai/v1/files/{file_id}/content"),
            Some(&other),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(status, 404);
}

#[tokio::test]
async fn cancelling_fails_what_is_not_placed_yet() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant_key(&tenancy, "acme").await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let (_, _, file) = read(app.handle(upload(&key, "batch", &lines(2))).await);
    let (_, _, batch) = read(
        app.handle(http_event(
            "POST",
            "/openai/v1/batches",
            Some(&key),
            &json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        ))
        .await,
    );
    let (status, _, cancelled) = read(
        app.handle(http_event(
            "POST",
            &format!(
                "/openai/v1/batches/{}/cancel",
                batch["id"].as_str().unwrap()
            ),
            Some(&key),
            &Value::Null,
        ))
        .await,
    );
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["request_counts"]["failed"], 2);
    assert!(app
        .deferred_store()
        .unwrap()
        .pending(10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn bad_files_and_batches_are_refused_in_openais_shape() {
    let tenancy = Arc::new(InMemoryTenancy::default());
    let key = tenant_key(&tenancy, "acme").await;
    let (app, _) = build_with_tenancy(&[], FakeModel::answering(), tenancy);
    let (status, _, refused) = read(app.handle(upload(&key, "fine-tune", "{}")).await);
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["param"], "purpose");

    let bad =
        "{\"custom_id\": \"a\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", \"body\": {}}";
    let (_, _, file) = read(app.handle(upload(&key, "batch", bad)).await);
    let create = |body: Value| http_event("POST", "/openai/v1/batches", Some(&key), &body);
    let (status, _, refused) = read(
        app.handle(create(json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})))
            .await,
    );
    assert_eq!(status, 400);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{refused}"
    );
    let (status, _, refused) = read(
        app.handle(create(json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "1h"})))
            .await,
    );
    assert_eq!(
        (status, refused["error"]["param"].as_str()),
        (400, Some("completion_window"))
    );
    let (status, _, _) = read(
        app.handle(create(json!({"input_file_id": "file-0000", "endpoint": "/v1/chat/completions", "completion_window": "24h"})))
            .await,
    );
    assert_eq!(status, 404);
    // Without a key: OpenAI's 401.
    let (status, _, _) = read(
        app.handle(http_event("GET", "/openai/v1/batches", None, &Value::Null))
            .await,
    );
    assert_eq!(status, 401);
}
