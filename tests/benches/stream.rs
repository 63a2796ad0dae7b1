//! `make bench`: time to first byte of a streamed answer through invoke-with-cache (served over
//! HTTP on loopback, as `make dev` serves it) against a direct ConverseStream call through the
//! SDK, measured in the same run, with the emulator's time to first token set to 200 ms.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, Message,
};
use integration_tests::invoke::{unique, Harness, HAIKU};
use integration_tests::{sdk_config, Emulator};
use serde_json::json;

const TTFT_MS: u64 = 200;

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap()
}

fn row(name: &str, samples: &[Duration], baseline: &[Duration]) {
    let over = mean(samples).as_secs_f64() - mean(baseline).as_secs_f64();
    println!(
        "{:<46} {:>4} {:>9.2} {:>9.2} {:>9.2} {:>12.2} {:>8.3}",
        name,
        samples.len(),
        quantile(samples, 0.5).as_secs_f64() * 1e3,
        quantile(samples, 0.9).as_secs_f64() * 1e3,
        mean(samples).as_secs_f64() * 1e3,
        over * 1e3,
        mean(samples).as_secs_f64() / mean(baseline).as_secs_f64(),
    );
}

/// Time from sending to the first text delta of a direct ConverseStream call.
async fn direct(client: &aws_sdk_bedrockruntime::Client, prompt: String) -> Duration {
    let started = Instant::now();
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(prompt))
        .build()
        .unwrap();
    let mut output = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(message)
        .send()
        .await
        .unwrap();
    loop {
        match output.stream.recv().await.unwrap() {
            Some(ConverseStreamOutput::ContentBlockDelta(_)) => break started.elapsed(),
            Some(_) => {}
            None => panic!("the stream ended without text"),
        }
    }
}

/// Times to the first byte and to the first `text` event of a streamed answer.
async fn through_function(
    http: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> (Duration, Duration) {
    let started = Instant::now();
    let mut response = http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut first_byte = None;
    let mut seen = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        first_byte.get_or_insert_with(|| started.elapsed());
        seen.extend_from_slice(&chunk);
        if seen.windows(11).any(|w| w == b"event: text") {
            let first_text = started.elapsed();
            // Read to the end, so the connection is reused.
            while response.chunk().await.unwrap().is_some() {}
            return (first_byte.unwrap(), first_text);
        }
    }
    panic!("the stream ended without text");
}

#[tokio::main]
async fn main() {
    let n = 30;
    let emulator = Emulator::reset().await;
    emulator
        .configure(json!({"ttftMs": TTFT_MS, "msPerToken": 2}))
        .await;
    let client = aws_sdk_bedrockruntime::Client::new(&sdk_config().await);
    let harness = Harness::new(&[]).await;
    let address = harness.serve().await;
    let url = format!("http://{address}/v1/invoke");
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let run = unique("ttfb");

    // Warm-up: connections and the SDK's first-call work on both paths.
    for i in 0..3 {
        direct(&client, format!("{run} warm direct {i}")).await;
        through_function(
            &http,
            &url,
            json!({"prompt": format!("{run} warm {i}"), "stream": true}),
        )
        .await;
    }
    let mut baseline = Vec::new();
    let mut miss_byte = Vec::new();
    let mut miss_text = Vec::new();
    for i in 0..n {
        baseline.push(direct(&client, format!("{run} direct {i}")).await);
        let (byte, text) = through_function(
            &http,
            &url,
            json!({"prompt": format!("{run} miss {i}"), "stream": true}),
        )
        .await;
        miss_byte.push(byte);
        miss_text.push(text);
    }
    let hot = json!({"prompt": format!("{run} hot"), "stream": true});
    through_function(&http, &url, hot.clone()).await;
    let mut hit_byte = Vec::new();
    for _ in 0..n {
        hit_byte.push(through_function(&http, &url, hot.clone()).await.0);
    }

    println!(
        "\nTime to first byte of a stream, emulator TTFT {TTFT_MS} ms (HTTP on loopback, TCP_NODELAY)"
    );
    println!(
        "{:<46} {:>4} {:>9} {:>9} {:>9} {:>12} {:>8}",
        "path", "n", "p50 ms", "p90 ms", "mean ms", "+ms vs base", "ratio"
    );
    row(
        "direct ConverseStream, first delta (baseline)",
        &baseline,
        &baseline,
    );
    row(
        "function MISS, first byte (start event)",
        &miss_byte,
        &baseline,
    );
    row("function MISS, first text event", &miss_text, &baseline);
    row("function HIT, first byte", &hit_byte, &baseline);
    Emulator::reset().await;
}
