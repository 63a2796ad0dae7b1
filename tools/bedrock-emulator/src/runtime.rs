//! The runtime service (`Converse`, `ConverseStream`, `InvokeModel`): what the emulated models
//! do (latencies, fault rates, stop reason, stream errors, prompt caching, service tiers;
//! globally or per model identifier), fault scheduling and call counters, the prompt cache,
//! and the Provisioned Throughputs calls are served through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::BedrockError;
use crate::fault::{Fault, FaultCounts, FaultRates, StreamError};
use crate::generate::StopReason;
use crate::guardrail::{patch_guardrails, Guardrail, GuardrailPatch};
use crate::identity::Identity;
use crate::patch::set_or_clear;
use crate::prompt_cache::{self, CachePoint, CacheUse, PromptCache};
use crate::prompt_router::{default_router_arn, patch_routers, PromptRouter, PromptRouterPatch};
use crate::provisioned::{ProvisionedState, Refusal};
use crate::tier::ServiceTier;
use crate::time::{now_or_system, parse_time};

/// Latency factors are at most this (a factor scales the configured latencies).
const MAX_LATENCY_FACTOR: f64 = 100.0;

/// What the emulated model does, globally or for one model identifier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
    /// The minimum prefix, in tokens, a cache point needs; `None`: the model's documented
    /// minimum ([`prompt_cache::default_min_tokens`]).
    pub prompt_cache_min_tokens: Option<u32>,
    /// Share of `flex` calls (0..=1) answered with a `ThrottlingException`.
    pub flex_throttle_rate: f64,
    /// The latencies of a `flex` call are multiplied by this.
    pub flex_latency_factor: f64,
    /// The latencies of a `priority` call are multiplied by this.
    pub priority_latency_factor: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            ttft_ms: 0,
            ms_per_token: 0,
            fault_rates: FaultRates::default(),
            stop_reason: None,
            stream_error: None,
            prompt_cache_min_tokens: None,
            flex_throttle_rate: 0.0,
            flex_latency_factor: 2.0,
            priority_latency_factor: 0.5,
        }
    }
}

impl Behaviour {
    /// The minimum prefix a cache point needs on this model.
    pub fn prompt_cache_min_tokens(&self, model_id: &str) -> u32 {
        self.prompt_cache_min_tokens
            .unwrap_or_else(|| prompt_cache::default_min_tokens(model_id))
    }

    /// What the latencies of a call served in a tier are multiplied by.
    pub fn latency_factor(&self, tier: Option<ServiceTier>) -> f64 {
        match tier {
            Some(ServiceTier::Flex) => self.flex_latency_factor,
            Some(ServiceTier::Priority) => self.priority_latency_factor,
            Some(ServiceTier::Default | ServiceTier::Reserved) | None => 1.0,
        }
    }
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
    #[serde(default, deserialize_with = "set_or_clear")]
    pub prompt_cache_min_tokens: Option<Option<u32>>,
    pub flex_throttle_rate: Option<f64>,
    pub flex_latency_factor: Option<f64>,
    pub priority_latency_factor: Option<f64>,
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
        if let Some(rate) = self.flex_throttle_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "flexThrottleRate must be between 0 and 1, got {rate}"
                ));
            }
        }
        for (name, factor) in [
            ("flexLatencyFactor", self.flex_latency_factor),
            ("priorityLatencyFactor", self.priority_latency_factor),
        ] {
            if let Some(factor) = factor {
                if !(0.0..=MAX_LATENCY_FACTOR).contains(&factor) {
                    return Err(format!(
                        "{name} must be between 0 and {MAX_LATENCY_FACTOR}, got {factor}"
                    ));
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
        if let Some(v) = self.stop_reason {
            to.stop_reason = v;
        }
        if let Some(v) = self.stream_error {
            to.stream_error = v;
        }
        if let Some(v) = self.prompt_cache_min_tokens {
            to.prompt_cache_min_tokens = v;
        }
        if let Some(v) = self.flex_throttle_rate {
            to.flex_throttle_rate = v;
        }
        if let Some(v) = self.flex_latency_factor {
            to.flex_latency_factor = v;
        }
        if let Some(v) = self.priority_latency_factor {
            to.priority_latency_factor = v;
        }
        for (&fault, &rate) in &self.fault_rates {
            to.fault_rates.set(fault, rate);
        }
    }
}

/// The runtime's settings: the global behaviour and per-model overrides, keyed by the model
/// identifier as sent (id or ARN), the present the prompt cache sees, the guardrails requests
/// may name and the prompt routers configured (besides the built-in one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeSettings {
    pub global: Behaviour,
    pub models: BTreeMap<String, Behaviour>,
    /// The present for the prompt cache's expiries; `None`: the system clock.
    pub prompt_cache_now: Option<DateTime<Utc>>,
    /// Guardrails by id ([`crate::guardrail`]).
    pub guardrails: BTreeMap<String, Guardrail>,
    /// Prompt routers by ARN ([`crate::prompt_router`]); the built-in default router answers
    /// at its ARN unless one is configured there.
    pub prompt_routers: BTreeMap<String, PromptRouter>,
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
    /// An ISO-8601 time, or `null` for the system clock (global only).
    #[serde(default, deserialize_with = "set_or_clear")]
    pub prompt_cache_now: Option<Option<String>>,
    /// Guardrails to define or change by id; `null` removes one.
    #[serde(default)]
    pub guardrails: BTreeMap<String, Option<GuardrailPatch>>,
    /// Prompt routers to define or change by ARN; `null` removes one.
    #[serde(default)]
    pub prompt_routers: BTreeMap<String, Option<PromptRouterPatch>>,
}

impl RuntimeSettings {
    pub fn behaviour_for(&self, model_id: &str) -> Behaviour {
        self.models.get(model_id).copied().unwrap_or(self.global)
    }

    /// These settings with a patch applied, or why the patch is refused (the global fields
    /// are checked first, then each model's, then the guardrails and the prompt routers, whose
    /// models the catalog must serve).
    pub fn patched(
        &self,
        patch: &RuntimePatch,
        catalog: &Catalog,
        identity: &Identity,
    ) -> Result<RuntimeSettings, String> {
        let global = &patch.global;
        global.validate()?;
        for model_patch in patch.models.values().flatten() {
            model_patch.validate()?;
        }
        let mut next = self.clone();
        if let Some(now) = &patch.prompt_cache_now {
            next.prompt_cache_now = match now {
                Some(text) => Some(parse_time(text).ok_or_else(|| {
                    format!("promptCacheNow must be an ISO-8601 time such as 2026-01-31T09:00:00Z, got {text:?}")
                })?),
                None => None,
            };
        }
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
        patch_guardrails(&mut next.guardrails, &patch.guardrails)?;
        patch_routers(
            &mut next.prompt_routers,
            &patch.prompt_routers,
            catalog,
            identity,
        )?;
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
    /// `flex` calls answered with a `ThrottlingException` by `flexThrottleRate` (also counted
    /// in `throttled`).
    pub flex_throttled: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Served calls that named a service tier, by tier.
    pub tiers: BTreeMap<&'static str, u64>,
    /// Calls whose answer a guardrail replaced (input or output blocked).
    pub guardrail_interventions: u64,
    /// `CountTokens` calls (not counted in `calls`: they are not model calls).
    pub count_tokens_calls: u64,
}

#[derive(Debug, Default)]
struct Mutable {
    settings: RuntimeSettings,
    stats: BTreeMap<String, ModelStats>,
    /// Error-diffusion accumulators: a rate r fires on exactly r of the calls, evenly spread,
    /// so tests are reproducible.
    accumulators: BTreeMap<(String, Fault), f64>,
    /// The same for `flexThrottleRate`, over each model's `flex` calls.
    flex_accumulators: BTreeMap<String, f64>,
    prompt_cache: PromptCache,
}

/// What a call that passed validation does.
pub struct Admission {
    pub behaviour: Behaviour,
    /// Its latencies are multiplied by this (its service tier's factor).
    pub latency_factor: f64,
}

/// `millis` milliseconds times `factor` (not negative).
fn scaled(millis: u64, factor: f64) -> Duration {
    let base = Duration::from_millis(millis);
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
}

impl Admission {
    pub fn first_token_delay(&self) -> Duration {
        scaled(self.behaviour.ttft_ms, self.latency_factor)
    }

    pub fn per_token_delay(&self) -> Duration {
        scaled(self.behaviour.ms_per_token, self.latency_factor)
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
    /// The account and region of the ARNs it names (prompt routers, guardrails).
    identity: Identity,
    /// What `/_emulator/reset` returns to.
    initial: RuntimeSettings,
    inner: Mutex<Mutable>,
    provisioned: Arc<ProvisionedState>,
}

impl RuntimeState {
    pub fn new(
        catalog: Catalog,
        identity: Identity,
        settings: RuntimeSettings,
        provisioned: Arc<ProvisionedState>,
    ) -> Self {
        Self {
            catalog,
            identity,
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
        self.lock()
            .settings
            .patched(patch, &self.catalog, &self.identity)
    }

    /// Puts settings (checked by [`Self::patched`]) in effect.
    pub fn set_settings(&self, settings: RuntimeSettings) {
        self.lock().settings = settings;
    }

    /// Applies a patch: the settings now in effect, or why the patch is refused.
    pub fn apply(&self, patch: &RuntimePatch) -> Result<RuntimeSettings, String> {
        let mut inner = self.lock();
        let next = inner
            .settings
            .patched(patch, &self.catalog, &self.identity)?;
        inner.settings = next.clone();
        Ok(next)
    }

    /// Back to the initial settings, with no calls counted and no fault under way.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.settings = self.initial.clone();
        inner.stats.clear();
        inner.accumulators.clear();
        inner.flex_accumulators.clear();
        inner.prompt_cache.clear();
    }

    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.lock().stats.clone()
    }

    /// The account and region of the ARNs the runtime names.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A guardrail by id.
    pub fn guardrail(&self, id: &str) -> Option<Guardrail> {
        self.lock().settings.guardrails.get(id).cloned()
    }

    /// The prompt router at an ARN: the one configured there, or the built-in default router.
    pub fn prompt_router(&self, arn: &str) -> Option<PromptRouter> {
        let configured = self.lock().settings.prompt_routers.get(arn).cloned();
        configured
            .or_else(|| (arn == default_router_arn(&self.identity)).then(PromptRouter::builtin))
    }

    /// Every prompt router, by ARN: the built-in one and those configured.
    pub fn prompt_routers(&self) -> BTreeMap<String, PromptRouter> {
        let mut routers =
            BTreeMap::from([(default_router_arn(&self.identity), PromptRouter::builtin())]);
        routers.extend(self.lock().settings.prompt_routers.clone());
        routers
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
        self.admit_tier(model_id, None)
    }

    /// [`Self::admit`] for a call that asked for a service tier: after the configured faults,
    /// a `flex` call may be throttled by `flexThrottleRate`; the tier sets the pace.
    pub fn admit_tier(
        &self,
        model_id: &str,
        tier: Option<ServiceTier>,
    ) -> Result<Admission, BedrockError> {
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
        if tier == Some(ServiceTier::Flex) && behaviour.flex_throttle_rate > 0.0 {
            let acc = inner
                .flex_accumulators
                .entry(model_id.to_owned())
                .or_insert(0.0);
            *acc += behaviour.flex_throttle_rate;
            if *acc >= 1.0 - 1e-9 {
                *acc -= 1.0;
                let stats = inner.stats.entry(model_id.to_owned()).or_default();
                stats.faults.count(Fault::Throttling);
                stats.flex_throttled += 1;
                return Err(Fault::Throttling.error());
            }
        }
        Ok(Admission {
            behaviour,
            latency_factor: behaviour.latency_factor(tier),
        })
    }

    /// Reads the prefix of the request's cache point that counts (the longest of those at
    /// least the model's minimum) from the prompt cache, or writes it; `None` when no cache
    /// point counts. The tokens are counted for the model.
    pub fn use_prompt_cache(
        &self,
        model_id: &str,
        points: &[CachePoint],
        behaviour: &Behaviour,
    ) -> Option<CacheUse> {
        let point = prompt_cache::counting(points, behaviour.prompt_cache_min_tokens(model_id))?;
        let mut inner = self.lock();
        let now = now_or_system(inner.settings.prompt_cache_now);
        let used = inner.prompt_cache.read_or_write(point, now);
        let stats = inner.stats.entry(model_id.to_owned()).or_default();
        stats.cache_read_tokens += u64::from(used.read);
        stats.cache_write_tokens += u64::from(used.write);
        Some(used)
    }

    /// Prefixes the prompt cache holds.
    pub fn prompt_cache_len(&self) -> usize {
        self.lock().prompt_cache.len()
    }

    pub fn record_validation_error(&self, model_id: &str) {
        self.stats_of(model_id, |stats| {
            stats.calls += 1;
            stats.validation_errors += 1;
        });
    }

    /// Counts a served call, and its tier when it named one.
    pub fn record_served(&self, model_id: &str, tier: Option<ServiceTier>) {
        self.stats_of(model_id, |stats| {
            stats.served += 1;
            if let Some(tier) = tier {
                *stats.tiers.entry(tier.name()).or_default() += 1;
            }
        });
    }

    pub fn record_stream_error(&self, model_id: &str) {
        self.stats_of(model_id, |stats| stats.stream_errors += 1);
    }

    /// Counts a call whose answer a guardrail replaced.
    pub fn record_guardrail_intervention(&self, model_id: &str) {
        self.stats_of(model_id, |stats| stats.guardrail_interventions += 1);
    }

    /// Counts a `CountTokens` call (not a model call: `calls` is left alone).
    pub fn record_count_tokens(&self, model_id: &str) {
        self.stats_of(model_id, |stats| stats.count_tokens_calls += 1);
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
            Identity::default(),
            crate::provisioned::ProvisionedSettings::default(),
        );
        Self::new(
            catalog,
            Identity::default(),
            RuntimeSettings::default(),
            Arc::new(provisioned),
        )
    }
}
