//! Logs and metrics never hold prompt or answer text. In its own test binary: tracing's
//! per-callsite interest cache makes a thread-local subscriber unreliable beside other tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{build, event, FakeModel, MemoryStore, V2_EVENT};
use domain::error::ModelErrorKind;
use serde_json::json;

const SECRET_PROMPT: &str = "my secret prompt about the quarterly numbers";

/// Captured log lines hold the figures, never the prompt or the answer.
#[tokio::test]
async fn logs_and_metrics_never_hold_prompt_or_answer_text() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, metrics) = build(&[], MemoryStore::default(), FakeModel::answering());
    let body = json!({"prompt": SECRET_PROMPT});
    app.handle(event(V2_EVENT, &body)).await;
    app.handle(event(V2_EVENT, &body)).await;
    app.handle(event(
        V2_EVENT,
        &json!({"prompt": SECRET_PROMPT, "bogus": 1}),
    ))
    .await;

    let broken = MemoryStore {
        broken: true,
        ..MemoryStore::default()
    };
    let (failing, _) = build(&[], broken, FakeModel::answering());
    failing.handle(event(V2_EVENT, &body)).await;
    let (denied, _) = build(
        &[],
        MemoryStore::default(),
        FakeModel::failing(ModelErrorKind::AccessDenied),
    );
    denied.handle(event(V2_EVENT, &body)).await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let warning = logs
        .lines()
        .find(|line| line.contains("cache read failed"))
        .expect("a warning for the cache fault");
    assert!(warning.contains("Bf3xJgAAoAMEbXw="), "{warning}");
    assert!(
        logs.contains("\"cache\":\"MISS\"") && logs.contains("\"cache\":\"HIT\""),
        "{logs}"
    );
    assert!(
        logs.contains("Bf3xJgAAoAMEbXw="),
        "log lines carry the request id"
    );
    assert!(!logs.contains("secret"), "{logs}");
    // A Bedrock refusal reaches the log with its kind and Bedrock's message.
    let failure = logs
        .lines()
        .find(|line| line.contains("invoke failed"))
        .expect("an error line for the refused call");
    assert!(failure.contains("\"level\":\"ERROR\""), "{failure}");
    assert!(
        failure.contains("AccessDenied: AccessDenied from the fake"),
        "{failure}"
    );
    assert!(failure.contains("BedrockAccessDenied"), "{failure}");
    let recorded = format!("{:?}", metrics.0.lock().unwrap());
    assert!(!recorded.contains("secret"));
}
