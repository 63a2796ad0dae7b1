//! Provisioned Throughput settings (`"provisioned"` in `/_emulator/config`) and their partial
//! updates.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::check::Accepted;
use super::throughput::Provisioned;
use crate::time::{now_or_system, parse_time, serialize_optional_time};

const DEFAULT_FAILURE_MESSAGE: &str =
    "Provisioned Throughput creation failed: capacity for the requested model units is not available. Try again later or with fewer model units.";

/// Provisioned Throughput settings, global only (`"provisioned"` in `/_emulator/config`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedSettings {
    /// How long a new Provisioned Throughput stays `Creating`, in milliseconds.
    pub create_ms: u64,
    /// How long an updated one stays `Updating`, in milliseconds.
    pub update_ms: u64,
    /// Names, model ids (as sent) or base model ids whose creation ends `Failed`.
    pub fail_on: Vec<String>,
    /// The `failureMessage` of those.
    pub failure_message: String,
    /// Model units the no-commitment Provisioned Throughputs may hold together.
    pub no_commitment_unit_quota: u32,
    /// Tokens (input + output) per minute per model unit, for base models not in the table.
    pub tokens_per_minute: u64,
    /// Tokens per minute per model unit, by base model id.
    pub tokens_per_minute_by_model: BTreeMap<String, u64>,
    /// The present for the commitment check; `None`: the system clock.
    #[serde(serialize_with = "serialize_optional_time")]
    pub now: Option<DateTime<Utc>>,
}

impl Default for ProvisionedSettings {
    fn default() -> Self {
        Self {
            create_ms: 1000,
            update_ms: 1000,
            fail_on: Vec::new(),
            failure_message: DEFAULT_FAILURE_MESSAGE.to_owned(),
            no_commitment_unit_quota: 10,
            tokens_per_minute: 100_000,
            tokens_per_minute_by_model: BTreeMap::new(),
            now: None,
        }
    }
}

/// A partial update of [`ProvisionedSettings`]; an unknown field is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionedPatch {
    pub create_ms: Option<u64>,
    pub update_ms: Option<u64>,
    pub fail_on: Option<Vec<String>>,
    pub failure_message: Option<String>,
    pub no_commitment_unit_quota: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_minute_by_model: BTreeMap<String, Option<u64>>,
    #[serde(default, deserialize_with = "crate::patch::set_or_clear")]
    pub now: Option<Option<String>>,
}

impl ProvisionedSettings {
    /// These settings with a patch applied, or why the patch is refused.
    pub fn patched(&self, patch: &ProvisionedPatch) -> Result<ProvisionedSettings, String> {
        let mut next = self.clone();
        if let Some(v) = patch.create_ms {
            next.create_ms = v;
        }
        if let Some(v) = patch.update_ms {
            next.update_ms = v;
        }
        if let Some(v) = &patch.fail_on {
            next.fail_on.clone_from(v);
        }
        if let Some(v) = &patch.failure_message {
            if v.is_empty() {
                return Err("provisioned.failureMessage must not be empty".to_owned());
            }
            next.failure_message.clone_from(v);
        }
        if let Some(v) = patch.no_commitment_unit_quota {
            next.no_commitment_unit_quota = v;
        }
        if let Some(v) = patch.tokens_per_minute {
            next.tokens_per_minute = v;
        }
        for (model, tokens) in &patch.tokens_per_minute_by_model {
            match tokens {
                Some(tokens) => {
                    next.tokens_per_minute_by_model
                        .insert(model.clone(), *tokens);
                }
                None => {
                    next.tokens_per_minute_by_model.remove(model);
                }
            }
        }
        if let Some(now) = &patch.now {
            next.now = match now {
                Some(text) => Some(parse_time(text).ok_or_else(|| {
                    format!("provisioned.now must be an ISO-8601 time such as 2026-01-31T09:00:00Z, got {text:?}")
                })?),
                None => None,
            };
        }
        Ok(next)
    }

    /// The present, as the commitment check sees it.
    pub fn now(&self) -> DateTime<Utc> {
        now_or_system(self.now)
    }

    /// Tokens per minute per model unit of a Provisioned Throughput's model.
    pub fn tokens_per_unit(&self, pt: &Provisioned) -> u64 {
        [pt.base_model.as_str(), pt.model_id.as_str()]
            .iter()
            .find_map(|id| self.tokens_per_minute_by_model.get(*id).copied())
            .unwrap_or(self.tokens_per_minute)
    }

    /// A Provisioned Throughput's tokens per minute.
    pub fn capacity(&self, pt: &Provisioned) -> u64 {
        self.tokens_per_unit(pt)
            .saturating_mul(u64::from(pt.model_units))
    }

    pub(super) fn fails(&self, accepted: &Accepted, base_model: &str) -> bool {
        self.fail_on.iter().any(|listed| {
            listed == &accepted.name || listed == &accepted.model_id || listed == base_model
        })
    }
}
