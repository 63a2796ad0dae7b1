//! The emulator's state: the state of each service (runtime, batch, Provisioned Throughput,
//! CloudWatch), composed. The router hands each handler its own service's state (axum's
//! [`FromRef`]); the admin endpoints (`/_emulator/config`, `/_emulator/stats`,
//! `/_emulator/reset`) see them all through [`EmulatorState`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::FromRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::batch::storage::{S3Storage, Storage};
use crate::batch::{BatchPatch, BatchState};
use crate::catalog::Catalog;
use crate::cloudwatch::{FaultPatch, Metrics};
use crate::guardrail::{Guardrail, GuardrailPatch};
use crate::identity::Identity;
use crate::patch::set_or_clear;
use crate::prompt_router::{PromptRouter, PromptRouterPatch};
use crate::provisioned::{ProvisionedPatch, ProvisionedSettings, ProvisionedState};
use crate::runtime::{ModelStats, RuntimePatch, RuntimeSettings, RuntimeState};
use crate::time::serialize_optional_time;

pub use crate::batch::BatchSettings;
pub use crate::runtime::{Behaviour, BehaviourPatch};

/// Body of `POST /_emulator/config`: the runtime's global fields and per-model overrides (keyed
/// by the model identifier as sent, id or ARN; `null` removes an override), its `"guardrails"`
/// (by id) and `"promptRouters"` (by ARN), batch's fields, and the `"provisioned"` and
/// `"cloudwatch"` objects; an unknown field is refused. Each
/// service gets its part ([`Self::runtime`], [`Self::batch`]). Batch's fields sit at the top
/// level of the body, so they are named here one by one rather than through a flattened
/// [`BatchPatch`]: a flattened part is read only once the whole body has been, which would move
/// the position serde_json reports in a refused body's message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatch {
    /// Every field no other member names must be a fault rate (`throttleRate`…).
    #[serde(flatten)]
    pub global: BehaviourPatch,
    #[serde(default)]
    pub models: BTreeMap<String, Option<BehaviourPatch>>,
    /// The present for the prompt cache (ISO-8601, `null`: the system clock); global only.
    #[serde(default, deserialize_with = "set_or_clear")]
    pub prompt_cache_now: Option<Option<String>>,
    pub batch_step_ms: Option<u64>,
    #[serde(default, deserialize_with = "crate::batch::settings::record_ms")]
    pub batch_record_ms: Option<u64>,
    pub batch_min_records: Option<u64>,
    pub batch_max_records: Option<u64>,
    pub batch_record_error_rate: Option<f64>,
    pub batch_concurrent_job_quota: Option<u32>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub event_target: Option<Option<String>>,
    pub events_enabled: Option<bool>,
    /// Provisioned Throughput settings (`"provisioned": {...}`).
    pub provisioned: Option<ProvisionedPatch>,
    /// CloudWatch faults (`"cloudwatch": {"failPutMetricData": N}`).
    pub cloudwatch: Option<FaultPatch>,
    /// Guardrails by id (`"guardrails": {"id": {...} | null}`).
    #[serde(default)]
    pub guardrails: BTreeMap<String, Option<GuardrailPatch>>,
    /// Prompt routers by ARN (`"promptRouters": {"arn": {...} | null}`).
    #[serde(default)]
    pub prompt_routers: BTreeMap<String, Option<PromptRouterPatch>>,
}

impl ConfigPatch {
    /// The runtime's part: the global fields and the per-model overrides.
    pub fn runtime(&self) -> RuntimePatch {
        RuntimePatch {
            global: self.global.clone(),
            models: self.models.clone(),
            prompt_cache_now: self.prompt_cache_now.clone(),
            guardrails: self.guardrails.clone(),
            prompt_routers: self.prompt_routers.clone(),
        }
    }

    /// Batch's part.
    pub fn batch(&self) -> BatchPatch {
        BatchPatch {
            batch_step_ms: self.batch_step_ms,
            batch_record_ms: self.batch_record_ms,
            batch_min_records: self.batch_min_records,
            batch_max_records: self.batch_max_records,
            batch_record_error_rate: self.batch_record_error_rate,
            batch_concurrent_job_quota: self.batch_concurrent_job_quota,
            event_target: self.event_target.clone(),
            events_enabled: self.events_enabled,
        }
    }
}

/// The effective configuration of the whole emulator, as `GET /_emulator/config` reports it:
/// the runtime's global behaviour and batch's settings at the top level, the runtime's
/// per-model overrides under `"models"`, Provisioned Throughput's under `"provisioned"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(flatten)]
    pub global: Behaviour,
    #[serde(flatten)]
    pub batch: BatchSettings,
    pub models: BTreeMap<String, Behaviour>,
    /// The present for the prompt cache's expiries; `None`: the system clock.
    #[serde(serialize_with = "serialize_optional_time")]
    pub prompt_cache_now: Option<chrono::DateTime<chrono::Utc>>,
    /// Provisioned Throughput settings, shown as `"provisioned": {...}`.
    pub provisioned: ProvisionedSettings,
    /// Guardrails by id.
    pub guardrails: BTreeMap<String, Guardrail>,
    /// Prompt routers configured, by ARN (the built-in default router is not listed here).
    pub prompt_routers: BTreeMap<String, PromptRouter>,
}

impl RuntimeConfig {
    fn compose(
        runtime: RuntimeSettings,
        batch: BatchSettings,
        provisioned: ProvisionedSettings,
    ) -> Self {
        Self {
            global: runtime.global,
            batch,
            models: runtime.models,
            prompt_cache_now: runtime.prompt_cache_now,
            provisioned,
            guardrails: runtime.guardrails,
            prompt_routers: runtime.prompt_routers,
        }
    }
}

/// Every service's state. Cloning it clones handles to the same services.
#[derive(Debug, Clone)]
pub struct EmulatorState {
    pub runtime: Arc<RuntimeState>,
    pub batch: Arc<BatchState>,
    pub provisioned: Arc<ProvisionedState>,
    /// CloudWatch metric data (PutMetricData and the EMF feed).
    pub cloudwatch: Arc<Metrics>,
    /// Config updates and resets, one at a time across the services.
    updates: Arc<Mutex<()>>,
}

impl FromRef<EmulatorState> for Arc<RuntimeState> {
    fn from_ref(state: &EmulatorState) -> Self {
        state.runtime.clone()
    }
}

impl FromRef<EmulatorState> for Arc<BatchState> {
    fn from_ref(state: &EmulatorState) -> Self {
        state.batch.clone()
    }
}

impl FromRef<EmulatorState> for Arc<ProvisionedState> {
    fn from_ref(state: &EmulatorState) -> Self {
        state.provisioned.clone()
    }
}

impl FromRef<EmulatorState> for Arc<Metrics> {
    fn from_ref(state: &EmulatorState) -> Self {
        state.cloudwatch.clone()
    }
}

impl EmulatorState {
    /// Every service, starting from `initial`, with resources under the default account and
    /// region and batch jobs over S3.
    pub fn new(catalog: Catalog, initial: RuntimeConfig) -> Self {
        Self::assemble(
            catalog,
            initial,
            Identity::default(),
            Arc::new(S3Storage::default()),
        )
    }

    fn assemble(
        catalog: Catalog,
        initial: RuntimeConfig,
        identity: Identity,
        storage: Arc<dyn Storage>,
    ) -> Self {
        let provisioned = Arc::new(ProvisionedState::new(
            catalog.clone(),
            identity.clone(),
            initial.provisioned,
        ));
        let settings = RuntimeSettings {
            global: initial.global,
            models: initial.models,
            prompt_cache_now: initial.prompt_cache_now,
            guardrails: initial.guardrails,
            prompt_routers: initial.prompt_routers,
        };
        let runtime = Arc::new(RuntimeState::new(
            catalog,
            identity.clone(),
            settings,
            provisioned.clone(),
        ));
        let batch = BatchState::new(runtime.clone(), initial.batch, identity).with_storage(storage);
        Self {
            runtime,
            batch: Arc::new(batch),
            provisioned,
            cloudwatch: Arc::new(Metrics::default()),
            updates: Arc::default(),
        }
    }

    /// The same services with jobs, Provisioned Throughputs and events under another account
    /// and region (built anew: call it before the state serves).
    pub fn with_identity(self, identity: Identity) -> Self {
        let storage = self.batch.storage.clone();
        Self::assemble(
            self.runtime.catalog.clone(),
            self.initial(),
            identity,
            storage,
        )
    }

    /// The same services with batch jobs reading and writing elsewhere than S3 (built anew:
    /// call it before the state serves).
    pub fn with_storage(self, storage: Arc<dyn Storage>) -> Self {
        let identity = self.batch.identity.clone();
        Self::assemble(
            self.runtime.catalog.clone(),
            self.initial(),
            identity,
            storage,
        )
    }

    /// The configuration the services started with.
    fn initial(&self) -> RuntimeConfig {
        RuntimeConfig::compose(
            self.runtime.initial_settings().clone(),
            self.batch.initial_settings().clone(),
            self.provisioned.initial_settings().clone(),
        )
    }

    fn one_update_at_a_time(&self) -> MutexGuard<'_, ()> {
        self.updates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration in effect.
    pub fn config(&self) -> RuntimeConfig {
        RuntimeConfig::compose(
            self.runtime.settings(),
            self.batch.settings(),
            self.provisioned.settings(),
        )
    }

    /// Applies a patch to every service it names, or to none: the configuration now in effect,
    /// or why the patch is refused (batch's settings are checked first, then the runtime's
    /// global fields and each model's, then Provisioned Throughput's).
    pub fn apply(&self, patch: &ConfigPatch) -> Result<RuntimeConfig, String> {
        let _one_at_a_time = self.one_update_at_a_time();
        let batch = self.batch.patched(&patch.batch())?;
        let runtime = self.runtime.patched(&patch.runtime())?;
        let provisioned = match &patch.provisioned {
            Some(p) => self.provisioned.patched(p)?,
            None => self.provisioned.settings(),
        };
        let config = RuntimeConfig::compose(runtime.clone(), batch.clone(), provisioned.clone());
        self.provisioned.set_settings(provisioned);
        self.batch.set_settings(batch);
        self.runtime.set_settings(runtime);
        if let Some(faults) = &patch.cloudwatch {
            faults.apply(&self.cloudwatch);
        }
        Ok(config)
    }

    /// Every service back to its initial settings, with nothing kept.
    pub fn reset(&self) {
        let _one_at_a_time = self.one_update_at_a_time();
        self.runtime.reset();
        self.batch.reset();
        self.provisioned.reset();
        self.cloudwatch.clear();
    }

    /// The runtime's counters, by model identifier.
    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.runtime.stats()
    }

    /// Each Provisioned Throughput by ARN, with its capacity and use and the runtime calls
    /// that named it.
    pub fn provisioned_stats(&self) -> Value {
        let models = self.runtime.stats();
        self.provisioned.stats(|arn| {
            models
                .get(arn)
                .map_or((0, 0), |stats| (stats.calls, stats.served))
        })
    }
}

#[cfg(test)]
mod tests;
