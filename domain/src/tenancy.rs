//! Tenant keys: bearer keys that name a tenant (its cache namespace), the models it may use
//! and its monthly budget. Only a key's SHA-256 is ever stored; the key is shown once.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::TenantLimits;
use crate::routing::ServiceTier;

/// Every key starts with this, so leaked keys are recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "bgw";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 24;

/// What is stored of a key. `key_id` is public (it is part of the key and names it in
/// listings); `secret_sha256` is the hash of the whole key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantKey {
    pub key_id: String,
    pub secret_sha256: String,
    pub tenant: String,
    /// Models the key may name; empty means every model the deployment allows.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget_usd: Option<f64>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Requests per one-minute window; absent (as on keys made before limits): unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens (input + output) per one-minute window; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// Requests in flight at once, streams included; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_requests: Option<u32>,
    /// Bedrock's service tiers, and the guardrail, the key's requests get ([`KeyLevers`]).
    #[serde(default, skip_serializing_if = "KeyLevers::is_unset")]
    pub levers: KeyLevers,
}

/// What a key sets of Bedrock's levers for its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyLevers {
    /// The service tiers its requests may ask for; absent: every tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tiers: Option<Vec<ServiceTier>>,
    /// The tier of its requests that name none (before the deployment's `SERVICE_TIER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_service_tier: Option<ServiceTier>,
    /// The guardrail applied to its requests instead of the deployment's: its id or ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_id: Option<String>,
    /// That guardrail's version (`DRAFT` or a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_version: Option<String>,
}

impl KeyLevers {
    /// Nothing set: the deployment's levers apply.
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the key may ask for `tier`.
    pub fn allows_tier(&self, tier: ServiceTier) -> bool {
        self.service_tiers
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&tier))
    }

    /// What is wrong with these levers, if anything: a default tier the key may not use, a
    /// guardrail without its version (or the reverse).
    pub fn check(&self) -> Result<(), String> {
        if let Some(tier) = self.default_service_tier {
            if !self.allows_tier(tier) {
                return Err(format!(
                    "the default service tier {} is not among the key's tiers",
                    tier.as_str()
                ));
            }
        }
        if self.guardrail_id.is_some() != self.guardrail_version.is_some() {
            return Err("a guardrail needs both its id and its version (ID:VERSION)".to_owned());
        }
        Ok(())
    }
}

impl TenantKey {
    /// The key's limits.
    pub fn limits(&self) -> TenantLimits {
        TenantLimits {
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            concurrent_requests: self.concurrent_requests,
        }
    }

    /// Sets every limit to `limits`' (an absent one removes it).
    pub fn set_limits(&mut self, limits: TenantLimits) {
        self.requests_per_minute = limits.requests_per_minute;
        self.tokens_per_minute = limits.tokens_per_minute;
        self.concurrent_requests = limits.concurrent_requests;
    }

    /// Whether the presented key is this one and still valid.
    pub fn accepts(&self, presented: &str) -> bool {
        self.revoked_at.is_none()
            && constant_time_eq(&secret_sha256(presented), &self.secret_sha256)
    }
}

/// A newly made key: the key itself (shown once) and what is stored of it.
pub struct IssuedKey {
    pub key: String,
    pub record: TenantKey,
}

/// Makes a key for `tenant` from 30 random bytes: `bgw_<id>_<secret>`.
pub fn issue_key(
    tenant: &str,
    models: Vec<String>,
    monthly_budget_usd: Option<f64>,
    description: Option<String>,
    now: DateTime<Utc>,
) -> Result<IssuedKey, String> {
    let mut random = [0u8; ID_BYTES + SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for a key: {e}"))?;
    let key_id = hex::encode(&random[..ID_BYTES]);
    let key = format!("{KEY_PREFIX}_{key_id}_{}", hex::encode(&random[ID_BYTES..]));
    Ok(IssuedKey {
        record: TenantKey {
            key_id,
            secret_sha256: secret_sha256(&key),
            tenant: tenant.to_owned(),
            models,
            monthly_budget_usd,
            created_at: now.timestamp(),
            revoked_at: None,
            description,
            requests_per_minute: None,
            tokens_per_minute: None,
            concurrent_requests: None,
            levers: KeyLevers::default(),
        },
        key,
    })
}

/// The key id of a well-formed key, `None` for anything else (which is then refused unseen).
pub fn key_id_of(key: &str) -> Option<&str> {
    let mut parts = key.split('_');
    let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let hex_of = |s: &str, bytes: usize| {
        s.len() == bytes * 2
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (prefix == KEY_PREFIX
        && parts.next().is_none()
        && hex_of(id, ID_BYTES)
        && hex_of(secret, SECRET_BYTES))
    .then_some(id)
}

pub fn secret_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The budget period a time falls in: the calendar month, in UTC (`2026-11`).
pub fn month_of(now: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", now.year(), now.month())
}

/// A hold on part of a tenant's monthly budget: what a request may cost at most, taken at
/// admission and settled to what it did cost once answered. A reservation never settled (its
/// instance killed or frozen) stops counting at `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// Unique per request (the request id and a counter).
    pub id: String,
    /// The most the request may cost, in USD.
    pub usd: f64,
    /// Epoch seconds after which the reservation no longer counts.
    pub expires_at: i64,
}

impl Reservation {
    /// The reservation as one string, `id|usd|expiresAt`: how a ledger may keep it in a set
    /// (the same reservation always writes the same string).
    pub fn entry(&self) -> String {
        format!("{}|{:.9}|{}", self.id, self.usd, self.expires_at)
    }

    /// Reads back what [`Reservation::entry`] wrote.
    pub fn from_entry(entry: &str) -> Option<Self> {
        let mut parts = entry.rsplitn(3, '|');
        let expires_at = parts.next()?.parse().ok()?;
        let usd = parts.next()?.parse().ok()?;
        let id = parts.next()?.to_owned();
        Some(Self {
            id,
            usd,
            expires_at,
        })
    }
}

/// What a ledger answers to a reservation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserved {
    /// Held in the ledger, where every instance counts it.
    Held,
    /// The ledger could not be written: held by this instance alone, against the last spend it
    /// knows (within the spend read grace), and settled as a plain addition.
    HeldLocally,
    /// No room: the spend and the live reservations (`committed_usd`) leave less than asked.
    Refused { committed_usd: f64 },
}

/// What a tenant's live keys allow a batch it uploads (see [`batch_terms`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchTerms {
    /// Every key of the tenant is revoked, or it has none: it may spend nothing.
    NoLiveKey,
    /// None of its live keys may use the batch's model.
    ModelNotAllowed,
    /// The batch may run, within this monthly budget: the tightest of its live keys' (none
    /// when no live key has one).
    Allowed { budget_usd: Option<f64> },
}

/// The terms of a batch on `model` for `tenant`, from its keys: a live key must allow the model,
/// and the tightest budget of the live keys holds, since any of them could spend it.
pub fn batch_terms(keys: &[TenantKey], tenant: &str, model: &str) -> BatchTerms {
    let live: Vec<&TenantKey> = keys
        .iter()
        .filter(|key| key.tenant == tenant && key.revoked_at.is_none())
        .collect();
    if live.is_empty() {
        return BatchTerms::NoLiveKey;
    }
    if !live
        .iter()
        .any(|key| key.models.is_empty() || key.models.iter().any(|m| m == model))
    {
        return BatchTerms::ModelNotAllowed;
    }
    let budget_usd = live
        .iter()
        .filter_map(|key| key.monthly_budget_usd)
        .min_by(f64::total_cmp);
    BatchTerms::Allowed { budget_usd }
}

/// What a tenant's budget answers to a batch's reservation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchBudgetAnswer {
    /// Reserved in the ledger; settled when the batch ends.
    Held,
    /// No live key of the tenant has a budget: nothing to reserve.
    Unlimited,
    /// The budget's room is less than the batch's estimate.
    Refused { budget_usd: f64, committed_usd: f64 },
    /// The tenant may not run the batch at all.
    NotAllowed(BatchTerms),
}

/// The tenant a request is made for, once its key is verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub name: String,
    pub key_id: String,
    pub models: Vec<String>,
    pub monthly_budget_usd: Option<f64>,
    /// Its key's rate and concurrency limits.
    pub limits: TenantLimits,
    /// Its key's service tiers and guardrail.
    pub levers: KeyLevers,
}

impl Tenant {
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

impl From<&TenantKey> for Tenant {
    fn from(key: &TenantKey) -> Self {
        Self {
            name: key.tenant.clone(),
            key_id: key.key_id.clone(),
            models: key.models.clone(),
            monthly_budget_usd: key.monthly_budget_usd,
            limits: key.limits(),
            levers: key.levers.clone(),
        }
    }
}

/// A tenant name becomes part of a cache namespace and a table key: keep it plain.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tenant {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_needs_a_live_key_for_its_model_and_holds_to_the_tightest_budget() {
        let key = |tenant: &str, models: &[&str], budget: Option<f64>, revoked: bool| {
            let mut issued = issue_key(tenant, vec![], budget, None, Utc::now()).unwrap();
            issued.record.models = models.iter().map(|m| (*m).to_owned()).collect();
            issued.record.revoked_at = revoked.then_some(1);
            issued.record
        };
        let keys = vec![
            key("acme", &[], Some(50.0), false),
            key("acme", &["haiku"], Some(20.0), false),
            key("acme", &[], Some(1.0), true),
            key("other", &[], Some(0.5), false),
        ];
        assert_eq!(
            batch_terms(&keys, "acme", "sonnet"),
            BatchTerms::Allowed {
                budget_usd: Some(20.0)
            }
        );
        assert_eq!(
            batch_terms(&keys[1..2], "acme", "sonnet"),
            BatchTerms::ModelNotAllowed
        );
        assert_eq!(
            batch_terms(&keys[2..], "acme", "haiku"),
            BatchTerms::NoLiveKey
        );
        let unlimited = vec![key("acme", &[], None, false)];
        assert_eq!(
            batch_terms(&unlimited, "acme", "haiku"),
            BatchTerms::Allowed { budget_usd: None }
        );
    }
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap()
    }

    #[test]
    fn an_issued_key_is_accepted_and_only_its_hash_is_kept() {
        let issued = issue_key("acme", vec![], Some(10.0), None, now()).unwrap();
        assert_eq!(key_id_of(&issued.key), Some(issued.record.key_id.as_str()));
        assert!(issued.record.accepts(&issued.key));
        assert!(!issued.record.secret_sha256.contains(&issued.key));
        let serialized = serde_json::to_string(&issued.record).unwrap();
        let secret = issued.key.rsplit('_').next().unwrap();
        assert!(!serialized.contains(secret), "{serialized}");

        let other = issue_key("acme", vec![], None, None, now()).unwrap();
        assert_ne!(other.key, issued.key);
        assert!(!issued.record.accepts(&other.key));
    }

    #[test]
    fn a_revoked_key_is_refused() {
        let mut issued = issue_key("acme", vec![], None, None, now()).unwrap();
        issued.record.revoked_at = Some(1);
        assert!(!issued.record.accepts(&issued.key));
    }

    #[test]
    fn malformed_keys_have_no_id() {
        for key in [
            "",
            "sk-abc",
            "bgw_0123456789ab",
            "bgw_0123456789ab_short",
            "bgw_0123456789AB_000000000000000000000000000000000000000000000000",
            "xyz_0123456789ab_000000000000000000000000000000000000000000000000",
            "bgw_0123456789ab_000000000000000000000000000000000000000000000000_x",
        ] {
            assert_eq!(key_id_of(key), None, "{key}");
        }
        assert_eq!(
            key_id_of("bgw_0123456789ab_000000000000000000000000000000000000000000000000"),
            Some("0123456789ab")
        );
    }

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(now()), "2026-11");
        assert_eq!(month_of(now() + chrono::Duration::seconds(1)), "2026-12");
    }

    #[test]
    fn model_lists_restrict_only_when_given() {
        let mut issued = issue_key("acme", vec![], None, None, now()).unwrap();
        assert!(Tenant::from(&issued.record).allows_model("any"));
        issued.record.models = vec!["a".into()];
        let tenant = Tenant::from(&issued.record);
        assert!(tenant.allows_model("a"));
        assert!(!tenant.allows_model("b"));
    }

    #[test]
    fn keys_stored_before_limits_read_as_unlimited_and_limits_round_trip() {
        let old = serde_json::json!({
            "keyId": "0123456789ab", "secretSha256": "ff", "tenant": "acme", "createdAt": 1
        });
        let key: TenantKey = serde_json::from_value(old).unwrap();
        assert_eq!(key.limits(), TenantLimits::default());
        let mut limited = key.clone();
        let limits = TenantLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(10_000),
            concurrent_requests: Some(2),
        };
        limited.set_limits(limits);
        let text = serde_json::to_value(&limited).unwrap();
        assert_eq!(text["concurrentRequests"], 2);
        let read: TenantKey = serde_json::from_value(text).unwrap();
        assert_eq!(Tenant::from(&read).limits, limits);
        assert!(serde_json::to_value(&key)
            .unwrap()
            .get("requestsPerMinute")
            .is_none());
    }

    #[test]
    fn a_reservation_reads_back_from_its_entry() {
        let reservation = Reservation {
            id: "req|1-2".into(),
            usd: 0.0125,
            expires_at: 1_800_000_000,
        };
        assert_eq!(reservation.entry(), "req|1-2|0.012500000|1800000000");
        assert_eq!(
            Reservation::from_entry(&reservation.entry()),
            Some(reservation)
        );
        assert_eq!(Reservation::from_entry("nonsense"), None);
    }

    #[test]
    fn tenant_names_are_plain() {
        assert!(check_tenant_name("team-a.prod_1").is_ok());
        for bad in ["", "a b", "a:b", "ü", &"x".repeat(65)] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
    }
}
