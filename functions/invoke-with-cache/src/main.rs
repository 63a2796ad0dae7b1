use std::sync::Arc;

use aws_config::BehaviorVersion;
use http_body_util::BodyExt;
use invoke_with_cache::config::ResponseMode;
use invoke_with_cache::{Adapters, App, InvokeConfig, Ports, Tenancy};
use lambda_http::{run, run_with_streaming_response, service_fn, Body, Error, Request, Response};
use shared::adapters::bedrock::BedrockInvoker;
use shared::adapters::clock::SystemClock;
use shared::adapters::dynamo_cache::{client_with_timeout, DynamoDbCacheStore};
use shared::adapters::dynamo_deferred::DynamoDbDeferredStore;
use shared::adapters::dynamo_limits::DynamoDbLimiter;
use shared::adapters::dynamo_routing::DynamoDbRoutingTable;
use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};
use shared::adapters::emf::EmfStdout;
use shared::adapters::memory_cache::{MemoryCache, MemoryFronted};
use shared::adapters::memory_routing::CachedRoutingTable;
use shared::adapters::memory_tenancy::{CachedKeys, CachedSpend};
use shared::adapters::s3_store::S3Store;
use shared::config::Env;
use shared::runtime_nodelay::RuntimeApiNoDelay;

/// The AWS adapters, each behind the in-process cache that fronts it.
struct Aws;

impl Adapters for Aws {
    type Store = MemoryFronted<DynamoDbCacheStore, SystemClock>;
    type Model = BedrockInvoker;
    type Clock = SystemClock;
    type Metrics = EmfStdout;
    type Keys = CachedKeys<DynamoDbTenantKeys>;
    type Ledger = CachedSpend<DynamoDbSpendLedger>;
    type Limiter = DynamoDbLimiter;
    type Routes = CachedRoutingTable<DynamoDbRoutingTable>;
    type Deferred = DynamoDbDeferredStore;
    type Files = S3Store;
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_tracing();
    let config = InvokeConfig::from_env(&Env::from_process())?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let dynamodb = client_with_timeout(&sdk, config.cache_timeout);
    let table = DynamoDbCacheStore::new(dynamodb.clone(), &config.cache_table);
    let memory = MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
    let store = MemoryFronted::new(table, memory, SystemClock);
    let tenancy = config.tenancy.as_ref().map(|settings| Tenancy {
        keys: CachedKeys::new(
            DynamoDbTenantKeys::new(dynamodb.clone(), &settings.keys_table),
            settings.key_cache,
        ),
        ledger: CachedSpend::new(
            DynamoDbSpendLedger::new(dynamodb.clone(), &settings.spend_table),
            settings.spend_cache,
        )
        .with_grace(settings.spend_grace),
        // The limiter's items live in the spend table (shared::adapters::dynamo_limits).
        limiter: DynamoDbLimiter::new(dynamodb.clone(), &settings.spend_table),
    });
    // The capacity function's live routes, read at most once per ROUTING_TABLE_CACHE_SECONDS.
    let routes = config.routing_table.as_ref().map(|settings| {
        CachedRoutingTable::new(
            DynamoDbRoutingTable::new(dynamodb.clone(), &settings.table),
            settings.cache,
        )
    });
    let deferred = config
        .deferred
        .table
        .as_ref()
        .map(|table| DynamoDbDeferredStore::new(dynamodb.clone(), table));
    // OpenAI batch files, in the batch bucket (FILES_BUCKET_NAME).
    let files = config
        .deferred
        .files_bucket
        .as_ref()
        .map(|bucket| S3Store::from_sdk_config(&sdk, bucket));
    let model = BedrockInvoker::new(&sdk, &config.bedrock);
    let metrics = EmfStdout::new(&config.metrics_namespace, config.log_level.as_deref());
    let mode = config.response_mode;
    let nodelay = config.runtime_api_nodelay;
    let ports = Ports::<Aws> {
        store,
        model,
        clock: SystemClock,
        metrics,
        tenancy,
        routes,
        deferred,
        files,
    };
    let app = Arc::new(App::new(config, ports));
    match mode {
        // Every answer is written as a stream (whole for buffered answers), so API Gateway's
        // response streaming and `cargo lambda watch` pass server-sent events on as they come.
        // Streamed responses reach the Runtime API in several writes: without TCP_NODELAY on its
        // connection, each answer would wait 40 ms for a delayed ACK (shared::runtime_nodelay).
        ResponseMode::Streaming => {
            let nodelay = nodelay
                .then(RuntimeApiNoDelay::from_env)
                .flatten()
                .map(Arc::new);
            run_with_streaming_response(service_fn(move |request: Request| {
                if let Some(nodelay) = &nodelay {
                    nodelay.apply();
                }
                let app = Arc::clone(&app);
                // Boxed: nested inside the streaming runtime's own futures, the handler's future
                // is too deep for the compiler's default layout depth (one allocation a request).
                async move { Ok::<_, Error>(Box::pin(app.handle(request)).await) }
            }))
            .await
        }
        // For integrations that take one whole response: a stream is collected first.
        ResponseMode::Buffered => {
            run(service_fn(move |request: Request| {
                let app = Arc::clone(&app);
                async move {
                    let (parts, body) = app.handle(request).await.into_parts();
                    let bytes = body.collect().await?.to_bytes();
                    Ok::<_, Error>(Response::from_parts(parts, Body::from(bytes.to_vec())))
                }
            }))
            .await
        }
    }
}
