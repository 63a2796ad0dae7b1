use aws_config::BehaviorVersion;
use batch_submit::SubmitApp;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::adapters::batch_registry::DynamoDbBatchRegistry;
use shared::adapters::bedrock_batch::BedrockBatchJobs;
use shared::adapters::clock::SystemClock;
use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};
use shared::adapters::s3_store::S3Store;
use shared::adapters::sqs_queue::SqsBatchQueue;
use shared::batch::{BatchSettings, LedgerBudgets};
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_tracing();
    let env = Env::from_process();
    let settings = BatchSettings::from_env(&env)?;
    let default_model = batch_submit::default_model(&env, &settings)?;
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
    let app = SubmitApp {
        settings,
        default_model,
        store: S3Store::from_sdk_config(&sdk, bucket),
        registry: DynamoDbBatchRegistry::new(dynamodb, table),
        jobs: BedrockBatchJobs::new(&sdk),
        clock: SystemClock,
        // Small batches are handed to batch-status here; without a queue (`make dev`), its
        // schedule finds them.
        queue: env
            .get("BATCH_WORK_QUEUE_URL")
            .map(|url| SqsBatchQueue::new(aws_sdk_sqs::Client::new(&sdk), url)),
        budgets,
    };
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.on_event(event.payload).await.map_err(Error::from)
    }))
    .await
}
