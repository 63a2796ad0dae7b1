#![recursion_limit = "256"]

use aws_config::BehaviorVersion;
use capacity::{CapacityApp, CapacitySettings};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::adapters::bedrock_capacity::BedrockProvisionedThroughputs;
use shared::adapters::capacity_emf::CapacityEmf;
use shared::adapters::clock::SystemClock;
use shared::adapters::dynamo_routing::DynamoDbRoutingTable;
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_tracing();
    let settings = CapacitySettings::from_env(&Env::from_process())?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let app = CapacityApp {
        bedrock: BedrockProvisionedThroughputs::new(&sdk),
        table: DynamoDbRoutingTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &settings.routing_table,
        ),
        clock: SystemClock,
        metrics: CapacityEmf::new(&settings.metrics_namespace, settings.log_level.as_deref()),
        settings,
    };
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.on_event(event.payload).await.map_err(Error::from)
    }))
    .await
}
