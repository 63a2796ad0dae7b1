//! A local Amazon Bedrock runtime that speaks the real wire protocol (REST-JSON, AWS
//! event-stream), so unmodified SDKs and the AWS CLI work against it by endpoint alone.
//!
//! Runtime API: `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke`.
//! Batch inference (control plane): `POST /model-invocation-job`,
//! `GET /model-invocation-job/{jobIdentifier}`, `POST /model-invocation-job/{jobIdentifier}/stop`,
//! `GET /model-invocation-jobs`.
//! Provisioned Throughput (control plane, see [`provisioned`]): `POST /provisioned-model-throughput`,
//! `GET|PATCH|DELETE /provisioned-model-throughput/{provisionedModelId}`,
//! `GET /provisioned-model-throughputs`, and `POST /listTagsForResource`, `/tagResource`,
//! `/untagResource` for Provisioned Throughput ARNs.
//! CloudWatch (see [`cloudwatch`]): PutMetricData, GetMetricData, ListMetrics in RPC v2 CBOR
//! (`POST /service/GraniteServiceVersion20100801/operation/{Op}`) and awsJson1_0 (`POST /`).
//! Admin API: `GET|POST /_emulator/config`, `GET /_emulator/stats`, `POST /_emulator/reset`,
//! `GET /_emulator/events`, `GET /_emulator/health`, `POST /_emulator/emf` (EMF log lines).

pub mod batch;
pub mod catalog;
pub mod checks;
pub mod cloudwatch;
pub mod converse;
pub mod error;
pub mod events;
pub mod eventstream;
pub mod fault;
pub mod generate;
pub mod ids;
pub mod invoke;
pub mod provisioned;
pub mod state;
pub mod tools;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use catalog::Catalog;
pub use state::{EmulatorState, RuntimeConfig};

use error::BedrockError;
use state::ConfigPatch;

/// Builds the emulator's router over a shared state.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/model/{model_id}/converse", post(converse::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(converse::converse_stream),
        )
        .route("/model/{model_id}/invoke", post(invoke::invoke_model))
        .route("/model-invocation-job", post(batch::create))
        .route("/model-invocation-job/{job_identifier}", get(batch::get))
        .route(
            "/model-invocation-job/{job_identifier}/stop",
            post(batch::stop),
        )
        .route("/model-invocation-jobs", get(batch::list))
        .route("/provisioned-model-throughput", post(provisioned::create))
        .route(
            "/provisioned-model-throughput/{provisioned_model_id}",
            get(provisioned::get)
                .patch(provisioned::update)
                .delete(provisioned::delete),
        )
        .route("/provisioned-model-throughputs", get(provisioned::list))
        .route("/listTagsForResource", post(provisioned::list_tags))
        .route("/tagResource", post(provisioned::tag))
        .route("/untagResource", post(provisioned::untag))
        .route(
            "/service/GraniteServiceVersion20100801/operation/{operation}",
            post(cloudwatch::rpc_v2_cbor),
        )
        .route("/", post(cloudwatch::aws_json))
        .route("/_emulator/emf", post(cloudwatch::emf))
        .route("/_emulator/config", get(get_config).post(post_config))
        .route("/_emulator/events", get(batch::events))
        .route("/_emulator/stats", get(get_stats))
        .route("/_emulator/reset", post(reset))
        .route(
            "/_emulator/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .fallback(|| async { BedrockError::unknown_operation() })
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Every answer carries a request id, as Bedrock's do.
async fn request_id(request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&format!("00000000-0000-4000-8000-{id:012x}")) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

async fn get_config(State(state): State<Arc<EmulatorState>>) -> Json<RuntimeConfig> {
    Json(state.config())
}

async fn post_config(State(state): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let patch: ConfigPatch = match serde_json::from_slice(&body) {
        Ok(patch) => patch,
        Err(e) => {
            return BedrockError::validation(format!("invalid emulator config: {e}"))
                .into_response()
        }
    };
    match state.apply(&patch) {
        Ok(config) => Json(config).into_response(),
        Err(message) => BedrockError::validation(message).into_response(),
    }
}

async fn get_stats(State(state): State<Arc<EmulatorState>>) -> Response {
    let models = state.stats();
    let total: u64 = models.values().map(|s| s.calls).sum();
    Json(json!({
        "totalCalls": total,
        "models": models,
        "batchJobs": batch::stats(&state),
        "provisionedThroughputs": provisioned::stats(&state),
    }))
    .into_response()
}

async fn reset(State(state): State<Arc<EmulatorState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}
