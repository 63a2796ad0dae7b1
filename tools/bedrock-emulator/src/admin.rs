//! The admin endpoints, over every service: `GET|POST /_emulator/config` (each service's
//! settings, composed), `GET /_emulator/stats` and `POST /_emulator/reset`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::BedrockError;
use crate::state::{ConfigPatch, EmulatorState, RuntimeConfig};

pub async fn get_config(State(state): State<EmulatorState>) -> Json<RuntimeConfig> {
    Json(state.config())
}

pub async fn post_config(State(state): State<EmulatorState>, body: Bytes) -> Response {
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

pub async fn get_stats(State(state): State<EmulatorState>) -> Response {
    let models = state.stats();
    let total: u64 = models.values().map(|s| s.calls).sum();
    Json(json!({
        "totalCalls": total,
        "models": models,
        "batchJobs": state.batch.stats(),
        "provisionedThroughputs": state.provisioned_stats(),
    }))
    .into_response()
}

pub async fn reset(State(state): State<EmulatorState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}
