//! The request path as a short sequence of steps: who is calling, what they ask, the cache,
//! the model, the answer. Each step lives in the module named for it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use lambda_http::{Request, RequestExt, Response};
use tracing::Instrument;

use domain::cache::CacheState;
use domain::ports::{Clock, RoutingTableSource};
use shared::http::request_id;

use crate::app::{Adapters, App};
use crate::body::ResponseBody;
use crate::cache::Standing;
use crate::context::{elapsed_ms, Ctx, Endpoint, Job, Reply, Trace};
use crate::error::ApiError;
use crate::intake::not_served;
use crate::respond::{
    answer_response, answered, bytes_response, error_response, json_body_response, meta,
    rate_limit_headers,
};
use crate::wire::Wire;

/// The time left before the invocation's deadline, when the runtime gave one.
fn invocation_left(request: &Request) -> Option<Duration> {
    // 0: a context built without the runtime's deadline header (tests, tools).
    let deadline_ms = request.lambda_context_ref()?.deadline;
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis();
    // A deadline already past as the request starts is none Lambda would give: `cargo lambda
    // watch` sends a fixed 600000 (early 1970). Unknown, then: the stream limits alone apply.
    let left = u128::from(deadline_ms)
        .checked_sub(now_ms)
        .filter(|left| *left > 0)?;
    Some(Duration::from_millis(
        u64::try_from(left).unwrap_or(u64::MAX),
    ))
}

impl<A: Adapters> App<A> {
    /// Answers every request with a response, never an error: API Gateway would turn an
    /// error into a 502 without a body. A stream's failures after its start end the stream
    /// with an error event.
    pub async fn handle(self: &Arc<Self>, request: Request) -> Response<ResponseBody> {
        let request_id = request_id(&request);
        // Warnings logged on the way (cache faults, spillover) carry the request id too.
        let xray_trace_id = request
            .lambda_context_ref()
            .and_then(|c| c.xray_trace_id.clone())
            .unwrap_or_default();
        let span =
            tracing::info_span!("invoke", request_id = %request_id, xrayTraceId = %xray_trace_id);
        let mut ctx = Ctx {
            request_id,
            xray_trace_id,
            started: Instant::now(),
            trace: Trace::default(),
            wire: Endpoint::of(&request).wire(),
            held: None,
            rate: None,
            stream_ends_by: tokio::time::Instant::now()
                + self
                    .config
                    .stream_limits
                    .allowance(invocation_left(&request)),
            counted_input_tokens: None,
        };
        let outcome = self
            .process(&request, &mut ctx)
            .instrument(span.clone())
            .await;
        // What a buffered answer, a hit or a refusal held is given back now; a stream's task
        // took its own over and gives it back when the stream ends.
        let (used, cost_usd) = match &outcome {
            Ok(Reply::Answer(answer)) if answer.cache != CacheState::Hit => (
                u64::from(answer.answer.usage.input_tokens)
                    + u64::from(answer.answer.usage.output_tokens),
                answer.cost_usd,
            ),
            _ => (0, 0.0),
        };
        self.give_back(ctx.held.take(), used, cost_usd)
            .instrument(span)
            .await;
        let latency_ms = elapsed_ms(ctx.started);
        let mut response = match outcome {
            Ok(Reply::Answer(answer)) => {
                self.report_answer(&ctx, &answer, latency_ms);
                let meta = meta(&ctx, answer.cache, self.ports.clock.now().timestamp());
                answer_response(&ctx.wire, &answered(&answer, &meta, latency_ms), &meta)
            }
            Ok(Reply::Stream(response)) => response,
            Ok(Reply::Json(body)) => json_body_response(StatusCode::OK, &body),
            Ok(Reply::Accepted(body)) => json_body_response(StatusCode::ACCEPTED, &body),
            Ok(Reply::Bytes(bytes)) => bytes_response(bytes),
            Err(error) => {
                self.report_failure(&ctx, &error, latency_ms);
                error_response(&ctx.wire, &error, &ctx.request_id)
            }
        };
        if let (Some(rate), Wire::OpenAi(_)) = (&ctx.rate, &ctx.wire) {
            rate_limit_headers(response.headers_mut(), rate);
        }
        response
    }

    pub(crate) async fn process(
        self: &Arc<Self>,
        request: &Request,
        ctx: &mut Ctx,
    ) -> Result<Reply, ApiError> {
        let endpoint = Endpoint::of(request);
        let mut caller = self.authenticate(request, endpoint).await?;
        match endpoint {
            Endpoint::Models => return self.list_models(request, &caller).map(Reply::Json),
            Endpoint::OpenAiOther => return Err(not_served(request)),
            Endpoint::Deferred => return self.accept_deferred(request, caller, ctx).await,
            Endpoint::DeferredStatus => return self.deferred_status(request, &caller, ctx).await,
            Endpoint::BatchApi => return self.batch_api(request, &caller, ctx).await,
            Endpoint::Invoke | Endpoint::ChatCompletions => {}
        }
        let mut invoke = self.read_request(request, endpoint, ctx)?;
        // A tenant's namespace is its own: the shared scope's rules do not apply to it.
        if caller.tenant.is_none() {
            self.check_cache_control(&invoke)?;
        }
        let model = self.choose_model(&invoke, &mut ctx.trace);
        self.check_model(&caller, &model)?;
        self.place_cache_points(&mut invoke, &model, ctx);
        // The limits first: a tenant flooding past them costs no budget write.
        self.admit_limits(&caller, &invoke.conversation, ctx)
            .await?;
        self.admit(&mut caller, &model, &invoke.conversation, ctx)
            .await?;
        let now = self.ports.clock.now();
        let plan = self
            .ports
            .routes
            .plan(&self.config.router, &model, now)
            .await
            .with_service_tier(self.service_tier_for(&caller, &invoke)?)
            .with_guardrail(self.guardrail_for(&caller).as_ref())
            .with_latency(invoke.latency);
        let key = self.cache_key(&invoke, &caller.namespace, &plan.primary.model);

        let (state, lease_owner) = match self.standing(invoke.cache_mode, key.as_ref(), ctx).await {
            Standing::Hit(entry) => return Ok(self.answer_hit(entry, invoke.stream, ctx)),
            Standing::ToAnswer { state, lease_owner } => (state, lease_owner),
        };
        let job = Job {
            invoke,
            caller,
            plan,
            key,
            state,
            lease_owner,
            now,
        };
        if job.invoke.stream {
            self.stream_miss(job, ctx).await.map(Reply::Stream)
        } else {
            self.answer_miss(job, ctx).await.map(Reply::Answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::lambda_runtime::Context;

    fn with_deadline(deadline_ms: u64) -> Request {
        let mut context = Context::default();
        context.deadline = deadline_ms;
        Request::default().with_lambda_context(context)
    }

    #[test]
    fn a_deadline_already_past_is_no_deadline() {
        assert_eq!(
            invocation_left(&with_deadline(600_000)),
            None,
            "cargo lambda watch's"
        );
        assert_eq!(invocation_left(&with_deadline(0)), None);
        let in_a_minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64 + 60_000)
            .unwrap_or_default();
        let left = invocation_left(&with_deadline(in_a_minute)).unwrap_or_default();
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    }
}
