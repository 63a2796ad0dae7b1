//! `make bench`: latency of invoke-with-cache's paths against the local stack, as ratios to a
//! direct Bedrock Converse call through the SDK measured in the same run.
//!
//! Two rounds: the emulator answering instantly (what the function itself costs), then with
//! realistic model latency (what the cache saves a caller).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use integration_tests::invoke::{unique, Harness, HAIKU};
use integration_tests::{sdk_config, Emulator};
use serde_json::json;

struct Stats {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Stats {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[index]
    }

    fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / u32::try_from(self.samples.len()).unwrap()
    }
}

fn report(title: &str, baseline: &Stats, rows: &[Stats]) {
    println!("\n{title}");
    println!(
        "{:<34} {:>6} {:>10} {:>10} {:>10} {:>14}",
        "path", "n", "p50 µs", "p90 µs", "mean µs", "mean/baseline"
    );
    for row in std::iter::once(baseline).chain(rows) {
        println!(
            "{:<34} {:>6} {:>10} {:>10} {:>10} {:>14.4}",
            row.name,
            row.samples.len(),
            row.quantile(0.5).as_micros(),
            row.quantile(0.9).as_micros(),
            row.mean().as_micros(),
            row.mean().as_secs_f64() / baseline.mean().as_secs_f64()
        );
    }
}

async fn time_async<F, Fut>(name: &'static str, n: usize, mut call: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Warm-up: connections, the SDK's first-call work.
    for i in 0..5 {
        call(usize::MAX - i).await;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        call(i).await;
        samples.push(started.elapsed());
    }
    Stats { name, samples }
}

async fn round(n: usize, label: &str, behaviour: serde_json::Value) -> (Stats, Vec<Stats>) {
    let emulator = Emulator::reset().await;
    emulator.configure(behaviour).await;
    let client = aws_sdk_bedrockruntime::Client::new(&sdk_config().await);
    let run = unique(label);
    let baseline = time_async("direct Converse (SDK, baseline)", n, |i| {
        let client = client.clone();
        let run = run.clone();
        async move {
            let message = Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text(format!("{run} direct {i}")))
                .build()
                .unwrap();
            client
                .converse()
                .model_id(HAIKU)
                .messages(message)
                .send()
                .await
                .unwrap();
        }
    })
    .await;

    let url = emulator.url(&format!("/model/{HAIKU}/converse"));
    let raw = time_async("emulator alone (raw HTTP Converse)", n, |i| {
        let request = emulator
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(
                json!({"messages": [{"role": "user", "content": [{"text": format!("raw {i}")}]}]})
                    .to_string(),
            );
        async move {
            assert!(request.send().await.unwrap().status().is_success());
        }
    })
    .await;

    let miss = Harness::new(&[]).await;
    let miss_stats = time_async("handler MISS (Converse + PutItem)", n, |i| {
        let body = json!({"prompt": format!("{run} miss {i}")});
        let miss = &miss;
        async move {
            assert_eq!(miss.invoke(body).await.cache(), "MISS");
        }
    })
    .await;

    let bypass = time_async("handler BYPASS (Converse only)", n, |i| {
        let body = json!({"prompt": format!("{run} bypass {i}"), "cache": {"mode": "bypass"}});
        let miss = &miss;
        async move {
            assert_eq!(miss.invoke(body).await.cache(), "BYPASS");
        }
    })
    .await;

    let cold = Harness::new(&[("MEMORY_CACHE_ENTRIES", "0")]).await;
    let hot_prompt = json!({"prompt": format!("{run} hot")});
    cold.invoke(hot_prompt.clone()).await;
    let dynamo_hit = time_async("handler HIT from DynamoDB", n, |_| {
        let body = hot_prompt.clone();
        let cold = &cold;
        async move {
            assert_eq!(cold.invoke(body).await.cache(), "HIT");
        }
    })
    .await;

    let warm = Harness::new(&[]).await;
    warm.invoke(hot_prompt.clone()).await;
    let memory_hit = time_async("handler HIT from memory", n, |_| {
        let body = hot_prompt.clone();
        let warm = &warm;
        async move {
            assert_eq!(warm.invoke(body).await.cache(), "HIT");
        }
    })
    .await;

    (
        baseline,
        vec![raw, bypass, miss_stats, dynamo_hit, memory_hit],
    )
}

#[tokio::main]
async fn main() {
    let (baseline, rows) = round(300, "instant", json!({})).await;
    report(
        "Round 1: emulator answering instantly (the function's own cost)",
        &baseline,
        &rows,
    );
    let (baseline, rows) = round(10, "realistic", json!({"ttftMs": 250, "msPerToken": 5})).await;
    report(
        "Round 2: emulator with 250 ms to first token and 5 ms a token (what a caller waits)",
        &baseline,
        &rows,
    );
    Emulator::reset().await;
}
