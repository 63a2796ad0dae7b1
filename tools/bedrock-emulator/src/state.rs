//! Run-time behaviour (latencies and fault rates), fault scheduling and call counters.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::BedrockError;

/// Latencies and fault rates, globally or for one model identifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    /// Time to first token, in milliseconds.
    pub ttft_ms: u64,
    /// Time per output token, in milliseconds.
    pub ms_per_token: u64,
    /// Share of calls (0..=1) answered with ThrottlingException.
    pub throttle_rate: f64,
    /// Share of calls (0..=1) answered with ModelNotReadyException.
    pub model_not_ready_rate: f64,
    /// Share of calls (0..=1) answered with ServiceUnavailableException.
    pub service_unavailable_rate: f64,
}

/// A partial update of [`Behaviour`]: absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaviourPatch {
    pub ttft_ms: Option<u64>,
    pub ms_per_token: Option<u64>,
    pub throttle_rate: Option<f64>,
    pub model_not_ready_rate: Option<f64>,
    pub service_unavailable_rate: Option<f64>,
}

/// Body of `POST /_emulator/config`: the global fields, and per-model overrides keyed by the
/// model identifier as sent (id or ARN); `null` removes an override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    pub ttft_ms: Option<u64>,
    pub ms_per_token: Option<u64>,
    pub throttle_rate: Option<f64>,
    pub model_not_ready_rate: Option<f64>,
    pub service_unavailable_rate: Option<f64>,
    #[serde(default)]
    pub models: BTreeMap<String, Option<BehaviourPatch>>,
}

impl ConfigPatch {
    fn global(&self) -> BehaviourPatch {
        BehaviourPatch {
            ttft_ms: self.ttft_ms,
            ms_per_token: self.ms_per_token,
            throttle_rate: self.throttle_rate,
            model_not_ready_rate: self.model_not_ready_rate,
            service_unavailable_rate: self.service_unavailable_rate,
        }
    }
}

impl BehaviourPatch {
    fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("throttleRate", self.throttle_rate),
            ("modelNotReadyRate", self.model_not_ready_rate),
            ("serviceUnavailableRate", self.service_unavailable_rate),
        ] {
            if let Some(rate) = rate {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("{name} must be between 0 and 1, got {rate}"));
                }
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
        if let Some(v) = self.throttle_rate {
            to.throttle_rate = v;
        }
        if let Some(v) = self.model_not_ready_rate {
            to.model_not_ready_rate = v;
        }
        if let Some(v) = self.service_unavailable_rate {
            to.service_unavailable_rate = v;
        }
    }
}

/// The effective configuration, as `GET /_emulator/config` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(flatten)]
    pub global: Behaviour,
    pub models: BTreeMap<String, Behaviour>,
}

impl RuntimeConfig {
    pub fn behaviour_for(&self, model_id: &str) -> Behaviour {
        self.models.get(model_id).copied().unwrap_or(self.global)
    }

    pub fn apply(&mut self, patch: &ConfigPatch) -> Result<(), String> {
        let global = patch.global();
        global.validate()?;
        for model_patch in patch.models.values().flatten() {
            model_patch.validate()?;
        }
        global.apply(&mut self.global);
        for (model, model_patch) in &patch.models {
            match model_patch {
                Some(p) => {
                    let entry = self.models.entry(model.clone()).or_insert(self.global);
                    p.apply(entry);
                }
                None => {
                    self.models.remove(model);
                }
            }
        }
        Ok(())
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
    pub throttled: u64,
    pub model_not_ready: u64,
    pub service_unavailable: u64,
    pub validation_errors: u64,
}

#[derive(Debug, Default)]
struct Mutable {
    config: RuntimeConfig,
    stats: BTreeMap<String, ModelStats>,
    /// Error-diffusion accumulators: a rate r fires on exactly r of the calls, evenly spread,
    /// so tests are reproducible.
    accumulators: BTreeMap<(String, u8), f64>,
}

#[derive(Debug)]
pub struct EmulatorState {
    pub catalog: Catalog,
    initial: RuntimeConfig,
    inner: Mutex<Mutable>,
}

type FaultMaker = fn() -> BedrockError;

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

impl EmulatorState {
    pub fn new(catalog: Catalog, initial: RuntimeConfig) -> Self {
        Self {
            catalog,
            inner: Mutex::new(Mutable {
                config: initial.clone(),
                ..Mutable::default()
            }),
            initial,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mutable> {
        // The state stays consistent even if a holder panicked: every update is a single step.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn config(&self) -> RuntimeConfig {
        self.lock().config.clone()
    }

    pub fn apply(&self, patch: &ConfigPatch) -> Result<RuntimeConfig, String> {
        let mut inner = self.lock();
        let mut next = inner.config.clone();
        next.apply(patch)?;
        inner.config = next.clone();
        Ok(next)
    }

    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.config = self.initial.clone();
        inner.stats.clear();
        inner.accumulators.clear();
    }

    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.lock().stats.clone()
    }

    /// Counts the call and decides whether a configured fault answers it.
    pub fn admit(&self, model_id: &str) -> Result<Admission, BedrockError> {
        let mut inner = self.lock();
        let behaviour = inner.config.behaviour_for(model_id);
        inner.stats.entry(model_id.to_owned()).or_default().calls += 1;
        let faults: [(u8, f64, FaultMaker); 3] = [
            (0, behaviour.throttle_rate, BedrockError::throttling),
            (
                1,
                behaviour.model_not_ready_rate,
                BedrockError::model_not_ready,
            ),
            (
                2,
                behaviour.service_unavailable_rate,
                BedrockError::service_unavailable,
            ),
        ];
        for (kind, rate, make_error) in faults {
            if rate <= 0.0 {
                continue;
            }
            let acc = inner
                .accumulators
                .entry((model_id.to_owned(), kind))
                .or_insert(0.0);
            *acc += rate;
            if *acc >= 1.0 - 1e-9 {
                *acc -= 1.0;
                let stats = inner.stats.entry(model_id.to_owned()).or_default();
                match kind {
                    0 => stats.throttled += 1,
                    1 => stats.model_not_ready += 1,
                    _ => stats.service_unavailable += 1,
                }
                return Err(make_error());
            }
        }
        Ok(Admission { behaviour })
    }

    pub fn record_validation_error(&self, model_id: &str) {
        let mut inner = self.lock();
        let stats = inner.stats.entry(model_id.to_owned()).or_default();
        stats.calls += 1;
        stats.validation_errors += 1;
    }

    pub fn record_served(&self, model_id: &str) {
        self.lock()
            .stats
            .entry(model_id.to_owned())
            .or_default()
            .served += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> ConfigPatch {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn throttle_rate_fires_on_that_share_of_calls() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        state.apply(&patch(r#"{"throttleRate":0.25}"#)).unwrap();
        let throttled = (0..100).filter(|_| state.admit("m").is_err()).count();
        assert_eq!(throttled, 25);
        assert_eq!(state.stats()["m"].calls, 100);
    }

    #[test]
    fn model_override_applies_to_that_model_only() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        state
            .apply(&patch(r#"{"models":{"pt":{"throttleRate":1.0}}}"#))
            .unwrap();
        assert_eq!(
            state.admit("pt").err().map(|e| e.error_type),
            Some("ThrottlingException")
        );
        assert!(state.admit("other").is_ok());
        state.reset();
        assert!(state.admit("pt").is_ok());
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        assert!(state.apply(&patch(r#"{"throttleRate":1.5}"#)).is_err());
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"bogus":1}"#).is_err());
    }
}
