//! `make bench`: cold start of the invoke-with-cache binary (bench profile) against a local
//! Lambda Runtime API: from process start to its first `next` poll (init: config, one
//! SdkConfig, clients) and to its first answer (a MISS against the local stack). The baseline is
//! starting and reaping `/bin/true`, measured in the same run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::Notify;

const EVENT: &str =
    include_str!("../../functions/invoke-with-cache/tests/fixtures/apigw-v2-iam.json");

#[derive(Default)]
struct Runtime {
    event: Mutex<Option<String>>,
    first_poll: Mutex<Option<Instant>>,
    answered: Mutex<Option<(Instant, String)>>,
    done: Notify,
}

async fn next(State(runtime): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let event = runtime.event.lock().unwrap().take();
    runtime
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let Some(event) = event else {
        // Only one invocation per process: the next poll waits until the process is killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        "bench-request".parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        "4102444800000".parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:invoke-with-cache"
            .parse()
            .unwrap(),
    );
    (headers, event)
}

async fn answered(State(runtime): State<Arc<Runtime>>, body: String) {
    *runtime.answered.lock().unwrap() = Some((Instant::now(), body));
    runtime.done.notify_one();
}

fn binary() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/invoke-with-cache");
    assert!(
        path.exists(),
        "{} is missing: `make bench` builds it with `cargo build --profile bench -p invoke-with-cache`",
        path.display()
    );
    path
}

struct Sample {
    init: Duration,
    first_answer: Duration,
}

async fn cold_start(i: usize, mode: &str) -> Sample {
    let runtime = Arc::new(Runtime::default());
    let mut event: Value = serde_json::from_str(EVENT).unwrap();
    event["body"] = Value::String(
        serde_json::json!({"prompt": format!("cold start {i} at {:?}", Instant::now())})
            .to_string(),
    );
    *runtime.event.lock().unwrap() = Some(event.to_string());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(answered),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(answered))
        .route("/2018-06-01/runtime/init/error", post(answered))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary())
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "invoke-with-cache")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RESPONSE_MODE", mode)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), runtime.done.notified())
        .await
        .expect("the function answered within 30 s");
    child.kill().await.unwrap();
    server.abort();

    let first_poll = runtime.first_poll.lock().unwrap().expect("polled");
    let (answered_at, body) = runtime.answered.lock().unwrap().clone().unwrap();
    // A streaming function's response: a JSON prelude (status, headers), 8 NUL bytes, the body.
    let prelude = body.split("\0\0\0\0\0\0\0\0").next().unwrap_or_default();
    let response: Value = serde_json::from_str(prelude).unwrap();
    assert_eq!(response["statusCode"], 200, "{body}");
    Sample {
        init: first_poll - started,
        first_answer: answered_at - started,
    }
}

fn summary(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap();
    (samples[samples.len() / 2], mean)
}

#[tokio::main]
async fn main() {
    let runs = 20;
    let mut spawn = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        tokio::process::Command::new("/bin/true")
            .status()
            .await
            .unwrap();
        spawn.push(started.elapsed());
    }
    let mut init = Vec::with_capacity(runs);
    let mut first = Vec::with_capacity(runs);
    let mut first_buffered = Vec::with_capacity(runs);
    for i in 0..runs {
        let sample = cold_start(i, "streaming").await;
        init.push(sample.init);
        first.push(sample.first_answer);
        first_buffered.push(cold_start(runs + i, "buffered").await.first_answer);
    }
    let (spawn_p50, spawn_mean) = summary(&mut spawn);
    println!("\nCold start of invoke-with-cache (bench profile), {runs} fresh processes");
    println!(
        "{:<44} {:>10} {:>10} {:>14}",
        "phase", "p50 µs", "mean µs", "mean/baseline"
    );
    for (name, samples) in [
        ("start and reap /bin/true (baseline)", &mut spawn),
        ("process start -> first Runtime API poll", &mut init),
        ("process start -> first answer (a MISS)", &mut first),
        ("  the same, RESPONSE_MODE=buffered", &mut first_buffered),
    ] {
        let (p50, mean) = summary(samples);
        println!(
            "{:<44} {:>10} {:>10} {:>14.1}",
            name,
            p50.as_micros(),
            mean.as_micros(),
            mean.as_secs_f64() / spawn_mean.as_secs_f64()
        );
    }
    let _ = spawn_p50;
}
