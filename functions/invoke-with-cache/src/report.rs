//! What each request leaves behind: one JSON log line (no prompt or answer text) and its EMF
//! metrics, for an answer and for a failure.

use domain::cache::CacheState;
use domain::conversation::Usage;
use domain::metrics::{Outcome, RequestMetrics};
use domain::ports::MetricsSink;
use domain::routing::{Route, ServiceTier};
use domain::tiers::Tier;

use crate::app::{Adapters, App};
use crate::context::{Answer, Ctx};
use crate::error::ApiError;

impl<A: Adapters> App<A> {
    pub(crate) fn report_answer(&self, ctx: &Ctx, answer: &Answer, latency_ms: u64) {
        let trace = &ctx.trace;
        let processed = if answer.cache == CacheState::Hit {
            Usage::default()
        } else {
            answer.answer.usage
        };
        tracing::info!(
            request_id = ctx.request_id,
            status = 200,
            route = trace.route.map(Route::as_str),
            spilled_over = trace.spilled_over,
            tier = trace.tier.map(Tier::as_str),
            model_id = trace.model_id,
            cache = answer.cache.as_str(),
            latency_ms,
            input_tokens = processed.input_tokens,
            output_tokens = processed.output_tokens,
            service_tier = answer.answer.service_tier.map(ServiceTier::as_str),
            tier_fallback = trace.tier_fallback,
            guardrail_intervened = domain::guardrail::intervened(&answer.answer.stop_reason),
            invoked_model_id = answer.answer.invoked_model.as_deref(),
            prompt_cache_read_tokens = processed.cache_read_input_tokens,
            prompt_cache_write_tokens = processed.cache_write_input_tokens,
            cost_usd = answer.cost_usd,
            on_demand_equivalent_usd = answer.on_demand_equivalent_usd,
            saved_usd = answer.saved_usd,
            "invoke answered"
        );
        // Provisioned Throughput is billed by the hour: its prompt cache saves nothing.
        let prompt_cache_saved_usd = match (trace.route, trace.model_id.as_deref()) {
            (Some(Route::OnDemand), Some(model)) => self
                .config
                .prices
                .price(model)
                .map_or(0.0, |price| price.prompt_cache_saving(&processed)),
            _ => 0.0,
        };
        self.ports.metrics.publish(&RequestMetrics {
            model_id: trace.model_id.clone(),
            route: trace.route,
            tier: trace.tier,
            cache: Some(answer.cache),
            service_tier: answer
                .answer
                .service_tier
                .filter(|_| answer.cache != CacheState::Hit),
            tier_fallback: trace.tier_fallback,
            prompt_cache_points_too_small: trace.cache_points_too_small,
            guardrail_intervened: answer.cache != CacheState::Hit
                && domain::guardrail::intervened(&answer.answer.stop_reason),
            prompt_cache_read_tokens: processed.cache_read_input_tokens,
            prompt_cache_write_tokens: processed.cache_write_input_tokens,
            prompt_cache_saved_usd,
            latency_ms,
            input_tokens: processed.input_tokens,
            output_tokens: processed.output_tokens,
            cost_usd: answer.cost_usd,
            saved_usd: answer.saved_usd,
            on_demand_equivalent_usd: answer.on_demand_equivalent_usd,
            too_large_to_cache: answer.too_large_to_cache,
            outcome: Outcome::Answered,
            spilled_over: trace.spilled_over,
        });
    }

    /// A Bedrock 4xx and every 5xx reach the log with the underlying error, for the operator.
    pub(crate) fn report_failure(&self, ctx: &Ctx, error: &ApiError, latency_ms: u64) {
        let trace = &ctx.trace;
        let status = error.status.as_u16();
        if error.status.is_server_error() || error.cause.is_some() {
            tracing::error!(
                request_id = ctx.request_id,
                status,
                code = error.code,
                cause = error.cause.as_deref().unwrap_or("none"),
                route = trace.route.map(Route::as_str),
                spilled_over = trace.spilled_over,
                model_id = trace.model_id,
                latency_ms,
                "invoke failed"
            );
        } else {
            tracing::warn!(
                request_id = ctx.request_id,
                status,
                code = error.code,
                latency_ms,
                "invoke refused"
            );
        }
        self.ports.metrics.publish(&RequestMetrics {
            model_id: trace.model_id.clone(),
            route: trace.route,
            tier: trace.tier,
            spilled_over: trace.spilled_over,
            ..RequestMetrics::refused(status, latency_ms)
        });
    }
}
