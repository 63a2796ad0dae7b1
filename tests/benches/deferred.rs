//! `make bench`: what 1,000 requests that can wait cost when deferred (placed by deadline on a
//! Bedrock batch job, flex, default or the cache) against the same 1,000 sent on demand one by
//! one, at the emulator's prices (Claude 3 Haiku: input $0.00025, output $0.00125 per 1,000
//! tokens; batch at half, flex at half). The baseline is measured in the same run.
//!
//! The mix: 700 needed within a day (enough for a batch job), 200 within the hour (too soon for
//! a batch: flex), 100 already asked today (in the response cache).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use domain::ports::DeferredStore;
use integration_tests::deferred::World;
use integration_tests::invoke::{unique, HAIKU};
use serde_json::json;

const DAY: usize = 700;
const HOUR: usize = 200;
const CACHED: usize = 100;

#[tokio::main]
async fn main() {
    let world = World::new().await;
    world
        .emulator
        .configure(json!({"ttftMs": 0, "msPerToken": 0}))
        .await;
    let run = unique("deferred bench");
    let prompt = |i: usize| format!("{run}: summarise ticket {i} in one sentence");
    let total = DAY + HOUR + CACHED;

    // Baseline: every request on demand, the cache bypassed.
    let mut baseline = 0.0;
    for i in 0..total {
        let reply = world
            .invoke
            .invoke(json!({"prompt": prompt(i), "modelId": HAIKU, "cache": {"mode": "bypass"}}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        baseline += reply.body["costUsd"].as_f64().unwrap();
    }
    // The cached ones were asked earlier today (that answer is in the cache; its cost was paid then).
    for i in DAY + HOUR..total {
        let reply = world
            .invoke
            .invoke(json!({"prompt": prompt(i), "modelId": HAIKU}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    let mut ids = Vec::with_capacity(total);
    for i in 0..total {
        let within = if i < DAY { "PT24H" } else { "PT1H" };
        let reply = world
            .invoke
            .call(
                "POST",
                "/v1/deferred",
                &json!({"prompt": prompt(i), "modelId": HAIKU, "within": within}),
            )
            .await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let status = world.status().await;
    world.schedule_until_answered(&status, &ids).await;

    let store = world.store().await;
    let mut deferred = 0.0;
    let mut on_demand = 0.0;
    let mut mix: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        let request = store.get(id).await.unwrap().unwrap();
        deferred += request.cost_usd;
        on_demand += request.on_demand_usd;
        *mix.entry(request.placement.map_or("none", |p| p.as_str()))
            .or_default() += 1;
    }
    println!("\n{total} requests that can wait (Claude 3 Haiku, emulator prices)");
    println!("{:<46} {:>12} {:>10}", "", "cost USD", "cost/base");
    println!(
        "{:<46} {:>12.6} {:>10.3}",
        "on demand, one by one (baseline)", baseline, 1.0
    );
    println!(
        "{:<46} {:>12.6} {:>10.3}",
        "deferred, placed by deadline",
        deferred,
        deferred / baseline
    );
    println!(
        "{:<46} {:>12.6}",
        "(their on-demand price, as the records say)", on_demand
    );
    println!(
        "placement mix: {}",
        mix.iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "Bedrock batch jobs: {}; on-demand calls by the schedule on flex: {}",
        world.batch_jobs().await,
        world.flex_calls().await
    );
}
