//! The handler: cache, model choice, capacity routing, Bedrock, cost and reporting.
//! Generic over the ports, so it runs against AWS, the local stack or in-memory fakes alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use tracing::Instrument;

use shared::domain::cache::{
    CacheEntry, CacheKey, CacheMode, CacheState, CachedAnswer, Lease, StoredRecord,
};
use shared::domain::conversation::{Conversation, ModelAnswer, Usage};
use shared::domain::error::{CacheError, ModelError};
use shared::domain::identity::{CallerClaims, Principal};
use shared::domain::metrics::{Outcome, RequestMetrics};
use shared::domain::routing::{Plan, Route, Target};
use shared::domain::tiers::Tier;
use shared::http::{json_response, request_id};
use shared::ports::{CacheStore, Clock, MetricsSink, ModelInvoker};

use crate::config::{CacheScope, InvokeConfig};
use crate::error::ApiError;
use crate::request::{self, InvokeRequest};

/// The function with its adapters, built once per instance.
pub struct App<S, M, C, K> {
    config: InvokeConfig,
    store: S,
    model: M,
    clock: C,
    metrics: K,
    /// Makes lease owners unique within the instance; the request id makes them unique across.
    lease_counter: AtomicU64,
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
#[derive(Debug, Default)]
struct Trace {
    model_id: Option<String>,
    tier: Option<Tier>,
    route: Option<Route>,
    spilled_over: bool,
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
    S: CacheStore,
    M: ModelInvoker,
    C: Clock,
    K: MetricsSink,
{
    pub fn new(config: InvokeConfig, store: S, model: M, clock: C, metrics: K) -> Self {
        Self {
            config,
            store,
            model,
            clock,
            metrics,
            lease_counter: AtomicU64::new(0),
        }
    }

    /// Answers every request with a response, never an error: API Gateway would turn an
    /// error into a 502 without a body.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&request);
        // Warnings logged on the way (cache faults, spillover) carry the request id too.
        let span = tracing::info_span!("invoke", request_id = %request_id);
        let mut trace = Trace::default();
        let outcome = self
            .process(&request, &request_id, started, &mut trace)
            .instrument(span)
            .await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(answer) => {
                self.report_answer(&request_id, &trace, &answer, latency_ms);
                success_response(&answer, &trace, latency_ms)
            }
            Err(error) => {
                self.report_failure(&request_id, &trace, &error, latency_ms);
                error_response(&error, &request_id)
            }
        }
    }

    fn report_answer(&self, request_id: &str, trace: &Trace, answer: &Answer, latency_ms: u64) {
        let processed = if answer.cache == CacheState::Hit {
            Usage::default()
        } else {
            answer.answer.usage
        };
        tracing::info!(
            request_id,
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
    fn report_failure(&self, request_id: &str, trace: &Trace, error: &ApiError, latency_ms: u64) {
        let status = error.status.as_u16();
        if error.status.is_server_error() || error.cause.is_some() {
            tracing::error!(
                request_id,
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
                request_id,
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
        &self,
        request: &Request,
        request_id: &str,
        started: Instant,
        trace: &mut Trace,
    ) -> Result<Answer, ApiError> {
        let invoke = self.read_request(request)?;
        let namespace = self.namespace(request)?;
        self.check_cache_control(&invoke)?;
        let model = self.choose_model(&invoke, trace);
        let now = self.clock.now();
        let plan = self.config.router.plan(&model, now);
        let key = self.cache_key(&invoke, &namespace, &plan.primary.model);

        let (state, lease_owner) = match (invoke.cache_mode, &key) {
            (CacheMode::Bypass, _) | (_, None) => (CacheState::Bypass, None),
            (CacheMode::Refresh, Some(_)) => (CacheState::Refresh, None),
            (CacheMode::Use, Some(key)) => match self.claim(key, request_id).await {
                Claim::Hit(entry) => return Ok(hit(entry, trace)),
                Claim::Holder(owner) => (CacheState::Miss, Some(owner)),
                Claim::Unclaimed => (CacheState::Miss, None),
                Claim::StoreFailed => (CacheState::Bypass, None),
            },
        };

        let called = self
            .call_model(&plan, &invoke.conversation, started, trace)
            .await;
        let (answer, target) = match called {
            Ok(called) => called,
            Err(error) => {
                self.release(key.as_ref(), lease_owner.as_deref()).await;
                return Err(error.into());
            }
        };
        let price = self.config.prices.cost(&target.model, &answer.usage);
        if price.is_none() && target.route == Route::OnDemand {
            tracing::warn!(
                model_id = target.model,
                "no price configured for the model; cost reported as 0"
            );
        }
        let price = price.unwrap_or(0.0);
        // Provisioned Throughput is billed by the hour: a call on it costs nothing more.
        let (cost_usd, on_demand_equivalent_usd) = match target.route {
            Route::OnDemand => (price, 0.0),
            Route::Provisioned => (0.0, price),
        };

        let mut answered = Answer {
            answer,
            cache: state,
            cost_usd,
            saved_usd: 0.0,
            on_demand_equivalent_usd,
            too_large_to_cache: false,
        };
        if let (Some(key), CacheState::Miss | CacheState::Refresh) = (&key, state) {
            let stored_under = if target.model == plan.primary.model {
                key.clone()
            } else {
                // A fallback's answer is the fallback model's, cached as that model's.
                self.release(Some(key), lease_owner.as_deref()).await;
                match self.cache_key(&invoke, &namespace, &target.model) {
                    Some(key) => key,
                    None => return Ok(answered),
                }
            };
            self.store_answer(
                &stored_under,
                &invoke,
                &target,
                price,
                &mut answered,
                now.timestamp(),
            )
            .await;
            if answered.cache == CacheState::Bypass || answered.too_large_to_cache {
                self.release(Some(key), lease_owner.as_deref()).await;
            }
        }
        Ok(answered)
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
    /// with what is left when the primary is unusable.
    async fn call_model(
        &self,
        plan: &Plan,
        conversation: &Conversation,
        started: Instant,
        trace: &mut Trace,
    ) -> Result<(ModelAnswer, Target), ModelError> {
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
        trace.route = Some(primary.route);
        let error = match self
            .model
            .converse(primary, conversation, first_timeout)
            .await
        {
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
        trace.spilled_over = true;
        trace.route = Some(spillover.route);
        trace.model_id = Some(spillover.model.clone());
        let answer = self
            .model
            .converse(spillover, conversation, remaining())
            .await?;
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

    fn read_request(&self, request: &Request) -> Result<InvokeRequest, ApiError> {
        if request.method() != Method::POST {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{} is not allowed; send POST /v1/invoke", request.method()),
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
        let invoke = request::parse(body)?;
        if let Some(model) = &invoke.model_id {
            if !self.config.allowed_models.contains(model) {
                let allowed: Vec<_> = self
                    .config
                    .allowed_models
                    .iter()
                    .map(String::as_str)
                    .collect();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ValidationError",
                    format!(
                        "modelId: {model:?} is not enabled here; use one of {allowed:?} or omit it"
                    ),
                ));
            }
        }
        Ok(invoke)
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

fn success_response(answer: &Answer, trace: &Trace, latency_ms: u64) -> Response<Body> {
    let route = (answer.cache != CacheState::Hit)
        .then_some(trace.route)
        .flatten();
    let body = json!({
        "text": answer.answer.text(),
        "message": answer.answer.message,
        "stopReason": answer.answer.stop_reason,
        "modelId": trace.model_id,
        "route": route,
        "spilledOver": trace.spilled_over,
        "tier": trace.tier,
        "cache": answer.cache,
        "usage": answer.answer.usage,
        "costUsd": answer.cost_usd,
        "onDemandEquivalentUsd": answer.on_demand_equivalent_usd,
        "savedUsd": answer.saved_usd,
        "latencyMs": latency_ms,
    });
    let mut response = json_response(StatusCode::OK, &body);
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(answer.cache.as_str()));
    response
}

fn error_response(error: &ApiError, request_id: &str) -> Response<Body> {
    let mut response = json_response(error.status, &error.body(request_id));
    let headers = response.headers_mut();
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if error.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}
