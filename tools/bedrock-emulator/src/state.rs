//! Run-time behaviour (latencies, fault rates, stop reason, stream errors), fault scheduling
//! and call counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::batch::storage::{S3Storage, Storage};
use crate::batch::{Identity, Jobs};
use crate::catalog::Catalog;
use crate::error::BedrockError;
use crate::events::Events;
use crate::fault::{Fault, FaultCounts, FaultRates, StreamError};
use crate::generate::StopReason;
use crate::provisioned::{ProvisionedPatch, ProvisionedSettings, Registry};

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

/// Tells a `null` (clear: `Some(None)`) from an absent field (keep: `None`).
pub(crate) fn set_or_clear<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Body of `POST /_emulator/config`: the global fields, and per-model overrides keyed by the
/// model identifier as sent (id or ARN); `null` removes an override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatch {
    #[serde(flatten)]
    pub global: BehaviourPatch,
    #[serde(default)]
    pub models: BTreeMap<String, Option<BehaviourPatch>>,
    pub batch_step_ms: Option<u64>,
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
    pub cloudwatch: Option<crate::cloudwatch::FaultPatch>,
}

/// Batch inference (`bedrock` control plane) and job-event settings; global only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSettings {
    /// How long a job stays in each state (and each quarter of InProgress), in milliseconds.
    pub batch_step_ms: u64,
    /// Fewer records than this fail the job in Validating.
    pub batch_min_records: u64,
    /// More records than this fail the job in Validating.
    pub batch_max_records: u64,
    /// Share of records (0..=1) answered with an error line, evenly spread.
    pub batch_record_error_rate: f64,
    /// Jobs of one model that may be Submitted, Validating, Scheduled, InProgress or Stopping.
    pub batch_concurrent_job_quota: u32,
    /// Where each job-state event is POSTed (JSON); `None`: nowhere.
    pub event_target: Option<String>,
    /// `false`: events are neither recorded nor delivered.
    pub events_enabled: bool,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            batch_step_ms: 1000,
            batch_min_records: 100,
            batch_max_records: 50_000,
            batch_record_error_rate: 0.0,
            batch_concurrent_job_quota: 20,
            event_target: None,
            events_enabled: true,
        }
    }
}

impl BatchSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.batch_record_error_rate) {
            return Err(format!(
                "batchRecordErrorRate must be between 0 and 1, got {}",
                self.batch_record_error_rate
            ));
        }
        if self.batch_min_records > self.batch_max_records {
            return Err(format!(
                "batchMinRecords ({}) must not exceed batchMaxRecords ({})",
                self.batch_min_records, self.batch_max_records
            ));
        }
        if let Some(target) = &self.event_target {
            let url = reqwest::Url::parse(target)
                .map_err(|e| format!("eventTarget must be an http URL, got {target:?}: {e}"))?;
            if url.scheme() != "http" {
                return Err(format!(
                    "eventTarget must be an http:// URL, got {target:?}"
                ));
            }
        }
        Ok(())
    }

    fn patched(&self, patch: &ConfigPatch) -> BatchSettings {
        let mut next = self.clone();
        if let Some(v) = patch.batch_step_ms {
            next.batch_step_ms = v;
        }
        if let Some(v) = patch.batch_min_records {
            next.batch_min_records = v;
        }
        if let Some(v) = patch.batch_max_records {
            next.batch_max_records = v;
        }
        if let Some(v) = patch.batch_record_error_rate {
            next.batch_record_error_rate = v;
        }
        if let Some(v) = patch.batch_concurrent_job_quota {
            next.batch_concurrent_job_quota = v;
        }
        if let Some(v) = &patch.event_target {
            next.event_target.clone_from(v);
        }
        if let Some(v) = patch.events_enabled {
            next.events_enabled = v;
        }
        next
    }
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

/// The effective configuration, as `GET /_emulator/config` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(flatten)]
    pub global: Behaviour,
    #[serde(flatten)]
    pub batch: BatchSettings,
    pub models: BTreeMap<String, Behaviour>,
    /// Provisioned Throughput settings, shown as `"provisioned": {...}`.
    pub provisioned: ProvisionedSettings,
}

impl RuntimeConfig {
    pub fn behaviour_for(&self, model_id: &str) -> Behaviour {
        self.models.get(model_id).copied().unwrap_or(self.global)
    }

    pub fn apply(&mut self, patch: &ConfigPatch) -> Result<(), String> {
        let batch = self.batch.patched(patch);
        batch.validate()?;
        let global = &patch.global;
        global.validate()?;
        for model_patch in patch.models.values().flatten() {
            model_patch.validate()?;
        }
        let provisioned = match &patch.provisioned {
            Some(p) => self.provisioned.patched(p)?,
            None => self.provisioned.clone(),
        };
        self.provisioned = provisioned;
        self.batch = batch;
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
    /// Calls answered with each fault's exception.
    #[serde(flatten)]
    pub faults: FaultCounts,
    pub validation_errors: u64,
    /// ConverseStream answers cut by a configured stream error.
    pub stream_errors: u64,
}

#[derive(Debug, Default)]
struct Mutable {
    config: RuntimeConfig,
    stats: BTreeMap<String, ModelStats>,
    /// Error-diffusion accumulators: a rate r fires on exactly r of the calls, evenly spread,
    /// so tests are reproducible.
    accumulators: BTreeMap<(String, Fault), f64>,
}

#[derive(Debug)]
pub struct EmulatorState {
    pub catalog: Catalog,
    initial: RuntimeConfig,
    inner: Mutex<Mutable>,
    /// The account and region of job ARNs and events.
    pub identity: Identity,
    /// Batch inference jobs.
    pub jobs: Jobs,
    /// Job-state events, kept and delivered.
    pub events: Events,
    /// Where batch jobs read and write (S3, or memory in unit tests).
    pub storage: Arc<dyn Storage>,
    /// Provisioned Throughputs.
    pub provisioned: Registry,
    /// CloudWatch metric data (PutMetricData and the EMF feed).
    pub cloudwatch: crate::cloudwatch::Metrics,
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

impl EmulatorState {
    pub fn new(catalog: Catalog, initial: RuntimeConfig) -> Self {
        Self {
            catalog,
            inner: Mutex::new(Mutable {
                config: initial.clone(),
                ..Mutable::default()
            }),
            initial,
            identity: Identity::default(),
            jobs: Jobs::default(),
            events: Events::default(),
            storage: Arc::new(S3Storage::default()),
            provisioned: Registry::default(),
            cloudwatch: crate::cloudwatch::Metrics::default(),
        }
    }

    /// The same state with jobs and events under another account and region.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// The same state with batch jobs reading and writing elsewhere than S3.
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
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
        if let Some(faults) = &patch.cloudwatch {
            faults.apply(&self.cloudwatch);
        }
        Ok(next)
    }

    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.config = self.initial.clone();
        inner.stats.clear();
        inner.accumulators.clear();
        drop(inner);
        self.jobs.clear();
        self.events.clear();
        self.provisioned.clear();
        self.cloudwatch.clear();
    }

    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.lock().stats.clone()
    }

    /// Counts the call and decides whether a configured fault answers it.
    pub fn admit(&self, model_id: &str) -> Result<Admission, BedrockError> {
        let mut inner = self.lock();
        let behaviour = inner.config.behaviour_for(model_id);
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
    pub(crate) fn record_fault(&self, model_id: &str, fault: Fault, new_call: bool) {
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
    fn rates_out_of_range_and_unknown_fields_are_refused() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        assert!(state.apply(&patch(r#"{"throttleRate":1.5}"#)).is_err());
        assert!(state.apply(&patch(r#"{"throttleRate":1}"#)).is_ok());
        assert!(state
            .apply(&patch(r#"{"models":{"m":{"modelErrorRate":-0.1}}}"#))
            .is_err());
        for bogus in [
            r#"{"bogus":1}"#,
            r#"{"models":{"m":{"bogus":1}}}"#,
            r#"{"models":{"m":{"models":{}}}}"#,
            r#"{"stopReason":"tired"}"#,
            r#"{"streamError":{"exception":"throttlingException","after":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<ConfigPatch>(bogus).is_err(),
                "{bogus}"
            );
        }
    }

    #[test]
    fn each_new_fault_answers_its_exception_for_its_model_and_is_counted() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        let expected = [
            (
                "accessDeniedRate",
                "AccessDeniedException",
                403,
                "accessDenied",
            ),
            (
                "resourceNotFoundRate",
                "ResourceNotFoundException",
                404,
                "resourceNotFound",
            ),
            (
                "modelTimeoutRate",
                "ModelTimeoutException",
                408,
                "modelTimeout",
            ),
            ("modelErrorRate", "ModelErrorException", 424, "modelError"),
            (
                "internalServerRate",
                "InternalServerException",
                500,
                "internalServer",
            ),
        ];
        for (field, error_type, status, stat) in expected {
            state.reset();
            state
                .apply(&patch(&format!(
                    r#"{{"models":{{"pt":{{"{field}":0.5}}}}}}"#
                )))
                .unwrap();
            let errors: Vec<_> = (0..4).filter_map(|_| state.admit("pt").err()).collect();
            assert_eq!(errors.len(), 2, "{field}");
            assert_eq!(
                (errors[0].error_type, errors[0].status.as_u16()),
                (error_type, status)
            );
            assert!(state.admit("other").is_ok(), "{field} applies to pt only");
            let stats = serde_json::to_value(&state.stats()["pt"]).unwrap();
            assert_eq!(stats[stat], 2, "{stats}");
            assert_eq!(stats["calls"], 4, "{stats}");
        }
    }

    #[test]
    fn stop_reason_and_stream_error_are_set_and_cleared() {
        let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
        let config = state
            .apply(&patch(
                r#"{"stopReason":"content_filtered","streamError":{"exception":"throttlingException","afterDeltas":2}}"#,
            ))
            .unwrap();
        assert_eq!(config.global.stop_reason, Some(StopReason::ContentFiltered));
        let shown = serde_json::to_value(&config).unwrap();
        assert_eq!(shown["stopReason"], "content_filtered");
        assert_eq!(
            shown["streamError"],
            serde_json::json!({"exception": "throttlingException", "afterDeltas": 2})
        );
        // Absent keeps, null clears.
        let kept = state.apply(&patch(r#"{"ttftMs":1}"#)).unwrap();
        assert_eq!(kept.global.stop_reason, Some(StopReason::ContentFiltered));
        let cleared = state
            .apply(&patch(r#"{"stopReason":null,"streamError":null}"#))
            .unwrap();
        assert_eq!(
            (cleared.global.stop_reason, cleared.global.stream_error),
            (None, None)
        );
    }
}
