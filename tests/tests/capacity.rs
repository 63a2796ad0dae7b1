#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The capacity function against the local stack: Bedrock's Provisioned Throughput API on the
//! emulator, the routing table on moto, the clock injected; and invoke-with-cache routing by
//! the table it publishes.
//!
//! Load beyond a capacity's tokens per minute spilling over to on-demand is tested here through
//! the routing table, and in `invoke.rs` (`load_beyond_the_provisioned_tokens_per_minute_…`)
//! through the static `PROVISIONED_THROUGHPUT`. boto3 and the AWS CLI drive the emulator's
//! Provisioned Throughput API in `boto3_provisioned.py` and `awscli_smoke.sh`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrock::types::ProvisionedModelStatus;
use capacity::{CapacityApp, CapacitySettings, RunReport};
use chrono::{DateTime, TimeZone, Utc};
use domain::capacity::{RoutingTable, PLAN_TAG};
use domain::ports::RoutingTableSource;
use futures_util::future::join_all;
use integration_tests::invoke::{unique, Recorder, Store, HAIKU, OPUS, SONNET};
use integration_tests::{http_event, sdk_config, stack_var, Emulator};
use invoke_with_cache::{Adapters, App, InvokeConfig, Ports};
use serde_json::{json, Value};
use shared::adapters::bedrock::BedrockInvoker;
use shared::adapters::bedrock_capacity::BedrockProvisionedThroughputs;
use shared::adapters::clock::ManualClock;
use shared::adapters::dynamo_cache::DynamoDbCacheStore;
use shared::adapters::dynamo_routing::{DynamoDbRoutingTable, ITEM_KEY, KEY_ATTRIBUTE};
use shared::adapters::memory_cache::{MemoryCache, MemoryFronted};
use shared::adapters::memory_routing::CachedRoutingTable;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use shared::config::Env;
use test_support::metrics::Counted;

const PLAN_NAME: &str = "integration";

/// A Mon–Fri 09:00–18:00 Tokyo window for one model unit of Haiku.
fn tokyo_plan(units: u32) -> String {
    json!({HAIKU: {"modelUnits": units, "window": "Mon-Fri 09:00-18:00", "timeZone": "Asia/Tokyo"}})
        .to_string()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// Monday 2026-11-23 in Tokyo (UTC+9), at a local time.
fn tokyo_monday(h: u32, mi: u32) -> DateTime<Utc> {
    utc(2026, 11, 23, 0, 0) + chrono::Duration::minutes(i64::from(h) * 60 + i64::from(mi))
        - chrono::Duration::hours(9)
}

type Capacity =
    CapacityApp<BedrockProvisionedThroughputs, DynamoDbRoutingTable, Arc<ManualClock>, Counted>;

/// invoke-with-cache on the local stack, routing by the capacity function's table.
struct Routed;

impl Adapters for Routed {
    type Store = Store;
    type Model = BedrockInvoker;
    type Clock = Arc<ManualClock>;
    type Metrics = Recorder;
    type Keys = InMemoryTenancy;
    type Ledger = InMemoryTenancy;
    type Limiter = shared::adapters::memory_limits::InMemoryLimiter;
    type Routes = CachedRoutingTable<DynamoDbRoutingTable>;
    type Deferred = shared::adapters::memory_deferred::MemoryDeferredStore;
    type Files = shared::adapters::s3_store::S3Store;
}

type Invoke = App<Routed>;

struct Stack {
    emulator: Emulator,
    bedrock: aws_sdk_bedrock::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    clock: Arc<ManualClock>,
}

/// A fresh emulator (Provisioned Throughput created and updated at once unless a test says
/// otherwise) and no routing table.
async fn stack(now: DateTime<Utc>) -> Stack {
    let emulator = Emulator::reset().await;
    emulator
        .configure(json!({"provisioned": {"createMs": 0, "updateMs": 0}}))
        .await;
    let sdk = sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    dynamodb
        .delete_item()
        .table_name(stack_var("ROUTING_TABLE_NAME"))
        .key(
            KEY_ATTRIBUTE,
            aws_sdk_dynamodb::types::AttributeValue::S(ITEM_KEY.into()),
        )
        .send()
        .await
        .expect("routing table reset");
    Stack {
        emulator,
        bedrock: aws_sdk_bedrock::Client::new(&sdk),
        dynamodb,
        clock: Arc::new(ManualClock::at(now)),
    }
}

impl Stack {
    /// The capacity function as its `main` builds it, with the stack's variables.
    async fn capacity(&self, plan: &str, overrides: &[(&str, &str)]) -> Capacity {
        let table = stack_var("ROUTING_TABLE_NAME");
        let mut vars = vec![
            ("CAPACITY_PLAN", plan),
            ("CAPACITY_PLAN_NAME", PLAN_NAME),
            ("ROUTING_TABLE_NAME", table.as_str()),
        ];
        vars.extend_from_slice(overrides);
        let settings = CapacitySettings::from_env(&Env::from_pairs(vars)).expect("settings");
        let sdk = sdk_config().await;
        CapacityApp {
            bedrock: BedrockProvisionedThroughputs::new(&sdk),
            table: DynamoDbRoutingTable::new(self.dynamodb.clone(), &settings.routing_table),
            clock: self.clock.clone(),
            metrics: Counted::default(),
            settings,
        }
    }

    /// invoke-with-cache as its `main` builds it with ROUTING_TABLE_NAME set (the table read on
    /// every request: ROUTING_TABLE_CACHE_SECONDS 0).
    async fn invoke(&self) -> Invoke {
        let cache_table = stack_var("CACHE_TABLE_NAME");
        let routing_table = stack_var("ROUTING_TABLE_NAME");
        let config = InvokeConfig::from_env(&Env::from_pairs([
            ("CACHE_TABLE_NAME", cache_table.as_str()),
            ("BEDROCK_MAX_ATTEMPTS", "1"),
            ("BEDROCK_RETRY_MODE", "standard"),
            ("MODEL_SIMPLE", HAIKU),
            ("MODEL_MODERATE", SONNET),
            ("MODEL_COMPLEX", OPUS),
            ("ROUTING_TABLE_NAME", routing_table.as_str()),
            ("ROUTING_TABLE_CACHE_SECONDS", "0"),
        ]))
        .expect("config");
        let sdk = sdk_config().await;
        let settings = config.routing_table.clone().expect("routing table set");
        let store = MemoryFronted::new(
            DynamoDbCacheStore::from_sdk_config(&sdk, &config.cache_table, config.cache_timeout),
            MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds),
            self.clock.clone(),
        );
        let model = BedrockInvoker::new(&sdk, &config.bedrock);
        let ports = Ports::<Routed> {
            store,
            model,
            clock: self.clock.clone(),
            metrics: Recorder::default(),
            tenancy: None,
            routes: Some(CachedRoutingTable::new(
                DynamoDbRoutingTable::new(self.dynamodb.clone(), &settings.table),
                settings.cache,
            )),
            deferred: None,
            files: None,
        };
        App::new(config, ports)
    }

    /// Every Provisioned Throughput the emulator holds: (name, ARN, units, status).
    async fn listed(&self) -> Vec<(String, String, i32, ProvisionedModelStatus)> {
        self.bedrock
            .list_provisioned_model_throughputs()
            .send()
            .await
            .expect("ListProvisionedModelThroughputs")
            .provisioned_model_summaries()
            .iter()
            .map(|s| {
                (
                    s.provisioned_model_name().to_owned(),
                    s.provisioned_model_arn().to_owned(),
                    s.model_units(),
                    s.status().clone(),
                )
            })
            .collect()
    }

    async fn table(&self) -> Option<RoutingTable> {
        DynamoDbRoutingTable::new(self.dynamodb.clone(), stack_var("ROUTING_TABLE_NAME"))
            .routing_table()
            .await
            .expect("routing table")
    }
}

/// A request for Haiku that no cache answers; the answer's status and body.
async fn ask(app: &Arc<Invoke>, label: &str) -> (u16, Value) {
    let body = json!({"prompt": unique(label), "modelId": HAIKU, "cache": {"mode": "bypass"}});
    let response = app
        .handle(http_event("POST", "/v1/invoke", &body.to_string()))
        .await;
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

/// Runs the capacity function until the table routes `model` (bounded: the emulator moves a
/// Provisioned Throughput to `InService` after `provisioned.createMs`).
async fn run_until_routed(capacity: &Capacity, model: &str) -> RunReport {
    for _ in 0..300 {
        let report = capacity.reconcile().await.expect("run");
        if report.routes.contains_key(model) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{model} was never routed");
}

#[tokio::test]
async fn a_tokyo_business_hours_window_creates_at_the_lead_routes_withdraws_then_deletes() {
    let stack = stack(tokyo_monday(8, 44)).await;
    // Creation takes a moment, so the run that creates sees it Creating.
    stack
        .emulator
        .configure(json!({"provisioned": {"createMs": 300}}))
        .await;
    let capacity = stack.capacity(&tokyo_plan(1), &[]).await;
    let invoke = Arc::new(stack.invoke().await);

    // 08:44 in Tokyo, a minute before the lead time: nothing.
    let early = capacity.reconcile().await.unwrap();
    assert!(early.created.is_empty() && !early.published, "{early:?}");
    assert!(stack.listed().await.is_empty());

    // 08:45: created, tagged as the plan's, not routed while Creating.
    stack.clock.set(tokyo_monday(8, 45));
    let lead = capacity.reconcile().await.unwrap();
    assert_eq!(
        lead.created,
        vec!["bgw-anthropic-claude-3-haiku-20240307-v1-0-1u"]
    );
    let listed = stack.listed().await;
    assert_eq!(listed.len(), 1);
    let (name, arn, units, status) = listed[0].clone();
    assert_eq!((units, status), (1, ProvisionedModelStatus::Creating));
    let tags = stack
        .bedrock
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.key() == PLAN_TAG && t.value() == PLAN_NAME));
    assert!(lead.routes.is_empty());
    let (status, body) = ask(&invoke, "Before the capacity serves").await;
    assert_eq!((status, body["route"].as_str()), (200, Some("on-demand")));

    // Once InService, the table routes Haiku to it and invoke-with-cache follows.
    let routed = run_until_routed(&capacity, HAIKU).await;
    assert_eq!(routed.routes[HAIKU], vec![arn.clone()]);
    assert!(routed.created.is_empty() && routed.adopted.is_empty());
    let (status, body) = ask(&invoke, "Inside the window").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["route"], "provisioned", "{body}");
    assert_eq!(body["modelId"], HAIKU);
    assert_eq!(stack.emulator.calls(&arn).await, 1);

    // 17:59: still there, still routed, nothing written.
    stack.clock.set(tokyo_monday(17, 59));
    let late = capacity.reconcile().await.unwrap();
    assert!(!late.published && late.deleted.is_empty());

    // 18:00: the route is withdrawn first; the capacity still exists.
    stack.clock.set(tokyo_monday(18, 0));
    let closing = capacity.reconcile().await.unwrap();
    assert!(closing.published && closing.routes.is_empty());
    assert!(closing.deleted.is_empty());
    assert_eq!(stack.listed().await.len(), 1);
    assert!(stack.table().await.unwrap().routes.is_empty());
    let (status, body) = ask(&invoke, "After the window").await;
    assert_eq!((status, body["route"].as_str()), (200, Some("on-demand")));
    assert_eq!(stack.emulator.calls(&arn).await, 1);

    // 18:01, a drain (CAPACITY_DRAIN_SECONDS, 60) later: deleted.
    stack.clock.set(tokyo_monday(18, 1));
    let deleted = capacity.reconcile().await.unwrap();
    assert_eq!(deleted.deleted, vec![name]);
    assert!(stack.listed().await.is_empty());
    assert_eq!(capacity.metrics.total(|c| c.created), 1);
    assert_eq!(capacity.metrics.total(|c| c.deleted), 1);
    // The next run forgets the deleted capacity's record.
    stack.clock.set(tokyo_monday(18, 2));
    capacity.reconcile().await.unwrap();
    assert!(stack.table().await.unwrap().capacities.is_empty());

    // Saturday: nothing all day (every 10 minutes, lead included), not even a write.
    let version = stack.table().await.unwrap().version;
    let saturday = utc(2026, 11, 27, 15, 0); // 00:00 Saturday in Tokyo
    for step in 0..(24 * 6) {
        stack
            .clock
            .set(saturday + chrono::Duration::minutes(step * 10));
        let report = capacity.reconcile().await.unwrap();
        assert!(report.created.is_empty() && !report.published, "{report:?}");
    }
    assert!(stack.listed().await.is_empty());
    assert_eq!(stack.table().await.unwrap().version, version);

    // Sunday 23:45 UTC is Monday 08:45 in Tokyo: the next window's lead.
    stack.clock.set(utc(2026, 11, 29, 23, 45));
    let monday = capacity.reconcile().await.unwrap();
    assert_eq!(monday.created.len(), 1);
}

#[tokio::test]
async fn committed_capacity_is_never_deleted() {
    let stack = stack(utc(2026, 11, 24, 3, 0)).await;
    let plan = json!({HAIKU: {"modelUnits": 1, "commitment": "OneMonth"}}).to_string();
    let capacity = stack
        .capacity(&plan, &[("CAPACITY_DRAIN_SECONDS", "0")])
        .await;
    let created = capacity.reconcile().await.unwrap();
    assert_eq!(
        created.created,
        vec!["bgw-anthropic-claude-3-haiku-20240307-v1-0-1u-c1m"]
    );
    let routed = run_until_routed(&capacity, HAIKU).await;
    let arn = routed.routes[HAIKU][0].clone();

    // The plan drops it, even the emulator's present is past its term: still no deletion, and
    // it stays routed (it is paid for either way).
    stack
        .emulator
        .configure(json!({"provisioned": {"now": "2027-06-01T00:00:00Z"}}))
        .await;
    let dropped = stack
        .capacity("{}", &[("CAPACITY_DRAIN_SECONDS", "0")])
        .await;
    for day in 0..3 {
        stack.clock.set(utc(2026, 11, 25 + day, 3, 0));
        let report = dropped.reconcile().await.unwrap();
        assert!(report.deleted.is_empty(), "{report:?}");
        assert_eq!(report.routes[HAIKU], vec![arn.clone()]);
    }
    assert_eq!(stack.listed().await.len(), 1);
    assert_eq!(dropped.metrics.total(|c| c.deleted), 0);
}

#[tokio::test]
async fn concurrent_runs_create_one() {
    let stack = stack(tokyo_monday(10, 0)).await;
    let mut apps = Vec::new();
    for _ in 0..4 {
        apps.push(stack.capacity(&tokyo_plan(1), &[]).await);
    }
    let reports = join_all(apps.iter().map(|app| app.reconcile())).await;
    let created: usize = reports
        .iter()
        .map(|r| r.as_ref().unwrap().created.len())
        .sum();
    assert_eq!(created, 1, "{reports:?}");
    assert_eq!(stack.listed().await.len(), 1);
    // And repeated runs, concurrent again, create nothing more.
    let again = join_all(apps.iter().map(|app| app.reconcile())).await;
    assert!(again.iter().all(|r| r.as_ref().unwrap().created.is_empty()));
    assert_eq!(stack.listed().await.len(), 1);
}

#[tokio::test]
async fn a_model_unit_change_is_blue_green_with_every_request_answered() {
    let stack = stack(tokyo_monday(10, 0)).await;
    let one = stack.capacity(&tokyo_plan(1), &[]).await;
    one.reconcile().await.unwrap();
    let blue = run_until_routed(&one, HAIKU).await.routes[HAIKU][0].clone();
    let invoke = Arc::new(stack.invoke().await);
    let (status, body) = ask(&invoke, "blue").await;
    assert_eq!((status, body["route"].as_str()), (200, Some("provisioned")));

    // Two units now; the new capacity takes a moment to create.
    stack
        .emulator
        .configure(json!({"provisioned": {"createMs": 300}}))
        .await;
    stack.clock.set(tokyo_monday(10, 1));
    let two = stack.capacity(&tokyo_plan(2), &[]).await;
    let started = two.reconcile().await.unwrap();
    assert_eq!(
        started.created,
        vec!["bgw-anthropic-claude-3-haiku-20240307-v1-0-2u"]
    );
    assert_eq!(started.routes[HAIKU], vec![blue.clone()]);

    let mut green = None;
    let mut answered = 0;
    for i in 0..300 {
        let (status, body) = ask(&invoke, &format!("switching {i}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["route"], "provisioned", "{body}");
        answered += 1;
        let report = two.reconcile().await.unwrap();
        assert!(report.deleted.is_empty(), "{report:?}");
        if report.routes[HAIKU] != vec![blue.clone()] {
            green = Some(report.routes[HAIKU][0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let green = green.expect("the route switched");
    assert_ne!(green, blue);
    assert!(answered > 1, "the switch took {answered} requests");
    let (status, body) = ask(&invoke, "green").await;
    assert_eq!((status, body["route"].as_str()), (200, Some("provisioned")));
    assert_eq!(stack.emulator.calls(&green).await, 1);
    // Blue still exists until the drain has passed, then goes.
    assert_eq!(stack.listed().await.len(), 2);
    stack.clock.set(tokyo_monday(10, 3));
    let cleaned = two.reconcile().await.unwrap();
    assert_eq!(
        cleaned.deleted,
        vec!["bgw-anthropic-claude-3-haiku-20240307-v1-0-1u"]
    );
    let left = stack.listed().await;
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].1.as_str(), left[0].2), (green.as_str(), 2));
    let (status, body) = ask(&invoke, "after").await;
    assert_eq!((status, body["route"].as_str()), (200, Some("provisioned")));
}

#[tokio::test]
async fn load_beyond_the_routed_capacitys_tokens_per_minute_spills_over() {
    let stack = stack(tokyo_monday(10, 0)).await;
    stack
        .emulator
        .configure(json!({"provisioned": {"tokensPerMinuteByModel": {HAIKU: 300}}}))
        .await;
    let capacity = stack.capacity(&tokyo_plan(1), &[]).await;
    capacity.reconcile().await.unwrap();
    let arn = run_until_routed(&capacity, HAIKU).await.routes[HAIKU][0].clone();
    let invoke = Arc::new(stack.invoke().await);
    let (mut provisioned, mut spilled) = (0, 0);
    for i in 0..15 {
        let (status, body) = ask(&invoke, &format!("load {i}")).await;
        assert_eq!(status, 200, "{body}");
        if body["route"] == "provisioned" {
            provisioned += 1;
        } else {
            assert_eq!(body["spilledOver"], true, "{body}");
            spilled += 1;
        }
    }
    assert!(
        provisioned > 0 && spilled > 0,
        "{provisioned} provisioned, {spilled} spilled"
    );
    assert_eq!(stack.emulator.calls(HAIKU).await, spilled);
    assert_eq!(stack.emulator.calls(&arn).await, provisioned + spilled);
}

#[tokio::test]
async fn existing_capacity_is_adopted_by_name_and_foreign_capacity_left_alone() {
    let stack = stack(tokyo_monday(10, 0)).await;
    let ours = stack
        .emulator
        .create_provisioned("bgw-anthropic-claude-3-haiku-20240307-v1-0-1u", HAIKU, 1)
        .await;
    let foreign = stack
        .emulator
        .create_provisioned("another-teams-haiku", HAIKU, 1)
        .await;
    let capacity = stack.capacity(&tokyo_plan(1), &[]).await;
    let report = capacity.reconcile().await.unwrap();
    assert_eq!(
        report.adopted,
        vec!["bgw-anthropic-claude-3-haiku-20240307-v1-0-1u"]
    );
    assert!(report.created.is_empty());
    assert_eq!(report.routes[HAIKU], vec![ours.clone()]);
    let tags = stack
        .bedrock
        .list_tags_for_resource()
        .resource_arn(&ours)
        .send()
        .await
        .unwrap();
    assert!(tags.tags().iter().any(|t| t.key() == PLAN_TAG));
    // Recorded now: not adopted again. At 18:00 only ours is withdrawn and deleted.
    assert!(capacity.reconcile().await.unwrap().adopted.is_empty());
    stack.clock.set(tokyo_monday(18, 0));
    capacity.reconcile().await.unwrap();
    stack.clock.set(tokyo_monday(18, 2));
    let closed = capacity.reconcile().await.unwrap();
    assert_eq!(closed.deleted.len(), 1);
    let left = stack.listed().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, foreign);
    assert_eq!(capacity.metrics.total(|c| c.adopted), 1);
}

#[tokio::test]
async fn a_quota_refusal_is_counted_and_creates_nothing() {
    let stack = stack(tokyo_monday(10, 0)).await;
    stack
        .emulator
        .configure(json!({"provisioned": {"noCommitmentUnitQuota": 1}}))
        .await;
    let capacity = stack.capacity(&tokyo_plan(2), &[]).await;
    let report = capacity.reconcile().await.unwrap();
    assert_eq!(report.quota_refused.len(), 1, "{report:?}");
    assert!(stack.listed().await.is_empty());
    assert_eq!(capacity.metrics.total(|c| c.quota_refused), 1);
    // Asked again on the next run.
    let again = capacity.reconcile().await.unwrap();
    assert_eq!(again.quota_refused.len(), 1);
}

#[tokio::test]
async fn get_capacity_lists_the_capacity_and_what_the_plan_costs_a_day() {
    let stack = stack(tokyo_monday(10, 0)).await;
    let capacity = stack
        .capacity(&tokyo_plan(1), &[("CAPACITY_HOURLY_PRICES", "*=40")])
        .await;
    capacity.reconcile().await.unwrap();
    run_until_routed(&capacity, HAIKU).await;
    let answer = capacity
        .on_event(http_event_json("GET", "/v1/capacity"))
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let listed = &body["capacities"][0];
    assert_eq!(listed["modelId"], HAIKU);
    assert_eq!(listed["status"], "InService");
    assert_eq!(listed["routed"], true);
    assert_eq!(listed["window"], "Mon-Fri 09:00-18:00");
    assert_eq!(listed["hourlyCostUsd"], 40.0);
    let plan = &body["plan"][0];
    // Five windows of 9 h, each with a 15-minute lead and a 1-minute drain, at $40 an hour.
    assert_eq!(plan["hoursPerWeek"], 46.3333);
    assert_eq!(plan["dailyCostUsd"], 264.7619);
    assert_eq!(plan["alwaysOnDailyCostUsd"], 960.0);
    assert_eq!(body["routes"][HAIKU][0], listed["arn"]);
}

/// An HTTP API (payload 2.0) event as API Gateway delivers it to the function.
fn http_event_json(method: &str, path: &str) -> Value {
    const V2_EVENT: &str = test_support::events::HTTP_API_V2_IAM;
    let mut event: Value = serde_json::from_str(V2_EVENT).unwrap();
    event["rawPath"] = Value::String(path.into());
    event["routeKey"] = Value::String(format!("{method} {path}"));
    event["requestContext"]["http"]["method"] = Value::String(method.into());
    event["requestContext"]["http"]["path"] = Value::String(path.into());
    event["body"] = Value::Null;
    event
}
