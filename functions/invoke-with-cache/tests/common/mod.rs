//! What invoke-with-cache's handler tests share: the function built over in-memory ports, and
//! its responses read. The fakes and the API Gateway events are test-support's.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use domain::ports::ModelInvoker;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use invoke_with_cache::{Adapters, App, InvokeConfig, Ports, ResponseBody};
use lambda_http::Response;
use serde_json::Value;
use shared::adapters::clock::ManualClock;
use shared::adapters::memory_cache::{MemoryCache, MemoryFronted};
use shared::adapters::memory_limits::InMemoryLimiter;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use shared::config::Env;

pub use test_support::cache::MemoryStore;
#[allow(unused_imports)] // each test file uses some
pub use test_support::events::{
    event, event_with_authorizer, http_event, HTTP_API_V2_IAM as V2_EVENT, REST_API_V1 as V1_EVENT,
};
pub use test_support::metrics::Recorder;
#[allow(unused_imports)] // each test file uses some
pub use test_support::model::{replayed, FakeModel, GatedModel};

pub const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
pub const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt1";

pub type Store = MemoryFronted<MemoryStore, Arc<ManualClock>>;
pub type Keys = shared::adapters::memory_tenancy::CachedKeys<Arc<InMemoryTenancy>>;
pub type Spend = shared::adapters::memory_tenancy::CachedSpend<Arc<InMemoryTenancy>>;

/// The handler tests' fakes: memory for every store, a manual clock, a model of the test's.
pub struct Fakes<M = FakeModel>(std::marker::PhantomData<fn() -> M>);

impl<M: ModelInvoker + 'static> Adapters for Fakes<M> {
    type Store = Store;
    type Model = M;
    type Clock = Arc<ManualClock>;
    type Metrics = Recorder;
    type Keys = Keys;
    type Ledger = Spend;
    type Limiter = Arc<InMemoryLimiter>;
    type Routes = shared::adapters::memory_routing::NoRoutingTable;
    type Deferred = shared::adapters::memory_deferred::MemoryDeferredStore;
    type Files = test_support::batch::Bucket;
}

/// The ports of a deployment without tenant keys or a routing table.
pub fn ports<M: ModelInvoker + 'static>(
    store: Store,
    model: M,
    clock: Arc<ManualClock>,
    metrics: Recorder,
) -> Ports<Fakes<M>> {
    Ports {
        store,
        model,
        clock,
        metrics,
        tenancy: None,
        routes: None,
        deferred: Some(Default::default()),
        files: Some(Default::default()),
    }
}

pub type TestApp = App<Fakes>;

/// Noon UTC on a Monday.
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
    ))
}

/// The function as `main` builds it (the in-memory cache in front of the store), with the
/// tier models of the tests unless `vars` set them.
pub fn build_with_clock(
    vars: &[(&str, &str)],
    store: MemoryStore,
    model: FakeModel,
    clock: Arc<ManualClock>,
) -> (Arc<TestApp>, Recorder) {
    let defaults = [("CACHE_TABLE_NAME", "cache"), ("MODEL_SIMPLE", HAIKU)];
    let mut pairs: Vec<(&str, &str)> = vars.to_vec();
    pairs.extend(
        defaults
            .iter()
            .filter(|(k, _)| !vars.iter().any(|(v, _)| v == k)),
    );
    let config = InvokeConfig::from_env(&Env::from_pairs(pairs)).unwrap();
    let memory = MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
    let store = MemoryFronted::new(store, memory, clock.clone());
    let recorder = Recorder::default();
    (
        Arc::new(App::new(
            config,
            ports(store, model, clock, recorder.clone()),
        )),
        recorder,
    )
}

pub fn build(
    vars: &[(&str, &str)],
    store: MemoryStore,
    model: FakeModel,
) -> (Arc<TestApp>, Recorder) {
    build_with_clock(vars, store, model, clock())
}

/// The bytes of a whole (not streamed) body: they are there at once.
pub fn bytes_of(response: Response<ResponseBody>) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .now_or_never()
        .expect("a buffered body is complete at once")
        .unwrap()
        .to_bytes()
        .to_vec()
}

pub fn read(response: Response<ResponseBody>) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = serde_json::from_slice(&bytes_of(response)).unwrap();
    (status, cache, body)
}

#[allow(unused_imports)] // each test file uses some
pub use invoke_with_cache::sse::{event_names, parse_events, text_deltas, Sse};

/// Reads a streamed body to its end.
pub async fn read_stream(response: Response<ResponseBody>) -> (u16, Option<String>, Vec<Sse>) {
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        cache,
        parse_events(std::str::from_utf8(&bytes).unwrap()),
    )
}

pub type TenantApp<M> = App<Fakes<M>>;

/// The function with tenant keys on (in memory, behind the instance caches `main` puts in
/// front of DynamoDB, with the TTLs of the configuration).
pub fn build_with_tenancy<M: ModelInvoker + 'static>(
    vars: &[(&str, &str)],
    model: M,
    tenancy: Arc<InMemoryTenancy>,
) -> (Arc<TenantApp<M>>, Recorder) {
    build_with_limiter(vars, model, tenancy, Arc::default(), clock())
}

/// As [`build_with_tenancy`], with the limiter the test holds.
pub fn build_with_limiter<M: ModelInvoker + 'static>(
    vars: &[(&str, &str)],
    model: M,
    tenancy: Arc<InMemoryTenancy>,
    limiter: Arc<InMemoryLimiter>,
    clock: Arc<ManualClock>,
) -> (Arc<TenantApp<M>>, Recorder) {
    let mut vars = vars.to_vec();
    vars.extend([
        ("TENANT_KEYS_TABLE_NAME", "keys"),
        ("SPEND_TABLE_NAME", "spend"),
        ("CACHE_TABLE_NAME", "cache"),
        ("MODEL_SIMPLE", HAIKU),
    ]);
    let config = InvokeConfig::from_env(&Env::from_pairs(vars)).unwrap();
    let settings = config.tenancy.clone().unwrap();

    let memory = MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
    let store = MemoryFronted::new(MemoryStore::default(), memory, clock.clone());
    let recorder = Recorder::default();
    let mut ports = ports(store, model, clock, recorder.clone());
    ports.tenancy = Some(invoke_with_cache::Tenancy {
        keys: shared::adapters::memory_tenancy::CachedKeys::new(
            tenancy.clone(),
            settings.key_cache,
        ),
        ledger: shared::adapters::memory_tenancy::CachedSpend::new(tenancy, settings.spend_cache)
            .with_grace(settings.spend_grace),
        limiter,
    });
    (Arc::new(App::new(config, ports)), recorder)
}
