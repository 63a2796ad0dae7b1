//! Every expected failure of an HTTP function becomes one answer: a status and
//! `{"error": {"code", "message", "requestId"}}`. Model errors are mapped here, once, for
//! every function that calls a model.

use http::StatusCode;
use serde_json::json;

use domain::error::{ModelError, ModelErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u32>,
    /// The underlying failure, for the log only: what the operator needs, never the caller.
    pub cause: Option<String>,
    /// The request field at fault, for APIs that report it (OpenAI's `param`).
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            cause: None,
            param: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn caused_by(mut self, error: &ModelError) -> Self {
        self.cause = Some(error.to_string());
        self
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn body(&self, request_id: &str) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "requestId": request_id}})
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        use ModelErrorKind as Kind;
        let answer = match error.kind {
            Kind::Throttled => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Bedrock is throttling requests to this model; retry after the Retry-After delay.",
            )
            .retry_after(2),
            Kind::ModelNotReady => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ModelNotReady",
                "The model is not ready to serve requests; retry in a few seconds.",
            )
            .retry_after(5),
            Kind::ServiceUnavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Bedrock is unavailable; retry in a few seconds.",
            )
            .retry_after(5),
            Kind::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                "Bedrock did not answer in time; retry, or ask for fewer output tokens (inferenceConfig.maxTokens).",
            ),
            Kind::AccessDenied => Self::new(
                StatusCode::BAD_GATEWAY,
                "BedrockAccessDenied",
                "Bedrock refused access to the model; the operator must enable model access and allow it in the function's role.",
            ),
            Kind::Validation => Self::new(
                StatusCode::BAD_REQUEST,
                "ModelValidationError",
                format!("Bedrock rejected the request: {}", error.message),
            ),
            Kind::NotFound => Self::new(
                StatusCode::BAD_GATEWAY,
                "ModelNotFound",
                "Bedrock does not know the configured model or Provisioned Throughput; the operator must check the function's configuration.",
            ),
            Kind::ModelFailure => Self::new(
                StatusCode::BAD_GATEWAY,
                "BedrockError",
                "Bedrock failed to answer; retry later.",
            ),
            Kind::Unreachable => Self::new(
                StatusCode::BAD_GATEWAY,
                "BedrockUnreachable",
                "The function could not connect to Bedrock; retry later. If it persists, the operator must check the network path to Bedrock (VPC endpoint, NAT, endpoint URL).",
            )
            .retry_after(5),
            Kind::Credentials => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BedrockCredentialsError",
                "The function could not sign its call to Bedrock: its credentials could not be loaded. The operator must check the function's role and credential settings.",
            ),
            Kind::Unexpected => internal(),
        };
        answer.caused_by(&error)
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
