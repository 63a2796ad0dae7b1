//! In-memory ports and API Gateway event fixtures shared by the handler tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use invoke_with_cache::{App, InvokeConfig};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shared::adapters::clock::ManualClock;
use shared::config::Env;
use shared::domain::cache::{CacheEntry, CacheKey};
use shared::domain::conversation::{Conversation, Message, ModelAnswer, Role, TextBlock, Usage};
use shared::domain::error::{CacheError, ModelError};
use shared::domain::metrics::RequestMetrics;
use shared::ports::{CacheStore, MetricsSink, ModelInvoker};

pub const V2_EVENT: &str = include_str!("../fixtures/apigw-v2-iam.json");
pub const V1_EVENT: &str = include_str!("../fixtures/apigw-rest-v1.json");

#[derive(Default)]
pub struct MemoryStore {
    pub items: Mutex<HashMap<CacheKey, CacheEntry>>,
    pub broken: bool,
    /// Refuses every entry as too large for an item.
    pub refuses_as_too_large: bool,
}

impl CacheStore for MemoryStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        if self.broken {
            return Err(CacheError::Unavailable("table not found".into()));
        }
        Ok(self.items.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<(), CacheError> {
        if self.broken {
            return Err(CacheError::Unavailable("table not found".into()));
        }
        if self.refuses_as_too_large {
            return Err(CacheError::TooLarge(500_000));
        }
        self.items
            .lock()
            .unwrap()
            .insert(key.clone(), entry.clone());
        Ok(())
    }
}

/// Clones share their call log, so a test keeps one while the app owns another.
#[derive(Clone)]
pub struct FakeModel {
    calls: Arc<Mutex<Vec<String>>>,
    failure: Option<ModelError>,
}

impl FakeModel {
    pub fn answering() -> Self {
        Self {
            calls: Arc::default(),
            failure: None,
        }
    }

    pub fn failing(error: ModelError) -> Self {
        Self {
            calls: Arc::default(),
            failure: Some(error),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl ModelInvoker for FakeModel {
    async fn converse(&self, model_id: &str, _: &Conversation) -> Result<ModelAnswer, ModelError> {
        self.calls.lock().unwrap().push(model_id.to_owned());
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        Ok(ModelAnswer {
            message: Message {
                role: Role::Assistant,
                content: vec![TextBlock::new("secret answer text")],
            },
            stop_reason: "end_turn".into(),
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

pub type TestApp = App<MemoryStore, FakeModel, ManualClock, Recorder>;

pub fn build(vars: &[(&str, &str)], store: MemoryStore, model: FakeModel) -> (TestApp, Recorder) {
    let env = Env::from_pairs(vars.iter().copied().chain([("CACHE_TABLE_NAME", "cache")]));
    let config = InvokeConfig::from_env(&env).unwrap();
    let clock = ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap());
    let recorder = Recorder::default();
    (
        App::new(config, store, model, clock, recorder.clone()),
        recorder,
    )
}

pub fn event(fixture: &str, body: &Value) -> Request {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    event["body"] = Value::String(body.to_string());
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

pub fn read(response: Response<Body>) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = serde_json::from_slice(response.body().as_ref()).unwrap();
    (status, cache, body)
}
