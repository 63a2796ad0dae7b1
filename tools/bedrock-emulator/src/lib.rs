//! A local Amazon Bedrock runtime that speaks the real wire protocol (REST-JSON, AWS
//! event-stream), so unmodified SDKs and the AWS CLI work against it by endpoint alone.
//!
//! Runtime API: `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke`,
//! `/count-tokens` (see [`count_tokens`]); guardrails ([`guardrail`]) and prompt routers
//! ([`prompt_router`]) in Converse and ConverseStream.
//! Prompt routers (control plane): `GET /prompt-routers/{promptRouterArn}`, `GET /prompt-routers`.
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
//!
//! Each service owns its state and settings: the runtime ([`runtime`], served by [`converse`],
//! [`invoke`] and [`count_tokens`] with [`generate`], [`tools`], [`fault`], [`prompt_cache`],
//! [`tier`], [`guardrail`] and [`prompt_router`]), batch inference ([`batch`]),
//! Provisioned Throughput ([`provisioned`]) and CloudWatch ([`cloudwatch`]). [`state`] composes
//! them: the router hands each handler its own service's state, and the admin endpoints
//! ([`admin`]) see them all.

pub mod admin;
pub mod batch;
pub mod catalog;
pub mod checks;
pub mod cloudwatch;
pub mod converse;
pub mod count_tokens;
pub mod error;
pub mod events;
pub mod eventstream;
pub mod fault;
pub mod generate;
pub mod guardrail;
pub mod identity;
pub mod ids;
pub mod invoke;
pub mod patch;
pub mod prompt_cache;
pub mod prompt_router;
pub mod prompt_routing;
pub mod provisioned;
pub mod runtime;
pub mod state;
pub mod tier;
pub mod time;
pub mod tools;
pub mod vocabulary;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use catalog::Catalog;
pub use state::{EmulatorState, RuntimeConfig};

use error::BedrockError;

/// Builds the emulator's router over a shared state: each service's routes get that service's
/// state, the admin routes all of them.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/model/{model_id}/converse", post(converse::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(converse::converse_stream),
        )
        .route("/model/{model_id}/invoke", post(invoke::invoke_model))
        .route(
            "/model/{model_id}/count-tokens",
            post(count_tokens::count_tokens),
        )
        .route("/prompt-routers", get(prompt_routing::list))
        .route(
            "/prompt-routers/{prompt_router_arn}",
            get(prompt_routing::get),
        )
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
        .route(
            "/_emulator/config",
            get(admin::get_config).post(admin::post_config),
        )
        .route("/_emulator/events", get(batch::events))
        .route("/_emulator/stats", get(admin::get_stats))
        .route("/_emulator/reset", post(admin::reset))
        .route(
            "/_emulator/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .fallback(|| async { BedrockError::unknown_operation() })
        .layer(middleware::from_fn(request_id))
        .with_state(EmulatorState::clone(&state))
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
