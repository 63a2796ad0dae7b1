//! Deferred requests on the local stack: invoke-with-cache accepting them (its DynamoDB adapters
//! on moto, a deferred table of the world's own) and batch-status placing them (Bedrock batch
//! jobs and flex or default calls on the emulator).

use std::sync::Arc;

use crate::invoke::{unique, Harness, HAIKU};
use crate::{sdk_config, stack_var, Emulator};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use batch_status::{Deferred, StatusApp};
use domain::ports::DeferredStore;
use serde_json::{json, Value};
use shared::adapters::batch_registry::DynamoDbBatchRegistry;
use shared::adapters::bedrock::{BedrockInvoker, BedrockSettings};
use shared::adapters::bedrock_batch::BedrockBatchJobs;
use shared::adapters::clock::ManualClock;
use shared::adapters::dynamo_deferred::{DynamoDbDeferredStore, PENDING_INDEX};
use shared::adapters::eventbridge::EventBridgePublisher;
use shared::adapters::s3_store::S3Store;
use shared::batch::{BatchSettings, Invocation, NoBudgets, NoQueue};
use shared::config::Env;
use shared::deferred::DeferredSettings;

/// batch-status over the local stack, with a deferred store.
pub type Status = StatusApp<
    S3Store,
    DynamoDbBatchRegistry,
    BedrockBatchJobs,
    Arc<ManualClock>,
    EventBridgePublisher,
    BedrockInvoker,
    NoQueue,
    NoBudgets,
    DynamoDbDeferredStore,
>;

/// A deferred table of the test's own (the template's schema), so that no other test's
/// requests are placed by its schedule.
pub async fn fresh_table() -> String {
    let name = unique("deferred").replace([' ', ':'], "-");
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("id"))
        .attribute_definitions(attribute("pending"))
        .key_schema(key("id", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(PENDING_INDEX)
                .key_schema(key("pending", KeyType::Hash))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the test's deferred table");
    name
}

/// invoke-with-cache and batch-status sharing a deferred table and a clock.
pub struct World {
    pub invoke: Harness,
    pub table: String,
    pub emulator: Emulator,
}

impl World {
    pub async fn new() -> Self {
        let emulator = Emulator::reset().await;
        emulator.configure(json!({"batchStepMs": 10})).await;
        let table = fresh_table().await;
        let invoke = Harness::new(&[("DEFERRED_TABLE_NAME", &table)]).await;
        Self {
            invoke,
            table,
            emulator,
        }
    }

    pub async fn store(&self) -> DynamoDbDeferredStore {
        DynamoDbDeferredStore::new(
            aws_sdk_dynamodb::Client::new(&sdk_config().await),
            &self.table,
        )
    }

    /// batch-status as its `main` builds it, on the invoke harness's clock.
    pub async fn status(&self) -> Status {
        let sdk = sdk_config().await;
        let env = Env::from_pairs([
            (
                "BATCH_ROLE_ARN",
                "arn:aws:iam::123456789012:role/bedrock-batch",
            ),
            ("ALLOWED_MODELS", HAIKU),
        ]);
        let settings = BatchSettings::from_env(&env).unwrap();
        let deferred = Deferred {
            store: self.store().await,
            settings: DeferredSettings::from_env(&env, &settings).unwrap(),
            metrics_namespace: "Custom/Bedrock".into(),
        };
        StatusApp {
            settings,
            store: S3Store::from_sdk_config(&sdk, stack_var("BATCH_BUCKET_NAME")),
            registry: DynamoDbBatchRegistry::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                stack_var("BATCH_TABLE_NAME"),
            ),
            jobs: BedrockBatchJobs::new(&sdk),
            clock: self.invoke.clock.clone(),
            events: EventBridgePublisher::from_sdk_config(&sdk, stack_var("BATCH_EVENT_BUS")),
            model: BedrockInvoker::new(&sdk, &BedrockSettings::for_schedule()),
            queue: None,
            budgets: None,
            deferred: Some(deferred),
        }
    }

    /// `count` deferred requests through invoke-with-cache, each its own question; their ids.
    pub async fn defer(&self, count: usize, within: &str, label: &str) -> Vec<String> {
        let run = unique(label);
        let mut ids = Vec::new();
        for i in 0..count {
            let reply = self
                .invoke
                .call(
                    "POST",
                    "/v1/deferred",
                    &json!({"prompt": format!("{run}: question {i}"), "modelId": HAIKU, "within": within}),
                )
                .await;
            assert_eq!(reply.status, 202, "{}", reply.body);
            ids.push(reply.body["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    pub async fn read(&self, id: &str) -> Value {
        let reply = self
            .invoke
            .call("GET", &format!("/v1/deferred/{id}"), &Value::Null)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// Schedule runs (placement, then the batches' advance) until every request is final.
    pub async fn schedule_until_answered(&self, status: &Status, ids: &[String]) {
        let store = self.store().await;
        for _ in 0..600 {
            status
                .on_schedule(&Invocation::longest())
                .await
                .expect("batch schedule");
            status
                .place_deferred(&Invocation::longest())
                .await
                .expect("placement");
            let mut done = true;
            for id in ids {
                let request = store.get(id).await.unwrap().unwrap();
                done &= request.status.is_final();
            }
            if done {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("deferred requests not answered");
    }

    /// Bedrock batch jobs the emulator holds, whatever their status.
    pub async fn batch_jobs(&self) -> u64 {
        self.emulator.stats().await["batchJobs"]
            .as_object()
            .map_or(0, |jobs| jobs.values().filter_map(Value::as_u64).sum())
    }

    /// Calls the emulator served on the flex tier.
    pub async fn flex_calls(&self) -> u64 {
        self.emulator.stats().await["models"][HAIKU]["tiers"]["flex"]
            .as_u64()
            .unwrap_or(0)
    }
}
