//! Bedrock's Provisioned Throughput control plane (service `bedrock`, REST-JSON), and the
//! capacity the runtime serves through it.
//!
//! Operations, in the shapes of botocore's `bedrock` model (2023-04-20):
//! `CreateProvisionedModelThroughput` (`POST /provisioned-model-throughput` → 201
//! `{provisionedModelArn}`), `GetProvisionedModelThroughput`, `UpdateProvisionedModelThroughput`
//! (`PATCH`) and `DeleteProvisionedModelThroughput` (`GET|PATCH|DELETE
//! /provisioned-model-throughput/{provisionedModelId}`, by name or ARN),
//! `ListProvisionedModelThroughputs` (`GET /provisioned-model-throughputs`), and the tagging
//! operations for Provisioned Throughput ARNs (`POST /listTagsForResource`, `/tagResource`,
//! `/untagResource`).
//!
//! Lifecycle: `Creating` for `provisioned.createMs`, then `InService` (or `Failed`, with
//! `failureMessage`, when its name, model id or base model is listed in `provisioned.failOn`);
//! an update is `Updating` for `provisioned.updateMs`, then `InService`. Statuses advance when
//! they are read, from the system clock, so no task runs per Provisioned Throughput. Committed
//! capacity (`OneMonth`, `SixMonths`) carries `commitmentExpirationTime` (creation + 1 or 6
//! calendar months) and refuses deletion before it, judged against `provisioned.now` when set
//! (otherwise the system clock). No-commitment capacity is bounded by
//! `provisioned.noCommitmentUnitQuota` model units (the sum over the no-commitment Provisioned
//! Throughputs that exist and have not failed).
//!
//! Runtime: a call (Converse, ConverseStream, InvokeModel) naming a Provisioned Throughput ARN
//! is served while it is `InService` or `Updating` (Bedrock keeps serving during an update), as
//! its base model (that model's output limit); an ARN the registry does not hold (never created,
//! or deleted) is a `ResourceNotFoundException`, and one `Creating` or `Failed` a
//! `ModelNotReadyException`. Each has a capacity of `modelUnits` × the tokens per minute per
//! model unit of its base model (`provisioned.tokensPerMinuteByModel`, else
//! `provisioned.tokensPerMinute`), over a sliding window of the last 60 seconds: a call whose
//! input and output tokens do not fit beside the tokens of the calls served in that window is a
//! `ThrottlingException` (and consumes nothing). Faults configured for the ARN under `models`
//! still apply, after the status check and before the capacity check.
//!
//! Config (`POST /_emulator/config`, under `"provisioned"`; absent fields keep their value):
//! `createMs` (default 1000, 0: `InService` at once), `updateMs` (default 1000), `failOn` (names
//! or model ids whose creation fails; default none), `failureMessage`, `noCommitmentUnitQuota`
//! (default 10), `tokensPerMinute` (per model unit, default 100000), `tokensPerMinuteByModel`
//! (base model id → tokens per minute per model unit; `null` removes an entry), `now` (an
//! ISO-8601 time the commitment check uses as the present, `null`: the system clock).

mod capacity;
mod check;
mod errors;
mod handlers;
mod lifecycle;
mod registry;
mod settings;
mod throughput;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::catalog::Catalog;
use crate::identity::Identity;
pub use capacity::{is_provisioned_arn, Refusal, CAPACITY_WINDOW};
pub use check::{Commitment, Tag};
pub use handlers::{create, delete, get, list, list_tags, tag, untag, update};
pub use registry::Registry;
pub use settings::{ProvisionedPatch, ProvisionedSettings};
pub use throughput::{Provisioned, Status};

/// The Provisioned Throughput service: its settings and every Provisioned Throughput, with the
/// catalog that names the models they serve and the identity of their ARNs.
#[derive(Debug)]
pub struct ProvisionedState {
    catalog: Catalog,
    identity: Identity,
    /// What `/_emulator/reset` returns to.
    initial: ProvisionedSettings,
    settings: Mutex<ProvisionedSettings>,
    registry: Registry,
}

impl ProvisionedState {
    pub fn new(catalog: Catalog, identity: Identity, settings: ProvisionedSettings) -> Self {
        Self {
            catalog,
            identity,
            settings: Mutex::new(settings.clone()),
            initial: settings,
            registry: Registry::default(),
        }
    }

    fn lock_settings(&self) -> MutexGuard<'_, ProvisionedSettings> {
        // Settings are replaced in one step: they stay consistent if a holder panicked.
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in effect.
    pub fn settings(&self) -> ProvisionedSettings {
        self.lock_settings().clone()
    }

    /// The settings the service started with (and returns to on reset).
    pub fn initial_settings(&self) -> &ProvisionedSettings {
        &self.initial
    }

    /// The settings in effect with a patch applied, or why the patch is refused; nothing changes.
    pub fn patched(&self, patch: &ProvisionedPatch) -> Result<ProvisionedSettings, String> {
        self.lock_settings().patched(patch)
    }

    /// Puts settings (checked by [`Self::patched`]) in effect.
    pub fn set_settings(&self, settings: ProvisionedSettings) {
        *self.lock_settings() = settings;
    }

    /// Applies a patch: the settings now in effect, or why the patch is refused.
    pub fn apply(&self, patch: &ProvisionedPatch) -> Result<ProvisionedSettings, String> {
        let mut settings = self.lock_settings();
        let next = settings.patched(patch)?;
        *settings = next.clone();
        Ok(next)
    }

    /// Back to the initial settings, with no Provisioned Throughput.
    pub fn reset(&self) {
        self.set_settings(self.initial.clone());
        self.registry.clear();
    }

    /// A Provisioned Throughput by name, id or ARN.
    pub fn find(&self, identifier: &str) -> Option<Provisioned> {
        self.registry.find(identifier)
    }

    /// Every Provisioned Throughput, in creation order.
    pub fn all(&self) -> Vec<Provisioned> {
        self.registry.all()
    }

    /// For `/_emulator/stats`: each Provisioned Throughput by ARN, with its capacity and use;
    /// `calls` answers the runtime calls that named an ARN: (all of them, those served).
    pub fn stats(&self, calls: impl Fn(&str) -> (u64, u64)) -> Value {
        let settings = self.settings();
        let now = Instant::now();
        let mut inner = self.registry.lock();
        let pts: Vec<Provisioned> = inner.pts.values().cloned().collect();
        let mut out = Map::new();
        for pt in pts {
            let used = inner.windows.get_mut(&pt.arn).map_or(0, |window| {
                window.prune(now);
                window.total
            });
            let (calls, served) = calls(&pt.arn);
            out.insert(
                pt.arn.clone(),
                json!({
                    "provisionedModelName": pt.name,
                    "status": pt.status().as_str(),
                    "modelId": pt.model_id,
                    "baseModelId": pt.base_model,
                    "modelUnits": pt.model_units,
                    "commitmentDuration": pt.commitment.map(Commitment::as_str),
                    "tokensPerMinute": settings.capacity(&pt),
                    "tokensLastMinute": used,
                    "calls": calls,
                    "served": served,
                    "capacityThrottled": inner.capacity_throttled.get(&pt.arn).copied().unwrap_or(0),
                }),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
impl ProvisionedState {
    /// Moves a Provisioned Throughput's timed phase to its end, as time would.
    pub(crate) fn finish_phase(&self, arn: &str) {
        self.registry.finish_phase(arn);
    }
}

#[cfg(test)]
pub(crate) mod tests;
