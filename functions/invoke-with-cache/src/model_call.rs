//! The model call: the model asked for or the tier's, on the plan's capacity, spilling over
//! from Provisioned Throughput to on-demand when it is unusable.

use std::time::Duration;

use domain::error::{ModelError, ModelErrorKind};
use domain::guardrail::{Guardrail, StreamProcessing};
use domain::ports::ModelInvoker;
use domain::prompt_cache;
use domain::routing::{Plan, Route, ServiceTier, Target};
use http::StatusCode;

use crate::app::{Adapters, App};
use crate::context::{Answer, Caller, Ctx, Job, Trace};
use crate::error::ApiError;
use crate::request::InvokeRequest;

impl<A: Adapters> App<A> {
    /// The model asked for, or the one of the conversation's complexity tier.
    pub(crate) fn choose_model(&self, invoke: &InvokeRequest, trace: &mut Trace) -> String {
        let model = match &invoke.model_id {
            Some(id) => id.clone(),
            None => {
                let tier = self.config.complexity.classify(&invoke.conversation);
                trace.tier = Some(tier);
                self.config.tier_models.model(tier).to_owned()
            }
        };
        trace.model_id = Some(model.clone());
        model
    }

    /// The tier a request asks for: its own, else its key's default, else the deployment's
    /// (`SERVICE_TIER`); one its key may not use is refused (403).
    pub(crate) fn service_tier_for(
        &self,
        caller: &Caller,
        invoke: &InvokeRequest,
    ) -> Result<Option<ServiceTier>, ApiError> {
        let levers = caller.tenant.as_ref().map(|tenant| &tenant.levers);
        let tier = invoke
            .service_tier
            .or(levers.and_then(|l| l.default_service_tier))
            .or(self.config.service_tier);
        match (tier, levers) {
            (Some(tier), Some(levers)) if !levers.allows_tier(tier) => {
                let allowed: Vec<&str> = levers
                    .service_tiers
                    .iter()
                    .flatten()
                    .map(|t| t.as_str())
                    .collect();
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "ServiceTierNotAllowed",
                    format!(
                        "this key may not use the {} service tier; ask for one of {allowed:?}",
                        tier.as_str()
                    ),
                )
                .with_param("service_tier"))
            }
            _ => Ok(tier),
        }
    }

    /// The guardrail of the caller's key, else the deployment's (`GUARDRAIL_ID`).
    pub(crate) fn guardrail_for(&self, caller: &Caller) -> Option<Guardrail> {
        let levers = caller.tenant.as_ref().map(|tenant| &tenant.levers);
        match levers.and_then(|l| l.guardrail_id.as_ref().zip(l.guardrail_version.as_ref())) {
            Some((identifier, version)) => Some(Guardrail {
                identifier: identifier.clone(),
                version: version.clone(),
                trace: self.config.guardrail.as_ref().is_some_and(|g| g.trace),
                stream_mode: self
                    .config
                    .guardrail
                    .as_ref()
                    .map_or(StreamProcessing::Sync, |g| g.stream_mode),
            }),
            None => self.config.guardrail.clone(),
        }
    }

    /// Bedrock's prompt cache for `model`: automatic cache points when `PROMPT_CACHE_AUTO` is
    /// on, and the caller's points too short to cache anything counted (Bedrock says nothing).
    pub(crate) fn place_cache_points(
        &self,
        invoke: &mut InvokeRequest,
        model: &str,
        ctx: &mut Ctx,
    ) {
        // Nothing to place or to count: no work on the hit path.
        if !self.config.prompt_cache_auto && !invoke.conversation.has_cache_points() {
            return;
        }
        let minimum = prompt_cache::minimum_tokens(model);
        if self.config.prompt_cache_auto {
            prompt_cache::add_automatic_points(&mut invoke.conversation, minimum);
        }
        let too_small = prompt_cache::points_below_minimum(&invoke.conversation, minimum);
        if too_small > 0 {
            tracing::info!(
                request_id = ctx.request_id,
                model_id = model,
                cache_points_below_minimum = too_small,
                minimum_tokens = minimum,
                "cache points before fewer tokens than the model caches; Bedrock ignores them"
            );
        }
        ctx.trace.cache_points_too_small = u32::try_from(too_small).unwrap_or(u32::MAX);
    }

    /// Calls the plan's primary target within the request's budget, and the spillover target
    /// with what is left when the primary is unusable. For a stream, the call ends at the
    /// model's first event: after it, there is no going back.
    pub(crate) async fn with_spillover<Out, F, Fut>(
        &self,
        plan: &Plan,
        ctx: &mut Ctx,
        call: F,
    ) -> Result<(Out, Target), ModelError>
    where
        F: Fn(Target, Option<Duration>) -> Fut,
        Fut: std::future::Future<Output = Result<Out, ModelError>>,
    {
        let started = ctx.started;
        let remaining = || {
            self.config
                .bedrock
                .operation_timeout
                .map(|budget| budget.saturating_sub(started.elapsed()))
        };
        let primary = &plan.primary;
        let first_timeout = match primary.route {
            Route::Provisioned => {
                let share = self.config.bedrock.provisioned_timeout;
                Some(remaining().map_or(share, |left| left.min(share)))
            }
            Route::OnDemand => remaining(),
        };
        ctx.trace.route = Some(primary.route);
        let error = match call(primary.clone(), first_timeout).await {
            Ok(answer) => return Ok((answer, primary.clone())),
            Err(error) => error,
        };
        // Flex is Bedrock's spare capacity: throttled there, the call goes to the default tier
        // with the time the request has left.
        if error.kind == ModelErrorKind::Throttled
            && primary.service_tier == Some(ServiceTier::Flex)
        {
            let fallback = Target {
                service_tier: Some(ServiceTier::Default),
                ..primary.clone()
            };
            tracing::warn!(
                model_id = primary.model,
                "flex tier throttled; trying the default tier"
            );
            ctx.trace.tier_fallback = true;
            let answer = call(fallback.clone(), remaining()).await?;
            return Ok((answer, fallback));
        }
        let Some(spillover) = plan.spillover.as_ref().filter(|_| error.spills_over()) else {
            return Err(error);
        };
        tracing::warn!(
            from = primary.route.as_str(),
            error_kind = error.kind.as_str(),
            cause = %error,
            "provisioned throughput unusable; spilling over to on-demand"
        );
        ctx.trace.spilled_over = true;
        ctx.trace.route = Some(spillover.route);
        ctx.trace.model_id = Some(spillover.model.clone());
        let answer = call(spillover.clone(), remaining()).await?;
        Ok((answer, spillover.clone()))
    }

    pub(crate) async fn answer_miss(&self, job: Job, ctx: &mut Ctx) -> Result<Answer, ApiError> {
        let conversation = &job.invoke.conversation;
        let called = self
            .with_spillover(&job.plan, ctx, |target, timeout| async move {
                self.ports
                    .model
                    .converse(&target, conversation, timeout)
                    .await
            })
            .await;
        match called {
            Ok((answer, target)) => Ok(self.settle(&job, answer, &target).await),
            Err(error) => {
                self.release(job.key.as_ref(), job.lease_owner.as_deref())
                    .await;
                Err(error.into())
            }
        }
    }
}
