//! What the runtime asks of Provisioned Throughput: whether a call naming one is served, its
//! output-token limit, and its tokens per minute over a sliding window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::errors::{not_ready, runtime_not_found, too_many_tokens};
use super::ProvisionedState;
use crate::error::BedrockError;
use crate::fault::Fault;

/// The window a Provisioned Throughput's tokens per minute are counted over.
pub const CAPACITY_WINDOW: Duration = Duration::from_secs(60);

/// A runtime call a Provisioned Throughput refuses: Bedrock's answer, and the fault the call
/// counts as in the runtime's stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub fault: Fault,
    pub error: BedrockError,
}

/// The tokens of the calls served in the last [`CAPACITY_WINDOW`].
#[derive(Debug, Default)]
pub(super) struct Window {
    pub(super) calls: VecDeque<(Instant, u64)>,
    pub(super) total: u64,
}

impl Window {
    pub(super) fn prune(&mut self, now: Instant) {
        while let Some(&(at, tokens)) = self.calls.front() {
            if now.saturating_duration_since(at) < CAPACITY_WINDOW {
                break;
            }
            self.calls.pop_front();
            self.total = self.total.saturating_sub(tokens);
        }
    }

    pub(super) fn push(&mut self, now: Instant, tokens: u64) {
        self.calls.push_back((now, tokens));
        self.total = self.total.saturating_add(tokens);
    }
}

/// Whether a model identifier is a Provisioned Throughput ARN (held or not).
pub fn is_provisioned_arn(model_id: &str) -> bool {
    model_id.starts_with("arn:") && model_id.contains(":provisioned-model/")
}

impl ProvisionedState {
    /// The output-token limit of a model identifier: a Provisioned Throughput ARN by the
    /// registry (its base model's limit), anything else by the catalog.
    pub fn max_output_tokens(&self, model_id: &str) -> Result<u32, BedrockError> {
        if !is_provisioned_arn(model_id) {
            return self.catalog.max_output_tokens(model_id);
        }
        let base = self
            .registry
            .lock()
            .by_arn(model_id)
            .map(|pt| pt.base_model.clone());
        base.and_then(|base| self.catalog.provisioned_limit(&base))
            .ok_or_else(runtime_not_found)
    }

    /// Admits a runtime call by its model identifier's Provisioned Throughput status:
    /// `Ok(None)` for anything but a Provisioned Throughput ARN, `Ok(Some(arn))` for one that
    /// serves; an unknown ARN or one not ready is refused.
    pub fn gate(&self, model_id: &str) -> Result<Option<String>, Refusal> {
        if !is_provisioned_arn(model_id) {
            return Ok(None);
        }
        let status = self.registry.lock().by_arn(model_id).map(|pt| pt.status());
        let (fault, error) = match status {
            Some(status) if status.serves() => return Ok(Some(model_id.to_owned())),
            Some(status) => (Fault::ModelNotReady, not_ready(model_id, status)),
            None => (Fault::ResourceNotFound, runtime_not_found()),
        };
        Err(Refusal { fault, error })
    }

    /// Takes a call's tokens from its Provisioned Throughput's capacity, or refuses it (a
    /// `ThrottlingException`, counted here) when they do not fit in the last minute's.
    pub fn charge(&self, arn: &str, tokens: u64) -> Result<(), Refusal> {
        let settings = self.settings();
        let now = Instant::now();
        let mut inner = self.registry.lock();
        let Some(capacity) = inner.by_arn(arn).map(|pt| settings.capacity(pt)) else {
            // Deleted since it was admitted: the call was admitted with the capacity it had.
            return Ok(());
        };
        let window = inner.windows.entry(arn.to_owned()).or_default();
        window.prune(now);
        if window.total.saturating_add(tokens) > capacity {
            *inner.capacity_throttled.entry(arn.to_owned()).or_default() += 1;
            return Err(Refusal {
                fault: Fault::Throttling,
                error: too_many_tokens(),
            });
        }
        window.push(now, tokens);
        Ok(())
    }
}
