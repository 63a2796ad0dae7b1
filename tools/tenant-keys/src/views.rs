//! What the commands answer: keys without their hashes, listings with spend, created keys.

use domain::tenancy::{KeyLevers, TenantKey};
use serde::Serialize;

/// A key as operators see it: everything stored but its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub key_id: String,
    pub tenant: String,
    /// Empty: every model the deployment allows.
    pub models: Vec<String>,
    pub monthly_budget_usd: Option<f64>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub revoked_at: Option<i64>,
    pub description: Option<String>,
    /// `null`: unlimited.
    pub requests_per_minute: Option<u32>,
    /// `null`: unlimited.
    pub tokens_per_minute: Option<u32>,
    /// `null`: unlimited.
    pub concurrent_requests: Option<u32>,
    /// The key's service tiers and guardrail; absent when it sets none.
    #[serde(skip_serializing_if = "KeyLevers::is_unset")]
    pub levers: KeyLevers,
}

impl From<&TenantKey> for KeyView {
    fn from(key: &TenantKey) -> Self {
        Self {
            key_id: key.key_id.clone(),
            tenant: key.tenant.clone(),
            models: key.models.clone(),
            monthly_budget_usd: key.monthly_budget_usd,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            description: key.description.clone(),
            requests_per_minute: key.requests_per_minute,
            tokens_per_minute: key.tokens_per_minute,
            concurrent_requests: key.concurrent_requests,
            levers: key.levers.clone(),
        }
    }
}

/// A key with what its tenant spent in `month`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    #[serde(flatten)]
    pub key: KeyView,
    pub month: String,
    pub spent_usd: f64,
}

/// A new key: the key itself, which is never shown again, and what was stored of it.
/// (No `Debug`, so that the key does not end up in a log by accident.)
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

/// What a tenant spent in a month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spend {
    pub tenant: String,
    pub month: String,
    pub spent_usd: f64,
}

/// What a command prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}
