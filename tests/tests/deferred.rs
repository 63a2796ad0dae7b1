#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Deferred requests against the local stack: accepted by invoke-with-cache (its DynamoDB
//! adapters on moto), placed by batch-status's schedule on Bedrock batch jobs, flex or default
//! (the emulator), each request answered once.

use domain::deferred::{DeferredStatus, Placement};
use domain::ports::{BatchRegistry, DeferredStore};
use integration_tests::deferred::{fresh_table, World};
use integration_tests::invoke::{unique, Harness, HAIKU};
use integration_tests::{sdk_config, stack_var, Emulator};
use serde_json::json;
use shared::adapters::batch_registry::DynamoDbBatchRegistry;
use shared::batch::Invocation;

#[tokio::test]
async fn a_hundred_and_fifty_requests_due_in_a_day_become_one_batch_job() {
    let world = World::new().await;
    let ids = world.defer(150, "PT24H", "deferred day").await;
    let status = world.status().await;
    let placed = status
        .place_deferred(&Invocation::longest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(placed["batches"].as_array().unwrap().len(), 1, "{placed}");
    assert_eq!(world.batch_jobs().await, 1, "one Bedrock batch job");
    assert_eq!(world.read(&ids[0]).await["status"], "placed");

    world.schedule_until_answered(&status, &ids).await;
    assert_eq!(world.batch_jobs().await, 1);
    assert_eq!(world.emulator.calls(HAIKU).await, 0, "nothing on demand");
    for id in &ids {
        let read = world.read(id).await;
        assert_eq!(read["status"], "answered", "{read}");
        assert_eq!(read["placement"], "batch");
        assert!(read["answer"]["text"].as_str().unwrap().len() > 1);
        assert!(read["savedUsd"].as_f64().unwrap() > 0.0, "{read}");
    }
}

#[tokio::test]
async fn five_requests_due_within_the_hour_go_through_flex() {
    let world = World::new().await;
    let ids = world.defer(5, "PT1H", "deferred hour").await;
    let status = world.status().await;
    let placed = status
        .place_deferred(&Invocation::longest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(placed["answered"]["flex"], 5, "{placed}");
    assert_eq!(world.flex_calls().await, 5);
    assert_eq!(world.batch_jobs().await, 0);
    for id in &ids {
        let read = world.read(id).await;
        assert_eq!(read["placement"], "flex", "{read}");
        assert_eq!(read["answer"]["serviceTier"]["type"], "flex");
        let (cost, on_demand) = (
            read["costUsd"].as_f64().unwrap(),
            read["answer"]["onDemandEquivalentUsd"].as_f64().unwrap(),
        );
        assert!((cost * 2.0 - on_demand).abs() < 1e-9, "{read}");
    }
}

#[tokio::test]
async fn an_identical_request_already_cached_is_answered_at_once() {
    let world = World::new().await;
    let question = format!("{}: what is a TTL?", unique("deferred cached"));
    let first = world
        .invoke
        .invoke(json!({"prompt": question, "modelId": HAIKU}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let reply = world
        .invoke
        .call(
            "POST",
            "/v1/deferred",
            &json!({"prompt": question, "modelId": HAIKU, "within": "PT24H"}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "answered");
    assert_eq!(reply.body["placement"], "cache");
    let read = world.read(reply.body["id"].as_str().unwrap()).await;
    assert_eq!(read["answer"]["text"], first.body["text"]);
    assert_eq!(
        world.emulator.calls(HAIKU).await,
        1,
        "only the first invoke"
    );
}

#[tokio::test]
async fn a_job_that_fails_half_its_records_ends_with_every_request_answered_once() {
    let world = World::new().await;
    world
        .emulator
        .configure(json!({"batchRecordErrorRate": 0.5}))
        .await;
    let ids = world.defer(150, "PT24H", "deferred half").await;
    let status = world.status().await;
    world.schedule_until_answered(&status, &ids).await;

    let store = world.store().await;
    let mut by_placement = std::collections::BTreeMap::new();
    for id in &ids {
        let request = store.get(id).await.unwrap().unwrap();
        assert_eq!(request.status, DeferredStatus::Answered, "{request:?}");
        *by_placement.entry(request.placement.unwrap()).or_insert(0) += 1;
    }
    let batched = by_placement.get(&Placement::Batch).copied().unwrap_or(0);
    let on_demand = by_placement.get(&Placement::Flex).copied().unwrap_or(0)
        + by_placement.get(&Placement::Default).copied().unwrap_or(0);
    assert!(batched > 0 && on_demand > 0, "{by_placement:?}");
    assert_eq!(batched + on_demand, 150);
    assert_eq!(
        world.emulator.calls(HAIKU).await,
        on_demand as u64,
        "each failed record asked once on demand, none twice"
    );
    // Later runs (a redelivered event, the next tick) move nothing and pay nothing.
    status.place_deferred(&Invocation::longest()).await.unwrap();
    assert_eq!(world.emulator.calls(HAIKU).await, on_demand as u64);
    assert_eq!(world.batch_jobs().await, 1);
}

#[tokio::test]
async fn two_schedulers_at_once_place_each_request_once() {
    let world = World::new().await;
    let batched = world.defer(150, "PT24H", "deferred race day").await;
    let flex = world.defer(3, "PT1H", "deferred race hour").await;
    let (one, other) = (world.status().await, world.status().await);
    let (run_one, run_other) = (Invocation::longest(), Invocation::longest());
    let (first, second) = tokio::join!(
        one.place_deferred(&run_one),
        other.place_deferred(&run_other)
    );
    let (first, second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
    let batches =
        first["batches"].as_array().unwrap().len() + second["batches"].as_array().unwrap().len();
    assert_eq!(batches, 1, "{first} {second}");
    assert_eq!(world.batch_jobs().await, 1);
    assert_eq!(
        world.emulator.calls(HAIKU).await,
        3,
        "each flex request called once"
    );
    let store = world.store().await;
    let registry = DynamoDbBatchRegistry::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        stack_var("BATCH_TABLE_NAME"),
    );
    let batch_id = store
        .get(&batched[0])
        .await
        .unwrap()
        .unwrap()
        .batch_id
        .unwrap();
    let batch = registry.get(&batch_id).await.unwrap().unwrap();
    assert_eq!(batch.record_count, 150);
    for id in &flex {
        let request = store.get(id).await.unwrap().unwrap();
        assert_eq!(request.status, DeferredStatus::Answered);
    }
}

#[tokio::test]
async fn the_openai_package_runs_a_batch_file_of_120_requests_end_to_end() {
    use domain::ports::TenantKeyStore;
    use shared::adapters::dynamo_tenancy::DynamoDbTenantKeys;
    let emulator = Emulator::reset().await;
    emulator.configure(json!({"batchStepMs": 10})).await;
    let table = fresh_table().await;
    let keys_table = stack_var("TENANT_KEYS_TABLE_NAME");
    let spend_table = stack_var("SPEND_TABLE_NAME");
    let invoke = Harness::new(&[
        ("DEFERRED_TABLE_NAME", table.as_str()),
        ("TENANT_KEYS_TABLE_NAME", keys_table.as_str()),
        ("SPEND_TABLE_NAME", spend_table.as_str()),
    ])
    .await;
    let world = World {
        invoke,
        table,
        emulator,
    };
    let keys = DynamoDbTenantKeys::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        &keys_table,
    );
    let issued = domain::tenancy::issue_key(
        &unique("batch-sdk").replace([' ', ':'], "-"),
        vec![],
        None,
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    keys.create(&issued.record).await.unwrap();
    let address = world.invoke.serve().await;

    // batch-status's schedule, running beside the client as it would every few minutes.
    let status = world.status().await;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let schedule = async {
        loop {
            status.on_schedule(&Invocation::longest()).await.unwrap();
            status.place_deferred(&Invocation::longest()).await.unwrap();
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            }
        }
    };
    let client = async {
        let output = tokio::process::Command::new(".venv/bin/python")
            .arg("tests/openai_batch.py")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("OPENAI_BASE_URL", format!("http://{address}/openai/v1"))
            .env("OPENAI_API_KEY", &issued.key)
            .env("MODEL", HAIKU)
            .env("REQUESTS", "120")
            .output()
            .await
            .expect("python runs");
        let _ = stop.send(());
        output
    };
    let ((), output) = tokio::join!(schedule, client);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "openai_batch.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("openai batch: 0 failed"), "{stdout}");
    assert_eq!(
        world.batch_jobs().await,
        1,
        "120 requests: one Bedrock batch job"
    );
    assert_eq!(world.emulator.calls(HAIKU).await, 0, "none on demand");
}

#[tokio::test]
async fn against_a_slow_bedrock_placement_follows_the_observed_turnaround() {
    let world = World::new().await;
    // A slow Bedrock: jobs take longer with every record, and flex is always busy.
    world
        .emulator
        .configure(json!({"batchRecordMs": 10, "flexThrottleRate": 1.0}))
        .await;
    let first = world.defer(150, "PT24H", "slow day").await;
    let status = world.status().await;
    status.place_deferred(&Invocation::longest()).await.unwrap();
    assert_eq!(world.batch_jobs().await, 1);
    // The job ends eight hours later on the functions' clock.
    world.invoke.clock.advance(chrono::Duration::hours(8));
    world.schedule_until_answered(&status, &first).await;
    let store = world.store().await;
    assert_eq!(
        store.turnarounds().await.unwrap()[HAIKU],
        8 * 3600,
        "the turnaround observed"
    );

    // Due in 7 hours: the default turnaround (6 h) would batch them; the observed 8 h cannot
    // make it, so flex, which is throttled: the default tier answers.
    let next = world.defer(120, "PT7H", "slow next").await;
    world.schedule_until_answered(&status, &next).await;
    assert_eq!(world.batch_jobs().await, 1, "no second batch job");
    for id in &next {
        let request = store.get(id).await.unwrap().unwrap();
        assert_eq!(request.placement, Some(Placement::Default), "{request:?}");
        assert!(!request.deadline_missed);
    }
}
