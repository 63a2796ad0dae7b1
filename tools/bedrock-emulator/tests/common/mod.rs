//! The emulator in-process for the suites that drive it through the AWS SDK for Rust: its
//! router on 127.0.0.1:0 (a fresh emulator per test, with the defaults the local stack starts
//! it with), batch jobs over in-memory buckets, and an SDK config that reaches it by endpoint
//! alone, without reading the environment (no stack needed).

// Each suite uses the part of this module it needs.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
use axum::serve::ListenerExt;
use bedrock_emulator::batch::storage::MemoryStorage;
use bedrock_emulator::{router, Catalog, EmulatorState, RuntimeConfig};
use serde_json::Value;
use tokio::task::JoinHandle;

/// A running emulator; it stops when dropped.
pub struct Emulator {
    base: String,
    http: reqwest::Client,
    storage: Arc<MemoryStorage>,
    server: JoinHandle<()>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Emulator {
    /// A fresh emulator serving on a free loopback port.
    pub async fn start() -> Self {
        let storage = Arc::new(MemoryStorage::default());
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default())
            .with_storage(storage.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        // As the binary serves: small event-stream frames go out at once.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = router(Arc::new(state));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the emulator serves");
        });
        Self {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            storage,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The buckets batch jobs read and write.
    pub fn storage(&self) -> &MemoryStorage {
        &self.storage
    }

    /// One SDK config for this emulator (every service at its address, us-east-1, dummy
    /// credentials), with retries off so that every fault is seen.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "bedrock-emulator-tests",
            )))
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .endpoint_url(&self.base)
            .build()
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

    /// `POST /_emulator/reset`: every service back to its start.
    pub async fn reset(&self) {
        let status = self
            .http
            .post(self.url("/_emulator/reset"))
            .send()
            .await
            .expect("emulator reset")
            .status();
        assert!(status.is_success(), "emulator reset answered {status}");
    }

    /// `GET /_emulator/config`: the settings in force.
    pub async fn config(&self) -> Value {
        self.http
            .get(self.url("/_emulator/config"))
            .send()
            .await
            .expect("emulator config")
            .json()
            .await
            .expect("config json")
    }

    /// `GET /_emulator/stats`.
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
        let stats = self.stats().await;
        stats["models"][model_id]["calls"].as_u64().unwrap_or(0)
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
