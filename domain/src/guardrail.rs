//! Bedrock Guardrails: a guardrail checks a call's input and answer, and intervenes (its own
//! message in place of the model's answer, stop reason `guardrail_intervened`) when a policy
//! matches.

use std::fmt;

/// The stop reason of an answer a guardrail intervened in.
pub const GUARDRAIL_INTERVENED: &str = "guardrail_intervened";

/// A guardrail applied to a call (Converse's `guardrailConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    /// Its id or ARN.
    pub identifier: String,
    /// `DRAFT` or a version number.
    pub version: String,
    /// Whether Bedrock returns its assessment (`trace: enabled`); the gateway only logs that
    /// it intervened, never what it matched.
    pub trace: bool,
    /// How a stream is checked: `sync` holds each chunk until checked (nothing unchecked
    /// reaches the caller), `async` sends chunks at once and checks behind them.
    pub stream_mode: StreamProcessing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamProcessing {
    Sync,
    Async,
}

impl StreamProcessing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

impl std::str::FromStr for StreamProcessing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            other => Err(format!("{other:?} is not sync or async")),
        }
    }
}

impl fmt::Display for Guardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.identifier, self.version)
    }
}

/// Whether a guardrail intervened in the answer with this stop reason.
pub fn intervened(stop_reason: &str) -> bool {
    stop_reason == GUARDRAIL_INTERVENED
}
