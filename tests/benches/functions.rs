//! `make bench`: each of the five functions as Lambda starts it. For each release binary (LTO,
//! stripped: what `sam build` ships): its size; from process start to its first `/next` (init);
//! and to its answer to one representative event, under the Runtime API stand-in with the
//! environment the template gives it on the local stack. The baseline is starting and reaping
//! `/bin/true`, measured in the same run. Goals: init at most 10 ms, binary at most 8 MB.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use integration_tests::functions::{
    batch_records, binary, function_env, http_api, rest_invoke, scheduled_event,
};
use integration_tests::invoke::{unique, HAIKU};
use integration_tests::Emulator;
use lambda_standin::{Behaviour, OutcomeKind, RuntimeApi};
use serde_json::{json, Value};

const SAMPLES: usize = 10;

fn representative(name: &str) -> Value {
    match name {
        "invoke-with-cache" => rest_invoke(&json!({"prompt": unique("functions bench")})),
        "batch-submit" => http_api(
            "POST",
            "/v1/batches",
            &json!({"modelId": HAIKU, "records": batch_records(250, "functions bench")})
                .to_string(),
        ),
        "capacity" => http_api("GET", "/v1/capacity", ""),
        _ => scheduled_event(),
    }
}

fn p50(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    Emulator::reset().await;
    let mut spawn = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        tokio::process::Command::new("/bin/true")
            .status()
            .await
            .unwrap();
        spawn.push(started.elapsed());
    }
    println!(
        "\nThe five functions as Lambda starts them (release profile), {SAMPLES} cold starts each"
    );
    println!(
        "{:<20} {:>10} {:>14} {:>18}",
        "function", "size MB", "init p50 ms", "first answer p50 ms"
    );
    println!(
        "{:<20} {:>10} {:>14.2} {:>18}",
        "/bin/true (baseline)",
        "",
        p50(&mut spawn),
        ""
    );
    for name in [
        "invoke-with-cache",
        "batch-submit",
        "batch-status",
        "capacity",
        "metrics-publisher",
    ] {
        let path = binary(name, "release");
        let size = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
        let env = function_env(name);
        let mut init = Vec::new();
        let mut first = Vec::new();
        for _ in 0..SAMPLES {
            let api = RuntimeApi::start(Behaviour::default()).await.unwrap();
            let queued = api.enqueue(representative(name).to_string());
            let function = api.spawn(&path, name, env.clone()).unwrap();
            let outcome = api
                .wait(&function, queued, Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(outcome.kind, OutcomeKind::Response, "{}", function.log());
            init.push(api.first_poll().unwrap() - function.started);
            first.push(outcome.received - function.started);
        }
        println!(
            "{:<20} {:>10.2} {:>14.2} {:>18.2}",
            name,
            size,
            p50(&mut init),
            p50(&mut first)
        );
    }
}
