//! A tenant's limits: requests and tokens per minute and concurrent requests, taken at
//! admission and given back when the request ends (a stream's at its last event).
//!
//! Fail mode: limits protect the shared service, not money. While the limiter's table cannot be
//! reached, an instance admits tenants without counting them for `LIMITER_FAIL_OPEN_SECONDS`
//! from the first failure it sees (logged as an error on every request); past it, a tenant
//! with limits gets 503 `LimiterUnavailable` until the table answers again.

use http::StatusCode;

use domain::conversation::Conversation;
use domain::error::LimitError;
use domain::limits::{estimated_tokens, RateStatus, TenantLimits};
use domain::ports::{Clock, SpendLedger, TenantLimiter};

use crate::app::{Adapters, App};
use crate::context::{Caller, Ctx, Held};
use crate::error::ApiError;

impl<A: Adapters> App<A> {
    /// Counts the request against its tenant's limits and takes a concurrency slot; over a
    /// limit, a 429 naming it with `Retry-After`. What is taken is left in `ctx.held`.
    pub(crate) async fn admit_limits(
        &self,
        caller: &Caller,
        conversation: &Conversation,
        ctx: &mut Ctx,
    ) -> Result<(), ApiError> {
        let (Some(tenant), Some(tenancy), Some(settings)) = (
            &caller.tenant,
            &self.ports.tenancy,
            self.config.tenancy.as_ref(),
        ) else {
            return Ok(());
        };
        let limits = tenant.limits;
        if !limits.any() {
            return Ok(());
        }
        let now = self.ports.clock.now().timestamp();
        // Whatever is taken goes into `ctx.held` at once, so that a refusal further on gives
        // it back (the handler gives back what a request held, however it ended).
        if limits.has_rate() {
            let tokens = if limits.tokens_per_minute.is_some() {
                estimated_tokens(conversation, settings.default_max_tokens).total()
            } else {
                0
            };
            match tenancy
                .limiter
                .admit(&tenant.name, &limits, tokens, now)
                .await
            {
                Ok(counts) => {
                    self.limiter_answered();
                    ctx.rate = Some(RateStatus::after(&limits, &counts, now));
                    ctx.held
                        .get_or_insert_with(|| Held::of(&tenant.name))
                        .window = Some((counts.window_start, tokens));
                }
                Err(error) => {
                    self.limiter_failed(&limits, &error, tokens, ctx, now)?;
                }
            }
        }
        if let Some(limit) = limits.concurrent_requests {
            let lease_id = format!(
                "{}-{}",
                ctx.request_id,
                self.lease_counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let expires_at =
                now + i64::try_from(settings.concurrency_lease.as_secs()).unwrap_or(i64::MAX / 2);
            match tenancy
                .limiter
                .acquire(&tenant.name, &lease_id, limit, now, expires_at)
                .await
            {
                Ok(()) => {
                    self.limiter_answered();
                    ctx.held
                        .get_or_insert_with(|| Held::of(&tenant.name))
                        .lease_id = Some(lease_id);
                }
                // A refused request counted in the window gets its tokens back with the rest.
                Err(error) => self.limiter_failed(&limits, &error, 0, ctx, now)?,
            }
        }
        Ok(())
    }

    /// A refusal becomes a 429; a limiter that cannot be reached lets the request through
    /// for the bounded time, then a 503.
    fn limiter_failed(
        &self,
        limits: &TenantLimits,
        error: &LimitError,
        tokens: u64,
        ctx: &mut Ctx,
        now: i64,
    ) -> Result<(), ApiError> {
        match error {
            LimitError::Exceeded(exceeded) => {
                self.limiter_answered();
                ctx.rate = limits
                    .has_rate()
                    .then(|| RateStatus::refused(limits, exceeded, now));
                let message = if exceeded.kind == domain::limits::LimitKind::TokensPerMinute
                    && Some(tokens) > limits.tokens_per_minute.map(u64::from)
                {
                    format!(
                        "this request may use up to {tokens} tokens (its prompt's bytes and its output cap), more than the key's limit of {} tokens per minute; lower maxTokens (max_tokens) or shorten the prompt",
                        exceeded.limit
                    )
                } else {
                    format!(
                        "this key is at its limit of {} {}; retry after {} s, or ask your operator for a higher limit",
                        exceeded.limit,
                        exceeded.kind.describe(),
                        exceeded.retry_after_seconds
                    )
                };
                Err(
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, exceeded.kind.code(), message)
                        .retry_after(exceeded.retry_after_seconds),
                )
            }
            LimitError::Store(reason) => {
                let window = self
                    .config
                    .tenancy
                    .as_ref()
                    .map(|s| s.limiter_fail_open)
                    .unwrap_or_default();
                let since = *self
                    .limiter_outage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() < window {
                    tracing::error!(error = %reason, "limiter unreachable; admitting without limits for LIMITER_FAIL_OPEN_SECONDS");
                    Ok(())
                } else {
                    tracing::error!(error = %reason, "limiter unreachable past LIMITER_FAIL_OPEN_SECONDS; refusing tenants with limits");
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "LimiterUnavailable",
                        "the tenant's limits could not be checked just now; retry in a few seconds",
                    )
                    .retry_after(5))
                }
            }
        }
    }

    fn limiter_answered(&self) {
        *self
            .limiter_outage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Gives back what a request held: its concurrency slot, the tokens it reserved (`used`
    /// replaces the reservation in its window), and its budget reservation (settled to
    /// `cost_usd`, what it cost).
    pub(crate) async fn give_back(&self, held: Option<Held>, used: u64, cost_usd: f64) {
        let (Some(held), Some(tenancy)) = (held, &self.ports.tenancy) else {
            return;
        };
        if let Some(lease_id) = &held.lease_id {
            if let Err(error) = tenancy.limiter.release(&held.tenant, lease_id).await {
                tracing::error!(%error, tenant = held.tenant, "concurrency slot not given back; it frees itself when its lease expires (CONCURRENCY_LEASE_SECONDS)");
            }
        }
        if let Some((window, reserved)) = held.window {
            let delta = i64::try_from(used).unwrap_or(i64::MAX)
                - i64::try_from(reserved).unwrap_or(i64::MAX);
            if let Err(error) = tenancy
                .limiter
                .adjust_tokens(&held.tenant, window, delta)
                .await
            {
                tracing::warn!(%error, tenant = held.tenant, "tokens of the minute not corrected; the reservation stands until the window ends");
            }
        }
        if let Some(hold) = &held.budget {
            if let Err(error) = tenancy
                .ledger
                .settle(
                    &held.tenant,
                    &hold.month,
                    &hold.reservation,
                    hold.held,
                    cost_usd,
                )
                .await
            {
                tracing::error!(%error, tenant = held.tenant, cost_usd, "spend not settled yet; owed and added with the tenant's next spend on this instance, the reservation expiring by itself");
            }
        }
    }
}
