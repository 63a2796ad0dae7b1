//! The runtime service (`Converse`, `ConverseStream`, `InvokeModel`): what the emulated models
//! do (latencies, fault rates, stop reason, stream errors; globally or per model identifier),
//! fault scheduling and call counters, and the Provisioned Throughputs calls are served
//! through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::BedrockError;
use crate::fault::{Fault, FaultCounts, FaultRates, StreamError};
use crate::generate::StopReason;
use crate::patch::set_or_clear;
use crate::provisioned::{ProvisionedState, Refusal};

/// What the emulated model does, globally or for one model identifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    /// Time to first token, in milliseconds.
    pub ttft_ms: u64,
    /// Time per output token, in milliseconds.
    pub ms_per_token: u64,
    /// Share of calls (0..=1) answered with each fault's exception.
    #[serde(flatten)]
    pub fault_rates: FaultRates,
    /// Every answer stops for this reason instead of its own.
    pub stop_reason: Option<StopReason>,
    /// Every ConverseStream answer is cut by this exception.
    pub stream_error: Option<StreamError>,
}

/// A partial update of [`Behaviour`]: absent fields keep their value, `null` clears the
/// optional ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BehaviourPatch {
    pub ttft_ms: Option<u64>,
    pub ms_per_token: Option<u64>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub stop_reason: Option<Option<StopReason>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub stream_error: Option<Option<StreamError>>,
    /// Every other field must be a fault rate (`throttleRate`…): an unknown name is refused.
    #[serde(flatten)]
    pub fault_rates: BTreeMap<Fault, f64>,
}

impl BehaviourPatch {
    fn validate(&self) -> Result<(), String> {
        for (fault, rate) in &self.fault_rates {
            if !(0.0..=1.0).contains(rate) {
                let name = fault.spec().rate_field;
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }

    fn apply(&self, to: &mut Behaviour) {
        if let Some(v) = self.ttft_ms {
            to.ttft_ms = v;
        }
        if let Some(v) = self.ms_per_token {
            to.ms_per_token = v;
        }
        if let Some(v) = self.stop_reason {
            to.stop_reason = v;
        }
        if let Some(v) = self.stream_error {
            to.stream_error = v;
        }
        for (&fault, &rate) in &self.fault_rates {
            to.fault_rates.set(fault, rate);
        }
    }
}

/// The runtime's settings: the global behaviour and per-model overrides, keyed by the model
/// identifier as sent (id or ARN).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeSettings {
    pub global: Behaviour,
    pub models: BTreeMap<String, Behaviour>,
}

/// A partial update of [`RuntimeSettings`] (the runtime's part of `POST /_emulator/config`):
/// the global fields, and per-model overrides; `null` removes an override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePatch {
    #[serde(flatten)]
    pub global: BehaviourPatch,
    #[serde(default)]
    pub models: BTreeMap<String, Option<BehaviourPatch>>,
}

impl RuntimeSettings {
    pub fn behaviour_for(&self, model_id: &str) -> Behaviour {
        self.models.get(model_id).copied().unwrap_or(self.global)
    }

    /// These settings with a patch applied, or why the patch is refused (the global fields
    /// are checked first, then each model's).
    pub fn patched(&self, patch: &RuntimePatch) -> Result<RuntimeSettings, String> {
        let global = &patch.global;
        global.validate()?;
        for model_patch in patch.models.values().flatten() {
            model_patch.validate()?;
        }
        let mut next = self.clone();
        global.apply(&mut next.global);
        for (model, model_patch) in &patch.models {
            match model_patch {
                Some(p) => {
                    let entry = next.models.entry(model.clone()).or_insert(next.global);
                    p.apply(entry);
                }
                None => {
                    next.models.remove(model);
                }
            }
        }
        Ok(next)
    }
}

/// Per-model counters, as `GET /_emulator/stats` reports them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelStats {
    /// Every call that named this model, whatever its outcome.
    pub calls: u64,
    /// Calls answered with a generated message.
    pub served: u64,
    /// Calls answered with each fault's exception.
    #[serde(flatten)]
    pub faults: FaultCounts,
    pub validation_errors: u64,
    /// ConverseStream answers cut by a configured stream error.
    pub stream_errors: u64,
}

#[derive(Debug, Default)]
struct Mutable {
    settings: RuntimeSettings,
    stats: BTreeMap<String, ModelStats>,
    /// Error-diffusion accumulators: a rate r fires on exactly r of the calls, evenly spread,
    /// so tests are reproducible.
    accumulators: BTreeMap<(String, Fault), f64>,
}

/// What a call that passed validation does.
pub struct Admission {
    pub behaviour: Behaviour,
}

impl Admission {
    pub fn first_token_delay(&self) -> Duration {
        Duration::from_millis(self.behaviour.ttft_ms)
    }

    pub fn per_token_delay(&self) -> Duration {
        Duration::from_millis(self.behaviour.ms_per_token)
    }

    /// Waits as long as the model would take to produce a whole (non-streamed) answer.
    pub async fn wait_for_answer(&self, output_tokens: u32) {
        let delay = self.first_token_delay() + self.per_token_delay() * output_tokens;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// The runtime service's state: the models it knows, its settings and counters, and the
/// Provisioned Throughputs it serves through.
#[derive(Debug)]
pub struct RuntimeState {
    pub catalog: Catalog,
    /// What `/_emulator/reset` returns to.
    initial: RuntimeSettings,
    inner: Mutex<Mutable>,
    provisioned: Arc<ProvisionedState>,
}

impl RuntimeState {
    pub fn new(
        catalog: Catalog,
        settings: RuntimeSettings,
        provisioned: Arc<ProvisionedState>,
    ) -> Self {
        Self {
            catalog,
            inner: Mutex::new(Mutable {
                settings: settings.clone(),
                ..Mutable::default()
            }),
            initial: settings,
            provisioned,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mutable> {
        // The state stays consistent even if a holder panicked: every update is a single step.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in effect.
    pub fn settings(&self) -> RuntimeSettings {
        self.lock().settings.clone()
    }

    /// The settings the service started with (and returns to on reset).
    pub fn initial_settings(&self) -> &RuntimeSettings {
        &self.initial
    }

    /// The settings in effect with a patch applied, or why the patch is refused; nothing changes.
    pub fn patched(&self, patch: &RuntimePatch) -> Result<RuntimeSettings, String> {
        self.lock().settings.patched(patch)
    }

    /// Puts settings (checked by [`Self::patched`]) in effect.
    pub fn set_settings(&self, settings: RuntimeSettings) {
        self.lock().settings = settings;
    }

    /// Applies a patch: the settings now in effect, or why the patch is refused.
    pub fn apply(&self, patch: &RuntimePatch) -> Result<RuntimeSettings, String> {
        let mut inner = self.lock();
        let next = inner.settings.patched(patch)?;
        inner.settings = next.clone();
        Ok(next)
    }

    /// Back to the initial settings, with no calls counted and no fault under way.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.settings = self.initial.clone();
        inner.stats.clear();
        inner.accumulators.clear();
    }

    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.lock().stats.clone()
    }

    /// The output-token limit of a model identifier (a Provisioned Throughput ARN has its base
    /// model's), or the error Bedrock answers for it.
    pub fn max_output_tokens(&self, model_id: &str) -> Result<u32, BedrockError> {
        self.provisioned.max_output_tokens(model_id)
    }

    /// Admits a call by its model identifier's Provisioned Throughput status: `Ok(None)` for
    /// anything but a Provisioned Throughput ARN, `Ok(Some(arn))` for one that serves; an
    /// unknown ARN or one not ready is answered (and counted) here.
    pub fn provisioned_gate(&self, model_id: &str) -> Result<Option<String>, BedrockError> {
        self.provisioned.gate(model_id).map_err(|refusal| {
            self.record_fault(model_id, refusal.fault, true);
            refusal.error
        })
    }

    /// Takes a call's tokens from its Provisioned Throughput's capacity, or answers (and
    /// counts) a `ThrottlingException` when they do not fit in the last minute's.
    pub fn charge_provisioned(&self, arn: &str, tokens: u64) -> Result<(), BedrockError> {
        self.provisioned
            .charge(arn, tokens)
            .map_err(|Refusal { fault, error }| {
                self.record_fault(arn, fault, false);
                error
            })
    }

    /// Counts the call and decides whether a configured fault answers it.
    pub fn admit(&self, model_id: &str) -> Result<Admission, BedrockError> {
        let mut inner = self.lock();
        let behaviour = inner.settings.behaviour_for(model_id);
        inner.stats.entry(model_id.to_owned()).or_default().calls += 1;
        for fault in Fault::ALL {
            let rate = behaviour.fault_rates.get(fault);
            if rate <= 0.0 {
                continue;
            }
            let acc = inner
                .accumulators
                .entry((model_id.to_owned(), fault))
                .or_insert(0.0);
            *acc += rate;
            if *acc >= 1.0 - 1e-9 {
                *acc -= 1.0;
                inner
                    .stats
                    .entry(model_id.to_owned())
                    .or_default()
                    .faults
                    .count(fault);
                return Err(fault.error());
            }
        }
        Ok(Admission { behaviour })
    }

    pub fn record_validation_error(&self, model_id: &str) {
        self.stats_of(model_id, |stats| {
            stats.calls += 1;
            stats.validation_errors += 1;
        });
    }

    pub fn record_served(&self, model_id: &str) {
        self.stats_of(model_id, |stats| stats.served += 1);
    }

    pub fn record_stream_error(&self, model_id: &str) {
        self.stats_of(model_id, |stats| stats.stream_errors += 1);
    }

    /// Counts a call answered with a fault's exception by a check outside [`Self::admit`]
    /// (`new_call`: the call was not counted yet).
    fn record_fault(&self, model_id: &str, fault: Fault, new_call: bool) {
        self.stats_of(model_id, |stats| {
            if new_call {
                stats.calls += 1;
            }
            stats.faults.count(fault);
        });
    }

    fn stats_of(&self, model_id: &str, update: impl FnOnce(&mut ModelStats)) {
        update(self.lock().stats.entry(model_id.to_owned()).or_default());
    }
}

#[cfg(test)]
impl RuntimeState {
    /// A runtime over the default catalog and settings, with a Provisioned Throughput service
    /// of its own.
    pub(crate) fn for_tests() -> Self {
        let catalog = Catalog::default();
        let provisioned = ProvisionedState::new(
            catalog.clone(),
            crate::identity::Identity::default(),
            crate::provisioned::ProvisionedSettings::default(),
        );
        Self::new(catalog, RuntimeSettings::default(), Arc::new(provisioned))
    }
}
