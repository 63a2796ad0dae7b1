#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers: a failure is the report
//! Helpers for the integration tests: the local stack's environment (written by
//! `scripts/stack.sh up` and loaded by `make integration-test`) and the emulator's admin API.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use serde_json::Value;

/// A variable the stack's env file sets; the message says how to get it.
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `make integration-test`, which starts the local stack")
    })
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

    /// Calls the emulator received for a model identifier, whatever their outcome.
    pub async fn calls(&self, model_id: &str) -> u64 {
        let stats: Value = self
            .http
            .get(self.url("/_emulator/stats"))
            .send()
            .await
            .expect("emulator stats")
            .json()
            .await
            .expect("stats json");
        stats["models"][model_id]["calls"].as_u64().unwrap_or(0)
    }
}
