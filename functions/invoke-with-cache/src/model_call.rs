//! The model call: the model asked for or the tier's, on the plan's capacity, spilling over
//! from Provisioned Throughput to on-demand when it is unusable.

use std::time::Duration;

use domain::error::{ModelError, ModelErrorKind};
use domain::ports::ModelInvoker;
use domain::routing::{Plan, Route, ServiceTier, Target};

use crate::app::{Adapters, App};
use crate::context::{Answer, Ctx, Job, Trace};
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
