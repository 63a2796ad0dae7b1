//! Every expected failure becomes one HTTP answer: a status and
//! `{"error": {"code", "message", "requestId"}}`. Mapped here, once.

use http::StatusCode;
use serde_json::json;

use shared::domain::error::ModelError;

use crate::request::RequestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn body(&self, request_id: &str) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "requestId": request_id}})
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error.code(), error.to_string())
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        match error {
            ModelError::Throttled => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Bedrock is throttling requests to this model; retry after the Retry-After delay.",
            )
            .retry_after(2),
            ModelError::ModelNotReady => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ModelNotReady",
                "The model is not ready to serve requests; retry in a few seconds.",
            )
            .retry_after(5),
            ModelError::ServiceUnavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Bedrock is unavailable; retry in a few seconds.",
            )
            .retry_after(5),
            ModelError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                "Bedrock did not answer in time; retry, or ask for fewer output tokens (inferenceConfig.maxTokens).",
            ),
            ModelError::AccessDenied(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "BedrockAccessDenied",
                "Bedrock refused access to the model; the operator must enable model access and allow it in the function's role.",
            ),
            ModelError::Validation(message) => Self::new(
                StatusCode::BAD_REQUEST,
                "ModelValidationError",
                format!("Bedrock rejected the request: {message}"),
            ),
            ModelError::NotFound(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "ModelNotFound",
                "Bedrock does not know the configured model or Provisioned Throughput; the operator must check the function's configuration.",
            ),
            ModelError::ModelFailure(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "BedrockError",
                "Bedrock failed to answer; retry later.",
            ),
            ModelError::Unexpected(_) => internal(),
        }
    }
}

/// The answer for the unexpected: nothing internal in the message.
pub fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "An unexpected error occurred; retry, and quote the request id if it persists.",
    )
}
