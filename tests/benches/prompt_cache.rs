//! `make bench`: what one conversation of ten turns costs with and without automatic cache
//! points (`PROMPT_CACHE_AUTO`), at the emulator's prices (Claude 3 Haiku's list prices: input
//! $0.00025, output $0.00125 per 1,000 tokens; prompt-cache reads at a tenth of the input price,
//! writes at a quarter more). The baseline is the same conversation without, in the same run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use integration_tests::invoke::{unique, Harness, HAIKU};
use integration_tests::Emulator;
use serde_json::{json, Value};

const TURNS: usize = 10;

/// What a conversation cost, and the tokens Bedrock's prompt cache read and wrote.
#[derive(Default)]
struct Totals {
    cost_usd: f64,
    input: u64,
    read: u64,
    written: u64,
}

async fn conversation(auto: bool) -> Totals {
    Emulator::reset().await;
    let harness = Harness::new(&[("PROMPT_CACHE_AUTO", if auto { "true" } else { "false" })]).await;
    // A support assistant's instructions, over Claude 3 Haiku's 2,048-token minimum.
    let system = unique("You answer questions about our store. ")
        + &"Refunds are granted within 30 days of purchase with a receipt. ".repeat(180);
    let mut messages: Vec<Value> = Vec::new();
    let mut totals = Totals::default();
    for turn in 0..TURNS {
        messages.push(json!({"role": "user", "content": [{"text": format!("Question {turn}: may I return item {turn}?")}]}));
        let reply = harness
            .invoke(json!({"modelId": HAIKU, "system": [{"text": system}], "messages": messages}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let usage = &reply.body["usage"];
        let tokens = |field: &str| usage[field].as_u64().unwrap_or(0);
        totals.cost_usd += reply.body["costUsd"].as_f64().unwrap_or(0.0);
        totals.input += tokens("inputTokens");
        totals.read += tokens("cacheReadInputTokens");
        totals.written += tokens("cacheWriteInputTokens");
        messages.push(json!({"role": "assistant", "content": [{"text": reply.body["text"]}]}));
    }
    totals
}

#[tokio::main]
async fn main() {
    let without = conversation(false).await;
    let with = conversation(true).await;
    println!(
        "\nOne conversation of {TURNS} turns, a system prompt of {} tokens (Claude 3 Haiku, emulator prices)",
        with.written
    );
    println!(
        "{:<40} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "", "cost USD", "input tok", "cache read", "cache write", "cost/base"
    );
    for (name, t) in [
        ("without cache points (baseline)", &without),
        ("PROMPT_CACHE_AUTO=true", &with),
    ] {
        println!(
            "{:<40} {:>12.6} {:>12} {:>12} {:>12} {:>10.3}",
            name,
            t.cost_usd,
            t.input,
            t.read,
            t.written,
            t.cost_usd / without.cost_usd
        );
    }
}
