//! What the AWS SDK adapters read from a failed call before they classify it into their own
//! error type: the service's error code, its message, and the whole error chain.

// Every `aws-sdk-*` crate re-exports the same smithy runtime's `SdkError` and error traits, so
// the types named through one SDK serve the errors of all of them.
#[cfg(feature = "bedrock")]
use aws_sdk_bedrock::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
#[cfg(not(feature = "bedrock"))]
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// A failed SDK call, as the adapters classify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdkFailure {
    /// The service's error code; empty when the call got no service error (a timeout, a
    /// dispatch or response failure).
    pub code: String,
    /// The service's message, when it sent one.
    pub service_message: Option<String>,
    /// The error with its whole chain of sources.
    pub detail: String,
}

impl SdkFailure {
    pub fn of<E, R>(error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let service = error.as_service_error();
        Self {
            code: service
                .and_then(|e| e.code())
                .unwrap_or_default()
                .to_owned(),
            service_message: service.and_then(|e| e.message()).map(str::to_owned),
            detail: DisplayErrorContext(error).to_string(),
        }
    }

    /// `code: message`, the service's message or, without one, the detail.
    #[cfg_attr(not(feature = "bedrock"), allow(dead_code))] // only the Bedrock adapters word it so
    pub fn message(&self) -> String {
        format!(
            "{}: {}",
            self.code,
            self.service_message.as_deref().unwrap_or(&self.detail)
        )
    }
}

#[cfg(all(test, feature = "bedrock"))]
mod tests {
    use aws_sdk_bedrock::error::ErrorMetadata;
    use aws_sdk_bedrock::operation::get_model_invocation_job::GetModelInvocationJobError;

    use super::*;

    #[test]
    fn reads_code_and_message_of_a_service_error_and_the_detail_of_any() {
        let service = GetModelInvocationJobError::generic(
            ErrorMetadata::builder()
                .code("ConflictException")
                .message("in use")
                .build(),
        );
        let failure = SdkFailure::of(&SdkError::service_error(service, ()));
        assert_eq!(failure.code, "ConflictException");
        assert_eq!(failure.service_message.as_deref(), Some("in use"));
        assert_eq!(failure.message(), "ConflictException: in use");

        let timeout = SdkFailure::of(&SdkError::<GetModelInvocationJobError, ()>::timeout_error(
            "no answer",
        ));
        assert_eq!(
            (timeout.code.as_str(), timeout.service_message.as_deref()),
            ("", None)
        );
        assert!(timeout.detail.contains("no answer"), "{}", timeout.detail);
        assert_eq!(timeout.message(), format!(": {}", timeout.detail));
    }
}
