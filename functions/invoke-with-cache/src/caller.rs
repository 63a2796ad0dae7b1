//! Who is calling and what they may do: a tenant key or API Gateway's authorizer, the cache
//! namespace that follows, and a tenant's models and monthly budget.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use http::{header, StatusCode};
use lambda_http::Request;

use domain::conversation::{Conversation, Usage};
use domain::identity::tenant_owner;
use domain::limits::estimated_tokens;
use domain::ports::{Clock, ModelInvoker, SpendLedger, TenantKeyStore};
use domain::routing::Target;
use domain::tenancy::{key_id_of, month_of, Reservation, Reserved, Tenant};

use crate::app::{Adapters, App};
use crate::config::CacheScope;
use crate::context::{BudgetHold, Caller, Ctx, Endpoint, Held};
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
        let key =
            bearer_key(request).filter(|key| !endpoint.is_native() || key_id_of(key).is_some());
        match (key, endpoint) {
            (Some(key), _) => self.tenant_caller(key).await,
            (None, Endpoint::Invoke | Endpoint::Deferred | Endpoint::DeferredStatus) => {
                Ok(Caller {
                    namespace: self.namespace(request)?,
                    tenant: None,
                    budget_reserved: false,
                })
            }
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
                budget_reserved: false,
            }),
            _ => Err(invalid()),
        }
    }

    /// A tenant key may name (or its tier choose) only the models it lists.
    pub(crate) fn check_model(&self, caller: &Caller, model: &str) -> Result<(), ApiError> {
        match &caller.tenant {
            Some(tenant) if !tenant.allows_model(model) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ModelNotAllowed",
                format!(
                    "this key may not use {model:?}; it may use {:?}",
                    tenant.models
                ),
            )
            .with_param("model")),
            _ => Ok(()),
        }
    }

    /// A tenant may spend within its monthly budget. The spend is read from the
    /// instance's cache of it; a ledger that cannot be read answers with the last figure known
    /// for `SPEND_READ_GRACE_SECONDS`, and past it the request is refused (fail closed). Then
    /// the most the request may cost is reserved in the budget (one conditional write), left
    /// in `ctx.held` to be settled when the request ends.
    pub(crate) async fn admit(
        &self,
        caller: &mut Caller,
        model: &str,
        conversation: &Conversation,
        ctx: &mut Ctx,
    ) -> Result<(), ApiError> {
        let (Some(tenant), Some(tenancy)) = (&caller.tenant, &self.ports.tenancy) else {
            return Ok(());
        };
        let Some(budget) = tenant.monthly_budget_usd else {
            return Ok(());
        };
        let now = self.ports.clock.now();
        match tenancy.ledger.spent(&tenant.name, &month_of(now)).await {
            Ok(spent) if spent >= budget => {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "BudgetExceeded",
                    format!(
                        "tenant {:?} has spent ${spent:.4} of its ${budget:.2} budget for {}; it renews on the 1st (UTC) or when the operator raises it",
                        tenant.name,
                        month_of(now)
                    ),
                )
                .retry_after(seconds_to_next_month(now)))
            }
            Ok(_) => {}
            // Money is at stake: with no spend known (or known too long ago), no admission.
            Err(error) => {
                tracing::error!(error = %error, tenant = tenant.name, "spend unreadable past its grace; refusing the request");
                return Err(spend_unavailable());
            }
        }
        self.count_input(model, conversation, ctx).await;
        let reservation = self.reservation_for(model, conversation, ctx, now)?;
        let month = month_of(now);
        match tenancy
            .ledger
            .reserve(&tenant.name, &month, &reservation, budget, now.timestamp())
            .await
        {
            Ok(Reserved::Refused { committed_usd }) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "BudgetExceeded",
                format!(
                    "this request may cost up to ${:.6} (its prompt's bytes as input tokens and its maxTokens, or {} output tokens without it); tenant {:?} has ${committed_usd:.6} spent or reserved of its ${budget} budget for {month}. Lower maxTokens (max_tokens), wait for requests in flight to end, or ask the operator to raise the budget",
                    reservation.usd,
                    self.config
                        .tenancy
                        .as_ref()
                        .map_or(0, |s| s.default_max_tokens),
                    tenant.name,
                ),
            )
            .retry_after(seconds_to_next_month(now))),
            Ok(held) => {
                let hold = BudgetHold {
                    month,
                    reservation,
                    held,
                };
                ctx.held.get_or_insert_with(|| Held::of(&tenant.name)).budget = Some(hold);
                caller.budget_reserved = true;
                Ok(())
            }
            Err(error) => {
                tracing::error!(error = %error, tenant = tenant.name, "budget reservation not written and no spend known within the grace; refusing the request");
                Err(spend_unavailable())
            }
        }
    }

    /// With `COUNT_TOKENS` on, the request's input tokens as Bedrock counts them (free, one
    /// call); a count that fails leaves the byte bound, which is never below it.
    async fn count_input(&self, model: &str, conversation: &Conversation, ctx: &mut Ctx) {
        if !self.config.count_tokens {
            return;
        }
        match self
            .ports
            .model
            .count_tokens(&Target::on_demand(model), conversation)
            .await
        {
            Ok(tokens) => ctx.counted_input_tokens = Some(tokens),
            Err(error) => tracing::warn!(
                model_id = model,
                error_kind = error.kind.as_str(),
                cause = %error,
                "tokens not counted; the reservation uses the prompt's bytes"
            ),
        }
    }

    /// The most a request may cost on `model`: its input tokens (as counted, else the prompt's
    /// bytes), its output cap, at the model's price. A model without a price cannot be reserved
    /// for.
    pub(crate) fn reservation_for(
        &self,
        model: &str,
        conversation: &Conversation,
        ctx: &Ctx,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ApiError> {
        let settings = self.config.tenancy.as_ref();
        let estimate = estimated_tokens(
            conversation,
            settings.map_or(4096, |s| s.default_max_tokens),
        );
        let input = ctx.counted_input_tokens.unwrap_or(estimate.input);
        let usage = Usage::new(
            u32::try_from(input).unwrap_or(u32::MAX),
            u32::try_from(estimate.output).unwrap_or(u32::MAX),
        );
        let usd = self.config.prices.cost(model, &usage).ok_or_else(|| {
            tracing::error!(model_id = model, "no price for a tenant's model; its budget cannot be reserved");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "ModelNotPriced",
                format!("{model:?} has no price, so this key's budget cannot count it; ask the operator to add it to MODEL_PRICES"),
            )
            .with_param("model")
        })?;
        let lifetime = settings.map_or(900, |s| s.budget_reservation.as_secs());
        Ok(Reservation {
            id: format!(
                "{}-{}",
                ctx.request_id,
                self.lease_counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            usd,
            expires_at: now.timestamp() + i64::try_from(lifetime).unwrap_or(i64::MAX / 2),
        })
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

pub(crate) fn spend_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "SpendUnavailable",
        "the tenant's spend could not be read or reserved to check its budget; retry in a few seconds",
    )
    .retry_after(5)
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
