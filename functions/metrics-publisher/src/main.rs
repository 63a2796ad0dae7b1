use aws_config::BehaviorVersion;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use metrics_publisher::{on_aws, Settings};
use serde_json::Value;
use shared::adapters::clock::SystemClock;
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_tracing();
    let settings = Settings::from_env(&Env::from_process())?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let publisher = on_aws(settings, &sdk, SystemClock);
    let publisher = &publisher;
    // Every invocation is a run, whatever the event (the schedule's, or a manual one).
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let summary = publisher.run(&event.context.request_id).await?;
        Ok::<_, Error>(serde_json::to_value(summary)?)
    }))
    .await
}
