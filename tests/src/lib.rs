#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers: a failure is the report
//! Helpers for the integration tests: the local stack's environment (written by
//! `scripts/stack.sh up` and loaded by `make integration-test`) and the emulator's admin API.

use std::time::Duration;

pub mod deferred;
pub mod functions;
pub mod serve;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use serde_json::Value;

/// A variable the stack's env file sets; the message says how to get it.
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `make integration-test`, which starts the local stack")
    })
}

/// Up to 10 messages of the local stack's SQS queue at `queue_url` (SQS's JSON shape:
/// `MessageId`, `ReceiptHandle`, `Body`, …), hidden from other readers for 12 hours; none when
/// the queue is empty.
pub async fn sqs_receive(queue_url: &str) -> Vec<Value> {
    let endpoint = stack_var("AWS_ENDPOINT_URL_SQS");
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    // SQS's JSON protocol; moto reads the service from the credential scope and checks no
    // signature.
    let response = http
        .post(&endpoint)
        .header("x-amz-target", "AmazonSQS.ReceiveMessage")
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/sqs/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .json(&serde_json::json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 43_200}))
        .send()
        .await
        .expect("SQS ReceiveMessage");
    assert!(
        response.status().is_success(),
        "SQS ReceiveMessage answered {}",
        response.status()
    );
    let answer: Value = response.json().await.expect("a JSON answer");
    answer["Messages"].as_array().cloned().unwrap_or_default()
}

/// One SDK config for the stack, with retries off so that every fault is seen.
pub async fn sdk_config() -> SdkConfig {
    stack_var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME");
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

/// The emulator's admin endpoint.
#[derive(Clone)]
pub struct Emulator {
    base: String,
    http: reqwest::Client,
}

impl Emulator {
    /// Connects to the stack's emulator and resets its counters and faults.
    pub async fn reset() -> Self {
        let emulator = Self {
            base: stack_var("EMULATOR_URL"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        let status = emulator
            .http
            .post(format!("{}/_emulator/reset", emulator.base))
            .send()
            .await
            .expect("emulator reset")
            .status();
        assert!(status.is_success(), "emulator reset answered {status}");
        emulator
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Applies a config patch (`POST /_emulator/config`).
    pub async fn configure(&self, patch: Value) {
        let response = self
            .http
            .post(self.url("/_emulator/config"))
            .json(&patch)
            .send()
            .await
            .expect("emulator config");
        assert!(
            response.status().is_success(),
            "emulator config answered {}",
            response.status()
        );
    }

    /// Creates a Provisioned Throughput through the emulator's control plane (the AWS SDK for
    /// Rust, by `AWS_ENDPOINT_URL_BEDROCK` alone) and returns its ARN once it is `InService`,
    /// polling `GetProvisionedModelThroughput` (bounded: the emulator's `provisioned.createMs`,
    /// 1000 by default, 0 in most tests). Panics if it fails or takes longer than 30 s.
    pub async fn create_provisioned(&self, name: &str, model_id: &str, model_units: i32) -> String {
        let bedrock = aws_sdk_bedrock::Client::new(&sdk_config().await);
        let arn = bedrock
            .create_provisioned_model_throughput()
            .provisioned_model_name(name)
            .model_id(model_id)
            .model_units(model_units)
            .send()
            .await
            .expect("CreateProvisionedModelThroughput")
            .provisioned_model_arn
            .clone();
        wait_in_service(&bedrock, &arn).await;
        arn
    }

    /// The emulator's counters (`GET /_emulator/stats`).
    pub async fn stats(&self) -> Value {
        self.http
            .get(self.url("/_emulator/stats"))
            .send()
            .await
            .expect("emulator stats")
            .json()
            .await
            .expect("stats json")
    }

    /// Calls the emulator received for a model identifier, whatever their outcome.
    pub async fn calls(&self, model_id: &str) -> u64 {
        self.stats().await["models"][model_id]["calls"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Polls `GetProvisionedModelThroughput` until the Provisioned Throughput is `InService`
/// (every 10 ms, for at most 30 s); panics if it fails or does not get there.
pub async fn wait_in_service(bedrock: &aws_sdk_bedrock::Client, identifier: &str) {
    use aws_sdk_bedrock::types::ProvisionedModelStatus;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pt = bedrock
            .get_provisioned_model_throughput()
            .provisioned_model_id(identifier)
            .send()
            .await
            .expect("GetProvisionedModelThroughput");
        match pt.status {
            ProvisionedModelStatus::InService => return,
            ProvisionedModelStatus::Failed => {
                panic!("{identifier} failed: {:?}", pt.failure_message)
            }
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{identifier} is still {:?} after 30 s",
            pt.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub use invoke_with_cache::sse::{event_names, parse_events, text_deltas, Sse};

/// invoke-with-cache wired to the local stack: real DynamoDB (moto) and Bedrock (emulator)
/// adapters, an injected clock and a metrics recorder.
pub mod invoke {
    use std::sync::Arc;

    use chrono::{DateTime, TimeZone, Utc};
    use invoke_with_cache::{Adapters, App, InvokeConfig, Ports, ResponseBody, Tenancy};
    use lambda_http::Request;
    use serde_json::Value;
    use shared::adapters::bedrock::BedrockInvoker;
    use shared::adapters::clock::ManualClock;
    use shared::adapters::dynamo_cache::DynamoDbCacheStore;
    use shared::adapters::dynamo_limits::DynamoDbLimiter;
    use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};
    use shared::adapters::memory_cache::{MemoryCache, MemoryFronted};
    use shared::adapters::memory_routing::NoRoutingTable;
    use shared::adapters::memory_tenancy::{CachedKeys, CachedSpend};
    use shared::config::Env;

    pub const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
    pub const SONNET: &str = "anthropic.claude-3-sonnet-20240229-v1:0";
    pub const OPUS: &str = "anthropic.claude-3-opus-20240229-v1:0";
    /// A Provisioned Throughput ARN the emulator does not hold: only for tests where Bedrock
    /// is unreachable. Tests that call the emulator create theirs
    /// ([`super::Emulator::create_provisioned`]).
    pub const PT_ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/haiku-pt";

    const V2_EVENT: &str = test_support::events::HTTP_API_V2_IAM;

    /// The metrics recorder of the handler tests: [`Recorder::wait_for`] waits until a number of
    /// requests have been reported.
    pub use test_support::metrics::Recorder;

    pub type Store = MemoryFronted<DynamoDbCacheStore, Arc<ManualClock>>;

    /// The AWS adapters on the local stack, with a manual clock and recorded metrics.
    pub struct LocalStack;

    impl Adapters for LocalStack {
        type Store = Store;
        type Model = BedrockInvoker;
        type Clock = Arc<ManualClock>;
        type Metrics = Recorder;
        type Keys = CachedKeys<DynamoDbTenantKeys>;
        type Ledger = CachedSpend<DynamoDbSpendLedger>;
        type Limiter = DynamoDbLimiter;
        type Routes = NoRoutingTable;
        type Deferred = shared::adapters::dynamo_deferred::DynamoDbDeferredStore;
        type Files = shared::adapters::s3_store::S3Store;
    }

    pub type InvokeApp = App<LocalStack>;

    pub struct Harness {
        pub app: Arc<InvokeApp>,
        pub clock: Arc<ManualClock>,
        pub metrics: Recorder,
    }

    /// Noon UTC on a fixed day.
    pub fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .expect("valid time")
    }

    fn config(overrides: &[(&str, &str)]) -> InvokeConfig {
        let table = super::stack_var("CACHE_TABLE_NAME");
        let mut vars: Vec<(&str, &str)> = vec![
            ("CACHE_TABLE_NAME", table.as_str()),
            ("BEDROCK_MAX_ATTEMPTS", "1"),
            ("BEDROCK_RETRY_MODE", "standard"),
            ("MODEL_SIMPLE", HAIKU),
            ("MODEL_MODERATE", SONNET),
            ("MODEL_COMPLEX", OPUS),
        ];
        vars.extend_from_slice(overrides);
        InvokeConfig::from_env(&Env::from_pairs(vars)).expect("config")
    }

    pub struct Reply {
        pub status: u16,
        pub headers: lambda_http::http::HeaderMap,
        pub body: Value,
    }

    impl Reply {
        pub fn cache(&self) -> &str {
            self.body["cache"].as_str().unwrap_or("(none)")
        }
    }

    impl Harness {
        /// The function as `main` builds it, from the stack's variables plus `overrides`
        /// (retries off so that each fault is seen once; the Claude 3 models as tiers).
        pub async fn new(overrides: &[(&str, &str)]) -> Self {
            let config = config(overrides);
            let model = BedrockInvoker::new(&super::sdk_config().await, &config.bedrock);
            Self::build(config, model).await
        }

        /// The same, with Bedrock at another address (one where nothing listens, say).
        pub async fn with_bedrock_at(overrides: &[(&str, &str)], endpoint: &str) -> Self {
            let sdk = super::sdk_config().await;
            let client = aws_sdk_bedrockruntime::config::Builder::from(&sdk)
                .endpoint_url(endpoint)
                .build();
            let model =
                BedrockInvoker::from_client(aws_sdk_bedrockruntime::Client::from_conf(client));
            Self::build(config(overrides), model).await
        }

        async fn build(config: InvokeConfig, model: BedrockInvoker) -> Self {
            let clock = Arc::new(ManualClock::at(noon()));
            let table = DynamoDbCacheStore::from_sdk_config(
                &super::sdk_config().await,
                &config.cache_table,
                config.cache_timeout,
            );
            let memory =
                MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
            let store = MemoryFronted::new(table, memory, clock.clone());
            let metrics = Recorder::default();
            let dynamodb = aws_sdk_dynamodb::Client::new(&super::sdk_config().await);
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
                limiter: DynamoDbLimiter::new(dynamodb.clone(), &settings.spend_table),
            });
            // The stack's table, unless the test names one of its own (DEFERRED_TABLE_NAME).
            let table = config
                .deferred
                .table
                .clone()
                .unwrap_or_else(|| super::stack_var("DEFERRED_TABLE_NAME"));
            let deferred = Some(
                shared::adapters::dynamo_deferred::DynamoDbDeferredStore::new(dynamodb, table),
            );
            let ports = Ports::<LocalStack> {
                store,
                model,
                clock: clock.clone(),
                metrics: metrics.clone(),
                tenancy,
                routes: None,
                deferred,
                // OpenAI batch files in the stack's batch bucket.
                files: Some(shared::adapters::s3_store::S3Store::from_sdk_config(
                    &super::sdk_config().await,
                    super::stack_var("BATCH_BUCKET_NAME"),
                )),
            };
            let app = App::new(config, ports);
            Self {
                app: Arc::new(app),
                clock,
                metrics,
            }
        }

        /// Sends an HTTP API (payload 2.0) event, with a raw body, method and headers.
        pub async fn send(&self, method: &str, content_type: Option<&str>, body: &str) -> Reply {
            let mut event: Value = serde_json::from_str(V2_EVENT).expect("fixture");
            event["body"] = Value::String(body.to_owned());
            event["requestContext"]["http"]["method"] = Value::String(method.to_owned());
            let headers = event["headers"].as_object_mut().expect("headers");
            match content_type {
                Some(ct) => {
                    headers.insert("content-type".into(), Value::String(ct.to_owned()));
                }
                None => {
                    headers.remove("content-type");
                }
            }
            let request: Request =
                lambda_http::request::from_str(&event.to_string()).expect("event");
            let response = self.app.handle(request).await;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            let body = serde_json::from_slice(&bytes).expect("JSON body");
            Reply {
                status,
                headers,
                body,
            }
        }

        pub async fn invoke(&self, body: Value) -> Reply {
            self.send("POST", Some("application/json"), &body.to_string())
                .await
        }

        /// Sends `method path` with an optional bearer key; the response as the handler gave it.
        pub async fn request(
            &self,
            method: &str,
            path: &str,
            bearer: Option<&str>,
            body: &Value,
        ) -> lambda_http::http::Response<ResponseBody> {
            let mut event: Value = serde_json::from_str(V2_EVENT).expect("fixture");
            event["rawPath"] = Value::String(path.into());
            event["requestContext"]["http"]["path"] = Value::String(path.into());
            event["requestContext"]["http"]["method"] = Value::String(method.into());
            if let Some(key) = bearer {
                event["headers"]["authorization"] = Value::String(format!("Bearer {key}"));
                event["requestContext"]["authorizer"] = Value::Null;
            }
            event["body"] = Value::String(body.to_string());
            let request: Request =
                lambda_http::request::from_str(&event.to_string()).expect("event");
            self.app.handle(request).await
        }

        /// Sends `method path` as an IAM caller; the JSON answer.
        pub async fn call(&self, method: &str, path: &str, body: &Value) -> Reply {
            let response = self.request(method, path, None, body).await;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            Reply {
                status,
                headers,
                body: serde_json::from_slice(&bytes).expect("JSON body"),
            }
        }

        /// `POST /v1/invoke` with `"stream": true`, read to its end.
        pub async fn stream(&self, mut body: Value) -> (u16, Vec<super::Sse>) {
            body["stream"] = Value::Bool(true);
            let response = self.request("POST", "/v1/invoke", None, &body).await;
            let status = response.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            (
                status,
                super::parse_events(std::str::from_utf8(&bytes).expect("UTF-8 events")),
            )
        }

        /// Serves this function over HTTP on a free port (see [`super::serve::serve`]).
        pub async fn serve(&self) -> std::net::SocketAddr {
            let app = Arc::clone(&self.app);
            super::serve::serve(move |request| {
                let app = Arc::clone(&app);
                async move { app.handle(request).await }
            })
            .await
        }
    }

    /// A prompt no other test sends, so no test sees another's cache entries.
    pub fn unique(label: &str) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{label} #{} at {}",
            N.fetch_add(1, Ordering::Relaxed),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
    }
}

/// batch-submit and batch-status wired to the local stack: the batch bucket and registry on
/// moto, Bedrock's batch API on the emulator, batch ends announced on moto's EventBridge.
pub mod batch {
    use std::sync::Mutex;
    use std::time::Duration;

    use batch_status::StatusApp;
    use batch_submit::SubmitApp;
    use domain::batch::Batch;
    use domain::ports::{BatchRegistry, ObjectStore};
    use serde_json::Value;
    use shared::adapters::batch_registry::DynamoDbBatchRegistry;
    use shared::adapters::bedrock::{BedrockInvoker, BedrockSettings};
    use shared::adapters::bedrock_batch::BedrockBatchJobs;
    use shared::adapters::clock::SystemClock;
    use shared::adapters::eventbridge::EventBridgePublisher;
    use shared::adapters::s3_store::S3Store;
    use shared::batch::{BatchSettings, Invocation};
    use shared::config::Env;

    pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/bedrock-batch";

    pub struct BatchHarness {
        pub submit: SubmitApp<S3Store, DynamoDbBatchRegistry, BedrockBatchJobs, SystemClock>,
        pub status: StatusApp<
            S3Store,
            DynamoDbBatchRegistry,
            BedrockBatchJobs,
            SystemClock,
            EventBridgePublisher,
            BedrockInvoker,
        >,
    }

    /// The events on the stack's buses from the toolkit (`source` bedrock-toolkit.batch) about
    /// `batch_id`, whole EventBridge envelopes, oldest first. `scripts/local_resources.py` routes
    /// them to an SQS queue (BATCH_ANNOUNCEMENTS_QUEUE_URL); moto delivers an event to it within
    /// the PutEvents call, so whatever batch-status published is there when its run returns.
    /// Every message read is kept here (and hidden in the queue), so tests may read in any order.
    pub async fn announcements(batch_id: &str) -> Vec<Value> {
        static READ: Mutex<Vec<Value>> = Mutex::new(Vec::new());
        let queue = super::stack_var("BATCH_ANNOUNCEMENTS_QUEUE_URL");
        loop {
            let messages = super::sqs_receive(&queue).await;
            if messages.is_empty() {
                break;
            }
            let mut read = READ.lock().expect("announcements");
            for message in messages {
                let body = message["Body"].as_str().expect("a message body");
                read.push(serde_json::from_str(body).expect("an EventBridge event"));
            }
        }
        let read = READ.lock().expect("announcements");
        read.iter()
            .filter(|event| event["detail"]["batchId"] == batch_id)
            .cloned()
            .collect()
    }

    pub struct Reply {
        pub status: u16,
        pub body: Value,
    }

    impl BatchHarness {
        /// Both functions as their `main`s build them, from the stack's variables plus
        /// `overrides` (e.g. `BATCH_EVENT_BUS`, which is the stack's bus otherwise).
        pub async fn new(overrides: &[(&str, &str)]) -> Self {
            let bucket = super::stack_var("BATCH_BUCKET_NAME");
            let table = super::stack_var("BATCH_TABLE_NAME");
            let bus = super::stack_var("BATCH_EVENT_BUS");
            super::stack_var("AWS_ENDPOINT_URL_EVENTBRIDGE");
            // The batches here run on Claude 3 Haiku, which the emulator serves.
            let mut vars = vec![
                ("BATCH_ROLE_ARN", ROLE_ARN),
                ("BATCH_EVENT_BUS", &bus),
                ("ALLOWED_MODELS", crate::invoke::HAIKU),
            ];
            vars.extend_from_slice(overrides);
            let env = Env::from_pairs(vars);
            let settings = BatchSettings::from_env(&env).expect("batch settings");
            let sdk = super::sdk_config().await;
            let store = || S3Store::from_sdk_config(&sdk, &bucket);
            let registry =
                || DynamoDbBatchRegistry::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
            Self {
                submit: SubmitApp {
                    settings: settings.clone(),
                    default_model: batch_submit::default_model(&env, &settings)
                        .expect("BATCH_DEFAULT_MODEL"),
                    store: store(),
                    registry: registry(),
                    jobs: BedrockBatchJobs::new(&sdk),
                    clock: SystemClock,
                    queue: None,
                    budgets: None,
                },
                status: StatusApp {
                    settings,
                    store: store(),
                    registry: registry(),
                    jobs: BedrockBatchJobs::new(&sdk),
                    clock: SystemClock,
                    events: EventBridgePublisher::from_sdk_config(
                        &sdk,
                        env.string_or("BATCH_EVENT_BUS", "default"),
                    ),
                    model: BedrockInvoker::new(&sdk, &BedrockSettings::default()),
                    queue: None,
                    budgets: None,
                    deferred: None,
                },
            }
        }

        /// `POST /v1/batches` through batch-submit, as API Gateway delivers it.
        pub async fn submit(&self, body: &Value) -> Reply {
            let request = super::http_event("POST", "/v1/batches", &body.to_string());
            let response = self.submit.handle(request).await;
            Reply {
                status: response.status().as_u16(),
                body: serde_json::from_slice(response.body().as_ref()).expect("JSON body"),
            }
        }

        /// `GET /v1/batches/{batchId}` through batch-status.
        pub async fn get(&self, batch_id: &str) -> Reply {
            self.call("GET", batch_id).await
        }

        /// `DELETE /v1/batches/{batchId}` through batch-status.
        pub async fn stop(&self, batch_id: &str) -> Reply {
            self.call("DELETE", batch_id).await
        }

        /// Any batch-status route, e.g. `GET /v1/batches?limit=2` or `GET /v1/batches/{id}/results`.
        pub async fn route(&self, method: &str, path_and_query: &str) -> Reply {
            let request = super::http_event(method, path_and_query, "");
            let answered = self.status.answer(&request).await;
            let (status, body) = (answered.status, answered.body);
            Reply {
                status: status.as_u16(),
                body,
            }
        }

        async fn call(&self, method: &str, batch_id: &str) -> Reply {
            let request = super::http_event(method, &format!("/v1/batches/{batch_id}"), "");
            let answered = self.status.answer(&request).await;
            let (status, body) = (answered.status, answered.body);
            Reply {
                status: status.as_u16(),
                body,
            }
        }

        pub async fn batch(&self, batch_id: &str) -> Batch {
            self.status
                .registry
                .get(batch_id)
                .await
                .expect("registry")
                .expect("the batch is registered")
        }

        /// Runs the schedule until the batch has ended (bounded: the emulator's jobs move every
        /// few milliseconds in tests).
        pub async fn schedule_until_ended(&self, batch_id: &str) -> Batch {
            for _ in 0..600 {
                self.status
                    .on_schedule(&Invocation::longest())
                    .await
                    .expect("schedule run");
                let batch = self.batch(batch_id).await;
                if batch.status.is_final() {
                    return batch;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!(
                "batch {batch_id} did not end: {:?}",
                self.batch(batch_id).await
            );
        }

        /// Uploads a file to the batch bucket and delivers its `ObjectCreated` event to
        /// batch-submit `times` times, as S3 may; the batch ids it answered.
        /// Puts `body` at `key` (with `model` as its `model-id` metadata) and gives the S3
        /// event of that version, as the bucket would send it.
        pub async fn put_upload(&self, key: &str, body: Vec<u8>, model: Option<&str>) -> Value {
            let bucket = super::stack_var("BATCH_BUCKET_NAME");
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&super::sdk_config().await)
                    .force_path_style(true)
                    .build(),
            );
            let size = body.len();
            let put = s3
                .put_object()
                .bucket(&bucket)
                .key(key)
                .set_metadata(model.map(|m| [("model-id".to_owned(), m.to_owned())].into()))
                .body(body.into())
                .send()
                .await
                .expect("upload");
            crate::functions::s3_created_event(&bucket, key, size, put.e_tag(), put.version_id())
        }

        /// Uploads `body` and hands its event to batch-submit `times` times: the batch ids.
        pub async fn upload(
            &self,
            key: &str,
            body: Vec<u8>,
            model: Option<&str>,
            times: usize,
        ) -> Vec<String> {
            let event = self.put_upload(key, body, model).await;
            let mut ids = Vec::new();
            for _ in 0..times {
                let answer = self
                    .submit
                    .on_event(event.clone())
                    .await
                    .expect("S3 event handled");
                ids.push(
                    answer["batches"][0]["batchId"]
                        .as_str()
                        .expect("a batch")
                        .to_owned(),
                );
            }
            ids
        }

        /// The merged results, one JSON value a line.
        pub async fn results(&self, batch: &Batch) -> Vec<Value> {
            let key = batch.results_key.as_deref().expect("results written");
            let bytes = self
                .status
                .store
                .get(key)
                .await
                .expect("S3")
                .expect("results object");
            bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("a JSON line"))
                .collect()
        }
    }
}

/// An HTTP API (payload 2.0) event with IAM authorization, for any route.
pub fn http_event(method: &str, path: &str, body: &str) -> lambda_http::Request {
    let event = http_event_json(method, path, body);
    lambda_http::request::from_str(&event.to_string()).expect("event")
}

/// The same event as JSON, as the Runtime API hands it to a function.
pub fn http_event_json(method: &str, path: &str, body: &str) -> Value {
    const V2_EVENT: &str = test_support::events::HTTP_API_V2_IAM;
    let mut event: Value = serde_json::from_str(V2_EVENT).expect("fixture");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    event["body"] = Value::String(body.to_owned());
    event["rawPath"] = Value::String(path.to_owned());
    event["rawQueryString"] = Value::String(query.to_owned());
    let parameters: serde_json::Map<String, Value> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    if !parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(parameters);
    }
    event["routeKey"] = Value::String(format!("{method} {path}"));
    event["requestContext"]["http"]["method"] = Value::String(method.to_owned());
    event["requestContext"]["http"]["path"] = Value::String(path.to_owned());
    event
}
