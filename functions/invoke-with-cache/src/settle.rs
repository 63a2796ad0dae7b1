//! Settling an answer: what it cost (at the margin, and on demand), storing it, and the
//! tenant's spend, for whole answers and for the tokens of a stream that did not end well.

use domain::cache::CacheState;
use domain::conversation::{ModelAnswer, Usage};
use domain::ports::{Clock, SpendLedger};
use domain::routing::{Route, Target};
use domain::stream::AnswerBuilder;
use domain::tenancy::month_of;

use crate::app::{Adapters, App};
use crate::context::{Answer, Caller, Job};

impl<A: Adapters> App<A> {
    /// Cost, storage and spend of a whole answer from the model.
    pub(crate) async fn settle(
        &self,
        job: &Job,
        mut answer: ModelAnswer,
        target: &Target,
    ) -> Answer {
        // Priced on the tier Bedrock says it served (a stream's: the tier asked), and at the
        // price of the model a prompt router chose, when it has one (else the router's own).
        answer.service_tier = answer.service_tier.or(target.service_tier);
        answer.latency = answer.latency.or(target.latency);
        let priced_model = answer
            .invoked_model
            .as_deref()
            .filter(|invoked| self.config.prices.price(invoked).is_some())
            .unwrap_or(&target.model);
        let served = Target {
            service_tier: answer.service_tier,
            latency: answer.latency,
            model: priced_model.to_owned(),
            ..target.clone()
        };
        let (cost_usd, on_demand_equivalent_usd) = self.prices(&served, &answer.usage);
        let price = cost_usd.max(on_demand_equivalent_usd);
        let mut answered = Answer {
            answer,
            cache: job.state,
            cost_usd,
            saved_usd: 0.0,
            on_demand_equivalent_usd,
            too_large_to_cache: false,
        };
        self.record_spend(&job.caller, cost_usd).await;
        let (Some(key), CacheState::Miss | CacheState::Refresh) = (&job.key, job.state) else {
            return answered;
        };
        let stored_under = if target.model == job.plan.primary.model {
            key.clone()
        } else {
            // A fallback's answer is the fallback model's, cached as that model's.
            self.release(Some(key), job.lease_owner.as_deref()).await;
            match self.cache_key(&job.invoke, &job.caller.namespace, &target.model) {
                Some(key) => key,
                None => return answered,
            }
        };
        self.store_answer(
            &stored_under,
            &job.invoke,
            target,
            price,
            &mut answered,
            job.now.timestamp(),
        )
        .await;
        if answered.cache == CacheState::Bypass || answered.too_large_to_cache {
            self.release(Some(key), job.lease_owner.as_deref()).await;
        }
        answered
    }

    /// The cost of `usage` at the margin, on the target's service tier, and its on-demand
    /// equivalent: Provisioned Throughput is billed by the hour, so a call on it costs nothing
    /// more.
    pub(crate) fn prices(&self, target: &Target, usage: &Usage) -> (f64, f64) {
        let price = self.config.prices.cost_served(
            &target.model,
            usage,
            target.service_tier,
            target.latency,
        );
        if price.is_none() && target.route == Route::OnDemand {
            tracing::warn!(
                model_id = target.model,
                "no price configured for the model; cost reported as 0"
            );
        }
        let price = price.unwrap_or(0.0);
        match target.route {
            Route::OnDemand => (price, 0.0),
            Route::Provisioned => (0.0, price),
        }
    }

    /// What the tokens a stream produced cost, charged to its tenant though the answer was not
    /// whole (the client left, or Bedrock failed after its usage was known).
    pub(crate) async fn charge_partial(&self, job: &Job, target: &Target, builder: &AnswerBuilder) {
        let usage = builder.usage();
        if usage != Usage::default() {
            self.record_spend(&job.caller, self.prices(target, &usage).0)
                .await;
        }
    }

    pub(crate) async fn record_spend(&self, caller: &Caller, cost_usd: f64) {
        let (Some(tenant), Some(tenancy)) = (&caller.tenant, &self.ports.tenancy) else {
            return;
        };
        // A reserved request's cost is settled with its reservation when the request ends.
        if cost_usd <= 0.0 || caller.budget_reserved {
            return;
        }
        let month = month_of(self.ports.clock.now());
        if let Err(error) = tenancy.ledger.add(&tenant.name, &month, cost_usd).await {
            tracing::error!(error = %error, tenant = tenant.name, cost_usd, "spend not recorded yet; owed, and added with the tenant's next spend on this instance");
        }
    }
}
