//! Reading a request: method, content type, size, the body in the endpoint's shape, and the
//! models and cache controls a caller may ask for.

use http::{header, Method, StatusCode};
use lambda_http::Request;
use serde_json::Value;

use domain::cache::CacheMode;
use domain::ports::Clock;

use crate::app::{Adapters, App};
use crate::config::CacheScope;
use crate::context::{Caller, Ctx, Endpoint};
use crate::error::ApiError;
use crate::openai;
use crate::request::{self, InvokeRequest};
use crate::wire::Wire;

impl<A: Adapters> App<A> {
    pub(crate) fn read_request(
        &self,
        request: &Request,
        endpoint: Endpoint,
        ctx: &mut Ctx,
    ) -> Result<InvokeRequest, ApiError> {
        json_post(request)?;
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
    pub(crate) fn openai_model(&self, model: &str) -> Result<Option<String>, ApiError> {
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

    pub(crate) fn list_models(
        &self,
        request: &Request,
        caller: &Caller,
    ) -> Result<Value, ApiError> {
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
        Ok(openai::models(names, self.ports.clock.now().timestamp()))
    }

    /// Under the shared scope, replacing or stretching an entry everyone shares is the
    /// deployment's decision, not a caller's.
    pub(crate) fn check_cache_control(&self, invoke: &InvokeRequest) -> Result<(), ApiError> {
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
}

/// A POST with a JSON body (or none said): anything else is refused before the body is read.
pub(crate) fn json_post(request: &Request) -> Result<(), ApiError> {
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
    Ok(())
}

/// Another path under `/openai/`: answered 404 in OpenAI's shape.
pub(crate) fn not_served(request: &Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "{} is not served here; the OpenAI-compatible routes are POST /openai/v1/chat/completions and GET /openai/v1/models",
            request.uri().path()
        ),
    )
}

/// A method and path of the files and batches routes that is not one of theirs.
pub(crate) fn not_served_here(request: &Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "{} {} is not served here; see docs/api-openai.md for the files and batches routes",
            request.method(),
            request.uri().path()
        ),
    )
}
