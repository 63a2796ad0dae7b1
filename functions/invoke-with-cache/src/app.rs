//! The handler: cache, model choice, capacity routing, Bedrock, cost and reporting.
//! Generic over the ports, so it runs against AWS, the local stack or in-memory fakes alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt, Response};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use domain::cache::{
    CacheEntry, CacheKey, CacheMode, CacheState, CachedAnswer, Lease, StoredRecord,
};
use domain::conversation::{ModelAnswer, Usage};
use domain::error::{CacheError, ModelError, ModelErrorKind};
use domain::identity::{CallerClaims, Principal};
use domain::metrics::{Outcome, RequestMetrics};
use domain::ports::{
    CacheStore, Clock, MetricsSink, ModelInvoker, ModelStream, RoutingTableSource, SpendLedger,
    TenantKeyStore,
};
use domain::routing::{Plan, Route, Target};
use domain::stream::{replay, AnswerBuilder};
use domain::tenancy::{key_id_of, month_of, Tenant};
use domain::tiers::Tier;
use shared::adapters::memory_routing::NoRoutingTable;
use shared::adapters::memory_tenancy::InMemoryTenancy;
use shared::http::request_id;

use crate::body::{self, ResponseBody};
use crate::config::{CacheScope, InvokeConfig};
use crate::error::ApiError;
use crate::openai::{self, OpenAiOptions};
use crate::request::{self, InvokeRequest};
use crate::wire::{Answered, StreamMeta, StreamWriter, Wire};

/// The function with its adapters, built once per instance.
pub struct App<S, M, C, K, T = InMemoryTenancy, L = InMemoryTenancy, P = NoRoutingTable> {
    config: InvokeConfig,
    store: S,
    model: M,
    clock: C,
    metrics: K,
    tenancy: Option<Tenancy<T, L>>,
    /// Live routes to Provisioned Throughput: the capacity function's routing table.
    routes: P,
    /// Makes lease owners unique within the instance; the request id makes them unique across.
    lease_counter: AtomicU64,
}

/// Tenant keys and the spend ledger, when the deployment uses keys.
pub struct Tenancy<T, L> {
    pub keys: T,
    pub ledger: L,
}

/// A successful answer, before it becomes HTTP.
struct Answer {
    answer: ModelAnswer,
    cache: CacheState,
    cost_usd: f64,
    saved_usd: f64,
    on_demand_equivalent_usd: f64,
    too_large_to_cache: bool,
}

/// What is known of a request as it goes: the log line and metrics of a failure need it too.
#[derive(Debug, Default, Clone)]
struct Trace {
    model_id: Option<String>,
    tier: Option<Tier>,
    route: Option<Route>,
    spilled_over: bool,
}

/// One request's identity, clock and reporting, carried into a stream's task.
#[derive(Debug, Clone)]
struct Ctx {
    request_id: String,
    /// The invocation's X-Ray trace header, on every log line of the request.
    xray_trace_id: String,
    started: Instant,
    trace: Trace,
    wire: Wire,
}

/// The routes the function serves (matched on the path's end, whatever the stage prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Invoke,
    ChatCompletions,
    Models,
    /// Another path under `/openai/`: a 404 in OpenAI's shape.
    OpenAiOther,
}

impl Endpoint {
    fn of(request: &Request) -> Self {
        let path = request.uri().path().trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Self::ChatCompletions
        } else if path.ends_with("/openai/v1/models") || path.ends_with("/models") {
            Self::Models
        } else if path.contains("/openai/") {
            Self::OpenAiOther
        } else {
            Self::Invoke
        }
    }

    fn wire(self) -> Wire {
        match self {
            Self::Invoke => Wire::Native,
            Self::ChatCompletions | Self::Models | Self::OpenAiOther => {
                Wire::OpenAi(OpenAiOptions::default())
            }
        }
    }
}

/// Who is asking: the cache namespace, and the tenant when a key was presented.
struct Caller {
    namespace: String,
    tenant: Option<Tenant>,
}

/// A request past its checks, on its way to the model.
struct Job {
    invoke: InvokeRequest,
    caller: Caller,
    plan: Plan,
    key: Option<CacheKey>,
    state: CacheState,
    lease_owner: Option<String>,
    now: DateTime<Utc>,
}

enum Reply {
    Answer(Answer),
    /// A stream, reported by its own task when it ends.
    Stream(Response<ResponseBody>),
    Json(Value),
}

/// The outcome of looking a key up, with stampede protection.
enum Claim {
    /// A live answer, there at once or produced by the request that held the key.
    Hit(CacheEntry),
    /// This request holds the key's lease: its answer replaces the lease.
    Holder(String),
    /// No lease (turned off, or the wait ran out): answer and store as usual.
    Unclaimed,
    /// The store failed: answer without it.
    StoreFailed,
}

impl<S, M, C, K> App<S, M, C, K>
where
    S: CacheStore + 'static,
    M: ModelInvoker + 'static,
    C: Clock + 'static,
    K: MetricsSink + 'static,
{
    pub fn new(config: InvokeConfig, store: S, model: M, clock: C, metrics: K) -> Self {
        Self {
            config,
            store,
            model,
            clock,
            metrics,
            tenancy: None,
            routes: NoRoutingTable,
            lease_counter: AtomicU64::new(0),
        }
    }
}

impl<S, M, C, K, T, L, P> App<S, M, C, K, T, L, P>
where
    S: CacheStore + 'static,
    M: ModelInvoker + 'static,
    C: Clock + 'static,
    K: MetricsSink + 'static,
    T: TenantKeyStore + 'static,
    L: SpendLedger + 'static,
    P: RoutingTableSource + 'static,
{
    /// Verifies bearer keys against the tenancy's keys and counts tenants' spend in its
    /// ledger; `None` refuses every bearer key.
    pub fn with_tenancy<T2, L2>(
        self,
        tenancy: Option<Tenancy<T2, L2>>,
    ) -> App<S, M, C, K, T2, L2, P> {
        App {
            config: self.config,
            store: self.store,
            model: self.model,
            clock: self.clock,
            metrics: self.metrics,
            tenancy,
            routes: self.routes,
            lease_counter: self.lease_counter,
        }
    }

    /// Routes by the capacity function's routing table (live Provisioned Throughput, spilling
    /// over to on-demand) where the static configuration does not route to Provisioned
    /// Throughput itself.
    pub fn with_routing_table<P2>(self, routes: P2) -> App<S, M, C, K, T, L, P2> {
        App {
            config: self.config,
            store: self.store,
            model: self.model,
            clock: self.clock,
            metrics: self.metrics,
            tenancy: self.tenancy,
            routes,
            lease_counter: self.lease_counter,
        }
    }

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
        };
        let outcome = self.process(&request, &mut ctx).instrument(span).await;
        let latency_ms = elapsed_ms(ctx.started);
        match outcome {
            Ok(Reply::Answer(answer)) => {
                self.report_answer(&ctx, &answer, latency_ms);
                let meta = meta(&ctx, answer.cache, self.clock.now().timestamp());
                answer_response(&ctx.wire, &answered(&answer, &meta, latency_ms), &meta)
            }
            Ok(Reply::Stream(response)) => response,
            Ok(Reply::Json(body)) => json_body_response(StatusCode::OK, &body),
            Err(error) => {
                self.report_failure(&ctx, &error, latency_ms);
                error_response(&ctx.wire, &error, &ctx.request_id)
            }
        }
    }

    fn report_answer(&self, ctx: &Ctx, answer: &Answer, latency_ms: u64) {
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
            cost_usd = answer.cost_usd,
            on_demand_equivalent_usd = answer.on_demand_equivalent_usd,
            saved_usd = answer.saved_usd,
            "invoke answered"
        );
        self.metrics.publish(&RequestMetrics {
            model_id: trace.model_id.clone(),
            route: trace.route,
            tier: trace.tier,
            cache: Some(answer.cache),
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
    fn report_failure(&self, ctx: &Ctx, error: &ApiError, latency_ms: u64) {
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
        self.metrics.publish(&RequestMetrics {
            model_id: trace.model_id.clone(),
            route: trace.route,
            tier: trace.tier,
            spilled_over: trace.spilled_over,
            ..RequestMetrics::refused(status, latency_ms)
        });
    }

    async fn process(
        self: &Arc<Self>,
        request: &Request,
        ctx: &mut Ctx,
    ) -> Result<Reply, ApiError> {
        let endpoint = Endpoint::of(request);
        let caller = self.authenticate(request, endpoint).await?;
        match endpoint {
            Endpoint::Models => return self.list_models(request, &caller).map(Reply::Json),
            Endpoint::OpenAiOther => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "{} is not served here; the OpenAI-compatible routes are POST /openai/v1/chat/completions and GET /openai/v1/models",
                        request.uri().path()
                    ),
                ))
            }
            Endpoint::Invoke | Endpoint::ChatCompletions => {}
        }
        let invoke = self.read_request(request, endpoint, ctx)?;
        // A tenant's namespace is its own: the shared scope's rules do not apply to it.
        if caller.tenant.is_none() {
            self.check_cache_control(&invoke)?;
        }
        let model = self.choose_model(&invoke, &mut ctx.trace);
        self.admit(&caller, &model).await?;
        let now = self.clock.now();
        let plan = self.routes.plan(&self.config.router, &model, now).await;
        let key = self.cache_key(&invoke, &caller.namespace, &plan.primary.model);

        let (state, lease_owner) = match (invoke.cache_mode, &key) {
            (CacheMode::Bypass, _) | (_, None) => (CacheState::Bypass, None),
            (CacheMode::Refresh, Some(_)) => (CacheState::Refresh, None),
            (CacheMode::Use, Some(key)) => match self.claim(key, &ctx.request_id).await {
                Claim::Hit(entry) => return Ok(self.answer_hit(entry, invoke.stream, ctx)),
                Claim::Holder(owner) => (CacheState::Miss, Some(owner)),
                Claim::Unclaimed => (CacheState::Miss, None),
                Claim::StoreFailed => (CacheState::Bypass, None),
            },
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

    /// A hit: whole, or replayed as the stream a miss would have written.
    fn answer_hit(&self, entry: CacheEntry, stream: bool, ctx: &mut Ctx) -> Reply {
        let answer = hit(entry, &mut ctx.trace);
        if !stream {
            return Reply::Answer(answer);
        }
        let meta = meta(ctx, CacheState::Hit, self.clock.now().timestamp());
        let mut writer = ctx.wire.writer(&meta);
        let mut frames = vec![writer.opening(&meta)];
        frames.extend(
            replay(&answer.answer)
                .iter()
                .filter_map(|event| writer.event(event)),
        );
        let latency_ms = elapsed_ms(ctx.started);
        frames.push(writer.closing(&answered(&answer, &meta, latency_ms)));
        self.report_answer(ctx, &answer, latency_ms);
        Reply::Stream(stream_response(&meta, body::frames(frames)))
    }

    async fn answer_miss(&self, job: Job, ctx: &mut Ctx) -> Result<Answer, ApiError> {
        let conversation = &job.invoke.conversation;
        let called = self
            .with_spillover(&job.plan, ctx, |target, timeout| async move {
                self.model.converse(&target, conversation, timeout).await
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

    /// Starts the model's stream (spilling over before its first event if need be), answers
    /// with the stream's headers, and leaves the rest to a task.
    async fn stream_miss(
        self: &Arc<Self>,
        job: Job,
        ctx: &mut Ctx,
    ) -> Result<Response<ResponseBody>, ApiError> {
        let conversation = &job.invoke.conversation;
        let started = self
            .with_spillover(&job.plan, ctx, |target, timeout| async move {
                self.model
                    .converse_stream(&target, conversation, timeout)
                    .await
            })
            .await;
        let (events, target) = match started {
            Ok(started) => started,
            Err(error) => {
                self.release(job.key.as_ref(), job.lease_owner.as_deref())
                    .await;
                return Err(error.into());
            }
        };
        let meta = meta(ctx, job.state, self.clock.now().timestamp());
        let (sender, body) = body::channel();
        let app = Arc::clone(self);
        let task_ctx = ctx.clone();
        let span = tracing::info_span!("invoke", request_id = %ctx.request_id, xrayTraceId = %ctx.xray_trace_id);
        let response = stream_response(&meta, body);
        tokio::spawn(
            async move {
                app.pump(job, target, events, meta, sender, task_ctx).await;
            }
            .instrument(span),
        );
        Ok(response)
    }

    /// Writes the model's events to the client as they come, and settles the answer once the
    /// model stopped. A client gone or a failed stream stores nothing.
    async fn pump(
        self: Arc<Self>,
        job: Job,
        target: Target,
        mut events: ModelStream,
        meta: StreamMeta,
        sender: mpsc::Sender<Bytes>,
        ctx: Ctx,
    ) {
        let mut writer = ctx.wire.writer(&meta);
        let mut client_gone = sender.send(writer.opening(&meta)).await.is_err();
        // A tenant's answer is read to its end even when its client left, so the tokens it
        // cost count against the budget; anyone else's is dropped at once, which ends the call.
        let drain = job.caller.tenant.is_some();
        if client_gone && !drain {
            return self.abandon(&job, &ctx).await;
        }
        let idle = self.config.bedrock.read_timeout;
        let mut builder = AnswerBuilder::default();
        loop {
            let item = match tokio::time::timeout(idle, events.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                // A stream that stalls ends with an error event, never a silent cut.
                Err(_) => Err(ModelError::new(
                    ModelErrorKind::Timeout,
                    format!("no event from the model for {} ms", idle.as_millis()),
                )),
            };
            match item {
                Ok(event) => {
                    builder.push(&event);
                    if client_gone {
                        continue;
                    }
                    if let Some(frame) = writer.event(&event) {
                        if sender.send(frame).await.is_err() {
                            if !drain {
                                return self.abandon(&job, &ctx).await;
                            }
                            client_gone = true;
                        }
                    }
                }
                Err(error) => {
                    self.charge_partial(&job, &target, &builder).await;
                    return self.fail_stream(&job, &ctx, &writer, &sender, error).await;
                }
            }
        }
        if client_gone {
            self.charge_partial(&job, &target, &builder).await;
            return self.abandon(&job, &ctx).await;
        }
        let usage = builder.usage();
        let answer = match builder.finish() {
            Ok(answer) => answer,
            Err(error) => {
                self.record_spend(&job.caller, self.prices(&target, &usage).0)
                    .await;
                return self.fail_stream(&job, &ctx, &writer, &sender, error).await;
            }
        };
        let settled = self.settle(&job, answer, &target).await;
        let latency_ms = elapsed_ms(ctx.started);
        let meta = StreamMeta {
            cache: settled.cache,
            ..meta
        };
        // The client may be gone by now; the answer is whole and stored all the same.
        let _ = sender
            .send(writer.closing(&answered(&settled, &meta, latency_ms)))
            .await;
        self.report_answer(&ctx, &settled, latency_ms);
    }

    async fn fail_stream(
        &self,
        job: &Job,
        ctx: &Ctx,
        writer: &StreamWriter,
        sender: &mpsc::Sender<Bytes>,
        error: ModelError,
    ) {
        let error = ApiError::from(error);
        let _ = sender.send(writer.failure(&error, &ctx.request_id)).await;
        self.release(job.key.as_ref(), job.lease_owner.as_deref())
            .await;
        self.report_failure(ctx, &error, elapsed_ms(ctx.started));
    }

    /// The client went away mid-stream: the model's stream is dropped (which ends the call),
    /// nothing is stored and the key is given back.
    async fn abandon(&self, job: &Job, ctx: &Ctx) {
        self.release(job.key.as_ref(), job.lease_owner.as_deref())
            .await;
        let error = ApiError::new(
            client_closed(),
            "ClientClosedRequest",
            "the client closed the stream before the answer ended",
        );
        self.report_failure(ctx, &error, elapsed_ms(ctx.started));
    }

    /// What the tokens a stream produced cost, charged to its tenant though the answer was not
    /// whole (the client left, or Bedrock failed after its usage was known).
    async fn charge_partial(&self, job: &Job, target: &Target, builder: &AnswerBuilder) {
        let usage = builder.usage();
        if usage != Usage::default() {
            self.record_spend(&job.caller, self.prices(target, &usage).0)
                .await;
        }
    }

    /// The cost of `usage` at the margin, and its on-demand equivalent: Provisioned Throughput
    /// is billed by the hour, so a call on it costs nothing more.
    fn prices(&self, target: &Target, usage: &Usage) -> (f64, f64) {
        let price = self.config.prices.cost(&target.model, usage);
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

    /// Cost, storage and spend of a whole answer from the model.
    async fn settle(&self, job: &Job, answer: ModelAnswer, target: &Target) -> Answer {
        let (cost_usd, on_demand_equivalent_usd) = self.prices(target, &answer.usage);
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

    /// The model asked for, or the one of the conversation's complexity tier.
    fn choose_model(&self, invoke: &InvokeRequest, trace: &mut Trace) -> String {
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

    /// The key of the request's answer from `model`, or `None` when the cache takes no part.
    fn cache_key(&self, invoke: &InvokeRequest, namespace: &str, model: &str) -> Option<CacheKey> {
        if !self.config.cache_policy.applies_to(&invoke.conversation) {
            return None;
        }
        CacheKey::for_request(namespace, model, &invoke.conversation)
            .map_err(|error| {
                tracing::warn!(error = %error, "no cache key for the request; answering without the cache");
            })
            .ok()
    }

    /// Calls the plan's primary target within the request's budget, and the spillover target
    /// with what is left when the primary is unusable. For a stream, the call ends at the
    /// model's first event: after it, there is no going back.
    async fn with_spillover<Out, F, Fut>(
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

    /// Stores an answer worth repeating; a store failure only changes the reported state.
    async fn store_answer(
        &self,
        key: &CacheKey,
        invoke: &InvokeRequest,
        target: &Target,
        on_demand_price: f64,
        answered: &mut Answer,
        now_epoch: i64,
    ) {
        if let Some(reason) = self.config.cache_policy.refusal(&answered.answer) {
            tracing::info!(
                reason,
                stop_reason = answered.answer.stop_reason,
                "answer not cached"
            );
            answered.cache = CacheState::Bypass;
            return;
        }
        let ttl = invoke
            .ttl_seconds
            .unwrap_or(self.config.cache_ttl_seconds)
            .min(self.config.cache_max_ttl_seconds);
        let entry = CacheEntry {
            cached: CachedAnswer {
                answer: answered.answer.clone(),
                model_id: target.model.clone(),
                cost_usd: on_demand_price,
                created_at: now_epoch,
            },
            expires_at: now_epoch.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        };
        match self.store.put(key, &entry).await {
            Ok(()) => {}
            Err(CacheError::TooLarge(bytes)) => {
                tracing::warn!(bytes, "answer too large to cache; not stored");
                answered.too_large_to_cache = true;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cache write failed; answering without the cache");
                answered.cache = CacheState::Bypass;
            }
        }
    }

    /// Looks the key up; on a miss, leases it or waits for the holder's answer.
    async fn claim(&self, key: &CacheKey, request_id: &str) -> Claim {
        let lease_settings = self.config.lease;
        let deadline = Instant::now() + lease_settings.wait;
        let mut owner = None;
        loop {
            let now = self.clock.now();
            let record = match self.store.get(key).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(error = %error, "cache read failed; answering without the cache");
                    return Claim::StoreFailed;
                }
            };
            let waiting = match record {
                Some(StoredRecord::Answer(entry)) if entry.is_live(now.timestamp()) => {
                    return Claim::Hit(entry)
                }
                Some(StoredRecord::Lease(lease)) => lease.is_live(now.timestamp_millis()),
                _ => false,
            };
            let Some(duration) = lease_settings.duration else {
                return Claim::Unclaimed;
            };
            if !waiting {
                let owner = owner
                    .get_or_insert_with(|| self.lease_owner(request_id))
                    .clone();
                let lease = Lease {
                    until_ms: now.timestamp_millis().saturating_add(millis(duration)),
                    owner: owner.clone(),
                };
                match self
                    .store
                    .try_lease(key, &lease, now.timestamp_millis())
                    .await
                {
                    Ok(true) => return Claim::Holder(owner),
                    // Another request got there first: wait for its answer.
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(error = %error, "cache lease failed; answering without the cache");
                        return Claim::StoreFailed;
                    }
                }
            }
            if Instant::now() + lease_settings.poll > deadline {
                tracing::info!(
                    "waited for an identical request's answer in vain; calling the model"
                );
                return Claim::Unclaimed;
            }
            tokio::time::sleep(lease_settings.poll).await;
        }
    }

    fn lease_owner(&self, request_id: &str) -> String {
        let n = self.lease_counter.fetch_add(1, Ordering::Relaxed);
        format!("{request_id}/{}/{n}", std::process::id())
    }

    /// Gives the key back after a failed call or an answer not worth storing, so waiting
    /// requests stop waiting. Best effort: the lease lapses anyway.
    async fn release(&self, key: Option<&CacheKey>, owner: Option<&str>) {
        if let (Some(key), Some(owner)) = (key, owner) {
            if let Err(error) = self.store.release(key, owner).await {
                tracing::warn!(error = %error, "cache lease release failed; it lapses by itself");
            }
        }
    }

    fn read_request(
        &self,
        request: &Request,
        endpoint: Endpoint,
        ctx: &mut Ctx,
    ) -> Result<InvokeRequest, ApiError> {
        if request.method() != Method::POST {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{} is not allowed here; send POST", request.method()),
            ));
        }
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
            let content_type = content_type
                .to_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!("content-type {essence:?} is not JSON; send application/json"),
                ));
            }
        }
        let body = request.body().as_ref();
        if body.len() > self.config.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!(
                    "the body is {} bytes; the limit is {} (use contextLimitChars or a shorter conversation)",
                    body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        match endpoint {
            Endpoint::ChatCompletions => {
                let (mut invoke, model, options) = openai::parse(body)?;
                ctx.wire = Wire::OpenAi(options);
                invoke.model_id = self.openai_model(&model)?;
                Ok(invoke)
            }
            _ => {
                let invoke = request::parse(body)?;
                if let Some(model) = &invoke.model_id {
                    if !self.config.allowed_models.contains(model) {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "ValidationError",
                            format!(
                                "modelId: {model:?} is not enabled here; use one of {:?} or omit it",
                                self.config.allowed_models
                            ),
                        ));
                    }
                }
                Ok(invoke)
            }
        }
    }

    /// `auto` chooses by tier; any other name must be a model this deployment serves.
    fn openai_model(&self, model: &str) -> Result<Option<String>, ApiError> {
        if model == openai::AUTO_MODEL {
            return Ok(None);
        }
        if self.config.allowed_models.contains(model) {
            return Ok(Some(model.to_owned()));
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model {model:?} does not exist here; use \"auto\" or one of GET /openai/v1/models"
            ),
        )
        .with_param("model"))
    }

    fn list_models(&self, request: &Request, caller: &Caller) -> Result<Value, ApiError> {
        if request.method() != Method::GET {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{} is not allowed here; send GET", request.method()),
            ));
        }
        let names = self
            .config
            .allowed_models
            .iter()
            .map(String::as_str)
            .filter(|name| caller.tenant.as_ref().is_none_or(|t| t.allows_model(name)));
        Ok(openai::models(names, self.clock.now().timestamp()))
    }

    /// A bearer key names a tenant; without one, `/v1/invoke` callers are who API Gateway's
    /// authorizer says they are. Unknown, malformed and revoked keys never reach a model.
    async fn authenticate(
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

    async fn tenant_caller(&self, key: &str) -> Result<Caller, ApiError> {
        let Some(tenancy) = &self.tenancy else {
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
                namespace: format!("tenant:{}", Value::String(record.tenant.clone())),
                tenant: Some(Tenant::from(&record)),
            }),
            _ => Err(invalid()),
        }
    }

    /// A tenant may use its models, within its monthly budget. The spend is read from the
    /// instance's cache of it; a ledger fault lets the request through (fail open).
    async fn admit(&self, caller: &Caller, model: &str) -> Result<(), ApiError> {
        let (Some(tenant), Some(tenancy)) = (&caller.tenant, &self.tenancy) else {
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
        let now = self.clock.now();
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
            Err(error) => {
                tracing::warn!(error = %error, "spend read failed; admitting the request");
                Ok(())
            }
        }
    }

    async fn record_spend(&self, caller: &Caller, cost_usd: f64) {
        let (Some(tenant), Some(tenancy)) = (&caller.tenant, &self.tenancy) else {
            return;
        };
        if cost_usd <= 0.0 {
            return;
        }
        let month = month_of(self.clock.now());
        if let Err(error) = tenancy.ledger.add(&tenant.name, &month, cost_usd).await {
            tracing::error!(error = %error, tenant = tenant.name, cost_usd, "spend not recorded");
        }
    }

    /// Under the shared scope, replacing or stretching an entry everyone shares is the
    /// deployment's decision, not a caller's.
    fn check_cache_control(&self, invoke: &InvokeRequest) -> Result<(), ApiError> {
        if self.config.cache_scope != CacheScope::Shared {
            return Ok(());
        }
        if invoke.cache_mode == CacheMode::Refresh && !self.config.shared_allow_refresh {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CacheControlNotAllowed",
                "cache.mode \"refresh\" would replace an answer every caller shares, which this deployment does not allow (SHARED_CACHE_ALLOW_REFRESH is false); use \"bypass\" for a fresh answer that is not stored",
            ));
        }
        let default_ttl = self.config.cache_ttl_seconds;
        if invoke.ttl_seconds.is_some_and(|ttl| ttl > default_ttl) && !self.config.shared_allow_ttl
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CacheControlNotAllowed",
                format!("cache.ttlSeconds above the default of {default_ttl} would keep an answer every caller shares longer, which this deployment does not allow (SHARED_CACHE_ALLOW_TTL is false); ask for {default_ttl} or less"),
            ));
        }
        Ok(())
    }

    fn namespace(&self, request: &Request) -> Result<String, ApiError> {
        match self.config.cache_scope {
            CacheScope::Shared => Ok(format!("shared:{}", self.config.cache_namespace)),
            CacheScope::Caller => Principal::from_claims(&caller_claims(request))
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

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn hit(entry: CacheEntry, trace: &mut Trace) -> Answer {
    trace.model_id = Some(entry.cached.model_id);
    Answer {
        saved_usd: entry.cached.cost_usd,
        answer: entry.cached.answer,
        cache: CacheState::Hit,
        cost_usd: 0.0,
        on_demand_equivalent_usd: 0.0,
        too_large_to_cache: false,
    }
}

/// What API Gateway's authorizer says about the caller (HTTP API or REST API event).
pub fn caller_claims(request: &Request) -> CallerClaims {
    let claim = |claims: Option<&std::collections::HashMap<String, String>>, name: &str| {
        claims.and_then(|c| c.get(name)).cloned()
    };
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let Some(authorizer) = ctx.authorizer.as_ref() else {
                return CallerClaims::default();
            };
            let iam = authorizer.iam.as_ref();
            let jwt = authorizer.jwt.as_ref().map(|j| &j.claims);
            CallerClaims {
                user_arn: iam.and_then(|i| i.user_arn.clone()),
                cognito_identity_id: iam
                    .and_then(|i| i.cognito_identity.as_ref())
                    .and_then(|c| c.identity_id.clone()),
                jwt_issuer: claim(jwt, "iss"),
                jwt_subject: claim(jwt, "sub"),
            }
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            let jwt = ctx.authorizer.jwt.as_ref().map(|j| &j.claims);
            // A Cognito user-pool authorizer puts its claims under `claims`.
            let pool_claim = |name: &str| {
                ctx.authorizer
                    .fields
                    .get("claims")
                    .and_then(|c| c.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            CallerClaims {
                user_arn: ctx.identity.user_arn.clone(),
                cognito_identity_id: ctx.identity.cognito_identity_id.clone(),
                jwt_issuer: claim(jwt, "iss").or_else(|| pool_claim("iss")),
                jwt_subject: claim(jwt, "sub").or_else(|| pool_claim("sub")),
            }
        }
        _ => CallerClaims::default(),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// 499, as proxies log a client that closed the connection first.
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Seconds until the next calendar month in UTC, when budgets renew.
fn seconds_to_next_month(now: DateTime<Utc>) -> u32 {
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
fn bearer_key(request: &Request) -> Option<&str> {
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

fn meta(ctx: &Ctx, cache: CacheState, created: i64) -> StreamMeta {
    StreamMeta {
        request_id: ctx.request_id.clone(),
        created,
        cache,
        model_id: ctx.trace.model_id.clone(),
        // A hit did not go to any capacity.
        route: (cache != CacheState::Hit)
            .then_some(ctx.trace.route)
            .flatten(),
        tier: ctx.trace.tier,
        spilled_over: ctx.trace.spilled_over,
    }
}

fn answered<'a>(answer: &'a Answer, meta: &'a StreamMeta, latency_ms: u64) -> Answered<'a> {
    Answered {
        answer: &answer.answer,
        meta,
        cost_usd: answer.cost_usd,
        saved_usd: answer.saved_usd,
        on_demand_equivalent_usd: answer.on_demand_equivalent_usd,
        latency_ms,
    }
}

fn insert_header(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// `x-cache`, the model and the route, on every answer.
fn meta_headers(headers: &mut http::HeaderMap, meta: &StreamMeta) {
    insert_header(headers, "x-cache", meta.cache.as_str());
    if let Some(model) = &meta.model_id {
        insert_header(headers, "x-model-id", model);
    }
    if let Some(route) = meta.route {
        insert_header(headers, "x-route", route.as_str());
    }
}

fn json_body_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(body::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn answer_response(
    wire: &Wire,
    answered: &Answered<'_>,
    meta: &StreamMeta,
) -> Response<ResponseBody> {
    let mut response = json_body_response(StatusCode::OK, &wire.answer_body(answered));
    let headers = response.headers_mut();
    meta_headers(headers, meta);
    insert_header(headers, "x-cost-usd", &answered.cost_usd.to_string());
    insert_header(headers, "x-saved-usd", &answered.saved_usd.to_string());
    response
}

fn stream_response(meta: &StreamMeta, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    meta_headers(headers, meta);
    response
}

fn error_response(wire: &Wire, error: &ApiError, request_id: &str) -> Response<ResponseBody> {
    let mut response = json_body_response(error.status, &wire.error_body(error, request_id));
    let headers = response.headers_mut();
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if error.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    if error.code == "BudgetExceeded" {
        // Retrying cannot help before the month turns; the OpenAI SDKs honour this header.
        headers.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    response
}
