//! Who is calling and what they may do: a tenant key or API Gateway's authorizer, the cache
//! namespace that follows, and a tenant's models and monthly budget.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use http::{header, StatusCode};
use lambda_http::Request;

use domain::identity::tenant_owner;
use domain::ports::{Clock, SpendLedger, TenantKeyStore};
use domain::tenancy::{key_id_of, month_of, Tenant};

use crate::app::{Adapters, App};
use crate::config::CacheScope;
use crate::context::{Caller, Endpoint};
use crate::error::ApiError;

impl<A: Adapters> App<A> {
    /// A bearer key names a tenant; without one, `/v1/invoke` callers are who API Gateway's
    /// authorizer says they are. Unknown, malformed and revoked keys never reach a model.
    pub(crate) async fn authenticate(
        &self,
        request: &Request,
        endpoint: Endpoint,
    ) -> Result<Caller, ApiError> {
        // On /v1/invoke a bearer token may be an authorizer's JWT: only a tenant key's shape
        // makes it a key there.
        let key = bearer_key(request)
            .filter(|key| endpoint != Endpoint::Invoke || key_id_of(key).is_some());
        match (key, endpoint) {
            (Some(key), _) => self.tenant_caller(key).await,
            (None, Endpoint::Invoke) => Ok(Caller {
                namespace: self.namespace(request)?,
                tenant: None,
            }),
            (None, _) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "no API key: send your tenant key as Authorization: Bearer <key>",
            )),
        }
    }

    pub(crate) async fn tenant_caller(&self, key: &str) -> Result<Caller, ApiError> {
        let Some(tenancy) = &self.ports.tenancy else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "this deployment does not use tenant keys (TENANT_KEYS_TABLE_NAME is unset); call /v1/invoke with IAM",
            ));
        };
        let invalid = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "the API key is unknown, malformed or revoked; ask your operator for a key",
            )
        };
        let key_id = key_id_of(key).ok_or_else(invalid)?;
        let record = tenancy.keys.get(key_id).await.map_err(|error| {
            tracing::error!(error = %error, "tenant key lookup failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "KeyStoreUnavailable",
                "the API key could not be verified just now; retry in a few seconds",
            )
            .retry_after(2)
        })?;
        match record {
            Some(record) if record.accepts(key) => Ok(Caller {
                namespace: tenant_owner(&record.tenant),
                tenant: Some(Tenant::from(&record)),
            }),
            _ => Err(invalid()),
        }
    }

    /// A tenant may use its models, within its monthly budget. The spend is read from the
    /// instance's cache of it; a ledger that cannot be read answers with the last figure known
    /// for `SPEND_READ_GRACE_SECONDS`, and past it the request is refused (fail closed).
    pub(crate) async fn admit(&self, caller: &Caller, model: &str) -> Result<(), ApiError> {
        let (Some(tenant), Some(tenancy)) = (&caller.tenant, &self.ports.tenancy) else {
            return Ok(());
        };
        if !tenant.allows_model(model) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ModelNotAllowed",
                format!(
                    "this key may not use {model:?}; it may use {:?}",
                    tenant.models
                ),
            )
            .with_param("model"));
        }
        let Some(budget) = tenant.monthly_budget_usd else {
            return Ok(());
        };
        let now = self.ports.clock.now();
        match tenancy.ledger.spent(&tenant.name, &month_of(now)).await {
            Ok(spent) if spent >= budget => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "BudgetExceeded",
                format!(
                    "tenant {:?} has spent ${spent:.4} of its ${budget:.2} budget for {}; it renews on the 1st (UTC) or when the operator raises it",
                    tenant.name,
                    month_of(now)
                ),
            )
            .retry_after(seconds_to_next_month(now))),
            Ok(_) => Ok(()),
            // Money is at stake: with no spend known (or known too long ago), no admission.
            Err(error) => {
                tracing::error!(error = %error, tenant = tenant.name, "spend unreadable past its grace; refusing the request");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SpendUnavailable",
                    "the tenant's spend could not be read to check its budget; retry in a few seconds",
                )
                .retry_after(5))
            }
        }
    }

    pub(crate) fn namespace(&self, request: &Request) -> Result<String, ApiError> {
        match self.config.cache_scope {
            CacheScope::Shared => Ok(format!("shared:{}", self.config.cache_namespace)),
            CacheScope::Caller => shared::http::caller_principal(request)
                .map(|principal| format!("caller:{principal}"))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "MissingCallerIdentity",
                        "the cache is scoped per caller, but the request carries no IAM or JWT (iss and sub) identity; call through the authorized API",
                    )
                }),
        }
    }
}

/// Seconds until the next calendar month in UTC, when budgets renew.
pub(crate) fn seconds_to_next_month(now: DateTime<Utc>) -> u32 {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map_or(3600, |next| {
            u32::try_from((next - now).num_seconds().max(1)).unwrap_or(u32::MAX)
        })
}

/// The presented key of `Authorization: Bearer <key>`, or `None`.
pub(crate) fn bearer_key(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|key| !key.is_empty())
}
