//! Errors of the model call, independent of the SDK that produced them.

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the model is throttling requests")]
    Throttled,
    #[error("the model is not ready to serve requests")]
    ModelNotReady,
    #[error("the model service is unavailable")]
    ServiceUnavailable,
    #[error("the model did not answer in time")]
    Timeout,
    #[error("access to the model was refused: {0}")]
    AccessDenied(String),
    #[error("the model refused the request: {0}")]
    Validation(String),
    #[error("the model or resource was not found: {0}")]
    NotFound(String),
    #[error("the model failed: {0}")]
    ModelFailure(String),
    #[error("unexpected failure calling the model: {0}")]
    Unexpected(String),
}

impl ModelError {
    /// Errors after which a Provisioned Throughput call is retried on-demand.
    pub fn spills_over(&self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::ModelNotReady | Self::ServiceUnavailable
        )
    }
}

/// Why the cache could not be read or written. The request goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("cache store unavailable: {0}")]
    Unavailable(String),
    #[error("cache entry too large to store: {0} bytes after compression")]
    TooLarge(usize),
}
