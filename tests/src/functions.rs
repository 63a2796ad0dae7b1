//! The functions' real binaries, for tests and benches that run them from their `main` under
//! the Runtime API stand-in (`lambda-standin`) against the local stack.

use std::path::PathBuf;

/// A function's binary in `target/<profile>/`; the message says how to build it.
pub fn binary(name: &str, profile: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(profile)
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build{} -p {name}`; `make integration-test` and `make bench` do)",
        path.display(),
        if profile == "release" { " --release" } else { "" },
    );
    path
}

/// The local stack's variables (endpoints, credentials, Region, resource names), read from the
/// env file `scripts/stack.sh up` wrote, so that a function started with a clean environment
/// reaches the stack and nothing else.
pub fn stack_env() -> Vec<(String, String)> {
    let dir = crate::stack_var("STACK_DIR");
    let path = PathBuf::from(dir).join("env");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

/// The environment a function gets on the local stack: the stack's variables, then the ones the
/// template gives that function (`scripts/template_env.py`, references resolved to the stack's
/// resource names, parameters at their defaults).
pub fn function_env(binary_name: &str) -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/template_env.py"))
        .arg(root.join("infra/template.yaml"))
        // The one value the local stack has no resource for: Bedrock's batch service role.
        .args([
            "--set",
            &format!("BATCH_ROLE_ARN={}", crate::batch::ROLE_ARN),
        ])
        .output()
        .expect("run scripts/template_env.py");
    assert!(
        output.status.success(),
        "scripts/template_env.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let functions: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("template_env.py prints JSON");
    let function = functions
        .as_object()
        .and_then(|all| all.values().find(|f| f["Binary"] == binary_name))
        .unwrap_or_else(|| panic!("the template has no function built from {binary_name}"));
    let mut env = stack_env();
    env.extend(
        function["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned())),
    );
    env
}

/// S3's `ObjectCreated:Put` notification for one object, as batch-submit receives it.
pub fn s3_created_event(
    bucket: &str,
    key: &str,
    size: usize,
    etag: Option<&str>,
    version_id: Option<&str>,
) -> serde_json::Value {
    let mut object = serde_json::json!({
        "key": key.replace(' ', "+"),
        "size": size,
        "eTag": etag.unwrap_or_default().trim_matches('"'),
        "sequencer": "0",
    });
    if let Some(version) = version_id {
        object["versionId"] = version.into();
    }
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "0", "x-amz-id-2": "0"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "batch-upload",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": object}
    }]})
}

const REST_EVENT: &str = test_support::events::REST_API_V1;

/// `POST /v1/invoke` as the template's REST API sends it (payload 1.0, IAM caller).
pub fn rest_invoke(body: &serde_json::Value) -> serde_json::Value {
    let mut event: serde_json::Value = serde_json::from_str(REST_EVENT).expect("fixture");
    event["body"] = serde_json::Value::String(body.to_string());
    event
}

/// `method path` on the template's REST API (payload 1.0, IAM caller), e.g. `POST /v1/deferred`.
pub fn rest_route(method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let mut event: serde_json::Value = serde_json::from_str(REST_EVENT).expect("fixture");
    event["httpMethod"] = serde_json::Value::String(method.to_owned());
    event["path"] = serde_json::Value::String(path.to_owned());
    event["resource"] = serde_json::Value::String(path.to_owned());
    event["requestContext"]["httpMethod"] = serde_json::Value::String(method.to_owned());
    event["requestContext"]["resourcePath"] = serde_json::Value::String(path.to_owned());
    event["requestContext"]["path"] = serde_json::Value::String(format!("/prod{path}"));
    event["body"] = if body.is_null() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(body.to_string())
    };
    event
}

/// A route of the template's HTTP API (payload 2.0, IAM caller).
pub fn http_api(method: &str, path: &str, body: &str) -> serde_json::Value {
    crate::http_event_json(method, path, body)
}

/// The messages waiting in the local SQS queue at `queue_url`, each as the event the template's
/// SQS event source (`BatchSize: 1`) invokes a function with.
pub async fn sqs_events(queue_url: &str) -> Vec<serde_json::Value> {
    let arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queue_url.rsplit('/').next().unwrap_or_default()
    );
    let mut events = Vec::new();
    loop {
        let messages = crate::sqs_receive(queue_url).await;
        if messages.is_empty() {
            return events;
        }
        events.extend(messages.iter().map(|message| {
            serde_json::json!({"Records": [{
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }]})
        }));
    }
}

/// EventBridge's scheduled event, as a `Schedule` event source delivers it.
pub fn scheduled_event() -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/standin"],
        "detail": {}
    })
}

/// `count` batch records with ids `rec-00000`… and prompts unique to this run.
pub fn batch_records(count: usize, label: &str) -> Vec<serde_json::Value> {
    let run = crate::invoke::unique(label);
    (0..count)
        .map(|i| serde_json::json!({"recordId": format!("rec-{i:05}"), "prompt": format!("{run}: question {i}")}))
        .collect()
}
