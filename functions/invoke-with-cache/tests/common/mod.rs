//! In-memory ports and API Gateway event fixtures shared by the handler tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::cache::{CacheEntry, CacheKey, Lease, StoredRecord};
use domain::conversation::{ContentBlock, Conversation, Message, ModelAnswer, Role, Usage};
use domain::error::{CacheError, ModelError, ModelErrorKind};
use domain::metrics::RequestMetrics;
use domain::ports::{CacheStore, MetricsSink, ModelInvoker, ModelStream};
use domain::routing::Target;
use domain::stream::{replay, StreamEvent};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use invoke_with_cache::{Adapters, App, InvokeConfig, Ports, ResponseBody};
use lambda_http::{Request, Response};
use serde_json::Value;
use shared::adapters::clock::ManualClock;
use shared::adapters::memory_cache::{MemoryCache, MemoryFronted};
use shared::adapters::memory_tenancy::InMemoryTenancy;
use shared::config::Env;

pub const V2_EVENT: &str = include_str!("../fixtures/apigw-v2-iam.json");
pub const V1_EVENT: &str = include_str!("../fixtures/apigw-rest-v1.json");
pub const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
pub const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt1";

/// A store with DynamoDB's semantics (conditional lease, owner-only release); clones share
/// their items.
#[derive(Default, Clone)]
pub struct MemoryStore {
    pub items: Arc<Mutex<HashMap<CacheKey, StoredRecord>>>,
    pub broken: bool,
    /// Refuses every entry as too large for an item.
    pub refuses_as_too_large: bool,
}

impl MemoryStore {
    fn check(&self) -> Result<(), CacheError> {
        if self.broken {
            Err(CacheError::Unavailable("table not found".into()))
        } else {
            Ok(())
        }
    }

    pub fn leases(&self) -> usize {
        self.items
            .lock()
            .unwrap()
            .values()
            .filter(|r| matches!(r, StoredRecord::Lease(_)))
            .count()
    }

    pub fn answers(&self) -> usize {
        let total = self.items.lock().unwrap().len();
        total - self.leases()
    }
}

impl CacheStore for MemoryStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<StoredRecord>, CacheError> {
        self.check()?;
        Ok(self.items.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<(), CacheError> {
        self.check()?;
        if self.refuses_as_too_large {
            return Err(CacheError::TooLarge(500_000));
        }
        self.items
            .lock()
            .unwrap()
            .insert(key.clone(), StoredRecord::Answer(entry.clone()));
        Ok(())
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, CacheError> {
        self.check()?;
        let mut items = self.items.lock().unwrap();
        let free = match items.get(key) {
            None => true,
            Some(StoredRecord::Lease(held)) => !held.is_live(now_ms),
            Some(StoredRecord::Answer(entry)) => !entry.is_live(now_ms.div_euclid(1000)),
        };
        if free {
            items.insert(key.clone(), StoredRecord::Lease(lease.clone()));
        }
        Ok(free)
    }

    async fn release(&self, key: &CacheKey, owner: &str) -> Result<(), CacheError> {
        self.check()?;
        let mut items = self.items.lock().unwrap();
        if matches!(items.get(key), Some(StoredRecord::Lease(l)) if l.owner == owner) {
            items.remove(key);
        }
        Ok(())
    }
}

/// A call the fake received: the identifier and the time it was given.
type Call = (String, Option<Duration>);

/// A model whose answer or failure is set per identifier; clones share their call log.
#[derive(Clone)]
pub struct FakeModel {
    calls: Arc<Mutex<Vec<Call>>>,
    failures: HashMap<String, ModelError>,
    failure: Option<ModelError>,
    stop_reason: String,
    text: String,
    delay: Duration,
    /// A stream fails with this after its first events.
    cut: Option<ModelError>,
}

impl FakeModel {
    pub fn answering() -> Self {
        Self {
            calls: Arc::default(),
            failures: HashMap::new(),
            failure: None,
            stop_reason: "end_turn".into(),
            text: "secret answer text".into(),
            delay: Duration::ZERO,
            cut: None,
        }
    }

    /// Streams fail mid-way with `kind`, after the first text delta.
    pub fn cutting_streams(mut self, kind: ModelErrorKind) -> Self {
        self.cut = Some(ModelError::new(kind, "cut by the fake"));
        self
    }

    pub fn failing(kind: ModelErrorKind) -> Self {
        Self {
            failure: Some(ModelError::new(kind, format!("{kind:?} from the fake"))),
            ..Self::answering()
        }
    }

    /// Fails calls to one identifier (a Provisioned Throughput ARN, say) only.
    pub fn failing_on(mut self, invoke_id: &str, kind: ModelErrorKind) -> Self {
        self.failures.insert(
            invoke_id.to_owned(),
            ModelError::new(kind, "fake failure on this id"),
        );
        self
    }

    pub fn ending(mut self, stop_reason: &str, text: &str) -> Self {
        self.stop_reason = stop_reason.into();
        self.text = text.into();
        self
    }

    pub fn taking(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn timeouts(&self) -> Vec<Option<Duration>> {
        self.calls.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }
}

/// The events a model's stream gives for `answer`.
pub fn replayed(answer: &ModelAnswer) -> Vec<Result<StreamEvent, ModelError>> {
    replay(answer).into_iter().map(Ok).collect()
}

impl ModelInvoker for FakeModel {
    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let answer = self.converse(target, conversation, timeout).await?;
        let mut events = replayed(&answer);
        if let Some(cut) = &self.cut {
            let first_text = events
                .iter()
                .position(|e| matches!(e, Ok(StreamEvent::Text { .. })))
                .unwrap_or(0);
            events.truncate(first_text + 1);
            events.push(Err(cut.clone()));
        }
        Ok(Box::pin(futures_util::stream::iter(events)))
    }

    async fn converse(
        &self,
        target: &Target,
        _: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        self.calls
            .lock()
            .unwrap()
            .push((target.invoke_id.clone(), timeout));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(error) = self
            .failures
            .get(&target.invoke_id)
            .or(self.failure.as_ref())
        {
            return Err(error.clone());
        }
        Ok(ModelAnswer {
            message: Message {
                role: Role::Assistant,
                content: vec![ContentBlock::text(self.text.clone())],
            },
            stop_reason: self.stop_reason.clone(),
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 1000,
                total_tokens: 2000,
            },
        })
    }
}

#[derive(Default, Clone)]
pub struct Recorder(pub Arc<Mutex<Vec<RequestMetrics>>>);

impl MetricsSink for Recorder {
    fn publish(&self, metrics: &RequestMetrics) {
        self.0.lock().unwrap().push(metrics.clone());
    }
}

impl Recorder {
    pub fn last(&self) -> RequestMetrics {
        self.0.lock().unwrap().last().cloned().unwrap()
    }
}

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
    type Routes = shared::adapters::memory_routing::NoRoutingTable;
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

pub fn event(fixture: &str, body: &Value) -> Request {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    event["body"] = Value::String(body.to_string());
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The HTTP API fixture with another authorizer context.
pub fn event_with_authorizer(authorizer: Value, body: &Value) -> Request {
    let mut event: Value = serde_json::from_str(V2_EVENT).unwrap();
    event["requestContext"]["authorizer"] = authorizer;
    event["body"] = Value::String(body.to_string());
    lambda_http::request::from_str(&event.to_string()).unwrap()
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
    let mut vars = vars.to_vec();
    vars.extend([
        ("TENANT_KEYS_TABLE_NAME", "keys"),
        ("SPEND_TABLE_NAME", "spend"),
        ("CACHE_TABLE_NAME", "cache"),
        ("MODEL_SIMPLE", HAIKU),
    ]);
    let config = InvokeConfig::from_env(&Env::from_pairs(vars)).unwrap();
    let settings = config.tenancy.clone().unwrap();
    let clock = clock();
    let memory = MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
    let store = MemoryFronted::new(MemoryStore::default(), memory, clock.clone());
    let recorder = Recorder::default();
    let mut ports = ports(store, model, clock, recorder.clone());
    ports.tenancy = Some(invoke_with_cache::Tenancy {
        keys: shared::adapters::memory_tenancy::CachedKeys::new(
            tenancy.clone(),
            settings.key_cache,
        ),
        ledger: shared::adapters::memory_tenancy::CachedSpend::new(tenancy, settings.spend_cache),
    });
    (Arc::new(App::new(config, ports)), recorder)
}

/// An HTTP API event for `method path`, with a bearer key when given.
pub fn http_event(method: &str, path: &str, bearer: Option<&str>, body: &Value) -> Request {
    let mut event: Value = serde_json::from_str(V2_EVENT).unwrap();
    event["rawPath"] = Value::String(path.into());
    event["requestContext"]["http"]["path"] = Value::String(path.into());
    event["requestContext"]["http"]["method"] = Value::String(method.into());
    event["routeKey"] = Value::String(format!("{method} {path}"));
    if let Some(key) = bearer {
        event["headers"]["authorization"] = Value::String(format!("Bearer {key}"));
        // Key callers come through a route without IAM.
        event["requestContext"]["authorizer"] = Value::Null;
    }
    event["body"] = if body.is_null() {
        Value::Null
    } else {
        Value::String(body.to_string())
    };
    lambda_http::request::from_str(&event.to_string()).unwrap()
}
