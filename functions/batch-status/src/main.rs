// The handler's future nests the SDK clients' futures deeply enough to pass the default limit.
#![recursion_limit = "256"]

use aws_config::BehaviorVersion;
use batch_status::{Deferred, StatusApp};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::adapters::batch_registry::DynamoDbBatchRegistry;
use shared::adapters::bedrock::{BedrockInvoker, BedrockSettings};
use shared::adapters::bedrock_batch::BedrockBatchJobs;
use shared::adapters::clock::SystemClock;
use shared::adapters::dynamo_deferred::DynamoDbDeferredStore;
use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};
use shared::adapters::eventbridge::EventBridgePublisher;
use shared::adapters::s3_store::S3Store;
use shared::adapters::sqs_queue::SqsBatchQueue;
use shared::batch::{BatchSettings, Invocation, LedgerBudgets};
use shared::config::Env;
use shared::deferred::DeferredSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_tracing();
    let env = Env::from_process();
    let settings = BatchSettings::from_env(&env)?;
    let bucket = env.required("BATCH_BUCKET_NAME")?;
    let table = env.required("BATCH_TABLE_NAME")?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    // Tenants' uploads count against the budgets of their keys (TENANT_KEYS_TABLE_NAME,
    // SPEND_TABLE_NAME).
    let budgets = settings.budget_tables.clone().map(|tables| LedgerBudgets {
        keys: DynamoDbTenantKeys::new(dynamodb.clone(), tables.keys),
        ledger: DynamoDbSpendLedger::new(dynamodb.clone(), tables.spend),
    });
    // Deferred requests, placed by each schedule run (DEFERRED_TABLE_NAME).
    let deferred = match env.get("DEFERRED_TABLE_NAME") {
        Some(table) => Some(Deferred {
            store: DynamoDbDeferredStore::new(dynamodb.clone(), table),
            settings: DeferredSettings::from_env(&env, &settings)?,
            metrics_namespace: env.string_or(
                "METRICS_NAMESPACE",
                shared::adapters::emf::DEFAULT_NAMESPACE,
            ),
        }),
        None => None,
    };
    let app = StatusApp {
        settings,
        store: S3Store::from_sdk_config(&sdk, bucket),
        registry: DynamoDbBatchRegistry::new(dynamodb, table),
        jobs: BedrockBatchJobs::new(&sdk),
        clock: SystemClock,
        events: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            env.string_or("BATCH_EVENT_BUS", "default"),
        ),
        // Small batches are answered here, on demand.
        model: BedrockInvoker::new(&sdk, &BedrockSettings::for_schedule()),
        // Without a work queue (`make dev`), the schedule advances every batch itself.
        queue: env
            .get("BATCH_WORK_QUEUE_URL")
            .map(|url| SqsBatchQueue::new(aws_sdk_sqs::Client::new(&sdk), url)),
        budgets,
        deferred,
    };
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        // A small batch's run stops in time for Lambda's deadline.
        let run = Invocation::of_lambda(&event.context.request_id, event.context.deadline);
        app.on_invocation(event.payload, &run)
            .await
            .map_err(Error::from)
    }))
    .await
}
