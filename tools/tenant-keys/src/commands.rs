//! The commands, generic over the ports so they are tested in memory.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::error::TenancyError;
use domain::limits::TenantLimits;
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::{issue_key, month_of, KeyLevers, TenantKey};

use super::*;

/// Attempts at a fresh key id when a new one is taken (48 random bits: practically never).
pub(crate) const CREATE_ATTEMPTS: usize = 3;

/// Said after a revocation: instances remember a key lookup for a while.
pub(crate) const REVOKE_NOTE: &str =
    "running invoke-with-cache instances stop accepting it within \
     TENANT_KEY_CACHE_SECONDS (default 60) seconds, as they remember a key that long";

/// Said after a limits change, for the same reason.
pub(crate) const LIMITS_NOTE: &str = "running invoke-with-cache instances apply them within \
     TENANT_KEY_CACHE_SECONDS (default 60) seconds, as they remember a key that long";

/// Said after a budget change, for the same reason.
pub(crate) const BUDGET_NOTE: &str = "running invoke-with-cache instances apply it within \
     TENANT_KEY_CACHE_SECONDS (default 60) seconds, as they remember a key that long";

/// Makes a key (see [`issue_key`]) and stores its record; the key is in the answer only.
pub async fn create<K: TenantKeyStore>(
    keys: &K,
    args: &CreateArgs,
    now: DateTime<Utc>,
) -> Result<Created, Error> {
    check_tenant(&args.tenant)?;
    for model in &args.models {
        check_model(model)?;
    }
    if let Some(budget) = args.monthly_budget_usd {
        check_budget(budget)?;
    }
    let limits = TenantLimits {
        requests_per_minute: args.requests_per_minute,
        tokens_per_minute: args.tokens_per_minute,
        concurrent_requests: args.concurrent_requests,
    };
    limits.check().map_err(Error::Limits)?;
    let levers = KeyLevers {
        service_tiers: (!args.service_tiers.is_empty()).then(|| args.service_tiers.clone()),
        default_service_tier: args.default_service_tier,
        guardrail_id: args.guardrail.as_ref().map(|(id, _)| id.clone()),
        guardrail_version: args.guardrail.as_ref().map(|(_, version)| version.clone()),
    };
    levers.check().map_err(Error::Limits)?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut issued = issue_key(
            &args.tenant,
            args.models.clone(),
            args.monthly_budget_usd,
            args.description.clone(),
            now,
        )
        .map_err(Error::Issue)?;
        issued.record.set_limits(limits);
        issued.record.levers = levers.clone();
        match keys.create(&issued.record).await {
            Ok(()) => {
                return Ok(Created {
                    view: KeyView::from(&issued.record),
                    key: issued.key,
                })
            }
            Err(TenancyError::KeyExists(_)) if attempts < CREATE_ATTEMPTS => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Every key, oldest first, with its tenant's spend in the month of `now`.
pub async fn list<K: TenantKeyStore, L: SpendLedger>(
    keys: &K,
    ledger: &L,
    now: DateTime<Utc>,
) -> Result<Vec<Listing>, Error> {
    let month = month_of(now);
    let mut spent: HashMap<String, f64> = HashMap::new();
    let mut listings = Vec::new();
    for key in keys.list().await? {
        let spent_usd = match spent.get(&key.tenant) {
            Some(usd) => *usd,
            None => {
                let usd = ledger.spent(&key.tenant, &month).await?;
                spent.insert(key.tenant.clone(), usd);
                usd
            }
        };
        listings.push(Listing {
            key: KeyView::from(&key),
            month: month.clone(),
            spent_usd,
        });
    }
    Ok(listings)
}

/// One key, as [`list`] shows it.
pub async fn get<K: TenantKeyStore, L: SpendLedger>(
    keys: &K,
    ledger: &L,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<Listing, Error> {
    let key = find(keys, key_id).await?;
    let month = month_of(now);
    let spent_usd = ledger.spent(&key.tenant, &month).await?;
    Ok(Listing {
        key: KeyView::from(&key),
        month,
        spent_usd,
    })
}

async fn find<K: TenantKeyStore>(keys: &K, key_id: &str) -> Result<TenantKey, Error> {
    keys.get(key_id)
        .await?
        .ok_or_else(|| Error::UnknownKey(key_id.to_owned()))
}

/// Revokes the key at `now`; a key revoked before keeps its first revocation time.
pub async fn revoke<K: TenantKeyStore>(
    keys: &K,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<KeyView, Error> {
    keys.revoke(key_id, now.timestamp()).await?;
    Ok(KeyView::from(&find(keys, key_id).await?))
}

/// Sets (`Some`) or removes (`None`) the key's monthly budget.
pub async fn set_budget<K: TenantKeyStore>(
    keys: &K,
    key_id: &str,
    monthly_budget_usd: Option<f64>,
) -> Result<KeyView, Error> {
    if let Some(budget) = monthly_budget_usd {
        check_budget(budget)?;
    }
    keys.set_budget(key_id, monthly_budget_usd).await?;
    Ok(KeyView::from(&find(keys, key_id).await?))
}

/// Changes the key's limits named in `args` (`none` removes one), leaving the others.
pub async fn set_limits<K: TenantKeyStore>(
    keys: &K,
    args: &SetLimitsArgs,
) -> Result<KeyView, Error> {
    let key = find(keys, &args.key_id).await?;
    let mut limits = key.limits();
    if let Some(LimitValue(value)) = args.requests_per_minute {
        limits.requests_per_minute = value;
    }
    if let Some(LimitValue(value)) = args.tokens_per_minute {
        limits.tokens_per_minute = value;
    }
    if let Some(LimitValue(value)) = args.concurrent_requests {
        limits.concurrent_requests = value;
    }
    limits.check().map_err(Error::Limits)?;
    keys.set_limits(&args.key_id, &limits).await?;
    Ok(KeyView::from(&find(keys, &args.key_id).await?))
}

/// What `tenant` spent in `month` (the month of `now` when `None`).
pub async fn spend<L: SpendLedger>(
    ledger: &L,
    tenant: &str,
    month: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Spend, Error> {
    check_tenant(tenant)?;
    let month = match month {
        Some(month) => {
            check_month(month)?;
            month.to_owned()
        }
        None => month_of(now),
    };
    let spent_usd = ledger.spent(tenant, &month).await?;
    Ok(Spend {
        tenant: tenant.to_owned(),
        month,
        spent_usd,
    })
}
