//! The errors the Provisioned Throughput operations and the runtime's capacity checks answer.

use axum::http::StatusCode;

use super::check::MAX_TAGS_PER_RESOURCE;
use super::throughput::Status;
use crate::error::BedrockError;

pub(super) fn invalid_model() -> BedrockError {
    BedrockError::validation("The provided model identifier is invalid.")
}

pub(super) fn not_found(identifier: &str) -> BedrockError {
    BedrockError::resource_not_found(format!(
        "The specified Provisioned Throughput {identifier} could not be found."
    ))
}

/// A runtime call naming a Provisioned Throughput ARN the registry does not hold.
pub(super) fn runtime_not_found() -> BedrockError {
    BedrockError::resource_not_found(
        "Could not resolve the foundation model from the provided model identifier.",
    )
}

pub(super) fn not_ready(arn: &str, status: Status) -> BedrockError {
    BedrockError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ModelNotReadyException",
        format!(
            "The provisioned model {arn} is not ready to serve inference requests: its status is {}. Try again when it is InService.",
            status.as_str()
        ),
    )
}

pub(super) fn too_many_tokens() -> BedrockError {
    BedrockError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ThrottlingException",
        "Too many tokens, please wait before trying again.",
    )
}

pub(super) fn too_many_tags(arn: &str, count: usize) -> BedrockError {
    BedrockError::new(
        StatusCode::BAD_REQUEST,
        "TooManyTagsException",
        format!(
            "The request would leave {count} tags on {arn}; a resource can have at most {MAX_TAGS_PER_RESOURCE} tags."
        ),
    )
}
