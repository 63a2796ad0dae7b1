//! The handler: cache, model choice, capacity routing, Bedrock, cost and reporting.
//! Generic over the ports, so it runs against AWS, the local stack or in-memory fakes alike.

use std::time::Instant;

use http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use tracing::Instrument;

use shared::adapters::memory_cache::MemoryCache;
use shared::domain::cache::{CacheEntry, CacheKey, CacheMode, CacheState, CachedAnswer};
use shared::domain::conversation::{ModelAnswer, Usage};
use shared::domain::error::CacheError;
use shared::domain::metrics::RequestMetrics;
use shared::domain::routing::Route;
use shared::domain::tiers::Tier;
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
    memory: MemoryCache,
}

/// A successful answer, before it becomes HTTP.
struct Answer {
    answer: ModelAnswer,
    model_id: String,
    route: Option<Route>,
    tier: Option<Tier>,
    cache: CacheState,
    cost_usd: f64,
    saved_usd: f64,
    too_large_to_cache: bool,
}

impl<S, M, C, K> App<S, M, C, K>
where
    S: CacheStore,
    M: ModelInvoker,
    C: Clock,
    K: MetricsSink,
{
    pub fn new(config: InvokeConfig, store: S, model: M, clock: C, metrics: K) -> Self {
        let memory = MemoryCache::new(config.memory_cache_entries, config.memory_cache_ttl_seconds);
        Self {
            config,
            store,
            model,
            clock,
            metrics,
            memory,
        }
    }

    /// Answers every request with a response, never an error: API Gateway would turn an
    /// error into a 502 without a body.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&request);
        // Warnings logged on the way (cache faults, spillover) carry the request id too.
        let span = tracing::info_span!("invoke", request_id = %request_id);
        let outcome = self.process(&request).instrument(span).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(answer) => {
                let usage = answer.answer.usage;
                let processed = if answer.cache == CacheState::Hit {
                    Usage::default()
                } else {
                    usage
                };
                tracing::info!(
                    request_id,
                    status = 200,
                    route = answer.route.map(Route::as_str),
                    tier = answer.tier.map(Tier::as_str),
                    model_id = answer.model_id,
                    cache = answer.cache.as_str(),
                    latency_ms,
                    input_tokens = processed.input_tokens,
                    output_tokens = processed.output_tokens,
                    cost_usd = answer.cost_usd,
                    saved_usd = answer.saved_usd,
                    "invoke answered"
                );
                self.metrics.publish(&RequestMetrics {
                    model_id: answer.model_id.clone(),
                    route: answer.route,
                    tier: answer.tier,
                    cache: answer.cache,
                    latency_ms,
                    input_tokens: processed.input_tokens,
                    output_tokens: processed.output_tokens,
                    cost_usd: answer.cost_usd,
                    saved_usd: answer.saved_usd,
                    too_large_to_cache: answer.too_large_to_cache,
                });
                success_response(&answer, latency_ms)
            }
            Err(error) => {
                tracing::warn!(
                    request_id,
                    status = error.status.as_u16(),
                    code = error.code,
                    latency_ms,
                    "invoke refused"
                );
                error_response(&error, &request_id)
            }
        }
    }

    async fn process(&self, request: &Request) -> Result<Answer, ApiError> {
        let invoke = self.read_request(request)?;
        let namespace = self.namespace(request)?;
        let (base_model, tier) = match &invoke.model_id {
            Some(id) => (id.clone(), None),
            None => {
                let tier = self.config.complexity.classify(&invoke.conversation);
                (self.config.tier_models.model(tier).to_owned(), Some(tier))
            }
        };
        let key = match CacheKey::for_request(&namespace, &base_model, &invoke.conversation) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(error = %error, "no cache key for the request; answering without the cache");
                None
            }
        };
        let now = self.clock.now();
        let now_epoch = now.timestamp();

        let mut state = match (invoke.cache_mode, &key) {
            (CacheMode::Bypass, _) | (_, None) => CacheState::Bypass,
            (CacheMode::Refresh, Some(_)) => CacheState::Refresh,
            (CacheMode::Use, Some(key)) => match self.lookup(key, now_epoch).await {
                Ok(Some(entry)) => {
                    return Ok(Answer {
                        saved_usd: entry.cached.cost_usd,
                        answer: entry.cached.answer,
                        model_id: entry.cached.model_id,
                        route: None,
                        tier,
                        cache: CacheState::Hit,
                        cost_usd: 0.0,
                        too_large_to_cache: false,
                    })
                }
                Ok(None) => CacheState::Miss,
                Err(error) => {
                    tracing::warn!(error = %error, "cache read failed; answering without the cache");
                    CacheState::Bypass
                }
            },
        };

        let plan = self.config.router.plan(&base_model, now);
        let (answer, route) = match self
            .model
            .converse(&plan.primary.model_id, &invoke.conversation)
            .await
        {
            Ok(answer) => (answer, plan.primary.route),
            Err(error) => match plan.spillover {
                Some(spillover) if error.spills_over() => {
                    tracing::info!(from = plan.primary.route.as_str(), reason = %error, "spilling over to on-demand");
                    let answer = self
                        .model
                        .converse(&spillover.model_id, &invoke.conversation)
                        .await?;
                    (answer, spillover.route)
                }
                _ => return Err(error.into()),
            },
        };
        let cost_usd = self
            .config
            .prices
            .cost(&base_model, &answer.usage)
            .unwrap_or_else(|| {
                tracing::warn!(
                    model_id = base_model,
                    "no price configured for the model; cost reported as 0"
                );
                0.0
            });

        let mut too_large_to_cache = false;
        if let (Some(key), CacheState::Miss | CacheState::Refresh) = (&key, state) {
            let ttl = invoke
                .ttl_seconds
                .unwrap_or(self.config.cache_ttl_seconds)
                .min(self.config.cache_max_ttl_seconds);
            let entry = CacheEntry {
                cached: CachedAnswer {
                    answer: answer.clone(),
                    model_id: base_model.clone(),
                    cost_usd,
                    created_at: now_epoch,
                },
                expires_at: now_epoch.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            };
            match self.store.put(key, &entry).await {
                Ok(()) => self.memory.put(key, &entry, now_epoch),
                Err(CacheError::TooLarge(bytes)) => {
                    tracing::warn!(bytes, "answer too large to cache; not stored");
                    too_large_to_cache = true;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cache write failed; answering without the cache");
                    state = CacheState::Bypass;
                }
            }
        }

        Ok(Answer {
            answer,
            model_id: base_model,
            route: Some(route),
            tier,
            cache: state,
            cost_usd,
            saved_usd: 0.0,
            too_large_to_cache,
        })
    }

    /// The in-process cache first, then the shared store; an expired entry is a miss.
    async fn lookup(
        &self,
        key: &CacheKey,
        now_epoch: i64,
    ) -> Result<Option<CacheEntry>, CacheError> {
        if let Some(entry) = self.memory.get(key, now_epoch) {
            return Ok(Some(entry));
        }
        let entry = self.store.get(key).await?.filter(|e| e.is_live(now_epoch));
        if let Some(entry) = &entry {
            self.memory.put(key, entry, now_epoch);
        }
        Ok(entry)
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

    fn namespace(&self, request: &Request) -> Result<String, ApiError> {
        match self.config.cache_scope {
            CacheScope::Shared => Ok(format!("shared:{}", self.config.cache_namespace)),
            CacheScope::Caller => caller_identity(request)
                .map(|caller| format!("caller:{caller}"))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "MissingCallerIdentity",
                        "the cache is scoped per caller, but the request carries no IAM or JWT identity; call through the authorized API",
                    )
                }),
        }
    }
}

/// API Gateway's request id when there is one, else the Lambda request id.
fn request_id(request: &Request) -> String {
    let from_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The IAM principal or the JWT subject from the authorizer context.
pub fn caller_identity(request: &Request) -> Option<String> {
    fn non_empty(s: Option<&String>) -> Option<String> {
        s.filter(|s| !s.is_empty()).cloned()
    }
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            let authorizer = ctx.authorizer.as_ref()?;
            non_empty(
                authorizer
                    .iam
                    .as_ref()
                    .and_then(|iam| iam.user_arn.as_ref()),
            )
            .map(|arn| format!("iam:{arn}"))
            .or_else(|| {
                non_empty(
                    authorizer
                        .jwt
                        .as_ref()
                        .and_then(|jwt| jwt.claims.get("sub")),
                )
                .map(|sub| format!("jwt:{sub}"))
            })
        }
        RequestContext::ApiGatewayV1(ctx) => non_empty(ctx.identity.user_arn.as_ref())
            .map(|arn| format!("iam:{arn}"))
            .or_else(|| {
                non_empty(
                    ctx.authorizer
                        .jwt
                        .as_ref()
                        .and_then(|jwt| jwt.claims.get("sub")),
                )
                .or_else(|| {
                    ctx.authorizer
                        .fields
                        .get("claims")
                        .and_then(|c| c.get("sub"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                })
                .map(|sub| format!("jwt:{sub}"))
            }),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn success_response(answer: &Answer, latency_ms: u64) -> Response<Body> {
    let body = json!({
        "text": answer.answer.text(),
        "message": answer.answer.message,
        "stopReason": answer.answer.stop_reason,
        "modelId": answer.model_id,
        "route": answer.route,
        "tier": answer.tier,
        "cache": answer.cache,
        "usage": answer.answer.usage,
        "costUsd": answer.cost_usd,
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
