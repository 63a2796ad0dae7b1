//! CloudWatch's errors. CloudWatch is `awsQueryCompatible`: in RPC v2 CBOR and in awsJson1_0 the
//! body is `{"__type": "<shape id>", "message": "..."}` and the `x-amzn-query-error` header
//! carries the query-era code and fault (`InvalidParameterValue;Sender`), which is what the SDKs
//! map to their typed errors.

use axum::http::StatusCode;

/// The namespace of CloudWatch's shape ids.
const NAMESPACE: &str = "com.amazonaws.cloudwatch";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwError {
    pub status: StatusCode,
    /// The query-compatible code (`InvalidParameterValue`).
    pub code: &'static str,
    /// The error's shape name (`InvalidParameterValueException`), `__type` in the body.
    pub shape: &'static str,
    /// `Sender` (the caller's fault) or `Receiver`.
    pub fault: &'static str,
    pub message: String,
}

impl CwError {
    fn new(
        status: StatusCode,
        code: &'static str,
        shape: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            shape,
            fault: if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            },
            message: message.into(),
        }
    }

    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "InvalidParameterValueException",
            message,
        )
    }

    /// `The value {value} for parameter {path} is invalid.`
    pub fn invalid_value_for(path: &str, value: impl std::fmt::Display) -> Self {
        Self::invalid_value(format!(
            "The value {value} for parameter {path} is invalid."
        ))
    }

    /// `The collection {path} must not have a size greater than {max}.`
    pub fn too_many(path: &str, max: usize) -> Self {
        Self::invalid_value(format!(
            "The collection {path} must not have a size greater than {max}."
        ))
    }

    pub fn invalid_combination(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterCombination",
            "InvalidParameterCombinationException",
            message,
        )
    }

    /// `The parameter {path} is required.`
    pub fn missing(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "MissingRequiredParameterException",
            format!("The parameter {path} is required."),
        )
    }

    pub fn invalid_next_token(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidNextToken",
            "InvalidNextToken",
            message,
        )
    }

    /// A request CloudWatch's own validation refuses without a modeled error (bad query ids,
    /// metric math that does not parse).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "ValidationError",
            message,
        )
    }

    /// CloudWatch's throttling (`Throttling`, HTTP 400, `Rate exceeded`), which the SDKs retry.
    pub fn throttling() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Throttling",
            "Throttling",
            "Rate exceeded",
        )
    }

    /// A body above CloudWatch's request size limit (measured uncompressed).
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "RequestEntityTooLarge",
            message,
        )
    }

    /// A body that is not the protocol's format, or a member of the wrong type.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "SerializationException",
            message,
        )
    }

    /// An operation CloudWatch has but the emulator does not serve (or one it does not have).
    pub fn invalid_action(operation: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "InvalidAction",
            format!(
                "The action {operation} is not valid for this web service (the emulator serves PutMetricData, GetMetricData and ListMetrics)."
            ),
        )
    }

    pub fn type_id(&self) -> String {
        format!("{NAMESPACE}#{}", self.shape)
    }

    /// The `x-amzn-query-error` header's value.
    pub fn query_error(&self) -> String {
        format!("{};{}", self.code, self.fault)
    }
}
