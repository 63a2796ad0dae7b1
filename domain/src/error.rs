//! Errors of the model call, independent of the SDK that produced them.

/// What kind of failure a model call met; decides the HTTP answer, the metric class and
/// whether a Provisioned Throughput call spills over to on-demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelErrorKind {
    /// Bedrock throttled the call (ThrottlingException).
    Throttled,
    ModelNotReady,
    ServiceUnavailable,
    /// No answer within the time allowed (the client's timeout or ModelTimeoutException).
    Timeout,
    AccessDenied,
    /// Bedrock refused the request itself: the same request fails on any capacity.
    Validation,
    NotFound,
    /// The model or Bedrock failed (ModelErrorException, InternalServerException, an
    /// unreadable response).
    ModelFailure,
    /// Bedrock could not be reached: connection refused, DNS, TLS.
    Unreachable,
    /// The call could not be signed: no or invalid credentials.
    Credentials,
    Unexpected,
}

impl ModelErrorKind {
    /// Bedrock refused the request itself (or the model is not there for it): asking again
    /// later, on any capacity, gets the same answer.
    pub fn is_permanent(self) -> bool {
        matches!(self, Self::Validation | Self::AccessDenied | Self::NotFound)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "Throttled",
            Self::ModelNotReady => "ModelNotReady",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Timeout => "Timeout",
            Self::AccessDenied => "AccessDenied",
            Self::Validation => "Validation",
            Self::NotFound => "NotFound",
            Self::ModelFailure => "ModelFailure",
            Self::Unreachable => "Unreachable",
            Self::Credentials => "Credentials",
            Self::Unexpected => "Unexpected",
        }
    }
}

/// Why a model call failed: the kind, and the underlying message (Bedrock's own, or the
/// client's) for the log. Never holds prompt or answer text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ModelError {
    pub kind: ModelErrorKind,
    pub message: String,
}

impl ModelError {
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Errors after which a Provisioned Throughput call is retried on-demand: every way the
    /// capacity can be unusable. Not a refused request (it would be refused on-demand too),
    /// nor a failure to reach or sign for Bedrock at all (on-demand shares it).
    pub fn spills_over(&self) -> bool {
        !matches!(
            self.kind,
            ModelErrorKind::Validation
                | ModelErrorKind::Unreachable
                | ModelErrorKind::Credentials
                | ModelErrorKind::Unexpected
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

/// A setting whose value is invalid, named by its variable: the domain's parsers of setting
/// values (`MODEL_PRICES`, alarm thresholds) report it, and `shared::config` reads the
/// environment into them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModelErrorKind::*;

    #[test]
    fn spillover_on_every_unusable_capacity_never_on_a_refused_request() {
        for kind in [
            Throttled,
            ModelNotReady,
            ServiceUnavailable,
            Timeout,
            AccessDenied,
            NotFound,
            ModelFailure,
        ] {
            assert!(ModelError::new(kind, "x").spills_over(), "{kind:?}");
        }
        for kind in [Validation, Unreachable, Credentials, Unexpected] {
            assert!(!ModelError::new(kind, "x").spills_over(), "{kind:?}");
        }
        assert_eq!(
            ModelError::new(AccessDenied, "no access").to_string(),
            "AccessDenied: no access"
        );
    }
}

/// Why an object could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object store: {0}")]
pub struct StoreError(pub String);

/// Why batches could not be handed to the queue that fans them out (SQS).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQS SendMessageBatch: {0}")]
pub struct QueueError(pub String);

/// Why a batch's end could not be announced on EventBridge. Its own type, so a log names the
/// service that failed, never the bucket or the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The call failed: network, credentials, throttling, a bus that does not exist.
    #[error("EventBridge PutEvents: {0}")]
    Call(String),
    /// EventBridge answered but did not take the entry (`FailedEntryCount` above 0).
    #[error("EventBridge PutEvents: entry not accepted: {0}")]
    NotAccepted(String),
}

/// Why the batch registry refused or failed a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another writer got there first: read again and retry.
    #[error("the batch changed since it was read")]
    Conflict,
    #[error("batch registry unavailable: {0}")]
    Unavailable(String),
}

/// Why Bedrock's batch API refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// ServiceQuotaExceededException: the job waits for a free slot.
    #[error("concurrent batch jobs quota reached: {0}")]
    QuotaExceeded(String),
    /// A refusal the same request would meet again (validation, not found, access).
    #[error("batch job refused: {0}")]
    Refused(String),
    /// Throttling, 5xx, network: worth another try later.
    #[error("batch job call failed: {0}")]
    Failed(String),
}

/// What the `TenantLimiter` port answers instead of an admission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The tenant is at one of its limits.
    #[error("the tenant is at its limit of {} {}", .0.limit, .0.kind.describe())]
    Exceeded(crate::limits::Exceeded),
    /// The limiter's store could not be read or written.
    #[error("limiter store failed: {0}")]
    Store(String),
}

/// A failure of the tenant key or spend store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    #[error("no key {0}")]
    NoSuchKey(String),
    #[error("a key {0} exists already")]
    KeyExists(String),
    #[error("tenant store failed: {0}")]
    Store(String),
}
