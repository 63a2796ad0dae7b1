use aws_config::BehaviorVersion;
use invoke_with_cache::{App, InvokeConfig};
use lambda_http::{run, service_fn, Error, Request};
use shared::adapters::bedrock::BedrockInvoker;
use shared::adapters::clock::SystemClock;
use shared::adapters::dynamo_cache::DynamoDbCacheStore;
use shared::adapters::emf::EmfStdout;
use shared::adapters::memory_cache::{MemoryCache, MemoryFronted};
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_tracing();
    let config = InvokeConfig::from_env(&Env::from_process())?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let table =
        DynamoDbCacheStore::from_sdk_config(&sdk, &config.cache_table, config.cache_timeout);
    let memory = MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
    let store = MemoryFronted::new(table, memory, SystemClock);
    let model = BedrockInvoker::new(&sdk, &config.bedrock);
    let metrics = EmfStdout::new(&config.metrics_namespace, config.log_level.as_deref());
    let app = App::new(config, store, model, SystemClock, metrics);
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(app.handle(request).await)
    }))
    .await
}
